"""PNG renders of point sets: a grid of 3D scatter plots from fixed views.

The default view looks from elevation 20° and azimuth −60° with y drawn as the vertical axis
(:data:`SIDE_VIEW` from azimuth 30°), each panel's axes equally scaled (a cube around the
shape's bounding box), points coloured by height. Built on a bare
:class:`matplotlib.figure.Figure` (Agg), so no pyplot state and no display are involved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rewarddiff.io import atomic_path


@dataclass(frozen=True)
class View:
    """Camera and figure settings shared by every panel."""

    elevation: float = 20.0  # degrees
    azimuth: float = -60.0  # degrees
    point_size: float = 1.5  # matplotlib marker area, points²
    panel_inches: float = 2.5
    dpi: int = 100
    colormap: str = "viridis"


SIDE_VIEW = View(azimuth=30.0)


def render_grid(
    points: np.ndarray,
    path: str | Path,
    titles: Sequence[str] | None = None,
    cols: int = 4,
    view: View | Sequence[View] = View(),
) -> Path:
    """Write a PNG grid of the point sets ``points`` (n, N, 3), ``cols`` panels per row, with
    optional per-panel ``titles`` (e.g. reward values). Several ``view``s draw each set once
    per view, side by side. Non-finite points are left out (a panel with none stays empty).
    Returns ``path``."""
    views = [view] if isinstance(view, View) else list(view)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 3 or len(points) == 0:
        raise ValueError(f"render_grid needs points of shape (n, N, 3), got {points.shape}")
    if titles is not None and len(titles) != len(points):
        raise ValueError(f"{len(titles)} titles for {len(points)} point sets")
    panels = len(points) * len(views)
    cols = max(1, min(cols * len(views), panels))
    rows = math.ceil(panels / cols)
    inches = views[0].panel_inches
    figure = Figure(figsize=(cols * inches, rows * inches))
    for i in range(panels):
        cloud, panel_view = points[i // len(views)], views[i % len(views)]
        axes = figure.add_subplot(rows, cols, i + 1, projection="3d")
        _draw(axes, cloud[np.isfinite(cloud).all(axis=1)], panel_view)
        if titles is not None and i % len(views) == 0:
            axes.set_title(titles[i // len(views)], fontsize=8)
    figure.subplots_adjust(left=0, right=1, bottom=0, top=0.95, wspace=0, hspace=0.1)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=views[0].dpi)
    return Path(path)


def _draw(axes, cloud: np.ndarray, view: View) -> None:
    """Scatter ``cloud`` (M, 3) with y vertical inside an equal-sided box."""
    axes.view_init(elev=view.elevation, azim=view.azimuth, vertical_axis="y")
    axes.set_box_aspect((1, 1, 1))
    axes.set_axis_off()
    if not len(cloud):
        return
    x, y, z = cloud.T
    axes.scatter(x, y, z, c=y, cmap=view.colormap, s=view.point_size, linewidths=0)
    low, high = cloud.min(0), cloud.max(0)
    center, half = (low + high) / 2, max((high - low).max() / 2, 1e-9)
    axes.set_xlim(center[0] - half, center[0] + half)
    axes.set_ylim(center[1] - half, center[1] + half)
    axes.set_zlim(center[2] - half, center[2] + half)
