"""Throughput on a shared CPU: idle against one busy neighbour, in one run.

The neighbour is another process that keeps every core busy with 2-thread matrix products (what a colleague's job or
a second training does). Each workload runs in a fresh process, so the OpenMP wait policy, which the runtime reads
when it loads, really differs between the settings:

* ``default``: PyTorch's defaults (as many threads as cores, OpenMP's default spin-then-sleep waiting);
* ``project``: what the bundles and ``monai-inr`` do (``OMP_WAIT_POLICY=PASSIVE`` and
  :class:`monai_inr.engines.threads.AdaptiveThreads` / :func:`~monai_inr.engines.threads.use_fair_threads`).

Workloads: ArSSR quick-profile training through the bundle itself (``train.json`` + ``quick.json`` on a small 4 mm
synthetic set: data loading, random crops, the step and the handlers; iterations per second after 5 s of warm-up)
and ArSSR quick-profile inference (a 32^3 volume at x2). The figure of merit is the contended throughput as a fraction
of the same setting's idle throughput (a fair share of two busy parties is 50 %; the target is >= 40 %).

``run(ctx) -> dict`` (``benchmarks/run.py``); ``python -m benchmarks.bench_contention`` prints the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

__all__ = ["run"]

_NEIGHBOUR = textwrap.dedent("""
    import torch
    torch.set_num_threads(2)
    a = torch.randn(768, 768)
    while True:
        a = torch.tanh(a @ a)
""")

_WORKLOAD = textwrap.dedent("""
    import json, sys, time, types
    import torch
    kind, setting, seconds, work = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    if kind == "train":  # the bundle's own training (data loading, step, handlers) for a fixed time
        from ignite.engine import Events
        from monai_inr.evaluation.bundle import run_bundle
        times = []

        class Count:
            def attach(self, engine):
                engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: times.append(time.perf_counter()))

        overrides = {"bundle_root": f"{work}/{setting}", "dataset_dir": f"{work}/data", "data_spacing": 4.0,
                     "num_train_subjects": 2, "num_val_subjects": 1, "num_test_subjects": 1, "epochs": 100000,
                     "val_interval": 100000, "resume": False}
        if setting == "default":  # the bundle's thread adaptation off: PyTorch's defaults
            overrides["train::handlers::0::_disabled_"] = True
        run_bundle(["bundles/arssr/configs/train.json", "bundles/arssr/configs/quick.json"], overrides,
                   extra_handlers=[Count()], time_limit=seconds + 5)
        steady = [t for t in times if t - times[0] > 5.0]  # after 5 s of warm-up
        rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")
        print(json.dumps({"steps_per_s": rate, "steps": len(steady), "threads_end": torch.get_num_threads()}))
        sys.exit(0)

    from monai_inr.engines.threads import AdaptiveThreads, use_fair_threads
    from monai_inr.evaluation.bundle import network_from_bundle
    from monai_inr.inferers import ImplicitInferer
    torch.manual_seed(0)
    net = network_from_bundle(["bundles/arssr/configs/inference.json", "bundles/arssr/configs/quick.json"],
                              {"device": "$torch.device('cpu')"}).eval()
    adapt = None
    if setting == "project":  # what the bundle's inference does when it starts, re-checked every 5 volumes
        use_fair_threads()
        adapt = AdaptiveThreads(every=5)
        adapt.started(None)
    inferer = ImplicitInferer(scale=2.0, progress=False)
    vol = torch.rand(1, 1, 32, 32, 32)

    def step():
        with torch.inference_mode():
            inferer(vol, net)

    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
        if adapt is not None and n % adapt.every == 0:
            adapt(types.SimpleNamespace(state=types.SimpleNamespace(iteration=n)))
    dt = time.perf_counter() - t0
    print(json.dumps({"steps_per_s": n / dt, "steps": n, "threads_end": torch.get_num_threads()}))
""")



def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if setting == "project":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _measure(kind: str, setting: str, seconds: float, cwd: str, work: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _WORKLOAD, kind, setting, str(seconds), work], capture_output=True,
                          text=True, encoding="utf-8", errors="replace", env=_env(setting), cwd=cwd, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(ctx: dict[str, Any]) -> dict[str, Any]:
    quick = bool(ctx.get("quick", False))
    seconds = 8.0 if quick else 20.0
    cwd = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows, raw = [], {}
    work = tempfile.mkdtemp(prefix="bench_contention_")
    _measure("train", "project", 1.0, cwd, work)  # builds the small training set once
    for kind in ("train", "infer"):
        for setting in ("default", "project"):
            idle = _measure(kind, setting, seconds, cwd, work)
            neighbour = subprocess.Popen([sys.executable, "-c", _NEIGHBOUR], env=_env("default"))
            try:
                time.sleep(1.0)
                busy = _measure(kind, setting, seconds, cwd, work)
                load = os.getloadavg()[0]
            finally:
                neighbour.kill()
                neighbour.wait()
            raw[f"{kind}/{setting}"] = {"idle": idle, "contended": busy}
            rows.append({
                "workload": "ArSSR quick training (bundle)" if kind == "train" else "ArSSR quick inference 32^3 x2",
                "setting": setting,
                "idle steps/s": round(idle["steps_per_s"], 3),
                "contended steps/s": round(busy["steps_per_s"], 3),
                "contended / idle": f"{100 * busy['steps_per_s'] / idle['steps_per_s']:.0f} %",
                "threads (contended, end)": busy["threads_end"],
                "load avg (contended)": round(load, 2),
            })
    shutil.rmtree(work, ignore_errors=True)
    notes = [
        "neighbour: one process of 2-thread 768^2 matrix products; each row's idle and contended runs are "
        f"{seconds:g} s each in fresh processes; a fair share is 50 %, the target is >= 40 %.",
        "default = PyTorch defaults (threads = cores, OpenMP default waiting); project = OMP_WAIT_POLICY=PASSIVE and "
        "intra-op threads = CPUs not busy with other processes (monai_inr.engines.threads).",
    ]
    return {"title": "Throughput with a busy neighbour (idle vs contended, one run)", "notes": notes,
            "tables": [{"title": "steps per second", "rows": rows}], "raw": raw}


if __name__ == "__main__":
    res = run({"quick": "--quick" in sys.argv})
    for r in res["tables"][0]["rows"]:
        print(r)
