"""ImplicitInferer: chunking, tiling, bf16, output geometry, grid selection and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from monai.data import MetaTensor

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers import ImplicitInferer, ImplicitNetwork, plan_tiles
from monai_inr.networks.encoders import RDN
from monai_inr.networks.nets import ArSSR


def small_arssr(**kw) -> ArSSR:
    torch.manual_seed(0)
    enc = {"num_blocks": 2, "num_layers": 2, "features": 8, "growth": 4}  # receptive radius 8
    return ArSSR(feature_channels=12, decoder_hidden=16, encoder_kwargs=enc, **kw).eval()


class Toy2D(nn.Module):
    """A 2D implicit network (bilinear lookup + linear head) to check the inferer is dimension-agnostic."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = RDN(2, 1, 6, features=4, growth=4, num_blocks=1, num_layers=2)
        self.head = nn.Linear(8, 2)
        self.out_channels = 2
        self.receptive_radius = self.encoder.receptive_radius

    def encode(self, image):
        return self.encoder(image)

    def decode(self, features, coord, lookup_coord=None):
        f = coords.sample_features(features, coord if lookup_coord is None else lookup_coord)
        return self.head(torch.cat([f, coord], -1))


def lr_image(shape=(11, 9, 13), batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, *shape, generator=g)


def test_protocol():
    assert isinstance(small_arssr(), ImplicitNetwork) and isinstance(Toy2D(), ImplicitNetwork)


def test_chunked_equals_unchunked_and_forward():
    net = small_arssr()
    x = lr_image(batch=2)
    big = ImplicitInferer(scale=1.6, chunk_size=10**7)(x, net)
    small = ImplicitInferer(scale=1.6, chunk_size=333)(x, net)
    assert big.shape == (2, 1, 18, 14, 21)
    torch.testing.assert_close(small.as_tensor(), big.as_tensor(), rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(big.as_tensor(), net(x, scale=1.6), rtol=0, atol=1e-5)


@pytest.mark.parametrize("scale,skip", [((2.0, 2.0, 2.0), False), ((1.7, 2.3, 0.8), False), ((2.0, 1.5, 2.5), True),
                                        ((2.0, 1.5, 2.5), "cubic")])
def test_tiled_equals_untiled(scale, skip):
    net = small_arssr(input_skip=skip)
    # the cubic skip's prefilter needs 10 voxels of halo: a longer first axis leaves room for tiles
    shape, budget = ((23, 20, 21), 20**3) if skip != "cubic" else ((40, 20, 21), 30 * 20 * 21)
    x = lr_image(shape)
    ref = ImplicitInferer(scale=scale)(x, net)
    tiled = ImplicitInferer(scale=scale, voxel_budget=budget, chunk_size=1000)(x, net)
    assert tiled.meta["sr_tiles"] > 1 and ref.meta["sr_tiles"] == 1
    np.testing.assert_allclose(tiled.numpy(), ref.numpy(), rtol=0, atol=1e-4)


def test_tiled_2d_network_and_plan_partition():
    net = Toy2D()
    x = torch.rand(1, 1, 30, 27)
    ref = ImplicitInferer(scale=2.5)(x, net)
    tiled = ImplicitInferer(scale=2.5, voxel_budget=400)(x, net)  # 12 tiles
    assert ref.shape == (1, 2, 75, 68) and tiled.meta["sr_tiles"] > 1
    np.testing.assert_allclose(tiled.numpy(), ref.numpy(), rtol=0, atol=1e-4)
    plan = plan_tiles((30, 27, 40), halo=5, max_voxels=18**3)
    assert plan.max_tile_voxels <= 18**3
    for n, cores, regions in zip((30, 27, 40), plan.cores, plan.regions):
        assert cores[0][0] == 0 and cores[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(cores, cores[1:]))  # contiguous partition
        assert all(r0 == max(0, c0 - 5) and r1 == min(n, c1 + 5) for (c0, c1), (r0, r1) in zip(cores, regions))


def test_bf16_close_to_fp32():
    """bf16 autocast tolerance: max |bf16 - fp32| <= 5 % of the fp32 output range (mean error well below 1 %)."""
    net = small_arssr(output_activation=None)
    x = lr_image()
    ref = ImplicitInferer(scale=2.0)(x, net).numpy()
    bf = ImplicitInferer(scale=2.0, amp_bf16=True)(x, net).numpy()
    assert bf.dtype == np.float32
    rng = ref.max() - ref.min()
    assert np.abs(bf - ref).max() <= 0.05 * rng
    assert np.abs(bf - ref).mean() <= 0.01 * rng


def test_output_affine_is_physically_consistent():
    """World positions: output voxel centres sit where the input FOV maps them, FOV centre and edges are kept."""
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([1.2, 0.9, 2.5])
    aff = np.eye(4)
    aff[:3, :3] = rot
    aff[:3, 3] = [10.0, -20.0, 5.0]
    in_shape = (9, 11, 7)
    x = MetaTensor(lr_image(in_shape), affine=torch.as_tensor(aff))
    out = ImplicitInferer(scale=(2.0, 1.5, 3.0))(x, small_arssr())
    out_shape = tuple(out.shape[2:])
    assert out_shape == (18, 16, 21)
    oaff = out.affine.numpy()
    np.testing.assert_allclose(oaff, coords.fov_affine(aff, in_shape, out_shape))
    # every output voxel centre: its normalised coordinate mapped through the input geometry
    idx = np.stack(np.meshgrid(*[np.arange(m) for m in out_shape], indexing="ij"), -1).reshape(-1, 3)
    world_out = coords.voxel_to_world(idx.astype(float), oaff)
    norm = coords.voxel_to_normalized(idx.astype(float), out_shape)
    world_in = coords.normalized_to_world(norm, in_shape, aff)
    np.testing.assert_allclose(world_out, world_in, atol=1e-9)
    # FOV centre and the outer corner (voxel edge at -0.5) coincide
    np.testing.assert_allclose(
        coords.voxel_to_world((np.array(out_shape) - 1) / 2.0, oaff),
        coords.voxel_to_world((np.array(in_shape) - 1) / 2.0, aff),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        coords.voxel_to_world(np.full(3, -0.5), oaff), coords.voxel_to_world(np.full(3, -0.5), aff), atol=1e-9
    )
    np.testing.assert_allclose(coords.spacing_from_affine(oaff), [0.6, 0.9 * 11 / 16, 2.5 / 3.0], atol=1e-9)
    assert out.meta["sr_scale"] == (2.0, 16 / 11, 3.0)


def test_grid_selection_and_overrides():
    net = small_arssr()
    aff = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    x = MetaTensor(lr_image((8, 6, 5)), affine=aff)
    inferer = ImplicitInferer(scale=2.0)
    assert inferer(x, net).shape[2:] == (16, 12, 10)
    assert inferer(x, net, scale=1.5).shape[2:] == (12, 9, 8)  # call overrides constructor
    out = inferer(x, net, output_shape=(17, 13, 11))
    assert out.shape[2:] == (17, 13, 11)
    np.testing.assert_allclose(out.affine.numpy(), coords.fov_affine(aff.numpy(), (8, 6, 5), (17, 13, 11)))
    out = inferer(x, net, target_spacing=1.0)
    assert out.shape[2:] == (16, 12, 15)
    np.testing.assert_allclose(coords.spacing_from_affine(out.affine), [1.0, 1.0, 1.0])
    plain = ImplicitInferer(scale=2.0)(x.as_tensor(), net)  # no affine: identity assumed
    np.testing.assert_allclose(plain.affine.numpy(), coords.fov_affine(np.eye(4), (8, 6, 5), (16, 12, 10)))


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf"), (2.0, 0.0, 2.0)])
def test_bad_scale_raises_input_error(bad):
    with pytest.raises(InputError, match="scale"):
        ImplicitInferer()(lr_image((6, 6, 6)), small_arssr(), scale=bad)


def test_grid_must_be_defined_exactly_once():
    x, net = lr_image((6, 6, 6)), small_arssr()
    with pytest.raises(InputError, match="exactly one"):
        ImplicitInferer()(x, net)
    with pytest.raises(InputError, match="exactly one"):
        ImplicitInferer()(x, net, scale=2.0, output_shape=(12, 12, 12))


def test_over_budget_raises_before_any_work():
    class Spy(ArSSR):
        calls = 0

        def encode(self, image):
            Spy.calls += 1
            return super().encode(image)

    torch.manual_seed(0)
    net = Spy(feature_channels=4, decoder_hidden=8, encoder_kwargs={"num_blocks": 1, "num_layers": 1, "features": 4})
    x = lr_image((10, 10, 10))
    with pytest.raises(InputError, match=r"output grid 1000x1000x1000 .* memory budget is 2\.00 GB") as err:
        ImplicitInferer(scale=100.0, memory_budget_gb=2.0)(x, net)
    assert Spy.calls == 0
    assert str(err.value).count(". ") == 0  # one sentence
    ImplicitInferer(scale=2.0, memory_budget_gb=64.0)(x, net)
    assert Spy.calls == 1


def test_collated_batch_decollates_with_per_item_geometry():
    from monai.data import decollate_batch, list_data_collate

    items = [
        MetaTensor(lr_image((6, 7, 5))[0], affine=torch.diag(torch.tensor([s, s, 2 * s, 1.0])), meta={"id": str(s)})
        for s in (1.0, 2.0, 3.0)
    ]
    batch = list_data_collate([{"image": i} for i in items])["image"]
    out = ImplicitInferer(scale=2.0)(batch, small_arssr())
    assert out.is_batch and out.shape == (3, 1, 12, 14, 10)
    for item, src in zip(decollate_batch(out), items):
        np.testing.assert_allclose(item.affine.numpy(), coords.fov_affine(src.affine.numpy(), (6, 7, 5), (12, 14, 10)))
        np.testing.assert_allclose(np.asarray(item.meta["sr_spacing"]), coords.spacing_from_affine(item.affine))
        assert item.meta["id"] == src.meta["id"]
