"""The method registry: every spec is complete and agrees with the schemas, and a new method is
one module — this file's ``identity`` method (spec, settings, run) is registered and then runs
through the CLI, the config, the campaign sheet and ``campaign.finetune`` on a tiny DNA model."""

import dataclasses
import json
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_stale_runs import PRETRAIN, dna_data

from rewarddiff import UserError, campaign
from rewarddiff.cli import main
from rewarddiff.config import load_config, load_schema
from rewarddiff.finetune import METHODS, MethodResult, MethodSpec, register_method
from rewarddiff.finetune.common import check_method_settings
from rewarddiff.sheet import read_sheet

SCHEMA = load_schema("config.schema.yaml")


def _declared_type(prop: dict) -> str | None:
    while "$ref" in prop and "type" not in prop:
        prop = SCHEMA["$defs"][prop["$ref"].rpartition("/")[2]]
    return "string" if "enum" in prop else prop.get("type")


@pytest.mark.parametrize("spec", METHODS.values(), ids=list(METHODS))
def test_every_registered_spec_is_complete_and_consistent(spec):
    assert spec.run.__module__ == f"rewarddiff.finetune.{spec.id}"  # one module per method
    assert len(f"  {spec.id:10s} {spec.help}") <= 100  # one --help line
    cfg = spec.config()  # the defaults are valid settings
    check_method_settings(cfg, spec.id)
    assert spec.check(cfg) is None
    assert isinstance(spec.training_data(cfg), bool)
    # the hand-written config section declares what the dataclass implies
    section = SCHEMA["$defs"]["finetune"]["properties"][spec.id]
    implied = spec.settings_schema()["properties"]
    assert set(section["properties"]) == set(implied)
    for name, prop in implied.items():
        assert _declared_type(section["properties"][name]) == prop.get("type"), name
    assert spec.takes_n_samples == (spec.produces == "selection")  # it makes the designs kept


@dataclass
class IdentityConfig:
    oracle_budget: int = 16
    draws: int = 4  # designs drawn for the log


def identity(task, cfg: IdentityConfig) -> MethodResult:
    """The pretrained model, unchanged; one log row of its samples."""
    x, path_kl = task.generator.sample(cfg.draws, task.torch_generator, task.reference)
    task.record(0, x, task.reward(x), path_kl)
    return MethodResult(extra={"unchanged": True})


SPEC = MethodSpec(id="identity", config=IdentityConfig, run=identity,
                  help="return the pretrained model unchanged")  # fmt: skip


@pytest.fixture
def registered():
    register_method(SPEC)
    yield SPEC
    del METHODS[SPEC.id]


def test_a_method_is_one_module(tmp_path, registered, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert f"  identity   {SPEC.help}" in capsys.readouterr().out.splitlines()
    data = dna_data(tmp_path / "data", 1)
    assert main(["pretrain", "--domain", "dna", "--params", json.dumps(PRETRAIN), "--data-dir",
                 str(data), "--out-dir", str(tmp_path / "pre")]) == 0  # fmt: skip
    objective = {"reward": [{"oracle": "gc_content"}]}
    summary = campaign.finetune("dna", "identity", {"draws": 3}, objective,
                                tmp_path / "pre/model.safetensors", tmp_path / "unused", data,
                                0, tmp_path / "run")  # fmt: skip
    assert summary["oracle_calls"] == 3 and summary["unchanged"] is True
    pretrained = load_file(str(tmp_path / "pre/model.safetensors"))
    tuned = load_file(str(tmp_path / "run/model.safetensors"))
    assert tuned.keys() == pretrained.keys()
    assert all(torch.equal(tuned[k], v) for k, v in pretrained.items())
    assert len(pd.read_csv(tmp_path / "run/train_log.csv")) == 1
    assert json.loads((tmp_path / "run/manifest.json").read_text())["unchanged"] is True
    with pytest.raises(UserError, match="finetune.identity: unknown key"):
        campaign.finetune("dna", "identity", {"draw": 3}, objective, tmp_path / "pre",
                          tmp_path / "unused", data, 0, tmp_path / "run2")  # fmt: skip


def test_a_registered_method_has_a_config_section_and_sheet_rows(tmp_path, registered):
    config = {"campaigns": "campaigns.tsv", "objectives": {"gc": {"domain": "dna", "reward":
              [{"oracle": "gc_content"}]}}, "domains": {}}  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config | {"domains": {"mydomain": {
        "data": {}, "reward": {}, "pretrain": {}, "evaluation": {},
        "finetune": {"identity": {"draws": 2}}}}}))  # fmt: skip
    assert load_config(path)["domains"]["mydomain"]["finetune"]["identity"] == {"draws": 2}
    path.write_text(path.read_text().replace("draws", "drawz"))
    with pytest.raises(UserError, match=r"finetune.identity: unknown key 'drawz' \(known: draws"):
        load_config(path)
    sheet = tmp_path / "campaigns.tsv"
    sheet.write_text("campaign\tdomain\tobjective\tdirection\tmethod\tseeds\tn_samples\t"
                     "oracle_budget\teval_oracles\tenabled\n"
                     "c1\tdna\tgc\tmaximize\tidentity\t1\t8\t16\tgc_content\ttrue\n")  # fmt: skip
    assert read_sheet(sheet, config["objectives"])["method"].tolist() == ["identity"]
    assert SPEC.sheet_settings({"oracle_budget": "16", "n_samples": "8"}) == {"oracle_budget": 16}


def test_register_method_refuses_taken_and_unusable_ids(registered):
    with pytest.raises(ValueError, match="registered twice"):
        register_method(SPEC)
    for bad in ("pretrained", "My-Method"):
        with pytest.raises(ValueError, match="lowercase letters"):
            register_method(dataclasses.replace(SPEC, id=bad))
    with pytest.raises(ValueError, match="help must be one line"):
        dataclasses.replace(SPEC, help="two\nlines")
    with pytest.raises(TypeError, match="has no oracle_budget"):
        MethodSpec(id="nobudget", config=MethodResult, run=identity, help="no budget")
