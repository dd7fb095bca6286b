"""The ArRFR training step (Yang 2025): self-supervised multi-factor fusion of sodium and T2w MRI.

:class:`ArRFRStep` is the ignite ``iteration_update`` of :class:`monai.engines.SupervisedTrainer` (training) and
:class:`monai.engines.SupervisedEvaluator` (validation loss): for each down-sampling factor ``k`` the network sees
the factor-``k`` degraded sodium and T2w and is queried on the original grid; ``L = mean_k L_k`` (eq. 8). The data
lists are in :mod:`monai_inr.data.sodium`, the up-front checks in :mod:`monai_inr.engines.checks`, the loaders and
the pre-training label in :mod:`monai_inr.transforms`, and the experiments behind the choices in
``bundles/arrfr/docs/README.md``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

from monai_inr.inferers.precision import amp_setting, resolve_amp_bf16
from monai_inr.transforms.multiscale import lr_key, lr_query_grid

__all__ = ["ArRFRStep"]


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

    ``amp_bf16`` (``True``/``False``/``"auto"``, :func:`~monai_inr.inferers.precision.resolve_amp_bf16`) runs the
    network's forward pass under bf16 autocast; the loss stays float32.

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
        amp_bf16: bool | str = False,
    ) -> None:
        self.scales = tuple(float(k) for k in scales)
        self.loss_function = loss_function
        self.sodium_key, self.t2w_key, self.degraded_key = sodium_key, t2w_key, degraded_key
        self.per_scale_step = bool(per_scale_step)
        self.train = bool(train)
        self.amp_bf16 = amp_setting(amp_bf16)

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
        amp = resolve_amp_bf16(self.amp_bf16, sodium.device)
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
                with torch.autocast(sodium.device.type, dtype=torch.bfloat16, enabled=amp):
                    values = net(na, t2, coord=coord, cell=cell)
                values = values.float()  # the perceptual loss runs in float32
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
