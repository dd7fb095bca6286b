"""External VGG-16 weights (torchvision-style or the project's own keys) into the in-house VGG16: exact round trips,
the RGB -> grey reduction of the first convolution, and one-sentence refusals that name the file."""

import pytest
import torch

from monai_inr.errors import InputError
from monai_inr.networks.vgg import VGG16
from monai_inr.networks.vgg_weights import convert_vgg16_state_dict, load_vgg16_weights

# torchvision vgg16().features: indices of the 13 convolutions
TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _torchvision_state(width: int = 4, in_channels: int = 3, seed: int = 0) -> dict:
    """A ``vgg16().state_dict()``-like dict at ``width`` (random weights, torchvision's 224x224 classifier)."""
    g = torch.Generator().manual_seed(seed)
    state, c = {}, in_channels
    for i, out in zip(TORCHVISION_CONVS, (1, 1, 2, 2, 4, 4, 4, 8, 8, 8, 8, 8, 8)):
        state[f"features.{i}.weight"] = torch.randn(out * width, c, 3, 3, generator=g)
        state[f"features.{i}.bias"] = torch.randn(out * width, generator=g)
        c = out * width
    state["classifier.0.weight"] = torch.randn(16, c * 7 * 7, generator=g)
    state["classifier.0.bias"] = torch.zeros(16)
    state["classifier.6.weight"] = torch.randn(1000, 16, generator=g)
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def _plain(width: int = 4, in_channels: int = 1) -> VGG16:
    return VGG16(in_channels=in_channels, width=width, batch_norm=False, standardize_input=False)


def test_torchvision_state_dict_loads_exactly_and_freezes(tmp_path):
    state = _torchvision_state(in_channels=1)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    net = load_vgg16_weights(_plain(), path)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    for conv, i in zip(convs, TORCHVISION_CONVS):
        assert torch.equal(conv.weight, state[f"features.{i}.weight"])
        assert torch.equal(conv.bias, state[f"features.{i}.bias"])
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    # and back: the plain network's features keys are torchvision's, a save/load round trip is exact
    again = tmp_path / "again.pth"
    torch.save(net.state_dict(), again)
    other = load_vgg16_weights(_plain(), again)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))


def test_rgb_first_convolution_is_summed_over_the_input_channels(tmp_path):
    state = _torchvision_state(in_channels=3)
    # first-layer weights on a 2^-10 grid: their sum over the 3 channels is exact in float32, so the identity below is
    # exact in arithmetic and the float64 comparison checks it to rounding (a float32 run differed by 1.6e-4 relative
    # after 10 layers of random weights, from summation order and the rounding of the summed weights alone)
    state["features.0.weight"] = torch.round(state["features.0.weight"] * 1024) / 1024
    path = tmp_path / "rgb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # DataParallel checkpoint
    grey = load_vgg16_weights(_plain(), path)
    assert torch.equal(grey.features[0].weight, state["features.0.weight"].sum(dim=1, keepdim=True))
    rgb = _plain(in_channels=3).eval()
    rgb.load_state_dict(convert_vgg16_state_dict(state, rgb))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for a, b in zip(grey.double().extract(x), rgb.double().extract(x.repeat(1, 3, 1, 1))):  # grey x == RGB (x, x, x)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-6)


def test_batch_norm_file_loads_into_the_batch_norm_network(tmp_path):
    torch.manual_seed(0)
    src = VGG16(width=2, batch_norm=True, num_classes=4)
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path / "vgg.pt"
    torch.save(src.state_dict(), path)  # the bundle's own models/vgg.pt, head included
    net = load_vgg16_weights(VGG16(width=2, batch_norm=True, num_classes=4), path)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), net.state_dict().values()))


def _write(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case, network, message", [
    ("width", dict(width=8), "set vgg_width 4"),
    ("bn_file", dict(width=2), "set vgg_batch_norm true"),
    ("plain_file", dict(width=4, batch_norm=True), "set vgg_batch_norm false"),
    ("few_convs", dict(width=4), "holds 12 convolutions, a VGG-16 has 13"),
    ("other_network", dict(width=4), "holds no VGG-16 convolutions"),
    ("channels", dict(width=4, in_channels=2), "3 input channels, the network 2"),
    ("non_finite", dict(width=4), "non-finite weights"),
    ("pickled_module", dict(width=4), "weights_only=True"),
    ("missing", dict(width=4), "weights file not found"),
])
def test_a_mismatched_file_is_refused_with_one_sentence_naming_it(tmp_path, case, network, message):
    state = _torchvision_state()
    if case == "bn_file":
        obj = VGG16(width=2, batch_norm=True).state_dict()
    elif case == "few_convs":
        obj = {k: v for k, v in state.items() if not k.startswith("features.28.")}
    elif case == "other_network":
        obj = {"encoder_sodium.head.weight": torch.zeros(4, 1, 3, 3), "decoder.mlp.0.weight": torch.zeros(4, 4)}
    elif case == "non_finite":
        state["features.5.weight"][0, 0, 0, 0] = float("nan")
        obj = state
    elif case == "pickled_module":
        obj = VGG16(width=4)
    else:
        obj = state
    path = tmp_path / f"{case}.pth" if case == "missing" else _write(tmp_path, f"{case}.pth", obj)
    net = VGG16(**{"standardize_input": False, **network})
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(InputError) as err:
        load_vgg16_weights(net, path)
    sentence = str(err.value)
    assert str(path) in sentence and message in sentence, sentence
    assert "\n" not in sentence and sentence.endswith(".") and sentence.count(". ") == 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # nothing half-loaded
