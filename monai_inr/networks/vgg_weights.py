"""Load external VGG-16 weights into the project's :class:`~monai_inr.networks.vgg.VGG16` for a perceptual loss.

ArRFR (K. Yang, "Sodium and T2W MRI Fusion Representation of Arbitrary Resolution via Implicit Neural
Representation", 2025, section 3.3) freezes a VGG-16 pre-trained on a shuffled set of sodium and T2w slices; its
public code loads that network from a ``vgg.pth`` file. The file is not available here, so the ArRFR bundle pre-trains
its own VGG by default; a user who has the authors' file (or any VGG-16 trained elsewhere) passes it as
``--vgg_weights <vgg.pth>`` and the bundle loads it with :func:`load_vgg16_weights` instead of pre-training.

Accepted files (read with ``torch.load(..., weights_only=True)``, nothing else is executed):

* a torchvision-style state dict of VGG-16 (``vgg16().state_dict()``, ``vgg16_bn().state_dict()``, or only the
  ``features`` part, keys ``features.<i>.weight``/``features.<i>.bias`` or ``<i>.weight``/``<i>.bias``): the 13
  convolutions are taken **in layer order** (and the 13 batch normalisations for a ``vgg16_bn`` file), whatever their
  indices, and copied into the network's convolutions (batch normalisations) in order; torchvision's
  224x224-specific classifier is ignored (the perceptual losses only use the convolutional taps);
* this project's own :class:`VGG16` state dict (the bundle's ``models/vgg.pt``): the same mapping, plus the
  classifier head when its shapes match;
* either of them wrapped in ``{"state_dict": ...}``, ``{"model": ...}`` or ``{"network": ...}``, and keys prefixed by
  ``module.`` (``DataParallel``) or ``vgg.``.

**Input channels.** The network has one input channel (MR magnitudes). A first convolution with 3 input channels (an
RGB VGG-16) is reduced to one channel by **summing its weights over the input channels**: for a grey image ``x`` fed
as RGB ``(x, x, x)``, ``sum_c w_c * x = (sum_c w_c) * x``, so the one-channel network computes exactly what the RGB
network computes on the grey image replicated three times (with the images fed unstandardised, as the plain network
``VGG16(batch_norm=False, standardize_input=False)`` does; an ImageNet per-channel mean/std is not replicated).

Any other mismatch (another width, batch normalisation in the file but not in the network or the reverse, not 13
convolutions, non-finite weights, an unreadable file) raises :class:`~monai_inr.errors.InputError` with one sentence
that names the file and the problem, before any training work.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from monai_inr.errors import InputError
from monai_inr.io import read_torch_file
from monai_inr.networks.utils import unwrap_network

__all__ = ["load_vgg16_weights", "convert_vgg16_state_dict", "read_state_dict"]

logger = logging.getLogger(__name__)

_LAYER_KEY = re.compile(r"^(?P<index>\d+)\.(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)$")
_WRAPPERS = ("state_dict", "model", "network")
_PREFIXES = ("module.", "vgg.", "_orig_mod.")
_NUM_CONVS = 13


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict of tensors from ``path`` (``weights_only=True``; ``state_dict``/``model``/``network``
    wrappers and ``module.``/``vgg.`` key prefixes removed), else one sentence naming the file."""
    p = Path(path)
    state = read_torch_file(p, "VGG-16 weights file", " (vgg_weights)",
                            "; read with weights_only=True: a pickled model object must be re-saved as its state_dict()")
    for name in _WRAPPERS:
        if isinstance(state, Mapping) and isinstance(state.get(name), Mapping):
            state = state[name]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{p}: expected a VGG-16 state dict of tensors (like vgg16().state_dict()).")
    out = {}
    for key, value in state.items():
        key = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def _feature_layers(state: Mapping[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """``{layer index: {param: tensor}}`` of the ``features`` part (``features.<i>.<param>`` or ``<i>.<param>``)."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        rest = key[len("features."):] if key.startswith("features.") else key
        m = _LAYER_KEY.match(rest)
        if m is not None:
            layers.setdefault(int(m["index"]), {})[m["param"]] = value
    return layers


def convert_vgg16_state_dict(
    state: Mapping[str, torch.Tensor], network: nn.Module, source: str = "the file"
) -> dict[str, torch.Tensor]:
    """The full state dict of ``network`` (a :class:`~monai_inr.networks.vgg.VGG16`) with its convolutions (and batch
    normalisations) replaced by those of ``state``, in layer order; see the module docstring for the accepted
    layouts. ``source`` names the file in the error sentences.

    Raises:
        InputError: ``state`` is not a VGG-16 matching ``network`` (one sentence naming ``source`` and the problem).
    """
    target = unwrap_network(network)
    own = target.state_dict()
    layers = _feature_layers(state)
    convs = [layers[i] for i in sorted(layers) if "weight" in layers[i] and layers[i]["weight"].ndim == 4]
    norms = [layers[i] for i in sorted(layers) if "running_mean" in layers[i]]
    if not convs:
        raise InputError(f"{source}: holds no VGG-16 convolutions (keys like features.0.weight).")
    own_convs = [i for i, m in enumerate(target.features) if isinstance(m, nn.Conv2d)]
    own_norms = [i for i, m in enumerate(target.features) if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != len(own_convs):
        raise InputError(f"{source}: holds {len(convs)} convolutions, a VGG-16 has {_NUM_CONVS}.")
    if norms and not own_norms:
        raise InputError(f"{source}: holds a batch-norm VGG-16 (vgg16_bn) but the network has no batch normalisation; "
                         f"set vgg_batch_norm true.")
    if own_norms and not norms:
        raise InputError(f"{source}: holds a plain VGG-16 (no batch normalisation) but the network has batch "
                         f"normalisation; set vgg_batch_norm false.")
    if len(norms) != len(own_norms):
        raise InputError(f"{source}: holds {len(norms)} batch normalisations, the network {len(own_norms)}.")
    new = dict(own)
    for n, (layer, idx) in enumerate(zip(convs, own_convs)):
        weight = layer["weight"]
        shape = tuple(own[f"features.{idx}.weight"].shape)
        if n == 0 and weight.ndim == 4 and weight.shape[1] == 3 and shape[1] == 1:
            weight = weight.sum(dim=1, keepdim=True)  # RGB -> grey, exact for a grey image fed as (x, x, x)
        if tuple(weight.shape) != shape:
            width, own_width = int(convs[0]["weight"].shape[0]), int(own[f"features.{own_convs[0]}.weight"].shape[0])
            if width != own_width:
                hint = f"a VGG of width {width}: set vgg_width {width}"
            elif n == 0:
                hint = f"{int(weight.shape[1])} input channels, the network {shape[1]}"
            else:
                hint = "not VGG-16 configuration D"
            raise InputError(
                f"{source}: convolution {n + 1} has weights of shape {tuple(layer['weight'].shape)} but the network's "
                f"has {shape} ({hint}).")
        new[f"features.{idx}.weight"] = weight
        bias = layer.get("bias", torch.zeros_like(own[f"features.{idx}.bias"]))
        if tuple(bias.shape) != tuple(own[f"features.{idx}.bias"].shape):
            raise InputError(f"{source}: convolution {n + 1} has a bias of shape {tuple(bias.shape)} but the network's "
                             f"has {tuple(own[f'features.{idx}.bias'].shape)}.")
        new[f"features.{idx}.bias"] = bias
    for n, (layer, idx) in enumerate(zip(norms, own_norms)):
        for param, value in layer.items():
            key = f"features.{idx}.{param}"
            if key in own and tuple(value.shape) != tuple(own[key].shape):
                raise InputError(f"{source}: batch normalisation {n + 1} has {param} of shape {tuple(value.shape)}, "
                                 f"the network {tuple(own[key].shape)}.")
            if key in own:
                new[key] = value
    head = {k: v for k, v in state.items() if k.startswith("classifier.")}
    if head and set(head) == {k for k in own if k.startswith("classifier.")} and all(
            head[k].shape == own[k].shape for k in head):
        new.update(head)  # this project's own head (torchvision's 224x224 head is ignored)
    bad = [k for k, v in new.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{source}: holds non-finite weights (such as {bad[0]}); it cannot be used.")
    return {k: v.to(own[k].dtype) for k, v in new.items()}


def load_vgg16_weights(network: nn.Module, path: str | os.PathLike, freeze: bool = True) -> nn.Module:
    """Load a VGG-16 weights file (module docstring: torchvision-style or this project's keys, 1 or 3 input
    channels) into ``network`` and, with ``freeze``, put it in ``eval()`` mode without gradients (the fixed VGG of
    ArRFR's perceptual losses, Yang 2025, section 3.3).

    Raises:
        InputError: the file is missing, unreadable, or holds another network (one sentence naming the file).
    """
    p = Path(path)
    state = read_state_dict(p)
    converted = convert_vgg16_state_dict(state, network, source=str(p))
    target = unwrap_network(network)
    target.load_state_dict(converted)
    if freeze:
        target.eval()
        for q in target.parameters():
            q.requires_grad_(False)
    first = _feature_layers(state)
    first_conv = next(first[i]["weight"] for i in sorted(first) if first[i].get("weight", torch.empty(0)).ndim == 4)
    logger.info("VGG-16 weights loaded from %s (%d input channel(s)%s); the in-house pre-training is not used.", p,
                int(first_conv.shape[1]), ", summed to 1" if first_conv.shape[1] != target.in_channels else "")
    return network
