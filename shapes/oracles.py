"""Analytic geometric rewards for point sets, registered in the core registry (domain ``shape``;
designs are (B, N, 3) arrays, or lists of (N, 3) arrays, in the y-up convention).

Each measure is a numpy function (B, N, 3) → (B,) with NaN for a shape it cannot score
(non-finite coordinates, a flat hull), and, where it is differentiable almost everywhere, a
torch function (B, N, 3) tensor → (B,) tensor with finite gradients. Lengths are in the units of
the points (metres for the procedural set). Extents are robust: the 0.1 %–99.9 % quantiles of
each coordinate, so that a stray point or two neither spoils nor hacks a score (the price: thin
extreme parts read a little short, e.g. an airplane's fin tip, ~5 % of its height at 2,048
points; furniture within 1 %); "size" is the diagonal of that robust box.

* ``symmetry`` — bilateral symmetry error: the mean distance from each point of the mirror image
  (across the plane x = mean x) to the nearest point of the shape, divided by the size; 0 for a
  mirror-symmetric set (lower is better; dividing by the size stops shrinking from paying).
* ``stability`` — signed distance from the centre of mass (mean of the points: a uniform surface
  shell) projected on the floor (x, z) to the edge of the support polygon (convex hull of the
  points within 5 % of the height above the lowest one), divided by the size: positive inside
  (stands), negative outside (tips over).
* ``height`` — robust y extent; ``aspect:hw`` height / width (y / x); ``aspect:dw`` depth / width
  (z / x).
* ``compactness`` — convex-hull volume / axis-aligned bounding-box volume, in (0, 1].
* ``seat_height`` — a chair's seat height above its lowest point (numpy only), see
  :func:`seat_height`.
* ``family_prob:<family>``, ``family_logodds:<family>`` — learned: P(family | x) (or its
  log-odds) from the shape-family classifier ensemble at ``reward_model``
  (:class:`FamilyClassifier`, which normalises world-unit points itself).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError, cKDTree
from torch import Tensor

from rewarddiff import UserError
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.registry import (
    check_label,
    label_check,
    register_function_oracle,
    register_oracle,
)
from shapes.data import Normalization
from shapes.model import PointClassifier, PointClassifierConfig

DOMAIN = "shape"
EXTENT_QUANTILES = (0.001, 0.999)
SUPPORT_BAND = 0.05  # points this fraction of the height above the lowest one touch the floor
SEAT_SEARCH = (0.15, 0.70)  # the seat is searched between these fractions of the height
SEAT_BIN = 0.01  # height-histogram bin width, fraction of the height
SEAT_SLAB = 0.12  # the seat top lies at most this fraction of the height above its densest bin
ASPECTS = {"hw": (1, 0), "dw": (2, 0)}  # name → (numerator axis, denominator axis)


def _as_batch(points) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"expected point sets of shape (B, N, 3), got {points.shape}")
    return points


def _per_shape(measure, points: np.ndarray) -> np.ndarray:
    """``measure((N, 3) float64) -> float`` on every shape; NaN where the shape has non-finite
    coordinates or the measure is undefined for it (qhull or numpy raising)."""
    values = np.full(len(points), np.nan)
    for i, shape in enumerate(points):
        if np.isfinite(shape).all():
            with contextlib.suppress(QhullError, ValueError):
                values[i] = measure(shape)
    return values


def _per_shape_torch(measure, x: Tensor) -> Tensor:
    """Torch twin of :func:`_per_shape`: ``measure((N, 3) tensor) -> () tensor`` per shape of
    ``x`` (B, N, 3), stacked to (B,)."""
    values = []
    for shape in x:
        value = shape.new_tensor(float("nan"))
        if torch.isfinite(shape).all():
            with contextlib.suppress(QhullError, ValueError, np.linalg.LinAlgError):
                value = measure(shape)
        values.append(value)
    return torch.stack(values)


def _detached(shape: Tensor) -> np.ndarray:
    return shape.detach().cpu().double().numpy()


# ----- extents -------------------------------------------------------------------------------
def extents(points) -> np.ndarray:
    """(B, 3) robust width (x), height (y), depth (z): 99.9 % minus 0.1 % quantile per axis;
    NaN for a shape with any non-finite coordinate."""
    points = _as_batch(points)
    low, high = np.quantile(points, EXTENT_QUANTILES, axis=1)
    return np.where(np.isfinite(points).all((1, 2))[:, None], high - low, np.nan)


def extents_torch(x: Tensor) -> Tensor:
    """Differentiable :func:`extents`: (B, N, 3) → (B, 3)."""
    low, high = torch.quantile(x, x.new_tensor(EXTENT_QUANTILES), dim=1)
    finite = torch.isfinite(x).all(2).all(1)
    return torch.where(finite[:, None], high - low, torch.nan)


def height(points) -> np.ndarray:
    """(B,) robust height (y extent), length units."""
    return extents(points)[:, 1]


def height_torch(x: Tensor) -> Tensor:
    return extents_torch(x)[:, 1]


def aspect_ratio(points, kind: str) -> np.ndarray:
    """(B,) ``hw`` = height / width or ``dw`` = depth / width of the robust box."""
    top, bottom = ASPECTS[kind]
    box = extents(points)
    with np.errstate(divide="ignore", invalid="ignore"):
        return box[:, top] / box[:, bottom]


def aspect_ratio_torch(x: Tensor, kind: str) -> Tensor:
    top, bottom = ASPECTS[kind]
    box = extents_torch(x)
    return box[:, top] / box[:, bottom]


# ----- bilateral symmetry ----------------------------------------------------------------------
def symmetry_error(points) -> np.ndarray:
    """(B,) mean nearest-neighbour distance from the mirror image across x = mean x to the
    shape, divided by the size (robust box diagonal); 0 when mirror-symmetric."""
    points = _as_batch(points)
    sizes = np.linalg.norm(extents(points), axis=1)

    def measure(shape: np.ndarray) -> float:
        centred = shape - (shape[:, 0].mean(), 0.0, 0.0)
        distances, _ = cKDTree(centred).query(centred * (-1.0, 1.0, 1.0))
        return distances.mean()

    return _per_shape(measure, points) / sizes


def symmetry_error_torch(x: Tensor) -> Tensor:
    """Differentiable :func:`symmetry_error`: the nearest neighbours are found without gradient
    (k-d tree on the detached points), the distances to them recomputed in torch, which gives
    the gradient of the minimum."""
    centred = x - x[..., :1].mean(1, keepdim=True) * x.new_tensor([1.0, 0.0, 0.0])
    mirror = centred * x.new_tensor([-1.0, 1.0, 1.0])
    nearest = torch.zeros(x.shape[:2], dtype=torch.long)
    for i, shape in enumerate(_detached(centred)):
        if np.isfinite(shape).all():
            nearest[i] = torch.from_numpy(cKDTree(shape).query(shape * (-1.0, 1.0, 1.0))[1])
    matched = centred.gather(1, nearest.to(x.device)[..., None].expand(-1, -1, 3))
    distances = ((mirror - matched) ** 2).sum(-1).clamp_min(1e-24).sqrt()
    return distances.mean(-1) / extents_torch(x).norm(dim=1)


# ----- support stability -----------------------------------------------------------------------
def support_polygon(shape: np.ndarray) -> np.ndarray:
    """Indices into ``shape`` (N, 3) of the corners, counter-clockwise in the (x, z) plane, of
    the convex hull of the points within ``SUPPORT_BAND`` × height of the lowest point. When
    those points are collinear (the shape stands on an edge) the two ends of the segment; on a
    single point, that point."""
    y = shape[:, 1]
    band = np.flatnonzero(y <= y.min() + SUPPORT_BAND * (y.max() - y.min()))
    floor = shape[band][:, [0, 2]]
    try:
        return band[ConvexHull(floor).vertices]
    except QhullError:  # fewer than three points, or all on one line
        centred = floor - floor.mean(0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
        along = centred @ direction
        return band[[along.argmin(), along.argmax()]]


def _signed_distance_to_polygon(point: Tensor, corners: Tensor) -> Tensor:
    """Signed distance from ``point`` (2,) to the convex polygon with counter-clockwise
    ``corners`` (K, 2): positive inside, negative outside. K < 3 (a segment or a point) has no
    inside, so the result is minus the distance to it."""
    edges = corners.roll(-1, 0) - corners
    length2 = (edges**2).sum(1).clamp_min(1e-24)
    along = (((point - corners) * edges).sum(1) / length2).clamp(0, 1)
    nearest = corners + along[:, None] * edges
    outside = ((nearest - point) ** 2).sum(1).min().clamp_min(1e-24).sqrt()
    if len(corners) < 3:
        return -outside
    inward = torch.stack([-edges[:, 1], edges[:, 0]], 1) / length2.sqrt()[:, None]
    inside = (inward * (point - corners)).sum(1).min()
    return inside if inside >= 0 else -outside


def stability_margin_torch(x: Tensor) -> Tensor:
    """(B,) support-stability margin (see the module docstring), differentiable in the points
    through the centre of mass, the polygon corners and the size; which points are the corners
    is decided on the detached points."""

    def measure(shape: Tensor) -> Tensor:
        corners = torch.as_tensor(support_polygon(_detached(shape)), device=shape.device)
        floor = shape[:, [0, 2]]
        size = extents_torch(shape[None]).norm()
        return _signed_distance_to_polygon(floor.mean(0), floor[corners]) / size

    return _per_shape_torch(measure, x)


def stability_margin(points) -> np.ndarray:
    """(B,) support-stability margin in units of the shape size: > 0 stands, < 0 tips over."""
    with torch.no_grad():
        return stability_margin_torch(torch.from_numpy(_as_batch(points))).numpy()


# ----- compactness -----------------------------------------------------------------------------
def compactness(points) -> np.ndarray:
    """(B,) convex-hull volume / axis-aligned bounding-box volume (all points), in (0, 1]."""
    return _per_shape(
        lambda s: ConvexHull(s).volume / np.prod(np.ptp(s, axis=0)), _as_batch(points)
    )


def compactness_torch(x: Tensor) -> Tensor:
    """Differentiable :func:`compactness`: hull facets from qhull on the detached points, the
    volume as a sum of tetrahedra (facet, hull centroid) in torch."""

    def measure(shape: Tensor) -> Tensor:
        hull = ConvexHull(_detached(shape))
        facets = shape[torch.as_tensor(hull.simplices, device=shape.device)]  # (F, 3, 3)
        apex = shape[torch.as_tensor(hull.vertices, device=shape.device)].mean(0)
        a, b, c = (facets[:, k] - apex for k in range(3))
        volume = torch.linalg.cross(a, b).mul(c).sum(1).abs().sum() / 6
        return volume / (shape.amax(0) - shape.amin(0)).prod()

    return _per_shape_torch(measure, x)


# ----- seat height -----------------------------------------------------------------------------
def seat_height(points) -> np.ndarray:
    """(B,) estimated seat height of chairs: the top of the densest horizontal slab, above the
    lowest point, in length units.

    A height histogram (bins of 1 % of the height) between 15 % and 70 % of the height (above
    the feet or star base, below any backrest top) has its maximum on the seat's top or bottom
    face; the highest bin within 12 % of the height above that maximum and holding at least half
    as many points is the top face, and the median height of its points is the estimate. On
    generated chairs at 2,048 points it matches the ``seat_height`` label to within 1.5 cm.
    """

    def measure(shape: np.ndarray) -> float:
        y = shape[:, 1] - shape[:, 1].min()
        total = y.max()
        edges = np.arange(SEAT_SEARCH[0], SEAT_SEARCH[1] + SEAT_BIN / 2, SEAT_BIN) * total
        counts, _ = np.histogram(y, edges)
        densest = counts.argmax()
        bins = np.arange(len(counts))
        slab = (bins >= densest) & (bins <= densest + round(SEAT_SLAB / SEAT_BIN))
        top = np.flatnonzero(slab & (counts >= counts[densest] / 2)).max()
        return float(np.median(y[(y >= edges[top]) & (y <= edges[top + 1])]))

    return _per_shape(measure, _as_batch(points))


# ----- registry ------------------------------------------------------------------------------
INFOS = {
    "symmetry": OracleInfo(
        "symmetry",
        DOMAIN,
        "minimize",
        "fraction of size",
        "cheap",
        True,
        "mean NN distance between the shape and its mirror across x = mean x, / size",
    ),
    "stability": OracleInfo(
        "stability",
        DOMAIN,
        "maximize",
        "fraction of size",
        "cheap",
        True,
        "signed margin of the centre of mass inside the support polygon (> 0 stands)",
    ),
    "height": OracleInfo(
        "height", DOMAIN, "target", "length", "cheap", True, "robust y extent (0.1–99.9 %)"
    ),
    "aspect": OracleInfo(
        "aspect:<hw|dw>",
        DOMAIN,
        "target",
        "ratio",
        "cheap",
        True,
        "robust bounding-box height / width (hw) or depth / width (dw)",
    ),
    "compactness": OracleInfo(
        "compactness",
        DOMAIN,
        "target",
        "fraction",
        "cheap",
        True,
        "convex-hull volume / bounding-box volume",
    ),
    "seat_height": OracleInfo(
        "seat_height",
        DOMAIN,
        "target",
        "length",
        "cheap",
        False,
        "chair seat height: top of the densest horizontal slab above the lowest point",
    ),
}


register_function_oracle(INFOS["symmetry"], symmetry_error, symmetry_error_torch)
register_function_oracle(INFOS["stability"], stability_margin, stability_margin_torch)
register_function_oracle(INFOS["height"], height, height_torch)
register_function_oracle(INFOS["compactness"], compactness, compactness_torch)
register_function_oracle(INFOS["seat_height"], seat_height)


def aspect_argument(argument: str | None, config: dict | None = None) -> None:
    """UserError unless ``aspect:<hw|dw>`` names a ratio."""
    if argument not in ASPECTS:
        raise UserError(f"oracle aspect needs hw or dw, e.g. aspect:hw (got {argument!r})")


@register_oracle(DOMAIN, "aspect", INFOS["aspect"], aspect_argument)
def aspect_oracle(argument=None, **context):
    aspect_argument(argument)
    return FunctionOracle(
        INFOS["aspect"].for_argument(argument),
        lambda points: aspect_ratio(points, argument),
        lambda x: aspect_ratio_torch(x, argument),
    )


# ----- the family classifier's classes (its oracles live in shapes.domain) ----------------------
def data_families(config: dict) -> list[str] | None:
    """The families a classifier trained on the domain's ``data`` knows: the procedural
    ``families``, the PC15k synsets' names, a mesh folder's sub-folders (``shape`` for meshes
    at its top); None while the mesh folder cannot be read (preparing the data says why)."""
    from shapes import data

    params = config.get("data") or {}
    source = params.get("source", "procedural")
    if source == "procedural":
        chosen = params.get("families", data.FAMILIES)
        return [f for f in data.FAMILIES if f in chosen]
    if source == "pc15k":
        return [data.SYNSET_NAMES.get(s, s) for s in params.get("synsets", [])]
    from shapes.sources import MESH_SUFFIXES

    root = Path(params.get("root", ""))
    if source != "mesh" or not root.is_dir():
        return None
    files = [p for p in root.rglob("*") if p.suffix.lower() in MESH_SUFFIXES]
    return sorted({p.parent.name if p.parent != root else "shape" for p in files})


# ----- the family classifier on world units, and its oracles -------------------------------
@dataclass
class FamilyClassifier:
    """A shape-family classifier ensemble on **world-unit** points: inputs are normalised with
    the dataset normalisation it was trained with (its config's ``normalization``)."""

    ensemble: learned.RewardEnsemble
    normalization: Normalization
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
        ensemble, Normalization.from_dict(config["normalization"]), config["classes"]
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


def _register_family_oracle(kind: str) -> None:
    """Register ``kind`` of ``FAMILY_INFOS``: P(family ``argument`` | x), or its log-odds, from
    the classifier at the context's ``reward_model``."""

    @register_oracle(DOMAIN, kind, FAMILY_INFOS[kind], label_check(kind, data_families, "family"))
    def factory(argument=None, reward_model=None, **context):
        if reward_model is None:
            raise UserError(f"oracle {kind} needs a reward model (--reward-model PATH)")
        classifier = load_family_classifier(str(reward_model))
        check_label(kind, argument, classifier.classes, "family")
        k = classifier.classes.index(argument)

        def of_probs(p: Tensor) -> Tensor:
            p = p[:, k].clamp(1e-6, 1 - 1e-6)
            return torch.logit(p) if kind == "family_logodds" else p

        info = FAMILY_INFOS[kind].for_argument(
            argument, description=f"{argument} by the family classifier {reward_model}"
        )
        return FunctionOracle(
            info,
            lambda points: of_probs(classifier.predict(points)).numpy(),
            lambda x: of_probs(classifier(x)),
        )


for _kind in FAMILY_INFOS:
    _register_family_oracle(_kind)
