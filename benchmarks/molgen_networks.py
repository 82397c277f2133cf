"""Quality per CPU-hour of the two molecule networks: EDM's own EGNN against the lighter block.

    python benchmarks/molgen_networks.py [--minutes 2 4 8] [--samples 256] [--threads 2]

Both networks pretrain at the demo's settings (``config/demo/config.yaml``'s molecule
``pretrain``, EMA included) on the same prepared QM9 subset, for the same wall-clock budgets
(each budget continues the previous run: raising ``train.steps`` resumes, and the result equals
one longer run); after each budget the EMA model samples ``--samples`` molecules at the demo's
sampling steps, scored by the EDM protocol. Prints one row per (network, budget) and, per
budget, the light block's atom stability minus EDM's (the reference run of the same process).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from molgen import metrics
from rewarddiff import campaign
from rewarddiff.domain import get_domain

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("edm", "egnn")


def demo_pretrain() -> dict:
    config = yaml.safe_load((ROOT / "config/demo/config.yaml").read_text())
    return config["domains"]["molecule"]["pretrain"] | {"device": "cpu"}


def steps_in(minutes: float, seconds_per_step: float) -> int:
    return max(1, int(minutes * 60 / seconds_per_step))


def run(kind: str, data: Path, out: Path, budgets: list[float], samples: int) -> list[dict]:
    """Train ``kind`` for the cumulative wall budgets; the EDM metrics after each."""
    params = demo_pretrain() | {"network_kind": kind}
    dom, rows, steps, trained_s = get_domain("molecule"), [], 0, 0.0
    params["train"] = params["train"] | {"steps": 20, "checkpoint_every": 10**9}
    t0 = time.perf_counter()
    campaign.pretrain("molecule", params, data, out)  # 20 steps: the time per step
    per_step = (time.perf_counter() - t0) / 20
    steps, trained_s = 20, time.perf_counter() - t0
    for minutes in budgets:
        steps = max(steps, steps_in(minutes, per_step))
        params["train"] = params["train"] | {"steps": steps}
        t0 = time.perf_counter()
        campaign.pretrain("molecule", params, data, out)
        trained_s += time.perf_counter() - t0
        gen = dom.load_generator(out / "model.safetensors")
        t0 = time.perf_counter()
        x, _ = gen.sample(samples, torch.Generator().manual_seed(0))
        sample_s = time.perf_counter() - t0
        m = metrics.molecule_metrics(dom.to_designs(x))
        rows.append({"network": kind, "budget min": minutes, "steps": steps,
                     "train min": trained_s / 60, "atom stable": m["atom_stability"],
                     "mol stable": m["molecule_stability"], "valid": m["validity"],
                     "sample s": sample_s})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 4, 8])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--molecules", type=int, default=5000, help="QM9 molecules per split")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        campaign.prepare("molecule", {"source": "qm9", "max_per_split": args.molecules}, data)
        rows = [r for kind in KINDS for r in run(kind, data, Path(tmp) / kind, args.minutes,
                                                  args.samples)]  # fmt: skip
    keys = list(rows[0])
    print(f"\n{torch.get_num_threads()} threads, demo settings, {args.samples} samples per row")
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v)
                                for v in r.values()) + " |")  # fmt: skip
    for minutes in args.minutes:
        edm, light = (next(r for r in rows if r["network"] == k and r["budget min"] == minutes)
                      for k in KINDS)  # fmt: skip
        print(f"{minutes:g} min: atom stability light − EDM = "
              f"{light['atom stable'] - edm['atom stable']:+.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
