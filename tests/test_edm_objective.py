"""EDM's l2 training objective and NLL estimator (``objective="edm"``, ``elbo="edm"``) against
EDM's formulas written out here in its padded (B, N_max, ·) layout, their invariances, the
z_0-centred bins by hand, an oracle network, and EDM's optimiser (AdamW with AMSGrad)."""

import dataclasses
import math

import pytest
import torch
from test_mol_model import orthogonal, transform
from torch import nn
from toys import MLP, make, seeded

from molgen.data import read_qm9
from molgen.graph import fully_connected_edges, to_dense
from molgen.layout import MoleculeLayout
from molgen.model import EGNNConfig, EGNNDenoiser
from rewarddiff import UserError
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.gaussian_generator import GaussianGenerator
from rewarddiff.io import load_tensors
from rewarddiff.training import TrainConfig, optimizer, train

T = 100
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: see conftest.py


@pytest.fixture(scope="module")
def molecules():
    return to_dense(read_qm9(max_rows=400)[300:306], 29)  # 6 QM9 molecules, 9–15 atoms


def size_probs(x: torch.Tensor) -> torch.Tensor:
    """The size histogram (30,) of molecules x, with some mass on every other size."""
    counts = torch.bincount((x[..., 3] > 0).sum(1), minlength=30).double() + 0.1
    return counts / counts.sum()


def build(net: nn.Module, molecules, **kw) -> GaussianGenerator:
    layout = MoleculeLayout(EGNNConfig().atom_types, size_probs(molecules))
    diffusion = GaussianDiffusion(polynomial_schedule(T))
    return GaussianGenerator(diffusion, net, layout, sample_batch=8, objective="edm",
                             elbo="edm", **kw)  # fmt: skip


@pytest.fixture(scope="module")
def generator(molecules):
    torch.manual_seed(0)
    net = EGNNDenoiser(EGNNConfig(hidden=32, layers=3))
    for p in net.parameters():  # away from the tiny initial outputs, so the tests bite
        p.data += 0.05 * torch.randn_like(p)
    return build(net, molecules)


# ----- EDM's formulas (en_diffusion.py, qm9/losses.py) in its padded layout -------------------
def phi_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def edm_padded(gen: GaussianGenerator, x: torch.Tensor, noise: torch.Tensor):
    """x (B, 29, 4) and node noise (N, 3 + F) in EDM's layout: xh, eps (B, N_max, 3 + F)
    float64 and node_mask (B, N_max, 1), N_max the batch's largest molecule (EDM's collate
    drops all-padding columns)."""
    n_max = int((x[..., 3] > 0).sum(1).max())
    x = x[:, :n_max]
    mask = x[..., 3] > 0
    m = mask[..., None].double()
    types = torch.tensor(gen.layout.atom_types)
    one_hot = (x[..., 3:4].round().long() == types).double() * m
    pos = x[..., :3].double()
    pos = (pos - (pos * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)) * m
    xh = torch.cat([pos, one_hot / 4, x[..., 3:4].double() / 10 * m], -1)
    eps = torch.zeros_like(xh)
    eps[mask] = noise.double()
    eps_x = eps[..., :3]
    eps[..., :3] = (eps_x - (eps_x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)) * m
    return xh, eps, m


def phi(gen, z: torch.Tensor, t: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The network on the padded z (B, N_max, 3 + F) at integer steps t (B,)."""
    mask = m[..., 0] > 0
    batch = torch.arange(len(z))[:, None].expand_as(mask)[mask]
    rows = z[mask].float()
    pos, feat = gen.net(rows[:, :3], rows[:, 3:], (t.float() / T)[batch], batch,
                        fully_connected_edges(batch))  # fmt: skip
    out = torch.zeros_like(z)
    out[mask] = torch.cat([pos, feat], -1).double()
    return out


def edm_kl_prior(ab, xh, m):
    """kl_prior: the h part per coordinate, the x part over its (n − 1)·3 subspace."""
    alpha_T, sigma_T = ab[-1].sqrt(), (1 - ab[-1]).sqrt()
    mu = alpha_T * xh
    mu_x, mu_h = mu[..., :3], mu[..., 3:]
    kl_h = ((torch.log(1 / sigma_T) + 0.5 * (sigma_T**2 + mu_h**2) - 0.5) * m).sum((1, 2))
    d = (m.sum((1, 2)) - 1) * 3
    kl_x = d * torch.log(1 / sigma_T) + 0.5 * (d * sigma_T**2 + mu_x.pow(2).sum((1, 2))) - 0.5 * d
    return kl_x + kl_h


def edm_log_p_h(z_h, h, sigma_0, m):
    """The discrete part of log_pxh_given_z0_without_constants: bins centred on z_0's h."""
    z_cat, z_int = z_h[..., :-1] * 4, z_h[..., -1:] * 10
    onehot, h_int = h[..., :-1] * 4, (h[..., -1:] * 10).round()
    sig_cat, sig_int = sigma_0 * 4, sigma_0 * 10
    c = h_int - z_int
    log_int = torch.log(phi_cdf((c + 0.5) / sig_int) - phi_cdf((c - 0.5) / sig_int) + 1e-10)
    c = z_cat - 1
    log_cat = torch.log(phi_cdf((c + 0.5) / sig_cat) - phi_cdf((c - 0.5) / sig_cat) + 1e-10)
    log_cat = log_cat - log_cat.logsumexp(2, keepdim=True)
    return (log_int * m).sum((1, 2)) + (log_cat * onehot * m).sum((1, 2))


def edm_training_nll(gen, x, t, noise):
    """compute_loss(t0_always=False) in training with loss_type 'l2', minus log p(N)."""
    ab = gen.diffusion.alpha_bar
    xh, eps, m = edm_padded(gen, x, noise)
    alpha_t, sigma_t = ab[t].sqrt()[:, None, None], (1 - ab[t]).sqrt()[:, None, None]
    z_t = alpha_t * xh + sigma_t * eps
    net_out = phi(gen, z_t, t, m)
    denom = (3 + gen.layout.feature_dim) * xh.shape[1]  # (n_dims + in_node_nf)·N_max
    error = ((eps - net_out) ** 2 * m).sum((1, 2)) / denom
    loss_t = 0.5 * error  # SNR weight 1 in l2 training
    log_p_x = -0.5 * ((eps - net_out)[..., :3] ** 2 * m).sum((1, 2)) / denom
    loss_0 = -(log_p_x + edm_log_p_h(z_t[..., 3:], xh[..., 3:], (1 - ab[0]).sqrt(), m))
    loss = edm_kl_prior(ab, xh, m) + torch.where(t == 0, loss_0, loss_t)  # constants zeroed
    sizes = m.sum((1, 2)).long()
    return loss - torch.log(gen.layout.num_atoms_probs[sizes])


def node_noise(x: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(int((x[..., 3] > 0).sum()), 9, generator=seeded(seed))


# ----- the training objective -----------------------------------------------------------------
def test_edm_loss_is_edms_l2_objective(generator, molecules):
    """Per molecule, for molecules of 9–15 atoms at fixed t (one at t = 0) and noise: EDM's l2
    loss with denominator (3 + F)·N_max, N_max = 15 (the batch's, not the padding's 29)."""
    x, t = molecules[[0, 2, 3, 5]], torch.tensor([0, 1, 40, T])
    assert len(set((x[..., 3] > 0).sum(1).tolist())) > 1  # molecules of different sizes
    noise = node_noise(x, 1)
    with torch.no_grad():
        got = generator.edm_loss(x, t, noise)
        want = edm_training_nll(generator, x, t, noise)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # every molecule at t = 0: the reconstruction term throughout
    zeros = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(generator.edm_loss(x, zeros, noise),
                                   edm_training_nll(generator, x, zeros, noise),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip


def test_loss_averages_edm_loss_over_the_batch_with_t_from_zero(generator, molecules):
    """loss() draws t ~ U{0..T}, then noise, and averages (Σ w·ℓ / Σ w with weights)."""
    gen = seeded(7)
    t = torch.randint(0, T + 1, (6,), generator=gen)
    noise = torch.randn(int((molecules[..., 3] > 0).sum()), 9, generator=gen)
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5, 3.0])
    with torch.no_grad():
        per = generator.edm_loss(molecules, t, noise)
        torch.testing.assert_close(generator.loss(molecules, generator=seeded(7)), per.mean())
        weighted = generator.loss(molecules, weights, generator=seeded(7))
    torch.testing.assert_close(weighted, (weights.double() * per).sum() / weights.sum())
    with pytest.raises(UserError, match="unknown objective 'vlb'; expected 'mean' or 'edm'"):
        dataclasses.replace(generator, objective="vlb")


def test_edm_loss_and_nll_are_invariant(generator, molecules, monkeypatch):
    """ℓ(g·x, g·ε) = ℓ(x, ε) and the NLL estimate with g applied to every draw of noise are
    unchanged by a rotation-reflection, translation and permutation g."""
    q, shift = orthogonal(5, True), torch.tensor([2.0, -3.0, 1.0])
    n0 = int((molecules[0, :, 3] > 0).sum())
    perm = torch.randperm(n0, generator=seeded(6))

    def act(noise):
        moved = noise.clone()
        moved[:, :3] = noise[:, :3] @ q.T
        moved[:n0] = moved[:n0][perm]
        return moved

    moved = transform(molecules, q, shift, perm)
    t, noise = torch.tensor([0, 3, 0, 50, 99, T]), node_noise(molecules, 2)
    with torch.no_grad():
        loss = generator.edm_loss(molecules, t, noise)
        loss_moved = generator.edm_loss(moved, t, act(noise))
    torch.testing.assert_close(loss, loss_moved, rtol=1e-4, atol=1e-4)
    ll = generator.log_likelihood(molecules, num_t=4, generator=seeded(0))
    other = dataclasses.replace(generator)
    draw = other._noise
    monkeypatch.setattr(other, "_noise", lambda frame, g: act(draw(frame, g)))
    ll_moved = other.log_likelihood(moved, num_t=4, generator=seeded(0))
    assert torch.isfinite(ll).all()
    torch.testing.assert_close(ll, ll_moved, rtol=1e-4, atol=1e-3)


# ----- the NLL estimator ----------------------------------------------------------------------
def test_bins_are_centred_on_z0_by_hand():
    """One carbon atom, σ_0 = 0.2: type bins of std 4σ_0 around 4·z_0 − 1 per class (normalised
    over classes), the atomic-number bin of std 10σ_0 around 10·z_0, each mass floored by
    1e-10; the network's ε̂ does not enter."""
    layout = MoleculeLayout(EGNNConfig().atom_types, torch.full((30,), 1 / 30))
    d = GaussianDiffusion(torch.tensor([0.96, 0.5, 0.01], dtype=torch.float64))
    x = torch.zeros(1, 29, 4)
    x[0, 0, 3] = 6.0
    state, frame = layout.encode(x)
    z0 = state.clone()
    z0[0, 3:] = torch.tensor([0.05, 0.30, 0.10, -0.02, 0.125, -0.9])
    noise, eps_hat = torch.zeros_like(state), torch.zeros_like(state)
    rec = layout.edm_reconstruction(d, state, z0, eps_hat, noise, frame)

    def bin_mass(centre, sigma):  # ∫ N(y; centre, σ) dy over [−½, ½], by the upper tail
        c, r = abs(centre), sigma * math.sqrt(2)
        return 0.5 * (math.erfc((c - 0.5) / r) - math.erfc((c + 0.5) / r))

    log_p = [math.log(bin_mass(4 * z - 1, 0.8) + 1e-10) for z in (0.05, 0.30, 0.10, -0.02, 0.125)]
    log_type = log_p[1] - math.log(sum(math.exp(v) for v in log_p))  # carbon: class 1
    log_charge = math.log(bin_mass(6 + 10 * 0.9, 2.0) + 1e-10)  # ≈ 2e-13: the floor
    assert rec.log_discrete.item() == pytest.approx(log_type + log_charge, rel=1e-6, abs=1e-6)
    assert rec.dims.item() == 0 and rec.sq_error.item() == 0  # no free position of one atom
    eps_hat[0, 3:] = torch.tensor([1.0, -2.0, 0.5, 0.3, -0.7, 1.5])
    other = layout.edm_reconstruction(d, state, z0, eps_hat, noise, frame)
    assert other.log_discrete.item() == rec.log_discrete.item()  # centred on z_0, not x̂_0


class Oracle(nn.Module):
    """The exact ε of z_t = α_t x + σ_t ε for the one batch of clean states x it knows."""

    def __init__(self, state: torch.Tensor, alpha_bar: torch.Tensor):
        super().__init__()
        self.state, self.alpha_bar = state.double(), alpha_bar
        self.unused = nn.Parameter(torch.zeros(()))  # gives the generator a device

    def forward(self, pos, features, t, batch, edges, label=None):
        ab = self.alpha_bar[(t * T).round().long()][:, None]
        eps = (torch.cat([pos, features], -1).double() - ab.sqrt() * self.state) / (1 - ab).sqrt()
        return eps[:, :3].float(), eps[:, 3:].float()


def test_estimator_with_the_exact_eps(molecules):
    """A network that outputs the exact ε: every L_t and the position error vanish, so the NLL
    is −log p(N) + KL_prior − 3(n − 1)(−log σ_0/α_0 − ½ log 2π) (the discrete bins hold ≈ all
    their mass at σ_0 = 3e-3), and the training loss KL_prior − log p(N); log p(N) enters
    exactly."""
    gen = build(nn.Identity(), molecules)
    state, frame = gen.layout.encode(molecules)
    gen.net = Oracle(state, gen.diffusion.alpha_bar)
    ab = gen.diffusion.alpha_bar
    n = (molecules[..., 3] > 0).sum(1)
    with torch.no_grad():
        kl_prior = gen._prior_kl(state, frame)
        log_pn = torch.log(gen.layout.num_atoms_probs[n])
        log_const = (
            3 * (n - 1) * (-0.5 * torch.log((1 - ab[0]) / ab[0]) - 0.5 * math.log(2 * math.pi))
        )
        ll = gen.log_likelihood(molecules, num_t=8, generator=seeded(0))
        torch.testing.assert_close(ll.double(), log_pn - kl_prior + log_const, rtol=0, atol=2e-3)
        loss = gen.edm_loss(molecules, torch.tensor([0, 0, 1, 30, 70, T]), node_noise(molecules, 3))
    torch.testing.assert_close(loss, kl_prior - log_pn, rtol=0, atol=1e-5)
    other = dataclasses.replace(gen, layout=dataclasses.replace(
        gen.layout, num_atoms_probs=torch.full((30,), 1 / 30, dtype=torch.float64)))  # fmt: skip
    ll_other = other.log_likelihood(molecules, num_t=8, generator=seeded(0))
    torch.testing.assert_close(ll_other - ll, (math.log(1 / 30) - log_pn).float(), rtol=0,
                               atol=1e-4)  # fmt: skip


def test_nll_is_finite_and_training_on_the_edm_loss_lowers_it(molecules):
    """60 Adam steps of the EDM loss on 6 molecules raise the EDM ELBO (same draws)."""
    torch.manual_seed(1)
    gen = build(EGNNDenoiser(EGNNConfig(hidden=32, layers=2)), molecules)
    before = gen.log_likelihood(molecules, num_t=16, generator=seeded(0))
    assert torch.isfinite(before).all()
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    draws = seeded(1)
    for _ in range(60):
        loss = gen.loss(molecules, generator=draws)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = gen.log_likelihood(molecules, num_t=16, generator=seeded(0))
    assert after.mean() > before.mean() + 1.0, (before, after)
    # today's estimator (bins on x̂_0) for the same draws: at σ_0 = 3e-3 every bin holds ≈ all
    # its mass either way, so the two agree to float32 noise
    default = dataclasses.replace(gen, elbo="x0_hat")
    ll_default = default.log_likelihood(molecules, num_t=16, generator=seeded(0))
    torch.testing.assert_close(ll_default, after, rtol=0, atol=1e-3)


def test_plain_states_edm_estimator_and_loss():
    """Without discrete features EDM's L_0 is the Gaussian one (the estimators agree), and the
    loss at t > 0 is ½·(the mean squared ε error) plus the prior KL."""
    torch.manual_seed(0)
    gen = make((3,), MLP(3))
    x = torch.randn(8, 3, generator=seeded(1))
    edm = dataclasses.replace(gen, objective="edm", elbo="edm")
    want = gen.log_likelihood(x, num_t=4, generator=seeded(2))
    torch.testing.assert_close(edm.log_likelihood(x, num_t=4, generator=seeded(2)), want)
    t, noise = torch.randint(1, T + 1, (8,), generator=seeded(3)), torch.randn(8, 3)
    with torch.no_grad():
        got = edm.edm_loss(x, t, noise)
        mean = gen.denoising_error(x, t, noise).double()
    state, frame = gen.layout.encode(x)
    torch.testing.assert_close(got, 0.5 * mean + gen._prior_kl(state, frame))


# ----- EDM's optimiser ------------------------------------------------------------------------
def _regression(out_dir, stop_at_step=None, **settings):
    x = torch.randn(128, 3, generator=seeded(0))
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    cfg = TrainConfig(**{"steps": 20, "batch_size": 16, "lr": 1e-2, "checkpoint_every": 5,
                         "log_every": 5, "warmup_steps": 0} | settings)  # fmt: skip
    train(net, lambda m, b: ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(),
          lambda idx: (x[idx], y[idx]), len(x), cfg, out_dir, stop_at_step)  # fmt: skip
    return net


def test_amsgrad_optimiser_and_its_checkpoint_resumes(tmp_path, capsys):
    opt = optimizer(nn.Linear(2, 1), TrainConfig(amsgrad=True, weight_decay=1e-12, lr=1e-4))
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["amsgrad"] and opt.defaults["weight_decay"] == 1e-12
    assert not optimizer(nn.Linear(2, 1), TrainConfig()).defaults["amsgrad"]
    straight = _regression(tmp_path / "a", amsgrad=True)
    _regression(tmp_path / "b", stop_at_step=10, amsgrad=True)
    _, meta = load_tensors(tmp_path / "b" / "checkpoint.safetensors")
    assert meta["settings"]["train"]["amsgrad"] is True
    assert "max_exp_avg_sq" in str(meta["optim"])  # AMSGrad's state is saved
    capsys.readouterr()
    resumed = _regression(tmp_path / "b", amsgrad=True)
    assert "resumed from step 10" in capsys.readouterr().out
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    plain = _regression(tmp_path / "c")
    assert not all(torch.equal(p, q) for p, q in zip(plain.parameters(), straight.parameters()))
