"""The ``shape`` domain: procedural shapes (or ShapeNet PC15k / user meshes,
:mod:`shapes.sources`), a shape-family classifier as the learned reward, Gaussian point
diffusion, ``.npz`` + PLY designs and the PointFlow-protocol metrics.

Two frames. The generator works on **normalised** point sets (n, N, 3): the training split's
dataset mean/std (PointFlow/PVD/LION), ``normalization.json`` of the prepared data, saved in
every generator's and classifier's config. Designs are **world-unit** point sets (numpy
(n, N, 3), metres for the procedural set, y up): every oracle — analytic or learned — scores
world units; the family classifier normalises its input itself with the normalisation it was
trained with. The hooks that read generator outputs map them to world units with the
normalisation of the generator the domain is bound to (:meth:`ShapeDomain.for_generator`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
from rewarddiff.domain import Domain, elbo, register_domain
from rewarddiff.gaussian_generator import GaussianGenerator, VectorLayout
from rewarddiff.io import read_json
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import best_first
from shapes import DESIGN_SUFFIX, data, sources
from shapes.data import Normalization
from shapes.io import read_npz, read_point_sets, write_npz, write_plys
from shapes.metrics import compute_all_metrics, pairwise_cd
from shapes.model import PointClassifier, PointClassifierConfig, PointDenoiser, PointDenoiserConfig
from shapes.oracles import load_family_classifier
from shapes.render import SIDE_VIEW, View, render_grid

ANALYTIC = ("symmetry", "stability", "height", "compactness")  # metrics' mean analytic rewards
DIVERSITY_SHAPES = 16  # designs compared pairwise for the diversity


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


@dataclass
class ShapeDomain(Domain):
    name: str = "shape"
    design_suffix: str = DESIGN_SUFFIX
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
    reward_net = PointClassifier
    reward_net_settings = PointClassifierConfig
    small_reward_network: ClassVar[dict] = {"hidden": 32, "layers": 2, "k": 16, "heads": 4}
    # the world frame of generator outputs: the bound generator's normalisation
    normalization: Normalization | None = None

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """:func:`shapes.sources.prepare`: world-unit ``{train,valid,test}.npz`` (``half`` in
        train), ``normalization.json`` and ``dataset.json`` (the summary returned)."""
        return sources.prepare(params, Path(out_dir))

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
            points = data.subsample(points, summary["num_points"], sources.SPLITS.index(split))
        labels = pd.DataFrame(columns)
        labels["family"] = [families[int(i)] for i in columns["family"]]
        if "half" in labels:
            labels["half"] = labels["half"].astype(int)
        return torch.from_numpy(self._data_normalization(data_dir).apply(points)), labels

    @staticmethod
    def _data_normalization(data_dir: Path) -> Normalization:
        return Normalization.from_dict(read_json(Path(data_dir) / "normalization.json"))

    # ----- reward models -------------------------------------------------------------------
    def reward_targets(self, params: dict, data_dir: Path, labels) -> learned.Classes:
        """The families of the prepared data (PointClassifier ensembles)."""
        return learned.Classes(read_json(Path(data_dir) / "dataset.json")["families"], "family")

    def reward_config(self, data_dir: Path, x_train: Tensor) -> dict:
        """The classifier normalises world points with the data's normalisation."""
        return {
            "num_points": x_train.shape[1],
            "normalization": self._data_normalization(data_dir).to_dict(),
        }

    def label_condition(self, objective, reward_model, data_dir=None, spec=None) -> LabelCondition:
        """Shape family as a condition (``ctrl``): p̂(family | x) from the calibrated
        classifier at ``reward_model`` on the generator's outputs mapped to world units.
        (``spec`` is unused: the classes come with the classifier.)"""
        classifier = load_family_classifier(str(reward_model))
        return self.class_condition(
            "family",
            classifier.classes,
            "family",
            lambda x: classifier(self.torch_designs(x)),
            lambda x: classifier.predict(self.to_designs(x)),
            objective,
            data_dir,
        )

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> GaussianGenerator:
        """Gaussian DDPM over (``num_points``, 3) normalised point sets: polynomial schedule of
        ``diffusion_steps``, DDPM (ancestral) or DDIM (``sampler``) sampling in
        ``sampling_steps``, a PointDenoiser of ``network`` that predicts v (``prediction``,
        default; or ε); ``normalization`` (the data's) is saved in its config."""
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
        return GaussianGenerator(
            GaussianDiffusion(polynomial_schedule(config["diffusion_steps"])),
            PointDenoiser(net_cfg),
            VectorLayout((config["num_points"], 3)),
            sampling_steps=config["sampling_steps"],
            sample_batch=config["sample_batch"],
            config=config,
            num_labels=net_cfg.num_labels,
            sampler=config["sampler"],
            prediction=config["prediction"],
        )

    def generator_settings(self, params: dict, data_dir: Path, x: Tensor) -> dict:
        num_points = read_json(Path(data_dir) / "dataset.json")["num_points"]
        norm = self._data_normalization(data_dir).to_dict()
        return params | {"num_points": num_points, "normalization": norm}

    def pretraining_data(self, data_dir: Path) -> tuple[Tensor, pd.DataFrame]:
        """Every stored point of the training shapes: each batch takes a fresh random subset
        of the working point count from each shape's."""
        return self.load_split(data_dir, "train", all_points=True)

    def training_batch(self, x: Tensor, idx: Tensor, gen: GaussianGenerator) -> Tensor:
        return random_points(x[idx], gen.layout.shape[0])

    def pretrain_summary(self, gen: GaussianGenerator, x_valid: Tensor, params) -> dict:
        """The validation ELBO (nats per shape and per point, normalised coordinates) of
        ``loglik_shapes`` valid shapes and CD-based MMD/COV/1-NNA of ``eval_samples`` samples
        against as many valid shapes (world units; 0 skips them)."""
        ll = elbo(gen, x_valid[_pick(len(x_valid), params.get("loglik_shapes", 128), 0)])
        out = {
            "valid_loglik_per_shape": ll.mean().item(),
            "valid_nats_per_point": -ll.mean().item() / gen.layout.shape[0],
        }
        n = min(params.get("eval_samples", 16), len(x_valid))
        if n > 1:
            world = self.for_generator(gen)
            samples, _ = gen.sample(n, torch.Generator().manual_seed(0))
            reference = world.to_designs(x_valid[_pick(len(x_valid), n, 0)])
            quick = compute_all_metrics(
                world.to_designs(samples), reference, emd_points=min(256, gen.layout.shape[0])
            )
            out |= {f"sample_{k}": quick[k] for k in ("mmd_cd", "cov_cd", "nna_cd")}
        return out

    # ----- designs, oracles ------------------------------------------------------------------
    def for_generator(self, gen: GaussianGenerator) -> ShapeDomain:
        """This domain in the world frame of ``gen``'s outputs (its config's normalisation)."""
        return replace(self, normalization=Normalization.from_dict(gen.config["normalization"]))

    def _frame(self) -> Normalization:
        if self.normalization is None:
            raise UserError(
                "shape designs: no generator bound (ShapeDomain.for_generator), so the world "
                "frame of its outputs is unknown"
            )
        return self.normalization

    def to_designs(self, x: Tensor) -> np.ndarray:
        """Generator outputs (n, N, 3) normalised → designs (n, N, 3) float32, world units."""
        return self._frame().invert(x.detach().cpu().numpy())

    def torch_designs(self, x: Tensor) -> Tensor:
        """Differentiable :meth:`to_designs`: (n, N, 3) tensor → world units, same device."""
        norm = self._frame()
        scale = torch.as_tensor(norm.scale, dtype=x.dtype, device=x.device)
        return x * scale + torch.as_tensor(norm.shift, dtype=x.dtype, device=x.device)

    def encode_designs(self, designs: np.ndarray, gen: GaussianGenerator, params) -> Tensor:
        """``gen``'s point count of each design (a ``seed``-ed subset), normalised in its frame."""
        designs = np.asarray(designs, np.float32)
        if designs.shape[1] < gen.layout.shape[0]:
            raise UserError(
                f"designs have {designs.shape[1]} points; the pretrained model "
                f"needs {gen.layout.shape[0]} for its likelihood"
            )
        norm = Normalization.from_dict(gen.config["normalization"])
        points = data.subsample(designs, gen.layout.shape[0], params.get("seed", 0))
        return torch.from_numpy(norm.apply(points))

    def read_designs(self, path: Path, embed: bool = False) -> np.ndarray:
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
        return super().score(np.asarray(designs), oracles, reward_model)  # plain arrays

    def diversity(self, x: Tensor) -> float:
        """Mean pairwise Chamfer distance (squared world units) among the first
        ``DIVERSITY_SHAPES`` generator outputs x (n, N, 3) (the per-round log's diversity)."""
        return mean_pairwise_cd(self.to_designs(x[:DIVERSITY_SHAPES]))

    def render(self, designs: np.ndarray, path: Path, titles: list[str] | None = None) -> Path:
        """PNG grid of the designs (n, N, 3) (fixed view, y up)."""
        return render_grid(designs, path, titles)

    def render_designs(
        self, runs: list[tuple[str, np.ndarray, np.ndarray]], path: Path, per_run: int = 4
    ) -> bool:
        """PNG grid for the report: one row per (label, point sets, their ``reward_eval``), its
        ``per_run`` best designs, each from two fixed views (front-left and side)."""
        panels, titles = [], []
        for label, designs, scores in runs:
            best = best_first(scores)[:per_run]
            empty = per_run - len(best)  # NaN panels stay blank
            panels += [designs[best], np.full((empty, *designs.shape[1:]), np.nan, np.float32)]
            titles += [f"{label} {scores[i]:.3g}" for i in best] + [""] * empty
        render_grid(np.concatenate(panels), path, titles, cols=per_run, view=(View(), SIDE_VIEW))
        return True

    # ----- evaluation ----------------------------------------------------------------------
    def design_metrics(
        self, designs: np.ndarray, params: dict, data_dir: Path, reward_model: Path | None
    ) -> dict:
        """PointFlow-protocol MMD/COV/1-NNA (CD in m², EMD in m, world units) of at most
        ``metrics_shapes`` designs against as many test shapes at ``metrics_points`` points
        (``emd_method`` exact or sinkhorn on ``emd_points``); family fractions and the
        ``target`` family's probability by the evaluation classifier; mean analytic rewards;
        diversity."""
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
        return out

    def loglik_figures(self, ll: Tensor, gen: GaussianGenerator, n: int) -> dict:
        """The base's, and per point (normalised coordinates)."""
        out = super().loglik_figures(ll, gen, n)
        return out | {"loglik_pretrained_per_point": ll.mean().item() / gen.layout.shape[0]}


SHAPE = register_domain(ShapeDomain())
