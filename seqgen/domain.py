"""What the sequence domains (``dna``, ``protein``) share: a masked-diffusion generator over
token arrays (n, L) built from the dilated-CNN denoiser, its pretraining and conditioning, the
regressor for methods that fit their own reward model, FASTA designs and oracle scoring.
Subclasses supply the data, the reward models, ``to_designs`` and the evaluation metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rewarddiff.config import dataclass_from, resolve_device
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.generator import MaskedSequenceGenerator, condition_network
from rewarddiff.io import load_tensors, save_model
from rewarddiff.oracles.registry import make_oracles
from rewarddiff.oracles.transforms import differentiable_objective, objective_function
from rewarddiff.training import TrainConfig, train
from seqgen import metrics
from seqgen.data import write_fasta
from seqgen.model import CNNConfig, SequenceClassifier, SequenceDenoiser


class SequenceDomain:
    """Base of the sequence domains; dataclass subclasses set ``name``, ``design_suffix``,
    ``length`` (positions L) and ``vocab_size`` (tokens the networks see, e.g. 4 for DNA, 20
    amino acids + PAD for proteins) and implement ``load_split`` and ``to_designs``."""

    name: str
    length: int
    vocab_size: int

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> MaskedSequenceGenerator:
        net_cfg = dataclass_from(CNNConfig, params.get("network"), "pretrain.network")
        net_cfg.vocab_size = self.vocab_size
        diffusion = MaskedDiffusion(
            self.vocab_size,
            num_labels=net_cfg.num_labels,
            label_dropout=params.get("label_dropout", 0.0),
        )
        config = {
            "network": net_cfg.to_dict(),
            "label_dropout": diffusion.label_dropout,
            "sampling_steps": params.get("sampling_steps", 100),
            "length": self.length,
            "domain": self.name,
        }
        return MaskedSequenceGenerator(
            diffusion,
            SequenceDenoiser(net_cfg),
            self.length,
            config["sampling_steps"],
            config=config,
        )

    def pretrain(
        self, params: dict, data_dir: Path, out_dir: Path, stop_at_step: int | None = None
    ) -> dict:
        x, _ = self.load_split(data_dir, "train")
        gen = self.build_generator(params)
        gen.net.to(resolve_device(params.get("device", "auto")))
        cfg = dataclass_from(TrainConfig, params.get("train"), "pretrain.train")
        # the masked loss draws from the global RNG, whose state the checkpoint saves
        ema = train(
            gen.net,
            lambda net, batch: gen.diffusion.loss(net, batch),
            lambda idx: x[idx].to(gen.device),
            len(x),
            cfg,
            out_dir,
            stop_at_step,
        )
        if stop_at_step is not None:
            return {"stopped_at": stop_at_step}
        save_model(Path(out_dir) / "model.safetensors", ema.model, gen.config)
        x_va, _ = self.load_split(data_dir, "valid")
        gen.net = ema.model
        ll = gen.log_likelihood(x_va[:512], generator=torch.Generator().manual_seed(0))
        return {
            "valid_loglik_per_seq": ll.mean().item(),
            "valid_nats_per_position": -ll.mean().item() / self.length,
        }

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> MaskedSequenceGenerator:
        tensors, config = load_tensors(checkpoint)
        gen = self.build_generator(
            {
                "network": config["network"],
                "label_dropout": config["label_dropout"],
                "sampling_steps": config["sampling_steps"],
            }
        )
        gen.net.load_state_dict(tensors)
        gen.net.to(resolve_device(device))
        if config.get("condition"):
            gen.config["condition"] = config["condition"]
        return gen

    def conditional_generator(
        self, gen: MaskedSequenceGenerator, num_labels: int, label_dropout: float = 0.0
    ) -> MaskedSequenceGenerator:
        """``gen`` with a zero-initialised condition embedding added: ``num_labels`` classes,
        or a scalar value when ``num_labels`` is 0. Computes exactly ``gen``'s function."""
        new = self.build_generator(
            {
                "network": condition_network(gen.config["network"], num_labels),
                "label_dropout": label_dropout,
                "sampling_steps": gen.sampling_steps,
            }
        )
        return gen.with_condition(new)

    def reward_network(self, params: dict | None = None) -> SequenceClassifier:
        """A regressor over sequences (tokens or relaxed one-hot → (B,)) for methods that fit
        their own reward model (``rcgdm``, ``seiko``); ``params`` override CNNConfig fields."""
        cfg = {"hidden": 32, "layers": 4, "dropout": 0.1} | dict(params or {})
        net_cfg = dataclass_from(CNNConfig, cfg, "finetune reward_network")
        net_cfg.vocab_size, net_cfg.num_outputs = self.vocab_size, 1
        return SequenceClassifier(net_cfg)

    def save_generator(self, path: Path, gen: MaskedSequenceGenerator) -> None:
        save_model(path, gen.net, gen.config)

    # ----- designs, oracles, rewards --------------------------------------------------------
    def write_designs(self, path: Path, designs: list[str], scores: dict[str, np.ndarray]) -> None:
        desc = [" ".join(f"{k}={v[i]:.4g}" for k, v in scores.items()) for i in range(len(designs))]
        write_fasta(path, [f"design_{i}" for i in range(len(designs))], designs, desc)

    def design_labels(self, designs: list[str]) -> list[str]:
        return list(designs)

    def score(
        self, designs: list[str], oracles: list[str], reward_model: Path | None = None
    ) -> dict[str, np.ndarray]:
        """One column per oracle spec (NaN where an oracle failed on a design)."""
        built = make_oracles(self.name, oracles, reward_model=reward_model)
        return {spec: oracle(designs) for spec, oracle in built.items()}

    def reward_function(self, components: list[dict], reward_model: Path):
        """tokens (n, L) → combined reward (n,), from the objective's oracle components."""
        return objective_function(self.name, components, self.to_designs, reward_model=reward_model)

    def torch_reward_function(self, components: list[dict], reward_model: Path):
        """Relaxed one-hot (n, L, V) → differentiable combined reward (n,)."""
        return differentiable_objective(self.name, components, reward_model=reward_model)

    def diversity(self, tokens: torch.Tensor) -> float:
        """Mean pairwise Hamming distance of token arrays (the per-round log's diversity)."""
        return metrics.mean_pairwise_hamming(tokens.numpy())
