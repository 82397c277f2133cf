"""``python -m molgen metrics``, and the molecule domain's scoring and SDF output."""

import json

import numpy as np
import pytest

from molgen.__main__ import main
from molgen.data import smiles_to_molecule
from molgen.domain import MOLECULE
from molgen.molecule import Molecule, read_sdf, write_sdf

KEYS = {"atom_stability", "molecule_stability", "validity", "uniqueness", "novelty",
        "strict_validity"}  # fmt: skip


@pytest.fixture(scope="module")
def small_set():
    return [smiles_to_molecule(s, seed=0) for s in ("CCO", "CC#N", "OC=O", "CCO")]


def test_metrics_cli_on_sdf(tmp_path, small_set, capsys):
    write_sdf(tmp_path / "d.sdf", small_set)
    (tmp_path / "train.txt").write_text("[H]OC([H])([H])C([H])([H])[H]\n")
    assert main(["metrics", "--input", str(tmp_path / "d.sdf"),
                 "--train-smiles", str(tmp_path / "train.txt")]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result)
    assert result["molecule_stability"] == 1.0 and result["validity"] == 1.0
    assert result["uniqueness"] == pytest.approx(3 / 4)  # ethanol twice
    assert result["novelty"] == pytest.approx(2 / 3)  # ethanol is in the training set


def test_metrics_cli_bad_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.xyz").write_text("2\nx\nC 0 0 0\nZz 1 1 1\n")
    assert main(["metrics", "--input", str(tmp_path / "bad.xyz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "record 1 ('x')" in err and "'Zz'" in err


def test_scoring_never_crashes_on_bad_designs(small_set):
    broken = Molecule([6, 6], [[0, 0, 0], [0, 0, 0.05]], "clash")
    empty = Molecule(np.zeros(0, int), np.zeros((0, 3)), "empty")
    designs = small_set[:2] + [broken, empty]
    scores = MOLECULE.score(designs, ["qed", "stability:molecule", "xtb:gap"])
    assert np.isfinite(scores["qed"][:2]).all() and np.isnan(scores["qed"][2:]).all()
    assert list(scores["stability:molecule"][:3]) == [1.0, 1.0, 0.0]
    assert np.isfinite(scores["xtb:gap"][:2]).all() and np.isnan(scores["xtb:gap"][2:]).all()


def test_designs_sdf_keeps_bonds_and_scores(tmp_path, small_set):
    MOLECULE.write_designs(tmp_path / "d.sdf", small_set[:2], {"qed": np.array([0.4, 0.5])})
    text = (tmp_path / "d.sdf").read_text()
    assert "V2000" in text and ">  <qed>" in text
    back = read_sdf(tmp_path / "d.sdf")
    assert back[1].props["qed"] == "0.5"  # SD fields are read as written
    from rdkit import Chem

    supplier = Chem.SDMolSupplier(str(tmp_path / "d.sdf"), removeHs=False)
    assert [m.GetNumBonds() for m in supplier] == [8, 5]  # ethanol, acetonitrile with Hs
