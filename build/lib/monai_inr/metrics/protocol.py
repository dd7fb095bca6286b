"""The one evaluation protocol used by every bundle's ``evaluate.json`` (see each bundle's ``docs/README.md``).

1. :func:`normalize_to_reference` maps the ground truth (GT) and every prediction with the **GT's** affine intensity
   map to [0, 1] (GT min/max, or GT percentiles, optionally inside a mask), then clips to [0, 1]. A prediction is never
   renormalised by its own range: that would hide intensity bias.
2. :func:`evaluate_pair` scores one normalised prediction against its GT with ``data_range = 1``: 3D PSNR and SSIM over
   the whole field of view and inside the GT foreground mask (voxel selection), optionally slice-wise for 2D methods.
3. :func:`summarize` / :func:`write_metrics` aggregate per-subject records into mean +- SD (sample SD, ``ddof=1``) and
   count per (scale, method) and write ``metrics.json`` plus one CSV table per scale, atomically.

Pure python/numpy (torch tensors are accepted and converted), so any bundle's evaluation can call it.

Typical use::

    sr_n, cubic_n, gt_n = normalize_to_reference(sr, cubic, reference=gt)
    rec = {"subject": sid, "scale": 2.0, "method": "arssr", **evaluate_pair(sr_n, gt_n, mask=brain)}
    ...
    write_metrics(records, output_dir)
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform

from monai_inr.io import json_text, write_text_atomic

from .image_quality import _check_data_range, as_numpy, psnr, slicewise, ssim

__all__ = [
    "PROTOCOL",
    "reference_intensity_map",
    "apply_intensity_map",
    "normalize_to_reference",
    "reference_foreground",
    "evaluate_pair",
    "summarize",
    "write_metrics",
    "NormalizeToLabeld",
]

#: What :func:`evaluate_pair` computes; stored in ``metrics.json`` so results say how they were obtained.
PROTOCOL: dict[str, Any] = {
    "intensity": "GT affine map to [0, 1] (see normalization), predictions and GT clipped to [0, 1]",
    "data_range": 1.0,
    "psnr": "3D; whole FOV ('psnr') and GT-mask voxel selection ('psnr_mask'); dB",
    "ssim": {
        "window": "gaussian",
        "win_size": 11,
        "sigma": 1.5,
        "k1": 0.01,
        "k2": 0.03,
        "covariance": "population",
        "border": "valid region only (= MONAI SSIMMetric; = skimage gaussian_weights crop)",
        "mask": "mean of the SSIM map over mask voxels inside the valid region",
    },
    "summary": "mean, sample SD (ddof=1) and count of finite values per group",
}

_MODES = ("minmax", "percentile")


def reference_intensity_map(
    reference: Any,
    mask: Any = None,
    mode: str = "minmax",
    percentiles: Sequence[float] = (0.5, 99.5),
) -> tuple[float, float]:
    """Return ``(low, high)`` of the reference such that ``(x - low) / (high - low)`` maps it to [0, 1].

    Args:
        reference: ground-truth volume.
        mask: optional mask (nonzero = inside); the statistics then use the reference voxels inside it only.
        mode: ``"minmax"`` (reference min/max) or ``"percentile"`` (``percentiles`` of the reference).
        percentiles: (low, high) percentiles in [0, 100] for ``mode="percentile"``.

    Raises:
        ValueError: unknown mode, bad percentiles, NaN/Inf in the reference, empty mask, constant reference.
    """
    ref = as_numpy(reference, "reference").astype(np.float64, copy=False)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
    if mask is not None:
        m = as_numpy(mask, "mask")
        if m.shape != ref.shape:
            raise ValueError(f"mask shape {m.shape} does not match the reference shape {ref.shape}.")
        ref = ref[m != 0]
    if ref.size == 0:
        raise ValueError("reference has no voxels to normalise from (empty image or empty mask).")
    if not np.isfinite(ref).all():
        raise ValueError("reference contains NaN or Inf values.")
    if mode == "minmax":
        lo, hi = float(ref.min()), float(ref.max())
    else:
        pl, ph = (float(q) for q in percentiles)
        if not (0.0 <= pl < ph <= 100.0):
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {tuple(percentiles)}.")
        lo, hi = (float(v) for v in np.percentile(ref, [pl, ph]))
    if not hi > lo:
        raise ValueError(f"reference is constant over the selected voxels (low = high = {lo:.6g}); cannot normalise.")
    return lo, hi


def apply_intensity_map(image: Any, low: float, high: float, clip: bool = True) -> np.ndarray:
    """``(image - low) / (high - low)`` as a new float array (float32 stays float32), clipped to [0, 1] if ``clip``.

    NaN stays NaN (so a diverged prediction is visible downstream); the input is never modified.
    """
    x = as_numpy(image, "image")
    dtype = np.result_type(x.dtype, np.float32)
    out = (x.astype(np.float64, copy=False) - low) * (1.0 / (high - low))
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out.astype(dtype, copy=False)


def normalize_to_reference(
    *images: Any,
    reference: Any,
    mask: Any = None,
    mode: str = "minmax",
    percentiles: Sequence[float] = (0.5, 99.5),
    clip_reference: bool = True,
) -> tuple[np.ndarray, ...]:
    """Map every image and the reference with the reference's affine intensity map to [0, 1]; clip to [0, 1].

    Only the reference's statistics are used (:func:`reference_intensity_map`); each image is then clipped to [0, 1]
    (cubic-spline overshoot, intensity bias outside the GT range). The reference is clipped too when
    ``clip_reference`` (a no-op for ``"minmax"`` without a mask; with ``"percentile"`` or a mask it saturates the tails
    so that ``data_range = 1`` holds).

    Args:
        *images: predictions (and baselines), each the reference's shape.
        reference: ground truth.
        mask, mode, percentiles: see :func:`reference_intensity_map`.
        clip_reference: clip the normalised reference to [0, 1].

    Returns:
        The normalised images in the order given, followed by the normalised reference (numpy arrays):
        ``sr_n, cubic_n, gt_n = normalize_to_reference(sr, cubic, reference=gt)``.
    """
    ref = as_numpy(reference, "reference")
    arrays = [as_numpy(im, f"image {i}") for i, im in enumerate(images)]
    for i, a in enumerate(arrays):
        if a.shape != ref.shape:
            raise ValueError(f"image {i} has shape {a.shape}, the reference {ref.shape}; they must match.")
    lo, hi = reference_intensity_map(ref, mask=mask, mode=mode, percentiles=percentiles)
    out = [apply_intensity_map(a, lo, hi, clip=True) for a in arrays]
    out.append(apply_intensity_map(ref, lo, hi, clip=clip_reference))
    return tuple(out)


def reference_foreground(reference: Any, threshold: float = 0.05) -> np.ndarray:
    """The foreground mask used when no mask is given: reference voxels above ``min + threshold * (max - min)``.

    Args:
        reference: ground-truth image.
        threshold: fraction of the reference's intensity span.
    """
    ref = as_numpy(reference, "reference")
    lo, hi = float(ref.min()), float(ref.max())
    return ref > lo + float(threshold) * (hi - lo)


def evaluate_pair(
    pred: Any,
    target: Any,
    mask: Any = None,
    *,
    data_range: float = 1.0,
    normalize: str | None = None,
    percentiles: Sequence[float] = (0.5, 99.5),
    slice_axes: Sequence[int] | None = None,
) -> dict[str, float]:
    """Score one prediction against its ground truth with the project protocol.

    Args:
        pred: prediction, normalised with :func:`normalize_to_reference` (or pass ``normalize``).
        target: ground truth, normalised the same way.
        mask: GT foreground mask (nonzero = inside); without it the ``*_mask`` entries are NaN.
        data_range: 1.0 for normalised data (the protocol); explicit, never inferred.
        normalize: ``None`` (inputs already normalised), ``"minmax"`` or ``"percentile"``: normalise here with the whole
            GT volume's statistics (use :func:`normalize_to_reference` directly for mask-based statistics).
        percentiles: for ``normalize="percentile"``.
        slice_axes: also compute slice-wise 2D metrics (2D methods) along these axes, averaged over slices with
            foreground (mask voxels, or nonzero GT without a mask): ``psnr_slice``, ``ssim_slice`` and, with a mask,
            ``psnr_slice_mask``, ``ssim_slice_mask``.

    Returns:
        ``{"psnr", "psnr_mask", "ssim", "ssim_mask"[, "psnr_slice", "psnr_slice_mask", "ssim_slice",
        "ssim_slice_mask"]}`` as floats. A constant prediction scores normally; a prediction with NaN/Inf gives NaN
        everywhere and a warning (so one diverged model does not stop an evaluation run).

    Raises:
        ValueError: shape mismatch, non-finite or unnormalised target (span > data_range), empty mask.
    """
    p = as_numpy(pred, "pred")
    t = as_numpy(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}.")
    if normalize is not None:
        p, t = normalize_to_reference(p, reference=t, mode=normalize, percentiles=percentiles)
    t = t.astype(np.float64, copy=False)
    if not np.isfinite(t).all():
        raise ValueError("target contains NaN or Inf values.")
    _check_data_range(data_range, t)
    m = None
    if mask is not None:
        m = as_numpy(mask, "mask")
        if m.shape != t.shape:
            raise ValueError(f"mask shape {m.shape} does not match the image shape {t.shape}.")
        m = m != 0
        if not m.any():
            raise ValueError("mask selects no voxels (empty foreground).")
    keys = ["psnr", "psnr_mask", "ssim", "ssim_mask"]
    if slice_axes is not None:
        keys += ["psnr_slice", "psnr_slice_mask", "ssim_slice", "ssim_slice_mask"]
    nan = {k: math.nan for k in keys}

    p = p.astype(np.float64, copy=False)
    if not np.isfinite(p).all():
        warnings.warn("evaluate_pair: prediction contains NaN or Inf; all metrics are NaN.", stacklevel=2)
        return nan
    if float(p.min()) < -1e-6 * data_range or float(p.max()) > data_range * (1 + 1e-6):
        warnings.warn(
            "evaluate_pair: prediction lies outside [0, data_range]; the protocol clips predictions after "
            "normalize_to_reference.",
            stacklevel=2,
        )

    out = dict(nan)
    out["psnr"] = psnr(p, t, data_range=data_range)
    out["ssim"] = ssim(p, t, data_range=data_range)
    if m is not None:
        out["psnr_mask"] = psnr(p, t, data_range=data_range, mask=m)
        out["ssim_mask"] = ssim(p, t, data_range=data_range, mask=m)
    if slice_axes is not None:
        axes = tuple(slice_axes)
        common = dict(axes=axes, mask=m, foreground_only=True, data_range=data_range)
        out["psnr_slice"] = slicewise(psnr, p, t, **common)
        out["ssim_slice"] = slicewise(ssim, p, t, **common)
        if m is not None:
            out["psnr_slice_mask"] = slicewise(psnr, p, t, masked=True, **common)
            out["ssim_slice_mask"] = slicewise(ssim, p, t, masked=True, **common)
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------------------
# aggregation and writing


def _is_float_value(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and not isinstance(v, bool)


def _infer_metric_keys(records: Sequence[dict], group_by: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in group_by and k not in keys and _is_float_value(v):
                keys.append(k)
    return keys


def _as_float(v: Any) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"metric value {v!r} is not a number.") from None


def _hashable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    try:
        hash(v)
    except TypeError:
        raise ValueError(f"group value {v!r} is not hashable (use a number or a string).") from None
    return v


def summarize(
    records: Sequence[dict],
    group_by: Sequence[str] = ("scale", "method"),
    metric_keys: Sequence[str] | None = None,
) -> list[dict]:
    """Mean, sample SD (``ddof=1``) and count per group.

    Args:
        records: per-subject dicts, e.g. ``{"subject": "s01", "scale": 2.0, "method": "arssr", "psnr": 31.2, ...}``.
        group_by: keys that define a group; every record must have them.
        metric_keys: metrics to aggregate; default: every key (not in ``group_by``) that holds a float in some record
            (ints such as seeds and strings such as subject ids are not metrics; list int metrics explicitly).

    Returns:
        One dict per group, in order of first appearance:
        ``{**group, "n": records in group, "<m>_mean", "<m>_sd", "<m>_n": finite values of <m>}``. NaN/None values
        are left out of a metric's statistics (``<m>_n`` counts the rest); ``<m>_sd`` is NaN when ``<m>_n < 2``.
    """
    records = list(records)
    group_by = tuple(group_by)
    keys = list(metric_keys) if metric_keys is not None else _infer_metric_keys(records, group_by)
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"record {i} is not a dict: {r!r}.")
        missing = [g for g in group_by if g not in r]
        if missing:
            raise ValueError(f"record {i} lacks the group key(s) {missing}: {r!r}.")
        groups.setdefault(tuple(_hashable(r[g]) for g in group_by), []).append(r)
    out = []
    for gkey, rs in groups.items():
        row: dict[str, Any] = dict(zip(group_by, gkey))
        row["n"] = len(rs)
        for k in keys:
            vals = np.array([_as_float(r.get(k)) for r in rs], dtype=np.float64)
            vals = vals[~np.isnan(vals)]
            n = int(vals.size)
            mean = float(np.mean(vals)) if n else math.nan
            if n >= 2:
                with np.errstate(invalid="ignore"):
                    sd = float(np.std(vals, ddof=1))
            else:
                sd = math.nan
            row[f"{k}_mean"], row[f"{k}_sd"], row[f"{k}_n"] = mean, sd, n
        out.append(row)
    return out


def _fmt(mean: float, sd: float, n: int, n_group: int, decimals: int) -> str:
    if n == 0:
        return "nan"
    s = f"{mean:.{decimals}f} ± {sd:.{decimals}f}"
    if n != n_group:
        s += f" (n={n})"
    return s


def _scale_token(v: Any) -> str:
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        tok = f"{float(v):g}"
    else:
        tok = str(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", tok)


def _sorted_table_keys(values: Iterable[Any]) -> list[Any]:
    vals = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in vals):
        return sorted(vals, key=float)
    return vals


def write_metrics(
    records: Sequence[dict],
    output_dir: str | os.PathLike,
    prefix: str = "metrics",
    group_by: Sequence[str] = ("scale", "method"),
    metric_keys: Sequence[str] | None = None,
    decimals: int = 4,
    metadata: dict | None = None,
) -> dict[str, Any]:
    """Write ``<prefix>.json`` (records + summary) and one CSV table per scale, each atomically.

    ``<output_dir>/<prefix>.json`` holds ``{"protocol", "metadata", "group_by", "metric_keys", "records",
    "summary"}`` (strict JSON: NaN/Inf are written as ``null``). ``<output_dir>/<prefix>_scale-<s>.csv`` (``<s>`` like
    ``2``, ``2.5``) has one row per remaining group (method), columns ``<other group keys>, n, <metric>...`` with cells
    ``"mean ± sd"`` (``" (n=k)"`` appended when some values of that metric were missing). Without ``"scale"`` in
    ``group_by`` a single ``<prefix>.csv`` is written. Every file is written to a temporary name in ``output_dir``
    and renamed when complete.

    Args:
        records: per-subject dicts (see :func:`summarize`).
        output_dir: created if needed.
        prefix: file-name stem (default gives ``metrics.json``).
        group_by, metric_keys: see :func:`summarize`.
        decimals: decimals in the CSV cells (the JSON keeps full precision).
        metadata: extra JSON-serialisable information (normalisation mode, degradation, seeds, ...).

    Returns:
        ``{"json": Path, "csv": {scale: Path}}`` (scale ``None`` for the single table).
    """
    records = list(records)
    group_by = tuple(group_by)
    if not records:
        raise ValueError("no records to write.")
    if not prefix or re.search(r"[\\/]", prefix):
        raise ValueError(f"prefix must be a plain file-name stem, got {prefix!r}.")
    keys = list(metric_keys) if metric_keys is not None else _infer_metric_keys(records, group_by)
    summary = summarize(records, group_by=group_by, metric_keys=keys)

    doc = {
        "protocol": PROTOCOL,
        "metadata": metadata or {},
        "group_by": list(group_by),
        "metric_keys": keys,
        "records": records,
        "summary": summary,
    }
    texts: dict[Path, str] = {}
    out_dir = Path(output_dir)
    json_path = out_dir / f"{prefix}.json"
    texts[json_path] = json_text(doc)

    row_keys = [g for g in group_by if g != "scale"]
    header = row_keys + ["n"] + keys
    csv_paths: dict[Any, Path] = {}
    if "scale" in group_by:
        tables = {s: [r for r in summary if r["scale"] == s] for s in _sorted_table_keys(r["scale"] for r in summary)}
    else:
        tables = {None: summary}
    tokens: dict[str, Any] = {}
    for scale, rows in tables.items():
        if scale is None and "scale" not in group_by:
            path = out_dir / f"{prefix}.csv"
        else:
            tok = _scale_token(scale)
            if tok in tokens and tokens[tok] != scale:
                raise ValueError(f"scales {tokens[tok]!r} and {scale!r} map to the same file name token {tok!r}.")
            tokens[tok] = scale
            path = out_dir / f"{prefix}_scale-{tok}.csv"
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            cells = [r[g] for g in row_keys] + [r["n"]]
            cells += [_fmt(r[f"{k}_mean"], r[f"{k}_sd"], r[f"{k}_n"], r["n"], decimals) for k in keys]
            w.writerow(cells)
        texts[path] = buf.getvalue()
        csv_paths[scale] = path

    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():  # everything is rendered before the first file is touched
        write_text_atomic(path, text)
    return {"json": json_path, "csv": csv_paths}


class NormalizeToLabeld(MapTransform):
    """The protocol's normalisation as a dictionary transform for a bundle evaluator's postprocessing: ``pred`` and
    ``label`` ``(C, ...)`` mapped per channel with the label's :func:`reference_intensity_map` (min-max), ``pred``
    clipped to [0, 1] (:func:`apply_intensity_map`), the label left unclipped (it spans [0, 1] exactly)."""

    def __init__(self, keys=("pred", "label"), reference_key: str = "label") -> None:
        super().__init__(keys)
        self.reference_key = reference_key

    def __call__(self, data):
        d = dict(data)
        ref = torch.as_tensor(d[self.reference_key]).detach().float()
        maps = [reference_intensity_map(ref[c].cpu().numpy()) for c in range(ref.shape[0])]
        for k in self.key_iterator(d):
            x = torch.as_tensor(d[k]).detach().float()
            out = [apply_intensity_map(x[c].cpu().numpy(), lo, hi, clip=k != self.reference_key)
                   for c, (lo, hi) in enumerate(maps)]
            d[k] = torch.from_numpy(np.stack(out).astype(np.float32)).to(x.device)
        return d
