"""Import a released EDM QM9 checkpoint (Hoogeboom et al. 2022) as a molecule-domain generator.

EDM's release folder holds ``generative_model_ema.npy`` (despite the name, the state dict of
its ``EnVariationalDiffusion`` written by ``torch.save``: ``dynamics.*`` network tensors, the
``gamma.gamma`` lookup table of its noise schedule and a ``buffer``) and ``args.pickle`` (the
``argparse.Namespace`` of ``main_qm9.py``'s flags). The weights are read with
``weights_only=True`` and the flags with an unpickler that builds nothing but
``argparse.Namespace``; neither can run code. The result is ``model.safetensors`` with the
generator config the molecule domain's ``build_generator`` reads (``network_kind: edm``) and
``manifest.json`` (source hashes, flags, what was imported).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import pickle
from pathlib import Path

import torch
from torch import Tensor

from molgen.edm import EDMConfig, EDMDenoiser
from rewarddiff import UserError
from rewarddiff.diffusion.gaussian import polynomial_schedule
from rewarddiff.io import Manifest, existing_file, save_model, stage_output

# EDM's molecule-size histograms, copied as data: the ``n_nodes`` counts (atoms → molecules)
# of ``qm9_with_h`` and ``qm9_second_half`` in configs/datasets_config.py of
# github.com/ehoogeboom/e3_diffusion_for_molecules.
QM9_SIZES = {22: 3393, 17: 13025, 23: 4848, 21: 9970, 19: 13832, 20: 9482, 16: 10644, 13: 3060,
             15: 7796, 25: 1506, 18: 13364, 12: 1689, 11: 807, 24: 539, 14: 5136, 26: 48, 7: 16,
             10: 362, 8: 49, 9: 124, 27: 266, 4: 4, 29: 25, 6: 9, 5: 5, 3: 1}  # fmt: skip
QM9_SECOND_HALF_SIZES = {19: 6944, 12: 845, 20: 4794, 21: 4962, 27: 132, 25: 754, 18: 6695,
                         14: 2587, 15: 3865, 22: 1701, 17: 6461, 16: 5344, 23: 2380, 13: 1541,
                         24: 267, 10: 178, 7: 7, 11: 412, 8: 25, 9: 62, 29: 15, 26: 17, 4: 3,
                         3: 1, 6: 5, 5: 3}  # fmt: skip
# EDM has no histogram of the first half; it is a random half of QM9 like the second
SIZES = {"qm9": QM9_SIZES, "qm9_first_half": QM9_SIZES, "qm9_second_half": QM9_SECOND_HALF_SIZES}
MAX_ATOMS = 29  # EDM's max_n_nodes of QM9

# main_qm9.py's flags this import reads: name → (parser default, expected type); a pickle
# without one had that default (coords_range is no flag: EDM's network always uses 15)
FLAGS = {
    "model": ("egnn_dynamics", str),
    "probabilistic_model": ("diffusion", str),
    "diffusion_steps": (500, int),
    "diffusion_noise_schedule": ("polynomial_2", str),
    "diffusion_noise_precision": (1e-5, float),
    "condition_time": (True, bool),
    "nf": (128, int),
    "n_layers": (6, int),
    "inv_sublayers": (1, int),
    "attention": (True, bool),
    "tanh": (True, bool),
    "coords_range": (15.0, float),
    "norm_constant": (1.0, float),
    "sin_embedding": (False, bool),
    "normalization_factor": (1.0, float),
    "aggregation_method": ("sum", str),
    "include_charges": (True, bool),
    "normalize_factors": ([1, 4, 1], list),
    "dataset": ("qm9", str),
    "remove_h": (False, bool),
    "conditioning": ([], list),
}
# import settings beyond main_qm9.py's: {property: {"mean", "mad"}} of a conditional model
# (EDM computes them from the data when it samples; args.pickle does not hold them) and the
# reverse steps of a sample (EDM: diffusion_steps)
EXTRA_FLAGS = ("property_norms", "sampling_steps")
SCHEDULE_PRECISION = 1e-5  # of the molecule domain's polynomial schedule


class RefusedClass(pickle.UnpicklingError):
    """A pickle named a class or function other than ``argparse.Namespace``."""


class NamespaceUnpickler(pickle.Unpickler):
    """Builds ``argparse.Namespace`` and plain pickle values only; any other class or
    function a pickle names (e.g. ``os.system``) is refused before it is called."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        raise RefusedClass(f"refused to load {module}.{name}")


def read_args(path: Path) -> dict:
    """The flags of EDM's ``args.pickle`` (a pickled ``argparse.Namespace``) as a dict."""
    raw = existing_file(path, "EDM's args.pickle").read_bytes()
    try:
        namespace = NamespaceUnpickler(io.BytesIO(raw)).load()
    except RefusedClass as err:
        raise UserError(f"{path}: {err} (only argparse.Namespace is allowed)") from None
    except Exception:  # truncated or not a pickle; nothing beyond a Namespace was built
        raise UserError(f"{path}: not a readable pickle (truncated or another format)") from None
    if not isinstance(namespace, argparse.Namespace):
        raise UserError(f"{path}: holds a {type(namespace).__name__}, not an argparse.Namespace")
    return vars(namespace)


def read_state(path: Path) -> dict[str, Tensor]:
    """The torch state dict of EDM's ``generative_model_ema.npy`` (read with weights_only)."""
    existing_file(path, "EDM's generative_model_ema.npy")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{path}: holds objects other than tensors (refused)") from None
    except Exception:  # truncated zip, empty file, another format
        raise UserError(f"{path}: not a complete torch.save file (truncated?)") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise UserError(f"{path}: not a state dict (a {type(state).__name__} of other values)")
    return state


def _flag(settings: dict, name: str, where: str):
    """Flag ``name`` of the merged settings (its default when absent), type-checked."""
    default, kind = FLAGS[name]
    value = settings.get(name, default)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {float: number, int: number and isinstance(value, int)}.get(kind, isinstance(value, kind))
    if not ok:
        raise UserError(f"{where}: flag {name}={value!r}, expected {kind.__name__}")
    return float(value) if kind is float else value


def network_config(settings: dict, where: str) -> tuple[EDMConfig, dict]:
    """main_qm9.py flags (``settings``; ``where`` names their source in errors) → our
    EDMConfig and the generator config the molecule domain's ``build_generator`` reads."""
    flag = {name: _flag(settings, name, where) for name in FLAGS}
    if flag["dataset"] == "geom":
        raise UserError(f"{where}: GEOM-drugs checkpoints are not supported")
    if flag["dataset"] not in SIZES:
        raise UserError(
            f"{where}: dataset {flag['dataset']!r} is not supported ({', '.join(SIZES)})"
        )
    if flag["remove_h"]:
        raise UserError(f"{where}: remove_h models are not supported")
    fixed = {"model": "egnn_dynamics", "probabilistic_model": "diffusion", "condition_time": True}
    for name, value in fixed.items():
        if flag[name] != value:
            raise UserError(f"{where}: {name}={flag[name]!r} is not supported (only {value!r})")
    if not flag["include_charges"]:
        raise UserError(
            f"{where}: include_charges=False is not supported (the molecule state "
            "always has the atomic-number channel)"
        )
    if flag["diffusion_noise_schedule"] != "polynomial_2":
        raise UserError(
            f"{where}: diffusion_noise_schedule {flag['diffusion_noise_schedule']!r}"
            " is not supported (only polynomial_2)"
        )
    if not math.isclose(flag["diffusion_noise_precision"], SCHEDULE_PRECISION, rel_tol=1e-9):
        raise UserError(
            f"{where}: diffusion_noise_precision {flag['diffusion_noise_precision']}"
            f" is not supported (only {SCHEDULE_PRECISION})"
        )
    if flag["normalize_factors"] != [1, 4, 10]:
        raise UserError(
            f"{where}: normalize_factors {flag['normalize_factors']} are not "
            "supported (the molecule state is x, one-hot/4, atomic number/10)"
        )
    if flag["aggregation_method"] not in ("sum", "mean"):
        raise UserError(
            f"{where}: aggregation_method {flag['aggregation_method']!r} is not 'sum' or 'mean'"
        )
    properties = flag["conditioning"]
    if not all(isinstance(p, str) for p in properties):
        raise UserError(f"{where}: conditioning {properties!r} is not a list of property names")
    if settings.get("context_node_nf", len(properties)) != len(properties):
        raise UserError(
            f"{where}: context_node_nf {settings['context_node_nf']} does not match "
            f"conditioning {properties}"
        )
    for name in ("diffusion_steps", "nf", "n_layers", "inv_sublayers"):
        if flag[name] < 1:
            raise UserError(f"{where}: {name}={flag[name]} is not positive")
    steps = flag["diffusion_steps"]
    sampling_steps = settings.get("sampling_steps", steps)
    if not isinstance(sampling_steps, int) or not 1 <= sampling_steps <= steps:
        raise UserError(f"{where}: sampling_steps {sampling_steps!r} is not in 1..{steps}")
    cfg = EDMConfig(
        hidden=flag["nf"],
        layers=flag["n_layers"],
        inv_sublayers=flag["inv_sublayers"],
        coords_range=flag["coords_range"],
        norm_constant=flag["norm_constant"],
        sin_embedding=flag["sin_embedding"],
        normalization_factor=flag["normalization_factor"],
        aggregation=flag["aggregation_method"],
        attention=flag["attention"],
        tanh=flag["tanh"],
        context_features=len(properties),
    )
    counts = torch.zeros(MAX_ATOMS + 1, dtype=torch.float64)
    for n, count in SIZES[flag["dataset"]].items():
        counts[n] = count
    config = {
        "network_kind": "edm",
        "network": cfg.to_dict(),
        "diffusion_steps": steps,
        "sampling_steps": sampling_steps,
        "sampler": "ddpm",  # EDM's ancestral sampler
        "prediction": "epsilon",
        "num_atoms_probs": (counts / counts.sum()).tolist(),
        "domain": "molecule",
    }
    if properties:
        config["context"] = _context(properties, settings.get("property_norms"), where)
    return cfg, config


def _context(properties: list[str], norms, where: str) -> dict:
    """{"properties", "mean", "mad"} (lists in conditioning order): the network's context is
    (value − mean)/mad per property, as EDM's prepare_context."""
    hint = "give property_norms={name: {'mean': …, 'mad': …}} (EDM's compute_mean_mad)"
    if not isinstance(norms, dict) or not all(isinstance(norms.get(p), dict) for p in properties):
        raise UserError(f"{where}: a model conditioned on {properties}: {hint}")
    mean, mad = [], []
    for p in properties:
        m, d = norms[p].get("mean"), norms[p].get("mad")
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in (m, d)) or d <= 0:
            raise UserError(f"{where}: property_norms[{p!r}] needs a finite mean and mad > 0")
        mean.append(float(m))
        mad.append(float(d))
    return {"properties": list(properties), "mean": mean, "mad": mad}


def network_tensors(state: dict[str, Tensor], steps: int, path: Path) -> tuple[dict, list]:
    """EDM's state dict → (our network's tensors: ``dynamics.`` stripped, the keys EDM's
    diffusion holds that we recompute). Its schedule table must be our polynomial_2."""
    tensors, dropped = {}, []
    for key, value in state.items():
        if key.startswith("dynamics."):
            tensors[key.removeprefix("dynamics.")] = value
        elif key == "gamma.gamma":  # γ_t = −log(ᾱ_t / (1 − ᾱ_t)), t = 0..T, float32
            ab = polynomial_schedule(steps, 2, SCHEDULE_PRECISION)
            ours = torch.log((1 - ab) / ab)
            if value.shape != ours.shape or not torch.allclose(value.double(), ours, atol=1e-5):
                raise UserError(
                    f"{path}: its noise schedule gamma.gamma {tuple(value.shape)} is "
                    f"not polynomial_2 of {steps} steps (precision 1e-5)"
                )
            dropped.append(key)
        elif key.startswith("gamma."):
            raise UserError(f"{path}: a learned noise schedule ({key}) is not supported")
        elif key == "buffer":  # EDM's device-placement dummy
            dropped.append(key)
        else:
            tensors[key] = value  # reported as unexpected below
    return tensors, dropped


def load_network(net: EDMDenoiser, tensors: dict[str, Tensor], path: Path) -> None:
    """``tensors`` into ``net`` (strict); a mismatch names the first keys or the shape."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not fit EDM's network of these flags: missing "
            f"{', '.join(missing[:3]) or 'none'}{' …' * (len(missing) > 3)} ({len(missing)}), "
            f"unexpected {', '.join(unexpected[:3]) or 'none'}{' …' * (len(unexpected) > 3)} "
            f"({len(unexpected)})"
        )
    for key, value in expected.items():
        if tensors[key].shape != value.shape:
            raise UserError(
                f"{path}: {key} has shape {tuple(tensors[key].shape)}, the flags' "
                f"network expects {tuple(value.shape)} (nf, n_layers?)"
            )
    net.load_state_dict(tensors, strict=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_edm(weights: Path, args: Path | None, out_dir: Path, **flags) -> Path:
    """Convert EDM's ``weights`` (generative_model_ema.npy) with its ``args`` (args.pickle;
    None: only ``flags``) into ``out_dir/model.safetensors`` (returned) + ``manifest.json``.

    ``flags``: main_qm9.py flag values (see :data:`FLAGS`) that override the pickle's, plus
    ``property_norms`` {property: {"mean", "mad"}} (required for a conditional model) and
    ``sampling_steps``. Every bad input is a one-line UserError naming the file."""
    weights, out_dir = Path(weights), Path(out_dir)
    unknown = sorted(set(flags) - set(FLAGS) - set(EXTRA_FLAGS))
    if unknown:
        raise UserError(f"import_edm: unknown flag(s) {', '.join(unknown)}")
    saved = {} if args is None else read_args(Path(args))
    where = str(args) if args is not None else "import_edm flags"
    cfg, config = network_config(saved | flags, where)
    tensors, dropped = network_tensors(read_state(weights), config["diffusion_steps"], weights)
    net = EDMDenoiser(cfg)
    load_network(net, tensors, weights)
    sources = {"weights": weights} | ({} if args is None else {"args": Path(args)})
    manifest = Manifest(
        "import_edm",
        inputs={k: str(v) for k, v in sources.items()},
        params={"args": saved, "flags": flags},
    )
    with stage_output(out_dir):
        save_model(out_dir / "model.safetensors", net, config)
        manifest.write(
            out_dir / "manifest.json",
            sha256={k: _sha256(v) for k, v in sources.items()},
            imported={
                "model": "model.safetensors",
                "tensors": len(tensors),
                "parameters": sum(p.numel() for p in net.parameters()),
                "dropped": dropped,
                "config": config,
            },
        )
    return out_dir / "model.safetensors"
