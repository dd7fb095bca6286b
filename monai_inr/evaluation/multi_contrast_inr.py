"""Evaluation of subject-specific multi-contrast super-resolution (McGinnis, Shit et al., MICCAI 2023, section 3).

For every subject of a datalist written by :func:`monai_inr.data.multi_contrast.build_multi_contrast_dataset` (two
anisotropic low-resolution contrasts plus their isotropic ground truths and a brain mask), every method produces both
contrasts on the ground-truth grid, and the project protocol scores them:

* ``cubic`` (and ``trilinear``): spline interpolation of each LR contrast onto the ground-truth grid through world
  coordinates (:class:`~monai_inr.evaluation.methods.InterpolationMethod`);
* ``single_contrast_inr``: two independent INRs with one output each, each fitted to its own contrast only (paper
  baseline 2), run for all epochs (the paper uses MI early stopping for the multi-contrast models only);
* ``vanilla_inr``: one INR with two linear outputs (paper ablation), MI early stopping;
* ``split_head_inr``: the paper's model, MI early stopping;
* ``separate_inr`` (optional): the single-contrast INRs as one module fitted jointly.

Every fit is the bundle's own ``train.json`` (``config_files`` + ``overrides``) run through MONAI's
``ConfigWorkflow`` (:func:`~monai_inr.evaluation.bundle.fit_subject`) with the method's overrides of :data:`METHODS`;
the subjects are iterated by the :class:`~monai_inr.evaluation.runner.EvaluationRunner`. Metrics per contrast (PSNR,
SSIM over the whole volume and inside the mask) and the MI errors (:mod:`monai_inr.metrics.multi_contrast`) go to
``metrics.json`` and ``metrics.csv`` (one row per method, mean +- SD over subjects).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import save_nifti
from monai_inr.metrics import write_metrics
from monai_inr.metrics.multi_contrast import evaluate_contrast_pair

from .bundle import ConfigFiles, config_file_list, network_from_bundle
from .methods import BASELINE_ORDERS, InterpolationMethod, fit_and_restore, target_grid
from .runner import EvaluationRunner, Reference, load_reference, read_datalist

__all__ = ["MultiContrastEvaluation", "METHODS"]

#: INR method name -> overrides of the bundle's train.json (``contrasts``: one single-contrast fit per contrast);
#: the interpolation baselines are the names of :data:`~monai_inr.evaluation.methods.BASELINE_ORDERS`.
METHODS: dict[str, dict[str, Any]] = {
    "single_contrast_inr": {"architecture": "vanilla", "contrasts": [[0], [1]]},
    "separate_inr": {"architecture": "separate"},
    "vanilla_inr": {"architecture": "vanilla"},
    "split_head_inr": {"architecture": "split_head"},
}

_INPUTS = ("contrast1", "contrast2")


class _FittedINR:
    """One INR method: the bundle fit(s) of a subject, queried on the ground-truth grid."""

    def __init__(self, owner: "MultiContrastEvaluation", method: str) -> None:
        self.owner, self.method = owner, method
        self.info: dict[str, Any] = {}

    def __call__(self, item: Mapping[str, Any]) -> list[np.ndarray]:
        shape, affine = target_grid(item, "label1")
        outs, info = fit_and_restore(self.owner.config_files, item["contrast1"], item["contrast2"],
                                     {**self.owner.overrides, **METHODS[self.method]}, shape, affine,
                                     self.owner.chunk_size)
        info.pop("last_fit")
        self.info = info
        return outs


class MultiContrastEvaluation:
    """Fit and score every method on every subject; write ``metrics.json`` and ``metrics.csv`` to ``output_dir``.

    Args:
        datalist: path of a datalist (``"test"`` split) or its list of items (``contrast1``, ``contrast2``,
            ``label1``, ``label2``, ``mask``, ``subject``).
        config_files: the ``multi_contrast_inr`` bundle configuration every INR fit runs (its ``train.json``, plus a
            profile such as ``quick.json``).
        overrides: overrides of that configuration for every fit (e.g. ``{"epochs": 20}``); ``seed`` and ``device``
            are set from the arguments below.
        network: the network of the configuration the evaluation itself was started with (``@network_def``): when
            given, the fits must build the same network (same parameter shapes), so that network settings given to
            the evaluation but not to ``overrides`` cannot be silently ignored.
        methods: names from :data:`METHODS` or interpolation baselines (``cubic``, ``trilinear``).
        contrast_names: names of the two contrasts in the metric keys (``psnr_t1w`` ...).
        save_predictions: also write every prediction as NIfTI (``<subject>_<method>_<contrast>.nii.gz``, on the
            ground-truth grid, original intensity units) under ``output_dir/predictions``.
        seed: seed of every fit (network initialisation and batch order).
        figures: write ``figures/<subject>_<contrast>.png`` (middle slice of every method next to the ground truth,
            with error maps; :class:`~monai_inr.evaluation.runner.EvaluationRunner`).
    """

    def __init__(
        self,
        datalist: str | os.PathLike | Sequence[dict],
        config_files: ConfigFiles,
        overrides: Mapping[str, Any] | None = None,
        network: Any = None,
        methods: Sequence[str] = ("cubic", "single_contrast_inr", "vanilla_inr", "split_head_inr"),
        output_dir: str | os.PathLike = "eval",
        contrast_names: Sequence[str] = ("t1w", "t2w"),
        device: str | Any = "cpu",
        seed: int = 0,
        save_predictions: bool = True,
        chunk_size: int = 65536,
        degradation: str = "",
        figures: bool = True,
    ) -> None:
        unknown = [m for m in methods if m not in METHODS and m.lower() not in BASELINE_ORDERS]
        if unknown:
            raise InputError(
                f"unknown evaluation method(s) {unknown}: choose from {sorted(METHODS)} or {sorted(BASELINE_ORDERS)}."
            )
        self.items, doc = read_datalist(datalist, "test")
        self.degradation = degradation or doc.get("metadata", {}).get("degradation", "")
        self.config_files = config_file_list(config_files)
        self.overrides = {**dict(overrides or {}), "seed": int(seed), "device": device}
        if network is not None:
            self._check_network(network)
        self.methods = list(methods)
        self.output_dir = Path(output_dir)
        self.names = list(contrast_names)
        self.save_predictions = bool(save_predictions)
        self.chunk_size = int(chunk_size)
        self.records: list[dict[str, Any]] = []
        self.figures = bool(figures)
        self.histories: dict[str, Any] = {}
        self._callables: dict[str, Any] = {
            m: (_FittedINR(self, m) if m in METHODS else InterpolationMethod(m, _INPUTS, "label1"))
            for m in self.methods
        }

    def _check_network(self, network: Any) -> None:
        from monai_inr.networks.utils import unwrap_network

        # an acquisition-sized hash grid ("auto") is compared at its stand-in size, as the evaluated network is built
        fixed = "$monai_inr.networks.encodings.fixed_resolution(@hashgrid_max_resolution)"
        fitted = network_from_bundle(
            self.config_files, {"hashgrid_cells": fixed, **self.overrides, "architecture": "split_head"}
        )
        evaluated = unwrap_network(network).variant(architecture="split_head")
        a, b = fitted.state_dict(), evaluated.state_dict()
        if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
            raise InputError(
                f"the fits ({', '.join(Path(f).name for f in self.config_files)} with the evaluation's fit overrides) "
                f"build another network than the evaluated configuration; pass network settings in eval_fit_overrides "
                f"(or choose the profile with eval_fit_profile)."
            )

    def _reference(self, item: Mapping[str, Any]) -> Reference:
        ref = load_reference(item, ("label1", "label2"))
        ref.subject = str(item.get("subject", ref.subject))
        return ref

    def _score(self, preds: Sequence[np.ndarray], ref: Reference, names: Sequence[str]) -> dict[str, Any]:
        return evaluate_contrast_pair(preds[0], preds[1], ref.images[0], ref.images[1], ref.mask, names=names)

    def _after_method(self, rec: dict, preds: Sequence[np.ndarray], ref: Reference) -> None:
        method = rec["method"]
        info = getattr(self._callables[method], "info", {})
        rec["fit_seconds"] = float(info.get("fit_seconds", 0.0))
        rec["epochs"] = float(info.get("epochs", 0.0))
        if "stopped_early" in info:
            rec["stopped_early"] = bool(info["stopped_early"])
        if "mi_history" in info:
            self.histories.setdefault(ref.subject, {})[method] = [float(v) for v in info["mi_history"]]
        if self.save_predictions:
            for n, p in zip(self.names, preds):
                save_nifti(p, ref.affine, self.output_dir / "predictions" / f"{ref.subject}_{method}_{n}.nii.gz")

    def _write(self) -> None:
        self.records = self._runner.records
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
                "fit": {"config_files": self.config_files, "overrides": self.overrides},
                "mi_history": self.histories,
                "mi": "32-bin joint histogram, natural log, inside the ground-truth mask, on GT-normalised images",
            },
        )

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every subject; returns the per-subject records (also written to ``output_dir``)."""
        self.histories = {}
        self._runner = EvaluationRunner(
            self.items, self._callables, self._reference, self.names, score=self._score,
            after_method=self._after_method, on_complete=self._write,
            log_keys=[f"psnr_{n}" for n in self.names] + ["eps_mi_joint"],
            figure_dir=self.output_dir / "figures" if self.figures else None,
        )
        self.records = self._runner.run()
        return self.records
