"""Small helpers shared by the engines that handle networks."""

from __future__ import annotations

import torch

__all__ = ["unwrap_network"]


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (the network itself otherwise), so
    buffers, attributes and plain state dicts are reached the same way in single- and multi-process runs."""
    return network.module if hasattr(network, "module") else network
