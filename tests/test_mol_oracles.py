"""Molecule oracles (molgen.oracles): known RDKit / GFN2-xTB / MMFF94 values and NaN on failure."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from molgen import oracles
from molgen.molecule import Molecule, from_rdkit
from rewarddiff import UserError
from rewarddiff.oracles.registry import available, make_oracle

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
LEUCINE = "CC(C)CC(N)C(=O)O"  # no aromatic ring: EDM bond perception gives back this graph


@cache
def embedded(smiles: str, seed: int = 42) -> Molecule:
    """ETKDG + MMFF94 geometry with explicit hydrogens."""
    rd = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(rd, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(rd, maxIters=2000)
    return from_rdkit(rd, smiles)


def score(spec: str, molecules: list[Molecule], **context) -> np.ndarray:
    return make_oracle("molecule", spec, **context)(molecules)


def broken() -> Molecule:
    """Two carbons at the same place: over-bonded (invalid) and closer than 0.5 Å."""
    return Molecule([6, 6, 1], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.1, 0.0, 0.0]], "broken")


def test_registered():
    names = set(available("molecule"))
    expected = {"qed", "logp", "sa_score", "num_rings", "num_heavy_atoms"}
    assert expected | {"xtb", "mmff_strain", "stability"} <= names
    for bad in ("xtb", "xtb:homo", "xtb:gap@soon", "stability", "stability:bond", "mmff_strain:x"):
        with pytest.raises(UserError):
            make_oracle("molecule", bad)


def test_rdkit_descriptors_known_values():
    aspirin, benzene = Chem.MolFromSmiles(ASPIRIN), Chem.MolFromSmiles("c1ccccc1")
    assert oracles.rdkit_descriptor("qed")(aspirin) == pytest.approx(0.550, abs=5e-4)
    assert oracles.rdkit_descriptor("logp")(aspirin) == pytest.approx(1.31, abs=5e-3)
    # published SA scores: aspirin ≈ 1.58, benzene ≈ 1.0
    assert oracles.rdkit_descriptor("sa_score")(aspirin) == pytest.approx(1.58, abs=0.05)
    assert oracles.rdkit_descriptor("sa_score")(benzene) == pytest.approx(1.0, abs=0.05)
    assert oracles.rdkit_descriptor("num_rings")(aspirin) == 1
    assert oracles.rdkit_descriptor("num_heavy_atoms")(aspirin) == 13


def test_descriptor_oracles_on_3d_molecules():
    mols = [embedded(LEUCINE), embedded("CCO"), broken(), Molecule([], np.zeros((0, 3)))]
    reference = Chem.MolFromSmiles(LEUCINE)
    for name in ("qed", "logp", "sa_score", "num_rings", "num_heavy_atoms"):
        values = score(name, mols)
        assert values.shape == (4,)
        assert values[0] == pytest.approx(oracles.rdkit_descriptor(name)(reference), abs=1e-9)
        assert np.isfinite(values[1])
        assert np.isnan(values[2:]).all(), name  # invalid and empty molecules
    assert score("num_heavy_atoms", mols)[:2].tolist() == [9.0, 3.0]


def test_stability():
    mols = [embedded("CCO"), broken(), Molecule([], np.zeros((0, 3)))]
    assert score("stability:molecule", mols)[:2].tolist() == [1.0, 0.0]
    atom = score("stability:atom", mols)
    assert atom[0] == 1.0 and 0.0 <= atom[1] < 1.0 and np.isnan(atom[2])


def test_mmff_strain():
    relaxed = embedded(LEUCINE)
    center = relaxed.positions.mean(axis=0)
    squeezed = Molecule(relaxed.numbers, center + 0.97 * (relaxed.positions - center))
    for spec in ("mmff_strain", "mmff_strain:hrelax"):
        values = score(spec, [relaxed, squeezed, broken()])
        assert abs(values[0]) < 0.5, spec
        assert values[1] > 5.0, spec
        assert np.isnan(values[2])
    # hydrogens relaxed first: only the heavy-atom part of the strain is left
    assert score("mmff_strain:hrelax", [squeezed])[0] < score("mmff_strain", [squeezed])[0]


def test_xtb_known_values():
    water, benzene, methane = embedded("O"), embedded("c1ccccc1"), embedded("C")
    methyl = Molecule(methane.numbers[:-1], methane.positions[:-1])  # radical: uhf = 1
    mols = [water, benzene, methane, methyl, broken()]
    gap = score("xtb:gap", mols)
    assert gap[0] == pytest.approx(14.160, abs=0.01)  # measured, GFN2-xTB on the MMFF geometry
    assert gap[1] == pytest.approx(4.826, abs=0.01)
    assert gap[1] < gap[2]  # conjugated benzene below methane
    assert np.isfinite(gap[3]) and gap[3] > 0
    assert np.isnan(gap[4])  # broken geometry: NaN, no exception
    dipole = score("xtb:dipole", mols)
    assert 2.0 < dipole[0] < 2.6
    assert dipole[1] < 0.05 and dipole[2] < 0.05  # symmetric molecules
    energy = score("xtb:energy", mols)
    assert energy[0] == pytest.approx(-5.070, abs=0.01)  # Hartree
    assert np.isnan(energy[4])


def test_xtb_timeout_gives_nan_and_recovers():
    mol = embedded("CC(=O)NC")
    assert np.isnan(score("xtb:gap@0.0001", [mol])[0])  # worker killed, not cached
    assert np.isfinite(score("xtb:gap", [mol], xtb_timeout=30)[0])  # a fresh worker answers


def test_learned_property_oracle_denormalises_and_needs_a_model(tmp_path):
    """A fresh regressor's zero-initialised readout predicts the standardised mean 0, so the
    oracle must return the stored target mean; unknown targets and missing models are errors."""
    from molgen.regressor import PropertyRegressor, RegressorConfig
    from rewarddiff.oracles.learned import RewardEnsemble

    cfg = RegressorConfig(mul=4, layers=1, num_outputs=2)
    ensemble = RewardEnsemble([PropertyRegressor(cfg)], "regression")
    path = tmp_path / "model.safetensors"
    ensemble.save(path, {"network": cfg.to_dict(), "targets": ["alpha", "gap"],
                         "mean": [75.0, 6800.0], "std": [8.0, 1300.0]})  # fmt: skip
    mols = [embedded("CCO"), embedded("O")]
    np.testing.assert_allclose(score("property:gap", mols, reward_model=path), [6800.0] * 2)
    oracle = make_oracle("molecule", "property:alpha", reward_model=path)
    assert oracle.info.units == "Bohr³" and oracle.info.differentiable
    with pytest.raises(UserError, match="unknown target 'mu'"):
        make_oracle("molecule", "property:mu", reward_model=path)
    with pytest.raises(UserError, match="needs a reward model"):
        make_oracle("molecule", "property:alpha")
