"""Up-front checks for bundle runs: inputs, scales, memory plans and checkpoints fail with one sentence before any
work starts.

Generic: :func:`as_file_list`, :func:`paired_file_lists`, :func:`validate_inputs`, :func:`validate_scale`,
:func:`load_checkpoint`. Per method: :func:`check_fitted_geometry` (multi-contrast INR), :func:`check_nexus_datalist`
and :func:`check_nexus_inference` (Nexus-INR), :func:`validate_target_reference` and :func:`load_ablation_checkpoint`
(Dual-ArbNet), :func:`check_train_scales`, :func:`load_vgg`, :func:`resolve_slice_axis` and
:func:`validate_sodium_t2w` (ArRFR).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_inr.coords import SharedFrame, as_scale_tuple, check_overlap, spacing_from_affine, union_output_grid
from monai_inr.data.sodium import PLANES
from monai_inr.errors import InputError
from monai_inr.inferers.nexus import check_budget
from monai_inr.inferers.slicewise import plan_reference, validate_scale_range
from monai_inr.io import (
    check_geometry,
    read_torch_file,
    check_output_folder,
    save_atomic,
    load_magnitude,
    load_volume,
    magnitude_geometry,
    read_image_geometry,
    read_image_header,
    read_volume_header,
)
from monai_inr.networks.utils import unwrap_network
from monai_inr.transforms.io import output_path_for
from monai_inr.transforms.multiscale import DOWNSAMPLE_MODES

logger = logging.getLogger(__name__)

__all__ = [
    "as_file_list",
    "paired_file_lists",
    "validate_inputs",
    "validate_headers",
    "validate_scale",
    "check_output_paths",
    "check_inference_outputs",
    "warn_untrained_scale",
    "load_checkpoint",
    "check_fitted_geometry",
    "check_nexus_datalist",
    "check_nexus_inference",
    "validate_target_reference",
    "load_ablation_checkpoint",
    "load_comparison_checkpoint",
    "load_liif_checkpoint",
    "check_train_scales",
    "load_vgg",
    "resolve_slice_axis",
    "validate_sodium_t2w",
    "network_from_checkpoint",
    "save_network_checkpoint",
]

# A checkpoint that carries its network: {NETWORK_DEF_KEY: bundle-config dict with "_target_", MODEL_KEY: state dict}.
NETWORK_DEF_KEY = "network_def"
MODEL_KEY = "model"
# the only constructors a checkpoint may name (a checkpoint must not be able to run arbitrary code)
_TRUSTED_TARGET_PREFIX = "monai_inr.networks.nets."


def as_file_list(files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """One path, a comma-separated string or a list of paths -> a list of strings."""
    if isinstance(files, (str, os.PathLike)):
        # one existing path is one file, also when its name holds a comma; otherwise "a.nii.gz,b.nii.gz" is a list
        text = str(files).strip()
        files = [text] if text and Path(text).exists() else [f for f in text.split(",") if f.strip()]
    files = [str(f).strip() for f in files]
    if not files:
        raise InputError("no input image given; pass --input_image <file.nii.gz> (or a list of files).")
    return files


def paired_file_lists(
    images: str | os.PathLike | Sequence[str | os.PathLike],
    references: str | os.PathLike | Sequence[str | os.PathLike] | None,
    image_name: str = "target",
    reference_name: str = "reference",
) -> tuple[list[str], list[str]]:
    """Input files and one reference per input (a single reference serves every input), for two-input inference.

    Raises:
        InputError: no reference given, or the two lists have different lengths.
    """
    image_files = as_file_list(images)
    if references is None or (isinstance(references, str) and not references.strip()):
        raise InputError(
            f"no {reference_name} image given; pass --reference_image <file.nii.gz> (one per {image_name} image)."
        )
    ref_files = as_file_list(references)
    if len(ref_files) == 1 and len(image_files) > 1:
        ref_files = ref_files * len(image_files)
    if len(ref_files) != len(image_files):
        raise InputError(
            f"{len(image_files)} {image_name} images but {len(ref_files)} {reference_name} images; give one "
            f"{reference_name} per {image_name} image."
        )
    return image_files, ref_files


def validate_inputs(files: str | os.PathLike | Sequence[str | os.PathLike], ndim: int = 3) -> list[str]:
    """Check every input file is a readable ``ndim``-D image with finite, non-constant voxels; return the list."""
    files = as_file_list(files)
    for f in files:
        load_volume(f, ndim=ndim)
    return files


def validate_headers(files: str | os.PathLike | Sequence[str | os.PathLike], ndim: int = 3) -> list[str]:
    """Check every input file exists and is a readable ``ndim``-D image with a usable affine (no zero voxel size, not
    singular) from its header alone (no voxel data: the content is validated when the dataset loads it,
    :class:`monai_inr.transforms.LoadVolumed`), every file of a list before any is processed; return the list."""
    files = as_file_list(files)
    for f in files:
        if ndim == 3 and not Path(f).is_dir():
            _, affine = read_volume_header(f)
            check_geometry(affine, f)
        elif not Path(f).exists():
            raise InputError(f"{f}: file not found.")
    return files


def validate_scale(
    scale=None, target_spacing=None, ndim: int = 3, max_scale: float | None = None, min_scale: float = 1.0
) -> None:
    """Exactly one of ``scale`` / ``target_spacing``, positive and finite; a scale lies in ``[min_scale, max_scale]``
    per axis (an up-sampling network does not downsample: ``--scale 0.01`` would write a 1-voxel image)."""
    if (scale is None) == (target_spacing is None):
        raise InputError("give exactly one of --scale or --target_spacing.")
    if scale is not None:
        validate_scale_range(scale, min_scale, max_scale, ndim=ndim, name="scale")
        return
    try:
        as_scale_tuple(target_spacing, ndim, name="target_spacing")
    except (ValueError, TypeError) as e:
        raise InputError(str(e)) from e


def check_output_paths(
    outputs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], overwrite: bool = False
) -> list[Path]:
    """Pre-flight of the files a run will write, before any compute: ``outputs`` are ``(source, output path)`` pairs.

    Two sources may not share one output name (inputs with the same file name in different folders), every output
    folder must be writable (not a file, not under a file), and an existing output is replaced only with
    ``overwrite``. Returns the output paths.

    Raises:
        InputError: one sentence naming the file and the problem.
    """
    taken: dict[str, str] = {}
    paths = []
    for source, out in outputs:
        out = Path(out)
        key = os.path.normcase(os.path.abspath(out))
        if key in taken:
            raise InputError(
                f"{source}: its output {out} would overwrite the output of {taken[key]} (same file name); "
                "rename one input or run them into separate output folders."
            )
        taken[key] = str(source)
        if out.is_dir():
            raise InputError(f"{out}: the output name of {source} is an existing folder.")
        if out.exists() and not overwrite:
            raise InputError(f"{out}: already exists; pass --overwrite to replace it (bundle runs: --overwrite true), or choose another output folder.")
        paths.append(out)
    for folder in sorted({p.parent for p in paths}):
        check_output_folder(folder)
    return paths


def check_inference_outputs(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    postfix: str = "sr",
    ext: str = ".nii.gz",
    overwrite: bool = False,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """:func:`check_output_paths` for one output per input: ``<output_dir>/<input stem>_<postfix><ext>``
    (:func:`~monai_inr.transforms.io.output_path_for`), or ``<output_dir>/<names[i]>_<postfix><ext>`` when ``names``
    are given (the multi-contrast outputs; an empty input path then stands for its name)."""
    if names is not None:
        files = [str(f) if str(f).strip() else n for f, n in zip(files, names)]
        outs = [Path(output_dir) / f"{n}_{postfix}{ext}" for n in names]
    else:
        files = as_file_list(files)
        outs = [output_path_for(f, output_dir, postfix, ext) for f in files]
    return check_output_paths(list(zip(files, outs)), overwrite)


def warn_untrained_scale(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    scale: Any = None,
    target_spacing: Any = None,
    trained_range: Sequence[float] | None = None,
) -> list[str]:
    """Log one warning per input whose per-axis scale (given, or input spacing / ``target_spacing``) lies outside
    ``trained_range`` (the scales the weights were trained on; a network extrapolates there). Returns the warnings."""
    if trained_range is None:
        return []
    lo, hi = (float(v) for v in trained_range)
    warnings = []
    for f in as_file_list(files):
        if scale is not None:
            values = as_scale_tuple(scale, 3)
        else:
            spacing = spacing_from_affine(read_image_header(f)[2])
            values = tuple(float(s / t) for s, t in zip(spacing, as_scale_tuple(target_spacing, 3, "target_spacing")))
        # an axis left at its own resolution (scale 1) is not an extrapolation
        off = [v for v in values if not math.isclose(v, 1.0, abs_tol=1e-3) and not (lo - 1e-6 <= v <= hi + 1e-6)]
        if off:
            msg = (f"{f}: scale {tuple(round(v, 3) for v in values)} lies outside the scales these weights were "
                   f"trained on ({lo:g} to {hi:g} per axis); the result is an extrapolation.")
            logger.warning(msg)
            warnings.append(msg)
    return warnings


def load_checkpoint(network: torch.nn.Module, path: str | os.PathLike, key: str | None = None) -> torch.nn.Module:
    """Load a plain state dict (``weights_only=True``) into ``network``, with one-sentence errors.

    Raises:
        InputError: the checkpoint is missing or unreadable, or it belongs to another network (missing/unexpected
            keys or mismatched shapes).
    """
    path = Path(path)
    state = read_torch_file(path, "PyTorch checkpoint", "; train the bundle first or pass --ckpt_path <model.pt>")
    if key is None and isinstance(state, dict) and NETWORK_DEF_KEY in state:
        key = MODEL_KEY
    if key is not None and isinstance(state, dict) and key in state:
        state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a plain state dict of tensors.")
    target = unwrap_network(network)
    own = target.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = (missing and f"{len(missing)} missing keys (such as {missing[0]})") or (
            unexpected and f"{len(unexpected)} unexpected keys (such as {unexpected[0]})"
        ) or f"{len(mismatched)} tensors of another shape (such as {mismatched[0]})"
        raise InputError(f"{path}: checkpoint of another network ({detail}) for {type(target).__name__}.")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{path}: the checkpoint holds non-finite weights (such as {bad[0]}); it cannot be used.")
    target.load_state_dict(state)  # copies into the network's own dtype (half-precision storage is widened)
    return network


def _read_network_def(path: Path) -> dict | None:
    state = read_torch_file(path, "PyTorch checkpoint")
    if not isinstance(state, dict) or NETWORK_DEF_KEY not in state:
        return None
    net_def = state[NETWORK_DEF_KEY]
    target = net_def.get("_target_") if isinstance(net_def, dict) else None
    if not isinstance(target, str) or not target.startswith(_TRUSTED_TARGET_PREFIX):
        raise InputError(
            f"{path}: the checkpoint's network definition must name a constructor in {_TRUSTED_TARGET_PREFIX}*, got "
            f"{target!r}."
        )
    return dict(net_def)


def network_from_checkpoint(
    network: torch.nn.Module, path: str | os.PathLike | None, device: str | torch.device | None = None
) -> torch.nn.Module:
    """The network a checkpoint was trained as, with its weights: a checkpoint that carries its network definition
    (see :func:`save_network_checkpoint`) builds that network; a plain state dict is loaded into ``network``.

    So inference with shipped weights never depends on remembering which overlay trained them. ``path=None`` returns
    ``network`` untouched (no pretrained weights).

    Raises:
        InputError: as :func:`load_checkpoint`, or a network definition naming a constructor outside
            ``monai_inr.networks.nets``.
    """
    if path is None:
        return network if device is None else network.to(device)
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found; train the bundle first or pass --ckpt_path <model.pt>.")
    net_def = _read_network_def(path)
    if net_def is not None:
        try:
            network = ConfigParser({"network": net_def}).get_parsed_content("network")
        except Exception as e:
            raise InputError(
                f"{path}: the checkpoint's network definition could not be built ({type(e).__name__}: {e})."
            ) from e
    load_checkpoint(network, path)
    return network if device is None else network.to(device)


def save_network_checkpoint(
    network_def: dict | torch.nn.Module,
    state_dict: dict[str, torch.Tensor] | None,
    path: str | os.PathLike,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Write a checkpoint that carries its network: ``{"network_def": network_def, "model": state_dict}``.

    ``network_def`` is a bundle-config dict (``"_target_"`` in ``monai_inr.networks.nets`` plus constructor
    arguments) or a network that knows its own (a ``config`` attribute, as :class:`~monai_inr.networks.nets.ArSSR`);
    ``state_dict=None`` takes that network's weights. Floating-point weights are stored as ``dtype`` (half precision
    by default, widened again on load). Written atomically; an existing file at ``path`` is only replaced by a
    complete new one.
    """
    if isinstance(network_def, torch.nn.Module):
        net = unwrap_network(network_def)
        state_dict = net.state_dict() if state_dict is None else state_dict
        network_def = getattr(net, "config", None)
    if state_dict is None:
        raise ValueError("save_network_checkpoint: give the weights (state_dict) with a network definition dict.")
    target = network_def.get("_target_") if isinstance(network_def, dict) else None
    if not isinstance(target, str) or not target.startswith(_TRUSTED_TARGET_PREFIX):
        raise ValueError(f"network_def must name a constructor in {_TRUSTED_TARGET_PREFIX}*, got {target!r}.")
    weights = {
        k: (v.detach().to("cpu", dtype) if dtype is not None and v.is_floating_point() else v.detach().cpu())
        for k, v in state_dict.items()
    }
    return save_atomic({NETWORK_DEF_KEY: dict(network_def), MODEL_KEY: weights}, path)


# ------------------------------------------------------------------------------------------------------ per method


def check_fitted_geometry(
    network: torch.nn.Module, contrast1: str | None, contrast2: str | None, atol_mm: float = 1e-2
) -> None:
    """When the contrasts are given at inference, check they are the images the checkpoint was fitted to, in the
    fitted order: the same union FOV and frame (headers), and each contrast's intensity range as stored in the
    network at fitting time (a content fingerprint that also catches swapped inputs of one geometry).

    Raises:
        InputError: unreadable headers or a different geometry.
    """
    if not (contrast1 and str(contrast1).strip() and contrast2 and str(contrast2).strip()):
        return
    grids = [
        read_volume_header(p, f"{arg} ({p})", require_geometry=True)
        for p, arg in ((contrast1, "contrast1"), (contrast2, "contrast2"))
    ]
    expected = SharedFrame.from_grids(grids)
    net = unwrap_network(network)
    stored = SharedFrame.from_affine(net.frame_affine, net.fov_bounds)
    same = all(
        np.allclose(a, b, atol=atol_mm)
        for a, b in ((expected.affine, stored.affine), (expected.lower, stored.lower), (expected.upper, stored.upper))
    )
    if not same:
        raise InputError(
            f"the checkpoint was fitted to other images: the field of view of {contrast1} and {contrast2} differs "
            f"from the one stored in the checkpoint."
        )
    stored_ranges = getattr(net, "intensity_range", None)
    if stored_ranges is None or tuple(stored_ranges.shape) != (2, 2):
        return
    # content fingerprint: each contrast's intensity range, stored at fitting time (swapped inputs of one geometry)
    stored_ranges = stored_ranges.detach().cpu().double().numpy()
    given = []
    for p in (contrast1, contrast2):
        arr, _ = load_volume(p, name=str(p))
        given.append([float(np.min(arr)), float(np.max(arr))])

    def matches(a, b) -> bool:
        return bool(np.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(b).max()))))

    if matches(given[0], stored_ranges[0]) and matches(given[1], stored_ranges[1]):
        return
    if matches(given[0], stored_ranges[1]) and matches(given[1], stored_ranges[0]):
        raise InputError(
            f"{contrast1} and {contrast2} are given in swapped order: the checkpoint was fitted with {contrast2} as "
            f"contrast1 and {contrast1} as contrast2; pass them in the fitted order."
        )
    bad = contrast1 if not matches(given[0], stored_ranges[0]) else contrast2
    raise InputError(
        f"{bad}: not the image the checkpoint was fitted to (its intensity range differs from the stored one)."
    )


def check_nexus_datalist(items: Sequence[Mapping[str, Any]], segmentation: bool = True, name: str = "datalist") -> list:
    """Every item has the files Nexus-INR training needs (and ``label`` when segmentation is on); returns ``items``.

    Raises:
        InputError: an empty split, a missing key, or a missing label with segmentation-enhanced learning on.
    """
    items = list(items)
    if not items:
        raise InputError(f"{name}: no items.")
    for it in items:
        sid = it.get("subject", "?")
        for k in ("t1w", "t2w", "t1w_lr", "t2w_lr"):
            if not it.get(k):
                raise InputError(f"{name}: item {sid} has no {k!r} file.")
        if segmentation and not it.get("label"):
            raise InputError(
                f"{name}: item {sid} has no 'label' file but segmentation-enhanced learning is on; add tumour labels "
                f"or run with --segmentation False."
            )
    return items


def check_nexus_inference(network: torch.nn.Module, t1w: str, t2w: str, target_spacing, tile_size: int = 32,
                          memory_budget_gb: float | None = None) -> tuple[tuple[int, ...], np.ndarray]:
    """Everything a Nexus-INR inference checks before any work, from the headers alone: files, channels, geometry,
    overlap, spacing and the memory plan; returns the output grid. The voxel content is checked when
    :class:`~monai_inr.transforms.LoadNexusPaird` reads the inputs (once)."""
    validate_scale(None, target_spacing)
    in_ch = unwrap_network(network).in_channels
    grids = []
    for p, m in ((t1w, "t1w"), (t2w, "t2w")):
        if not str(p).strip():
            raise InputError(f"{m}: no file given; pass --{m} <file.nii.gz>.")
        grids.append(read_volume_header(p, f"{m} ({p})", require_geometry=True, channels=in_ch))
    (s1, a1), (s2, a2) = grids
    check_overlap(s1, a1, s2, a2, names=(f"t1w ({t1w})", f"t2w ({t2w})"))
    shape, affine = union_output_grid(s1, a1, s2, a2, target_spacing)
    device = next(unwrap_network(network).parameters()).device
    check_budget(network, [s1, s2], shape, tile_size, memory_budget_gb, device)
    return shape, affine


def validate_target_reference(
    targets: Any,
    references: Any,
    scale: Any = None,
    slice_axis: int = 2,
    min_scale: float = 1.0,
    max_scale: float | None = None,
    check_content: bool = True,
) -> tuple[list[str], list[str]]:
    """Check inference inputs before any work: readable images, a reference per target, equal channel counts, the
    reference covering the target's FOV in the target's slice plane, and ``min_scale <= scale <= max_scale``; with
    ``check_content`` also finite, non-constant voxels. The bundle's inference passes ``check_content=False`` and
    checks the content on the dataset's one read (:class:`~monai_inr.transforms.CheckVolumed`), so only the headers
    are read here.

    Returns the target and reference file lists. Raises :class:`~monai_inr.errors.InputError` (one sentence).
    """
    scales = validate_scale_range(scale, min_scale, max_scale)
    slice_axis = check_slice_axis(slice_axis)
    t_files, r_files = paired_file_lists(targets, references, "target", "reference")
    for t, r in zip(t_files, r_files):
        t_shape, t_ch, t_aff = read_image_geometry(t, header_only=not check_content)
        r_shape, r_ch, r_aff = read_image_geometry(r, header_only=not check_content)
        check_geometry(t_aff, t)
        check_geometry(r_aff, r)
        if t_ch != r_ch:
            raise InputError(
                f"{t} has {t_ch} channel(s) but its reference {r} has {r_ch}; both must be magnitude (1 channel) or "
                f"both complex (2 channels)."
            )
        axis = 2 if t_shape[2] == 1 else int(slice_axis)
        out_shape = list(t_shape)
        for d, s in zip([d for d in range(3) if d != axis], scales):
            out_shape[d] = max(1, int(round(t_shape[d] * s)))
        try:
            plan_reference(t_shape, t_aff, out_shape, r_shape, r_aff, axis, what=f"reference {r}", coordinates=False)
        except InputError as e:
            raise InputError(f"{t}: {e}") from None
    return t_files, r_files


def load_comparison_checkpoint(
    network: torch.nn.Module, path: str | os.PathLike, enabled: bool, name: str, train_with: str, switch: str
) -> Any:
    """Load the weights of a comparison network of an evaluation (an ablation, a baseline method) when ``enabled``;
    a missing file is an :class:`~monai_inr.errors.InputError` naming how to train it (``train_with``: what to add to
    the training command) and the evaluation ``switch`` that turns the comparison off."""
    if not enabled:
        return None
    if not Path(path).is_file():
        raise InputError(
            f"{path}: the {name} checkpoint is missing; train it with the same configs plus {train_with}, or pass "
            f"--{switch} false."
        )
    return load_checkpoint(network, path)


def load_ablation_checkpoint(network: torch.nn.Module, path: str | os.PathLike, enabled: bool = True) -> Any:
    """Load Dual-ArbNet's single-contrast ablation (:func:`load_comparison_checkpoint`)."""
    return load_comparison_checkpoint(network, path, enabled, "single-contrast ablation",
                                      f"--use_reference false --ckpt_dir {Path(path).parent}", "eval_ablation")


def load_liif_checkpoint(network: torch.nn.Module, path: str | os.PathLike, enabled: bool = True) -> Any:
    """Load Dual-ArbNet's LIIF comparison network (:func:`load_comparison_checkpoint`; trained with ``liif.json``)."""
    return load_comparison_checkpoint(network, path, enabled, "LIIF", "liif.json as the last config file", "eval_liif")


def check_train_scales(
    scales: Sequence[float],
    max_train_scale: float = 4.0,
    mode: str = "cubic",
    image_shape: Sequence[int] | None = None,
    min_lr_size: int = 3,
) -> tuple[float, ...]:
    """Validate the down-sampling factors requested at training (one :class:`~monai_inr.errors.InputError` sentence).

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


def resolve_slice_axis(path: str | os.PathLike, slice_axis: int | None = None, plane: str | None = None) -> int:
    """Axis the 3D volume is sliced along: the singleton axis of a ``(H, W, 1)``-like file, else the axis of
    ``plane`` (``"sagittal"``/``"coronal"``/``"axial"`` from the affine's orientation), else ``slice_axis``."""
    full, _, affine = read_image_header(path)
    shape = tuple(int(n) for n in full[:3]) if len(full) >= 3 else tuple(int(n) for n in full) + (1,)
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
    return 2 if slice_axis is None else check_slice_axis(slice_axis)


def check_slice_axis(slice_axis: Any) -> int:
    """``slice_axis`` as 0, 1 or 2 (the axis normal to the processed slices), else one sentence."""
    if str(slice_axis).strip() not in ("0", "1", "2"):
        raise InputError(f"slice_axis must be 0, 1 or 2 (the axis normal to the processed slices), got {slice_axis}.")
    return int(str(slice_axis).strip())


def validate_sodium_t2w(
    sodium: Any,
    t2w: Any,
    scale: Any = None,
    complex_sodium: str = "error",
    max_scale: float | None = None,
    atol_mm: float = 1e-3,
    check_content: bool = True,
) -> list[dict]:
    """Check inference inputs before any work and return ``[{"image": sodium, "reference": t2w}]``.

    Both images of a pair must be readable, finite, non-constant 2D slices or 3D volumes **on the same grid** (same
    shape, affines equal within ``atol_mm``): ArRFR fuses pixel-aligned images (register and resample the T2w onto the
    sodium first, as ``python -m preprocessing register`` does). Complex sodium is refused or converted
    (``complex_sodium``); the scale must be >= 1 (and <= ``max_scale`` if given).
    With ``check_content=False`` (the bundle's inference) only the headers are read here and the voxel content is
    checked on the dataset's one read (:class:`~monai_inr.transforms.LoadMagnituded`).
    """
    validate_scale_range(scale, 1.0, max_scale)
    na_files, t2_files = paired_file_lists(sodium, t2w, "sodium", "T2w")
    pairs = []
    for na, t2 in zip(na_files, t2_files):
        if check_content:
            a_shape, aa = _shape_affine(load_magnitude(na, complex_sodium, "sodium"))
            b_shape, ba = _shape_affine(load_magnitude(t2, "error", "T2w"))
        else:
            a_shape, aa = magnitude_geometry(na, complex_sodium, "sodium")
            b_shape, ba = magnitude_geometry(t2, "error", "T2w")
        check_geometry(aa, na)
        check_geometry(ba, t2)
        if a_shape != b_shape:
            raise InputError(
                f"{t2}: the T2w has shape {b_shape} but the sodium {na} has {a_shape}; ArRFR needs both on one grid "
                f"(register and resample the T2w onto the sodium first)."
            )
        if not np.allclose(aa, ba, atol=atol_mm):
            raise InputError(
                f"{t2}: the T2w affine does not match the sodium affine of {na} (unaligned grids); register and "
                f"resample the T2w onto the sodium first."
            )
        pairs.append({"image": na, "reference": t2})
    return pairs


def _shape_affine(loaded: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[int, ...], np.ndarray]:
    return tuple(loaded[0].shape), loaded[1]
