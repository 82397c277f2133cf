"""Bad-input corpus of the ``molecule`` domain (issue #15), through the real CLI
(``rewarddiff score``, ``rewarddiff prepare``, ``python -m molgen metrics``): each bad input
exits 2 with one line naming the file, record or line and the problem (RDKit's own log kept
off stderr: ``capfd`` sees the C++ stream too), writes nothing and leaves the user's files as
they were. Then what must work: 2D records embedded with ``--embed`` (and recorded), their
descriptors from their own bonds, one bad molecule among good ones (NaN), and nothing lost: the
records' ids and SD fields reach ``scores.csv`` and ``--designs-out``."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from badinput import assert_clean_error, snapshot
from rdkit import Chem
from rdkit.Chem import QED, AllChem

from molgen import data
from molgen.__main__ import main as molgen_main
from rewarddiff import UserError
from rewarddiff.cli import main


def molblock(smiles: str, name: str = "", flat: bool = False, fields: dict | None = None) -> str:
    """One SDF record: ETKDG 3D with hydrogens (seed 0), or a 2D drawing without them."""
    mol = Chem.MolFromSmiles(smiles)
    if flat:
        AllChem.Compute2DCoords(mol)
    else:
        mol = Chem.AddHs(mol)
        assert AllChem.EmbedMolecule(mol, randomSeed=0) == 0
    mol.SetProp("_Name", name)
    sd_fields = "".join(f">  <{k}>\n{v}\n\n" for k, v in (fields or {}).items())
    return Chem.MolToMolBlock(mol) + sd_fields + "$$$$\n"


def edit_atom(block: str, k: int, symbol: str | None = None, x: str | None = None) -> str:
    """``block`` with atom ``k``'s symbol or x coordinate replaced (V2000 columns)."""
    lines = block.splitlines(keepends=True)
    line = lines[4 + k]
    if symbol is not None:
        line = line[:31] + f"{symbol:<3}" + line[34:]
    if x is not None:
        line = f"{x:>10}" + line[10:]
    lines[4 + k] = line
    return "".join(lines)


def z_zero(block: str) -> str:
    """A 3D-tagged record with every z set to 0 (a drawing written as 3D)."""
    mol = Chem.MolFromMolBlock(block, removeHs=False)
    conf = mol.GetConformer()
    for k in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(k)
        conf.SetAtomPosition(k, (p.x, p.y, 0.0))
    return Chem.MolToMolBlock(mol) + "$$$$\n"


def pentavalent_carbon() -> str:
    """A 2D CF5 record (RDKit reads it unsanitised, rejects it when sanitising)."""
    rw = Chem.RWMol()
    rw.AddAtom(Chem.Atom(6))
    for _ in range(5):
        rw.AddBond(0, rw.AddAtom(Chem.Atom(9)), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    mol.UpdatePropertyCache(strict=False)
    AllChem.Compute2DCoords(mol)
    mol.SetProp("_Name", "CF5")
    return Chem.MolToMolBlock(mol, kekulize=False) + "$$$$\n"


ETHANOL = molblock("CCO", "ethanol")
METHANE = molblock("C", "methane")
FLAT = molblock("CCO", "flat", flat=True)
SECOND = ETHANOL.count("\n")  # lines before a second record
ACETATE = molblock("CC(=O)[O-]", "acetate")
WATER = "3\nwater\nO 0.000 0.000 0.117\nH 0.000 0.757 -0.467\nH 0.000 -0.757 -0.467\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256))

# case → (input file name, its content, oracles, fragments of the one error line[, more
# arguments, "@" standing for the test's folder])
SCORE_CASES = {
    "sdf-empty-file": ("m.sdf", "", "qed", ["m.sdf: empty file"]),
    "sdf-blank-lines-only": ("m.sdf", "\n \n", "qed", ["m.sdf: empty file"]),
    "sdf-gzip": ("m.sdf.gz", gzip.compress(ETHANOL.encode()), "qed",
                 ["gzip-compressed; decompress it first"]),
    "sdf-gzip-named-sdf": ("m.sdf", gzip.compress(ETHANOL.encode()), "qed", ["gzip-compressed"]),
    "sdf-binary": ("m.sdf", PNG, "qed", ["m.sdf: line 1: byte 0x89 is not UTF-8 text"]),
    "sdf-utf16": ("m.sdf", ETHANOL.encode("utf-16"), "qed", ["line 1: byte 0xff is not UTF-8"]),
    "sdf-nul-bytes": ("m.sdf", ETHANOL.replace("RDKit", "RD\0Kit").encode(), "qed",
                      ["line 2: NUL byte (binary data"]),
    "sdf-xyz-content": ("m.sdf", WATER, "qed", ["record 1 ('3'): RDKit cannot read it"]),
    "sdf-holding-smiles": ("m.sdf", "CCO\nCC#N\n", "qed",
                           ["record 1 ('CCO'): RDKit cannot read it"]),
    "sdf-unknown-element": ("m.sdf", edit_atom(ETHANOL, 0, symbol="Qq"), "qed",
                            ["m.sdf: record 1 ('ethanol'): RDKit cannot read it: "
                             "Element 'Qq' not found"]),
    "sdf-nan-coordinates": ("m.sdf", ETHANOL + edit_atom(METHANE, 1, x="nan"), "qed",
                            ["record 2 ('methane'): RDKit cannot read it: Cannot process "
                             f"coordinates on line {SECOND + 6}"]),
    "sdf-inf-coordinates": ("m.sdf", edit_atom(ETHANOL, 2, x="inf"), "qed",
                            ["record 1 ('ethanol')", "coordinates on line 7"]),
    "sdf-bad-counts-line": ("m.sdf", ETHANOL + METHANE.replace("  5  4  0", "  5 x4  0"), "qed",
                            ["record 2 ('methane'): RDKit cannot read it"]),
    "sdf-charge-on-missing-atom": ("m.sdf", ACETATE.replace("M  CHG  1   4  -1",
                                                            "M  CHG  1  99  -1"), "qed",
                                   ["record 1 ('acetate'): RDKit cannot read it: Unexpected "
                                    "error hit on line 18"]),
    "sdf-dummy-atom": ("m.sdf", edit_atom(ETHANOL, 0, symbol="*"), "qed",
                       ["record 1 ('ethanol'): atom 1 is a dummy or query atom"]),
    "sdf-query-atom": ("m.sdf", METHANE + edit_atom(ETHANOL, 1, symbol="Q"), "qed",
                       ["record 2 ('ethanol'): atom 2 is a dummy or query atom"]),
    "sdf-trailing-garbage": ("m.sdf", ETHANOL + "garbage\n", "qed",
                             ["record 2 ('garbage'): RDKit cannot read it"]),
    "sdf-terminator-only": ("m.sdf", "$$$$\n", "qed", ["record 1 ('$$$$'): RDKit cannot read"]),
    "sdf-2d-xtb": ("m.sdf", FLAT, "qed,xtb:gap",
                   ["m.sdf: record 1 ('flat'): 2D coordinates (the molblock is not marked 3D); "
                    "xtb:gap reads 3D coordinates", "--embed"]),
    "sdf-2d-mmff": ("m.sdf", ETHANOL + FLAT, "mmff_strain",
                    ["record 2 ('flat'): 2D coordinates", "mmff_strain reads 3D"]),
    "sdf-2d-stability": ("m.sdf", FLAT, "stability:molecule,xtb:dipole",
                         ["stability:molecule, xtb:dipole read 3D coordinates"]),
    "sdf-z-zero-tagged-3d": ("m.sdf", z_zero(ETHANOL), "xtb:energy",
                             ["2D coordinates (every z is 0)"]),
    "sdf-2d-metrics": ("m.sdf", FLAT, "qed", ["record 1 ('flat'): 2D coordinates",
                                             "the metrics read 3D geometry: give 3D input"],
                       ["--metrics-out", "@/out/metrics.json"]),
    "sdf-2d-rejected-by-rdkit-embed": ("m.sdf", pentavalent_carbon(), "qed",
                                       ["record 1 ('CF5'): RDKit rejects the molecule: Explicit "
                                        "valence for atom # 0 C, 5"], ["--embed"]),
    "xyz-empty-file": ("m.xyz", b"", "qed", ["m.xyz: empty file"]),
    "xyz-binary": ("m.xyz", PNG, "qed", ["m.xyz: line 1: byte 0x89 is not UTF-8 text"]),
    "xyz-holding-sdf": ("m.xyz", ETHANOL, "qed",
                        ["m.xyz: line 1: expected an atom count, got 'ethanol'"]),
    "xyz-two-coordinates": ("m.xyz", WATER.replace("0.757 -0.467", "0.757"), "qed",
                            ["m.xyz: record 1 ('water'): line 4: atom 2 of 3: expected "
                             "'symbol x y z', got 'H 0.000 0.757'"]),
    "xyz-count-above-lines": ("m.xyz", WATER.replace("3", "4", 1), "qed",
                              ["record 1 ('water'): the atom count on line 1 is 4, but the file "
                               "ends after 3 atom lines"]),
    "xyz-count-below-lines": ("m.xyz", WATER.replace("3", "2", 1), "qed",
                              ["m.xyz: line 5: expected an atom count, got 'H 0.000 -0.757 "
                               "-0.467' (record 1 has more atom lines than its atom count, 2)"]),
    "xyz-count-above-lines-multiframe": ("m.xyz", WATER.replace("3", "4", 1) + WATER, "qed",
                                         ["line 6: atom 4 of 4: expected 'symbol x y z', "
                                          "got '3'"]),
    "xyz-count-not-a-number": ("m.xyz", WATER.replace("3", "three", 1), "qed",
                               ["m.xyz: line 1: expected an atom count, got 'three'"]),
    "xyz-negative-count": ("m.xyz", WATER.replace("3", "-3", 1), "qed",
                           ["line 1: negative atom count -3"]),
    "xyz-coordinate-not-a-number": ("m.xyz", WATER.replace("0.757 -0.467", "y -0.467", 1),
                                    "qed", ["line 4: atom 2 of 3: coordinates must be numbers"]),
    "xyz-unknown-element": ("m.xyz", WATER.replace("H 0.000 0.757", "Qq 0.000 0.757"), "qed",
                            ["record 1 ('water'): line 4: atom 2 of 3: unknown element 'Qq'"]),
    "xyz-atomic-number-out-of-range": ("m.xyz", WATER.replace("O 0", "200 0"), "qed",
                                       ["line 3: atom 1 of 3: unknown element '200'"]),
    "xyz-nan": ("m.xyz", WATER.replace("0.000 0.757", "nan 0.757"), "qed",
                ["record 1 ('water'): atom 2 has non-finite coordinates [nan, 0.757, -0.467]"]),
    "xyz-inf": ("m.xyz", WATER + WATER.replace("-0.757 -0.467", "-inf -0.467"), "qed",
                ["record 2 ('water'): atom 3 has non-finite coordinates"]),
    "mol2-suffix": ("m.mol2", "@<TRIPOS>MOLECULE\nx\n", "qed",
                    ["m.mol2: unsupported molecule file .mol2 (use .sdf, .mol or .xyz)"]),
    "no-suffix": ("mols", ETHANOL, "qed", ["mols: unsupported molecule file (no suffix)"]),
}  # fmt: skip


def score_argv(path, oracles, out_dir, *extra):
    return ["score", "--domain", "molecule", "--input", path, "--oracles", oracles,
            "--out", out_dir / "scores.csv", "--designs-out", out_dir / "scored.sdf",
            *extra]  # fmt: skip


def run(argv) -> int:
    """``rewarddiff argv`` in this process."""
    return main([str(a) for a in argv])


def write(path, content: str | bytes):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("case", SCORE_CASES)
def test_bad_molecule_file(tmp_path, capfd, case):
    name, content, oracles, fragments, *extra = SCORE_CASES[case]
    path = write(tmp_path / name, content)
    out = tmp_path / "out"
    extra = [a.replace("@", str(tmp_path)) for a in (extra[0] if extra else [])]
    argv = score_argv(path, oracles, out, *extra)
    assert_clean_error(capfd, argv, *fragments, outputs=[out], keep=[path])


def test_folder_or_missing_file_as_input(tmp_path, capfd):
    folder = tmp_path / "mols.sdf"
    folder.mkdir()
    out = tmp_path / "out"
    assert_clean_error(capfd, score_argv(folder, "qed", out), f"{folder}: is a directory",
                       outputs=[out], keep=[folder])  # fmt: skip
    missing = tmp_path / "missing.sdf"
    assert_clean_error(capfd, score_argv(missing, "qed", out), f"{missing}: file not found",
                       outputs=[out, missing])  # fmt: skip


def test_2d_record_for_a_learned_property(tmp_path, capfd):
    from molgen.regressor import PropertyRegressor, RegressorConfig
    from rewarddiff.oracles.learned import RewardEnsemble

    cfg = RegressorConfig(mul=4, layers=1, num_outputs=1)
    model = tmp_path / "model.safetensors"
    RewardEnsemble([PropertyRegressor(cfg)], "regression").save(
        model, {"network": cfg.to_dict(), "targets": ["gap"], "mean": [0.0], "std": [1.0]}
    )
    path = write(tmp_path / "m.sdf", ETHANOL + FLAT)
    argv = score_argv(path, "property:gap", tmp_path / "out", "--reward-model", model)
    assert_clean_error(capfd, argv, "record 2 ('flat'): 2D coordinates", "property:gap reads",
                       outputs=[tmp_path / "out"], keep=[path, model])  # fmt: skip


def test_embed_is_for_molecules_only(tmp_path, capfd):
    path = write(tmp_path / "d.fasta", ">a\nACGT\n")
    argv = ["score", "--domain", "dna", "--input", path, "--oracles", "gc_content",
            "--out", tmp_path / "out/scores.csv", "--embed"]  # fmt: skip
    assert_clean_error(capfd, argv, "--embed embeds 2D molecule records; dna input has none",
                       outputs=[tmp_path / "out"], keep=[path])  # fmt: skip


# ----- prepare: data files and settings ------------------------------------------------------
SMILES = ["C", "CC", "CCO", "CC#N", "OC=O", "CN", "CCC", "C=O", "CO", "CCN", "O", "N"]
SMILES_CSV = "smiles,score\n" + "".join(f"{s},{i}\n" for i, s in enumerate(SMILES))

# case → (source, file name, its content, settings, fragments of the one error line)
PREPARE_CASES = {
    "smiles-empty-file": ("smiles", "m.csv", "", {}, ["m.csv: empty file"]),
    "smiles-header-only": ("smiles", "m.csv", "smiles\n", {},
                           ["m.csv: 0 molecules; preparing needs at least 4"]),
    "smiles-no-smiles-column": ("smiles", "m.csv", "name,activity\na,1\n", {},
                                ["m.csv: line 1: no 'smiles' column (columns: ['name', "
                                 "'activity'])"]),
    "smiles-tsv-holding-csv": ("smiles", "m.tsv", "smiles,y\nCCO,1\n", {},
                               ["m.tsv: line 1: no 'smiles' column (columns: ['smiles,y'])"]),
    "smiles-unparsable": ("smiles", "m.csv", "smiles\nCCO\nCC\nC1CC(\n", {},
                          ["m.csv: line 4: RDKit cannot parse SMILES 'C1CC(': SMILES Parse "
                           "Error: syntax error"]),
    "smiles-unclosed-ring-smi": ("smiles", "m.smi", "CCO ethanol\nC1CC ring\n", {},
                                 ["m.smi: line 2: RDKit cannot parse SMILES 'C1CC'",
                                  "unclosed ring"]),
    "smiles-bad-valence": ("smiles", "m.csv", "smiles\nCCO\nC(C)(C)(C)(C)C\n", {},
                           ["m.csv: line 3: RDKit cannot parse SMILES 'C(C)(C)(C)(C)C'",
                            "Explicit valence"]),
    "smiles-empty-cell": ("smiles", "m.csv", "smiles,y\nCCO,1\n,2\n", {},
                          ["m.csv: line 3: empty SMILES"]),
    "smiles-binary": ("smiles", "m.csv", PNG, {}, ["m.csv: line 1: byte 0x89 is not UTF-8"]),
    "smiles-two-molecules": ("smiles", "m.csv", "smiles\nCCO\nCC\n", {},
                             ["m.csv: 2 molecules; preparing needs at least 4 (train 2, one per "
                              "ft / eval half; valid 1; test 1)"]),
    "max-atoms-empties-a-split": ("smiles", "m.csv", SMILES_CSV, {"max_atoms": 2},
                                  ["data: split train is empty after max_atoms 2 (its smallest "
                                   "molecule has"]),
    "max-per-split-leaves-one-half": ("smiles", "m.csv", SMILES_CSV, {"max_per_split": 1},
                                      ["data: split train has 1 molecule(s) after max_per_split "
                                       "1; the ft and eval reward models need one half each"]),
    "unknown-source": ("pubchem", "m.csv", SMILES_CSV, {},
                       ["data: unknown molecule source 'pubchem' (qm9, file, smiles)"]),
    "path-missing": ("smiles", None, "", {}, ["data: source 'smiles' needs key 'path'"]),
    "unknown-key": ("smiles", "m.csv", SMILES_CSV, {"max_atom": 9},
                    ["data: unknown key 'max_atom' (known: source, path, max_atoms"]),
    "max-atoms-text": ("smiles", "m.csv", SMILES_CSV, {"max_atoms": "ten"},
                       ["data: max_atoms must be a whole number ≥ 1, not 'ten'"]),
    "max-atoms-zero": ("smiles", "m.csv", SMILES_CSV, {"max_atoms": 0},
                       ["data: max_atoms must be a whole number ≥ 1, not 0"]),
    "max-per-split-fraction": ("smiles", "m.csv", SMILES_CSV, {"max_per_split": 1.5},
                               ["data: max_per_split must be a whole number ≥ 1, not 1.5"]),
    "seed-negative": ("smiles", "m.csv", SMILES_CSV, {"seed": -1},
                      ["data: seed must be a whole number ≥ 0, not -1"]),
    "file-2d-records": ("file", "m.sdf", ETHANOL + FLAT * 4, {},
                        ["m.sdf: record 2 ('flat'): 2D coordinates", "the generator learns 3D "
                         "geometry: give 3D coordinates, or SMILES (data source smiles)"]),
    "file-mol2": ("file", "m.mol2", "@<TRIPOS>MOLECULE\n", {}, ["unsupported molecule file"]),
    "file-bad-xyz": ("file", "m.xyz", WATER * 3 + WATER.replace("0.757 -0.467", "0.757"), {},
                     ["m.xyz: record 4 ('water'): line 19: atom 2 of 3"]),
    "file-two-molecules": ("file", "m.sdf", ETHANOL + METHANE, {},
                           ["m.sdf: 2 molecules; preparing needs at least 4"]),
}  # fmt: skip


def prepare_argv(params, out):
    return ["prepare", "--domain", "molecule", "--params", json.dumps(params), "--out-dir", out]


@pytest.mark.parametrize("case", PREPARE_CASES)
def test_bad_molecule_data(tmp_path, capfd, case):
    source, name, content, settings, fragments = PREPARE_CASES[case]
    params = {"source": source} | settings
    inputs = []
    if name is not None:
        inputs = [write(tmp_path / name, content)]
        params["path"] = str(inputs[0])
    out = tmp_path / "data"
    assert_clean_error(capfd, prepare_argv(params, out), *fragments, outputs=[out], keep=inputs)


def test_file_source_as_a_folder(tmp_path, capfd):
    folder = tmp_path / "mols"
    folder.mkdir()
    params = {"source": "file", "path": str(folder)}
    out = tmp_path / "data"
    assert_clean_error(capfd, prepare_argv(params, out), f"{folder}: is a directory",
                       outputs=[out], keep=[folder])  # fmt: skip


def test_failed_prepare_leaves_an_earlier_set_as_it_was(tmp_path, capfd, monkeypatch):
    """All or nothing: a re-run that fails after writing a split leaves neither a new file nor
    a mix of old and new splits."""
    table = write(tmp_path / "m.csv", SMILES_CSV)
    out = tmp_path / "data"
    assert run(prepare_argv({"source": "smiles", "path": str(table)}, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json", "manifest.json", "test.npz", "train.npz", "train_smiles.txt", "valid.npz"
    ]  # fmt: skip
    save, written = data.save_split, []

    def full_disk_after_one_split(path, *args, **kwargs):
        if written:
            raise UserError(f"{path}: disk full (simulated)")
        written.append(path)
        save(path, *args, **kwargs)

    monkeypatch.setattr(data, "save_split", full_disk_after_one_split)
    params = {"source": "smiles", "path": str(table), "seed": 3}
    assert_clean_error(capfd, prepare_argv(params, out), "valid.npz: disk full", keep=[out, table])
    assert written and not list(out.glob(".*"))  # the staged split is gone as well


def test_sd_fields_numeric_in_some_records_are_no_property(tmp_path, capfd):
    records = [molblock(s, s, fields={"logp": i, "activity": "n/a" if i == 2 else i + 0.5})
               for i, s in enumerate(["CCO", "CC", "CN", "CO"])]  # fmt: skip
    path = write(tmp_path / "m.sdf", "".join(records))
    out = tmp_path / "data"
    assert run(prepare_argv({"source": "file", "path": str(path)}, out)) == 0
    _, columns = data.load_split(out / "train.npz")
    assert "logp" in columns and "activity" not in columns


# ----- python -m molgen metrics -------------------------------------------------------------
def assert_clean_molgen_error(capfd, argv, *fragments, keep=()):
    """``python -m molgen argv``: exit 2, one stderr line with every fragment, nothing on
    stdout, inputs kept."""
    before = snapshot(keep)
    capfd.readouterr()
    try:
        status = molgen_main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        status = exit_.code
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and not captured.out, captured.err
    assert lines[0].startswith("python -m molgen metrics: error: "), lines[0]
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]
    assert snapshot(keep) == before


# case → (input content or None for a missing file, extra arguments, fragments)
METRICS_CASES = {
    "input-missing": (None, [], ["m.xyz: file not found"]),
    "input-empty": ("", [], ["m.xyz: empty file"]),
    "input-binary": (PNG, [], ["m.xyz: line 1: byte 0x89 is not UTF-8"]),
    "input-bad-record": (WATER.replace("H 0.000 0.757", "Zz 0.000 0.757"), [],
                         ["record 1 ('water')", "unknown element 'Zz'"]),
    "n-zero": (WATER, ["--n", "0"], ["argument --n: must be a whole number ≥ 1, not '0'"]),
    "n-not-a-number": (WATER, ["--n", "ten"], ["argument --n: must be a whole number ≥ 1"]),
    "n-above-the-molecules": (WATER * 2, ["--n", "5"], ["--n 5:", "m.xyz has only 2 molecules"]),
    "seed-negative": (WATER, ["--seed", "-1"], ["argument --seed: must be a whole number ≥ 0"]),
    "train-smiles-missing": (WATER, ["--train-smiles", "@/none.txt"], ["none.txt: file not found"]),
    "train-smiles-empty": (WATER, ["--train-smiles", "@/t.txt"], ["t.txt: empty file"]),
    "train-smiles-csv": (WATER, ["--train-smiles", "@/t.csv"],
                         ["t.csv: line 1: expected one SMILES per line, got 'smiles,score'"]),
}  # fmt: skip
TRAIN_FILES = {"t.txt": "", "t.csv": "smiles,score\nCCO,1\n"}


@pytest.mark.parametrize("case", METRICS_CASES)
def test_bad_metrics_input(tmp_path, capfd, case):
    content, extra, fragments = METRICS_CASES[case]
    path = tmp_path / "m.xyz"
    if content is not None:
        write(path, content)
    for name, text in TRAIN_FILES.items():
        write(tmp_path / name, text)
    extra = [a.replace("@", str(tmp_path)) for a in extra]
    argv = ["metrics", "--input", path, *extra]
    assert_clean_molgen_error(capfd, argv, *fragments, keep=[tmp_path])


def test_metrics_usage_errors_and_2d_input(tmp_path, capfd):
    assert_clean_molgen_error(capfd, ["metrics"], "one of the arguments --input --dataset")
    path = write(tmp_path / "m.sdf", FLAT)
    assert_clean_molgen_error(capfd, ["metrics", "--input", path],
                              "record 1 ('flat'): 2D coordinates", "the metrics read 3D geometry",
                              keep=[path])  # fmt: skip


# ----- what must work --------------------------------------------------------------------------
def test_embed_scores_2d_records_in_3d_and_records_it(tmp_path, capfd):
    """Scored as drawn, the flat ethanol's xTB gap was 1.0 eV; embedded it is ethanol's."""
    path = write(tmp_path / "m.sdf", molblock("CCO", "ethanol 3D") + FLAT)
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "molecule", "--input", path, "--oracles", "xtb:gap,qed",
            "--out", out, "--embed"]  # fmt: skip
    assert run(argv) == 0
    table = pd.read_csv(out)
    gap_3d, gap_embedded = table["xtb:gap"]
    assert gap_embedded == pytest.approx(12.53, abs=0.05)  # seeded ETKDG + MMFF geometry
    assert gap_3d == pytest.approx(gap_embedded, abs=0.5)
    assert table["qed"][0] == table["qed"][1]
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["embedded"] == ["flat"] and manifest["params"]["embed"] is True


def test_descriptors_of_a_2d_record_use_its_own_bonds(tmp_path, capfd):
    """Bonds perceived from a drawing give aspirin 0.556 and leucine 0.462."""
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "CC(C)CC(N)C(=O)O"]
    path = write(tmp_path / "m.sdf", "".join(molblock(s, s, flat=True) for s in smiles))
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "molecule", "--input", path, "--oracles", "qed", "--out", out]
    assert run(argv) == 0
    expected = [QED.qed(Chem.MolFromSmiles(s)) for s in smiles]
    np.testing.assert_allclose(pd.read_csv(out)["qed"], expected, atol=1e-9)


def test_one_bad_molecule_among_good_ones_is_nan(tmp_path, capfd):
    """Fused carbons and a lone hydrogen atom (no LUMO) fail; the run goes on."""
    clash = "2\nclash\nC 0 0 0\nC 0 0 0.05\n"
    path = write(tmp_path / "m.xyz", WATER + clash + "1\nhydrogen atom\n1 0 0 0\n")
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "molecule", "--input", path, "--oracles", "xtb:gap,qed",
            "--out", out]  # fmt: skip
    assert run(argv) == 0
    table = pd.read_csv(out)
    assert np.isfinite(table["xtb:gap"][0]) and table["xtb:gap"][1:].isna().all()
    assert np.isfinite(table["qed"][0]) and np.isnan(table["qed"][1])


def test_record_ids_and_sd_fields_are_kept(tmp_path, capfd):
    """``scores.csv`` names each design by its record (``design_<i>`` when it has no name);
    ``--designs-out`` keeps the input's bonds and SD fields as written, a score named like a
    field is written as ``score_<name>``."""
    path = write(tmp_path / "m.sdf", molblock("CCO", "ethanol", fields={"activity": "3.50",
                                                                        "qed": "0.9"})
                 + molblock("CC#N"))  # fmt: skip
    out, scored = tmp_path / "scores.csv", tmp_path / "scored.sdf"
    argv = ["score", "--domain", "molecule", "--input", path, "--oracles",
            "qed,num_heavy_atoms", "--out", out, "--designs-out", scored]  # fmt: skip
    assert run(argv) == 0
    table = pd.read_csv(out)
    assert [d.split()[0] for d in table["design"]] == ["ethanol", "design_1"]
    first, second = Chem.SDMolSupplier(str(scored), sanitize=False, removeHs=False)
    assert first.GetProp("activity") == "3.50" and first.GetProp("qed") == "0.9"
    assert float(first.GetProp("score_qed")) == pytest.approx(table["qed"][0], abs=1e-6)
    assert first.GetProp("num_heavy_atoms") == "3" and not second.HasProp("score_qed")
    assert second.GetProp("_Name") == "design_1" and first.GetNumBonds() == 8
    xyz = write(tmp_path / "m.xyz", WATER + WATER.replace("water", ""))
    assert run(score_argv(xyz, "qed", tmp_path / "x")) == 0
    names = [d.split()[0] for d in pd.read_csv(tmp_path / "x/scores.csv")["design"]]
    assert names == ["water", "design_1"]


def test_xyz_atomic_numbers_are_elements(tmp_path):
    from molgen.molecule import read_xyz

    path = write(tmp_path / "m.xyz", WATER.replace("O 0", "8 0").replace("H 0", "1 0"))
    assert read_xyz(path)[0].symbols == ["O", "H", "H"]


def test_linear_molecule_in_the_plane_z_0_is_3d(tmp_path, capfd):
    """Diacetylene on the x axis lies in every plane: a geometry, not a drawing."""
    from molgen.molecule import Molecule, bare_rdkit

    x = np.cumsum([0.0, 1.06, 1.21, 1.37, 1.21, 1.06])
    mol = bare_rdkit(Molecule([1, 6, 6, 6, 6, 1], np.stack([x, 0 * x, 0 * x], 1)))
    path = write(tmp_path / "m.sdf", Chem.MolToMolBlock(mol) + "$$$$\n")
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "molecule", "--input", path, "--oracles", "stability:molecule",
            "--out", out]  # fmt: skip
    assert run(argv) == 0
    assert pd.read_csv(out)["stability:molecule"].notna().all()
