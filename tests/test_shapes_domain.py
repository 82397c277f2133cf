"""The ``shape`` domain end to end on a tiny procedural set: prepare → load_split, family
classifier copies and oracles, pretraining, designs on disk, ctrl's condition, world-unit
rewards, metrics, and clear errors for bad inputs."""

import numpy as np
import pytest
import torch
import trimesh

from rewarddiff import UserError
from rewarddiff.io import read_json
from rewarddiff.oracles.registry import make_oracle
from shapes import oracles
from shapes.data import Normalization
from shapes.domain import SHAPE, ShapeDomain, random_points
from shapes.io import read_npz

DATA = {"per_family": {"train": 8, "valid": 3, "test": 3}, "points": 64, "stored_points": 160,
        "seed": 0}  # fmt: skip
NET = {"hidden": 16, "layers": 1, "k": 8, "heads": 2}
REWARD = {"network": NET, "fit": {"steps": 30, "batch_size": 16, "eval_every": 15}}
PRETRAIN = {
    "network": NET,
    "diffusion_steps": 50,
    "sampling_steps": 5,
    "train": {
        "steps": 6,
        "batch_size": 8,
        "warmup_steps": 1,
        "checkpoint_every": 3,
        "log_every": 1,
    },
    "loglik_shapes": 8,
    "eval_samples": 4,
    "device": "cpu",
}
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    return out, SHAPE.prepare(DATA, out)


@pytest.fixture(scope="module")
def rewards(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("rewards")
    torch.manual_seed(0)
    return out, SHAPE.train_reward(REWARD, prepared[0], out)


@pytest.fixture(scope="module")
def pretrained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    return out / "model.safetensors", SHAPE.pretrain(PRETRAIN, prepared[0], out)


def test_prepare_and_load_split(prepared, tmp_path):
    data_dir, summary = prepared
    assert summary["families"] == ["chair", "table", "lamp", "airplane"]
    assert summary["counts"]["train"] == dict.fromkeys(summary["families"], 8)
    assert summary["counts"]["test"]["lamp"] == 3
    x, labels = SHAPE.load_split(data_dir, "train")
    assert x.shape == (32, 64, 3) and x.dtype == torch.float32
    assert summary["stored_points"] == 160 and summary["num_points"] == 64
    # the working points are a fixed subset of the stored ones
    stored, _ = SHAPE.load_split(data_dir, "train", all_points=True)
    assert stored.shape == (32, 160, 3)
    assert torch.equal(SHAPE.load_split(data_dir, "train")[0], x)
    is_stored = (x[:, :, None] == stored[:, None]).all(-1).any(-1)
    assert is_stored.all()
    flat = stored.reshape(-1, 3).double()
    assert flat.mean(0).abs().max() < 1e-4  # per-axis mean 0 over the stored train points
    assert set(labels["family"]) == set(summary["families"])
    assert (labels.groupby("family")["half"].sum() == 4).all()  # two equal halves per family
    assert labels.loc[labels["family"] == "chair", "seat_height"].between(0.4, 0.5).all()
    # files hold world units (metres): the normalised split inverts onto them
    world, _ = read_npz(data_dir / "train.npz")
    norm = Normalization.from_dict(read_json(data_dir / "normalization.json"))
    assert np.allclose(norm.invert(stored.numpy()), world, atol=1e-5)
    # PVD's scale: the std of every raw coordinate taken together (so normalised std < 1)
    assert np.isclose(norm.scale, world.astype(np.float64).std(), rtol=1e-6)
    assert 0.5 < flat.std() <= 1
    again = SHAPE.prepare(DATA, tmp_path)  # deterministic by seed
    assert again == summary
    for split in ("train", "valid", "test"):
        assert np.array_equal(
            read_npz(tmp_path / f"{split}.npz")[0], read_npz(data_dir / f"{split}.npz")[0]
        )


def test_training_batches_draw_fresh_point_subsets():
    """Each batch takes distinct stored points of each shape, a new subset every draw."""
    stored = torch.randn(3, 40, 3)
    torch.manual_seed(0)
    first, second = random_points(stored, 16), random_points(stored, 16)
    assert first.shape == (3, 16, 3) and not torch.equal(first, second)
    for shape, subset in zip(stored, first):
        match = (subset[:, None] == shape[None]).all(-1)  # (16, 40)
        assert (match.sum(1) == 1).all() and (match.sum(0) <= 1).all()  # distinct stored points
    assert random_points(stored, 40) is stored


def test_family_classifier_copies_and_oracles(prepared, rewards):
    data_dir, _ = prepared
    reward_dir, results = rewards
    for copy in ("ft", "eval"):
        assert (reward_dir / copy / "model.safetensors").exists()
        assert (reward_dir / copy / "metrics.json").exists()
        assert 0 <= results[copy]["accuracy"] <= 1 and results[copy]["n_train"] == 16
    designs, _ = read_npz(data_dir / "test.npz")  # world units
    model = reward_dir / "eval" / "model.safetensors"
    prob = make_oracle("shape", "family_prob:chair", reward_model=model)
    logodds = make_oracle("shape", "family_logodds:chair", reward_model=model)
    p = prob(designs)
    assert p.shape == (12,) and ((p > 0) & (p < 1)).all()
    assert np.allclose(logodds(designs), np.log(p / (1 - p)), atol=1e-4)
    x = torch.from_numpy(designs).requires_grad_(True)
    torch_p = prob.torch_score(x)
    assert np.allclose(torch_p.detach().numpy(), p, atol=1e-5)
    (grad,) = torch.autograd.grad(torch_p.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(UserError, match="unknown family 'sofa'"):
        make_oracle("shape", "family_prob:sofa", reward_model=model)


def test_pretrain_sample_and_designs_round_trip(pretrained, tmp_path):
    checkpoint, results = pretrained
    assert np.isfinite(results["valid_nats_per_point"])
    assert 0 <= results["sample_nna_cd"] <= 1
    gen = SHAPE.load_generator(checkpoint)
    x, kl = gen.sample(3, seeded(0))
    assert x.shape == (3, 64, 3) and kl is None and torch.isfinite(x).all()
    world = SHAPE.for_generator(gen)  # the generator's own normalisation, from its config
    assert world.normalization.to_dict() == gen.config["normalization"]
    designs = world.to_designs(x)
    assert designs.dtype == np.float32 and np.isfinite(designs).all()
    path = tmp_path / "designs.npz"
    SHAPE.write_designs(path, designs, {"height": np.arange(3.0)})
    assert np.array_equal(SHAPE.read_designs(path), designs)
    assert read_npz(path)[1]["height"].tolist() == [0.0, 1.0, 2.0]
    plys = sorted((tmp_path / "designs_ply").glob("*.ply"))
    assert [p.stem for p in plys] == SHAPE.design_labels(designs)
    assert world.diversity(x) > 0


def test_ctrl_condition_starts_at_the_pretrained_model(prepared, rewards, pretrained):
    data_dir, _ = prepared
    gen = SHAPE.load_generator(pretrained[0])
    condition = SHAPE.for_generator(gen).label_condition(
        {"target": "lamp"}, rewards[0] / "ft" / "model.safetensors", data_dir
    )
    assert condition.classes == [["chair", "table", "lamp", "airplane"]]
    assert condition.target == ["lamp"] and condition.frequencies == [[8.0] * 4]
    cond = SHAPE.conditional_generator(gen, condition.num_joint)
    before, _ = gen.sample(2, seeded(1))
    after, _ = cond.sample(2, seeded(1), label=torch.tensor([0, 2]))
    assert torch.allclose(before, after, atol=1e-5)
    x = after.clone().requires_grad_(True)
    log_p = condition.log_prob(x, torch.tensor([[0], [2]]))
    assert log_p.shape == (2,) and (log_p <= 0).all()
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    assert torch.isfinite(grad).all()
    assert condition.predict(after).shape == (2, 1)
    scalar = SHAPE.conditional_generator(gen, 0)  # rcgdm's value condition
    assert torch.allclose(scalar.sample(2, seeded(1))[0], before, atol=1e-5)


def test_rewards_score_world_units(prepared, rewards, pretrained):
    data_dir, _ = prepared
    shape = SHAPE.for_generator(SHAPE.load_generator(pretrained[0]))  # its world frame
    x, _ = SHAPE.load_split(data_dir, "valid")
    model = rewards[0] / "ft" / "model.safetensors"
    components = [{"oracle": "height"}, {"oracle": "family_prob:chair", "weight": 0.5}]
    numpy_reward = shape.reward_function(components, model)(x)
    torch_reward = shape.torch_reward_function(components, model)(x)
    assert np.allclose(torch_reward.detach().numpy(), numpy_reward, atol=1e-4)
    world = shape.to_designs(x)
    height = shape.reward_function([{"oracle": "height"}], model)(x)
    assert np.allclose(height, oracles.height(world), atol=1e-4)
    assert SHAPE.score(world, ["height"])["height"].shape == (12,)


def test_metrics(prepared, rewards, pretrained, tmp_path):
    data_dir, _ = prepared
    designs, _ = read_npz(data_dir / "valid.npz")
    params = {"metrics_shapes": 6, "emd_points": 32, "loglik_num_t": 2, "target": "chair"}
    out = SHAPE.metrics(
        designs, params, data_dir, rewards[0] / "eval" / "model.safetensors", pretrained[0]
    )
    for key in ("mmd_cd", "cov_cd", "nna_cd", "mmd_emd", "cov_emd", "nna_emd"):
        assert np.isfinite(out[key]), key
    assert out["emd_method"] == "exact" and out["n_generated"] == 6
    assert abs(sum(out[f"fraction_{f}"] for f in ("chair", "table", "lamp", "airplane")) - 1) < 1e-6
    assert 0 <= out["target_prob"] <= 1
    assert out["mean_height"] > 0.1 and out["diversity_cd"] > 0
    assert np.isfinite(out["loglik_pretrained"])
    png = SHAPE.render(designs[:2], tmp_path / "designs.png")
    assert png.stat().st_size > 0


def test_mesh_source(tmp_path):
    for family, count in (("box", 3), ("ball", 2)):
        (tmp_path / "meshes" / family).mkdir(parents=True)
        for i in range(count):
            mesh = (
                trimesh.creation.box((1, 1 + i, 1))
                if family == "box"
                else (trimesh.creation.icosphere(1, 0.5 + i))
            )
            mesh.export(tmp_path / "meshes" / family / f"{i}.{'obj' if i else 'ply'}")
    summary = ShapeDomain().prepare(
        {"source": "mesh", "root": str(tmp_path / "meshes"), "points": 32, "unit_box": True},
        tmp_path / "data",
    )
    assert summary["families"] == ["ball", "box"]
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 5
    world, _ = read_npz(tmp_path / "data" / "train.npz")
    assert np.abs(world).max() <= 1 + 1e-5  # unit box


def test_bad_inputs(tmp_path):
    domain = ShapeDomain()
    with pytest.raises(UserError, match="unknown source 'shapenet'"):
        domain.prepare({"source": "shapenet"}, tmp_path)
    with pytest.raises(UserError, match="needs keys 'root' and 'synsets'"):
        domain.prepare({"source": "pc15k"}, tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        domain.prepare({"source": "mesh", "root": str(tmp_path / "none")}, tmp_path)
    with pytest.raises(UserError, match=r"stored_points \(100\) is below points \(128\)"):
        domain.prepare({"points": 128, "stored_points": 100}, tmp_path)
    with pytest.raises(UserError, match="unknown shape families"):
        domain.prepare({"families": ["sofa"], "per_family": {"train": 1}}, tmp_path)
    with pytest.raises(UserError, match="train.npz: file not found"):
        domain.load_split(tmp_path, "train")
    with pytest.raises(UserError, match="classifier not found"):
        make_oracle("shape", "family_prob:chair", reward_model=tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="needs a reward model"):
        make_oracle("shape", "family_logodds:chair")
    with pytest.raises(UserError, match="no generator bound"):
        domain.to_designs(torch.zeros(1, 4, 3))


def test_pc15k_source(tmp_path):
    """The ShapeNet PC15k layout through the domain: val → valid, subsampled, named families."""
    rng = np.random.default_rng(0)
    for synset in ("03001627", "02691156"):
        for split in ("train", "val", "test"):
            folder = tmp_path / "pc15k" / synset / split
            folder.mkdir(parents=True)
            for i in range(4 if split == "train" else 2):
                np.save(folder / f"m{i}.npy", rng.normal(size=(300, 3)).astype(np.float32))
    params = {"source": "pc15k", "root": str(tmp_path / "pc15k"),
              "synsets": ["03001627", "02691156"], "points": 128}  # fmt: skip
    summary = ShapeDomain().prepare(params, tmp_path / "data")
    assert summary["families"] == ["chair", "airplane"] and summary["num_points"] == 128
    assert summary["stored_points"] == 300  # all of each file's points (15,000 in PC15k)
    assert summary["counts"]["train"] == {"chair": 4, "airplane": 4}
    assert summary["counts"]["valid"] == {"chair": 2, "airplane": 2}
    points, columns = read_npz(tmp_path / "data/valid.npz")
    assert points.shape == (4, 300, 3)
    params["stored_points"] = 200
    assert ShapeDomain().prepare(params, tmp_path / "data200")["stored_points"] == 200
    assert read_npz(tmp_path / "data200/valid.npz")[0].shape == (4, 200, 3)
    with pytest.raises(UserError, match="fewer than points = 512"):
        ShapeDomain().prepare(params | {"points": 512, "stored_points": 15000}, tmp_path / "y")
    with pytest.raises(UserError, match="unknown source 'shapenet'"):
        ShapeDomain().prepare({"source": "shapenet"}, tmp_path / "x")
