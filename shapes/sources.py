"""Shape data sources: config ``data`` params → {split: :class:`~shapes.data.ShapeSet`} of
world-unit point sets, the ft/eval halves of the training split and the prepared folder
(:func:`prepare`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewarddiff import UserError
from rewarddiff.io import write_json
from shapes.data import (
    FAMILIES,
    Normalization,
    ShapeSet,
    generate,
    load_mesh,
    load_pc15k,
    subsample,
)
from shapes.io import write_npz

SPLITS = ("train", "valid", "test")
PC15K_SPLITS = {"train": "train", "valid": "val", "test": "test"}
MESH_SUFFIXES = (".ply", ".obj")


def procedural(params: dict, num_points: int) -> dict[str, ShapeSet]:
    """``per_family`` {train, valid, test} shapes of each of ``families``: shapes 0 … of a
    family go to train, then valid, then test (shape i depends only on seed, family, i)."""
    families = params.get("families", list(FAMILIES))
    if not isinstance(families, list) or not families:
        raise UserError(f"data.families: {families!r}; expected a list of {', '.join(FAMILIES)}")
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
    shapes = generate(dict.fromkeys(families, total), params.get("seed", 0), num_points)
    chosen = [f for f in FAMILIES if f in families]  # generate's order
    shapes.family = np.searchsorted([FAMILIES.index(f) for f in chosen], shapes.family)
    shapes.families = chosen
    del shapes.labels["family"]  # an index into FAMILIES; ``family`` is the one above
    rank = np.concatenate([np.arange(total)] * len(chosen))
    bounds = np.cumsum([0] + [sizes[s] for s in SPLITS])
    return {
        s: shapes.subset((rank >= bounds[k]) & (rank < bounds[k + 1])) for k, s in enumerate(SPLITS)
    }


def pc15k(params: dict, num_points: int) -> dict[str, ShapeSet]:
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
        shapes = load_pc15k(params["root"], params["synsets"], folder, params.get("max_per_synset"))
        if shapes.points.shape[1] > num_points:
            shapes.points = subsample(shapes.points, num_points, params.get("seed", 0))
        out[split] = shapes
    return out


def meshes(params: dict, num_points: int) -> dict[str, ShapeSet]:
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
    shapes = ShapeSet(
        np.stack([load_mesh(p, num_points, seed) for p in files]),
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


SOURCES = {"procedural": procedural, "pc15k": pc15k, "mesh": meshes}


def train_halves(family: np.ndarray, seed: int) -> np.ndarray:
    """(n,) 0/1: each family's shapes split at random into two halves of equal size (±1)."""
    rng = np.random.default_rng([seed, 1])
    half = np.empty(len(family), np.int64)
    for f in np.unique(family):
        rows = rng.permutation(np.flatnonzero(family == f))
        half[rows] = np.arange(len(rows)) % 2
    return half


def prepare(params: dict, out_dir: Path) -> dict:
    """``{train,valid,test}.npz`` (world-unit points (n, S, 3), score arrays ``family``
    (index into ``families``), the generating labels, ``half`` (train: 0 = ft, 1 = eval)),
    ``normalization.json`` (train mean/std) and ``dataset.json`` (the summary returned).
    S = ``stored_points`` (default 15,000, as PC15k; at most what a PC15k file holds) per
    shape are stored; models work on ``points`` (N) of them: pretraining draws a fresh
    random N each batch, every other consumer a fixed subset (``ShapeDomain.load_split``).
    ``unit_box: true`` first scales every shape into [-1, 1]³ (the designs' units then)."""
    source = params.get("source", "procedural")
    if source not in SOURCES:
        known = ", ".join(SOURCES)
        raise UserError(f"data: unknown source {source!r} (known: {known})")
    num_points = params.get("points", 2048)
    stored = params.get("stored_points", 15_000)
    if stored < num_points:
        raise UserError(f"data: stored_points ({stored}) is below points ({num_points})")
    sets = SOURCES[source](params, stored)
    stored = sets["train"].points.shape[1]
    if stored < num_points:
        raise UserError(f"data: the shapes have {stored} points, fewer than points = {num_points}")
    if params.get("unit_box", False):
        for shapes in sets.values():
            shapes.points = Normalization.unit_box(shapes.points).apply(shapes.points)
    out_dir = Path(out_dir)
    for split, shapes in sets.items():
        scores = shapes.labels | {"family": shapes.family}
        if split == "train":
            scores["half"] = train_halves(shapes.family, params.get("seed", 0))
        write_npz(out_dir / f"{split}.npz", shapes.points, scores)
    write_json(
        out_dir / "normalization.json",
        Normalization.dataset(sets["train"].points).to_dict(),
    )
    families = sets["train"].families
    summary = {
        "source": source,
        "families": families,
        "num_points": num_points,
        "stored_points": stored,
        "unit_box": bool(params.get("unit_box", False)),
        "counts": {
            s: dict(zip(families, np.bincount(sets[s].family, minlength=len(families)).tolist()))
            for s in SPLITS
        },
    }
    write_json(out_dir / "dataset.json", summary)
    return summary
