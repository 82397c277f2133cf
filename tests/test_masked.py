"""Masked diffusion: SUBS parameterisation, exact ELBO and sampler on a known distribution."""

import itertools
import math

import torch
from torch import nn

from rewarddiff.diffusion.masked import MaskedDiffusion

V, L = 3, 2
# a known joint distribution over the 9 sequences of length 2 (correlated positions)
JOINT = torch.tensor([[0.30, 0.05, 0.05], [0.02, 0.20, 0.03], [0.05, 0.05, 0.25]])


# p(position 0 | position 1 = b) for b in 0..V-1, and the marginal when position 1 is masked
COND0 = torch.cat([(JOINT / JOINT.sum(0)).T, JOINT.sum(1)[None]])
COND1 = torch.cat([JOINT / JOINT.sum(1, keepdim=True), JOINT.sum(0)[None]])


class ExactDenoiser(nn.Module):
    """p(x_0 | x_t) of JOINT: per masked position, the conditional given the revealed one."""

    def forward(self, x, t, label=None):
        if x.dtype.is_floating_point:
            x = x.argmax(-1)
        return torch.stack([COND0[x[:, 1]], COND1[x[:, 0]]], 1).log()


def test_subs_carries_unmasked_tokens_and_never_predicts_mask():
    diff = MaskedDiffusion(V)
    x = torch.tensor([[0, V], [V, 2]])
    log_p = diff.denoise(ExactDenoiser(), x, torch.full((2,), 0.5))
    assert log_p.shape == (2, L, V)  # no MASK column: the mask is never predicted
    assert torch.allclose(log_p[0, 0].exp(), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(log_p[1, 1].exp(), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(log_p[0, 1].exp(), JOINT[0] / JOINT[0].sum())


def test_schedule_masks_the_right_fraction():
    diff = MaskedDiffusion(4)
    x0 = torch.zeros(2000, 50, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    for t in (0.1, 0.5, 0.9):
        frac = (diff.mask(x0, torch.full((2000,), t), g) == 4).float().mean().item()
        assert abs(frac - (1 - diff.alpha(torch.tensor(t)).item())) < 0.01


def test_elbo_with_exact_denoiser_equals_log_likelihood():
    # with exact conditionals the continuous-time ELBO is tight (any-order chain rule)
    diff = MaskedDiffusion(V, eps=1e-4)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    g = torch.Generator().manual_seed(0)
    estimate = diff.log_likelihood(ExactDenoiser(), seqs.repeat(2000, 1), num_t=64, generator=g)
    estimate = estimate.view(2000, -1).mean(0)
    exact = JOINT[seqs[:, 0], seqs[:, 1]].log()
    assert torch.allclose(estimate, exact, atol=0.06), (estimate, exact)
    # expected ELBO under the data = −entropy
    assert abs((JOINT.flatten() * (estimate - exact)).sum().item()) < 0.01


def test_sampler_reproduces_known_distribution():
    diff = MaskedDiffusion(V)
    g = torch.Generator().manual_seed(0)
    x = diff.sample(ExactDenoiser(), 4000, L, steps=64, generator=g)
    assert (x < V).all()
    counts = torch.zeros(V, V)
    counts.index_put_((x[:, 0], x[:, 1]), torch.ones(len(x)), accumulate=True)
    tv = 0.5 * (counts / len(x) - JOINT).abs().sum().item()
    assert tv < 0.035, tv


def test_path_kl_is_zero_against_itself_and_positive_otherwise():
    diff = MaskedDiffusion(V)

    class Uniform(nn.Module):
        def forward(self, x, t, label=None):
            return torch.zeros(x.shape[0], L, V)

    g = torch.Generator().manual_seed(0)
    _, kl_self = diff.sample(ExactDenoiser(), 64, L, 8, reference=ExactDenoiser(), generator=g)
    _, kl_other = diff.sample(ExactDenoiser(), 64, L, 8, reference=Uniform(), generator=g)
    assert kl_self.abs().max() < 1e-5
    # first step from all-mask: KL(marginal ‖ uniform) summed over positions, scaled by a
    assert (kl_other > 0).all()


class TinyNet(nn.Module):
    def __init__(self, num_labels=0):
        super().__init__()
        self.embed = nn.Linear(V + 1, 16)
        self.out = nn.Linear(16 * L + 1, L * V)
        self.label = nn.Embedding(num_labels + 1, L * V) if num_labels else None

    def forward(self, x, t, label=None):
        if not x.dtype.is_floating_point:
            x = nn.functional.one_hot(x, V + 1).float()
        h = torch.tanh(self.embed(x)).flatten(1)
        out = self.out(torch.cat([h, t[:, None]], -1))
        if self.label is not None and label is not None:
            out = out + self.label(label)
        return out.view(-1, L, V)


def test_training_on_toy_distribution_matches_it():
    torch.manual_seed(0)
    diff, net = MaskedDiffusion(V), TinyNet()
    data = torch.multinomial(JOINT.flatten(), 20000, replacement=True)
    data = torch.stack([data // V, data % V], 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(400):
        batch = data[torch.randint(len(data), (256,), generator=g)]
        loss = diff.loss(net, batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    entropy = -(JOINT * JOINT.log()).sum().item() / L  # nats per token
    assert loss.item() < entropy + 0.15
    x = diff.sample(net, 4000, L, steps=32, generator=g)
    counts = torch.zeros(V, V)
    counts.index_put_((x[:, 0], x[:, 1]), torch.ones(len(x)), accumulate=True)
    assert 0.5 * (counts / len(x) - JOINT).abs().sum().item() < 0.06


def test_label_dropout_uses_null_label():
    diff = MaskedDiffusion(V, num_labels=2, label_dropout=0.5)
    labels = diff.drop_labels(
        torch.zeros(10000, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert abs((labels == 2).float().mean().item() - 0.5) < 0.02
    assert set(labels.unique().tolist()) == {0, 2}


def test_classifier_free_guidance_sharpens_toward_label():
    diff = MaskedDiffusion(V, num_labels=1)
    net = TinyNet(num_labels=1)
    with torch.no_grad():
        net.label.weight[0] = torch.tensor([2.0, 0, 0] * L)  # label 0 favours token 0
        net.label.weight[1] = 0.0
    x = torch.full((1, L), V)
    t, lab = torch.ones(1), torch.zeros(1, dtype=torch.long)
    p0 = diff.denoise(net, x, t, lab).exp()[0, 0, 0]
    p2 = diff.denoise(net, x, t, lab, guidance=2.0).exp()[0, 0, 0]
    assert p2 > p0


def test_differentiable_sampler_gradients_and_kl():
    torch.manual_seed(0)
    diff, net = MaskedDiffusion(V), TinyNet()
    ref = TinyNet()
    ref.load_state_dict(net.state_dict())
    g = torch.Generator().manual_seed(0)
    x, kl = diff.chain(net, 32, L, steps=8, grad_steps=3, reference=ref, generator=g)
    assert x.shape == (32, L, V)
    assert torch.allclose(x.detach().sum(-1), torch.ones(32, L))  # hard one-hot forward
    assert kl.abs().max().item() < 1e-5  # identical reference
    reward = x[..., 0].sum()  # count of token 0
    reward.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and sum(gr.abs().sum() for gr in grads) > 0
    with torch.no_grad():  # a different reference gives a positive KL
        for p in ref.parameters():
            p.add_(0.5 * torch.randn_like(p))
    _, kl = diff.chain(net, 32, L, 8, grad_steps=3, reference=ref, generator=g)
    assert (kl >= 0).all() and kl.mean() > 0


def test_differentiable_sampler_matches_ancestral_distribution():
    diff = MaskedDiffusion(V)
    g = torch.Generator().manual_seed(0)
    x, _ = diff.chain(ExactDenoiser(), 3000, L, steps=32, grad_steps=8, generator=g)
    tokens = x.argmax(-1)
    counts = torch.zeros(V, V)
    counts.index_put_((tokens[:, 0], tokens[:, 1]), torch.ones(len(tokens)), accumulate=True)
    assert 0.5 * (counts / len(tokens) - JOINT).abs().sum().item() < 0.04
    assert math.isfinite(x.sum().item())
