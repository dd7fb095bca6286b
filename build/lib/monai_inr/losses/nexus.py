"""Nexus-INR training objective (Zhang et al., "Nexus-INR", arXiv:2508.03073, 2025, eq. 9, 11, 18, 19, 26).

* :func:`kd_loss` (eq. 9): voxel-level knowledge distillation, mean over the ``B * K`` query points of the squared
  L2 distance between the attention-fused T2w feature and the T1w shared feature; the T1w teacher is detached
  (stop-gradient) by default so the student moves towards the teacher and not the reverse;
* :func:`t2_self_loss` (eq. 11): mean squared error of the T2w self-reconstruction from its own (pre-attention)
  shared features;
* :func:`cmfa_loss` (eq. 18): L1 distance of the mean (over the query points of each sample) shared features of the
  two modalities, averaged over batch and channels;
* :func:`fdl_loss` (eq. 19): cross-entropy of the modality classifier on the specific features, per query point
  (T1w = class 0, T2w = class 1);
* :func:`segmentation_loss`: cross-entropy of both segmentation heads against the labels at the query points;
* :class:`NexusLoss` (eq. 26): ``L = L_SR + lambda_seg L_seg + lambda_aux L_aux`` with
  ``L_aux = lambda_KD L_KD + lambda_T2Self L_T2Self + lambda_CMFA L_CMFA + lambda_FDL L_FDL`` (eq. 12 inside);
  ``L_SR`` is the L1 error per modality summed over the two modalities. Terms of disabled modules are absent from the
  network output and contribute nothing.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_inr.errors import InputError

__all__ = ["kd_loss", "t2_self_loss", "cmfa_loss", "fdl_loss", "segmentation_loss", "sr_loss", "NexusLoss"]


def kd_loss(z2_fused: torch.Tensor, z1_shared: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """Eq. 9: ``1/(BK) sum_{b,k} ||z2_fused - z1_shared||_2^2`` for ``(B, K, C)`` features."""
    teacher = z1_shared.detach() if stop_gradient else z1_shared
    return (z2_fused - teacher).pow(2).sum(dim=-1).mean()


def t2_self_loss(t2_self: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 11: mean squared error of the T2w self-reconstruction ``(B, K)`` or ``(B, K, 1)`` against the target."""
    return F.mse_loss(t2_self.reshape(target.shape), target)


def cmfa_loss(z1_shared: torch.Tensor, z2_shared: torch.Tensor) -> torch.Tensor:
    """Eq. 18: ``|Mean(z1) - Mean(z2)|``, means over the K query points of each sample, L1 averaged over (B, C)."""
    return (z1_shared.mean(dim=1) - z2_shared.mean(dim=1)).abs().mean()


def fdl_loss(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """Eq. 19: ``CE(f_cls(z1_spec), 0) + CE(f_cls(z2_spec), 1)`` with per-query logits ``(B, K, 2)``."""
    t1 = torch.zeros(logits1.shape[:-1], dtype=torch.long, device=logits1.device)
    t2 = torch.ones(logits2.shape[:-1], dtype=torch.long, device=logits2.device)
    ce1 = F.cross_entropy(logits1.reshape(-1, 2), t1.reshape(-1))
    return ce1 + F.cross_entropy(logits2.reshape(-1, 2), t2.reshape(-1))


def segmentation_loss(seg1: torch.Tensor, seg2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the two segmentation heads ``(B, K, n_cls)`` against integer ``labels`` ``(B, K)``."""
    n = seg1.shape[-1]
    lab = labels.reshape(-1).long()
    if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= n):
        raise InputError(f"segmentation labels must lie in 0..{n - 1}, got values {int(lab.min())}..{int(lab.max())}.")
    return 0.5 * (F.cross_entropy(seg1.reshape(-1, n), lab) + F.cross_entropy(seg2.reshape(-1, n), lab))


def sr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_SR``: L1 per modality (last axis), summed over modalities."""
    return (pred - target).abs().reshape(-1, pred.shape[-1]).mean(dim=0).sum()


class NexusLoss(nn.Module):
    """Total objective of eq. 26 for a ``SupervisedTrainer`` (``loss_function(outputs, targets)``).

    ``outputs``: the dict of :meth:`monai_inr.networks.nets.NexusINR.forward`; ``targets``: a dict with ``target``
    ``(B, K, 2)`` (z-scored HR T1w, T2w at the query points) and, when the network returns segmentation logits,
    ``seg`` ``(B, K)`` integer labels. The individual terms of the last call are kept in :attr:`last_terms` (floats)
    for logging.

    Args:
        lambda_seg, lambda_aux: weights of eq. 26.
        lambda_kd, lambda_t2self: weights of eq. 12 (inside ``L_aux``).
        lambda_cmfa, lambda_fdl: weights of the multi-modal fusion terms (inside ``L_aux``).
        kd_stop_gradient: detach the T1w teacher in ``L_KD``.

    Raises:
        InputError: segmentation logits but no labels (segmentation-enhanced learning needs tumour labels).
    """

    def __init__(
        self,
        lambda_seg: float = 0.1,
        lambda_aux: float = 1.0,
        lambda_kd: float = 0.1,
        lambda_t2self: float = 0.5,
        lambda_cmfa: float = 0.1,
        lambda_fdl: float = 0.01,
        kd_stop_gradient: bool = True,
    ) -> None:
        super().__init__()
        self.lambda_seg, self.lambda_aux = float(lambda_seg), float(lambda_aux)
        self.lambda_kd, self.lambda_t2self = float(lambda_kd), float(lambda_t2self)
        self.lambda_cmfa, self.lambda_fdl = float(lambda_cmfa), float(lambda_fdl)
        self.kd_stop_gradient = bool(kd_stop_gradient)
        self.last_terms: dict[str, float] = {}

    def terms(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Every available term (unweighted)."""
        target = targets["target"]
        t: dict[str, torch.Tensor] = {"sr": sr_loss(outputs["pred"], target)}
        if "z2_fused" in outputs:
            t["kd"] = kd_loss(outputs["z2_fused"], outputs["z1_teacher"], self.kd_stop_gradient)
            t["t2self"] = t2_self_loss(outputs["t2_self"], target[..., 1:2])
        if "z1_shared" in outputs:
            t["cmfa"] = cmfa_loss(outputs["z1_shared"], outputs["z2_shared"])
            t["fdl"] = fdl_loss(outputs["cls1"], outputs["cls2"])
        if "seg1" in outputs:
            labels = targets.get("seg") if isinstance(targets, Mapping) else None
            if labels is None:
                raise InputError(
                    "segmentation-enhanced learning is on but the batch has no tumour labels; add a 'label' file to "
                    "every datalist item or set segmentation to false."
                )
            t["seg"] = segmentation_loss(outputs["seg1"], outputs["seg2"], labels)
        return t

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> torch.Tensor:
        t = self.terms(outputs, targets)
        aux = torch.zeros((), device=t["sr"].device, dtype=t["sr"].dtype)
        weights = {"kd": self.lambda_kd, "t2self": self.lambda_t2self, "cmfa": self.lambda_cmfa, "fdl": self.lambda_fdl}
        for key, w in weights.items():
            if key in t:
                aux = aux + w * t[key]
        total = t["sr"] + self.lambda_aux * aux
        if "seg" in t:
            total = total + self.lambda_seg * t["seg"]
        self.last_terms = {k: float(v.detach()) for k, v in t.items()} | {"total": float(total.detach())}
        return total
