"""IXI datalists: paired T2-weighted (target) and PD-weighted (reference) NIfTI volumes per subject.

IXI (https://brain-development.org/ixi-dataset/) ships one NIfTI per subject and contrast, named
``IXI<nnn>-<site>-<nnnn>-<contrast>.nii.gz`` (e.g. ``IXI002-Guys-0828-T2.nii.gz``, ``IXI002-Guys-0828-PD.nii.gz``); T2
and PD come from one dual-echo acquisition, so they share the voxel grid. Dual-ArbNet (Zhang et al., MICCAI 2023,
section 3) uses T2 as the target and PD as the reference.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from monai_inr.data.datalist import split_ids, write_datalist
from monai_inr.errors import InputError

__all__ = ["IXI_PATTERN", "build_ixi_datalist"]

#: file-name pattern: subject id (``IXI002-Guys-0828``) and contrast (``T1``, ``T2``, ``PD``, ``MRA``, ``DTI-nn``)
IXI_PATTERN = re.compile(r"^(?P<id>IXI\d+-[A-Za-z]+-\d+)-(?P<contrast>T1|T2|PD|MRA|DTI-\d+)\.nii(\.gz)?$")


def build_ixi_datalist(
    folder: str | os.PathLike,
    target: str = "T2",
    reference: str = "PD",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    output_file: str | os.PathLike | None = None,
    check_grids: bool = True,
    on_mismatch: str = "skip",
    recursive: bool = True,
) -> dict[str, Any]:
    """A MONAI datalist of IXI subjects with both contrasts: items ``{"image": target, "reference": reference,
    "subject": id}`` (absolute paths), split reproducibly by subject (:func:`~monai_inr.data.datalist.split_ids`).

    Args:
        folder: where the IXI NIfTI files are (searched recursively unless ``recursive=False``; per-contrast
            sub-folders such as ``IXI-T2/`` and ``IXI-PD/`` work).
        target, reference: contrast names in the file names (``"T2"`` and ``"PD"``).
        val_fraction, test_fraction, seed: the subject split.
        output_file: write the datalist JSON there (atomically).
        check_grids: read both headers and require the same shape and (to 1e-3 mm) affine, since the 2D slices of
            target and reference are paired pixel by pixel during training.
        on_mismatch: subjects whose grids differ are ``"skip"``-ped (recorded under ``metadata.skipped``) or an
            ``"error"``.

    Raises:
        InputError: missing folder, no complete pair, bad arguments, or (``on_mismatch="error"``) a grid mismatch.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: IXI folder not found.")
    if target == reference:
        raise InputError(f"target and reference must be different contrasts, got {target!r} twice.")
    if on_mismatch not in ("skip", "error"):
        raise InputError(f"on_mismatch must be 'skip' or 'error', got {on_mismatch!r}.")
    files = sorted(root.rglob("*.nii*") if recursive else root.glob("*.nii*"))
    found: dict[str, dict[str, str]] = {}
    for f in files:
        m = IXI_PATTERN.match(f.name)
        if not m or m.group("contrast") not in (target, reference):
            continue
        key = "image" if m.group("contrast") == target else "reference"
        entry = found.setdefault(m.group("id"), {})
        if key in entry:
            raise InputError(
                f"{root}: subject {m.group('id')} has two {m.group('contrast')} files ({Path(entry[key]).name} and "
                f"{f.name})."
            )
        entry[key] = str(f.resolve())
    pairs = {sid: e for sid, e in found.items() if len(e) == 2}
    if not pairs:
        raise InputError(
            f"{root}: no subject has both IXI {target} and {reference} files (IXI<n>-<site>-<n>-<contrast>.nii.gz)."
        )
    skipped: dict[str, str] = {}
    if check_grids:
        for sid in sorted(pairs):
            a, b = nib.load(pairs[sid]["image"]), nib.load(pairs[sid]["reference"])
            same = a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-3)
            if not same:
                msg = (f"{sid}: {target} {a.shape[:3]} and {reference} {b.shape[:3]} are on different voxel grids; "
                       f"register/resample them first")
                if on_mismatch == "error":
                    raise InputError(msg + ".")
                skipped[sid] = msg
                del pairs[sid]
        if not pairs:
            raise InputError(f"{root}: every {target}/{reference} pair is on different voxel grids.")
    splits = split_ids(list(pairs), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    datalist: dict[str, Any] = {
        split: [{"image": pairs[s]["image"], "reference": pairs[s]["reference"], "subject": s} for s in ids]
        for split, ids in splits.items()
    }
    datalist["metadata"] = {
        "name": "IXI",
        "target": target,
        "reference": reference,
        "unpaired": sorted(sid for sid, e in found.items() if len(e) < 2),
        "skipped": skipped,
    }
    if output_file is not None:
        write_datalist(datalist, output_file)
    return datalist


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin CLI
    import argparse

    parser = argparse.ArgumentParser(prog="python -m monai_inr.data.ixi", description="IXI T2/PD datalist")
    parser.add_argument("folder")
    parser.add_argument("--output_file", required=True)
    parser.add_argument("--target", default="T2")
    parser.add_argument("--reference", default="PD")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        build_ixi_datalist(args.folder, args.target, args.reference, seed=args.seed, output_file=args.output_file)
    except InputError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":  # pragma: no cover
    main()
