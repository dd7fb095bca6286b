"""Thread counts that stay fast on a shared CPU.

PyTorch's intra-op threads are OpenMP threads. When another process keeps the cores busy, threads that spin while
they wait for each other lose most of their time slices: on this project's 2-core machine one busy neighbour made a
quick ArSSR training epoch take 22 s instead of 3.4 s, and a load average of 7 made an iteration take 15 s instead of
about 1 s with one thread. Two remedies, used together:

* passive waiting (``OMP_WAIT_POLICY=PASSIVE``), which the OpenMP runtime reads only when it loads, before any torch
  code runs: the ``monai-inr`` command sets it for itself before it imports torch, the Makefile exports it, and
  ``python -m monai.bundle`` users export it in their shell;
* no more intra-op threads than there are CPUs not busy with other processes (:func:`fair_threads`), set when an
  inference starts (:func:`use_fair_threads`) and re-evaluated while training runs (:class:`AdaptiveThreads`), so a
  run takes the whole machine when it is idle and shrinks to what is free when a neighbour starts.

An explicit ``OMP_NUM_THREADS`` is an upper limit that is always honoured.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import psutil
import torch

__all__ = ["available_cpus", "thread_limit", "fair_threads", "use_fair_threads",
           "AdaptiveThreads"]

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or ``taskset``'s share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without affinity masks
        return max(1, os.cpu_count() or 1)


def thread_limit() -> int:
    """The most intra-op threads to use: the available CPUs, capped by an explicit ``OMP_NUM_THREADS``."""
    limit = available_cpus()
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        limit = min(limit, int(env))
    return limit


class _CpuMeter:
    """Busy CPUs of other processes since the previous reading (system CPU time minus this process's)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.read()

    def read(self) -> float:
        total = psutil.cpu_percent(interval=None) / 100.0 * (os.cpu_count() or 1)
        own = self.process.cpu_percent(interval=None) / 100.0
        return max(0.0, total - own)


def fair_threads(others_busy: float | None = None, limit: int | None = None) -> int:
    """Intra-op threads that leave the CPUs other processes use to them: ``limit`` (default :func:`thread_limit`)
    minus the CPUs they keep busy (``others_busy``; measured over 0.2 s when not given), at least 1."""
    limit = thread_limit() if limit is None else int(limit)
    if others_busy is None:
        meter = _CpuMeter()
        time.sleep(0.2)  # the sampling window
        others_busy = meter.read()
    free = available_cpus() - float(others_busy)
    return int(max(1, min(limit, math.floor(free + 0.5))))


def use_fair_threads(limit: int | None = None) -> int:
    """Set torch's intra-op threads to :func:`fair_threads` (an inference's start) and return the count."""
    n = fair_threads(limit=limit)
    if n != torch.get_num_threads():
        logger.info("using %d intra-op thread(s): %d CPU(s) available, the rest busy with other processes", n,
                    available_cpus())
        torch.set_num_threads(n)
    return n


class AdaptiveThreads:
    """Ignite handler: every ``every`` iterations set torch's intra-op threads to :func:`fair_threads` of the CPU use
    measured since the previous check, so training gives CPUs back when a neighbour starts and takes them again when
    it stops. Attach it to the trainer; ``limit`` caps the count (default :func:`thread_limit`)."""

    def __init__(self, every: int = 20, limit: int | None = None) -> None:
        if int(every) < 1:
            raise ValueError(f"AdaptiveThreads: every must be >= 1, got {every}.")
        self.every = int(every)
        self.limit = limit
        self.meter: _CpuMeter | None = None
        self.history: list[int] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self)

    def started(self, engine: Any) -> None:
        self.meter = _CpuMeter()
        self.history.append(use_fair_threads(self.limit))

    def __call__(self, engine: Any) -> None:
        if self.meter is None:
            self.meter = _CpuMeter()
            return
        # this process's own threads count as its own, so what remains is the neighbours' load
        n = fair_threads(others_busy=self.meter.read(), limit=self.limit)
        if n != torch.get_num_threads():
            logger.info("iteration %d: %d intra-op thread(s) (CPUs busy with other processes changed)",
                        engine.state.iteration, n)
            torch.set_num_threads(n)
        self.history.append(n)
