"""Dual-ArbNet inference benchmark (paper configuration, random weights: speed does not depend on the weights).

One 2D slice of 256 x 256 output pixels (``quick``: 128 x 128) super-resolved at x2 and x4 from the k-space LR target
(128^2 / 64^2) with an HR reference (256^2), and at x4 with an LR reference, through
:class:`~monai_inr.inferers.SliceWiseInferer`. FLOPs are counted from the layer shapes (convolution: 2 x weights per
output pixel on its grid; the encoder runs on the target and on the reference grid, the LR-side heads on both encoder
grids, the fusion branch / IDF on the HR grid; activations, attention pooling and gathers not counted). Throughput is
reported as a fraction of the machine's dense-kernel peak measured in the same run
(:func:`benchmarks.run.measure_peaks`).

``run(ctx)`` is the ``benchmarks.run`` entry point; ``run(output_dir, quick=False)`` measures the peaks itself and
writes ``dual_arbnet.json`` there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


def _conv_flops(module: nn.Module, skip: tuple = ()) -> int:
    """2 x weights of every convolution (per output pixel), leaving out those inside modules of type ``skip``."""
    skipped = {id(m) for s in module.modules() if isinstance(s, skip) for m in s.modules()} if skip else set()
    return sum(2 * m.weight.numel() for m in module.modules()
               if isinstance(m, nn.modules.conv._ConvNd) and id(m) not in skipped)


def flop_breakdown(net: Any, lr: int, ref: int, out: int) -> dict[str, float]:
    """GFLOP per slice (target output only): encoder on the target and reference grids, the LR-side heads (fusion
    projection and skip branch) on both grids, and the HR-side decoder (fusion branch without the channel-attention
    MLPs, which run on pooled vectors, plus one IDF pass)."""
    from monai_inr.networks.blocks import ChannelAttention

    dec = net.decoder
    enc = _conv_flops(net.encoder)
    skip = _conv_flops(dec.skip_in) + _conv_flops(dec.skip_out)
    heads_t = _conv_flops(dec.project_target) + skip
    heads_r = _conv_flops(dec.project_reference) if dec.project_reference is not None else 0
    idf = _conv_flops(dec.idf_first) + _conv_flops(dec.idf) + _conv_flops(dec.idf_out)
    hr = _conv_flops(dec.fusion, (ChannelAttention,)) + idf
    return {
        "encoder": enc * (lr * lr + ref * ref) / 1e9,
        "lr_heads": (heads_t * lr * lr + heads_r * ref * ref) / 1e9,
        "hr_decoder": hr * out * out / 1e9,
    }


def _time(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench(quick: bool, peaks: dict[str, Any]) -> list[dict[str, Any]]:
    from monai_inr.inferers import SliceWiseInferer
    from monai_inr.networks.nets import DualArbNet

    torch.manual_seed(0)
    net = DualArbNet().eval()
    out = 128 if quick else 256
    reps, warm = (2, 1) if quick else (1, 0)
    rows = []
    for scale, ref_type in ((2, "HR"), (4, "HR"), (4, "LR")):
        lr = out // scale
        ref = out if ref_type == "HR" else lr
        x, r = torch.rand(1, 1, lr, lr), torch.rand(1, 1, ref, ref)
        inferer = SliceWiseInferer()
        seconds = _time(lambda: inferer(x, net, r, output_shape=(out, out)), reps, warm)
        flops = flop_breakdown(net, lr, ref, out)
        total = sum(flops.values())
        gflops = total / seconds
        rows.append({
            "scale": scale, "reference": ref_type, "LR": f"{lr}^2", "ref": f"{ref}^2", "out": f"{out}^2",
            "GFLOP": round(total, 1), **{f"GFLOP_{k}": round(v, 1) for k, v in flops.items()},
            "seconds": round(seconds, 2), "out_pixels_per_s": round(out * out / seconds, 1),
            "GFLOP_per_s": round(gflops, 1),
            "fraction_of_fp32_peak": round(gflops / peaks["fp32"], 3) if peaks.get("fp32") else None,
        })
        print(f"  dual_arbnet x{scale} {ref_type}-ref: {rows[-1]}", flush=True)
    return rows


def run(ctx: Any, quick: bool = False) -> dict[str, Any]:
    if isinstance(ctx, dict):
        peaks, quick, output_dir = ctx["peaks"], bool(ctx.get("quick", quick)), ctx.get("output_dir")
    else:
        from benchmarks.run import measure_peaks

        output_dir, peaks = ctx, measure_peaks(quick)
    from monai_inr.networks.nets import DualArbNet

    n_params = sum(p.numel() for p in DualArbNet().parameters())
    result = {
        "title": "Dual-ArbNet",
        "notes": [
            f"Paper configuration (RDN 5x10, growth 64, 64 features; fusion 5 x 128 ch with CBAM; IDF 6 x 64): "
            f"{n_params / 1e6:.2f} M parameters; fp32, {torch.get_num_threads()} threads.",
            "The HR reference is encoded at full resolution, which dominates the cost with an HR reference; point-wise "
            "maps run on the LR grids before the nearest up-sampling (exactly equal, 1/s^2 of the work).",
            "Fractions are of the best dense kernel measured in the same run (fp32 peak "
            f"{peaks.get('fp32')} GFLOP/s); wall-clock figures depend on other processes sharing the cores.",
        ],
        "tables": [{"title": "One slice, SliceWiseInferer (best of repeats)", "rows": bench(quick, peaks)}],
        "peaks": {k: peaks.get(k) for k in ("fp32", "bf16")},
    }
    if output_dir is not None:
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        (path / "dual_arbnet.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "runs/bench", quick="--quick" in sys.argv), indent=2))
