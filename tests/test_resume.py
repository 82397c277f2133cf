"""Fine-tuning runs interrupted after a scratch checkpoint resume to the uninterrupted result."""

import pytest
import torch
from test_ctrl import conditional, toy_condition
from test_finetune import zero_fraction
from test_rcgdm import value_conditioned
from toys import L, ToyRegressor, V, toy_task

from rewarddiff.finetune.ctrl import CTRLConfig, ctrl
from rewarddiff.finetune.ddpo import DDPOConfig, ddpo
from rewarddiff.finetune.draft import DraftConfig, draft
from rewarddiff.finetune.rcgdm import RCGDMConfig, rcgdm
from rewarddiff.finetune.rgdm import RGDMConfig, rgdm
from rewarddiff.finetune.seiko import SEIKOConfig, seiko
from rewarddiff.io import load_tensors
from rewarddiff.training import TrainConfig, train


class Interrupted(Exception):
    pass


def rgdm_run(task):
    rgdm(task, RGDMConfig(oracle_budget=96, rounds=3, steps_per_round=4, batch_size=16,
                          ema_decay=0.9))  # fmt: skip


def draft_run(task):
    task.reward.torch_fn = zero_fraction
    draft(task, DraftConfig(oracle_budget=64, batch_size=16, grad_steps=4, log_every=1,
                            kl_weight=0.1))  # fmt: skip


def ddpo_run(task):
    ddpo(task, DDPOConfig(oracle_budget=48, batch_size=16, ppo_epochs=1, kl_weight=0.1))


def ctrl_run(task):
    cfg = CTRLConfig(oracle_budget=48, batch_size=16, grad_steps=4, log_every=1, eval_per_label=4)
    task = conditional(task, 2)
    task.condition = toy_condition()
    ctrl(task, cfg)


def seiko_run(task):
    task.reward_network = ToyRegressor
    seiko(task, SEIKOConfig(oracle_budget=112, rounds=3, reward_steps=10, steps_per_round=2,
                            batch_size=16, grad_steps=4))  # fmt: skip


def rcgdm_run(task):
    task = value_conditioned(task)
    task.data = torch.randint(V, (512, L), generator=torch.Generator().manual_seed(1))
    rcgdm(task, RCGDMConfig(oracle_budget=64, reward_steps=10, steps=30, batch_size=16,
                            checkpoint_every=10, sweep=[0.0], sweep_samples=16))  # fmt: skip


def finished(run, path, interrupt_after=None, identity=None):
    """Run a toy task to the end, or until its ``interrupt_after``-th checkpoint."""
    task = toy_task()
    task.checkpoint_path = path
    task.identity = identity or {}
    if interrupt_after is not None:
        save, saved = task.checkpoint, []

        def checkpoint_then_stop(*args, **kwargs):
            save(*args, **kwargs)
            saved.append(1)
            if len(saved) == interrupt_after:
                raise Interrupted

        task.checkpoint = checkpoint_then_stop
    run(task)
    return task


RUNS = [rgdm_run, draft_run, ddpo_run, ctrl_run, seiko_run, rcgdm_run]


def same_weights(a, b) -> bool:
    want, got = a.generator.net.state_dict(), b.generator.net.state_dict()
    return want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def without_wall_time(rows):
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


@pytest.mark.parametrize("run", RUNS, ids=lambda f: f.__name__)
def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, run):
    reference = finished(run, tmp_path / "reference.safetensors")
    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(Interrupted):
        finished(run, path, interrupt_after=2)
    assert path.exists()
    resumed = finished(run, path)
    assert resumed.reward.calls == reference.reward.calls
    assert without_wall_time(resumed.rows) == without_wall_time(reference.rows)
    want, got = reference.generator.net.state_dict(), resumed.generator.net.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name


def test_checkpoint_of_other_settings_is_ignored(tmp_path, capsys):
    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(Interrupted):
        finished(ddpo_run, path, interrupt_after=1)
    task = toy_task()
    task.checkpoint_path = path
    ddpo(task, DDPOConfig(oracle_budget=32, batch_size=16, ppo_epochs=1, kl_weight=0.2))
    out = capsys.readouterr().out
    changed = "(settings.kl_weight, settings.oracle_budget); starting afresh"
    assert f"other inputs or settings {changed}" in out
    assert task.reward.calls == 32 and [r["round"] for r in task.rows] == [0, 1, 2]  # 2 = final


@pytest.mark.parametrize("run", RUNS, ids=lambda f: f.__name__)
def test_checkpoint_for_another_objective_or_input_is_not_resumed(tmp_path, run, capsys):
    """A run killed while maximising, re-run minimising (or with another pretrained model):
    it starts afresh, and ends where an uninterrupted run of the new identity ends."""
    maximise = {"objective": {"direction": "maximize"}, "inputs": {"pretrained": "aaaa"}}
    minimise = {"objective": {"direction": "minimize"}, "inputs": {"pretrained": "aaaa"}}
    other = {"objective": {"direction": "maximize"}, "inputs": {"pretrained": "bbbb"}}
    reference = finished(run, tmp_path / "reference.safetensors", identity=minimise)
    for changed, identity in (("identity.objective.direction", minimise),
                              ("identity.inputs.pretrained", other)):  # fmt: skip
        path = tmp_path / f"{changed}.safetensors"
        with pytest.raises(Interrupted):
            finished(run, path, interrupt_after=2, identity=maximise)
        capsys.readouterr()
        again = finished(run, path, identity=identity)
        out = capsys.readouterr().out
        assert f"other inputs or settings ({changed}); starting afresh" in out
        assert "resumed" not in out
        assert again.reward.calls == reference.reward.calls
        assert same_weights(again, reference)


@pytest.mark.parametrize("method", ["draft", "ctrl"])
def test_logging_frequency_never_discards_fine_tuning_progress(tmp_path, method, capsys):
    """log_every only sets when rows (and checkpoints) are written: the log draws from its own
    random stream, so a resumed run with another log_every trains the same weights."""

    def run_with(log_every):
        def run(task):
            if method == "draft":
                task.reward.torch_fn = zero_fraction
                draft(task, DraftConfig(oracle_budget=96, batch_size=16, grad_steps=4,
                                        log_every=log_every, kl_weight=0.1))  # fmt: skip
            else:
                cfg = CTRLConfig(oracle_budget=96, batch_size=16, grad_steps=4,
                                 log_every=log_every, eval_per_label=4)  # fmt: skip
                task = conditional(task, 2)
                task.condition = toy_condition()
                ctrl(task, cfg)

        return run

    reference = finished(run_with(3), tmp_path / "reference.safetensors")
    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(Interrupted):
        finished(run_with(1), path, interrupt_after=2)
    capsys.readouterr()
    resumed = finished(run_with(3), path)
    assert "resumed after 2 rounds" in capsys.readouterr().out
    assert same_weights(resumed, reference)


def test_pretraining_checkpoint_from_before_amsgrad_still_resumes(tmp_path, capsys):
    """TrainConfig.amsgrad came later: at its default it stays out of the checkpoint's settings,
    so a checkpoint written before the field existed (the same settings) resumes bit for bit;
    with amsgrad on, the run starts afresh."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))

    def run(out_dir, stop_at_step=None, **settings):
        torch.manual_seed(1)
        net = torch.nn.Linear(2, 1)
        cfg = TrainConfig(steps=12, batch_size=8, lr=1e-2, checkpoint_every=4, **settings)
        train(net, lambda m, b: (m(b) - b.sum(1, keepdim=True)).pow(2).mean(), lambda i: x[i],
              len(x), cfg, out_dir, stop_at_step)  # fmt: skip
        return net

    straight = run(tmp_path / "straight")
    run(tmp_path / "old", stop_at_step=8)
    settings = load_tensors(tmp_path / "old" / "checkpoint.safetensors")[1]["settings"]
    assert sorted(settings["train"]) == ["batch_size", "ema_decay", "grad_clip",
                                         "grad_clip_adaptive", "lr", "seed", "warmup_steps",
                                         "weight_decay"]  # fmt: skip
    capsys.readouterr()
    resumed = run(tmp_path / "old")
    assert "resumed from step 8" in capsys.readouterr().out
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    run(tmp_path / "old", amsgrad=True)
    assert "(train.amsgrad); starting afresh" in capsys.readouterr().out
