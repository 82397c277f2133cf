"""Shape generator at the full config's model size: training throughput, sampling throughput,
PointFlow-protocol sample quality, Chamfer on the device, and a short reward fine-tuning.

    python benchmarks/shape_training.py --out OUT [--device cuda] [--minutes 5]
        [--per-family 1000] [--stored-points 4096] [--points 2048] [--samples 100]
        [--sampling-steps 100] [--finetune-steps 20]

Procedural chairs, tables, lamps and airplanes are prepared (``--per-family`` train shapes
each, 50 valid and 50 test, ``--stored-points`` stored, ``--points`` seen), then the
denoiser of ``config/config.yaml`` (shape section) is pretrained for as many steps as fit in
``--minutes`` (timed on 10 steps first; the config's batch, lr and EMA, warm-up scaled down),
``--samples`` shapes are drawn (DDPM, ``--sampling-steps`` of the 1,000) and compared with as
many test shapes (MMD/COV/1-NNA, CD on the device, exact EMD on 512 points). Chamfer of the
100 × 100 protocol is timed on the device (batched torch) and with k-d trees on the CPU.
Last, ``draft`` fine-tunes the model toward height for ``--finetune-steps`` steps (the CUDA
path of a reward-gradient method) and reports height and 1-NNA before and after.

Writes ``results.json`` (every figure, the hardware, the settings), the checkpoint and the
training log under ``--out``; prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from rewarddiff import campaign
from rewarddiff.io import read_json
from shapes import data, metrics, oracles
from shapes.domain import SHAPE, random_points
from shapes.io import read_npz

ROOT = Path(__file__).resolve().parents[1]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds_per_step(params: dict, data_dir: Path, device: str, steps: int = 10) -> float:
    """Wall seconds of one training step (forward, backward, Adam) after 3 warm-up steps."""
    x, _ = SHAPE.load_split(data_dir, "train", all_points=True)
    num_points = read_json(data_dir / "dataset.json")["num_points"]
    norm = read_json(data_dir / "normalization.json")
    gen = SHAPE.build_generator(params | {"num_points": num_points, "normalization": norm})
    gen.net.to(device)
    opt = torch.optim.AdamW(gen.net.parameters(), lr=1e-4)
    batch = params["train"]["batch_size"]
    for k in range(3 + steps):
        if k == 3:
            sync(device)
            start = time.perf_counter()
        loss = gen.loss(random_points(x[torch.randint(len(x), (batch,))], num_points))
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / steps


def quality(designs: np.ndarray, data_dir: Path, n: int, device: str, emd: bool) -> dict:
    """MMD/COV/1-NNA of ``n`` designs against ``n`` test shapes (CD; EMD too with ``emd``) and
    the median robust height of designs and test shapes."""
    reference = read_npz(data_dir / "test.npz")[0]  # world units
    picked = np.random.default_rng(0).permutation(len(reference))[:n]
    generated = designs[:n]
    reference = data.subsample(reference[picked], designs.shape[1], seed=1)
    if emd:
        out = metrics.compute_all_metrics(generated, reference, emd_points=512, device=device)
    else:
        cd = metrics.cd_protocol_metrics(generated, reference, device=device)
        out = dict(zip(("mmd_cd", "cov_cd", "nna_cd"), cd))
    out["height_median"] = float(np.nanmedian(oracles.height(designs)))
    out["height_test_median"] = float(np.median(oracles.height(reference)))
    keys = ("mmd_cd", "cov_cd", "nna_cd", "mmd_emd", "cov_emd", "nna_emd", "height_median",
            "height_test_median")  # fmt: skip
    return {k: out[k] for k in keys if k in out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--per-family", type=int, default=1000)
    parser.add_argument("--stored-points", type=int, default=4096)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--sampling-steps", type=int, default=100)
    parser.add_argument("--finetune-steps", type=int, default=20)
    parser.add_argument("--network", type=json.loads, default=None, help="override, JSON")
    parser.add_argument("--pretrained", type=Path, help="a checkpoint: skip pretraining")
    parser.add_argument("--no-emd", action="store_true", help="CD metrics only (EMD: CPU-bound)")
    args = parser.parse_args()
    torch.set_float32_matmul_precision("high")  # TF32 matrix products on Ampere and later
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }

    def save():
        (out / "results.json").write_text(json.dumps(results, indent=2))

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())["domains"]["shape"]
    data_dir = out / "data"
    start = time.perf_counter()
    campaign.prepare(
        "shape",
        config["data"] | {"points": args.points, "stored_points": args.stored_points,
                          "per_family": {"train": args.per_family, "valid": 50, "test": 50}},
        data_dir,
    )  # fmt: skip
    results["prepare_s"] = time.perf_counter() - start

    params = config["pretrain"] | {"device": args.device, "sampling_steps": args.sampling_steps}
    if args.network:
        params["network"] = params["network"] | args.network
    params["eval_samples"] = 0
    checkpoint = args.pretrained or out / "pretrained" / "model.safetensors"
    if args.pretrained is None:
        pretrain(params, data_dir, out, args, results)
        save()
        print(json.dumps(results, indent=2), flush=True)
    sample_and_finetune(checkpoint, data_dir, out, args, results, save)


def pretrain(params: dict, data_dir: Path, out: Path, args, results: dict) -> None:
    """As many steps of the config's training as fit in ``args.minutes`` (timed first)."""
    step_s = seconds_per_step(params, data_dir, args.device)
    steps = max(20, int(args.minutes * 60 / step_s))
    params["train"] = params["train"] | {
        "steps": steps,
        "warmup_steps": min(1000, steps // 10),
        "ema_decay": 0.999,  # the config's 0.9999 averages over more steps than a short run has
        "checkpoint_every": max(1, steps // 4),
        "log_every": max(1, steps // 50),
    }
    results |= {"train_seconds_per_step": step_s, "train_steps": steps}
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results["pretrain"] = campaign.pretrain("shape", params, data_dir, out / "pretrained")
    results["pretrain_s"] = time.perf_counter() - start
    if args.device.startswith("cuda"):
        results["pretrain_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30


def sample_and_finetune(checkpoint: Path, data_dir: Path, out: Path, args, results, save):
    """Sampling throughput and quality, Chamfer timings, then a short draft run."""
    gen = SHAPE.load_generator(checkpoint, args.device)
    sync(args.device)
    start = time.perf_counter()
    x, _ = gen.sample(args.samples, torch.Generator().manual_seed(0))
    sync(args.device)
    results["sample_shapes_per_s"] = args.samples / (time.perf_counter() - start)
    designs = SHAPE.for_generator(gen).to_designs(x)
    np.savez_compressed(out / "pretrained_samples.npz", points=designs)
    save()
    results["pretrained_quality"] = quality(
        designs, data_dir, args.samples, args.device, not args.no_emd
    )
    save()
    print(json.dumps(results["pretrained_quality"], indent=2), flush=True)

    # Chamfer of the 100 × 100 protocol: batched torch on the device vs k-d trees on the CPU
    union = np.concatenate(
        [data.generate({"chair": 100}, seed=s, points=args.points).points for s in (0, 1)]
    )
    matrices = []
    for name, device in (("chamfer_device_s", args.device), ("chamfer_kdtree_s", "cpu")):
        sync(args.device)
        start = time.perf_counter()
        matrices.append(metrics._directed_nn(union, union, 2, None, device))
        sync(args.device)
        results[name] = time.perf_counter() - start
    on_device, kdtree = matrices
    results["chamfer_max_relative_difference"] = float(
        np.max(np.abs(on_device - kdtree) / np.maximum(kdtree, 1e-12))
    )
    save()

    # the CUDA path of a reward-gradient method: draft toward height, then height and 1-NNA
    objective = {"domain": "shape", "reward": [{"oracle": "height", "weight": 1.0}]}
    ft_params = {"batch_size": 16, "grad_steps": 5, "kl_weight": 0.01, "lr": 1e-4,
                 "log_every": 5, "oracle_budget": 16 * args.finetune_steps}  # fmt: skip
    start = time.perf_counter()
    campaign.finetune("shape", "draft", ft_params, objective, checkpoint, None, data_dir, 0,
                      out / "draft")  # fmt: skip
    results["draft_s"] = time.perf_counter() - start
    tuned = SHAPE.load_generator(out / "draft" / "model.safetensors", args.device)
    x, _ = tuned.sample(args.samples, torch.Generator().manual_seed(0))
    results["draft_quality"] = quality(
        SHAPE.for_generator(tuned).to_designs(x),
        data_dir,
        args.samples,
        args.device,
        not args.no_emd,
    )
    save()
    print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
