"""Integration: the Snakemake workflow end to end on a tiny config, and resume after a kill."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from rewarddiff.finetune import METHODS

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


MANIFEST_KEYS = {"stage", "inputs", "params", "config_hash", "seed", "versions", "git_commit",
                 "host", "device", "wall_time_s"}  # fmt: skip


def snakemake(tmp_path, *extra):
    return [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
            "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
            "--cores", "2", "--profile", str(ROOT / "workflow/profiles/default"),
            *extra]  # fmt: skip


def interrupt_when(cmd, env, log, ready, sig) -> None:
    """Run ``cmd`` in its own process group until ``ready()``, then send ``sig`` to the whole
    group (Snakemake and its jobs, as Ctrl-C or a killed session would)."""

    def default_sigint():  # a background shell starts its children with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=default_sigint)  # fmt: skip
        deadline = time.time() + 900
        while proc.poll() is None and not ready() and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, f"finished before the interruption point; see {log}"
        os.killpg(proc.pid, sig)
        proc.wait(timeout=300)


def recorded_done(workdir: Path) -> set[str]:
    """The outputs whose job Snakemake recorded as ended: a metadata record (written at the
    job's start with ``incomplete`` true, rewritten at its end) that is complete, and no
    marker in ``.snakemake/incomplete``. Both name files by the URL-safe base64 of the path,
    split into folders of 255 characters."""

    def records(folder: Path) -> dict[str, Path]:
        files = (f for f in folder.rglob("*") if f.is_file()) if folder.exists() else ()
        return {base64.urlsafe_b64decode("".join(f.relative_to(folder).parts)).decode(): f
                for f in files}  # fmt: skip

    incomplete = records(workdir / ".snakemake/incomplete")
    ended = {path for path, f in records(workdir / ".snakemake/metadata").items()
             if not json.loads(f.read_text()).get("incomplete", True)}  # fmt: skip
    return ended - set(incomplete)


def test_snakemake_end_to_end_tiny(tmp_path):
    """The tiny campaign of every domain and method, interrupted twice on the way (Ctrl-C,
    then SIGKILL of Snakemake and its jobs): re-running finishes without redoing what had
    finished, and every stage leaves its manifest. The work folder's name carries spaces and
    shell metacharacters: every path reaches the stages intact and nothing is executed."""
    (tmp_path := tmp_path / "work dir;touch INJECTED;'q").mkdir()
    config = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["campaigns"] = str(ROOT / ".test/config/campaigns.tsv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "snakemake.log"

    def scored():  # campaign runs whose score job has finished
        return list((tmp_path / "results").glob("*/campaigns/*/*/seed*/metrics.json"))

    finished = {}
    for sig, count in ((signal.SIGINT, 2), (signal.SIGKILL, 8)):
        interrupt_when(snakemake(tmp_path), env, log, lambda c=count: len(scored()) >= c, sig)
        # the runs whose score job Snakemake had recorded as ended (an interrupted job may
        # leave all its files, or some, and Snakemake rightly redoes it)
        done = recorded_done(tmp_path)
        finished |= {p: p.stat().st_mtime_ns for p in scored() if str(p) in done}
    assert finished
    unlock = subprocess.run(snakemake(tmp_path, "--unlock"), capture_output=True, env=env)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    result = subprocess.run(snakemake(tmp_path), capture_output=True, text=True, env=env,
                            timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "results/report"
    summary = pd.read_csv(report / "summary.csv")
    methods = summary.groupby("domain")["method"].apply(set).to_dict()
    every = set(METHODS) | {"pretrained"}  # every method id
    assert methods["dna"] == methods["molecule"] == methods["protein"] == every
    assert methods["shape"] == every
    budgets = summary[summary["method"] != "pretrained"].groupby("domain")["oracle_calls"]
    # equal per campaign
    assert budgets.unique().to_dict() == {"dna": [32], "molecule": [16], "protein": [32],
                                          "shape": [16]}  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone
    text = (report / "summary.md").read_text()
    assert "| tiny | rgdm |" in text and "reward_eval_mean" in text
    assert "| tinymol | rgdm |" in text and "molecule_stability" in text
    assert "nna_cd →0.5" in text and "mmd_emd ↓" in text and "emd_method: exact" in text
    assert "composition_jsd ↓" in text and "AUROC" in text and "fine-tuned on cpu" in text
    assert "## Best designs per objective" in text
    best = pd.read_csv(report / "best_designs.csv")
    assert set(best["campaign"]) == {"tiny", "tinymol", "tinyamp", "tinyshape"}
    assert all(Path(f).exists() for f in best["file"])
    for stem in ("dna_tiny", "molecule_tinymol", "protein_tinyamp", "shape_tinyshape"):
        for plot in ("reward_hist", "reward_vs_loglik", "training", "designs"):
            assert (report / f"plots/{stem}_{plot}.png").stat().st_size > 1000, (stem, plot)
    html = subprocess.run(snakemake(tmp_path, "--report", str(tmp_path / "report.html")),
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert html.returncode == 0, html.stderr[-2000:]
    assert (tmp_path / "report.html").stat().st_size > 100_000
    # every directory holding a stage's output has its manifest
    outputs = ("model.safetensors", "metrics.json", "scores.csv", "summary.md")
    dirs = {p.parent for name in outputs for p in (tmp_path / "results").rglob(name)}
    dirs |= set((tmp_path / "results").glob("*/data"))
    assert len(dirs) == 36 + 4 + 8 + 4 + 1  # runs, data, reward copies, pretrained, report
    for d in dirs:
        manifest = json.loads((d / "manifest.json").read_text())
        assert MANIFEST_KEYS <= set(manifest), (d, MANIFEST_KEYS - set(manifest))
    for scores in (tmp_path / "results").rglob("scores.csv"):
        assert json.loads(scores.with_suffix(".manifest.json").read_text())["stage"] == "score"
    run = tmp_path / "results/dna/campaigns/tiny/rgdm/seed0"
    scores = pd.read_csv(run / "scores.csv")
    assert len(scores) == 16 and {"reward_ft", "reward_eval", "gc_content"} <= set(scores)
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("target_fraction", "kmer3_pearson", "loglik_pretrained", "memorisation"):
        assert key in metrics
    ctrl = json.loads((run.parent.parent / "ctrl/seed0/metrics.json").read_text())
    assert 0 <= ctrl["label_accuracy"] <= 1 and len(ctrl["label_eval"]["cell_type"]["f1"]) == 4
    sweep = pd.read_csv(run.parent.parent / "rcgdm/seed0/train_log.csv")
    assert sweep["target_z"].dropna().tolist() == [0.0, 2.0, 2.0]  # sweep, then the target
    mol = tmp_path / "results/molecule/campaigns/tinymol/rgdm/seed0"
    mol_scores = pd.read_csv(mol / "scores.csv")
    assert len(mol_scores) == 8 and {"xtb:gap", "qed", "property:alpha"} <= set(mol_scores)
    mol_ctrl = json.loads((mol.parent.parent / "ctrl/seed0/metrics.json").read_text())
    # two conditions at once (alpha and gap bins), each evaluated by the eval regressor
    assert mol_ctrl["label_eval"]["alpha_bin"]["classes"][-1].startswith("alpha >")
    assert mol_ctrl["label_eval"]["gap_bin"]["classes"][-1].startswith("gap >")
    mol_metrics = json.loads((mol / "metrics.json").read_text())
    for key in ("atom_stability", "molecule_stability", "validity", "novelty", "loglik_pretrained"):
        assert key in mol_metrics
    assert (mol / "designs.sdf").read_text().count("$$$$") == 8
    assert "<xtb:gap>" in (mol / "scored.sdf").read_text()  # every score as an SD property
    # fine-tuning scratch files are gone once the declared outputs exist
    campaigns = list((tmp_path / "results").glob("*/campaigns"))
    assert len(campaigns) == 4
    for scratch in ("checkpoint.safetensors", "train_log.partial.csv"):
        assert not [p for c in campaigns for p in c.rglob(scratch)]
    assert not list(tmp_path.parent.rglob("INJECTED")) and not (ROOT / "INJECTED").exists()


def test_killed_pretraining_resumes(tmp_path):
    data = tmp_path / "data"
    subprocess.run(
        [
            str(BIN / "rewarddiff"),
            "prepare",
            "--domain",
            "dna",
            "--params",
            '{"max_per_split": 200}',
            "--out-dir",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    params = json.dumps(
        {
            "network": {"hidden": 8, "layers": 1},
            "train": {"steps": 4000, "batch_size": 8, "checkpoint_every": 20},
        }
    )
    cmd = [
        str(BIN / "rewarddiff"),
        "pretrain",
        "--domain",
        "dna",
        "--threads",
        "1",
        "--params",
        params,
        "--data-dir",
        str(data),
        "--out-dir",
        str(tmp_path / "pre"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt = tmp_path / "pre/checkpoint.safetensors"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "pre/model.safetensors").exists()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "resumed from step" in result.stdout
    log = pd.read_csv(tmp_path / "pre/train_log.csv")
    assert log["step"].is_monotonic_increasing and log["step"].iloc[-1] == 4000
