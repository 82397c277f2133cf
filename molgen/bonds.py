"""Distance-based bond perception as in the EDM evaluation protocol, and RDKit molecules built
from it.

EDM (Hoogeboom et al. 2022) assigns a bond between two atoms from their distance alone: a pair
is bonded when it is closer than its typical single-bond length plus 10 pm, double when also
closer than the typical double-bond length plus 5 pm, triple when also closer than the typical
triple-bond length plus 3 pm. Pairs without a tabulated length are never bonded. An atom is
*stable* when its bond orders sum to an allowed valence; a molecule is stable when all its
atoms are. Validity is RDKit sanitisation of the molecule built from these bonds.

The typical lengths (pm) are textbook values, the same physical data EDM tabulates.
"""

from __future__ import annotations

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds

from molgen.molecule import ELEMENTS, Molecule, bare_rdkit

# Typical single-bond lengths in pm, one entry per unordered pair.
SINGLE_PM = {
    ("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92,
    ("H", "B"): 119, ("H", "Si"): 148, ("H", "P"): 144, ("H", "As"): 152, ("H", "S"): 134,
    ("H", "Cl"): 127, ("H", "Br"): 141, ("H", "I"): 161,
    ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135, ("C", "Si"): 185,
    ("C", "P"): 184, ("C", "S"): 182, ("C", "Cl"): 177, ("C", "Br"): 194, ("C", "I"): 214,
    ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136, ("N", "Cl"): 175, ("N", "Br"): 214,
    ("N", "S"): 168, ("N", "I"): 222, ("N", "P"): 177,
    ("O", "O"): 148, ("O", "F"): 142, ("O", "Br"): 172, ("O", "S"): 151, ("O", "P"): 163,
    ("O", "Si"): 163, ("O", "Cl"): 164, ("O", "I"): 194,
    ("F", "F"): 142, ("F", "S"): 158, ("F", "Si"): 160, ("F", "Cl"): 166, ("F", "Br"): 178,
    ("F", "P"): 156, ("F", "I"): 187,
    ("B", "Cl"): 175,
    ("Si", "Si"): 233, ("Si", "S"): 200, ("Si", "Cl"): 202, ("Si", "Br"): 215, ("Si", "I"): 243,
    ("Cl", "Cl"): 199, ("Cl", "P"): 203, ("Cl", "S"): 207, ("Cl", "Br"): 214,
    ("S", "S"): 204, ("S", "Br"): 225, ("S", "P"): 210, ("S", "I"): 234,
    ("Br", "Br"): 228, ("Br", "P"): 222,
    ("P", "P"): 221,
    ("I", "I"): 266,
}  # fmt: skip
DOUBLE_PM = {
    ("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120, ("C", "S"): 160, ("N", "N"): 125,
    ("N", "O"): 121, ("O", "O"): 121, ("O", "P"): 150, ("P", "S"): 186,
}  # fmt: skip
TRIPLE_PM = {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110}
MARGINS_PM = (10, 5, 3)  # single, double, triple

# Allowed sums of bond orders per element.
ALLOWED_VALENCE = {
    "H": 1, "C": 4, "N": 3, "O": 2, "F": 1, "B": 3, "Al": 3, "Si": 4, "P": [3, 5], "S": 4,
    "Cl": 1, "As": 3, "Br": 1, "I": 1, "Hg": [1, 2], "Bi": [3, 5], "Se": [2, 4, 6],
}  # fmt: skip

_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
_MAX_Z = 119
_MAX_VALENCE = 16


def _lookup(table: dict, a: str, b: str) -> int | None:
    return table.get((a, b), table.get((b, a)))


def _threshold_matrices() -> np.ndarray:
    """(3, Z, Z) thresholds in pm (length + margin) indexed by atomic numbers; −inf where the
    pair has no tabulated length, so no distance passes."""
    out = np.full((3, _MAX_Z, _MAX_Z), -np.inf)
    for k, (table, margin) in enumerate(zip((SINGLE_PM, DOUBLE_PM, TRIPLE_PM), MARGINS_PM)):
        for (a, b), length in table.items():
            za, zb = ELEMENTS.GetAtomicNumber(a), ELEMENTS.GetAtomicNumber(b)
            out[k, za, zb] = out[k, zb, za] = length + margin
    return out


def _allowed_table() -> np.ndarray:
    """(Z, _MAX_VALENCE + 1) bool: may an atom of element Z have this bond-order sum?"""
    out = np.zeros((_MAX_Z, _MAX_VALENCE + 1), dtype=bool)
    for symbol, valences in ALLOWED_VALENCE.items():
        z = ELEMENTS.GetAtomicNumber(symbol)
        out[z, np.atleast_1d(valences)] = True
    return out


THRESHOLDS_PM = _threshold_matrices()
SINGLE_LENGTH_A = np.where(np.isfinite(THRESHOLDS_PM[0]), THRESHOLDS_PM[0] - MARGINS_PM[0], np.nan)
SINGLE_LENGTH_A /= 100.0  # typical single-bond length in Å per element pair (NaN: none)
_ALLOWED = _allowed_table()


MIN_DISTANCE_A = 0.5  # atoms closer than this: the geometry is broken, not a molecule


def physical(mol: Molecule) -> bool:
    """Usable and no two atoms closer than 0.5 Å (worth handing to chemistry codes)."""
    if not usable(mol):
        return False
    d = distance_matrix(mol)
    np.fill_diagonal(d, np.inf)
    return len(mol) < 2 or bool(d.min() >= MIN_DISTANCE_A)


def usable(mol: Molecule) -> bool:
    """At least one atom and finite coordinates; anything else fails every check."""
    return len(mol) > 0 and bool(np.isfinite(mol.positions).all())


def bond_order(symbol1: str, symbol2: str, distance_angstrom: float) -> int:
    """EDM's bond order (0–3) of two elements at a distance; untabulated pairs give 0."""
    d = 100.0 * float(distance_angstrom)
    single = _lookup(SINGLE_PM, symbol1, symbol2)
    if single is None or not d < single + MARGINS_PM[0]:
        return 0
    double = _lookup(DOUBLE_PM, symbol1, symbol2)
    if double is None or not d < double + MARGINS_PM[1]:
        return 1
    triple = _lookup(TRIPLE_PM, symbol1, symbol2)
    if triple is None or not d < triple + MARGINS_PM[2]:
        return 2
    return 3


def distance_matrix(mol: Molecule) -> np.ndarray:
    diff = mol.positions[:, None, :] - mol.positions[None, :, :]
    return np.sqrt((diff * diff).sum(-1))


def bond_orders(mol: Molecule) -> np.ndarray:
    """(n, n) symmetric int matrix of EDM bond orders, zero diagonal."""
    n = len(mol)
    if n == 0:
        return np.zeros((0, 0), dtype=np.int64)
    z = np.clip(mol.numbers, 0, _MAX_Z - 1)
    d = 100.0 * distance_matrix(mol)
    t = THRESHOLDS_PM[:, z[:, None], z[None, :]]  # (3, n, n)
    single = d < t[0]
    double = single & (d < t[1])
    triple = double & (d < t[2])
    orders = single.astype(np.int64) + double + triple
    np.fill_diagonal(orders, 0)
    return orders


def stable_atoms(mol: Molecule, *, orders: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool: does each atom's bond-order sum match an allowed valence of its element?"""
    orders = bond_orders(mol) if orders is None else orders
    valence = np.minimum(orders.sum(axis=1), _MAX_VALENCE)
    z = np.clip(mol.numbers, 0, _MAX_Z - 1)
    return _ALLOWED[z, valence]


def atom_stability(mol: Molecule, *, orders: np.ndarray | None = None) -> tuple[bool, int, int]:
    """EDM's check: (molecule stable, number of stable atoms, number of atoms). An empty
    molecule, or one with non-finite coordinates, is not stable (nor are its atoms)."""
    if not usable(mol):
        return False, 0, len(mol)
    n_stable = int(stable_atoms(mol, orders=orders).sum())
    return n_stable == len(mol), n_stable, len(mol)


def build_rdkit(
    mol: Molecule, sanitize: bool = True, *, orders: np.ndarray | None = None
) -> Chem.Mol | None:
    """RDKit molecule with the EDM bonds (single/double/triple, no formal charges) and the
    coordinates as conformer; the atoms exactly as given (no hydrogens added or removed). As in
    EDM, atoms are plain element atoms, so sanitisation fills under-bonded atoms with implicit
    hydrogens and fails only on over-bonded ones. With ``sanitize``: None when RDKit rejects it.
    """
    orders = bond_orders(mol) if orders is None else orders
    rw = Chem.RWMol(bare_rdkit(mol))
    for atom in rw.GetAtoms():
        atom.SetNoImplicit(False)
    for i, j in zip(*np.nonzero(np.triu(orders, 1))):
        rw.AddBond(int(i), int(j), _BOND_TYPES[int(orders[i, j])])
    out = rw.GetMol()
    if sanitize:
        try:
            with rdBase.BlockLogs():
                Chem.SanitizeMol(out)
        except Exception:  # RDKit raises several exception types for bad valences
            return None
    return out


def largest_fragment_smiles(mol: Molecule, *, orders: np.ndarray | None = None) -> str | None:
    """EDM validity: the whole molecule must sanitise; then the canonical SMILES of its largest
    fragment (by atom count). None when invalid."""
    if not usable(mol):
        return None
    rd = build_rdkit(mol, sanitize=True, orders=orders)
    if rd is None:
        return None
    try:
        frags = Chem.GetMolFrags(rd, asMols=True, sanitizeFrags=False)
        largest = max(frags, key=lambda m: m.GetNumAtoms())
        with rdBase.BlockLogs():
            Chem.SanitizeMol(largest)
        return Chem.MolToSmiles(largest)
    except Exception:
        return None


def strict_rdkit(mol: Molecule) -> Chem.Mol | None:
    """Stricter perception: RDKit's DetermineBonds (connectivity from covalent radii, then bond
    orders and formal charges for a neutral molecule). None unless that succeeds, the result
    sanitises and it is one connected fragment."""
    if not usable(mol):
        return None
    rd = Chem.Mol(bare_rdkit(mol))
    try:
        with rdBase.BlockLogs():
            rdDetermineBonds.DetermineBonds(rd, charge=0)
            Chem.SanitizeMol(rd)
    except Exception:
        return None
    if len(Chem.GetMolFrags(rd)) != 1:
        return None
    return rd


def perceive(mol: Molecule) -> Chem.Mol | None:
    """The best bonded RDKit molecule for chemistry oracles and SDF output: the strict
    perception (aromaticity and formal charges right) when it succeeds, else EDM's distance
    bonds; None when neither sanitises or two atoms are fused (closer than 0.5 Å)."""
    if not physical(mol):
        return None
    rd = strict_rdkit(mol)
    return rd if rd is not None else build_rdkit(mol)
