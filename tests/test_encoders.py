"""Encoders: parameter counts, receptive radius, shapes, registry, and the memory-lean RDN forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_inr.networks.encoders import ENCODERS, RDN, ResCNN, SRResNet, get_encoder


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_paper_param_counts_and_radius():
    # ArSSR encoder (methods note section 2: ~5.92 M): sfe 1->64, 64->64; 8 RDB x 3 (64/128/192 -> 64, 1x1 256->64);
    # global fusion 1x1 512->64 + 3x3; last 3x3 64->128.
    rdn = RDN()
    assert n_params(rdn) == 5_918_784
    assert rdn.receptive_radius == 28 and rdn.out_channels == 128
    assert n_params(ResCNN()) == 2_214_912 and ResCNN().receptive_radius == 20
    assert n_params(SRResNet()) == 4_317_376 and SRResNet().receptive_radius == 39
    # Dual-ArbNet encoder: 2D RDN, 5 RDBs x 10 layers, no last conv -> 64 channels
    dual = RDN(spatial_dims=2, num_blocks=5, num_layers=10, out_channels=None)
    assert dual.out_channels == 64 and dual.out_conv is None


def _reference_rdn(net: RDN, x: torch.Tensor) -> torch.Tensor:
    """The textbook RDN forward with explicit concatenations, on the same weights."""
    conv = F.conv3d if x.ndim == 5 else F.conv2d
    f1 = net.sfe1(x)
    h = net.sfe2(f1)
    outs = []
    for block in net.blocks:
        dense = h
        for layer in block.layers:
            dense = torch.cat([dense, torch.relu(layer(dense))], 1)
        h = block.local_fusion(dense) + h
        outs.append(h)
    w = torch.cat([p.weight for p in net.global_fusion], 1)
    h = net.global_conv(conv(torch.cat(outs, 1), w, net.global_fusion[0].bias)) + f1
    return net.out_conv(h)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_rdn_equals_textbook_concat_forward_and_trains(spatial_dims):
    torch.manual_seed(0)
    net = RDN(spatial_dims, in_channels=2, out_channels=5, features=6, growth=4, num_blocks=3, num_layers=2)
    x = torch.randn(2, 2, *([9] * spatial_dims), requires_grad=True)
    y = net(x)
    assert y.shape == (2, 5, *([9] * spatial_dims))
    torch.testing.assert_close(y, _reference_rdn(net, x), rtol=1e-5, atol=1e-5)
    y.square().mean().backward()  # in-place ops must be autograd-safe
    assert all(p.grad is not None for p in net.parameters()) and x.grad is not None


@pytest.mark.parametrize(
    "net",
    [
        RDN(3, 1, 3, features=4, growth=3, num_blocks=2, num_layers=2),
        RDN(3, 1, None, features=4, growth=3, num_blocks=1, num_layers=3),
        ResCNN(3, 1, 3, features=4, num_blocks=1, convs_per_block=3),
        SRResNet(3, 1, 3, features=4, num_blocks=2),
        RDN(2, 1, 3, features=4, growth=3, num_blocks=2, num_layers=2),
    ],
    ids=["rdn", "rdn-no-out-conv", "rescnn", "srresnet", "rdn-2d"],
)
def test_receptive_radius_is_exact(net):
    """Perturbing one voxel changes the output exactly within receptive_radius of it (Chebyshev distance)."""
    torch.manual_seed(1)
    net = net.double().eval()
    # positive weights and biases keep every ReLU active, so no path can cancel and the influence region is exactly
    # the receptive field (random signs may zero the outermost ring by chance)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    nd = net.spatial_dims
    r = net.receptive_radius
    size = 2 * r + 5
    c = size // 2
    x = torch.rand(1, 1, *([size] * nd), dtype=torch.float64)
    x2 = x.clone()
    x2[(0, 0) + (c,) * nd] += 10.0
    with torch.no_grad():
        changed = (net(x2) - net(x)).abs().amax(1)[0] > 0
    idx = changed.nonzero()
    assert idx.numel() > 0
    for d in range(nd):
        assert idx[:, d].min().item() == c - r and idx[:, d].max().item() == c + r


def test_rescnn_broadcast_input_residual():
    torch.manual_seed(0)
    plain = ResCNN(3, 1, 6, features=4, num_blocks=1, convs_per_block=2)
    bcast = ResCNN(3, 1, 6, features=4, num_blocks=1, convs_per_block=2, broadcast_input_residual=True)
    bcast.load_state_dict(plain.state_dict())
    x = torch.rand(1, 1, 5, 6, 7)
    torch.testing.assert_close(bcast(x) - plain(x), x.expand(1, 6, 5, 6, 7))
    with pytest.raises(ValueError, match="broadcast_input_residual"):
        ResCNN(3, 2, 6, broadcast_input_residual=True)


@pytest.mark.parametrize(
    "name", ["RDN", "rdn", "Rdn", "ResCNN", "rescnn", "RESCNN", "SRResNet", "srresnet", "SRResnet", "SR-ResNet"]
)
def test_get_encoder_case_insensitive(name):
    enc = get_encoder(name, spatial_dims=3, in_channels=1, out_channels=7, features=4)
    assert type(enc) is ENCODERS[name.lower().replace("-", "")] and enc.out_channels == 7


def test_get_encoder_unknown_name_lists_valid():
    with pytest.raises(ValueError, match=r"Unknown encoder 'unet'.*RDN, ResCNN, SRResNet"):
        get_encoder("unet")


def test_shapes_2d_3d_and_bad_dims():
    x2 = torch.rand(3, 2, 11, 8)
    assert RDN(2, 2, 16, features=4, growth=4, num_blocks=1, num_layers=1)(x2).shape == (3, 16, 11, 8)
    assert SRResNet(2, 2, 5, features=4, num_blocks=1)(x2).shape == (3, 5, 11, 8)
    x3 = torch.rand(1, 1, 5, 6, 7)
    assert ResCNN(3, 1, 8, features=4, num_blocks=1, convs_per_block=1)(x3).shape == (1, 8, 5, 6, 7)
    with pytest.raises(ValueError, match="spatial_dims"):
        RDN(spatial_dims=1)
