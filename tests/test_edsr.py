"""EDSR-baseline encoder (Lim et al. 2017, no upsampling): shapes, registry, parameter count, receptive field."""

import pytest
import torch

from monai_inr.networks.encoders import ENCODERS, EDSR, get_encoder


def test_edsr_keeps_spatial_size_2d_and_3d_and_any_aspect_ratio():
    net2 = EDSR(spatial_dims=2, in_channels=1, features=8, num_blocks=2)
    assert net2(torch.rand(2, 1, 11, 17)).shape == (2, 8, 11, 17)
    net3 = EDSR(spatial_dims=3, in_channels=2, features=4, num_blocks=1, out_channels=6)
    assert net3(torch.rand(1, 2, 5, 6, 7)).shape == (1, 6, 5, 6, 7)
    assert net3.out_channels == 6 and net2.out_channels == 8


def test_edsr_is_registered_case_insensitively():
    assert ENCODERS["edsr"] is EDSR
    assert isinstance(get_encoder("EDSR", features=4, num_blocks=1), EDSR)
    assert isinstance(get_encoder("edsr", features=4, num_blocks=1), EDSR)
    with pytest.raises(ValueError, match="EDSR"):
        get_encoder("nope")


def test_edsr_arrfr_configuration_parameter_count():
    # ArRFR: 1 -> 128 channels, 16 residual blocks, no upsampler: head 1*128*9+128, 33 convs 128*128*9+128
    net = EDSR(spatial_dims=2, in_channels=1, features=128, num_blocks=16)
    n = sum(p.numel() for p in net.parameters())
    assert n == (9 * 128 + 128) + 33 * (128 * 128 * 9 + 128) == 4_871_552
    assert net.receptive_radius == 34


def test_edsr_receptive_radius_is_exact():
    torch.manual_seed(0)
    net = EDSR(spatial_dims=2, features=4, num_blocks=2).eval()
    r = net.receptive_radius
    x = torch.rand(1, 1, 2 * r + 9, 2 * r + 9)
    c = x.shape[-1] // 2
    with torch.no_grad():
        base = net(x)[0, :, c, c]
        far, near = x.clone(), x.clone()
        far[0, 0, c, c + r + 1] += 1.0
        near[0, 0, c, c + r] += 1.0
        assert torch.allclose(net(far)[0, :, c, c], base)
        assert not torch.allclose(net(near)[0, :, c, c], base)


def test_edsr_global_residual_and_res_scale():
    net = EDSR(features=4, num_blocks=1, res_scale=0.1)
    assert net.blocks[0].res_scale == pytest.approx(0.1)
    with pytest.raises(ValueError):
        EDSR(spatial_dims=1)
