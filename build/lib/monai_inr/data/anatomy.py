"""Real individual anatomy for the realistic subjects: the Colin27 brain (or any T1w) as CSF/GM/WM tissue fractions.

Source
    The Colin27 single-subject brain ("ch2", an average of 27 T1w scans of one man, Holmes et al., JCAT 1998;22:324)
    as installed by Debian's package ``mricron-data`` (BSD-3, MRIcron by Chris Rorden) in
    ``/usr/share/mricron/templates``: ``ch2better.nii.gz`` (0.5 mm, 301 x 370 x 316, skull-stripped, CSF = 0),
    ``ch2.nii.gz`` (1 mm head, 181 x 217 x 181) and ``ch2bet.nii.gz`` (its 1 mm brain extraction). Another folder
    holding these three files can be named with the environment variable ``MONAI_INR_COLIN27_DIR``.

Segmentation (:func:`segment_t1w`)
    Atropos (antspyx) with three classes CSF/GM/WM, initialised and regularised by priors: nilearn's MNI152 2009a
    CSF/GM/WM fractions (those of :func:`monai_inr.data.phantom.load_template`) registered affinely (Mattes MI,
    images at >= 2 mm) to the T1w; prior weight 0.25, MRF 0.1 (1x1x1), 5 iterations, inside the brain mask (the union
    of the masks given, holes filled). The posteriors are the tissue fractions (mixel model, they sum to 1 in the
    mask); a ``csf_shell_mm`` layer of extra-cerebral CSF is added around the mask, as for the template. The result
    is cached under ``~/.cache/monai_inr/segmentation/<key>/{fractions.nii.gz, segmentation.json}`` (``key`` from the
    SHA-256 of the inputs and the options; any cached entry recording the same input hashes and options is reused,
    so a 0.5 mm Colin27 segmentation - about 20 min and 7 GB - is computed once per machine).
    ``fractions.nii.gz`` is (X, Y, Z, 3) float32 in the order CSF, GM, WM on the segmentation grid.

Hemispheres (:func:`hemisphere_anatomy`)
    One hemisphere mirrored onto the other about the mid-sagittal plane (estimated by flip correlation of the brain
    fractions, on a voxel boundary), so training subjects (left) and test subjects (right) share no anatomy.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from monai_inr.coords import fov_affine, spacing_from_affine
from monai_inr.data.phantom import Anatomy, anatomy_from_fractions, load_template
from monai_inr.errors import InputError

__all__ = [
    "COLIN27_PACKAGE",
    "COLIN27_FILES",
    "SEGMENTATION_VERSION",
    "SEGMENTATION_DEFAULTS",
    "Segmentation",
    "colin27_dir",
    "colin27_files",
    "colin27_available",
    "segmentation_cache_dir",
    "segment_t1w",
    "colin27_segmentation",
    "colin27_cached_resolutions",
    "colin27_anatomy",
    "t1w_anatomy",
    "midline_plane",
    "hemisphere_anatomy",
    "labels_from_fractions",
]

COLIN27_PACKAGE = "mricron-data"
_DEFAULT_DIR = Path("/usr/share/mricron/templates")
#: The Colin27 files used: the 0.5 mm brain, the 1 mm head and the 1 mm brain extraction.
COLIN27_FILES = {"t1w": "ch2better.nii.gz", "head": "ch2.nii.gz", "bet": "ch2bet.nii.gz"}

SEGMENTATION_VERSION = "1"
#: Options of :func:`segment_t1w` (recorded in ``segmentation.json``; a cached entry is reused when they match).
SEGMENTATION_DEFAULTS = {
    "prior_weight": 0.25,
    "mrf": 0.1,
    "iterations": 5,
    "csf_shell_mm": 2.0,
    "registration": "Affine mattes >= 2 mm",
    "template_version": "1",
}
CLASSES = ("csf", "gm", "wm")


def colin27_dir() -> Path:
    """The folder holding the Colin27 files: ``$MONAI_INR_COLIN27_DIR`` or Debian's ``/usr/share/mricron/templates``.

    Raises:
        InputError: the files are missing (one sentence naming the Debian package).
    """
    env = os.environ.get("MONAI_INR_COLIN27_DIR")
    folder = Path(env).expanduser() if env else _DEFAULT_DIR
    missing = [n for n in COLIN27_FILES.values() if not (folder / n).is_file()]
    if missing:
        where = f"MONAI_INR_COLIN27_DIR={env}" if env else str(folder)
        raise InputError(f"The Colin27 brain is missing ({', '.join(missing)} not in {where}): install the Debian "
                         f"package {COLIN27_PACKAGE} (apt-get install {COLIN27_PACKAGE}) or set MONAI_INR_COLIN27_DIR "
                         "to a folder holding ch2better.nii.gz, ch2.nii.gz and ch2bet.nii.gz.")
    return folder


def colin27_files() -> dict[str, Path]:
    """``{"t1w": ch2better (0.5 mm brain), "head": ch2 (1 mm head), "bet": ch2bet (1 mm brain)}`` paths."""
    folder = colin27_dir()
    return {k: folder / n for k, n in COLIN27_FILES.items()}


def colin27_available() -> bool:
    """Whether the Colin27 files are installed (for skipping tests)."""
    try:
        colin27_dir()
    except InputError:
        return False
    return True


def segmentation_cache_dir() -> Path:
    """``$MONAI_INR_CACHE/segmentation`` or ``~/.cache/monai_inr/segmentation``."""
    root = os.environ.get("MONAI_INR_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "monai_inr"
    return base / "segmentation"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass
class Segmentation:
    """CSF/GM/WM fractions ``(3, X, Y, Z)`` on the grid ``affine`` and the record of how they were made."""

    fractions: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def volumes_ml(self) -> dict[str, float]:
        vox = float(np.prod(spacing_from_affine(self.affine))) / 1000.0
        return {c: float(self.fractions[i].sum(dtype=np.float64) * vox) for i, c in enumerate(CLASSES)}


def _read_cached(folder: Path, meta: dict) -> Segmentation:
    img = nib.load(str(folder / "fractions.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 4 or data.shape[-1] != 3:
        raise InputError(f"{folder / 'fractions.nii.gz'} is not an (X, Y, Z, 3) fraction map; delete the folder.")
    fractions = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    del data
    affine = np.asarray(img.affine, dtype=np.float64)
    grid = meta.get("grid_shape")
    if grid is not None and tuple(fractions.shape[1:]) != tuple(grid):
        # an earlier writer stored the map one voxel short at the far ends (where the brain image is 0): pad with 0
        pad = [(0, max(0, int(g) - n)) for g, n in zip(grid, fractions.shape[1:])]
        fractions = np.pad(fractions, [(0, 0), *pad])[(slice(None), *(slice(0, int(g)) for g in grid))]
    return Segmentation(fractions, affine, {**meta, "from_cache": True}, folder)


def _find_cached(inputs_sha: dict, options: dict, key: str) -> tuple[Path, dict] | None:
    root = segmentation_cache_dir()
    candidates = [root / key[:24]] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for folder in candidates:
        js = folder / "segmentation.json"
        if not (js.is_file() and (folder / "fractions.nii.gz").is_file()):
            continue
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("version") != SEGMENTATION_VERSION or meta.get("inputs_sha256") != inputs_sha:
            continue
        recorded = meta.get("options", {})
        if all(recorded.get(k) == v for k, v in options.items()):
            return folder, meta
    return None


# ----------------------------------------------------------------------------------------------------------------------
# ANTs helpers (RAS nibabel affines <-> LPS ITK geometry)
# ----------------------------------------------------------------------------------------------------------------------

_LPS = np.diag([-1.0, -1.0, 1.0])


def _to_ants(array: np.ndarray, affine: np.ndarray):
    import ants

    sp = spacing_from_affine(affine)
    direction = _LPS @ affine[:3, :3] / sp[None, :]
    origin = _LPS @ affine[:3, 3]
    return ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32), origin=tuple(float(v) for v in origin),
                           spacing=tuple(float(v) for v in sp), direction=direction)


def _resample_to(array: np.ndarray, affine: np.ndarray, out_shape: Sequence[int], out_affine: np.ndarray,
                 order: int = 1) -> np.ndarray:
    """Resample ``array`` (grid ``affine``) onto ``out_shape``/``out_affine`` (zero outside)."""
    m = np.linalg.inv(affine) @ out_affine
    return ndi.affine_transform(np.asarray(array, dtype=np.float32), m[:3, :3], m[:3, 3], output_shape=tuple(out_shape),
                                order=order, mode="constant", cval=0.0, prefilter=order > 1).astype(np.float32)


def _area_resample(array: np.ndarray, affine: np.ndarray, out_shape: Sequence[int], out_affine: np.ndarray
                   ) -> np.ndarray:
    """Box-average to the output voxel size first when it is coarser, then trilinear (no aliasing)."""
    ratio = spacing_from_affine(out_affine) / spacing_from_affine(affine)
    if np.any(ratio > 1.0 + 1e-6):
        array = ndi.uniform_filter(np.asarray(array, dtype=np.float32), size=[max(1, int(round(r))) for r in ratio],
                                   mode="constant")
    return _resample_to(array, affine, out_shape, out_affine, order=1)


def _template_priors(shape: Sequence[int], affine: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """MNI152 CSF/GM/WM fractions (with the template's CSF shell) and its T1 brain, on the template's crop grid."""
    tpl = load_template()
    t1 = tpl.fractions[0] * 0.28 + tpl.fractions[1] * 0.66 + tpl.fractions[2] * 0.88  # the template's own T1 fit
    return [tpl.fractions[i] for i in range(3)], t1


def _shell(mask: np.ndarray, spacing: np.ndarray, shell_mm: float) -> np.ndarray:
    """Partial-volume ramp ``clip(shell_mm + 0.5 voxel - distance)`` outside ``mask`` (0 inside), in [0, 1]."""
    if shell_mm <= 0:
        return np.zeros(mask.shape, np.float32)
    dist = ndi.distance_transform_edt(~mask, sampling=spacing)
    ramp = np.clip((shell_mm - dist) / float(spacing.mean()) + 0.5, 0.0, 1.0).astype(np.float32)
    ramp[mask] = 0.0
    return ramp


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def _rough_brain_mask(image: np.ndarray, spacing: np.ndarray, erode_mm: float = 5.0) -> np.ndarray:
    """Morphological brain estimate of a T1w head: Otsu foreground, eroded by ``erode_mm`` (cuts the brain from the
    scalp across the dark skull), largest component, dilated back, holes filled."""
    fg = image > _otsu(image[image > 0.02 * np.percentile(image, 99.5)])
    r = max(1, int(round(erode_mm / float(spacing.mean()))))
    core, n = ndi.label(ndi.binary_erosion(fg, iterations=r))
    if n == 0:
        return fg
    sizes = ndi.sum(np.ones_like(core), core, index=np.arange(1, n + 1))
    core = core == 1 + int(np.argmax(sizes))
    return ndi.binary_fill_holes(ndi.binary_dilation(core, iterations=r) & fg)


def segment_t1w(
    t1w: str | os.PathLike,
    masks: Sequence[str | os.PathLike] | None = None,
    resolution_mm: float | None = None,
    *,
    prior_weight: float = SEGMENTATION_DEFAULTS["prior_weight"],
    mrf: float = SEGMENTATION_DEFAULTS["mrf"],
    iterations: int = SEGMENTATION_DEFAULTS["iterations"],
    csf_shell_mm: float = SEGMENTATION_DEFAULTS["csf_shell_mm"],
    cache: bool = True,
    cache_only: bool | str = False,
    verbose: bool = False,
) -> Segmentation | Path | None:
    """CSF/GM/WM fractions of a T1w brain (see the module docstring), cached on disk.

    Args:
        t1w: a T1-weighted NIfTI (skull-stripped or not).
        masks: brain masks (NIfTI, any grid in the same world space; voxels > 0 count); their union, holes filled, is
            the brain. Default: the T1w's own non-zero voxels when it is skull-stripped (support below 2.2 l),
            otherwise a morphological estimate (Otsu, 5 mm erosion, largest component, dilation) intersected with
            the registered MNI152 brain dilated by 2 mm: adequate for a clean T1w head; pass a mask when you have
            one.
        resolution_mm: segmentation grid spacing (the T1w field of view kept, ``round(N * spacing / resolution)``
            voxels per axis); default the T1w's own grid.
        prior_weight, mrf, iterations: Atropos options.
        csf_shell_mm: extra-cerebral CSF added around the mask.
        cache: read/write ``segmentation_cache_dir()``.
        cache_only: never segment: return ``None`` when nothing is cached (and, with ``cache_only="probe"``, the
            cache folder's path instead of loading it).
    """
    t1w = Path(t1w).resolve()
    if not t1w.is_file():
        raise InputError(f"{t1w}: the T1w image to segment does not exist.")
    masks = [Path(m).resolve() for m in (masks or [])]
    for m in masks:
        if not m.is_file():
            raise InputError(f"{m}: the brain mask does not exist.")
    try:
        src = nib.load(str(t1w))
    except Exception as e:  # noqa: BLE001 - nibabel raises many kinds
        raise InputError(f"{t1w}: cannot read the T1w image ({e}).") from e
    src_shape = tuple(int(n) for n in src.shape[:3])
    src_affine = np.asarray(src.affine, dtype=np.float64)
    if resolution_mm is None:
        res = float(np.round(spacing_from_affine(src_affine).mean(), 4))
    else:
        res = float(resolution_mm)
        if not (math.isfinite(res) and 0.2 <= res <= 8.0):
            raise InputError(f"resolution_mm must be between 0.2 and 8 mm, got {resolution_mm!r}.")
    options = {"resolution_mm": res, "prior_weight": float(prior_weight), "mrf": float(mrf),
               "iterations": int(iterations), "csf_shell_mm": float(csf_shell_mm),
               "registration": SEGMENTATION_DEFAULTS["registration"],
               "template_version": SEGMENTATION_DEFAULTS["template_version"]}
    inputs_sha = {"t1w": _sha256(t1w), "masks": [_sha256(m) for m in masks]}
    key = hashlib.sha256(json.dumps({"version": SEGMENTATION_VERSION, "inputs_sha256": inputs_sha,
                                     "options": options}, sort_keys=True).encode()).hexdigest()
    if cache or cache_only:
        hit = _find_cached(inputs_sha, options, key)
        if hit is not None:
            return hit[0] if cache_only == "probe" else _read_cached(*hit)
    if cache_only:
        return None

    t0 = time.perf_counter()
    import ants

    # --- grid: the T1w field of view at resolution_mm ---
    src_sp = spacing_from_affine(src_affine)
    shape = tuple(max(1, int(math.floor(n * s / res + 0.5))) for n, s in zip(src_shape, src_sp))
    affine = fov_affine(src_affine, src_shape, shape)
    sp = spacing_from_affine(affine)
    data = np.asarray(src.dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    if not np.isfinite(data).all():
        raise InputError(f"{t1w}: the T1w image holds NaN or Inf voxels.")
    image = data if shape == src_shape else _area_resample(data, src_affine, shape, affine)
    del data

    # --- brain mask (given, the skull-stripped image's support, or a morphological estimate refined after the
    # registration) ---
    rough = None
    if masks:
        brain = np.zeros(shape, dtype=bool)
        for m in masks:
            mimg = nib.load(str(m))
            marr = np.asarray(mimg.dataobj, dtype=np.float32)
            while marr.ndim > 3:
                marr = marr[..., 0]
            brain |= _resample_to((marr > 0).astype(np.float32), np.asarray(mimg.affine, float), shape, affine,
                                  order=1) >= 0.5
    elif (image > 0).sum() * float(np.prod(sp)) / 1000.0 < 2200.0:  # skull-stripped: its support is a brain
        brain = image > 0
    else:
        brain = rough = _rough_brain_mask(image, sp)
    brain = ndi.binary_fill_holes(brain)
    if brain.sum() < 1000:
        raise InputError(f"{t1w}: the brain mask holds only {int(brain.sum())} voxels.")

    # --- priors registered to the (masked) T1w (affine, Mattes MI, >= 2 mm images) ---
    tpl = load_template()
    priors, tpl_t1 = _template_priors(shape, affine)
    reg_res = max(2.0, res)
    fixed = ants.resample_image(_to_ants(image * brain, affine), (reg_res,) * 3, use_voxels=False, interp_type=0)
    moving = ants.resample_image(_to_ants(tpl_t1, tpl.fractions_affine), (reg_res,) * 3, use_voxels=False,
                                 interp_type=0)
    reg = ants.registration(fixed=fixed, moving=moving, type_of_transform="Affine", aff_metric="mattes",
                            verbose=verbose)
    full = _to_ants(image, affine)
    warped = [ants.apply_transforms(fixed=full, moving=_to_ants(p, tpl.fractions_affine),
                                    transformlist=reg["fwdtransforms"], interpolator="linear").numpy()
              for p in priors]
    tx = ants.read_transform(reg["fwdtransforms"][0])
    m_lps = np.asarray(tx.parameters[:9], dtype=np.float64).reshape(3, 3)
    t_lps = np.asarray(tx.parameters[9:12], dtype=np.float64)
    c_lps = np.asarray(tx.fixed_parameters, dtype=np.float64)
    to_template = np.eye(4)  # T1w world (RAS mm) -> template world
    to_template[:3, :3] = _LPS @ m_lps @ _LPS
    to_template[:3, 3] = _LPS @ (t_lps + c_lps - m_lps @ c_lps)
    if rough is not None:  # the registered template brain (with its CSF shell), dilated 2 mm, within the estimate
        r = max(1, int(math.ceil(2.0 / sp.min())))
        brain = ndi.binary_fill_holes(ndi.binary_dilation(sum(warped) >= 0.5, iterations=r) & rough)

    # --- Atropos ---
    seg = ants.atropos(a=_to_ants(image, affine), x=_to_ants(brain.astype(np.float32), affine),
                       i=[_to_ants(np.clip(w, 0, None), affine) for w in warped], m=f"[{mrf},1x1x1]",
                       c=f"[{int(iterations)},0]", priorweight=float(prior_weight), v=int(verbose))
    probs = np.stack([p.numpy() for p in seg["probabilityimages"]]).astype(np.float32)
    del seg, warped
    total = probs.sum(axis=0)
    probs = np.where(brain[None] & (total[None] > 0), probs / np.maximum(total, 1e-6)[None], 0.0).astype(np.float32)
    probs[0] += _shell(brain, sp, csf_shell_mm)
    means = {c: float(image[brain][probs[i][brain] >= 0.5].mean()) if (probs[i][brain] >= 0.5).any() else 0.0
             for i, c in enumerate(CLASSES)}

    meta = {
        "version": SEGMENTATION_VERSION,
        "source": str(t1w),
        "masks": [str(m) for m in masks],
        "inputs_sha256": inputs_sha,
        "options": options,
        "key": key,
        "grid_shape": list(shape),
        "class_means": means,
        "volumes_ml": {},
        "build_seconds": round(time.perf_counter() - t0, 2),
        "from_cache": False,
        "to_template": to_template.tolist(),
    }
    result = Segmentation(probs, affine, meta)
    meta["volumes_ml"] = result.volumes_ml
    if cache:
        result.path = _write_cache(result, key)
    return result


def _write_cache(seg: Segmentation, key: str) -> Path:
    root = segmentation_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key[:24]
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:24]}.", suffix=".partial", dir=root))
    try:
        img = nib.Nifti1Image(np.moveaxis(seg.fractions, 0, -1).astype(np.float32), seg.affine)
        img.set_qform(seg.affine, code=1)
        img.set_sform(seg.affine, code=1)
        nib.save(img, str(tmp / "fractions.nii.gz"))
        (tmp / "segmentation.json").write_text(json.dumps(seg.meta, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def colin27_segmentation(resolution_mm: float = 0.5, **kwargs) -> Segmentation:
    """The Colin27 segmentation (``ch2better`` at ``resolution_mm``, masks ``ch2bet`` and ``ch2better``), cached."""
    files = colin27_files()
    return segment_t1w(files["t1w"], masks=[files["bet"], files["t1w"]], resolution_mm=resolution_mm, **kwargs)


def colin27_cached_resolutions() -> list[float]:
    """Resolutions (mm) at which a Colin27 segmentation with the default options is already cached."""
    if not colin27_available():
        return []
    return [r for r in (0.5, 1.0, 2.0) if colin27_segmentation(r, cache_only="probe") is not None]


def labels_from_fractions(fractions: np.ndarray) -> np.ndarray:
    """0 background, 1 CSF, 2 GM, 3 WM: the largest fraction where they fill at least half the voxel."""
    labels = (np.argmax(fractions, axis=0) + 1).astype(np.uint8)
    labels[fractions.sum(axis=0) < 0.5] = 0
    return labels


@functools.lru_cache(maxsize=2)
def colin27_anatomy(resolution_mm: float = 0.5) -> Anatomy:
    """The Colin27 brain as an :class:`~monai_inr.data.phantom.Anatomy` (field of view of ``ch2better``)."""
    seg = colin27_segmentation(resolution_mm)
    return _anatomy(seg, colin27_files()["t1w"], "colin27",
                    "Colin27 single subject (ch2better, Debian mricron-data), Atropos tissue "
                    f"fractions at {float(resolution_mm):g} mm")


def t1w_anatomy(t1w: str | os.PathLike, masks: Sequence[str | os.PathLike] | None = None,
                resolution_mm: float | None = None, **kwargs) -> Anatomy:
    """An :class:`~monai_inr.data.phantom.Anatomy` from a user's T1w (segmented with :func:`segment_t1w`)."""
    seg = segment_t1w(t1w, masks=masks, resolution_mm=resolution_mm, **kwargs)
    return _anatomy(seg, t1w, "t1w", f"user T1w {Path(t1w).name}, Atropos tissue fractions")


def _anatomy(seg: Segmentation, source: str | os.PathLike, name: str, description: str) -> Anatomy:
    """The anatomy of a segmentation; its output field of view is the source T1w's (whatever the segmentation grid)."""
    header = nib.load(str(source))
    meta = {"source": seg.meta.get("source"), "segmentation_key": seg.meta.get("key"),
            "segmentation_options": seg.meta.get("options"), "inputs_sha256": seg.meta.get("inputs_sha256")}
    return anatomy_from_fractions(seg.fractions, seg.affine, affine=np.asarray(header.affine, dtype=np.float64),
                                  shape=tuple(int(n) for n in header.shape[:3]), name=name, description=description,
                                  meta=meta)


# ----------------------------------------------------------------------------------------------------------------------
# Hemispheres
# ----------------------------------------------------------------------------------------------------------------------


def _lr_axis(affine: np.ndarray) -> tuple[int, float]:
    """The array axis closest to world x (left-right) and the sign of x along it."""
    direction = affine[:3, :3] / spacing_from_affine(affine)[None, :]
    axis = int(np.argmax(np.abs(direction[0])))
    return axis, float(np.sign(direction[0, axis]))


def midline_plane(anatomy: Anatomy) -> int:
    """Index ``m`` (on the left-right axis of ``anatomy.fractions``) of the mid-sagittal plane, which lies on the
    voxel boundary between ``m - 1`` and ``m``: the flip ``i -> 2m - 1 - i`` best matching the brain fractions
    (searched within 10 mm of world x = 0)."""
    axis, _ = _lr_axis(anatomy.fractions_affine)
    brain = np.moveaxis(anatomy.fractions[1] + anatomy.fractions[2], axis, 0)
    n = brain.shape[0]
    sp = float(spacing_from_affine(anatomy.fractions_affine)[axis])
    # index whose boundary is closest to x = 0
    x0 = np.linalg.solve(anatomy.fractions_affine[:3, :3], -anatomy.fractions_affine[:3, 3])[axis] + 0.5
    search = int(math.ceil(10.0 / sp))
    profile = brain.reshape(n, -1)[:, ::7].astype(np.float64)  # a subsample of columns is plenty
    best, best_m = -np.inf, int(round(x0))
    for m in range(int(round(x0)) - search, int(round(x0)) + search + 1):
        lo = max(0, 2 * m - n)
        hi = min(n, 2 * m)
        if hi - lo < n // 4:
            continue
        a = profile[lo:hi]
        b = profile[2 * m - 1 - np.arange(lo, hi)]
        score = float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum() + 1e-12))
        if score > best:
            best, best_m = score, m
    return best_m


def hemisphere_anatomy(anatomy: Anatomy, side: str, plane: int | None = None) -> Anatomy:
    """``anatomy`` with one hemisphere (``"left"`` = world x < midline, or ``"right"``) mirrored onto the other.

    The mirror plane lies on a voxel boundary (:func:`midline_plane`), so the left and right versions are built from
    disjoint voxels of the source. Lesion centres are recomputed (on both sides of the mirrored brain).
    """
    if side not in ("left", "right"):
        raise InputError(f"side must be 'left' or 'right', got {side!r}.")
    axis, sign = _lr_axis(anatomy.fractions_affine)
    m = midline_plane(anatomy) if plane is None else int(plane)
    f = np.moveaxis(anatomy.fractions, axis + 1, 1)
    n = f.shape[1]
    # pad so that the mirrored half fits whatever side of the array centre the plane is on
    pad = abs(2 * m - n) + 1
    f = np.pad(f, [(0, 0), (pad, pad), (0, 0), (0, 0)])
    frac_affine = anatomy.fractions_affine.copy()
    frac_affine[:3, 3] -= frac_affine[:3, axis] * pad
    m, n = m + pad, n + 2 * pad
    # world x grows with the index when sign > 0: left (x < plane) = indices < m
    keep_low = (side == "left") == (sign > 0)
    idx = np.arange(n)
    src = np.where(idx < m, idx, 2 * m - 1 - idx) if keep_low else np.where(idx >= m, idx, 2 * m - 1 - idx)
    valid = (src >= 0) & (src < n)
    out = np.zeros_like(f)
    out[:, valid] = f[:, src[valid]]
    out = np.ascontiguousarray(np.moveaxis(out, 1, axis + 1))
    meta = {**anatomy.meta, "hemisphere": side, "mirror_axis": axis,
            "mirror_plane_x_mm": float(frac_affine[0, axis] * (m - 0.5) + frac_affine[0, 3])}
    return anatomy_from_fractions(out, frac_affine, affine=anatomy.affine, shape=anatomy.shape,
                                  name=f"{anatomy.name}-{side}", meta=meta, margin_mm=0.0,
                                  description=f"{anatomy.description}; {side} hemisphere mirrored onto the other")
