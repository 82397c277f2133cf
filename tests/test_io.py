"""Checkpoints (safetensors + JSON config, no pickle), atomic writes and resumable training."""

import pandas as pd
import pytest
import torch
from torch import nn

from rewarddiff import UserError
from rewarddiff.io import (
    Manifest,
    atomic_path,
    content_hash,
    load_tensors,
    save_model,
    stage_output,
    write_json,
)
from rewarddiff.training import AdaptiveClip, NonFiniteLoss, TrainConfig, train


def test_model_checkpoint_round_trip(tmp_path):
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    save_model(tmp_path / "m.safetensors", net, {"layers": [3, 4, 2], "name": "mlp"})
    tensors, config = load_tensors(tmp_path / "m.safetensors")
    assert config == {"layers": [3, 4, 2], "name": "mlp"}
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    other.load_state_dict(tensors)
    x = torch.randn(5, 3)
    assert torch.equal(net(x), other(x))
    with pytest.raises(UserError, match="checkpoint not found"):
        load_tensors(tmp_path / "missing.safetensors")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")


def _problem():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return x, y


def _train(out_dir, stop_at_step=None, adaptive=False, identity=None, width=16, **settings):
    x, y = _problem()
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Dropout(0.1), nn.Linear(width, 1))
    cfg = TrainConfig(**{"steps": 40, "batch_size": 16, "lr": 1e-2, "checkpoint_every": 10,
                         "log_every": 5, "grad_clip_adaptive": adaptive} | settings)  # fmt: skip
    ema = train(
        net,
        lambda m, b: ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(),
        lambda idx: (x[idx], y[idx]),
        len(x),
        cfg,
        out_dir,
        stop_at_step,
        identity,
    )
    return net, ema


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("adaptive", [False, True])
def test_interrupted_training_resumes_bit_for_bit(tmp_path, adaptive):
    straight, straight_ema = _train(tmp_path / "a", adaptive=adaptive)
    _train(tmp_path / "b", stop_at_step=20, adaptive=adaptive)  # "killed" after step 20
    resumed, resumed_ema = _train(tmp_path / "b", adaptive=adaptive)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(straight_ema.model.parameters(), resumed_ema.model.parameters()):
        assert torch.equal(p, q)
    log_a, log_b = (pd.read_csv(tmp_path / d / "train_log.csv") for d in "ab")
    assert log_a[["step", "loss"]].equals(log_b[["step", "loss"]])  # no gap, no duplicate


def test_rerun_after_outputs_deleted_keeps_the_log(tmp_path):
    """A workflow manager deletes declared outputs before re-running a finished job."""
    _train(tmp_path)
    before = pd.read_csv(tmp_path / "train_log.csv")
    (tmp_path / "train_log.csv").unlink()
    _train(tmp_path)  # resumes at the last step: nothing to do, but the log is written again
    assert pd.read_csv(tmp_path / "train_log.csv").equals(before)


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path, capsys):
    _train(tmp_path, stop_at_step=20)
    _train(tmp_path, adaptive=True)  # different TrainConfig: start afresh
    out = capsys.readouterr().out
    assert "other inputs or settings (train.grad_clip_adaptive); starting afresh" in out
    assert pd.read_csv(tmp_path / "train_log.csv")["step"].iloc[0] == 5


def test_checkpoint_for_other_inputs_is_not_resumed(tmp_path, capsys):
    """The caller's identity (data content hash, network settings) must match, even when the
    run had finished: a re-run on other data never returns the old model."""
    fresh, _ = _train(tmp_path / "fresh", identity={"data": "d2"})
    _train(tmp_path / "run", identity={"data": "d1"})  # finished, checkpoint at the last step
    again, _ = _train(tmp_path / "run", identity={"data": "d2"})
    assert "other inputs or settings (run.data); starting afresh" in capsys.readouterr().out
    assert _same_weights(again, fresh)


def test_logging_and_checkpoint_frequency_never_discard_progress(tmp_path, capsys):
    straight, straight_ema = _train(tmp_path / "a")
    _train(tmp_path / "b", stop_at_step=20)
    resumed, resumed_ema = _train(tmp_path / "b", log_every=2, checkpoint_every=7)
    assert "resumed from step 20" in capsys.readouterr().out
    assert _same_weights(resumed, straight) and _same_weights(resumed_ema.model, straight_ema.model)
    steps = pd.read_csv(tmp_path / "b" / "train_log.csv")["step"].tolist()
    # every 2nd step from the resume on, plus each checkpoint's step (21, 28, 35, 40)
    assert steps == [5, 10, 15, 20, 21, 22, 24, 26, 28, 30, 32, 34, 35, 36, 38, 40]


def test_more_steps_continue_a_finished_run(tmp_path, capsys):
    longer, longer_ema = _train(tmp_path / "a", steps=60)
    _train(tmp_path / "b")  # 40 steps, finished
    resumed, resumed_ema = _train(tmp_path / "b", steps=60)
    assert "resumed from step 40" in capsys.readouterr().out
    assert _same_weights(resumed, longer) and _same_weights(resumed_ema.model, longer_ema.model)
    _train(tmp_path / "b", steps=30)  # fewer steps than done: cannot go back
    assert "already past steps=30 (step 60); starting afresh" in capsys.readouterr().out


def test_checkpoint_of_another_network_size_starts_afresh(tmp_path, capsys):
    fresh, _ = _train(tmp_path / "fresh", width=8)
    _train(tmp_path / "run", stop_at_step=20)
    resized, _ = _train(tmp_path / "run", width=8)  # same identity, other shapes: no crash
    assert "cannot be restored" in capsys.readouterr().out
    assert _same_weights(resized, fresh)


def test_unreadable_checkpoint_starts_afresh(tmp_path, capsys):
    fresh, _ = _train(tmp_path / "fresh")
    _train(tmp_path / "run", stop_at_step=20)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated by a full disk
    again, _ = _train(tmp_path / "run")
    assert "unreadable (UserError); starting afresh" in capsys.readouterr().out
    assert _same_weights(again, fresh)


def test_kill_between_checkpoint_and_log_write_duplicates_no_row(tmp_path):
    _train(tmp_path / "a")
    _train(tmp_path / "b", stop_at_step=20)
    partial = tmp_path / "b" / "train_log.partial.csv"
    partial.write_text(partial.read_text() + partial.read_text().split("\n", 1)[1])  # stale
    _train(tmp_path / "b")
    log_a, log_b = (pd.read_csv(tmp_path / d / "train_log.csv") for d in "ab")
    assert log_a[["step", "loss"]].equals(log_b[["step", "loss"]])


def test_adaptive_clip_limit_follows_recent_norms():
    clip = AdaptiveClip([1.0, 3.0], size=3)
    assert clip.limit() == pytest.approx(1.5 * 2.0 + 2 * 1.0)  # 1.5·mean + 2·std
    clip.record(100.0, clip.limit())  # an outlier enters clipped at the limit
    assert clip.history == [1.0, 3.0, 5.0]
    clip.record(2.0, clip.limit())
    assert clip.history == [3.0, 5.0, 2.0]  # only the last `size` norms count


def test_nan_loss_stops_with_message(tmp_path):
    net = nn.Linear(2, 1)
    cfg = TrainConfig(steps=5, batch_size=2)
    with pytest.raises(NonFiniteLoss, match="loss is nan at step 1"):
        train(
            net,
            lambda m, b: m(b).sum() * float("nan"),
            lambda idx: torch.randn(2, 2),
            10,
            cfg,
            tmp_path,
        )


def test_failed_stage_removes_what_it_wrote_but_keeps_progress_and_old_files(tmp_path):
    out = tmp_path / "results" / "run"
    out.mkdir(parents=True)
    (out / "user_notes.txt").write_text("mine")
    with pytest.raises(RuntimeError), stage_output(out / "stage"):
        (out / "stage" / "sub").mkdir()
        (out / "stage" / "sub" / "half.csv").write_text("partial")
        (out / "stage" / "checkpoint.safetensors").write_text("progress")
        raise RuntimeError("killed")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "stage", "stage/checkpoint.safetensors", "user_notes.txt"]  # fmt: skip
    with pytest.raises(KeyboardInterrupt), stage_output(tmp_path / "new" / "deeper"):
        (tmp_path / "new" / "deeper" / "out.csv").write_text("partial")
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()
    with stage_output(tmp_path / "ok") as folder:
        (folder / "done.csv").write_text("1")
    assert (tmp_path / "ok" / "done.csv").exists()


def test_manifest_hashes_the_inputs_that_are_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.fasta").write_text(">a\nACGT\n")
    (data / "manifest.json").write_text('{"started": "now"}')  # a run record: not hashed
    many = [str(tmp_path / f"run{i}" / "metrics.json") for i in range(500)]  # a list: skipped
    manifest = Manifest("stage", {"data": str(data), "metrics": many, "none": None}, {})
    assert manifest.record["input_hashes"] == {"data": content_hash(data)}
    (data / "manifest.json").write_text('{"started": "later"}')
    assert content_hash(data) == manifest.record["input_hashes"]["data"]
    (data / "train.fasta").write_text(">a\nACGA\n")
    assert content_hash(data) != manifest.record["input_hashes"]["data"]
