"""One evaluation loop for every bundle: items -> methods -> protocol normalisation -> ``evaluate_pair`` -> records.

:class:`EvaluationRunner` iterates the subjects of a datalist with an ignite ``Engine``. For each subject it loads the
reference (ground truths, brain mask, grid; :func:`load_reference`), calls every method
(:mod:`monai_inr.evaluation.methods`: ``method(item) -> one volume per contrast on the ground-truth grid``), scores
each contrast with the project protocol (:func:`protocol_scores`: the ground truth's intensity map to [0, 1],
predictions clipped, 3D PSNR/SSIM over the whole field of view and inside the mask; :mod:`monai_inr.metrics.protocol`)
and appends one record per (subject, method). Hooks add method-specific scores (segmentation, MI errors) and outputs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from ignite.engine import Engine, Events

from monai_inr.errors import InputError
from monai_inr.io import load_volume, read_nifti
from monai_inr.metrics import evaluate_pair, normalize_to_reference
from monai_inr.metrics.protocol import apply_intensity_map, reference_intensity_map

from .methods import Method

__all__ = ["Evaluation", "read_datalist", "Reference", "load_reference", "protocol_scores", "IMAGE_METRICS", "image_metric_keys", "EvaluationRunner"]

logger = logging.getLogger(__name__)

#: the per-contrast protocol metrics of :func:`~monai_inr.metrics.protocol.evaluate_pair`
IMAGE_METRICS: tuple[str, ...] = ("psnr", "psnr_mask", "ssim", "ssim_mask")


def read_datalist(datalist: str | os.PathLike | Sequence[Mapping[str, Any]], split: str = "test",
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The items of one split of a MONAI-style datalist (a JSON path, or the items themselves) and the whole document
    (``{}`` for items).

    Raises:
        InputError: missing or unreadable file, no such split, no items.
    """
    if not isinstance(datalist, (str, os.PathLike)):
        items, doc = [dict(it) for it in datalist], {}
    else:
        p = Path(datalist)
        if not p.is_file():
            raise InputError(f"{p}: datalist not found.")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{p}: not a readable JSON datalist ({e}).") from e
        if split not in doc:
            raise InputError(f"{p}: the datalist has no {split!r} split.")
        items = list(doc[split])
    if not items:
        raise InputError(f"the evaluation datalist has no {split!r} subjects.")
    return items, doc


@dataclass
class Reference:
    """The ground truth of one subject: one image per contrast on one grid, the foreground mask, extras (labels)."""

    subject: str
    images: list[np.ndarray]
    affine: np.ndarray
    mask: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


def load_reference(item: Mapping[str, Any], keys: Sequence[str], mask_key: str = "mask") -> Reference:
    """Read the ground truths ``item[k]`` for ``k`` in ``keys`` (one grid) and the mask ``item[mask_key]``.

    Raises:
        InputError: unreadable files, ground truths on different grids, a mask of another shape.
    """
    name = str(item.get("subject", item.get(keys[0], "subject")))
    images: list[np.ndarray] = []
    affine = None
    for k in keys:
        arr, aff = load_volume(item[k])
        if affine is not None and (arr.shape != images[0].shape or not np.allclose(aff, affine, atol=1e-3)):
            raise InputError(f"{item[k]}: the ground truths of {name} do not share one grid.")
        images.append(arr)
        affine = aff if affine is None else affine
    m, _ = read_nifti(item[mask_key])
    m = np.asarray(m)
    while m.ndim > 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != images[0].shape:
        raise InputError(f"{item[mask_key]}: the brain mask of {name} has shape {m.shape}, the images {images[0].shape}.")
    return Reference(subject=name, images=images, affine=affine, mask=m > 0)


def protocol_scores(preds: Sequence[np.ndarray], ref: Reference, names: Sequence[str]) -> dict[str, float]:
    """Protocol metrics per contrast (``<metric>_<name>``) and their mean over contrasts (``<metric>_avg``)."""
    rec: dict[str, float] = {}
    for name, pred, gt in zip(names, preds, ref.images):
        pred_n, gt_n = normalize_to_reference(pred, reference=gt)
        for k, v in evaluate_pair(pred_n, gt_n, mask=ref.mask).items():
            rec[f"{k}_{name}"] = v
    for m in IMAGE_METRICS:
        rec[f"{m}_avg"] = float(np.mean([rec[f"{m}_{n}"] for n in names]))
    return rec


def image_metric_keys(names: Sequence[str]) -> list[str]:
    """The keys :func:`protocol_scores` writes, in table order."""
    return [f"{m}_{n}" for m in IMAGE_METRICS for n in names] + [f"{m}_avg" for m in IMAGE_METRICS]


class EvaluationRunner:
    """Run every method on every item and score it; the records are kept in :attr:`records`.

    Args:
        items: datalist items (one subject each).
        methods: ordered ``{row name: method}``.
        reference: ``item -> Reference`` (e.g. ``lambda it: load_reference(it, ("t1w", "t2w"))``).
        names: contrast names, in the order methods return them and ``reference`` loads them.
        score: ``(preds, reference, names) -> metrics`` (default :func:`protocol_scores`).
        after_method: ``(record, preds, reference) -> None``, called before the record is kept (extra scores, saving).
        after_item: ``(reference) -> list of extra records`` (e.g. the segmentation of the ground truth itself).
        on_start, on_complete: ``() -> None`` at the start (train a downstream model) and end (write the report).
        log_keys: record keys logged per method.
        figure_dir: when given, one PNG per subject and contrast there (``<subject>_<name>.png``): the middle slice
            along ``figure_axis`` of every method next to the ground truth, with absolute error maps, all mapped
            with the ground truth's intensity map (:func:`~monai_inr.evaluation.report.write_montage`).
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        methods: Mapping[str, Method],
        reference: Callable[[Mapping[str, Any]], Reference],
        names: Sequence[str],
        score: Callable[[Sequence[np.ndarray], Reference, Sequence[str]], dict[str, Any]] = protocol_scores,
        after_method: Callable[[dict, Sequence[np.ndarray], Reference], None] | None = None,
        after_item: Callable[[Reference], list[dict]] | None = None,
        on_start: Callable[[], None] | None = None,
        on_complete: Callable[[], None] | None = None,
        log_keys: Sequence[str] = (),
        figure_dir: str | os.PathLike | None = None,
        figure_axis: int = 2,
    ) -> None:
        self.items = list(items)
        self.methods = dict(methods)
        self.reference = reference
        self.names = list(names)
        self.score = score
        self.after_method, self.after_item = after_method, after_item
        self.on_start, self.on_complete = on_start, on_complete
        self.log_keys = tuple(log_keys)
        self.figure_dir = None if figure_dir is None else Path(figure_dir)
        self.figure_axis = int(figure_axis)
        self.records: list[dict[str, Any]] = []

    def _middle(self, image: np.ndarray) -> np.ndarray:
        return np.take(image, image.shape[self.figure_axis] // 2, axis=self.figure_axis)

    def _figures(self, ref: Reference, panels: Mapping[str, Sequence[np.ndarray]]) -> None:
        from .report import write_montage

        for c, name in enumerate(self.names):
            gt = ref.images[c]
            lo, hi = reference_intensity_map(gt)  # the protocol's mapping of the whole ground-truth volume
            write_montage(
                {m: apply_intensity_map(p[c], lo, hi) for m, p in panels.items()},
                self.figure_dir / f"{ref.subject}_{name}.png",
                reference=apply_intensity_map(self._middle(gt), lo, hi),
                title=f"{ref.subject} {name}: slice {gt.shape[self.figure_axis] // 2} along axis {self.figure_axis}",
            )

    def _process(self, engine: Engine, item: Mapping[str, Any]) -> dict[str, Any]:
        ref = self.reference(item)
        panels: dict[str, Sequence[np.ndarray]] = {}
        for method, fn in self.methods.items():
            t0 = time.perf_counter()
            preds = [np.asarray(p, dtype=np.float32) for p in fn(item)]
            seconds = time.perf_counter() - t0
            if len(preds) != len(self.names) or any(p.shape != ref.images[0].shape for p in preds):
                raise ValueError(
                    f"method {method!r} returned shapes {[p.shape for p in preds]} for {ref.subject}; it must return "
                    f"({', '.join(self.names)}) on the ground-truth grid {ref.images[0].shape}."
                )
            rec: dict[str, Any] = {"subject": ref.subject, "method": method, **self.score(preds, ref, self.names)}
            rec["seconds"] = float(seconds)
            if self.after_method is not None:
                self.after_method(rec, preds, ref)
            self.records.append(rec)
            self._log(rec)
            if self.figure_dir is not None:
                panels[method] = [self._middle(p) for p in preds]
        if self.figure_dir is not None:
            self._figures(ref, panels)
        if self.after_item is not None:
            for rec in self.after_item(ref):
                self.records.append(rec)
                self._log(rec)
        return {"subject": ref.subject}

    def _log(self, rec: Mapping[str, Any]) -> None:
        shown = " ".join(f"{k} {float(rec[k]):.4g}" for k in self.log_keys if k in rec)
        logger.info("%s %-22s %s (%.1f s)", rec["subject"], rec["method"], shown, float(rec.get("seconds", 0.0)))

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every item; returns the records."""
        self.records = []
        engine = Engine(self._process)
        if self.on_start is not None:
            engine.add_event_handler(Events.STARTED, lambda e: self.on_start())
        if self.on_complete is not None:
            engine.add_event_handler(Events.COMPLETED, lambda e: self.on_complete())
        engine.run(self.items, max_epochs=1)
        return self.records


class Evaluation:
    """A complete evaluation from a bundle config: datalist -> methods -> protocol -> ``metrics.json``, one CSV per
    table, ``results.md`` and ``figures/`` under ``output_dir``.

    The building block for an evaluation set in any bundle's ``evaluate.json`` (e.g. realistic subjects)::

        "realistic_evaluation": {
            "_target_": "monai_inr.evaluation.Evaluation",
            "datalist": "@realistic_datalist",
            "methods": {"Cubic": "$monai_inr.evaluation.InterpolationMethod('cubic', ['image_lr'], 'image')",
                        "ArSSR": "$monai_inr.evaluation.ArSSRMethod(@network, @ckpt, inputs=['image_lr'], target='image')"},
            "references": ["image"],
            "output_dir": "$@output_dir + '/realistic'"
        }

    Args:
        datalist: a datalist path (its ``split``) or the items; each item holds the LR inputs the methods read, the
            ground truths ``references`` and the foreground mask ``mask_key``.
        methods: ordered ``{row name: method}`` (:mod:`monai_inr.evaluation.methods`).
        references: item keys of the ground truths, one per contrast, in the order the methods return them.
        names: contrast names in the metric keys (default ``references``).
        tables: the tables to write (default one comparison table of every method with the protocol's columns).
        title: first line of ``results.md``.
        figures: write the per-subject montages with error maps.
        metadata: stored in ``metrics.json`` (data, degradation, checkpoints).
    """

    def __init__(
        self,
        datalist: str | os.PathLike | Sequence[Mapping[str, Any]],
        methods: Mapping[str, Method],
        references: Sequence[str],
        output_dir: str | os.PathLike = "eval",
        names: Sequence[str] | None = None,
        tables: Sequence[Any] | None = None,
        split: str = "test",
        mask_key: str = "mask",
        title: str = "# Evaluation",
        figures: bool = True,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        from .tables import TableSpec, image_columns

        self.items, doc = read_datalist(datalist, split)
        if not methods or any(not callable(m) for m in methods.values()):
            raise InputError("evaluation methods must be a non-empty mapping of callables (item) -> predictions.")
        self.methods = dict(methods)
        self.references = list(references)
        self.names = list(names) if names is not None else self.references
        self.mask_key = mask_key
        self.output_dir = Path(output_dir)
        self.tables = list(tables) if tables is not None else [
            TableSpec("comparison", "## Comparison", image_columns(self.names, self.names))
        ]
        self.title = title
        self.figures = bool(figures)
        self.metadata = {"degradation": doc.get("metadata", {}).get("degradation", ""), **dict(metadata or {})}
        self.records: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every item and write the report; returns the records."""
        from .report import write_report

        runner = EvaluationRunner(
            self.items, self.methods, lambda it: load_reference(it, self.references, self.mask_key), self.names,
            log_keys=[f"psnr_{n}" for n in self.names] + [f"ssim_{n}" for n in self.names],
            figure_dir=self.output_dir / "figures" if self.figures else None,
        )
        self.records = runner.run()
        intro = [self.title, "", f"{len(self.items)} subject(s); mean ± SD over subjects; protocol of "
                 "monai_inr.metrics.protocol (ground-truth min/max to [0, 1], predictions clipped, 3D PSNR/SSIM with "
                 "data range 1, whole field of view and inside the mask).", ""]
        keys = image_metric_keys(self.names) + ["seconds"]
        self.result = write_report(self.records, self.output_dir, self.tables, intro, keys, metadata=self.metadata)
        return self.records
