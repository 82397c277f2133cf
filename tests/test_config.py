"""Strict configs: every section rejects unknown keys and wrong types, naming file, line and
column; the schema's network, training and method sections match the code's dataclasses."""

import subprocess
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

import jsonschema
import pytest
from badinput import assert_clean_error

from rewarddiff import UserError
from rewarddiff.config import load_config, load_schema, validate_config
from rewarddiff.finetune import METHODS
from rewarddiff.sheet import sheet_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema("config.schema.yaml")
BASE = """\
campaigns: campaigns.tsv
objectives:
  gc:
    domain: dna
    reward:
      - {oracle: gc_content, weight: 1.0}
domains:
  dna:
    data: {source: encode_dhs, max_per_split: 400}
    reward:
      network: {hidden: 8, layers: 1}
      fit: {steps: 20}
    pretrain:
      network: {hidden: 8}
      train: {steps: 30, batch_size: 16}
    finetune:
      rgdm:
        rounds: 2
        batch_size: 8
    evaluation: {loglik_num_t: 2}
"""
SHEET = (
    "campaign\tdomain\tobjective\tdirection\tmethod\tseeds\tn_samples\toracle_budget\t"
    "eval_oracles\tenabled\nc1\tdna\tgc\tmaximize\trgdm\t1\t8\t16\tgc_content\ttrue\n"
)


def config_file(tmp_path, old="", new=""):
    assert old in BASE
    path = tmp_path / "config.yaml"
    path.write_text(BASE.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "config", ["config/config.yaml", "config/demo/config.yaml", ".test/config/config.yaml"]
)
def test_shipped_configs_validate(config):
    assert load_config(ROOT / config)["domains"]


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "train: {steps: 30,",
            "train: {stpes: 30,",
            "15:15: domains.dna.pretrain.train: unknown key 'stpes' (known: amsgrad, batch_size, "
            "checkpoint_every, ema_decay, grad_clip, grad_clip_adaptive, log_every, lr, seed, "
            "steps, warmup_steps, weight_decay)",
        ),
        (
            "max_per_split: 400}",
            "max_per_split: 400, max_length: 50}",
            "9:52: domains.dna.data: unknown key 'max_length' (known: fasta, labels, "
            "max_per_split, seed, source)",
        ),
        (
            "        batch_size: 8\n",
            "        batch_size: 8\n        tua: 0.5\n",
            "20:9: domains.dna.finetune.rgdm: unknown key 'tua' (known: batch_size, data_mix, "
            "ema_decay, grad_clip, lr, rounds, size_mix, steps_per_round, tau)",
        ),
        (
            "      rgdm:\n",
            "      rgmd:\n",
            "17:7: domains.dna.finetune: unknown key 'rgmd' (known: best_of_n, ctrl, ddpo, draft, "
            "guidance, rcgdm, rgdm, seiko)",
        ),
        (
            "        rounds: 2\n",
            "        rounds: 2\n        oracle_budget: 64\n",
            "19:9: domains.dna.finetune.rgdm: unknown key 'oracle_budget' (known: batch_size, "
            "data_mix, ema_decay, grad_clip, lr, rounds, size_mix, steps_per_round, tau; set per "
            "row in the campaigns sheet)",
        ),
        (  # a method's own reward model is the domain's network
            "      rgdm:\n",
            "      seiko: {reward_network: {mul: 4}}\n      rgdm:\n",
            "17:32: domains.dna.finetune.seiko.reward_network: unknown key 'mul' (known: dropout, "
            "hidden, kernel_size, layers, max_dilation)",
        ),
        (  # set by the code (the alphabet), not a setting
            "network: {hidden: 8, layers: 1}",
            "network: {hidden: 8, layers: 1, vocab_size: 5}",
            "11:39: domains.dna.reward.network: unknown key 'vocab_size' (known: dropout, hidden, "
            "kernel_size, layers, max_dilation)",
        ),
        (
            "evaluation: {loglik_num_t: 2}",
            "evaluation: {loglik_num_t: 2, motif: [MA0114]}",
            "20:35: domains.dna.evaluation: unknown key 'motif' (known: label_eval_per_label, "
            "loglik_num_t, motifs, seed)",
        ),
        (
            "{oracle: gc_content, weight: 1.0}",
            "{oracle: gc_content, wieght: 1.0}",
            "6:30: objectives.gc.reward[0]: unknown key 'wieght' (known: oracle, transform, "
            "weight)",
        ),
        (
            "weight: 1.0}",
            "weight: 1.0, transform: {type: sigmoid, low: 0, hihg: 1}}",
            "6:78: objectives.gc.reward[0].transform: unknown key 'hihg' (known: high, k, low, "
            "type)",
        ),
        (
            "weight: 1.0}",
            "weight: 1.0, transform: {type: sigmoidal}}",
            "6:61: objectives.gc.reward[0].transform.type: 'sigmoidal' is not one of ['sigmoid', "
            "'reverse_sigmoid', 'double_sigmoid', 'target_window', 'clip', 'identity']",
        ),
        (
            "campaigns: campaigns.tsv\n",
            "campaigns: campaigns.tsv\nresult_dir: out\n",
            "2:1: top level: unknown key 'result_dir' (known: campaigns, domains, gpus_per_job, "
            "objectives, results_dir)",
        ),
        (  # the misspelt section is named, not the section it leaves missing
            "    evaluation: {",
            "    evalution: {",
            "20:5: domains.dna: unknown key 'evalution' (known: data, evaluation, finetune, "
            "pretrain, reward)",
        ),
        (
            "    pretrain:\n",
            "    pretrian:\n",
            "13:5: domains.dna: unknown key 'pretrian' (known: data, evaluation, finetune, "
            "pretrain, reward)",
        ),
        (
            "evaluation: {loglik_num_t: 2}",
            "evaluation: {loglik_num_t: 0}",
            "20:32: domains.dna.evaluation.loglik_num_t: 0 is less than the minimum of 1",
        ),
        (
            "network: {hidden: 8}",
            "network: {hidden: eight}",
            "14:25: domains.dna.pretrain.network.hidden: 'eight' is not of type 'integer'",
        ),
        (  # YAML 1.1 reads 1e-4 (no decimal point) as a string
            "fit: {steps: 20}",
            "fit: {steps: 20, lr: 1e-4}",
            "12:28: domains.dna.reward.fit.lr: '1e-4' is not of type 'number' (YAML reads it as "
            "text: write numbers unquoted, 1.0e-4 rather than 1e-4)",
        ),
        (
            "{source: encode_dhs,",
            "{source: fasta, fasta: x.fasta,",
            "9:11: domains.dna.data: 'labels' is a required property",
        ),
        (
            "{source: encode_dhs,",
            "{source: encode,",
            "9:20: domains.dna.data.source: 'encode' is not one of ['encode_dhs', 'fasta']",
        ),
        (
            "      fit: {steps: 20}\n",
            "      fit: {steps: 20}\n      heads: 0\n",
            "13:14: domains.dna.reward.heads: 0 is less than the minimum of 1",
        ),
    ],
)
def test_bad_keys_and_values_are_named_by_file_line_and_column(tmp_path, old, new, message):
    path = config_file(tmp_path, old, new)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:{message}"


def test_a_registered_domain_keeps_its_own_sections_but_strict_methods(tmp_path):
    text = BASE.replace("  dna:\n", "  mydomain:\n").replace("max_per_split: 400", "rows: 3")
    (tmp_path / "config.yaml").write_text(text)
    assert load_config(tmp_path / "config.yaml")["domains"]["mydomain"]["data"] == {
        "source": "encode_dhs",
        "rows": 3,
    }
    (tmp_path / "config.yaml").write_text(text.replace("rounds: 2", "roundz: 2"))
    with pytest.raises(UserError, match=r":18:9: domains.mydomain.finetune.rgdm: unknown key"):
        load_config(tmp_path / "config.yaml")


def test_merged_configs_point_into_the_file_that_holds_the_key(tmp_path):
    base, override = tmp_path / "base.yaml", tmp_path / "override.yaml"
    base.write_text(BASE)
    override.write_text("domains:\n  dna:\n    evaluation: {loglik_num_t: -1}\n")
    config = load_config(base)
    config["domains"]["dna"]["evaluation"]["loglik_num_t"] = -1
    with pytest.raises(UserError) as err:
        validate_config(config, [base, override])
    assert str(err.value) == (
        f"{override}:3:32: domains.dna.evaluation.loglik_num_t: -1 is less than the minimum of 1"
    )
    config["gpus_per_job"] = "two"  # e.g. from snakemake --config: in no file
    with pytest.raises(UserError) as err:
        validate_config(config, [base, override])
    assert str(err.value).startswith(f"{override}:3:32: ")  # the problems in files come first
    config["domains"]["dna"]["evaluation"]["loglik_num_t"] = 1
    with pytest.raises(UserError) as err:
        validate_config(config, [base, override])
    assert str(err.value) == f"{base}, {override}: gpus_per_job: 'two' is not of type 'integer'"


def test_cli_campaign_plan_reports_the_config_key_in_one_line(tmp_path, capsys):
    path = config_file(tmp_path, "rounds: 2", "rounds: 2.5")
    (tmp_path / "campaigns.tsv").write_text(SHEET)
    assert_clean_error(
        capsys,
        ["campaign", "plan", tmp_path / "campaigns.tsv", "--config", path],
        f"rewarddiff campaign: error: {path}:18:17: domains.dna.finetune.rgdm.rounds: 2.5 is "
        "not of type 'integer'",
        keep=[path],
    )


def test_snakemake_start_reports_the_config_key_in_one_line(tmp_path):
    path = config_file(tmp_path, "train: {steps: 30,", "train: {stpes: 30,")
    (tmp_path / "campaigns.tsv").write_text(SHEET)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(path), "--dry-run", "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [f"{path}:15:15: domains.dna.pretrain.train: unknown key 'stpes' (known: "
                     "amsgrad, batch_size, checkpoint_every, ema_decay, grad_clip, "
                     "grad_clip_adaptive, log_every, lr, seed, steps, warmup_steps, "
                     "weight_decay)"]  # fmt: skip


# ----- the schema against the code's dataclasses ----------------------------------------------
def _networks():
    from molgen.edm import EDMConfig
    from molgen.model import EGNNConfig
    from molgen.regressor import RegressorConfig
    from rewarddiff.oracles.learned import FitConfig
    from rewarddiff.training import TrainConfig
    from seqgen.model import CNNConfig
    from shapes.model import PointClassifierConfig, PointDenoiserConfig

    condition = {"num_labels", "value_condition"}  # added by ctrl / rcgdm
    # $defs name, dataclass, fields the code sets itself
    return [
        ("train", TrainConfig, set()),
        ("fit", FitConfig, {"task"}),
        ("cnn", CNNConfig, {"vocab_size", "num_outputs"} | condition),
        ("egnn", EGNNConfig, condition),
        ("edm_network", EDMConfig, condition),
        ("regressor", RegressorConfig, {"num_outputs"}),
        ("point_denoiser", PointDenoiserConfig, condition),
        ("point_classifier", PointClassifierConfig, {"num_outputs"}),
    ]


SECTIONS = [(SCHEMA["$defs"][name], cls, code) for name, cls, code in _networks()] + [
    (SCHEMA["$defs"]["finetune"]["properties"][method], spec.config, {"oracle_budget", "n_samples"})
    for method, spec in METHODS.items()
]
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", dict: "object"}


def _declared_type(prop: dict) -> str:
    while "$ref" in prop and "type" not in prop:
        prop = SCHEMA["$defs"][prop["$ref"].rpartition("/")[2]]
    return "string" if "enum" in prop else prop["type"]


@pytest.mark.parametrize("section, cls, code_set", SECTIONS, ids=[s[1].__name__ for s in SECTIONS])
def test_schema_sections_list_every_dataclass_field_with_its_type(section, cls, code_set):
    props = section["properties"]
    assert section["additionalProperties"] is False
    assert set(props) == {f.name for f in fields(cls)} - code_set
    hints = typing.get_type_hints(cls)
    for field in fields(cls):
        if field.name in props:
            hint = typing.get_origin(hints[field.name]) or hints[field.name]
            expected = "array" if hint is list else JSON_TYPES[hint]
            assert _declared_type(props[field.name]) == expected, field.name
            default = field.default if field.default is not MISSING else field.default_factory()
            schema = props[field.name] | {"$defs": SCHEMA["$defs"]}
            jsonschema.Draft202012Validator(schema).validate(default)  # the default is valid


def test_config_and_sheet_schemas_cover_exactly_the_registered_methods():
    assert set(SCHEMA["$defs"]["finetune"]["properties"]) == set(METHODS)
    assert sheet_schema()["properties"]["method"]["enum"] == list(METHODS)
