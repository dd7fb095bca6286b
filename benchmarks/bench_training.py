"""Training throughput of every bundle's CPU profile, fp32 and bf16 autocast, as a fraction of the measured peaks.

Each run is the bundle's own training (``python -m monai.bundle``'s ``ConfigWorkflow`` through
:func:`monai_inr.evaluation.bundle.run_bundle`: data loading, random crops, the step, the handlers) in a fresh process
with the project's thread settings (``OMP_WAIT_POLICY=PASSIVE``, the bundle's ``AdaptiveThreads``), for a fixed time:

* iterations per second over ``seconds`` after the first ``WARMUP`` iterations (data loading included);
* the step's share of that time (``ITERATION_STARTED`` -> ``ITERATION_COMPLETED``; the rest is fetching the batch);
* the same loop at the bundle's default precision with one busy neighbour process (contended / idle rate);
* FLOPs of one training step counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
  convolutions of the forward and backward passes; lookups, activations and the optimiser not counted), hence
  GFLOP/s of the whole loop and of the step alone, against the fp32 or bf16 peak measured in the same run.

Profiles (``PROFILES``): the CPU profiles (``cpu.json``) of ArSSR, Dual-ArbNet and Nexus-INR on their realistic data,
the multi-contrast INR's hash grid (``hashgrid.json``) and its paper network (``train.json``: Fourier features, a
1024-wide split-head MLP) on its synthetic 1 mm subject, ArRFR's ``quick.json`` (it has no CPU profile yet); ``--quick`` uses every bundle's ``quick.json``. Data are built on first use under
``<output_dir>/data/<bundle>`` and reused by later runs (the realistic 1 mm sets take minutes to build once).

``run(ctx) -> dict`` (``benchmarks/run.py``); ``python -m benchmarks.bench_training [--quick]`` prints the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["PROFILES", "run"]

ROOT = Path(__file__).resolve().parents[1]

#: row -> (bundle, overlay on train.json: its CPU training profile, or "train.json" for the paper profile itself,
#: data folder under <output_dir>/data: profiles that train on the same data share it)
PROFILES = {
    "arssr": ("arssr", "cpu.json", "arssr_cpu"),
    "dual_arbnet": ("dual_arbnet", "cpu.json", "dual_arbnet_cpu"),
    "nexus_inr": ("nexus_inr", "cpu.json", "nexus_inr_cpu"),
    "multi_contrast_inr": ("multi_contrast_inr", "hashgrid.json", "multi_contrast_inr_hashgrid"),
    "multi_contrast_inr:paper": ("multi_contrast_inr", "train.json", "multi_contrast_inr_hashgrid"),
    "arrfr": ("arrfr", "quick.json", "arrfr_quick"),
}
WARMUP = 3  # iterations excluded from the rate (first-call set-up, caches)

_WORKLOAD = textwrap.dedent("""
    import json, sys, time
    import torch
    from ignite.engine import Events
    from torch.utils.flop_counter import FlopCounterMode
    from monai_inr.evaluation.bundle import run_bundle

    bundle, overlay, amp, seconds, work, data, warmup = sys.argv[1:8]
    seconds, warmup = float(seconds), int(warmup)

    class Meter:
        def __init__(self):
            self.done, self.steps, self.flops, self.mode, self.t_start = [], [], None, None, None

        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_STARTED, self.started)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.completed)

        def started(self, engine):
            if engine.state.iteration == warmup:  # count one step's FLOPs (slower: excluded from the timing)
                self.mode = FlopCounterMode(display=False)
                self.mode.__enter__()
            self.t_start = time.perf_counter()

        def completed(self, engine):
            now = time.perf_counter()
            if self.mode is not None:
                self.mode.__exit__(None, None, None)
                self.flops = int(self.mode.get_total_flops())
                self.mode = None
                self.done.clear()
                self.steps.clear()
            else:
                self.steps.append(now - self.t_start)
            self.done.append(now)
            if self.flops is not None and now - self.done[0] >= seconds:  # measured for `seconds` after warm-up
                engine.terminate()

    meter = Meter()
    import pathlib, shutil
    root = pathlib.Path(f"{work}/{bundle}_{pathlib.Path(overlay).stem}_{amp}")
    shutil.rmtree(root, ignore_errors=True)  # the benchmark's own scratch folder: every run starts clean
    overrides = {"bundle_root": str(root), "dataset_dir": data, "epochs": 100000,
                 "val_interval": 100000, "resume": False, "train_amp_bf16": amp}
    configs = [f"bundles/{bundle}/configs/train.json"] + ([f"bundles/{bundle}/configs/{overlay}"]
                                                          if overlay != "train.json" else [])
    if bundle == "arrfr":  # its loss needs a pre-trained VGG: pre-train once (its own short workflow), then reuse
        vgg_root = pathlib.Path(f"{work}/arrfr_vgg_{pathlib.Path(overlay).stem}")
        if not (vgg_root / "models" / "vgg.pt").is_file():
            run_bundle(configs, {"bundle_root": str(vgg_root), "dataset_dir": data}, run_id="pretraining")
        overrides["vgg_ckpt"] = str(vgg_root / "models" / "vgg.pt")
    run_bundle(configs, overrides, extra_handlers=[meter], time_limit=10 * seconds + 600)  # a safety limit only
    times = meter.done
    n = len(times) - 1
    rate = n / (times[-1] - times[0]) if n > 0 else float("nan")
    step = sum(meter.steps[1:]) / max(1, len(meter.steps) - 1)
    print(json.dumps({"it_per_s": rate, "iterations": n, "step_s": step, "flops_per_step": meter.flops,
                      "threads_end": torch.get_num_threads()}))
""")


def _measure(bundle: str, overlay: str, amp: str, seconds: float, work: Path, data: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    args = [bundle, overlay, amp, str(seconds), str(work), str(data), str(WARMUP)]
    proc = subprocess.run([sys.executable, "-c", _WORKLOAD, *args], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", env=env, cwd=str(ROOT), timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _frac(value: float, peak: float | None) -> float:
    return round(value / peak, 4) if peak else float("nan")


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    from monai_inr.inferers import native_bf16

    quick = bool(ctx.get("quick", False))
    peaks = ctx.get("peaks", {})
    seconds = float(ctx.get("training_seconds") or (15.0 if quick else 30.0))
    names = ctx.get("training_bundles") or list(PROFILES)
    out_dir = Path(ctx.get("output_dir", "runs/bench")).resolve()
    work, data_root = out_dir / "training_runs", out_dir / "data"
    rows: list[dict[str, Any]] = []
    native = native_bf16("cpu")
    contention: list[dict[str, Any]] = []
    for name in names:
        bundle, overlay, data_tag = PROFILES[name]
        if quick and name != bundle:
            continue  # the quick pass runs each bundle's quick.json once
        if quick:
            overlay, data_tag = "quick.json", f"{bundle}_quick"
        data = data_root / data_tag
        results = {}
        for amp in ("false", "true"):
            try:
                r = _measure(bundle, overlay, amp, seconds, work, data)
            except Exception as e:  # one bundle must not lose the others' results
                rows.append({"bundle": name, "profile": overlay, "precision": "bf16" if amp == "true" else "fp32",
                             "error": f"{type(e).__name__}: {str(e)[-300:]}"})
                continue
            results[amp] = r
            peak = peaks.get("bf16" if amp == "true" else "fp32")
            flops = r["flops_per_step"] or 0
            loop_g = flops * r["it_per_s"] / 1e9
            step_g = flops / r["step_s"] / 1e9 if r["step_s"] > 0 else float("nan")
            rows.append({
                "bundle": name,
                "profile": overlay,
                "precision": "bf16 autocast" if amp == "true" else "fp32",
                "it/s": round(r["it_per_s"], 2),
                "step share": round(r["step_s"] * r["it_per_s"], 2),
                "GFLOP/step": round(flops / 1e9, 2),
                "loop GFLOP/s": round(loop_g, 1),
                "loop / peak": _frac(loop_g, peak),
                "step GFLOP/s": round(step_g, 1),
                "step / peak": _frac(step_g, peak),
                "bf16 speed-up": round(r["it_per_s"] / results["false"]["it_per_s"], 2)
                if amp == "true" and "false" in results else None,
                "iterations": r["iterations"],
            })
            print(f"  training {name} ({overlay}) {rows[-1]['precision']}: {rows[-1]}", flush=True)
        if ctx.get("training_contention", True) and results:
            contention.append(_contended(bundle, overlay, seconds, work, data, results))
            contention[-1]["bundle"] = name
            print(f"  training {name} with a busy neighbour: {contention[-1]}", flush=True)
    notes = [
        f"Each bundle's own training loop for {seconds:g} s in a fresh process (OMP_WAIT_POLICY=PASSIVE, the bundle's "
        f"AdaptiveThreads); rates after the first {WARMUP} iterations, data loading included ('loop'); 'step' is "
        "the forward + backward + optimiser step alone ('step share' of the loop's time).",
        "FLOPs: torch.utils.flop_counter of one training step (matrix products and convolutions, forward and "
        "backward); fractions are of the peak of the precision used (fp32 or bf16) measured in the same run.",
        f"bf16 is native on this CPU (AMX / AVX-512 BF16): {native}. Where it is not, bf16 runs are emulated "
        "and slow; the bundles' 'auto' setting then trains in fp32.",
    ]
    notes.append("Busy neighbour: one process of 2-thread 768^2 matrix products (benchmarks.bench_contention) running "
                 "beside the bundle's training at its default precision ('auto'); a fair share is 50 %, the target "
                 ">= 40 % of the idle rate.")
    return {"title": "Training throughput of each bundle's CPU profile", "notes": notes,
            "tables": [{"title": "training loops, fp32 and bf16 autocast", "rows": rows},
                       {"title": "training loops with a busy neighbour (default precision)", "rows": contention}]}


def _contended(bundle: str, overlay: str, seconds: float, work: Path, data: Path,
               idle: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The bundle's training at its default precision with one busy neighbour process, against its idle rate."""
    import time

    from benchmarks.bench_contention import _NEIGHBOUR
    from monai_inr.inferers import native_bf16

    amp = "true" if native_bf16("cpu") else "false"  # what 'auto' resolves to here
    if amp not in idle:
        return {"bundle": bundle, "error": "no idle measurement"}
    neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR])
    try:
        time.sleep(1.0)
        busy = _measure(bundle, overlay, amp, seconds, work, data)
        load = os.getloadavg()[0]
    except Exception as e:
        return {"bundle": bundle, "error": f"{type(e).__name__}: {str(e)[-300:]}"}
    finally:
        neighbour.kill()
        neighbour.wait()
    return {
        "bundle": bundle,
        "precision": "bf16 autocast" if amp == "true" else "fp32",
        "idle it/s": round(idle[amp]["it_per_s"], 2),
        "contended it/s": round(busy["it_per_s"], 2),
        "contended / idle": f"{100 * busy['it_per_s'] / idle[amp]['it_per_s']:.0f} %",
        "threads (end)": busy["threads_end"],
        "load avg": round(load, 2),
    }


if __name__ == "__main__":
    from benchmarks.run import measure_peaks

    import argparse

    parser = argparse.ArgumentParser(description="training throughput of each bundle's CPU profile")
    parser.add_argument("--quick", action="store_true", help="every bundle's quick.json, 15 s each")
    parser.add_argument("--bundles", nargs="*", default=None, choices=list(PROFILES))
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--output_dir", default="runs/bench")
    parser.add_argument("--no_contention", action="store_true", help="skip the runs with a busy neighbour")
    a = parser.parse_args()
    res = run({"quick": a.quick, "peaks": measure_peaks(quick=True), "output_dir": a.output_dir,
               "training_bundles": a.bundles, "training_seconds": a.seconds, "training_contention": not a.no_contention})
    print(json.dumps(res, indent=1, default=str))
