"""The bf16 decision (inferers.precision): 'auto' follows the hardware, AutocastInferer autocasts (or not) and trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from monai_inr.inferers import AutocastInferer, ImplicitInferer, native_bf16, resolve_amp_bf16
from monai_inr.inferers import precision


class DtypeProbe(nn.Module):
    """Records the dtype its linear layer computed in."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 1)
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        y = self.lin(x)
        self.seen.append(y.dtype)
        return y


def test_resolve_follows_the_hardware_for_auto_and_the_value_otherwise(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert native_bf16("cpu") is False and resolve_amp_bf16("auto", "cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert native_bf16("cpu") is True and resolve_amp_bf16(" AUTO ", "cpu") is True
    assert resolve_amp_bf16(False, "cpu") is False and resolve_amp_bf16(True, "cpu") is True
    assert resolve_amp_bf16("False", "cpu") is False and resolve_amp_bf16("true", "cpu") is True  # command line
    with pytest.raises(ValueError, match="true, false or 'auto'"):
        resolve_amp_bf16("yes", "cpu")
    with pytest.raises(ValueError, match="'auto'"):
        AutocastInferer(amp_bf16="fast")
    with pytest.raises(ValueError, match="'auto'"):
        ImplicitInferer(scale=2.0, amp_bf16="fast")


@pytest.mark.parametrize("native", [False, True])
def test_autocast_inferer_runs_bf16_only_where_native_and_returns_float32(monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": native)
    net = DtypeProbe()
    out = AutocastInferer(amp_bf16="auto")(torch.rand(3, 4), net)
    assert net.seen == [torch.bfloat16 if native else torch.float32]
    assert out.dtype == torch.float32
    forced = DtypeProbe()
    AutocastInferer(amp_bf16=True)(torch.rand(3, 4), forced)
    assert forced.seen == [torch.bfloat16]


def test_autocast_inferer_trains_with_float32_parameters_and_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.rand(256, 3)
    y = (x * torch.tensor([1.0, -2.0, 0.5])).sum(1, keepdim=True)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    inferer = AutocastInferer(amp_bf16=True)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = (inferer(x, net) - y).abs().mean()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())
    assert loss.item() < 0.2 * first  # it learns in bf16


def test_implicit_inferer_auto_uses_the_hardware_decision(monkeypatch):
    """'auto' on a machine without native bf16 is the fp32 path exactly; with it, the bf16 path exactly."""
    from monai_inr.inferers import implicit

    torch.manual_seed(0)
    from monai_inr.networks.nets import ArSSR

    net = ArSSR(feature_channels=8, decoder_hidden=16,
                encoder_kwargs={"num_blocks": 1, "num_layers": 1, "features": 8, "growth": 4}).eval()
    x = torch.rand(1, 1, 6, 7, 5)
    fp32 = ImplicitInferer(scale=2.0, amp_bf16=False)(x, net)
    bf16 = ImplicitInferer(scale=2.0, amp_bf16=True)(x, net)
    assert not torch.equal(fp32, bf16)
    for native, expected in ((False, fp32), (True, bf16)):
        monkeypatch.setattr(implicit, "resolve_amp_bf16",
                            lambda value, device="cpu", n=native: n if value == "auto" else bool(value))
        torch.testing.assert_close(ImplicitInferer(scale=2.0, amp_bf16="auto")(x, net), expected, rtol=0, atol=0)
