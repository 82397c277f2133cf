"""Shell safety of the rules: a results_dir with spaces, quotes and shell metacharacters reaches
every stage as one argument and executes nothing (Snakemake dry run, then every printed command
run by bash against a stub ``rewarddiff`` that records its arguments)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from rewarddiff.finetune import METHODS
from rewarddiff.sheet import plan, read_sheet

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = "res ults;touch INJECTED;$(touch INJECTED)`touch INJECTED`'q\"&|"
# options whose values are files or folders below the results folder
PATH_OPTIONS = {"--out-dir", "--data-dir", "--pretrained", "--reward-model", "--ft-reward-model",
                "--model", "--selected", "--out", "--input", "--designs-out", "--metrics-out",
                "--results-dir", "--metrics"}  # fmt: skip
STUB = "#!/bin/sh\nprintf '%s\\0' \"$@\"\n"  # prints its arguments, NUL-separated


CONFIG = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
CONFIG |= {"results_dir": RESULTS, "campaigns": str(ROOT / ".test/config/campaigns.tsv")}


def dry_run_commands(tmp_path: Path) -> list[str]:
    """The shell commands ``snakemake -n --printshellcmds`` prints for the tiny config."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    result = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory",
         str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1",
         "--dry-run", "--printshellcmds"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    prefix = "Shell command: "
    lines = (result.stdout + result.stderr).splitlines()
    commands = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    return [c for c in commands if c != "None"]  # rule all has no command


def options(args: list[str]) -> dict[str, list[str]]:
    """``--option value…`` of a stage's arguments (after ``rewarddiff <stage>``)."""
    out, current = {}, None
    for arg in args:
        if arg.startswith("--"):
            current = out.setdefault(arg, [])
        else:
            current.append(arg)
    return out


def test_results_dir_with_shell_metacharacters_is_one_argument_everywhere(tmp_path):
    commands = dry_run_commands(tmp_path)
    # the wildcard constraint results=re.escape(RESULTS) matches: every job of the plan is there
    sheet = read_sheet(CONFIG["campaigns"], CONFIG["objectives"], deep=False)
    assert len(commands) == len(plan(sheet, RESULTS))
    stages = set()
    for command in commands:
        *args, redirect, log, stderr = shlex.split(command)
        assert (args[0], redirect, stderr) == ("rewarddiff", ">", "2>&1"), command
        assert log.startswith(f"{RESULTS}/logs/"), command
        stages.add(args[1])
        for option, values in options(args[2:]).items():
            assert values, (option, command)
            if option in PATH_OPTIONS:
                assert all(v == RESULTS or v.startswith(f"{RESULTS}/") for v in values), command
            else:  # --params and the other JSON arrive unquoted once, as JSON
                assert all(RESULTS not in v for v in values), (option, command)
    assert stages == {"prepare", "train-reward", "pretrain", "finetune", "sample", "score",
                      "report"}  # fmt: skip
    # the rules ask the method registry: selections are copied, n_samples reaches who takes it
    for command in commands:
        args = shlex.split(command)[:-3]
        given = options(args[2:])
        if args[1] == "sample" and "/campaigns/" in given["--out"][0]:
            method = Path(given["--out"][0]).parts[-3]
            made = method in METHODS and METHODS[method].produces == "selection"
            assert ("--selected" in given) == made, command
        if args[1] == "finetune":
            spec = METHODS[given["--method"][0]]
            assert ("n_samples" in json.loads(given["--params"][0])) == spec.takes_n_samples
    assert any("--selected" in command for command in commands)

    # bash runs every command against a stub: the arguments arrive as parsed, nothing else runs
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/rewarddiff").write_text(STUB)
    (tmp_path / "bin/rewarddiff").chmod(0o755)
    for command in commands:
        (tmp_path / shlex.split(command)[-2]).parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    script = "set -e\n" + "\n".join(commands) + "\n"
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True)
    assert result.returncode == 0, result.stderr
    for command in commands:
        *args, _, log, _ = shlex.split(command)
        assert (tmp_path / log).read_bytes().split(b"\0")[:-1] == [a.encode() for a in args[1:]]
    assert not list(tmp_path.rglob("INJECTED")), "a shell metacharacter was executed"
