"""Evaluation of subject-specific multi-contrast super-resolution (McGinnis, Shit et al., MICCAI 2023, section 3).

For every subject of a datalist written by :func:`monai_inr.data.multi_contrast.build_multi_contrast_dataset` (two
anisotropic low-resolution contrasts plus their isotropic ground truths and a brain mask), every method produces both
contrasts on the ground-truth grid, and the project protocol scores them:

* ``cubic`` (and ``trilinear``): spline interpolation of each LR contrast onto the ground-truth grid through world
  coordinates (:func:`~monai_inr.transforms.functional.resample_to_grid`);
* ``single_contrast_inr``: two independent INRs with one output each, each fitted to its own contrast only (paper
  baseline 2), run for all epochs (the paper uses MI early stopping for the multi-contrast models only);
* ``vanilla_inr``: one INR with two linear outputs (paper ablation), MI early stopping;
* ``split_head_inr``: the paper's model, MI early stopping;
* ``separate_inr`` (optional): the single-contrast INRs as one module fitted jointly.

Each fit is a MONAI ``SupervisedTrainer`` run (:func:`~monai_inr.engines.fitting.fit_pair`) with the network and
optimiser settings of ``train.json``; the subjects are iterated by an ignite ``Engine``. Metrics per contrast (PSNR,
SSIM over the whole volume and inside the mask) and the MI errors (:mod:`monai_inr.metrics.multi_contrast`) go to
``metrics.json`` and ``metrics.csv`` (one row per method, mean +- SD over subjects).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.engines.fitting import fit_pair
from monai_inr.data.coordinates import ContrastPair
from monai_inr.inferers.grid import predict_on_grid
from monai_inr.transforms.functional import resample_to_grid
from monai_inr.io import save_nifti
from monai_inr.errors import InputError
from monai_inr.metrics import write_metrics
from monai_inr.metrics.multi_contrast import evaluate_contrast_pair
from monai_inr.networks.utils import unwrap_network

__all__ = ["MultiContrastEvaluation", "METHODS"]

#: method name -> (kind, network overrides)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "cubic": ("spline", {"order": 3}),
    "trilinear": ("spline", {"order": 1}),
    "single_contrast_inr": ("single", {"architecture": "vanilla", "num_contrasts": 1}),
    "separate_inr": ("joint", {"architecture": "separate"}),
    "vanilla_inr": ("joint", {"architecture": "vanilla"}),
    "split_head_inr": ("joint", {"architecture": "split_head"}),
}


class MultiContrastEvaluation:
    """Fit and score every method on every subject; write ``metrics.json`` and ``metrics.csv`` to ``output_dir``.

    Args:
        datalist: path of a datalist (``"test"`` split) or its list of items (``contrast1``, ``contrast2``,
            ``label1``, ``label2``, ``mask``, ``subject``).
        network: a :class:`~monai_inr.networks.nets.MultiContrastINR` whose hyper-parameters every INR method uses
            (fresh variants via :meth:`~monai_inr.networks.nets.MultiContrastINR.variant`).
        methods: names from :data:`METHODS`.
        contrast_names: names of the two contrasts in the metric keys (``psnr_t1w`` ...).
        epochs, batch_size, learning_rate, adam_betas, adam_eps, loss_weights: the fit (train.json values).
        early_stopping, mi_points, mi_min_delta, mi_window, mi_min_epochs: MI early stopping of the joint models.
        save_predictions: also write every prediction as NIfTI (``<subject>_<method>_<contrast>.nii.gz``, on the
            ground-truth grid, original intensity units) under ``output_dir/predictions``.
        seed: seed of every fit (network initialisation and batch order).
    """

    def __init__(
        self,
        datalist: str | os.PathLike | Sequence[dict],
        network: torch.nn.Module,
        methods: Sequence[str] = ("cubic", "single_contrast_inr", "vanilla_inr", "split_head_inr"),
        output_dir: str | os.PathLike = "eval",
        contrast_names: Sequence[str] = ("t1w", "t2w"),
        epochs: int = 50,
        batch_size: int = 1000,
        learning_rate: float = 4e-4,
        adam_betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        loss_weights: Sequence[float] | None = (1.0, 1.0),
        early_stopping: bool = True,
        mi_points: int = 65536,
        mi_min_delta: float = 1e-4,
        mi_window: int = 3,
        mi_min_epochs: int = 4,
        mask_threshold: float = 0.05,
        device: str | torch.device = "cpu",
        seed: int = 0,
        save_predictions: bool = True,
        chunk_size: int = 65536,
        degradation: str = "",
    ) -> None:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise InputError(f"unknown evaluation method(s) {unknown}: choose from {sorted(METHODS)}.")
        if isinstance(datalist, (str, os.PathLike)):
            p = Path(datalist)
            if not p.is_file():
                raise InputError(f"{p}: datalist not found.")
            self.items = json.loads(p.read_text()).get("test", [])
            self.degradation = degradation or json.loads(p.read_text()).get("metadata", {}).get("degradation", "")
        else:
            self.items = list(datalist)
            self.degradation = degradation
        if not self.items:
            raise InputError("the evaluation datalist has no subjects.")
        self.template = unwrap_network(network)
        self.methods = list(methods)
        self.output_dir = Path(output_dir)
        self.names = list(contrast_names)
        self.fit_kwargs = {
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "learning_rate": float(learning_rate),
            "betas": tuple(adam_betas),
            "eps": float(adam_eps),
            "mi_points": int(mi_points),
            "mi_min_delta": float(mi_min_delta),
            "mi_window": int(mi_window),
            "mi_min_epochs": int(mi_min_epochs),
            "device": device,
        }
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self.early_stopping = bool(early_stopping)
        self.mask_threshold = float(mask_threshold)
        self.seed = int(seed)
        self.save_predictions = bool(save_predictions)
        self.chunk_size = int(chunk_size)
        self.records: list[dict[str, Any]] = []
        self.histories: dict[str, Any] = {}
        self.logger = logging.getLogger(__name__)

    # ------------------------------------------------------------------ one subject
    def _inr(self, method: str, pair: ContrastPair, gt_shape, gt_affine) -> tuple[list[np.ndarray], dict[str, Any]]:
        kind, overrides = METHODS[method]
        info: dict[str, Any] = {"fit_seconds": 0.0, "epochs": 0.0}
        outs: list[np.ndarray] = []
        fits = [[0], [1]] if kind == "single" else [None]
        for sel in fits:
            torch.manual_seed(self.seed)
            net = self.template.variant(**overrides)
            weights = self.loss_weights if sel is None or self.loss_weights is None else [self.loss_weights[sel[0]]]
            res = fit_pair(
                net,
                pair,
                contrasts=sel,
                loss_weights=weights,
                early_stopping=self.early_stopping and kind == "joint",
                seed=self.seed,
                **self.fit_kwargs,
            )
            pred = predict_on_grid(net, pair.frame, gt_shape, gt_affine, self.chunk_size).numpy()
            for j, c in enumerate(sel if sel is not None else range(2)):
                lo, hi = pair.intensity_range[c]
                outs.append(pred[j] * (hi - lo) + lo)
            info["fit_seconds"] += res.seconds
            info["epochs"] = max(info["epochs"], float(res.epochs))
            if res.mi_history:
                info["mi_history"] = res.mi_history
                info["stopped_early"] = res.stopped_early
        return outs, info

    def _process(self, engine: Engine, item: dict) -> dict:
        subject = str(item.get("subject", f"case{engine.state.iteration}"))
        gts, gt_affine = [], None
        for key in ("label1", "label2"):
            img = nib.load(str(item[key]))
            gts.append(np.asarray(img.dataobj, dtype=np.float32))
            gt_affine = np.asarray(img.affine, np.float64) if gt_affine is None else gt_affine
        if gts[0].shape != gts[1].shape:
            raise InputError(
                f"{subject}: the two ground truths must share one grid, got {gts[0].shape} and {gts[1].shape}."
            )
        mask = np.asarray(nib.load(str(item["mask"])).dataobj) > 0
        pair = ContrastPair(item["contrast1"], item["contrast2"], mask_threshold=self.mask_threshold)
        self.logger.info("%s: %s", subject, pair.describe())
        shape = gts[0].shape
        for method in self.methods:
            kind, opts = METHODS[method]
            t0 = time.perf_counter()
            if kind == "spline":
                preds = []
                for c in range(2):
                    raw = np.asarray(nib.load(pair.paths[c]).dataobj, dtype=np.float32)
                    preds.append(resample_to_grid(raw, pair.affines[c], shape, gt_affine, order=opts["order"]))
                info: dict[str, Any] = {"fit_seconds": 0.0, "epochs": 0.0}
            else:
                preds, info = self._inr(method, pair, shape, gt_affine)
            rec: dict[str, Any] = {"subject": subject, "method": method}
            rec.update(evaluate_contrast_pair(preds[0], preds[1], gts[0], gts[1], mask, names=self.names))
            rec["fit_seconds"] = float(info["fit_seconds"])
            rec["epochs"] = float(info["epochs"])
            rec["seconds"] = float(time.perf_counter() - t0)
            if "stopped_early" in info:
                rec["stopped_early"] = bool(info["stopped_early"])
            if "mi_history" in info:
                self.histories.setdefault(subject, {})[method] = [float(v) for v in info["mi_history"]]
            self.records.append(rec)
            self.logger.info(
                "%s %-20s "
                + " ".join(f"{n}: PSNR %.2f (mask %.2f) SSIM %.4f" for n in self.names)
                + " eps_MI %.4f (%.0f s)",
                subject, method,
                *[v for n in self.names for v in (rec[f"psnr_{n}"], rec[f"psnr_mask_{n}"], rec[f"ssim_{n}"])],
                rec["eps_mi_joint"], rec["seconds"],
            )
            if self.save_predictions:
                for n, p in zip(self.names, preds):
                    save_nifti(p, gt_affine, self.output_dir / "predictions" / f"{subject}_{method}_{n}.nii.gz")
        return {"subject": subject}

    def _write(self, engine: Engine) -> None:
        if not self.records:
            return
        self.result = write_metrics(
            self.records,
            self.output_dir,
            group_by=("method",),
            metadata={
                "task": "multi-contrast super-resolution (McGinnis, Shit et al., MICCAI 2023)",
                "degradation": self.degradation,
                "contrasts": self.names,
                "methods": self.methods,
                "fit": {k: (str(v) if k == "device" else v) for k, v in self.fit_kwargs.items()},
                "early_stopping": self.early_stopping,
                "network": {k: v for k, v in self.template.config.items()},
                "mi_history": self.histories,
                "mi": "32-bin joint histogram, natural log, inside the ground-truth mask, on GT-normalised images",
            },
        )

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every subject; returns the per-subject records (also written to ``output_dir``)."""
        self.records, self.histories = [], {}
        engine = Engine(self._process)
        engine.add_event_handler(Events.COMPLETED, self._write)
        engine.run(self.items, max_epochs=1)
        return self.records
