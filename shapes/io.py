"""Point-set files: ``.npz`` batches and one PLY per design.

* ``.npz``: key ``points`` (n, N, 3) float32 plus optional score arrays, each (n,) float64 under
  its own name (NaN = the oracle could not score that design).
* PLY: binary little-endian, one ``vertex`` element with float32 ``x``, ``y``, ``z`` (read back
  bit for bit); any PLY with vertices (ASCII or binary, with or without faces) can be read.

Writes are atomic (temp file, then rename). A bad file raises :class:`rewarddiff.UserError`
naming the file and the problem.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import trimesh

from rewarddiff import UserError
from rewarddiff.io import atomic_path

POINTS_KEY = "points"


def check_points(array, source: str | Path, batched: bool = True) -> np.ndarray:
    """``array`` as float32 after checking its shape — (n, N, 3) when ``batched``, else (N, 3),
    no empty axis — and that every coordinate is finite; UserError naming ``source`` if not."""
    array = np.asarray(array)
    expected = "(n, N, 3)" if batched else "(N, 3)"
    if array.ndim != (3 if batched else 2) or array.shape[-1] != 3 or 0 in array.shape:
        raise UserError(f"{source}: expected points of shape {expected}, got {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{source}: points have dtype {array.dtype}, expected numbers")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{source}: {int(bad.sum())} point coordinates are NaN or infinite "
            f"(first at index {first})"
        )
    return array.astype(np.float32, copy=False)


def write_npz(
    path: str | Path, points: np.ndarray, scores: Mapping[str, np.ndarray] | None = None
) -> None:
    """Write ``points`` (n, N, 3) and ``scores`` (name → (n,) floats) to an ``.npz``."""
    points = check_points(points, path)
    arrays = {POINTS_KEY: points}
    for name, values in (scores or {}).items():
        values = np.asarray(values, dtype=np.float64)
        if name == POINTS_KEY or values.shape != (len(points),):
            raise UserError(
                f"{path}: score {name!r} has shape {values.shape}, expected ({len(points)},) "
                f"and a name other than {POINTS_KEY!r}"
            )
        arrays[name] = values
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_npz(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points (n, N, 3) float32 and the score arrays (name → (n,) float64) of an ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot read as .npz ({err})") from None
    if not hasattr(data, "files"):
        raise UserError(f"{path}: a single .npy array, expected an .npz with key {POINTS_KEY!r}")
    with data:
        arrays = {name: data[name] for name in data.files}
    if POINTS_KEY not in arrays:
        found = ", ".join(arrays) or "nothing"
        raise UserError(f"{path}: no array {POINTS_KEY!r} (found: {found})")
    points = check_points(arrays.pop(POINTS_KEY), path)
    for name, values in arrays.items():
        if values.shape != (len(points),) or not np.issubdtype(values.dtype, np.number):
            raise UserError(
                f"{path}: score {name!r} has shape {values.shape} and dtype {values.dtype}, "
                f"expected ({len(points)},) numbers"
            )
    return points, {name: values.astype(np.float64) for name, values in arrays.items()}


def write_ply(path: str | Path, points: np.ndarray) -> None:
    """Write one point set (N, 3) as a binary little-endian PLY with float32 x, y, z."""
    points = check_points(points, path, batched=False)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + points.astype("<f4").tobytes())


def read_ply(path: str | Path) -> np.ndarray:
    """The vertices (N, 3) float32 of a PLY file (faces, if any, are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        loaded = trimesh.load(path, file_type="ply", process=False)
    except Exception as err:  # trimesh raises many exception types for malformed files
        raise UserError(f"{path}: cannot read as PLY ({err})") from None
    return check_points(getattr(loaded, "vertices", np.empty((0, 3))), path, batched=False)


def write_plys(directory: str | Path, points: np.ndarray, stem: str = "design") -> list[Path]:
    """One PLY per design, ``<directory>/<stem>_00000.ply`` …; returns the paths in order."""
    points = check_points(points, directory)
    paths = [Path(directory) / f"{stem}_{i:05d}.ply" for i in range(len(points))]
    for path, cloud in zip(paths, points):
        write_ply(path, cloud)
    return paths
