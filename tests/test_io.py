"""Checkpoints (safetensors + JSON config, no pickle), atomic writes and resumable training."""

import pandas as pd
import pytest
import torch
from torch import nn

from rewarddiff import UserError
from rewarddiff.io import atomic_path, load_tensors, save_model, write_json
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


def _train(out_dir, stop_at_step=None, adaptive=False):
    x, y = _problem()
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
    cfg = TrainConfig(steps=40, batch_size=16, lr=1e-2, checkpoint_every=10, log_every=5,
                      grad_clip_adaptive=adaptive)  # fmt: skip
    ema = train(
        net,
        lambda m, b: ((m(b[0]).squeeze(-1) - b[1]) ** 2).mean(),
        lambda idx: (x[idx], y[idx]),
        len(x),
        cfg,
        out_dir,
        stop_at_step,
    )
    return net, ema


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
    assert "starting afresh" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "train_log.csv")["step"].iloc[0] == 5


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
