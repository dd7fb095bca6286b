"""Super-resolution of one scan for MONAI Label, without MONAI Label: the plain core of
:class:`lib.infers.super_resolution.SuperResolution`, importable and testable with ``monai_inr`` alone.

One request = one volume: read it (NIfTI, or a DICOM series folder through MONAI's ITK reader), normalise it to
[0, 1] (the protocol's per-volume min/max), encode it once and query the output grid in chunks with
:class:`monai_inr.inferers.ImplicitInferer`, map the intensities back to the input's range and write a float32 NIfTI
whose affine is the super-resolved grid's (same field of view and physical centre as the input, ``DESIGN.md``).
There is no resampling back to the input grid (MONAI Label's ``Restored`` would undo the super-resolution).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monai_inr.inferers import ImplicitInferer
from monai_inr.errors import InputError
from monai_inr.io import save_nifti
from monai_inr.transforms import MinMaxNormalized, RestoreIntensityd

__all__ = ["grid_request", "pre_transforms", "post_transforms", "make_inferer", "load_network", "super_resolve",
           "write_volume", "result_info", "run"]

GRID_KEYS = ("scale", "target_spacing")


def _number_or_list(value: Any, name: str) -> float | list[float]:
    """A request value (a number, a list, or its text as a client sends it: ``"2"``, ``"[1, 1, 2.5]"``, ``"1,1,2"``)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text if not ("," in text and "[" not in text) else f"[{text}]")
            except (ValueError, SyntaxError):
                raise InputError(f"{name} {value!r} is not a number or a list of numbers.") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    raise InputError(f"{name} {value!r} is not a number or a list of numbers.")


def grid_request(request: Mapping[str, Any], default_scale: float | Sequence[float] | None = 2.0) -> dict[str, Any]:
    """``{"scale": s}`` or ``{"target_spacing": mm}`` from a request; the default scale when it names neither.

    Raises:
        InputError: both given, or a value that is not a number or a list of numbers.
    """
    given = {k: request[k] for k in GRID_KEYS if request.get(k) not in (None, "", "null", "None")}
    if len(given) > 1:
        raise InputError("give either scale or target_spacing in the request, not both.")
    if not given:
        if default_scale is None:
            raise InputError("the request needs a scale or a target_spacing.")
        return {"scale": default_scale}
    key, value = next(iter(given.items()))
    return {key: _number_or_list(value, key)}


def pre_transforms(key: str = "image") -> list:
    """Read (NIfTI, or a DICOM series folder), channel first, normalise to [0, 1] recording the range."""
    return [LoadImaged(keys=key, image_only=True), EnsureChannelFirstd(keys=key), MinMaxNormalized(keys=key)]


def post_transforms(pred_key: str = "pred", source_key: str = "image") -> list:
    """Intensities back to the input's range. Nothing resamples the prediction back onto the input grid."""
    return [RestoreIntensityd(keys=pred_key, source_key=source_key)]


def make_inferer(grid: Mapping[str, Any], chunk_size: int = 65536, memory_budget_gb: float | None = None,
                 progress: bool = False) -> ImplicitInferer:
    """The encode-once inferer for one request's output grid (``grid`` from :func:`grid_request`)."""
    return ImplicitInferer(scale=grid.get("scale"), target_spacing=grid.get("target_spacing"), chunk_size=chunk_size,
                           memory_budget_gb=memory_budget_gb, progress=progress)


def load_network(network: torch.nn.Module, path: str | os.PathLike | None, device: str | torch.device = "cpu"):
    """``network`` with the weights of ``path`` (a plain state dict, or a checkpoint that carries its own network
    definition, which then decides the architecture); ``path=None``: ``network`` as it is. In eval mode."""
    from monai_inr.engines import network_from_checkpoint

    return network_from_checkpoint(network, path, device).eval()


def super_resolve(data: dict, network: torch.nn.Module, grid: Mapping[str, Any], device: str | torch.device = "cpu",
                  key: str = "image", pred_key: str = "pred", **inferer_kwargs: Any) -> dict:
    """``data[key]`` (pre-transformed, ``(C, *spatial)``) super-resolved into ``data[pred_key]`` (a MetaTensor on the
    output grid with its affine), intensities restored."""
    image = data[key]
    inferer = make_inferer(grid, **inferer_kwargs)
    with torch.no_grad():
        pred = inferer(image[None].to(device), network)
    data = dict(data)
    data[pred_key] = pred[0].cpu()
    return Compose(post_transforms(pred_key, key))(data)


def write_volume(volume: torch.Tensor, path: str | os.PathLike) -> Path:
    """A float32 NIfTI of ``volume`` (``(1, *spatial)`` or ``(*spatial)``) with its own affine (the SR grid's)."""
    affine = volume.affine.detach().cpu().numpy() if hasattr(volume, "affine") else None
    if affine is None:
        raise ValueError("the volume carries no affine.")
    array = volume.detach().cpu().float()
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    return save_nifti(array.numpy(), affine, path, dtype="float32")


def result_info(data: dict, grid: Mapping[str, Any], key: str = "image", pred_key: str = "pred") -> dict[str, Any]:
    """What a client needs besides the volume: the request's grid, the input and output shapes and spacings."""
    pred = data[pred_key]
    return {
        "type": "super_resolution",
        **{k: v for k, v in grid.items()},
        "input_shape": [int(s) for s in data[key].shape[1:]],
        "output_shape": [int(s) for s in pred.shape[1:]],
        "output_spacing": [float(v) for v in pred.meta.get("sr_spacing", ())],
        "output_affine": pred.affine.detach().cpu().tolist(),
    }


def run(image: str | os.PathLike, network: torch.nn.Module, output: str | os.PathLike,
        request: Mapping[str, Any] | None = None, device: str = "cpu", **inferer_kwargs: Any) -> tuple[Path, dict]:
    """The whole task without MONAI Label: read ``image``, super-resolve it at the request's scale or target spacing
    (default x2), write ``output``; returns the path and :func:`result_info`."""
    grid = grid_request(dict(request or {}))
    data = Compose(pre_transforms())({"image": str(image)})
    data = super_resolve(data, network, grid, device, **inferer_kwargs)
    return write_volume(data["pred"], output), result_info(data, grid)
