"""LIIF network (Chen et al. 2021), the Dual-ArbNet bundle's single-contrast comparison row: sizes, the reference
protocol, slice-wise inference geometry, and that it learns."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_inr import coords
from monai_inr.inferers import SliceWiseInferer
from monai_inr.networks.nets import LIIF

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_decoder_and_edsr_baseline_sizes():
    net = LIIF(encoder_kwargs={"features": 64, "num_blocks": 16})
    dec = sum(p.numel() for p in net.decoder.parameters())
    # 3x3-unfolded 64-channel code + relative coordinate (2) + cell (2) -> 256, three 256 -> 256, 256 -> 1
    assert dec == (64 * 9 + 4) * 256 + 256 + 3 * (256 * 256 + 256) + 256 + 1
    enc = sum(p.numel() for p in net.encoder.parameters())
    assert 1.1e6 < enc < 1.3e6  # EDSR-baseline without its upsampler (about 1.2 M)


def _tiny(**kw):
    return LIIF(encoder="EDSR", encoder_kwargs={"features": 8, "num_blocks": 1}, decoder_hidden=16, decoder_layers=3,
                **kw)


def test_reference_is_ignored_and_output_grid_is_honoured():
    torch.manual_seed(0)
    net = _tiny().eval()
    x = torch.rand(2, 1, 9, 11)
    with torch.no_grad():
        a = net(x, output_shape=(20, 17))
        b = net(x, torch.rand(2, 1, 30, 30), output_shape=(20, 17), ref_scale=1.0)
        c = net(x, scale=2.0)
    assert a.shape == (2, 1, 20, 17) and torch.equal(a, b)
    assert c.shape == (2, 1, 18, 22)
    with pytest.raises(ValueError, match="expects"):
        net(torch.rand(1, 2, 8, 8))


def test_slicewise_inference_keeps_the_field_of_view():
    torch.manual_seed(1)
    net = _tiny().eval()
    aff = np.array([[0.0, 0.0, 2.0, -20.0], [0.0, 1.5, 0.0, 5.0], [-3.0, 0.0, 0.0, 30.0], [0, 0, 0, 1]])
    vol = MetaTensor(torch.rand(1, 1, 8, 10, 3), affine=torch.as_tensor(aff))
    out = SliceWiseInferer(slice_axis=2, scale=2.5)(vol, net)
    assert tuple(out.shape) == (1, 1, 20, 25, 3)
    expected = coords.fov_affine(aff, (8, 10, 3), (20, 25, 3))
    np.testing.assert_allclose(np.asarray(out.affine), expected, atol=1e-9)


def test_learns_a_smooth_image():
    torch.manual_seed(2)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 24), indexing="ij")
    hr = (0.5 + 0.3 * torch.sin(3 * yy) * torch.cos(2 * xx))[None, None]
    lr = torch.nn.functional.avg_pool2d(hr, 2)
    net = _tiny()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (net(lr, output_shape=(24, 24)) - hr).abs().mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
