"""``make demo``: super-resolve a real T1w with the ArSSR bundle's shipped weights, no training needed.

1. take the real Colin27 1 mm T1w (Debian package ``mricron-data``; its right hemisphere was never seen in training)
   or, when it is not installed, a synthetic subject from nilearn's MNI152 anatomy;
2. make low-resolution inputs: cubic-spline x2 (the ArSSR paper's protocol) and physical acquisitions (k-space
   truncation with complex noise at SNR 20 in white matter) at x2 and x4
   (:class:`~monai_inr.transforms.PhysicalAcquisition`);
3. super-resolve each with the bundle's own command (``python -m monai.bundle run inference ...``, shipped weights
   ``bundles/arssr/models/model.pt``);
4. score ArSSR, cubic and trilinear interpolation of the same input on the same grid with the project protocol
   (:mod:`monai_inr.metrics.protocol`), in the brain (right hemisphere) and over the whole volume;
5. write the table (``results.md``) and one montage with error maps per input.

Everything lands under ``--output_dir`` (default ``runs/demo``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_inr.evaluation.methods import interpolate
from monai_inr.evaluation.realistic import degrade
from monai_inr.evaluation.report import write_montage
from monai_inr.evaluation.runner import Reference, protocol_scores
from monai_inr.io import load_volume, save_nifti, write_json_atomic, write_text_atomic
from monai_inr.metrics.protocol import apply_intensity_map, reference_intensity_map

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "arssr"
CONFIGS = BUNDLE / "configs"
SHIPPED = BUNDLE / "models" / "model.pt"
#: (scale, degradation): the ArSSR paper's cubic-spline protocol and physical acquisitions at SNR 20
CASES = ((2.0, "cubic"), (2.0, "kspace_snr20"), (4.0, "kspace_snr20"))


def _bundle(run_id: str, configs: list[str], **overrides) -> None:
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file",
           json.dumps([str(CONFIGS / c) for c in configs]), "--meta_file", str(CONFIGS / "metadata.json"),
           "--logging_file", str(CONFIGS / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def demo_subject(out: Path) -> tuple[Path, np.ndarray, str]:
    """The high-resolution T1w (a NIfTI path), its evaluation mask and a description."""
    from monai_inr.data import anatomy

    if anatomy.colin27_available():
        files = anatomy.colin27_files()
        img = nib.load(str(files["head"]))
        mask = np.asarray(nib.load(str(files["bet"])).dataobj) > 0
        x = (img.affine[0, :3] @ np.indices(mask.shape).reshape(3, -1) + img.affine[0, 3]).reshape(mask.shape)
        return Path(files["head"]), mask & (x > 0), "the real Colin27 1 mm T1w (right hemisphere, held out)"
    from monai_inr.data.phantom import make_subject

    print("note: the Colin27 brain (Debian package mricron-data) is not installed; using a synthetic subject.")
    subject = make_subject(seed=12345, spacing=1.0, contrasts=("t1w",))
    path = save_nifti(subject.images["t1w"], subject.affine, out / "inputs" / "synthetic_T1w.nii.gz")
    return path, subject.labels > 0, "a synthetic subject (MNI152 anatomy)"


def main(output_dir: str = "runs/demo", ckpt_path: str | None = None) -> Path:
    out = Path(output_dir).resolve()
    ckpt = Path(ckpt_path) if ckpt_path else SHIPPED
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt}: no trained ArSSR weights; train them with the command in bundles/arssr/docs/README.md.")
    t0 = time.time()
    src, mask, what = demo_subject(out)
    hr, affine = load_volume(src)
    # crop the far end to a multiple of every scale, so each SR output lands exactly on the reference grid
    keep = tuple(slice(0, n - n % 4) for n in hr.shape)  # the start voxel (and so the affine) is unchanged
    hr, mask = hr[keep], mask[keep]
    rows, lines = [], []
    for scale, degradation in CASES:
        name = f"{src.name.split('.')[0]}_x{scale:g}_{degradation}"
        lr, lr_affine, _ = degrade(hr, affine, degradation, scale, mask=mask)
        lr_file = save_nifti(lr, lr_affine, out / "inputs" / f"{name}.nii.gz")
        _bundle("inference", ["inference.json"], bundle_root=str(BUNDLE), ckpt_path=str(ckpt), input_image=str(lr_file),
                scale=scale, output_dir=str(out / "sr"), overwrite=True)  # the demo regenerates its own outputs
        sr, _ = load_volume(out / "sr" / f"{name}_sr.nii.gz")
        preds = {"ArSSR (shipped)": sr, **{b: interpolate(lr, hr.shape, b) for b in ("cubic", "trilinear")}}
        ref = Reference(subject=name, images=[hr], affine=affine, mask=mask)
        for method, pred in preds.items():
            s = protocol_scores([pred], ref, ["t1w"])
            rows.append({"scale": scale, "degradation": degradation, "method": method, **s})
            lines.append(f"| ×{scale:g} | {degradation} | {method} | {s['psnr_mask_t1w']:.2f} | {s['ssim_mask_t1w']:.4f} | "
                         f"{s['psnr_t1w']:.2f} |")
        lo, hi = reference_intensity_map(hr)
        k = hr.shape[2] // 2
        panels = {"LR (nearest)": interpolate(lr, hr.shape, "nearest")[..., k], **{m: p[..., k] for m, p in preds.items()}}
        write_montage({m: apply_intensity_map(p, lo, hi) for m, p in panels.items()}, out / f"montage_{name}.png",
                      reference=apply_intensity_map(hr[..., k], lo, hi), title=f"{what}: x{scale:g}, {degradation}")
    table = "\n".join(["| scale | LR input | method | PSNR in brain (dB) | SSIM in brain | PSNR whole (dB) |",
                       "|---|---|---|---|---|---|", *lines])
    report = out / "results.md"
    write_text_atomic(report, f"# ArSSR demo: shipped weights on {what}\n\nWeights: `{ckpt}`; "
                      f"run time {(time.time() - t0) / 60:.1f} min.\n\n{table}\n")
    write_json_atomic(out / "results.json", rows)
    print(table)
    print(f"\nOutputs: {out}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="runs/demo")
    parser.add_argument("--ckpt_path", default=None, help="ArSSR weights (default: the shipped bundles/arssr/models/model.pt)")
    args = parser.parse_args()
    main(args.output_dir, args.ckpt_path)
