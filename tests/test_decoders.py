"""ArSSR decoder: size, FLOPs, the two-stage skip structure and the output activation."""

from __future__ import annotations

import torch
import torch.nn as nn

from monai_inr.networks.decoders import ArSSRDecoder


def test_paper_size_and_flops():
    dec = ArSSRDecoder()
    assert sum(p.numel() for p in dec.parameters()) == 364_676  # 0.365 M (methods note section 2)
    assert dec.flops_per_query() == 726_016  # 0.73 MFLOP per query
    linears = [m for m in dec.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (131, 256), (256, 256), (256, 256), (256, 131), (131, 256), (256, 256), (256, 256), (256, 1)
    ]
    assert sum(isinstance(m, nn.ReLU) for m in dec.modules()) == 8  # a ReLU after every layer, output included


def _manual(dec: ArSSRDecoder, x: torch.Tensor, relu_out: bool) -> torch.Tensor:
    lin = [m for m in dec.modules() if isinstance(m, nn.Linear)]
    h = x
    for m in lin[:4]:
        h = torch.relu(m(h))
    h = x + h  # skip: decoder input added to the output of the 4th ReLU
    for m in lin[4:7]:
        h = torch.relu(m(h))
    h = lin[7](h)
    return torch.relu(h) if relu_out else h


def test_skip_structure_and_shapes():
    torch.manual_seed(0)
    dec = ArSSRDecoder(in_features=10, hidden=16, out_channels=3)
    x = torch.randn(2, 5, 7, 10)
    y = dec(x)
    assert y.shape == (2, 5, 7, 3) and (y >= 0).all()
    torch.testing.assert_close(y, _manual(dec, x, True))
    # zero the last stage-1 layer: stage 1 contributes nothing, so the decoder is stage 2 applied to x itself
    with torch.no_grad():
        dec.stage1[6].weight.zero_()
        dec.stage1[6].bias.zero_()
    torch.testing.assert_close(dec(x), dec.stage2(x))


def test_output_activation_options():
    torch.manual_seed(0)
    lin = ArSSRDecoder(in_features=6, hidden=8, out_channels=2, output_activation=None)
    assert sum(isinstance(m, nn.ReLU) for m in lin.modules()) == 7
    x = torch.randn(500, 6)
    y = lin(x)
    assert (y < 0).any()
    torch.testing.assert_close(y, _manual(lin, x, False))
    sig = ArSSRDecoder(in_features=6, hidden=8, out_channels=2, output_activation="sigmoid")
    out = sig(x)
    assert ((out > 0) & (out < 1)).all()


def test_fused_inference_path_matches_module_path():
    """The oneDNN fused GEMM+bias+ReLU path (no-grad CPU inference) computes the same function as the modules."""
    torch.manual_seed(0)
    x = torch.randn(3, 200, 131)
    for act in ("relu", None, "sigmoid"):
        dec = ArSSRDecoder(output_activation=act).eval()
        with torch.no_grad():
            dec.use_fused = False
            ref = dec(x)
            dec.use_fused = True
            torch.testing.assert_close(dec(x), ref, rtol=1e-5, atol=1e-6)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fused_bf16 = dec(x).float()
                dec.use_fused = False
                plain_bf16 = dec(x).float()
            torch.testing.assert_close(fused_bf16, plain_bf16, rtol=0.05, atol=0.02 * float(ref.abs().max()))
