"""BRISQUE (Mittal, Moorthy, Bovik, "No-Reference Image Quality Assessment in the Spatial Domain", IEEE TIP 21(12),
2012) through the optional ``brisque`` package (0.2.0), which ships its SVM model and normalisation parameters and
needs ``opencv-python-headless`` and ``libsvm-official``. Lower = more natural.

The package is an optional dependency (extra ``brisque``, also part of the ``test`` extra that ``make install``
installs): :func:`brisque_available` says whether it imports, and :func:`brisque_score` raises
:class:`BrisqueUnavailable` (an ``ImportError``) whose message is :data:`BRISQUE_SKIP_MESSAGE` plus the import error.
Evaluations catch that and report the metric as unavailable with that reason, never as a silent NaN.

Input convention (the package's): 8-bit RGB. A 2D image is clipped to ``[0, data_range]``, mapped to ``uint8`` and
repeated over three channels. A constant image has no natural-scene statistics: the score is NaN (documented, not an
error). Known package caveat: numpy >= 2.4 breaks it (``TypeError: only 0-dimensional arrays ...``); the project pins
numpy 2.3.x.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["BrisqueUnavailable", "brisque_available", "brisque_score", "BRISQUE_SKIP_MESSAGE", "to_uint8_rgb"]

BRISQUE_SKIP_MESSAGE = (
    "BRISQUE unavailable: the optional packages are not installed; install them with "
    "`pip install -c constraints.txt brisque==0.2.0 opencv-python-headless libsvm-official` (or the project's extra "
    "`.[brisque]`)."
)


class BrisqueUnavailable(ImportError):
    """The optional ``brisque`` package (or OpenCV / libsvm behind it) cannot be imported."""


_MODEL: dict[str, Any] = {}


def _model():
    if "obj" not in _MODEL:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from brisque import BRISQUE
        except Exception as e:  # ImportError, or OpenCV/libsvm failing to load
            raise BrisqueUnavailable(f"{BRISQUE_SKIP_MESSAGE[:-1]} ({type(e).__name__}: {e}).") from e
        _MODEL["obj"] = BRISQUE(url=False)
    return _MODEL["obj"]


def brisque_available() -> bool:
    """Whether the optional ``brisque`` package (with OpenCV and libsvm) can be used."""
    try:
        _model()
    except BrisqueUnavailable:
        return False
    return True


def to_uint8_rgb(image: Any, data_range: float = 1.0) -> np.ndarray:
    """``(H, W)`` -> ``(H, W, 3)`` uint8: clipped to ``[0, data_range]`` and scaled to 0-255."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.squeeze(np.asarray(image, dtype=np.float64))
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {np.shape(image)}.")
    if not np.isfinite(arr).all():
        raise ValueError("the image contains NaN or Inf values.")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}.")
    u8 = np.round(np.clip(arr / float(data_range), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)


def brisque_score(image: Any, data_range: float = 1.0) -> float:
    """BRISQUE score of a 2D image in ``[0, data_range]`` (lower = better); NaN for a constant image.

    Raises:
        BrisqueUnavailable: the optional package is missing (message: :data:`BRISQUE_SKIP_MESSAGE`).
    """
    model = _model()
    rgb = to_uint8_rgb(image, data_range)
    if int(rgb.max()) == int(rgb.min()):
        return float("nan")
    if min(rgb.shape[:2]) < 16:
        raise ValueError(f"BRISQUE needs at least 16 x 16 pixels (two scales of 7 x 7 windows), got {rgb.shape[:2]}.")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        value = model.score(rgb)
    return float(value)
