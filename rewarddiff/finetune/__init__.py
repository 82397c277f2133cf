"""Fine-tuning (steering) methods, one module per method id; see ``METHODS``."""

from rewarddiff.finetune.best_of_n import BestOfNConfig, best_of_n
from rewarddiff.finetune.common import CountingReward, FinetuneTask
from rewarddiff.finetune.rgdm import RGDMConfig, rgdm

METHODS = {"best_of_n": (best_of_n, BestOfNConfig), "rgdm": (rgdm, RGDMConfig)}

__all__ = [
    "METHODS",
    "BestOfNConfig",
    "CountingReward",
    "FinetuneTask",
    "RGDMConfig",
    "best_of_n",
    "rgdm",
]
