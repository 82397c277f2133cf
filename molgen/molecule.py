"""The molecule record every ``molgen`` module exchanges, and SDF / XYZ input and output.

Bad input is a :class:`~rewarddiff.UserError` naming the file, the record (counted from 1, with
its name), the line or atom and the problem. RDKit's own log is kept off stderr while it
parses (its reason goes into the message), so a bad file gives one line.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase

from rewarddiff import UserError
from rewarddiff.io import atomic_path, existing_file, read_user_text

ELEMENTS = Chem.GetPeriodicTable()
_SYMBOLS = {ELEMENTS.GetElementSymbol(z).lower(): z for z in range(1, 119)}
FLAT_Z_A = 1e-4  # every |z| below this (≥ 4 atoms): an SDF record is a 2D drawing
EMBED_SEED = 0  # ETKDG seed for embedding 2D records and SMILES
EMBED_HINT = "give 3D input, or rewarddiff score --embed to embed 2D records with RDKit"


@dataclass
class Molecule:
    """One 3D molecule: ``numbers`` (n,) atomic numbers, ``positions`` (n, 3) in Å."""

    numbers: np.ndarray
    positions: np.ndarray
    name: str = ""
    props: dict = field(default_factory=dict)  # SD fields as read (text) and scores
    # the SDF record as read (its bonds and charges), None for generated or XYZ molecules
    record: Chem.Mol | None = field(default=None, repr=False, compare=False)
    flat: str = ""  # "<file>: record <i>: 2D coordinates (why)" for a 2D drawing, "" for 3D
    embedded: bool = False  # coordinates embedded by RDKit from a 2D record

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
    """Element symbol ('C', 'cl') or atomic number ('6') → atomic number; a clear error for
    anything else."""
    text = symbol.strip()
    z = int(text) if text.isdigit() else _SYMBOLS.get(text.lower(), 0)
    if not 1 <= z <= 118:
        raise UserError(f"{where}unknown element {symbol!r}")
    return z


def check_atoms(mol: Molecule, where: str) -> None:
    """UserError for the first atom without an element (SDF dummy or query atoms) or with
    non-finite coordinates."""
    for k in np.flatnonzero(mol.numbers <= 0)[:1]:
        raise UserError(f"{where}atom {k + 1} is a dummy or query atom (such as *, A, Q, R), "
                        f"not an element")  # fmt: skip
    for k in np.flatnonzero(~np.isfinite(mol.positions).all(axis=1))[:1]:
        xyz = mol.positions[k].tolist()
        raise UserError(f"{where}atom {k + 1} has non-finite coordinates {xyz}")


def require_3d(molecules: list[Molecule], why: str) -> None:
    """UserError naming the first 2D drawing (``Molecule.flat``) among ``molecules``; ``why``
    says what needs 3D coordinates."""
    flat = next((m.flat for m in molecules if m.flat), None)
    if flat:
        raise UserError(f"{flat}; {why}")


def read_text(path: str | Path) -> str:
    """The text of a user file (:func:`rewarddiff.io.read_user_text`); also an error for an
    empty file (or only white space)."""
    text = read_user_text(path, "a molecule file")
    if not text.strip():
        raise UserError(f"{path}: empty file")
    return text


@contextmanager
def rdkit_log():
    """Keep RDKit's C++ log off stderr and capture it for :func:`rdkit_reason`."""
    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as log:
        yield log


def rdkit_reason(log, line_offset: int = 0) -> str:
    """The first message of a captured RDKit log (time stamp and ``ERROR:`` dropped; for an
    invariant violation its kind and text), line numbers shifted by ``line_offset``."""
    lines = log.messages.splitlines()
    stamp = re.compile(r"^\[[\d:]+\] ?(?:ERROR: )?")
    found = [stamp.sub("", line).strip() for line in lines if stamp.match(line)]
    found = [m for m in found if m and not m.startswith("moving to the beginning")]
    if not found and "****" in lines:  # an invariant violation: "Range Error: idx"
        k = lines.index("****")
        found = [": ".join(line.strip() for line in lines[k + 1 : k + 3])]
    reason = found[0] if found else "no reason given"
    return re.sub(r"\bline (\d+)", lambda m: f"line {int(m[1]) + line_offset}", reason)


def from_rdkit(mol: Chem.Mol, name: str = "") -> Molecule:
    """Atoms, first conformer and SD fields (as text) of an RDKit molecule (explicit Hs kept as
    they are)."""
    if mol.GetNumConformers() == 0:
        raise UserError(f"{name or 'molecule'}: no 3D conformer")
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    props = {k: mol.GetProp(k) for k in mol.GetPropNames()}
    return Molecule(numbers, mol.GetConformer().GetPositions(), name, props)


def embed_3d(mol: Chem.Mol, where: str, seed: int = EMBED_SEED) -> Chem.Mol:
    """A sanitised molecule with hydrogens added, embedded in 3D by RDKit ETKDG v3 (seeded) and
    optimised with MMFF94 where MMFF has parameters for it."""
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    with rdBase.BlockLogs():  # force-field warnings
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise UserError(f"{where}RDKit ETKDG could not embed the molecule in 3D")
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return mol


def graph_smiles(mol: Chem.Mol) -> str | None:
    """Canonical SMILES of the largest fragment of a molecule's own bonds; None if RDKit
    cannot sanitise it."""
    mol = Chem.Mol(mol)
    with rdBase.BlockLogs():
        try:
            Chem.SanitizeMol(mol)
        except Exception:
            return None
        frags = Chem.GetMolFrags(mol, asMols=True)
        return Chem.MolToSmiles(max(frags, key=lambda m: m.GetNumAtoms()))


def sdf_records(text: str) -> list[tuple[int, str]]:
    """(first line, text) of each record of an SDF (a .mol file is one record); blank text
    after the last ``$$$$`` is not a record."""
    records, lines, start = [], [], 1
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if not lines:
            start = number
        lines.append(line)
        if line.strip() == "$$$$":
            records.append((start, "".join(lines)))
            lines = []
    if "".join(lines).strip():
        records.append((start, "".join(lines)))
    return records


def _parse_record(block: str, sanitize: bool) -> Chem.Mol | None:
    supplier = Chem.SDMolSupplier()
    supplier.SetData(block, sanitize=sanitize, removeHs=False)
    return next(iter(supplier), None)


def flat_reason(mol: Chem.Mol) -> str:
    """Why an SDF record's coordinates are a 2D drawing ("" for 3D): the molblock is not marked
    3D, or at least 4 atoms spread over the plane z = 0 (every |z| < ``FLAT_Z_A``; any 3 atoms,
    and a linear molecule's, lie in a plane). Of QM9's molecules none is flat."""
    if not mol.GetNumConformers():
        return ""
    if not mol.GetConformer().Is3D():
        return "2D coordinates (the molblock is not marked 3D)"
    xyz = mol.GetConformer().GetPositions()
    in_plane = len(xyz) >= 4 and np.all(np.abs(xyz[:, 2]) < FLAT_Z_A)
    if in_plane and np.linalg.matrix_rank(xyz[:, :2] - xyz[:, :2].mean(0), tol=0.1) == 2:
        return "2D coordinates (every z is 0)"
    return ""


def read_sdf(path: str | Path, embed: bool = False) -> list[Molecule]:
    """Every record of an SDF (or .mol) file, named by its title line (``design_<i>`` when
    blank), its SD fields as ``props``. A 2D record (:func:`flat_reason`) is embedded in 3D
    (:func:`embed_3d`) with ``embed``, else kept with ``flat`` set."""
    out = []
    for i, (line, block) in enumerate(sdf_records(read_text(path))):
        title = block.split("\n", 1)[0].strip()
        where = f"{path}: record {i + 1}{f' ({title!r})' if title else ''}: "
        with rdkit_log() as log:
            rd = _parse_record(block, sanitize=False)
        if rd is None:
            raise UserError(f"{where}RDKit cannot read it: {rdkit_reason(log, line - 1)}")
        mol = from_rdkit(rd, title or f"design_{i}")
        check_atoms(mol, where)
        mol.record, flat = rd, flat_reason(rd)
        if flat and embed:
            mol = _embedded(mol, block, where, line)
        elif flat:
            mol.flat = f"{where}{flat}"
        out.append(mol)
    return out


def _embedded(mol: Molecule, block: str, where: str, line: int) -> Molecule:
    """A 2D record re-read with sanitisation (stereo from its wedges) and embedded in 3D."""
    with rdkit_log() as log:
        rd = _parse_record(block, sanitize=True)
    if rd is None:
        raise UserError(f"{where}RDKit rejects the molecule: {rdkit_reason(log, line - 1)}")
    rd = embed_3d(rd, where)
    numbers = [a.GetAtomicNum() for a in rd.GetAtoms()]
    positions = rd.GetConformer().GetPositions()
    return Molecule(numbers, positions, mol.name, mol.props, rd, embedded=True)


def read_xyz(path: str | Path) -> list[Molecule]:
    """A (multi-frame) XYZ file: atom count, comment line (the record's name; ``design_<i>``
    when blank), one ``symbol x y z`` line per atom (symbol or atomic number; further columns
    are ignored)."""
    lines = read_text(path).splitlines()
    out, i = [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = _atom_count(lines[i], f"{path}: line {i + 1}: ", out)
        name = lines[i + 1].strip() if i + 1 < len(lines) else ""
        where = f"{path}: record {len(out) + 1}{f' ({name!r})' if name else ''}: "
        body = lines[i + 2 : i + 2 + n]
        if len(body) < n:
            raise UserError(f"{where}the atom count on line {i + 1} is {n}, but the file ends "
                            f"after {len(body)} atom lines")  # fmt: skip
        atoms = [_xyz_atom(text, f"{where}line {i + 3 + k}: atom {k + 1} of {n}: ")
                 for k, text in enumerate(body)]  # fmt: skip
        name = name or f"design_{len(out)}"
        mol = Molecule([z for z, _ in atoms], [xyz for _, xyz in atoms], name)
        check_atoms(mol, where)
        out.append(mol)
        i += 2 + n
    return out


def _atom_count(line: str, where: str, previous: list[Molecule]) -> int:
    """The count line of an XYZ record; the error for an atom line says which count is off."""
    try:
        n = int(line.split()[0])
    except ValueError:
        hint = ""
        if previous and len(line.split()) >= 4:
            hint = (f" (record {len(previous)} has more atom lines than its atom count, "
                    f"{len(previous[-1])})")  # fmt: skip
        raise UserError(f"{where}expected an atom count, got {line.strip()!r}{hint}") from None
    if n < 0:
        raise UserError(f"{where}negative atom count {n}")
    return n


def _xyz_atom(line: str, where: str) -> tuple[int, list[float]]:
    """(atomic number, [x, y, z]) of one XYZ atom line."""
    fields = line.replace("*^", "e").split()
    if len(fields) < 4:
        raise UserError(f"{where}expected 'symbol x y z', got {line.strip()!r}")
    try:
        xyz = [float(v) for v in fields[1:4]]
    except ValueError:
        raise UserError(f"{where}coordinates must be numbers, got {line.strip()!r}") from None
    return atomic_number(fields[0], where), xyz


def read_molecules(path: str | Path, embed: bool = False) -> list[Molecule]:
    """SDF (.sdf / .mol) or XYZ (.xyz) by suffix; ``embed``: see :func:`read_sdf`."""
    suffix = existing_file(path).suffix.lower()
    if suffix in (".sdf", ".mol"):
        return read_sdf(path, embed)
    if suffix == ".xyz":
        return read_xyz(path)
    if suffix == ".gz":
        raise UserError(f"{path}: gzip-compressed; decompress it first (gunzip)")
    raise UserError(f"{path}: unsupported molecule file {suffix or '(no suffix)'} "
                    f"(use .sdf, .mol or .xyz)")  # fmt: skip


def write_sdf(path: str | Path, molecules: list[Molecule], rdkit_mols: list | None = None) -> None:
    """SDF with the coordinates, bonds of ``rdkit_mols[i]`` (an input record or perceived
    bonds; none without it) and every entry of ``Molecule.props`` as an SD property. Written
    atomically."""
    with atomic_path(path) as tmp:
        writer = Chem.SDWriter(str(tmp))
        writer.SetKekulize(False)
        for i, m in enumerate(molecules):
            rd = rdkit_mols[i] if rdkit_mols is not None else None
            rd = Chem.Mol(rd) if rd is not None else bare_rdkit(m)
            rd.UpdatePropertyCache(strict=False)  # unsanitised input records
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
