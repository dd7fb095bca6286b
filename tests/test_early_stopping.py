"""Mutual-information early stopping as an ignite handler."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from monai_inr.engines.early_stopping import MIEarlyStopping
from monai_inr.metrics import mutual_information


def test_rule_follows_the_upstream_code():
    """Buffer of window + 1 values starting at zeros; stop when the mean |change| moves by less than min_delta."""
    h = MIEarlyStopping(torch.zeros(1, 3), window=3, min_delta=1e-3, min_epochs=1)
    # epoch 1: mean|d| over [0, 0, 0, 1.0] = 1/3; epoch 2: over [0, 0, 1.0, 1.0004] = (1 + 0.0004) / 3, change 1.3e-4
    assert not h.update(1.0)
    assert h.update(1.0004)
    # with min_epochs = window + 1 (the default) the zero-filled start cannot stop the fit
    d = MIEarlyStopping(torch.zeros(1, 3), window=3, min_delta=1e-3)
    assert d.min_epochs == 4
    fired = [d.update(v) for v in (1.0, 1.0004, 0.8, 0.7, 0.65, 0.64, 0.639, 0.6385, 0.6383, 0.6382)]
    assert fired.index(True) == 9  # not at epoch 2 as the zero-filled buffer would allow
    # a steadily decreasing MI with shrinking steps eventually plateaus
    e = MIEarlyStopping(torch.zeros(1, 3), window=3, min_delta=1e-4)
    values = 0.5 + 0.5 * np.exp(-np.arange(40) / 3.0)
    stop = next(i for i, v in enumerate(values) if e.update(float(v)))
    assert 4 <= stop < 39
    with pytest.raises(ValueError):
        MIEarlyStopping(torch.zeros(1, 3), window=0)


class _Drifting(torch.nn.Module):
    """Predicts (x, f(epoch) * x + noise-free texture): MI(pred1, pred2) changes with ``self.epoch``."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.epoch = 0

    def query(self, p):
        a = p[:, 0:1]
        mix = np.exp(-self.epoch / 2.0)
        b = (1 - mix) * a + mix * torch.sin(37 * p[:, 1:2]) * 0.5 + 0.5 * mix
        return torch.cat([a.clamp(0, 1), b.clamp(0, 1)], 1) + 0 * self.w


def test_handler_stops_the_engine_and_records_mi():
    net = _Drifting()
    pts = torch.rand(4000, 3)
    handler = MIEarlyStopping(pts, network=net, min_delta=1e-3)

    def step(engine, batch):
        net.epoch = engine.state.epoch
        return 0.0

    engine = Engine(step)
    handler.attach(engine)
    completed = []
    engine.add_event_handler(Events.COMPLETED, lambda e: completed.append(e.state.epoch))
    engine.run([0, 1], max_epochs=30)
    assert handler.stopped_epoch is not None and handler.stopped_epoch == engine.state.epoch < 30
    assert completed == [handler.stopped_epoch]  # COMPLETED fires after terminate (CheckpointSaver save_final runs)
    assert len(handler.history) == handler.stopped_epoch
    assert engine.state.metrics["mi_pred"] == pytest.approx(handler.history[-1])
    pred = net.query(pts).detach().numpy()
    assert handler.history[-1] == pytest.approx(mutual_information(pred[:, 0], pred[:, 1], bins=32))
    # monitoring only
    mon = MIEarlyStopping(pts, network=net, min_delta=1.0, stop=False)
    engine2 = Engine(step)
    mon.attach(engine2)
    engine2.run([0], max_epochs=6)
    assert engine2.state.epoch == 6 and mon.stopped_epoch is None and len(mon.history) == 6
