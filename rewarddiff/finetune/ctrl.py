"""ctrl: add a new condition y to a pretrained model by KL-regularised RL (Zhao et al., "Adding
Conditional Control to Diffusion Models with Reinforcement Learning", arXiv 2406.12120).

The generator gains a zero-initialised label embedding, so it starts exactly at p_pre. Each step
draws labels y from the label prior, samples designs conditioned on y with the last K steps
differentiable, and ascends γ·log p̂(y | x) − α·KL(p_θ(·|y) ‖ p_pre) over the sampling path,
where p̂ is a calibrated classifier fit on offline (x, y) pairs. The optimum is the conditional
p*(x | y) ∝ p_pre(x)·p̂(y | x)^{γ/α}. Several conditions are one joint label (their product).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rewarddiff import UserError
from rewarddiff.conditioning import ClassCondition, LabelCondition
from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.finetune.spec import MethodResult, MethodSpec


@dataclass
class CTRLConfig:
    """add a new label condition: zero-init embedding, KL-regularised log p(y|x) ascent"""

    oracle_budget: int = 1024  # classifier evaluations: steps = budget // batch_size
    batch_size: int = 32
    grad_steps: int = 10  # K: sampling steps back-propagated through
    random_cut: bool = False  # CTRL: K drawn uniformly from 1..grad_steps per step
    kl_weight: float = 0.01  # α
    reward_weight: float = 1.0  # γ: the target is p_pre·p̂(y|x)^γ (before the KL trade-off)
    lr: float = 1e-4
    condition_lr_scale: float = 1.0  # learning-rate multiplier of the new condition embedding
    gumbel_tau: float = 1.0  # Gumbel-softmax temperature (discrete generators)
    grad_clip: float = 1.0
    guidance: float = 0.0  # classifier-free guidance scale used when sampling afterwards
    label_prior: str = "uniform"  # or "data": label frequencies of the offline pairs
    eval_per_label: int = 64  # designs per label for the final per-label accuracy log
    log_every: int = 10


def label_scores(true: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, macro-F1 and per-class F1 of predicted against requested labels (n,)."""
    f1 = []
    for k in range(num_classes):
        tp = np.sum((pred == k) & (true == k))
        denominator = np.sum(pred == k) + np.sum(true == k)
        f1.append(2 * tp / denominator if denominator else 0.0)
    return {"accuracy": float(np.mean(pred == true)), "macro_f1": float(np.mean(f1)),
            "f1": [float(v) for v in f1]}  # fmt: skip


def ctrl(task: FinetuneTask, cfg: CTRLConfig) -> MethodResult:
    """Fine-tune the conditional ``task.generator`` in place toward ``task.condition`` and set
    the sampling default; the extra ``label_eval_ft`` is the per-label evaluation by
    ``condition.predict`` (the steering classifiers)."""
    gen, rng, condition = task.generator, task.torch_generator, task.condition
    if condition is None:
        raise UserError("ctrl needs a label condition (task.condition)")
    if not hasattr(gen, "sample_differentiable"):
        raise UserError("ctrl needs a differentiable sampler")
    priors = condition.prior(cfg.label_prior)
    # the new embedding may learn faster than the pretrained weights it conditions
    new = [p for n, p in gen.net.named_parameters() if n.startswith("condition.")]
    rest = [p for n, p in gen.net.named_parameters() if not n.startswith("condition.")]
    groups = [{"params": rest}, {"params": new, "lr": cfg.lr * cfg.condition_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.0)
    steps = max(1, cfg.oracle_budget // cfg.batch_size)
    done, _ = task.resume(cfg, opt)
    for step in range(done, steps):
        y = torch.stack([torch.multinomial(p, cfg.batch_size, True, generator=rng)
                         for p in priors], 1)  # fmt: skip
        cut = cfg.grad_steps
        if cfg.random_cut:
            cut = int(torch.randint(1, cfg.grad_steps + 1, (), generator=rng))
        x, path_kl = gen.sample_differentiable(
            cfg.batch_size, cut, task.reference, cfg.gumbel_tau, rng, label=condition.joint(y)
        )
        task.reward.calls += cfg.batch_size
        log_p = condition.log_prob(x, y.to(x.device))
        # maximise γ·log p̂(y|x) − α·KL(p_θ(·|y) ‖ p_pre)
        loss = (-cfg.reward_weight * log_p + cfg.kl_weight * path_kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(gen.net.parameters(), cfg.grad_clip)
        opt.step()
        if (step + 1) % cfg.log_every == 0 or step == steps - 1:
            designs = gen.discrete(x)
            hits = (condition.predict(designs) == y).all(1).float().mean().item()
            task.record(
                step,
                designs,
                log_p.detach().cpu().numpy(),
                path_kl.detach().cpu(),
                loss=loss.item(),
                grad_norm=float(grad_norm),
                label_accuracy=hits,
            )
            task.checkpoint(step + 1, cfg, opt)
    gen.condition = ClassCondition(
        target=condition.target_index(),
        guidance=cfg.guidance,
        names=condition.names,
        classes=condition.classes,
        spec=condition.spec,
    )
    evaluation = evaluate_labels(gen, condition, cfg.eval_per_label, cfg.guidance, rng)
    return MethodResult(extra={"label_eval_ft": evaluation})


def evaluate_labels(
    gen, condition: LabelCondition, per_label: int, guidance: float, rng: torch.Generator
) -> dict:
    """Sample ``per_label`` designs at every joint label; accuracy and macro-F1 of
    ``condition.predict`` against the requested label, per condition."""
    index = torch.arange(condition.num_joint).repeat_interleave(per_label)
    x, _ = gen.sample(len(index), rng, label=index, guidance=guidance)
    requested, predicted = condition.split(index).numpy(), condition.predict(x).numpy()
    return {
        name: label_scores(requested[:, k], predicted[:, k], len(classes)) | {"classes": classes}
        for k, (name, classes) in enumerate(zip(condition.names, condition.classes))
    }


SPEC = MethodSpec(id="ctrl", config=CTRLConfig, run=ctrl, condition="label", training_curve=False)
