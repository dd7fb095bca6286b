"""Checkpoints are never lost: atomic writes survive SIGKILL, training resumes, non-finite models are never saved."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from ignite.engine import Engine, Events

from monai_inr.engines.checkpoint import NonFiniteLossGuard, TrainingCheckpoint, TrainingError
from monai_inr.io import remove_stale_partials, save_atomic


def test_save_atomic_writes_complete_file_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_atomic({"w": torch.arange(5.0)}, tmp_path / "model.pt")
    finally:
        os.umask(old)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(5.0))
    assert (path.stat().st_mode & 0o777) == 0o644
    assert list(tmp_path.iterdir()) == [path]


def test_sigkill_during_checkpoint_write_keeps_previous_model_and_next_run_cleans_up(tmp_path):
    """A writer is killed while the second (large) checkpoint is being written: the first stays complete."""
    target = tmp_path / "model.pt"
    script = textwrap.dedent(f"""
        import torch
        from monai_inr.io import save_atomic
        save_atomic({{"w": torch.zeros(4)}}, {str(target)!r})
        print("first", flush=True)
        while True:
            save_atomic({{"w": torch.ones(16 * 1024 * 1024)}}, {str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first"
        deadline = time.time() + 60
        while not list(tmp_path.glob(".model.pt.*.partial*")):
            assert time.time() < deadline, "the second write never started"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    state = torch.load(target, weights_only=True)  # old or new, but complete
    assert state["w"].shape in ((4,), (16 * 1024 * 1024,))
    partials = list(tmp_path.glob(".model.pt.*.partial*"))
    if partials:  # killed inside the write: the next run removes what the dead process left
        assert remove_stale_partials(tmp_path) == partials
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob(".*.partial*"))


def _training(tmp_path, metrics, max_epochs, resume=True, nan_at=None, interval=1, **ckpt_kw):
    """A tiny trainer whose 'validation' returns ``metrics[epoch - 1]``; returns (trainer, network, checkpoint)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    def step(engine, batch):
        opt.zero_grad()
        loss = net(batch).pow(2).mean()
        if nan_at is not None and engine.state.epoch >= nan_at:
            with torch.no_grad():
                net.weight.fill_(float("nan"))
            loss = loss * float("nan")
        else:
            loss.backward()
            opt.step()
        return {"loss": loss}

    trainer = Engine(step)
    validator = Engine(lambda e, b: None)
    validator.state.key_metric_name = "val_psnr"

    @trainer.on(Events.EPOCH_COMPLETED(every=interval))
    def _validate(engine):
        validator.state.metrics = {"val_psnr": metrics[engine.state.epoch - 1]}

    @trainer.on(Events.EPOCH_COMPLETED)
    def _sched(engine):
        sched.step()

    NonFiniteLossGuard().attach(trainer)
    ckpt = TrainingCheckpoint(tmp_path, net, opt, sched, validator=validator, interval=interval, resume=resume,
                              **ckpt_kw)
    ckpt.attach(trainer)
    data = [torch.ones(3, 2)] * 2
    return trainer, net, ckpt, data


def test_best_model_follows_the_key_metric_and_training_resumes(tmp_path):
    metrics = [10.0, 12.0, 11.0, 13.0, 9.0, 14.0]
    trainer, net, ckpt, data = _training(tmp_path, metrics, max_epochs=3)
    trainer.run(data, max_epochs=3)
    best = torch.load(tmp_path / "model.pt", weights_only=True)
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert state["epoch"] == 3 and state["best_metric"] == 12.0 and state["best_epoch"] == 2
    assert not torch.equal(best["weight"], net.weight.detach())  # epoch 3 was worse: the epoch-2 model stays

    # a new process restarts the same command with more epochs: it resumes at epoch 4, keeps the best of the last run
    trainer2, net2, ckpt2, data = _training(tmp_path, metrics, max_epochs=6)
    seen = []
    trainer2.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(e.state.epoch))
    trainer2.run(data, max_epochs=6)
    assert seen == [4, 5, 6]
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert state["best_metric"] == 14.0 and state["best_epoch"] == 6
    assert math.isclose(state["lr_scheduler"]["last_epoch"], 6)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net2.weight.detach())


def test_a_minimised_metric_keeps_the_lowest_and_final_and_periodic_snapshots_are_written(tmp_path):
    """ArRFR selects by validation loss (mode "min"), keeps a snapshot every few epochs and the finished network."""
    metrics = [3.0, 2.0, 2.5, 1.0, 4.0]
    trainer, net, ckpt, data = _training(tmp_path, metrics, max_epochs=5, mode="min", final_filename="model_final.pt",
                                         save_interval=2)
    weights = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.update({e.state.epoch: net.weight.clone()}))
    trainer.run(data, max_epochs=5)
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert state["best_metric"] == 1.0 and state["best_epoch"] == 4
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], weights[4])
    assert torch.equal(torch.load(tmp_path / "model_final.pt", weights_only=True)["weight"], weights[5])
    assert sorted(p.name for p in tmp_path.glob("periodic_model_epoch=*.pt")) == [
        "periodic_model_epoch=2.pt", "periodic_model_epoch=4.pt"]
    assert torch.equal(torch.load(tmp_path / "periodic_model_epoch=2.pt", weights_only=True)["weight"], weights[2])
    # a resumed run keeps comparing against the saved lowest value
    trainer2, _, _, data = _training(tmp_path, metrics + [1.5, 0.5], max_epochs=7, mode="min")
    trainer2.run(data, max_epochs=7)
    state = torch.load(tmp_path / "training_state.pt", weights_only=True)
    assert state["best_metric"] == 0.5 and state["best_epoch"] == 7
    with pytest.raises(ValueError, match="mode"):
        TrainingCheckpoint(tmp_path, net, mode="lowest")


def test_an_interrupted_run_never_writes_the_final_name(tmp_path):
    trainer, _, _, data = _training(tmp_path, [1.0] * 4, max_epochs=4, final_filename="model_final.pt")
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda e: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        trainer.run(data, max_epochs=4)
    assert (tmp_path / "model.pt").is_file() and not (tmp_path / "model_final.pt").exists()


def test_restart_without_resume_keeps_the_previous_run(tmp_path):
    trainer, _, _, data = _training(tmp_path, [20.0, 21.0], max_epochs=2)
    trainer.run(data, max_epochs=2)
    first = torch.load(tmp_path / "model.pt", weights_only=True)
    trainer2, _, _, data = _training(tmp_path, [5.0, 6.0], max_epochs=2, resume=False)
    trainer2.run(data, max_epochs=2)
    kept = sorted(p.name for p in tmp_path.glob("model.*.pt"))
    assert len(kept) == 1, kept
    assert torch.equal(torch.load(tmp_path / kept[0], weights_only=True)["weight"], first["weight"])


def test_nan_loss_stops_training_in_one_sentence_and_keeps_last_good_model(tmp_path):
    trainer, _, _, data = _training(tmp_path, [10.0, 12.0, 30.0, 40.0], max_epochs=4, nan_at=3)
    with pytest.raises(TrainingError, match=r"loss is nan") as exc:
        trainer.run(data, max_epochs=4)
    assert str(exc.value).count(". ") == 0 and str(exc.value).endswith(".")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values())
    assert torch.load(tmp_path / "training_state.pt", weights_only=True)["epoch"] == 2


def test_non_finite_weights_are_never_saved(tmp_path):
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.bias.fill_(float("inf"))
    ckpt = TrainingCheckpoint(tmp_path, net, validator=None)
    engine = Engine(lambda e, b: None)
    ckpt.attach(engine)
    with pytest.raises(TrainingError, match="NaN/Inf weights"):
        engine.run([0], max_epochs=1)
    assert not (tmp_path / "model.pt").exists()


def test_subject_fit_writes_the_model_only_when_the_run_completes(tmp_path):
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: (_ for _ in ()).throw(KeyboardInterrupt) if e.state.iteration == 3 else None)
    TrainingCheckpoint(tmp_path, net, validator=None).attach(engine)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0, 1], max_epochs=3)
    assert not (tmp_path / "model.pt").exists()
    engine2 = Engine(lambda e, b: None)
    TrainingCheckpoint(tmp_path, net, validator=None).attach(engine2)
    engine2.run([0, 1], max_epochs=2)
    assert (tmp_path / "model.pt").is_file()


def test_training_time_limit_stops_at_an_interval_epoch():
    from ignite.engine import Engine

    from monai_inr.engines.checkpoint import TrainingTimeLimit

    engine = Engine(lambda e, b: None)
    TrainingTimeLimit(max_minutes=1e-9, interval=3).attach(engine)
    engine.run([0, 1], max_epochs=10)
    assert engine.state.epoch == 3  # stops at the first epoch that is a multiple of the interval
    engine = Engine(lambda e, b: None)
    TrainingTimeLimit(max_minutes=None, interval=3).attach(engine)
    engine.run([0, 1], max_epochs=4)
    assert engine.state.epoch == 4
    with pytest.raises(ValueError, match="max_minutes"):
        TrainingTimeLimit(max_minutes=0)
