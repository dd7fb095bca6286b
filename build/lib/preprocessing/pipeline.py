"""The file-level steps behind the CLI: simulate, reconstruct, register, prepare, and run (the whole chain).

Each step validates its inputs (one-sentence :class:`~monai_inr.errors.InputError` naming the file), refuses to replace
existing results unless ``overwrite``, stages its files and moves them into place only when all are complete, writes a
JSON sidecar next to every NIfTI, and appends START/END records to ``sub-XX/sub-XX_log.txt``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import load_volume, read_dicom_series, save_nifti

from . import outputs as out
from .grid import ReconGrid, paper_grid, resample_volume, upsampled_affine
from .prepare import PrepareConfig, pad_or_crop, plane_axes, slice_volumes
from .rawdata import read_raw, read_raw_meta, write_raw
from .reconstruction import ReconConfig, reconstruct
from .registration import RegistrationConfig, register_rigid, upsample2x
from .simulation import SimulationConfig, maps_from_subject, resample_maps, simulate_subject

__all__ = ["StepPaths", "run_simulate", "run_reconstruct", "run_register", "run_prepare", "run_all", "read_t2w"]

log = logging.getLogger("preprocessing")


class StepPaths:
    """Final output paths of every step for one subject under a derivatives root."""

    def __init__(self, root: str | os.PathLike, subject: str, upsampled_spacing=None):
        self.root = Path(root)
        self.subject = out.subject_label(subject)
        self.sub = out.subject_dir(self.root, self.subject)
        self.anat = self.sub / "anat"
        s = self.subject
        na = out.SODIUM_SUFFIX
        self.magnitude = self.anat / out.bids_name(s, "acq-23Na", "rec-nufft", "desc-magnitude", na)
        self.complex = self.anat / out.bids_name(s, "acq-23Na", "rec-nufft", "desc-complex", na)
        res = out.res_label(upsampled_spacing) if upsampled_spacing is not None else "2p43"
        self.upsampled = self.anat / out.bids_name(s, "acq-23Na", f"res-{res}", "desc-upsampled", na)
        self.t2w = self.anat / out.bids_name(s, "space-23Na", "desc-preproc", "T2w")
        self.xfm = self.anat / out.bids_name(s, "from-T2w", "to-23Na", "mode-image", "xfm", ext=".mat")
        self.qc = self.sub / "figures" / out.bids_name(s, "desc-qc", "overlay", ext=".png")
        self.log = self.sub / out.bids_name(s, "log", ext=".txt")
        self.slices = self.sub / "slices"
        self.index = self.sub / out.bids_name(s, "desc-slices", "index", ext=".json")

    def padded(self, cube: int) -> tuple[Path, Path]:
        s = self.subject
        return (self.anat / out.bids_name(s, "acq-23Na", f"desc-pad{cube}", out.SODIUM_SUFFIX),
                self.anat / out.bids_name(s, "space-23Na", f"desc-pad{cube}", "T2w"))

    @staticmethod
    def sidecar(nifti: Path) -> Path:
        name = nifti.name
        for ext in (".nii.gz", ".nii", ".mat", ".png"):
            if name.endswith(ext):
                return nifti.with_name(name[: -len(ext)] + ".json")
        return nifti.with_suffix(".json")

    def recon_outputs(self, save_complex: bool) -> list[Path]:
        files = [self.magnitude, self.sidecar(self.magnitude)]
        return files + ([self.complex, self.sidecar(self.complex)] if save_complex else [])

    def register_outputs(self) -> list[Path]:
        return [self.upsampled, self.sidecar(self.upsampled), self.t2w, self.sidecar(self.t2w), self.xfm,
                self.sidecar(self.xfm), self.qc]

    def prepare_outputs(self, cube: int) -> list[Path]:
        na, t2 = self.padded(cube)
        return [na, self.sidecar(na), t2, self.sidecar(t2), self.slices, self.index]


def _provenance(step: str, inputs: dict[str, Path], root: str | os.PathLike, links: dict[str, str]) -> dict[str, Any]:
    """Sidecar provenance; ``Sources`` are BIDS URIs seen from the dataset at ``root`` (``links`` collects the
    ``DatasetLinks`` they need), ``SourceRoles`` names the role of each, ``SourcesSHA256`` their content hashes."""
    uris = {k: out.bids_uri(v, root, links) for k, v in inputs.items()}
    return {
        "GeneratedBy": {"Name": out.PIPELINE_NAME, "Step": step},
        "SoftwareVersions": out.software_versions(),
        "Sources": list(uris.values()),
        "SourceRoles": uris,
        "SourcesSHA256": {k: out.sha256_path(v) for k, v in inputs.items() if Path(v).exists()},
        "DateTime": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _save_with_sidecar(stage: out.Staging, path: Path, array, affine, sidecar: dict, dtype=np.float32) -> None:
    save_nifti(array, affine, stage.path(path), dtype=dtype)
    out.write_json({**sidecar, "Geometry": out.geometry_dict(np.shape(array), affine)},
                   stage.path(StepPaths.sidecar(path)))


# ---------------------------------------------------------------------------------------------------- simulate
def run_simulate(
    out_root: str | os.PathLike,
    subject: str,
    config: SimulationConfig,
    seed: int = 0,
    lesion: bool = False,
    raw_format: str = "h5",
    t2w_format: str = "nifti",
    overwrite: bool = False,
    phantom_seed: int | None = None,
) -> dict[str, Path]:
    """Simulate one subject from the synthetic brain and write it like scanner data plus the truth (see README)."""
    # imported on first use, like monai_inr.data does, so `python -m monai_inr.data.phantom` runs it as __main__ cleanly
    from monai_inr.data.phantom import make_subject

    if raw_format not in ("h5", "npz"):
        raise InputError(f"raw format must be h5 or npz, got {raw_format!r}.")
    if t2w_format not in ("nifti", "dicom"):
        raise InputError(f"T2w format must be nifti or dicom, got {t2w_format!r}.")
    root = Path(out_root)
    s = out.subject_label(subject)
    sub = out.subject_dir(root, s)
    na = out.SODIUM_SUFFIX
    paths = {
        "raw": sub / out.bids_name(s, "acq-23Na", "raw", ext=f".{raw_format}"),
        "t2w": (sub / "anat" / out.bids_name(s, "T2w")) if t2w_format == "nifti" else sub / "dicom" / "T2w",
        "truth_conc": sub / "truth" / out.bids_name(s, "acq-23Na", "space-upsampled", "desc-truth", na),
        "truth_conc_native": sub / "truth" / out.bids_name(s, "acq-23Na", "res-native", "desc-truth", na),
        "truth_dseg": sub / "truth" / out.bids_name(s, "space-upsampled", "dseg"),
        "truth_t2w": sub / "truth" / out.bids_name(s, "space-upsampled", "desc-truth", "T2w"),
        "truth_motion": sub / "truth" / out.bids_name(s, "from-T2w", "to-23Na", "desc-truth", "xfm", ext=".json"),
        "sidecar": sub / out.bids_name(s, "acq-23Na", "sim", ext=".json"),
    }
    out.ensure_absent(paths.values(), overwrite, root, "simulate")
    with out.step_log(sub / out.bids_name(s, "log", ext=".txt"), "simulate"):
        t0 = time.perf_counter()
        subj = make_subject(int(seed if phantom_seed is None else phantom_seed), spacing=config.phantom_spacing_mm,
                            lesion=lesion)
        maps = maps_from_subject(subj)
        log.info("phantom seed %s, spacing %.2f mm, lesion %s (%.1f s)", subj.seed, config.phantom_spacing_mm, lesion,
                 time.perf_counter() - t0)
        sim = simulate_subject(maps, config, seed=seed)
        up_shape = tuple(2 * n for n in sim.recon_grid.shape)
        up_aff = upsampled_affine(sim.recon_grid.affine, sim.recon_grid.shape, 2)
        up_grid_maps = resample_maps(maps, _grid_from_affine(up_shape, up_aff))
        t2w_truth = resample_volume(maps.t2w, maps.affine, up_shape, up_aff, order=1, antialias=True)
        sim.raw.meta["subject"] = f"sub-{s}"
        sim.raw.meta["lesion"] = bool(lesion)
        sim.raw.meta["phantom"] = {"seed": subj.seed, "spacing_mm": config.phantom_spacing_mm,
                                   "generator": subj.meta.get("generator"), "version": subj.meta.get("version")}
        with out.Staging(root, "simulate", overwrite) as stage:
            write_raw(sim.raw, stage.path(paths["raw"]), overwrite=True)
            side = {"Modality": "MR", "Description": "simulated T2w (turbo spin echo) with a random rigid motion",
                    "SimulationSeed": seed, "Spacing_mm": list(config.t2w_spacing_mm)}
            if t2w_format == "nifti":
                _save_with_sidecar(stage, paths["t2w"], sim.t2w, sim.t2w_affine, side)
            else:
                from .dicom import write_dicom_series

                write_dicom_series(sim.t2w, sim.t2w_affine, stage.path(paths["t2w"]), description="T2w (simulated)")
            truth_side = {"Description": "simulation ground truth", "SimulationSeed": seed}
            _save_with_sidecar(stage, paths["truth_conc"], up_grid_maps.concentration, up_aff,
                               {**truth_side, "Units": "mM", "Content": "decay-free total sodium concentration"})
            _save_with_sidecar(stage, paths["truth_conc_native"], sim.truth_recon, sim.recon_grid.affine,
                               {**truth_side, "Units": "mM", "Content": "concentration band-limited to the "
                                "reconstruction grid (Fourier crop of the 2x simulation grid)"})
            _save_with_sidecar(stage, paths["truth_dseg"], up_grid_maps.labels, up_aff,
                               {**truth_side,
                                "Labels": {0: "bg", 1: "CSF", 2: "GM", 3: "WM", 4: "oedema", 5: "tumour"}},
                               dtype=np.uint8)
            _save_with_sidecar(stage, paths["truth_t2w"], t2w_truth, up_aff,
                               {**truth_side, "Content": "T2w without motion"})
            out.write_json({"fixed_to_moving_ras": sim.fixed_to_moving,
                            "description": "sodium (fixed) world -> T2w (moving) scanner world, RAS mm; what "
                                           "registration of the T2w onto the sodium must recover",
                            **sim.motion}, stage.path(paths["truth_motion"]))
            out.write_json({**_provenance("simulate", {}, root, {}), "Simulation": sim.raw.meta["simulation"],
                            "ReconGrid": sim.recon_grid.to_dict(), "Lesion": bool(lesion),
                            "Files": {k: str(v.relative_to(root)) for k, v in paths.items()}},
                           stage.path(paths["sidecar"]))
            stage.commit()
        log.info("simulated sub-%s: %d spokes x %d samples, %d coil(s) in %.1f s", s, config.n_spokes,
                 config.n_samples, config.n_coils, time.perf_counter() - t0)
    return paths


def _grid_from_affine(shape, affine) -> ReconGrid:
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    d = affine[:3, :3] / sp[None, :]
    centre_idx = np.array([n // 2 for n in shape], dtype=np.float64)
    iso = affine[:3, :3] @ centre_idx + affine[:3, 3]
    return ReconGrid(tuple(shape), tuple(sp), d, tuple(iso))


# ---------------------------------------------------------------------------------------------------- reconstruct
def _recon_grid(raw, shape=None, spacing_mm=None, isocenter_mm=None) -> ReconGrid:
    meta_grid = raw.meta.get("grid") or {}
    if shape is None and spacing_mm is None and meta_grid.get("shape") and meta_grid.get("spacing_mm"):
        g = ReconGrid.from_dict(meta_grid)
    elif shape is None and spacing_mm is None:
        g = paper_grid(meta_grid.get("isocenter_mm", (0, 0, 0)), np.asarray(meta_grid.get("direction", np.eye(3))))
    else:
        base = paper_grid()
        g = ReconGrid(tuple(shape or base.shape), tuple(spacing_mm or base.spacing_mm),
                      np.asarray(meta_grid.get("direction", np.eye(3))),
                      tuple(meta_grid.get("isocenter_mm", (0, 0, 0))))
    if isocenter_mm is not None:
        g = ReconGrid(g.shape, g.spacing_mm, g.direction, tuple(isocenter_mm))
    return g


def run_reconstruct(
    raw_path: str | os.PathLike,
    out_root: str | os.PathLike,
    subject: str,
    config: ReconConfig | None = None,
    shape=None,
    spacing_mm=None,
    save_complex: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Raw k-space file -> sodium magnitude NIfTI (and optionally complex) on the requested grid.

    Grid: ``shape``/``spacing_mm`` if given, else the grid stored in the raw file's ``meta['grid']``, else the paper's
    56 x 56 x 38 at 4.8572 x 4.8572 x 4.75 mm; placement from ``meta['grid']`` (isocentre, direction) if present.
    """
    config = config or ReconConfig()
    root = Path(out_root)
    p = StepPaths(root, subject)
    out.ensure_absent(p.recon_outputs(save_complex), overwrite, root, "reconstruct")
    with out.step_log(p.log, "reconstruct"):
        raw = read_raw(raw_path)
        grid = _recon_grid(raw, shape, spacing_mm)
        res = reconstruct(raw, grid, config)
        units = "mM" if "mM" in str(raw.meta.get("data_units", "")) else "a.u. (scanner scale)"
        links: dict[str, str] = {}
        side = {**_provenance("reconstruct", {"raw": Path(raw_path)}, root, links), "Units": units,
                "Reconstruction": res.info, "Trajectory": raw.meta.get("trajectory", {}), "Nucleus": "23Na"}
        with out.Staging(root, "reconstruct", overwrite) as stage:
            out.write_dataset_description(root, stage, links)
            _save_with_sidecar(stage, p.magnitude, res.magnitude, grid.affine, {**side, "Content": "magnitude"})
            if save_complex:
                _save_with_sidecar(stage, p.complex, res.complex_image, grid.affine, {**side, "Content": "complex"},
                                   dtype=np.complex64)
            stage.commit()
    return {"magnitude": p.magnitude, **({"complex": p.complex} if save_complex else {})}


# ---------------------------------------------------------------------------------------------------- register
def read_t2w(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """A T2w volume from a NIfTI file or a DICOM series directory (ITK/GDCM)."""
    path = Path(path)
    if path.is_dir():
        arr, aff, info = read_dicom_series(path)
        return arr, aff, {"format": "DICOM", **info}
    if not path.exists() and not path.suffix:
        raise InputError(f"{path}: DICOM series directory not found.")
    arr, aff = load_volume(path)
    return arr, aff, {"format": "NIfTI"}


def run_register(
    sodium_path: str | os.PathLike,
    t2w_path: str | os.PathLike,
    out_root: str | os.PathLike,
    subject: str,
    config: RegistrationConfig | None = None,
    upsample: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """2x cubic-spline upsampling of the sodium magnitude, then rigid MI registration of the T2w onto it (B-spline
    resampling), the transform, sidecars and a QC overlay."""
    config = config or RegistrationConfig()
    root = Path(out_root)
    na, na_aff = load_volume(sodium_path)
    up_spacing = np.linalg.norm(na_aff[:3, :3], axis=0) / (2 if upsample else 1)
    p = StepPaths(root, subject, up_spacing)
    out.ensure_absent(p.register_outputs(), overwrite, root, "register")
    with out.step_log(p.log, "register"):
        t2, t2_aff, t2_info = read_t2w(t2w_path)
        if upsample:
            t0 = time.perf_counter()
            na_up, up_aff = upsample2x(na, na_aff)
            log.info("upsampled sodium %s -> %s (cubic spline, %.2f s)", na.shape, na_up.shape,
                     time.perf_counter() - t0)
        else:
            na_up, up_aff = np.clip(na, 0, None), na_aff
        with out.Staging(root, "register", overwrite) as stage:
            res = register_rigid(na_up, up_aff, t2, t2_aff, config, workdir=stage.dir / "ants",
                                 fixed_name=str(sodium_path), moving_name=str(t2w_path))
            links: dict[str, str] = {}
            prov = _provenance("register", {"sodium": Path(sodium_path), "t2w": Path(t2w_path)}, root, links)
            out.write_dataset_description(root, stage, links)
            _save_with_sidecar(stage, p.upsampled, na_up, up_aff, {
                **prov, "Content": "sodium magnitude, 2x cubic-spline upsampled (exact sub-grid, clipped at 0)",
                "Upsampling": {"factor": 2 if upsample else 1, "method": "scipy.ndimage.zoom order 3 grid_mode",
                               "source_spacing_mm": np.linalg.norm(na_aff[:3, :3], axis=0).tolist()}})
            _save_with_sidecar(stage, p.t2w, res.warped, up_aff, {
                **prov, "Content": "T2w rigidly registered and resampled onto the upsampled sodium grid",
                "T2wSource": t2_info, "Registration": res.info})
            os.replace(res.transform_file, stage.path(p.xfm))
            out.write_json({**prov, "Registration": res.info, "fixed_to_moving_ras": res.fixed_to_moving_ras,
                            "Convention": "ANTs/ITK .mat maps fixed (sodium, LPS) points to moving (T2w) points; "
                                          "fixed_to_moving_ras is the same map in RAS mm"},
                           stage.path(StepPaths.sidecar(p.xfm)))
            out.qc_overlay(na_up, res.warped, up_aff, stage.path(p.qc),
                           title=f"sub-{p.subject}: registered T2w contours (25 % orange, 60 % red) over "
                                 "the upsampled sodium")
            shutil.rmtree(stage.dir / "ants", ignore_errors=True)
            stage.commit()
    return {"upsampled": p.upsampled, "t2w": p.t2w, "xfm": p.xfm, "qc": p.qc}


# ---------------------------------------------------------------------------------------------------- prepare
def run_prepare(
    sodium_path: str | os.PathLike,
    t2w_path: str | os.PathLike,
    out_root: str | os.PathLike,
    subject: str,
    config: PrepareConfig | None = None,
    lesion: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Pad both co-registered volumes to the cube, normalise, slice along three planes, write the slice index."""
    config = config or PrepareConfig()
    root = Path(out_root)
    p = StepPaths(root, subject)
    out.ensure_absent(p.prepare_outputs(config.cube), overwrite, root, "prepare")
    with out.step_log(p.log, "prepare"):
        na, na_aff = load_volume(sodium_path)
        t2, t2_aff = load_volume(t2w_path)
        if na.shape != t2.shape or not np.allclose(na_aff, t2_aff, atol=1e-3):
            raise InputError(f"{t2w_path}: the T2w is not on the sodium grid of {sodium_path} (register it first).")
        na = np.clip(na, 0, None)
        t2 = np.clip(t2, 0, None)
        na_p, aff_p, pad = pad_or_crop(na, na_aff, config.cube)
        t2_p, _, _ = pad_or_crop(t2, t2_aff, config.cube)
        slices, stats = slice_volumes({"sodium": na_p, "t2w": t2_p}, aff_p, config)
        links: dict[str, str] = {}
        prov = _provenance("prepare", {"sodium": Path(sodium_path), "t2w": Path(t2w_path)}, root, links)
        na_out, t2_out = p.padded(config.cube)
        with out.Staging(root, "prepare", overwrite) as stage:
            out.write_dataset_description(root, stage, links)
            common = {**prov, "Padding": pad, "Normalisation": {"mode": config.norm, **stats},
                      "Prepare": asdict(config)}
            _save_with_sidecar(stage, na_out, na_p, aff_p, {**common, "Content": "sodium magnitude, zero-padded"})
            _save_with_sidecar(stage, t2_out, t2_p, aff_p, {**common, "Content": "registered T2w, zero-padded"})
            slice_dir = stage.path(p.slices)
            slice_dir.mkdir(parents=True, exist_ok=True)
            entries = []
            for sl in slices:
                desc = f"desc-{sl['plane']}{sl['index']:03d}"  # plane and slice index (not BIDS entities)
                names = {"sodium": out.bids_name(p.subject, "acq-23Na", desc, out.SODIUM_SUFFIX, ext=".npy"),
                         "t2w": out.bids_name(p.subject, "space-23Na", desc, "T2w", ext=".npy")}
                for key, name in names.items():
                    np.save(slice_dir / name, sl["arrays"][key].astype(np.float32))
                entries.append({"sodium": f"slices/{names['sodium']}", "t2w": f"slices/{names['t2w']}",
                                "plane": sl["plane"], "index": sl["index"], "empty": sl["empty"],
                                **({"minmax": sl["minmax"]} if sl["minmax"] else {})})
            out.write_json({**common, "subject": f"sub-{p.subject}", "lesion": bool(lesion),
                            "cube": config.cube, "geometry": out.geometry_dict(na_p.shape, aff_p),
                            "plane_axes": plane_axes(aff_p),
                            "slices": entries}, stage.path(p.index))
            stage.commit()
        log.info("prepared sub-%s: %d slices (%s normalisation, cube %d)", p.subject, len(entries), config.norm,
                 config.cube)
    return {"sodium_padded": na_out, "t2w_padded": t2_out, "index": p.index, "slices": p.slices}


# ---------------------------------------------------------------------------------------------------- run
def run_all(
    raw_path: str | os.PathLike,
    t2w_path: str | os.PathLike,
    out_root: str | os.PathLike,
    subject: str,
    recon: ReconConfig | None = None,
    registration: RegistrationConfig | None = None,
    prepare: PrepareConfig | None = None,
    shape=None,
    spacing_mm=None,
    save_complex: bool = False,
    lesion: bool | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """The whole chain for one subject: reconstruct, upsample + register, prepare. Checks every output first."""
    prepare = prepare or PrepareConfig()
    root = Path(out_root)
    p = StepPaths(root, subject)
    raw_file = Path(raw_path)
    if not raw_file.is_file():
        raise InputError(f"{raw_file}: raw k-space file not found.")
    t2_file = Path(t2w_path)
    if not t2_file.exists():
        raise InputError(f"{t2_file}: T2w image or DICOM series directory not found.")
    # the T2w's content and geometry are checked before the reconstruction is spent (a bad T2w used to fail only
    # after the sodium image was written, which then blocked the retry)
    load_volume(t2_file, require_geometry=True)
    existing = [f for f in p.recon_outputs(save_complex) + p.prepare_outputs(prepare.cube) if f.exists()]
    if p.anat.exists():
        existing += list(p.anat.glob(f"sub-{p.subject}_acq-23Na_res-*_desc-upsampled_{out.SODIUM_SUFFIX}.*"))
    existing += [f for f in (p.t2w, p.xfm, p.qc) if f.exists()]
    out.ensure_absent(existing, overwrite, root, "run")
    result = run_reconstruct(raw_path, root, subject, recon, shape, spacing_mm, save_complex, overwrite)
    result.update(run_register(result["magnitude"], t2w_path, root, subject, registration, True, overwrite))
    if lesion is None:
        lesion = bool(read_raw_meta(raw_path).get("lesion", False))
    result.update(run_prepare(result["upsampled"], result["t2w"], root, subject, prepare, lesion, overwrite))
    return result
