"""Multi-contrast evaluation: the mutual-information errors of McGinnis, Shit et al. (MICCAI 2023, section 3).

For ground truths ``I1, I2`` and predictions ``Î1, Î2`` of one subject (all 32-bin histogram MI in nats inside the
ground-truth mask, :func:`~monai_inr.metrics.mutual_information`)::

    eps_MI^C1 = |MI(Î1, I2) - MI(I1, I2)|      (prediction of contrast 1 against the true contrast 2)
    eps_MI^C2 = |MI(I1, Î2) - MI(I1, I2)|
    eps_MI^   = |MI(Î1, Î2) - MI(I1, I2)|      (both predicted: the quantity the MI early stopping watches)

The paper averages each over subjects (``1/N sum_i``); here each record is one subject and
:func:`~monai_inr.metrics.summarize` averages.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .mutual_information import mutual_information
from .protocol import evaluate_pair, normalize_to_reference

__all__ = ["mi_errors", "evaluate_contrast_pair"]


def mi_errors(pred1: Any, pred2: Any, gt1: Any, gt2: Any, mask: Any = None, bins: int = 32) -> dict[str, float]:
    """``{"mi_gt", "mi_pred", "eps_mi_c1", "eps_mi_c2", "eps_mi_joint"}`` (nats) for one subject.

    Inputs are normalised images of one shape (use :func:`evaluate_contrast_pair` for the full protocol); ``mask``
    selects the voxels (the ground-truth foreground).
    """
    mi_gt = mutual_information(gt1, gt2, bins=bins, mask=mask)
    mi_pred = mutual_information(pred1, pred2, bins=bins, mask=mask)
    return {
        "mi_gt": mi_gt,
        "mi_pred": mi_pred,
        "eps_mi_c1": abs(mutual_information(pred1, gt2, bins=bins, mask=mask) - mi_gt),
        "eps_mi_c2": abs(mutual_information(gt1, pred2, bins=bins, mask=mask) - mi_gt),
        "eps_mi_joint": abs(mi_pred - mi_gt),
    }


def evaluate_contrast_pair(
    pred1: Any,
    pred2: Any,
    gt1: Any,
    gt2: Any,
    mask: Any = None,
    names: Sequence[str] = ("c1", "c2"),
    bins: int = 32,
) -> dict[str, float]:
    """The evaluation protocol for a pair of contrasts, flattened into one record.

    Each prediction is mapped with its ground truth's intensity map to [0, 1] and clipped
    (:func:`~monai_inr.metrics.normalize_to_reference`); per contrast ``psnr``, ``psnr_mask``, ``ssim``,
    ``ssim_mask`` (:func:`~monai_inr.metrics.evaluate_pair`) are stored as ``<metric>_<name>``; the MI errors of
    :func:`mi_errors` on the normalised images inside ``mask`` are stored as ``eps_mi_<name1>``, ``eps_mi_<name2>``,
    ``eps_mi_joint``, ``mi_gt``, ``mi_pred``.
    """
    if len(names) != 2:
        raise ValueError(f"names must hold two contrast names, got {names}.")
    p1, g1 = normalize_to_reference(pred1, reference=gt1)
    p2, g2 = normalize_to_reference(pred2, reference=gt2)
    out: dict[str, float] = {}
    for name, p, g in ((names[0], p1, g1), (names[1], p2, g2)):
        for k, v in evaluate_pair(p, g, mask=mask).items():
            out[f"{k}_{name}"] = float(v)
    m = None if mask is None else np.asarray(mask) != 0
    errs = mi_errors(p1, p2, g1, g2, mask=m, bins=bins)
    out[f"eps_mi_{names[0]}"] = errs["eps_mi_c1"]
    out[f"eps_mi_{names[1]}"] = errs["eps_mi_c2"]
    out["eps_mi_joint"] = errs["eps_mi_joint"]
    out["mi_gt"] = errs["mi_gt"]
    out["mi_pred"] = errs["mi_pred"]
    return out
