"""Engine pieces of the ArRFR bundle (Yang 2025): data lists, up-front checks, the VGG pre-training task, the
self-supervised multi-factor training step, and inference helpers.

* :func:`fusion_items` / :func:`pretraining_items`: items of a sodium + T2w slice datalist (``preprocessing datalist``)
  for ArRFR training and for the VGG pre-training task;
* :func:`check_train_scales`: the down-sampling factors requested at training must lie in ``[1, max_train_scale]``
  (integers for stride decimation) and leave LR slices of at least 3 pixels;
* :func:`load_vgg`: the frozen VGG-16 must come from a pre-training checkpoint (one sentence when it is missing);
* :class:`ArRFRStep`: ignite ``iteration_update`` for :class:`monai.engines.SupervisedTrainer` (training) and
  :class:`monai.engines.SupervisedEvaluator` (validation loss): for each ``k`` the network sees the factor-``k``
  degraded sodium and T2w and is queried on the original grid; ``L = mean_k L_k`` (eq. 8);
* :class:`LoadMagnituded`, :func:`validate_sodium_t2w`, :func:`resolve_slice_axis`: inference inputs (2D slices or 3D
  volumes of any shape), complex sodium refused or converted explicitly, sodium and T2w on one grid.

Pre-training task (the paper only says the VGG-16 is "pretrained on a shuffled dataset of sodium and T2W images"):
``task="rotation"`` (default), the self-supervised rotation pretext of Gidaris et al. (ICLR 2018): every shuffled
sodium and T2w slice is rotated by a random multiple of 90 degrees and the network predicts which (4 classes,
:class:`PretextLabeld`). The task is the same for both modalities, so the features describe anatomy and edges rather
than what separates the modalities. Modality classification (``"modality"``, 2 classes; ``"modality_plane"``, 6
classes) is offered but is a poor choice for a *fusion* loss: a network trained to separate sodium from T2w maps them
to maximally different features, and on the quick-profile data the resulting loss was lower for the sodium slice
scaled by 0.2 than for the sodium slice itself (4.34 vs 4.57), so training drifted to dim images; with the rotation
pretext the minimum is at the images themselves (bundle README, "choices").
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from monai_inr.engines.checks import load_checkpoint, paired_file_lists
from monai_inr.io import InputError, read_nifti
from monai_inr.transforms.multiscale import DOWNSAMPLE_MODES, lr_key, lr_query_grid

__all__ = [
    "PLANES",
    "PRETRAINING_TASKS",
    "read_datalist",
    "fusion_items",
    "pretraining_items",
    "check_train_scales",
    "load_vgg",
    "ArRFRStep",
    "LoadMagnituded",
    "validate_sodium_t2w",
    "resolve_slice_axis",
    "num_pretraining_classes",
    "slice_shape",
    "unfreeze",
    "materialize",
    "recalibrate_batch_norm",
    "BatchNormRecalibration",
    "PretextLabeld",
]

PLANES = ("sagittal", "coronal", "axial")
PRETRAINING_TASKS = ("rotation", "modality", "modality_plane")


# ------------------------------------------------------------------------------------------------------------ data
def read_datalist(datalist: str | os.PathLike) -> tuple[dict, Path]:
    """The datalist JSON and its folder (paths inside are relative to it)."""
    p = Path(datalist)
    if not p.is_file():
        raise InputError(f"{p}: datalist not found; build the dataset first (python -m preprocessing datalist ...).")
    try:
        with open(p) as fh:
            return json.load(fh), p.parent
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not a readable JSON datalist ({e.msg}).") from e


def _abs(base: Path, path: str) -> str:
    q = Path(path)
    return str(q if q.is_absolute() else (base / q).resolve())


def _subsample(items: list, max_items: int | None, seed: int) -> list:
    if max_items is None or max_items <= 0 or len(items) <= max_items:
        return items
    rng = random.Random(seed)
    picked = rng.sample(items, int(max_items))
    return sorted(picked, key=lambda e: (e.get("subject", ""), e.get("plane", ""), e.get("slice", 0)))


def fusion_items(
    datalist: str | os.PathLike,
    split: str = "training",
    include_empty: bool = False,
    max_items: int | None = None,
    seed: int = 0,
    fallback_split: str | None = None,
    fallback_count: int = 8,
) -> list[dict]:
    """``[{"sodium", "t2w", "subject", "plane", "slice"}]`` (absolute paths) of one split.

    Args:
        include_empty: keep slices where both images are zero (padding; off for training).
        max_items: a fixed random subset of this many slices (``None``: all).
        fallback_split: when ``split`` is empty (e.g. no validation subjects), take ``fallback_count`` evenly spaced
            slices of this split instead.
    """
    dl, base = read_datalist(datalist)
    entries = [e for e in (dl.get(split) or []) if include_empty or not e.get("empty", False)]
    if not entries and fallback_split:
        pool = [e for e in (dl.get(fallback_split) or []) if include_empty or not e.get("empty", False)]
        if pool:
            idx = np.linspace(0, len(pool) - 1, num=min(fallback_count, len(pool))).round().astype(int)
            entries = [pool[i] for i in np.unique(idx)]
    if not entries:
        raise InputError(f"{datalist}: the '{split}' split has no (non-empty) sodium/T2w slices.")
    out = []
    for e in entries:
        if "sodium" not in e or "t2w" not in e:
            raise InputError(f"{datalist}: entries need 'sodium' and 't2w' keys (got {sorted(e)}).")
        out.append({"sodium": _abs(base, e["sodium"]), "t2w": _abs(base, e["t2w"]), "subject": e.get("subject", ""),
                    "plane": e.get("plane", ""), "slice": int(e.get("slice", 0))})
    return _subsample(out, max_items, seed)


def pretraining_items(
    datalist: str | os.PathLike,
    split: str = "training",
    task: str = "rotation",
    include_empty: bool = False,
    max_items: int | None = None,
    seed: int = 0,
    fallback_split: str | None = None,
) -> list[dict]:
    """The VGG pre-training set: every sodium and every T2w slice of ``split`` as its own item, shuffled with ``seed``,
    ``{"image": path, "label": class}``; classes ``modality`` (``"modality"``, 0 = sodium, 1 = T2w) or
    ``modality * 3 + plane`` (``"modality_plane"``, planes in :data:`PLANES` order); for ``"rotation"`` the label is a
    placeholder set by :class:`PretextLabeld`."""
    if task not in PRETRAINING_TASKS:
        raise InputError(f"unknown VGG pre-training task {task!r}; choose one of {', '.join(PRETRAINING_TASKS)}.")
    pairs = fusion_items(datalist, split, include_empty, None, seed, fallback_split)
    items = []
    for e in pairs:
        plane = PLANES.index(e["plane"]) if e["plane"] in PLANES else 0
        for m, key in enumerate(("sodium", "t2w")):
            label = {"modality_plane": m * 3 + plane, "modality": m}.get(task, 0)
            items.append({"image": e[key], "label": label, "modality": key, "plane": e["plane"]})
    random.Random(seed).shuffle(items)
    if max_items is not None and 0 < max_items < len(items):
        items = items[: int(max_items)]
    return items


def num_pretraining_classes(task: str = "rotation") -> int:
    """Classes of the VGG pre-training task."""
    if task not in PRETRAINING_TASKS:
        raise InputError(f"unknown VGG pre-training task {task!r}; choose one of {', '.join(PRETRAINING_TASKS)}.")
    return {"rotation": 4, "modality": 2, "modality_plane": 6}[task]


class PretextLabeld(Randomizable, MapTransform):
    """The VGG pre-training label. ``task="rotation"``: rotate ``keys`` by ``k * 90`` degrees in the (0, 1) plane of a
    channel-first 2D image with a random ``k`` in {0, 1, 2, 3} and write ``k`` to ``label_key`` (non-square images:
    ``k`` in {0, 2}, so the shape is kept); other tasks keep the datalist's label and the image unchanged."""

    def __init__(self, keys: KeysCollection = "image", label_key: str = "label", task: str = "rotation",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if task not in PRETRAINING_TASKS:
            raise ValueError(f"task must be one of {PRETRAINING_TASKS}, got {task!r}.")
        self.label_key, self.task = label_key, task
        self._k = 0

    def randomize(self, data: Any = None, square: bool = True) -> None:
        self._k = int(self.R.randint(4)) if square else 2 * int(self.R.randint(2))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.task != "rotation":
            return d
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        self.randomize(square=first.shape[-1] == first.shape[-2])
        for key in keys:
            img = d[key]
            rotated = torch.rot90(img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img), self._k,
                                  dims=(-2, -1)).contiguous()
            if isinstance(img, MetaTensor):
                rotated = MetaTensor(rotated, meta=dict(img.meta))
            d[key] = rotated
        d[self.label_key] = self._k
        return d


# ---------------------------------------------------------------------------------------------------------- checks
def check_train_scales(
    scales: Sequence[float],
    max_train_scale: float = 4.0,
    mode: str = "cubic",
    image_shape: Sequence[int] | None = None,
    min_lr_size: int = 3,
) -> tuple[float, ...]:
    """Validate the down-sampling factors requested at training (one :class:`~monai_inr.io.InputError` sentence).

    ArRFR trains with ``k in {1, 2, 3, 4}`` (the paper's range); factors must lie in ``[1, max_train_scale]``, be
    integers for stride decimation, and leave at least ``min_lr_size`` pixels per axis of an ``image_shape`` slice
    (the 3x3 unfolding needs neighbours).
    """
    if mode not in DOWNSAMPLE_MODES:
        raise InputError(f"unknown down-sampling mode {mode!r}; choose one of {', '.join(DOWNSAMPLE_MODES)}.")
    try:
        ks = tuple(float(k) for k in (scales if isinstance(scales, (list, tuple)) else [scales]))
    except (TypeError, ValueError):
        raise InputError(f"train_scales must be a list of numbers, got {scales!r}.") from None
    if not ks:
        raise InputError("train_scales is empty; ArRFR trains with the down-sampling factors [1, 2, 3, 4].")
    bad = [k for k in ks if not math.isfinite(k) or k < 1 or k > float(max_train_scale)]
    if bad:
        raise InputError(
            f"training down-sampling factor(s) {bad} outside the supported range [1, {float(max_train_scale):g}]; "
            f"use factors like [1, 2, 3, 4] or raise max_train_scale."
        )
    if mode == "decimate" and any(k != int(k) for k in ks):
        raise InputError(f"stride decimation needs integer factors, got {list(ks)}; use downsample_mode 'cubic'.")
    if image_shape is not None:
        small = min(int(n) for n in image_shape)
        too = [k for k in ks if round(small / k) < min_lr_size]
        if too:
            raise InputError(
                f"factor(s) {too} leave fewer than {min_lr_size} pixels of the {tuple(int(n) for n in image_shape)} "
                f"slices; use smaller factors or larger slices."
            )
    return ks


def slice_shape(datalist: str | os.PathLike, split: str = "training") -> tuple[int, ...]:
    """Shape of the first slice of a split (the training slices share it: the prepared cube)."""
    items = fusion_items(datalist, split, include_empty=True, fallback_split="test")
    arr = np.load(items[0]["sodium"], mmap_mode="r")
    return tuple(int(n) for n in arr.shape)


def load_vgg(vgg: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load the pre-trained VGG-16 (plain state dict) and freeze it; a missing checkpoint names the command to run."""
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"{p}: VGG checkpoint not found; pre-train it first (python -m monai.bundle run pretraining ...) or pass "
            f"--vgg_ckpt <vgg.pt>."
        )
    load_checkpoint(vgg, p)
    vgg.eval()
    for q in vgg.parameters():
        q.requires_grad_(False)
    return vgg


# ------------------------------------------------------------------------------------------------------ train step
def _plain(x: Any, device: Any) -> torch.Tensor:
    """A plain tensor on ``device`` (MetaTensor's per-op metadata tracking costs more than the tiny convolutions)."""
    t = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return t.to(device)


def _affine(x: Any) -> np.ndarray | None:
    a = getattr(x, "affine", None)
    if a is None:
        return None
    a = a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return a[0] if a.ndim == 3 else a


class ArRFRStep:
    """One ArRFR iteration over the down-sampling factors (``iteration_update`` of MONAI's ignite engines).

    For each ``k`` in ``scales``: the network gets the factor-``k`` LR versions of the degraded sodium
    (``lr_key(degraded_key, k)``) and of the T2w (``lr_key(t2w_key, k)``) and is queried at every pixel centre of the
    original grid (:func:`~monai_inr.transforms.multiscale.lr_query_grid`, exact for both down-sampling operators);
    the loss function (:class:`~monai_inr.losses.FusionPerceptualLoss`) compares the output with the **clean** sodium
    (``sodium_key``) and the T2w (eq. 7); the targets' VGG features are computed once per batch. The loss is
    ``mean_k L_k`` (eq. 8): gradients of ``L_k / n`` are accumulated factor by factor (same gradient as one backward
    of the mean, a quarter of the activation memory) and the optimiser steps once, unless ``per_scale_step`` (the
    public code: one optimiser step per factor).

    With ``train=False`` (validation, pass ``loss_function``) the same losses are computed without gradients. Returns
    ``{"loss", "loss_x<k>", "feature_sodium", "style_sodium", "feature_t2w", "style_t2w"}`` (floats as tensors).
    """

    def __init__(
        self,
        scales: Sequence[float] = (1, 2, 3, 4),
        sodium_key: str = "sodium",
        t2w_key: str = "t2w",
        degraded_key: str = "sodium_degraded",
        per_scale_step: bool = False,
        train: bool = True,
        loss_function: Any = None,
    ) -> None:
        self.scales = tuple(float(k) for k in scales)
        self.loss_function = loss_function
        self.sodium_key, self.t2w_key, self.degraded_key = sodium_key, t2w_key, degraded_key
        self.per_scale_step = bool(per_scale_step)
        self.train = bool(train)

    def __call__(self, engine: Any, batchdata: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        device = engine.state.device
        net = engine.network
        loss_fn = self.loss_function if self.loss_function is not None else getattr(engine, "loss_function", None)
        if loss_fn is None:
            raise RuntimeError("ArRFRStep needs a loss function: the trainer's, or loss_function=... (evaluators).")
        sodium_m = batchdata[self.sodium_key]
        sodium = _plain(sodium_m, device)
        t2w = _plain(batchdata[self.t2w_key], device)
        hr_shape = tuple(int(n) for n in sodium.shape[2:])
        b = sodium.shape[0]
        net.train(self.train)
        optimizer = getattr(engine, "optimizer", None) if self.train else None
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            targets = loss_fn.target_features(sodium, t2w)
        n = len(self.scales)
        out: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=device)
        terms = ("feature_sodium", "style_sodium", "feature_t2w", "style_t2w")
        sums = {k: torch.zeros((), device=device) for k in terms}
        for k in self.scales:
            na_m = batchdata[lr_key(self.degraded_key, k)]
            na = _plain(na_m, device)
            t2 = _plain(batchdata[lr_key(self.t2w_key, k)], device)
            coord, cell = lr_query_grid(hr_shape, na.shape[2:], _affine(sodium_m), _affine(na_m), device=device)
            coord = coord.unsqueeze(0).expand(b, -1, -1)
            cell = cell.unsqueeze(0).expand(b, -1, -1)
            with torch.set_grad_enabled(self.train):
                values = net(na, t2, coord=coord, cell=cell)
                pred = values.transpose(1, 2).reshape(b, -1, *hr_shape)
                comps = loss_fn.components(pred, targets=targets)
                lk = comps["loss"]
                if self.train:
                    if self.per_scale_step:
                        lk.backward()
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                    else:
                        (lk / n).backward()
            out[f"loss_x{k:g}"] = lk.detach()
            total = total + lk.detach() / n
            for key in sums:
                sums[key] = sums[key] + comps[key].detach() / n
        if self.train and not self.per_scale_step and optimizer is not None:
            optimizer.step()
        out["loss"] = total
        out.update(sums)
        engine.state.output = out
        return out


# ------------------------------------------------------------------------------------------------------- inference
def _complex_layout(data: np.ndarray) -> str | None:
    if np.iscomplexobj(data):
        return f"complex dtype {data.dtype}"
    if data.ndim in (4, 5) and int(data.shape[-1]) == 2:
        return "2 channels (real, imaginary)"
    return None


def _magnitude_array(path: str | os.PathLike, complex_mode: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    p = Path(path)
    data, affine = read_nifti(p)
    cx = _complex_layout(data)
    if cx is not None and complex_mode != "magnitude":
        raise InputError(
            f"{p}: the {what} image is complex ({cx}) but ArRFR expects a magnitude image (the paper keeps only the "
            f"sodium magnitude); pass its magnitude or set --complex_sodium magnitude to convert it."
        )
    if np.iscomplexobj(data):
        data = np.abs(data)
    elif cx is not None:
        data = np.sqrt(np.sum(data.astype(np.float64) ** 2, axis=-1))
    data = np.asarray(data, dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise InputError(f"{p}: expected a 2D slice or a 3D volume, got shape {tuple(data.shape)}.")
    if sum(n > 1 for n in data.shape) < 2:
        raise InputError(f"{p}: an image needs at least two axes with 2 or more pixels, got shape {tuple(data.shape)}.")
    finite = np.isfinite(data)
    if not finite.all():
        raise InputError(f"{p}: contains {int((~finite).sum())} NaN or Inf voxels.")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{p}: the image is constant (every voxel is {float(data.min()):g}), nothing to fuse.")
    return data, affine


class LoadMagnituded(MapTransform):
    """Load NIfTI images as channel-first magnitude MetaTensors ``(1, *spatial)`` with their affine.

    A complex image (complex dtype, or a last axis of 2 = real/imaginary) is an :class:`~monai_inr.io.InputError`
    with ``complex_mode="error"``; with ``"magnitude"`` its magnitude is used (the paper keeps only the sodium
    magnitude). MONAI's ``LoadImage`` would silently drop the imaginary part of a complex NIfTI, hence this loader.
    """

    def __init__(self, keys: KeysCollection, complex_mode: str = "error", what: str = "sodium",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if complex_mode not in ("error", "magnitude"):
            raise ValueError(f"complex_mode must be 'error' or 'magnitude', got {complex_mode!r}.")
        self.complex_mode = complex_mode
        self.what = what

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            arr, affine = _magnitude_array(path, self.complex_mode, self.what)
            d[key] = MetaTensor(torch.from_numpy(arr[None].copy()), affine=torch.as_tensor(affine),
                                meta={"filename_or_obj": path, "original_affine": affine})
        return d


def resolve_slice_axis(path: str | os.PathLike, slice_axis: int | None = None, plane: str | None = None) -> int:
    """Axis the 3D volume is sliced along: the singleton axis of a ``(H, W, 1)``-like file, else the axis of
    ``plane`` (``"sagittal"``/``"coronal"``/``"axial"`` from the affine's orientation), else ``slice_axis``."""
    data, affine = read_nifti(path)
    shape = tuple(int(n) for n in data.shape[:3]) if data.ndim >= 3 else tuple(int(n) for n in data.shape) + (1,)
    singles = [d for d in range(3) if shape[d] == 1]
    if len(singles) == 1:
        return singles[0]
    if plane:
        if plane not in PLANES:
            raise InputError(f"unknown plane {plane!r}; choose one of {', '.join(PLANES)}.")
        codes = nib.aff2axcodes(affine)
        names = {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}
        for axis, c in enumerate(codes):
            if names[c] == plane:
                return axis
    axis = 2 if slice_axis is None else int(slice_axis)
    if axis not in (0, 1, 2):
        raise InputError(f"slice_axis must be 0, 1 or 2, got {slice_axis}.")
    return axis


def validate_sodium_t2w(
    sodium: Any,
    t2w: Any,
    scale: Any = None,
    complex_sodium: str = "error",
    max_scale: float | None = None,
    atol_mm: float = 1e-3,
) -> list[dict]:
    """Check inference inputs before any work and return ``[{"image": sodium, "reference": t2w}]``.

    Both images of a pair must be readable, finite, non-constant 2D slices or 3D volumes **on the same grid** (same
    shape, affines equal within ``atol_mm``): ArRFR fuses pixel-aligned images (register and resample the T2w onto the
    sodium first, as ``python -m preprocessing register`` does). Complex sodium is refused or converted
    (``complex_sodium``); the scale must be >= 1 (and <= ``max_scale`` if given).
    """
    from monai_inr.inferers.slicewise import validate_scale_range

    validate_scale_range(scale, 1.0, max_scale)
    na_files, t2_files = paired_file_lists(sodium, t2w, "sodium", "T2w")
    pairs = []
    for na, t2 in zip(na_files, t2_files):
        a, aa = _magnitude_array(na, complex_sodium, "sodium")
        b, ba = _magnitude_array(t2, "error", "T2w")
        if a.shape != b.shape:
            raise InputError(
                f"{t2}: the T2w has shape {b.shape} but the sodium {na} has {a.shape}; ArRFR needs both on one grid "
                f"(register and resample the T2w onto the sodium first)."
            )
        if not np.allclose(aa, ba, atol=atol_mm):
            raise InputError(
                f"{t2}: the T2w affine does not match the sodium affine of {na} (unaligned grids); register and "
                f"resample the T2w onto the sodium first."
            )
        pairs.append({"image": na, "reference": t2})
    return pairs


def unfreeze(module: torch.nn.Module) -> torch.nn.Module:
    """Make a module trainable again (the VGG before pre-training: building the perceptual loss freezes it)."""
    module.train()
    for q in module.parameters():
        q.requires_grad_(True)
    return module


def materialize(transform: Any, items: Sequence[Mapping]) -> list[dict]:
    """Apply ``transform`` once to every item (fixed, reproducible validation samples, noise included)."""
    return [transform(dict(item)) for item in items]


@torch.no_grad()
def recalibrate_batch_norm(network: torch.nn.Module, data_loader: Any, image_key: str = "image", device: Any = None,
                           max_batches: int | None = None) -> int:
    """Recompute every batch-norm layer's running mean and variance as the exact average over ``data_loader``
    (Ioffe & Szegedy's population statistics; "precise BN"). After a short training run the exponential running
    averages lag behind the fast-changing weights, and the network in ``eval()`` mode (how the perceptual loss uses
    the VGG) then differs from the trained one. Returns the number of batches used."""
    bns = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = network.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    network.train()
    device = device if device is not None else next(network.parameters()).device
    n = 0
    for batch in data_loader:
        x = batch[image_key] if isinstance(batch, Mapping) else batch[0]
        x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
        network(x.to(device))
        n += 1
        if max_batches is not None and n >= max_batches:
            break
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    network.train(was_training)
    return n


class BatchNormRecalibration:
    """Ignite handler: :func:`recalibrate_batch_norm` of the engine's network over ``data_loader`` after the last
    epoch (register it before validation and checkpoint handlers, which then see the recalibrated statistics)."""

    def __init__(self, data_loader: Any, image_key: str = "image", max_batches: int | None = None) -> None:
        self.data_loader, self.image_key, self.max_batches = data_loader, image_key, max_batches

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(
            Events.EPOCH_COMPLETED(event_filter=lambda e, epoch: epoch == e.state.max_epochs), self
        )

    def __call__(self, engine: Any) -> None:
        n = recalibrate_batch_norm(engine.network, self.data_loader, self.image_key, engine.state.device,
                                   self.max_batches)
        engine.logger.info(f"batch-norm statistics recomputed over {n} batches")
