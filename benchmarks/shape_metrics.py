"""Cost of the PointFlow-protocol shape metrics (``shapes.metrics``) on procedural shapes.

    python benchmarks/shape_metrics.py [--family chair] [--sizes 10 30 100] [--points 2048]
        [--naive-pairs 1000] [--sinkhorn-pairs 4] [--sinkhorn-points 128 512 2048]

Generated and reference sets are two independent procedural samples of one family (seeds 0
and 1), as PointFlow evaluates per category. Protocol rows time what ``compute_all_metrics``
does over the union G ∪ R, whose T(T−1)/2 pairs 1-NNA needs (pairs/s counts all of them): CD
by k-d tree, EMD by pruned exact assignment on 512 random points. Each is compared with a naive
reference run in the same process: every pair, one after another (torch.cdist + min for CD,
linear_sum_assignment for EMD), timed on at most ``--naive-pairs`` random pairs and scaled to
all of them. Sinkhorn rows time one batch of pairs against exact assignment on the same pairs,
with the mean relative excess over exact.

Every measurement runs in a forked child process; peak MB is that child's max RSS (interpreter,
libraries and data included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np

from shapes import data, metrics


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn, args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0, peak_mb()


def measure(fn, *args):
    """(result, seconds, peak MB) of ``fn(*args)`` in a forked child process."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_timed, (fn, args))


# ----- what is timed (the protocol functions return the number of pairs they solved) ---------
def protocol_cd(union, n):
    metrics._directed_nn(union, union, 2, None)
    return len(union) * (len(union) - 1) // 2


def protocol_emd(union, n):
    sets = metrics._subsampled_union(union[:n], union[n:], 512, 0)
    return metrics._nearest_neighbour_emd(sets, n, "exact", None, "cpu")[1]


def naive_cd(union, i, j):
    import torch

    out = []
    for x, y in zip(torch.as_tensor(union[i]), torch.as_tensor(union[j])):
        squared = torch.cdist(x, y) ** 2
        out.append(float(squared.min(1).values.mean() + squared.min(0).values.mean()))
    return out


def naive_emd(union, n, i, j):
    sets = metrics._subsampled_union(union[:n], union[n:], 512, 0).astype(np.float64)
    return [metrics._exact_emd(x, y) for x, y in zip(sets[i], sets[j])]


def sinkhorn_pairs(x, y):
    import torch

    return metrics.sinkhorn_emd(torch.as_tensor(x), torch.as_tensor(y)).numpy()


def exact_pairs(x, y):
    return metrics._emd_of_pairs(x, y, "exact", None, "cpu")


# ----- tables -------------------------------------------------------------------------------
def protocol_rows(family: str, size: int, points: int, naive_pairs: int, rng) -> list[str]:
    generated = data.generate({family: size}, seed=0, points=points).points
    reference = data.generate({family: size}, seed=1, points=points).points
    n, union = len(generated), np.concatenate([generated, reference])
    total = len(union) * (len(union) - 1) // 2
    i, j = np.triu_indices(len(union), 1)
    sample = rng.choice(total, min(total, naive_pairs), replace=False)
    scale = total / len(sample)
    rows = []
    for name, fast, fast_args, naive, naive_args, pts in [
        ("CD, k-d tree", protocol_cd, (union, n), naive_cd, (union,), points),
        ("EMD exact, pruned", protocol_emd, (union, n), naive_emd, (union, n), 512),
    ]:
        solved, seconds, peak = measure(fast, *fast_args)
        _, naive_s, _ = measure(naive, *naive_args, i[sample], j[sample])
        naive_s *= scale
        rows.append(
            f"| {n}×{len(reference)} | {total} | {solved} | {pts} | {name} | {seconds:.1f} | "
            f"{total / seconds:.0f} | {peak:.0f} | {naive_s:.1f}{'*' if scale > 1 else ''} | "
            f"{naive_s / seconds:.1f}× |"
        )
    return rows


def sinkhorn_rows(family: str, points_list, pairs: int) -> list[str]:
    rows = []
    shapes = data.generate({family: 2 * pairs}, seed=2, points=max(points_list)).points
    for points in points_list:
        sets = data.subsample(shapes, points, seed=0)
        x, y = sets[:pairs], sets[pairs:]
        approx, seconds, peak = measure(sinkhorn_pairs, x, y)
        exact, exact_s, _ = measure(exact_pairs, x, y)
        excess = float(np.mean(approx / exact - 1))
        rows.append(
            f"| {pairs} | {points} | {seconds:.2f} | {pairs / seconds:.2f} | {peak:.0f} | "
            f"{exact_s:.2f} | {pairs / exact_s:.2f} | {100 * excess:.2f} % |"
        )
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=data.FAMILIES, default="chair")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--naive-pairs", type=int, default=1000)
    parser.add_argument("--sinkhorn-pairs", type=int, default=4)
    parser.add_argument("--sinkhorn-points", type=int, nargs="+", default=[128, 512, 2048])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{multiprocessing.cpu_count()} CPU cores\n")
    print("| sets | union pairs | solved | points | method | s | pairs/s | peak MB | naive s "
          "| speed-up |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rows = protocol_rows(args.family, size, args.points, args.naive_pairs, rng)
        print("\n".join(rows), flush=True)
    print(f"\n* naive timed on {args.naive_pairs} random pairs and scaled to all pairs\n")
    print("| pairs | points | Sinkhorn s | Sinkhorn pairs/s | peak MB | exact s | exact pairs/s "
          "| Sinkhorn excess over exact |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(sinkhorn_rows(args.family, args.sinkhorn_points, args.sinkhorn_pairs)))


if __name__ == "__main__":
    main()
