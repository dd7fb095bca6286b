"""``monai-inr``: the project's methods on a user's own scans, through the bundles' own configurations.

Every subcommand runs a bundle configuration with MONAI's :class:`~monai.bundle.ConfigWorkflow`
(:func:`monai_inr.evaluation.bundle.run_bundle`), so the command and ``python -m monai.bundle run ...`` are one code
path with one set of checks (inputs, outputs, memory) that fail in one sentence before any compute:

``monai-inr sr SCAN [SCAN ...] (--scale S | --target-spacing MM) -o OUT``
    ArSSR super-resolution with the shipped weights (``bundles/arssr/models/model.pt``) or ``--weights``; NIfTI files
    or DICOM series folders in, ``OUT/<input name>_sr.nii.gz`` out with the super-resolved grid's affine (same field
    of view). A scale outside the weights' training range is allowed with a warning.
``monai-inr fit SCAN1 SCAN2 (--target-spacing MM | --reference REF) -o DIR``
    the subject-specific multi-contrast INR (McGinnis, Shit et al., MICCAI 2023): fits both scans (paper network, or
    ``--profile hashgrid`` for the CPU path), writes ``DIR/models/model.pt`` and both contrasts on one isotropic grid
    over their union field of view (``--target-spacing``) or on the grid of ``--reference``.
``monai-inr export BUNDLE -o MODEL.ts``
    TorchScript (script mode) export of a bundle's network with its weights, correct at any input size.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

# OpenMP reads its wait policy once, when torch loads it: wait passively on a shared CPU unless the user chose
# otherwise (see monai_inr.engines.threads); this module imports torch only inside the commands
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from monai_inr.errors import InputError, find_input_error

__all__ = ["main", "build_parser", "parse_scale"]

logger = logging.getLogger("monai_inr.cli")

METHODS = ("arssr",)
FIT_PROFILES = {"paper": (), "hashgrid": ("hashgrid.json",), "quick": ("quick.json",)}
EXPORT_BUNDLES = ("arssr", "dual_arbnet", "arrfr", "multi_contrast_inr", "nexus_inr")


def parse_scale(text: str, name: str = "--scale") -> float | list[float]:
    """``"2.5"`` -> ``2.5``; ``"1,1,4"`` or ``"[1,1,4]"`` -> ``[1.0, 1.0, 4.0]`` (positive, finite numbers)."""
    parts = [p for p in str(text).strip().strip("[]()").replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} takes one number or three comma-separated numbers, got {text!r}")
    if len(values) not in (1, 3) or not all(v > 0 and v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"{name} takes one positive number or three (per axis), got {text!r}")
    return values[0] if len(values) == 1 else values


def _bool(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monai-inr",
        description="Implicit-neural-representation MRI super-resolution (MONAI bundles) on your own scans.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step of the bundle run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{sr,fit,export}")

    sr = sub.add_parser("sr", help="super-resolve single scans (ArSSR, shipped weights)",
                        description="Super-resolve one or more 3D scans with ArSSR (shipped weights by default).")
    sr.add_argument("scans", nargs="+", metavar="SCAN", help="NIfTI file(s) or DICOM series folder(s)")
    grid = sr.add_mutually_exclusive_group(required=True)
    grid.add_argument("--scale", type=parse_scale, help="up-sampling factor: one number or three per axis (1,1,4)")
    grid.add_argument("--target-spacing", type=lambda t: parse_scale(t, "--target-spacing"),
                      help="output voxel size in mm: one number or three per axis")
    sr.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created)")
    sr.add_argument("--method", choices=METHODS, default="arssr", help="method (default: arssr)")
    sr.add_argument("--weights", help="checkpoint to use instead of the shipped weights")
    sr.add_argument("--config", action="append", default=[], metavar="JSON",
                    help="extra config overlays (e.g. the profile the --weights were trained with)")
    sr.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    sr.add_argument("--memory-budget-gb", type=float, help="memory an inference may use (default: what is free)")
    sr.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    sr.add_argument("--no-progress", action="store_true", help="no progress bar")

    fit = sub.add_parser("fit", help="fit the multi-contrast INR to two scans of one subject",
                         description="Fit the subject-specific multi-contrast INR to two scans and write both "
                                     "contrasts on one grid.")
    fit.add_argument("scan1", metavar="SCAN1", help="first contrast (e.g. T1w), NIfTI or DICOM folder")
    fit.add_argument("scan2", metavar="SCAN2", help="second contrast (e.g. T2w, PD, FLAIR)")
    target = fit.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-spacing", type=lambda t: parse_scale(t, "--target-spacing"),
                        help="isotropic (or per-axis) output spacing in mm over the union field of view")
    target.add_argument("--reference", help="write both contrasts on this image's grid")
    fit.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (model and images)")
    fit.add_argument("--profile", choices=sorted(FIT_PROFILES), default="hashgrid",
                     help="paper (the paper's Fourier-feature network; a GPU), hashgrid (CPU path, default), quick")
    fit.add_argument("--epochs", type=int, help="override the profile's epochs")
    fit.add_argument("--slice-profile", choices=("box", "gaussian", "none"),
                     help="the thick-slice profile of your sequences for the fit's forward model: box (default), "
                          "gaussian (FWHM = slice thickness), none (point samples: fit the slice centres)")
    fit.add_argument("--mask1", help="brain mask of SCAN1 (default: computed)")
    fit.add_argument("--mask2", help="brain mask of SCAN2 (default: computed)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing model and outputs in DIR")
    fit.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")

    exp = sub.add_parser("export", help="TorchScript export of a bundle's network",
                         description="Export a bundle's network with its weights as TorchScript (script mode).")
    exp.add_argument("bundle", choices=EXPORT_BUNDLES, help="bundle name")
    exp.add_argument("-o", "--output", required=True, metavar="MODEL.ts", help="TorchScript file to write")
    exp.add_argument("--weights", help="checkpoint (default: the bundle's models/model.pt)")
    exp.add_argument("--config", action="append", default=[], metavar="JSON", help="extra config overlay (repeatable)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser


def _configs(bundle: str, extra: Sequence[str] = (), base: str = "inference.json") -> list[str]:
    from monai_inr.evaluation.bundle import bundle_config_dir

    folder = bundle_config_dir(bundle)
    return [str(folder / base), *[str(p if Path(p).is_file() else folder / p) for p in extra]]


def _device(name: str | None) -> dict[str, Any]:
    return {} if name is None else {"device": f"$torch.device({str(name)!r})"}


def run_sr(args: argparse.Namespace) -> list[Path]:
    """``monai-inr sr``: the ArSSR bundle's ``inference`` with the shipped (or given) weights."""
    from monai_inr.evaluation.bundle import bundle_config_dir, run_bundle

    bundle_root = bundle_config_dir(args.method).parent
    overrides: dict[str, Any] = {
        "bundle_root": str(bundle_root),
        "input_image": [str(s) for s in args.scans],
        "output_dir": str(args.output),
        "overwrite": bool(args.overwrite),
        "progress": not args.no_progress,
        "memory_budget_gb": args.memory_budget_gb,
        **_device(args.device),
    }
    if args.scale is not None:
        overrides["scale"] = args.scale
    else:
        overrides["target_spacing"] = args.target_spacing
    if args.weights:
        if not Path(args.weights).is_file():
            raise InputError(f"{args.weights}: checkpoint not found.")
        overrides["ckpt_path"] = str(args.weights)
    wf = run_bundle(_configs(args.method, args.config), overrides, workflow_type="infer", run_id="inference")
    from monai_inr.transforms.io import output_path_for

    outs = [output_path_for(s, wf.parser.get_parsed_content("output_dir"), "sr") for s in overrides["input_image"]]
    for o in outs:
        print(o)
    return outs


def run_fit(args: argparse.Namespace) -> list[Path]:
    """``monai-inr fit``: the multi-contrast INR bundle's ``training`` (the fit), then its ``inference``."""
    from monai_inr.engines.checks import check_output_paths
    from monai_inr.evaluation.bundle import run_bundle
    from monai_inr.io import output_names

    out = Path(args.output)
    profile = list(FIT_PROFILES[args.profile])
    names = output_names([args.scan1, args.scan2])
    # everything the fit will write, checked before it starts (the fit's checkpoint and both images)
    check_output_paths(
        [("the fitted network", out / "models" / "model.pt")]
        + [(scan, out / f"{name}_sr.nii.gz") for scan, name in zip((args.scan1, args.scan2), names)],
        overwrite=bool(args.overwrite),
    )
    common: dict[str, Any] = {"bundle_root": str(out), "contrast1": str(args.scan1), "contrast2": str(args.scan2),
                              **_device(args.device)}
    fit = dict(common)
    if args.epochs is not None:
        fit["epochs"] = int(args.epochs)
    if args.slice_profile is not None:
        fit["fit_slice_profile"] = args.slice_profile
    for key, mask in (("mask1", args.mask1), ("mask2", args.mask2)):
        if mask:
            fit[key] = str(mask)
    run_bundle(_configs("multi_contrast_inr", profile, base="train.json"), fit, run_id="run")
    infer = {**common, "output_dir": str(out), "overwrite": bool(args.overwrite)}
    if args.reference:
        infer["reference_image"] = str(args.reference)
        infer["target_spacing"] = None
    else:
        infer["target_spacing"] = args.target_spacing
    wf = run_bundle(_configs("multi_contrast_inr", profile), infer, workflow_type="infer", run_id="inference")
    outs = [Path(wf.parser.get_parsed_content("output_dir")) / f"{name}_sr.nii.gz" for name in names]
    for o in outs:
        print(o)
    return outs


def run_export(args: argparse.Namespace) -> Path:
    """``monai-inr export``: ``torch.jit.script`` of the bundle's network with its weights, written atomically."""
    import torch

    from monai_inr.engines.checks import check_output_paths, network_from_checkpoint
    from monai_inr.evaluation.bundle import bundle_config_dir, network_from_bundle
    from monai_inr.io import write_atomic

    (out,) = check_output_paths([("the export", args.output)], overwrite=bool(args.overwrite))
    folder = bundle_config_dir(args.bundle)
    weights = Path(args.weights) if args.weights else folder.parent / "models" / "model.pt"
    if not weights.is_file():
        raise InputError(f"{weights}: checkpoint not found; train the {args.bundle} bundle first or pass --weights.")
    base = "inference.json" if (folder / "inference.json").is_file() else "train.json"
    network_def = network_from_bundle(_configs(args.bundle, args.config, base=base), key="network_def")
    network = network_from_checkpoint(network_def, weights, "cpu").eval()
    scripted = torch.jit.script(network)
    write_atomic(out, lambda tmp: torch.jit.save(scripted, str(tmp)))
    print(out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``monai-inr``: 0 on success; 2 with one sentence on stderr for bad input."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # the bundle run's own chatter (e.g. "Logging file is set to False")
        import monai.bundle  # noqa: F401  (its loggers set their level on import: import first, then quieten)

        for name in ("monai.bundle", "monai.bundle.workflows", "monai.bundle.scripts"):
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        if args.command == "sr":
            run_sr(args)
        elif args.command == "fit":
            run_fit(args)
        else:
            run_export(args)
    except Exception as e:  # the bundle's config parser wraps an InputError raised inside an expression
        error = find_input_error(e)
        if error is None:
            raise
        print(f"monai-inr {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
