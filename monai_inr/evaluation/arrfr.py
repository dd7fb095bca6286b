"""ArRFR evaluation (``bundles/arrfr/configs/evaluate.json``): the paper's no-reference protocol plus reference metrics
that the synthetic data makes possible, the ROI regression, and the paper's figures.

Per test volume (:class:`ArRFREvaluationStep`, the ``iteration_update`` of a :class:`monai.engines.SupervisedEvaluator`;
sodium and T2w min-max normalised per volume as in preparation):

1. **No-reference sharpness and naturalness** (paper Table 1): ``slices_per_plane`` foreground slices along each
   evaluated axis; each is fused by ArRFR from the **clean** sodium + T2w at every up-sampling factor ``r`` (output
   ``round(N r)`` pixels over the same FOV) and compared with cubic B-spline interpolation of the sodium slice onto
   the same grid; both clipped to [0, 1]; PSI, LPC-SI (:mod:`monai_inr.metrics.sharpness`) and BRISQUE
   (:mod:`monai_inr.metrics.brisque`). When BRISQUE cannot be scored (the optional package is absent, or
   ``brisque=False``) the records carry no BRISQUE value at all: ``metrics.json`` and its CSVs have no BRISQUE column,
   ``metrics.json``'s metadata says ``"brisque": "BRISQUE unavailable: <reason>"`` (also under
   ``"unavailable_metrics"``) and ``results.md`` states it under the table, so no NaN column is written silently.
2. **Reference metrics** (simulated data only, needs the truth files): the same slices are down-sampled by ``r`` with
   the training operator's FOV-preserving cubic variant (:class:`~monai_inr.transforms.CubicDownsample`; ``r = 1``:
   the clean slice itself), fused back onto the original grid, and scored with 2D PSNR/SSIM (data range 1, whole slice
   and inside the head) against the **true sodium concentration** and against the **T2w**; baselines: linear and cubic
   interpolation of the LR sodium and (``r = 1``) the input sodium. The truth (mM) is brought into the normalised
   sodium scale by one linear map per subject, fitted by least squares from the input sodium to the truth inside the
   head, and applied to the truth only, so every method is judged against the same target.
3. **ROI analysis** (paper Fig. 2): on ``roi_slices_per_subject`` random slices (seeded) with enough CSF, the mean of
   the input sodium, the degraded sodium (the training degradation: Rician sigma 0.4 on [0, 1], renormalised) and the
   ArRFR output at x1 (clean input) inside the CSF and tumour label ROIs (or, without labels, inside the shared
   high-signal region ``sodium > 0.5 and T2w > 0.5``); the report fits ``degraded ~ input`` and ``output ~ input``
   (least squares) with R^2.
4. **Figures**: a profile plot across CSF (Fig. 3: cubic vs ArRFR at x2, x3, x4) of the first subject, a montage of the
   first lesion subject (Fig. 4), and the ROI regressions.

:class:`ArRFREvaluationReport` (an ignite handler) gathers the per-volume results and writes ``metrics.json`` (no-ref,
per scale and method; per-subject means), ``reference_metrics.json``, one CSV per scale for each, ``roi_analysis.json``,
``results.md`` and ``figures/*.png`` under ``output_dir``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.io import write_json_atomic, write_text_atomic
from monai_inr.metrics import psnr, ssim, summarize, write_metrics
from monai_inr.metrics.brisque import BRISQUE_SKIP_MESSAGE, BrisqueUnavailable, brisque_score
from monai_inr.metrics.sharpness import lpc_si, psi
from monai_inr.transforms import CubicDownsample, RandRicianNoise

from .methods import interpolate
from .report import markdown_table, save_figure
from .tables import ARRFR_NOREF_COLUMNS, ARRFR_REF_KEYS, Column, TableSpec

__all__ = ["ArRFREvaluationStep", "ArRFREvaluationReport", "linear_fit", "select_slices", "LABEL_CSF", "LABEL_TUMOUR",
           "BRISQUE_DISABLED_MESSAGE"]

log = logging.getLogger(__name__)

LABEL_CSF = 1
LABEL_TUMOUR = 5
#: the reason recorded when the configuration turns BRISQUE off (``brisque=False``, the bundle's ``eval_brisque``)
BRISQUE_DISABLED_MESSAGE = "BRISQUE unavailable: turned off in the configuration (eval_brisque false)."
#: what ``metrics.json`` records about a BRISQUE column that was scored
BRISQUE_METHOD_NOTE = "brisque 0.2.0 (8-bit RGB input)"
_PLANE_NAMES = {0: "axis0", 1: "axis1", 2: "axis2"}


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares ``y = slope x + intercept`` with ``r2`` (coefficient of determination) and ``n``."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = int(xa.size)
    if n < 2 or float(np.ptp(xa)) == 0.0:
        return {"slope": math.nan, "intercept": math.nan, "r2": math.nan, "n": n}
    slope, intercept = np.polyfit(xa, ya, 1)
    pred = slope * xa + intercept
    ss_res = float(np.sum((ya - pred) ** 2))
    ss_tot = float(np.sum((ya - ya.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2), "n": n}


def select_slices(
    volume: np.ndarray, axis: int, count: int, min_relative: float = 0.5, threshold: float = 0.05
) -> list[int]:
    """``count`` slice indices along ``axis`` at the centres of ``count`` equal parts of the slices whose foreground
    (``> threshold * max``) covers at least ``min_relative`` of the largest foreground (one slice: the middle one)."""
    fg = (volume > threshold * float(volume.max())).mean(axis=tuple(d for d in range(3) if d != axis))
    good = np.flatnonzero(fg >= min_relative * fg.max()) if fg.max() > 0 else np.arange(volume.shape[axis])
    if good.size == 0 or count <= 0:
        return []
    n = min(int(count), good.size)
    pick = np.floor((np.arange(n) + 0.5) / n * good.size).astype(int)
    return [int(good[i]) for i in np.unique(pick)]


def reference_scores(image: np.ndarray, truth: np.ndarray, t2w: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """PSNR/SSIM (data range 1) of an output clipped to [0, 1] against the calibrated truth (whole and inside
    ``mask``) and against the T2w; 2D slices or 3D volumes."""
    p = np.clip(image, 0.0, 1.0)
    res = {"psnr_truth": psnr(p, truth, 1.0), "ssim_truth": ssim(p, truth, 1.0),
           "psnr_t2w": psnr(p, t2w, 1.0), "ssim_t2w": ssim(p, t2w, 1.0)}
    if mask is not None:
        res["psnr_truth_mask"] = psnr(p, truth, 1.0, mask=mask)
        res["ssim_truth_mask"] = ssim(p, truth, 1.0, mask=mask)
    return res


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _vol(batch: Mapping[str, Any], key: str) -> np.ndarray | None:
    v = batch.get(key)
    if v is None:
        return None
    a = _np(v).astype(np.float32)
    while a.ndim > 3:
        a = a[0]
    return a


def _first(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return v[0] if v else None
    if isinstance(v, torch.Tensor) and v.ndim > 0:
        return v.reshape(-1)[0].item()
    return v


class ArRFREvaluationStep:
    """Evaluate one test volume (see the module docstring); returns ``{"subject", "noref", "reference", "roi",
    "figures"}`` as the engine output.

    Args:
        scales: up-sampling / down-sampling factors ``r`` (paper: 2, 2.5, 3, 3.5, 4).
        axes: array axes to slice along (the three planes).
        slices_per_plane: foreground slices per axis and subject.
        roi_slices_per_subject: random slices per subject for the ROI analysis (paper: nine slices in total).
        roi_min_pixels: smallest ROI (pixels) that counts.
        noise_std: the training degradation's Rician sigma on [0, 1] (0.4).
        profile_scales: scales of the profile plot (paper: 2, 3, 4).
        montage_scales: ArRFR scales in the lesion montage (paper: 1, 2, 4).
        brisque: score BRISQUE. Without it (or without the optional package) the records have no ``brisque`` key and
            :attr:`brisque_note` gives the reason (:data:`BRISQUE_DISABLED_MESSAGE`, or the package's
            :class:`~monai_inr.metrics.brisque.BrisqueUnavailable` message with the install command).
        restack_axis: the plane (array axis) along which whole volumes are reconstructed slice by slice for the 3D
            reference metrics of the restacked volume (``None``: skip them).
        seed: seed of the ROI slice choice and the degradation.
        keys: batch keys of sodium, T2w, truth, labels.
    """

    def __init__(
        self,
        scales: Sequence[float] = (2.0, 2.5, 3.0, 3.5, 4.0),
        axes: Sequence[int] = (0, 1, 2),
        slices_per_plane: int = 10,
        roi_slices_per_subject: int = 3,
        roi_min_pixels: int = 4,
        noise_std: float = 0.4,
        profile_scales: Sequence[float] = (2.0, 3.0, 4.0),
        montage_scales: Sequence[float] = (1.0, 2.0, 4.0),
        brisque: bool = True,
        restack_axis: int | None = 2,
        seed: int = 0,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        self.scales = tuple(float(s) for s in scales)
        self.axes = tuple(int(a) for a in axes)
        self.slices_per_plane = int(slices_per_plane)
        self.roi_slices = int(roi_slices_per_subject)
        self.roi_min_pixels = int(roi_min_pixels)
        self.noise_std = float(noise_std)
        self.profile_scales = tuple(float(s) for s in profile_scales)
        self.montage_scales = tuple(float(s) for s in montage_scales)
        self.use_brisque = bool(brisque)
        self.restack_axis = None if restack_axis is None else int(restack_axis)
        self.brisque_note: str | None = None if self.use_brisque else BRISQUE_DISABLED_MESSAGE
        self.seed = int(seed)
        self.keys = {"sodium": "sodium", "t2w": "t2w", "truth": "truth", "labels": "labels", **(keys or {})}
        self._count = 0

    # ------------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def fuse(net: torch.nn.Module, sodium: np.ndarray, t2w: np.ndarray, out_shape: Sequence[int], device) -> np.ndarray:
        """ArRFR output ``(H', W')`` of one slice pair on an ``out_shape`` grid over the same FOV."""
        a = torch.from_numpy(np.ascontiguousarray(sodium, dtype=np.float32))[None, None].to(device)
        b = torch.from_numpy(np.ascontiguousarray(t2w, dtype=np.float32))[None, None].to(device)
        with torch.inference_mode():
            out = net(a, b, output_shape=tuple(int(n) for n in out_shape))
        return out[0, 0].float().cpu().numpy()

    @staticmethod
    def cubic(image: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
        return np.clip(interpolate(image, out_shape, "cubic"), 0.0, 1.0)

    @staticmethod
    def linear(image: np.ndarray, out_shape: Sequence[int]) -> np.ndarray:
        """(Bi)linear interpolation of a slice (the trilinear baseline of the 3D bundles, in-plane)."""
        return np.clip(interpolate(image, out_shape, "linear"), 0.0, 1.0)

    def _brisque(self, image: np.ndarray) -> dict[str, float]:
        """``{"brisque": score}``, or ``{}`` when BRISQUE is unavailable (the reason in :attr:`brisque_note`)."""
        if not self.use_brisque:
            return {}
        try:
            return {"brisque": brisque_score(image, data_range=1.0)}
        except BrisqueUnavailable as e:
            self.brisque_note = str(e) or BRISQUE_SKIP_MESSAGE
            log.warning(self.brisque_note)
            self.use_brisque = False
            return {}

    def _noref(self, image: np.ndarray) -> dict[str, float]:
        clipped = np.clip(image, 0.0, 1.0)
        return {"psi": psi(clipped), "lpc_si": lpc_si(clipped, data_range=1.0), **self._brisque(clipped)}

    @staticmethod
    def calibrate(sodium: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
        """``truth ~ a * sodium + b`` inside ``mask`` (least squares); returns ``(a, b)``."""
        fit = linear_fit(sodium[mask], truth[mask])
        a, b = fit["slope"], fit["intercept"]
        if not np.isfinite(a) or abs(a) < 1e-12:
            lo, hi = float(truth.min()), float(truth.max())
            return (hi - lo) or 1.0, lo
        return a, b

    # ------------------------------------------------------------------------------------------------ main
    def __call__(self, engine: Engine, batch: Mapping[str, Any]) -> dict[str, Any]:
        net = engine.network
        net.eval()
        device = engine.state.device
        na = _vol(batch, self.keys["sodium"])
        t2 = _vol(batch, self.keys["t2w"])
        truth = _vol(batch, self.keys["truth"])
        labels = _vol(batch, self.keys["labels"])
        subject = str(_first(batch.get("subject")) or f"subject{self._count}")
        lesion = bool(_first(batch.get("lesion")) or False)
        self._count += 1
        labels_i = None if labels is None else np.rint(labels).astype(np.int16)
        head = (labels_i > 0) if labels_i is not None else ((truth > 0) if truth is not None else None)
        truth_n = None
        if truth is not None:
            mask = head if head is not None and head.any() else np.ones(na.shape, dtype=bool)
            a, b = self.calibrate(na, truth, mask)
            truth_n = np.clip((truth - b) / a, 0.0, 1.0).astype(np.float32)

        noref: list[dict] = []
        reference: list[dict] = []
        for axis in self.axes:
            for idx in select_slices(na, axis, self.slices_per_plane):
                na_s, t2_s = np.take(na, idx, axis=axis), np.take(t2, idx, axis=axis)
                base = {"subject": subject, "axis": axis, "slice": idx}
                for r in self.scales:
                    shape = tuple(max(1, int(round(n * r))) for n in na_s.shape)
                    fused = self.fuse(net, na_s, t2_s, shape, device)
                    noref.append({**base, "scale": r, "method": "ArRFR", **self._noref(fused)})
                    noref.append({**base, "scale": r, "method": "cubic", **self._noref(self.cubic(na_s, shape))})
                    noref.append({**base, "scale": r, "method": "linear", **self._noref(self.linear(na_s, shape))})
                if truth_n is not None:
                    reference += self._reference(net, device, base, na_s, t2_s, np.take(truth_n, idx, axis=axis),
                                                 None if head is None else np.take(head, idx, axis=axis))
        restacked = []
        if truth_n is not None and self.restack_axis is not None:
            restacked = self._restacked(net, device, subject, na, t2, truth_n, head)
        roi = self._roi(net, device, subject, na, t2, labels_i)
        figures = self._figure_data(net, device, subject, lesion, na, t2, truth_n, labels_i)
        out = {"subject": subject, "lesion": lesion, "noref": noref, "reference": reference, "restacked": restacked,
               "roi": roi, "figures": figures, "brisque_note": self.brisque_note}
        engine.state.output = out
        return out

    def _reference(self, net, device, base, na_s, t2_s, truth_s, head_s) -> list[dict]:
        recs = []
        hr = tuple(na_s.shape)
        m = head_s if head_s is not None and head_s.sum() >= 16 else None

        def score(img):
            return reference_scores(img, truth_s, t2_s, m)

        recs.append({**base, "scale": 1.0, "method": "input", **score(na_s)})
        recs.append({**base, "scale": 1.0, "method": "ArRFR", **score(self.fuse(net, na_s, t2_s, hr, device))})
        for r in self.scales:
            down = CubicDownsample(r)
            lr_na = np.clip(down(na_s[None], affine=np.eye(3))[0].numpy(), 0.0, None)
            lr_t2 = np.clip(down(t2_s[None], affine=np.eye(3))[0].numpy(), 0.0, None)
            if min(lr_na.shape) < 3:
                continue
            recs.append({**base, "scale": r, "method": "ArRFR", **score(self.fuse(net, lr_na, lr_t2, hr, device))})
            recs.append({**base, "scale": r, "method": "cubic", **score(self.cubic(lr_na, hr))})
            recs.append({**base, "scale": r, "method": "linear", **score(self.linear(lr_na, hr))})
        return recs

    def _restacked(self, net, device, subject, na, t2, truth_n, head) -> list[dict]:
        """3D metrics of whole volumes rebuilt slice by slice along :attr:`restack_axis`.

        At x1 every clean slice pair is fused on its own grid; at x r every slice pair is cubic-downsampled by r (the
        reference degradation of :meth:`_reference`) and fused back; the cubic baseline interpolates the same LR
        slices. The stacked volumes are scored in 3D against the calibrated truth (whole and inside the head) and
        against the T2w.
        """
        axis = self.restack_axis
        slices = range(na.shape[axis])
        m = head if head is not None and head.sum() >= 16 else None

        def score(vol: np.ndarray) -> dict[str, float]:
            return reference_scores(vol, truth_n, t2, m)

        def stack(planes: list[np.ndarray]) -> np.ndarray:
            return np.stack(planes, axis=axis).astype(np.float32)

        base = {"subject": subject, "axis": axis, "slice": -1}
        recs = [{**base, "scale": 1.0, "method": "input", **score(na)}]
        fused = [self.fuse(net, np.take(na, i, axis), np.take(t2, i, axis), np.take(na, i, axis).shape, device)
                 for i in slices]
        recs.append({**base, "scale": 1.0, "method": "ArRFR", **score(stack(fused))})
        for r in self.scales:
            down = CubicDownsample(r)
            fused, cubic, linear = [], [], []
            for i in slices:
                na_s, t2_s = np.take(na, i, axis), np.take(t2, i, axis)
                lr_na = np.clip(down(na_s[None], affine=np.eye(3))[0].numpy(), 0.0, None)
                lr_t2 = np.clip(down(t2_s[None], affine=np.eye(3))[0].numpy(), 0.0, None)
                if min(lr_na.shape) < 3:
                    break
                fused.append(self.fuse(net, lr_na, lr_t2, na_s.shape, device))
                cubic.append(self.cubic(lr_na, na_s.shape))
                linear.append(self.linear(lr_na, na_s.shape))
            else:
                recs.append({**base, "scale": r, "method": "ArRFR", **score(stack(fused))})
                recs.append({**base, "scale": r, "method": "cubic", **score(stack(cubic))})
                recs.append({**base, "scale": r, "method": "linear", **score(stack(linear))})
        return recs

    def _roi(self, net, device, subject, na, t2, labels) -> list[dict]:
        rng = np.random.default_rng(self.seed + self._count)
        noise = RandRicianNoise(prob=1.0, std=self.noise_std, sample_std=False, value_range=(0.0, 1.0),
                                renormalize=True)
        noise.set_random_state(seed=int(self.seed + self._count))
        if labels is not None:
            rois = {"CSF": labels == LABEL_CSF, "tumour": labels == LABEL_TUMOUR}
            source = "labels"
        else:
            rois = {"high_signal": (na > 0.5) & (t2 > 0.5)}
            source = "shared high-signal threshold (sodium > 0.5 and T2w > 0.5)"
        key = "CSF" if "CSF" in rois else "high_signal"
        candidates = []
        for axis in self.axes:
            counts = rois[key].sum(axis=tuple(d for d in range(3) if d != axis))
            candidates += [(axis, int(i)) for i in np.flatnonzero(counts >= self.roi_min_pixels)]
        if not candidates:
            return []
        pick = rng.choice(len(candidates), size=min(self.roi_slices, len(candidates)), replace=False)
        points = []
        for j in sorted(int(p) for p in pick):
            axis, idx = candidates[j]
            na_s, t2_s = np.take(na, idx, axis=axis), np.take(t2, idx, axis=axis)
            degraded = noise(torch.from_numpy(na_s[None].copy()))[0].numpy()
            output = self.fuse(net, na_s, t2_s, na_s.shape, device)
            for name, roi in rois.items():
                r = np.take(roi, idx, axis=axis)
                if r.sum() < self.roi_min_pixels:
                    continue
                points.append({"subject": subject, "axis": axis, "slice": idx, "roi": name, "pixels": int(r.sum()),
                               "input": float(na_s[r].mean()), "degraded": float(degraded[r].mean()),
                               "output": float(output[r].mean()), "roi_source": source})
        return points

    def _figure_data(self, net, device, subject, lesion, na, t2, truth_n, labels) -> dict:
        data: dict[str, Any] = {}
        axis = 2
        if self._count == 1:  # profile across CSF of the first subject
            csf = (labels == LABEL_CSF) if labels is not None else ((na > 0.5) & (t2 > 0.5))
            counts = csf.sum(axis=(0, 1))
            idx = int(np.argmax(counts)) if counts.max() > 0 else na.shape[axis] // 2
            na_s, t2_s = na[:, :, idx], t2[:, :, idx]
            row = int(np.argmax(csf[:, :, idx].sum(axis=1))) if csf[:, :, idx].any() else na_s.shape[0] // 2
            images = {}
            for r in self.profile_scales:
                shape = tuple(max(1, int(round(n * r))) for n in na_s.shape)
                images[r] = {"ArRFR": self.fuse(net, na_s, t2_s, shape, device), "cubic": self.cubic(na_s, shape)}
            data["profile"] = {"subject": subject, "axis": axis, "slice": idx, "row": row, "sodium": na_s,
                               "images": images}
        if lesion and labels is not None and (labels == LABEL_TUMOUR).any():
            counts = (labels == LABEL_TUMOUR).sum(axis=(0, 1))
            idx = int(np.argmax(counts))
            na_s, t2_s = na[:, :, idx], t2[:, :, idx]
            panels = {"T2w": t2_s, "sodium input": na_s}
            if truth_n is not None:
                panels["true concentration"] = truth_n[:, :, idx]
            for r in self.montage_scales:
                shape = tuple(max(1, int(round(n * r))) for n in na_s.shape)
                panels[f"ArRFR x{r:g}"] = self.fuse(net, na_s, t2_s, shape, device)
                if r != 1.0:
                    panels[f"cubic x{r:g}"] = self.cubic(na_s, shape)
            data["montage"] = {"subject": subject, "axis": axis, "slice": idx, "panels": panels,
                               "tumour": labels[:, :, idx] == LABEL_TUMOUR}
        return data


# ---------------------------------------------------------------------------------------------------------------------
# report


def _subject_means(records: list[dict], keys: Sequence[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["subject"], r["scale"], r["method"]), []).append(r)
    out = []
    for (subject, scale, method), rs in groups.items():
        row: dict[str, Any] = {"subject": subject, "scale": scale, "method": method, "slices": len(rs)}
        for k in keys:
            vals = np.array([r.get(k, math.nan) for r in rs], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[k] = float(vals.mean()) if vals.size else math.nan
        out.append(row)
    return out


class ArRFREvaluationReport:
    """Collect :class:`ArRFREvaluationStep` outputs and write the evaluation files at the end of the run.

    Args:
        output_dir: folder for ``metrics.json``, ``reference_metrics.json``, CSVs, ``roi_analysis.json``, ``results.md``
            and ``figures/``.
        method_name: name of the network in the tables.
        metadata: extra information stored in the JSON files (data, checkpoint, profile).
        figures: write the PNG figures (matplotlib, Agg backend).
    """

    NOREF_KEYS = tuple(c.key for c in ARRFR_NOREF_COLUMNS)
    REF_KEYS = ARRFR_REF_KEYS

    def __init__(self, output_dir: str | os.PathLike, method_name: str = "ArRFR", metadata: dict | None = None,
                 figures: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.method_name = method_name
        self.metadata = dict(metadata or {})
        self.figures = bool(figures)
        self.results: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.results.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        self.results.append(engine.state.output)

    def _write(self, engine: Engine) -> dict[str, Any]:
        return self.write()

    def write(self) -> dict[str, Any]:
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        noref = [r for res in self.results for r in res["noref"]]
        ref = [r for res in self.results for r in res["reference"]]
        stacked = [r for res in self.results for r in res.get("restacked", [])]
        roi = [p for res in self.results for p in res["roi"]]
        notes = sorted({res["brisque_note"] for res in self.results if res.get("brisque_note")})
        scored = any("brisque" in r for r in noref)
        meta = {**self.metadata, "subjects": [res["subject"] for res in self.results],
                "brisque": BRISQUE_METHOD_NOTE if scored else (notes[0] if notes else BRISQUE_SKIP_MESSAGE)}
        if not scored:
            meta["unavailable_metrics"] = {"brisque": meta["brisque"]}
        noref_keys = [k for k in self.NOREF_KEYS if scored or k != "brisque"]
        files: dict[str, Any] = {}
        for r in noref + ref + stacked:
            if r["method"] == "ArRFR":
                r["method"] = self.method_name
        if noref:
            files["metrics"] = write_metrics(_subject_means(noref, noref_keys), out, prefix="metrics",
                                             metric_keys=noref_keys, metadata={
                                                 **meta, "protocol": "no-reference: clean sodium + T2w fused at x r "
                                                 "vs cubic B-spline of the sodium; per-subject means over slices"})
        if ref:
            keys = [k for k in self.REF_KEYS if any(k in r for r in ref)]
            files["reference"] = write_metrics(_subject_means(ref, keys), out, prefix="reference_metrics",
                                               metric_keys=keys, metadata={
                                                   **meta, "protocol": "sodium and T2w cubic-downsampled by r, fused "
                                                   "back to the prepared grid; 2D PSNR/SSIM (data range 1) vs the "
                                                   "truth concentration (linearly calibrated to the normalised "
                                                   "sodium per subject) and vs the T2w"})
        if stacked:
            keys = [k for k in self.REF_KEYS if any(k in r for r in stacked)]
            files["restacked"] = write_metrics(_subject_means(stacked, keys), out, prefix="restacked_metrics",
                                               metric_keys=keys, metadata={
                                                   **meta, "protocol": "whole volumes rebuilt slice by slice along "
                                                   f"axis {stacked[0]['axis']} (x r: every slice pair "
                                                   "cubic-downsampled by r and fused back); 3D PSNR/SSIM (data range "
                                                   "1) vs the calibrated truth and vs the T2w"})
        roi_doc = self._roi_doc(roi)
        files["roi"] = write_json_atomic(out / "roi_analysis.json", roi_doc)
        if self.figures:
            files["figures"] = self._figures(roi_doc)
        files["results"] = out / "results.md"
        write_text_atomic(files["results"], self._markdown(noref, ref, roi_doc, meta, stacked))
        log.info("ArRFR evaluation written to %s", out)
        return files

    @staticmethod
    def _roi_doc(points: list[dict]) -> dict:
        x = [p["input"] for p in points]
        return {
            "description": "mean intensity of the input sodium, the degraded sodium (Rician sigma 0.4 on [0, 1], "
                           "renormalised) and the ArRFR output at x1 inside CSF / tumour ROIs (paper Fig. 2)",
            "points": points,
            "degraded_vs_input": linear_fit(x, [p["degraded"] for p in points]),
            "output_vs_input": linear_fit(x, [p["output"] for p in points]),
        }

    def _markdown(self, noref, ref, roi_doc, meta, stacked=()) -> str:
        lines = [f"# {self.method_name} evaluation", "", f"Subjects: {', '.join(meta['subjects'])}", ""]
        group = ("scale", "method")
        order = lambda k: (float(k[0]), str(k[1]))  # noqa: E731
        if noref:
            unavailable = meta.get("unavailable_metrics", {})
            columns = tuple(c for c in ARRFR_NOREF_COLUMNS if c.key not in unavailable)
            spec = TableSpec("metrics", "## No-reference metrics (PSI up, LPC-SI up, BRISQUE down)", columns, group,
                             note=" ".join(f"{unavailable[c.key]} The table has no {c.label} column." for c in
                                           ARRFR_NOREF_COLUMNS if c.key in unavailable))
            means = _subject_means(noref, spec.metric_keys)
            lines.append(markdown_table(summarize(means, group, spec.metric_keys), spec, order, heading=True))
        for recs, title in ((ref, "## Reference metrics (synthetic truth)"),
                            (stacked, "## Restacked volumes, 3D reference metrics (slices along axis {axis})")):
            if not recs:
                continue
            keys = [k for k in self.REF_KEYS if any(k in r for r in recs)]
            spec = TableSpec("reference", title.format(axis=recs[0]["axis"]), tuple(Column(k, k) for k in keys), group)
            means = _subject_means(recs, keys)
            lines.append(markdown_table(summarize(means, group, keys), spec, order, heading=True))
        lines += ["## ROI regression (paper Fig. 2)", ""]
        for name in ("degraded_vs_input", "output_vs_input"):
            f = roi_doc[name]
            lines.append(f"- {name.replace('_', ' ')}: slope {f['slope']:.4f}, intercept {f['intercept']:.4f}, "
                         f"R^2 {f['r2']:.4f}, n {f['n']}")
        return "\n".join(lines) + "\n"

    def _figures(self, roi_doc: dict) -> list[str]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig_dir = self.output_dir / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        written = []
        profile = next((res["figures"]["profile"] for res in self.results if "profile" in res["figures"]), None)
        if profile is not None:
            scales = sorted(profile["images"])
            fig, axes = plt.subplots(2, len(scales) + 1, figsize=(3.2 * (len(scales) + 1), 6.4))
            axes = np.atleast_2d(axes)
            row = profile["row"]
            ax_p = axes[1, -1]
            axes[0, -1].imshow(profile["sodium"], cmap="gray", vmin=0, vmax=1)
            axes[0, -1].axhline(row, color="y", lw=0.8)
            axes[0, -1].set_title("sodium input")
            n_in = profile["sodium"].shape[1]
            x_in = (np.arange(n_in) + 0.5)
            ax_p.plot(x_in, profile["sodium"][row], "k--", lw=1, label="input")
            colours = plt.cm.viridis(np.linspace(0, 0.85, len(scales)))
            for j, r in enumerate(scales):
                imgs = profile["images"][r]
                out_row = min(int((row + 0.5) * r), imgs["ArRFR"].shape[0] - 1)
                for i, (name, img) in enumerate((("cubic", imgs["cubic"]), (self.method_name, imgs["ArRFR"]))):
                    axes[i, j].imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
                    axes[i, j].axhline(out_row, color="y", lw=0.8)
                    axes[i, j].set_title(f"{name} x{r:g}")
                    x = (np.arange(img.shape[1]) + 0.5) / r
                    ax_p.plot(x, img[out_row], color=colours[j], ls=":" if name == "cubic" else "-", lw=1.2,
                              label=f"{name} x{r:g}")
            for a in axes.ravel()[:-1]:
                a.axis("off")
            ax_p.set_xlabel("position (input pixels)")
            ax_p.set_ylabel("intensity")
            ax_p.legend(fontsize=6)
            ax_p.set_title("profile across CSF")
            fig.suptitle(f"{profile['subject']}: axis {profile['axis']} slice {profile['slice']}, row {row}")
            fig.tight_layout()
            written.append(save_figure(fig, fig_dir / "profile_csf.png"))
            plt.close(fig)
        montage = next((res["figures"]["montage"] for res in self.results if "montage" in res["figures"]), None)
        if montage is not None:
            panels = montage["panels"]
            fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
            for a, (name, img) in zip(np.atleast_1d(axes), panels.items()):
                a.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
                a.set_title(name.replace("ArRFR", self.method_name), fontsize=8)
                a.axis("off")
            np.atleast_1d(axes)[0].contour(montage["tumour"], levels=[0.5], colors="r", linewidths=0.6)
            fig.suptitle(f"{montage['subject']} (lesion): axis {montage['axis']} slice {montage['slice']}", fontsize=9)
            fig.tight_layout()
            written.append(save_figure(fig, fig_dir / "lesion_montage.png"))
            plt.close(fig)
        else:
            log.info("no lesion subject with a tumour label among the test volumes: lesion montage skipped")
        pts = roi_doc["points"]
        if pts:
            fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
            x = np.array([p["input"] for p in pts])
            for a, key in zip(axes, ("degraded", "output")):
                y = np.array([p[key] for p in pts])
                for roi_name, marker in (("CSF", "o"), ("tumour", "^"), ("high_signal", "s")):
                    sel = np.array([p["roi"] == roi_name for p in pts])
                    if sel.any():
                        a.scatter(x[sel], y[sel], marker=marker, s=18, label=roi_name)
                f = roi_doc[f"{key}_vs_input"]
                if np.isfinite(f["slope"]):
                    xx = np.linspace(x.min(), x.max(), 10)
                    a.plot(xx, f["slope"] * xx + f["intercept"], "k-", lw=1)
                lim = [min(x.min(), y.min()), max(x.max(), y.max())]
                a.plot(lim, lim, color="0.6", ls="--", lw=0.8)
                a.set_xlabel("input ROI mean")
                a.set_ylabel(f"{key} ROI mean")
                a.set_title(f"{key}: y = {f['slope']:.3f} x + {f['intercept']:.3f}, R² = {f['r2']:.3f}", fontsize=8)
                a.legend(fontsize=7)
            fig.tight_layout()
            written.append(save_figure(fig, fig_dir / "roi_regression.png"))
            plt.close(fig)
        return written
