"""Nexus-INR network: ablation switches, windowed cross-attention, training/inference consistency, tiling."""

import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers.nexus import predict_subject, predict_volume
from monai_inr.losses import NexusLoss
from monai_inr.networks.nets import NexusINR
from monai_inr.networks.nets.nexus_inr import SubVoxelFourierEncoding, WindowCrossAttention
from monai_inr.transforms import ThickSliceAcquisition

TINY = dict(feature_channels=8, encoder_kwargs=dict(features=4, growth=4, num_blocks=1, num_layers=2),
            decoder_hidden=16, attention_heads=2, pe_frequencies=4)


def tiny(**kw):
    torch.manual_seed(0)
    return NexusINR(**{**TINY, **kw})


ABLATION = {
    "baseline": dict(dual_branch=False, cross_attention=False, segmentation=False),
    "mmf": dict(dual_branch=True, cross_attention=False, segmentation=False),
    "kd_attn": dict(dual_branch=True, cross_attention=True, segmentation=False),
    "full": dict(dual_branch=True, cross_attention=True, segmentation=True),
}


@pytest.mark.parametrize("name", list(ABLATION))
def test_ablation_switches_change_modules_and_outputs(name):
    net = tiny(**ABLATION[name])
    t1, t2 = torch.randn(2, 1, 8, 8, 4), torch.randn(2, 1, 8, 2, 8)
    c = torch.rand(2, 30, 3) * 2 - 1
    out = net(t1, t2, c)
    assert out["pred"].shape == (2, 30, 2)
    flags = ABLATION[name]
    assert ("cls1" in out) == flags["dual_branch"] and ("z1_shared" in out) == flags["dual_branch"]
    assert ("z2_fused" in out) == flags["cross_attention"] and ("t2_self" in out) == flags["cross_attention"]
    assert ("seg1" in out) == flags["segmentation"]
    assert (net.encoder_spec is not None) == flags["dual_branch"]
    assert (net.attention is not None) == flags["cross_attention"]
    if flags["segmentation"]:
        assert out["seg1"].shape == (2, 30, 3)
    loss = NexusLoss()
    total = loss(out, {"target": torch.randn(2, 30, 2), "seg": torch.randint(0, 3, (2, 30))})
    total.backward()
    assert set(loss.last_terms) >= {"sr", "total"}
    assert ("kd" in loss.last_terms) == flags["cross_attention"]
    # every parameter of an enabled module gets a gradient (nothing dangling)
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == [], unused


def test_window_attention_is_local_and_matches_a_direct_computation():
    torch.manual_seed(1)
    att = WindowCrossAttention(8, num_heads=2, window=2).eval()
    q, kv = torch.randn(1, 8, 4, 4, 4), torch.randn(1, 8, 4, 4, 4)
    out = att(q, kv)
    # direct multi-head attention for the first window (voxels [0:2]^3)
    qw = q[0, :, :2, :2, :2].reshape(8, -1).T
    kw = kv[0, :, :2, :2, :2].reshape(8, -1).T
    Q, K, V = att.to_q(att.norm_q(qw)), att.to_k(att.norm_kv(kw)), att.to_v(att.norm_kv(kw))
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        w = torch.softmax(Q[:, sl] @ K[:, sl].T / 2.0, dim=-1)
        heads.append(w @ V[:, sl])
    direct = qw + att.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(out[0, :, :2, :2, :2].reshape(8, -1).T, direct, atol=1e-5, rtol=1e-5)
    # changing the context outside the first window leaves it unchanged, and changes another window
    kv2 = kv.clone()
    kv2[:, :, 2:, 2:, 2:] = torch.randn(1, 8, 2, 2, 2)
    out2 = att(q, kv2)
    torch.testing.assert_close(out2[..., :2, :2, :2], out[..., :2, :2, :2])
    assert not torch.allclose(out2[..., 2:, 2:, 2:], out[..., 2:, 2:, 2:])
    with pytest.raises(ValueError, match="multiple of the attention window"):
        att(torch.randn(1, 8, 3, 4, 4), torch.randn(1, 8, 3, 4, 4))


def test_channel_mismatch_is_a_clear_error():
    net = tiny()
    with pytest.raises(ValueError, match="mismatched channel count"):
        net(torch.randn(1, 2, 8, 8, 4), torch.randn(1, 1, 8, 2, 8), torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="both modalities"):
        net(torch.randn(1, 1, 8, 8, 8))
    assert net(torch.randn(1, 2, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_kd_teacher_is_detached():
    net = tiny(dual_branch=False, segmentation=False)
    out = net(torch.randn(1, 1, 8, 8, 4), torch.randn(1, 1, 8, 2, 8), torch.rand(1, 20, 3) * 2 - 1)
    from monai_inr.losses import kd_loss

    out["z1_teacher"].retain_grad()
    kd_loss(out["z2_fused"], out["z1_teacher"]).backward()
    # no gradient reaches the teacher through the target (T1w features still get one through the attention keys)
    assert out["z1_teacher"].grad is None or float(out["z1_teacher"].grad.abs().sum()) == 0.0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.encoder_shared[1].parameters())


def _pair(seed=0, shape=(16, 16, 16)):
    rng = np.random.default_rng(seed)
    hr1 = rng.normal(size=shape).astype(np.float32) + 3.0
    hr2 = rng.normal(size=shape).astype(np.float32) * 2.0 - 1.0
    affine = np.diag([1.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    lr1 = ThickSliceAcquisition(axis=2, factor=2)(hr1[None], affine=affine)
    lr2 = ThickSliceAcquisition(axis=1, factor=4)(hr2[None], affine=affine)
    return affine, (np.asarray(lr1[0]), np.asarray(lr1.affine)), (np.asarray(lr2[0]), np.asarray(lr2.affine))


def test_training_forward_equals_whole_volume_inference_on_aligned_grids():
    """The patch path (trilinear up-sampling of the LR maps) and the world-coordinate tiled path agree."""
    net = tiny().eval()
    affine, (x1, a1), (x2, a2) = _pair()
    assert x1.shape == (16, 16, 8) and x2.shape == (16, 4, 16)
    s1, s2 = (x1.mean(), x1.std()), (x2.mean(), x2.std())
    z1 = torch.from_numpy((x1 - s1[0]) / s1[1])[None, None]
    z2 = torch.from_numpy((x2 - s2[0]) / s2[1])[None, None]
    grid = coords.normalized_grid((16, 16, 16))[None]
    with torch.no_grad():
        dense = net(z1, z2, grid)["pred"][0].numpy().reshape(16, 16, 16, 2)
    vol = predict_volume(net, x1, a1, x2, a2, (16, 16, 16), affine, tile_size=8)
    np.testing.assert_allclose(vol[0], dense[..., 0] * s1[1] + s1[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(vol[1], dense[..., 1] * s2[1] + s2[0], rtol=1e-4, atol=1e-4)
    # the tile size does not change the result (the attention windows are aligned to the output grid)
    vol2 = predict_volume(net, x1, a1, x2, a2, (16, 16, 16), affine, tile_size=4)
    np.testing.assert_allclose(vol, vol2, rtol=1e-5, atol=1e-5)
    # nor does block-wise encoding with a halo (blocks of at most 700 voxels incl. halo: several per axis)
    vol3 = predict_volume(net, x1, a1, x2, a2, (16, 16, 16), affine, tile_size=8, encoder_voxel_budget=700)
    np.testing.assert_allclose(vol, vol3, rtol=1e-5, atol=1e-5)


def test_encode_tiled_equals_whole_volume_encoding():
    from monai_inr.inferers.nexus import encode_tiled

    net = tiny().eval()
    x = torch.randn(1, 1, 41, 30, 12)
    calls = []
    original = net.encode_modality

    def counting(v, m):
        calls.append(tuple(v.shape[2:]))
        return original(v, m)

    with torch.no_grad():
        whole = net.encode_modality(x, 1)
        net.encode_modality = counting
        tiled = encode_tiled(net, x, 1, max_voxels=6000)
    assert len(calls) > 4 and max(int(np.prod(c)) for c in calls) < x.numel()
    assert tiled.shape == whole.shape == (1, 16, 41, 30, 12)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_positional_encoding_is_periodic_with_the_lr_voxel_and_continuous():
    enc = SubVoxelFourierEncoding(3)
    v = torch.tensor([[0.3, 1.49999, 2.0]])
    assert enc(v).shape == (1, 18)
    torch.testing.assert_close(enc(v), enc(v + torch.tensor([[5.0, -2.0, 7.0]])), atol=1e-4, rtol=0)
    # no jump across a voxel border (v = k + 0.5)
    below, above = enc(torch.tensor([[0.49999] * 3])), enc(torch.tensor([[0.50001] * 3]))
    torch.testing.assert_close(below, above, atol=1e-3, rtol=0)
    assert not torch.allclose(enc(torch.tensor([[0.0] * 3])), enc(torch.tensor([[0.25] * 3])))


def test_predict_subject_returns_input_units_and_checks_inputs(tmp_path):
    net = tiny()
    for dec in net.decoders:  # decoders output 0 (the z-score mean) everywhere
        torch.nn.init.zeros_(dec[-1].weight)
        torch.nn.init.zeros_(dec[-1].bias)
    affine, (x1, a1), (x2, a2) = _pair(1)
    t1, t2 = predict_subject(net, (x1, a1), (x2, a2), (10, 12, 9), affine)
    assert t1.shape == (10, 12, 9)
    np.testing.assert_allclose(t1, x1.mean(), rtol=1e-4)
    np.testing.assert_allclose(t2, x2.mean(), rtol=1e-4)
    far = a2.copy()
    far[:3, 3] += 1000.0
    with pytest.raises(InputError, match="do not overlap"):
        predict_subject(net, (x1, a1), (x2, far), (10, 12, 9), affine)
    with pytest.raises(InputError, match="mismatched channel counts"):
        predict_subject(net, (np.stack([x1, x1]), a1), (x2, a2), (10, 12, 9), affine)
    with pytest.raises(InputError, match="memory budget"):
        predict_subject(net, (x1, a1), (x2, a2), (400, 400, 400), affine, memory_budget_gb=0.01)


def test_shared_encoder_weights_option():
    net = tiny(share_encoder_weights=True)
    assert net.encoder_shared[0] is net.encoder_shared[1]
    n_shared = sum(p.numel() for p in net.parameters())
    n_separate = sum(p.numel() for p in tiny().parameters())
    assert n_separate - n_shared == sum(p.numel() for p in net.encoder_shared[0].parameters())


def test_bf16_autocast_stays_close_to_fp32():
    net = tiny().eval()
    affine, (x1, a1), (x2, a2) = _pair(2)
    ref = predict_volume(net, x1, a1, x2, a2, (16, 16, 16), affine, tile_size=8)
    bf = predict_volume(net, x1, a1, x2, a2, (16, 16, 16), affine, tile_size=8, amp_bf16=True)
    for m, x in enumerate((x1, x2)):
        assert np.abs(bf[m] - ref[m]).max() < 0.05 * x.std()


def test_memory_plan_follows_the_one_peak_rule():
    """The Nexus planner is the shared rule of ``inferers.memory``: encoder and output tiles are separate phases on top
    of the LR maps and the outputs, and the encoder blocks it picks fill the budget of the encoding phase."""
    from monai_inr.inferers.memory import GB, encoder_bytes_per_voxel, estimate_peak_bytes
    from monai_inr.inferers.nexus import _plan_encoder_voxels, plan_memory

    net = tiny()
    lr, out = [(40, 40, 10), (40, 10, 40)], (40, 40, 40)
    plan = plan_memory(net, lr, out, tile_size=8, in_use=0.0)
    held = plan["feature_maps"]
    decode = estimate_peak_bytes(net, output_values=2 * 40**3, output_copies=2, queries=8**3, in_use=held)
    encode = estimate_peak_bytes(
        net, output_values=2 * 40**3, output_copies=2, queries=0, encoder_voxels=40 * 40 * 10, in_use=held
    )
    assert plan["total"] == pytest.approx(max(encode, decode))
    assert plan["encoder_workspace"] > plan["tile"]  # whole-volume encoding dominates here
    assert plan_memory(net, lr, out, tile_size=8, in_use=1 * GB)["total"] == pytest.approx(plan["total"] + GB)
    # a budget that fits the maps, the outputs and 200k encoder voxels: the blocks fill it (up to the few MiB by
    # which the resident set may move between the two measurements)
    base = plan_memory(net, lr, out, tile_size=0, encoder_voxels=0)["total"]
    per_voxel = encoder_bytes_per_voxel(net)
    voxels = _plan_encoder_voxels(net, lr, out, 8, (base + 200_000 * per_voxel) / GB, "cpu", None)
    assert abs(voxels - 200_000) <= 8 * 1024**2 / per_voxel < 50_000


def test_memory_plan_counts_the_attention_context_of_shifted_windows():
    """With shifted windows a tile's attention runs over one window of context per side: the tile working set is
    that of the larger block, so the planner never promises memory the run then exceeds."""
    from monai_inr.inferers.memory import decoder_bytes_per_query
    from monai_inr.inferers.nexus import plan_memory

    lr, out = [(40, 40, 10), (40, 10, 40)], (40, 40, 40)
    plain, shifted = tiny(), tiny(shifted_windows=True)
    assert shifted.attention_halo == shifted.window > 0 and plain.attention_halo == 0
    p0 = plan_memory(plain, lr, out, tile_size=8, in_use=0.0)
    p1 = plan_memory(shifted, lr, out, tile_size=8, in_use=0.0)
    assert p0["tile"] == pytest.approx(8**3 * decoder_bytes_per_query(plain))
    assert p1["tile"] == pytest.approx((8 + 2 * shifted.window) ** 3 * decoder_bytes_per_query(shifted))
