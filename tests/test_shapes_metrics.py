"""PointFlow-protocol metrics: CD and EMD known answers, MMD/COV/1-NNA on distributions with a
known answer, the pruned EMD search against the full matrix, bad inputs and the CLI."""

import itertools
import json

import numpy as np
import pytest
import torch

from rewarddiff import UserError
from shapes.__main__ import main
from shapes.metrics import (
    compute_all_metrics,
    pairwise_cd,
    pairwise_emd,
    protocol_metrics,
    sinkhorn_emd,
)

KEYS = {"mmd_cd", "cov_cd", "nna_cd", "mmd_emd", "cov_emd", "nna_emd", "emd_method",
        "emd_points", "num_points", "n_generated", "n_reference"}  # fmt: skip


def blobs(n: int, points: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """(n, points, 3) float32: points on ellipsoids with radii uniform in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n, points, 3))
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    radii = rng.uniform(0.5, 1.5, (n, 1, 3))
    return (directions * radii + [shift, 0.0, 0.0]).astype(np.float32)


def brute_force_cd(x: np.ndarray, y: np.ndarray) -> float:
    squared = ((x[:, None] - y[None]) ** 2).sum(-1)
    return squared.min(1).mean() + squared.min(0).mean()


# ----- Chamfer distance --------------------------------------------------------------------------
def test_cd_known_answers_and_symmetry():
    a, b = blobs(3, 50, seed=0), blobs(4, 50, seed=1)
    assert np.allclose(np.diag(pairwise_cd(a, a)), 0)
    v = np.array([0.1, -0.2, 0.3])
    single = pairwise_cd(np.zeros((1, 1, 3)), v[None, None])
    assert single[0, 0] == pytest.approx(2 * v @ v)
    # a unit grid shifted by |v| < 1/2: every point's nearest neighbour is its shifted copy
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3), -1).reshape(1, -1, 3)
    assert pairwise_cd(grid, grid + v)[0, 0] == pytest.approx(2 * v @ v, rel=1e-6)
    ab = pairwise_cd(a, b)
    assert ab.shape == (3, 4) and np.allclose(ab, pairwise_cd(b, a).T)
    expected = [[brute_force_cd(x, y) for y in b] for x in a]
    assert np.allclose(ab, expected, rtol=1e-5)


def test_torch_chamfer_matches_the_kd_trees(monkeypatch):
    """The batched torch path (CUDA's) run on the CPU, in blocks smaller than one row of pairs,
    equals the k-d tree path, and whole-metric results agree."""
    from shapes import metrics

    a, b = blobs(3, 40, seed=0), blobs(5, 40, seed=1, shift=0.5)
    monkeypatch.setattr(metrics, "CHAMFER_CHUNK", 2 * 40 * 40)  # two pairs per block
    for power in (1, 2):
        torch_path = metrics.directed_nn_torch(a, b, power, "cpu")
        assert np.allclose(torch_path, metrics._directed_nn(a, b, power, None), rtol=1e-5)
    union = np.concatenate([a, b])
    expected = [[brute_force_cd(x, y) for y in union] for x in union]
    directed = metrics.directed_nn_torch(union, union, 2, "cpu")
    assert np.allclose(directed + directed.T, expected, rtol=1e-5, atol=1e-9)


# ----- earth mover's distance ----------------------------------------------------------------
def test_emd_exact_hand_computed():
    # CD is 0 (every point has a copy in the other set) but one point must travel 6: EMD = 6 / 3
    x = np.array([[[0, 0, 0], [0, 0, 0], [6, 0, 0]]], np.float32)
    y = np.array([[[0, 0, 0], [6, 0, 0], [6, 0, 0]]], np.float32)
    assert pairwise_cd(x, y)[0, 0] == 0
    assert pairwise_emd(x, y, points=3)[0, 0] == pytest.approx(2.0)
    # 3-4-5 triangle: matching (0,0)→(1,0) and (4,0)→(4,3) costs (1 + 3) / 2, the other (5 + 3) / 2
    x = np.array([[[0, 0, 0], [4, 0, 0]]], np.float32)
    y = np.array([[[4, 3, 0], [1, 0, 0]]], np.float32)
    assert pairwise_emd(x, y, points=2)[0, 0] == pytest.approx(2.0)


def test_emd_exact_is_the_best_permutation_and_permutation_invariant():
    a, b = blobs(2, 6, seed=2), blobs(2, 6, seed=3)
    emd = pairwise_emd(a, b, points=6)
    for i, j in itertools.product(range(2), range(2)):
        best = min(
            np.linalg.norm(a[i] - b[j][list(p)], axis=1).mean()
            for p in itertools.permutations(range(6))
        )
        assert emd[i, j] == pytest.approx(best, rel=1e-5)
    rng = np.random.default_rng(0)
    shuffled = np.stack([x[rng.permutation(6)] for x in b])
    assert np.allclose(pairwise_emd(a, shuffled, points=6), emd)


def test_sinkhorn_is_an_upper_bound_close_to_exact():
    a, b = blobs(6, 64, seed=4), blobs(6, 64, seed=5)
    exact = np.array([pairwise_emd(x[None], y[None], points=64)[0, 0] for x, y in zip(a, b)])
    approx = sinkhorn_emd(torch.tensor(a), torch.tensor(b)).numpy()
    assert (approx >= exact * (1 - 1e-5)).all()  # a feasible plan, up to float32 rounding
    assert (approx <= exact * 1.05).all()  # ε = 0.2 % of the largest distance: within 5 %
    matrix = pairwise_emd(a[:2], b[:3], method="sinkhorn", points=64)
    assert matrix.shape == (2, 3)
    assert (matrix >= pairwise_emd(a[:2], b[:3], points=64) * (1 - 1e-5)).all()


def test_pruned_emd_search_gives_the_full_matrix_metrics():
    generated = np.concatenate([blobs(8, 32, seed=6), blobs(4, 32, seed=7, shift=0.5)])
    reference = blobs(10, 32, seed=8)
    union = np.concatenate([generated, reference])
    full = protocol_metrics(pairwise_emd(union, union, points=32), len(generated))
    result = compute_all_metrics(generated, reference, emd_points=32)
    assert (result["mmd_emd"], result["cov_emd"], result["nna_emd"]) == pytest.approx(full)
    assert result["emd_pairs_solved"] < result["emd_pairs_total"] == 22 * 21 // 2


# ----- MMD, COV and 1-NNA --------------------------------------------------------------------
def test_same_distribution_is_indistinguishable_disjoint_is_not():
    """Two independent samples of 40 shapes: 1-NNA is a mean of 80 near-independent coin flips
    (sd √(0.25/80) ≈ 0.056), so |1-NNA − 0.5| < 0.15 (2.7 sd); each generated shape picks its
    nearest reference about at random, covering about 1 − 1/e ≈ 0.63 of them. Shifted by 3 along
    x (centroids 3 apart; two shapes of one kind differ by at most a radius difference < 1 per
    point), every shape's nearest neighbour is of its own kind."""
    reference = blobs(40, 64, seed=10)
    same = compute_all_metrics(blobs(40, 64, seed=11), reference, emd_points=64)
    apart = compute_all_metrics(blobs(40, 64, seed=11, shift=3.0), reference, emd_points=64)
    assert KEYS <= set(same)
    for d in ("cd", "emd"):
        assert abs(same[f"nna_{d}"] - 0.5) < 0.15 and same[f"cov_{d}"] > 0.45
        assert apart[f"nna_{d}"] == 1.0
        assert apart[f"mmd_{d}"] > 5 * same[f"mmd_{d}"]
    assert same["emd_method"] == "exact" and same["emd_points"] == same["num_points"] == 64


def test_mode_collapse_covers_one_reference():
    reference = blobs(20, 32, seed=12)
    rng = np.random.default_rng(0)
    collapsed = reference[3] + 1e-3 * rng.normal(size=(10, 32, 3)).astype(np.float32)
    result = compute_all_metrics(collapsed, reference, emd_points=32)
    assert result["cov_cd"] == result["cov_emd"] == 1 / 20


# ----- bad inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("generated", "reference", "message"),
    [
        (np.zeros((2, 64, 3)), np.zeros((2, 32, 3)),
         "generated has 64 points per shape but reference has 32"),
        (np.zeros((2, 8, 2)), np.zeros((2, 8, 3)),
         r"generated: expected points of shape \(n, N, 3\), got \(2, 8, 2\)"),
        (np.zeros((2, 8, 3)), np.zeros((0, 8, 3)), "reference: expected points of shape"),
        (np.zeros((8, 3)), np.zeros((2, 8, 3)), "generated: expected points of shape"),
        (np.zeros((2, 8, 3)), np.full((2, 8, 3), np.nan),
         "reference: 48 point coordinates are NaN"),
    ],
)  # fmt: skip
def test_malformed_sets_are_user_errors(generated, reference, message):
    with pytest.raises(UserError, match=message):
        compute_all_metrics(generated, reference)


def test_bad_emd_options_are_user_errors():
    sets = blobs(2, 8, seed=0)
    with pytest.raises(UserError, match="unknown EMD method 'auction'"):
        compute_all_metrics(sets, sets, emd_method="auction")
    with pytest.raises(UserError, match="at least 1 point"):
        pairwise_emd(sets, sets, points=0)
    with pytest.raises(UserError, match="torch device 'nowhere'"):
        pairwise_emd(sets, sets, method="sinkhorn", device="nowhere")


# ----- CLI -----------------------------------------------------------------------------------
def test_cli_round_trip(tmp_path, capsys):
    np.savez(tmp_path / "g.npz", points=blobs(6, 48, seed=13))
    np.savez(tmp_path / "r.npz", points=blobs(5, 48, seed=14))
    files = ["--generated", str(tmp_path / "g.npz"), "--reference", str(tmp_path / "r.npz")]
    assert main(["metrics", *files, "--emd-points", "32"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result) and result["emd_method"] == "exact"
    assert (result["emd_points"], result["num_points"]) == (32, 48)
    assert (result["n_generated"], result["n_reference"]) == (6, 5)
    assert main(["metrics", *files, "--emd", "sinkhorn", "--emd-points", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["emd_method"] == "sinkhorn"


def test_cli_bad_files_are_one_line_errors(tmp_path, capsys):
    reference = str(tmp_path / "r.npz")
    np.savez(reference, points=blobs(5, 48, seed=14))
    np.savez(tmp_path / "short.npz", points=blobs(5, 40, seed=14))
    np.savez(tmp_path / "nokey.npz", xyz=blobs(5, 48, seed=14))
    bad = blobs(5, 48, seed=14)
    bad[2, 7, 1] = np.inf
    np.savez(tmp_path / "inf.npz", points=bad)
    for name, expected in [
        ("nokey.npz", "no array 'points'"),
        ("inf.npz", "1 point coordinates are NaN or infinite (first at index (2, 7, 1))"),
        ("short.npz", "generated has 40 points per shape but reference has 48"),
        ("missing.npz", "file not found"),
    ]:
        generated = str(tmp_path / name)
        assert main(["metrics", "--generated", generated, "--reference", reference]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err
