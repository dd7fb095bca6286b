"""Realistic evaluation sets for every SR bundle: degraded low-resolution inputs of realistic subjects, written once.

From a realistic datalist (:func:`monai_inr.data.realistic.build_realistic_dataset`: the ``"test"`` split, built from
the held-out hemisphere with unseen seeds, and the ``"real"`` split, the real Colin27 scan with its held-out-hemisphere
brain mask) :func:`build_degraded_inputs` writes, for each subject x scale x degradation, the LR NIfTI inputs of the
requested contrasts (correct affines, deterministic noise seeds, skipped on a rerun when already current) and returns
:class:`~monai_inr.evaluation.runner.EvaluationRunner` items that carry ``split``, ``scale``, ``degradation`` and
``snr``. :func:`run_realistic_evaluation` runs the methods on them (interpolation baselines and a bundle's network)
and writes ``metrics.json`` (records and the summary per split / degradation / SNR / scale / method), the per-scale CSV
tables, ``realistic.md`` (in-brain and whole-image PSNR / SSIM pivot tables, one column per scale) and one montage with
error maps per case and contrast under ``figures/``.

Degradation names (:func:`parse_degradation`):

* ``"cubic"``: cubic-spline downsampling, every axis (:class:`~monai_inr.transforms.CubicDownsample`; the ArSSR
  paper's protocol);
* ``"kspace"``: 3D k-space truncation of the signal, every axis (:class:`~monai_inr.transforms.PhysicalAcquisition`);
* ``"kspace2d"``: in-plane k-space truncation only (every axis but the contrast's slice axis; 2D methods);
* ``"thick_box"`` / ``"thick_gaussian"``: a 2D multi-slice acquisition along the contrast's slice axis, slice profile
  box or Gaussian (FWHM = slice thickness = slice spacing), full in-plane resolution (anisotropic methods);
* any of them with ``"_snr<k>"`` (``"kspace_snr20"``): plus complex Gaussian noise at SNR ``k`` measured against the
  white-matter mean (:func:`~monai_inr.transforms.degradation.white_matter_reference`, from the subject's tissue
  labels), magnitude output (Rician statistics); for ``cubic`` the Rician noise is added to the cubic LR image.

The ground truth is always the clean high-resolution volume (Colin27 is an average of 27 scans; the synthetic subjects
are noise-free), so noise on the input counts against every method equally.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import json_safe, load_volume, save_nifti, write_text_atomic

from .methods import InterpolationMethod, Method
from .runner import EvaluationRunner, Reference, image_metric_keys, load_reference, read_datalist

__all__ = [
    "REALISTIC_EVAL_VERSION",
    "GROUP_KEYS",
    "Degradation",
    "parse_degradation",
    "degrade",
    "build_degraded_inputs",
    "realistic_reference",
    "with_white_matter_reference",
    "baseline_methods",
    "realistic_methods",
    "realistic_tables",
    "run_realistic_evaluation",
    "evaluate_arssr_realistic",
    "arssr_realistic_methods",
    "arrfr_realistic_items",
    "file_sha256",
]

logger = logging.getLogger(__name__)

#: Bumped whenever the LR inputs written for the same parameters change (cached inputs are then rewritten).
REALISTIC_EVAL_VERSION = "1"
#: The record keys the realistic tables are grouped by (the method last).
GROUP_KEYS: tuple[str, ...] = ("split", "degradation", "snr", "scale", "method")
_KINDS = ("cubic", "kspace", "kspace2d", "thick_box", "thick_gaussian")
_NAME = re.compile(r"^(?P<kind>cubic|kspace2d|kspace|thick_box|thick_gaussian)(?:_snr(?P<snr>\d+(?:\.\d+)?))?$")


@dataclass(frozen=True)
class Degradation:
    """A parsed degradation name: ``kind`` (one of ``cubic``, ``kspace``, ``kspace2d``, ``thick_box``,
    ``thick_gaussian``) and the white-matter ``snr`` of the added noise (``None``: noise-free)."""

    name: str
    kind: str
    snr: float | None = None

    @property
    def profile(self) -> str:
        return "gaussian" if self.kind == "thick_gaussian" else "box"

    def factors(self, scale: float, ndim: int, slice_axis: int) -> tuple[float, ...]:
        """Per-axis downsampling factors of this degradation at ``scale`` for a contrast sliced along
        ``slice_axis``."""
        s = float(scale)
        if self.kind in ("cubic", "kspace"):
            return (s,) * ndim
        if self.kind == "kspace2d":
            return tuple(1.0 if a == slice_axis else s for a in range(ndim))
        return tuple(s if a == slice_axis else 1.0 for a in range(ndim))


def parse_degradation(name: str) -> Degradation:
    """``"cubic"``, ``"kspace"``, ``"kspace2d"``, ``"thick_box"``, ``"thick_gaussian"``, each optionally with
    ``"_snr<k>"``.

    Raises:
        InputError: any other name (one sentence listing the forms).
    """
    m = _NAME.match(str(name).strip().lower())
    if m is None:
        raise InputError(f"unknown degradation {name!r}: use one of {list(_KINDS)}, optionally with '_snr<k>' "
                         f"(e.g. 'kspace_snr20').")
    snr = None if m.group("snr") is None else float(m.group("snr"))
    if snr is not None and snr <= 0:
        raise InputError(f"degradation {name!r}: the SNR must be positive.")
    return Degradation(str(name).strip().lower(), m.group("kind"), snr)


def _seed(seed: int, *parts: Any) -> int:
    return int(zlib.crc32("|".join(str(p) for p in (seed, *parts)).encode())) % (2**31 - 1)


def degrade(image: np.ndarray, affine: np.ndarray, degradation: str | Degradation, scale: float,
            slice_axis: int = 2, label: np.ndarray | None = None, mask: np.ndarray | None = None,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Degrade one HR volume: ``(LR array, LR affine, info)``; ``info`` holds the factors, the noise ``sigma``, the
    white-matter ``reference`` and the ``snr`` (``None`` without noise). Deterministic given ``seed``.

    The white-matter reference comes from ``label`` (white matter = 3) when given, else a robust percentile inside
    ``mask`` (:func:`~monai_inr.transforms.degradation.white_matter_reference`), always on the HR image.
    """
    import torch

    from monai_inr.transforms.degradation import (CubicDownsample, PhysicalAcquisition, RandRicianNoiseSNR,
                                                  white_matter_reference)

    d = parse_degradation(degradation) if isinstance(degradation, str) else degradation
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    nd = img.ndim - 1
    axis = int(slice_axis) % nd
    f = d.factors(scale, nd, axis)
    ref = None
    if d.snr is not None:
        lab = None if label is None else torch.from_numpy(np.asarray(label))
        msk = None if mask is None else torch.from_numpy(np.asarray(mask) > 0)
        ref = white_matter_reference(img, mask=msk, label=lab)
    if d.kind == "cubic":
        out = CubicDownsample(f)(img, affine=affine)
        if d.snr is not None:
            noise = RandRicianNoiseSNR(d.snr)
            noise.set_random_state(seed)
            out = noise(out, reference=ref, snr=d.snr)
            sigma = noise.last["sigma"]
        else:
            sigma = None
    else:
        acq = PhysicalAcquisition(scale=f, slice_axis=axis if d.kind.startswith("thick") or d.kind == "kspace2d"
                                  else None, profile=d.profile, snr=d.snr)
        acq.set_random_state(seed)
        out = acq(img, affine=affine, reference=ref)
        sigma = acq.last["sigma"]
    lr_affine = np.asarray(out.affine, dtype=np.float64) if hasattr(out, "affine") else None
    arr = (out.as_tensor() if hasattr(out, "as_tensor") else out)[0].detach().cpu().numpy().astype(np.float32)
    info = {"factors": [float(x) for x in f], "slice_axis": axis, "snr": d.snr, "sigma": sigma, "reference": ref}
    return arr, lr_affine, info


def _source_stamp(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _scale_tag(scale: float) -> str:
    return f"x{float(scale):g}"


def build_degraded_inputs(
    datalist: str | os.PathLike | Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    scales: Sequence[float] = (2.0, 3.0, 4.0),
    degradations: Sequence[str] = ("cubic", "kspace_snr20"),
    splits: Sequence[str] = ("test", "real"),
    contrasts: Sequence[str] = ("t1w",),
    slice_axes: Mapping[str, int] | int = 2,
    num_subjects: int | None = None,
    seed: int = 0,
    contrast_factors: Mapping[str, float] | None = None,
    label_key: str = "label",
    mask_key: str = "mask",
) -> list[dict[str, Any]]:
    """Write the LR inputs of every subject x scale x degradation x contrast; return the evaluation items.

    Args:
        datalist: a realistic ``datalist.json`` (or the items of one split, then ``splits`` names it once).
        output_dir: LR files go to ``<output_dir>/<split>/<subject>_<contrast>_<degradation>_x<scale>.nii.gz`` with a
            ``.json`` sidecar (parameters, noise sigma, measured reference); a file whose sidecar records the same
            parameters and the same source file (size, mtime) is not rewritten.
        scales: downsampling factors (per axis for the isotropic degradations, the slice factor for ``thick_*``, the
            in-plane factor for ``kspace2d``).
        degradations: names for :func:`parse_degradation`.
        splits: datalist splits to use; a split a datalist lacks is skipped (a split without the ``contrasts``, e.g.
            ``"real"`` for a T2w evaluation, too) with a log line, but at least one must give items.
        contrasts: item keys of the HR ground truths; ``<contrast>_lr`` keys are added.
        slice_axes: slice axis per contrast (a mapping) or one for all (``thick_*`` and ``kspace2d``).
        num_subjects: at most this many subjects per split (``None``: all).
        seed: noise seeds are derived from it, the subject, the contrast, the degradation and the scale.
        contrast_factors: per-contrast multiplier of the scale (e.g. Nexus-INR's ``{"t1w": 1, "t2w": 2}``: at scale
            2 the T1w has 2x thicker slices along its slice axis and the T2w 4x along its own); default 1.

    Returns:
        One item per (split, subject, degradation, scale): the subject's item (ground truths, ``mask``, ``label``,
        ``subject``) plus ``<contrast>_lr``, ``split``, ``scale``, ``degradation``, ``snr`` (``None`` noise-free),
        ``case`` (``<subject>_<degradation>_x<scale>``, the figure and log name) and ``<contrast>_noise_sigma``.

    Raises:
        InputError: unknown degradation, bad scale, no items, a missing ground-truth file.
    """
    degs = [parse_degradation(d) for d in degradations]
    scales = [float(s) for s in scales]
    if not scales or any(not np.isfinite(s) or s < 1 for s in scales):
        raise InputError(f"evaluation scales must be downsampling factors >= 1, got {list(scales)}.")
    axes = {c: int(slice_axes[c] if isinstance(slice_axes, Mapping) else slice_axes) for c in contrasts}
    mult = {c: float((contrast_factors or {}).get(c, 1.0)) for c in contrasts}
    out = Path(output_dir)
    items: list[dict[str, Any]] = []
    for split in splits:
        try:
            subjects, _ = read_datalist(datalist, split)
        except InputError as e:
            logger.info("realistic evaluation: split %r skipped (%s)", split, e)
            continue
        subjects = [s for s in subjects if all(s.get(c) for c in contrasts)]
        if not subjects:
            logger.info("realistic evaluation: split %r has no subject with %s; skipped", split, list(contrasts))
            continue
        if num_subjects is not None:
            subjects = subjects[: int(num_subjects)]
        for subj in subjects:
            sid = str(subj.get("subject", Path(str(subj[contrasts[0]])).name.split("_")[0]))
            label = mask = None
            if subj.get(label_key):
                label, _ = load_volume(subj[label_key], name=label_key)
            elif subj.get(mask_key):
                mask, _ = load_volume(subj[mask_key], name=mask_key)
            hr = {}
            for deg in degs:
                for scale in scales:
                    case = f"{sid}_{deg.name}_{_scale_tag(scale)}"
                    item: dict[str, Any] = {**subj, "subject": sid, "split": split, "scale": scale,
                                            "degradation": deg.name, "snr": deg.snr, "case": case}
                    for c in contrasts:
                        cs = scale * mult[c]
                        path = out / split / f"{sid}_{c}_{deg.name}_{_scale_tag(cs)}.nii.gz"
                        s = _seed(seed, split, sid, c, deg.name, cs)
                        params = {"version": REALISTIC_EVAL_VERSION, "source": _source_stamp(str(subj[c])),
                                  "degradation": deg.name, "scale": cs, "slice_axis": axes[c], "seed": s,
                                  "wm_reference": "label" if label is not None else "mask"}
                        side = path.with_name(path.name[: -len(".nii.gz")] + ".json")
                        info = None
                        if path.is_file() and side.is_file():
                            try:
                                doc = json.loads(side.read_text(encoding="utf-8"))
                                info = doc["info"] if doc.get("params") == json_safe(params) else None
                            except (ValueError, KeyError):
                                info = None
                        if info is None:
                            if c not in hr:
                                hr[c] = load_volume(subj[c], name=c, require_geometry=True)
                            arr, aff = hr[c]
                            lr, lr_aff, info = degrade(arr, aff, deg, cs, axes[c], label=label, mask=mask, seed=s)
                            save_nifti(lr, lr_aff, path)
                            write_text_atomic(side, json.dumps(json_safe({"params": params, "info": info}), indent=1))
                        item[f"{c}_lr"] = str(path.resolve())
                        item[f"{c}_noise_sigma"] = info.get("sigma")
                        item[f"{c}_factors"] = info.get("factors")
                    items.append(item)
    if not items:
        raise InputError(f"the realistic evaluation has no subjects with {list(contrasts)} in the splits "
                         f"{list(splits)} of the datalist.")
    return items


def with_white_matter_reference(items: Sequence[Mapping[str, Any]], keys: Mapping[str, str],
                                label_key: str = "label", normalize: str | None = "minmax") -> list[dict[str, Any]]:
    """Items with the white-matter mean of each contrast: ``item[out] = WM mean of item[key]`` for ``key -> out`` in
    ``keys`` (tissue labels ``item[label_key]``, white matter = 3), in the units a pipeline sees after
    ``normalize="minmax"`` (:class:`~monai_inr.transforms.MinMaxNormalized`: ``(wm - min) / (max - min)`` of the whole
    volume) or raw (``None``). A noise transform's ``reference_key`` then sets an SNR measured in white matter on the
    HR volume, even after the pipeline has cut, cropped or truncated the image (e.g. Dual-ArbNet's 2D slices)."""
    from monai_inr.transforms.degradation import white_matter_reference

    out = []
    for item in items:
        lab, _ = load_volume(item[label_key], name=label_key)
        new = dict(item)
        for key, dst in keys.items():
            arr, _ = load_volume(item[key], name=key)
            wm = white_matter_reference(arr[None], label=lab)
            if normalize == "minmax":
                lo, hi = float(arr.min()), float(arr.max())
                wm = (wm - lo) / max(hi - lo, 1e-12)
            elif normalize is not None:
                raise ValueError(f"normalize must be 'minmax' or None, got {normalize!r}.")
            new[dst] = float(wm)
        out.append(new)
    return out


def realistic_reference(names: Sequence[str], mask_key: str = "mask") -> Callable[[Mapping[str, Any]], Reference]:
    """``item -> Reference`` of a realistic evaluation item: the clean HR ground truths ``item[name]``, the brain
    mask, named by the item's ``case``, with the grouping keys in ``extra["group"]``."""

    def load(item: Mapping[str, Any]) -> Reference:
        ref = load_reference(item, tuple(names), mask_key=mask_key)
        ref.subject = str(item.get("case", ref.subject))
        ref.extra["group"] = {"subject": str(item.get("subject", ref.subject)), "split": item.get("split", "test"),
                              "degradation": item.get("degradation", ""), "snr": item.get("snr"),
                              "scale": float(item.get("scale", float("nan")))}
        return ref

    return load


def baseline_methods(names: Sequence[str] = ("t1w",), baselines: Sequence[str] = ("cubic", "trilinear"),
                     labels: Mapping[str, str] | None = None) -> dict[str, Method]:
    """``{row: InterpolationMethod}`` for the baselines (rows ``Cubic``, ``Trilinear`` unless ``labels`` says)."""
    labels = dict(labels or {})
    return {labels.get(b, b.capitalize()): InterpolationMethod(b, inputs=[f"{n}_lr" for n in names], target=names[0])
            for b in baselines}


def realistic_methods(names: Sequence[str], methods: Mapping[str, Method],
                      baselines: Sequence[str] = ("cubic", "trilinear")) -> dict[str, Method]:
    """The baselines (:func:`baseline_methods`) followed by a bundle's ``methods`` (``{row: method}``)."""
    return {**baseline_methods(names, baselines), **dict(methods)}


def realistic_tables(names: Sequence[str]) -> list[tuple[str, str]]:
    """``(metric key, heading)`` of the Markdown pivot tables: in-brain PSNR and SSIM first, then whole-image."""
    suffixes = list(names) if len(names) == 1 else [*names, "avg"]
    out = []
    for metric, label in (("psnr_mask", "PSNR in the brain (dB)"), ("ssim_mask", "SSIM in the brain"),
                          ("psnr", "PSNR whole image (dB)"), ("ssim", "SSIM whole image")):
        for n in suffixes:
            out.append((f"{metric}_{n}", f"{label}, {n}"))
    return out


def _markdown(records: Sequence[Mapping[str, Any]], names: Sequence[str], method_order: Sequence[str],
              title: str, note: str) -> str:
    from monai_inr.metrics.protocol import summarize

    from .report import markdown_table
    from .tables import Column, TableSpec

    group = ("split", "degradation", "method", "scale")
    splits = list(dict.fromkeys(r["split"] for r in records))
    degs = list(dict.fromkeys(r["degradation"] for r in records))
    methods = list(method_order) + [m for m in dict.fromkeys(r["method"] for r in records) if m not in method_order]

    def order(key: tuple) -> tuple:
        sp, dg, me = key
        return (splits.index(sp) if sp in splits else 99, degs.index(dg) if dg in degs else 99,
                methods.index(me) if me in methods else 99)

    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    hf = [(f"hf_error_{n}", f"Error in the fine detail along the thick axis / the ground truth's fine detail "
                            f"(0 = recovered, 1 = left out as interpolation does, > 1 = wrong detail added: grain), {n}")
          for n in names if any(f"hf_error_{n}" in r for r in records)]
    hf += [(f"hf_ratio_{n}", f"Fine detail along the thick axis / the ground truth's (1 = as much, < 1 = blurred), {n}")
           for n in names if any(f"hf_ratio_{n}" in r for r in records)]
    for key, heading in realistic_tables(names) + hf:
        decimals = 2 if key.startswith("psnr") else 4
        spec = TableSpec(key, heading, (Column(heading, key, decimals),), group, pivot="scale")
        summary = summarize(records, group_by=group, metric_keys=[key])
        lines += [f"## {heading}", "", markdown_table(summary, spec, sort_key=order)]
    return "\n".join(lines)


def run_realistic_evaluation(
    items: Sequence[Mapping[str, Any]],
    methods: Mapping[str, Method],
    output_dir: str | os.PathLike,
    names: Sequence[str] = ("t1w",),
    figures: bool = True,
    figure_axis: int = 2,
    title: str = "Realistic evaluation",
    metadata: Mapping[str, Any] | None = None,
    mask_key: str = "mask",
    slice_axes: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Run ``methods`` on the items of :func:`build_degraded_inputs` and write the report; returns the records.

    ``slice_axes`` (``{contrast: thick axis}``, thick-slice degradations): each record also gets
    ``hf_ratio_<contrast>``, the in-brain energy of the output's fine detail along the thick axis over the ground
    truth's (:func:`~monai_inr.metrics.high_frequency_ratio`: 1 right, < 1 blurred, > 1
    grain between the acquired slices), and the report a table of it.

    Writes ``<output_dir>/metrics.json`` (records + summary grouped by :data:`GROUP_KEYS`), ``metrics_scale-<s>.csv``,
    ``realistic.md`` (one pivot table per metric: rows split / degradation / method, columns the scales) and, with
    ``figures``, ``figures/<case>_<contrast>.png`` (every method's middle slice along ``figure_axis`` beside the ground
    truth, with absolute error maps). Records: ``subject``, ``case``, ``split``, ``degradation``, ``snr``, ``scale``,
    ``method``, the protocol metrics per contrast (:data:`~monai_inr.evaluation.runner.IMAGE_METRICS`), ``seconds``.
    """
    from monai_inr.metrics.protocol import write_metrics

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    axes = {n: int(a) for n, a in (slice_axes or {}).items() if n in names}

    def after_method(rec: dict, preds: Sequence[np.ndarray], ref: Reference) -> None:
        from monai_inr.metrics import high_frequency_error, high_frequency_ratio

        rec["case"] = rec["subject"]
        rec.update(ref.extra.get("group", {}))
        for c, name in enumerate(names):
            if name in axes:
                rec[f"hf_ratio_{name}"] = high_frequency_ratio(preds[c], ref.images[c], axes[name], mask=ref.mask)
                rec[f"hf_error_{name}"] = high_frequency_error(preds[c], ref.images[c], axes[name], mask=ref.mask)

    runner = EvaluationRunner(items, methods, realistic_reference(names, mask_key), names, after_method=after_method,
                              log_keys=[f"psnr_mask_{names[0]}", f"ssim_mask_{names[0]}"],
                              figure_dir=out / "figures" if figures else None, figure_axis=figure_axis)
    records = runner.run()
    for r in records:
        r["snr"] = "none" if r.get("snr") is None else float(r["snr"])
    keys = image_metric_keys(names) + [f"hf_{k}_{n}" for n in names if n in axes for k in ("ratio", "error")]
    keys += ["seconds"]
    meta = {"title": title, "names": list(names), "methods": list(methods), **dict(metadata or {})}
    write_metrics(records, out, prefix="metrics", group_by=GROUP_KEYS, metric_keys=keys, metadata=json_safe(meta))
    note = ("Protocol: intensities mapped to [0, 1] with the clean ground truth's min-max, PSNR/SSIM in 3D with data "
            "range 1, over the whole field of view and inside the brain mask; every method on the same LR input. "
            "Mean over subjects per cell.")
    write_text_atomic(out / "realistic.md", _markdown(records, names, list(methods), title, note))
    return records


# ----------------------------------------------------------------------------------------------------------- ArSSR


def arssr_realistic_methods(network: Any, names: Sequence[str] = ("t1w",), device: str = "cpu",
                            baselines: Sequence[str] = ("cubic", "trilinear"), method_name: str = "ArSSR",
                            **inferer_kwargs: Any) -> dict[str, Method]:
    """Cubic and trilinear baselines and an ArSSR network (weights already loaded) on ``<name>_lr`` inputs."""
    from .methods import ArSSRMethod

    methods = baseline_methods(names, baselines)
    methods[method_name] = ArSSRMethod(network, checkpoint=None, device=device,
                                       inputs=[f"{n}_lr" for n in names], target=names[0], **inferer_kwargs)
    return methods


def evaluate_arssr_realistic(
    ckpt_path: str | os.PathLike | None,
    datalist: str | os.PathLike,
    out_dir: str | os.PathLike,
    scales: Sequence[float] = (2.0, 3.0, 4.0),
    degradations: Sequence[str] = ("cubic", "kspace_snr20"),
    splits: Sequence[str] = ("test", "real"),
    network_def: Any = None,
    config_files: Sequence[str | os.PathLike] | None = None,
    device: str = "cpu",
    num_subjects: int | None = None,
    figures: bool = True,
    seed: int = 0,
    method_name: str = "ArSSR",
    **inferer_kwargs: Any,
) -> list[dict[str, Any]]:
    """The ArSSR realistic evaluation from Python: cubic, trilinear and the checkpoint's network on T1w inputs.

    The network is the one the checkpoint carries (:func:`monai_inr.engines.network_from_checkpoint`), else
    ``network_def`` (a module or a bundle-config dict), else the ``network_def`` of the ``arssr`` bundle's
    ``config_files`` (default ``train.json``). LR inputs go to ``<out_dir>/inputs``; the report as
    :func:`run_realistic_evaluation` in ``out_dir``. Returns the records.
    """
    from monai_inr.engines import network_from_checkpoint

    from .bundle import bundle_config_dir, network_from_bundle

    if network_def is None:
        files = config_files or [bundle_config_dir("arssr") / "train.json"]
        network_def = network_from_bundle(files)
    elif isinstance(network_def, Mapping):
        from monai.bundle import ConfigParser

        network_def = ConfigParser({"network": dict(network_def)}).get_parsed_content("network")
    network = network_from_checkpoint(network_def, ckpt_path, device)
    items = build_degraded_inputs(datalist, Path(out_dir) / "inputs", scales, degradations, splits, ("t1w",),
                                  num_subjects=num_subjects, seed=seed)
    methods = arssr_realistic_methods(network, ("t1w",), device, method_name=method_name, **inferer_kwargs)
    meta = {"checkpoint": None if ckpt_path is None else str(ckpt_path),
            "checkpoint_sha256": None if ckpt_path is None else file_sha256(ckpt_path), "datalist": str(datalist),
            "scales": list(scales), "degradations": list(degradations), "splits": list(splits)}
    return run_realistic_evaluation(items, methods, out_dir, ("t1w",), figures=figures,
                                    title=f"{method_name}: realistic evaluation", metadata=meta)


# ----------------------------------------------------------------------------------------------------------- ArRFR


def arrfr_realistic_items(
    datalist: str | os.PathLike | Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    scale: float = 4.0,
    degradation: str = "kspace_snr10",
    splits: Sequence[str] = ("test",),
    num_subjects: int | None = None,
    seed: int = 0,
    sodium_key: str = "sodium",
    t2w_key: str = "t2w",
) -> list[dict[str, Any]]:
    """ArRFR's evaluation items from realistic sodium + T2w subjects: ``{"subject", "lesion", "sodium", "t2w",
    "truth", "labels"}``, the format of ``preprocessing.dataset.volume_entries``.

    The sodium input is the realistic concentration map acquired at ``scale`` times the grid's voxel size with
    ``degradation`` (default 3D k-space truncation plus complex noise at SNR 10 in white matter: a low-resolution,
    low-SNR sodium scan; :func:`build_degraded_inputs`), then cubic-interpolated back onto the T2w grid as the sodium
    preparation does (``<...>_on-t2w.nii.gz``, rewritten when older than its LR file); the truth is the clean
    concentration map, the labels the subject's tissue labels (CSF 1, tumour 5).
    """
    from monai_inr.io import read_volume_header
    from monai_inr.transforms.functional import resample_to_grid

    items = build_degraded_inputs(datalist, output_dir, (scale,), (degradation,), splits, (sodium_key, t2w_key),
                                  num_subjects=num_subjects, seed=seed)
    out = []
    for it in items:
        lr_path = Path(it[f"{sodium_key}_lr"])
        path = lr_path.with_name(lr_path.name[: -len(".nii.gz")] + "_on-t2w.nii.gz")
        if not path.is_file() or path.stat().st_mtime_ns < lr_path.stat().st_mtime_ns:
            shape, affine = read_volume_header(it[t2w_key])
            lr, lr_aff = load_volume(lr_path)
            save_nifti(np.clip(resample_to_grid(lr, lr_aff, shape, affine, order=3), 0.0, None), affine, path)
        lab, _ = load_volume(it["label"], name="label")
        out.append({"subject": it["case"], "lesion": bool((lab == 5).any()), "sodium": str(path.resolve()),
                    "t2w": it[t2w_key], "truth": it[sodium_key], "labels": it["label"]})
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (recorded in reports to name the checkpoint evaluated)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
