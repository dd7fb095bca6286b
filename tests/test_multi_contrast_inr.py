"""The split-head multi-contrast INR network and its ablations (McGinnis, Shit et al., MICCAI 2023)."""

import numpy as np
import pytest
import torch

from monai_inr.networks.decoders import SplitHeadMLP
from monai_inr.networks.nets import MultiContrastINR

SMALL = {"encoding_kwargs": {"num_frequencies": 8}, "trunk_width": 16, "trunk_layers": 2, "head_width": 8}


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_sizes():
    """Parameter counts of the upstream MLPv2 (split head) and the vanilla ablation, 512 Fourier features."""
    split = MultiContrastINR()
    assert n_params(split) == 5_774_338
    assert split.encoding.B.shape == (256, 3) and split.encoding.out_features == 512
    assert n_params(split.variant(architecture="vanilla")) == 4_725_762
    # two single-contrast INRs = two vanilla trunks with one output each
    assert n_params(split.variant(architecture="separate")) == 2 * (4_725_762 - 1025)
    assert SplitHeadMLP().flops_per_query() == 2 * (5_774_338 - 1024 * 5 - 512 * 2 - 2)


@pytest.mark.parametrize("arch", ["split_head", "vanilla", "separate"])
def test_shapes_channel_first_and_points(arch):
    net = MultiContrastINR(architecture=arch, **SMALL)
    pts = torch.rand(10, 3) * 2 - 1
    assert net(pts).shape == (10, 2)
    assert net.query(pts).shape == (10, 2)
    grid = torch.rand(2, 3, 4, 5, 6)
    out = net(grid)
    assert out.shape == (2, 2, 4, 5, 6)
    torch.testing.assert_close(out[0, :, 1, 2, 3], net.query(grid[0, :, 1, 2, 3]))
    with pytest.raises(ValueError, match="channel-first"):
        net(torch.rand(2, 4, 5))


def test_heads_share_the_trunk_and_separate_branches_do_not():
    # seeded, and enough points that some ReLU of a small random network is active (5 unseeded points left every
    # unit of the 16-wide trunk dead in one CI run, so no gradient reached the trunk)
    torch.manual_seed(0)
    split = MultiContrastINR(architecture="split_head", **SMALL)
    split(torch.rand(64, 3) * 2 - 1)[:, 0].sum().backward()
    assert split.decoder.trunk[0].weight.grad.abs().sum() > 0
    assert split.decoder.heads[1][0].weight.grad is None or split.decoder.heads[1][0].weight.grad.abs().sum() == 0
    sep = MultiContrastINR(architecture="separate", **SMALL)
    sep(torch.rand(64, 3) * 2 - 1)[:, 0].sum().backward()
    assert sep.branches[0][1].trunk[0].weight.grad.abs().sum() > 0
    g = sep.branches[1][1].trunk[0].weight.grad
    assert g is None or g.abs().sum() == 0


def test_geometry_buffers_travel_with_the_checkpoint():
    net = MultiContrastINR(**SMALL)
    frame = np.eye(4)
    frame[:3, :3] *= 100.0
    frame[:3, 3] = [1.0, 2.0, 3.0]
    net.set_geometry(frame, [[-1, -0.8, -0.9], [1, 0.8, 0.9]], [[0, 10], [5, 7]])
    state = net.state_dict()
    for key in ("frame_affine", "fov_bounds", "intensity_range", "encoding.B"):
        assert key in state
    other = MultiContrastINR(**SMALL)
    other.load_state_dict(state)
    torch.testing.assert_close(other.frame_affine, torch.as_tensor(frame))
    torch.testing.assert_close(other.intensity_range, torch.tensor([[0.0, 10.0], [5.0, 7.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        net.set_geometry(intensity_range=[[0, 1]])


def test_variant_hashgrid_and_errors():
    net = MultiContrastINR(**SMALL)
    single = net.variant(architecture="vanilla", num_contrasts=1)
    assert single.out_channels == 1 and single(torch.rand(3, 3)).shape == (3, 1)
    assert net.config["trunk_width"] == single.config["trunk_width"] == 16
    hg = MultiContrastINR(
        encoding="hashgrid", trunk_width=16, trunk_layers=1, head_width=8,
        encoding_kwargs={"num_levels": 4, "features_per_level": 2, "log2_table_size": 10, "base_resolution": 4,
                         "max_resolution": 32},
    )
    assert hg.encoding.out_features == 8 and hg(torch.rand(6, 3)).shape == (6, 2)
    assert hg.flops_per_query() > 0
    with pytest.raises(ValueError, match="architecture"):
        MultiContrastINR(architecture="two_heads")


def test_torchscript_trace():
    net = MultiContrastINR(**SMALL).eval()
    x = torch.rand(1, 3, 7)
    ts = torch.jit.trace(net, x)
    torch.testing.assert_close(ts(torch.rand(1, 3, 7) * 0 + x), net(x))
