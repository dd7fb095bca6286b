"""Slice-wise 2D inference with a reference of any grid: world-coordinate mapping, output geometry, errors."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers import SliceWiseInferer, plan_reference
from monai_inr.networks import DualArbNet
from monai_inr.networks.nets.dual_arbnet import nearest_indices


pytestmark = pytest.mark.usefixtures("one_thread")


class ReferenceProbe(torch.nn.Module):
    """Returns, at each output pixel, the reference pixel the network protocol says it should look at."""

    use_reference = True
    out_channels = 3

    def forward(self, image, reference, output_shape, ref_coord=None, ref_scale=None):
        self.ref_scale = ref_scale
        if ref_coord is None:
            ih = nearest_indices(reference.shape[-2], output_shape[0])
            iw = nearest_indices(reference.shape[-1], output_shape[1])
            return reference[:, :, ih][:, :, :, iw]
        return DualArbNet._gather_at(reference, ref_coord)


def _world_volume(shape, affine):
    """3-channel volume holding the world (x, y, z) of each voxel centre."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = coords.voxel_to_world(idx.astype(float), affine).reshape(*shape, 3)
    data = torch.as_tensor(world, dtype=torch.float32).permute(3, 0, 1, 2)[None]
    return MetaTensor(data, affine=torch.as_tensor(affine))


def _target_affine():
    a = np.diag([2.0, 2.0, 3.0, 1.0])
    a[:3, 3] = [-10.0, -12.0, 4.0]
    return a


def test_reference_of_another_grid_is_looked_up_through_world_coordinates():
    ta = _target_affine()
    target = MetaTensor(torch.zeros(1, 3, 8, 10, 4), affine=torch.as_tensor(ta))
    ra = np.diag([0.5, 0.5, 1.5, 1.0])  # finer in-plane and through-plane, larger FOV, another origin
    ra[:3, 3] = [-13.0, -14.0, 2.0]
    ref = _world_volume((40, 48, 14), ra)
    out = SliceWiseInferer(scale=2.5, max_scale=8)(target, ReferenceProbe(), ref)
    assert out.shape == (1, 3, 20, 25, 4)
    oa = out.affine.numpy()
    # FOV preserved: outer edges coincide in world space
    for e_in, e_out in [((-0.5, -0.5), (-0.5, -0.5)), ((7.5, 9.5), (19.5, 24.5))]:
        np.testing.assert_allclose(
            coords.voxel_to_world([*e_in, 0], ta), coords.voxel_to_world([*e_out, 0], oa), atol=1e-6
        )
    idx = np.stack(np.meshgrid(np.arange(20), np.arange(25), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    world = coords.voxel_to_world(idx.astype(float), oa)
    got = out[0].permute(1, 2, 3, 0).reshape(-1, 3).numpy()
    assert np.all(np.abs(got[:, :2] - world[:, :2]) <= 0.25 + 1e-4)  # nearest reference pixel in-plane
    assert np.all(np.abs(got[:, 2] - world[:, 2]) <= 0.75 + 1e-4)  # nearest reference slice
    assert out.meta["sr_scale"] == (2.5, 2.5)


def test_reference_scale_from_pixel_areas():
    ta = _target_affine()
    ra = np.diag([0.5, 0.5, 3.0, 1.0])
    ra[:3, 3] = ta[:3, 3] + np.array([-0.75, -0.75, 0.0])
    plan = plan_reference((8, 10, 4), ta, (16, 20, 4), (32, 40, 4), ra, 2)
    assert plan.ref_coord is None  # same in-plane FOV, aligned axes
    assert plan.ref_scale == pytest.approx(0.5)  # reference pixels are half the size of the 1 mm output pixels


def test_transposed_reference_axes():
    ta = _target_affine()
    ra = np.zeros((4, 4))
    ra[0, 1], ra[1, 0], ra[2, 2], ra[3, 3] = 1.0, 1.0, 3.0, 1.0  # in-plane axes swapped
    ra[:3, 3] = [-11.0, -13.0, 4.0]
    ref = _world_volume((22, 18, 4), ra)
    target = MetaTensor(torch.zeros(1, 3, 8, 10, 4), affine=torch.as_tensor(ta))
    out = SliceWiseInferer(scale=2)(target, ReferenceProbe(), ref)
    world = coords.voxel_to_world(np.array([[3.0, 7.0, 2.0]]), out.affine.numpy())[0]
    np.testing.assert_allclose(out[0, :, 3, 7, 2].numpy(), world, atol=0.5 + 1e-4)


def test_two_d_slices_and_plain_tensors():
    net = DualArbNet(encoder_kwargs=dict(num_blocks=1, num_layers=2, features=8, growth=8), hidden=8, skip_hidden=8,
                     reduction=4).eval()
    a = _target_affine()
    t2d = MetaTensor(torch.rand(1, 1, 12, 10), affine=torch.as_tensor(a))
    r2d = MetaTensor(torch.rand(1, 1, 12, 10), affine=torch.as_tensor(a))
    out = SliceWiseInferer(scale=1.5)(t2d, net, r2d)
    assert out.shape == (1, 1, 18, 15)
    np.testing.assert_allclose(coords.spacing_from_affine(out.affine.numpy()), [2 * 12 / 18, 2 * 10 / 15, 3])
    direct = net(t2d.as_tensor(), r2d.as_tensor(), output_shape=(18, 15))
    assert torch.allclose(out.as_tensor(), direct, atol=1e-5)
    vol, ref = torch.rand(2, 1, 9, 8, 5), torch.rand(2, 1, 18, 16, 5)
    one = SliceWiseInferer(scale=2, slice_axis=2)(vol, net, ref)
    three = SliceWiseInferer(scale=2, slice_axis=2, slices_per_batch=3)(vol, net, ref)
    assert one.shape == (2, 1, 18, 16, 5) and torch.allclose(one, three, atol=1e-5)
    sag = SliceWiseInferer(scale=2, slice_axis=0)(vol, net, torch.rand(2, 1, 9, 16, 10))
    assert sag.shape == (2, 1, 9, 16, 10)
    assert SliceWiseInferer()(vol, net, ref, output_shape=(27, 24)).shape == (2, 1, 27, 24, 5)


@pytest.mark.parametrize(
    "case, message",
    [
        ("channels", "1 channel(s) but the reference has 2"),
        ("coverage", "does not cover the target's field of view"),
        ("plane", "not sliced in the target's plane"),
        ("below", "below 1"),
        ("above", "exceeds the supported maximum of 8"),
        ("missing", "needs a reference"),
        ("memory", "memory budget"),
        ("slices", "slices along axis 2"),
    ],
)
def test_bad_input_is_one_sentence(case, message):
    ta = _target_affine()
    target = MetaTensor(torch.rand(1, 1, 8, 10, 4), affine=torch.as_tensor(ta))
    ref = MetaTensor(torch.rand(1, 1, 8, 10, 4), affine=torch.as_tensor(ta))
    inferer, kw = SliceWiseInferer(scale=2.0, max_scale=8), {}
    net = DualArbNet(encoder_kwargs=dict(num_blocks=1, num_layers=1, features=4, growth=4), hidden=4, skip_hidden=4,
                     reduction=2)
    if case == "channels":
        ref = MetaTensor(torch.rand(1, 2, 8, 10, 4), affine=torch.as_tensor(ta))
    elif case == "coverage":
        ref = MetaTensor(torch.rand(1, 1, 6, 10, 4), affine=torch.as_tensor(ta))
    elif case == "plane":
        c, sn = np.cos(np.radians(30)), np.sin(np.radians(30))
        rot = np.eye(4)
        rot[1:3, 1:3] = [[c, -sn], [sn, c]]  # an oblique reference: 30 degrees about x
        ref = MetaTensor(torch.rand(1, 1, 8, 10, 4), affine=torch.as_tensor(rot @ ta))
    elif case == "below":
        kw["scale"] = 0.5
    elif case == "above":
        kw["scale"] = 9.0
    elif case == "missing":
        ref = None
    elif case == "memory":
        inferer = SliceWiseInferer(scale=8.0, memory_budget_gb=0.001)
    elif case == "slices":
        target, ref = target.as_tensor(), torch.rand(1, 1, 8, 10, 5)
    with pytest.raises(InputError) as err:
        inferer(target, net, ref, **kw)
    sentence = str(err.value)
    assert message in sentence and "\n" not in sentence, sentence


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    net = DualArbNet(encoder_kwargs=dict(num_blocks=1, num_layers=2, features=8, growth=8), hidden=8, skip_hidden=8,
                     reduction=4).eval()
    x, r = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 24, 24)
    fp32 = SliceWiseInferer(scale=2)(x, net, r)
    bf16 = SliceWiseInferer(scale=2, amp_bf16=True)(x, net, r)
    assert bf16.dtype == torch.float32
    span = float(fp32.max() - fp32.min())
    assert float((bf16 - fp32).abs().max()) < 0.05 * span
