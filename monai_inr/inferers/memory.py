"""The memory budget that every inferer and planner checks before it allocates an output."""

from __future__ import annotations

import psutil
import torch

__all__ = ["GB", "memory_budget_bytes"]

GB = 1024**3
#: default ceiling on CPU, so that a planner never claims more than a typical workstation can spare
DEFAULT_CPU_BUDGET_GB = 6.0


def memory_budget_bytes(memory_budget_gb: float | None = None, device: torch.device | str | None = None) -> float:
    """Bytes an inference may use: ``memory_budget_gb`` when given; on a CUDA ``device`` 90 % of its free memory;
    otherwise ``min(6 GB, resident set + 80 % of the available RAM)``."""
    if memory_budget_gb is not None:
        return float(memory_budget_gb) * GB
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return 0.9 * float(free)
    vm = psutil.virtual_memory()
    return float(min(DEFAULT_CPU_BUDGET_GB * GB, psutil.Process().memory_info().rss + 0.8 * vm.available))
