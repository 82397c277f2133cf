"""``python -m shapes metrics``: PointFlow-protocol metrics of generated point sets as JSON.

python -m shapes metrics --generated G.npz --reference R.npz [--emd exact|sinkhorn]
    [--emd-points 512] [--seed 0] [--device cpu]

Both files hold their point sets: an ``.npz`` with (n, N, 3) under the key ``points`` (as
``shapes.io`` writes), or one ``.ply``. Bad input exits with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rewarddiff import UserError
from rewarddiff.cli import OneLineParser


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m shapes")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("metrics", help="MMD, COV and 1-NNA with Chamfer distance and EMD")
    p.add_argument("--generated", required=True, help=".npz (or .ply) of generated point sets")
    p.add_argument("--reference", required=True, help=".npz (or .ply) of reference point sets")
    p.add_argument(
        "--emd",
        choices=["exact", "sinkhorn"],
        default="exact",
        help="exact assignment (CPU) or batched Sinkhorn (an upper bound; for GPUs)",
    )
    p.add_argument("--emd-points", type=int, default=512, help="random points per set for EMD")
    p.add_argument("--seed", type=int, default=0, help="seed of the EMD point subsets")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device of Chamfer (k-d trees on cpu) and the Sinkhorn EMD",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from shapes.io import read_point_sets
    from shapes.metrics import compute_all_metrics

    try:
        t0 = time.time()
        result = compute_all_metrics(
            read_point_sets(args.generated),
            read_point_sets(args.reference),
            emd_method=args.emd,
            emd_points=args.emd_points,
            seed=args.seed,
            device=args.device,
        )
        result["wall_s"] = round(time.time() - t0, 1)
    except (UserError, OSError) as err:  # OSError: an unreadable input
        if isinstance(err, OSError) and err.filename:
            err = f"{err.filename}: {err.strerror}"
        print(f"python -m shapes {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
