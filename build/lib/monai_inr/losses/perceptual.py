"""Perceptual feature and style (Gram-matrix) losses with a frozen in-house VGG-16, and ArRFR's two-modality sum.

J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", ECCV 2016
(feature reconstruction and style reconstruction losses); K. Yang, ArRFR (2025), section 3.3, eqs. 4-8.

For a VGG tap ``phi_i`` with ``c_i x h_i x w_i`` activations:

* feature loss (eq. 4): ``||phi_i(pred) - phi_i(target)||_2^2 / (c_i h_i w_i)``, on relu2_2 (``i = 2``) as in the
  paper and in Johnson et al.'s super-resolution experiments;
* Gram matrix (eq. 5): ``G_i = psi_i psi_i^T / (c_i h_i w_i)`` with ``psi_i`` the ``c_i x (h_i w_i)`` reshaped map;
* style loss (eq. 6): ``sum_i ||G_i(pred) - G_i(target)||_F^2`` over relu1_2, relu2_2, relu3_3, relu4_3;
* ArRFR (eq. 7): ``L_k = l_feat_Na L_feat(pred, Na) + l_style_Na L_style(pred, Na) + l_feat_T2 L_feat(pred, T2w)
  + l_style_T2 L_style(pred, T2w)``; the training loss (eq. 8) averages ``L_k`` over the down-sampling factors
  ``k`` (done by the training step, :class:`monai_inr.engines.arrfr.ArRFRTrainingStep`).

Batch reduction: the mean over the batch of the per-image losses above.

Loss weights: the paper gives none. The defaults are the authors' public configuration (YkyYuki/ArRFR at 725b5ab,
methods note section 6): feature Na 6, feature T2w 4, style T2w 10, style Na 0 (:data:`ARRFR_DEFAULT_WEIGHTS`).

The VGG features of the prediction are computed once per call and shared by all four terms; the targets' features are
computed without gradient (the public code recomputes the output's features for every term).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.loss import _Loss

__all__ = ["gram_matrix", "feature_loss", "style_loss", "PerceptualStyleLoss", "FusionPerceptualLoss",
           "ARRFR_DEFAULT_WEIGHTS"]

#: the authors' public configuration (the paper states no values)
ARRFR_DEFAULT_WEIGHTS: dict[str, float] = {
    "feature_sodium": 6.0,
    "feature_t2w": 4.0,
    "style_sodium": 0.0,
    "style_t2w": 10.0,
}


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``psi psi^T / (c h w)`` per image: ``(B, C, *spatial)`` -> ``(B, C, C)`` (Johnson et al. 2016, eq. 3)."""
    b, c = features.shape[:2]
    psi = features.reshape(b, c, -1)
    return torch.bmm(psi, psi.transpose(1, 2)) / float(psi.shape[1] * psi.shape[2])


def feature_loss(pred_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Normalised squared Euclidean distance ``||a - b||^2 / (c h w)``, averaged over the batch."""
    if pred_features.shape != target_features.shape:
        raise ValueError(f"feature shapes differ: {tuple(pred_features.shape)} vs {tuple(target_features.shape)}.")
    return torch.mean((pred_features - target_features) ** 2)


def style_loss(pred_features: Sequence[torch.Tensor], target_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_i ||G_i(pred) - G_i(target)||_F^2`` over the given taps, averaged over the batch."""
    total = None
    for p, t in zip(pred_features, target_features):
        d = gram_matrix(p) - gram_matrix(t)
        term = (d**2).sum(dim=(1, 2)).mean()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("style_loss needs at least one feature tap.")
    return total


def _freeze(vgg: nn.Module) -> nn.Module:
    vgg.eval()
    for p in vgg.parameters():
        p.requires_grad_(False)
    return vgg


class PerceptualStyleLoss(_Loss):
    """Feature + style loss of one prediction against one target with a frozen feature extractor.

    Args:
        vgg: a :class:`~monai_inr.networks.vgg.VGG16` (anything with ``extract(x, taps) -> list``); frozen here
            (``eval()``, no gradients) and kept frozen.
        feature_layers: taps of the feature loss (summed; ``("relu2_2",)`` as eq. 4).
        style_layers: taps of the style loss (eq. 6).
        feature_weight, style_weight: weights of the two terms.
    """

    def __init__(
        self,
        vgg: nn.Module,
        feature_layers: Sequence[str] = ("relu2_2",),
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        feature_weight: float = 1.0,
        style_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.vgg = _freeze(vgg)
        self.feature_layers = tuple(feature_layers)
        self.style_layers = tuple(style_layers)
        self.taps = tuple(dict.fromkeys(self.feature_layers + self.style_layers))
        self.feature_weight = float(feature_weight)
        self.style_weight = float(style_weight)

    def train(self, mode: bool = True):  # the extractor stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.taps, self.vgg.extract(x, self.taps)))

    def terms(self, pred_feats: Mapping[str, torch.Tensor], target_feats: Mapping[str, torch.Tensor]) -> dict:
        feat = sum(feature_loss(pred_feats[n], target_feats[n]) for n in self.feature_layers)
        style = style_loss([pred_feats[n] for n in self.style_layers], [target_feats[n] for n in self.style_layers])
        return {"feature": feat, "style": style}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tf = self.features(target)
        t = self.terms(self.features(pred), tf)
        return self.feature_weight * t["feature"] + self.style_weight * t["style"]


class FusionPerceptualLoss(PerceptualStyleLoss):
    """ArRFR's loss for one down-sampling factor (eq. 7): feature and style losses of the fused output against the
    input sodium and against the T2w, weighted.

    Args:
        vgg: the frozen VGG-16 (pre-trained on sodium and T2w slices).
        weights: ``{"feature_sodium", "feature_t2w", "style_sodium", "style_t2w"}``; missing keys take
            :data:`ARRFR_DEFAULT_WEIGHTS` (the public code's 6 / 4 / 0 / 10).
        feature_layers, style_layers: see :class:`PerceptualStyleLoss`.

    ``forward(pred, sodium, t2w)`` -> scalar; :meth:`components` returns the four unweighted terms as well.
    """

    def __init__(
        self,
        vgg: nn.Module,
        weights: Mapping[str, float] | None = None,
        feature_layers: Sequence[str] = ("relu2_2",),
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    ) -> None:
        super().__init__(vgg, feature_layers, style_layers)
        w = dict(ARRFR_DEFAULT_WEIGHTS)
        unknown = sorted(set(weights or {}) - set(w))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; valid keys: {sorted(w)}.")
        w.update({k: float(v) for k, v in (weights or {}).items()})
        if any(v < 0 for v in w.values()) or not any(v > 0 for v in w.values()):
            raise ValueError(f"loss weights must be >= 0 with at least one positive, got {w}.")
        self.weights = w

    def target_features(self, sodium: torch.Tensor, t2w: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        """VGG features of both targets, without gradient (reusable across the down-sampling factors)."""
        with torch.no_grad():
            return {"sodium": self.features(sodium), "t2w": self.features(t2w)}

    def components(
        self, pred: torch.Tensor, sodium: torch.Tensor | None = None, t2w: torch.Tensor | None = None,
        targets: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"feature_sodium", "style_sodium", "feature_t2w", "style_t2w", "loss"}`` (``loss`` weighted, eq. 7)."""
        if targets is None:
            if sodium is None or t2w is None:
                raise ValueError("pass sodium and t2w, or their precomputed target features.")
            targets = self.target_features(sodium, t2w)
        pf = self.features(pred)
        out: dict[str, torch.Tensor] = {}
        for key in ("sodium", "t2w"):
            t = self.terms(pf, targets[key])
            out[f"feature_{key}"], out[f"style_{key}"] = t["feature"], t["style"]
        out["loss"] = sum(self.weights[k] * out[k] for k in ARRFR_DEFAULT_WEIGHTS)
        return out

    def forward(  # type: ignore[override]
        self, pred: torch.Tensor, sodium: torch.Tensor, t2w: torch.Tensor
    ) -> torch.Tensor:
        return self.components(pred, sodium, t2w)["loss"]
