"""The evaluation protocol as ignite handlers of a bundle's ``SupervisedEvaluator`` (``evaluate.json``).

* :class:`SuperResolutionMetrics` (single-image SR, e.g. ArSSR): the network's prediction against the interpolation
  baselines (:data:`~monai_inr.evaluation.methods.BASELINE_ORDERS`) on the same LR input, per subject and scale;
* :class:`ReferenceSRMetrics` (target + reference SR, e.g. Dual-ArbNet): the network, extra networks (the
  single-contrast ablation) and the baselines per slice, scale and reference type;
* :func:`with_scales`, :func:`reference_eval_items`, :func:`foreground_slices`: the evaluation datalists.

Both score with :mod:`monai_inr.metrics.protocol` and write through :mod:`monai_inr.evaluation.report`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.metrics import evaluate_pair, normalize_to_reference, summarize, write_metrics
from monai_inr.metrics.protocol import reference_foreground

from .methods import baseline_order, interpolate
from .report import format_results_table, write_text_atomic

__all__ = [
    "SuperResolutionMetrics",
    "ReferenceSRMetrics",
    "with_scales",
    "reference_eval_items",
    "foreground_slices",
]


def with_scales(items: Sequence[dict], scales: Sequence[float], key: str = "scale") -> list[dict]:
    """Every datalist item once per evaluation scale (``key`` holds the scale), scale-major."""
    return [dict(item, **{key: float(s)}) for s in scales for item in items]


def _subject_name(meta_source) -> str:
    name = Path(str(meta_source)).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class _ProtocolHandler(ABC):
    """Shared part of the evaluator handlers: records per iteration (``_score``), written at completion (``_write``)."""

    def __init__(self, output_dir: str | os.PathLike, method_name: str, baselines: Sequence[str], mask_key: str,
                 scale_key: str, mask_threshold: float, prefix: str) -> None:
        for b in baselines:
            baseline_order(b)
        self.output_dir = Path(output_dir)
        self.method_name = method_name
        self.baselines = tuple(baselines)
        self.mask_key, self.scale_key = mask_key, scale_key
        self.mask_threshold = float(mask_threshold)
        self.prefix = prefix
        self.records: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    @abstractmethod
    def _score(self, engine: Engine) -> None:
        """Score the engine's current output and keep the records."""

    @abstractmethod
    def _write(self, engine: Engine) -> None:
        """Write the report of the whole run."""


class SuperResolutionMetrics(_ProtocolHandler):
    """Score each evaluated volume with the protocol (:mod:`monai_inr.metrics.protocol`) and write ``metrics.json`` plus CSV tables.

    For every iteration of a ``SupervisedEvaluator`` (batch size 1) it takes the LR input (``image``), the network's
    prediction (``pred``) and the ground truth (``label``), adds the interpolation baselines computed from the same LR
    input onto the same output grid (cubic B-spline and trilinear by default), normalises everything with the ground
    truth's range, clips predictions to [0, 1] and records PSNR/SSIM over the whole volume and inside the foreground
    mask (``mask_key`` in the batch if present, else ground truth above ``mask_threshold``).

    Args:
        output_dir: where ``metrics.json`` and ``metrics_scale-<s>.csv`` are written when the run completes.
        method_name: row name of the network's prediction.
        baselines: names from :data:`~monai_inr.evaluation.methods.BASELINE_ORDERS`.
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
        super().__init__(output_dir, method_name, baselines, mask_key, scale_key, mask_threshold, prefix)

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
                mask = reference_foreground(gt, self.mask_threshold)
            scale = float(np.asarray(scales[b]).ravel()[0]) if scales is not None else float("nan")
            subject = _subject_name(sources[b]) if sources else f"case{len(self.records)}"
            candidates = {self.method_name: pred[b, 0]}
            for name in self.baselines:
                candidates[name] = interpolate(lr[b, 0], gt.shape, name)
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


def foreground_slices(path: str | os.PathLike, axis: int = 2, count: int = 5, min_relative: float = 0.5) -> list[int]:
    """``count`` slice indices along ``axis``, evenly spaced over the slices whose foreground (nonzero voxels of a
    mask file, or voxels above 5 % of the maximum of an image) is at least ``min_relative`` of the largest."""
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    if data.ndim == 2:
        return [0]
    thr = 0.0 if np.array_equal(np.unique(data), np.unique(data).astype(int)) and data.max() <= 1 else 0.05 * data.max()
    fg = (data > thr).mean(axis=tuple(d for d in range(3) if d != axis))
    good = np.flatnonzero(fg >= min_relative * fg.max())
    if good.size == 0:
        good = np.arange(data.shape[axis])
    pick = np.linspace(0, good.size - 1, num=min(int(count), good.size)).round().astype(int)
    return [int(good[i]) for i in np.unique(pick)]


def reference_eval_items(
    items: Sequence[Mapping[str, Any]],
    scales: Sequence[float],
    reference_types: Sequence[str] = ("HR", "LR"),
    slices_per_subject: int = 5,
    axis: int = 2,
    foreground_key: str = "mask",
) -> list[dict]:
    """Every item once per foreground slice (:func:`foreground_slices` of ``foreground_key``, else ``image``), scale and
    reference type: ``slice_index``, ``scale``, ``reference_type`` and ``ref_scale`` (1 for ``"HR"``, the scale for
    ``"LR"``, the LR reference of the paper). Scale-major order."""
    bad = [r for r in reference_types if r not in ("HR", "LR")]
    if bad:
        raise ValueError(f"reference types must be 'HR' or 'LR', got {bad}.")
    slices = []
    for item in items:
        src = item.get(foreground_key) or item["image"]
        slices.append(foreground_slices(src, axis, slices_per_subject))
    out = []
    for s in scales:
        for rt in reference_types:
            for item, idx in zip(items, slices):
                for k in idx:
                    out.append(
                        dict(item, slice_index=k, scale=float(s), reference_type=rt,
                             ref_scale=1.0 if rt == "HR" else float(s))
                    )
    return out


def _magnitude(x: np.ndarray, complex_channels: bool) -> np.ndarray:
    if complex_channels:
        return np.sqrt(x[0::2] ** 2 + x[1::2] ** 2)[0]
    return x[0]


class ReferenceSRMetrics(_ProtocolHandler):
    """Score target + reference super-resolution per slice: the evaluator's network, extra networks and baselines.

    For every iteration of a ``SupervisedEvaluator`` (batch size 1, ``decollate=False``) it takes the LR target
    (``image``), the prediction (``pred``), the HR target (``label``) and, from the batch, the reference, the scale, the
    reference type and the optional foreground ``mask``. ``extra_networks`` (e.g. the single-contrast ablation) run
    through the evaluator's inferer on the same inputs; ``baselines`` (cubic by default) interpolate the LR target onto
    the label grid. Methods that do not use the reference (``reference_free`` names, the baselines) are scored once per
    slice and scale with reference ``"none"``.

    Metrics (:mod:`monai_inr.metrics.protocol`): magnitude images (complex 2-channel data: ``sqrt(re^2 + im^2)``), predictions
    clipped to [0, 1] (the data are normalised to [0, 1] per volume), PSNR and SSIM with ``data_range=1``, over the
    whole slice and inside the foreground mask (mask slice, else label above ``mask_threshold``).

    Written at completion to ``output_dir``: ``<prefix>.json`` and ``<prefix>_scale-<s>.csv`` (grouped by scale,
    reference, method) and ``<prefix>_table.md`` (PSNR and SSIM tables).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        method_name: str = "Dual-ArbNet",
        extra_networks: Mapping[str, Any] | None = None,
        reference_free: Sequence[str] = (),
        baselines: Sequence[str] = ("cubic",),
        complex_channels: bool = False,
        reference_key: str = "reference",
        mask_key: str = "mask",
        scale_key: str = "scale",
        reference_type_key: str = "reference_type",
        slice_key: str = "slice_index",
        mask_threshold: float = 0.05,
        prefix: str = "metrics",
        figure_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(output_dir, method_name, baselines, mask_key, scale_key, mask_threshold, prefix)
        self.figure_dir = None if figure_dir is None else Path(figure_dir)
        self.extra_networks = dict(extra_networks or {})
        self.reference_free = set(reference_free) | set(baselines)
        self.complex_channels = bool(complex_channels)
        self.reference_key, self.reference_type_key, self.slice_key = reference_key, reference_type_key, slice_key
        self._seen: set = set()
        self._figures: set = set()

    def _reset(self, engine: Engine) -> None:
        self.records, self._seen, self._figures = [], set(), set()

    @staticmethod
    def _item(batch: Mapping, key: str, b: int, default=None):
        v = batch.get(key)
        if v is None:
            return default
        if isinstance(v, (list, tuple)):
            return v[b]
        if isinstance(v, torch.Tensor):
            return v[b].detach().cpu().numpy() if v.ndim else v.item()
        return v

    def _score(self, engine: Engine) -> None:
        out, batch = engine.state.output, engine.state.batch
        if isinstance(out, list):
            raise ValueError("ReferenceSRMetrics needs un-decollated outputs (SupervisedEvaluator decollate=False).")
        image, label = out["image"], out["label"]
        reference = batch.get(self.reference_key)
        preds: dict[str, torch.Tensor] = {self.method_name: out["pred"]}
        shape = tuple(int(s) for s in label.shape[2:])
        for name, net in self.extra_networks.items():
            net.eval()
            ref = reference.to(image.device) if reference is not None else None
            preds[name] = engine.inferer(image, net, ref, output_shape=shape)  # type: ignore[attr-defined]
        lr = image.detach().float().cpu().numpy()
        gt_all = label.detach().float().cpu().numpy()
        sources = label.meta.get("filename_or_obj") if hasattr(label, "meta") else None
        for b in range(gt_all.shape[0]):
            gt = _magnitude(gt_all[b], self.complex_channels)
            mask = self._item(batch, self.mask_key, b)
            if mask is not None:
                mask = np.asarray(mask).reshape(gt.shape) > 0
                if not mask.any():
                    mask = None
            if mask is None:
                mask = reference_foreground(gt, self.mask_threshold)
            scale = float(np.asarray(self._item(batch, self.scale_key, b, math.nan)).reshape(-1)[0])
            rtype = str(self._item(batch, self.reference_type_key, b, "HR"))
            sl = self._item(batch, self.slice_key, b, -1)
            sl = int(np.asarray(sl).reshape(-1)[0])
            src = sources[b] if isinstance(sources, (list, tuple)) else sources
            subject = _subject_name(src) if src else f"case{len(self.records)}"
            candidates = {
                k: _magnitude(v[b].detach().float().cpu().numpy(), self.complex_channels) for k, v in preds.items()
            }
            for name in self.baselines:
                up = np.stack([interpolate(c, gt.shape, name) for c in lr[b]])
                candidates[name] = _magnitude(up, self.complex_channels)
            if self.figure_dir is not None:
                if (subject, scale, rtype) not in self._figures:
                    from .report import write_montage

                    self._figures.add((subject, scale, rtype))
                    write_montage({k: np.clip(v, 0.0, 1.0) for k, v in candidates.items()},
                                  self.figure_dir / f"{subject}_x{scale:g}_ref-{rtype}.png",
                                  reference=np.clip(gt, 0.0, 1.0),
                                  title=f"{subject} slice {sl}, x{scale:g}, {rtype} reference")
            for name, p in candidates.items():
                ref_label = "none" if name in self.reference_free else rtype
                key = (subject, sl, scale, name, ref_label)
                if key in self._seen:
                    continue
                self._seen.add(key)
                rec = {"subject": subject, "slice": sl, "scale": scale, "reference": ref_label, "method": name}
                rec.update(evaluate_pair(np.clip(p, 0.0, 1.0), np.clip(gt, 0.0, 1.0), mask=mask, data_range=1.0))
                self.records.append(rec)
                self.logger.info(
                    "%s slice %d x%.2f ref %-4s %-22s PSNR %.2f SSIM %.4f", subject, sl, scale, ref_label, name,
                    rec["psnr"], rec["ssim"],
                )

    def _write(self, engine: Engine) -> None:
        if not self.records:
            return
        group = ("scale", "reference", "method")
        write_metrics(self.records, self.output_dir, prefix=self.prefix, group_by=group,
                      metadata={"unit": "2D slice", "data_range": 1.0, "normalisation": "min-max per volume"})
        summary = summarize(self.records, group_by=group, metric_keys=["psnr", "ssim", "psnr_mask", "ssim_mask"])
        n_slices = len({(r["subject"], r["slice"]) for r in self.records})
        text = (
            f"# {self.method_name} evaluation ({n_slices} slices, mean over slices)\n\n## PSNR (dB, data range 1)\n\n"
            + format_results_table(summary, "psnr", 2)
            + "\n## SSIM (data range 1)\n\n"
            + format_results_table(summary, "ssim", 4)
        )
        write_text_atomic(self.output_dir / f"{self.prefix}_table.md", text)
        self.logger.info("\n%s", text)
