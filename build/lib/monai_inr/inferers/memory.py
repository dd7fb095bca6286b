"""The memory rule of every inferer and planner: one budget, one peak estimate, one error sentence.

Every inferer (:class:`~monai_inr.inferers.ImplicitInferer`, :class:`~monai_inr.inferers.SliceWiseInferer`,
:class:`~monai_inr.inferers.MultiContrastGridInferer`, the Nexus-INR planner) predicts its peak memory before any work
with :func:`estimate_peak_bytes` and refuses a plan beyond :func:`memory_budget_bytes` with :func:`check_memory`.

Networks describe their working set through the attributes of :class:`~monai_inr.inferers.ImplicitNetwork`:
``encode_workspace_channels`` (activation values alive per input voxel while encoding) and
``decode_workspace_channels`` (values alive per query point while decoding); networks without them get the one
default of :data:`DEFAULT_ENCODE_WORKSPACE_CHANNELS` / :data:`DEFAULT_DECODE_WORKSPACE_CHANNELS`.
"""

from __future__ import annotations

import logging
from typing import Any

import psutil
import torch

from monai_inr.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "GB",
    "DEFAULT_CPU_BUDGET_GB",
    "DEFAULT_ENCODE_WORKSPACE_CHANNELS",
    "DEFAULT_DECODE_WORKSPACE_CHANNELS",
    "memory_budget_bytes",
    "encode_workspace_channels",
    "decode_workspace_channels",
    "encoder_bytes_per_voxel",
    "decoder_bytes_per_query",
    "estimate_peak_bytes",
    "memory_error",
    "check_memory",
]

GB = 1024**3
#: default ceiling on CPU, so that a planner never claims more than a typical workstation can spare
DEFAULT_CPU_BUDGET_GB = 6.0
#: activation values per input voxel while encoding, for networks that do not say (a 16-layer, 64-feature encoder)
DEFAULT_ENCODE_WORKSPACE_CHANNELS = 16 * 64
#: values per query point while decoding, for networks that do not say
DEFAULT_DECODE_WORKSPACE_CHANNELS = 1024
#: allocator slack added to every estimate
ALLOCATOR_SLACK_BYTES = 64 * 1024**2
#: safety factors of the encoder and decoder working sets (measured peaks over the counted activations)
ENCODE_SAFETY, DECODE_SAFETY = 1.15, 1.25


def memory_budget_bytes(memory_budget_gb: float | None = None, device: torch.device | str | None = None) -> float:
    """Bytes an inference may use: ``memory_budget_gb`` when given, capped by what the machine has (a budget above
    the free memory would let a plan allocate more than exists and end in the OOM killer; the cap is logged); on a
    CUDA ``device`` 90 % of its free memory; otherwise ``min(6 GB, resident set + 80 % of the available RAM)``."""
    cuda = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()
    if cuda:
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        limit = 0.9 * float(free)
    else:
        limit = float(psutil.Process().memory_info().rss + 0.8 * psutil.virtual_memory().available)
    if memory_budget_gb is not None:
        asked = float(memory_budget_gb) * GB
        if asked > limit:
            logger.warning(
                "memory budget %.2f GB exceeds the %.2f GB this machine can give now; using %.2f GB.",
                asked / GB, limit / GB, limit / GB,
            )
        return min(asked, limit)
    return limit if cuda else float(min(DEFAULT_CPU_BUDGET_GB * GB, limit))


def encode_workspace_channels(network: Any) -> float:
    """The network's ``encode_workspace_channels`` (default :data:`DEFAULT_ENCODE_WORKSPACE_CHANNELS`)."""
    return float(getattr(network, "encode_workspace_channels", DEFAULT_ENCODE_WORKSPACE_CHANNELS))


def decode_workspace_channels(network: Any) -> float:
    """The network's ``decode_workspace_channels`` (default :data:`DEFAULT_DECODE_WORKSPACE_CHANNELS`)."""
    return float(getattr(network, "decode_workspace_channels", DEFAULT_DECODE_WORKSPACE_CHANNELS))


def encoder_bytes_per_voxel(network: Any, batch: int = 1, amp_bf16: bool = False) -> float:
    """Bytes per encoded input voxel: ``1.15 * batch * elem * encode_ws`` (``elem`` 2 under bf16 autocast, else 4)."""
    elem = 2.0 if amp_bf16 else 4.0
    return ENCODE_SAFETY * int(batch) * elem * encode_workspace_channels(network)


def decoder_bytes_per_query(network: Any, batch: int = 1) -> float:
    """Bytes per query point decoded at once: ``1.25 * batch * 4 * decode_ws``."""
    return DECODE_SAFETY * int(batch) * 4.0 * decode_workspace_channels(network)


def estimate_peak_bytes(
    network: Any,
    *,
    output_values: float,
    queries: float,
    encoder_voxels: float = 0.0,
    batch: int = 1,
    amp_bf16: bool = False,
    output_copies: int = 1,
    in_use: float | None = None,
) -> float:
    """Predicted peak bytes of an inference:

    ``in use + 4 * output_values * output_copies + 1.25 * batch * 4 * queries * decode_ws
    + 1.15 * batch * elem * encoder_voxels * encode_ws + 64 MiB``

    with ``elem`` 2 bytes under bf16 autocast (else 4), ``queries`` the points decoded at once (a chunk, or the pixels
    of the slices decoded together), ``encoder_voxels`` the voxels encoded at once (a tile with its halo; 0 when the
    encoder's working set is counted separately), and ``in_use`` the process's resident set (default: measured now).
    """
    rss = float(psutil.Process().memory_info().rss) if in_use is None else float(in_use)
    return (
        rss
        + 4.0 * float(output_values) * int(output_copies)
        + float(queries) * decoder_bytes_per_query(network, batch)
        + float(encoder_voxels) * encoder_bytes_per_voxel(network, batch, amp_bf16)
        + ALLOCATOR_SLACK_BYTES
    )


def memory_error(need: float, budget: float, what: str, advice: str, detail: str = "") -> InputError:
    """The one memory sentence:
    ``"<what> needs about <need> GB<detail> but the memory budget is <budget> GB; <advice>."``"""
    return InputError(
        f"{what} needs about {need / GB:.2f} GB{detail} but the memory budget is {budget / GB:.2f} GB; {advice}."
    )


def check_memory(need: float, budget: float, what: str, advice: str, detail: str = "") -> None:
    """Raise :func:`memory_error` when ``need`` exceeds ``budget`` (bytes).

    Raises:
        InputError: ``need > budget``.
    """
    if need > budget:
        raise memory_error(need, budget, what, advice, detail)
