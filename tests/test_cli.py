"""CLI: one-line errors with exit code 2 (no traceback), oracles listing, scoring user FASTA."""

import subprocess
import sys

import pandas as pd
import pytest


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "rewarddiff", *args], capture_output=True, text=True, cwd=cwd
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def score(fasta, oracles, out):
    return cli(
        "score", "--domain", "dna", "--input", str(fasta), "--oracles", oracles, "--out", str(out)
    )


def test_score_user_fasta(tmp_path):
    fasta = tmp_path / "designs.fasta"
    fasta.write_text(">a\nGGGGCCCC\n>b\nATATATAT\n")
    out = tmp_path / "scores.csv"
    result = score(fasta, "gc_content,jaspar_motif:MA0114", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert table["gc_content"].tolist() == [1.0, 0.0]
    assert list(table.columns) == ["design", "gc_content", "jaspar_motif:MA0114"]


def test_score_bad_fasta_and_unknown_oracle(tmp_path):
    fasta = tmp_path / "bad.fasta"
    fasta.write_text(">ok\nACGT\n>broken\nACNT\n")
    out = tmp_path / "scores.csv"
    result = score(fasta, "gc_content", out)
    assert_one_line_error(result, str(fasta), "'broken'", "invalid letter 'N'")
    assert not out.exists()
    fasta.write_text(">ok\nACGT\n")
    result = score(fasta, "gc_contnet", out)
    assert_one_line_error(result, "unknown oracle 'gc_contnet'")
    assert not out.exists()


def test_config_failing_schema(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "campaigns: c.tsv\nobjectives: {}\ndomains:\n  dna:\n    data: {}\n"
        "    reward: {}\n    pretrain: {network: {}, train: {}}\n"
        "    finetune: {}\n    evaluation: {loglik_num_t: 0}\n"
    )
    result = cli(
        "pretrain",
        "--domain",
        "dna",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path),
        "--out-dir",
        str(tmp_path / "out"),
    )
    assert_one_line_error(result, str(config), "domains.dna.evaluation.loglik_num_t")


def test_prepare_user_fasta_labels_unknown_id(tmp_path):
    fasta, labels = tmp_path / "x.fasta", tmp_path / "labels.tsv"
    fasta.write_text(">s1\n" + "A" * 200 + "\n")
    labels.write_text("id\tlabel\ns1\tHepG2\ns9\tK562\n")
    params = f'{{"source": "fasta", "fasta": "{fasta}", "labels": "{labels}"}}'
    result = cli(
        "prepare", "--domain", "dna", "--params", params, "--out-dir", str(tmp_path / "data")
    )
    assert_one_line_error(result, str(labels), "unknown id 's9'")
    assert not (tmp_path / "data" / "train.fasta").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("oracles", "--domain", "proteins"), "unknown domain 'proteins'"),
    ],
)
def test_unknown_domain(args, fragment):
    assert_one_line_error(cli(*args), fragment)


def test_oracles_listing():
    result = cli("oracles", "--domain", "dna")
    assert result.returncode == 0
    for name in ("gc_content", "jaspar_motif:<matrix id>", "celltype_prob:<cell>"):
        assert name in result.stdout


def test_pretraining_is_reproducible_across_processes(tmp_path):
    """torch seeds each process differently by default; the stage must seed initialisation."""
    fasta = tmp_path / "data/train.fasta"
    fasta.parent.mkdir()
    seqs = ["".join("ACGT"[(i * 7 + j * j) % 4] for j in range(200)) for i in range(40)]
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    (tmp_path / "data/labels.tsv").write_text(
        "id\tlabel\tsplit\tchr\thalf\n"
        + "".join(f"s{i}\tHepG2\ttrain\tchr3\t0\n" for i in range(40))
    )
    params = '{"network": {"hidden": 8, "layers": 1}, "train": {"steps": 3, "batch_size": 8}}'
    for run in ("a", "b"):
        result = cli("pretrain", "--domain", "dna", "--params", params,
                     "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / run),
                     "--stop-at-step", "3")  # fmt: skip
        assert result.returncode == 0, result.stderr
    logs = [pd.read_csv(tmp_path / run / "train_log.partial.csv") for run in "ab"]
    assert logs[0]["loss"].tolist() == logs[1]["loss"].tolist()


def test_finetune_help_lists_one_line_per_method():
    from rewarddiff.finetune import METHODS

    result = cli("finetune", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for method, spec in METHODS.items():
        assert f"  {method:10s} {spec.help}" in lines, method
