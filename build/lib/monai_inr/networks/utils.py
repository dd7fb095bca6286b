"""Small helpers for handling networks: DDP unwrapping, unfreezing."""

from __future__ import annotations

import torch

__all__ = ["unwrap_network", "unfreeze"]


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (the network itself otherwise), so
    buffers, attributes and plain state dicts are reached the same way in single- and multi-process runs."""
    return network.module if hasattr(network, "module") else network


def unfreeze(module: torch.nn.Module) -> torch.nn.Module:
    """Make a module trainable again (the VGG before pre-training: building the perceptual loss freezes it)."""
    module.train()
    for q in module.parameters():
        q.requires_grad_(True)
    return module
