"""Toy models shared by the fine-tuning tests: a masked-diffusion model pretrained on uniform
sequences of length L over V tokens, with a known reward."""

import torch
from torch import nn

from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune import CountingReward, FinetuneTask
from rewarddiff.generator import MaskedSequenceGenerator
from seqgen.model import ValueEmbedding

V, L = 4, 8


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(L * (V + 1) + 1, 64), nn.Tanh(), nn.Linear(64, L * V))

    def forward(self, x, t, label=None):
        if not x.dtype.is_floating_point:
            x = nn.functional.one_hot(x, V + 1).float()
        return self.net(torch.cat([x.flatten(1), t[:, None]], -1)).view(-1, L, V)


def toy_task(seed=0, log_path=None):
    torch.manual_seed(seed)
    gen = MaskedSequenceGenerator(
        MaskedDiffusion(V), ToyNet(), L, sampling_steps=8, sample_batch=128
    )
    data = torch.randint(V, (4096, L))  # uniform "pretraining" data
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = gen.loss(data[torch.randint(len(data), (128,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    reward = CountingReward(lambda x: (x == 0).float().mean(-1).numpy())  # fraction of token 0
    return FinetuneTask(
        gen,
        gen.frozen_copy(),
        reward,
        lambda x: float((x[:, None] != x[None]).float().mean()),
        seed,
        log_path,
    )


class ValueToyNet(ToyNet):
    """ToyNet plus the sequence denoiser's zero-initialised scalar-condition embedding."""

    def __init__(self):
        super().__init__()
        self.value = ValueEmbedding(L * V)

    def forward(self, x, t, label=None):
        out = super().forward(x, t)
        return out + self.value(label, len(out), out.device).view(-1, L, V)


class ToyRegressor(nn.Module):
    """Tokens (B, L) or relaxed one-hot (B, L, V) → (B,), with penultimate ``features``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(L * V, 32), nn.Tanh())
        self.out = nn.Linear(32, 1)

    def features(self, x):
        if not x.dtype.is_floating_point:
            x = nn.functional.one_hot(x, V).float()
        return self.body(x[..., :V].flatten(1))

    def forward(self, x):
        return self.out(self.features(x))[:, 0]
