"""Importing EDM's release format (molgen.edm_import): a synthetic release (EDM's state-dict
layout saved with torch.save, main_qm9.py's flags pickled as an argparse.Namespace) imports to
a network that computes exactly the source's outputs; bad and malicious inputs are refused."""

import argparse
import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch

from molgen.edm import EDMConfig, EDMDenoiser
from molgen.edm_import import import_edm
from molgen.graph import fully_connected_edges
from rewarddiff import UserError
from rewarddiff.config import dataclass_from
from rewarddiff.io import load_tensors

STEPS = 100

# main_qm9.py's flags as EDM's released edm_qm9/args.pickle has them (smaller network and
# schedule; like the release, without aggregation_method, a later flag)
RELEASE_FLAGS = {
    "exp_name": "edm_qm9_small", "model": "egnn_dynamics", "probabilistic_model": "diffusion",
    "diffusion_steps": STEPS, "diffusion_noise_schedule": "polynomial_2",
    "diffusion_noise_precision": 1e-05, "diffusion_loss_type": "l2", "n_epochs": 3000,
    "batch_size": 64, "lr": 0.0001, "condition_time": True, "n_layers": 2, "inv_sublayers": 1,
    "nf": 32, "tanh": True, "attention": True, "norm_constant": 1, "sin_embedding": False,
    "dataset": "qm9", "datadir": "qm9/temp", "filter_n_atoms": None, "conditioning": [],
    "ema_decay": 0.9999, "normalize_factors": [1, 4, 10], "remove_h": False,
    "include_charges": True, "normalization_factor": 1, "context_node_nf": 0,
}  # fmt: skip


def edm_gamma(steps: int, s: float = 1e-5, power: float = 2.0) -> torch.Tensor:
    """EDM's PredefinedNoiseSchedule table for polynomial_<power>: γ = −log(α²/σ²) (T + 1,)
    float32, computed its way (NumPy linspace over T + 1 points, clipped step ratios)."""
    x = np.linspace(0, steps + 1, steps + 1)
    alphas2 = (1 - np.power(x / (steps + 1), power)) ** 2
    ratios = np.clip(alphas2 / np.concatenate([np.ones(1), alphas2[:-1]]), 0.001, 1.0)
    alphas2 = (1 - 2 * s) * np.cumprod(ratios) + s
    return torch.from_numpy(-(np.log(alphas2) - np.log(1 - alphas2))).float()


def source_network(context_features: int = 0) -> EDMDenoiser:
    torch.manual_seed(0)
    net = EDMDenoiser(EDMConfig(hidden=32, layers=2, context_features=context_features))
    for p in net.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return net


def write_release(folder, net: EDMDenoiser, **flags):
    """EDM's release folder: EnVariationalDiffusion's state dict and the pickled flags."""
    folder.mkdir(exist_ok=True)
    state = {"buffer": torch.zeros(1), "gamma.gamma": edm_gamma(STEPS)}
    state |= {f"dynamics.{k}": v for k, v in net.state_dict().items()}
    torch.save(state, folder / "generative_model_ema.npy")
    with open(folder / "args.pickle", "wb") as f:
        pickle.dump(argparse.Namespace(**(RELEASE_FLAGS | flags)), f)
    return folder / "generative_model_ema.npy", folder / "args.pickle"


def outputs(net: EDMDenoiser, label=None):
    g = torch.Generator().manual_seed(1)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([6, 9, 4]))
    pos, features = torch.randn(19, 3, generator=g), torch.randn(19, 6, generator=g)
    with torch.no_grad():
        return net(pos, features, torch.full((19,), 0.3), batch, fully_connected_edges(batch),
                   label)  # fmt: skip


def imported(path) -> tuple[EDMDenoiser, dict]:
    """The imported network, rebuilt as build_generator will (dataclass_from), and config."""
    tensors, config = load_tensors(path)
    net = EDMDenoiser(dataclass_from(EDMConfig, config["network"], "pretrain.network"))
    net.load_state_dict(tensors, strict=True)
    return net, config


def test_import_computes_the_source_network(tmp_path, one_thread):
    source = source_network()
    weights, args = write_release(tmp_path / "edm_qm9", source)
    path = import_edm(weights, args, tmp_path / "out")
    assert path == tmp_path / "out" / "model.safetensors"
    net, config = imported(path)
    for got, want in zip(outputs(net), outputs(source), strict=True):
        assert torch.equal(got, want)
    assert config["network_kind"] == "edm" and config["domain"] == "molecule"
    assert config["network"] == EDMConfig(hidden=32, layers=2).to_dict()
    assert (config["diffusion_steps"], config["sampling_steps"]) == (STEPS, STEPS)
    assert (config["sampler"], config["prediction"]) == ("ddpm", "epsilon")
    assert "context" not in config
    probs = torch.tensor(config["num_atoms_probs"], dtype=torch.float64)
    assert len(probs) == 30 and probs[:3].sum() == 0 and abs(probs.sum().item() - 1) < 1e-12
    assert probs[19].item() == pytest.approx(13832 / 100_000)  # EDM's qm9_with_h n_nodes
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    for name, file in (("weights", weights), ("args", args)):
        assert manifest["sha256"][name] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert manifest["params"]["args"]["nf"] == 32
    assert sorted(manifest["imported"]["dropped"]) == ["buffer", "gamma.gamma"]
    assert manifest["imported"]["tensors"] == len(source.state_dict())


def test_import_of_a_conditional_release(tmp_path, one_thread):
    """EDM's conditional models (conditioning ['alpha'], context_node_nf 1, trained on the
    second half of QM9); the property's mean/mad come as a flag."""
    source = source_network(context_features=1)
    weights, args = write_release(
        tmp_path / "alpha", source, conditioning=["alpha"], context_node_nf=1,
        dataset="qm9_second_half",
    )  # fmt: skip
    with pytest.raises(UserError, match=r"args.pickle: a model conditioned on \['alpha'\]"):
        import_edm(weights, args, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    norms = {"alpha": {"mean": 75.3, "mad": 6.3}}
    net, config = imported(import_edm(weights, args, tmp_path / "out", property_norms=norms))
    assert net.cfg.context_features == 1
    assert config["context"] == {"properties": ["alpha"], "mean": [75.3], "mad": [6.3]}
    assert config["num_atoms_probs"][19] == pytest.approx(6944 / 50_000)  # EDM's second half
    context = torch.tensor([0.5, -1.0, 2.0])
    for got, want in zip(outputs(net, context), outputs(source, context), strict=True):
        assert torch.equal(got, want)


class Exploit:
    """Pickles as a call of os.system: what an unrestricted unpickler would run."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("nested", [False, True])
def test_a_pickle_asking_for_any_other_class_is_refused_unrun(tmp_path, nested):
    weights, args = write_release(tmp_path / "edm", source_network())
    exploit = Exploit(f"touch {tmp_path / 'PWNED'}")
    payload = argparse.Namespace(**RELEASE_FLAGS, resume=exploit) if nested else exploit
    args.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError, match=r"args.pickle: refused to load (posix|os)\.system"):
        import_edm(weights, args, tmp_path / "out")
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out").exists()


def test_args_must_be_a_namespace_of_supported_flags(tmp_path):
    weights, args = write_release(tmp_path / "edm", source_network())
    args.write_bytes(pickle.dumps(dict(RELEASE_FLAGS)))
    with pytest.raises(UserError, match="args.pickle: holds a dict, not an argparse.Namespace"):
        import_edm(weights, args, tmp_path / "out")
    args.write_bytes(pickle.dumps(argparse.Namespace(**RELEASE_FLAGS))[:40])
    with pytest.raises(UserError, match="args.pickle: not a readable pickle"):
        import_edm(weights, args, tmp_path / "out")
    refusals = {
        "remove_h models are not supported": {"remove_h": True},
        "GEOM-drugs checkpoints are not supported": {"dataset": "geom"},
        "diffusion_noise_schedule 'learned' is not supported": {
            "diffusion_noise_schedule": "learned"
        },
        r"normalize_factors \[1, 8, 1\] are not supported": {"normalize_factors": [1, 8, 1]},
        "include_charges=False is not supported": {"include_charges": False},
        "flag nf='256', expected int": {"nf": "256"},
    }
    for message, flags in refusals.items():
        weights, args = write_release(tmp_path / "edm", source_network(), **flags)
        with pytest.raises(UserError, match=f"args.pickle: {message}"):
            import_edm(weights, args, tmp_path / "out")
    with pytest.raises(UserError, match="unknown flag"):
        import_edm(weights, None, tmp_path / "out", nff=32)


def test_bad_weights_are_refused(tmp_path):
    source = source_network()
    weights, args = write_release(tmp_path / "edm", source)
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="ema.npy: not a complete torch.save file"):
        import_edm(weights, args, tmp_path / "out")
    with pytest.raises(UserError, match="missing.npy: file not found"):
        import_edm(tmp_path / "missing.npy", args, tmp_path / "out")
    torch.save([torch.zeros(1)], weights)
    with pytest.raises(UserError, match="ema.npy: not a state dict"):
        import_edm(weights, args, tmp_path / "out")
    torch.save({"dynamics.x": Exploit("true")}, weights)
    with pytest.raises(UserError, match="ema.npy: holds objects other than tensors"):
        import_edm(weights, args, tmp_path / "out")
    state = {f"dynamics.{k}": v for k, v in source.state_dict().items()}
    del state["dynamics.egnn.embedding.bias"]
    torch.save(state | {"dynamics.egnn.extra": torch.zeros(1)}, weights)
    with pytest.raises(UserError, match=r"missing egnn\.embedding\.bias .*unexpected egnn\.extra"):
        import_edm(weights, args, tmp_path / "out")
    weights, args = write_release(tmp_path / "edm", source, nf=64)
    with pytest.raises(UserError, match=r"egnn\.embedding\.weight has shape \(32, 7\)"):
        import_edm(weights, args, tmp_path / "out")
    write_release(tmp_path / "edm", source)
    with pytest.raises(UserError, match="gamma.gamma .* is not polynomial_2 of 200 steps"):
        import_edm(weights, args, tmp_path / "out", diffusion_steps=200)
    torch.save({"gamma.l1.weight": torch.zeros(1, 1)}, weights)
    with pytest.raises(UserError, match=r"a learned noise schedule \(gamma\.l1\.weight\)"):
        import_edm(weights, args, tmp_path / "out")
    assert not (tmp_path / "out").exists()
