"""Point-set networks: permutation equivariance / invariance, independent sets in a batch, the
zero-initialised condition, the neighbour search, and that both networks learn toy tasks."""

import dataclasses
import math

import pytest
import torch
from toys import seeded

from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.gaussian_generator import GaussianGenerator, VectorLayout
from rewarddiff.generator import load_unconditional_weights
from shapes import model
from shapes.model import (
    PointClassifier,
    PointClassifierConfig,
    PointDenoiser,
    PointDenoiserConfig,
    knn,
)

SMALL = {"hidden": 32, "layers": 2, "k": 8}


def randomise_condition(net: PointDenoiser) -> None:
    """Give the (zero-initialised) condition embedding weights that change the output."""
    with torch.no_grad():
        for p in net.condition.parameters():
            p.normal_(0, 0.5)


def circles(num: int, points: int, g: torch.Generator) -> torch.Tensor:
    """Unit circles in the xy-plane (num, points, 3), points at random angles."""
    angle = 2 * math.pi * torch.rand(num, points, generator=g)
    return torch.stack([angle.cos(), angle.sin(), torch.zeros_like(angle)], -1)


def spheres_and_boxes(num: int, points: int, g: torch.Generator):
    """Points on sphere surfaces (label 0) and cube surfaces (label 1) of random size:
    (2·num, points, 3) and labels (2·num,)."""
    sphere = torch.randn(num, points, 3, generator=g)
    sphere = sphere / sphere.norm(dim=-1, keepdim=True)
    box = 2 * torch.rand(num, points, 3, generator=g) - 1
    face = torch.randint(3, (num, points, 1), generator=g)
    side = torch.randint(2, (num, points, 1), generator=g) * 2.0 - 1
    box = box.scatter(-1, face, side)  # push one coordinate onto a face
    scale = 0.8 + 0.4 * torch.rand(2 * num, 1, 1, generator=g)
    x = torch.cat([sphere, box]) * scale
    return x, torch.cat([torch.zeros(num), torch.ones(num)]).long()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: see conftest.py


@pytest.mark.parametrize("condition", [None, "class", "value"])
def test_denoiser_permutation_equivariant(condition):
    torch.manual_seed(0)
    cfg = PointDenoiserConfig(
        **SMALL, num_labels=3 if condition == "class" else 0, value_condition=condition == "value"
    )
    net = PointDenoiser(cfg)
    label = None
    if condition is not None:
        randomise_condition(net)
        label = torch.tensor([0, 3]) if condition == "class" else torch.tensor([0.7, math.nan])
    x, t = torch.randn(2, 100, 3), torch.tensor([0.1, 0.9])
    perm = torch.stack([torch.randperm(100) for _ in range(2)])  # a different one per set
    rows = torch.arange(2)[:, None]
    out = net(x, t, label)
    assert out.shape == x.shape
    assert torch.allclose(net(x[rows, perm], t, label), out[rows, perm], atol=1e-5)


def test_classifier_permutation_invariant():
    torch.manual_seed(0)
    net = PointClassifier(PointClassifierConfig(**SMALL, num_outputs=3)).eval()
    x = torch.randn(2, 100, 3)
    shuffled = x[:, torch.randperm(100)]
    assert net(x).shape == (2, 3) and net.features(x).shape == (2, 32)
    assert torch.allclose(net(shuffled), net(x), atol=1e-5)
    assert torch.allclose(net.features(shuffled), net.features(x), atol=1e-5)


def test_sets_in_a_batch_do_not_interact():
    torch.manual_seed(0)
    net = PointDenoiser(PointDenoiserConfig(**SMALL, num_labels=2))
    randomise_condition(net)
    classifier = PointClassifier(PointClassifierConfig(**SMALL)).eval()
    x, t = torch.randn(2, 50, 3), torch.tensor([0.3, 0.3])
    other = x.clone()
    other[1] = torch.randn(50, 3)
    out = net(x, t, torch.tensor([0, 1]))
    changed = net(other, t, torch.tensor([0, 0]))  # set 1: other points and label
    assert torch.allclose(changed[0], out[0], atol=1e-6)
    assert not torch.allclose(changed[1], out[1], atol=1e-3)
    assert torch.allclose(classifier(other)[0], classifier(x)[0], atol=1e-6)


@pytest.mark.parametrize("num_labels", [3, 0])
def test_zero_condition_keeps_the_unconditional_function(num_labels):
    torch.manual_seed(0)
    pretrained = PointDenoiser(PointDenoiserConfig(**SMALL))
    assert pretrained.condition is None
    cfg = PointDenoiserConfig(**SMALL, num_labels=num_labels, value_condition=num_labels == 0)
    net = PointDenoiser(cfg)
    load_unconditional_weights(net, pretrained.state_dict())
    x, t = torch.randn(4, 40, 3), torch.rand(4)
    labels = torch.arange(4) if num_labels else torch.tensor([-1.0, 0.0, 2.5, math.nan])
    expected = pretrained(x, t)
    assert torch.equal(net(x, t, labels), expected)
    assert torch.equal(net(x, t, None), expected)


def test_knn_matches_a_full_sort_in_chunks(monkeypatch):
    x = torch.randn(3, 70, 3, generator=seeded(0))
    full = torch.cdist(x, x).argsort(-1)[..., :5]
    monkeypatch.setattr(model, "KNN_CHUNK", 3 * 70 * 4)  # 4 query points per chunk
    index = knn(x, 5)
    assert index.shape == (3, 70, 5)
    assert torch.equal(index.sort(-1).values, full.sort(-1).values)
    assert torch.equal(index[..., 0], torch.arange(70).expand(3, 70))  # itself first
    assert knn(x[:, :4], 16).shape == (3, 4, 4)  # k is capped at the set size


def test_gradients_in_the_inputs_are_finite():
    torch.manual_seed(0)
    classifier = PointClassifier(PointClassifierConfig(**SMALL, num_outputs=1))
    denoiser = PointDenoiser(PointDenoiserConfig(**SMALL))
    x = torch.randn(3, 60, 3, requires_grad=True)
    score = classifier(x)
    assert score.shape == (3,)
    (grad,) = torch.autograd.grad(score.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    (grad,) = torch.autograd.grad(denoiser(x, torch.rand(3)).pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_denoiser_trains_and_samples():
    torch.manual_seed(0)
    gen = GaussianGenerator(
        GaussianDiffusion(polynomial_schedule(100)),
        PointDenoiser(PointDenoiserConfig(**SMALL)),
        VectorLayout((64, 3)),
        sampling_steps=10,
    )
    g = seeded(0)
    data = circles(64, 64, g)
    held_out = circles(64, 64, seeded(1))

    def held_out_loss():
        with torch.no_grad():
            return sum(gen.loss(held_out, generator=seeded(i)).item() for i in range(4)) / 4

    before = held_out_loss()
    opt = torch.optim.Adam(gen.net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = gen.loss(data[torch.randint(64, (16,), generator=g)], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < 0.5 * before, (before, after)
    x, kl = gen.sample(4, generator=seeded(2))
    assert x.shape == (4, 64, 3) and kl is None and torch.isfinite(x).all()


def test_classifier_separates_spheres_from_boxes():
    torch.manual_seed(0)
    g = seeded(0)
    test_x, test_y = spheres_and_boxes(64, 128, seeded(1))
    net = PointClassifier(PointClassifierConfig(**SMALL, num_outputs=2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=70)
    for _ in range(70):
        x, y = spheres_and_boxes(16, 128, g)  # fresh shapes every step
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    with torch.no_grad():
        accuracy = (net.eval()(test_x).argmax(-1) == test_y).float().mean()
    assert accuracy > 0.9, accuracy


def test_configs_round_trip_and_validate():
    cfg = PointDenoiserConfig(hidden=64, layers=3, num_labels=4)
    assert PointDenoiserConfig.from_dict(cfg.to_dict() | {"other": 1}) == cfg
    classifier = PointClassifierConfig(num_outputs=1)
    assert PointClassifierConfig.from_dict(classifier.to_dict()) == classifier
    with pytest.raises(ValueError, match="divisible"):
        PointDenoiserConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="not both"):
        PointDenoiserConfig(num_labels=2, value_condition=True)
    # a state dict rebuilt from the saved config fits
    net = PointDenoiser(PointDenoiserConfig.from_dict(dataclasses.asdict(cfg)))
    net.load_state_dict(PointDenoiser(cfg).state_dict())
