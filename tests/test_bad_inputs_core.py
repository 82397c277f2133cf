"""Bad-input corpus of the stages themselves (any domain): arguments, objectives, method
settings, model files, output paths, broken oracles. Each case: exit 2, one line naming the
file or setting and the problem, no traceback, nothing written, the user's files untouched."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from badinput import assert_clean_error
from safetensors.torch import save_file

from rewarddiff.oracles.base import FunctionOracle, OracleError, OracleInfo
from rewarddiff.oracles.registry import register_oracle

FASTA = ">a\nGGGGCCCC\n>b\nATATATAT\n"


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "designs.fasta"
    path.write_text(FASTA)
    return path


def bad_models(folder):
    """Files a user may pass where a safetensors model belongs, with the expected fragment."""
    folder.mkdir(exist_ok=True)
    good = folder / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(good))
    cases = {
        "empty.safetensors": (b"", "not a readable safetensors checkpoint"),
        "garbage.safetensors": (bytes(range(256)) * 4, "not a readable safetensors checkpoint"),
        "truncated.safetensors": (good.read_bytes()[:-4], "not a readable safetensors"),
        "pickle.safetensors": (b"\x80\x04\x95" + b"\x00" * 64, "not a readable safetensors"),
        "no_config.safetensors": (good.read_bytes(), "without the JSON config"),
    }
    paths = {}
    for name, (data, fragment) in cases.items():
        (folder / name).write_bytes(data)
        paths[name] = (folder / name, fragment)
    paths["folder"] = (folder, "checkpoint not found (a folder)")
    paths["missing"] = (folder / "missing.safetensors", "not found")
    return paths


@pytest.mark.parametrize(
    "case", ["empty.safetensors", "garbage.safetensors", "truncated.safetensors",
             "pickle.safetensors", "no_config.safetensors", "folder", "missing"],
)  # fmt: skip
def test_unusable_reward_model_file(tmp_path, fasta, capsys, case):
    path, fragment = bad_models(tmp_path / "models")[case]
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "dna", "--input", fasta, "--oracles", "celltype_prob:HepG2",
            "--reward-model", path, "--out", out]  # fmt: skip
    assert_clean_error(capsys, argv, path, fragment, outputs=[out], keep=[fasta])


@pytest.mark.parametrize("case", ["garbage.safetensors", "no_config.safetensors", "folder"])
def test_unusable_pretrained_model_file(tmp_path, capsys, case):
    path, fragment = bad_models(tmp_path / "models")[case]
    out = tmp_path / "run"
    argv = ["finetune", "--domain", "dna", "--method", "best_of_n", "--objective",
            json.dumps({"reward": [{"oracle": "gc_content"}]}), "--pretrained", path,
            "--reward-model", path, "--out-dir", out]  # fmt: skip
    assert_clean_error(capsys, argv, path, fragment, outputs=[out])
    out = tmp_path / "designs.fasta"
    argv = ["sample", "--domain", "dna", "--model", path, "--n", "4", "--out", out]
    assert_clean_error(capsys, argv, path, fragment, outputs=[out])


def finetune_argv(tmp_path, objective=None, params=None, method="rgdm"):
    objective = objective if objective is not None else {"reward": [{"oracle": "gc_content"}]}
    return ["finetune", "--domain", "dna", "--method", method, "--objective",
            json.dumps(objective), "--params", json.dumps(params or {}),
            "--pretrained", tmp_path / "p.safetensors", "--reward-model",
            tmp_path / "r.safetensors", "--out-dir", tmp_path / "run"]  # fmt: skip


@pytest.mark.parametrize(
    "objective, fragment",
    [
        ({}, "objective: 'reward' is a required property"),
        ({"reward": []}, "objective.reward: [] should be non-empty"),
        ({"reward": [{"weight": 1}]}, "objective.reward.0: 'oracle' is a required property"),
        ({"reward": [{"oracle": "gc_content", "wieght": 2}]}, "'wieght' was unexpected"),
        ({"reward": [{"oracle": "gc_content"}], "direction": "up"}, "objective.direction"),
        ([1, 2], "objective: [1, 2] is not of type 'object'"),
    ],
)
def test_bad_objective(tmp_path, capsys, objective, fragment):
    argv = finetune_argv(tmp_path, objective)
    assert_clean_error(capsys, argv, fragment, outputs=[tmp_path / "run"])


@pytest.mark.parametrize(
    "method, params, fragment",
    [
        ("rgdm", {"oracle_budget": -5}, "finetune.rgdm.oracle_budget = -5: must be at least 1"),
        ("rgdm", {"oracle_budget": 0}, "finetune.rgdm.oracle_budget = 0: must be at least 1"),
        ("rgdm", {"tau": 0.0}, "finetune.rgdm.tau = 0.0: must be positive"),
        ("draft", {"kl_weight": -0.1}, "finetune.draft.kl_weight = -0.1: must be at least 0"),
        ("ddpo", {"lr": float("nan")}, "finetune.ddpo.lr = nan: must be finite"),
        ("rgdm", {"round": 3}, "finetune.rgdm: unknown key(s) round"),
    ],
)
def test_bad_method_settings(tmp_path, capsys, method, params, fragment):
    argv = finetune_argv(tmp_path, params=params, method=method)
    assert_clean_error(capsys, argv, fragment, outputs=[tmp_path / "run"])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["sample", "--domain", "dna", "--model", "m.safetensors", "--n", "0", "--out", "x.fasta"],
         "--n must be at least 1, not 0"),
        (["sample", "--domain", "dna", "--model", "m", "--n", "three", "--out", "x.fasta"],
         "argument --n: invalid int value: 'three'"),
        (["finetune", "--domain", "dna", "--method", "rgdm", "--objective", "{oops",
          "--pretrained", "p", "--reward-model", "r", "--out-dir", "o"],
         "argument --objective: invalid JSON"),
        (["finetune", "--domain", "dna", "--method", "grpo", "--objective", "{}",
          "--pretrained", "p", "--reward-model", "r", "--out-dir", "o"],
         "argument --method: invalid choice: 'grpo'"),
        (["score", "--domain", "dna", "--input", "x.fasta", "--out", "s.csv"],
         "give --oracles and/or --objective"),
        (["oracles", "--domain", "rna"], "unknown domain 'rna'"),
        (["prepare", "--domain", "dna", "--params", "[1]", "--out-dir", "o"],
         "argument --params: a JSON object {...} is needed, not '[1]'"),
        (["score", "--domain", "dna", "--input", "x.fasta", "--objective", '{"reward": 1}',
          "--out", "s.csv"], "objective.reward: 1 is not of type 'array'"),
    ],
)  # fmt: skip
def test_bad_arguments(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(capsys, argv, fragment, outputs=[tmp_path / "x.fasta", tmp_path / "o"])


@pytest.mark.parametrize("flag", ["--out", "--designs-out", "--metrics-out"])
def test_output_equal_to_the_input_is_refused(tmp_path, fasta, capsys, flag):
    other = {"--out": tmp_path / "s.csv"} | {flag: fasta}
    argv = ["score", "--domain", "dna", "--input", fasta, "--oracles", "gc_content"]
    argv += [a for kv in other.items() for a in kv]
    assert_clean_error(capsys, argv, f"{flag} is the input designs; it would be overwritten",
                       keep=[fasta])  # fmt: skip


def test_sample_over_its_own_model_is_refused(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    argv = ["sample", "--domain", "dna", "--model", model, "--n", "4", "--out", model]
    assert_clean_error(capsys, argv, "--out is the input model", keep=[model])


@pytest.mark.parametrize("command", ["pretrain", "train-reward", "prepare"])
def test_unwritable_output_folder_fails_before_any_work(tmp_path, capsys, command):
    """(Root ignores permission bits, so the folder is made unwritable by being a file's
    child; a read-only folder takes the same path.) Reward training used to train the whole
    ft copy before failing."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    argv = [command, "--domain", "dna", "--params", json.dumps({}), "--out-dir", out]
    if command != "prepare":
        argv += ["--data-dir", tmp_path / "missing_data"]
    assert_clean_error(capsys, argv, str(blocker), keep=[blocker])


def test_failed_stage_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "results" / "dna" / "data"
    argv = ["prepare", "--domain", "dna", "--params", json.dumps({"source": "fasta"}),
            "--out-dir", out]  # fmt: skip
    assert_clean_error(
        capsys, argv, "needs keys 'fasta' and 'labels'", outputs=[tmp_path / "results"]
    )


def broken_oracle(argument=None, **context):
    def fail(designs):
        raise ZeroDivisionError("bug in the user's oracle")

    return FunctionOracle(OracleInfo("broken", "dna"), fail)


def flaky_oracle(argument=None, **context):
    def score(designs):
        if any(d == "ATATATAT" for d in designs):
            raise ValueError("cannot score AT repeats")
        return np.array([len(d) for d in designs], dtype=float)

    return FunctionOracle(OracleInfo("flaky", "dna"), score)


register_oracle("dna", "broken_for_test", OracleInfo("broken_for_test", "dna"))(broken_oracle)
register_oracle("dna", "flaky_for_test", OracleInfo("flaky_for_test", "dna"))(flaky_oracle)


def test_oracle_failing_on_every_design_is_an_error(tmp_path, fasta, capsys):
    out = tmp_path / "scores.csv"
    argv = ["score", "--domain", "dna", "--input", fasta, "--oracles", "gc_content,broken_for_test",
            "--out", out]  # fmt: skip
    assert_clean_error(capsys, argv, "oracle broken failed on all 2 designs",
                       "ZeroDivisionError: bug in the user's oracle", outputs=[out])  # fmt: skip
    with pytest.raises(OracleError):
        broken_oracle()(["ACGT"])


def test_oracle_failing_on_some_designs_gives_nan_for_those(tmp_path, fasta):
    from rewarddiff.cli import main

    out = tmp_path / "scores.csv"
    assert main(["score", "--domain", "dna", "--input", str(fasta), "--oracles",
                 "flaky_for_test", "--out", str(out)]) == 0  # fmt: skip
    scores = pd.read_csv(out)["flaky_for_test"].tolist()
    assert scores[0] == 8.0 and np.isnan(scores[1])


def test_failed_report_leaves_no_partial_tables(tmp_path, capsys):
    run = tmp_path / "results" / "dna" / "campaigns" / "c" / "rgdm" / "seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text("{}")  # scores.csv is missing
    out = tmp_path / "results" / "report"
    argv = ["report", "--results-dir", tmp_path / "results", "--metrics", run / "metrics.json",
            "--out-dir", out]  # fmt: skip
    assert_clean_error(capsys, argv, run / "scores.csv", outputs=[out])
