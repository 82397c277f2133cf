"""Point-set files: ``.npz`` batches and one PLY per design.

* ``.npz``: key ``points`` (n, N, 3) float32, optional ``ids`` (n,) strings (the designs'
  names) and optional score arrays, each (n,) float64 under its own name (NaN = the oracle
  could not score that design). Nothing is unpickled.
* PLY: binary little-endian, one ``vertex`` element with float32 ``x``, ``y``, ``z`` (read back
  bit for bit); any PLY with vertices (ASCII or binary, with or without faces) can be read.

Writes are atomic (temp file, then rename). A bad file raises :class:`rewarddiff.UserError`
naming the file and the problem.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import trimesh

from rewarddiff import UserError
from rewarddiff.io import atomic_path, existing_file

POINTS_KEY = "points"
IDS_KEY = "ids"
DESIGN_SUFFIXES = (".npz", ".ply")


class PointSets(np.ndarray):
    """Point sets (n, N, 3) float32 read from a design file, with the names it gave them
    (``ids``; None when it gave none, as for any slice or result of arithmetic)."""

    ids: list[str] | None = None


def check_points(array, source: str | Path, batched: bool = True) -> np.ndarray:
    """``array`` as float32 after checking its shape — (n, N, 3) when ``batched``, else (N, 3),
    no empty axis — and that every coordinate is finite; UserError naming ``source`` if not."""
    array = np.asarray(array)
    expected = "(n, N, 3)" if batched else "(N, 3)"
    if array.ndim != (3 if batched else 2) or array.shape[-1] != 3 or 0 in array.shape:
        raise UserError(f"{source}: expected points of shape {expected}, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise UserError(f"{source}: points have dtype {array.dtype}, expected real numbers")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{source}: {int(bad.sum())} point coordinates are NaN or infinite "
            f"(first at index {first})"
        )
    return array.astype(np.float32, copy=False)


def write_npz(
    path: str | Path,
    points: np.ndarray,
    scores: Mapping[str, np.ndarray] | None = None,
    ids: Sequence[str] | None = None,
) -> None:
    """Write ``points`` (n, N, 3), ``scores`` (name → (n,) floats) and, if given, the designs'
    ``ids`` (n,) to an ``.npz``."""
    points = check_points(points, path)
    arrays = {POINTS_KEY: points}
    if ids is not None:
        arrays[IDS_KEY] = check_ids(np.asarray(ids, dtype=str), len(points), path)
    for name, values in (scores or {}).items():
        values = np.asarray(values, dtype=np.float64)
        if name in (POINTS_KEY, IDS_KEY) or values.shape != (len(points),):
            raise UserError(
                f"{path}: score {name!r} has shape {values.shape}, expected ({len(points)},) "
                f"and a name other than {POINTS_KEY!r} and {IDS_KEY!r}"
            )
        arrays[name] = values
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def check_ids(ids: np.ndarray, n: int, source: str | Path) -> np.ndarray:
    """``ids`` if they are ``n`` distinct, non-empty strings; UserError naming ``source``."""
    if ids.shape != (n,) or ids.dtype.kind != "U":
        raise UserError(
            f"{source}: {IDS_KEY!r} has shape {ids.shape} and dtype {ids.dtype}, "
            f"expected ({n},) strings"
        )
    if (ids == "").any():
        raise UserError(f"{source}: {IDS_KEY!r}: design {int(np.argmax(ids == ''))} has no id")
    names, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{source}: {IDS_KEY!r}: duplicate id {str(names[counts > 1][0])!r}")
    return ids


def file_head(path: Path, kind: str) -> bytes:
    """The first bytes of ``path``; UserError if it is missing, a folder, empty or gzipped."""
    with open(existing_file(path, f"a {kind} file"), "rb") as handle:
        head = handle.read(6)
    if not head:
        raise UserError(f"{path}: empty file (expected a {kind} file)")
    if head[:2] == b"\x1f\x8b":
        raise UserError(f"{path}: gzip-compressed; decompress it first (gunzip {path.name})")
    return head


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` without unpickling; UserError naming the file (and array)."""
    head = file_head(path, ".npz")
    if head.startswith(b"\x93NUMPY"):
        raise UserError(f"{path}: a single .npy array, expected an .npz with key {POINTS_KEY!r}")
    if not head.startswith(b"PK"):
        raise UserError(f"{path}: not an .npz file (a NumPy zip archive, as np.savez writes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot read as .npz ({err})") from None
    arrays = {}
    with archive:
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError:  # an object array: loading it would unpickle
                raise UserError(
                    f"{path}: array {name!r} holds Python objects (pickled data is not "
                    "loaded); save plain numbers, e.g. np.asarray(points, np.float32)"
                ) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise UserError(f"{path}: array {name!r} is unreadable ({err})") from None
    return arrays


def _split_npz(path: Path) -> tuple[np.ndarray, list[str] | None, dict[str, np.ndarray]]:
    """Points (n, N, 3) float32, ids (or None) and score arrays (name → (n,) float64)."""
    arrays = _load_npz(path)
    if POINTS_KEY not in arrays:
        found = ", ".join(arrays) or "nothing"
        raise UserError(f"{path}: no array {POINTS_KEY!r} (found: {found})")
    points = check_points(arrays.pop(POINTS_KEY), path)
    ids = arrays.pop(IDS_KEY, None)
    if ids is not None:
        ids = check_ids(ids, len(points), path).tolist()
    for name, values in arrays.items():
        if values.shape != (len(points),) or not np.issubdtype(values.dtype, np.number):
            raise UserError(
                f"{path}: score {name!r} has shape {values.shape} and dtype {values.dtype}, "
                f"expected ({len(points)},) numbers"
            )
    return points, ids, {name: values.astype(np.float64) for name, values in arrays.items()}


def read_npz(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points (n, N, 3) float32 and the score arrays (name → (n,) float64) of an ``.npz``."""
    points, _, scores = _split_npz(Path(path))
    return points, scores


def read_point_sets(path: str | Path) -> PointSets:
    """The designs of an ``.npz`` (with its ``ids``, if any) or of a ``.ply`` (one design
    named after the file)."""
    path = Path(path)
    file_head(path, " or ".join(DESIGN_SUFFIXES))
    suffix = path.suffix.lower()
    if suffix == ".npz":
        points, ids, _ = _split_npz(path)
    elif suffix == ".ply":
        points, ids = read_ply(path)[None], [path.stem]
    else:
        raise UserError(
            f"{path}: unknown suffix {path.suffix!r} for point sets "
            f"(expected {' or '.join(DESIGN_SUFFIXES)})"
        )
    sets = points.view(PointSets)
    sets.ids = ids
    return sets


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
    file_head(path, "PLY")
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
