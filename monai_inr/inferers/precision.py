"""One home for the bf16 decision: where bf16 autocast is fast, and an inferer that runs any other under it.

bf16 autocast pays only where the hardware multiplies bf16 natively. On a CPU with AMX tiles or AVX-512 BF16
(Intel Sapphire Rapids and later, AMD Zen 4 and later) oneDNN's bf16 GEMMs and convolutions run 5-9x faster than fp32
(measured on this project's 2-core Xeon: matmul 2048^2 206 vs 1,800 GFLOP/s, conv3d 3x3x3 348 vs 2,770 GFLOP/s); on
an AVX2-only CPU the same calls are emulated and 7-20x *slower* than fp32 (measured on an AMD EPYC). So bundles say
``amp_bf16: "auto"`` and this module decides per machine (:func:`resolve_amp_bf16`): bf16 where it is native, fp32
elsewhere; ``true``/``false`` force it either way.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from monai.inferers import Inferer, SimpleInferer

__all__ = ["native_bf16", "resolve_amp_bf16", "amp_setting", "AutocastInferer"]

logger = logging.getLogger(__name__)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` runs bf16 matrix products natively (fast): a CUDA device with bf16 support, or a CPU with
    AMX tiles or AVX-512 BF16 that oneDNN (mkldnn) can use."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_amp_bf16(amp_bf16: bool | str, device: torch.device | str = "cpu") -> bool:
    """``True``/``False`` as given (also the strings ``"true"``/``"false"`` of a command line); ``"auto"``:
    :func:`native_bf16` of ``device``. Anything else is refused."""
    if isinstance(amp_bf16, str):
        word = amp_bf16.strip().lower()
        if word == "auto":
            return native_bf16(device)
        if word in ("true", "false"):
            return word == "true"
        raise ValueError(f"amp_bf16 must be true, false or 'auto', got {amp_bf16!r}.")
    return bool(amp_bf16)


def amp_setting(amp_bf16: bool | str) -> bool | str:
    """An ``amp_bf16`` setting as an object stores it before it knows its device: a bool, or a string kept as given
    (resolved per call by :func:`resolve_amp_bf16`); a bad value is refused here, at construction."""
    resolve_amp_bf16(amp_bf16)
    return amp_bf16 if isinstance(amp_bf16, str) else bool(amp_bf16)


class AutocastInferer(Inferer):
    """Runs another inferer (default :class:`monai.inferers.SimpleInferer`) under bf16 autocast on the inputs' device,
    when :func:`resolve_amp_bf16` says so; otherwise it is that inferer unchanged.

    For CPU training, where MONAI's ``SupervisedTrainer(amp=True)`` autocasts for CUDA only: the forward pass runs in
    bf16 and the backward pass follows autocast's casts; a bf16 output is returned as float32; parameters, gradients and the optimiser stay float32 (bf16
    has float32's exponent range, so no gradient scaling is needed). The loss is computed by the trainer on the
    network's output as returned.

    Args:
        inferer: the inferer to wrap.
        amp_bf16: ``True``, ``False`` or ``"auto"`` (bf16 where it is native on the device, see :func:`native_bf16`).
    """

    def __init__(self, inferer: Inferer | None = None, amp_bf16: bool | str = "auto") -> None:
        super().__init__()
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.amp_bf16 = amp_setting(amp_bf16)
        self._announced: set[str] = set()

    def enabled(self, device: torch.device | str) -> bool:
        """Whether calls with inputs on ``device`` run under bf16 autocast."""
        return resolve_amp_bf16(self.amp_bf16, device)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        device = inputs.device
        on = self.enabled(device)
        if device.type not in self._announced:
            self._announced.add(device.type)
            logger.info("%s: bf16 autocast %s on %s", type(self).__name__, "on" if on else "off", device.type)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on):
            out = self.inferer(inputs, network, *args, **kwargs)
        if on and isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16:
            out = out.float()  # the loss and metrics see float32, as without autocast
        return out
