"""Losses: k-space (Dual-ArbNet), perceptual fusion (ArRFR), Nexus-INR auxiliary losses and the multi-contrast MSE."""

from monai_inr.losses.kspace import KSpaceLoss, L1KSpaceLoss, kspace_mask

__all__ = ["KSpaceLoss", "L1KSpaceLoss", "kspace_mask"]

from monai_inr.losses.perceptual import (
    ARRFR_DEFAULT_WEIGHTS,
    FusionPerceptualLoss,
    PerceptualStyleLoss,
    feature_loss,
    gram_matrix,
    style_loss,
)

__all__ += [
    "ARRFR_DEFAULT_WEIGHTS",
    "FusionPerceptualLoss",
    "PerceptualStyleLoss",
    "feature_loss",
    "gram_matrix",
    "style_loss",
]

from monai_inr.losses.nexus import NexusLoss, cmfa_loss, fdl_loss, kd_loss, segmentation_loss, sr_loss, t2_self_loss

__all__ += ["NexusLoss", "cmfa_loss", "fdl_loss", "kd_loss", "segmentation_loss", "sr_loss", "t2_self_loss"]

from monai_inr.losses.multi_contrast import MultiContrastMSELoss

__all__ += ["MultiContrastMSELoss"]
