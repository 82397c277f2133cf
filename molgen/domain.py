"""The ``molecule`` domain: QM9 (or user SDF / XYZ / SMILES), e3nn property regressors as
learned rewards, an EDM-style equivariant diffusion generator, SDF designs and EDM-protocol
metrics."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from molgen import data, metrics
from molgen import oracles as _oracles  # noqa: F401  (registers the molecule oracles)
from molgen.bonds import perceive
from molgen.generator import MoleculeGenerator
from molgen.graph import from_dense, to_dense
from molgen.model import EGNNConfig, EGNNDenoiser
from molgen.molecule import (
    EMBED_HINT,
    Molecule,
    graph_smiles,
    read_molecules,
    require_3d,
    write_sdf,
)
from molgen.regressor import PropertyRegressor, RegressorConfig
from rewarddiff import UserError
from rewarddiff.config import dataclass_from, resolve_device
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.domain import BUILTIN_SUFFIX, register_domain
from rewarddiff.finetune.ctrl import LabelCondition
from rewarddiff.generator import condition_network
from rewarddiff.io import atomic_path, load_tensors, read_json, save_model, write_json
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import best_first
from rewarddiff.oracles.registry import make_oracles
from rewarddiff.oracles.transforms import differentiable_objective, objective_function
from rewarddiff.training import TrainConfig, train


@dataclass
class MoleculeDomain:
    name: str = "molecule"
    design_suffix: str = BUILTIN_SUFFIX["molecule"]
    # report columns beyond the generic ones: statistic → better direction
    report_columns: ClassVar[dict[str, str]] = {
        "atom_stability": "↑",
        "molecule_stability": "↑",
        "strict_validity": "↑",
        "geometry_ok": "↑",
    }

    # ----- data ----------------------------------------------------------------------------
    def prepare(self, params: dict, out_dir: Path) -> dict:
        """``{train,valid,test}.npz``, ``train_smiles.txt`` (for novelty), ``dataset.json``;
        all or nothing (:func:`molgen.data.staged_folder`)."""
        with data.staged_folder(out_dir) as stage:
            summary = data.prepare(params, stage)
            train, _ = data.load_split(stage / "train.npz")
            smiles = sorted(metrics.smiles_set(train))
            (stage / "train_smiles.txt").write_text("\n".join(smiles) + "\n")
            summary["train_unique_smiles"] = len(smiles)
            write_json(stage / "dataset.json", summary)
        return summary

    def load_split(self, data_dir: Path, split: str) -> tuple[torch.Tensor, dict]:
        """Dense (M, N_max, 4) molecules of a prepared split and its per-molecule columns."""
        info = read_json(Path(data_dir) / "dataset.json")
        molecules, columns = data.load_split(Path(data_dir) / f"{split}.npz")
        return to_dense(molecules, info["max_atoms"]), columns

    # ----- reward models -------------------------------------------------------------------
    def train_reward(
        self, params: dict, data_dir: Path, out_dir: Path, copies: tuple[str, ...] = ("ft", "eval")
    ) -> dict:
        """One multi-target e3nn regressor ensemble per copy, on disjoint halves of train (EDM's
        conditional protocol: ``ft`` = first half steers, ``eval`` = second half scores).
        Targets are standardised; held-out MAE on the test split is in the field's units."""
        targets = params.get("targets", ["alpha", "gap"])
        params = self._with_elements(params, data_dir)
        x_tr, col_tr = self.load_split(data_dir, "train")
        x_va, col_va = self.load_split(data_dir, "valid")
        x_te, col_te = self.load_split(data_dir, "test")
        missing = [t for t in targets if t not in col_tr]
        if missing:
            raise UserError(f"train_reward: targets {missing} not in the data ({sorted(col_tr)})")

        def y(cols):  # (M, n_targets), or (M,) for one target as the network then outputs
            values = torch.tensor(np.stack([cols[t] for t in targets], -1), dtype=torch.float32)
            return values[:, 0] if len(targets) == 1 else values

        net_cfg = dataclass_from(RegressorConfig, params.get("network"), "train_reward.network")
        net_cfg.num_outputs = len(targets)
        fit_cfg = dataclass_from(learned.FitConfig, params.get("fit"), "train_reward.fit")
        fit_cfg.task = "regression"
        results = {}
        for copy in copies:
            half = ("ft", "eval").index(copy)
            rows = torch.as_tensor(col_tr["half"] == half)
            mean, std = y(col_tr)[rows].mean(0), y(col_tr)[rows].std(0)
            heads = []
            for head in range(params.get("heads", 1)):
                seed = params.get("seed", 0) + 100 * half + head
                torch.manual_seed(seed)
                net = PropertyRegressor(net_cfg)
                learned.fit(
                    net,
                    x_tr[rows],
                    (y(col_tr)[rows] - mean) / std,
                    x_va[: params.get("max_valid", 2000)],
                    (y(col_va)[: params.get("max_valid", 2000)] - mean) / std,
                    fit_cfg,
                    torch.Generator().manual_seed(seed),
                    log=lambda m, c=copy: print(c, m, flush=True),
                )
                heads.append(net)
            ensemble = learned.RewardEnsemble(heads, "regression")
            pred, _ = ensemble.predict(x_te, batch_size=256)
            mae = ((pred * std + mean) - y(col_te)).abs().mean(0).reshape(-1)
            test = {
                "targets": targets,
                "units": {t: data.PROPERTY_UNITS.get(t, "") for t in targets},
                "test_mae": dict(zip(targets, mae.tolist())),
                "n_train": int(rows.sum()),
                "n_test": len(x_te),
            }
            config = {
                "network": net_cfg.to_dict(),
                "targets": targets,
                "mean": mean.reshape(-1).tolist(),
                "std": std.reshape(-1).tolist(),
                "domain": self.name,
            }
            ensemble.save(Path(out_dir) / copy / "model.safetensors", config)
            write_json(Path(out_dir) / copy / "metrics.json", test)
            results[copy] = test
        return results

    @staticmethod
    def _with_elements(params: dict, data_dir: Path) -> dict:
        """Default the network's atom types to the elements of the prepared data."""
        elements = read_json(Path(data_dir) / "dataset.json")["elements"]
        return params | {"network": {"atom_types": elements} | (params.get("network") or {})}

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict, num_atoms_probs: torch.Tensor) -> MoleculeGenerator:
        net_cfg = dataclass_from(EGNNConfig, params.get("network"), "pretrain.network")
        config = {
            "network": net_cfg.to_dict(),
            "diffusion_steps": params.get("diffusion_steps", 1000),
            "sampling_steps": params.get("sampling_steps", 1000),
            "sampler": params.get("sampler", "ddpm"),
            "num_atoms_probs": num_atoms_probs.tolist(),
            "domain": self.name,
        }
        if config["sampler"] not in ("ddpm", "ddim"):
            raise UserError(f"pretrain: sampler must be ddpm or ddim, not {config['sampler']!r}")
        return MoleculeGenerator(
            GaussianDiffusion(polynomial_schedule(config["diffusion_steps"])),
            EGNNDenoiser(net_cfg),
            num_atoms_probs,
            config["sampling_steps"],
            config["sampler"],
            params.get("sample_batch", 256),
            config,
        )

    def pretrain(
        self,
        params: dict,
        data_dir: Path,
        out_dir: Path,
        stop_at_step: int | None = None,
        identity: dict | None = None,
    ) -> dict:
        x, _ = self.load_split(data_dir, "train")
        params = self._with_elements(params, data_dir)
        sizes = (x[..., 3] > 0).sum(1)
        probs = torch.bincount(sizes, minlength=x.shape[1] + 1).double()
        gen = self.build_generator(params, probs / probs.sum())
        gen.net.to(resolve_device(params.get("device", "auto")))
        cfg = dataclass_from(TrainConfig, params.get("train"), "pretrain.train")
        ema = train(
            gen.net,
            lambda net, batch: gen.loss(batch),  # t and noise from the global RNG (checkpointed)
            lambda idx: x[idx],
            len(x),
            cfg,
            out_dir,
            stop_at_step,
            identity,
        )
        if stop_at_step is not None:
            return {"stopped_at": stop_at_step}
        save_model(Path(out_dir) / "model.safetensors", ema.model, gen.config)
        gen.net = ema.model
        x_va, _ = self.load_split(data_dir, "valid")
        n_valid = params.get("loglik_molecules", 256)
        ll = gen.log_likelihood(x_va[:n_valid], generator=torch.Generator().manual_seed(0))
        return {"valid_loglik_per_molecule": ll.mean().item(), "n_valid": len(ll)}

    def load_generator(self, checkpoint: Path, device: str = "cpu") -> MoleculeGenerator:
        tensors, config = load_tensors(checkpoint)
        probs = torch.tensor(config["num_atoms_probs"], dtype=torch.float64)
        gen = self.build_generator(config, probs)
        gen.net.load_state_dict(tensors)
        gen.net.to(resolve_device(device))
        if config.get("condition"):
            gen.config["condition"] = config["condition"]
        return gen

    def conditional_generator(
        self, gen: MoleculeGenerator, num_labels: int, label_dropout: float = 0.0
    ) -> MoleculeGenerator:
        """``gen`` with a zero-initialised condition embedding added: ``num_labels`` classes,
        or a scalar value when ``num_labels`` is 0. Computes exactly ``gen``'s function."""
        network = condition_network(gen.config["network"], num_labels)
        new = self.build_generator(gen.config | {"network": network}, gen.num_atoms_probs)
        return gen.with_condition(new)

    def reward_network(self, params: dict | None = None) -> PropertyRegressor:
        """A small e3nn regressor (dense molecules → (B,), with ``features``) for methods that
        fit their own reward model (``rcgdm``, ``seiko``); ``params`` override its config."""
        cfg = {"mul": 16, "layers": 2, "lmax": 1} | dict(params or {})
        net_cfg = dataclass_from(RegressorConfig, cfg, "finetune reward_network")
        net_cfg.num_outputs = 1
        return PropertyRegressor(net_cfg)

    def label_condition(
        self,
        objective: dict,
        reward_model: Path,
        data_dir: Path | None = None,
        spec: list[dict] | dict | None = None,
    ) -> LabelCondition:
        """Property bins as conditions (``ctrl``): one condition per property of the
        objective's ``target`` (a name, or a list such as ``[gap, alpha]`` for a joint label
        over 3 × 3 bins), binned at the training tertiles; p̂(bin | x) = Φ((hi − μ(x))/σ) −
        Φ((lo − μ(x))/σ) from the regressor ensemble μ at ``reward_model``, σ per property
        calibrated by maximum likelihood of the validation molecules' bins (needs
        ``data_dir``; without it only ``predict`` works). ``spec`` (property, edges per
        condition) rebuilds a saved condition with another regressor copy."""
        model = _oracles.load_regressor(str(reward_model))
        targets = model.config["targets"]
        if spec is None:
            props = objective.get("target")
            props = [props] if isinstance(props, str) or props is None else list(props)
            for prop in props:
                if prop not in targets:
                    raise UserError(f"ctrl: objective target {prop!r} is not a property of the "
                                    f"reward model ({targets})")  # fmt: skip
            _, columns = self.load_split(data_dir, "train")
            spec = [{"property": p, "edges": np.quantile(columns[p], [1 / 3, 2 / 3]).tolist()}
                    for p in props]  # fmt: skip
        spec = [spec] if isinstance(spec, dict) else spec  # one condition (older models)
        index = [targets.index(s["property"]) for s in spec]
        scale = torch.tensor([[model.config["std"][k] for k in index]])
        shift = torch.tensor([[model.config["mean"][k] for k in index]])
        edges = torch.tensor([[-np.inf, *s["edges"], np.inf] for s in spec])  # (C, 4)

        def mu(x: torch.Tensor) -> torch.Tensor:  # (B, C) properties in their units
            out = model.to(x.device)(x)
            out = out[:, None] if out.dim() == 1 else out[:, index]
            return out * scale.to(x.device) + shift.to(x.device)

        def bin_log_probs(values: Tensor, sigma: Tensor, edges: Tensor = edges) -> Tensor:
            """(B, C) values, (C,) σ, (C, 4) bin edges → (B, C, 3) log p̂(bin)."""
            z = (edges.to(values.device) - values[..., None]) / sigma.to(values.device)[:, None]
            cdf = torch.special.ndtr(z)
            return torch.log(cdf[..., 1:] - cdf[..., :-1] + 1e-6)

        def batched_mu(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([mu(x[i : i + 256]) for i in range(0, len(x), 256)])

        sigma = scale[0].clone()
        if data_dir is not None:  # calibration on held-out molecules (temperature scaling)
            x_va, col_va = self.load_split(data_dir, "valid")
            values = batched_mu(x_va[:1000])
            for c, s in enumerate(spec):
                truth = torch.as_tensor(np.asarray(col_va[s["property"]])[: len(values)])
                bins = torch.bucketize(truth, edges[c, 1:-1])
                grid = float(scale[0, c]) * np.geomspace(0.05, 3.0, 60)
                nll = [-bin_log_probs(values[:, c : c + 1], torch.tensor([g]), edges[c : c + 1])
                       [:, 0].gather(1, bins[:, None]).mean().item() for g in grid]  # fmt: skip
                sigma[c] = float(grid[int(np.argmin(nll))])

        def log_prob(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            """Σ_c log p̂_c(y_c | x): (B,)"""
            log_p = bin_log_probs(mu(x), sigma)
            return log_p.gather(2, y[:, :, None].to(log_p.device))[..., 0].sum(1)

        def predict(x: torch.Tensor) -> torch.Tensor:
            values = batched_mu(x)
            bins = [torch.bucketize(values[:, c].contiguous(), edges[c, 1:-1].to(values.device))
                    for c in range(len(spec))]  # fmt: skip
            return torch.stack(bins, 1).cpu()

        names, classes, target = [], [], []
        for s in spec:
            prop, (low, high) = s["property"], s["edges"]
            unit = data.PROPERTY_UNITS.get(prop, "")
            names.append(f"{prop}_bin")
            classes.append([f"{prop} < {low:.4g} {unit}", f"{low:.4g}–{high:.4g}",
                            f"{prop} > {high:.4g} {unit}"])  # fmt: skip
            target.append(classes[-1][0 if objective.get("direction") == "minimize" else -1])
        return LabelCondition(names, classes, log_prob, predict, target=target, spec=spec)

    def torch_reward_function(self, components: list[dict], reward_model: Path):
        """Dense molecules (n, N_max, 4) → differentiable combined reward (n,) (positions)."""
        return differentiable_objective(self.name, components, reward_model=reward_model)

    def save_generator(self, path: Path, gen: MoleculeGenerator) -> None:
        save_model(path, gen.net, gen.config)

    # ----- designs, oracles, rewards --------------------------------------------------------
    def to_designs(self, x: torch.Tensor) -> list[Molecule]:
        return from_dense(x)

    def read_designs(self, path: Path, embed: bool = False) -> list[Molecule]:
        """SDF or XYZ records; ``embed``: 2D SDF records are embedded in 3D (RDKit ETKDG +
        MMFF94, seeded) and marked ``embedded``."""
        return read_molecules(path, embed)

    def write_designs(
        self, path: Path, designs: list[Molecule], scores: dict[str, np.ndarray]
    ) -> None:
        """SDF: coordinates; bonds of the input record, else perceived
        (:func:`molgen.bonds.perceive`); the input's SD fields as read, scores beside them. A
        score named like an input field is written as ``score_<name>`` (the input's field
        stays as it was)."""
        scored = []
        for i, mol in enumerate(designs):
            fields = dict(mol.props)
            for name, values in scores.items():
                key = name
                while key in fields:
                    key = f"score_{key}"
                fields[key] = float(values[i])
            scored.append(replace(mol, props=fields))
        bonds = [m.record if m.record is not None else perceive(m) for m in designs]
        write_sdf(path, scored, bonds)

    def design_labels(self, designs: list[Molecule]) -> list[str]:
        """``name SMILES``: the record's own name and its largest fragment as EDM perceives it
        (the record's bonds for a 2D drawing; ``-`` when invalid)."""
        return [f"{m.name} {_design_smiles(m) or '-'}" for m in designs]

    def score(
        self, designs: list[Molecule], oracles: list[str], reward_model: Path | None = None
    ) -> dict[str, np.ndarray]:
        """One column per oracle spec (NaN where an oracle failed on a design); a UserError
        when an oracle that reads coordinates meets a 2D record."""
        _oracles.check_3d(designs, oracles)
        built = make_oracles(self.name, oracles, reward_model=reward_model)
        return {spec: oracle(designs) for spec, oracle in built.items()}

    def reward_function(self, components: list[dict], reward_model: Path):
        """Dense molecules (n, N_max, 4) → combined reward (n,)."""
        return objective_function(self.name, components, self.to_designs, reward_model=reward_model)

    def diversity(self, x: torch.Tensor) -> float:
        return metrics.tanimoto_diversity(self.to_designs(x))

    def quality(self, x: torch.Tensor) -> dict:
        """EDM atom/molecule stability and RDKit validity of generator outputs (round logs)."""
        edm = metrics.edm_metrics(self.to_designs(x))
        return {k: edm[k] for k in ("atom_stability", "molecule_stability", "validity")}

    def render_designs(self, runs: list[tuple[str, Path]], path: Path, per_run: int = 6) -> None:
        """PNG grid of 2D depictions: one row per (label, run directory) with its ``per_run``
        best valid designs by ``reward_eval`` (from ``designs.sdf`` + ``scores.csv``)."""
        import pandas as pd
        from rdkit import Chem, rdBase
        from rdkit.Chem import Draw

        quiet = rdBase.BlockLogs()  # noqa: F841  (RDKit warns about lone H atoms in fragments)
        mols, legends = [], []
        for label, run_dir in runs:
            designs = read_molecules(run_dir / "designs.sdf")
            scores = pd.read_csv(run_dir / "scores.csv")["reward_eval"].to_numpy()
            row = []
            for i in best_first(scores):
                rd = perceive(designs[i])
                if rd is not None:
                    row.append((Chem.RemoveHs(rd, sanitize=False), f"{label} {scores[i]:.3g}"))
                if len(row) == per_run:
                    break
            for rd, legend in row + [(Chem.Mol(), "")] * (per_run - len(row)):
                rd = Chem.Mol(rd)
                rd.RemoveAllConformers()
                mols.append(rd)
                legends.append(legend)
        image = Draw.MolsToGridImage(mols, molsPerRow=per_run, subImgSize=(220, 180),
                                     legends=legends)  # fmt: skip
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")

    # ----- evaluation ----------------------------------------------------------------------
    def metrics(
        self,
        designs: list[Molecule],
        params: dict,
        data_dir: Path,
        reward_model: Path,
        pretrained: Path | None,
    ) -> dict:
        """EDM-protocol metrics (stability, validity, uniqueness, novelty), strict validity,
        geometry checks, diversity, and the log-likelihood bound under the pretrained model."""
        require_3d(designs, f"the metrics read 3D geometry: {EMBED_HINT}")
        train_smiles = set((Path(data_dir) / "train_smiles.txt").read_text().split())
        out = {"n": len(designs)}
        out |= metrics.molecule_metrics(designs, train_smiles)
        out["diversity"] = metrics.tanimoto_diversity(designs)
        out["mean_atoms"] = float(np.mean([len(m) for m in designs]))
        if pretrained is not None:
            gen = self.load_generator(pretrained, "auto")
            # designs the model cannot represent (too large, unknown elements) are counted
            types = set(gen.net.cfg.atom_types)
            fits = [len(m) <= gen.max_atoms and set(m.numbers.tolist()) <= types for m in designs]
            out["loglik_unrepresentable"] = len(designs) - sum(fits)
            kept = [m for m, ok in zip(designs, fits) if ok]
            ll = gen.log_likelihood(
                to_dense(kept, gen.max_atoms) if kept else torch.zeros(0, gen.max_atoms, 4),
                num_t=params.get("loglik_num_t", 16),
                generator=torch.Generator().manual_seed(0),
            )
            out["loglik_pretrained"] = ll.mean().item() if len(ll) else float("nan")
        return out


def _design_smiles(mol: Molecule) -> str | None:
    return graph_smiles(mol.record) if mol.flat else metrics.largest_fragment_smiles(mol)


MOLECULE = register_domain(MoleculeDomain())
