"""Stage entry points behind the CLI and the Snakemake rules. Each stage reads explicit input
paths and parameters, writes its outputs atomically and a ``manifest.json`` beside them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rewarddiff import UserError
from rewarddiff.conditioning import ClassCondition
from rewarddiff.config import dataclass_from, load_schema
from rewarddiff.domain import get_domain
from rewarddiff.finetune import METHODS, CountingReward, FinetuneTask
from rewarddiff.finetune.common import check_method_settings, direction_sign, write_rows
from rewarddiff.finetune.ctrl import evaluate_labels
from rewarddiff.io import Manifest, atomic_path, probe_writable, stage_output, write_json
from rewarddiff.oracles.base import summarize_scores

# pretraining settings that do not change the trained weights (besides the training loop's
# own: see rewarddiff.training.RESULT_NEUTRAL)
PRETRAIN_NEUTRAL = ("device", "train")


def prepare(domain: str, params: dict, out_dir: Path) -> dict:
    manifest = Manifest("prepare", {}, params, params.get("seed"))
    with stage_output(out_dir):
        summary = get_domain(domain).prepare(params, Path(out_dir))
        manifest.write(Path(out_dir) / "manifest.json", summary=summary)
    return summary


def train_reward(
    domain: str,
    params: dict,
    data_dir: Path,
    out_dir: Path,
    copies: tuple[str, ...] = ("ft", "eval"),
) -> dict:
    """Train the reward-model ``copies`` from scratch (no scratch checkpoint is kept, so a
    re-run on other data can never return an old model)."""
    manifest = Manifest("train_reward", {"data_dir": str(data_dir)}, params, params.get("seed"))
    with stage_output(out_dir):
        for copy in copies:  # fail on an unwritable folder before training, not after
            probe_writable(Path(out_dir) / copy)
        torch.manual_seed(params.get("seed", 0))
        results = get_domain(domain).train_reward(params, Path(data_dir), Path(out_dir), copies)
        for copy in copies:
            manifest.write(
                Path(out_dir) / copy / "manifest.json", copy=copy, held_out=results[copy]
            )
    return results


def pretrain(
    domain: str, params: dict, data_dir: Path, out_dir: Path, stop_at_step: int | None = None
) -> dict:
    """Pretrain; a scratch checkpoint in ``out_dir`` is resumed only if it was written for the
    same data (content hash), domain and result-determining settings. With
    ``params["checkpoint"]`` the model there is adopted instead (``Domain.adopt_pretrained``)."""
    seed = params.get("train", {}).get("seed", 0)
    if params.get("checkpoint"):
        inputs = {"data_dir": str(data_dir), "checkpoint": str(params["checkpoint"])}
        manifest = Manifest("pretrain", inputs, params, seed)
        with stage_output(out_dir):
            results = get_domain(domain).adopt_pretrained(
                Path(params["checkpoint"]), params, Path(data_dir), Path(out_dir)
            )
            manifest.write(Path(out_dir) / "manifest.json", results=results)
        return results
    manifest = Manifest("pretrain", {"data_dir": str(data_dir)}, params, seed)
    identity = {
        "domain": domain,
        "data": manifest.record["input_hashes"].get("data_dir"),
        "params": {k: v for k, v in params.items() if k not in PRETRAIN_NEUTRAL},
    }
    with stage_output(out_dir):
        probe_writable(Path(out_dir))
        torch.manual_seed(seed)  # network initialisation (torch's default seed varies per process)
        results = get_domain(domain).pretrain(
            params, Path(data_dir), Path(out_dir), stop_at_step, identity=identity
        )
        if stop_at_step is None:
            manifest.write(Path(out_dir) / "manifest.json", results=results)
    return results


def finetune(
    domain: str,
    method: str,
    params: dict,
    objective: dict,
    pretrained: Path,
    reward_model: Path,
    data_dir: Path | None,
    seed: int,
    out_dir: Path,
) -> dict:
    """Steer the pretrained generator toward ``objective`` with ``method``.

    Writes ``model.safetensors`` (the fine-tuned generator; unchanged weights for methods that
    do not train), ``train_log.csv`` (one row per round) and, for selection methods,
    ``selected<suffix>`` (the chosen designs).
    """
    if method not in METHODS:
        raise UserError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    check_objective(objective)
    spec = METHODS[method]
    cfg = dataclass_from(spec.config, params, f"finetune.{method}")
    check_method_settings(cfg, f"finetune.{method}")
    problem = spec.check(cfg)
    if problem:
        raise UserError(f"finetune.{method}.{problem[0]}: {problem[1]}")
    out_dir = Path(out_dir)
    manifest = Manifest(
        "finetune",
        {"pretrained": str(pretrained), "reward_model": str(reward_model),
         "data_dir": str(data_dir) if data_dir else None},
        params | {"method": method, "objective": objective},
        seed,
    )  # fmt: skip
    # a scratch checkpoint is resumed only for the same inputs (content) and settings
    identity = {"domain": domain, "method": method, "objective": objective,
                "inputs": manifest.record["input_hashes"]}  # fmt: skip
    with stage_output(out_dir):
        probe_writable(out_dir)
        return _finetune(domain, spec, cfg, objective, pretrained, reward_model, data_dir,
                         seed, out_dir, manifest, identity)  # fmt: skip


def _finetune(domain, spec, cfg, objective, pretrained, reward_model, data_dir, seed, out_dir,
              manifest, identity) -> dict:  # fmt: skip
    dom = get_domain(domain)
    generator = dom.load_generator(pretrained, "auto")
    dom = dom.for_generator(generator)  # reads this generator's outputs (shapes: its frame)
    reference = generator.frozen_copy()
    objective_fn = dom.reward_function(objective["reward"], reward_model)
    reward = CountingReward(objective_fn, sign=direction_sign(objective.get("direction")))
    if spec.differentiable_reward:
        if not hasattr(generator, "sample_differentiable"):
            raise UserError(f"method {spec.id} needs a differentiable sampler; {domain} has none")
        reward.torch_fn = dom.torch_reward_function(objective["reward"], reward_model)
    # scratch files: the log grows and the checkpoint is refreshed every round; the declared
    # outputs (model, train_log.csv) appear only when the run has finished
    partial_log, checkpoint = out_dir / "train_log.partial.csv", out_dir / "checkpoint.safetensors"
    task = FinetuneTask(generator, reference, reward, dom.diversity, seed, partial_log,
                        checkpoint_path=checkpoint, identity=identity,
                        quality=dom.quality)  # fmt: skip
    if spec.fits_reward_model:
        task.reward_network = lambda: dom.reward_network(cfg.reward_network)
    if spec.condition == "label":  # a new label condition steered by the ft classifier
        task.condition = dom.label_condition(objective, reward_model, data_dir)
        task.generator = dom.conditional_generator(generator, task.condition.num_joint)
    elif spec.condition == "value":  # a scalar reward-value condition
        task.generator = dom.conditional_generator(generator, 0)
    if spec.training_data(cfg):
        task.data = dom.load_split(data_dir, "train")[0]
    result = spec.run(task, cfg)
    if spec.produces == "selection":
        scores = {"reward_ft": objective_fn(result.designs)}  # for the header; not counted
        dom.write_designs(
            out_dir / f"selected{dom.design_suffix}", dom.to_designs(result.designs), scores
        )
    dom.save_generator(out_dir / "model.safetensors", task.generator)
    write_rows(out_dir / "train_log.csv", task.rows)
    partial_log.unlink(missing_ok=True)
    checkpoint.unlink(missing_ok=True)
    summary = {"oracle_calls": reward.calls, "rounds": task.rows} | result.extra
    manifest.write(out_dir / "manifest.json", oracle_calls=reward.calls,
                   device=str(task.generator.device), **result.extra)  # fmt: skip
    return summary


def refuse_overwrite(inputs: dict, outputs: dict) -> None:
    """A UserError when an output path is one of the inputs (the user's file would be lost)
    or two outputs are the same file."""
    given = {Path(v).resolve(): k for k, v in inputs.items() if v is not None}
    seen = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        where = Path(path).resolve()
        if where in given:
            raise UserError(f"{path}: {flag} is the input {given[where]}; it would be overwritten")
        if where in seen:
            raise UserError(f"{path}: {flag} and {seen[where]} are the same file")
        seen[where] = flag


def check_objective(objective) -> None:
    """An objective as the config schema defines one (``reward`` components with an oracle
    spec, optional weight and transform; ``target``; ``direction`` maximize or minimize)."""
    import jsonschema

    schema = load_schema("config.schema.yaml")["properties"]["objectives"]["additionalProperties"]
    schema = schema | {
        "required": ["reward"],
        "properties": schema["properties"] | {"direction": {"enum": ["maximize", "minimize"]}},
    }
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(objective), key=str)
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path)
        raise UserError(f"objective{'.' + where if where else ''}: {errors[0].message}")


def sample(
    domain: str, model: Path, n: int, seed: int, out: Path, selected: Path | None = None
) -> None:
    """Draw ``n`` designs from ``model`` (or copy a selection made during fine-tuning)."""
    if n < 1:
        raise UserError(f"sample: --n must be at least 1, not {n}")
    refuse_overwrite({"model": model, "selected": selected}, {"--out": out})
    dom = get_domain(domain)
    t0 = time.time()
    if selected is not None:
        designs = dom.read_designs(selected)[:n]
    else:
        torch.manual_seed(seed)
        gen = dom.load_generator(model, "auto")
        tokens, _ = gen.sample(n, torch.Generator().manual_seed(seed))
        designs = dom.for_generator(gen).to_designs(tokens)
    dom.write_designs(out, designs, {})
    # a baseline directory (designs of a model made elsewhere) has no fine-tuning manifest:
    # the sampling record is its manifest.json
    out = Path(out)
    made_here = Path(model).parent.resolve() == out.parent.resolve()
    path = out.with_suffix(".manifest.json") if made_here else out.parent / "manifest.json"
    Manifest("sample", {"model": str(model), "selected": str(selected)}, {"n": n}, seed).write(
        path, sampling_wall_s=round(time.time() - t0, 2)
    )


def score(
    domain: str,
    designs_path: Path,
    oracles: list[str],
    out: Path,
    reward_model: Path | None = None,
    objective: dict | None = None,
    ft_reward_model: Path | None = None,
    metrics_out: Path | None = None,
    metrics_params: dict | None = None,
    data_dir: Path | None = None,
    pretrained: Path | None = None,
    designs_out: Path | None = None,
    model: Path | None = None,
    embed: bool = False,
) -> pd.DataFrame:
    """``scores.csv``: one row per design, one column per oracle (NaN = failed), plus the
    objective under the fine-tuning and evaluation reward copies; optional ``metrics.json`` and
    the designs re-written with every score attached (SD properties, FASTA header fields).
    With the ``model`` that made the designs and a label condition in it (``ctrl``), the
    metrics add per-label accuracy and macro-F1 of the evaluation classifier. ``embed``: the
    domain embeds 2D input records in 3D (molecules); the manifest lists them (``embedded``)."""
    dom = get_domain(domain)
    inputs = {"designs": designs_path, "reward_model": reward_model, "model": model,
              "ft_reward_model": ft_reward_model, "pretrained": pretrained}  # fmt: skip
    refuse_overwrite(inputs, {"--out": out, "--designs-out": designs_out,
                              "--metrics-out": metrics_out})  # fmt: skip
    if objective is not None:
        check_objective(objective)
    params = {"oracles": oracles, "objective": objective, "metrics": metrics_params,
              "embed": embed}  # fmt: skip
    inputs = {k: str(v) for k, v in inputs.items() if v is not None}
    manifest = Manifest("score", inputs, params, (metrics_params or {}).get("seed"))
    if embed and not dom.embeds:
        raise UserError(f"score: --embed embeds 2D molecule records; {domain} input has none")
    designs = dom.read_designs(designs_path, embed)
    columns = dom.score(designs, oracles, reward_model)
    table = pd.DataFrame({"design": dom.design_labels(designs)} | columns)
    if objective is not None:
        from rewarddiff.oracles.transforms import combine

        for name, path in (("reward_ft", ft_reward_model), ("reward_eval", reward_model)):
            if path is not None:
                comps = objective["reward"]
                cols = dom.score(designs, [c["oracle"] for c in comps], path)
                table[name] = combine(cols, comps)
    if metrics_out is not None:
        result = dom.metrics(designs, metrics_params or {}, data_dir, reward_model, pretrained)
        if model is not None:
            result |= label_metrics(dom, model, reward_model, metrics_params or {})
        for col in table.columns[1:]:
            stats = summarize_scores(table[col].to_numpy(dtype=float))
            for key in ("mean", "top10", "failed"):
                result[f"{col}_{key}"] = stats[key]
    # everything is computed: the outputs are written last, scores.csv with its manifest
    if designs_out is not None:
        dom.write_designs(designs_out, designs, {c: table[c].to_numpy() for c in table.columns[1:]})
    if metrics_out is not None:
        write_json(metrics_out, result)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    embedded = [d.name for d in designs if getattr(d, "embedded", False)]
    manifest.write(Path(out).with_suffix(".manifest.json"), designs_scored=len(designs),
                   **({"embedded": embedded} if embed else {}))  # fmt: skip
    return table


def label_metrics(dom, model: Path, reward_model: Path, params: dict) -> dict:
    """Per-label evaluation of a label-conditioned model by the evaluation classifier:
    ``label_eval_per_label`` designs per label; empty for models without a label condition."""
    gen = dom.load_generator(model, "auto")
    dom = dom.for_generator(gen)
    cond = gen.condition
    if not isinstance(cond, ClassCondition):
        return {}
    condition = dom.label_condition({}, reward_model, spec=cond.spec)
    if condition.classes != cond.classes:
        raise UserError(
            f"{reward_model}: classes {condition.classes} differ from the model's {cond.classes}"
        )
    per_label = params.get("label_eval_per_label", 64)
    rng = torch.Generator().manual_seed(params.get("seed", 0))
    evaluation = evaluate_labels(gen, condition, per_label, cond.guidance, rng)
    return {
        "label_accuracy": float(np.mean([e["accuracy"] for e in evaluation.values()])),
        "label_macro_f1": float(np.mean([e["macro_f1"] for e in evaluation.values()])),
        "label_eval": evaluation,
    }
