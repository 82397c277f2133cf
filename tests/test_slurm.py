"""Live SLURM: a tiny campaign through `snakemake --executor slurm` on a one-node cluster.

tests/cluster/start_slurm.sh installs slurm-wlm + munge (apt) when missing and starts munged,
slurmctld and slurmd on this host; the campaign runs with a profile derived from
workflow/profiles/slurm (every key kept; partition, account and sizes swapped for ones that fit the
test node) and must produce the same files and the same metrics as the same campaign run locally.
Runs only as root with apt-get (CI); skipped with the reason otherwise. Once those hold, a cluster
that does not start is a failure, with the daemon logs in the message.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER = ROOT / "tests/cluster"
PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
STATE = Path(os.environ.get("RD_SLURM_STATE", "/tmp/rewarddiff-slurm"))
APT_TIMEOUT = 600  # apt-get update + install, worst case
START_DEADLINE = 60  # daemons up and node idle
RUN_TIMEOUT = 600  # one snakemake run (tiny campaign: ~1-2 min)
# the subset of .test/config/campaigns.tsv run on both executors
CAMPAIGN, METHODS = "tiny", ("best_of_n", "rgdm")
# bookkeeping, not results: differ between any two runs
VOLATILE_KEY = re.compile(
    r"wall|elapsed|seconds|(^|_)(time|host|date|device|git_commit|versions?)(_|$)"
)


def _skip(reason):
    warnings.warn(f"tests/test_slurm.py skipped: {reason}", stacklevel=2)
    pytest.skip(reason)


def _daemon_logs(lines=80):
    out = []
    for name in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out", "slurmd.out"):
        log = STATE / "logs" / name
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"===== {log} (last {len(tail)} lines) =====\n" + "\n".join(tail))
    return "\n".join(out) or f"(no daemon logs under {STATE}/logs)"


def _run(cmd, timeout, **kw):
    """subprocess.run in its own session; on timeout the whole process group is killed."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        **kw,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake + the sbatch/squeue it started
        out, err = proc.communicate()
        pytest.fail(
            f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{out[-3000:]}\n--- stderr ---\n{err[-6000:]}\n"
            f"--- squeue ---\n{_squeue_text()}\n{_daemon_logs()}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _squeue_text():
    try:
        return subprocess.run(
            ["squeue", "--states=all", "-o", "%i %j %T %k %r"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(squeue failed: {e})"


@pytest.fixture(scope="module")
def slurm_cluster():
    if sys.platform != "linux":
        _skip("the live-SLURM test needs Linux")
    if os.geteuid() != 0:
        _skip("the live-SLURM test needs root (installs slurm-wlm/munge, writes /etc/slurm)")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        _skip("the live-SLURM test needs apt-get to install slurm-wlm and munge")
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(CLUSTER / "start_slurm.sh")],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=2 * APT_TIMEOUT + START_DEADLINE + 60,
            env=os.environ
            | {
                "RD_SLURM_STATE": str(STATE),
                "RD_SLURM_DEADLINE": str(START_DEADLINE),
                "RD_SLURM_APT_TIMEOUT": str(APT_TIMEOUT),
            },
        )
    except subprocess.TimeoutExpired as e:
        result = subprocess.CompletedProcess(e.cmd, "timeout", e.stdout or "", e.stderr or "")
    try:
        if result.returncode != 0:
            pytest.fail(
                f"tests/cluster/start_slurm.sh failed (exit {result.returncode})\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-12000:]}\n{_daemon_logs()}"
            )
        print(result.stdout, f"cluster up in {time.monotonic() - started:.1f} s")
        yield STATE
    finally:
        subprocess.run(
            ["bash", str(CLUSTER / "stop_slurm.sh")],
            env=os.environ | {"RD_SLURM_STATE": str(STATE)},
            capture_output=True,
            timeout=120,
        )


def _test_profile(dst):
    """workflow/profiles/slurm with every key kept, sized for the one-node test cluster."""
    profile = yaml.safe_load(PROFILE.read_text())  # resolves the `<<: *gpu_job` merges
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # no accounting DB on the test cluster
    resources = [profile["default-resources"], *profile["set-resources"].values()]
    assert all("--gres" not in str(r.get("slurm_extra", "")) for r in resources)
    for rule in ("train_reward", "pretrain", "finetune"):
        assert profile["set-resources"][rule]["gpu"] >= 1  # training rules ask for a GPU
    test_node = {"slurm_partition": "debug", "runtime": 15, "mem_mb": 2000, "cpus_per_task": 1}
    profile["default-resources"] |= test_node | {"slurm_account": "rdtest"}
    for res in profile["set-resources"].values():
        res.update(test_node)
        if "gpu" in res:
            res["gpu"] = 0  # no GPU on the test node
        res.pop("gpu_model", None)
    # one thread per tool, as in the local run, so both runs compute the same numbers
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    # two packed score jobs per SLURM job (the user profile packs more than a 2-CPU node holds)
    profile["group-components"] = {g: 2 for g in profile["group-components"]}
    profile |= {
        "jobs": 4,
        "retries": 0,
        "latency-wait": 10,
        "slurm-init-seconds-before-status-checks": 5,  # the default 40 s triples the run time
        "slurm-keep-successful-logs": True,  # evidence that every job went through SLURM
    }
    dst.mkdir(parents=True)
    (dst / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dst


def _setup_run(workdir):
    """A work directory with the tiny config restricted to the CAMPAIGN × METHODS rows."""
    workdir.mkdir()
    sheet = pd.read_csv(ROOT / ".test/config/campaigns.tsv", sep="\t", dtype=str)
    rows = sheet[(sheet["campaign"] == CAMPAIGN) & sheet["method"].isin(METHODS)]
    assert len(rows) == len(METHODS)
    rows.to_csv(workdir / "campaigns.tsv", sep="\t", index=False)
    config = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
    config["results_dir"] = str(workdir / "results")
    config["campaigns"] = str(workdir / "campaigns.tsv")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    base = ["snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return [str(BIN / base[0]), *base[1:], "--configfile", str(workdir / "config.yaml")]


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    return env | {"PATH": f"{BIN}{os.pathsep}{env['PATH']}"}


def _outputs(results):
    skip = {"logs", "benchmarks"}
    return sorted(
        str(p.relative_to(results))
        for p in results.rglob("*")
        if p.is_file() and p.relative_to(results).parts[0] not in skip
    )


def _numbers(obj, prefix=""):
    """Numeric leaves of a JSON document by path, without bookkeeping keys."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not VOLATILE_KEY.search(str(k)):
                out |= _numbers(v, f"{prefix}/{k}")
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out |= _numbers(v, f"{prefix}[{i}]")
        return out
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return {}
    return {prefix: float(obj)}


def _close(a, b):
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def test_campaign_on_live_slurm_matches_local(slurm_cluster, tmp_path):
    env = _env()
    profile = _test_profile(tmp_path / "profile")

    local = _setup_run(tmp_path / "local")
    slurm = _setup_run(tmp_path / "slurm")

    def timed(cmd):
        started = time.monotonic()
        return _run(cmd, RUN_TIMEOUT, env=env), time.monotonic() - started

    # the local reference run overlaps the SLURM run, which mostly waits between status checks
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(
            timed, [*local, "--cores", "2", "--profile", str(ROOT / "workflow/profiles/default")]
        )
        res, slurm_s = timed([*slurm, "--executor", "slurm", "--workflow-profile", str(profile)])
        local_res, local_s = local_run.result()
    (tmp_path / "slurm/snakemake.log").write_text(res.stderr)
    assert res.returncode == 0, (
        f"SLURM run failed (exit {res.returncode}):\n{res.stderr[-8000:]}\n"
        f"--- squeue ---\n{_squeue_text()}\n{_daemon_logs()}"
    )
    assert local_res.returncode == 0, f"local run failed:\n{local_res.stderr[-4000:]}"
    print(f"local run {local_s:.0f} s, SLURM run {slurm_s:.0f} s")

    # every job went through SLURM: one sbatch log per job, all COMPLETED in squeue's history
    log = res.stderr
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", log)
    assert submitted, f"no SLURM submissions in the snakemake log:\n{log[-4000:]}"
    assert "Falling back to 'sacct'" not in log  # MinJobAge in slurm.conf keeps squeue usable
    slurm_logs = tmp_path / "slurm/.snakemake/slurm_logs"
    rules_run = {p.name for p in slurm_logs.iterdir()} if slurm_logs.is_dir() else set()
    expected = {"prepare_data", "train_reward", "pretrain", "finetune", "sample", "report"}
    assert {f"rule_{r}" for r in expected} <= rules_run, rules_run
    assert any(r.startswith("group_scoring") for r in rules_run), rules_run  # packed scores
    history = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    states = dict(zip(history[::2], history[1::2]))
    assert {states.get(j) for j in submitted} == {"COMPLETED"}, (submitted, states)

    # the same files as the local run, and the same numbers (same seeds)
    local_results, slurm_results = tmp_path / "local/results", tmp_path / "slurm/results"
    files = _outputs(local_results)
    assert f"dna/campaigns/{CAMPAIGN}/rgdm/seed0/metrics.json" in files
    assert _outputs(slurm_results) == files
    metrics = [f for f in files if f.endswith("metrics.json")]
    assert len(metrics) == len(METHODS) + 1 + 2  # runs + pretrained baseline + reward copies
    for name in metrics:
        want = _numbers(json.loads((local_results / name).read_text()))
        got = _numbers(json.loads((slurm_results / name).read_text()))
        assert want and got.keys() == want.keys(), name
        diff = {k: (want[k], got[k]) for k in want if not _close(want[k], got[k])}
        assert not diff, f"{name}: local vs SLURM differ: {diff}"
    keys = ["domain", "campaign", "method"]
    want = pd.read_csv(local_results / "report/summary.csv").sort_values(keys, ignore_index=True)
    got = pd.read_csv(slurm_results / "report/summary.csv").sort_values(keys, ignore_index=True)
    assert list(got.columns) == list(want.columns) and len(got) == len(want) == 1 + len(METHODS)
    for col in want.columns:
        if VOLATILE_KEY.search(col):
            continue
        if pd.api.types.is_numeric_dtype(want[col]):
            for a, b in zip(want[col].astype(float), got[col].astype(float)):
                assert _close(a, b), f"summary.csv column {col}: local {a} vs SLURM {b}"
        else:
            assert want[col].fillna("").tolist() == got[col].fillna("").tolist(), col
