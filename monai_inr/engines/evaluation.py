"""The evaluation protocol as an ignite handler: the network's prediction against interpolation baselines."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.metrics import evaluate_pair, normalize_to_reference, write_metrics
from monai_inr.transforms.functional import resize_cell_centred

__all__ = ["SuperResolutionMetrics", "BASELINE_ORDERS", "with_scales"]

BASELINE_ORDERS = {"cubic": 3, "trilinear": 1, "linear": 1, "nearest": 0}


def with_scales(items: Sequence[dict], scales: Sequence[float], key: str = "scale") -> list[dict]:
    """Every datalist item once per evaluation scale (``key`` holds the scale), scale-major."""
    return [dict(item, **{key: float(s)}) for s in scales for item in items]


def _subject_name(meta_source) -> str:
    name = Path(str(meta_source)).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class SuperResolutionMetrics:
    """Score each evaluated volume with the protocol (``DESIGN.md``) and write ``metrics.json`` plus CSV tables.

    For every iteration of a ``SupervisedEvaluator`` (batch size 1) it takes the LR input (``image``), the network's
    prediction (``pred``) and the ground truth (``label``), adds the interpolation baselines computed from the same LR
    input onto the same output grid (cubic B-spline and trilinear by default), normalises everything with the ground
    truth's range, clips predictions to [0, 1] and records PSNR/SSIM over the whole volume and inside the foreground
    mask (``mask_key`` in the batch if present, else ground truth above ``mask_threshold``).

    Args:
        output_dir: where ``metrics.json`` and ``metrics_scale-<s>.csv`` are written when the run completes.
        method_name: row name of the network's prediction.
        baselines: names from :data:`BASELINE_ORDERS`.
        scale_key: batch key holding the evaluation scale.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        method_name: str = "ArSSR",
        baselines: Sequence[str] = ("cubic", "trilinear"),
        mask_key: str = "mask",
        scale_key: str = "scale",
        mask_threshold: float = 0.05,
        prefix: str = "metrics",
    ) -> None:
        unknown = [b for b in baselines if b not in BASELINE_ORDERS]
        if unknown:
            raise ValueError(f"unknown baselines {unknown}; choose from {sorted(BASELINE_ORDERS)}.")
        self.output_dir = Path(output_dir)
        self.method_name = method_name
        self.baselines = tuple(baselines)
        self.mask_key = mask_key
        self.scale_key = scale_key
        self.mask_threshold = mask_threshold
        self.prefix = prefix
        self.records: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _score(self, engine: Engine) -> None:
        out, batch = engine.state.output, engine.state.batch
        if isinstance(out, list):
            raise ValueError("SuperResolutionMetrics needs un-decollated outputs (no postprocessing decollate).")
        lr = out["image"].detach().float().cpu().numpy()
        pred = out["pred"].detach().float().cpu().numpy()
        label = out["label"].detach().float().cpu().numpy()
        masks = batch.get(self.mask_key)
        scales = batch.get(self.scale_key)
        sources = out["label"].meta.get("filename_or_obj", [None] * label.shape[0]) if hasattr(out["label"], "meta") else None
        for b in range(label.shape[0]):
            gt = label[b, 0]
            if masks is not None:
                mask = np.asarray(masks[b]).reshape(gt.shape) > 0
            else:
                mask = gt > gt.min() + self.mask_threshold * (gt.max() - gt.min())
            scale = float(np.asarray(scales[b]).ravel()[0]) if scales is not None else float("nan")
            subject = _subject_name(sources[b]) if sources else f"case{len(self.records)}"
            candidates = {self.method_name: pred[b, 0]}
            for name in self.baselines:
                candidates[name] = resize_cell_centred(lr[b, 0], gt.shape, order=BASELINE_ORDERS[name])
            *preds_n, gt_n = normalize_to_reference(*candidates.values(), reference=gt)
            for name, p in zip(candidates, preds_n):
                rec = {"subject": subject, "scale": scale, "method": name}
                rec.update(evaluate_pair(p, gt_n, mask=mask))
                self.records.append(rec)
                self.logger.info(
                    "%s x%.2f %-10s PSNR %.2f (mask %.2f) SSIM %.4f (mask %.4f)",
                    subject, scale, name, rec["psnr"], rec["psnr_mask"], rec["ssim"], rec["ssim_mask"],
                )

    def _write(self, engine: Engine) -> None:
        if self.records:
            write_metrics(self.records, self.output_dir, prefix=self.prefix)
