"""Dual-ArbNet's Cur-Random curriculum: a shared scale schedule and the ignite handler that advances it.

J. Zhang et al., "Dual Arbitrary Scale Super-Resolution for Multi-contrast MRI", MICCAI 2023, section 2.3 and Table 2:

1. **warm-up**: integer target scales (x2, x3, x4) with an HR reference;
2. **pre-learning**: arbitrary target scales with an HR reference;
3. **full training**: random target scales and random reference scales.

The paper gives no phase lengths; the public code uses integer scales in epoch 1 and HR references before epoch 10,
which are the defaults here (``warmup_epochs=1``, ``prelearning_epochs=9``). Scales are drawn **per batch** (the HR
patches of a batch must have one size) from the grid 1, 1.1, ..., 4 (paper: "from 1 to 4 with stride 0.1, uniform").

:class:`CurriculumState` is the one object shared by the training sampler
(:class:`monai_inr.transforms.multi_contrast_sampling.RandPairedScalePatchd`, which asks it for each sample's scales)
and :class:`CurRandomCurriculum` (which sets the phase at every epoch start). Batches get one scale pair because the
state redraws every ``batch_size`` samples; this also holds inside ``DataLoader`` worker processes (each builds
whole batches from its own copy, re-seeded per epoch and worker) as long as the workers are not persistent, because
ignite creates each epoch's iterator after ``EPOCH_STARTED``.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.transforms.sampling import scale_grid

__all__ = ["CurriculumState", "CurRandomCurriculum", "PHASES", "STRATEGIES", "REFERENCE_DRAWS"]

PHASES = ("warmup", "prelearning", "full")
#: training strategies of Table 2 (top): the curriculum, or one fixed reference setting throughout
STRATEGIES = ("cur_random", "random", "hr", "lr")
#: how the full-training phase draws the reference scale: HR or LR (= target scale) at random, or uniform on the grid
REFERENCE_DRAWS = ("hr_or_lr", "uniform")


class CurriculumState:
    """The scale schedule shared by the sampler and the handler.

    Args:
        warmup_epochs: epochs of the warm-up phase (1-based epochs ``1 .. warmup_epochs``).
        prelearning_epochs: epochs of the pre-learning phase that follow; full training starts at epoch
            ``warmup_epochs + prelearning_epochs + 1``.
        scale_range: ``(low, high)`` target scales of pre-learning and full training (paper: 1 to 4).
        scale_step: grid step (0.1); ``None`` draws ``U(low, high)``.
        warmup_scales: the integer scales of the warm-up (2, 3, 4).
        reference_draw: full-training reference scale: ``"hr_or_lr"`` (1 or the target scale, 50/50: the paper's two
            practical settings and the public code) or ``"uniform"`` (any scale on the grid, independent of the
            target's).
        strategy: ``"cur_random"`` (the curriculum), ``"random"`` (full-training draws from the first epoch), ``"hr"``
            (always an HR reference) or ``"lr"`` (always an LR reference), Table 2's training strategies; the last three
            draw arbitrary target scales from the first epoch.
        batch_size: samples per batch sharing one scale pair (the dataloader's batch size).
        seed: seed of the scale draws.
    """

    def __init__(
        self,
        warmup_epochs: int = 1,
        prelearning_epochs: int = 9,
        scale_range: Sequence[float] = (1.0, 4.0),
        scale_step: float | None = 0.1,
        warmup_scales: Sequence[float] = (2.0, 3.0, 4.0),
        reference_draw: str = "hr_or_lr",
        strategy: str = "cur_random",
        batch_size: int = 6,
        seed: int = 0,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
        if reference_draw not in REFERENCE_DRAWS:
            raise ValueError(f"reference_draw must be one of {REFERENCE_DRAWS}, got {reference_draw!r}.")
        if int(warmup_epochs) < 0 or int(prelearning_epochs) < 0:
            raise ValueError(f"phase lengths must be >= 0, got {warmup_epochs} and {prelearning_epochs}.")
        lo, hi = (float(v) for v in scale_range)
        if not (1.0 <= lo <= hi and np.isfinite(hi)):
            raise ValueError(f"scale_range must be (low, high) with 1 <= low <= high, got {tuple(scale_range)}.")
        ws = tuple(float(s) for s in warmup_scales)
        if not ws or any(not (np.isfinite(s) and s >= 1.0) for s in ws):
            raise ValueError(f"warmup_scales must be scales >= 1, got {tuple(warmup_scales)}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.warmup_epochs = int(warmup_epochs)
        self.prelearning_epochs = int(prelearning_epochs)
        self.scale_range = (lo, hi)
        self.scale_step = scale_step
        self.grid = scale_grid(self.scale_range, scale_step)
        self.warmup_scales = ws
        self.reference_draw = reference_draw
        self.strategy = strategy
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 1
        self.R = np.random.RandomState(self.seed)
        self._count = 0
        self._current: tuple[float, float] | None = None
        self._worker: int | None = None

    # ------------------------------------------------------------------------------------------------ phases
    def phase_for_epoch(self, epoch: int) -> str:
        """``"warmup"``, ``"prelearning"`` or ``"full"`` for a 1-based epoch under the chosen strategy."""
        if self.strategy != "cur_random":
            return "full"
        if epoch <= self.warmup_epochs:
            return "warmup"
        if epoch <= self.warmup_epochs + self.prelearning_epochs:
            return "prelearning"
        return "full"

    @property
    def phase(self) -> str:
        return self.phase_for_epoch(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        """Enter a (1-based) epoch: sets the phase and starts a new batch."""
        self.epoch = int(epoch)
        self._count = 0
        self._current = None

    # ------------------------------------------------------------------------------------------------ draws
    def _target_scale(self, phase: str) -> float:
        if phase == "warmup":
            return float(self.warmup_scales[self.R.randint(len(self.warmup_scales))])
        if self.grid is None:
            return float(self.R.uniform(*self.scale_range))
        return float(self.grid[self.R.randint(len(self.grid))])

    def _reference_scale(self, phase: str, s_tar: float) -> float:
        if phase in ("warmup", "prelearning") or self.strategy == "hr":
            return 1.0
        if self.strategy == "lr":
            return s_tar
        if self.reference_draw == "hr_or_lr":
            return 1.0 if self.R.randint(2) == 0 else s_tar
        if self.grid is None:
            return float(self.R.uniform(*self.scale_range))
        return float(self.grid[self.R.randint(len(self.grid))])

    def draw(self) -> tuple[float, float]:
        """Draw a new ``(S_tar, S_ref)`` for the current phase (``S_ref = 1``: HR reference)."""
        phase = self.phase
        s_tar = self._target_scale(phase)
        return s_tar, self._reference_scale(phase, s_tar)

    def _maybe_reseed_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        wid = None if info is None else int(info.id)
        if wid is not None and wid != self._worker:
            self._worker = wid
            self.R = np.random.RandomState([self.seed, self.epoch, wid + 1])

    def next_scales(self) -> tuple[float, float]:
        """``(S_tar, S_ref)`` for the next sample: a new draw every ``batch_size`` samples."""
        self._maybe_reseed_worker()
        if self._current is None or self._count % self.batch_size == 0:
            self._current = self.draw()
        self._count += 1
        return self._current

    def __repr__(self) -> str:
        return (
            f"CurriculumState(strategy={self.strategy!r}, epoch={self.epoch}, phase={self.phase!r}, "
            f"warmup_epochs={self.warmup_epochs}, prelearning_epochs={self.prelearning_epochs}, "
            f"scale_range={self.scale_range}, reference_draw={self.reference_draw!r})"
        )


class CurRandomCurriculum:
    """Ignite handler driving a :class:`CurriculumState`: sets the epoch (hence the phase) at every ``EPOCH_STARTED``
    and takes the batch size from the trainer's dataloader at ``STARTED``; logs phase changes and stores the phase in
    ``engine.state.curriculum_phase``.

    Args:
        state: the object the training sampler reads.
    """

    def __init__(self, state: CurriculumState) -> None:
        self.state = state
        self.logger = logging.getLogger(__name__)
        self._last_phase: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)

    def _started(self, engine: Engine) -> None:
        loader = engine.state.dataloader
        bs = getattr(loader, "batch_size", None)
        if isinstance(bs, int) and bs > 0 and bs != self.state.batch_size:
            self.logger.info("curriculum: batch size %d taken from the dataloader (was %d)", bs, self.state.batch_size)
            self.state.batch_size = bs
        if getattr(loader, "persistent_workers", False):
            raise ValueError(
                "CurRandomCurriculum needs non-persistent DataLoader workers (persistent_workers=False): workers keep "
                "a copy of the curriculum state made when they start."
            )

    def _epoch_started(self, engine: Engine) -> None:
        self.state.set_epoch(engine.state.epoch)
        phase = self.state.phase
        engine.state.curriculum_phase = phase  # type: ignore[attr-defined]
        if phase != self._last_phase:
            self.logger.info("curriculum: epoch %d enters the %s phase (%r)", engine.state.epoch, phase, self.state)
            self._last_phase = phase
