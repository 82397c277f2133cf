"""``python -m molgen metrics``: EDM-protocol metrics of a molecule set as JSON.

python -m molgen metrics --dataset qm9 --split train --n 10000
python -m molgen metrics --input designs.sdf --train-smiles results/molecule/data/train_smiles.txt
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from rewarddiff import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m molgen")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("metrics", help="stability, validity, uniqueness, novelty, geometry")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="SDF or XYZ file of molecules")
    source.add_argument("--dataset", choices=["qm9"], help="score the dataset itself")
    p.add_argument("--split", choices=["train", "valid", "test"], default="train")
    p.add_argument("--n", type=int, default=None, help="seeded random subset of this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--train-smiles",
        help="file of training SMILES (one per line) for novelty; with --dataset qm9 the "
        "QM9 train split is used",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from molgen import data, metrics
    from molgen.molecule import read_molecules

    try:
        t0 = time.time()
        train_smiles = None
        if args.dataset:
            everything = data.read_qm9()
            splits = data.edm_split(len(everything))
            idx = splits[args.split]
            molecules = [everything[i] for i in idx]
            if args.split != "train" and not args.train_smiles:
                train_smiles = metrics.smiles_set([everything[i] for i in splits["train"]])
        else:
            molecules = read_molecules(args.input)
        if args.n is not None and args.n < len(molecules):
            keep = np.random.RandomState(args.seed).choice(len(molecules), args.n, replace=False)
            molecules = [molecules[i] for i in np.sort(keep)]
        if args.train_smiles:
            with open(args.train_smiles) as f:
                train_smiles = set(f.read().split())
        result = metrics.molecule_metrics(molecules, train_smiles)
        result["wall_s"] = round(time.time() - t0, 1)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # NaN (e.g. novelty without training SMILES) is not JSON: print null
    clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}
    print(json.dumps(clean, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
