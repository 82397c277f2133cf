"""Re-runs through the CLI stages never return a stale model: a scratch checkpoint or an
earlier output is reused only for the same input content and result-determining settings."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rewarddiff import campaign
from rewarddiff.cli import main
from rewarddiff.finetune.common import FinetuneTask
from rewarddiff.io import content_hash

TRAIN = {"steps": 6, "batch_size": 8, "checkpoint_every": 2, "log_every": 1}
PRETRAIN = {"network": {"hidden": 8, "layers": 1}, "sampling_steps": 4, "train": TRAIN}
REWARD = {"network": {"hidden": 8, "layers": 1}, "fit": {"steps": 4, "batch_size": 8}}
OBJECTIVE = {"reward": [{"oracle": "celltype_logodds:HepG2"}], "target": "HepG2"}


def dna_data(folder, seed):
    """A prepared DNA folder (the layout ``rewarddiff prepare`` writes): 200 bp sequences in
    train (both halves) / valid / test, two cell types."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    rows = ["id\tlabel\tsplit\tchr\thalf"]
    for split, n in (("train", 32), ("valid", 8), ("test", 8)):
        seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(n)]
        ids = [f"{split}{i}" for i in range(n)]
        (folder / f"{split}.fasta").write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
        for k, i in enumerate(ids):
            half = k % 2 if split == "train" else -1
            rows.append(f"{i}\t{('HepG2', 'K562')[k // 2 % 2]}\t{split}\tchr{3 + half}\t{half}")
    (folder / "labels.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def data(tmp_path):
    return dna_data(tmp_path / "d1", 1), dna_data(tmp_path / "d2", 2)


def stage(*argv):
    assert main([str(a) for a in argv]) == 0


def pretrain(data_dir, out_dir, params=PRETRAIN, stop=None):
    extra = ("--stop-at-step", stop) if stop else ()
    stage("pretrain", "--domain", "dna", "--params", json.dumps(params), "--data-dir", data_dir,
          "--out-dir", out_dir, *extra)  # fmt: skip


def weights(path):
    return load_file(str(path))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrain_on_other_data_into_the_same_folder_trains_afresh(tmp_path, data, capsys):
    d1, d2 = data
    pretrain(d2, tmp_path / "fresh")
    pretrain(d1, tmp_path / "pre")
    old = weights(tmp_path / "pre/model.safetensors")
    capsys.readouterr()
    pretrain(d2, tmp_path / "pre")
    assert "other inputs or settings (run.data); starting afresh" in capsys.readouterr().out
    new = weights(tmp_path / "pre/model.safetensors")
    assert not same(new, old) and same(new, weights(tmp_path / "fresh/model.safetensors"))
    manifest = json.loads((tmp_path / "pre/manifest.json").read_text())
    assert manifest["inputs"]["data_dir"] == str(d2)
    assert manifest["input_hashes"]["data_dir"] == content_hash(d2) != content_hash(d1)


def test_pretrain_settings_that_do_not_change_the_result_keep_progress(tmp_path, data, capsys):
    d1, _ = data
    pretrain(d1, tmp_path / "fresh")
    pretrain(d1, tmp_path / "pre", stop=4)
    logging = PRETRAIN | {"train": PRETRAIN["train"] | {"log_every": 3, "checkpoint_every": 3}}
    capsys.readouterr()
    pretrain(d1, tmp_path / "pre", params=logging | {"device": "cpu"})
    assert "resumed from step 4" in capsys.readouterr().out
    assert same(weights(tmp_path / "pre/model.safetensors"),
                weights(tmp_path / "fresh/model.safetensors"))  # fmt: skip


def test_pretrain_with_another_network_size_starts_afresh(tmp_path, data, capsys):
    d1, _ = data
    pretrain(d1, tmp_path / "pre", stop=4)
    wider = PRETRAIN | {"network": {"hidden": 16, "layers": 1}}
    capsys.readouterr()
    pretrain(d1, tmp_path / "pre", params=wider)  # used to crash with a size mismatch
    out = capsys.readouterr().out
    assert "(run.params.network.hidden); starting afresh" in out
    assert weights(tmp_path / "pre/model.safetensors")["body.blocks.0.norm.bias"].shape == (16,)


def test_reward_training_on_other_data_never_returns_the_old_model(tmp_path, data):
    d1, d2 = data
    for data_dir, out in ((d2, "fresh"), (d1, "rewards"), (d2, "rewards")):
        stage("train-reward", "--domain", "dna", "--copy", "ft", "--params", json.dumps(REWARD),
              "--data-dir", data_dir, "--out-dir", tmp_path / out)  # fmt: skip
        if data_dir == d1:
            old = weights(tmp_path / out / "ft/model.safetensors")
    new = weights(tmp_path / "rewards/ft/model.safetensors")
    assert not same(new, old) and same(new, weights(tmp_path / "fresh/ft/model.safetensors"))
    manifest = json.loads((tmp_path / "rewards/ft/manifest.json").read_text())
    assert manifest["input_hashes"]["data_dir"] == content_hash(d2)


class Killed(Exception):
    pass


def test_finetune_killed_while_maximising_rerun_minimising_starts_afresh(
    tmp_path, data, capsys, monkeypatch
):
    d1, _ = data
    pretrain(d1, tmp_path / "pre")
    stage("train-reward", "--domain", "dna", "--copy", "ft", "--params", json.dumps(REWARD),
          "--data-dir", d1, "--out-dir", tmp_path / "rewards")  # fmt: skip
    params = {"oracle_budget": 48, "rounds": 3, "steps_per_round": 2, "batch_size": 8}

    def finetune(direction, out):
        return campaign.finetune("dna", "rgdm", params, OBJECTIVE | {"direction": direction},
                                 tmp_path / "pre/model.safetensors",
                                 tmp_path / "rewards/ft/model.safetensors", d1, 0, out)  # fmt: skip

    reference = tmp_path / "minimise"
    finetune("minimize", reference)
    save = FinetuneTask.checkpoint

    def checkpoint_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(FinetuneTask, "checkpoint", checkpoint_then_die)
        with pytest.raises(Killed):
            finetune("maximize", tmp_path / "run")
    assert (tmp_path / "run/checkpoint.safetensors").exists()
    capsys.readouterr()
    finetune("minimize", tmp_path / "run")
    out = capsys.readouterr().out
    assert "(identity.objective.direction); starting afresh" in out and "resumed" not in out
    assert same(weights(tmp_path / "run/model.safetensors"),
                weights(reference / "model.safetensors"))  # fmt: skip
