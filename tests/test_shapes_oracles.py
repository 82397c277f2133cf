"""Geometric shape oracles: known values on constructed point sets, torch versions against
numpy, seat height against the generator's labels, NaN for unscorable designs."""

import numpy as np
import pytest
import torch

import shapes.oracles as oracles
from rewarddiff import UserError
from rewarddiff.oracles.registry import available, make_oracle
from shapes import data

NAMES = ["symmetry", "stability", "height", "aspect:hw", "aspect:dw", "compactness", "seat_height"]


def _surface(*meshes, n=2048, seed=0):
    """(n, 3) points on the union of ``meshes``, lifted to stand on y = 0."""
    mesh = data.merge(list(meshes)).lifted_to_floor()
    return data.sample_surface(mesh, n, np.random.default_rng(seed))


def _box(size, rotation=None, center=(0, 0, 0)):
    return data.box(np.asarray(center, float), np.asarray(size, float), rotation)


@pytest.fixture(scope="module")
def generated():
    return data.generate(4, seed=5, points=512)


# ----- symmetry --------------------------------------------------------------------------------
def test_symmetry_error_is_zero_for_a_mirror_symmetric_set_and_grows_with_asymmetry():
    half = np.random.default_rng(0).uniform((0, 0, 0), (1, 1, 1), size=(500, 3))
    mirror = half * (-1, 1, 1)
    symmetric = np.concatenate([half, mirror]) + (3.0, 0, 0)  # off-centre: x is centred first
    shifted = [np.concatenate([half, mirror + (0, 0, dz)]) for dz in (0.05, 0.1, 0.2)]
    errors = oracles.symmetry_error(np.stack([symmetric, *shifted]))
    assert errors[0] < 1e-12
    assert 0.01 < errors[1] < errors[2] < errors[3]
    # generated shapes are symmetric up to sampling noise, far below a visibly skewed one
    chairs = data.generate({"chair": 3}, seed=0, points=1000).points
    skewed = chairs[0] + np.where(chairs[0][:, :1] > 0, (0, 0.1, 0), (0, 0, 0))
    *noise, skew = oracles.symmetry_error(np.stack([*chairs, skewed]))
    assert max(noise) < 0.02 and skew > 2 * max(noise)


def test_symmetry_torch_matches_numpy_with_finite_gradients_at_zero_distance():
    half = np.random.default_rng(1).uniform((0, 0, 0), (1, 1, 1), size=(200, 3))
    symmetric = np.concatenate([half, half * (-1, 1, 1)])
    on_plane = symmetric.copy()
    on_plane[:20, 0] = 0  # points that are their own mirror image
    points = np.stack([symmetric, on_plane, np.random.default_rng(2).normal(size=(400, 3))])
    x = torch.tensor(points, requires_grad=True)
    values = oracles.symmetry_error_torch(x)
    assert np.allclose(values.detach().numpy(), oracles.symmetry_error(points), atol=1e-10)
    values.sum().backward()
    assert torch.isfinite(x.grad).all()


# ----- stability -------------------------------------------------------------------------------
def test_box_standing_on_its_base_is_stable_with_the_expected_margin():
    points = _surface(_box((1.0, 2.0, 0.6)))
    margin = oracles.stability_margin(points[None])[0]
    # centre of mass over the middle of a 1 × 0.6 footprint: 0.3 to the nearest edge
    assert margin == pytest.approx(0.3 / np.linalg.norm((1.0, 2.0, 0.6)), abs=0.01)


def test_overhanging_and_tilted_shapes_tip_over():
    column = _box((0.1, 1.0, 0.1), center=(0, 0.5, 0))
    arm = _box((1.0, 0.05, 0.1), center=(0.5, 1.0, 0))  # far heavier than the small foot allows
    crane = _surface(column, arm)
    tilted = _surface(_box((1, 1, 1), data.rotation("z", 30)))  # resting on one edge
    margins = oracles.stability_margin(np.stack([crane, tilted]))
    assert (margins < -0.02).all()


def test_shape_standing_on_a_line_has_no_positive_margin():
    rng = np.random.default_rng(3)
    sheet = np.stack([rng.uniform(-0.5, 0.5, 1000), rng.uniform(0, 1, 1000), np.zeros(1000)], 1)
    sheet[:2, 1] = 0  # make sure of floor contact at the ends
    sheet[:2, 0] = (-0.5, 0.5)
    margin = oracles.stability_margin(sheet[None])[0]
    assert -1e-6 < margin <= 0
    assert len(oracles.support_polygon(sheet)) == 2


def test_generated_furniture_stands(generated):
    margins = oracles.stability_margin(generated.points)
    furniture = generated.family <= 2  # chairs, tables, lamps
    assert (margins[furniture] > 0).all()


# ----- extents and compactness ---------------------------------------------------------------
def test_height_and_aspect_ratios_of_a_box():
    points = _surface(_box((1.0, 2.0, 0.6)), n=4000)[None]
    assert oracles.height(points)[0] == pytest.approx(2.0, rel=0.01)
    assert oracles.aspect_ratio(points, "hw")[0] == pytest.approx(2.0, rel=0.02)
    assert oracles.aspect_ratio(points, "dw")[0] == pytest.approx(0.6, rel=0.02)


def test_height_matches_the_label_of_generated_furniture():
    furniture = data.generate({"chair": 10, "table": 10, "lamp": 10}, seed=6, points=2048)
    ratio = oracles.height(furniture.points) / furniture.labels["height"]
    assert np.allclose(ratio, 1, atol=0.02)


def test_compactness_of_a_cube_surface_an_l_shape_and_a_flat_set():
    cube = _surface(_box((1, 1, 1)))
    ell = _surface(
        _box((1, 0.1, 0.1), center=(0.5, 0.05, 0)), _box((0.1, 1, 0.1), center=(0.05, 0.5, 0))
    )
    values = oracles.compactness(np.stack([cube, ell]))
    assert values[0] == pytest.approx(1.0, abs=0.04)
    assert values[1] < 0.6
    flat = cube * (1, 0, 1)
    assert np.isnan(oracles.compactness(flat[None])[0])


# ----- torch versions --------------------------------------------------------------------------
TORCH_PAIRS = [
    (oracles.symmetry_error, oracles.symmetry_error_torch),
    (oracles.stability_margin, oracles.stability_margin_torch),
    (oracles.height, oracles.height_torch),
    (lambda p: oracles.aspect_ratio(p, "hw"), lambda x: oracles.aspect_ratio_torch(x, "hw")),
    (lambda p: oracles.aspect_ratio(p, "dw"), lambda x: oracles.aspect_ratio_torch(x, "dw")),
    (oracles.compactness, oracles.compactness_torch),
]


@pytest.mark.parametrize("numpy_fn, torch_fn", TORCH_PAIRS)
def test_torch_versions_match_numpy_and_have_finite_gradients(generated, numpy_fn, torch_fn):
    points = generated.points.astype(np.float64)
    x = torch.tensor(points, requires_grad=True)
    values = torch_fn(x)
    assert values.shape == (len(points),)
    assert np.allclose(values.detach().numpy(), numpy_fn(points), rtol=1e-7, atol=1e-10)
    values.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    x32 = torch.tensor(generated.points, requires_grad=True)  # float32 works too
    torch_fn(x32).sum().backward()
    assert torch.isfinite(x32.grad).all()


# ----- seat height -----------------------------------------------------------------------------
def test_seat_height_estimate_matches_the_generator_label():
    chairs = data.generate({"chair": 60}, seed=11, points=2048)
    estimate = oracles.seat_height(chairs.points)
    error = np.abs(estimate - chairs.labels["seat_height"])
    assert error.max() < 0.015  # metres: within 1.5 cm on every chair


# ----- registry and the NaN contract -----------------------------------------------------------
def test_registered_oracles_and_their_arguments():
    registered = available("shape")
    assert {"symmetry", "stability", "height", "aspect", "compactness", "seat_height"} <= set(
        registered
    )
    for name in NAMES:
        oracle = make_oracle("shape", name)
        assert oracle.info.name == name and oracle.info.domain == "shape"
        assert oracle.info.differentiable == (oracle.torch_fn is not None)
    assert make_oracle("shape", "symmetry").info.direction == "minimize"
    assert make_oracle("shape", "stability").info.direction == "maximize"
    with pytest.raises(UserError, match="aspect needs hw or dw"):
        make_oracle("shape", "aspect")
    with pytest.raises(UserError, match="takes no argument"):
        make_oracle("shape", "height:2")


@pytest.mark.parametrize("name", NAMES)
def test_unscorable_designs_are_nan_not_exceptions(generated, name):
    points = generated.points[:3].copy()
    points[1, 7, 2] = np.nan
    oracle = make_oracle("shape", name)
    values = oracle(points)
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    ragged = [points[0], points[2][:300], np.zeros((5, 2))]  # a list of designs of any size
    values = oracle(ragged)
    assert np.isfinite(values[:2]).all() and np.isnan(values[2])
    if oracle.info.differentiable:
        scores = oracle.torch_score(torch.tensor(points))
        assert torch.isnan(scores[1]) and torch.isfinite(scores[[0, 2]]).all()
