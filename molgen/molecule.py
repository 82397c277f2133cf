"""The molecule record every ``molgen`` module exchanges, and SDF / XYZ input and output."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem

from rewarddiff import UserError
from rewarddiff.io import atomic_path

ELEMENTS = Chem.GetPeriodicTable()


@dataclass
class Molecule:
    """One 3D molecule: ``numbers`` (n,) atomic numbers, ``positions`` (n, 3) in Å."""

    numbers: np.ndarray
    positions: np.ndarray
    name: str = ""
    props: dict = field(default_factory=dict)  # scores / properties written as SD fields

    def __post_init__(self):
        self.numbers = np.asarray(self.numbers, dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        if len(self.numbers) != len(self.positions):
            raise ValueError(
                f"{self.name or 'molecule'}: {len(self.numbers)} atoms but "
                f"{len(self.positions)} positions"
            )

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def symbols(self) -> list[str]:
        return [ELEMENTS.GetElementSymbol(int(z)) for z in self.numbers]


def atomic_number(symbol: str, where: str = "") -> int:
    """Element symbol ('C', 'cl') → atomic number; a clear error for unknown symbols."""
    try:
        z = ELEMENTS.GetAtomicNumber(symbol.strip().capitalize())
    except RuntimeError:
        z = 0
    if z <= 0:
        raise UserError(f"{where}unknown element {symbol!r}")
    return z


def check_finite(mol: Molecule, where: str) -> None:
    if not np.isfinite(mol.positions).all():
        raise UserError(f"{where}non-finite coordinates")


def from_rdkit(mol: Chem.Mol, name: str = "") -> Molecule:
    """Atoms and the first conformer of an RDKit molecule (explicit Hs kept as they are)."""
    if mol.GetNumConformers() == 0:
        raise UserError(f"{name or 'molecule'}: no 3D conformer")
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    props = {k: v for k, v in mol.GetPropsAsDict().items() if not k.startswith("_")}
    return Molecule(numbers, mol.GetConformer().GetPositions(), name, props)


def read_sdf(path: str | Path) -> list[Molecule]:
    """Every record of an SDF file; a broken record is an error naming its index."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    out = []
    supplier = Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False)
    for i, mol in enumerate(supplier):
        where = f"{path}: record {i}: "
        if mol is None:
            raise UserError(f"{where}unreadable SDF record")
        name = mol.GetProp("_Name") if mol.HasProp("_Name") else f"mol_{i}"
        record = from_rdkit(mol, name or f"mol_{i}")
        check_finite(record, where)
        out.append(record)
    if not out:
        raise UserError(f"{path}: no molecules")
    return out


def read_xyz(path: str | Path) -> list[Molecule]:
    """A (multi-frame) XYZ file: atom count, comment line, ``symbol x y z`` lines per frame."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        where = f"{path}: record {len(out)} (line {i + 1}): "
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            raise UserError(f"{where}expected an atom count, got {lines[i]!r}") from None
        body = lines[i + 2 : i + 2 + n]
        if len(body) < n:
            raise UserError(f"{where}expected {n} atom lines, file ends after {len(body)}")
        numbers, positions = [], []
        for line in body:
            fields = line.replace("*^", "e").split()
            try:
                positions.append([float(v) for v in fields[1:4]])
            except (ValueError, IndexError):
                raise UserError(f"{where}bad atom line {line!r}") from None
            numbers.append(atomic_number(fields[0], where))
        mol = Molecule(numbers, positions, lines[i + 1].strip() or f"mol_{len(out)}")
        check_finite(mol, where)
        out.append(mol)
        i += 2 + n
    if not out:
        raise UserError(f"{path}: no molecules")
    return out


def read_molecules(path: str | Path) -> list[Molecule]:
    """SDF (.sdf/.mol) or XYZ (.xyz) by suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in (".sdf", ".mol"):
        return read_sdf(path)
    if suffix == ".xyz":
        return read_xyz(path)
    raise UserError(f"{path}: unsupported molecule file (use .sdf or .xyz)")


def write_sdf(path: str | Path, molecules: list[Molecule], rdkit_mols: list | None = None) -> None:
    """SDF with 3D coordinates, bonds where perceived (``rdkit_mols[i]``, else none) and every
    entry of ``Molecule.props`` as an SD property. Written atomically."""
    with atomic_path(path) as tmp:
        writer = Chem.SDWriter(str(tmp))
        writer.SetKekulize(False)
        for i, m in enumerate(molecules):
            rd = rdkit_mols[i] if rdkit_mols is not None else None
            rd = Chem.Mol(rd) if rd is not None else bare_rdkit(m)
            rd.SetProp("_Name", m.name or f"design_{i}")
            for key, value in m.props.items():
                rd.SetProp(key, f"{value:.6g}" if isinstance(value, float) else str(value))
            writer.write(rd)
        writer.close()


def bare_rdkit(mol: Molecule) -> Chem.Mol:
    """Atoms and coordinates only (no bonds), unsanitised."""
    rw = Chem.RWMol()
    for z in mol.numbers:
        atom = Chem.Atom(int(z))
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    conf = Chem.Conformer(len(mol))
    for k, p in enumerate(mol.positions):
        conf.SetAtomPosition(k, p.tolist())
    rw.AddConformer(conf, assignId=True)
    return rw.GetMol()


def write_xyz(path: str | Path, molecules: list[Molecule]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for m in molecules:
            f.write(f"{len(m)}\n{m.name}\n")
            for s, (x, y, z) in zip(m.symbols, m.positions):
                f.write(f"{s} {x:.6f} {y:.6f} {z:.6f}\n")
