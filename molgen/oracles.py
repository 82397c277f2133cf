"""3D-molecule oracles registered in the core registry (domain ``molecule``, designs are
``list[Molecule]``).

* RDKit descriptors of the largest fragment of the perceived molecule
  (:func:`molgen.bonds.perceive`: DetermineBonds with aromaticity and charges, else EDM's
  distance bonds; canonical SMILES re-parsed and sanitised; NaN when the molecule is invalid):
  ``qed``, ``logp`` (Crippen), ``sa_score`` (Ertl & Schuffenhauer, RDKit Contrib),
  ``num_rings``, ``num_heavy_atoms``.
* ``xtb:gap|dipole|energy``: GFN2-xTB single point (tblite) on the coordinates as given, neutral,
  one unpaired electron when the electron count is odd. Runs in persistent worker processes; a
  molecule that takes longer than the timeout (``xtb:gap@60`` for 60 s, or the context keyword
  ``xtb_timeout``; default 30 s) is NaN and its worker is replaced.
* ``mmff_strain`` / ``mmff_strain:hrelax``: MMFF94 local strain energy (see :func:`mmff_strain`).
* ``stability:molecule`` / ``stability:atom``: EDM molecule / atom stability.

Failures are NaN, never exceptions (the :class:`~rewarddiff.oracles.base.Oracle` contract).
2D input (an SDF drawing, ``Molecule.flat``) is no failure of one design but a user error for
the oracles that read coordinates (:func:`check_3d`); the descriptors score its own bonds.
Heavy dependencies (RDKit, tblite) are imported lazily, so xTB worker processes start quickly.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import subprocess
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from molgen.data import PROPERTY_UNITS
from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.registry import no_argument, register_oracle

if TYPE_CHECKING:
    from molgen.molecule import Molecule

DOMAIN = "molecule"
NAN = float("nan")

BOHR_PER_ANGSTROM = 1.0 / 0.529177210903
HARTREE_EV = 27.211386245988
DEBYE_PER_AU = 2.541746  # e·bohr → Debye
XTB_MAX_Z = 86  # GFN2-xTB parametrisation covers H–Rn
DEFAULT_XTB_TIMEOUT_S = 30.0
DEFAULT_TARGETS = ("alpha", "gap")  # the regressors' targets without reward.targets


# ----- small content-addressed caches ----------------------------------------------------------
class _LRU(OrderedDict):
    """Bounded least-recently-used dict."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, compute):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = compute()
        self.put(key, value)
        return value

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


def _key(mol: Molecule) -> bytes:
    """Digest of the atoms and exact coordinates: equal designs share cached results."""
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(mol.numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(mol.positions, dtype=np.float64).tobytes())
    return h.digest()


_SMILES_CACHE = _LRU(100_000)
_XTB_CACHE = _LRU(100_000)


# ----- 2D input ----------------------------------------------------------------------------------
# oracles that read the coordinates (the descriptors need only the bond graph)
GEOMETRY_ORACLES = ("xtb", "mmff_strain", "stability", "property")


def check_3d(designs, specs: list[str]) -> None:
    """UserError when a 2D drawing (``Molecule.flat``) is to be scored by an oracle of
    ``GEOMETRY_ORACLES``; the message names the file, the record and the oracles."""
    from molgen.molecule import EMBED_HINT, require_3d

    needs_3d = [s for s in dict.fromkeys(specs) if s.partition(":")[0] in GEOMETRY_ORACLES]
    if needs_3d:
        verb = "reads" if len(needs_3d) == 1 else "read"
        require_3d(designs, f"{', '.join(needs_3d)} {verb} 3D coordinates: {EMBED_HINT}")


# ----- RDKit descriptors of the largest fragment -----------------------------------------------
def _largest_fragment(mol: Molecule):
    """Sanitised RDKit molecule (implicit Hs) of the largest fragment, or None if invalid; a 2D
    drawing (``mol.flat``) by its record's own bonds, not perceived ones."""
    from rdkit import Chem

    from molgen.bonds import perceive
    from molgen.molecule import graph_smiles

    if mol.flat:
        smiles = graph_smiles(mol.record)
        return Chem.MolFromSmiles(smiles) if smiles else None

    def compute():
        try:
            rd = perceive(mol)
            if rd is None:
                return None
            frags = Chem.GetMolFrags(rd, asMols=True)
            return Chem.MolToSmiles(max(frags, key=lambda m: m.GetNumAtoms()))
        except Exception:
            return None

    smiles = _SMILES_CACHE.get_or(_key(mol), compute)
    return Chem.MolFromSmiles(smiles) if smiles else None


def _per_molecule(fn, designs) -> list[float]:
    """``fn(rdkit_mol)`` on each design's largest fragment; NaN where invalid or ``fn`` fails."""
    out = []
    for design in designs:
        try:
            rd = _largest_fragment(design)
            out.append(NAN if rd is None else float(fn(rd)))
        except Exception:
            out.append(NAN)
    return out


@lru_cache(maxsize=1)
def _sascorer():
    """The SA score module shipped in RDKit's Contrib directory."""
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(path, "sascorer.py")):
        raise UserError(f"oracle sa_score: RDKit Contrib SA_Score not found at {path}")
    if path not in sys.path:
        sys.path.append(path)
    import sascorer

    sascorer.readFragmentScores()  # load the fragment table once, not on the first molecule
    return sascorer


def rdkit_descriptor(name: str) -> Callable:
    """The RDKit function behind a descriptor oracle (takes a sanitised RDKit molecule)."""
    from rdkit.Chem import QED, Crippen, rdMolDescriptors

    match name:
        case "qed":
            return QED.qed
        case "logp":
            return Crippen.MolLogP
        case "sa_score":
            return _sascorer().calculateScore
        case "num_rings":
            return rdMolDescriptors.CalcNumRings
        case "num_heavy_atoms":
            return lambda m: m.GetNumHeavyAtoms()
    raise KeyError(name)


_DESCRIPTORS = {
    "qed": OracleInfo(
        "qed", DOMAIN, "maximize", "score 0-1", description="RDKit QED drug-likeness"
    ),
    "logp": OracleInfo(
        "logp", DOMAIN, "target", "logP", description="Crippen octanol/water logP (RDKit)"
    ),
    "sa_score": OracleInfo(
        "sa_score",
        DOMAIN,
        "minimize",
        "score 1-10",
        description="synthetic accessibility (Ertl & Schuffenhauer, RDKit Contrib; 1 = easy)",
    ),
    "num_rings": OracleInfo(
        "num_rings", DOMAIN, "target", "count", description="number of SSSR rings"
    ),
    "num_heavy_atoms": OracleInfo(
        "num_heavy_atoms", DOMAIN, "target", "count", description="number of non-H atoms"
    ),
}


def _register_descriptor(name: str, info: OracleInfo) -> None:
    info = replace(
        info,
        description=f"{info.description}, of the largest fragment of the perceived molecule; "
        "NaN if invalid",
    )

    @register_oracle(DOMAIN, name, info, no_argument(name))
    def factory(argument=None, **context):
        no_argument(name)(argument)
        fn = rdkit_descriptor(name)
        return FunctionOracle(info, lambda designs: _per_molecule(fn, designs))


for _name, _info in _DESCRIPTORS.items():
    _register_descriptor(_name, _info)


# ----- EDM stability ---------------------------------------------------------------------------
def _stability(designs, per_atom: bool) -> list[float]:
    from molgen.bonds import atom_stability

    out = []
    for design in designs:
        try:
            stable, n_stable, n_atoms = atom_stability(design)
            if n_atoms == 0:
                out.append(NAN)
            else:
                out.append(n_stable / n_atoms if per_atom else float(stable))
        except Exception:
            out.append(NAN)
    return out


STABILITY = OracleInfo(
    "stability:molecule|atom",
    DOMAIN,
    "maximize",
    "fraction",
    description="EDM stability: molecule (1 if every atom has an allowed valence, else 0) "
    "or atom (fraction of atoms with an allowed valence); NaN for an empty molecule",
)


def stability_argument(argument: str | None, config: dict | None = None) -> bool:
    """Whether ``stability:molecule|atom`` scores per atom."""
    if argument not in ("molecule", "atom"):
        raise UserError(
            f"oracle stability needs molecule or atom (stability:molecule), not {argument!r}"
        )
    return argument == "atom"


@register_oracle(DOMAIN, "stability", STABILITY, check=stability_argument)
def stability(argument=None, **context):
    per_atom = stability_argument(argument)
    info = STABILITY.for_argument(
        argument,
        units="fraction" if per_atom else "0/1",
        description="fraction of EDM-stable atoms" if per_atom else "EDM molecule stability",
    )
    return FunctionOracle(info, lambda designs: _stability(designs, per_atom))


# ----- MMFF94 strain ---------------------------------------------------------------------------
def mmff_strain(mol: Molecule, relax_hydrogens: bool = False, max_iters: int = 2000) -> float:
    """MMFF94 local strain energy in kcal/mol, NaN when it cannot be computed.

    1. RDKit molecule from :func:`molgen.bonds.perceive` (DetermineBonds, else EDM bonds;
       given coordinates); NaN if it does not sanitise. Only its largest fragment is kept.
    2. Hydrogens RDKit adds for under-bonded atoms get coordinates and are relaxed with every
       given atom fixed (none are added for an EDM-stable molecule with explicit Hs).
       With ``relax_hydrogens`` all hydrogens, given ones included, are relaxed this way.
    3. ``E_input`` = MMFF94 energy of that geometry; ``E_relaxed`` = MMFF94 energy after an
       unconstrained local minimisation started from it (the nearest local minimum, not a
       conformer search). Strain = ``E_input − E_relaxed`` (≥ 0).

    NaN when MMFF94 has no parameters for the molecule or the minimisation does not converge.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from molgen.bonds import perceive

    rd = perceive(mol)
    if rd is None or rd.GetNumAtoms() == 0:
        return NAN
    frags = Chem.GetMolFrags(rd, asMols=True, sanitizeFrags=True)
    rd = max(frags, key=lambda m: m.GetNumAtoms())
    n_given = rd.GetNumAtoms()
    rd = Chem.AddHs(rd, addCoords=True)
    props = AllChem.MMFFGetMoleculeProperties(rd)
    if props is None:
        return NAN
    fixed = [
        a.GetIdx()
        for a in rd.GetAtoms()
        if a.GetIdx() < n_given and not (relax_hydrogens and a.GetAtomicNum() == 1)
    ]
    if len(fixed) < rd.GetNumAtoms():  # relax the free hydrogens with the rest fixed
        ff = AllChem.MMFFGetMoleculeForceField(rd, props, ignoreInterfragInteractions=False)
        if ff is None:
            return NAN
        for idx in fixed:
            ff.AddFixedPoint(idx)
        ff.Initialize()
        if ff.Minimize(maxIts=max_iters) != 0:
            return NAN
    ff = AllChem.MMFFGetMoleculeForceField(rd, props, ignoreInterfragInteractions=False)
    if ff is None:
        return NAN
    ff.Initialize()
    e_input = ff.CalcEnergy()
    if ff.Minimize(maxIts=max_iters) != 0:
        return NAN
    return float(e_input - ff.CalcEnergy())


def _strain_batch(designs, relax_hydrogens: bool) -> list[float]:
    out = []
    for design in designs:
        try:
            out.append(mmff_strain(design, relax_hydrogens))
        except Exception:
            out.append(NAN)
    return out


MMFF_STRAIN = OracleInfo(
    "mmff_strain[:hrelax]",
    DOMAIN,
    "minimize",
    "kcal/mol",
    "moderate",
    description="MMFF94 E(input geometry) − E(nearest local minimum), largest fragment; "
    "hrelax: all hydrogens relaxed first (heavy-atom strain only)",
)


def strain_argument(argument: str | None, config: dict | None = None) -> bool:
    """Whether ``mmff_strain[:hrelax]`` relaxes the hydrogens first."""
    if argument not in (None, "hrelax"):
        raise UserError(f"oracle mmff_strain takes no argument or hrelax, not {argument!r}")
    return argument == "hrelax"


@register_oracle(DOMAIN, "mmff_strain", MMFF_STRAIN, check=strain_argument)
def mmff_strain_oracle(argument=None, **context):
    relax = strain_argument(argument)
    description = "MMFF94 local strain energy" + (" after relaxing hydrogens" if relax else "")
    return FunctionOracle(
        MMFF_STRAIN.for_argument(argument, description=description),
        lambda designs: _strain_batch(designs, relax),
    )


# ----- GFN2-xTB single points in persistent worker processes -----------------------------------
XTB_PROPERTIES = {
    # property -> (index in the worker's result tuple, direction, units, description)
    "energy": (0, "minimize", "Hartree", "GFN2-xTB total energy"),
    "gap": (1, "maximize", "eV", "GFN2-xTB HOMO-LUMO gap"),
    "dipole": (2, "maximize", "Debye", "GFN2-xTB dipole moment magnitude"),
}


def xtb_single_point(numbers: np.ndarray, positions_bohr: np.ndarray, uhf: int) -> tuple:
    """(energy Hartree, HOMO-LUMO gap eV, |dipole| Debye) of one neutral molecule; runs in the
    calling process. The HOMO is the ⌈N_electrons / 2⌉-th orbital by energy (the SOMO for an
    odd count); with tblite's Fermi smearing, near-degenerate frontier orbitals give gap ≈ 0."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, positions_bohr, charge=0, uhf=uhf)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    energy = float(res.get("energy"))
    orbital_energies = np.sort(np.asarray(res.get("orbital-energies"), dtype=np.float64))
    n_electrons = int(round(float(np.sum(res.get("orbital-occupations")))))
    homo = (n_electrons + 1) // 2 - 1
    if 0 <= homo < len(orbital_energies) - 1:
        gap = float(orbital_energies[homo + 1] - orbital_energies[homo]) * HARTREE_EV
    else:
        gap = NAN
    dipole = float(np.linalg.norm(res.get("dipole"))) * DEBYE_PER_AU
    return energy, gap, dipole


def _xtb_worker_main() -> None:
    """Worker loop: read (numbers, positions_bohr, uhf) from stdin, write results (or None on
    failure) to the original stdout; anything the library prints goes to stderr."""
    recv = Connection(os.dup(0), writable=False)
    send = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import tblite.interface  # noqa: F401  (import before reporting ready)

    send.send("ready")
    while True:
        try:
            task = recv.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            result = xtb_single_point(*task)
        except Exception:
            result = None
        send.send(result)


class _Worker:
    STARTUP_TIMEOUT_S = 120.0

    def __init__(self):
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from molgen.oracles import _xtb_worker_main as m; m()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.send_conn = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.recv_conn = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = time.monotonic() + self.STARTUP_TIMEOUT_S

    def kill(self) -> None:
        for conn in (self.send_conn, self.recv_conn):
            try:
                conn.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class XTBPool:
    """Persistent worker processes, one molecule in flight per worker; a worker past the
    per-molecule timeout (or crashed) is killed, its molecule gets None and a new worker is
    started; an answer read after its deadline (the parent was descheduled) is None too, so
    the timeout holds on a loaded machine."""

    def __init__(self, n_workers: int):
        self.n_workers = max(1, int(n_workers))
        self.workers: list[_Worker] = []
        self.broken: str | None = None
        self.pid = os.getpid()  # a forked child must not share its parent's workers

    def run(self, tasks: list[tuple], timeout_s: float) -> list[tuple | None]:
        if self.broken:
            raise RuntimeError(self.broken)
        try:
            return self._run(tasks, timeout_s)
        except BaseException:  # interrupted: in-flight answers would reach the next batch
            self.close()
            raise

    def _run(self, tasks: list[tuple], timeout_s: float) -> list[tuple | None]:
        results: list[tuple | None] = [None] * len(tasks)
        pending = deque(range(len(tasks)))
        while len(self.workers) < min(self.n_workers, len(tasks)):
            self.workers.append(_Worker())
        while pending or any(w.task is not None for w in self.workers):
            now = time.monotonic()
            for w in self.workers:
                if w.ready and w.task is None and pending:
                    w.task = pending.popleft()
                    w.deadline = now + timeout_s
                    try:
                        w.send_conn.send(tasks[w.task])
                    except OSError:  # died while idle: seen as end of file below
                        pass
            waiting = [w for w in self.workers if not w.ready or w.task is not None]
            delay = max(0.0, min(w.deadline for w in waiting) - time.monotonic())
            ready = set(wait([w.recv_conn for w in waiting], timeout=delay))
            now = time.monotonic()
            for w in waiting:
                if w.recv_conn in ready:
                    try:
                        message = w.recv_conn.recv()
                    except (EOFError, OSError):
                        self._replace(w, "exited")
                        continue
                    if not w.ready:
                        w.ready = message == "ready"
                    else:  # an answer after its deadline is a timeout too (stays None)
                        if now <= w.deadline:
                            results[w.task] = message
                        w.task = None
                elif now >= w.deadline:
                    self._replace(w, "timed out" if w.ready else "did not start in time")
        return results

    def _replace(self, worker: _Worker, why: str) -> None:
        worker.kill()
        self.workers.remove(worker)
        if not worker.ready:
            self.close()
            self.broken = f"xTB worker process {why} during startup (see stderr)"
            raise RuntimeError(self.broken)
        self.workers.append(_Worker())  # its molecule stays None (NaN)

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []


_POOL: XTBPool | None = None


def _pool(n_workers: int) -> XTBPool:
    global _POOL
    if _POOL is not None and _POOL.pid != os.getpid():
        _POOL = None  # inherited through fork: leave the parent's workers alone
    if _POOL is None or (_POOL.n_workers != n_workers and not _POOL.broken):
        if _POOL is not None:
            _POOL.close()
        _POOL = XTBPool(n_workers)
    return _POOL


@atexit.register
def _close_pool() -> None:
    if _POOL is not None and _POOL.pid == os.getpid():
        _POOL.close()


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def xtb_sane(mol: Molecule) -> bool:
    """Worth running xTB: non-empty, finite coordinates, elements H–Rn, no two atoms closer
    than 0.5 Å."""
    from molgen.bonds import physical

    return physical(mol) and mol.numbers.min() >= 1 and mol.numbers.max() <= XTB_MAX_Z


def xtb_results(
    designs, timeout_s: float = DEFAULT_XTB_TIMEOUT_S, n_workers: int | None = None
) -> list[tuple]:
    """(energy, gap, dipole) per molecule (NaNs on failure), cached by exact geometry."""
    failed = (NAN, NAN, NAN)
    keys, known, todo = [], {}, {}
    for mol in designs:
        key = _key(mol)
        keys.append(key)
        if key in known or key in todo:
            continue
        if key in _XTB_CACHE:
            _XTB_CACHE.move_to_end(key)
            known[key] = _XTB_CACHE[key]
        elif not xtb_sane(mol):
            known[key] = failed
        else:
            todo[key] = mol
    if todo:
        tasks = []
        for mol in todo.values():
            uhf = int(mol.numbers.sum()) % 2
            tasks.append((mol.numbers.astype(np.int32), mol.positions * BOHR_PER_ANGSTROM, uhf))
        results = _pool(n_workers or default_workers()).run(tasks, timeout_s)
        for key, result in zip(todo, results):
            known[key] = failed if result is None else tuple(map(float, result))
            if result is not None:  # a timeout or crash may be transient: not cached
                _XTB_CACHE.put(key, known[key])
    return [known[key] for key in keys]


def xtb_argument(
    argument: str | None, config: dict | None = None, default_timeout: float | None = None
) -> tuple[str, float]:
    """(property, timeout in s) of ``xtb:<property>[@<timeout s>]``; tblite must be installed."""
    prop, _, timeout = (argument or "").partition("@")
    if prop not in XTB_PROPERTIES:
        raise UserError(
            f"oracle xtb needs one of {', '.join(XTB_PROPERTIES)} (e.g. xtb:gap), not {argument!r}"
        )
    try:
        timeout_s = float(timeout or default_timeout or DEFAULT_XTB_TIMEOUT_S)
    except ValueError:
        raise UserError(
            f"oracle xtb: timeout must be seconds, e.g. xtb:gap@60, not {timeout!r}"
        ) from None
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise UserError(f"oracle xtb: timeout must be positive, not {timeout_s}")
    from importlib.util import find_spec

    if find_spec("tblite") is None:
        raise UserError("oracle xtb needs the tblite package (pip install tblite)")
    return prop, timeout_s


XTB = OracleInfo(
    "xtb:gap|dipole|energy[@timeout_s]",
    DOMAIN,
    "maximize",
    "eV|D|Hartree",
    "moderate",
    description="GFN2-xTB single point (tblite) on the given geometry, neutral; HOMO-LUMO gap "
    "(eV), dipole moment (Debye) or total energy (Hartree); NaN on SCF failure, broken "
    "geometry or timeout (default 30 s per molecule; context xtb_timeout, xtb_workers)",
)


@register_oracle(DOMAIN, "xtb", XTB, check=xtb_argument)
def xtb(argument=None, xtb_timeout=None, xtb_workers=None, **context):
    prop, timeout_s = xtb_argument(argument, default_timeout=xtb_timeout)
    index, direction, units, description = XTB_PROPERTIES[prop]
    info = XTB.for_argument(
        prop,
        direction=direction,
        units=units,
        description=f"{description}, timeout {timeout_s:g} s per molecule",
    )
    workers = int(xtb_workers) if xtb_workers else None

    def score(designs):
        return [r[index] for r in xtb_results(list(designs), timeout_s, workers)]

    return FunctionOracle(info, score)


# ----- learned e3nn property regressors -------------------------------------------------------
@lru_cache(maxsize=8)
def load_regressor(path: str):
    from molgen.regressor import PropertyRegressor, RegressorConfig
    from rewarddiff.oracles.learned import RewardEnsemble

    return RewardEnsemble.load(path, lambda c: PropertyRegressor(RegressorConfig(**c["network"])))


def check_target(argument: str | None, targets) -> None:
    """UserError unless ``property:<target>`` names one of the regressors' ``targets``."""
    if argument not in targets:
        problem = f"unknown target {argument!r}" if argument else "needs a target"
        raise UserError(f"oracle property: {problem} (known: {', '.join(targets)})")


def check_property(argument: str | None, config: dict) -> None:
    """The check of ``property:<target>`` against the config's ``reward.targets``."""
    check_target(argument, (config.get("reward") or {}).get("targets", DEFAULT_TARGETS))


PROPERTY = OracleInfo(
    "property:<target>",
    DOMAIN,
    "maximize",
    "target units (α Bohr³, energies meV, μ D, Cv cal/mol K)",
    "moderate",
    True,
    "QM9 property predicted by an e3nn regressor ensemble (the ft or eval copy)",
)


@register_oracle(DOMAIN, "property", PROPERTY, check=check_property)
def property_oracle(argument=None, reward_model=None, **context):
    from molgen.graph import to_dense

    if reward_model is None or not Path(reward_model).exists():
        raise UserError(f"oracle property:{argument} needs a reward model (--reward-model PATH)")
    model = load_regressor(str(reward_model))
    targets = model.config["targets"]
    check_target(argument, targets)
    k = targets.index(argument)
    mean, std = model.config["mean"][k], model.config["std"][k]

    def predict(x):  # dense (B, N_max, 4) → (B,) in the target's units, differentiable
        out = model(x)
        return (out if out.dim() == 1 else out[:, k]) * std + mean

    def score(designs):
        values = np.full(len(designs), NAN)
        keep = [i for i, d in enumerate(designs) if len(d) > 0]
        if keep:
            with torch.no_grad():
                values[keep] = predict(to_dense([designs[i] for i in keep])).numpy()
        return values

    info = PROPERTY.for_argument(
        argument,
        units=PROPERTY_UNITS.get(argument, ""),
        description=f"{argument} from {reward_model}",
    )
    return FunctionOracle(info, score, predict)
