"""Command line: ``python -m preprocessing simulate|reconstruct|register|prepare|run|datalist ...``.

Every subcommand has ``--help``. Options can also come from ``--config file.yaml`` (keys are the long option names,
with dashes or underscores); explicit command-line options win. Bad input ends with one ``error:`` line naming the
file and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from monai_inr.errors import InputError
from monai_inr.io import check_output_folder

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Sodium (23Na) MRI preprocessing for the ArRFR bundle.

Steps, in order (``run`` does 1-3 for one subject):
  1. reconstruct  raw non-Cartesian k-space (HDF5/NPZ) -> sodium magnitude NIfTI (NUFFT gridding or CG)
  2. register     2x cubic-spline upsampling of sodium, rigid ANTs registration of the T2w (NIfTI or DICOM folder)
  3. prepare      zero-pad to 112^3, min-max normalise, slice along 3 planes -> .npy slices + index
  datalist        gather prepared subjects into a MONAI datalist (lesion subjects -> test, healthy 3:1)
  simulate        make a synthetic subject (raw k-space + misaligned T2w + truth) to try everything out

Example (one synthetic subject, end to end):
  python -m preprocessing simulate --out raw --subject 01 --preset fast
  python -m preprocessing run --raw raw/sub-01/sub-01_acq-23Na_raw.h5 --t2w raw/sub-01/anat/sub-01_T2w.nii.gz \\
      --out derivatives/sodium-preproc --subject 01
  python -m preprocessing datalist --root derivatives/sodium-preproc
"""


def _add_common(p: argparse.ArgumentParser, out_help: str = "derivatives folder to write into") -> None:
    p.add_argument("--out", required=True, type=Path, help=out_help)
    p.add_argument("--subject", required=True, help="subject label (BIDS), e.g. 01")
    p.add_argument("--overwrite", action="store_true", help="replace existing results of this step")


def _add_recon(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reconstruction")
    g.add_argument("--shape", type=int, nargs=3, metavar=("NI", "NJ", "NK"),
                   help="grid size (default: the raw file's grid, else the paper's 56 56 38)")
    g.add_argument("--spacing", type=float, nargs=3, metavar=("DI", "DJ", "DK"),
                   help="voxel size in mm (default: raw file's, else 4.8572 4.8572 4.75)")
    g.add_argument("--method", choices=("gridding", "cg"), default="gridding",
                   help="gridding (adjoint of density-compensated data) or cg (least squares, a few iterations)")
    g.add_argument("--dcf", choices=("auto", "shells", "da", "radial", "file"), default="auto",
                   help="density compensation: auto = the file's 'dcf' if present, else analytic shell volumes")
    g.add_argument("--filter", dest="window", choices=("none", "hamming", "fermi"), default="none",
                   help="k-space apodisation (reduces ringing and noise, costs resolution)")
    g.add_argument("--fermi-cutoff", type=float, default=0.9, help="Fermi filter cutoff as a fraction of kmax")
    g.add_argument("--fermi-width", type=float, default=0.05, help="Fermi filter transition width (fraction of kmax)")
    g.add_argument("--backend", choices=("auto", "pynufft", "finufft", "dft"), default="auto",
                   help="NUFFT library: auto = finufft if installed, else pynufft")
    g.add_argument("--kernel-width", type=int, default=4, help="pynufft kernel size J (4 fast, 6 accurate)")
    g.add_argument("--max-plan-points", type=float, default=3e7,
                   help="pynufft memory budget per plan in samples x J^3 (3e7 is about 2.7 GB)")
    g.add_argument("--cg-iterations", type=int, default=10, help="CG iterations (method cg)")
    g.add_argument("--cg-lambda", type=float, default=0.0, help="Tikhonov weight for CG (relative)")
    g.add_argument("--complex", dest="save_complex", action="store_true", help="also save the complex image")


def _add_reg(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("registration (ANTs)")
    g.add_argument("--transform", choices=("Rigid", "Affine"), default="Rigid", help="degrees of freedom")
    g.add_argument("--metric", choices=("mattes", "GC", "meansquares"), default="mattes",
                   help="similarity metric (mattes = Mattes mutual information)")
    g.add_argument("--iterations", type=int, nargs="+", default=[1000, 500, 250], help="iterations per level")
    g.add_argument("--shrink", type=int, nargs="+", default=[4, 2, 1], help="shrink factor per level")
    g.add_argument("--smoothing", type=float, nargs="+", default=[2, 1, 0], help="smoothing sigma (voxels) per level")
    g.add_argument("--sampling-rate", type=float, default=0.2, help="fraction of voxels sampled by the metric")
    g.add_argument("--interpolator", choices=("bSpline", "linear", "lanczosWindowedSinc"), default="bSpline",
                   help="T2w resampling interpolator")
    g.add_argument("--no-antialias", dest="antialias", action="store_false",
                   help="skip the Gaussian pre-smoothing of the T2w before resampling to the coarser grid")
    g.add_argument("--reg-seed", type=int, default=42, help="random seed of the metric sampling")
    g.add_argument("--nondeterministic", dest="deterministic", action="store_false",
                   help="multi-threaded ANTs (faster, not bit-reproducible)")


def _add_prep(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset preparation")
    g.add_argument("--cube", type=int, default=112, help="zero-pad (or crop) every axis to this many voxels")
    g.add_argument("--norm", choices=("volume", "slice"), default="volume", help="min-max normalisation scope")
    g.add_argument("--planes", nargs="+", choices=("sagittal", "coronal", "axial"),
                   default=["sagittal", "coronal", "axial"], help="slicing planes")
    g.add_argument("--drop-empty", action="store_true", help="skip slices where both images are zero")
    g.add_argument("--lesion", action="store_true", default=None,
                   help="mark the subject as a lesion case (goes to the test split); run reads it from simulated data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m preprocessing", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--config", type=Path, help="YAML file of option defaults (long option names as keys)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="synthetic subject: raw sodium k-space, misaligned T2w and the truth",
                       description="Simulate a sodium DA-3DPR acquisition (bi-exponential decay, noise, coils) and a "
                                   "T2w with a random rigid motion from the synthetic brain.")
    p.add_argument("--out", required=True, type=Path, help="folder for raw data (sub-XX/ inside)")
    p.add_argument("--subject", default="01", help="subject label")
    p.add_argument("--seed", type=int, default=0, help="seed of the phantom, motion and noise")
    p.add_argument("--preset", choices=("paper", "fast", "tiny"), default="paper",
                   help="paper: 56x56x38 grid, 9000 spokes; fast: 48^3, 7000 spokes; tiny: 24^3 for tests")
    p.add_argument("--spokes", type=int, help="number of spokes (override the preset)")
    p.add_argument("--samples", type=int, help="samples per spoke")
    p.add_argument("--snr", type=float, help="target white-matter SNR of the gridding reconstruction (default 8)")
    p.add_argument("--noiseless", action="store_true", help="no noise")
    p.add_argument("--no-decay", dest="decay", action="store_false", default=None, help="no T2* decay")
    p.add_argument("--bins", type=int, help="readout time bins for the decay model")
    p.add_argument("--coils", type=int, help="number of receive coils")
    p.add_argument("--backend", choices=("auto", "pynufft", "finufft", "dft"), help="NUFFT backend")
    p.add_argument("--lesion", action="store_true", help="add a glioma-like lesion")
    p.add_argument("--raw-format", choices=("h5", "npz"), default="h5")
    p.add_argument("--t2w-format", choices=("nifti", "dicom"), default="nifti")
    p.add_argument("--max-angle", type=float, help="largest T2w misalignment angle (deg, default 10)")
    p.add_argument("--max-shift", type=float, help="largest T2w misalignment shift (mm, default 10)")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("reconstruct", help="raw k-space -> sodium NIfTI",
                       description="Reconstruct a raw non-Cartesian sodium acquisition "
                                   "(file layout: preprocessing/README.md).")
    p.add_argument("--raw", required=True, type=Path, help="raw k-space file (.h5/.hdf5/.npz)")
    _add_common(p)
    _add_recon(p)

    p = sub.add_parser("register", help="upsample sodium 2x and register the T2w onto it",
                       description="Cubic-spline 2x upsampling of the sodium magnitude and rigid registration of the "
                                   "T2w (NIfTI file or DICOM series folder) onto it, with QC overlay.")
    p.add_argument("--sodium", required=True, type=Path, help="sodium magnitude NIfTI (native resolution)")
    p.add_argument("--t2w", required=True, type=Path, help="T2w NIfTI file or DICOM series folder")
    p.add_argument("--no-upsample", dest="upsample", action="store_false",
                   help="the sodium image is already upsampled")
    _add_common(p)
    _add_reg(p)

    p = sub.add_parser("prepare", help="pad, normalise and slice co-registered volumes",
                       description="Zero-pad the upsampled sodium and the registered T2w to a cube, min-max "
                                   "normalise and slice them along three planes for the ArRFR bundle.")
    p.add_argument("--sodium", required=True, type=Path, help="upsampled sodium NIfTI (register output)")
    p.add_argument("--t2w", required=True, type=Path, help="registered T2w NIfTI (register output)")
    _add_common(p)
    _add_prep(p)

    p = sub.add_parser("run", help="reconstruct + register + prepare for one subject",
                       description="The whole chain for one subject.")
    p.add_argument("--raw", required=True, type=Path, help="raw k-space file (.h5/.hdf5/.npz)")
    p.add_argument("--t2w", required=True, type=Path, help="T2w NIfTI file or DICOM series folder")
    _add_common(p)
    _add_recon(p)
    _add_reg(p)
    _add_prep(p)

    p = sub.add_parser("datalist", help="MONAI datalist of prepared subjects",
                       description="Collect every prepared subject under ROOT into a MONAI datalist JSON.")
    p.add_argument("--root", required=True, type=Path, help="derivatives folder holding sub-*/ prepared subjects")
    p.add_argument("--out", type=Path, help="datalist path (default ROOT/datalist.json)")
    p.add_argument("--split", type=int, nargs=2, default=[3, 1], metavar=("TRAIN", "TEST"),
                   help="healthy subjects' training:test ratio")
    p.add_argument("--val-fraction", type=float, default=0.0, help="share of training subjects for validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude-empty", action="store_true", help="leave out empty slices")
    return parser


def _apply_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.config is None:
        return args
    import yaml

    try:
        with open(args.config) as fh:
            cfg = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{args.config}: not a readable YAML config ({type(e).__name__}).") from e
    if not isinstance(cfg, dict):
        raise InputError(f"{args.config}: the config must be a mapping of option names to values.")
    cfg = {str(k).replace("-", "_"): v for k, v in cfg.items()}
    sub_parser = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001 (argparse has no API)
    known = {a.dest for a in sub_parser._actions}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise InputError(f"{args.config}: unknown option(s) {', '.join(unknown)} for '{args.command}'.")
    sub_parser.set_defaults(**cfg)
    for a in sub_parser._actions:  # config values satisfy required options
        if a.dest in cfg:
            a.required = False
    return parser.parse_args(argv)


def _recon_config(a):
    from .reconstruction import ReconConfig

    return ReconConfig(method=a.method, dcf=a.dcf, window=a.window, fermi_cutoff=a.fermi_cutoff,
                       fermi_width=a.fermi_width, backend=a.backend, kernel_width=a.kernel_width,
                       max_plan_points=a.max_plan_points, cg_iterations=a.cg_iterations, cg_lambda=a.cg_lambda)


def _reg_config(a):
    from .registration import RegistrationConfig

    return RegistrationConfig(transform=a.transform, metric=a.metric, sampling_rate=a.sampling_rate,
                              iterations=tuple(a.iterations), shrink_factors=tuple(a.shrink),
                              smoothing_sigmas=tuple(a.smoothing), interpolator=a.interpolator,
                              antialias=a.antialias, deterministic=a.deterministic, seed=a.reg_seed)


def _prep_config(a):
    from .prepare import PrepareConfig

    return PrepareConfig(cube=a.cube, norm=a.norm, planes=tuple(a.planes), drop_empty=a.drop_empty)


def _dispatch(a) -> dict:
    from . import pipeline

    if a.command == "simulate":
        from .simulation import get_preset

        over = {"n_spokes": a.spokes, "n_samples": a.samples, "n_bins": a.bins, "n_coils": a.coils,
                "backend": a.backend, "max_angle_deg": a.max_angle, "max_shift_mm": a.max_shift, "decay": a.decay}
        over = {k: v for k, v in over.items() if v is not None}
        if a.noiseless:
            over["snr_wm"] = None
        elif a.snr is not None:
            over["snr_wm"] = a.snr
        cfg = get_preset(a.preset, **over)
        return pipeline.run_simulate(a.out, a.subject, cfg, seed=a.seed, lesion=a.lesion, raw_format=a.raw_format,
                                     t2w_format=a.t2w_format, overwrite=a.overwrite)
    if a.command == "reconstruct":
        return pipeline.run_reconstruct(a.raw, a.out, a.subject, _recon_config(a), a.shape, a.spacing,
                                        a.save_complex, a.overwrite)
    if a.command == "register":
        return pipeline.run_register(a.sodium, a.t2w, a.out, a.subject, _reg_config(a), a.upsample, a.overwrite)
    if a.command == "prepare":
        return pipeline.run_prepare(a.sodium, a.t2w, a.out, a.subject, _prep_config(a), bool(a.lesion), a.overwrite)
    if a.command == "run":
        return pipeline.run_all(a.raw, a.t2w, a.out, a.subject, _recon_config(a), _reg_config(a), _prep_config(a),
                                a.shape, a.spacing, a.save_complex, a.lesion, a.overwrite)
    if a.command == "datalist":
        from .prepare import build_datalist

        d = build_datalist(a.root, a.out, tuple(a.split), a.val_fraction, a.seed, include_empty=not a.exclude_empty)
        return {"datalist": a.out or a.root / "datalist.json",
                **{k: f"{len(d[k])} slices" for k in ("training", "validation", "test")}}
    raise AssertionError(a.command)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _apply_config(parser, argv)
        logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("preprocessing").setLevel(getattr(logging, args.log_level))
        if args.command != "datalist" and getattr(args, "out", None) is not None:
            check_output_folder(args.out)  # a file or unwritable folder: one sentence before any work
        result = _dispatch(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0
