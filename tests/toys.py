"""Toy models shared by the fine-tuning tests: a masked-diffusion model pretrained on uniform
sequences of length L over V tokens, with a known reward."""

import math

import torch
from torch import nn

from rewarddiff.conditioning import ConditionEmbedding
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.diffusion.masked import MaskedDiffusion
from rewarddiff.finetune import CountingReward, FinetuneTask
from rewarddiff.gaussian_generator import GaussianGenerator, VectorLayout
from rewarddiff.generator import MaskedSequenceGenerator

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


class ConditionalToyNet(ToyNet):
    """ToyNet plus a zero-initialised condition embedding: ``num_labels`` classes, or a scalar
    value when 0."""

    def __init__(self, num_labels=0):
        super().__init__()
        self.condition = ConditionEmbedding(L * V, num_labels)

    def forward(self, x, t, label=None):
        out = super().forward(x, t)
        return out + self.condition(label, len(out), out.device).view(-1, L, V)


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


# ----- Gaussian toys: designs in R^D --------------------------------------------------------
T = 100


class MLP(nn.Module):
    """ε̂ for designs of any shape with ``dims`` entries: an MLP on [x, t, cos(πt/2)] and the
    label's features (one-hot class, or value and a NaN flag); records the labels it gets."""

    def __init__(self, dims: int, label_dim: int = 0, hidden: int = 64):
        super().__init__()
        self.label_dim = label_dim
        self.body = nn.Sequential(
            nn.Linear(dims + 2 + label_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dims),
        )
        self.seen = []

    def forward(self, x, t, label=None):
        feats = [x.flatten(1), t[:, None], torch.cos(math.pi / 2 * t)[:, None]]
        if label is not None:
            self.seen.append(label)
            if self.label_dim:
                if label.dtype.is_floating_point:
                    feats += [label.nan_to_num()[:, None], label.isnan().float()[:, None]]
                else:
                    feats.append(nn.functional.one_hot(label, self.label_dim).float())
        h = self.body[0](torch.cat(feats, -1))
        if hasattr(self, "condition"):  # a zero-initialised condition on the first layer
            h = h + self.condition(label, len(x), x.device)
        return self.body[1:](h).view(x.shape)


def conditional_mlp(pretrained: MLP, num_labels: int) -> MLP:
    """A copy of ``pretrained`` with a zero-initialised condition embedding on its first layer."""
    net = MLP(pretrained.body[-1].out_features, hidden=pretrained.body[0].out_features)
    net.load_state_dict(pretrained.state_dict())
    net.condition = ConditionEmbedding(pretrained.body[0].out_features, num_labels)
    return net


def make(shape, net, sampling_steps=20, s=1e-5, **kw) -> GaussianGenerator:
    diffusion = GaussianDiffusion(polynomial_schedule(T, s=s))
    return GaussianGenerator(
        diffusion, net, VectorLayout(shape), sampling_steps=sampling_steps, **kw
    )


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fit_normal_1d():
    """A tiny MLP fitted to N(0, 1) in one dimension. Precision s = 1e-2 (σ_0 = 0.1): with
    s = 1e-5 and T = 100 the first reverse step jumps 21× in SNR and the ELBO is ~9 nats loose."""
    torch.manual_seed(0)
    gen = make((1,), MLP(1), sampling_steps=T, s=1e-2, sample_batch=4096)
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)
    g = seeded(0)
    for _ in range(1500):
        loss = gen.loss(torch.randn(256, 1, generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return gen
