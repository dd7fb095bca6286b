"""Up-front checks for bundle runs: inputs, scales and checkpoints fail with one sentence before any work starts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from monai.bundle import ConfigParser

from monai_inr.coords import as_scale_tuple
from monai_inr.engines.checkpoint import save_atomic
from monai_inr.io import InputError, load_volume
from monai_inr.networks.utils import unwrap_network

__all__ = [
    "as_file_list",
    "paired_file_lists",
    "validate_inputs",
    "validate_scale",
    "load_checkpoint",
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
        files = [f for f in str(files).split(",") if f.strip()]
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


def validate_scale(scale=None, target_spacing=None, ndim: int = 3, max_scale: float | None = None) -> None:
    """Exactly one of ``scale`` / ``target_spacing``; positive, finite, and at most ``max_scale`` per axis if given."""
    if (scale is None) == (target_spacing is None):
        raise InputError("give exactly one of --scale or --target_spacing.")
    name, value = ("scale", scale) if scale is not None else ("target_spacing", target_spacing)
    try:
        values = as_scale_tuple(value, ndim, name=name)
    except ValueError as e:
        raise InputError(str(e)) from e
    if scale is not None and max_scale is not None and max(values) > max_scale:
        raise InputError(f"scale {values} exceeds the supported maximum of {max_scale} per axis.")


def load_checkpoint(network: torch.nn.Module, path: str | os.PathLike, key: str | None = None) -> torch.nn.Module:
    """Load a plain state dict (``weights_only=True``) into ``network``, with one-sentence errors.

    Raises:
        InputError: the checkpoint is missing or unreadable, or it belongs to another network (missing/unexpected
            keys or mismatched shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found; train the bundle first or pass --ckpt_path <model.pt>.")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}).") from e
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
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}).") from e
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
