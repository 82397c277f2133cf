"""A third-party domain: the toy domain of ``tests/toydomain`` (points in R² from a Gaussian
mixture) registered through the ``rewarddiff.domains`` entry point of its ``dist-info``
folder, nothing installed. It passes the domain contract (the checks of
``test_domain_contract.py``, run here on it) and runs the whole Snakemake chain with every
registered method."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

# the contract's checks, collected here again over the toy domain's ``trained`` fixture
from test_domain_contract import (  # noqa: F401
    TRAIN,
    Case,
    test_designs_round_trip_with_their_ids,
    test_generator_samples_round_trip_through_a_saved_generator,
    test_reward_copies_train_on_disjoint_halves_that_cover_train,
    test_score_gives_one_column_per_oracle,
    train_domain,
)

from rewarddiff import UserError
from rewarddiff.domain import COPIES, Domain, get_domain
from rewarddiff.finetune import METHODS
from rewarddiff.oracles.registry import check_oracle

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "toydomain"  # the package and its dist-info: a PYTHONPATH entry
BIN = Path(sys.executable).parent
CASE = Case(
    {"sizes": [64, 16, 16]},
    {"network": {"hidden": 8, "layers": 1}, "fit": {"steps": 4, "batch_size": 8, "eval_every": 4}},
    {"network": {"hidden": 16, "layers": 1}, "diffusion_steps": 20, "sampling_steps": 4,
     "train": TRAIN, "device": "cpu"},
    ["coord:0", "component_prob:1", "component_logodds:2"],
)  # fmt: skip
pytestmark = pytest.mark.usefixtures("one_thread", "toy_on_path")  # one_thread: conftest.py


@pytest.fixture(scope="module")
def toy_on_path():
    """The toy package and its entry points importable in this process (only while this
    module's tests run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(TOY))
        yield


@pytest.fixture(scope="module")
def trained(toy_on_path, tmp_path_factory):
    """As ``test_domain_contract.trained``, for the toy domain."""
    return train_domain(get_domain("toy"), CASE, CASE.data, tmp_path_factory.mktemp("toy"))


def test_the_entry_point_registers_a_domain():
    dom = get_domain("toy")
    assert isinstance(dom, Domain) and type(dom).__module__ == "toydomain"


def test_label_condition_and_metrics(trained):
    dom, _, tmp, _ = trained
    model = tmp / "rewards" / "eval" / "model.safetensors"
    condition = dom.label_condition({"target": "1"}, model, tmp / "data")
    assert condition.classes == [["0", "1", "2", "3"]] and condition.target == ["1"]
    x = dom.load_split(tmp / "data", "test")[0]
    assert condition.log_prob(x, condition.predict(x)).shape == (len(x),)
    metrics = dom.metrics(dom.to_designs(x), {"target": "1", "loglik_num_t": 2}, tmp / "data",
                          model, tmp / "pretrained" / "model.safetensors")  # fmt: skip
    assert metrics["test_distance"] == pytest.approx(0, abs=1e-3)
    assert np.isfinite(metrics["loglik_pretrained"])
    assert metrics["target_fraction"] == metrics["fraction_1"]


def test_oracle_arguments_are_checked_against_the_config():
    section = yaml.safe_load((TOY / "config.yaml").read_text())["domains"]["toy"]
    check_oracle("toy", "component_logodds:3", section)
    for spec, problem in (("coord:2", "coordinate 0..1"), ("component_prob:4", "known: 0, 1, 2, 3"),
                          ("nope", "unknown oracle 'nope' for domain 'toy'")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(problem)):
            check_oracle("toy", spec, section)


@pytest.mark.slow
def test_snakemake_runs_every_method_on_the_toy_domain(tmp_path):
    """The whole chain (data, reward copies, pretraining, fine-tuning with each method,
    sampling, scoring, report) over a domain no part of the core names."""
    config = yaml.safe_load((TOY / "config.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["campaigns"] = str(TOY / "campaigns.tsv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    sheet = pd.read_csv(TOY / "campaigns.tsv", sep="\t")
    assert set(sheet["method"]) == set(METHODS)  # every registered method
    python_path = os.pathsep.join(filter(None, [str(TOY), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                        "PYTHONPATH": python_path}  # fmt: skip
    cmd = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
           "--cores", "2", "--profile", str(ROOT / "workflow/profiles/default")]  # fmt: skip
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    print(f"snakemake: {time.time() - start:.0f} s")
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results"
    runs = results / "toy/campaigns/toyring"
    for method in [*METHODS, "pretrained"]:
        metrics = json.loads((runs / method / "seed0/metrics.json").read_text())
        assert {"loglik_pretrained", "target_fraction", "test_distance"} <= set(metrics)
        scores = pd.read_csv(runs / method / "seed0/scores.csv")
        assert len(scores) == 8 and {"coord:1", "component_prob:1", "reward_eval"} <= set(scores)
        assert (runs / method / "seed0/scored.csv").exists()
    assert 0 <= json.loads((runs / "ctrl/seed0/metrics.json").read_text())["label_accuracy"] <= 1
    text = (results / "report/summary.md").read_text()
    for method in [*METHODS, "pretrained"]:
        assert f"| toyring | {method} |" in text
    assert "test_distance ↓" in text  # the domain's report column
    stages = [results / "toy/data", results / "toy/pretrained", results / "report",
              *(results / "toy/rewards" / c for c in COPIES),
              *(runs / m / "seed0" for m in [*METHODS, "pretrained"])]  # fmt: skip
    for folder in stages:
        assert "stage" in json.loads((folder / "manifest.json").read_text()), folder
