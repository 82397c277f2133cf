"""Molecule datasets → prepared ``.npz`` splits.

QM9 comes from the PyPI package ``qm9pack`` (130,831 molecules: the 133,885 of GDB-9 minus the
3,054 that EDM drops), split as EDM does: 100,000 / 17,748 / 13,083 with a seeded permutation,
and the training split cut in halves for the ``ft`` / ``eval`` property models. User data: SDF
or XYZ files, or SMILES embedded in 3D with RDKit ETKDG + MMFF.

A prepared split ``<split>.npz`` holds flat arrays (no pickle): ``numbers`` (total atoms,),
``positions`` (total atoms, 3) Å, ``num_atoms`` (M,), ``smiles`` (M,) str, ``half`` (M,) int
(0/1 on train, −1 elsewhere) and one (M,) float array per property in the field's units.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd

from molgen.molecule import Molecule, atomic_number, read_molecules
from rewarddiff import UserError
from rewarddiff.io import atomic_path

HARTREE_TO_MEV = 27211.386

# QM9 target name → (qm9pack column, factor to the field's units)
QM9_PROPERTIES = {
    "alpha": ("Polarizability_bohr3", 1.0),  # Bohr^3
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_MEV),  # meV
    "homo": ("HOMO_au", HARTREE_TO_MEV),  # meV
    "lumo": ("LUMO_au", HARTREE_TO_MEV),  # meV
    "mu": ("Dipole_debye", 1.0),  # Debye
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),  # cal/mol K
}
PROPERTY_UNITS = {"alpha": "Bohr³", "gap": "meV", "homo": "meV", "lumo": "meV", "mu": "D",
                  "Cv": "cal/mol K"}  # fmt: skip
EDM_SPLIT = {"train": 100_000, "valid": 17_748, "test": 13_083}
SPLITS = ("train", "valid", "test")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_coordinates(text: str, n_atoms: int, where: str = "") -> np.ndarray:
    """QM9's ``XYZ_Ang`` field → (n_atoms, 3) floats. The numbers follow Mathematica's style
    (``0.``, ``1.``, ``2.1E-6``, ``3.0*^-6``), which JSON rejects, so tokens are read one by
    one and the count is checked."""
    values = [float(tok) for tok in _NUMBER.findall(text.replace("*^", "e"))]
    if len(values) != 3 * n_atoms:
        raise UserError(f"{where}expected {3 * n_atoms} coordinates, found {len(values)}")
    return np.asarray(values, dtype=np.float64).reshape(n_atoms, 3)


def parse_elements(text: str, where: str = "") -> list[int]:
    """``"['C','H','H']"`` → atomic numbers."""
    return [atomic_number(s, where) for s in re.findall(r"[A-Za-z]+", text)]


def qm9_files() -> list[Path]:
    """The three CSV parts shipped by ``qm9pack`` (read as data; the package is not imported)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("QM9 needs the PyPI package qm9pack (pip install qm9pack)")
    root = Path(spec.submodule_search_locations[0]) / "data"
    return [root / f"qm9_part{i}.csv" for i in (1, 2, 3)]


def read_qm9_table(max_rows: int | None = None) -> pd.DataFrame:
    """The QM9 table in GDB-9 index order (columns Index, SMILES, Elements, XYZ_Ang and the
    property columns), optionally only the first ``max_rows`` rows."""
    columns = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"]
    columns += [col for col, _ in QM9_PROPERTIES.values()]
    parts = []
    for path in qm9_files():
        parts.append(pd.read_csv(path, usecols=columns, nrows=max_rows))
        if max_rows is not None and sum(map(len, parts)) >= max_rows:
            break
    table = pd.concat(parts, ignore_index=True).sort_values("Index", kind="stable")
    return table.head(max_rows).reset_index(drop=True) if max_rows else table


def table_to_molecules(table: pd.DataFrame) -> list[Molecule]:
    """Rows of :func:`read_qm9_table` → molecules with ``props`` = smiles + QM9 targets."""
    molecules = []
    for row in table.itertuples(index=False):
        where = f"qm9 index {row.Index}: "
        numbers = parse_elements(row.Elements, where)
        positions = parse_coordinates(row.XYZ_Ang, len(numbers), where)
        props = {"smiles": row.SMILES, "index": int(row.Index)}
        for name, (col, factor) in QM9_PROPERTIES.items():
            props[name] = float(getattr(row, col)) * factor
        molecules.append(Molecule(numbers, positions, f"gdb_{row.Index}", props))
    return molecules


def read_qm9(max_rows: int | None = None) -> list[Molecule]:
    return table_to_molecules(read_qm9_table(max_rows))


def edm_split(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """EDM's split of QM9 indices: a permutation by NumPy's legacy seeded RNG, cut into
    100,000 train, then valid (the rest), then 10 % test; sizes scale down for smaller n."""
    perm = np.random.RandomState(seed).permutation(n)
    n_test = int(0.1 * n)
    n_train = EDM_SPLIT["train"] if n == 130_831 else int(round(n * 100_000 / 130_831))
    n_valid = n - n_train - n_test
    return {
        "train": perm[:n_train],
        "valid": perm[n_train : n_train + n_valid],
        "test": perm[n_train + n_valid :],
    }


def smiles_to_molecule(smiles: str, seed: int = 0, name: str = "") -> Molecule:
    """SMILES → 3D with explicit hydrogens: RDKit ETKDG embedding, then MMFF94 optimisation."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise UserError(f"{name or smiles}: RDKit cannot parse SMILES {smiles!r}")
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise UserError(f"{name or smiles}: ETKDG could not embed {smiles!r} in 3D")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Molecule(numbers, mol.GetConformer().GetPositions(), name, {"smiles": smiles})


def read_smiles_file(path: str | Path, seed: int = 0) -> list[Molecule]:
    """CSV/TSV with a ``smiles`` column (other numeric columns become properties) or a plain
    file with one SMILES per line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    table = pd.read_csv(path, sep=sep)
    if "smiles" not in table.columns:
        table = pd.read_csv(path, header=None, names=["smiles"], sep="\t", usecols=[0])
    out = []
    for i, row in table.iterrows():
        mol = smiles_to_molecule(str(row["smiles"]).split()[0], seed, f"{path}: record {i}")
        mol.name = f"mol_{i}"
        mol.props |= {k: float(v) for k, v in row.items() if k != "smiles" and _is_number(v)}
        out.append(mol)
    return out


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def save_split(path: Path, molecules: list[Molecule], half: np.ndarray | None = None) -> None:
    """Write one prepared split (layout in the module docstring)."""
    names = sorted({k for m in molecules for k, v in m.props.items() if _is_number(v)} - {"index"})
    arrays = {
        "numbers": np.concatenate([m.numbers for m in molecules]).astype(np.int8),
        "positions": np.concatenate([m.positions for m in molecules]).astype(np.float32),
        "num_atoms": np.array([len(m) for m in molecules], dtype=np.int32),
        "smiles": np.array([str(m.props.get("smiles", "")) for m in molecules]),
        "names": np.array([m.name for m in molecules]),
        "half": np.full(len(molecules), -1, np.int8) if half is None else half.astype(np.int8),
    }
    for name in names:
        arrays[f"prop_{name}"] = np.array(
            [float(m.props.get(name, np.nan)) for m in molecules], dtype=np.float64
        )
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_split(path: str | Path) -> tuple[list[Molecule], dict[str, np.ndarray]]:
    """A prepared split → molecules and per-molecule arrays (``half``, ``smiles`` and each
    property under its name)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    ends = np.cumsum(arrays["num_atoms"])
    starts = ends - arrays["num_atoms"]
    molecules = [
        Molecule(arrays["numbers"][s:e], arrays["positions"][s:e], str(name))
        for s, e, name in zip(starts, ends, arrays["names"])
    ]
    columns = {"half": arrays["half"], "smiles": arrays["smiles"]}
    columns |= {k[5:]: v for k, v in arrays.items() if k.startswith("prop_")}
    return molecules, columns


def prepare(params: dict, out_dir: Path) -> dict:
    """Write ``{train,valid,test}.npz``. ``params``: ``source`` (qm9 | file | smiles), ``path``
    for user data, ``max_atoms`` (drop larger molecules, after splitting), ``max_per_split``
    (seeded subset per split, demo scale), ``seed``."""
    source, seed = params.get("source", "qm9"), params.get("seed", 0)
    if source == "qm9":
        molecules = read_qm9()
        splits = edm_split(len(molecules), seed)
    elif source in ("file", "smiles"):
        if "path" not in params:
            raise UserError(f"data: source {source!r} needs key 'path'")
        reader = read_molecules if source == "file" else read_smiles_file
        molecules = reader(params["path"])
        perm = np.random.RandomState(seed).permutation(len(molecules))
        n_valid = n_test = max(1, len(molecules) // 10)
        splits = {
            "train": perm[n_valid + n_test :],
            "valid": perm[:n_valid],
            "test": perm[n_valid : n_valid + n_test],
        }
    else:
        raise UserError(f"data: unknown molecule source {source!r} (qm9, file, smiles)")
    summary, kept = {}, []
    rng = np.random.RandomState(seed + 1)
    for split in SPLITS:
        idx = splits[split]
        if params.get("max_atoms"):
            idx = idx[[len(molecules[i]) <= params["max_atoms"] for i in idx]]
        half = (np.arange(len(idx)) >= len(idx) // 2).astype(int) if split == "train" else None
        if params.get("max_per_split") and len(idx) > params["max_per_split"]:
            keep = np.sort(rng.choice(len(idx), params["max_per_split"], replace=False))
            idx, half = idx[keep], (None if half is None else half[keep])
        chosen = [molecules[i] for i in idx]
        save_split(Path(out_dir) / f"{split}.npz", chosen, half)
        summary[split] = len(chosen)
        kept += chosen
    summary["max_atoms"] = int(max(len(m) for m in kept))
    summary["elements"] = sorted({int(z) for m in kept for z in np.unique(m.numbers)})
    return summary
