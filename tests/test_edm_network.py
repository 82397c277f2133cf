"""EDM's own denoiser (molgen.edm): E(3) and permutation equivariance, molecules independent of
their batch, EDM's parameter count and state-dict keys, and the generator it plugs into."""

import pytest
import torch

from molgen.edm import EDMConfig, EDMDenoiser
from molgen.graph import fully_connected_edges
from molgen.layout import MoleculeLayout, remove_mean
from rewarddiff import UserError
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.gaussian_generator import GaussianGenerator
from rewarddiff.generator import load_unconditional_weights

SIZES = [7, 11, 5]  # atoms of the three test molecules

VARIANTS = {
    "released": EDMConfig(hidden=32, layers=3),
    "other_flags": EDMConfig(
        hidden=24, layers=2, inv_sublayers=2, aggregation="mean", sin_embedding=True,
        attention=False, tanh=False, norm_constant=0.0, context_features=1,
    ),
}  # fmt: skip


def orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed)))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def perturbed(cfg: EDMConfig) -> EDMDenoiser:
    """A network with its weights moved off the initialisation (tiny coordinate steps)."""
    torch.manual_seed(0)
    net = EDMDenoiser(cfg)
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return net


def inputs(seed: int = 0):
    """Positions (N, 3) Å, EDM-scaled features (N, 6), t (N,), batch, edges, context (3,)."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    pos = remove_mean(2.0 * torch.randn(len(batch), 3, generator=g), batch)
    types = torch.randint(0, 5, (len(batch),), generator=g)
    numbers = torch.tensor([1.0, 6.0, 7.0, 8.0, 9.0])[types]
    features = torch.cat([torch.nn.functional.one_hot(types, 5) / 4.0, numbers[:, None] / 10], 1)
    features = features + 0.3 * torch.randn(features.shape, generator=g)  # noised, as z_t
    t = torch.rand(len(SIZES), generator=g)[batch]
    context = torch.randn(len(SIZES), generator=g)
    return pos, features, t, batch, fully_connected_edges(batch), context


def call(net: EDMDenoiser, pos, features, t, batch, edges, context):
    with torch.no_grad():
        return net(pos, features, t, batch, edges, context if net.cfg.context_features else None)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("reflect", [False, True])
def test_edm_network_is_e3_and_permutation_equivariant(one_thread, variant, reflect):
    net = perturbed(VARIANTS[variant])
    pos, features, t, batch, edges, context = inputs()
    q, shift = orthogonal(1, reflect), torch.tensor([3.0, -2.0, 0.5])
    perm = torch.arange(len(batch))
    perm[: SIZES[0]] = torch.randperm(SIZES[0], generator=torch.Generator().manual_seed(2))
    eps_pos, eps_feat = call(net, pos, features, t, batch, edges, context)
    moved = call(net, pos[perm] @ q.T + shift, features[perm], t, batch, edges, context)
    assert eps_pos.abs().max() > 1e-2  # not trivially zero
    torch.testing.assert_close(moved[0], (eps_pos @ q.T)[perm], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(moved[1], eps_feat[perm], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_edm_network_output_has_zero_mean_per_molecule(one_thread, variant):
    pos, features, t, batch, edges, context = inputs()
    eps_pos, _ = call(perturbed(VARIANTS[variant]), pos + 1.0, features, t, batch, edges, context)
    assert eps_pos.abs().max() > 1e-2
    torch.testing.assert_close(remove_mean(eps_pos, batch), eps_pos, atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_edm_molecules_do_not_see_their_batch_neighbours(one_thread, variant):
    """Changing molecule 1 (positions, types, time, context) leaves 0 and 2 exactly alone."""
    net = perturbed(VARIANTS[variant])
    pos, features, t, batch, edges, context = inputs()
    a = call(net, pos, features, t, batch, edges, context)
    other = batch == 1
    pos2, features2, t2, context2 = pos.clone(), features.clone(), t.clone(), context.clone()
    pos2[other] += 3.0 * torch.randn(int(other.sum()), 3)
    features2[other] = features2[other].flip(0)
    t2[other], context2[1] = 0.9, 5.0
    b = call(net, pos2, features2, t2, batch, edges, context2)
    assert not torch.allclose(a[0][other], b[0][other])
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x[~other], y[~other], atol=1e-6, rtol=1e-6)


def edm_keys(layers: int, sublayers: int) -> set[str]:
    """The tensors of EDM's ``EGNN_dynamics_QM9`` (egnn/egnn_new.py, attention on): its
    ``egnn`` holds ``embedding`` and ``embedding_out`` Linears and ``e_block_{b}``, each
    with GCLs ``gcl_{k}`` (``edge_mlp`` = Linear, SiLU, Linear, SiLU; ``node_mlp`` = Linear,
    SiLU, Linear; ``att_mlp`` = Linear, Sigmoid) and ``gcl_equiv`` (``coord_mlp`` = Linear,
    SiLU, Linear, SiLU, Linear without bias)."""
    linear = ("weight", "bias")
    keys = {f"egnn.{m}.{p}" for m in ("embedding", "embedding_out") for p in linear}
    for b in range(layers):
        block = f"egnn.e_block_{b}"
        for k in range(sublayers):
            mlps = {"edge_mlp": (0, 2), "node_mlp": (0, 2), "att_mlp": (0,)}
            keys |= {f"{block}.gcl_{k}.{mlp}.{i}.{p}"
                     for mlp, index in mlps.items() for i in index for p in linear}  # fmt: skip
        keys |= {f"{block}.gcl_equiv.coord_mlp.{i}.{p}" for i in (0, 2) for p in linear}
        keys.add(f"{block}.gcl_equiv.coord_mlp.4.weight")
    return keys


def test_edm_qm9_parameter_count_and_keys_are_edms():
    """EDM's QM9 model (nf 256, 9 layers, 1 sublayer, 5 types + charges, time): ≈ 5.34 M."""
    net = EDMDenoiser(EDMConfig())
    h, channels, edge_in = 256, 5 + 1 + 1, 2 * 256 + 2  # types + charge + time; h_i, h_j, d², d0²
    gcl = (edge_in * h + h) + (h * h + h) + (2 * h * h + h) + (h * h + h) + (h + 1)
    equivariant = (edge_in * h + h) + (h * h + h) + h
    embeddings = (channels * h + h) + (h * channels + channels)
    assert embeddings + 9 * (gcl + equivariant) == 5_339_920
    assert sum(p.numel() for p in net.parameters()) == 5_339_920
    state = net.state_dict()
    assert set(state) == edm_keys(9, 1)
    assert state["egnn.embedding.weight"].shape == (256, 7)
    assert state["egnn.embedding_out.weight"].shape == (7, 256)
    assert state["egnn.e_block_8.gcl_0.edge_mlp.0.weight"].shape == (256, 514)
    assert state["egnn.e_block_0.gcl_equiv.coord_mlp.4.weight"].abs().max() < 1e-3  # gain 0.001
    assert set(EDMDenoiser(EDMConfig(hidden=16, layers=2, inv_sublayers=3)).state_dict()) == (
        edm_keys(2, 3)
    )


def test_condition_embedding_starts_as_the_unconditional_network(one_thread):
    """ctrl/rcgdm attach a zero-initialised embedding (keys ``condition.*``): same function."""
    base = perturbed(EDMConfig(hidden=16, layers=2))
    args = inputs()
    for extra in ({"num_labels": 3}, {"value_condition": True}):
        net = EDMDenoiser(EDMConfig(hidden=16, layers=2, **extra))
        load_unconditional_weights(net, base.state_dict())
        label = torch.tensor([0, 2, 1]) if "num_labels" in extra else torch.tensor([0.5, 1.0, 2])
        for got, want in zip(net(*args[:5], label), call(base, *args), strict=True):
            torch.testing.assert_close(got, want)
    with pytest.raises(UserError, match="EDM's context takes no condition embedding"):
        EDMDenoiser(EDMConfig(hidden=16, layers=2, context_features=1, num_labels=3))


def test_context_is_required_and_used(one_thread):
    net = perturbed(EDMConfig(hidden=16, layers=2, context_features=1))
    pos, features, t, batch, edges, context = inputs()
    with pytest.raises(ValueError, match="pass its context as label"):
        net(pos, features, t, batch, edges)
    a = call(net, pos, features, t, batch, edges, context)
    b = call(net, pos, features, t, batch, edges, context + 1.0)
    assert not torch.allclose(a[1], b[1])


def test_edm_network_drives_the_molecule_generator(one_thread):
    net = perturbed(EDMConfig(hidden=16, layers=2))
    probs = torch.zeros(30, dtype=torch.float64)
    probs[[5, 9]] = 0.5
    gen = GaussianGenerator(
        GaussianDiffusion(polynomial_schedule(100)),
        net,
        MoleculeLayout(net.cfg.atom_types, probs),
        sampling_steps=5,
        sample_batch=4,
    )
    pos, _, _, batch, _, _ = inputs()
    numbers = torch.tensor([1.0, 6.0, 7.0, 8.0, 9.0])[torch.randint(0, 5, (len(batch),))]
    x = torch.zeros(len(SIZES), 29, 4)
    for i, n in enumerate(SIZES):
        x[i, :n] = torch.cat([pos[batch == i], numbers[batch == i, None]], 1)
    loss = gen.loss(x, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and net.egnn.embedding.weight.grad.abs().sum() > 0
    designs, _ = gen.sample(4, torch.Generator().manual_seed(0))
    sizes = (designs[..., 3] > 0).sum(1)
    assert designs.shape == (4, 29, 4) and set(sizes.tolist()) <= {5, 9}
    assert set(designs[..., 3].unique().tolist()) <= {0, 1, 6, 7, 8, 9}
    assert torch.isfinite(designs).all()
