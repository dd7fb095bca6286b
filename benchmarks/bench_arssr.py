"""ArSSR inference benchmarks (paper configuration, random weights: speed does not depend on the weights).

(b) x2 super-resolution of a 96^3 LR volume (``--quick``: 48^3) through :class:`ImplicitInferer`, fp32 and bf16
    autocast: encoder / decoder / total time, FLOPs counted from the layer shapes (conv: 2 k^3 C_in C_out per output
    voxel; linear: 2 in out per query; biases, activations and the trilinear lookup not counted), achieved GFLOP/s and
    the fraction of the measured fp32 and bf16 peaks. Plus a decoder chunk-size sweep.
(c) peak resident memory (``ru_maxrss`` of a fresh subprocess) and time of a whole-brain x2 with default inferer
    settings: 197x233x189 -> 394x466x378 (``--quick``: 64x72x60 with a small voxel budget so that tiling is exercised).

Run through ``python -m benchmarks.run``; the child process is ``python -m benchmarks.bench_arssr --child ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from monai_inr import coords


def conv_flops_per_voxel(module: nn.Module) -> int:
    """2 x multiply-adds per output voxel of every convolution (all are stride 1 with "same" padding)."""
    return sum(2 * m.weight.numel() for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd))


def linear_flops_per_query(module: nn.Module) -> int:
    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


class _Timed:
    """Proxy that times a network's ``encode`` / ``decode`` calls made by the inferer."""

    def __init__(self, net: Any) -> None:
        self._net = net
        self.t_encode = self.t_decode = self.c_encode = self.c_decode = 0.0
        self.encoded_voxels = self.queries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._net, name)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        t, c = time.perf_counter(), time.process_time()
        f = self._net.encode(image)
        self.t_encode += time.perf_counter() - t
        self.c_encode += (time.process_time() - c) / torch.get_num_threads()
        self.encoded_voxels += int(np.prod(image.shape[2:])) * image.shape[0]
        return f

    def decode(self, features: torch.Tensor, coord: torch.Tensor, lookup_coord: torch.Tensor | None = None):
        t, c = time.perf_counter(), time.process_time()
        v = self._net.decode(features, coord, lookup_coord)
        self.t_decode += time.perf_counter() - t
        self.c_decode += (time.process_time() - c) / torch.get_num_threads()
        self.queries += coord.shape[0] * coord.shape[1]
        return v


def _frac(gflops: float, peak: float) -> float:
    return round(gflops / peak, 3) if peak else float("nan")


def bench_volume(size: int, peaks: dict[str, float]) -> list[dict[str, Any]]:
    from monai_inr.inferers import ImplicitInferer
    from monai_inr.networks.nets import ArSSR

    torch.manual_seed(0)
    net = ArSSR().eval().to(memory_format=torch.channels_last_3d)
    enc_fpv = conv_flops_per_voxel(net.encoder)
    dec_fpq = linear_flops_per_query(net.decoder)
    x = torch.rand(1, 1, size, size, size)
    rows = []
    for amp in (False, True):
        inferer = ImplicitInferer(scale=2.0, amp_bf16=amp)
        inferer(torch.rand(1, 1, 12, 12, 12), net)  # warm-up: libraries, thread pool
        timed = _Timed(net)
        t, c = time.perf_counter(), time.process_time()
        out = inferer(x, timed)
        total = time.perf_counter() - t
        total_cpu = (time.process_time() - c) / torch.get_num_threads()
        n_q = int(np.prod(out.shape[2:]))
        enc_fl = enc_fpv * size**3  # useful FLOPs (an untiled run: encoded voxels == input voxels)
        dec_fl = dec_fpq * n_q
        g_enc = enc_fl / timed.t_encode / 1e9
        g_dec = dec_fl / timed.t_decode / 1e9
        g_tot = (enc_fl + dec_fl) / total / 1e9
        rows.append(
            {
                "path": "bf16 autocast" if amp else "fp32",
                "LR -> HR": f"{size}^3 -> {out.shape[2]}^3",
                "tiles": out.meta["sr_tiles"],
                "encoder s": round(timed.t_encode, 2),
                "decoder s": round(timed.t_decode, 2),
                "other s": round(total - timed.t_encode - timed.t_decode, 2),
                "total s": round(total, 2),
                "TFLOP enc+dec": round((enc_fl + dec_fl) / 1e12, 2),
                "enc GFLOP/s": round(g_enc, 1),
                "dec GFLOP/s": round(g_dec, 1),
                "total GFLOP/s": round(g_tot, 1),
                "total / fp32 peak": _frac(g_tot, peaks["fp32"]),
                "total / bf16 peak": _frac(g_tot, peaks["bf16"]),
                "enc / bf16 peak": _frac(g_enc, peaks["bf16"]),
                "dec / bf16 peak": _frac(g_dec, peaks["bf16"]),
                "Mvoxel/s out": round(n_q / total / 1e6, 3),
                "CPU-time: enc GFLOP/s": round(enc_fl / timed.c_encode / 1e9, 1),
                "CPU-time: dec GFLOP/s": round(dec_fl / timed.c_decode / 1e9, 1),
                "CPU-time: total GFLOP/s": round((enc_fl + dec_fl) / total_cpu / 1e9, 1),
                "CPU-time: total / fp32 peak": _frac((enc_fl + dec_fl) / total_cpu / 1e9, peaks["fp32_cputime"]),
                "CPU-time: total / bf16 peak": _frac((enc_fl + dec_fl) / total_cpu / 1e9, peaks["bf16_cputime"]),
            }
        )
        print(f"  ArSSR x2 {size}^3 {rows[-1]['path']}: {rows[-1]}", flush=True)
        del out
    return rows


def bench_chunks(quick: bool, peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Decoder throughput (lookup + MLP) vs chunk size, on grid-ordered queries of a x2 output."""
    from monai_inr.networks.nets import ArSSR

    torch.manual_seed(0)
    net = ArSSR(encoder_kwargs={"num_blocks": 1, "num_layers": 1}).eval()
    lr = 32 if quick else 48
    feats = torch.randn(1, 128, lr, lr, lr).contiguous(memory_format=torch.channels_last_3d)
    n = 2**17 if quick else 2**19
    q = coords.normalized_grid((2 * lr,) * 3)[:n].unsqueeze(0).contiguous()
    dec_fpq = linear_flops_per_query(net.decoder)
    rows = []
    with torch.inference_mode():
        for amp in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                net.decode(feats, q[:, :4096])
                for chunk in (16384, 65536, 262144):
                    t, c = time.perf_counter(), time.process_time()
                    for s in range(0, n, chunk):
                        net.decode(feats, q[:, s : s + chunk])
                    dt = time.perf_counter() - t
                    dc = (time.process_time() - c) / torch.get_num_threads()
                    g, gc = dec_fpq * n / dt / 1e9, dec_fpq * n / dc / 1e9
                    rows.append(
                        {
                            "path": "bf16 autocast" if amp else "fp32",
                            "chunk": chunk,
                            "us/query": round(dt / n * 1e6, 3),
                            "GFLOP/s": round(g, 1),
                            "/ fp32 peak": _frac(g, peaks["fp32"]),
                            "/ bf16 peak": _frac(g, peaks["bf16"]),
                            "CPU-time GFLOP/s": round(gc, 1),
                            "CPU-time / bf16 peak": _frac(gc, peaks["bf16_cputime"]),
                        }
                    )
    return rows


def bench_whole_brain(quick: bool, shape: tuple[int, ...] | None = None, amp_bf16: bool | str = "auto") -> dict[str, Any]:
    if shape is None:
        shape = (64, 72, 60) if quick else (197, 233, 189)
    cmd = [sys.executable, "-m", "benchmarks.bench_arssr", "--child", "--shape", *map(str, shape), "--scale", "2"]
    if quick:
        n = int(np.prod(shape))
        cmd += ["--voxel_budget", str(n - 6000)]  # just below the input size: tiling is exercised
    cmd += ["--amp_bf16", str(amp_bf16).lower()]
    env = dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--shape", type=int, nargs=3, required=True)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--voxel_budget", type=int, default=None)
    p.add_argument("--amp_bf16", default="auto", choices=["auto", "true", "false"])
    a = p.parse_args(argv)
    import psutil
    from monai.data import MetaTensor

    from monai_inr.inferers import ImplicitInferer
    from monai_inr.networks.nets import ArSSR

    torch.manual_seed(0)
    net = ArSSR().eval()
    x = MetaTensor(torch.rand(1, 1, *a.shape), affine=torch.eye(4, dtype=torch.float64))
    from monai_inr.inferers import resolve_amp_bf16

    amp = resolve_amp_bf16(a.amp_bf16, "cpu")
    kw = {"amp_bf16": amp}
    if a.voxel_budget:
        kw["voxel_budget"] = a.voxel_budget
    inferer = ImplicitInferer(scale=a.scale, **kw)
    rss0 = psutil.Process().memory_info().rss
    timed = _Timed(net)
    net.to(memory_format=torch.channels_last_3d)
    t, c = time.perf_counter(), time.process_time()
    out = inferer(x, timed)
    dt = time.perf_counter() - t
    dc = time.process_time() - c
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    n_in = int(np.prod(a.shape))
    res = {
        "LR": "x".join(map(str, a.shape)),
        "HR": "x".join(map(str, out.shape[2:])),
        "path": ("bf16 autocast" if amp else "fp32") + (" (auto: the default)" if a.amp_bf16 == "auto" else ""),
        "tiles": out.meta["sr_tiles"],
        "encoded / input voxels": round(timed.encoded_voxels / n_in, 2),
        "encoder s": round(timed.t_encode, 1),
        "decoder s": round(timed.t_decode, 1),
        "total s": round(dt, 1),
        "CPU s / thread": round(dc / torch.get_num_threads(), 1),
        "RSS before call GB": round(rss0 / 1024**3, 2),
        "peak RSS GB": round(peak / 1024**3, 2),
        "output GB": round(out.numel() * 4 / 1024**3, 2),
    }
    print(json.dumps(res))


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    quick, peaks = ctx["quick"], ctx["peaks"]
    size = 48 if quick else 96
    notes = [
        "ArSSR paper configuration (RDN 8x3, growth 64, 128 features; decoder 8x256): "
        f"{conv_flops_per_voxel(__import__('monai_inr.networks.encoders', fromlist=['RDN']).RDN()) / 1e6:.2f} "
        "MFLOP per LR voxel, 0.726 MFLOP per query.",
        "Fractions are of the best measured dense kernel per dtype (see peaks); FLOPs are useful work only "
        "(tiling halos are overhead and not counted).",
        "Wall-clock figures depend on other processes sharing the cores; 'CPU-time' figures divide by the process "
        "CPU seconds per thread instead (against CPU-time peaks), which is what the work itself took.",
    ]
    tables = [{"title": f"(b) x2 inference of a {size}^3 LR volume", "rows": bench_volume(size, peaks)}]
    tables.append({"title": "Decoder (lookup + MLP) vs chunk size", "rows": bench_chunks(quick, peaks)})
    if not ctx.get("skip_whole_brain"):
        shape = ctx.get("whole_brain_shape")
        rows = []
        for amp in ctx.get("whole_brain_precisions") or ("auto",):
            rows.append(bench_whole_brain(quick, tuple(shape) if shape else None, amp))
            print(f"  whole brain: {rows[-1]}", flush=True)
        tables.append({"title": "(c) whole-brain x2, default ImplicitInferer settings (fresh process)", "rows": rows})
    return {"title": "ArSSR", "notes": notes, "tables": tables}


if __name__ == "__main__":
    _child(sys.argv[1:])
