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
    with pytest.raises(BrisqueUnavailable, match="BRISQUE unavailable: .*pip install -c constraints.txt brisque==0.2.0 "
                                                 "opencv-python-headless libsvm-official") as err:
        brisque_score(_image())
    assert "ModuleNotFoundError" in str(err.value) and "\n" not in str(err.value)
    assert issubclass(BrisqueUnavailable, ImportError)


def _results(step, subject="s1"):
    """One subject's no-reference records as :class:`ArRFREvaluationStep` would return them (no model needed)."""
    noref = [{"subject": subject, "axis": 2, "slice": 0, "scale": 2.0, "method": m, **step._noref(_image())}
             for m in ("ArRFR", "cubic")]
    return {"subject": subject, "lesion": False, "noref": noref, "reference": [], "restacked": [], "roi": [],
            "figures": {}, "brisque_note": step.brisque_note}


def _report(tmp_path, step):
    import json

    from monai_inr.evaluation.arrfr import ArRFREvaluationReport

    report = ArRFREvaluationReport(tmp_path, figures=False)
    report.results.append(_results(step))
    report.write()
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    return metrics, (tmp_path / "metrics_scale-2.csv").read_text(encoding="utf-8"), \
        (tmp_path / "results.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("cause", ["package_missing", "turned_off"])
def test_evaluation_reports_brisque_unavailable_with_the_reason_and_writes_no_nan(monkeypatch, tmp_path, cause):
    from monai_inr.evaluation.arrfr import BRISQUE_DISABLED_MESSAGE, ArRFREvaluationStep

    if cause == "package_missing":
        monkeypatch.setitem(sys.modules, "brisque", None)
        monkeypatch.setattr(bq, "_MODEL", {})
    step = ArRFREvaluationStep(brisque=cause != "turned_off")
    scores = step._noref(_image())
    assert "brisque" not in scores and np.isfinite(scores["psi"]) and np.isfinite(scores["lpc_si"])
    reason = step.brisque_note
    assert reason.startswith("BRISQUE unavailable: ")
    assert (BRISQUE_SKIP_MESSAGE[:-1] in reason) if cause == "package_missing" else reason == BRISQUE_DISABLED_MESSAGE
    metrics, csv, md = _report(tmp_path, step)
    assert metrics["metadata"]["brisque"] == reason and metrics["metadata"]["unavailable_metrics"] == {"brisque": reason}
    assert "brisque" not in metrics["metric_keys"] and not any("brisque" in r for r in metrics["records"])
    assert not any(k.startswith("brisque") for row in metrics["summary"] for k in row)
    assert "brisque" not in csv.lower()  # no column at all (a one-subject SD is "nan" in every column)
    table = md.split("## No-reference metrics", 1)[1].split("##", 1)[0]
    assert reason in table and "The table has no BRISQUE column." in table and "| BRISQUE |" not in table


def test_evaluation_with_the_package_scores_brisque(tmp_path):
    if not brisque_available():
        pytest.skip(BRISQUE_SKIP_MESSAGE)
    from monai_inr.evaluation.arrfr import BRISQUE_METHOD_NOTE, ArRFREvaluationStep

    step = ArRFREvaluationStep()
    metrics, csv, md = _report(tmp_path, step)
    assert step.brisque_note is None and metrics["metadata"]["brisque"] == BRISQUE_METHOD_NOTE
    assert "unavailable_metrics" not in metrics["metadata"]
    assert all(np.isfinite(r["brisque"]) for r in metrics["records"]) and "brisque" in csv.lower()
    assert "BRISQUE" in md and "unavailable" not in md
