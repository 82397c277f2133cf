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

from molgen import DESIGN_SUFFIX, conditions, data, metrics
from molgen import oracles as _oracles  # noqa: F401  (registers the molecule oracles)
from molgen.bonds import perceive
from molgen.edm import EDMConfig, EDMDenoiser
from molgen.edm_import import import_edm
from molgen.graph import from_dense, to_dense
from molgen.layout import MoleculeLayout
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
from rewarddiff.conditioning import LabelCondition
from rewarddiff.config import dataclass_from
from rewarddiff.diffusion.gaussian import GaussianDiffusion, polynomial_schedule
from rewarddiff.domain import Domain, elbo, register_domain
from rewarddiff.gaussian_generator import GaussianGenerator
from rewarddiff.io import atomic_path, read_json, write_json
from rewarddiff.oracles import learned
from rewarddiff.oracles.base import best_first

# pretrain.network_kind → (settings dataclass, denoiser)
NETWORKS = {"egnn": (EGNNConfig, EGNNDenoiser), "edm": (EDMConfig, EDMDenoiser)}


@dataclass
class MoleculeDomain(Domain):
    name: str = "molecule"
    design_suffix: str = DESIGN_SUFFIX
    importers: ClassVar[dict] = {"edm": import_edm}  # rewarddiff import-edm
    reward_net = PropertyRegressor
    reward_net_settings = RegressorConfig
    small_reward_network: ClassVar[dict] = {"mul": 16, "layers": 2, "lmax": 1}
    max_valid: ClassVar[int] = 2000
    embeds: ClassVar[bool] = True
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
    def reward_targets(self, params: dict, data_dir: Path, labels: dict) -> learned.Regression:
        """One multi-target e3nn regressor ensemble per copy (EDM's conditional protocol) over
        the ``targets`` properties, standardised; held-out MAE in the field's units."""
        targets = params.get("targets", ["alpha", "gap"])
        missing = [t for t in targets if t not in labels]
        if missing:
            raise UserError(f"train_reward: targets {missing} not in the data ({sorted(labels)})")
        return learned.Regression(targets, {t: data.PROPERTY_UNITS.get(t, "") for t in targets})

    def reward_network_config(self, settings, num_outputs, where, data_dir=None):
        """The regressor's atom types default to the elements of the prepared data."""
        if data_dir is not None:
            settings = {"atom_types": self._elements(data_dir)} | (settings or {})
        return super().reward_network_config(settings, num_outputs, where, data_dir)

    @staticmethod
    def _elements(data_dir: Path) -> list[int]:
        return read_json(Path(data_dir) / "dataset.json")["elements"]

    # ----- generator -----------------------------------------------------------------------
    def build_generator(self, params: dict) -> GaussianGenerator:
        """EDM over molecules of at most ``len(num_atoms_probs) - 1`` atoms (sizes drawn from
        the histogram ``num_atoms_probs``): polynomial schedule of ``diffusion_steps``, DDPM or
        DDIM (``sampler``) in ``sampling_steps``, the network of ``network_kind`` (``edm``:
        EDM's own, :mod:`molgen.edm`; ``egnn``: the lighter block of :mod:`molgen.model`) with
        the settings ``network``, predicting ε (EDM; or v: ``prediction``), trained with
        ``objective`` (``mean`` or EDM's ``edm``) and scored with the ``elbo`` estimator
        (``x0_hat`` or EDM's ``edm``). ``context`` (imported conditional EDM models): the
        properties and their normalisation the network's context values use."""
        kind = params.get("network_kind", "egnn")
        if kind not in NETWORKS:
            raise UserError(f"pretrain.network_kind: {kind!r} is not one of {', '.join(NETWORKS)}")
        config_cls, net_cls = NETWORKS[kind]
        net_cfg = dataclass_from(config_cls, params.get("network"), "pretrain.network")
        num_atoms_probs = torch.tensor(params["num_atoms_probs"], dtype=torch.float64)
        config = {
            "network": net_cfg.to_dict(),
            "diffusion_steps": params.get("diffusion_steps", 1000),
            "sampling_steps": params.get("sampling_steps", 1000),
            "sampler": params.get("sampler", "ddpm"),
            "prediction": params.get("prediction", "epsilon"),
            "objective": params.get("objective", "mean"),
            "elbo": params.get("elbo", "x0_hat"),
            "num_atoms_probs": num_atoms_probs.tolist(),
            "domain": self.name,
        }
        # keys only a non-default model carries (older saved configs have none of them)
        config |= {"network_kind": kind} if kind != "egnn" else {}
        config |= {"context": params["context"]} if "context" in params else {}
        return GaussianGenerator(
            GaussianDiffusion(polynomial_schedule(config["diffusion_steps"])),
            net_cls(net_cfg),
            MoleculeLayout(net_cfg.atom_types, num_atoms_probs),
            sampling_steps=config["sampling_steps"],
            sample_batch=params.get("sample_batch", 256),
            config=config,
            num_labels=net_cfg.num_labels,
            sampler=config["sampler"],
            prediction=config["prediction"],
            objective=config["objective"],
            elbo=config["elbo"],
        )

    def generator_settings(self, params: dict, data_dir: Path, x: torch.Tensor) -> dict:
        """Atom types of the prepared data (unless given), the size histogram of ``x``."""
        network = {"atom_types": self._elements(data_dir)} | (params.get("network") or {})
        sizes = (x[..., 3] > 0).sum(1)
        probs = torch.bincount(sizes, minlength=x.shape[1] + 1).double()
        return params | {"network": network, "num_atoms_probs": (probs / probs.sum()).tolist()}

    def pretrain_summary(self, gen: GaussianGenerator, x_valid, params: dict) -> dict:
        ll = elbo(gen, x_valid[: params.get("loglik_molecules", 256)])
        return {"valid_loglik_per_molecule": ll.mean().item(), "n_valid": len(ll)}

    def label_condition(
        self,
        objective: dict,
        reward_model: Path,
        data_dir: Path | None = None,
        spec: list[dict] | dict | None = None,
    ) -> LabelCondition:
        """Property bins as conditions (``ctrl``, :mod:`molgen.conditions`) from the regressor
        ensemble at ``reward_model``: edges at the training tertiles of the objective's
        ``target`` properties, σ calibrated on the validation molecules (both need
        ``data_dir``); ``spec`` (property, edges per condition) rebuilds a saved condition with
        another regressor copy."""
        model = _oracles.load_regressor(str(reward_model))
        if spec is None:
            props = conditions.target_properties(objective, model.config["targets"])
            spec = conditions.tertile_spec(props, self.load_split(data_dir, "train")[1])
        valid = self.load_split(data_dir, "valid") if data_dir is not None else None
        return conditions.property_bins(model, spec, objective, valid)

    # ----- designs, oracles, rewards --------------------------------------------------------
    def to_designs(self, x: torch.Tensor) -> list[Molecule]:
        return from_dense(x)

    def encode_designs(self, designs: list[Molecule], gen: GaussianGenerator, params) -> Tensor:
        """Dense (n', N_max, 4) of the designs ``gen`` can represent (size, elements)."""
        kept = [m for m in designs if self._fits(m, gen)]
        return (
            to_dense(kept, gen.layout.max_atoms)
            if kept
            else torch.zeros(0, gen.layout.max_atoms, 4)
        )

    @staticmethod
    def _fits(mol: Molecule, gen: GaussianGenerator) -> bool:
        types = set(gen.net.cfg.atom_types)
        return len(mol) <= gen.layout.max_atoms and set(mol.numbers.tolist()) <= types

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

    def check_designs(self, designs: list[Molecule], oracles: list[str], reward_model) -> None:
        """A UserError when an oracle that reads coordinates meets a 2D record."""
        _oracles.check_3d(designs, oracles)

    def diversity(self, x: torch.Tensor) -> float:
        return metrics.tanimoto_diversity(self.to_designs(x))

    def quality(self, x: torch.Tensor) -> dict:
        """EDM atom/molecule stability and RDKit validity of generator outputs (round logs)."""
        edm = metrics.edm_metrics(self.to_designs(x))
        return {k: edm[k] for k in ("atom_stability", "molecule_stability", "validity")}

    def render_designs(
        self, runs: list[tuple[str, list, np.ndarray]], path: Path, per_run: int = 6
    ) -> bool:
        """PNG grid of 2D depictions: one row per (label, designs, their ``reward_eval``) with
        its ``per_run`` best valid designs."""
        from rdkit import Chem, rdBase
        from rdkit.Chem import Draw

        quiet = rdBase.BlockLogs()  # noqa: F841  (RDKit warns about lone H atoms in fragments)
        mols, legends = [], []
        for label, designs, scores in runs:
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
        return True

    # ----- evaluation ----------------------------------------------------------------------
    def design_metrics(
        self, designs: list[Molecule], params: dict, data_dir: Path, reward_model: Path
    ) -> dict:
        """EDM-protocol metrics (stability, validity, uniqueness, novelty), strict validity,
        geometry checks, diversity."""
        require_3d(designs, f"the metrics read 3D geometry: {EMBED_HINT}")
        train_smiles = set((Path(data_dir) / "train_smiles.txt").read_text().split())
        out = {"n": len(designs)}
        out |= metrics.molecule_metrics(designs, train_smiles)
        out["diversity"] = metrics.tanimoto_diversity(designs)
        out["mean_atoms"] = float(np.mean([len(m) for m in designs]))
        return out

    def loglik_figures(self, ll: Tensor, gen: GaussianGenerator, n: int) -> dict:
        """The base's, after the count of designs the model cannot represent (too large,
        unknown elements)."""
        return {"loglik_unrepresentable": n - len(ll)} | super().loglik_figures(ll, gen, n)


def _design_smiles(mol: Molecule) -> str | None:
    return graph_smiles(mol.record) if mol.flat else metrics.largest_fragment_smiles(mol)


MOLECULE = register_domain(MoleculeDomain())
