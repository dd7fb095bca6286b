"""Evaluation methods as callables: ``method(item) -> predictions on the ground-truth grid`` (inputs' units).

A method reads its low-resolution inputs from a datalist item (``inputs``: the item keys, one per contrast) and
returns one volume per input on the grid of ``item[target]`` (the ground truth), in the inputs' intensity units; the
:class:`~monai_inr.evaluation.runner.EvaluationRunner` then scores them with the protocol
(:mod:`monai_inr.metrics.protocol`). Built-in methods:

* :class:`InterpolationMethod`: spline interpolation through world coordinates with an order from the single
  :data:`BASELINE_ORDERS` table (the cubic / trilinear baselines of every bundle's ``evaluate.json``);
* :class:`ArSSRMethod`: any single-image implicit network through :class:`~monai_inr.inferers.ImplicitInferer`, one
  input at a time (ArSSR, Wu et al., JBHI 2023);
* :class:`MultiContrastINRMethod`: the subject-specific multi-contrast INR (McGinnis, Shit et al., MICCAI 2023)
  fitted to each subject by its bundle's ``train.json`` (:func:`~monai_inr.evaluation.bundle.fit_subject`);
* :class:`NexusINRMethod`: a trained Nexus-INR (Zhang et al., arXiv 2508.03073, 2025) through its volume inferer.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers.grid import predict_on_grid
from monai_inr.inferers.nexus import predict_subject
from monai_inr.io import load_volume, read_volume_header
from monai_inr.transforms.functional import resample_to_grid, resize_cell_centred

from .bundle import ConfigFiles, fit_subject

__all__ = [
    "Method",
    "BASELINE_ORDERS",
    "baseline_order",
    "interpolate",
    "target_grid",
    "InterpolationMethod",
    "ArSSRMethod",
    "MultiContrastINRMethod",
    "NexusINRMethod",
]

#: ``method(item) -> one prediction per input`` on the ground-truth grid, in the inputs' intensity units.
Method = Callable[[Mapping[str, Any]], Sequence[np.ndarray]]

#: interpolation baseline name (case-insensitive) -> spline order; the one table every evaluation uses.
BASELINE_ORDERS: dict[str, int] = {"nearest": 0, "lr input": 0, "linear": 1, "trilinear": 1, "cubic": 3}


def baseline_order(name: str) -> int:
    """Spline order of an interpolation baseline (:data:`BASELINE_ORDERS`, case-insensitive).

    Raises:
        InputError: an unknown name (one sentence listing the choices).
    """
    order = BASELINE_ORDERS.get(str(name).lower())
    if order is None:
        raise InputError(f"unknown interpolation row {name!r}: choose from {sorted(BASELINE_ORDERS)}.")
    return order


def interpolate(image: np.ndarray, shape: Sequence[int], baseline: str | int) -> np.ndarray:
    """Interpolate ``image`` onto ``shape`` over the same field of view (cell-centred) with a baseline's order."""
    order = baseline if isinstance(baseline, int) else baseline_order(baseline)
    return resize_cell_centred(image, tuple(int(n) for n in shape), order=order)


def _item_name(item: Mapping[str, Any]) -> str:
    return str(item.get("subject", item.get("t1w", "subject")))


def target_grid(item: Mapping[str, Any], key: str = "t1w") -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the ground-truth grid of a datalist item (the header of ``item[key]``).

    Raises:
        InputError: no such key, missing or unreadable file, not 3D.
    """
    path = item.get(key)
    if not path:
        raise InputError(f"datalist item {_item_name(item)} has no {key!r} ground truth to define the output grid.")
    return read_volume_header(path)


def _input_paths(item: Mapping[str, Any], inputs: Sequence[str]) -> list[str]:
    for key in inputs:
        if not item.get(key):
            raise InputError(f"datalist item {_item_name(item)} has no {key!r} low-resolution input.")
    return [str(item[k]) for k in inputs]


def _load_inputs(item: Mapping[str, Any], inputs: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [load_volume(p, name=k, require_geometry=True) for p, k in zip(_input_paths(item, inputs), inputs)]


def _load_network_weights(network: torch.nn.Module, checkpoint: str | os.PathLike | None) -> torch.nn.Module:
    from monai_inr.engines.checks import load_checkpoint

    if checkpoint is not None and str(checkpoint).strip():
        load_checkpoint(network, checkpoint)
    return network


class InterpolationMethod:
    """Each LR input interpolated onto the ground-truth grid through world coordinates.

    Args:
        order: spline order (0 nearest neighbour: the LR voxels as they are, 1 trilinear, 3 cubic B-spline) or a
            baseline name from :data:`BASELINE_ORDERS`.
        inputs: item keys of the LR inputs.
        target: item key of the ground truth that defines the output grid.
    """

    def __init__(self, order: int | str = 1, inputs: Sequence[str] = ("t1w_lr", "t2w_lr"), target: str = "t1w"):
        order = baseline_order(order) if isinstance(order, str) else int(order)
        if order not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"order must be a spline order 0-5, got {order}.")
        self.order, self.inputs, self.target = order, tuple(inputs), target

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, ...]:

        shape, affine = target_grid(item, self.target)
        return tuple(
            resample_to_grid(arr, aff, shape, affine, order=self.order) for arr, aff in _load_inputs(item, self.inputs)
        )


class ArSSRMethod:
    """A single-image implicit network (ArSSR, Wu et al., JBHI 2023) applied to each LR input separately.

    Each LR input is min-max normalised (as in the ``arssr`` bundle), encoded once and decoded on the grid that covers
    its field of view with the ground truth's shape (:class:`~monai_inr.inferers.ImplicitInferer` with
    ``output_shape``, i.e. a per-axis scale), then mapped back to the input's intensity range. When that grid is not
    the ground-truth grid (an LR field of view that differs from the ground truth's), the output is resampled
    trilinearly onto it through world coordinates.

    Args:
        network: e.g. an :class:`~monai_inr.networks.nets.ArSSR` (:func:`~monai_inr.evaluation.bundle.network_from_bundle`).
        checkpoint: its state dict (``None``: the network's current weights).
        chunk_size, voxel_budget, amp_bf16, memory_budget_gb: :class:`~monai_inr.inferers.ImplicitInferer` settings.
        inputs, target: item keys of the LR inputs and of the ground truth.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int = 65536,
        voxel_budget: int = 2**21,
        amp_bf16: bool = False,
        memory_budget_gb: float | None = None,
        inputs: Sequence[str] = ("t1w_lr", "t2w_lr"),
        target: str = "t1w",
    ) -> None:
        from monai_inr.inferers import ImplicitInferer

        self.device = torch.device(device)
        self.network = _load_network_weights(network, checkpoint).to(self.device).eval()
        self.inferer = ImplicitInferer(
            chunk_size=chunk_size, voxel_budget=voxel_budget, amp_bf16=amp_bf16, memory_budget_gb=memory_budget_gb
        )
        self.inputs, self.target = tuple(inputs), target

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        from monai.data import MetaTensor


        shape, affine = target_grid(item, self.target)
        outs = []
        for arr, aff in _load_inputs(item, self.inputs):
            lo, hi = float(arr.min()), float(arr.max())
            x = MetaTensor(
                torch.from_numpy(((arr - lo) / (hi - lo)).astype(np.float32))[None, None],
                affine=torch.as_tensor(aff, dtype=torch.float64),
            )
            with torch.inference_mode():
                pred = self.inferer(x.to(self.device), self.network, output_shape=shape)
            vol = pred[0, 0].detach().float().cpu().numpy() * (hi - lo) + lo
            out_aff = np.asarray(pred.affine.detach().cpu(), dtype=np.float64)
            tol = 1e-3 * float(coords.spacing_from_affine(affine).min())
            if not np.allclose(out_aff, affine, atol=tol):
                vol = resample_to_grid(vol, out_aff, shape, affine, order=1)
            outs.append(vol.astype(np.float32))
        return tuple(outs)


def restore_fit(fit: Any, shape: Sequence[int], affine: np.ndarray, chunk_size: int = 65536,
                contrasts: Sequence[int] | None = None) -> list[np.ndarray]:
    """A fitted multi-contrast INR queried on a grid and mapped back to each fitted contrast's intensity range."""

    pred = predict_on_grid(fit.network, fit.subject.frame, tuple(shape), affine, chunk_size).numpy()
    sel = list(range(pred.shape[0])) if contrasts is None else list(contrasts)
    outs = []
    for j, c in enumerate(sel):
        lo, hi = fit.subject.intensity_range[c]
        outs.append((pred[j] * (hi - lo) + lo).astype(np.float32))
    return outs


def fit_and_restore(config_files: ConfigFiles, contrast1: str, contrast2: str, overrides: Mapping[str, Any],
                    shape: Sequence[int], affine: np.ndarray, chunk_size: int = 65536) -> tuple[list[np.ndarray], dict]:
    """Fit one subject and query the fit(s) on a grid: ``(predictions of both contrasts, info)``.

    ``overrides["contrasts"]`` may be a list of selections (``[[0], [1]]``: one single-contrast fit per contrast, the
    paper's single-contrast INR baseline); every selection is fitted with the other overrides and the predictions are
    concatenated in selection order. ``info``: ``fit_seconds`` (sum), ``epochs`` (max), the MI history and whether
    MI early stopping fired (of the last fit that had them), ``last_fit``.
    """
    run = dict(overrides)
    selections = run.pop("contrasts", None)
    if selections is None or not any(isinstance(s, (list, tuple)) for s in selections):
        selections = [selections]
    info: dict[str, Any] = {"fit_seconds": 0.0, "epochs": 0.0}
    outs: list[np.ndarray] = []
    for sel in selections:
        fit = fit_subject(config_files, contrast1, contrast2, {**run, **({"contrasts": sel} if sel is not None else {})})
        outs += restore_fit(fit, shape, affine, chunk_size, sel)
        info["fit_seconds"] += fit.seconds
        info["epochs"] = max(info["epochs"], float(fit.epochs))
        if fit.mi_history:
            info["mi_history"], info["stopped_early"] = fit.mi_history, fit.stopped_early
        info["last_fit"] = fit
    return outs, info


class MultiContrastINRMethod:
    """The subject-specific multi-contrast INR (McGinnis, Shit et al., MICCAI 2023) fitted to each test subject.

    Both LR inputs are fitted jointly by the ``multi_contrast_inr`` bundle's own ``train.json`` (``config_files``,
    e.g. ``train.json`` + ``quick.json``, with ``overrides``; :func:`~monai_inr.evaluation.bundle.fit_subject`); the
    fitted network is then queried on the ground-truth grid and mapped back to each input's intensity range.

    Args:
        config_files, overrides: the bundle configuration that defines the fit; ``overrides["contrasts"]`` may list
            selections (``[[0], [1]]``: the single-contrast INR baseline, see :func:`fit_and_restore`).
        seed, device: set as the configuration's ``seed`` and ``device``.
        inputs, target: item keys of the two LR inputs and of the ground truth.
    """

    def __init__(
        self,
        config_files: ConfigFiles,
        overrides: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        chunk_size: int = 65536,
        inputs: Sequence[str] = ("t1w_lr", "t2w_lr"),
        target: str = "t1w",
    ) -> None:
        from .bundle import config_file_list

        self.config_files = config_file_list(config_files)
        self.overrides = {**dict(overrides or {}), "seed": int(seed), "device": device}
        self.chunk_size = int(chunk_size)
        self.inputs, self.target = tuple(inputs), target
        self.last_fit: Any = None

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
        shape, affine = target_grid(item, self.target)
        c1, c2 = _input_paths(item, self.inputs)
        outs, info = fit_and_restore(self.config_files, c1, c2, self.overrides, shape, affine, self.chunk_size)
        self.last_fit = info["last_fit"]
        return tuple(outs)


class NexusINRMethod:
    """A trained Nexus-INR (Zhang et al., arXiv 2508.03073, 2025) predicting both modalities on the ground-truth grid
    through ``monai_inr.inferers.nexus.predict_subject`` (inputs' intensity units, tiled inference).

    Args:
        network: a :class:`~monai_inr.networks.nets.NexusINR` built with the checkpoint's configuration (ablation
            switches included).
        checkpoint: its state dict.
        predict_kwargs: extra ``predict_subject`` arguments (chunk size, tiling, ...).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        predict_kwargs: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = ("t1w_lr", "t2w_lr"),
        target: str = "t1w",
    ) -> None:
        self.device = torch.device(device)
        self.network = _load_network_weights(network, checkpoint).to(self.device).eval()
        self.predict_kwargs = dict(predict_kwargs or {})
        self.inputs, self.target = tuple(inputs), target

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:

        shape, affine = target_grid(item, self.target)
        t1, t2 = predict_subject(
            self.network, *_input_paths(item, self.inputs), shape, affine, device=self.device, **self.predict_kwargs
        )
        return np.asarray(t1, dtype=np.float32), np.asarray(t2, dtype=np.float32)
