"""E(3)-equivariant property regressor: invariances, batch independence, errors, learning."""

from dataclasses import replace

import pytest
import torch

from molgen.regressor import PropertyRegressor, RegressorConfig
from rewarddiff.oracles.learned import FitConfig, fit

SMALL = dict(mul=8, layers=2, radial_neurons=16, num_basis=6)


def random_batch(gen: torch.Generator, sizes: list[int], n_max: int | None = None) -> torch.Tensor:
    """Random molecules (H, C, N, O, F) spread over a few Å, padded to ``n_max``."""
    n_max = n_max or max(sizes)
    x = torch.zeros(len(sizes), n_max, 4, dtype=torch.float64)
    types = torch.tensor([1.0, 6.0, 7.0, 8.0, 9.0], dtype=torch.float64)
    for i, n in enumerate(sizes):
        x[i, :n, :3] = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 1.5
        x[i, :n, 3] = types[torch.randint(5, (n,), generator=gen)]
    return x


def random_orthogonal(gen: torch.Generator, reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q = q * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    return q


@pytest.fixture(scope="module")
def net() -> PropertyRegressor:
    torch.manual_seed(0)
    model = PropertyRegressor(RegressorConfig(lmax=2, layers=3, mul=8)).double().eval()
    # the readout starts at zero; give it random weights so the checks are not trivially true
    torch.nn.init.normal_(model.readout[-1].weight)
    return model


@pytest.fixture()
def batch() -> torch.Tensor:
    return random_batch(torch.Generator().manual_seed(1), [7, 4, 9])


def test_shape_and_config_round_trip(net, batch):
    assert net(batch).shape == (3,)
    cfg = RegressorConfig(num_outputs=3, reduce="mean", **SMALL)
    assert PropertyRegressor(cfg)(batch.float()).shape == (3, 3)
    assert RegressorConfig.from_dict(cfg.to_dict() | {"task": "regression"}) == cfg
    with pytest.raises(ValueError, match="reduce"):
        RegressorConfig(reduce="max")


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_reflection_translation_invariance(net, batch, reflect):
    q = random_orthogonal(torch.Generator().manual_seed(2), reflect)
    moved = batch.clone()
    moved[..., :3] = batch[..., :3] @ q.T + torch.tensor([3.0, -1.0, 2.5], dtype=torch.float64)
    moved[..., :3] *= (batch[..., 3:] > 0).double()  # padding rows stay all-zero
    expected = net(batch)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(net(moved), expected, rtol=1e-9, atol=1e-9)


def test_permutation_and_padding_invariance(net, batch):
    expected = net(batch)
    shuffled = batch.clone()
    for i in range(len(batch)):  # permute all rows, padding included (padding may interleave)
        shuffled[i] = batch[i, torch.randperm(batch.shape[1])]
    torch.testing.assert_close(net(shuffled), expected, rtol=1e-9, atol=1e-9)
    padded = torch.cat([batch, torch.zeros(3, 5, 4, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(net(padded), expected, rtol=1e-9, atol=1e-9)


def test_molecules_do_not_interact(net, batch):
    expected = net(batch)[0]
    other = batch.clone()
    other[1] = random_batch(torch.Generator().manual_seed(3), [9])[0]  # different size too
    other[2, :, :3] += 0.5
    torch.testing.assert_close(net(other)[0], expected, rtol=1e-9, atol=1e-9)
    assert net(batch[:1])[0].item() == pytest.approx(expected.item(), rel=1e-9, abs=1e-9)


def test_smooth_at_cutoff_and_finite_gradients(net):
    r = net.cfg.max_radius
    inside, outside = [[0.0, 0, 0, 6], [0, 0, r - 1e-6, 8]], [[0.0, 0, 0, 6], [0, 0, r + 1e-6, 8]]
    out = net(torch.tensor([inside, outside], dtype=torch.float64))
    assert out[0].item() == pytest.approx(out[1].item(), abs=1e-6)
    # coincident atoms (possible in noisy diffusion samples): finite gradient w.r.t. positions
    x = torch.tensor([[[0.0, 0, 0, 6], [0, 0, 0, 1], [1.1, 0, 0, 8]]], dtype=torch.float64)
    x.requires_grad_(True)
    net(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_unknown_atomic_number_is_a_clear_error(net, batch):
    bad = batch.clone()
    bad[1, 0, 3] = 17.0  # chlorine: not in the default atom types
    with pytest.raises(ValueError, match=r"unknown atomic number\(s\) \[17\]"):
        net(bad)


def test_learns_an_invariant_target():
    """Sum of exp(−d) over atom pairs of 64 random molecules: the MSE falls at least 5×."""
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(3, 9, (64,), generator=gen).tolist()
    x = random_batch(gen, sizes, n_max=8).float()
    pos, real = x[..., :3], x[..., 3] > 0
    pair = real[:, :, None] & real[:, None, :] & ~torch.eye(8, dtype=torch.bool)
    y = (torch.exp(-torch.cdist(pos, pos)) * pair).sum((1, 2)) / 2
    y = (y - y.mean()) / y.std()
    torch.manual_seed(0)
    net = PropertyRegressor(RegressorConfig(**SMALL))
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(net(x), y).item()
    cfg = FitConfig(steps=150, batch_size=32, lr=1e-2, weight_decay=0.0, eval_every=50)
    best = fit(net, x, y, x, y, replace(cfg, task="regression"), gen)
    assert best["loss"] < before / 5, (before, best)
