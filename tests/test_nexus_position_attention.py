"""Nexus-INR options: the absolute Fourier encoding of the target coordinate (Zhang et al., arXiv:2508.03073, 2025,
eq. 17) against the in-voxel one, and Swin-style shifted attention windows.

The main trap of an absolute encoding is the frame: a training patch's query must be encoded at its coordinate in the
whole volume, exactly as whole-volume inference encodes the same voxel."""

import math

import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.engines.prepare_batch import PrepareBatchNexus
from monai_inr.inferers.nexus import predict_volume
from monai_inr.networks.nets import NexusINR
from monai_inr.networks.nexus_blocks import (
    AbsoluteFourierEncoding,
    SubVoxelFourierEncoding,
    WindowCrossAttention,
    shifted_window_mask,
)
from monai_inr.transforms import RandNexusPatchd, ThickSliceAcquisition

TINY = dict(feature_channels=8, encoder_kwargs=dict(features=4, growth=4, num_blocks=1, num_layers=2),
            decoder_hidden=16, attention_heads=2, pe_frequencies=4)
SHAPE = (16, 16, 16)


def tiny(**kw):
    torch.manual_seed(0)
    return NexusINR(**{**TINY, **kw})


def _volumes():
    """HR T1w whose value is the voxel's linear index (so a training target names its voxel), HR T2w, their thick-slice
    LR acquisitions (T1w x2 along z, T2w x4 along y) and affines."""
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    hr1 = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    hr2 = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    lr1 = ThickSliceAcquisition(axis=2, factor=2)(hr1[None], affine=affine)
    lr2 = ThickSliceAcquisition(axis=1, factor=4)(hr2[None], affine=affine)
    return affine, hr1, hr2, lr1, lr2


def _sample(flip_prob, seed=5):
    affine, hr1, hr2, lr1, lr2 = _volumes()
    d = {"t1w": torch.from_numpy(hr1)[None], "t2w": torch.from_numpy(hr2)[None],
         "t1w_lr": torch.as_tensor(np.asarray(lr1)), "t2w_lr": torch.as_tensor(np.asarray(lr2))}
    t = RandNexusPatchd(hr_patch_size=(8, 8, 8), num_coords=60, min_foreground=0.0, flip_prob=flip_prob,
                        label_key=None, mask_key=None)
    t.set_random_state(seed)
    return t(d)


def _voxel_of(target_t1w):
    """Whole-volume voxel index (K, 3) named by the index-coded T1w target."""
    return np.stack(np.unravel_index(np.rint(target_t1w.numpy()).astype(np.int64), SHAPE), axis=-1)


# ------------------------------------------------------------------ the encodings


def test_absolute_encoding_shape_bands_and_values():
    enc = AbsoluteFourierEncoding(num_frequencies=5)
    assert enc.out_features == 2 * 3 * 5
    torch.testing.assert_close(enc.bands, math.pi * torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0]))
    x = torch.rand(2, 7, 3) * 2 - 1
    e = enc(x)
    assert e.shape == (2, 7, 30)
    # layout per axis: sin of the 5 bands, then cos of the 5 bands
    torch.testing.assert_close(e[..., :5], torch.sin(x[..., :1] * enc.bands))
    torch.testing.assert_close(e[..., 5:10], torch.cos(x[..., :1] * enc.bands))
    # absolute: no period inside the FOV (unlike the in-voxel encoding, periodic with one LR voxel)
    a, b = torch.tensor([[-0.5, 0.0, 0.25]]), torch.tensor([[0.5, 0.0, 0.25]])
    assert (enc(a) - enc(b)).abs().max() > 0.5
    inv = SubVoxelFourierEncoding(5)
    torch.testing.assert_close(inv(a * 8), inv(b * 8), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind, cls", [("absolute", AbsoluteFourierEncoding), ("in_voxel", SubVoxelFourierEncoding)])
def test_position_encoding_option_sets_the_module_and_the_decoder_width(kind, cls):
    net = tiny(position_encoding=kind, pe_frequencies=6)
    assert isinstance(net.pos_enc, cls) and net.position_encoding == kind
    assert net.decoders[0][0].in_features == net.decoders[1][0].in_features == 8 + 6 * 6


def test_position_encoding_value_is_checked_and_checkpoints_do_not_cross():
    with pytest.raises(ValueError, match="position_encoding"):
        tiny(position_encoding="relative")
    # a checkpoint of the in-voxel network does not load silently into the absolute one (different buffers)
    with pytest.raises(RuntimeError, match="pos_enc"):
        tiny().load_state_dict(tiny(position_encoding="in_voxel").state_dict())


def test_paper_parameter_count_is_unchanged_and_a_shifted_block_adds_one_attention_block():
    """The paper network (RDN 128, 4 x 256 decoder) is 24,423,114 parameters with either encoding: both have
    d_e = 24 and no parameters of their own. Shifted windows add the second (shifted) block: 4 C^2 + 8 C = 66,560."""
    n = {kw: sum(p.numel() for p in NexusINR(**dict([kw] if kw else [])).parameters())
         for kw in [None, ("position_encoding", "in_voxel"), ("shifted_windows", True)]}
    assert n[None] == 24_423_114
    assert n[("position_encoding", "in_voxel")] == 24_423_114
    assert n[("shifted_windows", True)] - n[None] == 4 * 128**2 + 8 * 128 == 66_560


# ------------------------------------------------------------------ patch vs whole volume


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_sampler_position_is_the_whole_volume_coordinate(flip_prob):
    s = _sample(flip_prob)
    assert s["position"].shape == s["coord"].shape == (60, 3)
    assert not torch.allclose(s["position"], s["coord"])  # the patch is not the whole volume
    want = coords.voxel_to_normalized(torch.from_numpy(_voxel_of(s["target"][:, 0])).double(), SHAPE).float()
    if flip_prob:  # flipped along every axis: the coordinate of the same voxel in the flipped volume
        want = -want
    torch.testing.assert_close(s["position"], want, atol=1e-6, rtol=0)


def test_prepare_batch_passes_the_position_to_the_network():
    s = _sample(0.0)
    batch = {k: v[None] for k, v in s.items()}
    t1, targets, args, kwargs = PrepareBatchNexus()(batch)
    assert len(args) == 3 and torch.equal(args[2], batch["position"])
    no_pos = PrepareBatchNexus()({k: v for k, v in batch.items() if k != "position"})
    assert no_pos[2][2] is None


class _Recorder:
    def __init__(self, module):
        self.out = []
        self.handle = module.register_forward_hook(lambda m, i, o: self.out.append(o.detach().reshape(-1, o.shape[-1])))


@pytest.mark.parametrize("kind", ["absolute", "in_voxel"])
@torch.no_grad()
def test_a_point_is_encoded_alike_from_a_training_patch_and_from_the_whole_volume(kind):
    """The training path (a patch from ``RandNexusPatchd``, through ``PrepareBatchNexus`` into the network) and
    ``predict_volume`` on the whole volume give the same encoding e_m to the same voxel, for both modalities."""
    net = tiny(position_encoding=kind).eval()
    s = _sample(0.0)
    t1, _, args, _ = PrepareBatchNexus()({k: v[None] for k, v in s.items()})
    rec = _Recorder(net.pos_enc)
    net(t1, *args)
    e_patch = rec.out[:2]  # T1w, T2w encodings of the K queries
    rec.out.clear()
    affine, _, _, lr1, lr2 = _volumes()
    predict_volume(net, np.asarray(lr1[0]), np.asarray(lr1.affine), np.asarray(lr2[0]), np.asarray(lr2.affine),
                   SHAPE, affine, tile_size=16)  # one tile: the rows are the voxels in C order
    rec.handle.remove()
    assert len(rec.out) == 2 and rec.out[0].shape[0] == int(np.prod(SHAPE))
    flat = np.ravel_multi_index(tuple(_voxel_of(s["target"][:, 0]).T), SHAPE)
    for m in range(2):
        torch.testing.assert_close(e_patch[m], rec.out[m][flat], atol=2e-5, rtol=0)
    if kind == "absolute":  # encoding the patch coordinate instead (the trap) would not match
        assert (net.pos_enc(s["coord"]) - rec.out[0][flat]).abs().max() > 0.1


def test_dense_mode_encodes_its_grid_as_the_whole_volume():
    net = tiny().eval()
    rec = _Recorder(net.pos_enc)
    with torch.no_grad():
        net(torch.randn(1, 2, 8, 4, 8))
    torch.testing.assert_close(rec.out[0], net.pos_enc(coords.normalized_grid((8, 4, 8))))


# ------------------------------------------------------------------ shifted windows


def _direct(att, q, kv, sl):
    """Plain multi-head attention among the voxels ``sl`` only (no windows, no mask), residual included."""
    qw = q[0][(slice(None),) + sl].reshape(att.channels, -1).T
    kw = kv[0][(slice(None),) + sl].reshape(att.channels, -1).T
    Q, K, V = att.to_q(att.norm_q(qw)), att.to_k(att.norm_kv(kw)), att.to_v(att.norm_kv(kw))
    hd = att.channels // att.num_heads
    heads = []
    for h in range(att.num_heads):
        c = slice(hd * h, hd * (h + 1))
        heads.append(torch.softmax(Q[:, c] @ K[:, c].T / math.sqrt(hd), dim=-1) @ V[:, c])
    return qw + att.proj(torch.cat(heads, dim=-1))


@torch.no_grad()
def test_shifted_window_attention_is_the_partition_shifted_by_half_a_window():
    torch.manual_seed(1)
    att = WindowCrossAttention(8, num_heads=2, window=4, shift=True).eval()
    assert att.shift == 2
    q, kv = torch.randn(1, 8, 8, 8, 8), torch.randn(1, 8, 8, 8, 8)
    out = att(q, kv)

    def check(sl):
        got = out[0][(slice(None),) + sl].reshape(8, -1).T
        torch.testing.assert_close(got, _direct(att, q, kv, sl), atol=1e-5, rtol=1e-5)

    check((slice(2, 6),) * 3)  # an interior shifted window
    check((slice(0, 2),) * 3)  # the clipped corner windows: the wrapped strips do not attend to each other
    check((slice(6, 8), slice(0, 2), slice(2, 6)))
    mask = shifted_window_mask([8, 8, 8], 4, 2, torch.device("cpu"))
    assert mask.shape == (8, 64, 64) and bool(mask[0].all()) and not bool(mask[-1].all())


@pytest.mark.parametrize("shifted, blocks, crosses", [(False, 1, False), (False, 2, False), (True, None, True)])
@torch.no_grad()
def test_information_crosses_a_window_border_only_with_shifted_windows(shifted, blocks, crosses):
    net = tiny(shifted_windows=shifted, attention_blocks=blocks).eval()
    assert net.shifted_windows == shifted
    torch.manual_seed(3)
    hr = {"shared1": torch.randn(1, 8, 8, 8, 8), "shared2": torch.randn(1, 8, 8, 8, 8)}
    ref = net.attend(hr)["fused2"]
    poked = dict(hr)
    poked["shared1"] = hr["shared1"].clone()
    # a T1w voxel of window [4:8]^3, next to the border at 4 (not a constant over channels: LayerNorm removes that)
    poked["shared1"][0, :, 4, 4, 4] = 3.0 * torch.randn(8)
    out = net.attend(poked)["fused2"]
    assert not torch.allclose(out[..., 4:, 4:, 4:], ref[..., 4:, 4:, 4:])  # its own window always changes
    neighbour = (slice(None), slice(None), slice(0, 4), slice(0, 4), slice(0, 4))  # window [0:4]^3
    assert (not torch.allclose(out[neighbour], ref[neighbour])) == crosses


def test_shifted_windows_need_two_blocks_and_a_window_of_two():
    with pytest.raises(ValueError, match="attention_blocks"):
        tiny(shifted_windows=True, attention_blocks=1)
    with pytest.raises(ValueError, match="window >= 2"):
        tiny(shifted_windows=True, attention_window=1)
    net = tiny(shifted_windows=True, attention_blocks=3)
    assert [b.shift for b in [net.attention, *net.extra_attention]] == [0, 2, 0]
    assert net.attention_halo == 4 and tiny().attention_halo == 0


@torch.no_grad()
def test_shifted_inference_equals_the_training_path_and_does_not_depend_on_the_tile_size(monkeypatch):
    """Output tiles read one window of attention context around them, so the shifted windows that straddle tile borders
    are whole and the tiled result equals the one-tile (training-path) result."""
    net = tiny(shifted_windows=True).eval()
    for block in (net.attention, *net.extra_attention):  # make the attention's share of the output clearly visible
        block.proj.weight.mul_(20.0)
    affine, _, _, lr1, lr2 = _volumes()
    x = [np.asarray(lr1[0]), np.asarray(lr2[0])]
    a = [np.asarray(lr1.affine), np.asarray(lr2.affine)]
    stats = [(v.mean(), v.std()) for v in x]

    def run(shape=SHAPE, tile=8):  # z-scored predictions (2, *shape)
        vol = predict_volume(net, x[0], a[0], x[1], a[1], shape, affine, tile_size=tile)
        return np.stack([(vol[m] - stats[m][0]) / stats[m][1] for m in range(2)])

    z = [torch.from_numpy((v - s[0]) / s[1])[None, None] for v, s in zip(x, stats)]
    dense = net(z[0], z[1], coords.normalized_grid(SHAPE)[None])["pred"][0].numpy().reshape(*SHAPE, 2)
    vol = run(tile=4)
    np.testing.assert_allclose(vol, np.moveaxis(dense, -1, 0), rtol=0, atol=5e-5)
    for tile in (8, 16):
        np.testing.assert_allclose(run(tile=tile), vol, rtol=0, atol=1e-5)
    # an output grid that is not a multiple of the window: tiles of 4 and 12 agree too
    np.testing.assert_allclose(run((14, 13, 15), 4), run((14, 13, 15), 12), rtol=0, atol=1e-5)
    # without the halo the tiles would cut the shifted windows (the check above can fail)
    monkeypatch.setattr(NexusINR, "attention_halo", property(lambda self: 0))
    assert np.abs(run(tile=4) - vol).max() > 1e-3
    monkeypatch.undo()
    # the shift matters: without it the same weights give another result
    net.extra_attention[0].shift = 0
    assert np.abs(run(tile=8) - vol).max() > 1e-3


@torch.no_grad()
def test_shifted_absolute_network_scripts_like_eager():
    net = tiny(shifted_windows=True, attention_window=2).eval()
    x = torch.rand(1, 2, 4, 6, 8)
    ts = torch.jit.script(net)
    assert sorted(ts.state_dict()) == sorted(net.state_dict())
    torch.testing.assert_close(ts(x), net(x), rtol=1e-4, atol=1e-5)
