"""Throughput of the DNA masked-diffusion denoiser: training steps and ancestral sampling.

    python benchmarks/masked_diffusion.py [--threads 2] [--device cpu]

Prints one row per network size (demo and full-scale configs): training sequences/s, sampled
sequences/s (per reverse step and per full chain), peak resident memory, and the ratio of each
size's throughput to the demo size measured in the same process.
"""

import argparse
import resource
import time

import torch

from rewarddiff.diffusion.masked import MaskedDiffusion
from seqgen.model import CNNConfig, SequenceDenoiser

SIZES = {
    "demo (4×48)": CNNConfig(hidden=48, layers=4),
    "full (20×256)": CNNConfig(hidden=256, layers=20, max_dilation=32),
}


def measure(cfg: CNNConfig, device: str, batch: int, length: int = 200, repeats: int = 3):
    net = SequenceDenoiser(cfg).to(device)
    diffusion = MaskedDiffusion(4)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randint(4, (batch, length), device=device)
    diffusion.loss(net, x).backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        loss = diffusion.loss(net, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_rate = batch * repeats / (time.perf_counter() - t0)
    steps = 10
    t0 = time.perf_counter()
    diffusion.sample(net, batch, length, steps, device=device)
    step_rate = batch * steps / (time.perf_counter() - t0)
    return train_rate, step_rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"device={args.device} threads={args.threads} batch={args.batch} length=200")
    print(
        f"{'network':15s} {'params':>9s} {'train seq/s':>12s} {'sample seq·step/s':>18s} "
        f"{'128-step chains/s':>18s} {'peak RSS MiB':>13s} {'× demo train':>13s}"
    )
    base = None
    for name, cfg in SIZES.items():
        params = sum(p.numel() for p in SequenceDenoiser(cfg).parameters())
        train_rate, step_rate = measure(cfg, args.device, args.batch)
        base = base or train_rate
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name:15s} {params:9d} {train_rate:12.1f} {step_rate:18.1f} "
            f"{step_rate / 128:18.2f} {rss:13.0f} {train_rate / base:13.3f}"
        )


if __name__ == "__main__":
    main()
