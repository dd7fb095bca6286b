"""Sodium preprocessing benchmark: simulate + reconstruct a realistic acquisition per NUFFT backend.

Realistic = the paper's grid (56 x 56 x 38 at 4.8572 x 4.8572 x 4.75 mm), 7,000 golden-means DA-3DPR spokes x 200
samples (1.4 M samples, 10 ms readout), bi-exponential T2* decay in 25 readout bins on the 2x simulation grid
(112 x 112 x 76), WM SNR 8, one coil; gridding reconstruction with the analytic DCF. Quick mode: 1,000 spokes x 100
samples from the 2 mm phantom.

Besides seconds, throughput is reported as a fraction of this machine's measured fp64 GEMM peak, using a flop model
of the NUFFT (``8 J^3`` real flops per sample for the interpolation and ``5 K log2 K`` per oversampled FFT of ``K``
points, complex); NUFFTs are memory- and gather-bound, so a small fraction is expected. The noiseless quality (NRMSE
against the concentration map band-limited to the sampled k-space ball, whole field of view and inside the head) is
measured once with the fastest available backend.

``run(output_dir, quick=False) -> dict`` writes ``bench_preprocessing.json`` into ``output_dir``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np

__all__ = ["run"]


def _gemm_peak_gflops(n: int = 1024, repeats: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((n, n))
    b = np.random.default_rng(1).standard_normal((n, n))
    a @ b
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _nufft_gflop(n_samples: int, grid_shape, kernel_width: int, n_ffts: int) -> float:
    k = float(np.prod([2 * n for n in grid_shape]))
    return (8.0 * kernel_width**3 * n_samples + n_ffts * 5.0 * k * np.log2(k)) / 1e9


def run(output_dir: str, quick: bool = False) -> dict:
    from monai_inr.data.phantom import make_subject
    from preprocessing.grid import nrmse, reference_image
    from preprocessing.nufft import available_backends
    from preprocessing.reconstruction import ReconConfig, reconstruct
    from preprocessing.simulation import get_preset, maps_from_subject, simulate_subject

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_spokes, n_samples, phantom_spacing = (1000, 100, 2.0) if quick else (7000, 200, 1.0)
    t = time.perf_counter()
    maps = maps_from_subject(make_subject(0, spacing=phantom_spacing))
    t_phantom = time.perf_counter() - t
    peak = _gemm_peak_gflops()
    backends = [b for b in ("finufft", "pynufft") if b in available_backends()]
    result: dict = {
        "benchmark": "sodium preprocessing: simulate + reconstruct",
        "quick": quick,
        "grid": [56, 56, 38],
        "simulation_grid": [112, 112, 76],
        "n_spokes": n_spokes,
        "n_samples": n_samples,
        "n_total_samples": n_spokes * n_samples,
        "phantom_spacing_mm": phantom_spacing,
        "time_phantom_s": round(t_phantom, 2),
        "gemm_peak_gflops_fp64": round(peak, 1),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "backends": {},
    }
    for backend in backends:
        cfg = get_preset("paper", n_spokes=n_spokes, n_samples=n_samples, backend=backend)
        t = time.perf_counter()
        sim = simulate_subject(maps, cfg, seed=0)
        t_sim = time.perf_counter() - t
        t_fwd = sim.info["time_forward_s"]
        jw = cfg.kernel_width if backend == "pynufft" else 7  # finufft eps 1e-6 -> kernel width 7
        t = time.perf_counter()
        rec = reconstruct(sim.raw, sim.recon_grid, ReconConfig(backend=backend))
        t_rec = time.perf_counter() - t
        m = n_spokes * n_samples
        gflop_sim = _nufft_gflop(m, sim.grid_fine.shape, jw, cfg.n_bins)
        gflop_rec = _nufft_gflop(m, sim.recon_grid.shape, jw, 1)
        result["backends"][backend] = {
            "simulate_s": round(t_sim, 2),
            "simulate_forward_nufft_s": round(t_fwd, 2),
            "reconstruct_s": round(t_rec, 2),
            "reconstruct_nufft_s": round(rec.info["time_nufft_s"], 2),
            "samples_per_s_simulate": round(m / t_fwd),
            "samples_per_s_reconstruct": round(m / rec.info["time_nufft_s"]),
            "fraction_of_gemm_peak_simulate": round(gflop_sim / t_fwd / peak, 4),
            "fraction_of_gemm_peak_reconstruct": round(gflop_rec / rec.info["time_nufft_s"] / peak, 4),
            "nufft": rec.info["nufft"],
        }
        print(f"[bench_preprocessing] {backend}: simulate {t_sim:.1f} s, reconstruct {t_rec:.1f} s", flush=True)
    # noiseless, decay-free quality with the fastest backend
    backend = backends[0]
    cfg = get_preset("paper", n_spokes=n_spokes, n_samples=n_samples, backend=backend, snr_wm=None, decay=False)
    sim = simulate_subject(maps, cfg, seed=0)
    ref = np.abs(reference_image(sim.truth_fine, sim.grid_fine, sim.recon_grid, support="sphere"))
    from scipy import ndimage

    head = ndimage.binary_dilation(
        reference_image((sim.truth_fine > 0).astype(np.float32), sim.grid_fine, sim.recon_grid) > 0.5)
    quality = {"backend": backend, "truth": "decay-free concentration band-limited to |k| <= kmax (exact DFT)"}
    for method in ("gridding", "cg"):
        rec = reconstruct(sim.raw, sim.recon_grid, ReconConfig(backend=backend, method=method))
        quality[method] = {"nrmse_whole_fov": round(nrmse(rec.magnitude, ref), 4),
                           "nrmse_head": round(nrmse(rec.magnitude, ref, head), 4),
                           "nrmse_vs_cartesian_box_truth": round(nrmse(rec.magnitude, sim.truth_recon), 4)}
    result["quality_noiseless"] = quality
    result["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    (out_dir / "bench_preprocessing.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", default="runs/bench")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(json.dumps(run(a.output_dir, a.quick), indent=2))
