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

import csv
import importlib.util
import io
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem

from molgen.molecule import (
    EMBED_SEED,
    Molecule,
    atomic_number,
    embed_3d,
    rdkit_log,
    rdkit_reason,
    read_molecules,
    read_text,
    require_3d,
)
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
DATA_KEYS = ("source", "path", "max_atoms", "max_per_split", "seed")
MIN_MOLECULES = 4  # train 2 (one per ft / eval half), valid 1, test 1
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


def smiles_to_molecule(smiles: str, seed: int = EMBED_SEED, name: str = "") -> Molecule:
    """SMILES → 3D with explicit hydrogens: RDKit ETKDG embedding, then MMFF94 optimisation.
    ``name`` (e.g. ``"mols.csv: line 4"``) starts an error message."""
    where = f"{name}: " if name else ""
    with rdkit_log() as log:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise UserError(f"{where}RDKit cannot parse SMILES {smiles!r}: {rdkit_reason(log)}")
    mol = embed_3d(mol, where, seed)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Molecule(numbers, mol.GetConformer().GetPositions(), name, {"smiles": smiles})


def read_smiles_file(path: str | Path, seed: int = EMBED_SEED) -> list[Molecule]:
    """Molecules ``mol_<i>`` embedded in 3D from a ``.csv`` / ``.tsv`` table with a ``smiles``
    column (any case; other numeric columns become properties) or, for any other suffix, one
    SMILES per line (text after it, e.g. a ``.smi`` name, is ignored)."""
    out = []
    for line, smiles, props in smiles_rows(path):
        mol = smiles_to_molecule(smiles, seed, f"{path}: line {line}")
        mol.name = f"mol_{len(out)}"
        mol.props |= props
        out.append(mol)
    return out


def smiles_rows(path: str | Path) -> list[tuple[int, str, dict]]:
    """(line number, SMILES, numeric columns) of each row of a SMILES file (see
    :func:`read_smiles_file`); blank lines are skipped, an empty SMILES is an error."""
    text, path = read_text(path), Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".tab"):
        rows = [(k, line.split()[0], {}) for k, line in enumerate(text.splitlines(), 1)
                if line.strip()]  # fmt: skip
        return rows[1:] if rows[0][1].lower() == "smiles" else rows  # a header line
    reader = csv.DictReader(io.StringIO(text), delimiter="," if suffix == ".csv" else "\t")
    columns = [c for c in reader.fieldnames or [] if c.strip().lower() == "smiles"]
    if not columns:
        raise UserError(f"{path}: line 1: no 'smiles' column (columns: {reader.fieldnames})")
    rows = []
    for row in reader:
        smiles = (row[columns[0]] or "").strip()
        if not smiles:
            raise UserError(f"{path}: line {reader.line_num}: empty SMILES")
        props = {k: float(v) for k, v in row.items() if k != columns[0] and _is_number(v)}
        rows.append((reader.line_num, smiles, props))
    return rows


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def numeric_fields(molecules: list[Molecule]) -> list[str]:
    """The ``props`` that are properties: every molecule that has the field holds a number."""
    fields = {k for m in molecules for k in m.props} - {"index", "smiles"}
    return sorted(k for k in fields if all(_is_number(m.props[k]) for m in molecules
                                           if k in m.props))  # fmt: skip


def save_split(
    path: Path,
    molecules: list[Molecule],
    half: np.ndarray | None = None,
    properties: list[str] | None = None,
) -> None:
    """Write one prepared split (layout in the module docstring) with the ``properties``
    (default :func:`numeric_fields`; NaN where a molecule lacks one)."""
    names = numeric_fields(molecules) if properties is None else properties
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


def check_data_params(params: dict) -> tuple[str, int]:
    """(source, seed) of a ``data`` section; a UserError for an unknown key or a bad value."""
    unknown = sorted(set(params) - set(DATA_KEYS))
    if unknown:
        raise UserError(f"data: unknown key {unknown[0]!r} (known: {', '.join(DATA_KEYS)})")
    source = params.get("source", "qm9")
    if source not in ("qm9", "file", "smiles"):
        raise UserError(f"data: unknown molecule source {source!r} (qm9, file, smiles)")
    if source != "qm9" and not isinstance(params.get("path"), str):
        raise UserError(f"data: source {source!r} needs key 'path' (a file name)")
    for key, low in (("max_atoms", 1), ("max_per_split", 1), ("seed", 0)):
        value = params.get(key)
        if value is not None and (type(value) is not int or value < low):
            raise UserError(f"data: {key} must be a whole number ≥ {low}, not {value!r}")
    return source, params.get("seed") or 0


def read_source(params: dict, source: str, seed: int) -> tuple[list[Molecule], dict]:
    """All molecules of the data source and their split indices (EDM's split for QM9, else a
    seeded permutation: 10 % valid, 10 % test, at least one each)."""
    if source == "qm9":
        molecules = read_qm9()
        return molecules, edm_split(len(molecules), seed)
    path = params["path"]
    molecules = read_molecules(path) if source == "file" else read_smiles_file(path)
    require_3d(molecules, "the generator learns 3D geometry: give 3D coordinates, or SMILES "
               "(data source smiles) to embed them")  # fmt: skip
    if len(molecules) < MIN_MOLECULES:
        raise UserError(
            f"{path}: {len(molecules)} molecules; preparing needs at least "
            f"{MIN_MOLECULES} (train 2, one per ft / eval half; valid 1; test 1)"
        )
    perm = np.random.RandomState(seed).permutation(len(molecules))
    n_valid = n_test = max(1, len(molecules) // 10)
    splits = {
        "train": perm[n_valid + n_test :],
        "valid": perm[:n_valid],
        "test": perm[n_valid : n_valid + n_test],
    }
    return molecules, splits


def select(molecules: list[Molecule], idx: np.ndarray, split: str, params: dict, rng):
    """(molecule indices, train halves or None) of one split after ``max_atoms`` and
    ``max_per_split``; a UserError naming the split and the settings when nothing is left
    (or a train half is empty)."""
    sizes = np.array([len(molecules[i]) for i in idx], dtype=int)
    if params.get("max_atoms"):
        idx = idx[sizes <= params["max_atoms"]]
    half = (np.arange(len(idx)) >= len(idx) // 2).astype(int) if split == "train" else None
    if params.get("max_per_split") and len(idx) > params["max_per_split"]:
        keep = np.sort(rng.choice(len(idx), params["max_per_split"], replace=False))
        idx, half = idx[keep], (None if half is None else half[keep])
    settings = [f"{k} {params[k]}" for k in ("max_atoms", "max_per_split") if params.get(k)]
    after = f" after {' and '.join(settings)}" if settings else ""
    if not len(idx):
        smallest = f" (its smallest molecule has {sizes.min()} atoms)" if len(sizes) else ""
        raise UserError(f"data: split {split} is empty{after}{smallest}")
    if half is not None and len(set(half.tolist())) < 2:
        raise UserError(f"data: split train has {len(idx)} molecule(s){after}; the ft and eval "
                        f"reward models need one half each")  # fmt: skip
    return idx, half


def prepare(params: dict, out_dir: Path) -> dict:
    """Write ``{train,valid,test}.npz``. ``params``: ``source`` (qm9 | file | smiles), ``path``
    for user data, ``max_atoms`` (drop larger molecules, after splitting), ``max_per_split``
    (seeded subset per split, demo scale), ``seed``. Every split is checked before the first
    is written."""
    source, seed = check_data_params(params)
    molecules, splits = read_source(params, source, seed)
    rng = np.random.RandomState(seed + 1)
    chosen = {split: select(molecules, splits[split], split, params, rng) for split in SPLITS}
    kept = [molecules[i] for idx, _ in chosen.values() for i in idx]
    properties = numeric_fields(kept)
    summary = {}
    for split, (idx, half) in chosen.items():
        save_split(Path(out_dir) / f"{split}.npz", [molecules[i] for i in idx], half, properties)
        summary[split] = len(idx)
    summary["max_atoms"] = int(max(len(m) for m in kept))
    summary["elements"] = sorted({int(z) for m in kept for z in np.unique(m.numbers)})
    return summary


@contextmanager
def staged_folder(out_dir: str | Path):
    """Yield an empty temp folder inside ``out_dir``; when the block succeeds its files replace
    their namesakes in ``out_dir``, else it is deleted: a failed stage leaves the files of
    ``out_dir`` as they were (none, or a complete earlier set), never a mix."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staged.", dir=out_dir))
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
