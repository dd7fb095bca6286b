"""Nexus-INR losses: eq. 9, 11, 18, 19, segmentation CE and the weighted total of eq. 26."""

import math

import pytest
import torch
import torch.nn.functional as F

from monai_inr.errors import InputError
from monai_inr.losses import NexusLoss, cmfa_loss, fdl_loss, kd_loss, segmentation_loss, sr_loss, t2_self_loss


def test_kd_loss_is_mean_squared_l2_distance_with_stop_gradient():
    z2 = torch.tensor([[[1.0, 2.0], [0.0, 0.0]]], requires_grad=True)
    z1 = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]], requires_grad=True)
    loss = kd_loss(z2, z1)
    # ||(1, 2)||^2 = 5, ||(-3, -4)||^2 = 25, mean over B * K = 2 points
    assert math.isclose(float(loss.detach()), (5.0 + 25.0) / 2)
    loss.backward()
    assert z1.grad is None and z2.grad is not None
    z1b = z1.detach().clone().requires_grad_(True)
    kd_loss(z2, z1b, stop_gradient=False).backward()
    assert z1b.grad is not None


def test_t2_self_and_sr_losses():
    pred = torch.tensor([[[1.0], [3.0]]])
    target = torch.tensor([[[0.0], [1.0]]])
    assert math.isclose(float(t2_self_loss(pred, target)), (1 + 4) / 2)
    p = torch.tensor([[[1.0, 0.0], [1.0, 2.0]]])
    t = torch.zeros(1, 2, 2)
    assert math.isclose(float(sr_loss(p, t)), 1.0 + 1.0)  # L1 mean per modality (1 and 1), summed


def test_cmfa_uses_means_over_points():
    z1 = torch.tensor([[[1.0, 0.0], [3.0, 0.0]]])  # mean (2, 0)
    z2 = torch.tensor([[[0.0, 1.0], [0.0, -3.0]]])  # mean (0, -1)
    assert math.isclose(float(cmfa_loss(z1, z2)), (2 + 1) / 2)
    # per-point differences that cancel in the mean give zero
    assert float(cmfa_loss(z1, z1.flip(1))) == 0.0


def test_fdl_is_zero_for_a_perfect_classifier_and_ln2_for_chance():
    big = 50.0
    l1 = torch.tensor([[[big, -big]] * 3])
    l2 = torch.tensor([[[-big, big]] * 3])
    assert float(fdl_loss(l1, l2)) < 1e-6
    assert math.isclose(float(fdl_loss(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))), 2 * math.log(2), rel_tol=1e-6)


def test_segmentation_loss_and_label_range():
    s = torch.randn(2, 5, 3)
    lab = torch.randint(0, 3, (2, 5))
    expected = 0.5 * (F.cross_entropy(s.reshape(-1, 3), lab.reshape(-1)) * 2)
    torch.testing.assert_close(segmentation_loss(s, s, lab), expected)
    with pytest.raises(InputError, match="labels must lie in 0..2"):
        segmentation_loss(s, s, torch.full((2, 5), 4))


def test_total_loss_weights_and_missing_labels():
    k = 4
    out = {
        "pred": torch.ones(1, k, 2), "t2_self": torch.zeros(1, k, 1),
        "z2_fused": torch.ones(1, k, 3), "z1_teacher": torch.zeros(1, k, 3),
        "z1_shared": torch.ones(1, k, 3), "z2_shared": torch.zeros(1, k, 3),
        "cls1": torch.zeros(1, k, 2), "cls2": torch.zeros(1, k, 2),
        "seg1": torch.zeros(1, k, 3), "seg2": torch.zeros(1, k, 3),
    }
    tgt = {"target": torch.zeros(1, k, 2), "seg": torch.zeros(1, k, dtype=torch.long)}
    w = dict(lambda_seg=0.3, lambda_aux=2.0, lambda_kd=0.5, lambda_t2self=0.25, lambda_cmfa=0.1, lambda_fdl=1.0)
    loss = NexusLoss(**w)
    total = float(loss(out, tgt))
    sr, kd, t2, cm, fd, seg = 2.0, 3.0, 0.0, 1.0, 2 * math.log(2), math.log(3)
    expected = sr + 0.3 * seg + 2.0 * (0.5 * kd + 0.25 * t2 + 0.1 * cm + 1.0 * fd)
    assert math.isclose(total, expected, rel_tol=1e-6)
    assert math.isclose(loss.last_terms["kd"], kd) and math.isclose(loss.last_terms["seg"], seg, rel_tol=1e-6)
    with pytest.raises(InputError, match="no tumour labels"):
        loss(out, {"target": tgt["target"], "seg": None})
    # without the optional outputs only L_SR remains
    assert math.isclose(float(NexusLoss(**w)({"pred": out["pred"]}, {"target": tgt["target"]})), sr)
