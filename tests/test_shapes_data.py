"""Shape data: procedural generator (determinism, labels, surface sampling), PC15k and mesh
loaders with their bad-input errors, normalisation, point-set files and renders."""

import json

import numpy as np
import pytest

from rewarddiff import UserError
from shapes import data
from shapes.io import read_npz, read_ply, write_npz, write_ply, write_plys
from shapes.render import SIDE_VIEW, View, render_grid


# ----- procedural generator ------------------------------------------------------------------
def test_generate_is_deterministic_by_seed():
    a, b = data.generate(3, seed=0, points=300), data.generate(3, seed=0, points=300)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.family, b.family)
    assert all(np.array_equal(a.labels[k], b.labels[k], equal_nan=True) for k in a.labels)
    c = data.generate(3, seed=1, points=300)
    assert not np.allclose(a.points, c.points)
    assert not np.allclose(a.labels["height"], c.labels["height"])
    # shape i of a family does not depend on the other counts nor on the point count
    d = data.generate({"chair": 5}, seed=0, points=100)
    assert np.array_equal(d.labels["seat_height"][:3], a.labels["seat_height"][:3])


def test_family_counts_and_label_ranges():
    counts = {"chair": 40, "table": 20, "lamp": 10, "airplane": 10}
    shapes = data.generate(counts, seed=2, points=1000)
    assert shapes.points.shape == (80, 1000, 3) and shapes.points.dtype == np.float32
    assert shapes.families == list(data.FAMILIES)
    assert np.bincount(shapes.family).tolist() == [40, 20, 10, 10]
    labels, chair = shapes.labels, shapes.family == 0
    assert np.array_equal(labels["family"], shapes.family.astype(np.float32))
    for name in ("height", "width", "depth"):
        assert np.isfinite(labels[name]).all() and (labels[name] > 0.1).all()
    assert np.isfinite(labels["seat_height"][chair]).all()
    assert np.isnan(labels["seat_height"][~chair]).all()
    assert labels["seat_height"][chair].min() >= 0.40 and labels["seat_height"][chair].max() <= 0.50
    assert set(np.unique(labels["num_legs"][shapes.family <= 1])) == {1.0, 4.0}
    assert (labels["back_tilt"][chair] >= 0).all() and (labels["back_tilt"][chair] <= 20).all()
    assert ((labels["height"] > 0.65) & (labels["height"] < 1.1))[chair].all()
    # standing on y = 0, as tall as the label says, symmetric bounding box about x = 0
    y = shapes.points[..., 1]
    assert np.abs(y.min(1)).max() < 0.02 and (y.min(1) >= -1e-6).all()
    assert (y.max(1) <= labels["height"] + 1e-5).all()
    assert (y.max(1) > 0.9 * labels["height"]).all()  # thin tops (fin tips) are sparse
    x = shapes.points[..., 0]
    assert np.abs(x.max(1) + x.min(1)).max() < 0.05 * labels["width"].max()


def test_generate_rejects_unknown_family():
    with pytest.raises(UserError, match="unknown shape families"):
        data.generate({"sofa": 2})


def test_box_samples_lie_on_faces_with_area_uniform_density():
    size = np.array([2.0, 1.0, 0.5])
    points = data.sample_surface(data.box((1, 2, 3), size), 40_000, np.random.default_rng(0))
    scaled = np.abs(points - (1, 2, 3)) / (size / 2)
    assert scaled.max() < 1 + 1e-9
    on_face = np.isclose(scaled, 1.0, atol=1e-9)
    assert on_face.any(1).all()  # every point on some face
    # fraction of points on the two faces normal to each axis ∝ their area
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    expected = areas / areas.sum()
    observed = on_face.mean(0)
    assert np.allclose(observed, expected, atol=4 * np.sqrt(expected / 40_000))


def test_frustum_and_ellipsoid_samples_lie_on_their_surfaces():
    rng = np.random.default_rng(1)
    cylinder = data.frustum((0, 0, 0), (0, 0, 2), 0.5, 0.5, caps=False)  # along z
    points = data.sample_surface(cylinder, 5000, rng)
    radius = np.hypot(points[:, 0], points[:, 1])
    assert radius.max() <= 0.5 + 1e-9 and radius.min() > 0.5 * np.cos(np.pi / data.SEGMENTS)
    assert points[:, 2].min() >= -1e-9 and points[:, 2].max() <= 2 + 1e-9
    assert abs((points[:, 2] < 1).mean() - 0.5) < 0.03  # uniform along the side
    radii = np.array([0.3, 0.6, 0.9])
    points = data.sample_surface(data.ellipsoid((1, 1, 1), radii), 5000, rng)
    level = (((points - 1) / radii) ** 2).sum(1)
    assert level.max() <= 1 + 1e-9 and level.min() > 0.95  # on the inscribed polyhedron


def test_merged_meshes_are_sampled_in_proportion_to_area_and_mirrors_keep_orientation():
    small = data.box((-2, 0, 0), (1, 1, 1))
    large = data.box((2, 0, 0), (2, 2, 2))  # four times the area
    points = data.sample_surface(data.merge([small, large]), 20_000, np.random.default_rng(2))
    assert abs((points[:, 0] > 0).mean() - 0.8) < 0.015
    mirrored = large.mirrored_x()
    assert np.allclose(mirrored.vertices[:, 0].mean(), -2)
    for mesh in (large, mirrored):  # outward normals: positive signed volume
        a, b, c = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
        assert np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6 == pytest.approx(8.0)


def test_subsample_takes_distinct_stored_points():
    shapes = data.generate({"lamp": 2}, seed=0, points=500)
    sub = data.subsample(shapes.points, 100, seed=3)
    assert sub.shape == (2, 100, 3)
    for full, part in zip(shapes.points, sub):
        rows = {tuple(p) for p in full}
        assert all(tuple(p) in rows for p in part) and len({tuple(p) for p in part}) == 100
    with pytest.raises(UserError, match="cannot subsample 600"):
        data.subsample(shapes.points, 600)


# ----- ShapeNetCore.v2.PC15k -------------------------------------------------------------------
def _pc15k_tree(root, points=50):
    rng = np.random.default_rng(0)
    for synset in ("03001627", "02691156"):
        for split in ("train", "test"):
            folder = root / synset / split
            folder.mkdir(parents=True)
            for i in range(3):
                np.save(folder / f"model{i}.npy", rng.normal(size=(points, 3)).astype(np.float32))


def test_pc15k_layout_loads_with_names_and_limits(tmp_path):
    _pc15k_tree(tmp_path)
    shapes = data.load_pc15k(tmp_path, ["03001627", "02691156"], "train", max_per_synset=2)
    assert shapes.points.shape == (4, 50, 3) and shapes.families == ["chair", "airplane"]
    assert shapes.family.tolist() == [0, 0, 1, 1]
    expected = np.load(tmp_path / "02691156" / "train" / "model1.npy")
    assert np.array_equal(shapes.points[3], expected)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((50, 3), np.nan), "NaN or infinite"),
        (np.array([[0, 0, np.inf]] * 50), "NaN or infinite"),
        (np.zeros((50, 4)), r"expected points of shape \(N, 3\), got \(50, 4\)"),
        (np.zeros((2, 50, 3)), r"got \(2, 50, 3\)"),
        (np.zeros((40, 3)), "40 points, the files before have 50"),
    ],
)
def test_pc15k_bad_point_file_is_named(tmp_path, array, message):
    _pc15k_tree(tmp_path)
    bad = tmp_path / "03001627" / "train" / "model2.npy"
    np.save(bad, array)
    with pytest.raises(UserError, match=message) as err:
        data.load_pc15k(tmp_path, ["03001627"], "train")
    assert str(bad) in str(err.value)


def test_pc15k_missing_split_and_unreadable_file(tmp_path):
    _pc15k_tree(tmp_path)
    with pytest.raises(UserError, match="val: not a directory"):
        data.load_pc15k(tmp_path, ["03001627"], "val")
    with pytest.raises(UserError, match="unknown PC15k split"):
        data.load_pc15k(tmp_path, ["03001627"], "training")
    bad = tmp_path / "02691156" / "test" / "model0.npy"
    bad.write_text("not numpy")
    with pytest.raises(UserError, match=r"not a \.npy file") as err:
        data.load_pc15k(tmp_path, ["02691156"], "test")
    assert str(bad) in str(err.value)


# ----- meshes -------------------------------------------------------------------------------------
CUBE_VERTICES = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
CUBE_FACES = [
    (0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
    (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3),
]  # fmt: skip


def _write_ply(path, vertices, faces):
    lines = ["ply", "format ascii 1.0", f"element vertex {len(vertices)}"]
    lines += [f"property float {axis}" for axis in "xyz"]
    lines += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    lines += [" ".join(map(str, v)) for v in vertices]
    lines += ["3 " + " ".join(map(str, f)) for f in faces]
    path.write_text("\n".join(lines) + "\n")


def _write_obj(path, vertices, faces):
    lines = [f"v {x} {y} {z}" for x, y, z in vertices]
    lines += ["f " + " ".join(str(i + 1) for i in face) for face in faces]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("writer, suffix", [(_write_ply, ".ply"), (_write_obj, ".obj")])
def test_cube_mesh_points_lie_on_its_surface(tmp_path, writer, suffix):
    path = tmp_path / f"cube{suffix}"
    writer(path, CUBE_VERTICES, CUBE_FACES)
    points = data.load_mesh(path, num_points=6000, seed=1)
    assert points.shape == (6000, 3) and points.dtype == np.float32
    assert points.min() >= 0 and points.max() <= 1
    on_face = np.isclose(points, 0, atol=1e-6) | np.isclose(points, 1, atol=1e-6)
    assert on_face.any(1).all()
    assert np.allclose(on_face.mean(0), 1 / 3, atol=0.03)  # six equal faces, equal shares
    assert np.array_equal(points, data.load_mesh(path, num_points=6000, seed=1))


@pytest.mark.parametrize("writer, suffix", [(_write_ply, ".ply"), (_write_obj, ".obj")])
@pytest.mark.parametrize(
    "vertices, faces, message",
    [
        (CUBE_VERTICES, [], "empty mesh \\(no faces\\)"),
        ([(0, 0, 0), (1, 0, 0), (0, float("nan"), 0)], [(0, 1, 2)], "NaN or infinite"),
        ([(0, 0, 0), (1, 0, 0), (0, float("inf"), 0)], [(0, 1, 2)], "NaN or infinite"),
        ([(0, 0, 0), (1, 0, 0), (2, 0, 0)], [(0, 1, 2)], "zero surface area"),
        (  # three triangles on one edge (a "book" with three pages)
            [(0, 0, 0), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1)],
            [(0, 1, 2), (0, 1, 3), (0, 1, 4)],
            r"non-manifold mesh: 1 edge\(s\) shared by more than two faces .*by 3 faces",
        ),
    ],
)
def test_bad_meshes_are_named(tmp_path, vertices, faces, message, writer, suffix):
    path = tmp_path / f"bad{suffix}"
    writer(path, vertices, faces)
    with pytest.raises(UserError, match=message) as err:
        data.load_mesh(path, num_points=10)
    assert str(path) in str(err.value)


def test_missing_mesh_is_named(tmp_path):
    with pytest.raises(UserError, match="mesh file not found"):
        data.load_mesh(tmp_path / "nothing.obj")


# ----- normalisation ---------------------------------------------------------------------------
def test_dataset_normalization_round_trips_through_json():
    points = data.generate({"chair": 4, "table": 4}, seed=0, points=400).points
    norm = data.Normalization.dataset(points)
    assert norm.shift.shape == (3,) and norm.scale.shape == ()
    flat = points.reshape(-1, 3).astype(np.float64)
    assert np.allclose(norm.shift, flat.mean(0)) and np.isclose(norm.scale, flat.reshape(-1).std())
    normalised = norm.apply(points)
    assert np.allclose(normalised.reshape(-1, 3).mean(0), 0, atol=1e-5)
    restored = data.Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert np.allclose(restored.invert(normalised), points, atol=1e-6)


def test_unit_box_normalization_fits_each_shape_in_the_unit_cube():
    points = data.generate({"airplane": 3, "lamp": 3}, seed=0, points=400).points
    norm = data.Normalization.unit_box(points)
    assert norm.shift.shape == (6, 3) and norm.scale.shape == (6,)
    boxed = norm.apply(points)
    assert np.allclose(np.abs(boxed).max((1, 2)), 1, atol=1e-6)
    assert np.allclose(boxed.max(1) + boxed.min(1), 0, atol=1e-6)  # centred boxes
    assert np.allclose(norm.invert(boxed), points, atol=1e-6)


# ----- point-set files -----------------------------------------------------------------------
def test_npz_and_ply_round_trips_are_exact(tmp_path):
    points = data.generate({"chair": 3}, seed=4, points=256).points
    scores = {"height": np.array([1.0, np.nan, 3.0]), "symmetry": np.arange(3.0)}
    write_npz(tmp_path / "designs.npz", points, scores)
    back, back_scores = read_npz(tmp_path / "designs.npz")
    assert back.dtype == np.float32 and np.array_equal(back, points)
    assert set(back_scores) == set(scores)
    assert np.array_equal(back_scores["height"], scores["height"], equal_nan=True)
    paths = write_plys(tmp_path / "ply", points)
    assert [p.name for p in paths] == ["design_00000.ply", "design_00001.ply", "design_00002.ply"]
    for path, cloud in zip(paths, points):
        assert np.array_equal(read_ply(path), cloud)
    assert not list(tmp_path.glob("**/*.tmp"))


def test_ascii_ply_with_faces_reads_its_vertices(tmp_path):
    _write_ply(tmp_path / "cube.ply", CUBE_VERTICES, CUBE_FACES)
    assert np.array_equal(read_ply(tmp_path / "cube.ply"), np.array(CUBE_VERTICES, np.float32))


def test_bad_point_files_are_named(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, pts=np.zeros((2, 5, 3)))
    with pytest.raises(UserError, match=r"no array 'points' \(found: pts\)"):
        read_npz(path)
    np.savez(path, points=np.zeros((5, 3)))
    with pytest.raises(UserError, match=r"expected points of shape \(n, N, 3\), got \(5, 3\)"):
        read_npz(path)
    bad = np.zeros((2, 5, 3))
    bad[1, 2, 0] = np.nan
    np.savez(path, points=bad)
    with pytest.raises(UserError, match=r"1 point coordinates are NaN.*\(1, 2, 0\)") as err:
        read_npz(path)
    assert str(path) in str(err.value)
    np.savez(path, points=np.zeros((2, 5, 3)), height=np.zeros(3))
    with pytest.raises(UserError, match="score 'height' has shape"):
        read_npz(path)
    with pytest.raises(UserError, match="NaN"):  # nothing half-written either
        write_npz(tmp_path / "new.npz", bad)
    assert not (tmp_path / "new.npz").exists()
    with pytest.raises(UserError, match="file not found"):
        read_ply(tmp_path / "none.ply")
    (tmp_path / "empty.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(UserError, match="empty.ply"):
        read_ply(tmp_path / "empty.ply")
    with pytest.raises(UserError, match=r"got \(5, 2\)"):
        write_ply(tmp_path / "flat.ply", np.zeros((5, 2)))


# ----- renders -----------------------------------------------------------------------------------
def test_render_grid_writes_a_png(tmp_path):
    points = data.generate({"chair": 2, "lamp": 1}, seed=0, points=300).points.copy()
    points[2, :10] = np.nan  # non-finite points are left out, not fatal
    path = render_grid(points, tmp_path / "grid.png", titles=["a", "b", "c"], cols=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="2 titles for 3 point sets"):
        render_grid(points, tmp_path / "x.png", titles=["a", "b"])


def test_render_grid_draws_each_set_once_per_view(tmp_path):
    from PIL import Image

    points = data.generate({"chair": 2}, seed=0, points=300).points
    one = render_grid(points, tmp_path / "one.png", cols=2)
    two = render_grid(points, tmp_path / "two.png", cols=2, view=(View(), SIDE_VIEW))
    (w1, h1), (w2, h2) = Image.open(one).size, Image.open(two).size
    assert (w2, h2) == (2 * w1, h1)  # two panels per set, side by side
