"""BRISQUE wrapper over the optional ``brisque`` package: scores when installed, a clear skip when not."""

import sys

import numpy as np
import pytest
from scipy import ndimage

import monai_inr.metrics.brisque as bq
from monai_inr.metrics import BRISQUE_SKIP_MESSAGE, BrisqueUnavailable, brisque_available, brisque_score


def _image():
    yy, xx = np.mgrid[:96, :96]
    img = 0.3 + 0.2 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img += 0.4 * ((((yy - 48) / 30) ** 2 + ((xx - 48) / 20) ** 2) < 1)
    rng = np.random.default_rng(0)
    return np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)


def test_uint8_rgb_conversion():
    rgb = bq.to_uint8_rgb(np.array([[-1.0, 0.5], [1.0, 2.0]]), data_range=1.0)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 128], [255, 255]]
    with pytest.raises(ValueError):
        bq.to_uint8_rgb(np.zeros((2, 2, 2)))


def test_blur_increases_brisque_and_constant_is_nan():
    pytest.importorskip("brisque", reason=BRISQUE_SKIP_MESSAGE)
    if not brisque_available():
        pytest.skip(BRISQUE_SKIP_MESSAGE)
    img = _image()
    scores = [brisque_score(ndimage.gaussian_filter(img, s) if s else img) for s in (0, 1, 2, 4)]
    assert all(np.isfinite(scores))
    assert scores[1] < scores[2] < scores[3], scores
    assert np.isnan(brisque_score(np.full((32, 32), 0.5)))


def test_missing_package_gives_the_skip_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "brisque", None)  # import brisque -> ImportError
    monkeypatch.setattr(bq, "_MODEL", {})
    assert not brisque_available()
    with pytest.raises(BrisqueUnavailable, match="pip install brisque==0.2.0 opencv-python-headless"):
        brisque_score(_image())
    assert issubclass(BrisqueUnavailable, ImportError)


def test_evaluation_records_nan_and_a_note_without_the_package(monkeypatch):
    from monai_inr.evaluation.arrfr import ArRFREvaluationStep

    monkeypatch.setitem(sys.modules, "brisque", None)
    monkeypatch.setattr(bq, "_MODEL", {})
    step = ArRFREvaluationStep()
    scores = step._noref(_image())
    assert np.isnan(scores["brisque"]) and np.isfinite(scores["psi"]) and np.isfinite(scores["lpc_si"])
    assert step.brisque_note == BRISQUE_SKIP_MESSAGE
