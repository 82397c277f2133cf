"""Generic resumable training loop: AdamW (optionally AMSGrad), gradient clipping, EMA,
checkpoints, CSV log.

The loop knows nothing about the model family: it draws batch indices, asks ``batch_fn`` for a
batch and ``loss_fn`` for a scalar loss. A checkpoint holds model, EMA, optimiser, step and RNG
state, so an interrupted run resumes bit for bit.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from rewarddiff.io import (
    atomic_path,
    flatten_state,
    matching_checkpoint,
    save_tensors,
    unflatten_state,
)


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    amsgrad: bool = False  # AdamW's AMSGrad variant (EDM: True, with weight_decay 1e-12)
    grad_clip: float = 1.0
    grad_clip_adaptive: bool = False  # EDM: clip at 1.5·mean + 2·std of the last 50 norms
    ema_decay: float = 0.999
    warmup_steps: int = 100
    checkpoint_every: int = 200
    log_every: int = 50
    seed: int = 0


class EMA:
    """Exponential moving average of parameters: θ̄ ← d·θ̄ + (1 − d)·θ."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, p in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(p.detach(), 1.0 - self.decay)


class AdaptiveClip:
    """EDM's gradient clipping: the limit is 1.5·mean + 2·std of the last 50 (clipped)
    gradient norms, starting from a single large value."""

    def __init__(self, history: list[float] | None = None, size: int = 50):
        self.history, self.size = list(history or [3000.0]), size

    def limit(self) -> float:
        h = torch.tensor(self.history, dtype=torch.float64)
        return float(1.5 * h.mean() + 2 * h.std(unbiased=False))

    def record(self, grad_norm: float, limit: float) -> None:
        self.history = (self.history + [min(grad_norm, limit)])[-self.size :]


class NonFiniteLoss(RuntimeError):
    pass


# TrainConfig fields that do not change the trained weights: they never discard progress
# (``steps`` may also grow: the schedule does not depend on it, so a longer run continues)
RESULT_NEUTRAL = ("log_every", "checkpoint_every", "steps")
# TrainConfig fields added after checkpoints were first written: left out of the settings at
# their default, so a checkpoint written before a field existed still resumes
ADDED_LATER = ("amsgrad",)


def run_settings(cfg: TrainConfig, identity: dict | None) -> dict:
    """What a checkpoint must match to be resumed: the result-determining training settings
    and the caller's ``identity`` (input content hashes, network and loss settings)."""
    default = {f.name: f.default for f in fields(TrainConfig)}
    train = {k: v for k, v in asdict(cfg).items()
             if k not in RESULT_NEUTRAL and not (k in ADDED_LATER and v == default[k])}  # fmt: skip
    return json.loads(json.dumps({"train": train, "run": identity or {}}, default=str))


def optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the model's parameters with the learning rate, weight decay and AMSGrad of
    ``cfg``."""
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad
    )


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], torch.Tensor],
    batch_fn: Callable[[torch.Tensor], object],
    num_examples: int,
    cfg: TrainConfig,
    out_dir: str | Path,
    stop_at_step: int | None = None,
    identity: dict | None = None,
) -> EMA:
    """Train ``model`` in place; resume from ``out_dir/checkpoint.safetensors`` when it was
    written for the same :func:`run_settings` (else start afresh and say why).

    The model trains on the device it is on (``batch_fn`` must return batches there); on CUDA
    the forward pass runs under bf16 autocast. ``stop_at_step`` ends the run early after
    checkpointing (used to test interruption). Returns the EMA (``.model`` = sampling weights).
    The log rows live in the checkpoint; ``train_log.partial.csv`` is rewritten from them after
    each checkpoint, so a kill at any moment never duplicates a row.
    """
    device_type = next(model.parameters()).device.type
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # scratch files survive a workflow manager deleting declared outputs before a re-run
    ckpt_path, partial_log = out_dir / "checkpoint.safetensors", out_dir / "train_log.partial.csv"
    opt = optimizer(model, cfg)
    ema = EMA(model, cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    settings = run_settings(cfg, identity)
    step, clip, logged, elapsed = 0, AdaptiveClip(), [], 0.0
    resumed = _resumable(ckpt_path, settings, cfg.steps)
    if resumed is not None:
        initial = copy.deepcopy(model.state_dict())
        try:
            step, clip.history, logged, elapsed = load_checkpoint(resumed, model, ema, opt, gen)
            print(f"resumed from step {step} ({ckpt_path})", flush=True)
        except (RuntimeError, KeyError, ValueError) as err:  # a checkpoint that does not fit
            print(f"{ckpt_path}: cannot be restored ({str(err).splitlines()[0]}); "
                  "starting afresh", flush=True)  # fmt: skip
            model.load_state_dict(initial)
            opt = optimizer(model, cfg)
            torch.manual_seed(cfg.seed)
            ema, gen = EMA(model, cfg.ema_decay), torch.Generator().manual_seed(cfg.seed)
            step, clip, logged, elapsed = 0, AdaptiveClip(), [], 0.0
    if step == 0:
        partial_log.unlink(missing_ok=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)), last_epoch=step - 1
    )

    rows, t0 = [], time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc="train", mininterval=5, disable=None)
    while step < cfg.steps:
        model.train()
        batch = batch_fn(torch.randint(num_examples, (cfg.batch_size,), generator=gen))
        with torch.autocast(device_type, torch.bfloat16, enabled=device_type == "cuda"):
            loss = loss_fn(model, batch)
        if not math.isfinite(loss.item()):
            raise NonFiniteLoss(
                f"loss is {loss.item()} at step {step + 1}; stopping "
                f"(last good checkpoint: {ckpt_path})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        limit = clip.limit() if cfg.grad_clip_adaptive else cfg.grad_clip
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), limit)
        clip.record(float(grad_norm), limit)
        opt.step()
        schedule.step()
        ema.update(model)
        step += 1
        bar.update(1)
        rows.append(
            {
                "step": step,
                "loss": loss.item(),
                "grad_norm": float(grad_norm),
                "lr": schedule.get_last_lr()[0],
                "elapsed_s": round(time.time() - t0, 2),
            }
        )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or step == stop_at_step:
            logged += [r for r in rows if r["step"] % cfg.log_every == 0 or r["step"] == step]
            rows = []
            save_checkpoint(ckpt_path, model, ema, opt, gen, step, settings, clip.history,
                            logged, time.time() - t0)  # fmt: skip
            _write_log(partial_log, logged)
        if step == stop_at_step:
            break
    bar.close()
    if step >= cfg.steps:
        _write_log(out_dir / "train_log.csv", logged)
    return ema


def _resumable(ckpt_path: Path, settings: dict, steps: int):
    """The checkpoint at ``ckpt_path`` as ``(tensors, meta)`` if it may be resumed for
    ``settings`` and ``steps``; otherwise None, after one line saying why."""
    checkpoint = matching_checkpoint(ckpt_path, settings)
    if checkpoint is not None and int(checkpoint[1]["step"]) > steps:
        print(f"{ckpt_path}: already past steps={steps} (step {checkpoint[1]['step']}); "
              "starting afresh", flush=True)  # fmt: skip
        return None
    return checkpoint


def _write_log(path: Path, rows: list[dict]) -> None:
    """The training log as CSV (header only when no row was logged yet), atomically."""
    fields = ["step", "loss", "grad_norm", "lr", "elapsed_s"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def save_checkpoint(
    path, model, ema, opt, gen, step, settings, clip_history, log_rows=(), elapsed_s=0.0
) -> None:
    opt_tensors, opt_skeleton = flatten_state("optim", opt.state_dict())
    tensors = (
        {f"model.{k}": v for k, v in model.state_dict().items()}
        | {f"ema.{k}": v for k, v in ema.model.state_dict().items()}
        | opt_tensors
        | {"rng.torch": torch.get_rng_state(), "rng.generator": gen.get_state()}
        | ({"rng.cuda": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})
    )
    meta = {"step": step, "settings": settings, "optim": opt_skeleton, "clip": clip_history,
            "log": list(log_rows), "elapsed_s": elapsed_s}  # fmt: skip
    save_tensors(path, tensors, meta)


def load_checkpoint(checkpoint, model, ema, opt, gen) -> tuple[int, list[float], list, float]:
    """Restore from ``(tensors, meta)`` as returned by ``load_tensors``; returns step, clip
    history, log rows and elapsed seconds."""
    tensors, meta = checkpoint

    def part(prefix):
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(part("model."))
    ema.model.load_state_dict(part("ema."))
    opt.load_state_dict(unflatten_state(meta["optim"], tensors))
    torch.set_rng_state(tensors["rng.torch"])
    gen.set_state(tensors["rng.generator"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["step"]), meta.get("clip", [3000.0]), meta["log"], meta["elapsed_s"]
