"""Sample-quality metrics for 3D molecules: the EDM protocol (atom and molecule stability,
RDKit validity, uniqueness, novelty), a stricter RDKit validity, and geometry checks in the
spirit of PoseBusters.

All metrics depend on interatomic distances only, so they are invariant to rotations,
reflections and translations. A molecule with no atoms or with non-finite coordinates counts as
unstable, invalid and failing every geometry check. Fractions whose denominator is zero are
reported as 0.0 (as EDM does for uniqueness and novelty); novelty is NaN when no training
SMILES are given.

Geometry checks, on the bonds perceived by the EDM distance table (:mod:`molgen.bonds`):

* ``bond_lengths_ok``: every bond is 0.75–1.25 × the typical single-bond length of its element
  pair. (Perceived bonds are never longer than single + 10 pm, so in practice this catches
  bonds that are too short; triple bonds sit near 0.76–0.80 ×.)
* ``bond_angles_ok``: every angle between two bonds at a shared atom is at least 45°. QM9's
  smallest such angle is 54° (three-membered rings); smaller angles mean collapsed geometry.
  No upper bound: linear (180°) arrangements are legitimate.
* ``no_clashes``: no pair of atoms more than two bonds apart is closer than 0.7 × the sum of
  their RDKit covalent radii (QM9's closest such pair sits at 1.07 ×). Pairs with a tabulated
  bond length that come this close are perceived as bonded, so for them overlap shows up as a
  too-short bond (and an over-bonded atom) instead; this check catches untabulated pairs.
* ``geometry_ok``: all three.
"""

from __future__ import annotations

import math

import numpy as np
from rdkit import Chem

from molgen.bonds import (
    ELEMENTS,
    SINGLE_LENGTH_A,
    atom_stability,
    bond_orders,
    distance_matrix,
    largest_fragment_smiles,
    strict_rdkit,
    usable,
)
from molgen.molecule import Molecule

BOND_LENGTH_RANGE = (0.75, 1.25)  # × typical single-bond length of the element pair
MIN_BOND_ANGLE_DEG = 45.0
CLASH_FACTOR = 0.7  # × sum of covalent radii
GEOMETRY_KEYS = ("bond_lengths_ok", "bond_angles_ok", "no_clashes", "geometry_ok")
_COVALENT_RADIUS = np.array([ELEMENTS.GetRcovalent(z) for z in range(SINGLE_LENGTH_A.shape[0])])


def _fraction(count: float, total: float) -> float:
    return float(count) / total if total else 0.0


def edm_metrics(molecules: list[Molecule], train_smiles: set[str] | None = None) -> dict:
    """EDM's metrics over ``molecules``: ``atom_stability`` (stable atoms / all atoms),
    ``molecule_stability``, ``validity``, ``uniqueness`` (unique valid SMILES / valid),
    ``novelty`` (unique valid SMILES not in ``train_smiles`` / unique valid; NaN without
    ``train_smiles``), ``strict_validity`` (RDKit DetermineBonds, neutral, one fragment) and
    ``n``."""
    n_mol_stable = n_atoms_stable = n_atoms = n_strict = 0
    valid = []
    for mol in molecules:
        orders = bond_orders(mol)
        mol_stable, atoms_stable, atoms = atom_stability(mol, orders=orders)
        n_mol_stable += mol_stable
        n_atoms_stable += atoms_stable
        n_atoms += atoms
        smiles = largest_fragment_smiles(mol, orders=orders)
        if smiles is not None:
            valid.append(smiles)
        n_strict += strict_rdkit(mol) is not None
    unique = set(valid)
    if train_smiles is None:
        novelty = math.nan
    else:
        novelty = _fraction(len(unique - set(train_smiles)), len(unique))
    n = len(molecules)
    return {
        "n": n,
        "atom_stability": _fraction(n_atoms_stable, n_atoms),
        "molecule_stability": _fraction(n_mol_stable, n),
        "validity": _fraction(len(valid), n),
        "uniqueness": _fraction(len(unique), len(valid)),
        "novelty": novelty,
        "strict_validity": _fraction(n_strict, n),
    }


def geometry_flags(mol: Molecule, *, orders: np.ndarray | None = None) -> dict[str, bool]:
    """One molecule's geometry checks (bounds in the module docstring)."""
    n = len(mol)
    if not usable(mol):
        return dict.fromkeys(GEOMETRY_KEYS, False)
    orders = bond_orders(mol) if orders is None else orders
    bonded = orders > 0
    d = distance_matrix(mol)
    z = np.clip(mol.numbers, 0, len(_COVALENT_RADIUS) - 1)

    ratio = d[bonded] / SINGLE_LENGTH_A[z[:, None], z[None, :]][bonded]
    lengths_ok = bool(np.all((ratio >= BOND_LENGTH_RANGE[0]) & (ratio <= BOND_LENGTH_RANGE[1])))

    # cos of the angle j-i-k for bonded pairs (i, j), (i, k), j != k
    vec = mol.positions[None, :, :] - mol.positions[:, None, :]  # vec[i, j] = x_j - x_i
    unit = vec / np.where(d > 0, d, 1.0)[..., None]
    pairs = bonded[:, :, None] & bonded[:, None, :] & ~np.eye(n, dtype=bool)[None]
    if pairs.any():
        cos = np.einsum("ijx,ikx->ijk", unit, unit)[pairs]
        angles_ok = bool(np.all(cos <= math.cos(math.radians(MIN_BOND_ANGLE_DEG))))
    else:
        angles_ok = True

    adjacency = bonded.astype(np.int64)
    near = bonded | ((adjacency @ adjacency) > 0) | np.eye(n, dtype=bool)
    radii = _COVALENT_RADIUS[z]
    too_close = d < CLASH_FACTOR * (radii[:, None] + radii[None, :])
    no_clashes = not bool(np.any(too_close & ~near))
    return {
        "bond_lengths_ok": lengths_ok,
        "bond_angles_ok": angles_ok,
        "no_clashes": no_clashes,
        "geometry_ok": lengths_ok and angles_ok and no_clashes,
    }


def geometry_checks(molecules: list[Molecule]) -> dict:
    """Fractions of molecules passing each geometry check (see the module docstring)."""
    counts = dict.fromkeys(GEOMETRY_KEYS, 0)
    for mol in molecules:
        for key, ok in geometry_flags(mol).items():
            counts[key] += ok
    return {key: _fraction(counts[key], len(molecules)) for key in GEOMETRY_KEYS}


def molecule_metrics(molecules: list[Molecule], train_smiles: set[str] | None = None) -> dict:
    """:func:`edm_metrics` and :func:`geometry_checks` in one dict."""
    return edm_metrics(molecules, train_smiles) | geometry_checks(molecules)


def smiles_set(molecules: list[Molecule]) -> set[str]:
    """Largest-fragment SMILES of the valid molecules (e.g. the training set, for novelty)."""
    out = set()
    for mol in molecules:
        smiles = largest_fragment_smiles(mol)
        if smiles is not None:
            out.add(smiles)
    return out


def tanimoto_diversity(molecules: list[Molecule]) -> float:
    """1 − mean pairwise Tanimoto similarity of Morgan fingerprints (radius 2, 2,048 bits) of
    the valid molecules' largest fragments; NaN with fewer than two valid molecules."""
    from rdkit import DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = []
    for mol in molecules:
        smiles = largest_fragment_smiles(mol) if usable(mol) else None
        rd = Chem.MolFromSmiles(smiles) if smiles else None
        if rd is not None:
            fps.append(generator.GetFingerprint(rd))
    if len(fps) < 2:
        return float("nan")
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fp, fps[i + 1 :])) for i, fp in
                enumerate(fps[:-1]))  # fmt: skip
    return 1.0 - total / (len(fps) * (len(fps) - 1) / 2)
