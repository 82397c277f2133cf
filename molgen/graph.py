"""Dense ↔ flat molecule batches and fully connected edge sets.

A batch of molecules travels between pipeline stages as one padded tensor ``x`` of shape
(B, N_max, 4): columns 0–2 are positions in Å and column 3 the atomic number (0 = padding).
Networks work on the flat PyTorch Geometric layout: nodes of all molecules stacked, with a
``batch`` vector naming each node's molecule.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from molgen.molecule import Molecule
from rewarddiff import UserError


def to_dense(molecules: list[Molecule], max_atoms: int | None = None) -> Tensor:
    """Molecules → (B, N_max, 4) float32; an error names a molecule larger than ``max_atoms``."""
    n_max = max(len(m) for m in molecules) if max_atoms is None else max_atoms
    x = torch.zeros(len(molecules), n_max, 4)
    for i, m in enumerate(molecules):
        if len(m) > n_max:
            raise UserError(f"molecule {i} ({m.name}) has {len(m)} atoms; the limit is {n_max}")
        x[i, : len(m), :3] = torch.as_tensor(m.positions, dtype=torch.float32)
        x[i, : len(m), 3] = torch.as_tensor(m.numbers, dtype=torch.float32)
    return x


def from_dense(x: Tensor) -> list[Molecule]:
    """(B, N_max, 4) → molecules (padding rows, atomic number 0, dropped)."""
    out = []
    for i, row in enumerate(x.detach().cpu().numpy()):
        keep = row[:, 3] > 0.5
        out.append(Molecule(np.rint(row[keep, 3]).astype(int), row[keep, :3], f"design_{i}"))
    return out


def to_nodes(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, N_max, 4) → positions (N, 3), atomic numbers (N,) long, batch (N,) long and the node
    mask (B, N_max) bool that maps flat nodes back into the padded layout."""
    mask = x[..., 3] > 0.5
    batch = torch.arange(x.shape[0], device=x.device).unsqueeze(1).expand_as(mask)[mask]
    nodes = x[mask]
    return nodes[:, :3], nodes[:, 3].round().long(), batch, mask


def fully_connected_edges(batch: Tensor) -> Tensor:
    """All ordered pairs (i, j), i ≠ j, within each molecule: edge_index (2, E), for a sorted
    ``batch`` (N,). Built without Python loops over molecules."""
    counts = torch.bincount(batch)
    ptr = torch.cumsum(counts, 0) - counts  # first node of each molecule
    deg = counts[batch]  # each node pairs with every node of its molecule
    src = torch.repeat_interleave(torch.arange(len(batch), device=batch.device), deg)
    start = torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
    dst = ptr[batch[src]] + torch.arange(len(src), device=batch.device) - start
    keep = src != dst
    return torch.stack([src[keep], dst[keep]])
