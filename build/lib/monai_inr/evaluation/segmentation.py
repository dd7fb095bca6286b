"""Downstream tumour segmentation of super-resolved volumes (Zhang et al., "Nexus-INR", arXiv 2508.03073, 2025,
Table 5).

The paper judges super-resolution by what it does to a downstream task: a 3D U-Net (and a TransUNet) segments the
tumour on each method's output, the LR input and the HR ground truth, and Dice / HD95 are reported. This module is
that pipeline for the project's synthetic BraTS-like subjects:

* :func:`build_segmentation_network`: a small MONAI :class:`~monai.networks.nets.UNet` (3D, 2 input channels T1w and
  T2w, 3 output classes: 0 background, 1 tumour core, 2 oedema);
* :func:`segmentation_input`: the network input, each contrast z-scored with the mean/SD of the voxels inside the
  brain mask (background set to 0), so that every method's output is normalised the same way as the training data;
* :func:`train_segmentation`: a MONAI ``SupervisedTrainer`` (DiceCE loss, Adam, random crops with label-balanced
  sampling by :class:`~monai.transforms.RandCropByLabelClassesd`, left-right flips) on ground-truth HR subjects;
* :func:`segment`: sliding-window inference and argmax to a label map;
* :func:`segmentation_metrics`: Dice (MONAI ``DiceMetric``) and HD95 in millimetres (MONAI
  ``HausdorffDistanceMetric(percentile=95)`` with the voxel spacing) per foreground class;
* :func:`save_segmentation_network` / :func:`load_segmentation_network` / :func:`train_or_load_segmentation`:
  a plain state dict plus a JSON sidecar with the settings, so a cached network is reused only when it matches.

Classes absent from the ground truth or the prediction (``empty="nan"``, the default):

* absent from the ground truth (a subject without a tumour, or a tumour without that region): Dice and HD95 are NaN
  and left out of the means (``summarize`` counts the finite values in ``<metric>_n``), whatever is predicted;
* present in the ground truth but not predicted (a missed region): Dice is 0 (a real failure, kept in the mean),
  HD95 is undefined and NaN (left out of the mean), and ``miss_<class>`` is 1 so the misses are counted.

``empty="brats"`` follows the BraTS challenge convention instead: both empty gives Dice 1 and HD95 0; exactly one
empty gives Dice 0 and HD95 equal to the diagonal of the field of view in mm (the largest possible distance).
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.networks.nets import UNet

from monai_inr.errors import InputError
from monai_inr.io import load_volume, read_nifti, write_atomic, write_text_atomic

__all__ = [
    "SEGMENTATION_CLASSES",
    "build_segmentation_network",
    "segmentation_input",
    "load_segmentation_item",
    "train_segmentation",
    "segment",
    "segmentation_metrics",
    "save_segmentation_network",
    "load_segmentation_network",
    "train_or_load_segmentation",
]

#: foreground label value -> name (0 is background); the labels of :mod:`monai_inr.data.nexus`
SEGMENTATION_CLASSES: dict[int, str] = {1: "tumour_core", 2: "oedema"}

logger = logging.getLogger(__name__)

_DEFAULT_NET = {"channels": (8, 16, 32, 64), "strides": (2, 2, 2), "num_res_units": 1}


def build_segmentation_network(
    in_channels: int = 2,
    num_classes: int = 3,
    channels: Sequence[int] = (8, 16, 32, 64),
    strides: Sequence[int] = (2, 2, 2),
    num_res_units: int = 1,
    dropout: float = 0.0,
) -> UNet:
    """The downstream 3D U-Net of Table 5 (Zhang et al., "Nexus-INR", 2025), small enough for CPU.

    Args:
        in_channels: input contrasts (T1w and T2w).
        num_classes: output classes including background (0 background, 1 tumour core, 2 oedema).
        channels, strides, num_res_units, dropout: :class:`monai.networks.nets.UNet` arguments; inputs (and
            sliding-window ROIs) must be divisible by ``prod(strides)``.
    """
    if len(channels) != len(strides) + 1:
        raise ValueError(f"UNet needs len(channels) == len(strides) + 1, got {list(channels)} and {list(strides)}.")
    return UNet(
        spatial_dims=3,
        in_channels=int(in_channels),
        out_channels=int(num_classes),
        channels=tuple(int(c) for c in channels),
        strides=tuple(int(s) for s in strides),
        num_res_units=int(num_res_units),
        dropout=float(dropout),
    )


def segmentation_input(
    t1w: Any, t2w: Any, mask: Any, name: str = "subject", allow_constant: bool = False
) -> np.ndarray:
    """``(2, *spatial)`` float32: each contrast z-scored with the mean and SD of its voxels inside ``mask``;
    voxels outside the mask are 0.

    ``allow_constant``: a contrast that is constant inside the mask (e.g. a collapsed super-resolution output) becomes
    all zeros instead of raising, so a failed method is scored rather than stopping an evaluation.

    Raises:
        InputError: shapes differ, the mask is empty, a contrast is not finite or (unless ``allow_constant``) constant
            inside the mask.
    """
    vols = [np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64) for v in (t1w, t2w)]
    m = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask) > 0
    if vols[0].shape != vols[1].shape or vols[0].shape != m.shape:
        raise InputError(
            f"{name}: T1w {vols[0].shape}, T2w {vols[1].shape} and mask {m.shape} must lie on one grid."
        )
    if not m.any():
        raise InputError(f"{name}: the brain mask is empty, so the contrasts cannot be z-scored.")
    out = np.zeros((2, *m.shape), dtype=np.float32)
    for c, (v, cname) in enumerate(zip(vols, ("T1w", "T2w"))):
        inside = v[m]
        if not np.isfinite(inside).all():
            raise InputError(f"{name}: the {cname} volume has NaN or Inf voxels inside the brain mask.")
        sd = float(inside.std())
        if not sd > 0:
            if allow_constant:
                continue
            raise InputError(f"{name}: the {cname} volume is constant inside the brain mask.")
        out[c][m] = ((inside - float(inside.mean())) / sd).astype(np.float32)
    return out


def _read_label_like(path: str | os.PathLike, what: str, shape: Sequence[int], subject: str) -> np.ndarray:
    data, _ = read_nifti(path)
    arr = np.asarray(data)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if tuple(arr.shape) != tuple(shape):
        raise InputError(f"{path}: the {what} of {subject} has shape {tuple(arr.shape)}, the images {tuple(shape)}.")
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: the {what} of {subject} contains NaN or Inf values.")
    return arr


def load_segmentation_item(
    item: Mapping[str, Any], num_classes: int = 3, keys: Sequence[str] = ("t1w", "t2w", "label", "mask")
) -> dict[str, Any]:
    """Load one ground-truth subject for training or scoring: ``{"image": (2, ...) float32, "label": (1, ...) int64,
    "mask": bool, "affine": 4x4, "subject": str}``.

    ``keys`` names the item's T1w, T2w, label-map and brain-mask entries (the Nexus datalist's ``t1w``, ``t2w``,
    ``label``, ``mask``).

    Raises:
        InputError: a missing key or file, grids that differ, label values outside ``[0, num_classes)``.
    """
    k1, k2, kl, km = keys
    subject = str(item.get("subject", item.get(k1, "subject")))
    missing = [k for k in keys if not item.get(k)]
    if missing:
        raise InputError(f"datalist item {subject} lacks {missing}, needed by the segmentation network.")
    t1, affine = load_volume(item[k1])
    t2, affine2 = load_volume(item[k2])
    if t1.shape != t2.shape or not np.allclose(affine, affine2, atol=1e-3):
        raise InputError(f"{item[k2]}: the T2w ground truth of {subject} is not on the T1w ground-truth grid.")
    label = _read_label_like(item[kl], "label map", t1.shape, subject)
    if np.any(label != np.round(label)) or label.min() < 0 or label.max() >= num_classes:
        raise InputError(
            f"{item[kl]}: the label map of {subject} must hold integers 0..{num_classes - 1}, got values in "
            f"[{float(label.min()):g}, {float(label.max()):g}]."
        )
    mask = _read_label_like(item[km], "brain mask", t1.shape, subject) > 0
    image = segmentation_input(t1, t2, mask, name=str(item[km]))
    return {
        "image": image,
        "label": label.astype(np.int64)[None],
        "mask": mask,
        "affine": affine,
        "subject": subject,
    }


def _roi(roi_size: Sequence[int] | int, strides: Sequence[int]) -> tuple[int, int, int]:
    r = (int(roi_size),) * 3 if isinstance(roi_size, (int, np.integer)) else tuple(int(v) for v in roi_size)
    div = int(np.prod([int(s) for s in strides]))
    if len(r) != 3 or any(v < div or v % div for v in r):
        raise ValueError(f"roi_size {r} must be 3 multiples of {div} (the product of the UNet strides).")
    return r  # type: ignore[return-value]


def _crop_size(roi: Sequence[int], shape: Sequence[int], div: int) -> tuple[int, ...]:
    """Largest crop <= roi that fits the image and is divisible by the network's downsampling."""
    out = []
    for r, n in zip(roi, shape):
        v = min(int(r), (int(n) // div) * div)
        out.append(max(div, v))
    return tuple(out)


def train_segmentation(
    items: Sequence[Mapping[str, Any]],
    network: torch.nn.Module | None = None,
    max_epochs: int = 100,
    roi_size: Sequence[int] | int = (48, 48, 48),
    num_samples: int = 4,
    batch_size: int = 2,
    class_ratios: Sequence[float] = (1.0, 1.0, 1.0),
    learning_rate: float = 1e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
    network_kwargs: Mapping[str, Any] | None = None,
    loaded: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Train the downstream U-Net on ground-truth HR subjects with MONAI's ``SupervisedTrainer``.

    Every epoch draws ``num_samples`` crops of ``roi_size`` (clipped to the volume, kept divisible by the U-Net's
    downsampling) per subject, centred on background / tumour core / oedema voxels with ``class_ratios``
    (:class:`~monai.transforms.RandCropByLabelClassesd`; a class missing from a subject is skipped for it), plus random
    left-right flips; loss :class:`~monai.losses.DiceCELoss` (softmax, one-hot labels), Adam.

    Args:
        items: datalist items with ``t1w``, ``t2w``, ``label`` and ``mask`` (HR ground truth).
        network: a network to train (default :func:`build_segmentation_network` with ``network_kwargs``).
        loaded: already loaded items (:func:`load_segmentation_item`), instead of reading ``items``.

    Returns:
        ``(network in eval mode, mean loss per epoch)``.
    """
    from ignite.engine import Events
    from monai.data import CacheDataset, DataLoader, list_data_collate
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceCELoss
    from monai.transforms import Compose, EnsureTyped, RandCropByLabelClassesd, RandFlipd
    from monai.utils import set_determinism

    if int(max_epochs) < 1:
        raise ValueError(f"max_epochs must be positive, got {max_epochs}.")
    data = list(loaded) if loaded is not None else [load_segmentation_item(it) for it in items]
    if not data:
        raise InputError("no training subjects for the segmentation network.")
    kwargs = dict(_DEFAULT_NET, **(network_kwargs or {}))
    net = network if network is not None else build_segmentation_network(**kwargs)
    strides = getattr(net, "strides", kwargs["strides"])
    div = int(np.prod([int(s) for s in strides]))
    roi = _roi(roi_size, strides)
    crop = _crop_size(roi, min((d["image"].shape[1:] for d in data), key=lambda s: int(np.prod(s))), div)
    num_classes = int(getattr(net, "out_channels", 3))
    if len(class_ratios) != num_classes:
        raise ValueError(f"class_ratios needs {num_classes} values, got {list(class_ratios)}.")

    set_determinism(seed=int(seed))
    torch.manual_seed(int(seed))
    train_transforms = Compose(
        [
            EnsureTyped(keys=("image", "label"), track_meta=False),
            RandCropByLabelClassesd(
                keys=("image", "label"),
                label_key="label",
                spatial_size=crop,
                ratios=[float(r) for r in class_ratios],
                num_classes=num_classes,
                num_samples=int(num_samples),
                warn=False,
            ),
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0),
        ]
    )
    train_transforms.set_random_state(seed=int(seed))
    ds = CacheDataset([{"image": d["image"], "label": d["label"]} for d in data], train_transforms, progress=False)
    loader = DataLoader(ds, batch_size=int(batch_size), shuffle=True, num_workers=0, collate_fn=list_data_collate)
    device = torch.device(device)
    net = net.to(device)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=int(max_epochs),
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.Adam(net.parameters(), lr=float(learning_rate)),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        amp=False,
        decollate=False,
    )
    history: list[float] = []
    running = {"sum": 0.0, "n": 0}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _acc(engine):
        running["sum"] += float(engine.state.output["loss"].detach())
        running["n"] += 1

    @trainer.on(Events.EPOCH_COMPLETED)
    def _epoch(engine):
        history.append(running["sum"] / max(1, running["n"]))
        running["sum"], running["n"] = 0.0, 0
        logger.info("segmentation epoch %d loss %.4f", engine.state.epoch, history[-1])

    trainer.run()
    net.eval()
    return net, history


def segment(
    network: torch.nn.Module,
    t1w: Any,
    t2w: Any,
    mask: Any,
    roi_size: Sequence[int] | int = (48, 48, 48),
    overlap: float = 0.25,
    sw_batch_size: int = 2,
    device: str | torch.device | None = None,
    name: str = "subject",
    allow_constant: bool = False,
) -> np.ndarray:
    """Label map (``uint8``, the grid of the inputs) of one subject: :func:`segmentation_input`, sliding-window
    inference (Gaussian blending) with ``roi_size`` windows, argmax over the classes."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(segmentation_input(t1w, t2w, mask, name=name, allow_constant=allow_constant))[None]
    strides = getattr(network, "strides", _DEFAULT_NET["strides"])
    roi = _roi(roi_size, strides)
    dev = torch.device(device) if device is not None else next(network.parameters()).device
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            logits = sliding_window_inference(
                x.to(dev), roi, int(sw_batch_size), network, overlap=float(overlap), mode="gaussian"
            )
    finally:
        network.train(was_training)
    return logits[0].argmax(0).to(torch.uint8).cpu().numpy()


def _spacing(spacing: Any) -> tuple[float, float, float]:
    s = np.asarray(spacing, dtype=np.float64)
    if s.shape == (4, 4):
        s = np.sqrt((s[:3, :3] ** 2).sum(axis=0))
    s = np.broadcast_to(s.reshape(-1), (3,)) if s.size == 1 else s.reshape(-1)
    if s.size != 3 or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"spacing must be 3 positive numbers (mm) or a 4x4 affine, got {spacing!r}.")
    return tuple(float(v) for v in s)  # type: ignore[return-value]


def segmentation_metrics(
    pred: Any,
    target: Any,
    spacing: Any = 1.0,
    classes: Mapping[int, str] | None = None,
    empty: str = "nan",
) -> dict[str, float]:
    """Dice and HD95 (mm) per foreground class of a label map against the ground truth (paper Table 5).

    Dice by :class:`monai.metrics.DiceMetric`, HD95 by :class:`monai.metrics.HausdorffDistanceMetric` with
    ``percentile=95`` (symmetric, Euclidean, on the label boundaries) and the voxel ``spacing`` (3 numbers in mm, or
    the grid's 4x4 affine). Empty classes follow ``empty`` (module docstring): ``"nan"`` (default) or ``"brats"``.

    Returns:
        ``dice_<name>``, ``hd95_<name>``, ``miss_<name>`` (1.0 when the class is in the ground truth but not
        predicted, 0.0 when predicted, NaN when absent from the ground truth) per class, and ``dice`` / ``hd95``: the
        mean over the classes with finite values (NaN when there are none).
    """
    from monai.metrics import DiceMetric, HausdorffDistanceMetric
    from monai.networks.utils import one_hot

    if empty not in ("nan", "brats"):
        raise ValueError(f"empty must be 'nan' or 'brats', got {empty!r}.")
    classes = dict(SEGMENTATION_CLASSES if classes is None else classes)
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred)
    t = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target)
    while p.ndim > 3 and p.shape[0] == 1:
        p = p[0]
    while t.ndim > 3 and t.shape[0] == 1:
        t = t[0]
    if p.shape != t.shape or p.ndim != 3:
        raise ValueError(f"pred and target must be 3D label maps of one shape, got {p.shape} and {t.shape}.")
    sp = _spacing(spacing)
    n = max(max(classes) + 1, int(max(p.max(), t.max())) + 1)
    pt = one_hot(torch.as_tensor(p.astype(np.int64))[None, None], num_classes=n)
    tt = one_hot(torch.as_tensor(t.astype(np.int64))[None, None], num_classes=n)
    dice_fn = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    hd_fn = HausdorffDistanceMetric(include_background=True, percentile=95.0, reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty classes are handled below
        dice = dice_fn(pt, tt)[0].cpu().numpy().astype(np.float64)
        hd = hd_fn(pt, tt, spacing=sp)[0].cpu().numpy().astype(np.float64)
    diagonal = float(np.linalg.norm(np.asarray(p.shape) * np.asarray(sp)))
    out: dict[str, float] = {}
    for c, name in classes.items():
        in_gt, in_pred = bool((t == c).any()), bool((p == c).any())
        if in_gt and in_pred:
            d, h, miss = float(dice[c]), float(hd[c]), 0.0
        elif in_gt:  # missed
            d, h, miss = 0.0, (diagonal if empty == "brats" else math.nan), 1.0
        elif empty == "brats":  # absent from the ground truth: right if nothing is predicted
            (d, h), miss = ((1.0, 0.0) if not in_pred else (0.0, diagonal)), math.nan
        else:
            d, h, miss = math.nan, math.nan, math.nan
        out[f"dice_{name}"], out[f"hd95_{name}"], out[f"miss_{name}"] = d, h, miss
    for key in ("dice", "hd95"):
        vals = [out[f"{key}_{name}"] for name in classes.values() if math.isfinite(out[f"{key}_{name}"])]
        out[key] = float(np.mean(vals)) if vals else math.nan
    return out


def _settings_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_segmentation_network(network: torch.nn.Module, path: str | os.PathLike, settings: Mapping[str, Any]) -> Path:
    """Write the plain state dict (loads with ``weights_only=True``) to ``path`` and ``settings`` (network arguments,
    training subjects and settings) to ``<path>.json``, both atomically."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    write_atomic(path, lambda tmp: torch.save(state, str(tmp)))
    write_text_atomic(_settings_path(path), json.dumps(dict(settings), indent=2, default=str) + "\n")
    return path


def load_segmentation_network(path: str | os.PathLike, **network_kwargs: Any) -> torch.nn.Module:
    """A :func:`build_segmentation_network` (arguments from the sidecar ``<path>.json`` when present, else
    ``network_kwargs``) with the weights of ``path``.

    Raises:
        InputError: missing or unreadable checkpoint, or one from another network.
    """
    from monai_inr.engines.checks import load_checkpoint

    path = Path(path)
    kwargs = dict(_DEFAULT_NET, **network_kwargs)
    side = _settings_path(path)
    if side.is_file():
        try:
            kwargs.update(json.loads(side.read_text(encoding="utf-8")).get("network", {}))
        except ValueError as e:
            raise InputError(f"{side}: not a readable settings file ({e}).") from e
    net = build_segmentation_network(**kwargs)
    load_checkpoint(net, path)
    return net.eval()


def train_or_load_segmentation(
    items: Sequence[Mapping[str, Any]],
    cache_path: str | os.PathLike | None = None,
    network_kwargs: Mapping[str, Any] | None = None,
    **train_kwargs: Any,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The downstream network trained once on ``items``' ground truth and cached at ``cache_path``.

    A cached checkpoint is reused only when its sidecar records the same network arguments, training subjects and
    training settings; otherwise the network is (re)trained with :func:`train_segmentation` and saved.

    Returns:
        ``(network in eval mode, settings)``; ``settings["loss_history"]`` holds the epoch losses of a fresh training
        (empty when loaded from the cache) and ``settings["cached"]`` says which happened.
    """
    merged = dict(_DEFAULT_NET, **(network_kwargs or {}))
    net_kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}
    train_settings = {
        k: (list(v) if isinstance(v, tuple) else (str(v) if k == "device" else v))
        for k, v in train_kwargs.items()
        if k != "loaded"
    }
    train_settings.pop("device", None)
    settings = {
        "network": net_kwargs,
        "training": train_settings,
        "subjects": [str(it.get("subject", it.get("t1w"))) for it in items],
        "files": [str(it.get("t1w")) for it in items],
    }
    if cache_path is not None:
        path = Path(cache_path)
        side = _settings_path(path)
        if path.is_file() and side.is_file():
            try:
                stored = json.loads(side.read_text(encoding="utf-8"))
            except ValueError:
                stored = {}
            if {k: stored.get(k) for k in settings} == json.loads(json.dumps(settings, default=str)):
                net = load_segmentation_network(path)
                logger.info("segmentation network loaded from %s", path)
                return net, dict(stored, cached=True, loss_history=[])
    net, history = train_segmentation(items, network_kwargs=net_kwargs, **train_kwargs)
    out = dict(settings, loss_history=history)
    if cache_path is not None:
        save_segmentation_network(net, cache_path, out)
        logger.info("segmentation network trained on %d subjects, saved to %s", len(items), cache_path)
    return net, dict(out, cached=False)
