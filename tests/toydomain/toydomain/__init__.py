"""The ``toy`` domain: points in R² from a Gaussian mixture (the component is the label), a
Gaussian DDPM over them, an MLP component classifier as the learned reward and CSV designs.

The worked example of a third-party domain: the hooks of :class:`rewarddiff.domain.Domain`
and nothing else; it registers through the entry point ``[rewarddiff.domains] toy =
toydomain:DOMAIN`` (``toydomain-0.0.0.dist-info/entry_points.txt``), its oracles on import
(:mod:`toydomain.oracles`). Generator space = design space (no normalisation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.conditioning import LabelCondition
from rewarddiff.config import dataclass_from
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.domain import Domain, elbo
from rewarddiff.gaussian_generator import GaussianGenerator, VectorLayout
from rewarddiff.io import atomic_path, read_json, write_json
from rewarddiff.oracles import learned
from toydomain import oracles  # noqa: F401  (registers the oracles)
from toydomain.nets import (
    DIM,
    Classifier,
    ClassifierConfig,
    Denoiser,
    DenoiserConfig,
    load_classifier,
)

COORDS = [f"x{i}" for i in range(DIM)]


@dataclass
class DataConfig:
    components: int = 4  # means evenly on a circle of ``radius``
    radius: float = 2.0
    spread: float = 0.3  # standard deviation of each component
    sizes: tuple = (256, 64, 64)  # train, valid, test
    seed: int = 0


class Points(np.ndarray):
    """Designs (n, DIM) float32 with the ids of the file they came from (None otherwise)."""

    ids: list[str] | None = None


def mean_distance(x: Tensor) -> float:
    return torch.pdist(x.detach().cpu().float()).mean().item() if len(x) > 1 else float("nan")


class ToyDomain(Domain):
    name = "toy"
    design_suffix = ".csv"
    reward_net = Classifier
    reward_net_settings = ClassifierConfig
    small_reward_network: ClassVar[dict] = {"hidden": 16, "layers": 1}
    report_columns: ClassVar[dict[str, str]] = {"test_distance": "↓"}

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        cfg = dataclass_from(DataConfig, params, "data")
        rng, out_dir = np.random.default_rng(cfg.seed), Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        angles = 2 * np.pi * np.arange(cfg.components) / cfg.components
        means = cfg.radius * np.stack([np.cos(angles), np.sin(angles)], 1)
        for split, n in zip(("train", "valid", "test"), cfg.sizes):
            component = rng.integers(cfg.components, size=n)
            table = pd.DataFrame(means[component] + cfg.spread * rng.standard_normal((n, DIM)),
                                 columns=COORDS).assign(component=component)  # fmt: skip
            if split == "train":  # the ft (0) and eval (1) reward copies' halves
                table["half"] = rng.permutation(n) % 2
            table.to_csv(out_dir / f"{split}.csv", index=False)
        summary = {"classes": [str(k) for k in range(cfg.components)], "sizes": list(cfg.sizes)}
        write_json(out_dir / "dataset.json", summary)
        return summary

    def load_split(self, data_dir: Path, split: str) -> tuple[Tensor, pd.DataFrame]:
        table = pd.read_csv(Path(data_dir) / f"{split}.csv")
        labels = table.drop(columns=COORDS).astype({"component": str})
        return torch.tensor(table[COORDS].to_numpy(np.float32)), labels

    def reward_targets(self, params: dict, data_dir: Path, labels) -> learned.Classes:
        return learned.Classes(read_json(Path(data_dir) / "dataset.json")["classes"], "component")

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> GaussianGenerator:
        net = dataclass_from(DenoiserConfig, params.get("network"), "pretrain.network")
        defaults = {"diffusion_steps": 100, "sampling_steps": 20, "sample_batch": 256,
                    "prediction": "v"}  # fmt: skip
        config = {k: params.get(k, v) for k, v in defaults.items()}
        config |= {"network": net.to_dict(), "domain": self.name}
        diffusion = GaussianDiffusion(polynomial_schedule(config["diffusion_steps"]))
        return GaussianGenerator(diffusion, Denoiser(net), VectorLayout((DIM,)),
                                 sampling_steps=config["sampling_steps"],
                                 sample_batch=config["sample_batch"], config=config,
                                 num_labels=net.num_labels,
                                 prediction=config["prediction"])  # fmt: skip

    def generator_settings(self, params: dict, data_dir: Path, x: Tensor) -> dict:
        return params  # nothing to read from the data: the networks know DIM

    def pretrain_summary(self, gen: GaussianGenerator, x_valid: Tensor, params) -> dict:
        return {"valid_loglik": elbo(gen, x_valid).mean().item()}

    # ----- designs ---------------------------------------------------------------------------
    def to_designs(self, x: Tensor) -> np.ndarray:
        return x.detach().cpu().numpy().astype(np.float32)

    def encode_designs(self, designs, gen, params) -> Tensor:
        return torch.as_tensor(np.asarray(designs, np.float32))

    def read_designs(self, path: Path, embed: bool = False) -> Points:
        table = pd.read_csv(path, dtype={"id": str})
        missing = [c for c in ["id", *COORDS] if c not in table]
        if missing:
            raise UserError(f"{path}: no column(s) {', '.join(missing)}")
        points = table[COORDS].to_numpy(np.float32).view(Points)
        points.ids = table["id"].tolist()
        return points

    def write_designs(self, path: Path, designs, scores: dict[str, np.ndarray]) -> None:
        table = pd.DataFrame(np.asarray(designs), columns=COORDS)
        table.insert(0, "id", self.design_labels(designs))
        with atomic_path(path) as tmp:
            table.assign(**scores).to_csv(tmp, index=False)

    def design_labels(self, designs) -> list[str]:
        return getattr(designs, "ids", None) or [f"design_{i:05d}" for i in range(len(designs))]

    # ----- conditions, metrics ---------------------------------------------------------------
    def label_condition(self, objective, reward_model, data_dir=None, spec=None) -> LabelCondition:
        model = load_classifier(str(reward_model))
        return self.class_condition("component", model.config["classes"], "component",
                                    lambda x: model.to(x.device)(x),
                                    lambda x: model.predict(x.cpu())[0], objective,
                                    data_dir)  # fmt: skip

    def diversity(self, x: Tensor) -> float:
        return mean_distance(x)

    def design_metrics(self, designs, params: dict, data_dir: Path, reward_model) -> dict:
        x = torch.as_tensor(np.asarray(designs, np.float32))
        test = self.load_split(data_dir, "test")[0]
        out = {"n": len(x), "diversity": mean_distance(x),
               "test_distance": torch.cdist(x, test).min(1).values.mean().item()}  # fmt: skip
        if reward_model is not None:
            model = load_classifier(str(reward_model))
            classes, probs = model.config["classes"], model.predict(x)[0]
            for k, c in enumerate(classes):
                out[f"fraction_{c}"] = (probs.argmax(-1) == k).float().mean().item()
                out[f"prob_{c}"] = probs[:, k].mean().item()
            if str(params.get("target")) in classes:
                out["target_fraction"] = out[f"fraction_{params['target']}"]
                out["target_prob"] = out[f"prob_{params['target']}"]
        return out


DOMAIN = ToyDomain()
