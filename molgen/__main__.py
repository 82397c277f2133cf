"""``python -m molgen metrics``: EDM-protocol metrics of a molecule set as JSON;
``python -m molgen likelihood``: a model's NLL of molecules by EDM's estimator, as JSON.

python -m molgen metrics --dataset qm9 --split train --n 10000
python -m molgen metrics --input designs.sdf --train-smiles results/molecule/data/train_smiles.txt
python -m molgen likelihood --model results/molecule/pretrained/model.safetensors \
    --dataset qm9 --split test --repeats 4

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
    p = sub.add_parser("likelihood", help="NLL (nats per molecule) by EDM's estimator")
    p.add_argument("--model", required=True, help="a pretrained or fine-tuned molecule model")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="SDF or XYZ file of molecules")
    source.add_argument("--dataset", choices=["qm9"], help="molecules of the dataset")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test")
    p.add_argument("--n", type=_whole(1), default=None, help="seeded random subset of this size")
    p.add_argument("--repeats", type=_whole(1), default=1, help="draws averaged per molecule")
    p.add_argument("--seed", type=_whole(0), default=0)
    p.set_defaults(train_smiles=None)
    return parser


def likelihood(args) -> dict:
    """EDM's NLL estimator (prior KL + T·L_t at one t ~ U{1..T} + L_0 + constants − log p(N))
    per molecule, averaged over ``--repeats`` draws, under the model at ``--model``."""
    import dataclasses

    import torch

    from molgen.graph import to_dense
    from rewarddiff.domain import get_domain

    molecules, _ = _molecules(args)
    dom = get_domain("molecule")
    gen = dataclasses.replace(dom.load_generator(args.model, "auto"), elbo="edm")
    types = set(gen.layout.atom_types)
    for m in molecules:
        if not dom._fits(m, gen):
            raise UserError(
                f"{m.name}: {len(m)} atoms of elements {sorted(set(m.numbers.tolist()))};"
                f" the model takes ≤ {gen.layout.max_atoms} atoms of {sorted(types)}"
            )
    x = to_dense(molecules, gen.layout.max_atoms)
    rng = torch.Generator().manual_seed(args.seed)
    ll = torch.stack([gen.log_likelihood(x, num_t=1, generator=rng) for _ in range(args.repeats)])
    nll = -ll.double().mean(0)
    return {"nll_mean": nll.mean().item(), "n": len(molecules), "repeats": args.repeats,
            "estimator": "EDM (t0_always, bins on z0, -log p(N))", "model": args.model,
            "per_molecule": [[m.name, v] for m, v in zip(molecules, nll.tolist())]}  # fmt: skip


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
        if args.command == "likelihood":
            result = likelihood(args)
        else:
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
