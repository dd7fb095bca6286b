"""Benchmark entry point: ``python -m benchmarks.run --output_dir runs/bench [--quick] [--only arssr]``.

Measures the machine's matrix-multiply peaks first (fp32 and bf16, best of several repeats), then runs every benchmark
module (``benchmarks/bench_*.py``, each exposing ``run(ctx) -> dict``) and writes ``results.json`` and ``results.md``
(throughput as a fraction of the measured peaks, not bare seconds).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

MODULES = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))  # every benchmarks/bench_*.py


def best_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """Best wall time and best CPU time per thread of ``repeats`` calls after ``warmup`` calls.

    Best-of-N filters out other processes' noise; the CPU time (process CPU seconds / torch threads) is what the work
    itself took, and stays meaningful when other processes share the cores.
    """
    for _ in range(warmup):
        fn()
    best, best_cpu = float("inf"), float("inf")
    threads = torch.get_num_threads()
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, (time.process_time() - c) / threads)
    return best, best_cpu


def measure_peaks(quick: bool = False) -> dict[str, Any]:
    """GEMM-like throughput of this machine in GFLOP/s, per dtype and kernel, and the peak (best kernel) per dtype.

    Kernels: square ``torch.mm`` (n = 2048; MKL for fp32, oneDNN for bf16), a decoder-shaped ``F.linear``
    (65536 x 256 @ 256 x 256) and the same GEMM through oneDNN (``mkldnn._linear_pointwise``), and a 3x3x3 ``conv3d``
    64 -> 64 on a channels-last 32^3 volume (oneDNN; the encoder's dominant kernel). The peak per dtype is the best
    of them, so "fraction of peak" is relative to the fastest dense kernel measured here, not to a datasheet number.
    """
    reps = 3 if quick else 5
    torch.manual_seed(0)
    out: dict[str, Any] = {"kernels": {}}
    n = 1024 if quick else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w, bias = torch.randn(65536, 256), torch.randn(256, 256), torch.randn(256)
    s = 24 if quick else 32
    v = torch.randn(1, 64, s, s, s).contiguous(memory_format=torch.channels_last_3d)
    k = torch.randn(64, 64, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d)
    specs = {
        f"matmul_{n}": (lambda A, B: A @ B, (a, b), 2 * n**3),
        "linear_65536x256x256": (lambda X, W, c: F.linear(X, W, c), (x, w, bias), 2 * 65536 * 256 * 256),
        f"conv3d_3x3x3_64_{s}^3": (lambda V, K: F.conv3d(V, K, padding=1), (v, k), 2 * 27 * 64 * 64 * s**3),
    }
    if hasattr(torch.ops.mkldnn, "_linear_pointwise"):  # the oneDNN GEMM the decoder's inference path uses
        specs["linear_onednn_65536x256x256"] = (
            lambda X, W, c: torch.ops.mkldnn._linear_pointwise(X, W, c, "none", [], ""),
            (x, w, bias),
            2 * 65536 * 256 * 256,
        )
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            name = "fp32" if dtype == torch.float32 else "bf16"
            res, res_cpu = {}, {}
            for kname, (fn, args, flops) in specs.items():
                targs = tuple(t.to(dtype) for t in args)
                wall, cpu = best_time(lambda: fn(*targs), repeats=reps)
                res[kname], res_cpu[kname] = flops / wall / 1e9, flops / cpu / 1e9
            out["kernels"][name] = {kk: round(vv, 1) for kk, vv in res.items()}
            out["kernels"][name + "_cputime"] = {kk: round(vv, 1) for kk, vv in res_cpu.items()}
            out[name] = round(max(res.values()), 1)
            out[name + "_cputime"] = round(max(res_cpu.values()), 1)
            out[name + "_matmul"] = round(res[f"matmul_{n}"], 1)
    return out


def machine_info() -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.is_available(),
    }
    try:
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def to_markdown(results: dict[str, Any]) -> str:
    lines = ["# Benchmarks", ""]
    m = results["machine"]
    lines.append(
        f"torch {m['torch']}, {m['threads']} threads, CPU capability {m['cpu_capability']}, "
        f"load average at start {m.get('loadavg_start')} / end {m.get('loadavg_end')}."
    )
    p = results["peaks"]
    k = p["kernels"]
    lines += [
        "",
        "## Measured peaks (GFLOP/s, best of repeats; wall clock and CPU time per thread)",
        "",
        "| kernel | fp32 wall | bf16 wall | fp32 CPU-time | bf16 CPU-time |",
        "|---|---|---|---|---|",
    ]
    for kname in k["fp32"]:
        lines.append(
            f"| {kname} | {k['fp32'][kname]} | {k['bf16'][kname]} | {k['fp32_cputime'][kname]} | "
            f"{k['bf16_cputime'][kname]} |"
        )
    lines.append(
        f"| **peak (best kernel)** | **{p['fp32']}** | **{p['bf16']}** | **{p['fp32_cputime']}** | "
        f"**{p['bf16_cputime']}** |"
    )
    for name, res in results["benchmarks"].items():
        lines += ["", f"## {res.get('title', name)}", ""]
        for note in res.get("notes", []):
            lines.append(f"- {note}")
        for table in res.get("tables", []):
            rows = table["rows"]
            if not rows:
                continue
            cols = list(rows[0].keys())
            lines += ["", f"**{table['title']}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in rows:
                lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/bench")
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes instead of tens of minutes)")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark modules to run (default: all)")
    parser.add_argument("--skip_whole_brain", action="store_true", help="skip the whole-brain memory benchmark")
    parser.add_argument("--whole_brain_shape", type=int, nargs=3, default=None, help="LR shape (default 197 233 189)")
    parser.add_argument("--whole_brain_precisions", nargs="*", default=["auto"], choices=["auto", "true", "false"],
                        help="amp_bf16 settings of the whole-brain runs (default: auto, the bundles' default)")
    parser.add_argument("--training_seconds", type=float, default=None,
                        help="seconds per training measurement (default 30; --quick 15)")
    args = parser.parse_args(argv)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "benchmarks": {}}
    t0 = time.perf_counter()
    results["peaks"] = measure_peaks(args.quick)
    print(f"peaks (GFLOP/s): fp32 {results['peaks']['fp32']}, bf16 {results['peaks']['bf16']}", flush=True)
    ctx = {
        "peaks": results["peaks"],
        "quick": args.quick,
        "skip_whole_brain": args.skip_whole_brain,
        "whole_brain_shape": args.whole_brain_shape,
        "whole_brain_precisions": args.whole_brain_precisions,
        "training_seconds": args.training_seconds,
        "output_dir": out_dir,
    }
    for mod_name in MODULES:
        short = mod_name.removeprefix("bench_")
        if args.only and short not in args.only and mod_name not in args.only:
            continue
        print(f"== {mod_name}", flush=True)
        try:
            mod = importlib.import_module(f"benchmarks.{mod_name}")
            results["benchmarks"][short] = _call(mod.run, ctx)
        except Exception as e:  # one broken benchmark must not lose the others' results
            results["benchmarks"][short] = {"title": short, "notes": [f"FAILED: {type(e).__name__}: {e}"], "tables": []}
            print(f"{mod_name} failed: {type(e).__name__}: {e}", flush=True)
        _write(out_dir, results)
    try:
        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    _write(out_dir, results)
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return results


def _call(run: Callable[..., dict[str, Any]], ctx: dict[str, Any]) -> dict[str, Any]:
    """Benchmark modules take either the context dict (``run(ctx)``) or ``run(output_dir, quick=...)``."""
    params = list(inspect.signature(run).parameters)
    if params and params[0] == "ctx":
        return run(ctx)
    return run(str(ctx["output_dir"]), quick=ctx["quick"])


def _write(out_dir: Path, results: dict[str, Any]) -> None:
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out_dir / "results.md").write_text(to_markdown(results))


if __name__ == "__main__":
    res = main()
    failed = [k for k, v in res["benchmarks"].items() if any(str(n).startswith("FAILED") for n in v.get("notes", []))]
    raise SystemExit(1 if failed else 0)
