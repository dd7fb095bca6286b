"""TorchScript export in script mode (``ckpt_export`` without ``--use_trace``, as the MONAI model-zoo CI runs it) for
every bundle's ``network_def``: the exported model equals the eager network at input sizes and scales that were never
seen at export time; tracing a network whose output size follows its input size is refused with one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export

from monai_inr.networks.nets import ArRFR, ArSSR, DualArbNet, MultiContrastINR, NexusINR

REPO = Path(__file__).resolve().parents[1]

#: tiny network overrides per bundle (the architecture of ``inference.json`` + ``quick.json``, smaller sizes)
TINY = {
    "arssr": {
        "encoder_kwargs": {"features": 8, "growth": 4, "num_blocks": 2, "num_layers": 2},
        "network_def#feature_channels": 8,
        "network_def#decoder_hidden": 16,
    },
    "dual_arbnet": {
        "encoder_kwargs": {"features": 8, "growth": 4, "num_blocks": 2, "num_layers": 2},
        "hidden": 8,
        "skip_hidden": 8,
        "reduction": 4,
        "fusion_layers": 2,
    },
    "arrfr": {"encoder_kwargs": {"num_blocks": 1}, "feature_channels": 8, "decoder_hidden": 16,
              "attention_reduction": 4},
    "multi_contrast_inr": {"encoding_kwargs": {"num_frequencies": 16}, "trunk_width": 16, "trunk_layers": 2,
                           "head_width": 8},
    "multi_contrast_inr_hashgrid": {
        "hashgrid_max_resolution": 32,
        "encoding_kwargs#num_levels": 4,
        "encoding_kwargs#log2_table_size": 8,
        "encoding_kwargs#base_resolution": 4,
        "trunk_width": 16,
        "head_width": 8,
    },
    "nexus_inr": {
        "encoder_kwargs": {"features": 8, "growth": 4, "num_blocks": 1, "num_layers": 2},
        "feature_channels": 8,
        "attention_heads": 2,
        "attention_window": 2,
        "decoder_hidden": 16,
    },
}


def _configs(bundle: str) -> list[str]:
    configs = REPO / "bundles" / bundle.replace("_hashgrid", "") / "configs"
    if bundle.startswith("multi_contrast_inr"):  # the paper's Fourier network, or the hash-grid overlay
        names = ["inference"] + (["hashgrid"] if bundle.endswith("_hashgrid") else [])
    else:
        names = ["inference", "quick"]
    return [str(configs / f"{n}.json") for n in names]


def _meta(bundle: str) -> str:
    return str(REPO / "bundles" / bundle.replace("_hashgrid", "") / "configs" / "metadata.json")


def _export(bundle: str, tmp_path: Path, **kwargs) -> tuple[torch.nn.Module, Path]:
    """The eager ``network_def`` (random weights saved as the checkpoint) and the path of its scripted export."""
    overrides = {"bundle_root": str(tmp_path), **TINY[bundle]}
    parser = ConfigParser()
    parser.read_config(_configs(bundle))
    parser.update(overrides)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=_meta(bundle),
        config_file=_configs(bundle), **overrides, **kwargs,
    )
    return net, ts


def _same(eager: torch.Tensor, scripted: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert tuple(eager.shape) == shape and tuple(scripted.shape) == shape
    torch.testing.assert_close(scripted, eager, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_arssr_script_export_any_size_and_scale(tmp_path):
    net, path = _export("arssr", tmp_path)
    assert isinstance(net, ArSSR)
    ts = torch.jit.load(str(path))
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    x = torch.rand(1, 1, 7, 6, 5)
    _same(net(x), ts(x), (1, 1, 14, 12, 10))  # the default x2
    _same(net(x, scale=[1.5, 2.0, 2.5]), ts(x, scale=[1.5, 2.0, 2.5]), (1, 1, 10, 12, 12))  # 10.5 -> 10 (ties to even)
    _same(net(x, scale=2.7), ts(x, None, 2.7), (1, 1, 19, 16, 14))
    coord = torch.rand(1, 9, 3) * 2 - 1  # the training path: values at arbitrary points
    _same(net(x, coord), ts(x, coord), (1, 9, 1))
    # the exported file carries the bundle's configs, as ckpt_export writes them
    extra = {"inference.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "monai_inr.networks.nets.ArSSR"


@torch.no_grad()
@pytest.mark.parametrize("skip", [True, "cubic"])
def test_arssr_input_skip_scripts(skip):
    net = ArSSR("RDN", feature_channels=8, decoder_hidden=16, input_skip=skip,
                encoder_kwargs={"features": 8, "growth": 4, "num_blocks": 1, "num_layers": 2}).eval()
    ts = torch.jit.script(net)
    x = torch.rand(2, 1, 5, 6, 7)
    _same(net(x, scale=1.7), ts(x, scale=1.7), (2, 1, 8, 10, 12))


@torch.no_grad()
def test_dual_arbnet_script_export_any_size_and_scale(tmp_path):
    net, path = _export("dual_arbnet", tmp_path)
    assert isinstance(net, DualArbNet)
    ts = torch.jit.load(str(path))
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    x, ref = torch.rand(1, 1, 9, 7), torch.rand(1, 1, 18, 14)
    _same(net(x, ref, scale=2.5), ts(x, ref, scale=2.5), (1, 1, 22, 18))
    _same(net(x, scale=[1.5, 3.0]), ts(x, scale=[1.5, 3.0]), (1, 1, 14, 21))
    _same(net(x, ref, output_shape=(20, 11)), ts(x, ref, [20, 11]), (1, 1, 20, 11))


@torch.no_grad()
def test_arrfr_script_export_any_size_and_scale(tmp_path):
    net, path = _export("arrfr", tmp_path)
    assert isinstance(net, ArRFR)
    ts = torch.jit.load(str(path))
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    pair = torch.rand(1, 2, 9, 7)
    _same(net(pair), ts(pair), (1, 1, 18, 14))
    _same(net(pair, scale=[1.5, 2.5]), ts(pair, scale=[1.5, 2.5]), (1, 1, 14, 18))  # 13.5 -> 14, 17.5 -> 18
    sodium, t2w = pair[:, :1], pair[:, 1:]
    _same(net(sodium, t2w, output_shape=(20, 11)), ts(sodium, t2w, [20, 11]), (1, 1, 20, 11))
    coord, cell = torch.rand(1, 6, 2) * 2 - 1, torch.full((1, 6, 2), 0.1)
    _same(net(pair, coord=coord, cell=cell), ts(pair, coord=coord, cell=cell), (1, 6, 1))


@pytest.mark.parametrize("bundle", ["multi_contrast_inr", "multi_contrast_inr_hashgrid"])
@torch.no_grad()
def test_multi_contrast_inr_script_export(bundle, tmp_path):
    net, path = _export(bundle, tmp_path)
    assert isinstance(net, MultiContrastINR)
    ts = torch.jit.load(str(path))
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    pts = torch.rand(2, 3, 5, 4) * 2.4 - 1.2  # also outside [-1, 1] (the hash grid clamps)
    _same(net(pts), ts(pts), (2, 2, 5, 4))


@torch.no_grad()
def test_nexus_inr_script_export(tmp_path):
    net, path = _export("nexus_inr", tmp_path)
    assert isinstance(net, NexusINR)
    ts = torch.jit.load(str(path))
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    x = torch.rand(1, 2, 4, 6, 8)
    _same(net(x), ts(x), (1, 2, 4, 6, 8))


@pytest.mark.parametrize(
    "bundle, shape", [("arssr", [1, 1, 8, 8, 8]), ("dual_arbnet", [1, 1, 8, 8]), ("arrfr", [1, 2, 8, 8])]
)
def test_trace_that_would_freeze_the_output_size_is_refused(bundle, shape, tmp_path):
    with pytest.raises(RuntimeError) as err:
        _export(bundle, tmp_path, use_trace=True, input_shape=shape)
    cause: BaseException | None = err.value
    while cause is not None and "script mode" not in str(cause):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, str(err.value)
    sentence = str(cause)
    assert "tracing" in sentence and "\n" not in sentence and sentence.endswith(")."), sentence
    assert not (tmp_path / "model.ts").exists()


_ENC = {"num_blocks": 1, "num_layers": 2, "growth": 4, "features": 8}
_HASH = {"num_levels": 3, "log2_table_size": 6, "base_resolution": 2, "max_resolution": 40}
VARIANTS = {  # constructor switches the bundles' defaults do not cover: (network, inputs, keyword arguments)
    "arssr_rescnn": (lambda: ArSSR("ResCNN", feature_channels=8, decoder_hidden=16,
                                   encoder_kwargs={"features": 8, "num_blocks": 1, "convs_per_block": 2}),
                     (torch.rand(1, 1, 5, 4, 6),), {"scale": 1.3}),
    "arssr_srresnet": (lambda: ArSSR("SRResNet", feature_channels=8, decoder_hidden=16,
                                     encoder_kwargs={"features": 8, "num_blocks": 2}),
                       (torch.rand(2, 1, 5, 4, 6),), {"scale": [1.0, 2.0, 3.0]}),
    "dual_arbnet_no_reference": (lambda: DualArbNet(encoder_kwargs=_ENC, hidden=8, fusion_layers=2, skip_hidden=8,
                                                    reduction=4, use_reference=False),
                                 (torch.rand(1, 1, 7, 5),), {"scale": 2.5}),
    "dual_arbnet_complex_no_scale_no_unfold": (
        lambda: DualArbNet(in_channels=2, encoder_kwargs=_ENC, hidden=8, fusion_layers=1, skip_hidden=8, reduction=4,
                           use_scale=False, unfold=False),
        (torch.rand(1, 2, 7, 5), torch.rand(1, 2, 5, 9)), {"scale": 1.7}),
    "arrfr_plain_liif": (lambda: ArRFR(feature_channels=8, encoder_kwargs={"num_blocks": 1}, use_attention=False,
                                       decoder_hidden=16, decoder_layers=2, feat_unfold=False, local_ensemble=False,
                                       cell_decode=False),
                         (torch.rand(2, 2, 7, 5),), {"scale": [1.5, 3.0]}),
    "multi_contrast_vanilla_hashgrid": (lambda: MultiContrastINR("vanilla", "hashgrid", encoding_kwargs=_HASH,
                                                                 trunk_width=16, trunk_layers=1),
                                        (torch.rand(1, 3, 4, 3) * 2 - 1,), {}),
    "multi_contrast_hashgrid_per_axis": (lambda: MultiContrastINR("split_head", "hashgrid",
                                                                  encoding_kwargs={**_HASH, "max_resolution": [24, 16, 6]},
                                                                  trunk_width=16, trunk_layers=1, head_width=8),
                                         (torch.rand(9, 3) * 2 - 1,), {}),
    "multi_contrast_separate_hashgrid": (lambda: MultiContrastINR("separate", "hashgrid", encoding_kwargs=_HASH,
                                                                  trunk_width=16, trunk_layers=1),
                                         (torch.rand(7, 3) * 2 - 1,), {}),
    "nexus_baseline": (lambda: NexusINR(feature_channels=8, encoder_kwargs=_ENC, dual_branch=False,
                                        cross_attention=False, segmentation=False, decoder_hidden=16,
                                        decoder_layers=2, normalize_features=False),
                       (torch.rand(1, 2, 3, 5, 4),), {}),
    "nexus_shared_encoder": (lambda: NexusINR(feature_channels=8, encoder_kwargs=_ENC, share_encoder_weights=True,
                                              attention_heads=2, attention_window=2, decoder_hidden=16,
                                              decoder_layers=2, segmentation=False),
                             (torch.rand(1, 2, 4, 2, 4),), {}),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@torch.no_grad()
def test_variants_script_like_eager(name):
    make, args, kwargs = VARIANTS[name]
    torch.manual_seed(0)
    net = make().eval()
    before = net(*args, **kwargs)
    ts = torch.jit.script(net)
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    torch.testing.assert_close(ts(*args, **kwargs), before, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net(*args, **kwargs), before)  # scripting left the eager network as it was


@pytest.mark.parametrize("name", ["arssr_rescnn", "dual_arbnet_no_reference", "arrfr_plain_liif",
                                  "multi_contrast_vanilla_hashgrid", "nexus_shared_encoder"])
def test_exports_run_with_autograd_enabled(name):
    """Called as users call a model (no ``torch.no_grad()``), repeatedly, at changing sizes: TorchScript's optimised
    graph from the second call on must not trip over the in-place activations."""
    make, args, kwargs = VARIANTS[name]
    torch.manual_seed(0)
    net = make().eval()
    ts = torch.jit.script(net)
    for _ in range(3):
        with torch.no_grad():
            want = net(*args, **kwargs)
        got = ts(*args, **kwargs)
        assert not got.requires_grad
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        args = tuple(torch.cat([a, a], dim=-1) for a in args) if "nexus" not in name else args


@torch.no_grad()
def test_export_of_a_checkpoint_that_carries_its_network(tmp_path):
    """Shipped weights are saved with their network definition in half precision (``save_network_checkpoint``):
    ``--key_in_ckpt model`` exports them (the README's note)."""
    from monai_inr.engines import save_network_checkpoint

    overrides = {"bundle_root": str(tmp_path), **TINY["arssr"]}
    parser = ConfigParser()
    parser.read_config(_configs("arssr"))
    parser.update(overrides)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    save_network_checkpoint(net, None, tmp_path / "model.pt")
    ckpt_export(net_id="network_def", filepath=str(tmp_path / "model.ts"), ckpt_file=str(tmp_path / "model.pt"),
                meta_file=_meta("arssr"), config_file=_configs("arssr"), key_in_ckpt="model", **overrides)
    ts = torch.jit.load(str(tmp_path / "model.ts"))
    net.load_state_dict({k: v.float() for k, v in torch.load(tmp_path / "model.pt", weights_only=True)["model"].items()})
    x = torch.rand(1, 1, 6, 5, 4)
    _same(net(x, scale=2.5), ts(x, scale=2.5), (1, 1, 15, 12, 10))


@pytest.mark.parametrize("n_in,n_out", [(5, 5), (7, 16), (16, 7), (3, 10)])
def test_torchscript_mirrors_equal_their_one_home(n_in, n_out):
    """The scriptable copies of the cell-centred frame helpers agree with ``coords`` and ``dual_arbnet`` exactly."""
    from monai_inr import coords
    from monai_inr.networks import export
    from monai_inr.networks.nets.dual_arbnet import nearest_indices, relative_coordinates

    cpu = torch.device("cpu")
    grid = export._normalized_grid([n_in, n_out, 3], cpu, torch.float32)
    assert torch.equal(grid, coords.normalized_grid((n_in, n_out, 3), flatten=False))
    assert torch.equal(export._nearest_indices(n_in, n_out, cpu), nearest_indices(n_in, n_out))
    torch.testing.assert_close(export._relative_coordinates(n_in, n_out, cpu), relative_coordinates(n_in, n_out))
