"""Peptide oracles for the ``protein`` domain, registered in the core registry: Biopython
``ProteinAnalysis`` properties, the Eisenberg hydrophobic moment, and ``amp_windows``, a soft
score for lying inside property windows (charge, length, instability, ...).

Every oracle takes a list of peptide strings and returns one float per peptide, NaN for an empty
peptide or one with letters outside the 20 standard amino acids (uppercase).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from Bio.SeqUtils import IsoelectricPoint as isoelectric
from Bio.SeqUtils.ProtParam import ProteinAnalysis
from Bio.SeqUtils.ProtParamData import DIWV, gravy_scales

from rewarddiff import UserError
from rewarddiff.oracles.base import FunctionOracle, OracleInfo
from rewarddiff.oracles.registry import check_label, register_function_oracle, register_oracle
from rewarddiff.oracles.transforms import target_window
from seqgen.oracles import register_classifier
from seqgen.peptides import AMINO_ACIDS, encode

DOMAIN = "protein"
EISENBERG = gravy_scales["Eisenberg"]  # normalised consensus hydrophobicity (Eisenberg 1984)
HELIX_ANGLE = 100.0  # degrees between successive residues on an alpha-helical wheel


def hydrophobic_moment(
    seq: str, window: int | None = None, scale: dict = EISENBERG, angle: float = HELIX_ANGLE
) -> float:
    """Mean hydrophobic moment μH = |Σ_k h_k e^{i·k·angle}| / n over the whole peptide, or (with
    ``window``) the largest μH of any ``window``-residue stretch (the whole peptide if shorter)."""
    h = np.array([scale[a] for a in seq], dtype=np.float64)
    n = min(window or len(h), len(h))
    rotation = np.exp(1j * np.deg2rad(angle) * np.arange(n))
    stretches = np.lib.stride_tricks.sliding_window_view(h, n)
    return float(np.abs(stretches @ rotation).max() / n)


PROPERTIES: dict[str, Callable[[str], float]] = {
    "length": len,
    "charge": lambda s: ProteinAnalysis(s).charge_at_pH(7.0),
    "gravy": lambda s: ProteinAnalysis(s).gravy(),
    "instability": lambda s: ProteinAnalysis(s).instability_index(),
    "pi": lambda s: ProteinAnalysis(s).isoelectric_point(),
    "aromaticity": lambda s: ProteinAnalysis(s).aromaticity(),
    "helix_fraction": lambda s: ProteinAnalysis(s).secondary_structure_fraction()[0],
    "hydrophobic_moment": hydrophobic_moment,
}

# name -> (direction, units, description)
PROPERTY_INFO = {
    "length": ("target", "aa", "number of residues"),
    "charge": ("target", "e", "net charge at pH 7 (Biopython pKa set, free termini)"),
    "gravy": ("target", "hydropathy", "GRAVY: mean Kyte-Doolittle hydropathy per residue"),
    "instability": ("minimize", "index", "Guruprasad instability index (< 40: stable)"),
    "pi": ("target", "pH", "isoelectric point"),
    "aromaticity": ("target", "fraction", "fraction of F, W, Y"),
    "helix_fraction": ("maximize", "fraction", "fraction of helix formers E, M, A, L, K"),
}


def score_peptides(seqs: list[str], fn: Callable[[str], float]) -> np.ndarray:
    """(n,) float64 ``fn(peptide)``; NaN for empty peptides or letters outside ``AMINO_ACIDS``."""
    valid = set(AMINO_ACIDS)
    return np.array([fn(s) if s and set(s) <= valid else np.nan for s in seqs], dtype=np.float64)


def property_values(seqs: list[str], name: str) -> np.ndarray:
    """(n,) float64 values of property ``name`` (a key of ``PROPERTIES``), NaN if unscorable."""
    return score_peptides(seqs, PROPERTIES[name])


# ----- differentiable forms over relaxed one-hot peptides (B, L, ≥ 21): 20 amino acids, PAD ---
# exact on one-hot peptides without letters after the first PAD (what the generator decodes)
_PAD = len(AMINO_ACIDS)
_INDEX = {a: i for i, a in enumerate(AMINO_ACIDS)}


def _residues(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amino-acid probabilities (B, L, 20) and P(position is a residue) (B, L)."""
    return x[..., :_PAD], 1.0 - x[..., _PAD]


def torch_length(x: torch.Tensor) -> torch.Tensor:
    """Expected number of residues (B,)."""
    return _residues(x)[1].sum(-1)


def _partial_charges(pks: dict, sign: float) -> torch.Tensor:
    """(20,) Henderson–Hasselbalch charge at pH 7 of each amino acid's side chain."""
    charges = torch.zeros(len(AMINO_ACIDS), dtype=torch.float64)
    for aa, pk in pks.items():
        if aa in _INDEX:
            charges[_INDEX[aa]] = sign / (10 ** (sign * (7.0 - pk)) + 1.0)
    return charges


def _terminal_charges(default: float, pks: dict, sign: float) -> torch.Tensor:
    """(20,) charge at pH 7 of a free terminus, by the terminal residue (Biopython's pKs)."""
    pk = torch.tensor([pks.get(a, default) for a in AMINO_ACIDS], dtype=torch.float64)
    return sign / (10 ** (sign * (7.0 - pk)) + 1.0)


_SIDE_CHAIN = _partial_charges(isoelectric.positive_pKs, 1.0) + _partial_charges(
    isoelectric.negative_pKs, -1.0
)
_N_TERMINUS = _terminal_charges(isoelectric.positive_pKs["Nterm"], isoelectric.pKnterminal, 1.0)
_C_TERMINUS = _terminal_charges(isoelectric.negative_pKs["Cterm"], isoelectric.pKcterminal, -1.0)


def torch_charge(x: torch.Tensor) -> torch.Tensor:
    """Net charge at pH 7 (B,) as Biopython computes it: side chains plus both termini, the
    C-terminal residue being the last one before PAD."""
    aa, present = _residues(x)
    table = _SIDE_CHAIN.to(x)
    side = (aa @ table).sum(-1)
    n_term = aa[:, 0] @ _N_TERMINUS.to(x)
    # P(position i is the last residue) = P(i is a residue) · P(i + 1 is PAD or past the end)
    after = torch.cat([1.0 - present[:, 1:], torch.ones_like(present[:, :1])], -1)
    c_term = ((present * after)[..., None] * aa).sum(1) @ _C_TERMINUS.to(x)
    return side + n_term + c_term


_DIPEPTIDE_WEIGHTS = torch.tensor(
    [[DIWV[a][b] for b in AMINO_ACIDS] for a in AMINO_ACIDS], dtype=torch.float64
)


def torch_instability(x: torch.Tensor) -> torch.Tensor:
    """Guruprasad instability index (B,): 10 / length · Σ DIWV(a_i, a_{i+1}) over neighbours."""
    aa, _ = _residues(x)
    pairs = torch.einsum("bia,ac,bic->b", aa[:, :-1], _DIPEPTIDE_WEIGHTS.to(x), aa[:, 1:])
    return 10.0 * pairs / torch_length(x).clamp_min(1.0)


TORCH_PROPERTIES = {
    "length": torch_length,
    "charge": torch_charge,
    "instability": torch_instability,
}


for _name, (_direction, _units, _description) in PROPERTY_INFO.items():
    _info = OracleInfo(_name, DOMAIN, _direction, _units, differentiable=_name in TORCH_PROPERTIES,
                       description=_description)  # fmt: skip
    register_function_oracle(
        _info, partial(score_peptides, fn=PROPERTIES[_name]), TORCH_PROPERTIES.get(_name)
    )


HYDROPHOBIC_MOMENT = OracleInfo(
    "hydrophobic_moment[:<window>]",
    DOMAIN,
    "maximize",
    "Eisenberg units per residue",
    description="helical (100°) hydrophobic moment, whole peptide or best window",
)


def moment_window(argument: str | None, config: dict | None = None) -> int | None:
    """The window of ``hydrophobic_moment[:<window>]`` (None: the whole peptide)."""
    if argument is not None and not (argument.isdigit() and int(argument) > 0):
        raise UserError(f"oracle hydrophobic_moment: window {argument!r} is not a positive integer")
    return int(argument) if argument else None


@register_oracle(DOMAIN, "hydrophobic_moment", HYDROPHOBIC_MOMENT, check=moment_window)
def hydrophobic_moment_oracle(argument=None, **context):
    window = moment_window(argument)
    description = f"max over {window}-residue windows" if window else "whole peptide"
    return FunctionOracle(
        HYDROPHOBIC_MOMENT.for_argument(argument, description=description),
        lambda seqs: score_peptides(list(seqs), lambda s: hydrophobic_moment(s, window)),
    )


@dataclass(frozen=True)
class Window:
    """Property ``name`` (a key of ``PROPERTIES``) should lie in [low, high]."""

    name: str
    low: float = -math.inf
    high: float = math.inf


# Gaussian fall-off scale of the soft window score outside a window, in the property's units
SOFTNESS = {
    "length": 2.0,
    "charge": 1.0,
    "gravy": 0.2,
    "instability": 5.0,
    "pi": 0.5,
    "aromaticity": 0.05,
    "helix_fraction": 0.05,
    "hydrophobic_moment": 0.05,
}
DEFAULT_WINDOWS = (Window("charge", 2, 9), Window("length", 10, 40), Window("instability", high=40))


def parse_windows(text: str) -> tuple[Window, ...]:
    """``"charge=2..9,length=10..40,instability=..40"`` → windows (an empty bound is open; at
    most one window per property, low ≤ high)."""
    windows = {}
    for item in text.split(","):
        window = _parse_window(item)
        if window.name in windows:
            raise UserError(f"property window {item!r}: a second window for {window.name}")
        windows[window.name] = window
    return tuple(windows.values())


def _parse_window(item: str) -> Window:
    """One ``NAME=LOW..HIGH`` item."""
    name, _, bounds = item.strip().partition("=")
    low, dots, high = bounds.partition("..")
    if name not in PROPERTIES or not dots:
        raise UserError(
            f"property window {item!r}: expected NAME=LOW..HIGH with NAME one of "
            f"{', '.join(PROPERTIES)}"
        )
    try:
        bound = (float(low) if low else -math.inf, float(high) if high else math.inf)
    except ValueError:
        raise UserError(f"property window {item!r}: bounds must be numbers") from None
    if not low and not high:
        raise UserError(f"property window {item!r}: give a low bound, a high bound or both")
    if math.isnan(bound[0]) or math.isnan(bound[1]) or bound[0] > bound[1]:
        raise UserError(f"property window {item!r}: need LOW <= HIGH, got {low}..{high}")
    return Window(name, *bound)


def amp_window_argument(argument: str | None, config: dict | None = None) -> tuple[Window, ...]:
    """The windows of ``amp_windows[:<windows>]`` (the default windows without an argument)."""
    try:
        return parse_windows(argument) if argument else DEFAULT_WINDOWS
    except UserError as err:
        raise UserError(f"oracle amp_windows: {err}") from None


def window_scores(seqs: list[str], windows: tuple[Window, ...] = DEFAULT_WINDOWS) -> np.ndarray:
    """(n, k) soft scores in [0, 1]: 1 inside window k, Gaussian decay outside, NaN if unscorable
    (the decay scale per property is ``SOFTNESS``)."""
    values = np.stack([property_values(seqs, w.name) for w in windows], axis=1)
    scores = np.stack(
        [
            target_window(values[:, k], w.low, w.high, SOFTNESS[w.name])
            for k, w in enumerate(windows)
        ],
        axis=1,
    )
    return np.where(np.isnan(values), np.nan, scores)


def windows_satisfied(seqs: list[str], windows: tuple[Window, ...] = DEFAULT_WINDOWS) -> np.ndarray:
    """(n, k) bool: peptide inside window k (False where unscorable)."""
    satisfied = []
    for w in windows:
        values = property_values(seqs, w.name)
        satisfied.append((values >= w.low) & (values <= w.high))
    return np.stack(satisfied, axis=1)


AMP_WINDOWS = OracleInfo(
    "amp_windows[:charge=2..9,length=10..40,instability=..40]",
    DOMAIN,
    "maximize",
    "score in [0, 1]",
    description="mean soft satisfaction of property windows (1 = all satisfied)",
)


@register_oracle(DOMAIN, "amp_windows", AMP_WINDOWS, check=amp_window_argument)
def amp_windows(argument=None, **context):
    windows = amp_window_argument(argument)
    torch_score = None
    if all(w.name in TORCH_PROPERTIES for w in windows):

        def torch_score(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([torch_window(TORCH_PROPERTIES[w.name](x), w) for w in windows],
                               -1).mean(-1)  # fmt: skip

    info = AMP_WINDOWS.for_argument(
        argument,
        description="; ".join(f"{w.name} in [{w.low:g}, {w.high:g}]" for w in windows),
        differentiable=torch_score is not None,
    )
    return FunctionOracle(
        info, lambda seqs: window_scores(list(seqs), windows).mean(axis=1), torch_score
    )


def torch_window(values: torch.Tensor, window: Window) -> torch.Tensor:
    """The soft window score of :func:`window_scores` on a tensor (differentiable)."""
    gap = (window.low - values).clamp_min(0) + (values - window.high).clamp_min(0)
    return torch.exp(-0.5 * (gap / SOFTNESS[window.name]) ** 2)


def _tokens(seqs: list[str], config: dict) -> torch.Tensor:
    return encode(seqs, config["length"])


def check_amp_class(kind: str):
    """The check of an AMP-classifier oracle (``kind[:amp|non_amp]``): every protein data
    source labels peptides with the same two classes."""

    def check(argument: str | None, config: dict) -> None:
        from seqgen.protein import CLASSES

        check_label(kind, argument or "amp", CLASSES)

    return check


for _kind, _description in (
    ("amp_prob", "P(antimicrobial | peptide) from the AMP classifier ensemble"),
    ("amp_logodds", "log P(AMP) − log(1 − P(AMP)) from the AMP classifier ensemble"),
):
    register_classifier(
        DOMAIN, _kind, "[:amp]", _description, check_amp_class(_kind), _tokens, "amp"
    )
