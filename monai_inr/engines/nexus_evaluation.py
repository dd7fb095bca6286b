"""Evaluation of Nexus-INR against its baselines, its ablation and the downstream segmentation.

Zhang et al., "Nexus-INR: Diverse Knowledge-guided Arbitrary-Resolution Medical Image Super-Resolution", arXiv
2508.03073, 2025, section 4: Table 1 (PSNR/SSIM of T1w and T2w against trilinear, ArSSR and other methods), Table 2
(ablation: baseline -> + multi-modal fusion -> + cross-modal attention -> + segmentation-enhanced learning) and
Table 5 (a 3D U-Net trained on ground truth, applied to every method's output, the LR input and the HR ground truth;
Dice and HD95).

Every method is a callable ``(item) -> (t1w_hr, t2w_hr)`` that returns both modalities on the ground-truth grid in
the inputs' intensity units, from the datalist item's ``t1w_lr`` and ``t2w_lr`` (thick slices along z and y). The
built-in methods:

* :class:`InterpolationMethod`: ``"LR input"`` (nearest neighbour, order 0: the LR voxels as they are), trilinear
  (order 1) and cubic B-spline (order 3) from each LR scan onto the ground-truth grid through world coordinates
  (:func:`~monai_inr.transforms.functional.resample_to_grid`);
* :class:`ArSSRMethod`: the ``arssr`` bundle's network (Wu et al., JBHI 2023), one contrast at a time, through
  :class:`~monai_inr.inferers.ImplicitInferer` with the per-axis scale that maps each LR grid onto the ground-truth
  grid (``output_shape``); :func:`train_arssr_baseline` trains it with the bundle's ``train.json`` on the datalist's
  training HR volumes when no checkpoint is given;
* :class:`MultiContrastINRMethod`: the subject-specific multi-contrast INR (McGinnis, Shit et al., MICCAI 2023),
  fitted per subject by :func:`~monai_inr.engines.fitting.fit_pair` with the ``multi_contrast_inr`` bundle's settings;
* :class:`NexusINRMethod`: a trained Nexus-INR checkpoint through ``monai_inr.inferers.nexus.predict_subject``; one
  per ablation row (:func:`nexus_inr_methods`).

:class:`NexusEvaluation` runs them over the held-out subjects with an ignite ``Engine``, scores each modality with the
project protocol (:mod:`monai_inr.metrics.protocol`: the ground truth's min/max maps everything to [0, 1], predictions
clipped, 3D PSNR and SSIM over the whole field of view and inside the brain mask), segments each output with the
downstream U-Net (:mod:`monai_inr.engines.segmentation`, trained once on the training split's ground truth and
cached), and writes ``metrics.json`` (records and summaries), ``comparison.csv``, ``ablation.csv``,
``segmentation.csv`` (each with its ``.json``) and ``results.md`` with the three tables.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr import coords
from monai_inr.engines.fitting import fit_pair
from monai_inr.data.coordinates import ContrastPair
from monai_inr.inferers.grid import predict_on_grid
from monai_inr.transforms.functional import resample_to_grid
from monai_inr.io import load_volume, read_volume_header, save_nifti
from monai_inr.errors import InputError
from monai_inr.metrics import evaluate_pair, normalize_to_reference, summarize, write_metrics
from monai_inr.networks.utils import unwrap_network

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

Method = Callable[[Mapping[str, Any]], "tuple[np.ndarray, np.ndarray]"]

#: the two modalities, their HR ground-truth key and their LR input key in a datalist item
MODALITIES: tuple[tuple[str, str, str], ...] = (("t1w", "t1w", "t1w_lr"), ("t2w", "t2w", "t2w_lr"))
#: row name of the segmentation of the ground truth itself
HR_ROW = "HR ground truth"

logger = logging.getLogger(__name__)


def _item_name(item: Mapping[str, Any]) -> str:
    return str(item.get("subject", item.get("t1w", "subject")))


def target_grid(item: Mapping[str, Any]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the ground-truth grid of a datalist item (read from the header of ``item["t1w"]``).

    Raises:
        InputError: missing or unreadable file, not 3D.
    """
    path = item.get("t1w")
    if not path:
        raise InputError(f"datalist item {_item_name(item)} has no 't1w' ground truth to define the output grid.")
    return read_volume_header(path)


def _lr_inputs(item: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _, _, key in MODALITIES:
        if not item.get(key):
            raise InputError(f"datalist item {_item_name(item)} has no {key!r} low-resolution input.")
        out.append(load_volume(item[key], name=key, require_geometry=True))
    return out


def _load_network_weights(network: torch.nn.Module, checkpoint: str | os.PathLike | None) -> torch.nn.Module:
    from monai_inr.engines.checks import load_checkpoint

    if checkpoint is not None and str(checkpoint).strip():
        load_checkpoint(network, checkpoint)
    return network


# ------------------------------------------------------------------------------------------------------ methods


class InterpolationMethod:
    """Each LR scan interpolated onto the ground-truth grid through world coordinates.

    Args:
        order: spline order: 0 nearest neighbour (the paper's "Original LR" row of Table 5), 1 trilinear (Table 1's
            baseline), 3 cubic B-spline.
    """

    def __init__(self, order: int = 1) -> None:
        if int(order) not in (0, 1, 2, 3, 4, 5):
            raise ValueError(f"order must be a spline order 0-5, got {order}.")
        self.order = int(order)

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        shape, affine = target_grid(item)
        outs = [resample_to_grid(arr, aff, shape, affine, order=self.order) for arr, aff in _lr_inputs(item)]
        return outs[0], outs[1]


class ArSSRMethod:
    """The single-image ArSSR network (Wu et al., JBHI 2023) applied to each LR modality separately.

    Each LR scan is min-max normalised (as in the ``arssr`` bundle), encoded once and decoded on the grid that covers
    its field of view with the ground truth's shape (:class:`~monai_inr.inferers.ImplicitInferer` with
    ``output_shape``, i.e. the per-axis scale ``(1, 1, 2)`` for the T1w and ``(1, ~4, 1)`` for the T2w of the Nexus
    data), then mapped back to the scan's intensity range. When that grid is not the ground-truth grid (an LR field of
    view that differs from the ground truth's), the output is resampled trilinearly onto it through world coordinates.

    Args:
        network: an :class:`~monai_inr.networks.nets.ArSSR` (e.g. from :func:`network_from_bundle`).
        checkpoint: its state dict (``None``: the network's current weights).
        chunk_size, voxel_budget, amp_bf16, memory_budget_gb: :class:`~monai_inr.inferers.ImplicitInferer` settings.
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
    ) -> None:
        from monai_inr.inferers import ImplicitInferer

        self.device = torch.device(device)
        self.network = _load_network_weights(network, checkpoint).to(self.device).eval()
        self.inferer = ImplicitInferer(
            chunk_size=chunk_size, voxel_budget=voxel_budget, amp_bf16=amp_bf16, memory_budget_gb=memory_budget_gb
        )

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from monai.data import MetaTensor

        shape, affine = target_grid(item)
        outs = []
        for arr, aff in _lr_inputs(item):
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
        return outs[0], outs[1]


class MultiContrastINRMethod:
    """The subject-specific multi-contrast INR (McGinnis, Shit et al., MICCAI 2023) fitted to each test subject.

    Both LR scans are fitted jointly (:class:`~monai_inr.data.coordinates.ContrastPair`, :func:`fit_pair`: a MONAI
    ``SupervisedTrainer``, optional MI early stopping) by a fresh copy of ``network`` (seeded), which is then queried
    on the ground-truth grid (:func:`~monai_inr.inferers.grid.predict_on_grid`) and mapped back to each scan's
    intensity range.

    Args:
        network: a :class:`~monai_inr.networks.nets.MultiContrastINR` whose hyper-parameters every fit uses.
        fit_kwargs: :func:`fit_pair` arguments (``epochs``, ``batch_size``, ``learning_rate``, ``betas``, ``eps``,
            ``loss_weights``, ``early_stopping``, ``mi_points``, ...).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        fit_kwargs: Mapping[str, Any] | None = None,
        mask_threshold: float = 0.05,
        device: str | torch.device = "cpu",
        seed: int = 0,
        chunk_size: int = 65536,
    ) -> None:
        self.template = unwrap_network(network)
        self.fit_kwargs = dict(fit_kwargs or {})
        self.mask_threshold = float(mask_threshold)
        self.device = device
        self.seed = int(seed)
        self.chunk_size = int(chunk_size)
        self.last_fit: Any = None

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        shape, affine = target_grid(item)
        for _, _, key in MODALITIES:
            if not item.get(key):
                raise InputError(f"datalist item {_item_name(item)} has no {key!r} low-resolution input.")
        pair = ContrastPair(item["t1w_lr"], item["t2w_lr"], mask_threshold=self.mask_threshold)
        torch.manual_seed(self.seed)
        net = self.template.variant() if hasattr(self.template, "variant") else copy.deepcopy(self.template)
        self.last_fit = fit_pair(net, pair, device=self.device, seed=self.seed, **self.fit_kwargs)
        pred = predict_on_grid(net, pair.frame, shape, affine, self.chunk_size).numpy()
        outs = []
        for c in range(2):
            lo, hi = pair.intensity_range[c]
            outs.append((pred[c] * (hi - lo) + lo).astype(np.float32))
        return outs[0], outs[1]


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
    ) -> None:
        self.device = torch.device(device)
        self.network = _load_network_weights(network, checkpoint).to(self.device).eval()
        self.predict_kwargs = dict(predict_kwargs or {})

    def __call__(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from monai_inr.inferers.nexus import predict_subject

        shape, affine = target_grid(item)
        for _, _, key in MODALITIES:
            if not item.get(key):
                raise InputError(f"datalist item {_item_name(item)} has no {key!r} low-resolution input.")
        t1, t2 = predict_subject(
            self.network, item["t1w_lr"], item["t2w_lr"], shape, affine, device=self.device, **self.predict_kwargs
        )
        return np.asarray(t1, dtype=np.float32), np.asarray(t2, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------ factories


def _config_files(files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    out = []
    for f in files:
        if not Path(str(f)).is_file():
            raise InputError(f"{f}: bundle config file not found.")
        out.append(str(f))
    return out


def network_from_bundle(
    config_files: str | os.PathLike | Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    key: str = "network_def",
) -> Any:
    """The parsed ``key`` (a network by default) of a bundle's config files with ``overrides`` (``a::b`` keys)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(_config_files(config_files))
    for k, v in (overrides or {}).items():
        parser[k] = v
    return parser.get_parsed_content(key, instantiate=True)


def _settings_match(path: Path, settings: Mapping[str, Any]) -> bool:
    side = path.with_name(path.name + ".json")
    if not (path.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text()) == json.loads(json.dumps(settings, default=str))
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
    doc = json.loads(p.read_text())
    train = [it for it in doc.get("training", [])]
    if not train:
        raise InputError(f"{p}: no 'training' subjects to train the ArSSR baseline on.")
    val = doc.get("validation") or train[:1]
    train_files = [{"image": str(it[k])} for it in train for k in ("t1w", "t2w")]
    val_files = [{"image": str(it[k])} for it in val for k in ("t1w", "t2w")]
    work = Path(work_dir).resolve()
    ckpt = work / "models" / "model.pt"
    files = _config_files(config_files)
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
    side = ckpt.with_name(ckpt.name + ".json")
    side.write_text(json.dumps(settings, indent=2, default=str) + "\n")
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
    """:class:`MultiContrastINRMethod` with the network and fit settings of the ``multi_contrast_inr`` bundle
    (``config_files``, e.g. its ``train.json`` + ``quick.json``, with ``overrides``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(_config_files(config_files))
    for k, v in (overrides or {}).items():
        parser[k] = v
    keys = {
        "epochs": "epochs",
        "batch_size": "batch_size",
        "learning_rate": "learning_rate",
        "betas": "adam_betas",
        "eps": "adam_eps",
        "loss_weights": "loss_weights",
        "early_stopping": "early_stopping",
        "mi_points": "mi_points",
        "mi_min_delta": "mi_min_delta",
        "mi_window": "mi_window",
        "mi_min_epochs": "mi_min_epochs",
    }
    fit = {arg: parser.get_parsed_content(key) for arg, key in keys.items() if key in parser}
    network = parser.get_parsed_content("network_def", instantiate=True)
    mask_threshold = parser.get_parsed_content("mask_threshold") if "mask_threshold" in parser else 0.05
    return MultiContrastINRMethod(network, fit, mask_threshold=mask_threshold, device=device, seed=seed, **kwargs)


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
    """Ordered ``{row name: method}``: the interpolation rows named in ``names`` (``"LR input"``, ``"Nearest"``,
    ``"Trilinear"``, ``"Cubic"``), then ``extra`` and ``more`` (``None`` values are left out)."""
    orders = {"lr input": 0, "nearest": 0, "trilinear": 1, "cubic": 3}
    out: dict[str, Method] = {}
    for n in names:
        if n.lower() not in orders:
            raise InputError(
                f"unknown interpolation row {n!r}: choose from 'LR input', 'Nearest', 'Trilinear', 'Cubic'."
            )
        out[n] = InterpolationMethod(orders[n.lower()])
    for d in (extra or {}, more):
        out.update({k: v for k, v in d.items() if v is not None})
    return out


# ------------------------------------------------------------------------------------------------------ evaluation

_IMAGE_METRICS = ("psnr", "psnr_mask", "ssim", "ssim_mask")


def _image_keys() -> list[str]:
    keys = [f"{m}_{n}" for m in _IMAGE_METRICS for n, _, _ in MODALITIES]
    return keys + [f"{m}_avg" for m in _IMAGE_METRICS]


def _fmt(row: Mapping[str, Any], key: str, decimals: int) -> str:
    n, mean, sd = row.get(f"{key}_n", 0), row.get(f"{key}_mean"), row.get(f"{key}_sd")
    if not n or mean is None or not np.isfinite(mean):
        return "n/a"
    s = f"{mean:.{decimals}f}"
    if n >= 2 and sd is not None and np.isfinite(sd):
        s += f" ± {sd:.{decimals}f}"
    if n != row.get("n"):
        s += f" (n={n})"
    return s


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
        segmentation_network: U-Net arguments (:func:`~monai_inr.engines.segmentation.build_segmentation_network`).
        segmentation_training: :func:`~monai_inr.engines.segmentation.train_segmentation` arguments.
        segmentation_roi: sliding-window size of the segmentation inference.
        empty_classes: ``"nan"`` or ``"brats"`` (:func:`~monai_inr.engines.segmentation.segmentation_metrics`).
        split: datalist split to evaluate.
        num_subjects: evaluate only the first subjects (``None``: all).
        save_predictions: also write every output (and its segmentation) as NIfTI under ``output_dir/predictions``.
        metadata: extra information stored in ``metrics.json`` (degradation, settings, seeds).
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
    ) -> None:
        self.datalist_path: Path | None = None
        train_items: list[dict] = []
        if isinstance(datalist, (str, os.PathLike)):
            p = Path(datalist)
            if not p.is_file():
                raise InputError(f"{p}: datalist not found.")
            try:
                doc = json.loads(p.read_text())
            except ValueError as e:
                raise InputError(f"{p}: not a readable JSON datalist ({e}).") from e
            if split not in doc:
                raise InputError(f"{p}: the datalist has no {split!r} split.")
            self.items = list(doc[split])
            train_items = list(doc.get("training", []))
            self.datalist_path = p
            self.data_metadata = doc.get("metadata", {})
        else:
            self.items = [dict(it) for it in datalist]
            self.data_metadata = {}
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
        self.seg_info: dict[str, Any] = {}
        self.seg_net: torch.nn.Module | None = None
        self.result: dict[str, Any] = {}

    # ------------------------------------------------------------------ engine events
    def _prepare(self, engine: Engine) -> None:
        self.records = []
        if not self.segmentation:
            return
        from monai_inr.engines.segmentation import train_or_load_segmentation

        kwargs = dict(self.seg_training)
        kwargs.setdefault("roi_size", self.seg_roi)
        self.seg_net, self.seg_info = train_or_load_segmentation(
            self.seg_items, self.seg_cache, network_kwargs=self.seg_network_kwargs, device=self.device, **kwargs
        )

    def _load_truth(self, item: Mapping[str, Any]) -> dict[str, Any]:
        from monai_inr.engines.segmentation import load_segmentation_item
        from monai_inr.io import load_volume, read_nifti

        name = _item_name(item)
        if self.segmentation:
            d = load_segmentation_item(item)
            gts = [load_volume(item[k])[0] for _, k, _ in MODALITIES]
            return {"gts": gts, "affine": d["affine"], "mask": d["mask"], "label": d["label"][0], "subject": name}
        gts, affine = [], None
        for _, k, _ in MODALITIES:
            arr, aff = load_volume(item[k])
            if affine is not None and (arr.shape != gts[0].shape or not np.allclose(aff, affine, atol=1e-3)):
                raise InputError(f"{item[k]}: the ground truths of {name} do not share one grid.")
            gts.append(arr)
            affine = aff if affine is None else affine
        m, _ = read_nifti(item["mask"])
        m = np.asarray(m)
        while m.ndim > 3 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.shape != gts[0].shape:
            raise InputError(
                f"{item['mask']}: the brain mask of {name} has shape {m.shape}, the images {gts[0].shape}."
            )
        return {"gts": gts, "affine": affine, "mask": m > 0, "label": None, "subject": name}

    def _segment_and_score(self, t1: np.ndarray, t2: np.ndarray, truth: Mapping[str, Any]) -> tuple[dict, np.ndarray]:
        from monai_inr.engines.segmentation import SEGMENTATION_CLASSES, segment, segmentation_metrics

        m = truth["mask"]
        if not (np.isfinite(t1[m]).all() and np.isfinite(t2[m]).all()):  # a diverged method: scored NaN, not fatal
            nan = {f"{k}_{n}": float("nan") for n in SEGMENTATION_CLASSES.values() for k in ("dice", "hd95", "miss")}
            return dict(nan, dice=float("nan"), hd95=float("nan")), np.zeros(m.shape, np.uint8)
        seg = segment(
            self.seg_net, t1, t2, m, roi_size=self.seg_roi, name=truth["subject"], allow_constant=True
        )
        return segmentation_metrics(seg, truth["label"], truth["affine"], empty=self.empty_classes), seg

    def _process(self, engine: Engine, item: Mapping[str, Any]) -> dict[str, Any]:
        truth = self._load_truth(item)
        subject, gts, affine = truth["subject"], truth["gts"], truth["affine"]
        for method, fn in self.methods.items():
            t0 = time.perf_counter()
            preds = [np.asarray(p, dtype=np.float32) for p in fn(item)]
            seconds = time.perf_counter() - t0
            if len(preds) != 2 or any(p.shape != gts[0].shape for p in preds):
                raise ValueError(
                    f"method {method!r} returned shapes {[p.shape for p in preds]} for {subject}; it must return "
                    f"(t1w, t2w) on the ground-truth grid {gts[0].shape}."
                )
            rec: dict[str, Any] = {"subject": subject, "method": method}
            for (name, _, _), pred, gt in zip(MODALITIES, preds, gts):
                pred_n, gt_n = normalize_to_reference(pred, reference=gt)
                for k, v in evaluate_pair(pred_n, gt_n, mask=truth["mask"]).items():
                    rec[f"{k}_{name}"] = v
            for m in _IMAGE_METRICS:
                rec[f"{m}_avg"] = float(np.mean([rec[f"{m}_{n}"] for n, _, _ in MODALITIES]))
            rec["seconds"] = float(seconds)
            seg = None
            if self.segmentation:
                seg_metrics, seg = self._segment_and_score(preds[0], preds[1], truth)
                rec.update(seg_metrics)
            self.records.append(rec)
            logger.info(
                "%s %-22s T1w PSNR %.2f SSIM %.4f | T2w PSNR %.2f SSIM %.4f%s (%.1f s)",
                subject, method, rec["psnr_t1w"], rec["ssim_t1w"], rec["psnr_t2w"], rec["ssim_t2w"],
                f" | Dice {rec['dice']:.4f} HD95 {rec['hd95']:.2f} mm" if self.segmentation else "", seconds,
            )
            if self.save_predictions:
                pdir = self.output_dir / "predictions"
                safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in method)
                for (name, _, _), p in zip(MODALITIES, preds):
                    save_nifti(p, affine, pdir / f"{subject}_{safe}_{name}.nii.gz")
                if seg is not None:
                    save_nifti(seg, affine, pdir / f"{subject}_{safe}_seg.nii.gz", dtype=np.uint8)
        if self.segmentation:
            seg_metrics, seg = self._segment_and_score(gts[0], gts[1], truth)
            self.records.append({"subject": subject, "method": HR_ROW, **seg_metrics})
            logger.info("%s %-22s Dice %.4f HD95 %.2f mm", subject, HR_ROW, seg_metrics["dice"], seg_metrics["hd95"])
            if self.save_predictions:
                save_nifti(seg, affine, self.output_dir / "predictions" / f"{subject}_HR_seg.nii.gz", dtype=np.uint8)
        return {"subject": subject}

    # ------------------------------------------------------------------ writing
    def _seg_keys(self) -> list[str]:
        from monai_inr.engines.segmentation import SEGMENTATION_CLASSES

        keys = []
        for name in SEGMENTATION_CLASSES.values():
            keys += [f"dice_{name}", f"hd95_{name}", f"miss_{name}"]
        return keys + ["dice", "hd95"]

    def _tables(self) -> dict[str, dict[str, Any]]:
        tables: dict[str, dict[str, Any]] = {}
        specs = [("comparison", self.comparison_rows, _image_keys()), ("ablation", self.ablation_rows, _image_keys())]
        if self.segmentation:
            seg_rows = [m for m in self.methods] + [HR_ROW]
            specs.append(("segmentation", seg_rows, self._seg_keys()))
        for name, rows, keys in specs:
            present = [r for r in rows if r in self.methods or (name == "segmentation" and r == HR_ROW)]
            tables[name] = {
                "rows": present,
                "not_evaluated": [r for r in rows if r not in present],
                "metric_keys": keys,
                "records": [r for r in self.records if r["method"] in present],
            }
        return tables

    def _markdown(self, tables: Mapping[str, Mapping[str, Any]], summaries: Mapping[str, list[dict]]) -> str:
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
        if deg:
            lines += [f"Degradation: {deg}.", ""]
        img_cols = [
            ("PSNR T1w", "psnr_t1w", 2), ("PSNR T2w", "psnr_t2w", 2), ("PSNR Avg", "psnr_avg", 2),
            ("SSIM T1w", "ssim_t1w", 4), ("SSIM T2w", "ssim_t2w", 4), ("SSIM Avg", "ssim_avg", 4),
            ("PSNR-mask T1w", "psnr_mask_t1w", 2), ("PSNR-mask T2w", "psnr_mask_t2w", 2),
            ("SSIM-mask T1w", "ssim_mask_t1w", 4), ("SSIM-mask T2w", "ssim_mask_t2w", 4),
        ]
        from monai_inr.engines.segmentation import SEGMENTATION_CLASSES

        seg_cols = []
        for name in SEGMENTATION_CLASSES.values():
            label = name.replace("_", " ")
            seg_cols += [(f"Dice {label}", f"dice_{name}", 4), (f"HD95 {label} (mm)", f"hd95_{name}", 2)]
        seg_cols += [("Dice mean", "dice", 4), ("HD95 mean (mm)", "hd95", 2)]
        titles = {
            "comparison": "## Comparison (paper Table 1)",
            "ablation": "## Ablation (paper Table 2)",
            "segmentation": "## Downstream segmentation (paper Table 5)",
        }
        for name, title in titles.items():
            if name not in tables:
                continue
            t = tables[name]
            cols = seg_cols if name == "segmentation" else img_cols
            lines += [title, ""]
            if name == "segmentation":
                lines += [
                    f"3D U-Net trained on the ground-truth HR training subjects ({len(self.seg_items)}), applied to "
                    "each method's T1w/T2w (z-scored inside the brain mask). Dice (fraction) and HD95 (mm, voxel "
                    "spacing applied) per region; classes absent from the ground truth are left out "
                    "(`n` shows the count), a missed region scores Dice 0 and no HD95"
                    + (" (BraTS convention: empty cases scored)" if self.empty_classes == "brats" else "")
                    + ".",
                    "",
                ]
            if not t["rows"]:
                lines += ["No rows evaluated" + (
                    f" (not evaluated: {', '.join(t['not_evaluated'])})" if t["not_evaluated"] else ""
                ) + ".", ""]
                continue
            lines.append("| Method | n | " + " | ".join(c[0] for c in cols) + " |")
            lines.append("|---|---|" + "---|" * len(cols))
            by = {r["method"]: r for r in summaries[name]}
            for row in t["rows"]:
                s = by.get(row)
                if s is None:
                    continue
                lines.append(f"| {row} | {s['n']} | " + " | ".join(_fmt(s, k, d) for _, k, d in cols) + " |")
            if t["not_evaluated"]:
                lines += ["", f"Not evaluated (no method configured): {', '.join(t['not_evaluated'])}."]
            lines.append("")
        return "\n".join(lines)

    def _write(self, engine: Engine | None = None) -> None:
        if not self.records:
            return
        tables = self._tables()
        summaries: dict[str, list[dict]] = {}
        for name, t in tables.items():
            summaries[name] = summarize(t["records"], group_by=("method",), metric_keys=t["metric_keys"]) if t[
                "records"
            ] else []
        meta = {
            "task": "Nexus-INR evaluation (Zhang et al., arXiv 2508.03073, 2025; Tables 1, 2 and 5)",
            "datalist": str(self.datalist_path) if self.datalist_path else None,
            "degradation": self.data_metadata.get("degradation", ""),
            "methods": list(self.methods),
            "tables": {
                n: {"rows": t["rows"], "not_evaluated": t["not_evaluated"], "summary": summaries[n]}
                for n, t in tables.items()
            },
            "segmentation": {
                k: v for k, v in self.seg_info.items() if k not in ("files",)
            } if self.segmentation else None,
            "empty_classes": self.empty_classes,
            **self.metadata,
        }
        out = {}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for name, t in tables.items():
            if t["records"]:
                out[name] = write_metrics(
                    t["records"], self.output_dir, prefix=name, group_by=("method",), metric_keys=t["metric_keys"]
                )["csv"][None]
            else:  # an empty table (e.g. no ablation checkpoints yet) still gets its CSV, header only
                path = self.output_dir / f"{name}.csv"
                tmp = path.with_name(f".{name}.csv.partial")
                tmp.write_text(",".join(["method", "n", *t["metric_keys"]]) + "\n")
                os.replace(tmp, path)
                out[name] = path
        keys = _image_keys() + ["seconds"] + (self._seg_keys() if self.segmentation else [])
        res = write_metrics(self.records, self.output_dir, prefix="metrics", group_by=("method",), metric_keys=keys,
                            metadata=meta)
        md = self.output_dir / "results.md"
        tmp = md.with_name(".results.md.partial")
        tmp.write_text(self._markdown(tables, summaries))
        os.replace(tmp, md)
        self.result = {"json": res["json"], "csv": out, "markdown": md, "summaries": summaries}

    def run(self) -> list[dict[str, Any]]:
        """Evaluate every subject with an ignite ``Engine``; returns the records (also written to ``output_dir``)."""
        engine = Engine(self._process)
        engine.add_event_handler(Events.STARTED, self._prepare)
        engine.add_event_handler(Events.COMPLETED, self._write)
        engine.run(self.items, max_epochs=1)
        return self.records


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
