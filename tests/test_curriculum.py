"""Cur-Random curriculum: phase boundaries, per-phase scale draws, one scale pair per batch, the ignite handler."""

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.transforms import Compose

from monai_inr.engines import CurriculumState, CurRandomCurriculum
from monai_inr.transforms import RandPairedScalePatchd


pytestmark = pytest.mark.usefixtures("one_thread")


def _draws(state, epoch, n=200):
    state.set_epoch(epoch)
    return [state.draw() for _ in range(n)]


def test_phases_and_their_scale_draws():
    state = CurriculumState(warmup_epochs=2, prelearning_epochs=3, batch_size=4, seed=1)
    assert [state.phase_for_epoch(e) for e in range(1, 8)] == ["warmup"] * 2 + ["prelearning"] * 3 + ["full"] * 2
    warm = _draws(state, 1)
    assert {t for t, _ in warm} == {2.0, 3.0, 4.0} and {r for _, r in warm} == {1.0}
    pre = _draws(state, 3)
    grid = np.round(np.arange(1.0, 4.0001, 0.1), 10)
    assert {r for _, r in pre} == {1.0} and set(t for t, _ in pre) <= set(grid) and len({t for t, _ in pre}) > 15
    full = _draws(state, 6, 400)
    assert all(r in (1.0, t) for t, r in full)
    hr = sum(r == 1.0 for _, r in full) / len(full)
    assert 0.35 < hr < 0.65  # HR or LR reference at random
    uni = CurriculumState(reference_draw="uniform", warmup_epochs=0, prelearning_epochs=0, seed=2)
    refs = [r for _, r in _draws(uni, 1, 300)]
    assert len(set(refs)) > 15 and set(refs) <= set(grid)


@pytest.mark.parametrize("strategy, check", [
    ("hr", lambda t, r: r == 1.0),
    ("lr", lambda t, r: r == t),
    ("random", lambda t, r: r in (1.0, t)),
])
def test_fixed_strategies_skip_the_curriculum(strategy, check):
    state = CurriculumState(strategy=strategy, warmup_epochs=5, prelearning_epochs=5, seed=3)
    assert state.phase_for_epoch(1) == "full"
    draws = _draws(state, 1)
    assert all(check(t, r) for t, r in draws) and len({t for t, _ in draws}) > 10


def test_one_scale_pair_per_batch():
    state = CurriculumState(warmup_epochs=0, prelearning_epochs=0, batch_size=3, seed=4)
    state.set_epoch(1)
    seq = [state.next_scales() for _ in range(12)]
    batches = [seq[i : i + 3] for i in range(0, 12, 3)]
    assert all(len(set(b)) == 1 for b in batches)
    assert len({b[0] for b in batches}) > 1


def test_bad_arguments():
    for kw in (dict(strategy="cur"), dict(reference_draw="any"), dict(scale_range=(0.5, 4)), dict(batch_size=0),
               dict(warmup_scales=(0.5,))):
        with pytest.raises(ValueError):
            CurriculumState(**kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_handler_drives_the_sampler_through_a_dataloader(workers):
    """Three epochs (warm-up, pre-learning, full) of a real DataLoader: every batch collates (one scale pair), the
    scales follow the phase set by the handler at each epoch start, also inside worker processes."""
    state = CurriculumState(warmup_epochs=1, prelearning_epochs=1, batch_size=99, seed=5)
    sampler = RandPairedScalePatchd(state=state, lr_patch_size=4, min_foreground=0)
    data = [{"image": torch.rand(1, 20, 20), "reference": torch.rand(1, 20, 20)} for _ in range(12)]
    loader = DataLoader(Dataset(data, Compose([sampler])), batch_size=3, shuffle=True, num_workers=workers)
    seen = {}

    def step(engine, batch):
        seen.setdefault(engine.state.epoch, []).append(
            (engine.state.curriculum_phase, batch["scale"].tolist(), batch["ref_scale"].tolist(),
             tuple(batch["label"].shape), tuple(batch["reference"].shape))
        )

    engine = Engine(step)
    CurRandomCurriculum(state).attach(engine)
    engine.run(loader, max_epochs=3)
    assert state.batch_size == 3  # taken from the dataloader
    for epoch, batches in seen.items():
        assert len(batches) == 4
        for phase, s_tar, s_ref, label_shape, ref_shape in batches:
            assert phase == ("warmup", "prelearning", "full")[epoch - 1]
            assert len(set(s_tar)) == 1 and len(set(s_ref)) == 1
            if phase == "warmup":
                assert s_tar[0] in (2.0, 3.0, 4.0) and s_ref[0] == 1.0
            if phase != "full":
                assert ref_shape == label_shape  # HR reference
            else:
                assert ref_shape in (label_shape, (3, 1, 4, 4))  # HR or LR reference


def test_persistent_workers_are_refused():
    state = CurriculumState()
    loader = DataLoader(Dataset([{"x": 0}] * 4), batch_size=2, num_workers=1, persistent_workers=True)
    engine = Engine(lambda e, b: None)
    CurRandomCurriculum(state).attach(engine)
    with pytest.raises(ValueError, match="persistent"):
        engine.run(loader, max_epochs=1)
