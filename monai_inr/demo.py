"""``make demo``: the main job on the embedded default data, through the ArSSR bundle's own commands.

1. build the small synthetic brain dataset (2 mm subjects from nilearn's MNI152 template);
2. train ArSSR with the quick profile (``python -m monai.bundle run training ...``);
3. evaluate it on the held-out subjects at x2, x2.5, x3, x3.5 and x4 against cubic and trilinear interpolation;
4. super-resolve an unseen subject's low-resolution T1w at x2, x2.5 and x4 (``run inference``);
5. write the metrics table (markdown) and a PNG montage per scale (LR / cubic / ArSSR / ground truth, three planes).

Everything lands under ``--output_dir`` (default ``runs/demo``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from monai_inr.coords import fov_affine, scaled_shape
from monai_inr.evaluation.methods import interpolate
from monai_inr.io import load_volume, save_nifti
from monai_inr.transforms.functional import resize_cell_centred

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "arssr"
CONFIGS = BUNDLE / "configs"
SR_SCALES = (2.0, 2.5, 4.0)


def _bundle(run_id: str, configs: list[str], **overrides) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", json.dumps([str(CONFIGS / c) for c in configs]),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def results_table(metrics_file: Path) -> str:
    """Markdown table: one row per scale and method, mean ± SD over subjects."""
    metrics = json.loads(metrics_file.read_text())
    rows = ["| scale | method | PSNR (dB) | PSNR in mask (dB) | SSIM | SSIM in mask | n |", "|---|---|---|---|---|---|---|"]
    for s in metrics["summary"]:
        rows.append(
            f"| ×{s['scale']:g} | {s['method']} | {s['psnr_mean']:.2f} ± {s['psnr_sd']:.2f} | "
            f"{s['psnr_mask_mean']:.2f} ± {s['psnr_mask_sd']:.2f} | {s['ssim_mean']:.4f} | {s['ssim_mask_mean']:.4f} | {s['n']} |"
        )
    return "\n".join(rows)


def montage(lr: np.ndarray, cubic: np.ndarray, sr: np.ndarray, gt: np.ndarray, title: str, path: Path) -> None:
    """Central slices in three planes (rows) of LR / cubic / ArSSR / ground truth (columns) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {"LR input": lr, "cubic": cubic, "ArSSR": sr, "ground truth": gt}
    fig, axes = plt.subplots(3, 4, figsize=(12, 9))
    for col, (name, vol) in enumerate(columns.items()):
        for row in range(3):
            index = vol.shape[row] // 2
            sl = np.take(vol, index, axis=row)
            axes[row, col].imshow(np.rot90(sl), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(output_dir: str = "runs/demo", skip_training: bool = False) -> Path:
    out = Path(output_dir).resolve()
    data_dir, root = out / "data", out / "arssr"
    overrides = {"bundle_root": str(root), "dataset_dir": str(data_dir)}
    t0 = time.time()

    if not skip_training:
        _bundle("training", ["train.json", "quick.json"], **overrides)
    t_train = time.time() - t0
    _bundle("evaluating", ["train.json", "evaluate.json", "quick.json"], **overrides, output_dir=str(out / "evaluation"))

    datalist = json.loads((data_dir / "datalist.json").read_text())
    gt_file = Path(datalist["test"][0]["t1w"])
    gt_file = gt_file if gt_file.is_absolute() else data_dir / gt_file
    gt, affine = load_volume(gt_file)
    gt = (gt - gt.min()) / (gt.max() - gt.min())
    for scale in SR_SCALES:
        lr_shape = scaled_shape(gt.shape, 1.0 / scale)
        lr = resize_cell_centred(gt, lr_shape, order=3)
        lr_file = save_nifti(lr, fov_affine(affine, gt.shape, lr_shape), out / "inputs" / f"{gt_file.name.split('.')[0]}_lr-x{scale:g}.nii.gz")
        _bundle("inference", ["inference.json", "quick.json"], bundle_root=str(root), input_image=str(lr_file), scale=scale,
                output_dir=str(out / "sr"))
        sr, _ = load_volume(out / "sr" / lr_file.name.replace(".nii.gz", "_sr.nii.gz"))
        cubic = np.clip(interpolate(lr, sr.shape, "cubic"), 0, 1)
        nearest = interpolate(lr, sr.shape, "nearest")
        gt_on_sr = gt if gt.shape == sr.shape else resize_cell_centred(gt, sr.shape, order=1)
        montage(nearest, cubic, np.clip(sr, 0, 1), gt_on_sr, f"ArSSR x{scale:g} (unseen synthetic subject)",
                out / f"montage_x{scale:g}.png")

    table = results_table(out / "evaluation" / "metrics.json")
    report = out / "results.md"
    report.write_text(
        f"# ArSSR demo (quick profile, synthetic 2 mm subjects)\n\nTraining time: {t_train / 60:.1f} min\n\n{table}\n"
    )
    print(table)
    print(f"\nOutputs: {out}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument("--skip_training", action="store_true", help="reuse the checkpoint already under output_dir")
    args = parser.parse_args()
    main(args.output_dir, args.skip_training)
