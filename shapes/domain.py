"""The ``shape`` domain: procedural shapes (or ShapeNet PC15k / user meshes), a shape-family
classifier as the learned reward, Gaussian point diffusion, ``.npz`` + PLY designs and the
PointFlow-protocol metrics.

Two frames. The generator works on **normalised** point sets (n, N, 3): the training split's
dataset mean/std (PointFlow/PVD/LION), ``normalization.json`` of the prepared data, saved in
every generator's and classifier's config. Designs are **world-unit** point sets (numpy
(n, N, 3), metres for the procedural set, y up): every oracle — analytic or learned — scores
world units; the family classifier normalises its input itself with the normalisation it was
trained with. :meth:`ShapeDomain.to_designs` maps generator outputs to designs with the
normalisation of the generator the domain built or loaded last (stages load one generator).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.config import dataclass_from, resolve_device
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.domain import BUILTIN_SUFFIX, register_domain
from rewarddiff.finetune.ctrl import LabelCondition
from rewarddiff.generator import condition_network
from rewarddiff.io import load_tensors, read_json, save_model, write_json
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import FunctionOracle, OracleInfo, best_first
from rewarddiff.oracles.registry import make_oracles, register_oracle
from rewarddiff.oracles.transforms import differentiable_objective, objective_function
from rewarddiff.training import TrainConfig, train
from rewarddiff.vector_generator import GaussianVectorGenerator
from shapes import data
from shapes.io import read_npz, read_point_sets, write_npz, write_plys
from shapes.metrics import compute_all_metrics, pairwise_cd
from shapes.model import PointClassifier, PointClassifierConfig, PointDenoiser, PointDenoiserConfig
from shapes.oracles import DOMAIN, check_family, check_family_name
from shapes.render import SIDE_VIEW, View, render_grid

SPLITS = ("train", "valid", "test")
PC15K_SPLITS = {"train": "train", "valid": "val", "test": "test"}
MESH_SUFFIXES = (".ply", ".obj")
ANALYTIC = ("symmetry", "stability", "height", "compactness")  # metrics' mean analytic rewards
DIVERSITY_SHAPES = 16  # designs compared pairwise for the diversity


# ----- data sources: params → {split: ShapeSet} ---------------------------------------------
def _procedural(params: dict, num_points: int) -> dict[str, data.ShapeSet]:
    """``per_family`` {train, valid, test} shapes of each of ``families``: shapes 0 … of a
    family go to train, then valid, then test (shape i depends only on seed, family, i)."""
    families = params.get("families", list(data.FAMILIES))
    if not isinstance(families, list) or not families:
        raise UserError(
            f"data.families: {families!r}; expected a list of {', '.join(data.FAMILIES)}"
        )
    sizes = {"train": 500, "valid": 50, "test": 50} | dict(params.get("per_family") or {})
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise UserError(f"data.per_family: unknown split(s) {sorted(unknown)} (use {SPLITS})")
    for split, size in sizes.items():
        if not isinstance(size, int) or size < 1:
            raise UserError(
                f"data.per_family.{split}: {size!r}; every split needs at least 1 shape per family"
            )
    total = sum(sizes.values())
    shapes = data.generate(dict.fromkeys(families, total), params.get("seed", 0), num_points)
    chosen = [f for f in data.FAMILIES if f in families]  # generate's order
    shapes.family = np.searchsorted([data.FAMILIES.index(f) for f in chosen], shapes.family)
    shapes.families = chosen
    del shapes.labels["family"]  # an index into data.FAMILIES; ``family`` is the one above
    rank = np.concatenate([np.arange(total)] * len(chosen))
    bounds = np.cumsum([0] + [sizes[s] for s in SPLITS])
    return {
        s: shapes.subset((rank >= bounds[k]) & (rank < bounds[k + 1])) for k, s in enumerate(SPLITS)
    }


def _pc15k(params: dict, num_points: int) -> dict[str, data.ShapeSet]:
    """ShapeNetCore.v2.PC15k (``root``, ``synsets``, ``max_per_synset``), each set cut to
    ``num_points`` random points of its 15,000 (all of them when it has fewer)."""
    if "root" not in params or "synsets" not in params:
        raise UserError("data: source 'pc15k' needs keys 'root' and 'synsets'")
    synsets = params["synsets"]
    if not isinstance(synsets, list) or not synsets:
        raise UserError(
            f"data.synsets: {synsets!r}; expected a list of synset folders of {params['root']}"
        )
    for synset in synsets:
        if not isinstance(synset, str):
            raise UserError(
                f"data.synsets: {synset!r} is not a folder name; quote synset ids ('03001627': "
                "unquoted, YAML reads them as numbers)"
            )
    if not Path(params["root"]).is_dir():
        raise UserError(f"{params['root']}: not a directory (data.root of source 'pc15k')")
    out = {}
    for split, folder in PC15K_SPLITS.items():
        shapes = data.load_pc15k(
            params["root"], params["synsets"], folder, params.get("max_per_synset")
        )
        if shapes.points.shape[1] > num_points:
            shapes.points = data.subsample(shapes.points, num_points, params.get("seed", 0))
        out[split] = shapes
    return out


def _meshes(params: dict, num_points: int) -> dict[str, data.ShapeSet]:
    """PLY/OBJ meshes under ``root`` (family = the sub-folder name, ``shape`` for files at the
    top), ``num_points`` sampled by area on each, split at random (seeded) into
    ``valid_fraction`` and ``test_fraction`` (≥ 1 mesh each) and train."""
    if "root" not in params:
        raise UserError("data: source 'mesh' needs key 'root' (a folder of PLY/OBJ meshes)")
    root = Path(params["root"])
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (data.root of source 'mesh')")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
    if len(files) < 3:
        raise UserError(f"{root}: {len(files)} PLY/OBJ meshes; need at least 3 (train/valid/test)")
    seed = params.get("seed", 0)
    names = [p.parent.name if p.parent != root else "shape" for p in files]
    families = sorted(set(names))
    shapes = data.ShapeSet(
        np.stack([data.load_mesh(p, num_points, seed) for p in files]),
        np.array([families.index(n) for n in names], np.int64),
        {},
        families,
    )
    order = np.random.default_rng(seed).permutation(len(files))
    n_valid, n_test = (
        max(1, round(params.get(k, 0.1) * len(files))) for k in ("valid_fraction", "test_fraction")
    )
    if n_valid + n_test >= len(files):
        raise UserError(f"{root}: {len(files)} meshes leave no training split")
    parts = np.split(order, [n_valid, n_valid + n_test])
    return {
        "valid": shapes.subset(parts[0]),
        "test": shapes.subset(parts[1]),
        "train": shapes.subset(parts[2]),
    }


SOURCES = {"procedural": _procedural, "pc15k": _pc15k, "mesh": _meshes}


def _halves(family: np.ndarray, seed: int) -> np.ndarray:
    """(n,) 0/1: each family's shapes split at random into two halves of equal size (±1)."""
    rng = np.random.default_rng([seed, 1])
    half = np.empty(len(family), np.int64)
    for f in np.unique(family):
        rows = rng.permutation(np.flatnonzero(family == f))
        half[rows] = np.arange(len(rows)) % 2
    return half


def _pick(count: int, n: int, seed: int) -> np.ndarray:
    """``min(n, count)`` distinct indices into ``range(count)``, seeded: a family-balanced
    subset of a prepared split, whose shapes are ordered by family."""
    return np.sort(np.random.default_rng(seed).permutation(count)[:n])


def random_points(x: Tensor, num_points: int) -> Tensor:
    """(B, num_points, 3): a random subset of each set's points x (B, S, 3), drawn without
    replacement from the global torch RNG; x itself when S = num_points."""
    if x.shape[1] == num_points:
        return x
    chosen = torch.rand(x.shape[:2]).argsort(1)[:, :num_points]
    return x.gather(1, chosen[..., None].expand(-1, -1, 3))


def mean_pairwise_cd(designs: np.ndarray) -> float:
    """Mean Chamfer distance over the distinct pairs of designs (n, N, 3), squared units;
    NaN for fewer than two."""
    if len(designs) < 2:
        return float("nan")
    cd = pairwise_cd(designs, designs)
    return float(cd[~np.eye(len(cd), dtype=bool)].mean())


# ----- the family classifier on world units, and its oracles -------------------------------
@dataclass
class FamilyClassifier:
    """A shape-family classifier ensemble on **world-unit** points: inputs are normalised with
    the dataset normalisation it was trained with (its config's ``normalization``)."""

    ensemble: learned.RewardEnsemble
    normalization: data.Normalization
    classes: list[str]

    def __call__(self, x: Tensor) -> Tensor:
        """Differentiable calibrated probabilities (B, C) of world points x (B, N, 3)."""
        shift = torch.as_tensor(self.normalization.shift, dtype=x.dtype, device=x.device)
        scale = torch.as_tensor(self.normalization.scale, dtype=x.dtype, device=x.device)
        return self.ensemble.to(x.device)((x - shift) / scale)

    def predict(self, points: np.ndarray) -> Tensor:
        """Calibrated probabilities (n, C) of world points (n, N, 3), on the CPU."""
        x = torch.from_numpy(self.normalization.apply(np.asarray(points)))
        return self.ensemble.predict(x.to(next(self.ensemble.parameters()).device))[0].cpu()


@lru_cache(maxsize=8)
def load_family_classifier(path: str) -> FamilyClassifier:
    if not Path(path).exists():
        raise UserError(f"{path}: shape-family classifier not found (run train_reward)")
    ensemble = learned.RewardEnsemble.load(
        path, lambda c: PointClassifier(PointClassifierConfig(**c["network"]))
    )
    config = ensemble.config
    return FamilyClassifier(
        ensemble, data.Normalization.from_dict(config["normalization"]), config["classes"]
    )


FAMILY_INFOS = {
    "family_prob": OracleInfo(
        "family_prob:<family>",
        DOMAIN,
        "maximize",
        "probability",
        "moderate",
        True,
        "P(family | x) from the calibrated shape-family classifier ensemble",
    ),
    "family_logodds": OracleInfo(
        "family_logodds:<family>",
        DOMAIN,
        "maximize",
        "log-odds",
        "moderate",
        True,
        "log P(family | x) − log(1 − P(family | x)) from the shape-family classifier",
    ),
}


def _family_oracle(kind: str, argument, reward_model) -> FunctionOracle:
    """P(family ``argument`` | x), or its log-odds, from the classifier at ``reward_model``."""
    if reward_model is None:
        raise UserError(f"oracle {kind} needs a reward model (--reward-model PATH)")
    classifier = load_family_classifier(str(reward_model))
    check_family_name(kind, argument, classifier.classes)
    k = classifier.classes.index(argument)

    def of_probs(p: Tensor) -> Tensor:
        p = p[:, k].clamp(1e-6, 1 - 1e-6)
        return torch.logit(p) if kind == "family_logodds" else p

    info = replace(
        FAMILY_INFOS[kind],
        name=f"{kind}:{argument}",
        description=f"{argument} by the family classifier {reward_model}",
    )
    return FunctionOracle(
        info,
        lambda points: of_probs(classifier.predict(points)).numpy(),
        lambda x: of_probs(classifier(x)),
    )


@register_oracle(DOMAIN, "family_prob", FAMILY_INFOS["family_prob"], check_family("family_prob"))
def family_prob(argument=None, reward_model=None, **context):
    return _family_oracle("family_prob", argument, reward_model)


@register_oracle(
    DOMAIN, "family_logodds", FAMILY_INFOS["family_logodds"], check_family("family_logodds")
)
def family_logodds(argument=None, reward_model=None, **context):
    return _family_oracle("family_logodds", argument, reward_model)


# ----- the domain --------------------------------------------------------------------------
@dataclass
class ShapeDomain:
    name: str = "shape"
    design_suffix: str = BUILTIN_SUFFIX["shape"]
    # report columns beyond the generic ones: statistic → better direction (1-NNA: 50 % ideal)
    report_columns: ClassVar[dict[str, str]] = {
        "mmd_cd": "↓",
        "cov_cd": "↑",
        "nna_cd": "→0.5",
        "mmd_emd": "↓",
        "cov_emd": "↑",
        "nna_emd": "→0.5",
        "diversity_cd": "↑",
    }
    # world frame of the designs: the normalisation of the last generator built or loaded
    normalization: data.Normalization | None = None

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """``{train,valid,test}.npz`` (world-unit points (n, S, 3), score arrays ``family``
        (index into ``families``), the generating labels, ``half`` (train: 0 = ft, 1 = eval)),
        ``normalization.json`` (train mean/std) and ``dataset.json`` (the summary returned).
        S = ``stored_points`` (default 15,000, as PC15k; at most what a PC15k file holds) per
        shape are stored; models work on ``points`` (N) of them: pretraining draws a fresh
        random N each batch, every other consumer a fixed subset (:meth:`load_split`).
        ``unit_box: true`` first scales every shape into [-1, 1]³ (the designs' units then)."""
        source = params.get("source", "procedural")
        if source not in SOURCES:
            raise UserError(f"data: unknown source {source!r} (known: {', '.join(SOURCES)})")
        num_points = params.get("points", 2048)
        stored = params.get("stored_points", 15_000)
        if stored < num_points:
            raise UserError(f"data: stored_points ({stored}) is below points ({num_points})")
        sets = SOURCES[source](params, stored)
        stored = sets["train"].points.shape[1]
        if stored < num_points:
            raise UserError(
                f"data: the shapes have {stored} points, fewer than points = {num_points}"
            )
        if params.get("unit_box", False):
            for shapes in sets.values():
                shapes.points = data.Normalization.unit_box(shapes.points).apply(shapes.points)
        out_dir = Path(out_dir)
        for split, shapes in sets.items():
            scores = shapes.labels | {"family": shapes.family}
            if split == "train":
                scores["half"] = _halves(shapes.family, params.get("seed", 0))
            write_npz(out_dir / f"{split}.npz", shapes.points, scores)
        write_json(
            out_dir / "normalization.json",
            data.Normalization.dataset(sets["train"].points).to_dict(),
        )
        families = sets["train"].families
        summary = {
            "source": source,
            "families": families,
            "num_points": num_points,
            "stored_points": stored,
            "unit_box": bool(params.get("unit_box", False)),
            "counts": {
                s: dict(
                    zip(families, np.bincount(sets[s].family, minlength=len(families)).tolist())
                )
                for s in SPLITS
            },
        }
        write_json(out_dir / "dataset.json", summary)
        return summary

    def load_split(
        self, data_dir: Path, split: str, all_points: bool = False
    ) -> tuple[Tensor, pd.DataFrame]:
        """**Normalised** points (n, N, 3) float32 of a prepared split — the working N of each
        shape's stored points (a fixed random subset), or all S of them with ``all_points`` —
        and its labels (one row per shape; ``family`` is the family name)."""
        data_dir = Path(data_dir)
        points, columns = read_npz(data_dir / f"{split}.npz")
        summary = read_json(data_dir / "dataset.json")
        families = summary["families"]
        if not all_points and points.shape[1] > summary["num_points"]:
            points = data.subsample(points, summary["num_points"], SPLITS.index(split))
        labels = pd.DataFrame(columns)
        labels["family"] = [families[int(i)] for i in columns["family"]]
        if "half" in labels:
            labels["half"] = labels["half"].astype(int)
        return torch.from_numpy(self._data_normalization(data_dir).apply(points)), labels

    @staticmethod
    def _data_normalization(data_dir: Path) -> data.Normalization:
        return data.Normalization.from_dict(read_json(Path(data_dir) / "normalization.json"))

    # ----- reward models -------------------------------------------------------------------
    def train_reward(
        self, params: dict, data_dir: Path, out_dir: Path, copies: tuple[str, ...] = ("ft", "eval")
    ) -> dict:
        """Shape-family classifier ensembles (``heads`` PointClassifiers each) on disjoint
        halves of train: ``ft`` (half 0) steers, ``eval`` (half 1) scores; temperature-scaled
        on valid. Writes ``<copy>/model.safetensors`` and ``<copy>/metrics.json`` (test
        accuracy, per family)."""
        x_tr, lab_tr = self.load_split(data_dir, "train")
        x_va, lab_va = self.load_split(data_dir, "valid")
        x_te, lab_te = self.load_split(data_dir, "test")
        classes = read_json(Path(data_dir) / "dataset.json")["families"]

        def y(labels: pd.DataFrame) -> Tensor:
            return torch.tensor([classes.index(f) for f in labels["family"]])

        net_cfg = dataclass_from(
            PointClassifierConfig, params.get("network"), "train_reward.network"
        )
        net_cfg.num_outputs = len(classes)
        fit_cfg = dataclass_from(learned.FitConfig, params.get("fit"), "train_reward.fit")
        config = {
            "network": net_cfg.to_dict(),
            "classes": classes,
            "domain": self.name,
            "num_points": x_tr.shape[1],
            "normalization": self._data_normalization(data_dir).to_dict(),
        }
        results = {}
        for copy in copies:
            half = ("ft", "eval").index(copy)
            rows = torch.tensor((lab_tr["half"] == half).to_numpy())
            heads = []
            for head in range(params.get("heads", 1)):
                seed = params.get("seed", 0) + 100 * half + head
                torch.manual_seed(seed)
                net = PointClassifier(net_cfg)
                learned.fit(
                    net,
                    x_tr[rows],
                    y(lab_tr)[rows],
                    x_va,
                    y(lab_va),
                    fit_cfg,
                    torch.Generator().manual_seed(seed),
                    log=lambda m, c=copy: print(c, m, flush=True),
                )
                heads.append(net)
            logits = torch.stack([learned.predict_batched(h, x_va) for h in heads]).mean(0)
            temperature = learned.fit_temperature(logits, y(lab_va))
            ensemble = learned.RewardEnsemble(heads, "classification", temperature)
            pred = ensemble.predict(x_te)[0].argmax(-1)
            truth = y(lab_te)
            test = {
                "accuracy": (pred == truth).float().mean().item(),
                "per_class_accuracy": {
                    c: (pred[truth == k] == k).float().mean().item() for k, c in enumerate(classes)
                },
                "n_train": int(rows.sum()),
                "n_test": len(x_te),
                "temperature": temperature,
            }
            ensemble.save(Path(out_dir) / copy / "model.safetensors", config)
            write_json(Path(out_dir) / copy / "metrics.json", test)
            results[copy] = test
        return results

    def reward_network(self, params: dict | None = None) -> PointClassifier:
        """A point-set regressor (normalised points (B, N, 3) → (B,), with ``features``) for
        methods that fit their own reward model (``rcgdm``, ``seiko``); ``params`` override
        :class:`PointClassifierConfig` fields."""
        cfg = {"hidden": 32, "layers": 2, "k": 16, "heads": 4} | dict(params or {})
        net_cfg = dataclass_from(PointClassifierConfig, cfg, "finetune reward_network")
        net_cfg.num_outputs = 1
        return PointClassifier(net_cfg)

    def label_condition(
        self,
        objective: dict,
        reward_model: Path,
        data_dir: Path | None = None,
        spec: dict | None = None,
    ) -> LabelCondition:
        """Shape family as a condition (``ctrl``): p̂(family | x) from the calibrated
        classifier at ``reward_model`` on the generator's outputs (normalised, mapped to world
        units); family frequencies of the training split (with ``data_dir``); target = the
        objective's ``target`` family. (``spec`` is unused: the classes come with the
        classifier.)"""
        classifier = load_family_classifier(str(reward_model))
        classes = classifier.classes
        frequencies = None
        if data_dir is not None:
            counts = read_json(Path(data_dir) / "dataset.json")["counts"]["train"]
            frequencies = [[float(counts.get(c, 0)) for c in classes]]
        target = objective.get("target")

        def log_prob(x: Tensor, y: Tensor) -> Tensor:
            probs = classifier(self._world_torch(x))
            return torch.log(probs.gather(1, y[:, :1]) + 1e-6)[:, 0]  # CTRL: log(p̂ + 1e-6)

        def predict(x: Tensor) -> Tensor:
            return classifier.predict(self.to_designs(x)).argmax(-1, keepdim=True)

        return LabelCondition(
            ["family"],
            [classes],
            log_prob,
            predict,
            frequencies,
            [target] if target in classes else None,
        )

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> GaussianVectorGenerator:
        """Gaussian DDPM over (``num_points``, 3) normalised point sets: polynomial schedule of
        ``diffusion_steps``, DDPM (ancestral) or DDIM (``sampler``) sampling in
        ``sampling_steps``, a PointDenoiser of
        ``network`` that predicts v (``prediction``, default; or ε); ``normalization`` (the
        data's) becomes the domain's world frame."""
        net_cfg = dataclass_from(PointDenoiserConfig, params.get("network"), "pretrain.network")
        config = {
            "network": net_cfg.to_dict(),
            "diffusion_steps": params.get("diffusion_steps", 1000),
            "sampling_steps": params.get("sampling_steps", 100),
            "sample_batch": params.get("sample_batch", 64),
            "sampler": params.get("sampler", "ddpm"),
            "prediction": params.get("prediction", "v"),
            "num_points": params["num_points"],
            "normalization": params["normalization"],
            "domain": self.name,
        }
        self.normalization = data.Normalization.from_dict(config["normalization"])
        return GaussianVectorGenerator(
            GaussianDiffusion(polynomial_schedule(config["diffusion_steps"])),
            PointDenoiser(net_cfg),
            (config["num_points"], 3),
            config["sampling_steps"],
            config["sample_batch"],
            config,
            net_cfg.num_labels,
            config["sampler"],
            config["prediction"],
        )

    def pretrain(
        self,
        params: dict,
        data_dir: Path,
        out_dir: Path,
        stop_at_step: int | None = None,
        identity: dict | None = None,
    ) -> dict:
        """Train with EMA (:func:`rewarddiff.training.train`), save ``model.safetensors``;
        returns the validation ELBO (nats per shape and per point, normalised coordinates) of
        ``loglik_shapes`` valid shapes and CD-based MMD/COV/1-NNA of ``eval_samples`` samples
        against as many valid shapes (world units; 0 skips them). Each batch takes a fresh
        random subset of the working point count from each shape's stored points."""
        x, _ = self.load_split(data_dir, "train", all_points=True)
        num_points = read_json(Path(data_dir) / "dataset.json")["num_points"]
        norm = self._data_normalization(data_dir).to_dict()
        gen = self.build_generator(params | {"num_points": num_points, "normalization": norm})
        gen.net.to(resolve_device(params.get("device", "auto")))
        cfg = dataclass_from(TrainConfig, params.get("train"), "pretrain.train")
        # t and noise are drawn from the global RNG, whose state the checkpoint saves
        ema = train(
            gen.net,
            lambda net, batch: gen.loss(batch),
            lambda idx: random_points(x[idx], num_points),
            len(x),
            cfg,
            out_dir,
            stop_at_step,
            identity,
        )
        if stop_at_step is not None:
            return {"stopped_at": stop_at_step}
        save_model(Path(out_dir) / "model.safetensors", ema.model, gen.config)
        gen.net = ema.model
        x_va, _ = self.load_split(data_dir, "valid")
        ll = gen.log_likelihood(
            x_va[_pick(len(x_va), params.get("loglik_shapes", 128), 0)],
            generator=torch.Generator().manual_seed(0),
        )
        out = {
            "valid_loglik_per_shape": ll.mean().item(),
            "valid_nats_per_point": -ll.mean().item() / gen.shape[0],
        }
        n = min(params.get("eval_samples", 16), len(x_va))
        if n > 1:
            samples, _ = gen.sample(n, torch.Generator().manual_seed(0))
            reference = self.to_designs(x_va[_pick(len(x_va), n, 0)])
            quick = compute_all_metrics(
                self.to_designs(samples), reference, emd_points=min(256, gen.shape[0])
            )
            out |= {f"sample_{k}": quick[k] for k in ("mmd_cd", "cov_cd", "nna_cd")}
        return out

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> GaussianVectorGenerator:
        tensors, config = load_tensors(checkpoint)
        gen = self.build_generator(config)
        gen.net.load_state_dict(tensors)
        gen.net.to(resolve_device(device))
        if config.get("condition"):
            gen.config["condition"] = config["condition"]
        return gen

    def save_generator(self, path: Path, gen: GaussianVectorGenerator) -> None:
        save_model(path, gen.net, gen.config)

    def conditional_generator(
        self, gen: GaussianVectorGenerator, num_labels: int
    ) -> GaussianVectorGenerator:
        """``gen`` with a zero-initialised condition embedding added: ``num_labels`` classes,
        or a scalar value when ``num_labels`` is 0. Computes exactly ``gen``'s function."""
        network = condition_network(gen.config["network"], num_labels)
        return gen.with_condition(self.build_generator(gen.config | {"network": network}))

    # ----- designs, oracles, rewards --------------------------------------------------------
    def _frame(self) -> data.Normalization:
        if self.normalization is None:
            raise UserError("shape designs: no generator loaded, so the world frame is unknown")
        return self.normalization

    def to_designs(self, x: Tensor) -> np.ndarray:
        """Generator outputs (n, N, 3) normalised → designs (n, N, 3) float32, world units."""
        return self._frame().invert(x.detach().cpu().numpy())

    def _world_torch(self, x: Tensor) -> Tensor:
        """Differentiable :meth:`to_designs`: (n, N, 3) tensor → world units, same device."""
        norm = self._frame()
        scale = torch.as_tensor(norm.scale, dtype=x.dtype, device=x.device)
        return x * scale + torch.as_tensor(norm.shift, dtype=x.dtype, device=x.device)

    def reward_function(self, components: list[dict], reward_model: Path):
        """Normalised generator outputs (n, N, 3) → combined reward (n,) of world designs."""
        return objective_function(self.name, components, self.to_designs, reward_model=reward_model)

    def torch_reward_function(self, components: list[dict], reward_model: Path):
        """Normalised generator outputs (n, N, 3) → differentiable combined reward (n,): the
        oracles' ``torch_score`` of the world-unit points."""
        objective = differentiable_objective(self.name, components, reward_model=reward_model)
        return lambda x: objective(self._world_torch(x))

    def read_designs(self, path: Path) -> np.ndarray:
        """Point sets of an ``.npz`` (``points``, optional ``ids``) or one ``.ply``."""
        return read_point_sets(path)

    def write_designs(self, path: Path, designs: np.ndarray, scores: dict[str, np.ndarray]) -> None:
        """``path`` (.npz: ``points`` + one array per score) and one PLY per design in
        ``<stem>_ply/design_00000.ply`` … beside it (older PLYs there are removed); the ids
        the designs were read with, if any, go into the ``.npz``."""
        path = Path(path)
        write_npz(path, designs, scores, getattr(designs, "ids", None))
        folder = path.parent / f"{path.stem}_ply"
        for old in folder.glob("design_*.ply"):
            old.unlink()
        write_plys(folder, designs)

    def design_labels(self, designs: np.ndarray) -> list[str]:
        """The ids the designs were read with, else ``design_00000`` …, the PLY file names."""
        ids = getattr(designs, "ids", None)
        return ids or [f"design_{i:05d}" for i in range(len(designs))]

    def score(
        self, designs: np.ndarray, oracles: list[str], reward_model: Path | None = None
    ) -> dict[str, np.ndarray]:
        """One column per oracle spec (NaN where an oracle failed on a design)."""
        built = make_oracles(self.name, oracles, reward_model=reward_model)
        points = np.asarray(designs)  # plain arrays for the oracles
        return {spec: oracle(points) for spec, oracle in built.items()}

    def diversity(self, x: Tensor) -> float:
        """Mean pairwise Chamfer distance (squared world units) among the first
        ``DIVERSITY_SHAPES`` generator outputs x (n, N, 3) (the per-round log's diversity)."""
        return mean_pairwise_cd(self.to_designs(x[:DIVERSITY_SHAPES]))

    def render(self, designs: np.ndarray, path: Path, titles: list[str] | None = None) -> Path:
        """PNG grid of the designs (n, N, 3) (fixed view, y up)."""
        return render_grid(designs, path, titles)

    def render_designs(self, runs: list[tuple[str, Path]], path: Path, per_run: int = 4) -> None:
        """PNG grid for the report: one row per (label, run directory), its ``per_run`` best
        designs by ``reward_eval`` (from ``designs.npz`` + ``scores.csv``), each from two fixed
        views (front-left and side)."""
        panels, titles = [], []
        for label, run_dir in runs:
            designs = self.read_designs(Path(run_dir) / f"designs{self.design_suffix}")
            scores = pd.read_csv(Path(run_dir) / "scores.csv")["reward_eval"].to_numpy()
            best = best_first(scores)[:per_run]
            empty = per_run - len(best)  # NaN panels stay blank
            panels += [designs[best], np.full((empty, *designs.shape[1:]), np.nan, np.float32)]
            titles += [f"{label} {scores[i]:.3g}" for i in best] + [""] * empty
        render_grid(np.concatenate(panels), path, titles, cols=per_run, view=(View(), SIDE_VIEW))

    # ----- evaluation ----------------------------------------------------------------------
    def metrics(
        self,
        designs: np.ndarray,
        params: dict,
        data_dir: Path,
        reward_model: Path | None,
        pretrained: Path | None,
    ) -> dict:
        """PointFlow-protocol MMD/COV/1-NNA (CD in m², EMD in m, world units) of at most
        ``metrics_shapes`` designs against as many test shapes at ``metrics_points`` points
        (``emd_method`` exact or sinkhorn on ``emd_points``); family fractions and the
        ``target`` family's probability by the evaluation classifier; mean analytic rewards;
        diversity; the ELBO under the pretrained model (``loglik_num_t`` draws of t)."""
        designs = np.asarray(designs, np.float32)
        reference = read_npz(Path(data_dir) / "test.npz")[0]
        n = min(params.get("metrics_shapes", 100), len(designs), len(reference))
        points = min(params.get("metrics_points", 2048), designs.shape[1], reference.shape[1])
        seed = params.get("seed", 0)
        out = {"n": len(designs)}
        out |= compute_all_metrics(
            data.subsample(designs[:n], points, seed),
            data.subsample(reference[_pick(len(reference), n, seed)], points, seed + 1),
            emd_method=params.get("emd_method", "exact"),
            emd_points=params.get("emd_points", 512),
            seed=seed,
        )
        if reward_model is not None:
            classifier = load_family_classifier(str(reward_model))
            probs = classifier.predict(designs)
            picked = probs.argmax(-1)
            for k, c in enumerate(classifier.classes):
                out[f"fraction_{c}"] = (picked == k).float().mean().item()
                out[f"prob_{c}"] = probs[:, k].mean().item()
            if params.get("target") in classifier.classes:
                out["target_fraction"] = out[f"fraction_{params['target']}"]
                out["target_prob"] = out[f"prob_{params['target']}"]
        for spec, values in self.score(designs, list(params.get("analytic", ANALYTIC))).items():
            finite = values[np.isfinite(values)]
            out[f"mean_{spec}"] = float(finite.mean()) if len(finite) else float("nan")
        out["diversity_cd"] = mean_pairwise_cd(designs[:DIVERSITY_SHAPES])
        if pretrained is not None:
            gen = self.load_generator(pretrained, "auto")
            if designs.shape[1] < gen.shape[0]:
                raise UserError(
                    f"designs have {designs.shape[1]} points; the pretrained model "
                    f"needs {gen.shape[0]} for its likelihood"
                )
            x = torch.from_numpy(self._frame().apply(data.subsample(designs, gen.shape[0], seed)))
            ll = gen.log_likelihood(
                x, num_t=params.get("loglik_num_t", 16), generator=torch.Generator().manual_seed(0)
            )
            out["loglik_pretrained"] = ll.mean().item()
            out["loglik_pretrained_per_point"] = ll.mean().item() / gen.shape[0]
        return out


SHAPE = register_domain(ShapeDomain())
