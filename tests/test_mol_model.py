"""EGNN denoiser equivariance, loss invariance and the EDM-style generator's sampler."""

import dataclasses

import pytest
import torch

from molgen.data import read_qm9
from molgen.graph import fully_connected_edges, to_dense
from molgen.layout import MoleculeLayout, remove_mean
from molgen.model import EGNNConfig, EGNNDenoiser
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.gaussian_generator import GaussianGenerator


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


@pytest.fixture(scope="module")
def molecules():
    return to_dense(read_qm9(max_rows=400)[300:306], 29)  # 6 QM9 molecules, 9–15 atoms


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    net = EGNNDenoiser(EGNNConfig(hidden=32, layers=3))
    for p in net.parameters():  # break the tiny initial coordinate steps so the test bites
        p.data += 0.05 * torch.randn_like(p)
    probs = torch.zeros(30, dtype=torch.float64)
    probs[[5, 9]] = 0.5
    diffusion = GaussianDiffusion(polynomial_schedule(100))
    layout = MoleculeLayout(net.cfg.atom_types, probs)
    return GaussianGenerator(diffusion, net, layout, sampling_steps=10, sample_batch=4)


def transform(x, q, shift, perm):
    """Rotate/reflect + translate positions and permute the atoms of molecule 0."""
    y = x.clone()
    y[..., :3] = x[..., :3] @ q.T + shift
    y[..., :3] *= x[..., 3:] > 0  # keep padding rows at zero
    n0 = int((x[0, :, 3] > 0).sum())
    y[0, :n0] = y[0, perm]
    return y


@pytest.mark.parametrize("reflect", [False, True])
def test_denoiser_is_e3_and_permutation_equivariant(generator, molecules, reflect):
    q, shift = orthogonal(1, reflect), torch.tensor([3.0, -2.0, 0.5])
    n0 = int((molecules[0, :, 3] > 0).sum())
    perm = torch.randperm(n0, generator=torch.Generator().manual_seed(2))
    state, (_, batch, _, mask) = generator.layout.encode(molecules)
    state2, (_, batch2, _, _) = generator.layout.encode(transform(molecules, q, shift, perm))
    t = torch.full((len(batch),), 0.4)
    with torch.no_grad():
        eps_pos, eps_feat = generator.net(
            state[:, :3], state[:, 3:], t, batch, fully_connected_edges(batch)
        )
        eps_pos2, eps_feat2 = generator.net(
            state2[:, :3] + shift, state2[:, 3:], t, batch2, fully_connected_edges(batch2)
        )
    expect_pos, expect_feat = eps_pos @ q.T, eps_feat.clone()
    expect_pos[:n0], expect_feat[:n0] = expect_pos[:n0][perm], expect_feat[:n0][perm]
    assert eps_pos.abs().max() > 1e-2  # not trivially zero
    torch.testing.assert_close(eps_pos2, expect_pos, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(eps_feat2, expect_feat, atol=2e-5, rtol=1e-4)


def test_denoiser_output_has_zero_centre_of_mass(generator, molecules):
    state, (_, batch, _, _) = generator.layout.encode(molecules)
    eps_pos, _ = generator.net(
        state[:, :3], state[:, 3:], torch.zeros(len(batch)), batch, fully_connected_edges(batch)
    )
    torch.testing.assert_close(remove_mean(eps_pos, batch), eps_pos, atol=1e-5, rtol=0)


def test_denoising_error_is_invariant(generator, molecules):
    """L(g·x, g·ε) = L(x, ε) for rotations, reflections, translations and permutations."""
    q, shift = orthogonal(3, True), torch.tensor([-1.0, 4.0, 2.0])
    n0 = int((molecules[0, :, 3] > 0).sum())
    perm = torch.randperm(n0, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([5, 20, 50, 80, 95, 99])
    noise = torch.randn(int((molecules[..., 3] > 0).sum()), 9)
    noise2 = noise.clone()
    noise2[:, :3] = noise[:, :3] @ q.T
    noise2[:n0] = noise2[:n0][perm]
    with torch.no_grad():
        err = generator.denoising_error(molecules, t, noise)
        err2 = generator.denoising_error(transform(molecules, q, shift, perm), t, noise2)
    torch.testing.assert_close(err, err2, atol=1e-5, rtol=1e-4)


def test_molecule_result_does_not_depend_on_batch_neighbours(generator, molecules):
    t, noise = torch.tensor([30, 30]), torch.randn(200, 9)
    other = molecules[[0, 1]].clone()
    other[1, :, :3] += 5.0 * torch.randn(29, 3) * (other[1, :, 3:] > 0)
    with torch.no_grad():
        a = generator.denoising_error(
            molecules[[0, 1]], t, noise[: int((molecules[[0, 1], :, 3] > 0).sum())]
        )
        b = generator.denoising_error(other, t, noise[: int((other[..., 3] > 0).sum())])
    torch.testing.assert_close(a[0], b[0])


def test_sampler_sizes_types_centre_and_path_kl(generator):
    gen = torch.Generator().manual_seed(0)
    x, kl = generator.sample(8, gen, reference=generator.frozen_copy())
    sizes = (x[..., 3] > 0).sum(1)
    assert set(sizes.tolist()) <= {5, 9}
    assert set(x[..., 3].unique().tolist()) <= {0, 1, 6, 7, 8, 9}
    for i in range(8):
        pos = x[i, : sizes[i], :3]
        torch.testing.assert_close(pos.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(kl, torch.zeros(8))  # identical models: zero path KL
    other = generator.frozen_copy()
    other.net.out.bias.data += 0.1
    _, kl2 = generator.sample(8, torch.Generator().manual_seed(0), reference=other)
    assert (kl2 > 0).all()
    again, _ = generator.sample(8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, x)  # seeded sampling is reproducible
    generator.sampler = "ddim"
    try:
        assert generator.sample(4, torch.Generator().manual_seed(1))[0].shape == (4, 29, 4)
        # a KL to a reference needs the Gaussian steps: DDIM is for plain sampling only
        ddim_x, ddim_kl = generator.sample(8, torch.Generator().manual_seed(0), reference=other)
        torch.testing.assert_close(ddim_x, x)
        torch.testing.assert_close(ddim_kl, kl2)
    finally:
        generator.sampler = "ddpm"


def test_log_likelihood_is_finite_and_invariant(generator, molecules):
    uniform = dataclasses.replace(
        generator,
        layout=dataclasses.replace(generator.layout, num_atoms_probs=torch.full((30,), 1 / 30.0)),
    )
    moved = molecules.clone()
    moved[..., :3] = (molecules[..., :3] + 1.0) * (molecules[..., 3:] > 0)  # translated
    ll = uniform.log_likelihood(molecules, num_t=4, generator=torch.Generator().manual_seed(0))
    assert ll.shape == (6,) and torch.isfinite(ll).all()
    ll_moved = uniform.log_likelihood(moved, num_t=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ll, ll_moved)
    # sizes the training histogram never produced have probability zero
    assert torch.isinf(generator.log_likelihood(molecules[:1], num_t=1)).all()


def test_unknown_atom_type_is_a_clear_error(generator):
    x = torch.zeros(1, 29, 4)
    x[0, :2, 3] = torch.tensor([6.0, 17.0])
    with pytest.raises(ValueError, match=r"atomic numbers \[17\] are not in the model"):
        generator.layout.encode(x)


def test_size_distribution_moves_toward_weighted_sizes(generator):
    gen = dataclasses.replace(generator, config={})
    x = torch.zeros(3, 29, 4)
    for i, n in enumerate([5, 9, 9]):
        x[i, :n, 3] = 6.0
    gen.fit_size_distribution(x, torch.tensor([3.0, 1.0, 0.0]), mix=0.5)
    expected = torch.zeros(30, dtype=torch.float64)
    expected[5], expected[9] = 0.25 + 0.375, 0.25 + 0.125  # ½ old (½, ½) + ½ weighted (¾, ¼)
    torch.testing.assert_close(gen.layout.num_atoms_probs, expected)
    assert gen.config["num_atoms_probs"] == expected.tolist()  # saved with the model
    assert generator.layout.num_atoms_probs[5] == 0.5  # the original is untouched


def test_trajectory_is_the_sample_with_transition_densities(generator):
    """ddpo's view of the molecule chain: the trajectory ends in the sampled molecules, step
    KLs sum to the sampler's path KL, and each step's log-density has the Gaussian entropy's
    mean over its 3(n − 1) + n·F subspace dimensions."""
    other = generator.frozen_copy()
    other.net.out.bias.data += 0.1
    x, kl = generator.sample(4, torch.Generator().manual_seed(3), reference=other)
    states, grid, designs = generator.sample_trajectory(4, torch.Generator().manual_seed(3))
    torch.testing.assert_close(designs, x)
    assert grid == generator.diffusion.timesteps(10) and len(states) == len(grid)
    steps = list(zip(states, states[1:], grid, grid[1:]))
    total = sum(generator.step_kl(z_t, t, s, other) for z_t, _, t, s in steps)
    torch.testing.assert_close(total.detach(), kl, rtol=1e-4, atol=1e-4)
    n = states[0].frame.mask.sum(1).double()
    dims = 3 * (n - 1) + n * generator.layout.feature_dim
    z_t, z_s, t, s = steps[3]
    log_p = generator.step_log_prob(z_t, z_s, t, s).detach().double()
    var = generator.diffusion.posterior_mean_var(z_t.state[:1], t, s, z_t.state[:1])[1].double()
    entropy = 0.5 * dims * (1 + torch.log(2 * torch.pi * var))
    # −log p = ½χ²_dims + const: within 4 standard deviations (sqrt(dims/2)) of the entropy
    assert ((-log_p - entropy).abs() < 4 * (dims / 2).sqrt()).all(), (log_p, entropy)
    final = generator.step_log_prob(states[-2], states[-1], grid[-2], 0)
    assert final.requires_grad and torch.equal(final.detach(), torch.zeros(4))


def test_round_quality_reports_edm_fractions(generator, molecules):
    """The per-round quality log of the molecule domain: EDM stability and validity of
    generator outputs (dense tensors) — QM9 molecules score as the data row does."""
    from molgen.domain import MOLECULE

    real = MOLECULE.quality(molecules)
    assert set(real) == {"atom_stability", "molecule_stability", "validity"}
    assert real["atom_stability"] > 0.95 and real["validity"] == 1.0
    x, _ = generator.sample(4, torch.Generator().manual_seed(0))
    assert all(0.0 <= v <= 1.0 for v in MOLECULE.quality(x).values())
