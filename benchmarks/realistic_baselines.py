"""Interpolation baselines on the realistic data: in-brain PSNR/SSIM of cubic and trilinear upsampling back to HR.

Builds (or reuses) a realistic dataset at 1 mm (Colin27 anatomy, right-hemisphere test subjects) and, for each test
subject and the real Colin27 scan, degrades the T1w by x2 and x4 with (a) cubic-spline downsampling (the ArSSR
protocol), (b) a 3D physical acquisition (k-space truncation, complex noise at WM SNR 20, magnitude) and (c) a 2D
multi-slice one (axial Gaussian slice profile, in-plane k-space truncation, SNR 20); then upsamples the LR image back
to the HR grid with cubic (order 3) and trilinear (order 1) interpolation and scores it with the project protocol
(:func:`monai_inr.metrics.protocol.evaluate_pair`, min-max of the HR reference, data range 1, brain mask).

``python benchmarks/realistic_baselines.py --output_dir runs/realistic_baselines [--num_test 2]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from monai_inr.data.realistic import build_realistic_dataset
from monai_inr.metrics.protocol import evaluate_pair
from monai_inr.transforms import CubicDownsample, PhysicalAcquisition
from monai_inr.transforms.functional import resize_cell_centred

DEGRADATIONS = {
    "cubic": lambda s: CubicDownsample(s),
    "kspace3d_snr20": lambda s: PhysicalAcquisition(scale=s, snr=20.0),
    "slice2d_gauss_snr20": lambda s: PhysicalAcquisition(scale=s, slice_axis=2, profile="gaussian", snr=20.0),
}


def evaluate_volume(path: str, mask_path: str, label_path: str, scales=(2.0, 4.0), seed: int = 0) -> list[dict]:
    img = nib.load(path)
    hr = MetaTensor(torch.from_numpy(np.asarray(img.dataobj, np.float32))[None], affine=torch.as_tensor(img.affine))
    mask = np.asarray(nib.load(mask_path).dataobj) > 0
    label = np.asarray(nib.load(label_path).dataobj)
    rows = []
    for scale in scales:
        for name, make in DEGRADATIONS.items():
            t = make(scale)
            if hasattr(t, "set_random_state"):
                t.set_random_state(seed)
            lr = t(hr, label=label) if isinstance(t, PhysicalAcquisition) else t(hr)
            for method, order in (("cubic", 3), ("trilinear", 1)):
                up = resize_cell_centred(lr.as_tensor(), tuple(hr.shape[1:]), order=order)
                m = evaluate_pair(np.asarray(up)[0], hr[0].numpy(), mask, normalize="minmax")
                rows.append({"scale": scale, "degradation": name, "method": method,
                             **{k: round(float(v), 3) for k, v in m.items()}})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/realistic_baselines")
    parser.add_argument("--num_test", type=int, default=2)
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    datalist = json.loads(build_realistic_dataset(out / "data", num_train=1, num_val=0, num_test=args.num_test,
                                                  spacing=1.0, contrasts=("t1w",)).read_text(encoding="utf-8"))
    results = {}
    for item in datalist["test"] + datalist["real"]:
        results[item["subject"]] = evaluate_volume(item["t1w"], item["mask"], item["label"])
        for r in results[item["subject"]]:
            print(item["subject"], r)
    (out / "baselines.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
