"""Evaluation metrics and the project's single evaluation protocol.

* :mod:`.image_quality`: :func:`psnr`, :func:`ssim` (Gaussian SSIM equal to MONAI ``SSIMMetric``), :func:`slicewise`;
* :mod:`.mutual_information`: :func:`mutual_information` (32-bin joint histogram, nats),
  :func:`normalized_mutual_information`;
* :mod:`.protocol`: :func:`normalize_to_reference`, :func:`evaluate_pair`, :func:`summarize`, :func:`write_metrics`.
"""

from .image_quality import gaussian_window_1d, high_frequency_error, high_frequency_ratio, psnr, slicewise, ssim
from .mutual_information import entropy, joint_histogram, mutual_information, normalized_mutual_information
from .protocol import (
    PROTOCOL,
    apply_intensity_map,
    evaluate_pair,
    normalize_to_reference,
    reference_intensity_map,
    summarize,
    write_metrics,
)

__all__ = [
    "psnr",
    "ssim",
    "slicewise",
    "gaussian_window_1d",
    "high_frequency_ratio",
    "high_frequency_error",
    "mutual_information",
    "normalized_mutual_information",
    "joint_histogram",
    "entropy",
    "PROTOCOL",
    "reference_intensity_map",
    "apply_intensity_map",
    "normalize_to_reference",
    "evaluate_pair",
    "summarize",
    "write_metrics",
]

from .brisque import BRISQUE_SKIP_MESSAGE, BrisqueUnavailable, brisque_available, brisque_score
from .sharpness import lpc_si, psi

__all__ += ["psi", "lpc_si", "brisque_score", "brisque_available", "BrisqueUnavailable", "BRISQUE_SKIP_MESSAGE"]

from .multi_contrast import evaluate_contrast_pair, mi_errors

__all__ += ["mi_errors", "evaluate_contrast_pair"]
