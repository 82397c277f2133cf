"""``python -m molgen metrics``: EDM-protocol metrics of a molecule set as JSON.

python -m molgen metrics --dataset qm9 --split train --n 10000
python -m molgen metrics --input designs.sdf --train-smiles results/molecule/data/train_smiles.txt

Bad input exits with status 2 and one line: ``python -m molgen metrics: error: <message>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from rewarddiff import UserError
from rewarddiff.cli import OneLineParser

PROG = "python -m molgen"


def _whole(low: int):
    """argparse type: a whole number ≥ ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {low}, not {text!r}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("metrics", help="stability, validity, uniqueness, novelty, geometry")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="SDF or XYZ file of molecules")
    source.add_argument("--dataset", choices=["qm9"], help="score the dataset itself")
    p.add_argument("--split", choices=["train", "valid", "test"], default="train")
    p.add_argument("--n", type=_whole(1), default=None, help="seeded random subset of this size")
    p.add_argument("--seed", type=_whole(0), default=0)
    p.add_argument(
        "--train-smiles",
        help="file of training SMILES (one per line) for novelty; with --dataset qm9 the "
        "QM9 train split is used",
    )
    return parser


def read_train_smiles(path: str) -> set[str]:
    """The SMILES of a file with one per line (``train_smiles.txt`` of a prepared data set)."""
    from molgen.molecule import read_text

    smiles = set()
    for k, line in enumerate(read_text(path).splitlines(), 1):
        if "," in line or len(line.split()) > 1:
            raise UserError(f"{path}: line {k}: expected one SMILES per line, got {line!r}")
        smiles.update(line.split())
    return smiles


def _molecules(args) -> tuple[list, set[str] | None]:
    """The molecules to score (the ``--n`` subset) and the training SMILES for novelty."""
    from molgen import data, metrics
    from molgen.molecule import read_molecules, require_3d

    train_smiles = None
    if args.dataset:
        everything = data.read_qm9()
        splits = data.edm_split(len(everything))
        molecules = [everything[i] for i in splits[args.split]]
        where = f"qm9 {args.split}"
        if args.split != "train" and not args.train_smiles:
            train_smiles = metrics.smiles_set([everything[i] for i in splits["train"]])
    else:
        molecules, where = read_molecules(args.input), args.input
        require_3d(molecules, "the metrics read 3D geometry")
    if args.n is not None:
        if args.n > len(molecules):
            raise UserError(f"--n {args.n}: {where} has only {len(molecules)} molecules")
        keep = np.random.RandomState(args.seed).choice(len(molecules), args.n, replace=False)
        molecules = [molecules[i] for i in np.sort(keep)]
    if args.train_smiles:
        train_smiles = read_train_smiles(args.train_smiles)
    return molecules, train_smiles


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from molgen import metrics

    try:
        t0 = time.time()
        molecules, train_smiles = _molecules(args)
        result = metrics.molecule_metrics(molecules, train_smiles)
        result["wall_s"] = round(time.time() - t0, 1)
    except UserError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # unreadable input
        where = f"{err.filename}: " if err.filename else ""
        print(f"{PROG} {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    # NaN (e.g. novelty without training SMILES) is not JSON: print null
    clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}
    print(json.dumps(clean, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
