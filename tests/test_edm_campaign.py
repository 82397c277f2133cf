"""An EDM release through the CLI: ``rewarddiff import-edm`` writes a pretrained molecule model,
``pretrain.checkpoint`` adopts it instead of training, and it samples and scores like any
pretrained model; ``network_kind: edm`` trains EDM's network from scratch with EDM's objective."""

import json
import math
from pathlib import Path

import pytest
import torch
from test_edm_import import outputs, source_network, write_release

from molgen.edm import EDMDenoiser
from rewarddiff.cli import main
from rewarddiff.domain import get_domain
from rewarddiff.io import content_hash, read_json

ROOT = Path(__file__).resolve().parents[1]
DATA = {"source": "qm9", "max_per_split": 40, "max_atoms": 12}


def test_imported_release_is_adopted_sampled_and_trained_on(tmp_path, capsys):
    net = source_network()
    weights, args = write_release(tmp_path / "release", net)
    assert main(["import-edm", "--weights", str(weights), "--args", str(args),
                 "--out", str(tmp_path / "edm"), "--sampling-steps", "5"]) == 0  # fmt: skip
    data = tmp_path / "data"
    assert main(["prepare", "--domain", "molecule", "--params", json.dumps(DATA),
                 "--out-dir", str(data)]) == 0  # fmt: skip
    params = {"checkpoint": str(tmp_path / "edm"), "loglik_molecules": 4}
    assert main(["pretrain", "--domain", "molecule", "--params", json.dumps(params),
                 "--data-dir", str(data), "--out-dir", str(tmp_path / "pre")]) == 0  # fmt: skip
    manifest = read_json(tmp_path / "pre/manifest.json")
    assert manifest["results"]["adopted"] == str(tmp_path / "edm/model.safetensors")
    assert manifest["input_hashes"]["checkpoint"] == content_hash(tmp_path / "edm")
    assert not math.isnan(manifest["results"]["valid_loglik_per_molecule"])
    assert (tmp_path / "pre/train_log.csv").read_text() == "step,loss\n"
    dom = get_domain("molecule")
    gen = dom.load_generator(tmp_path / "pre/model.safetensors")
    assert isinstance(gen.net, EDMDenoiser) and gen.sampling_steps == 5
    for a, b in zip(outputs(gen.net), outputs(net)):  # the release's function, unchanged
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    out, model = tmp_path / "designs.sdf", tmp_path / "pre/model.safetensors"
    assert main(["sample", "--domain", "molecule", "--model", str(model), "--n", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    assert out.read_text().count("$$$$") == 3
    # a second adoption of a changed source is not mixed up with the first
    other = source_network()
    for p in other.parameters():
        p.data += 0.01
    weights, args = write_release(tmp_path / "release2", other)
    assert main(["import-edm", "--weights", str(weights), "--args", str(args),
                 "--out", str(tmp_path / "edm2")]) == 0  # fmt: skip
    params["checkpoint"] = str(tmp_path / "edm2")
    assert main(["pretrain", "--domain", "molecule", "--params", json.dumps(params),
                 "--data-dir", str(data), "--out-dir", str(tmp_path / "pre")]) == 0  # fmt: skip
    gen = dom.load_generator(tmp_path / "pre/model.safetensors")
    for a, b in zip(outputs(gen.net), outputs(other)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    capsys.readouterr()


def test_missing_checkpoint_and_unknown_network_kind_are_one_line(tmp_path, capsys):
    from badinput import assert_clean_error

    data = tmp_path / "data"
    assert main(["prepare", "--domain", "molecule", "--params", json.dumps(DATA),
                 "--out-dir", str(data)]) == 0  # fmt: skip
    capsys.readouterr()
    missing = {"checkpoint": str(tmp_path / "nowhere")}
    assert_clean_error(capsys, ["pretrain", "--domain", "molecule", "--params",
                                json.dumps(missing), "--data-dir", str(data),
                                "--out-dir", str(tmp_path / "pre")],
                       "pretrain.checkpoint", "nowhere", outputs=[tmp_path / "pre"])  # fmt: skip
    kind = {"network_kind": "transformer", "network": {}, "train": {"steps": 1}}
    assert_clean_error(capsys, ["pretrain", "--domain", "molecule", "--params", json.dumps(kind),
                                "--data-dir", str(data), "--out-dir", str(tmp_path / "pre")],
                       "network_kind", "'transformer'", outputs=[tmp_path / "pre"])  # fmt: skip


def test_edm_network_trains_from_scratch_with_edm_objective(tmp_path):
    """network_kind: edm with EDM's objective, estimator and optimiser settings pretrains; the
    saved model rebuilds with them."""
    from rewarddiff import campaign

    data = tmp_path / "data"
    campaign.prepare("molecule", DATA, data)
    params = {"network_kind": "edm", "network": {"hidden": 16, "layers": 1},
              "objective": "edm", "elbo": "edm", "diffusion_steps": 20, "sampling_steps": 4,
              "train": {"steps": 4, "batch_size": 8, "amsgrad": True, "weight_decay": 1e-12,
                        "grad_clip_adaptive": True, "warmup_steps": 0, "log_every": 2},
              "loglik_molecules": 4, "device": "cpu"}  # fmt: skip
    results = campaign.pretrain("molecule", params, data, tmp_path / "pre")
    assert "valid_loglik_per_molecule" in results
    gen = get_domain("molecule").load_generator(tmp_path / "pre/model.safetensors")
    assert isinstance(gen.net, EDMDenoiser)
    assert (gen.objective, gen.elbo, gen.config["network_kind"]) == ("edm", "edm", "edm")
    x, _ = gen.sample(2, torch.Generator().manual_seed(0))
    assert x.shape[0] == 2


def test_likelihood_command_is_edms_estimator(tmp_path, capsys):
    """python -m molgen likelihood: −(mean over repeats of the EDM-estimator ELBO) per
    molecule, the same numbers as the generator's own estimator for the same draws."""
    import dataclasses

    from molgen.__main__ import main as molgen_main
    from molgen.graph import to_dense
    from molgen.molecule import read_molecules, write_sdf

    weights, args = write_release(tmp_path / "release", source_network())
    main(
        ["import-edm", "--weights", str(weights), "--args", str(args), "--out", str(tmp_path / "m")]
    )
    model = tmp_path / "m/model.safetensors"
    data = tmp_path / "data"
    main(["prepare", "--domain", "molecule", "--params", json.dumps(DATA), "--out-dir", str(data)])
    molecules = get_domain("molecule").load_split(data, "test")[0][:5]
    sdf = tmp_path / "mols.sdf"
    write_sdf(sdf, get_domain("molecule").to_designs(molecules))
    capsys.readouterr()
    assert molgen_main(["likelihood", "--model", str(model), "--input", str(sdf), "--repeats", "3",
                        "--seed", "7"]) == 0  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    gen = dataclasses.replace(get_domain("molecule").load_generator(model), elbo="edm")
    x = to_dense(read_molecules(sdf), gen.layout.max_atoms)
    rng = torch.Generator().manual_seed(7)
    ll = torch.stack([gen.log_likelihood(x, num_t=1, generator=rng) for _ in range(3)])
    expected = -ll.double().mean(0)
    assert [v for _, v in result["per_molecule"]] == pytest.approx(expected.tolist(), rel=1e-12)
    assert result["nll_mean"] == pytest.approx(expected.mean().item(), rel=1e-12)
    assert result["n"] == 5 and result["repeats"] == 3
    # a molecule the model cannot represent: one line naming it
    chlorine = sdf.read_text().replace(" C ", " Cl", 1)
    (tmp_path / "cl.sdf").write_text(chlorine)
    assert (
        molgen_main(["likelihood", "--model", str(model), "--input", str(tmp_path / "cl.sdf")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the model takes" in err[0] and "17" in err[0], err


def test_network_settings_are_checked_against_the_network_kind(tmp_path):
    """The schema checks `pretrain.network` against the chosen network's settings: EDM's keys
    with network_kind edm, the light block's otherwise."""
    from rewarddiff import UserError
    from rewarddiff.config import load_config

    base = (ROOT / "config/config.yaml").read_text()
    full = "network: {hidden: 256, layers: 9}\n      objective: edm"
    assert full in base
    path = tmp_path / "config.yaml"
    cases = {
        "network: {hidden: 256, layers: 9, aggregation_norm: 2}\n      objective: edm": (
            "domains.molecule.pretrain.network: unknown key 'aggregation_norm'"
        ),
        "network: {hidden: 256, layers: 9, inv_sublayers: 2}\n      objective: edm": None,
    }
    for text, message in cases.items():
        path.write_text(base.replace(full, text))
        if message is None:
            assert load_config(path)
        else:
            with pytest.raises(UserError, match=message):
                load_config(path)
    light = base.replace("      network_kind: edm\n", "").replace(
        full, "network: {hidden: 256, layers: 9, inv_sublayers: 2}\n      objective: edm"
    )
    path.write_text(light)
    with pytest.raises(UserError, match="unknown key 'inv_sublayers'"):
        load_config(path)
