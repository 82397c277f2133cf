"""Shape data as point sets (n, P, 3) float32.

* :func:`generate` — a procedural dataset: chairs, tables, lamps and airplanes assembled from
  parametric primitives (boxes, frusta — cylinders and cones — and ellipsoids), each primitive a
  triangle mesh, the assembled shape sampled uniformly by surface area. The generating
  parameters are kept as labels. Shape ``i`` of a family depends only on (seed, family, i).
* :func:`load_pc15k` — the ShapeNetCore.v2.PC15k layout ``<root>/<synset>/{train,val,test}/*.npy``.
* :func:`load_mesh` — PLY/OBJ meshes (read with trimesh), sampled uniformly by area.
* :class:`Normalization` — dataset mean/std (PointFlow/PVD/LION) or per-shape unit box.

Axes: y is up (ShapeNet/PointFlow), the front faces +z, the bilateral symmetry plane is x = 0,
generated shapes stand on y = 0. Units are metres; airplanes are 1:30 scale models (0.8–1.6 m
long) so that every family has furniture size, as in ShapeNet whose models are all normalised.
Surfaces hidden where primitives overlap (a leg inside a seat) are sampled too, as they are in
ShapeNet's interpenetrating part meshes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from rewarddiff import UserError
from shapes.io import check_points, file_head

FAMILIES = ("chair", "table", "lamp", "airplane")
SYNSET_NAMES = {
    "02691156": "airplane",
    "02958343": "car",
    "03001627": "chair",
    "03636649": "lamp",
    "04379243": "table",
}
PC15K_SPLITS = ("train", "val", "test")
SEGMENTS = 24  # around a frustum or ellipsoid; a multiple of 4 puts vertices at the ±x, ±z extremes
RINGS = 12  # latitude bands of an ellipsoid


# ----- triangle meshes -----------------------------------------------------------------------
@dataclass(frozen=True)
class Mesh:
    """Triangle mesh: ``vertices`` (V, 3) float64, ``faces`` (F, 3) int64 vertex indices."""

    vertices: np.ndarray
    faces: np.ndarray

    def face_areas(self) -> np.ndarray:
        """(F,) triangle areas."""
        a, b, c = (self.vertices[self.faces[:, k]] for k in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def mirrored_x(self) -> Mesh:
        """The reflection across x = 0 (winding reversed so faces keep pointing outward)."""
        return Mesh(self.vertices * (-1.0, 1.0, 1.0), self.faces[:, ::-1])

    def lifted_to_floor(self) -> Mesh:
        """Translated along y so that the lowest vertex is at y = 0."""
        return Mesh(self.vertices - (0.0, self.vertices[:, 1].min(), 0.0), self.faces)


def merge(meshes: Sequence[Mesh]) -> Mesh:
    """One mesh holding all the triangles of ``meshes``."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + offset for m, offset in zip(meshes, offsets)]),
    )


def sample_surface(mesh: Mesh, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(num_points, 3) float64 points uniform over the surface: a triangle is chosen with
    probability proportional to its area, then a point uniform inside it (folded barycentric
    coordinates)."""
    cumulative = np.cumsum(mesh.face_areas())
    if not cumulative[-1] > 0:
        raise ValueError("mesh has zero surface area")
    triangle = np.searchsorted(cumulative, rng.random(num_points) * cumulative[-1], side="right")
    triangle = np.minimum(triangle, len(cumulative) - 1)
    u, v = rng.random((2, num_points))
    folded = u + v > 1
    u[folded], v[folded] = 1 - u[folded], 1 - v[folded]
    a, b, c = (mesh.vertices[mesh.faces[triangle, k]] for k in range(3))
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def rotation(axis: str, degrees: float) -> np.ndarray:
    """(3, 3) right-handed rotation about the ``"x"``, ``"y"`` or ``"z"`` axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rotation_from_y(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking +y onto the direction of ``direction`` (Rodrigues' formula)."""
    u = direction / np.linalg.norm(direction)
    if u[1] < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    axis = np.array([[0, u[0], 0], [-u[0], 0, -u[2]], [0, u[2], 0]])  # cross-product matrix of y×u
    return np.eye(3) + axis + axis @ axis / (1 + u[1])


def _outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` of a convex mesh with each triangle wound so its normal points away from the
    centroid of ``vertices``."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    normal = np.cross(b - a, c - a)
    inward = np.einsum("ij,ij->i", normal, (a + b + c) / 3 - vertices.mean(0)) < 0
    return np.where(inward[:, None], faces[:, ::-1], faces)


def _box_template() -> Mesh:
    """Unit cube [-0.5, 0.5]^3: 8 vertices, 12 outward triangles."""
    vertices = np.array(list(itertools.product((-0.5, 0.5), repeat=3)))  # index 4x + 2y + z
    faces = []
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        for side in (0, 1):
            corners = []
            for first, second in ((0, 0), (1, 0), (1, 1), (0, 1)):
                bits = np.zeros(3, int)
                bits[axis], bits[others[0]], bits[others[1]] = side, first, second
                corners.append(4 * bits[0] + 2 * bits[1] + bits[2])
            faces += [corners[:3], [corners[0], corners[2], corners[3]]]
    return Mesh(vertices, _outward(vertices, np.array(faces)))


def _frustum_faces() -> np.ndarray:
    """Faces over the vertices [bottom ring (S), top ring (S), bottom centre, top centre]: the
    2S side triangles first, then the S bottom and S top cap triangles."""
    k = np.arange(SEGMENTS)
    bottom, top, following = k, SEGMENTS + k, (k + 1) % SEGMENTS
    side = [np.stack([bottom, following, SEGMENTS + following], 1)]
    side.append(np.stack([bottom, SEGMENTS + following, top], 1))
    caps = [np.stack([np.full(SEGMENTS, 2 * SEGMENTS), following, bottom], 1)]
    caps.append(np.stack([np.full(SEGMENTS, 2 * SEGMENTS + 1), top, SEGMENTS + following], 1))
    faces = np.concatenate(side + caps)
    return _outward(_frustum_local(1.0, 1.0, 1.0), faces)


def _frustum_local(length: float, bottom_radius: float, top_radius: float) -> np.ndarray:
    angle = 2 * np.pi * np.arange(SEGMENTS) / SEGMENTS
    ring = np.stack([np.cos(angle), np.zeros(SEGMENTS), np.sin(angle)], 1)
    top = ring * top_radius + (0.0, length, 0.0)
    return np.concatenate([ring * bottom_radius, top, [[0, 0, 0], [0, length, 0]]])


def _sphere_template() -> Mesh:
    """Unit sphere: two poles and RINGS - 1 latitude rings of SEGMENTS vertices."""
    polar = np.pi * np.arange(1, RINGS) / RINGS
    angle = 2 * np.pi * np.arange(SEGMENTS) / SEGMENTS
    p, a = np.meshgrid(polar, angle, indexing="ij")
    rings = np.stack([np.sin(p) * np.cos(a), np.cos(p), np.sin(p) * np.sin(a)], -1)
    vertices = np.concatenate([[[0, 1, 0]], rings.reshape(-1, 3), [[0, -1, 0]]])
    k = np.arange(SEGMENTS)
    following = (k + 1) % SEGMENTS
    south = len(vertices) - 1
    faces = [np.stack([np.zeros(SEGMENTS, int), 1 + following, 1 + k], 1)]
    for ring in range(RINGS - 2):
        upper, lower = 1 + ring * SEGMENTS, 1 + (ring + 1) * SEGMENTS
        faces.append(np.stack([upper + k, upper + following, lower + following], 1))
        faces.append(np.stack([upper + k, lower + following, lower + k], 1))
    last = 1 + (RINGS - 2) * SEGMENTS
    faces.append(np.stack([np.full(SEGMENTS, south), last + k, last + following], 1))
    return Mesh(vertices, _outward(vertices, np.concatenate(faces)))


UNIT_BOX = _box_template()
UNIT_SPHERE = _sphere_template()
FRUSTUM_FACES = _frustum_faces()


def box(center, size, rotation_matrix: np.ndarray | None = None) -> Mesh:
    """Box with edge lengths ``size`` (3,) along its local axes, rotated, centred at ``center``."""
    local = UNIT_BOX.vertices * size
    if rotation_matrix is not None:
        local = local @ rotation_matrix.T
    return Mesh(local + center, UNIT_BOX.faces)


def bar(start, end, thickness: float) -> Mesh:
    """Square-section box of side ``thickness`` from point ``start`` to point ``end``."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = np.linalg.norm(end - start)
    return box((start + end) / 2, (thickness, length, thickness), _rotation_from_y(end - start))


def frustum(start, end, start_radius: float, end_radius: float, caps: bool = True) -> Mesh:
    """Truncated cone from point ``start`` to point ``end`` (a cylinder when the radii are
    equal, a cone when ``end_radius`` is 0); ``caps=False`` leaves both ends open."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    local = _frustum_local(np.linalg.norm(end - start), start_radius, end_radius)
    faces = FRUSTUM_FACES if caps else FRUSTUM_FACES[: 2 * SEGMENTS]
    return Mesh(local @ _rotation_from_y(end - start).T + start, faces)


def ellipsoid(center, radii) -> Mesh:
    """Axis-aligned ellipsoid with semi-axes ``radii`` (3,)."""
    return Mesh(UNIT_SPHERE.vertices * radii + center, UNIT_SPHERE.faces)


def _with_mirror(parts: list[Mesh]) -> list[Mesh]:
    """``parts`` on the +x side plus their reflections across x = 0."""
    return parts + [part.mirrored_x() for part in parts]


# ----- shape families: rng → (mesh standing on y = 0, family-specific labels) ----------------
def _legs(corner_x, corner_z, top, thickness, round_legs) -> list[Mesh]:
    """Four vertical legs from the floor to height ``top`` at (±corner_x, ±corner_z)."""
    right = []
    for z in (corner_z, -corner_z):
        foot, head = (corner_x, 0.0, z), (corner_x, top, z)
        right.append(
            frustum(foot, head, thickness / 2, thickness / 2)
            if round_legs
            else bar(foot, head, thickness)
        )
    return _with_mirror(right)


def _star_base(rng, top: float) -> list[Mesh]:
    """Office-chair pedestal: a column to height ``top`` on five feet, one pointing forward (+z),
    so the star is symmetric about x = 0."""
    reach, foot_height = rng.uniform(0.25, 0.32), rng.uniform(0.03, 0.05)
    column_radius = rng.uniform(0.025, 0.04)
    parts = [frustum((0, 0, 0), (0, top, 0), column_radius, column_radius)]
    for k in range(5):
        turn = rotation("y", 72 * k)
        center = turn @ (0, foot_height / 2, reach / 2)
        parts.append(box(center, (0.05, foot_height, reach), turn))
    return parts


def _chair(rng) -> tuple[Mesh, dict[str, float]]:
    seat_height = rng.uniform(0.40, 0.50)  # top surface of the seat
    width, depth, thickness = (
        rng.uniform(0.40, 0.60),
        rng.uniform(0.38, 0.55),
        rng.uniform(0.03, 0.08),
    )
    seat_bottom = seat_height - thickness
    parts = [box((0, seat_height - thickness / 2, 0), (width, thickness, depth))]
    pedestal = rng.random() < 0.25
    if pedestal:
        parts += _star_base(rng, seat_bottom)
    else:
        leg = rng.uniform(0.025, 0.05)
        inset = leg / 2 + rng.uniform(0.0, 0.03)
        parts += _legs(width / 2 - inset, depth / 2 - inset, seat_bottom, leg, rng.random() < 0.5)

    back_height, tilt = rng.uniform(0.30, 0.55), rng.uniform(0.0, 20.0)
    back_thickness, back_width = rng.uniform(0.03, 0.06), width * rng.uniform(0.8, 1.0)
    lean = rotation("x", -tilt)  # top of the backrest leans back, toward -z
    foot = np.array([0.0, seat_height, -depth / 2 + back_thickness / 2])
    if rng.random() < 0.7:  # solid panel
        center = foot + lean @ (0, back_height / 2, 0)
        parts.append(box(center, (back_width, back_height, back_thickness), lean))
    else:  # two posts and horizontal rails
        post_x = (back_width - back_thickness) / 2
        post_top = foot + lean @ (0, back_height, 0)
        parts += _with_mirror(
            [bar(foot + (post_x, 0, 0), post_top + (post_x, 0, 0), back_thickness)]
        )
        rail_height = rng.uniform(0.04, 0.07)
        for fraction in np.linspace(1.0, 0.4, rng.integers(2, 4)):
            center = foot + lean @ (0, fraction * back_height - rail_height / 2, 0)
            parts.append(box(center, (back_width, rail_height, 0.8 * back_thickness), lean))

    armrests = rng.random() < 0.35
    if armrests:
        arm_top = seat_height + rng.uniform(0.18, 0.25)
        arm_x, arm_length = width / 2 - 0.025, depth * rng.uniform(0.7, 0.9)
        post = bar((arm_x, seat_height, depth / 2 - 0.06), (arm_x, arm_top, depth / 2 - 0.06), 0.03)
        rest = box((arm_x, arm_top + 0.015, -depth / 2 + arm_length / 2), (0.05, 0.03, arm_length))
        parts += _with_mirror([post, rest])
    labels = {
        "seat_height": seat_height,
        "back_height": back_height,
        "back_tilt": tilt,
        "has_armrests": float(armrests),
        "num_legs": 1.0 if pedestal else 4.0,
    }
    return merge(parts), labels


def _table(rng) -> tuple[Mesh, dict[str, float]]:
    height, thickness = rng.uniform(0.68, 0.78), rng.uniform(0.025, 0.05)
    underside = height - thickness
    round_top = rng.random() < 0.35
    if round_top:
        radius = rng.uniform(0.40, 0.65)
        parts = [frustum((0, underside, 0), (0, height, 0), radius, radius)]
        corner_x = corner_z = radius * rng.uniform(0.5, 0.65)
    else:
        width = rng.uniform(0.8, 1.8)
        depth = min(width, 1.0) * rng.uniform(0.6, 1.0)
        parts = [box((0, height - thickness / 2, 0), (width, thickness, depth))]
        inset = rng.uniform(0.04, 0.10)
        corner_x, corner_z = width / 2 - inset, depth / 2 - inset
    pedestal = rng.random() < (0.6 if round_top else 0.1)
    if pedestal:
        column_radius, foot_radius = rng.uniform(0.04, 0.08), rng.uniform(0.22, 0.35)
        parts.append(frustum((0, 0, 0), (0, underside, 0), column_radius, column_radius))
        if rng.random() < 0.5:
            parts.append(frustum((0, 0, 0), (0, 0.03, 0), foot_radius, foot_radius))
        else:  # cross of two bars
            parts += [box((0, 0.02, 0), (2 * foot_radius, 0.04, 0.06))]
            parts += [box((0, 0.02, 0), (0.06, 0.04, 2 * foot_radius))]
    else:
        leg = rng.uniform(0.04, 0.07)
        parts += _legs(corner_x, corner_z, underside, leg, rng.random() < 0.5)
        if not round_top and rng.random() < 0.5:  # apron rails under the top
            apron = rng.uniform(0.06, 0.10)
            y = underside - apron / 2
            parts += [box((0, y, z), (2 * corner_x, apron, 0.02)) for z in (corner_z, -corner_z)]
            parts += [box((x, y, 0), (0.02, apron, 2 * corner_z)) for x in (corner_x, -corner_x)]
    labels = {
        "top_shape": float(round_top),  # 0 rectangular, 1 round
        "top_thickness": thickness,
        "num_legs": 1.0 if pedestal else 4.0,
    }
    return merge(parts), labels


def _lamp(rng) -> tuple[Mesh, dict[str, float]]:
    floor_lamp = rng.random() < 0.5
    scale = 1.0 if floor_lamp else 0.6  # desk lamps are smaller all over
    pole_height = rng.uniform(1.2, 1.7) if floor_lamp else rng.uniform(0.3, 0.6)
    base_radius, base_thickness = scale * rng.uniform(0.12, 0.22), rng.uniform(0.02, 0.04)
    if rng.random() < 0.7:
        parts = [frustum((0, 0, 0), (0, base_thickness, 0), base_radius, base_radius)]
    else:
        side = 2 * base_radius
        parts = [box((0, base_thickness / 2, 0), (side, base_thickness, side))]
    pole_radius = rng.uniform(0.008, 0.018)
    parts.append(frustum((0, 0, 0), (0, pole_height, 0), pole_radius, pole_radius))
    shade_radius = scale * rng.uniform(0.15, 0.28)
    shade_top_radius = shade_radius * rng.uniform(0.4, 0.8)
    if rng.random() < 0.2:  # upturned shade (torchiere)
        shade_radius, shade_top_radius = shade_top_radius, shade_radius
    shade_height = scale * rng.uniform(0.18, 0.32)
    shade_bottom = pole_height - shade_height * rng.uniform(0.3, 0.7)
    shade_top = (0, shade_bottom + shade_height, 0)
    parts.append(frustum((0, shade_bottom, 0), shade_top, shade_radius, shade_top_radius, False))
    if rng.random() < 0.5:
        parts.append(ellipsoid((0, pole_height, 0), scale * np.array([0.04, 0.06, 0.04])))
    labels = {"pole_height": pole_height, "shade_radius": shade_radius, "base_radius": base_radius}
    return merge(parts), labels


def _airplane(rng) -> tuple[Mesh, dict[str, float]]:
    length = rng.uniform(0.8, 1.6)  # nose (+z) to tail (-z)
    radius, half = length * rng.uniform(0.045, 0.07), length / 2
    if rng.random() < 0.4:
        parts = [ellipsoid((0, 0, 0), (radius, radius, half))]
    else:  # cylindrical cabin, ellipsoidal nose, conical tail
        cabin = 0.35 * length
        parts = [
            frustum((0, 0, -cabin), (0, 0, cabin), radius, radius, caps=False),
            ellipsoid((0, 0, cabin), (radius, radius, half - cabin)),
            frustum((0, 0, -cabin), (0, 0, -half), radius, 0.25 * radius),
        ]
    span, chord = length * rng.uniform(0.8, 1.3), length * rng.uniform(0.12, 0.22)
    sweep, dihedral = rng.uniform(0.0, 35.0), rng.uniform(0.0, 7.0)
    skin = 0.3 * radius  # wing thickness
    wing_turn = rotation("z", dihedral) @ rotation("y", sweep)
    root = np.array([0.0, radius * rng.choice([-0.6, 0.0, 0.6]), length * rng.uniform(-0.05, 0.1)])
    right = [box(root + wing_turn @ (span / 4, 0, 0), (span / 2, skin, chord), wing_turn)]

    engines_per_side = rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2])
    engine_radius, engine_length = 0.45 * radius, 0.12 * length
    for fraction in (0.35, 0.65)[:engines_per_side]:
        mount = root + wing_turn @ (fraction * span / 2, 0, 0.3 * chord)
        center = mount - (0, skin / 2 + engine_radius, 0)
        tail_end, nose_end = center - (0, 0, engine_length / 2), center + (0, 0, engine_length / 2)
        right.append(frustum(tail_end, nose_end, engine_radius, engine_radius))

    fin_height, fin_chord = length * rng.uniform(0.12, 0.2), chord * rng.uniform(0.6, 0.9)
    fin_turn = rotation("x", -(sweep + 10))  # fin top swept back, toward -z
    fin_root = np.array([0.0, 0.5 * radius, -0.4 * length])
    parts.append(
        box(fin_root + fin_turn @ (0, fin_height / 2, 0), (skin, fin_height, fin_chord), fin_turn)
    )
    t_tail = rng.random() < 0.2
    tail_root = (
        fin_root + fin_turn @ (0, fin_height, 0) if t_tail else np.array([0, 0, -0.42 * length])
    )
    tail_span, tail_chord = span * rng.uniform(0.3, 0.45), chord * rng.uniform(0.5, 0.7)
    tail_turn = rotation("y", sweep + 5)
    center = tail_root + tail_turn @ (tail_span / 4, 0, 0)
    right.append(box(center, (tail_span / 2, 0.8 * skin, tail_chord), tail_turn))
    labels = {
        "fuselage_length": length,
        "wing_sweep": sweep,
        "num_engines": 2.0 * engines_per_side,
    }
    return merge(parts + _with_mirror(right)).lifted_to_floor(), labels


BUILDERS: dict[str, Callable[[np.random.Generator], tuple[Mesh, dict[str, float]]]] = {
    "chair": _chair,
    "table": _table,
    "lamp": _lamp,
    "airplane": _airplane,
}


# ----- the procedural dataset ------------------------------------------------------------------
@dataclass
class ShapeSet:
    """Point sets with their family and labels.

    ``points`` (n, P, 3) float32; ``family`` (n,) int64 indices into ``families``; ``labels``
    name → (n,) float32, NaN where a shape's family has no such parameter.
    """

    points: np.ndarray
    family: np.ndarray
    labels: dict[str, np.ndarray]
    families: list[str]

    def __len__(self) -> int:
        return len(self.points)

    def subset(self, index) -> ShapeSet:
        """The shapes at ``index`` (integer array, slice or boolean mask)."""
        labels = {name: values[index] for name, values in self.labels.items()}
        return ShapeSet(self.points[index], self.family[index], labels, self.families)


def generate_mesh(family: str, index: int, seed: int = 0) -> tuple[Mesh, dict[str, float]]:
    """Shape ``index`` of ``family``: its mesh (standing on y = 0, metres) and its labels.

    Labels of every family: ``family`` (index into :data:`FAMILIES`) and the mesh's bounding box
    ``height`` (y), ``width`` (x), ``depth`` (z). Chairs add ``seat_height`` (top of the seat above
    the floor), ``back_height`` (above the seat), ``back_tilt`` (degrees), ``has_armrests`` (0/1),
    ``num_legs`` (4, or 1 for a pedestal); tables ``top_shape`` (0 rectangular, 1 round),
    ``top_thickness``, ``num_legs``; lamps ``pole_height``, ``shade_radius``, ``base_radius``;
    airplanes ``fuselage_length``, ``wing_sweep`` (degrees), ``num_engines``.
    """
    if family not in BUILDERS:
        raise UserError(f"unknown shape family {family!r} (known: {', '.join(FAMILIES)})")
    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    mesh, labels = BUILDERS[family](rng)
    low, high = mesh.vertices.min(0), mesh.vertices.max(0)
    width, height, depth = high - low
    labels = {
        "family": FAMILIES.index(family),
        "height": height,
        "width": width,
        "depth": depth,
    } | labels
    return mesh, labels


def generate(counts: int | Mapping[str, int], seed: int = 0, points: int = 15_000) -> ShapeSet:
    """A procedural dataset: ``counts`` shapes per family (an int for every family, or
    family → count), in :data:`FAMILIES` order, each sampled with ``points`` surface points.
    The same (seed, family, index) gives the same shape and labels whatever ``points`` is."""
    if isinstance(counts, int):
        counts = dict.fromkeys(FAMILIES, counts)
    unknown = set(counts) - set(FAMILIES)
    if unknown:
        raise UserError(f"unknown shape families {sorted(unknown)} (known: {', '.join(FAMILIES)})")
    jobs = [(family, i) for family in FAMILIES for i in range(counts.get(family, 0))]
    clouds = np.empty((len(jobs), points, 3), np.float32)
    rows = []
    for row, (family, i) in enumerate(jobs):
        mesh, labels = generate_mesh(family, i, seed)
        rng = np.random.default_rng([seed, FAMILIES.index(family), i, 1])
        clouds[row] = sample_surface(mesh, points, rng)
        rows.append(labels)
    names = sorted({name for labels in rows for name in labels})
    labels = {name: np.array([r.get(name, np.nan) for r in rows], np.float32) for name in names}
    family = np.array([FAMILIES.index(f) for f, _ in jobs], np.int64)
    return ShapeSet(clouds, family, labels, list(FAMILIES))


def subsample(points: np.ndarray, num_points: int, seed: int = 0) -> np.ndarray:
    """(n, num_points, 3): a random subset of each shape's points, drawn without replacement
    (PointFlow/PVD train on 2,048 of the 15,000 stored points)."""
    n, stored, _ = points.shape
    if num_points > stored:
        raise UserError(f"cannot subsample {num_points} points from sets of {stored}")
    keys = np.random.default_rng(seed).random((n, stored))
    chosen = np.argpartition(keys, num_points - 1, axis=1)[:, :num_points]
    return np.take_along_axis(points, chosen[..., None], axis=1)


# ----- ShapeNetCore.v2.PC15k and meshes ---------------------------------------------------------
def read_point_file(path: str | Path) -> np.ndarray:
    """One ``.npy`` point set (P, 3) float32; UserError naming the file if it is unreadable, of
    another shape, or has NaN/Inf coordinates."""
    if not file_head(Path(path), ".npy").startswith(b"\x93NUMPY"):
        raise UserError(f"{path}: not a .npy file (as np.save writes)")
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError:  # an object array: loading it would unpickle
        raise UserError(f"{path}: holds Python objects (pickled data is not loaded)") from None
    except (OSError, EOFError) as err:
        raise UserError(f"{path}: cannot read as .npy ({err})") from None
    return check_points(array, path, batched=False)


def load_pc15k(
    root: str | Path,
    synsets: Sequence[str],
    split: str = "train",
    max_per_synset: int | None = None,
) -> ShapeSet:
    """Point sets of the ShapeNetCore.v2.PC15k layout ``<root>/<synset>/<split>/*.npy`` (each
    (15000, 3), y up), files in name order, the first ``max_per_synset`` of each synset.
    ``families`` are the category names of known synsets (e.g. 03001627 → chair), else the ids;
    there are no labels."""
    if split not in PC15K_SPLITS:
        raise UserError(f"unknown PC15k split {split!r} (known: {', '.join(PC15K_SPLITS)})")
    clouds, family = [], []
    for index, synset in enumerate(synsets):
        folder = Path(root) / synset / split
        if not folder.is_dir():
            raise UserError(f"{folder}: not a directory (expected <root>/<synset>/{split}/*.npy)")
        files = sorted(folder.glob("*.npy"))[:max_per_synset]
        if not files:
            raise UserError(f"{folder}: no .npy point files")
        for path in files:
            cloud = read_point_file(path)
            if clouds and len(cloud) != len(clouds[0]):
                raise UserError(
                    f"{path}: {len(cloud)} points, the files before have {len(clouds[0])}"
                )
            clouds.append(cloud)
            family.append(index)
    names = [SYNSET_NAMES.get(synset, synset) for synset in synsets]
    return ShapeSet(np.stack(clouds), np.array(family, np.int64), {}, names)


def check_mesh(mesh: Mesh, source: str | Path) -> None:
    """UserError naming ``source`` if ``mesh`` has no faces, non-finite vertices, zero area,
    or a non-manifold edge (shared by more than two faces once coincident vertices merge)."""
    if len(mesh.faces) == 0:
        raise UserError(f"{source}: empty mesh (no faces)")
    if not np.isfinite(mesh.vertices).all():
        raise UserError(f"{source}: vertex coordinates are NaN or infinite")
    if not mesh.face_areas().sum() > 0:
        raise UserError(f"{source}: empty mesh (zero surface area)")
    _, position = np.unique(mesh.vertices, axis=0, return_inverse=True)
    faces = position.reshape(-1)[mesh.faces]
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    unique, count = np.unique(edges, axis=0, return_counts=True)
    shared = count > 2
    if shared.any():
        first = np.flatnonzero(shared)[0]
        a, b = (mesh.vertices[np.argmax(position.reshape(-1) == p)] for p in unique[first])
        raise UserError(
            f"{source}: non-manifold mesh: {int(shared.sum())} edge(s) shared by more than two "
            f"faces (e.g. {a.tolist()}–{b.tolist()}, by {count[first]} faces)"
        )


def load_mesh(path: str | Path, num_points: int = 15_000, seed: int = 0) -> np.ndarray:
    """(num_points, 3) float32 points sampled uniformly by area on a PLY or OBJ mesh (any format
    trimesh reads); the coordinates are kept as they are in the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many exception types for malformed files
        raise UserError(f"{path}: cannot read mesh ({err})") from None
    faces = np.asarray(getattr(loaded, "faces", np.empty((0, 3))), np.int64).reshape(-1, 3)
    mesh = Mesh(np.asarray(loaded.vertices, np.float64).reshape(-1, 3), faces)
    check_mesh(mesh, path)
    return sample_surface(mesh, num_points, np.random.default_rng(seed)).astype(np.float32)


# ----- normalisation --------------------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """``normalised = (points - shift) / scale``, invertible and JSON-serialisable.

    ``shift`` (3,) and ``scale`` () for one dataset-wide transform; (n, 3) and (n,) for one per
    shape of an (n, N, 3) batch.
    """

    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def dataset(cls, points: np.ndarray) -> Normalization:
        """PointFlow/PVD/LION: the mean (3,) of every point of ``points`` (the training set,
        (n, N, 3)) and the standard deviation of all their coordinates taken together."""
        flat = np.asarray(points, np.float64).reshape(-1, 3)
        return cls(flat.mean(0), np.asarray(flat.std()))

    @classmethod
    def unit_box(cls, points: np.ndarray) -> Normalization:
        """Per shape: bounding-box centre to the origin, longest side to 2 (inside [-1, 1]^3)."""
        points = np.asarray(points, np.float64)
        low, high = points.min(1), points.max(1)
        half_side = (high - low).max(1) / 2
        return cls((low + high) / 2, np.where(half_side > 0, half_side, 1.0))

    def _broadcast(self) -> tuple[np.ndarray, np.ndarray]:
        shift, scale = np.asarray(self.shift), np.asarray(self.scale)
        if shift.ndim == 2:  # one per shape
            return shift[:, None, :], scale[:, None, None]
        return shift, scale

    def apply(self, points: np.ndarray) -> np.ndarray:
        shift, scale = self._broadcast()
        return ((np.asarray(points, np.float64) - shift) / scale).astype(np.float32)

    def invert(self, points: np.ndarray) -> np.ndarray:
        shift, scale = self._broadcast()
        return (np.asarray(points, np.float64) * scale + shift).astype(np.float32)

    def to_dict(self) -> dict:
        return {"shift": np.asarray(self.shift).tolist(), "scale": np.asarray(self.scale).tolist()}

    @classmethod
    def from_dict(cls, data: Mapping) -> Normalization:
        return cls(np.asarray(data["shift"], np.float64), np.asarray(data["scale"], np.float64))
