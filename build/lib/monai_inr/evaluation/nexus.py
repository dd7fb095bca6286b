"""Evaluation of Nexus-INR against its baselines, its ablation and the downstream segmentation.

Zhang et al., "Nexus-INR: Diverse Knowledge-guided Arbitrary-Resolution Medical Image Super-Resolution", arXiv
2508.03073, 2025, section 4: Table 1 (PSNR/SSIM of T1w and T2w against trilinear, ArSSR and other methods), Table 2
(ablation: baseline -> + multi-modal fusion -> + cross-modal attention -> + segmentation-enhanced learning) and
Table 5 (a 3D U-Net trained on ground truth, applied to every method's output, the LR input and the HR ground truth;
Dice and HD95).

Every row is a method of :mod:`monai_inr.evaluation.methods` (``item -> (t1w_hr, t2w_hr)`` on the ground-truth grid):
interpolation (``"LR input"``, trilinear, cubic), ArSSR (trained by its own bundle, :func:`train_arssr_baseline`),
the multi-contrast INR (fitted per subject by its own bundle), and one Nexus-INR per ablation row
(:func:`nexus_inr_methods`). :class:`NexusEvaluation` runs them with the
:class:`~monai_inr.evaluation.runner.EvaluationRunner`, segments each output with the downstream U-Net
(:mod:`monai_inr.evaluation.segmentation`, trained once on the training split's ground truth and cached), and writes
``metrics.json``, the tables of :data:`~monai_inr.evaluation.tables.NEXUS_TABLES` as ``comparison.csv``,
``ablation.csv``, ``segmentation.csv`` and ``results.md`` (:mod:`monai_inr.evaluation.report`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from monai_inr.errors import InputError
from monai_inr.io import load_volume, save_nifti, write_text_atomic
from monai_inr.metrics import write_metrics
from monai_inr.networks.utils import unwrap_network

from .bundle import config_file_list, network_from_bundle
from .methods import (
    ArSSRMethod,
    InterpolationMethod,
    Method,
    MultiContrastINRMethod,
    NexusINRMethod,
    baseline_order,
    target_grid,
)
from .report import write_report
from .runner import EvaluationRunner, Reference, image_metric_keys, load_reference, read_datalist
from .tables import NEXUS_TABLES, TableSpec

__all__ = [
    "MODALITIES",
    "HR_ROW",
    "target_grid",
    "InterpolationMethod",
    "ArSSRMethod",
    "MultiContrastINRMethod",
    "NexusINRMethod",
    "network_from_bundle",
    "train_arssr_baseline",
    "arssr_method",
    "multi_contrast_inr_method",
    "nexus_inr_methods",
    "available_models",
    "baseline_methods",
    "NexusEvaluation",
]

#: the two modalities, their HR ground-truth key and their LR input key in a datalist item
MODALITIES: tuple[tuple[str, str, str], ...] = (("t1w", "t1w", "t1w_lr"), ("t2w", "t2w", "t2w_lr"))
#: row name of the segmentation of the ground truth itself
HR_ROW = "HR ground truth"

logger = logging.getLogger(__name__)


def _item_name(item: Mapping[str, Any]) -> str:
    return str(item.get("subject", item.get("t1w", "subject")))


# ------------------------------------------------------------------------------------------------------ methods


def _settings_match(path: Path, settings: Mapping[str, Any]) -> bool:
    side = path.with_name(path.name + ".json")
    if not (path.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text(encoding="utf-8")) == json.loads(json.dumps(settings, default=str))
    except ValueError:
        return False


def _last_epoch_interval(epochs: int, interval: int) -> int:
    """The largest validation interval <= ``interval`` that divides ``epochs``, so the last epoch is validated."""
    interval = max(1, min(int(epochs), int(interval)))
    while int(epochs) % interval:
        interval -= 1
    return interval


def train_arssr_baseline(
    datalist: str | os.PathLike,
    work_dir: str | os.PathLike,
    config_files: Sequence[str | os.PathLike],
    epochs: int = 120,
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Train the ArSSR baseline with the ``arssr`` bundle on the datalist's training HR volumes; return the checkpoint.

    The bundle's own workflow (:class:`monai.bundle.ConfigWorkflow` on ``config_files``, e.g. its ``train.json`` and
    ``quick.json``) runs with ``bundle_root = work_dir``, ``epochs`` and ``overrides``, and with its training files
    replaced by the T1w and T2w ground truths of the ``"training"`` split (one network for both contrasts, one
    contrast at a time, as ArSSR is single-image) and its validation files by those of the ``"validation"`` split (the
    first training subject when that split is empty), validated every ``val_interval`` epochs (lowered to a divisor
    of ``epochs`` so the last epoch is validated too). ArSSR's degradation stays the bundle's (cubic downsampling of
    random patches); the evaluation's default ``overrides`` draw an independent scale per axis in [1, 4] so that the
    anisotropic test scales (x2 along one axis, x4 along another) lie inside its training distribution. The best
    validation checkpoint lands in ``<work_dir>/models/model.pt`` with a ``model.pt.json`` sidecar recording the
    settings; a later call with the same settings reuses it (``force`` retrains).
    """
    from monai.bundle import ConfigWorkflow

    p = Path(datalist)
    if not p.is_file():
        raise InputError(f"{p}: datalist not found.")
    doc = json.loads(p.read_text(encoding="utf-8"))
    train = [it for it in doc.get("training", [])]
    if not train:
        raise InputError(f"{p}: no 'training' subjects to train the ArSSR baseline on.")
    val = doc.get("validation") or train[:1]
    train_files = [{"image": str(it[k])} for it in train for k in ("t1w", "t2w")]
    val_files = [{"image": str(it[k])} for it in val for k in ("t1w", "t2w")]
    work = Path(work_dir).resolve()
    ckpt = work / "models" / "model.pt"
    files = config_file_list(config_files)
    settings = {
        "config_files": [str(Path(f).resolve()) for f in files],
        "epochs": int(epochs),
        "overrides": dict(overrides or {}),
        "train_files": train_files,
        "val_files": val_files,
    }
    if not force and _settings_match(ckpt, settings):
        logger.info("ArSSR baseline reused from %s", ckpt)
        return ckpt
    if ckpt.exists():
        ckpt.unlink()
    run = {
        "bundle_root": str(work),
        "epochs": int(epochs),
        "val_interval": _last_epoch_interval(int(epochs), int((overrides or {}).get("val_interval", epochs))),
        "train_files": train_files,
        "val_files": val_files,
        **{k: v for k, v in (overrides or {}).items() if k != "val_interval"},
    }
    logger.info("training the ArSSR baseline (%d epochs) on %d HR volumes in %s", epochs, len(train_files), work)
    wf = ConfigWorkflow(config_file=files, workflow_type="train", **run)
    wf.initialize()
    wf.run()
    wf.finalize()
    if not ckpt.is_file():
        raise RuntimeError(f"the ArSSR bundle finished without writing {ckpt}.")
    write_text_atomic(ckpt.with_name(ckpt.name + ".json"), json.dumps(settings, indent=2, default=str) + "\n")
    return ckpt


def arssr_method(
    config_files: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    epochs: int = 120,
    network_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    **inferer_kwargs: Any,
) -> ArSSRMethod:
    """:class:`ArSSRMethod` for the ``arssr`` bundle's network (``config_files`` + ``network_overrides``) with
    ``checkpoint``; with no checkpoint, :func:`train_arssr_baseline` first trains one on ``datalist`` in
    ``work_dir`` (``train_overrides`` are applied to training and, for the network keys, to the network as well)."""
    net_overrides = dict(network_overrides or {})
    if checkpoint is None or not str(checkpoint).strip():
        if datalist is None or work_dir is None:
            raise InputError("the ArSSR row needs a checkpoint, or a datalist and a work_dir to train one.")
        all_overrides = {**(train_overrides or {}), **net_overrides}
        checkpoint = train_arssr_baseline(datalist, work_dir, config_files, epochs, all_overrides)
    network = network_from_bundle(config_files, net_overrides)
    return ArSSRMethod(network, checkpoint, device=device, **inferer_kwargs)


def multi_contrast_inr_method(
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    **kwargs: Any,
) -> MultiContrastINRMethod:
    """:class:`~monai_inr.evaluation.methods.MultiContrastINRMethod`: every subject fitted by the
    ``multi_contrast_inr`` bundle's own configuration (``config_files``, e.g. its ``train.json`` + ``quick.json``,
    with ``overrides``)."""
    return MultiContrastINRMethod(config_files, overrides, device=device, seed=seed, **kwargs)


def _same_structure(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def _candidate_lists(config_files: Any) -> list[list[str]]:
    if not config_files:
        return []
    if isinstance(config_files, (str, os.PathLike)):
        return [[str(config_files)]]
    items = list(config_files)
    if all(isinstance(f, (str, os.PathLike)) for f in items):
        return [[str(f) for f in items]]
    return [[str(f) for f in ([c] if isinstance(c, (str, os.PathLike)) else c)] for c in items]


def nexus_inr_methods(
    models: Mapping[str, Any] | None,
    network: torch.nn.Module | None = None,
    config_files: Any = None,
    device: str | torch.device = "cpu",
    predict_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, NexusINRMethod]:
    """One :class:`NexusINRMethod` per row (the full model and the ablation variants of Table 2).

    Args:
        models: ``{row name: checkpoint path}`` or ``{row name: {"checkpoint": path, ...}}``. The row's network is
            ``"network"`` when given (a module built with the switches the row was trained with); else, with
            ``"overrides"`` (config keys such as ``{"dual_branch": False}``), the ``network_def`` of the Nexus-INR
            bundle config files with those overrides; else a copy of ``network``.
        network: the network of the evaluated bundle configuration (``@network_def``).
        config_files: the bundle config files the ablation networks are parsed from: one list of files, or several
            candidate lists (e.g. ``[[train.json], [train.json, quick.json]]``), of which the first whose
            ``network_def`` has the structure of ``network`` is used, so the ablation rows get the sizes of the
            evaluated profile.

    Raises:
        InputError: a row without a checkpoint or a way to build its network, no candidate config matching
            ``network``, a checkpoint of another network.
    """
    out: dict[str, NexusINRMethod] = {}
    chosen: list[str] | None = None
    for name, spec in (models or {}).items():
        spec = {"checkpoint": spec} if isinstance(spec, (str, os.PathLike)) else dict(spec)
        if not spec.get("checkpoint"):
            raise InputError(f"Nexus-INR row {name!r} has no checkpoint.")
        if isinstance(spec.get("network"), torch.nn.Module):
            net = spec["network"]
        elif spec.get("overrides") or spec.get("config_files"):
            if spec.get("config_files"):
                files = _candidate_lists(spec["config_files"])[0]
            else:
                if chosen is None:
                    candidates = _candidate_lists(config_files)
                    if not candidates:
                        raise InputError(f"Nexus-INR row {name!r} has overrides but no bundle config files to apply "
                                         f"them to.")
                    if network is None or len(candidates) == 1:
                        chosen = candidates[0]
                    else:
                        ref = unwrap_network(network)
                        chosen = next((c for c in candidates if _same_structure(network_from_bundle(c), ref)), None)
                        if chosen is None:
                            raise InputError(
                                f"none of the config files {candidates} builds the evaluated Nexus-INR network, so the "
                                f"ablation rows cannot be built like it; set eval_nexus_config_files."
                            )
                files = chosen
            net = network_from_bundle(files, spec.get("overrides"))
        elif network is not None:
            net = copy.deepcopy(unwrap_network(network))
        else:
            raise InputError(f"Nexus-INR row {name!r}: give a network or bundle config files to build it from.")
        out[str(name)] = NexusINRMethod(net, spec["checkpoint"], device=device, predict_kwargs=predict_kwargs)
    return out


def baseline_methods(
    names: Sequence[str] = ("LR input", "Trilinear"),
    extra: Mapping[str, Method] | None = None,
    **more: Method,
) -> dict[str, Method]:
    """Ordered ``{row name: method}``: the interpolation rows named in ``names`` (names of
    :data:`~monai_inr.evaluation.methods.BASELINE_ORDERS`, any case: ``"LR input"``, ``"Trilinear"``, ``"Cubic"``),
    then ``extra`` and ``more`` (``None`` values are left out)."""
    out: dict[str, Method] = {n: InterpolationMethod(baseline_order(n)) for n in names}
    for d in (extra or {}, more):
        out.update({k: v for k, v in d.items() if v is not None})
    return out


# ------------------------------------------------------------------------------------------------------ evaluation


class NexusEvaluation:
    """Score every method on the held-out subjects; write metrics, CSV tables and ``results.md`` to ``output_dir``.

    Args:
        datalist: a Nexus datalist (``monai_inr.data.nexus.build_nexus_dataset``) or the list of test items
            (``subject``, ``t1w``, ``t2w``, ``t1w_lr``, ``t2w_lr``, ``label``, ``mask``).
        methods: ordered ``{row name: callable (item) -> (t1w_hr, t2w_hr)}``.
        comparison_rows: rows of the comparison table (Table 1); names without a method are listed as not evaluated.
        ablation_rows: rows of the ablation table (Table 2), in order.
        segmentation: run the downstream segmentation (Table 5) on every method, plus :data:`HR_ROW`.
        segmentation_train_items: ground-truth subjects to train the U-Net on (default the datalist's ``"training"``).
        segmentation_cache: checkpoint path of the U-Net (trained once, reused while its settings match).
        segmentation_network: U-Net arguments (:func:`~monai_inr.evaluation.segmentation.build_segmentation_network`).
        segmentation_training: :func:`~monai_inr.evaluation.segmentation.train_segmentation` arguments.
        segmentation_roi: sliding-window size of the segmentation inference.
        empty_classes: ``"nan"`` or ``"brats"`` (:func:`~monai_inr.evaluation.segmentation.segmentation_metrics`).
        split: datalist split to evaluate.
        num_subjects: evaluate only the first subjects (``None``: all).
        save_predictions: also write every output (and its segmentation) as NIfTI under ``output_dir/predictions``.
        metadata: extra information stored in ``metrics.json`` (degradation, settings, seeds).
        figures: write ``figures/<subject>_<contrast>.png`` (middle slice of every method next to the ground truth,
            with error maps; :class:`~monai_inr.evaluation.runner.EvaluationRunner`).
    """

    def __init__(
        self,
        datalist: str | os.PathLike | Sequence[Mapping[str, Any]],
        methods: Mapping[str, Method],
        output_dir: str | os.PathLike = "eval",
        comparison_rows: Sequence[str] | None = None,
        ablation_rows: Sequence[str] = (),
        segmentation: bool = True,
        segmentation_train_items: Sequence[Mapping[str, Any]] | None = None,
        segmentation_cache: str | os.PathLike | None = None,
        segmentation_network: Mapping[str, Any] | None = None,
        segmentation_training: Mapping[str, Any] | None = None,
        segmentation_roi: Sequence[int] | int = (48, 48, 48),
        empty_classes: str = "nan",
        split: str = "test",
        num_subjects: int | None = None,
        save_predictions: bool = False,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        figures: bool = True,
    ) -> None:
        self.items, doc = read_datalist(datalist, split)
        self.datalist_path = Path(datalist) if isinstance(datalist, (str, os.PathLike)) else None
        train_items = list(doc.get("training", []))
        self.data_metadata = doc.get("metadata", {})
        if num_subjects is not None:
            self.items = self.items[: int(num_subjects)]
        if not self.items:
            raise InputError(f"the evaluation datalist has no {split!r} subjects.")
        needed = ("t1w", "t2w", "t1w_lr", "t2w_lr", "mask") + (("label",) if segmentation else ())
        for it in self.items:
            missing = [k for k in needed if not it.get(k)]
            if missing:
                raise InputError(f"datalist item {_item_name(it)} lacks {missing} (needed by the evaluation).")
        if not methods:
            raise InputError("no methods to evaluate.")
        bad = [n for n, m in methods.items() if not callable(m)]
        if bad:
            raise InputError(f"evaluation method(s) {bad} are not callables (item) -> (t1w, t2w).")
        if HR_ROW in methods:
            raise InputError(f"{HR_ROW!r} is reserved for the segmentation of the ground truth.")
        self.methods = dict(methods)
        self.comparison_rows = list(comparison_rows) if comparison_rows is not None else list(self.methods)
        self.ablation_rows = list(ablation_rows)
        self.segmentation = bool(segmentation)
        self.seg_items = list(segmentation_train_items) if segmentation_train_items is not None else train_items
        if self.segmentation and not self.seg_items:
            raise InputError("the downstream segmentation needs training subjects (the datalist's 'training' split).")
        self.seg_cache = segmentation_cache
        self.seg_network_kwargs = dict(segmentation_network or {})
        self.seg_training = dict(segmentation_training or {})
        self.seg_roi = segmentation_roi
        self.empty_classes = empty_classes
        self.output_dir = Path(output_dir)
        self.save_predictions = bool(save_predictions)
        self.device = torch.device(device)
        self.metadata = dict(metadata or {})
        self.records: list[dict[str, Any]] = []
        self.figures = bool(figures)
        self.seg_info: dict[str, Any] = {}
        self.seg_net: torch.nn.Module | None = None
        self.result: dict[str, Any] = {}
        self.names = [name for name, _, _ in MODALITIES]

    # ------------------------------------------------------------------ runner hooks
    def _prepare(self) -> None:
        if not self.segmentation:
            return
        from .segmentation import train_or_load_segmentation

        kwargs = dict(self.seg_training)
        kwargs.setdefault("roi_size", self.seg_roi)
        self.seg_net, self.seg_info = train_or_load_segmentation(
            self.seg_items, self.seg_cache, network_kwargs=self.seg_network_kwargs, device=self.device, **kwargs
        )

    def _reference(self, item: Mapping[str, Any]) -> Reference:
        if not self.segmentation:
            return load_reference(item, [k for _, k, _ in MODALITIES])
        from .segmentation import load_segmentation_item

        d = load_segmentation_item(item)
        gts = [load_volume(item[k])[0] for _, k, _ in MODALITIES]
        return Reference(_item_name(item), gts, d["affine"], d["mask"], {"label": d["label"][0]})

    def _segment_and_score(self, t1: np.ndarray, t2: np.ndarray, ref: Reference) -> tuple[dict, np.ndarray]:
        from .segmentation import SEGMENTATION_CLASSES, segment, segmentation_metrics

        m = ref.mask
        if not (np.isfinite(t1[m]).all() and np.isfinite(t2[m]).all()):  # a diverged method: scored NaN, not fatal
            nan = {f"{k}_{n}": float("nan") for n in SEGMENTATION_CLASSES.values() for k in ("dice", "hd95", "miss")}
            return dict(nan, dice=float("nan"), hd95=float("nan")), np.zeros(m.shape, np.uint8)
        seg = segment(self.seg_net, t1, t2, m, roi_size=self.seg_roi, name=ref.subject, allow_constant=True)
        return segmentation_metrics(seg, ref.extra["label"], ref.affine, empty=self.empty_classes), seg

    def _save(self, subject: str, method: str, preds: Sequence[np.ndarray] | None, seg: np.ndarray | None,
              affine: np.ndarray) -> None:
        pdir = self.output_dir / "predictions"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in method)
        for (name, _, _), p in zip(MODALITIES, preds or ()):
            save_nifti(p, affine, pdir / f"{subject}_{safe}_{name}.nii.gz")
        if seg is not None:
            save_nifti(seg, affine, pdir / f"{subject}_{safe}_seg.nii.gz", dtype=np.uint8)

    def _after_method(self, rec: dict, preds: Sequence[np.ndarray], ref: Reference) -> None:
        seg = None
        if self.segmentation:
            seg_metrics, seg = self._segment_and_score(preds[0], preds[1], ref)
            rec.update(seg_metrics)
        if self.save_predictions:
            self._save(ref.subject, rec["method"], preds, seg, ref.affine)

    def _after_item(self, ref: Reference) -> list[dict]:
        if not self.segmentation:
            return []
        seg_metrics, seg = self._segment_and_score(ref.images[0], ref.images[1], ref)
        if self.save_predictions:
            self._save(ref.subject, "HR", None, seg, ref.affine)
        return [{"subject": ref.subject, "method": HR_ROW, **seg_metrics}]

    # ------------------------------------------------------------------ writing
    def _specs(self) -> list[TableSpec]:
        specs = [NEXUS_TABLES["comparison"].with_rows(self.comparison_rows),
                 NEXUS_TABLES["ablation"].with_rows(self.ablation_rows)]
        if self.segmentation:
            specs.append(NEXUS_TABLES["segmentation"].with_rows([*self.methods, HR_ROW]))
        return specs

    def _intro(self) -> list[str]:
        n_subj = len({r["subject"] for r in self.records})
        lines = [
            "# Nexus-INR evaluation",
            "",
            f"{n_subj} held-out subject(s); mean ± SD over subjects. Intensities: each method's output and the ground "
            "truth mapped with the ground truth's min/max to [0, 1], predictions clipped; 3D PSNR (dB) and SSIM "
            "(Gaussian window 11, sigma 1.5) with data range 1, over the whole field of view and inside the brain "
            "mask. Avg = mean of T1w and T2w.",
            "",
        ]
        deg = self.data_metadata.get("degradation") or self.metadata.get("degradation")
        return lines + ([f"Degradation: {deg}.", ""] if deg else [])

    def _seg_note(self) -> str:
        return (
            f"3D U-Net trained on the ground-truth HR training subjects ({len(self.seg_items)}), applied to "
            "each method's T1w/T2w (z-scored inside the brain mask). Dice (fraction) and HD95 (mm, voxel "
            "spacing applied) per region; classes absent from the ground truth are left out "
            "(`n` shows the count), a missed region scores Dice 0 and no HD95"
            + (" (BraTS convention: empty cases scored)" if self.empty_classes == "brats" else "")
            + "."
        )

    def _write(self) -> None:
        if not self.records:
            return
        specs = self._specs()
        if self.segmentation:
            specs[-1] = replace(specs[-1], note=self._seg_note())
        meta = {
            "task": "Nexus-INR evaluation (Zhang et al., arXiv 2508.03073, 2025; Tables 1, 2 and 5)",
            "datalist": str(self.datalist_path) if self.datalist_path else None,
            "degradation": self.data_metadata.get("degradation", ""),
            "methods": list(self.methods),
            "segmentation": {
                k: v for k, v in self.seg_info.items() if k not in ("files",)
            } if self.segmentation else None,
            "empty_classes": self.empty_classes,
            **self.metadata,
        }
        keys = image_metric_keys(self.names) + ["seconds"]
        if self.segmentation:
            keys += NEXUS_TABLES["segmentation"].metric_keys
        self.result = write_report(self.records, self.output_dir, specs, self._intro(), keys, metadata=meta)

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every subject (:class:`~monai_inr.evaluation.runner.EvaluationRunner`); returns the records
        (also written to ``output_dir``)."""
        self.records = []
        runner = EvaluationRunner(
            self.items, self.methods, self._reference, self.names, after_method=self._after_method,
            after_item=self._after_item, on_start=self._prepare, on_complete=self._finish,
            log_keys=("psnr_t1w", "ssim_t1w", "psnr_t2w", "ssim_t2w", "dice", "hd95"),
            figure_dir=self.output_dir / "figures" if self.figures else None,
        )
        self._runner = runner
        runner.run()
        return self.records

    def _finish(self) -> None:
        self.records = self._runner.records
        self._write()


def available_models(
    models: Mapping[str, Any] | None, required: Sequence[str] = ()
) -> dict[str, Any]:
    """The rows of ``models`` (:func:`nexus_inr_methods` format) whose checkpoint file exists.

    Ablation rows need their own training runs; a row whose checkpoint is missing is left out here (and listed as not
    evaluated in ``results.md``), except the rows in ``required``, which raise.

    Raises:
        InputError: a required row is missing from ``models`` or its checkpoint does not exist.
    """
    out: dict[str, Any] = {}
    for name, spec in (models or {}).items():
        path = spec if isinstance(spec, (str, os.PathLike)) else dict(spec).get("checkpoint")
        if path and Path(str(path)).is_file():
            out[name] = spec
        elif name in required:
            raise InputError(f"{path}: checkpoint of the {name!r} row not found; train the bundle first.")
        else:
            logger.info("Nexus-INR row %r not evaluated: checkpoint %s not found.", name, path)
    missing = [r for r in required if r not in (models or {})]
    if missing:
        raise InputError(f"the Nexus-INR rows {missing} have no checkpoint entry.")
    return out
