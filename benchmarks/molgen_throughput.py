"""Throughput of the molecule generator and oracles on real QM9 molecules.

    python benchmarks/molgen_throughput.py [--steps 5] [--sampling-steps 20] [--devices cpu cuda]

Prints one row per (network, size, device) — EDM's own EGNN (molgen.edm) and the lighter block
(molgen.model) at 64 × 4 and 256 × 9: training steps/s and molecules/s at batch 64,
sampled molecules/s at the stated number of denoising steps, and peak memory (CUDA: allocator
peak; CPU: process max RSS). Then GFN2-xTB (tblite) and the EDM metrics on QM9 molecules.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from molgen import metrics
from molgen.data import read_qm9
from molgen.domain import NETWORKS
from molgen.graph import to_dense
from molgen.layout import MoleculeLayout
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.domain import get_domain
from rewarddiff.gaussian_generator import GaussianGenerator
from rewarddiff.oracles.registry import make_oracle

SIZES = {"demo (64×4)": (64, 4), "full (256×9, EDM)": (256, 9)}


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_generator(x, probs, kind, hidden, layers, device, steps, sampling_steps, batch=64):
    torch.manual_seed(0)
    config_cls, net_cls = NETWORKS[kind]
    net = net_cls(config_cls(hidden=hidden, layers=layers)).to(device)
    gen = GaussianGenerator(
        GaussianDiffusion(polynomial_schedule(1000)),
        net,
        MoleculeLayout(net.cfg.atom_types, probs),
        sampling_steps=sampling_steps,
        sample_batch=batch,
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step(i):
        loss = gen.loss(x[(i * batch) % len(x) :][:batch])
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_step(0)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        train_step(i)
    _sync(device)
    train_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    gen.sample(batch, torch.Generator().manual_seed(0))
    _sync(device)
    sample_s = time.perf_counter() - t0
    return {
        "train steps/s": 1 / train_s,
        "train mol/s": batch / train_s,
        f"sample mol/s ({sampling_steps} steps)": batch / sample_s,
        "peak MB": peak_memory_mb(device),
        "params M": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--sampling-steps", type=int, default=20)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--xtb-molecules", type=int, default=200)
    args = parser.parse_args()

    qm9 = read_qm9()
    rng = np.random.RandomState(0)
    sample = [qm9[i] for i in rng.choice(len(qm9), 2000, replace=False)]
    x = to_dense(sample, 29)
    sizes = torch.bincount((x[..., 3] > 0).sum(1), minlength=30).double()
    probs = sizes / sizes.sum()
    print(f"QM9 sample: {len(sample)} molecules, mean {np.mean([len(m) for m in sample]):.1f} "
          f"atoms, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")  # fmt: skip

    rows = []
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        for kind in NETWORKS:
            for name, (hidden, layers) in SIZES.items():
                r = bench_generator(x, probs, kind, hidden, layers, device, args.steps,
                                    args.sampling_steps)  # fmt: skip
                rows.append({"network": f"{kind} {name}", "device": device} | r)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print(
            "| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else v for v in r.values()) + " |"
        )
    for device in {r["device"] for r in rows}:
        for name in SIZES:
            edm, light = (
                next(r for r in rows if (r["device"], r["network"]) == (device, f"{kind} {name}"))
                for kind in ("edm", "egnn")
            )
            ratio = light["train steps/s"] / edm["train steps/s"]
            print(f"{device} {name}: EDM's network trains {ratio:.2f}× slower than the light block")

    mols = sample[: args.xtb_molecules]
    get_domain("molecule")  # registers the molecule oracles
    xtb = make_oracle("molecule", "xtb:gap")
    xtb(mols[:4])  # start the workers
    t0 = time.perf_counter()
    gaps = xtb(mols)
    xtb_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = metrics.molecule_metrics(sample)
    metric_s = time.perf_counter() - t0
    print("\n| oracle / metric | molecules | molecules/s | note |\n|---|---|---|---|")
    print(
        f"| GFN2-xTB gap (tblite) | {len(mols)} | {len(mols) / xtb_s:.0f} | "
        f"{np.isfinite(gaps).mean():.0%} converged, mean gap {np.nanmean(gaps):.2f} eV |"
    )
    print(
        f"| EDM metrics + strict + geometry | {len(sample)} | {len(sample) / metric_s:.0f} | "
        f"atom stab {m['atom_stability']:.3f}, mol stab {m['molecule_stability']:.3f} |"
    )


if __name__ == "__main__":
    main()
