"""QM9 parsing and split, SDF / XYZ / SMILES input, prepared-split round trip, bad input."""

import numpy as np
import pytest

from molgen import data
from molgen.graph import from_dense, to_dense
from molgen.molecule import Molecule, read_molecules, read_sdf, read_xyz, write_sdf, write_xyz
from rewarddiff import UserError


def test_parse_coordinates_accepts_mathematica_numbers():
    text = "[[0.,1.,-0.],[2.1997E-6,1.5*^-3,-.5]]"
    xyz = data.parse_coordinates(text, 2)
    np.testing.assert_allclose(xyz, [[0, 1, 0], [2.1997e-6, 1.5e-3, -0.5]])
    with pytest.raises(UserError, match="expected 9 coordinates"):
        data.parse_coordinates(text, 3, "qm9 index 7: ")


def test_parse_elements_and_unknown_symbol():
    assert data.parse_elements("['C','H','O','N','F']") == [6, 1, 8, 7, 9]
    with pytest.raises(UserError, match="unknown element 'Xx'"):
        data.parse_elements("['C','Xx']", "row 3: ")


def test_edm_split_sizes_and_determinism():
    splits = data.edm_split(130_831)
    assert {k: len(v) for k, v in splits.items()} == data.EDM_SPLIT
    assert len(np.unique(np.concatenate(list(splits.values())))) == 130_831
    np.testing.assert_array_equal(splits["test"], data.edm_split(130_831)["test"])


def test_read_qm9_first_rows():
    molecules = data.read_qm9(max_rows=3)
    assert [m.symbols for m in molecules[:3]] == [["C", "H", "H", "H", "H"], ["N", "H", "H", "H"],
                                                  ["O", "H", "H"]]  # fmt: skip
    methane = molecules[0]
    assert methane.props["smiles"] == "C"
    assert methane.props["alpha"] == pytest.approx(13.21)
    assert methane.props["gap"] == pytest.approx(0.5048 * data.HARTREE_TO_MEV)
    ch = np.linalg.norm(methane.positions[1:] - methane.positions[0], axis=1)
    np.testing.assert_allclose(ch, 1.092, atol=0.002)  # C–H bond length in Å


def test_smiles_to_3d_and_bad_smiles():
    mol = data.smiles_to_molecule("CCO", seed=1)
    assert sorted(mol.symbols) == ["C", "C", "H", "H", "H", "H", "H", "H", "O"]
    dist = np.linalg.norm(mol.positions[0] - mol.positions[1])
    assert 1.45 < dist < 1.58  # MMFF C–C single bond
    with pytest.raises(UserError, match="cannot parse SMILES"):
        data.smiles_to_molecule("C1CC(", name="rec 4")


def test_sdf_and_xyz_round_trip(tmp_path):
    mols = [data.smiles_to_molecule(s, seed=0) for s in ("O", "CC#N")]
    mols[0].props = {"score": 1.5}
    write_sdf(tmp_path / "a.sdf", mols)
    back = read_sdf(tmp_path / "a.sdf")
    assert back[0].props["score"] == "1.5"  # SD fields are read as written
    write_xyz(tmp_path / "a.xyz", mols)
    for got in (back, read_xyz(tmp_path / "a.xyz")):
        for a, b in zip(mols, got):
            np.testing.assert_array_equal(a.numbers, b.numbers)
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)


def test_bad_molecule_files(tmp_path):
    (tmp_path / "u.xyz").write_text("2\nbad\nC 0 0 0\nQq 1 0 0\n")
    with pytest.raises(UserError, match=r"u.xyz: record 1 .*unknown element 'Qq'"):
        read_xyz(tmp_path / "u.xyz")
    (tmp_path / "n.xyz").write_text("1\nok\nC 0 0 0\n1\nnan\nC nan 0 0\n")
    with pytest.raises(UserError, match="record 2 .*non-finite"):
        read_xyz(tmp_path / "n.xyz")
    (tmp_path / "t.xyz").write_text("3\ntruncated\nC 0 0 0\n")
    with pytest.raises(UserError, match="atom count on line 1 is 3, but the file ends"):
        read_xyz(tmp_path / "t.xyz")
    good = data.smiles_to_molecule("C")
    write_sdf(tmp_path / "b.sdf", [good, good])
    text = (tmp_path / "b.sdf").read_text().split("$$$$\n")
    lines = text[1].splitlines()
    lines[3] = "  5  4  0  0  0  0  0  0  0  0999 V2000 broken"  # counts line
    lines[4] = "garbage"
    (tmp_path / "b.sdf").write_text(text[0] + "$$$$\n" + "\n".join(lines) + "\n$$$$\n")
    with pytest.raises(UserError, match=r"b.sdf: record 2 .*cannot read it: Atom line too short"):
        read_sdf(tmp_path / "b.sdf")
    (tmp_path / "x.pdb").write_text("ATOM      1  C   UNL     1       0.000   0.000   0.000\n")
    with pytest.raises(UserError, match="unsupported molecule file .pdb"):
        read_molecules(tmp_path / "x.pdb")


def test_prepared_split_round_trip(tmp_path):
    mols = data.read_qm9(max_rows=20)
    data.save_split(tmp_path / "s.npz", mols, np.arange(20) % 2)
    back, cols = data.load_split(tmp_path / "s.npz")
    assert [len(m) for m in back] == [len(m) for m in mols]
    np.testing.assert_allclose(back[7].positions, mols[7].positions, atol=1e-6)
    np.testing.assert_allclose(cols["alpha"], [m.props["alpha"] for m in mols])
    assert list(cols["half"][:4]) == [0, 1, 0, 1]
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:  # no pickled objects inside
        assert "smiles" in z.files


def test_dense_layout_round_trip_and_size_limit():
    mols = [Molecule([6, 1], [[0, 0, 0], [1.1, 0, 0]]), Molecule([8], [[0, 0, 1]])]
    x = to_dense(mols, 4)
    assert x.shape == (2, 4, 4)
    back = from_dense(x)
    np.testing.assert_array_equal(back[0].numbers, [6, 1])
    np.testing.assert_allclose(back[1].positions, [[0, 0, 1]])
    with pytest.raises(UserError, match="molecule 0 .* 2 atoms; the limit is 1"):
        to_dense(mols, 1)


def test_prepare_user_smiles_and_sdf(tmp_path):
    table = tmp_path / "mols.csv"
    smiles = ["C", "CC", "CCO", "CC#N", "OC=O", "CN", "CCC", "C=O", "CO", "CCN", "O", "N"]
    table.write_text("smiles,score\n" + "".join(f"{s},{i}\n" for i, s in enumerate(smiles)))
    summary = data.prepare({"source": "smiles", "path": str(table)}, tmp_path / "a")
    assert summary["train"] + summary["valid"] + summary["test"] == len(smiles)
    mols, cols = data.load_split(tmp_path / "a/train.npz")
    assert len(mols) == summary["train"] and "score" in cols
    write_sdf(tmp_path / "m.sdf", [data.smiles_to_molecule(s) for s in smiles])
    summary = data.prepare({"source": "file", "path": str(tmp_path / "m.sdf")}, tmp_path / "b")
    assert summary["elements"] == [1, 6, 7, 8]
    with pytest.raises(UserError, match="needs key 'path'"):
        data.prepare({"source": "smiles"}, tmp_path / "c")
