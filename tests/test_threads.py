"""Thread counts on a shared CPU: as many intra-op threads as CPUs not busy with other processes, never more than an
explicit OMP_NUM_THREADS, re-evaluated while training runs."""

import pytest
import torch
from ignite.engine import Engine

from monai_inr.engines import threads
from monai_inr.engines.threads import AdaptiveThreads, fair_threads, thread_limit


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_fair_threads_leave_the_neighbours_cpus_to_them(two_cpus, monkeypatch):
    assert thread_limit() == 2
    assert fair_threads(others_busy=0.0) == 2  # idle machine: both cores
    assert fair_threads(others_busy=0.4) == 2  # a light neighbour rounds away
    assert fair_threads(others_busy=1.0) == 1  # one busy neighbour: one core left
    assert fair_threads(others_busy=7.0) == 1  # overloaded: never below one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # an explicit choice is an upper limit
    assert thread_limit() == 1 and fair_threads(others_busy=0.0) == 1


def test_adaptive_threads_follow_the_load_during_training(two_cpus, monkeypatch):
    """A neighbour starts after the first iteration and stops after the third: the trainer gives a core back, then
    takes it again (the CPU use other processes had since the previous check decides)."""
    others_busy = iter([0.0, 1.1, 1.0, 0.1, 0.0])  # at the start, then after each of the 4 iterations

    class Meter:  # what psutil would measure
        def read(self):
            return next(others_busy)

    monkeypatch.setattr(threads, "_CpuMeter", Meter)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    ran_with = []
    engine = Engine(lambda e, b: ran_with.append(torch.get_num_threads()))
    handler = AdaptiveThreads(every=1)
    handler.attach(engine)
    engine.run([0, 1, 2, 3], max_epochs=1)
    assert ran_with == [2, 1, 1, 2]
    assert handler.history == [2, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="every"):
        AdaptiveThreads(every=0)
