"""ArSSR network: size, encode/decode contract, forward with and without coordinates, TorchScript export."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from monai_inr import coords
from monai_inr.networks.encoders import RDN, ResCNN, SRResNet
from monai_inr.networks.nets import ArSSR

SMALL = {"num_blocks": 2, "num_layers": 2, "features": 8, "growth": 4}


def small_net(**kw) -> ArSSR:
    torch.manual_seed(0)
    kw.setdefault("encoder_kwargs", SMALL)
    return ArSSR(feature_channels=12, decoder_hidden=16, **kw).eval()


def test_paper_configuration():
    net = ArSSR()
    assert isinstance(net.encoder, RDN)
    assert sum(p.numel() for p in net.encoder.parameters()) == 5_918_784
    assert sum(p.numel() for p in net.decoder.parameters()) == 364_676
    assert net.receptive_radius == 28 and net.decoder.in_features == 131
    assert isinstance(ArSSR("rescnn").encoder, ResCNN) and isinstance(ArSSR("SRResNet").encoder, SRResNet)


def test_decode_is_trilinear_lookup_plus_coordinate():
    net = small_net()
    img = torch.rand(2, 1, 6, 7, 5)
    c = torch.rand(2, 9, 3) * 2.2 - 1.1  # some outside the FOV: border padding
    with torch.no_grad():
        feats = net.encode(img)
        assert feats.shape == (2, 12, 6, 7, 5) and feats.dtype == torch.float32
        expected = net.decoder(torch.cat([coords.sample_features(feats, c), c], -1))
        torch.testing.assert_close(net.decode(feats, c), expected)
        torch.testing.assert_close(net(img, c), expected)
        # lookup in another frame, coordinate input unchanged
        torch.testing.assert_close(net.decode(feats, c, lookup_coord=c), expected)


def test_forward_without_coord_is_the_cell_centred_grid():
    net = small_net()
    img = torch.rand(1, 1, 5, 6, 4)
    with torch.no_grad():
        full = net(img, scale=(2.0, 1.5, 2.5), chunk_size=50)
        assert full.shape == (1, 1, 10, 9, 10)
        grid = coords.normalized_grid((10, 9, 10)).unsqueeze(0)
        torch.testing.assert_close(full.reshape(1, -1), net(img, grid)[..., 0])
        assert net(img).shape == (1, 1, 10, 12, 8)  # default scale 2


def test_training_path_backpropagates():
    net = small_net(output_activation=None).train()
    img = torch.rand(2, 1, 6, 6, 6)
    c = torch.rand(2, 20, 3) * 2 - 1
    loss = (net(img, c) - 0.5).abs().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_encoder_module_and_errors():
    enc = ResCNN(3, 1, 12, features=4, num_blocks=1, convs_per_block=1)
    net = ArSSR(encoder=enc, feature_channels=12, decoder_hidden=8)
    assert net.encoder is enc and net.receptive_radius == enc.receptive_radius
    with pytest.raises(ValueError, match="encoder_kwargs"):
        ArSSR(encoder=enc, encoder_kwargs={"features": 4})
    with pytest.raises(ValueError, match="valid names"):
        ArSSR(encoder="vit")


def test_torchscript_export_round_trip(tmp_path):
    """ckpt_export path: monai convert_to_torchscript in script mode; the scripted module reproduces forward(image)
    at another input size and scale than the verification's. Tracing is refused (it would freeze the output size)."""
    from monai.networks.utils import convert_to_torchscript

    net = small_net()
    img = torch.rand(1, 1, 5, 6, 4)
    path = tmp_path / "model.ts"
    convert_to_torchscript(net, filename_or_obj=str(path), inputs=[img], verify=True, rtol=1e-5, atol=1e-6)
    loaded = torch.jit.load(str(path))
    other = torch.rand(1, 1, 7, 4, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(img), net(img))
        torch.testing.assert_close(loaded(other, scale=2.5), net(other, scale=2.5), rtol=1e-5, atol=1e-6)
        assert loaded(other, scale=2.5).shape == (1, 1, 18, 10, 15)
    with pytest.raises(RuntimeError, match="script mode"):
        convert_to_torchscript(net, use_trace=True, inputs=[img])


def test_input_skip_adds_the_trilinear_input_and_keeps_the_paper_default():
    torch.manual_seed(0)
    assert ArSSR("RDN", encoder_kwargs=SMALL).input_skip is False
    net = ArSSR("RDN", input_skip=True, encoder_kwargs=SMALL, feature_channels=12, decoder_hidden=16).eval()
    image = torch.rand(1, 1, 5, 6, 7)
    coord = torch.rand(1, 40, 3) * 2 - 1
    with torch.no_grad():
        features = net.encode(image)
        assert features.shape[1] == net.feature_channels + 1
        for p in net.decoder.parameters():  # no detail decoded: the output is the interpolated input, ReLU'd
            p.zero_()
        out = net(image, coord)
    expected = coords.sample_features(image, coord, mode="bilinear", padding_mode="border")
    torch.testing.assert_close(out, expected.clamp_min(0), atol=1e-6, rtol=1e-6)
    # the whole-grid path keeps the cell-centred output shape
    with torch.no_grad():
        assert net(image, scale=2.0).shape == (1, 1, 10, 12, 14)
    with pytest.raises(ValueError, match="out_channels == in_channels"):
        ArSSR("RDN", in_channels=2, out_channels=1, input_skip=True, encoder_kwargs=SMALL)


def test_cubic_input_skip_adds_the_cubic_interpolant():
    torch.manual_seed(0)
    net = ArSSR("RDN", input_skip="cubic", encoder_kwargs=SMALL, feature_channels=12, decoder_hidden=16,
                output_activation=None).eval()
    assert net.config["input_skip"] == "cubic" and net.receptive_radius >= net.prefilter_radius + 2
    image = torch.rand(1, 1, 9, 10, 11)
    coord = torch.rand(1, 60, 3) * 1.2 - 0.6  # away from the borders (scipy extends them differently)
    with torch.no_grad():
        for p in net.decoder.parameters():  # no detail decoded: the output is the cubic interpolant of the input
            p.zero_()
        out = net(image, coord)[0, :, 0].numpy()
    n = np.array(image.shape[2:])
    idx = ((coord[0].numpy() + 1) * n - 1) / 2
    expected = ndi.map_coordinates(image[0, 0].double().numpy(), idx.T, order=3, mode="reflect")
    np.testing.assert_allclose(out, expected, atol=1e-4)
    trilinear = coords.sample_features(image, coord)[0, :, 0].numpy()
    assert np.abs(out - trilinear).max() > 1e-2  # not the trilinear skip
    with pytest.raises(ValueError, match="'cubic'"):
        ArSSR("RDN", input_skip="quintic", encoder_kwargs=SMALL)
