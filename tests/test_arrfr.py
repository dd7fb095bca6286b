"""ArRFR network (Yang 2025), its training step (eq. 8) and geometry helpers, and the slice-wise volume inference."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_inr import coords
from monai_inr.engines.arrfr import ArRFRStep
from monai_inr.engines.checks import check_train_scales
from monai_inr.errors import InputError
from monai_inr.inferers import SliceWiseInferer
from monai_inr.losses import FusionPerceptualLoss
from monai_inr.networks.blocks import CBAM
from monai_inr.networks.nets import ArRFR
from monai_inr.networks.vgg import VGG16
from monai_inr.transforms import MultiScaleDownsampled, lr_key, lr_query_grid

TINY = {"feature_channels": 4, "encoder_kwargs": {"num_blocks": 1}, "decoder_hidden": 8, "attention_reduction": 2}


def tiny_net(**kw):
    torch.manual_seed(0)
    return ArRFR(**{**TINY, **kw})


def test_paper_architecture():
    net = ArRFR()
    assert net.encoder_sodium.out_channels == 128 and len(net.encoder_sodium.blocks) == 16
    assert net.encoder_sodium is not net.encoder_t2w
    assert isinstance(net.attention, CBAM) and net.attention.spatial.kernel_size == 7
    mlp = net.attention.channel.mlp
    assert (mlp[0].in_channels, mlp[0].out_channels, mlp[2].out_channels) == (256, 16, 256)
    assert net.decoder.first.in_features == 2308 and net.decoder.num_layers == 5 and net.decoder.hidden == 128


def test_any_slice_shape_and_output_grid():
    net = tiny_net().eval()
    na, t2 = torch.rand(2, 1, 9, 14), torch.rand(2, 1, 9, 14)
    with torch.no_grad():
        assert net(na, t2, output_shape=(20, 31)).shape == (2, 1, 20, 31)
        assert net(na, t2, scale=2.5).shape == (2, 1, 22, 35)
        assert net(torch.cat([na, t2], 1)).shape == (2, 1, 18, 28)  # 2-channel input, default scale 2
        full = net(na, t2, output_shape=(9, 14))
        latent = net.encode(na, t2)
        q = coords.normalized_grid((9, 14))[None].expand(2, -1, -1)
        c = coords.cell_size((9, 14)).expand(2, q.shape[1], 2)
        assert torch.allclose(net.decode(latent, q, c).transpose(1, 2).reshape(2, 1, 9, 14), full, atol=1e-6)
        assert torch.allclose(net(na, t2, coord=q, cell=c), net.decode(latent, q, c), atol=1e-6)
        net.chunk_size = 7
        assert torch.allclose(net(na, t2, output_shape=(9, 14)), full, atol=1e-6)


def test_bad_inputs_raise_one_sentence():
    net = tiny_net()
    with pytest.raises(InputError, match="different shapes"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(InputError, match="magnitude"):
        net(torch.rand(1, 2, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(InputError, match="not lie on the sodium grid"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), ref_coord=torch.zeros(1, 8, 8, 2))
    with pytest.raises(InputError, match="T2w"):
        net(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_inference_in_each_plane_keeps_the_physical_field_of_view(axis):
    net = tiny_net().eval()
    affine = np.array([[0.0, 0.0, 2.4, -30.0], [-2.5, 0.0, 0.0, 40.0], [0.0, 2.3, 0.0, -12.0], [0, 0, 0, 1]])
    shape = (6, 7, 5)
    na = MetaTensor(torch.rand(1, 1, *shape), affine=torch.as_tensor(affine))
    t2 = MetaTensor(torch.rand(1, 1, *shape), affine=torch.as_tensor(affine))
    out = SliceWiseInferer(scale=2.0, slice_axis=axis)(na, net, t2)
    expect = tuple(n if d == axis else 2 * n for d, n in enumerate(shape))
    assert tuple(out.shape[2:]) == expect
    out_aff = np.asarray(out.affine)
    for lo_in, lo_out in ((np.full(3, -0.5), np.full(3, -0.5)), (np.array(shape) - 0.5, np.array(expect) - 0.5)):
        assert np.allclose(coords.voxel_to_world(lo_in, affine), coords.voxel_to_world(lo_out, out_aff), atol=1e-6)
    # slice k of the output is the network applied to slice k of the input
    k = 3 if axis != 2 else 2
    with torch.no_grad():
        direct = net(na.as_tensor().select(2 + axis, k), t2.as_tensor().select(2 + axis, k),
                     output_shape=tuple(expect[d] for d in range(3) if d != axis))
    assert torch.allclose(out.as_tensor().select(2 + axis, k), direct, atol=1e-5)


def test_lr_query_grid_is_exact_for_both_downsampling_operators():
    img = MetaTensor(torch.rand(1, 12, 10))
    for mode in ("cubic", "decimate"):
        d = MultiScaleDownsampled(["x"], [1, 2, 3], mode)({"x": img})
        for k in (1, 2, 3):
            lr = d[lr_key("x", k)]
            grid, cell = lr_query_grid((12, 10), lr.shape[1:], img.affine, lr.affine)
            vox = coords.normalized_to_voxel(grid, lr.shape[1:]).reshape(12, 10, 2)
            i, j = torch.meshgrid(torch.arange(12.0), torch.arange(10.0), indexing="ij")
            if mode == "decimate":  # HR pixel n sits at LR voxel n / k
                expect = torch.stack([i / k, j / k], -1)
            else:  # FOV-preserving: HR pixel centres (n + 1/2) N_lr / N_hr - 1/2
                n_lr = torch.tensor(lr.shape[1:], dtype=torch.float64)
                expect = torch.stack([(i + 0.5) * n_lr[0] / 12 - 0.5, (j + 0.5) * n_lr[1] / 10 - 0.5], -1)
            assert torch.allclose(vox.double(), expect.double(), atol=1e-5), (mode, k)
            # the cell is one HR pixel in LR normalised units: 2 / N_hr (FOV-preserving) or 2 / (k N_lr) (decimation)
            n_lr = torch.tensor(lr.shape[1:], dtype=torch.float64)
            want = 2.0 / torch.tensor([12.0, 10.0], dtype=torch.float64) if mode == "cubic" else 2.0 / (k * n_lr)
            assert torch.allclose(cell[0].double(), want, atol=1e-6), (mode, k)


def test_check_train_scales():
    assert check_train_scales([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(InputError, match="outside the supported range"):
        check_train_scales([1, 2, 6])
    with pytest.raises(InputError, match="outside the supported range"):
        check_train_scales([0.5, 2])
    with pytest.raises(InputError, match="integer factors"):
        check_train_scales([1, 2.5], mode="decimate")
    with pytest.raises(InputError, match="fewer than 3 pixels"):
        check_train_scales([1, 4], image_shape=(8, 8))
    with pytest.raises(InputError, match="down-sampling mode"):
        check_train_scales([1], mode="bicubic")


class _Engine:
    def __init__(self, network, optimizer, loss):
        self.network, self.optimizer, self.loss_function = network, optimizer, loss
        self.state = type("S", (), {"device": torch.device("cpu"), "output": None})()


def _batch(k_list=(1, 2, 3, 4), mode="cubic", n=2, size=32):
    torch.manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = (((yy - 14) / 9.0) ** 2 + ((xx - 17) / 7.0) ** 2 < 1).float()
    items = []
    for i in range(n):
        na = (0.3 * blob + 0.1 * torch.rand(size, size))[None]
        t2 = (0.6 * blob + 0.2 * (xx % 4 == 0) * blob)[None]
        items.append({"sodium": MetaTensor(na), "t2w": MetaTensor(t2), "sodium_degraded": MetaTensor(na * 0.8)})
    ms = MultiScaleDownsampled(["sodium_degraded", "t2w"], k_list, mode)
    items = [ms(it) for it in items]
    from monai.data import list_data_collate

    return list_data_collate(items)


def test_training_step_averages_over_factors_and_learns():
    net = tiny_net()
    vgg = VGG16(width=4)
    # a random, narrow VGG gives tiny losses (gradients below Adam's eps): scale the paper's weights up for the test
    loss = FusionPerceptualLoss(vgg, {"feature_sodium": 6e3, "feature_t2w": 4e3, "style_t2w": 1e4})
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    engine = _Engine(net, opt, loss)
    batch = _batch(n=1, size=32)
    out4 = ArRFRStep((1, 2, 3, 4), train=False, loss_function=loss)(_Engine(net, None, None), batch)
    assert torch.allclose(out4["loss"], sum(out4[f"loss_x{k}"] for k in (1, 2, 3, 4)) / 4)
    step = ArRFRStep((1, 2))
    first = step(engine, batch)
    losses = []
    for _ in range(6):
        last = step(engine, batch)
        losses.append(float(last["loss"]))
    assert min(losses) < 0.9 * float(first["loss"]), (float(first["loss"]), losses)
    # validation mode: same loss definition, no parameter change
    before = [p.detach().clone() for p in net.parameters()]
    val = ArRFRStep((1, 2), train=False, loss_function=loss)(_Engine(net, None, None), batch)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters())) and float(val["loss"]) > 0
    assert engine.state.output is last


def test_per_scale_step_and_decimation_geometry_run():
    net = tiny_net()
    loss = FusionPerceptualLoss(VGG16(width=2))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    out = ArRFRStep((1, 3), per_scale_step=True)(_Engine(net, opt, loss), _batch((1, 3), "decimate"))
    assert set(out) >= {"loss", "loss_x1", "loss_x3", "feature_sodium", "style_t2w"}


def test_bf16_step_runs_the_network_in_bf16_and_the_loss_in_float32():
    """amp_bf16: the forward pass autocasts (its convolutions compute in bf16), the loss and parameters stay float32,
    and the loss is within bf16 rounding of the float32 step's."""
    net = tiny_net()
    loss = FusionPerceptualLoss(VGG16(width=2))
    seen = []
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = _batch((1, 2), n=1, size=32)
    fp32 = ArRFRStep((1, 2), train=False, loss_function=loss)(_Engine(net, None, None), batch)
    bf16 = ArRFRStep((1, 2), train=False, loss_function=loss, amp_bf16=True)(_Engine(net, None, None), batch)
    hook.remove()
    assert seen == [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16]
    assert bf16["loss"].dtype == torch.float32 and all(p.dtype == torch.float32 for p in net.parameters())
    assert abs(float(bf16["loss"]) - float(fp32["loss"])) <= 0.05 * float(fp32["loss"])
    assert float(bf16["loss"]) != float(fp32["loss"])
    with pytest.raises(ValueError, match="'auto'"):
        ArRFRStep((1, 2), amp_bf16="maybe")
