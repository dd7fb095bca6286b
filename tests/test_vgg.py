"""In-house VGG-16 (no torchvision): layout, taps, classifier head, batch-norm variant and its recalibration."""

import pytest
import torch

from monai_inr.engines.batch_norm import recalibrate_batch_norm
from monai_inr.networks.vgg import VGG16, VGG16_TAPS


def test_layout_matches_configuration_d_and_torchvision_indices():
    net = VGG16(width=64)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert convs[0].in_channels == 1 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.features) == 5
    assert net.tap_index == VGG16_TAPS
    for name, idx in VGG16_TAPS.items():
        assert isinstance(net.features[idx], torch.nn.ReLU), name
    # torchvision's vgg16().features has 14,714,688 parameters with an RGB input; one input channel saves 2 * 64 * 9
    assert sum(p.numel() for p in net.features.parameters()) == 14_714_688 - 2 * 64 * 9


def test_taps_shapes_and_early_exit():
    net = VGG16(width=4, taps=("relu1_2", "relu2_2", "relu3_3", "relu4_3")).eval()
    x = torch.rand(2, 1, 40, 24)
    feats = net.extract(x)
    assert [tuple(f.shape) for f in feats] == [(2, 4, 40, 24), (2, 8, 20, 12), (2, 16, 10, 6), (2, 32, 5, 3)]
    assert [net.tap_channels(n) for n in net.taps] == [4, 8, 16, 32]
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in net.features]
    net.extract(x, ["relu1_2"])
    assert len(calls) == VGG16_TAPS["relu1_2"] + 1
    for h in hooks:
        h.remove()
    with pytest.raises(ValueError, match="unknown VGG-16 taps"):
        net.extract(x, ["conv9"])
    with pytest.raises(ValueError, match="expects"):
        net.extract(torch.rand(1, 3, 8, 8))


def test_classifier_any_size_and_batch_norm_taps():
    net = VGG16(width=2, num_classes=3, batch_norm=True)
    assert net(torch.rand(2, 1, 33, 47)).shape == (2, 3)
    assert isinstance(net.features[net.tap_index["relu2_2"]], torch.nn.ReLU)
    assert isinstance(net.features[net.tap_index["relu2_2"] - 1], torch.nn.BatchNorm2d)
    assert [f.shape[1] for f in net.extract(torch.rand(1, 1, 32, 32))] == [2, 4, 8, 16]


def test_input_standardisation():
    net = VGG16(width=2, input_mean=0.5, input_std=0.25)
    x = torch.full((1, 1, 4, 4), 0.75)
    assert torch.allclose(net.standardize(x), torch.ones_like(x))
    assert "input_mean" not in net.state_dict()


def test_batch_norm_recalibration_gives_population_statistics():
    torch.manual_seed(0)
    net = VGG16(width=2, batch_norm=True)
    data = [(torch.rand(4, 1, 32, 32) * (i + 1), None) for i in range(3)]
    n = recalibrate_batch_norm(net, data)
    assert n == 3
    bn = net.features[1]
    with torch.no_grad():
        first = net.features[0](net.standardize(torch.cat([d[0] for d in data])))
    assert torch.allclose(bn.running_mean, first.mean(dim=(0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1 and net.training


def test_rotation_pretext_labels():
    from monai.data import MetaTensor

    from monai_inr.data.sodium import num_pretraining_classes
    from monai_inr.transforms.pretext import PretextLabeld

    t = PretextLabeld("image", task="rotation")
    t.set_random_state(0)
    img = MetaTensor(torch.arange(16.0).reshape(1, 4, 4))
    seen = set()
    for _ in range(20):
        d = t({"image": img, "label": 0})
        k = d["label"]
        seen.add(k)
        assert torch.equal(d["image"].as_tensor(), torch.rot90(img.as_tensor(), k, dims=(-2, -1)))
    assert seen == {0, 1, 2, 3} and num_pretraining_classes("rotation") == 4
    rect = PretextLabeld("image", task="rotation")
    for _ in range(10):
        d = rect({"image": torch.rand(1, 3, 5), "label": 0})
        assert d["image"].shape == (1, 3, 5) and d["label"] in (0, 2)
    same = PretextLabeld("image", task="modality")({"image": img, "label": 1})
    assert same["label"] == 1 and same["image"] is img


def test_plain_network_has_no_batch_norm_and_sees_the_images_unchanged():
    """The plain VGG-16 of ArRFR's public code: no batch normalisation, no input standardisation."""
    torch.manual_seed(0)
    plain = VGG16(width=2, batch_norm=False, standardize_input=False).eval()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    assert plain.tap_index == VGG16_TAPS
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(plain.standardize(x), x)
    h = x
    for layer in list(plain.features)[: VGG16_TAPS["relu2_2"] + 1]:
        h = layer(h)
    assert torch.equal(plain.extract(x, ["relu2_2"])[0], h)
    standardised = VGG16(width=2, batch_norm=False).eval()
    standardised.load_state_dict(plain.state_dict())
    assert not torch.allclose(standardised.extract(x, ["relu2_2"])[0], h)
