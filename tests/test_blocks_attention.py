"""CBAM (channel + spatial attention) and sine layers of monai_inr.networks.blocks."""

import math

import pytest
import torch

from monai_inr.networks.blocks import CBAM, ChannelAttention, Sine, SineLayer, SpatialAttention


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_cbam_shapes_and_gating_range(dims):
    torch.manual_seed(0)
    x = torch.rand(2, 8, *([6] * dims)) + 0.1
    block = CBAM(dims, 8, reduction=4, spatial_kernel=3)
    y = block(x)
    assert y.shape == x.shape
    assert torch.all(y <= x + 1e-6) and torch.all(y >= 0)  # two sigmoid gates in (0, 1) on positive input
    res = CBAM(dims, 8, reduction=4, spatial_kernel=3, residual=True)
    res.load_state_dict(block.state_dict())
    assert torch.allclose(res(x), x + y)


def test_channel_attention_shared_mlp_over_avg_and_max():
    torch.manual_seed(1)
    ca = ChannelAttention(2, channels=6, reduction=2)
    x = torch.randn(3, 6, 5, 4)
    expected = torch.sigmoid(ca.mlp(x.mean((2, 3), keepdim=True)) + ca.mlp(x.amax((2, 3), keepdim=True)))
    assert torch.allclose(ca.weights(x), expected)
    assert ca.mlp[0].out_channels == 3
    se = ChannelAttention(2, 6, 2, use_max_pool=False)
    assert torch.allclose(se.weights(x), torch.sigmoid(se.mlp(x.mean((2, 3), keepdim=True))))
    assert ChannelAttention(3, 4, reduction=16).mlp[0].out_channels == 1  # at least one hidden channel


@pytest.mark.parametrize("kernel", [3, 7])
def test_spatial_attention_kernel_and_descriptor(kernel):
    torch.manual_seed(2)
    sa = SpatialAttention(2, kernel)
    assert sa.conv.kernel_size == (kernel, kernel) and sa.conv.in_channels == 2
    x = torch.randn(1, 5, 9, 9)
    desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    assert torch.allclose(sa.weights(x), torch.sigmoid(sa.conv(desc)))
    with pytest.raises(ValueError):
        SpatialAttention(2, 4)


def test_sine_layers():
    assert torch.allclose(Sine(2.0)(torch.tensor([math.pi / 4])), torch.tensor([1.0]))
    lin = SineLayer(3, 4)
    x = torch.randn(5, 3)
    assert torch.allclose(lin(x), torch.sin(lin.linear(x)))
    conv = SineLayer(3, 4, spatial_dims=2, omega=30.0, init="siren", is_first=True)
    assert conv.linear.weight.abs().max() <= 1 / 3
    assert SineLayer(4, 4, spatial_dims=2, omega=30.0, init="siren").linear.weight.abs().max() <= math.sqrt(6 / 4) / 30
    assert conv(torch.randn(1, 3, 4, 4)).shape == (1, 4, 4, 4)
    with pytest.raises(ValueError):
        SineLayer(3, 4, init="xavier")
