"""Fine-tuning (steering) methods, one module per method id; see ``METHODS``."""

from rewarddiff.finetune.best_of_n import BestOfNConfig, best_of_n
from rewarddiff.finetune.common import CountingReward, FinetuneTask
from rewarddiff.finetune.ctrl import CTRLConfig, LabelCondition, ctrl
from rewarddiff.finetune.ddpo import DDPOConfig, ddpo
from rewarddiff.finetune.draft import DraftConfig, draft
from rewarddiff.finetune.guidance import GuidanceConfig, guidance
from rewarddiff.finetune.rcgdm import RCGDMConfig, rcgdm
from rewarddiff.finetune.rgdm import RGDMConfig, rgdm
from rewarddiff.finetune.seiko import SEIKOConfig, seiko

METHODS = {
    "best_of_n": (best_of_n, BestOfNConfig),
    "rgdm": (rgdm, RGDMConfig),
    "draft": (draft, DraftConfig),
    "ddpo": (ddpo, DDPOConfig),
    "ctrl": (ctrl, CTRLConfig),
    "rcgdm": (rcgdm, RCGDMConfig),
    "seiko": (seiko, SEIKOConfig),
    "guidance": (guidance, GuidanceConfig),
}
# one line per method for `rewarddiff finetune --help`
DESCRIPTIONS = {
    "best_of_n": "sample N from p_pre, keep the top k by reward (no training)",
    "rgdm": "reward-guided exploration: train on own samples weighted by exp(r/tau)",
    "draft": "back-propagate a differentiable reward through the last K steps (+ kl_weight·KL)",
    "ddpo": "PPO on per-step log-probs of the denoising chain (any oracle; + kl_weight·KL)",
    "ctrl": "add a new label condition: zero-init embedding, KL-regularised log p(y|x) ascent",
    "rcgdm": "pseudo-label data with a reward model fit on a labelled subset; sample at target a",
    "seiko": "online rounds: query the oracle, refit an optimistic reward model, KL-tuned ascent",
    "guidance": "no training: reward-gradient guidance through x0-hat at sampling (DPS-style)",
}
# methods that return their designs instead of a fine-tuned model (written as selected<suffix>)
SELECTION = {"best_of_n", "guidance"}
# methods that need a differentiable reward (oracles with torch_score)
DIFFERENTIABLE = {"draft", "guidance"}

__all__ = [
    "METHODS",
    "BestOfNConfig",
    "CTRLConfig",
    "LabelCondition",
    "CountingReward",
    "DDPOConfig",
    "DIFFERENTIABLE",
    "DESCRIPTIONS",
    "DraftConfig",
    "FinetuneTask",
    "GuidanceConfig",
    "SELECTION",
    "RCGDMConfig",
    "RGDMConfig",
    "SEIKOConfig",
    "best_of_n",
    "ctrl",
    "ddpo",
    "draft",
    "guidance",
    "rcgdm",
    "rgdm",
    "seiko",
]
