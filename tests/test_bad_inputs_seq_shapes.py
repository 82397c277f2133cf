"""Bad-input corpus of the sequence (``dna``, ``protein``) and ``shape`` domains (issue #15),
through the real CLI: each bad file exits 2 with one line naming the file, record or line and
the problem, writes nothing and leaves the user's files as they were. Then the inputs that must
work (Windows line endings, lowercase, a terminal ``*``, empty peptides) and nothing lost: the
records' own ids and headers reach ``scores.csv`` and ``--designs-out``."""

import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest
from badinput import assert_clean_error, snapshot

from rewarddiff.cli import main
from rewarddiff.oracles.learned import RewardEnsemble
from seqgen.model import CNNConfig, SequenceClassifier
from shapes.__main__ import main as shapes_main
from shapes.io import IDS_KEY, write_ply

DNA = ">a\nGGGGCCCC\n>b\nATATATAT\n"
PEPTIDES = ">p1\nKKLLKKLL\n>p2\nGIGKFLHS\n"


def npz(compress=False, **arrays) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


CLOUDS = np.random.default_rng(0).normal(size=(2, 16, 3)).astype(np.float32)
NAN_CLOUDS = CLOUDS.copy()
NAN_CLOUDS[1, 3, 2] = np.nan
INF_CLOUDS = CLOUDS.copy()
INF_CLOUDS[0, 5, 0] = np.inf
COMPRESSED = npz(compress=True, points=CLOUDS)
CORRUPT = COMPRESSED[:60] + b"x" * 10 + COMPRESSED[70:]  # inside the compressed points

# case → (domain, oracles, input file name, its bytes, fragments of the one error line)
SCORE_CASES = {
    "fasta-empty-file": ("dna", "gc_content", "d.fasta", b"", ["no FASTA records"]),
    "fasta-blank-lines-only": ("dna", "gc_content", "d.fasta", b"\n \n\n", ["no FASTA records"]),
    "fasta-binary": ("dna", "gc_content", "d.fasta", bytes(range(256)) * 4,
                     ["line 2: byte 0x80 is not UTF-8 text (expected a FASTA file)"]),
    "fasta-nul-bytes": ("dna", "gc_content", "d.fasta", b">a\nAC\x00GT\n",
                        ["line 2: NUL byte (binary data"]),
    "fasta-utf16": ("dna", "gc_content", "d.fasta", DNA.encode("utf-16"),
                    ["line 1: byte 0xff is not UTF-8"]),
    "fasta-gzip": ("dna", "gc_content", "d.fasta.gz", gzip.compress(DNA.encode()),
                   ["gzip-compressed; decompress it first (gunzip d.fasta.gz)"]),
    "fasta-sequence-before-header": ("dna", "gc_content", "d.fasta", b"ACGT\n>a\nACGT\n",
                                     ["line 1: sequence before the first '>' header"]),
    "fasta-csv-suffix": ("dna", "gc_content", "d.csv", b"id,sequence\na,ACGT\n",
                         ["line 1: sequence before the first '>' header"]),
    "fasta-empty-header": ("dna", "gc_content", "d.fasta", b">a\nACGT\n>\nACGT\n",
                           ["line 3: record 2 has no id after '>'"]),
    "fasta-empty-record": ("dna", "gc_content", "d.fasta", b">a\n>b\nACGT\n",
                           ["record 1 ('a'): empty sequence"]),
    "fasta-header-only": ("dna", "gc_content", "d.fasta", b">a\n", ["record 1 ('a'): empty"]),
    "fasta-duplicate-id": ("dna", "gc_content", "d.fasta", b">a\nACGT\n>b\nAC\n>a x\nGG\n",
                           ["record 3 ('a'): duplicate record id 'a' (record 1 has it)"]),
    "fasta-invalid-letter": ("dna", "gc_content", "d.fasta", b">a\nACGT\n>b\nACNT\n",
                             ["record 2 ('b'): invalid letter 'N' at position 3"]),
    "dna-rna-letters": ("dna", "gc_content", "d.fasta", b">a\nACGU\n",
                        ["record 1 ('a'): invalid letter 'U' at position 4 (allowed: ACGT)"]),
    "dna-stop-is-invalid": ("dna", "gc_content", "d.fasta", b">a\nACGT*\n",
                            ["invalid letter '*' at position 5"]),
    "peptide-invalid-letter": ("protein", "charge", "p.fasta", b">p1\nKKXL\n",
                               ["record 1 ('p1'): invalid letter 'X' at position 3"]),
    "peptide-stop-inside": ("protein", "charge", "p.fasta", b">p1\nKK*LL*\n",
                            ["record 1 ('p1'): stop '*' at position 3, before the end"]),
    "peptide-dna-file": ("protein", "charge", "p.fasta", b">a\nACGTU\n",
                         ["record 1 ('a'): invalid letter 'U' at position 5"]),
    "npz-empty-archive": ("shape", "height", "s.npz", npz(),
                          ["no array 'points' (found: nothing)"]),
    "npz-zero-bytes": ("shape", "height", "s.npz", b"", ["empty file (expected a .npz"]),
    "npz-garbage": ("shape", "height", "s.npz", b"not a zip" * 10, ["not an .npz file"]),
    "npz-object-array": ("shape", "height", "s.npz",
                         npz(points=np.array([CLOUDS[0], CLOUDS[1][:5]], dtype=object)),
                         ["array 'points' holds Python objects (pickled data is not loaded)"]),
    "npz-truncated": ("shape", "height", "s.npz", COMPRESSED[: len(COMPRESSED) // 2],
                      ["cannot read as .npz (File is not a zip file)"]),
    "npz-corrupt-array": ("shape", "height", "s.npz", CORRUPT,
                          ["array 'points' is unreadable (Error -3 while decompressing"]),
    "npz-wrong-key": ("shape", "height", "s.npz", npz(pts=CLOUDS),
                      ["no array 'points' (found: pts)"]),
    "npz-one-set-not-batched": ("shape", "height", "s.npz", npz(points=CLOUDS[0]),
                                ["expected points of shape (n, N, 3), got (16, 3)"]),
    "npz-four-columns": ("shape", "height", "s.npz", npz(points=np.zeros((2, 5, 4))),
                         ["expected points of shape (n, N, 3), got (2, 5, 4)"]),
    "npz-no-points": ("shape", "height", "s.npz", npz(points=np.zeros((2, 0, 3))),
                      ["got (2, 0, 3)"]),
    "npz-strings": ("shape", "height", "s.npz", npz(points=np.full((1, 2, 3), "x")),
                    ["points have dtype <U1, expected real numbers"]),
    "npz-complex": ("shape", "height", "s.npz", npz(points=CLOUDS.astype(np.complex64)),
                    ["points have dtype complex64, expected real numbers"]),
    "npz-nan": ("shape", "height", "s.npz", npz(points=NAN_CLOUDS),
                ["1 point coordinates are NaN or infinite (first at index (1, 3, 2))"]),
    "npz-inf": ("shape", "height", "s.npz", npz(points=INF_CLOUDS),
                ["NaN or infinite (first at index (0, 5, 0))"]),
    "npz-holding-npy": ("shape", "height", "s.npz", npy(CLOUDS),
                        ["a single .npy array, expected an .npz with key 'points'"]),
    "npz-ids-wrong-length": ("shape", "height", "s.npz", npz(points=CLOUDS, ids=np.array(["a"])),
                             ["'ids' has shape (1,) and dtype <U1, expected (2,) strings"]),
    "npz-ids-duplicate": ("shape", "height", "s.npz",
                          npz(points=CLOUDS, ids=np.array(["a", "a"])),
                          ["'ids': duplicate id 'a'"]),
    "npz-score-wrong-length": ("shape", "height", "s.npz",
                               npz(points=CLOUDS, height=np.zeros(3)),
                               ["score 'height' has shape (3,)"]),
    "npz-gzip": ("shape", "height", "s.npz.gz", gzip.compress(npz(points=CLOUDS)),
                 ["gzip-compressed"]),
    "shape-unknown-suffix": ("shape", "height", "s.xyz", b"0 0 0\n",
                             ["unknown suffix '.xyz' for point sets (expected .npz or .ply)"]),
    "ply-garbage": ("shape", "height", "s.ply", b"ply\nformat ascii 1.0\ngarbage\n",
                    ["cannot read as PLY"]),
    "ply-zero-bytes": ("shape", "height", "s.ply", b"", ["empty file (expected a"]),
    "ply-no-vertices": ("shape", "height", "s.ply",
                        b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n",
                        ["expected points of shape (N, 3)"]),
}  # fmt: skip

SUFFIX = {"dna": ".fasta", "protein": ".fasta", "shape": ".npz"}


def run(argv) -> int:
    return main([str(a) for a in argv])


def score_argv(domain, path, oracles, out_dir, *extra):
    return ["score", "--domain", domain, "--input", path, "--oracles", oracles,
            "--out", out_dir / "scores.csv",
            "--designs-out", out_dir / f"scored{SUFFIX[domain]}", *extra]  # fmt: skip


@pytest.mark.parametrize("case", SCORE_CASES)
def test_bad_design_file(tmp_path, capsys, case):
    domain, oracles, name, content, fragments = SCORE_CASES[case]
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out"
    argv = score_argv(domain, path, oracles, out)
    assert_clean_error(capsys, argv, path, *fragments, outputs=[out], keep=[path])


@pytest.mark.parametrize(
    "domain, oracles, expected",
    [("dna", "gc_content", "a FASTA file"), ("protein", "charge", "a FASTA file"),
     ("shape", "height", "a .npz or .ply file")],
)  # fmt: skip
def test_folder_or_missing_file_as_input(tmp_path, capsys, domain, oracles, expected):
    folder = tmp_path / "designs"
    folder.mkdir()
    (folder / "a.fasta").write_text(DNA)
    out = tmp_path / "out"
    argv = score_argv(domain, folder, oracles, out)
    assert_clean_error(capsys, argv, folder, f"is a directory, expected {expected}",
                       outputs=[out], keep=[folder])  # fmt: skip
    missing = tmp_path / f"missing{SUFFIX[domain]}"
    argv = score_argv(domain, missing, oracles, out)
    assert_clean_error(capsys, argv, missing, "file not found", outputs=[out, missing])


def classifier(path, domain, classes, vocab_size, length):
    """An untrained one-head sequence classifier saved as a reward model."""
    cfg = CNNConfig(vocab_size=vocab_size, hidden=8, layers=1, num_outputs=len(classes))
    config = {"network": cfg.to_dict(), "classes": classes, "domain": domain, "length": length}
    RewardEnsemble([SequenceClassifier(cfg)], "classification").save(path, config)
    return path


def test_dna_of_another_length_than_the_reward_model(tmp_path, capsys):
    model = classifier(tmp_path / "dna.safetensors", "dna", ["HepG2", "K562"], 4, 8)
    path = tmp_path / "d.fasta"
    path.write_text(DNA + ">short\nACGT\n")
    out = tmp_path / "out"
    argv = score_argv("dna", path, "gc_content,celltype_prob:HepG2", out, "--reward-model", model)
    assert_clean_error(capsys, argv, f"{path}: record 3 ('short'): length 4; the reward model",
                       "reads sequences of length 8", outputs=[out],
                       keep=[path, model])  # fmt: skip


def test_over_long_peptide_is_rejected_when_scoring(tmp_path, capsys):
    model = classifier(tmp_path / "amp.safetensors", "protein", ["non_amp", "amp"], 21, 10)
    path = tmp_path / "p.fasta"
    path.write_text(PEPTIDES + ">long\n" + "K" * 11 + "\n")
    out = tmp_path / "out"
    argv = score_argv("protein", path, "charge,amp_prob:amp", out, "--reward-model", model)
    assert_clean_error(capsys, argv, f"{path}: record 3 ('long'): length 11",
                       "reads sequences of length at most 10", outputs=[out],
                       keep=[path, model])  # fmt: skip


# ----- prepare: data files and settings ------------------------------------------------------
def peptide_files(tmp_path, labels: str | bytes | None = None, fasta: str | None = None):
    """A 40-peptide FASTA (20 distinct lengths 5–24) and its labels TSV (or ``labels``)."""
    rng = np.random.default_rng(1)
    seqs = {f"p{i}": "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 5 + i % 20))
            for i in range(40)}  # fmt: skip
    fasta_path, labels_path = tmp_path / "pep.fasta", tmp_path / "pep.tsv"
    fasta_path.write_text(fasta if fasta is not None else
                          "".join(f">{k}\n{v}\n" for k, v in seqs.items()))  # fmt: skip
    good = "id\tlabel\n" + "".join(f"{k}\t{i % 2}\n" for i, k in enumerate(seqs))
    labels = good if labels is None else labels
    labels_path.write_bytes(labels if isinstance(labels, bytes) else labels.encode())
    return {"source": "fasta", "fasta": str(fasta_path), "labels": str(labels_path)}


GOOD_LABELS = "id\tlabel\n" + "".join(f"p{i}\t{i % 2}\n" for i in range(40))
PEPTIDE_PREPARE = {
    "labels-empty-file": (dict(labels=""), "pep.tsv: empty file (expected a header line"),
    "labels-missing-column": (dict(labels="id\tclass\np0\t1\n"),
                              "pep.tsv: missing column(s) label (need id and label; the "
                              "header has: id, class)"),
    "labels-unknown-id": (dict(labels=GOOD_LABELS + "zz\t1\n"),
                          "pep.tsv: line 42: unknown id 'zz' (not in the FASTA)"),
    "labels-ids-missing": (dict(labels="id\tlabel\np0\t1\n"),
                           "pep.tsv: no label for id 'p1' (and 38 more)"),
    "labels-not-0-or-1": (dict(labels=GOOD_LABELS.replace("p3\t1", "p3\tAMP")),
                          "pep.tsv: label 'AMP' for 'p3' is not 0 (non-AMP) or 1 (AMP)"),
    "labels-tabs-only-line": (dict(labels=GOOD_LABELS + "\t\n"), "pep.tsv: line 42: empty id"),
    "labels-empty-label": (dict(labels=GOOD_LABELS.replace("p3\t1", "p3\t")),
                           "pep.tsv: line 5: empty label for 'p3'"),
    "labels-duplicate-id": (dict(labels=GOOD_LABELS + "p0\t0\n"),
                            "pep.tsv: line 42: duplicate id 'p0' (line 2)"),
    "labels-ragged-row": (dict(labels=GOOD_LABELS.replace("p3\t1", "p3\t1\textra")),
                          "pep.tsv: line 5: 3 tab-separated field(s), the header has 2"),
    "labels-comma-separated": (dict(labels=GOOD_LABELS.replace("\t", ",")),
                               "pep.tsv: missing column(s) id, label"),
    "labels-binary": (dict(labels=b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256))),
                      "pep.tsv: line 1: byte 0x89 is not UTF-8 text (expected a TSV file)"),
    "fasta-empty-record": (dict(fasta=">p0\nKKLL\n>p1\n\n"), "pep.fasta: record 2 ('p1'): empty"),
    "fasta-only-stop": (dict(fasta=">p0\nKKLL\n>p1\n*\n"), "record 2 ('p1'): empty sequence"),
}  # fmt: skip


@pytest.mark.parametrize("case", PEPTIDE_PREPARE)
def test_bad_peptide_data(tmp_path, capsys, case):
    files, fragment = PEPTIDE_PREPARE[case]
    params = peptide_files(tmp_path, **files) | {"max_length": 30}
    out = tmp_path / "data"
    argv = ["prepare", "--domain", "protein", "--params", json.dumps(params), "--out-dir", out]
    assert_clean_error(capsys, argv, fragment, outputs=[out],
                       keep=[params["fasta"], params["labels"]])  # fmt: skip


@pytest.mark.parametrize(
    "settings, fragments",
    [({"max_length": 6}, ["data: split 'valid' is empty: 4 records after max_length 6",
                          "(36 longer left out; 4 distinct)"]),
     ({"max_length": 4}, ["pep.fasta: every record is longer than max_length 4"])],
)  # fmt: skip
def test_peptide_split_left_empty_by_a_setting(tmp_path, capsys, settings, fragments):
    params = peptide_files(tmp_path) | settings
    out = tmp_path / "data"
    argv = ["prepare", "--domain", "protein", "--params", json.dumps(params), "--out-dir", out]
    assert_clean_error(capsys, argv, *fragments, outputs=[out], keep=[params["fasta"]])


def dna_files(tmp_path, n=20, length=200, labels=None):
    """``n`` DNA records of ``length`` and their labels TSV (or ``labels``)."""
    base = "ACGT" * (length // 4 + 2)
    (tmp_path / "d.fasta").write_text("".join(f">d{i}\n{base[i % 4 :][:length]}\n"
                                              for i in range(n)))  # fmt: skip
    default = "id\tlabel\n" + "".join(f"d{i}\t{('HepG2', 'K562')[i % 2]}\n" for i in range(n))
    (tmp_path / "d.tsv").write_text(labels or default)
    return {"source": "fasta", "fasta": str(tmp_path / "d.fasta"),
            "labels": str(tmp_path / "d.tsv")}  # fmt: skip


SPLIT_LABELS = "id\tlabel\tsplit\n" + "".join(f"d{i}\tHepG2\ttrain\n" for i in range(19))
DNA_PREPARE = {
    "wrong-length": (dict(length=199), {}, ["d.fasta: record 1 ('d0'): length 199, expected 200"]),
    "unknown-split": (dict(labels=SPLIT_LABELS + "d19\tK562\ttset\n"),
                      {}, ["d.tsv: split 'tset' of 'd19' is not one of train, valid, test"]),
    "split-column-without-valid": (dict(labels=SPLIT_LABELS + "d19\tK562\ttest\n"), {},
                                   ["data: split 'valid' is empty: 20 records after the split "
                                    "column of"]),
    "too-few-records": (dict(n=2), {}, ["data: split 'valid' is empty: 2 records after the "
                                        "seeded 80/10/10 split of"]),
    "one-chromosome": (dict(labels="id\tlabel\tchr\n" + "".join(f"d{i}\tK562\tchr1\n"
                                                             for i in range(20))), {},
                       ["data: the training split holds one chromosome (chr1); the ft and eval"]),
    "max-per-split-below-4": (dict(), {"max_per_split": 3},
                              ["data: split 'train' is empty: 0 records after",
                               "max_per_split 3 (0 per label)"]),
}  # fmt: skip


@pytest.mark.parametrize("case", DNA_PREPARE)
def test_bad_dna_data(tmp_path, capsys, case):
    files, settings, fragments = DNA_PREPARE[case]
    params = dna_files(tmp_path, **files) | settings
    out = tmp_path / "data"
    argv = ["prepare", "--domain", "dna", "--params", json.dumps(params), "--out-dir", out]
    assert_clean_error(capsys, argv, *fragments, outputs=[out],
                       keep=[params["fasta"], params["labels"]])  # fmt: skip


def pc15k_tree(root, points=40, files=2, splits=("train", "val", "test")):
    for split in splits:
        folder = root / "03001627" / split
        folder.mkdir(parents=True)
        for i in range(files):
            np.save(folder / f"m{i}.npy", np.random.default_rng(i).normal(size=(points, 3)))
    return root


def bad_shape_data(tmp_path, case):
    """(params, fragments) of a bad shape data setting or file."""
    root = tmp_path / "pc15k"
    pc15k = {"source": "pc15k", "root": str(root), "synsets": ["03001627"], "points": 16,
             "stored_points": 32}  # fmt: skip
    procedural = {"source": "procedural", "families": ["chair"], "points": 16,
                  "stored_points": 32,
                  "per_family": {"train": 2, "valid": 1, "test": 1}}  # fmt: skip
    mesh = {"source": "mesh", "root": str(tmp_path / "meshes"), "points": 16, "stored_points": 32}
    match case:
        case "pc15k-no-synsets":
            return pc15k | {"synsets": []}, ["data.synsets: []; expected a list of synset"]
        case "pc15k-synsets-not-a-list":
            return pc15k | {"synsets": "03001627"}, ["data.synsets: '03001627'; expected a list"]
        case "pc15k-synset-read-as-number":
            return pc15k | {"synsets": [819095]}, ["data.synsets: 819095 is not a folder name"]
        case "pc15k-root-missing":
            return pc15k, [f"{root}: not a directory (data.root of source 'pc15k')"]
        case "pc15k-split-folder-missing":
            pc15k_tree(root, splits=("train", "test"))
            return pc15k, [f"{root}/03001627/val: not a directory"]
        case "pc15k-split-folder-empty":
            pc15k_tree(root, files=0)
            return pc15k, [f"{root}/03001627/train: no .npy point files"]
        case "pc15k-too-few-points":
            pc15k_tree(root, points=10)
            return pc15k, ["data: the shapes have 10 points, fewer than points = 16"]
        case "pc15k-object-npy":
            pc15k_tree(root)
            np.save(root / "03001627/val/m1.npy", np.zeros((40, 3), object), allow_pickle=True)
            return pc15k, [f"{root}/03001627/val/m1.npy: holds Python objects"]
        case "pc15k-junk-npy":
            pc15k_tree(root)
            (root / "03001627/test/m0.npy").write_text("not numpy")
            return pc15k, [f"{root}/03001627/test/m0.npy: not a .npy file"]
        case "pc15k-empty-npy":
            pc15k_tree(root)
            (root / "03001627/test/m0.npy").write_bytes(b"")
            return pc15k, [f"{root}/03001627/test/m0.npy: empty file"]
        case "pc15k-nan-points":
            pc15k_tree(root)
            np.save(root / "03001627/train/m0.npy", np.full((40, 3), np.nan))
            return pc15k, ["m0.npy: 120 point coordinates are NaN or infinite"]
        case "procedural-empty-split":
            settings = {"per_family": {"train": 2, "valid": 0, "test": 1}}
            return procedural | settings, ["data.per_family.valid: 0; every split needs"]
        case "procedural-families-not-a-list":
            return procedural | {"families": "chair"}, ["data.families: 'chair'; expected a list"]
        case "mesh-root-empty":
            (tmp_path / "meshes").mkdir()
            return mesh, ["meshes: 0 PLY/OBJ meshes; need at least 3"]
        case "mesh-garbage":
            (tmp_path / "meshes").mkdir()
            for i in range(3):
                (tmp_path / "meshes" / f"m{i}.ply").write_text("ply\nformat ascii 1.0\nbad\n")
            return mesh, ["meshes/m0.ply: cannot read mesh"]
        case "mesh-without-faces":
            (tmp_path / "meshes").mkdir()
            for i in range(3):
                (tmp_path / "meshes" / f"m{i}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
            return mesh, ["meshes/m0.obj: empty mesh (no faces)"]


SHAPE_PREPARE = [
    "pc15k-no-synsets", "pc15k-synsets-not-a-list", "pc15k-synset-read-as-number",
    "pc15k-root-missing", "pc15k-split-folder-missing", "pc15k-split-folder-empty",
    "pc15k-too-few-points", "pc15k-object-npy", "pc15k-junk-npy", "pc15k-empty-npy",
    "pc15k-nan-points", "procedural-empty-split", "procedural-families-not-a-list",
    "mesh-root-empty", "mesh-garbage", "mesh-without-faces",
]  # fmt: skip


@pytest.mark.parametrize("case", SHAPE_PREPARE)
def test_bad_shape_data(tmp_path, capsys, case):
    params, fragments = bad_shape_data(tmp_path, case)
    out = tmp_path / "data"
    inputs = [p for p in (tmp_path / "pc15k", tmp_path / "meshes") if p.exists()]
    argv = ["prepare", "--domain", "shape", "--params", json.dumps(params), "--out-dir", out]
    assert_clean_error(capsys, argv, *fragments, outputs=[out], keep=inputs)


# ----- python -m shapes metrics -------------------------------------------------------------
def assert_clean_shapes_error(capsys, argv, *fragments, keep=()):
    """``python -m shapes argv``: exit 2, one stderr line with every fragment, inputs kept."""
    before = snapshot(keep)
    capsys.readouterr()
    try:
        status = shapes_main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and not captured.out, captured.err
    assert lines[0].startswith("python -m shapes")
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    assert snapshot(keep) == before


def test_bad_metrics_inputs(tmp_path, capsys):
    good, objects = tmp_path / "good.npz", tmp_path / "objects.npz"
    good.write_bytes(npz(points=CLOUDS))
    objects.write_bytes(SCORE_CASES["npz-object-array"][3])
    fewer = tmp_path / "fewer.npz"
    fewer.write_bytes(npz(points=CLOUDS[:, :8]))
    cases = [
        (["--generated", objects, "--reference", good], [objects, "holds Python objects"]),
        (["--generated", good, "--reference", tmp_path], [tmp_path, "is a directory"]),
        (["--generated", tmp_path / "no.npz", "--reference", good], ["no.npz: file not found"]),
        (["--generated", good, "--reference", fewer],
         ["generated has 16 points per shape but reference has 8"]),
        (["--generated", good], ["the following arguments are required: --reference"]),
    ]  # fmt: skip
    for args, fragments in cases:
        assert_clean_shapes_error(capsys, ["metrics", *args], *fragments, keep=[good, objects])


# ----- inputs that must work, and nothing lost -----------------------------------------------
def test_windows_line_endings_bom_and_lowercase_work(tmp_path):
    path = tmp_path / "d.fasta"
    path.write_bytes(b"\xef\xbb\xbf>a first design\r\ngggg\r\ncccc\r\n\r\n>b\r\nATATATAT\r\n")
    out = tmp_path / "out"
    assert run(score_argv("dna", path, "gc_content", out)) == 0
    table = pd.read_csv(out / "scores.csv")
    assert table["design"].tolist() == ["a GGGGCCCC", "b ATATATAT"]
    assert table["gc_content"].tolist() == [1.0, 0.0]
    assert (out / "scored.fasta").read_text() == (
        ">a first design gc_content=1\nGGGGCCCC\n>b gc_content=0\nATATATAT\n"
    )


def test_designs_out_keeps_headers_and_replaces_score_fields(tmp_path):
    path = tmp_path / "d.fasta"
    path.write_text(">x1 source=lab gc_content=0.3\nGGAA\n")
    for out in (tmp_path / "once", tmp_path / "twice"):
        assert run(score_argv("dna", path, "gc_content", out)) == 0
        path = out / "scored.fasta"
    assert path.read_text() == ">x1 source=lab gc_content=0.5\nGGAA\n"
    assert pd.read_csv(tmp_path / "twice/scores.csv")["design"].tolist() == ["x1 GGAA"]


def test_empty_peptides_score_nan_for_every_oracle(tmp_path):
    model = classifier(tmp_path / "amp.safetensors", "protein", ["non_amp", "amp"], 21, 10)
    path = tmp_path / "p.fasta"
    path.write_text(">p1 kept\nkkllkkll*\n>empty\n>stop_only\n*\n>p2\nGIGKFLHS\n")
    out = tmp_path / "out"
    oracles = "charge,amp_windows,hydrophobic_moment:3,amp_prob:amp"
    argv = score_argv("protein", path, oracles, out, "--reward-model", model)
    assert run(argv) == 0
    table = pd.read_csv(out / "scores.csv")
    assert table["design"].tolist() == ["p1 KKLLKKLL", "empty", "stop_only", "p2 GIGKFLHS"]
    scores = table.drop(columns="design").to_numpy()
    assert np.isnan(scores[[1, 2]]).all() and np.isfinite(scores[[0, 3]]).all()
    headers = [line for line in (out / "scored.fasta").read_text().splitlines() if ">" in line]
    assert [h.split()[0] for h in headers] == [">p1", ">empty", ">stop_only", ">p2"]
    assert headers[0].startswith(">p1 kept charge=") and "amp_prob:amp=nan" in headers[1]


def test_shape_ids_reach_scores_and_designs_out(tmp_path):
    path = tmp_path / "s.npz"
    path.write_bytes(npz(points=CLOUDS, ids=np.array(["chair_a", "chair_b"])))
    out = tmp_path / "out"
    assert run(score_argv("shape", path, "height", out)) == 0
    assert pd.read_csv(out / "scores.csv")["design"].tolist() == ["chair_a", "chair_b"]
    with np.load(out / "scored.npz") as scored:
        assert scored[IDS_KEY].tolist() == ["chair_a", "chair_b"] and "height" in scored.files
    write_ply(tmp_path / "my_lamp.ply", CLOUDS[0])
    assert run(score_argv("shape", tmp_path / "my_lamp.ply", "height", tmp_path / "ply")) == 0
    assert pd.read_csv(tmp_path / "ply/scores.csv")["design"].tolist() == ["my_lamp"]


def test_dna_user_data_without_chromosomes_gets_two_halves(tmp_path):
    """A labels TSV with a BOM and Windows line endings, no chr column: random halves."""
    labels = "id\tlabel\n" + "".join(f"d{i}\t{('HepG2', 'K562')[i % 2]}\n" for i in range(40))
    params = dna_files(tmp_path, n=40, labels="\ufeff" + labels.replace("\n", "\r\n"))
    argv = ["prepare", "--domain", "dna", "--params", json.dumps(params), "--out-dir",
            tmp_path / "data"]  # fmt: skip
    assert run(argv) == 0
    table = pd.read_csv(tmp_path / "data/labels.tsv", sep="\t")
    train = table[table["split"] == "train"]
    assert set(train["half"]) == {0, 1} and set(table["chr"]) == {"user"}
