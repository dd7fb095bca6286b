"""Dual-ArbNet network: shapes, the LR-side/HR-side equivalences, nearest geometry, reference handling, ablations."""

import pytest
import torch
import torch.nn.functional as F

from monai_inr import coords
from monai_inr.networks import DualArbNet, ImplicitFusionDecoder
from monai_inr.networks.dual_arbnet_blocks import unfolded_conv
from monai_inr.networks.nets.dual_arbnet import PAPER_ENCODER, nearest_indices, relative_coordinates


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(encoder_kwargs=dict(num_blocks=1, num_layers=2, features=8, growth=8), hidden=8, skip_hidden=8, reduction=4)


def tiny(**kw):
    torch.manual_seed(0)
    return DualArbNet(**{**TINY, **kw}).eval()


def test_paper_configuration_sizes():
    net = DualArbNet()
    enc = net.encoder
    assert len(enc.blocks) == 5 and len(enc.blocks[0].layers) == 10
    assert enc.blocks[0].growth == 64 and enc.out_channels == 64 and enc.spatial_dims == 2
    dec = net.decoder
    assert dec.fusion_channels == 128 and dec.hidden == 64 and len(dec.fusion) == 5 and len(dec.idf) == 5
    assert dec.project_target.in_channels == 9 * 64  # 3x3 unfolding
    assert dec.code_channels == 4  # 1/S_tar, 1/S_ref, relative (i, j)
    assert PAPER_ENCODER["num_blocks"] == 5


def test_forward_shapes_any_reference_resolution():
    net = tiny()
    x = torch.rand(2, 1, 10, 12)
    for ref_shape in [(10, 12), (25, 30), (7, 9)]:
        y = net(x, torch.rand(2, 1, *ref_shape), output_shape=(25, 30))
        assert y.shape == (2, 1, 25, 30)
    assert net(x, torch.rand(2, 1, 10, 12), scale=1.5).shape == (2, 1, 15, 18)
    t, r = net(x, torch.rand(2, 1, 20, 24), output_shape=(20, 24), return_reference=True)
    assert t.shape == r.shape == (2, 1, 20, 24)
    # no reference: the target is its own LR reference (shape checks / TorchScript export)
    assert torch.allclose(net(x, output_shape=(20, 24)), net(x, x, output_shape=(20, 24)))


def test_complex_two_channels_and_single_contrast_ablation():
    net = tiny(in_channels=2)
    assert net(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 16, 16), output_shape=(16, 16)).shape == (1, 2, 16, 16)
    abl = tiny(use_reference=False)
    assert abl.decoder.project_reference is None and abl.decoder.fusion_channels == 8
    x = torch.rand(1, 1, 8, 8)
    y1 = abl(x, torch.rand(1, 1, 16, 16), output_shape=(16, 16))
    y2 = abl(x, torch.rand(1, 1, 5, 5), output_shape=(16, 16))
    assert torch.equal(y1, y2)  # the reference is ignored
    with pytest.raises(ValueError, match="use_reference"):
        abl(x, output_shape=(16, 16), return_reference=True)
    for kw in (dict(use_scale=False), dict(use_coord=False), dict(use_scale=False, use_coord=False)):
        assert tiny(**kw)(x, x, output_shape=(12, 12)).shape == (1, 1, 12, 12)


def test_channel_mismatch_is_an_error():
    net = tiny()
    with pytest.raises(ValueError, match="1 channels but the reference has 2"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 2, 8, 8))


def test_unfolded_conv_equals_unfold_then_1x1():
    torch.manual_seed(1)
    x = torch.rand(2, 5, 7, 6)
    conv = torch.nn.Conv2d(45, 4, 1)
    explicit = conv(F.unfold(x, 3, padding=1).view(2, 45, 7, 6))
    assert torch.allclose(unfolded_conv(x, conv), explicit, atol=1e-5)


def test_lr_side_projection_equals_projection_after_nearest_upsampling():
    """The point-wise maps commute with nearest up-sampling: paper order (upsample, then 1x1) == ours."""
    torch.manual_seed(2)
    dec = ImplicitFusionDecoder(feature_channels=4, hidden=3, num_layers=1, skip_hidden=5, reduction=1)
    f = torch.rand(1, 4, 5, 6)
    out = (11, 14)
    ih, iw = nearest_indices(5, 11), nearest_indices(6, 14)
    up = F.unfold(f, 3, padding=1).view(1, 36, 5, 6)[:, :, ih][:, :, :, iw]  # unfold, then nearest up-sample
    paper = dec.project_target(up)
    ours = dec.fusion_projection(f)[:, :, ih][:, :, :, iw]
    assert torch.allclose(paper, ours, atol=1e-5)
    paper_skip = dec.skip_out(torch.sin(dec.skip_in(up)))
    assert torch.allclose(paper_skip, dec.skip(f)[:, :, ih][:, :, :, iw], atol=1e-5)
    assert out == (11, 14)


@pytest.mark.parametrize("n_in, n_out", [(8, 16), (8, 12), (6, 36), (7, 10), (10, 10)])
def test_nearest_indices_and_relative_coordinates(n_in, n_out):
    idx = nearest_indices(n_in, n_out)
    centres = coords.normalized_grid((n_out,))[:, 0].double()
    lr_centres = coords.normalized_grid((n_in,))[:, 0].double()
    dist = (centres[:, None] - lr_centres[None, :]).abs()
    best = dist.min(dim=1).values
    assert torch.allclose(dist[torch.arange(n_out), idx], best, atol=1e-9)  # idx is a nearest cell (ties allowed)
    rel = relative_coordinates(n_in, n_out, dtype=torch.float64)
    assert rel.abs().max() <= 1 + 1e-9
    assert torch.allclose(rel, (centres - lr_centres[idx]) * n_in, atol=1e-9)
    ref = F.interpolate(torch.arange(n_in, dtype=torch.float32)[None, None], size=n_out, mode="nearest-exact")
    non_tie = ((2 * torch.arange(n_out) + 1) * n_in) % (2 * n_out) != 0
    assert torch.equal(ref[0, 0].long()[non_tie], idx[non_tie])


def test_reference_coordinates_path_matches_same_fov_path():
    net = tiny()
    x, r = torch.rand(1, 1, 8, 9), torch.rand(1, 1, 12, 14)
    out = (16, 18)
    grid = coords.normalized_grid(out, flatten=False)  # HR pixel centres; same FOV => same normalised frame
    a = net(x, r, output_shape=out)
    b = net(x, r, output_shape=out, ref_coord=grid[None])
    assert torch.allclose(a, b, atol=1e-6)
    # explicit ref_scale = the shape-derived one gives the same result
    s_ref = ((16 * 18) / (12 * 14)) ** 0.5
    assert torch.allclose(a, net(x, r, output_shape=out, ref_scale=s_ref), atol=1e-6)


def test_gradients_and_detached_reference():
    net = DualArbNet(**TINY, detach_reference=True)
    x, r = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16, requires_grad=True)
    net(x, r, output_shape=(16, 16)).abs().mean().backward()
    assert r.grad is None  # the reference branch of the encoder runs without gradient
    assert net.decoder.project_reference.weight.grad is not None
    assert net.encoder.sfe1.weight.grad is not None  # trained through the target
