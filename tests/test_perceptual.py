"""Perceptual feature and style losses (Johnson et al. 2016; ArRFR eqs. 4-7) with the in-house VGG-16."""

import pytest
import torch

from monai_inr.losses import (
    ARRFR_DEFAULT_WEIGHTS,
    FusionPerceptualLoss,
    PerceptualStyleLoss,
    feature_loss,
    gram_matrix,
    style_loss,
)
from monai_inr.networks.vgg import VGG16


def test_gram_matrix_formula():
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    psi = f.reshape(2, 3, 20)
    expected = torch.einsum("bci,bdi->bcd", psi, psi) / (3 * 4 * 5)
    assert torch.allclose(gram_matrix(f), expected)


def test_feature_and_style_losses_follow_the_equations():
    a, b = torch.randn(2, 3, 4, 5, dtype=torch.float64), torch.randn(2, 3, 4, 5, dtype=torch.float64)
    per_image = ((a - b) ** 2).sum(dim=(1, 2, 3)) / (3 * 4 * 5)
    assert torch.allclose(feature_loss(a, b), per_image.mean())
    a2, b2 = torch.randn(2, 6, 2, 2, dtype=torch.float64), torch.randn(2, 6, 2, 2, dtype=torch.float64)
    expected = sum(((gram_matrix(p) - gram_matrix(t)) ** 2).sum(dim=(1, 2)).mean() for p, t in [(a, b), (a2, b2)])
    assert torch.allclose(style_loss([a, a2], [b, b2]), expected)
    # the Gram matrix ignores where features are: a spatial shuffle has zero style loss, not zero feature loss
    perm = torch.randperm(20)
    shuffled = a.reshape(2, 3, 20)[..., perm].reshape(2, 3, 4, 5)
    assert float(style_loss([shuffled], [a])) < 1e-20 and float(feature_loss(shuffled, a)) > 0.1
    with pytest.raises(ValueError):
        feature_loss(a, a2)


def test_fusion_loss_weights_components_and_frozen_vgg():
    torch.manual_seed(0)
    vgg = VGG16(width=2)
    loss = FusionPerceptualLoss(vgg)
    assert loss.weights == ARRFR_DEFAULT_WEIGHTS == {"feature_sodium": 6.0, "feature_t2w": 4.0, "style_sodium": 0.0,
                                                     "style_t2w": 10.0}
    pred = torch.rand(2, 1, 24, 20, requires_grad=True)
    na, t2 = torch.rand(2, 1, 24, 20), torch.rand(2, 1, 24, 20)
    c = loss.components(pred, na, t2)
    weighted = 6 * c["feature_sodium"] + 4 * c["feature_t2w"] + 10 * c["style_t2w"]
    assert torch.allclose(c["loss"], weighted)
    assert torch.allclose(loss(pred, na, t2), weighted)
    # precomputed target features give the same value
    assert torch.allclose(loss.components(pred, targets=loss.target_features(na, t2))["loss"], c["loss"])
    c["loss"].backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vgg.parameters())
    loss.train()
    assert not vgg.training
    # identical images -> zero loss
    assert float(loss(na, na, na)) == pytest.approx(0.0, abs=1e-12)


def test_custom_weights_and_layers():
    vgg = VGG16(width=2)
    loss = FusionPerceptualLoss(vgg, {"style_sodium": 1.0}, feature_layers=["relu1_2", "relu3_3"],
                                style_layers=["relu1_2"])
    assert loss.weights["style_sodium"] == 1.0 and loss.weights["feature_sodium"] == 6.0
    x, y = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    f = dict(zip(["relu1_2", "relu3_3"], vgg.extract(x, ["relu1_2", "relu3_3"])))
    g = dict(zip(["relu1_2", "relu3_3"], vgg.extract(y, ["relu1_2", "relu3_3"])))
    c = loss.components(x, y, y)
    expected = feature_loss(f["relu1_2"], g["relu1_2"]) + feature_loss(f["relu3_3"], g["relu3_3"])
    assert torch.allclose(c["feature_sodium"], expected)
    with pytest.raises(ValueError, match="unknown loss weight"):
        FusionPerceptualLoss(vgg, {"pixel": 1.0})
    with pytest.raises(ValueError, match="at least one positive"):
        FusionPerceptualLoss(vgg, {k: 0.0 for k in ARRFR_DEFAULT_WEIGHTS})
    single = PerceptualStyleLoss(VGG16(width=2), feature_weight=2.0, style_weight=0.0)
    assert float(single(x, y)) > 0
