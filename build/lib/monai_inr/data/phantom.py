"""The synthetic multi-contrast brain: the project's embedded default data, deterministic per seed.

Anatomy
    The ICBM 2009a symmetric MNI152 template that ships inside ``nilearn`` (T1 image and GM/WM probability maps,
    197 x 233 x 189 at 1 mm, RAS). Tissue fractions: GM and WM are the probability maps; CSF is the (hole-filled)
    template brain mask (T1 > 0.2, the threshold of ``nilearn.datasets.load_mni152_brain_mask``) minus GM minus WM,
    which holds the ventricles and the sulci (on the template a least-squares fit T1 = 0.66 GM + 0.88 WM + 0.28 CSF
    leaves a 0.023 RMS residual, so this CSF is consistent with the template's own contrast); because the template is
    skull-stripped at the cortex, a :data:`CSF_SHELL_MM` thick layer of extra-cerebral CSF is added around the mask.

Per subject (all drawn from ``numpy.random.SeedSequence(seed)``, one independent stream per component, so the same
seed gives the same healthy anatomy with or without a lesion and at every ``spacing``):
    * a random rigid pose (rotations up to ``max_rotation_deg`` about each axis, translations up to
      ``max_translation_mm``, a +-4 % global size change), and a smooth random displacement field (a 3D cosine basis
      over the field of view, RMS ``deformation_mm``); both are composed into ONE coordinate map from the output grid
      to the template, and the tissue fractions are interpolated once along it;
    * optionally a glioma-like lesion (``lesion=True``): a solid tumour (optionally with a necrotic core) with an
      irregular outline and a mild mass effect, surrounded by vasogenic oedema that replaces white matter only;
    * per-tissue jitter of every relaxation time, proton density and sodium parameter (log-normal, a few per cent);
    * a smooth multiplicative receive-bias field (shared by the structural contrasts, with a weaker per-contrast part).

Contrasts (signal equations evaluated per tissue compartment and mixed by the voxel's tissue fractions, which is
the correct partial-volume model for magnitude signals of spins in one voxel):
    * ``t1w``: 3D MPRAGE (ADNI-like 3T protocol: TR 2300 ms, TI 900 ms, flip 9 deg, TE 2.98 ms, Jack et al., JMRI
      2008;27:685; echo spacing 7.1 ms, 176 readouts per inversion and linear ordering assumed), steady-state
      longitudinal magnetisation computed exactly over the inversion / readout-train / recovery cycle
      (:func:`mprage_signal`);
    * ``t2w``: turbo spin echo, TR 6000 ms, TE 100 ms: ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (:func:`spin_echo_signal`);
    * ``pd``: proton-density-weighted turbo spin echo, TR 6000 ms, TE 10 ms (same equation);
    * ``flair``: T2-FLAIR, inversion recovery spin echo, TR 9000 ms, TE 100 ms, TI chosen to null the nominal CSF
      (``TI = T1_csf ln(2 / (1 + exp(-TR/T1_csf)))`` = 2481 ms), magnitude reconstruction:
      ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)`` (:func:`inversion_recovery_signal`);
    * ``sodium``: total sodium concentration (mM), ``sum_k f_k [Na]_k``;
    * ``t2star_short``, ``t2star_long`` (ms) and ``sodium_fast_fraction``: the bi-exponential sodium T2* decay per
      voxel; mixtures are summarised by sodium-weighted fractions and sodium-weighted relaxation *rates*, so that
      ``sodium (f e^(-t/T2s) + (1-f) e^(-t/T2l))`` matches the exact mixture to first order in t (:func:`sodium_signal`
      evaluates it). Maps are 0 where the component is absent (background; the fast component of pure CSF).

Structural images are signal-equation values (fractions of the equilibrium magnetisation of pure water) times a
fixed per-contrast receiver gain that puts the brightest healthy tissue at 1 (nominal values; lesions may exceed it),
times the bias field; sodium in mM, T2* in ms. Relaxation and sodium values at 3T are in :data:`TISSUES` with their
sources.

Labels: 0 background, 1 CSF, 2 GM, 3 WM, 4 oedema, 5 tumour (solid and necrotic), the largest tissue fraction where
the tissues together fill at least half the voxel; the mask is ``labels > 0``.

Grid: ``spacing`` (mm) 1.0 gives the template grid; coarser spacings give ``round(N / spacing)`` voxels per axis over
the SAME field of view (affine from :func:`monai_inr.coords.fov_affine`, so the actual spacing is
``N / round(N / spacing)``, e.g. 197/99 = 1.99 mm). The fractions are area-averaged: the 1 mm template fractions are
box-filtered to the output voxel size (exact overlap weights) before the single trilinear interpolation.

Command line: ``python -m monai_inr.data.phantom --out_dir data/synthetic --num_train 8 --spacing 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage as ndi

from monai_inr.coords import fov_affine, sample_features, spacing_from_affine
from monai_inr.data.datalist import current_datalist
from monai_inr.errors import InputError
from monai_inr.io import save_nifti, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "PHANTOM_VERSION",
    "subject_seed",
    "lesion_flags",
    "IMAGE_KEYS",
    "STRUCTURAL_KEYS",
    "SODIUM_KEYS",
    "LABELS",
    "FILE_SUFFIXES",
    "TISSUES",
    "SEQUENCES",
    "Subject",
    "TissueProperties",
    "Anatomy",
    "anatomy_from_fractions",
    "load_template",
    "make_subject",
    "write_subject",
    "build_dataset",
    "spin_echo_signal",
    "inversion_recovery_signal",
    "mprage_signal",
    "flair_null_ti",
    "sodium_signal",
    "grid_shape",
    "main",
]

#: Bumped whenever the generator's output changes; recorded in datalists so stale datasets are rebuilt.
PHANTOM_VERSION = "1"

STRUCTURAL_KEYS = ("t1w", "t2w", "pd", "flair")
SODIUM_KEYS = ("sodium", "t2star_short", "t2star_long", "sodium_fast_fraction")
IMAGE_KEYS = STRUCTURAL_KEYS + SODIUM_KEYS

#: Integer labels of :attr:`Subject.labels`.
LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "oedema": 4, "tumour": 5}

#: File name suffixes (BIDS-like: ``sub-0003_T1w.nii.gz``); sodium has no BIDS entity, so ``acq-23Na`` marks it.
FILE_SUFFIXES = {
    "t1w": "T1w",
    "t2w": "T2w",
    "pd": "PDw",
    "flair": "FLAIR",
    "sodium": "acq-23Na_TSC",
    "t2star_short": "acq-23Na_desc-short_T2starmap",
    "t2star_long": "acq-23Na_desc-long_T2starmap",
    "sodium_fast_fraction": "acq-23Na_desc-fast_fraction",
    "label": "dseg",
    "mask": "desc-brain_mask",
}

#: Extra-cerebral CSF added around the skull-stripped template (mm).
CSF_SHELL_MM = 2.0

_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclasses.dataclass(frozen=True)
class TissueProperties:
    """MR properties of one tissue compartment at 3T (times in ms, concentrations in mM)."""

    t1: float
    t2: float
    t2star: float  # proton T2*, only used by the gradient-echo readout of the MPRAGE
    pd: float  # water content relative to pure water
    sodium: float  # total sodium concentration
    sodium_fast_fraction: float  # fraction of the sodium signal with the short T2*
    sodium_t2star_short: float
    sodium_t2star_long: float


#: Tissue compartments and their nominal 3T properties.
#:
#: * GM/WM T1 and T2: Wansapura et al., "NMR relaxation times in the human brain at 3.0 tesla", JMRI 1999;9:531
#:   (T1 1331 / 832 ms, T2 110 / 79.2 ms).
#: * CSF T1 4300 ms: Lu et al., JMRI 2005;22:13 measured 3817 +- 424 ms and note this is likely an underestimate
#:   (~4.3 s). CSF T2 2000 ms is an assumption (free-water-like; in-vivo estimates range from ~0.5 s, Piechnik et
#:   al., MRM 2009;61:579, to ~2 s depending on the method); T2w and FLAIR contrast hardly depend on it.
#: * Proton density (water content): GM 0.78, WM 0.65 relative to pure water (Ernst, Kreis & Ross, J Magn Reson B
#:   1993;102:1, as used by Gasparovic et al., MRM 2006;55:1219); CSF 1.0.
#: * Proton T2* (only enters the MPRAGE through TE = 2.98 ms, a ~6 % effect): ~45-50 ms in brain tissue at 3T
#:   (assumed GM 50, WM 45 ms); CSF 1000 ms assumed.
#: * Sodium: total concentration CSF 140 mM (extracellular sodium 136-142 mM), GM 45 and WM 35 mM (3T/7T
#:   quantitative sodium MRI reports GM ~40-60 and WM ~30-45 mM, e.g. Madelin et al.); bi-exponential T2* at 3T
#:   GM 3.9 / 26.3 ms, WM 3.4 / 23.5 ms with a 0.6 fast fraction (Riemer et al., 2018; Qian 2014), CSF mono-
#:   exponential 55 ms (7T compilation, Ridley et al. 2018: 54-64 ms). See ``bundles/arrfr/docs/README.md``.
#: * Lesions (assumptions, chosen to reproduce the clinical appearance; ranges as in MR-fingerprinting studies of
#:   gliomas, e.g. Badve et al., AJNR 2017;38:492): solid tumour T1 1700 / T2 130 ms (T1w-hypo-, T2w-hyperintense),
#:   necrosis fluid-like T1 2800 / T2 400 ms, vasogenic oedema T1 1450 / T2 150 ms (bright on T2w and FLAIR).
#:   Sodium: Ouwerkerk et al. (Radiology 2003;227:529) found tumour 103 and oedema 98 mmol/kg against 68 in
#:   contralateral tissue, i.e. ~1.5x normal tissue; applied to the WM baseline above this gives tumour 65 mM and
#:   oedema 55 mM (within the 50-70 mM asked for); necrosis 110 mM (cyst-like fluid). Their T2* values follow the
#:   simulator table of the sodium notes (tumour 0.5 / 4 / 30, necrosis 0.1 / 5 / 50, oedema 0.4 / 4 / 35).
TISSUES: dict[str, TissueProperties] = {
    "csf": TissueProperties(4300.0, 2000.0, 1000.0, 1.00, 140.0, 0.0, 3.5, 55.0),
    "gm": TissueProperties(1331.0, 110.0, 50.0, 0.78, 45.0, 0.6, 3.9, 26.3),
    "wm": TissueProperties(832.0, 79.2, 45.0, 0.65, 35.0, 0.6, 3.4, 23.5),
    "oedema": TissueProperties(1450.0, 150.0, 70.0, 0.80, 55.0, 0.4, 4.0, 35.0),
    "tumour": TissueProperties(1700.0, 130.0, 60.0, 0.85, 65.0, 0.5, 4.0, 30.0),
    "necrosis": TissueProperties(2800.0, 400.0, 150.0, 0.92, 110.0, 0.1, 5.0, 50.0),
}
_COMPARTMENTS = tuple(TISSUES)  # fraction order everywhere: csf, gm, wm, oedema, tumour, necrosis

#: Acquisition parameters (ms, degrees).
SEQUENCES: dict[str, dict[str, Any]] = {
    "t1w": {"sequence": "MPRAGE", "TR": 2300.0, "TI": 900.0, "flip_deg": 9.0, "echo_spacing": 7.1,
            "readouts": 176, "TE": 2.98},
    "t2w": {"sequence": "TSE", "TR": 6000.0, "TE": 100.0},
    "pd": {"sequence": "TSE", "TR": 6000.0, "TE": 10.0},
    "flair": {"sequence": "IR-TSE (FLAIR)", "TR": 9000.0, "TE": 100.0, "TI": "CSF null"},
}

# Per-subject log-normal jitter (sigma of log) of each property; the fast fraction gets an additive N(0, 0.03).
_JITTER = {"t1": 0.05, "t2": 0.05, "t2star": 0.07, "pd": 0.02, "sodium": 0.06,
           "sodium_t2star_short": 0.06, "sodium_t2star_long": 0.06}


# ----------------------------------------------------------------------------------------------------------------------
# Signal equations (vectorised over numpy arrays or floats)
# ----------------------------------------------------------------------------------------------------------------------


def spin_echo_signal(pd, t1, t2, tr: float, te: float):
    """Spin echo with full recovery between echoes neglected: ``PD (1 - exp(-TR/T1)) exp(-TE/T2)``."""
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def inversion_recovery_signal(pd, t1, t2, tr: float, ti: float, te: float):
    """Magnitude inversion-recovery spin echo (FLAIR): ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``."""
    return pd * np.abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)


def flair_null_ti(t1: float, tr: float) -> float:
    """Inversion time that nulls a tissue of longitudinal relaxation ``t1`` in :func:`inversion_recovery_signal`."""
    return float(t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1))))


def mprage_signal(pd, t1, t2star, tr: float = 2300.0, ti: float = 900.0, flip_deg: float = 9.0,
                  echo_spacing: float = 7.1, readouts: int = 176, te: float = 2.98, inversion_efficiency: float = 1.0):
    """Steady-state MPRAGE magnitude at the centre of k-space (linear ordering, centre readout at ``ti``).

    One cycle: inversion, free recovery to the first readout at ``ti - (readouts // 2) * echo_spacing``, ``readouts``
    pulses of ``flip_deg`` spaced by ``echo_spacing`` (perfect spoiling), free recovery to ``tr``. The cycle maps the
    longitudinal magnetisation affinely, ``M -> a M + b``; the steady state ``b / (1 - a)`` is exact. Signal
    ``PD sin(flip) |Mz(centre)| exp(-TE/T2*)``.
    """
    t1 = np.asarray(t1, dtype=np.float64)
    t_first = ti - (readouts // 2) * echo_spacing
    t_rest = tr - t_first - readouts * echo_spacing
    if t_first <= 0 or t_rest < 0:
        raise ValueError(f"MPRAGE timing does not fit: TI {ti} ms, TR {tr} ms, {readouts} x {echo_spacing} ms "
                         "readouts.")
    cos_a, sin_a = math.cos(math.radians(flip_deg)), math.sin(math.radians(flip_deg))
    e_esp = np.exp(-echo_spacing / t1)

    def cycle(m0):
        m = -inversion_efficiency * m0
        m = 1.0 - (1.0 - m) * np.exp(-t_first / t1)
        centre = None
        for k in range(readouts):
            if k == readouts // 2:
                centre = m
            m = 1.0 - (1.0 - m * cos_a) * e_esp
        m = 1.0 - (1.0 - m) * np.exp(-t_rest / t1)
        return m, centre

    b, _ = cycle(np.zeros_like(t1))
    a = cycle(np.ones_like(t1))[0] - b
    _, centre = cycle(b / (1.0 - a))
    return pd * sin_a * np.abs(centre) * np.exp(-te / np.asarray(t2star, dtype=np.float64))


def sodium_signal(images: dict[str, np.ndarray], t_ms: float) -> np.ndarray:
    """Sodium signal at time ``t_ms`` after excitation from a subject's sodium maps (0 outside the head, no NaN).

    ``sodium * (f exp(-t / T2*short) + (1 - f) exp(-t / T2*long))``; components whose T2* map is 0 are absent.
    """
    na = images["sodium"].astype(np.float64)
    f = images["sodium_fast_fraction"].astype(np.float64)

    def decay(t2):
        t2 = t2.astype(np.float64)
        rate = np.divide(-float(t_ms), t2, out=np.zeros_like(t2), where=t2 > 0)
        return np.where(t2 > 0, np.exp(rate), 0.0)

    return (na * (f * decay(images["t2star_short"]) + (1.0 - f) * decay(images["t2star_long"]))).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Template
# ----------------------------------------------------------------------------------------------------------------------


#: Grid of the nilearn MNI152 2009a template (1 mm, RAS); every output grid covers its field of view.
TEMPLATE_SHAPE = (197, 233, 189)


@dataclasses.dataclass(frozen=True, eq=False)
class Anatomy:
    """The anatomy subjects are built from: CSF/GM/WM fractions on a grid, plus the field of view of the outputs.

    The default is the MNI152 2009a template (:func:`load_template`); :mod:`monai_inr.data.anatomy` builds one from
    a real individual brain (Colin27, or any T1w) and its hemisphere-mirrored halves.
    """

    affine: np.ndarray  # the full source grid (defines the output field of view)
    shape: tuple[int, int, int]
    fractions: np.ndarray  # (3, X, Y, Z) float32: csf, gm, wm, cropped to the head (zero outside)
    fractions_affine: np.ndarray  # voxel -> world of the cropped arrays
    lesion_centres: np.ndarray  # (M, 3) world mm: deep supratentorial white matter
    name: str = "mni152"
    description: str = "ICBM152 2009a nonlinear symmetric (nilearn bundled, 1 mm)"
    meta: dict = dataclasses.field(default_factory=dict)
    _prefilter_cache: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size (mm) of the source grid (:attr:`affine`)."""
        return spacing_from_affine(self.affine)

    def grid_shape(self, spacing: float | Sequence[float]) -> tuple[int, int, int]:
        """Output shape for ``spacing`` mm over this anatomy's field of view: ``round(N * native / spacing)``."""
        sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
        return tuple(max(1, int(math.floor(n * a / s + 0.5 + 1e-6))) for n, a, s in zip(self.shape, self.spacing, sp))

    def prefiltered(self, spacing_vox: tuple[float, float, float]) -> torch.Tensor:
        """Fractions box-averaged to the output voxel size (in fraction voxels), as a (1, 3, X, Y, Z) tensor."""
        key = tuple(round(float(v), 6) for v in spacing_vox)
        hit = self._prefilter_cache.get(key)
        if hit is None:
            f = self.fractions
            for axis, width in enumerate(key):
                w = _box_weights(width)
                if w.size > 1:
                    f = ndi.correlate1d(f, w, axis=axis + 1, mode="constant", cval=0.0)
            hit = torch.from_numpy(np.ascontiguousarray(f))[None]
            self._prefilter_cache.clear()  # one entry: the arrays can be large (0.5 mm anatomies)
            self._prefilter_cache[key] = hit
        return hit


_Template = Anatomy  # the former private name


def lesion_centres(wm: np.ndarray, brain: np.ndarray, affine: np.ndarray, step: int = 2) -> np.ndarray:
    """Candidate lesion centres (world mm): white matter >= 0.9, >= 15 mm inside ``brain``, MNI z >= -5 mm (above
    the tentorium for brains in MNI-like space), on a ``step``-voxel sub-grid."""
    sp = spacing_from_affine(affine)
    step = max(1, int(step))
    sub = (slice(None, None, step),) * 3
    depth = ndi.distance_transform_edt(brain[sub], sampling=step * sp)
    ijk = np.argwhere((wm[sub] >= 0.9) & (depth >= 15.0)) * step
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return xyz[xyz[:, 2] >= -5.0]


def anatomy_from_fractions(fractions: np.ndarray, fractions_affine: np.ndarray, *, affine: np.ndarray | None = None,
                           shape: Sequence[int] | None = None, name: str = "custom", description: str = "",
                           meta: dict | None = None, margin_mm: float = 3.0) -> Anatomy:
    """An :class:`Anatomy` from ``(3, X, Y, Z)`` CSF/GM/WM fractions (any extra-cerebral CSF included).

    The arrays are cropped to their non-zero box plus ``margin_mm``; ``affine``/``shape`` give the output field of
    view (default: the fractions' own grid). Lesion centres come from :func:`lesion_centres` with the brain
    ``GM + WM >= 0.5`` (holes filled).
    """
    fractions = np.asarray(fractions, dtype=np.float32)
    if fractions.ndim != 4 or fractions.shape[0] != 3:
        raise InputError(f"tissue fractions must be (3, X, Y, Z) CSF/GM/WM maps, got shape {fractions.shape}.")
    fractions_affine = np.asarray(fractions_affine, dtype=np.float64)
    full_shape = tuple(int(n) for n in fractions.shape[1:])
    affine = fractions_affine.copy() if affine is None else np.asarray(affine, dtype=np.float64)
    shape = full_shape if shape is None else tuple(int(n) for n in shape)
    occupied = fractions.sum(axis=0) > 1e-3
    if not occupied.any():
        raise InputError(f"the tissue fractions of anatomy {name!r} are empty.")
    sp = spacing_from_affine(fractions_affine)
    box = tuple(slice(max(0, int(i.min()) - int(math.ceil(margin_mm / s))),
                      min(n, int(i.max()) + int(math.ceil(margin_mm / s)) + 1))
                for i, n, s in zip(np.nonzero(occupied), full_shape, sp))
    del occupied
    cropped = np.ascontiguousarray(fractions[(slice(None), *box)])
    crop_affine = fractions_affine.copy()
    crop_affine[:3, 3] = fractions_affine[:3, 3] + fractions_affine[:3, :3] @ np.array([b.start for b in box], float)
    brain = ndi.binary_fill_holes((cropped[1] + cropped[2]) >= 0.5)
    step = max(1, int(round(2.0 / float(sp.min()))))
    centres = lesion_centres(cropped[2], brain, crop_affine, step=step)
    return Anatomy(affine, shape, cropped, crop_affine, centres, name=name, description=description,
                   meta=dict(meta or {}))


def _read_template() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """T1 (rescaled to [0, 1]), GM and WM probability maps and the affine of nilearn's bundled MNI152 2009a files."""
    try:
        folder = resources.files("nilearn") / "datasets" / "data"
        imgs = {k: nib.load(str(folder / name)) for k, name in _TEMPLATE_FILES.items()}
    except (ModuleNotFoundError, FileNotFoundError, OSError):  # layout changed: use nilearn's own (offline) loaders
        try:
            from nilearn import datasets
        except ImportError as e:  # pragma: no cover - nilearn is a hard dependency
            raise InputError("The synthetic brain needs nilearn (its bundled MNI152 template); install nilearn.") from e
        imgs = {"t1": datasets.load_mni152_template(resolution=None), "gm": datasets.load_mni152_gm_template(None),
                "wm": datasets.load_mni152_wm_template(None)}
    arrays = {}
    for k, img in imgs.items():
        a = np.asarray(img.dataobj, dtype=np.float32)
        arrays[k] = a / a.max()
    return arrays["t1"], arrays["gm"], arrays["wm"], np.asarray(imgs["t1"].affine, dtype=np.float64)


@functools.lru_cache(maxsize=1)
def load_template() -> _Template:
    """The 1 mm tissue fractions (CSF, GM, WM) of the MNI152 2009a template, built once per process."""
    t1, gm, wm, affine = _read_template()
    if t1.shape != TEMPLATE_SHAPE:
        raise RuntimeError(f"unexpected MNI152 template shape {t1.shape} (expected {TEMPLATE_SHAPE}).")
    brain = t1 > 0.2
    # crop to the brain plus the CSF shell and a margin; everything outside is background (fraction 0)
    margin = int(math.ceil(CSF_SHELL_MM)) + 3
    box = tuple(slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))
                for i, n in zip(np.nonzero(brain), t1.shape))
    brain = ndi.binary_fill_holes(brain[box])
    gm, wm = np.ascontiguousarray(gm[box]), np.ascontiguousarray(wm[box])
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.array([b.start for b in box], dtype=np.float64)
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0.0, 1.0)
    # extra-cerebral CSF shell, partial-volume ramp clip(CSF_SHELL_MM + 0.5 - distance) quantised to two levels with
    # ball dilations (1 within CSF_SHELL_MM - 0.5 voxels of the brain, 0.5 out to CSF_SHELL_MM + 0.5): 3x faster
    # than a Euclidean distance transform and the same to a fraction of a voxel
    r = np.arange(-int(CSF_SHELL_MM + 1), int(CSF_SHELL_MM + 1) + 1)
    r2 = r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2
    shell = 0.5 * ndi.binary_dilation(brain, r2 <= (CSF_SHELL_MM - 0.5) ** 2).astype(np.float32)
    shell += 0.5 * ndi.binary_dilation(brain, r2 <= (CSF_SHELL_MM + 0.5) ** 2)
    csf = np.where(brain, csf, np.minimum(shell, np.clip(1.0 - gm - wm, 0.0, 1.0)))
    fractions = np.stack([csf, gm, wm]).astype(np.float32)
    # lesion centres: white matter >= 0.9, >= 15 mm inside the brain, above the tentorium (MNI z >= -5 mm); on a 2 mm
    # sub-grid (plenty of candidates)
    centres = lesion_centres(wm, brain, crop_affine, step=2)
    return Anatomy(affine, TEMPLATE_SHAPE, fractions, crop_affine, centres)


def _box_weights(width: float) -> np.ndarray:
    """1D weights of the exact overlap of 1-voxel cells with a centred box of ``width`` voxels (sum 1, odd length)."""
    if width <= 1.0 + 1e-6:
        return np.ones(1, dtype=np.float32)
    half = width / 2.0
    r = int(math.ceil(half - 0.5))
    j = np.arange(-r, r + 1, dtype=np.float64)
    w = np.clip(np.minimum(j + 0.5, half) - np.maximum(j - 0.5, -half), 0.0, None)
    return (w / w.sum()).astype(np.float32)


def _prefiltered(spacing_vox: tuple[float, float, float]) -> torch.Tensor:
    """Template fractions box-averaged to the output voxel size (in template voxels), as a (1, 3, X, Y, Z) tensor."""
    return load_template().prefiltered(spacing_vox)


def grid_shape(spacing: float | Sequence[float], anatomy: Anatomy | None = None) -> tuple[int, int, int]:
    """Output shape for ``spacing`` mm: ``round(N / spacing)`` (halves up) over the 197 x 233 x 189 template FOV
    (or over ``anatomy``'s field of view, ``round(N * native spacing / spacing)``)."""
    if anatomy is not None:
        return anatomy.grid_shape(spacing)
    sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    return tuple(int(math.floor(n / s + 0.5)) for n, s in zip(TEMPLATE_SHAPE, sp))


# ----------------------------------------------------------------------------------------------------------------------
# Random smooth fields
# ----------------------------------------------------------------------------------------------------------------------


def _cosine_coefficients(rng: np.random.Generator, n_basis: int, n_fields: int, decay: float) -> np.ndarray:
    """Random coefficients of a 3D cosine basis with power decaying with frequency; the constant term is zero."""
    a = np.arange(n_basis)
    freq2 = a[:, None, None] ** 2 + a[None, :, None] ** 2 + a[None, None, :] ** 2
    coef = rng.standard_normal((n_fields, n_basis, n_basis, n_basis)) / (1.0 + freq2) ** (decay / 2.0)
    coef[:, 0, 0, 0] = 0.0
    # analytic RMS over the FOV (the basis is orthogonal: mean cos^2 = 1/2 per non-constant axis)
    weight = np.where(a == 0, 1.0, 0.5)
    w3 = weight[:, None, None] * weight[None, :, None] * weight[None, None, :]
    rms = np.sqrt((coef**2 * w3).sum(axis=(1, 2, 3), keepdims=True))
    return coef / np.maximum(rms, 1e-12)


def _cosine_field(coef: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Evaluate ``(F, K, K, K)`` coefficients at the cell centres of ``shape`` (normalised FOV position in (0, 1))."""
    k = coef.shape[-1]
    bases = [np.cos(np.pi * ((np.arange(n) + 0.5) / n)[:, None] * np.arange(k)[None, :]) for n in shape]
    out = np.einsum("fabc,kc->fabk", coef, bases[2])
    out = np.einsum("fabk,jb->fajk", out, bases[1]).astype(np.float32)  # small; the big product in float32
    return np.einsum("fajk,ia->fijk", out, bases[0].astype(np.float32), optimize=True)


def _cosine_jacobian_range(coef_mm: np.ndarray, fov_mm: np.ndarray, n: int = 24) -> tuple[float, float]:
    """min/max of det(I + grad u) of a displacement field (mm) given by cosine coefficients, on an n^3 grid."""
    k = coef_mm.shape[-1]
    a = np.arange(k)
    u = (np.arange(n) + 0.5) / n
    phi = np.cos(np.pi * u[:, None] * a[None, :])
    dphi = -np.pi * a[None, :] * np.sin(np.pi * u[:, None] * a[None, :])
    jac = np.empty((n, n, n, 3, 3))
    for comp in range(3):
        for d in range(3):
            b = [phi, phi, phi]
            b[d] = dphi / fov_mm[d]
            jac[..., comp, d] = np.einsum("abc,ia,jb,kc->ijk", coef_mm[comp], *b, optimize=True)
    det = np.linalg.det(jac + np.eye(3))
    return float(det.min()), float(det.max())


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# ----------------------------------------------------------------------------------------------------------------------
# Subject
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Subject:
    """One synthetic subject. Arrays are (D, H, W) = (i, j, k) on the grid of ``affine`` (RAS, mm)."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    seed: int
    meta: dict[str, Any]
    #: tissue fractions per compartment (csf, gm, wm, oedema, tumour, necrosis); only with ``keep_fractions=True``
    fractions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.labels.shape)

    @property
    def spacing(self) -> np.ndarray:
        return spacing_from_affine(self.affine)


def _jitter_tissues(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    out = {}
    for name, props in TISSUES.items():
        values = dataclasses.asdict(props)
        jittered = {}
        for field, value in values.items():
            if field == "sodium_fast_fraction":
                z = rng.standard_normal()
                jittered[field] = float(np.clip(value + 0.03 * z, 0.0, 1.0)) if value > 0 else 0.0
            else:
                z = float(np.clip(rng.standard_normal(), -2.5, 2.5))
                jittered[field] = float(value * math.exp(_JITTER[field] * z))
        out[name] = jittered
    return out


def _tissue_signals(tissues: dict[str, dict[str, float]], keys: Iterable[str], flair_ti: float
                    ) -> dict[str, np.ndarray]:
    """Per-compartment signal of each structural contrast (vector over :data:`_COMPARTMENTS`)."""
    p = {f: np.array([tissues[c][f] for c in _COMPARTMENTS]) for f in dataclasses.asdict(TISSUES["wm"])}
    out = {}
    for key in keys:
        seq = SEQUENCES[key]
        if key == "t1w":
            s = mprage_signal(p["pd"], p["t1"], p["t2star"], tr=seq["TR"], ti=seq["TI"], flip_deg=seq["flip_deg"],
                              echo_spacing=seq["echo_spacing"], readouts=seq["readouts"], te=seq["TE"])
        elif key == "flair":
            s = inversion_recovery_signal(p["pd"], p["t1"], p["t2"], tr=seq["TR"], ti=flair_ti, te=seq["TE"])
        else:
            s = spin_echo_signal(p["pd"], p["t1"], p["t2"], tr=seq["TR"], te=seq["TE"])
        out[key] = np.asarray(s, dtype=np.float64)
    return out


@functools.lru_cache(maxsize=4)
def _receiver_gains(flair_ti: float) -> dict[str, float]:
    """Fixed per-contrast scale: 1 / the largest nominal (un-jittered) signal of CSF, GM and WM.

    Signal equations give fractions of the equilibrium magnetisation (an MPRAGE is ~0.03 of it); scaling each contrast
    by a constant keeps intensities comparable between subjects while putting healthy tissue in about [0, 1].
    """
    nominal = {name: dataclasses.asdict(props) for name, props in TISSUES.items()}
    signals = _tissue_signals(nominal, STRUCTURAL_KEYS, flair_ti)
    return {k: float(1.0 / signals[k][:3].max()) for k in STRUCTURAL_KEYS}


def _weighted_sum(fractions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_k weights[k] * fractions[k]`` over compartments, float32, without a (K, ...) temporary."""
    out = np.zeros(fractions.shape[1:], dtype=np.float32)
    for f, w in zip(fractions, weights):
        if w != 0.0:
            out += np.float32(w) * f
    return out


def _check_args(seed: int, spacing: float, contrasts) -> tuple[int, float, tuple[str, ...]]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}.")
    try:
        spacing = float(spacing)
    except (TypeError, ValueError) as e:
        raise InputError(f"spacing must be a number of millimetres, got {spacing!r}.") from e
    if not (math.isfinite(spacing) and 0.5 <= spacing <= 16.0):
        raise InputError(f"spacing must be between 0.5 and 16 mm, got {spacing!r}.")
    if contrasts is None:
        keys = IMAGE_KEYS
    else:
        keys = (contrasts,) if isinstance(contrasts, str) else tuple(contrasts)
        unknown = [k for k in keys if k not in IMAGE_KEYS]
        if unknown or not keys:
            raise InputError(f"unknown contrast(s) {unknown or keys!r}: choose from {list(IMAGE_KEYS)}.")
    return int(seed), spacing, keys


def make_subject(
    seed: int,
    spacing: float = 1.0,
    lesion: bool = False,
    contrasts: str | Sequence[str] | None = None,
    *,
    necrosis: bool | None = None,
    max_rotation_deg: float = 6.0,
    max_translation_mm: float = 4.0,
    deformation_mm: float = 2.5,
    bias_strength: float = 0.1,
    keep_fractions: bool = False,
    anatomy: Anatomy | None = None,
) -> Subject:
    """One synthetic subject, identical for identical arguments.

    Args:
        seed: non-negative integer; everything random is drawn from ``numpy.random.SeedSequence(seed)``.
        spacing: output voxel size in mm (0.5-16): 1.0 is the template grid (197 x 233 x 189), 2.0 gives
            99 x 117 x 95, 4.0 gives 49 x 58 x 47, always over the template's field of view.
        lesion: add a glioma-like tumour with oedema (labels 4 and 5).
        contrasts: image keys to compute (default all of :data:`IMAGE_KEYS`).
        necrosis: with a lesion, whether the tumour has a necrotic core (default: random, 70 %).
        max_rotation_deg, max_translation_mm: uniform ranges of the random rigid pose (per axis).
        deformation_mm: RMS of the smooth random displacement field.
        bias_strength: RMS of the log receive-bias field of the structural contrasts (0 disables it).
        keep_fractions: also return the tissue fraction maps in :attr:`Subject.fractions`.
        anatomy: the :class:`Anatomy` to build from (default the MNI152 template, :func:`load_template`); e.g.
            :func:`monai_inr.data.anatomy.colin27_anatomy` (a real individual brain) or one of its hemisphere halves.
            The output grid covers the anatomy's field of view (``spacing`` as above, relative to its voxel size).
    """
    seed, spacing, keys = _check_args(seed, spacing, contrasts)
    tpl = load_template() if anatomy is None else anatomy
    if not isinstance(tpl, Anatomy):
        raise InputError(f"anatomy must be a monai_inr.data.phantom.Anatomy, got {type(anatomy).__name__}.")
    shape = tpl.grid_shape(spacing)
    affine = fov_affine(tpl.affine, tpl.shape, shape)
    out_spacing = spacing_from_affine(affine)
    rng_pose, rng_deform, rng_tissue, rng_bias, rng_lesion = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )

    # --- pose (template world -> subject world, about the FOV centre) and smooth deformation (subject frame) ---
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3]
    angles = rng_pose.uniform(-max_rotation_deg, max_rotation_deg, 3)
    translation = rng_pose.uniform(-max_translation_mm, max_translation_mm, 3)
    scale = math.exp(rng_pose.uniform(-0.04, 0.04)) * np.exp(rng_pose.uniform(-0.02, 0.02, 3))
    linear = _rotation(angles) @ np.diag(scale)
    pose = np.eye(4)
    pose[:3, :3] = linear
    pose[:3, 3] = centre + translation - linear @ centre
    inv_pose = np.linalg.inv(pose)

    fov_mm = np.asarray(shape) * out_spacing
    coef = _cosine_coefficients(rng_deform, n_basis=5, n_fields=3, decay=2.0) * deformation_mm
    disp = _cosine_field(coef, shape) if deformation_mm > 0 else np.zeros((3, *shape), np.float32)
    jac_min, jac_max = _cosine_jacobian_range(coef, fov_mm)

    # --- one coordinate map: output voxel -> (p + u(p)) -> inverse pose -> template voxel, component-major ---
    to_tpl = np.linalg.inv(tpl.fractions_affine) @ inv_pose  # subject world -> (cropped) template voxel
    g = to_tpl @ affine  # output voxel -> template voxel (without displacement)
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    vox = np.empty((3, *shape), dtype=np.float32)
    for c in range(3):
        vc = vox[c]
        vc[...] = np.float32(g[c, 3])
        vc += np.float32(g[c, 0]) * axes[0][:, None, None]
        vc += np.float32(g[c, 1]) * axes[1][None, :, None]
        vc += np.float32(g[c, 2]) * axes[2][None, None, :]
        for d in range(3):
            vc += np.float32(to_tpl[c, d]) * disp[d]
    max_disp = float(np.sqrt(max(float((d * d).max()) for d in disp) * 3.0))  # upper bound of |u|
    del disp

    # --- lesion: geometry in template space (before the mass effect), which also pushes the coordinates ---
    lesion_meta = lesion_fracs = None
    if lesion:
        lesion_meta, lesion_fracs = _lesion(rng_lesion, tpl, vox, g, float(out_spacing.mean()), max_disp, necrosis)

    # --- tissue fractions: one trilinear interpolation of the area-averaged template ---
    source = tpl.prefiltered(tuple(float(s) for s in out_spacing / spacing_from_affine(tpl.fractions_affine)))
    n_vox = int(np.prod(shape))
    # normalised template coordinates in (i, j, k) order; same as coords.voxel_to_normalized, computed per component
    norm = np.empty((n_vox, 3), dtype=np.float32)
    for c, n in enumerate(tpl.fractions.shape[1:]):
        norm[:, c] = vox[c].reshape(-1) * np.float32(2.0 / n) + np.float32(1.0 / n - 1.0)
    del vox
    with torch.inference_mode():
        sampled = sample_features(source, torch.from_numpy(norm)[None], mode="bilinear", padding_mode="zeros")[0]
    del norm
    fractions = np.zeros((len(_COMPARTMENTS), *shape), dtype=np.float32)
    fractions[:3] = sampled.numpy().T.reshape(3, *shape)
    del sampled
    np.clip(fractions[:3], 0.0, 1.0, out=fractions[:3])
    if lesion_fracs is not None:
        _apply_lesion(fractions, *lesion_fracs)

    # --- labels (largest of csf, gm, wm, oedema, tumour = solid + necrotic) and mask ---
    best = fractions[0].copy()
    labels = np.ones(shape, dtype=np.uint8)
    total = fractions[0].copy()
    for label, frac in ((2, fractions[1]), (3, fractions[2]), (4, fractions[3]), (5, fractions[4] + fractions[5])):
        better = frac > best
        labels[better] = label
        np.maximum(best, frac, out=best)
        total += frac
    labels[total < 0.5] = 0
    mask = (labels > 0).astype(np.uint8)
    del best, total

    # --- contrasts ---
    tissues = _jitter_tissues(rng_tissue)
    flair_ti = flair_null_ti(TISSUES["csf"].t1, SEQUENCES["flair"]["TR"])
    structural = [k for k in keys if k in STRUCTURAL_KEYS]
    signals = _tissue_signals(tissues, structural, flair_ti)
    gains = _receiver_gains(flair_ti)
    images: dict[str, np.ndarray] = {}
    bias_meta: dict[str, Any] = {"log_rms_shared": bias_strength, "log_rms_per_contrast": bias_strength * 0.3}
    if structural:
        shared = _cosine_coefficients(rng_bias, n_basis=4, n_fields=1, decay=2.0) * bias_strength
        own = np.zeros((len(STRUCTURAL_KEYS), 4, 4, 4))
        own[:, :3, :3, :3] = _cosine_coefficients(rng_bias, 3, len(STRUCTURAL_KEYS), 2.0) * bias_strength * 0.3
        for index, key in enumerate(STRUCTURAL_KEYS):
            if key not in structural:
                continue
            img = _weighted_sum(fractions, signals[key] * gains[key])
            if bias_strength > 0:
                img *= np.exp(_cosine_field(shared[0][None] + own[index][None], shape)[0])
            images[key] = img
    if any(k in SODIUM_KEYS for k in keys):
        images.update(_sodium_maps(fractions, tissues, keys))
    images = {k: images[k].astype(np.float32, copy=False) for k in keys}

    meta = {
        "generator": "monai_inr.data.phantom",
        "version": PHANTOM_VERSION,
        "template": tpl.description,
        "anatomy": {"name": tpl.name, **tpl.meta},
        "seed": seed,
        "requested_spacing": spacing,
        "spacing": [float(s) for s in out_spacing],
        "shape": list(shape),
        "pose": {"rotation_deg": [float(a) for a in angles], "translation_mm": [float(t) for t in translation],
                 "scale": [float(s) for s in scale], "centre_mm": [float(c) for c in centre]},
        "deformation": {"rms_mm": float(deformation_mm), "basis": "cosine 5^3 over the FOV",
                        "jacobian_min": jac_min, "jacobian_max": jac_max},
        "bias": bias_meta,
        "tissues": tissues,
        "sequences": {**SEQUENCES, "flair": {**SEQUENCES["flair"], "TI": flair_ti}},
        "receiver_gain": {k: gains[k] for k in structural},
        "units": {**{k: "a.u.: signal / nominal brightest healthy tissue signal (x bias)" for k in STRUCTURAL_KEYS},
                  "sodium": "mM", "t2star_short": "ms", "t2star_long": "ms", "sodium_fast_fraction": "1"},
        "labels": dict(LABELS),
        "lesion": lesion_meta,
        "contrasts": list(keys),
    }
    frac_out = {name: fractions[i] for i, name in enumerate(_COMPARTMENTS)} if keep_fractions else {}
    return Subject(images=images, labels=labels, mask=mask, affine=affine, seed=seed, meta=meta, fractions=frac_out)


def _sodium_maps(fractions: np.ndarray, tissues: dict, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Sodium concentration and the sodium-weighted bi-exponential T2* summary of each voxel's mixture."""
    conc = np.array([tissues[c]["sodium"] for c in _COMPARTMENTS])
    ff = np.array([tissues[c]["sodium_fast_fraction"] for c in _COMPARTMENTS])
    rate_s = 1.0 / np.array([tissues[c]["sodium_t2star_short"] for c in _COMPARTMENTS])
    rate_l = 1.0 / np.array([tissues[c]["sodium_t2star_long"] for c in _COMPARTMENTS])
    na = _weighted_sum(fractions, conc)
    out = {"sodium": na}
    fast = _weighted_sum(fractions, conc * ff)
    slow = na - fast
    tol = np.float32(1e-4)  # mM: below this a component is treated as absent (its map is 0)

    def ratio(num, den, present):
        return np.divide(num, den, out=np.zeros_like(num), where=present & (den > 0))

    na[(fast <= tol) & (slow <= tol)] = 0.0
    if "sodium_fast_fraction" in keys:
        # consistent with the maps: 1 where only the fast component is present, 0 where it is absent
        frac = np.clip(ratio(fast, na, fast > tol), 0.0, 1.0)
        frac[(fast > tol) & (slow <= tol)] = 1.0
        out["sodium_fast_fraction"] = frac
    if "t2star_short" in keys:
        out["t2star_short"] = ratio(fast, _weighted_sum(fractions, conc * ff * rate_s), fast > tol)
    if "t2star_long" in keys:
        out["t2star_long"] = ratio(slow, _weighted_sum(fractions, conc * (1.0 - ff) * rate_l), slow > tol)
    return out


def _lesion(rng: np.random.Generator, tpl: _Template, vox: np.ndarray, g: np.ndarray, voxel_mm: float,
            max_disp: float, necrosis: bool | None):
    """Draw a tumour + oedema in template space and apply its mass effect to the coordinate map ``vox`` in place.

    ``vox`` is (3, D, H, W) template voxel coordinates of the output grid, ``g`` the output-voxel -> template-voxel
    affine without the displacement (bounded by ``max_disp`` mm). Only a box around the lesion is touched.

    Returns the lesion meta and ``(box, f_tumour, f_necrosis, f_oedema)`` for :func:`_apply_lesion`.
    """
    centre = tpl.lesion_centres[rng.integers(len(tpl.lesion_centres))] + rng.uniform(-1.0, 1.0, 3)
    r_tumour = float(rng.uniform(8.0, 15.0))
    r_oedema = float(r_tumour * rng.uniform(1.6, 2.3))
    has_necrosis = bool(rng.random() < 0.7) if necrosis is None else bool(necrosis)
    r_necrosis = float(r_tumour * rng.uniform(0.35, 0.6))
    push = float(rng.uniform(0.25, 0.5))  # < 1 keeps the mass-effect map monotonic (no folding)
    sigma_push = 1.5 * r_tumour

    def shape_fn(radius, amplitude):
        axes = np.exp(rng.uniform(-0.2, 0.2, 3))
        axes /= np.prod(axes) ** (1.0 / 3.0)
        metric = np.diag(1.0 / axes) @ _random_rotation(rng).T  # ellipsoid distance ||metric (x - c)||
        k = rng.standard_normal((6, 3))
        k *= (2.0 * np.pi / rng.uniform(15.0, 40.0, 6) / np.linalg.norm(k, axis=1))[:, None]
        phase = rng.uniform(0.0, 2.0 * np.pi, 6)
        # beyond this distance from the centre the fraction is 0 (|noise| <= 1.5, rho >= d / max axis)
        extent = float(axes.max() * (radius * (1.0 + 1.5 * amplitude) + voxel_mm))
        return metric, k, phase, radius, amplitude, extent

    tumour_spec = shape_fn(r_tumour, 0.15)
    oedema_spec = shape_fn(r_oedema, 0.3)
    necrosis_spec = (*tumour_spec[:3], r_necrosis, 0.15, tumour_spec[5])
    reach = max(oedema_spec[5], 2.5 * sigma_push)  # the mass effect is < 0.05 mm beyond 2.5 sigma

    # box of output voxels that can reach the lesion (the displacement and a 6 % pose scale included)
    lin = tpl.fractions_affine[:3, :3]
    c_vox = np.linalg.solve(lin, centre - tpl.fractions_affine[:3, 3])
    c_out = np.linalg.solve(g[:3, :3], c_vox - g[:3, 3])
    margin = (1.1 * reach + max_disp + 2.0 * voxel_mm) / voxel_mm + 1.0
    shape = vox.shape[1:]
    box = tuple(slice(max(0, int(math.floor(c - margin))), max(0, min(n, int(math.ceil(c + margin)) + 1)))
                for c, n in zip(c_out, shape))
    sub = vox[(slice(None), *box)]  # view
    rel_vox = sub.reshape(3, -1).astype(np.float64) - c_vox[:, None]
    rel = lin @ rel_vox  # template mm relative to the centre, (3, M)
    d = np.sqrt((rel**2).sum(axis=0))

    def level(spec):
        metric, k, phase, radius, amplitude, extent = spec
        out = np.zeros(d.shape, dtype=np.float32)
        sel = np.flatnonzero(d < extent)
        if sel.size:
            r = rel[:, sel]
            rho = np.sqrt(((metric @ r) ** 2).sum(axis=0))
            noise = np.sqrt(2.0 / len(phase)) * np.cos(k @ r + phase[:, None]).sum(axis=0)
            lv = rho - radius * (1.0 + amplitude * np.clip(noise, -1.5, 1.5))
            out[sel] = np.clip(0.5 - lv / voxel_mm, 0.0, 1.0)
        return out.reshape(sub.shape[1:])

    f_tumour = level(tumour_spec)
    f_necrosis = np.minimum(level(necrosis_spec), f_tumour) if has_necrosis else None
    f_oedema = level(oedema_spec)
    # mass effect: sample the template closer to the centre, x -> c + (x - c) (1 - push exp(-(d / sigma)^2))
    near = d < reach
    factor = 1.0 - push * np.exp(-((d[near] / sigma_push) ** 2))
    flat = sub.reshape(3, -1).copy()
    flat[:, near] = (c_vox[:, None] + rel_vox[:, near] * factor[None, :]).astype(np.float32)
    vox[(slice(None), *box)] = flat.reshape(sub.shape)
    meta = {
        "centre_template_mm": [float(x) for x in centre],
        "tumour_radius_mm": r_tumour,
        "oedema_radius_mm": r_oedema,
        "necrosis": has_necrosis,
        "necrosis_radius_mm": r_necrosis if has_necrosis else None,
        "mass_effect": push,
    }
    return meta, (box, f_tumour, f_necrosis, f_oedema)


def _apply_lesion(fractions: np.ndarray, box, f_tumour, f_necrosis, f_oedema) -> None:
    """Oedema replaces white matter inside its outline; the tumour then replaces every tissue inside the brain."""
    region = fractions[(slice(None), *box)]  # view
    csf, gm, wm = region[0].copy(), region[1].copy(), region[2].copy()
    tissue = csf + gm + wm
    oedema = f_oedema * wm
    wm -= oedema
    keep = 1.0 - f_tumour
    tumour = f_tumour * tissue
    necrosis = f_necrosis * tissue if f_necrosis is not None else np.zeros_like(tumour)
    region[0] = csf * keep
    region[1] = gm * keep
    region[2] = wm * keep
    region[3] = oedema * keep
    region[4] = tumour - necrosis
    region[5] = necrosis


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def _write_json(obj: Any, path: Path) -> Path:
    return write_json_atomic(path, obj)


def write_subject(subject: Subject, out_dir: str | os.PathLike, subject_id: str) -> dict[str, str]:
    """Write every image, the label map and the mask as NIfTI (atomically), plus a JSON sidecar of ``meta``.

    Files: ``<out_dir>/<subject_id>_<suffix>.nii.gz`` with the suffixes of :data:`FILE_SUFFIXES` (``sub-0003_T1w``,
    ``sub-0003_dseg``, ``sub-0003_desc-brain_mask``, ...) and ``<subject_id>_phantom.json``.

    Returns:
        ``{image key: absolute path, "label": ..., "mask": ..., "subject": subject_id}`` (a MONAI datalist item).
    """
    out = Path(out_dir).resolve()
    if not subject_id or any(ch in subject_id for ch in "/\\") or subject_id.startswith("."):
        raise InputError(f"subject_id must be a plain file-name prefix such as 'sub-0003', got {subject_id!r}.")
    item: dict[str, str] = {}
    for key, img in subject.images.items():
        item[key] = str(save_nifti(img, subject.affine, out / f"{subject_id}_{FILE_SUFFIXES[key]}.nii.gz"))
    for key, arr in (("label", subject.labels), ("mask", subject.mask)):
        path = out / f"{subject_id}_{FILE_SUFFIXES[key]}.nii.gz"
        item[key] = str(save_nifti(arr, subject.affine, path, dtype=np.uint8))
    _write_json({"subject": subject_id, **subject.meta}, out / f"{subject_id}_phantom.json")
    item["subject"] = subject_id
    return item


# ----------------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------------

_SPLITS = ("training", "validation", "test")


def subject_seed(seed: int, split: str, index: int) -> int:
    """Disjoint seed sets per split: training 3n, validation 3n+1, test 3n+2 (offset by the dataset seed)."""
    return int(seed) * 1_000_000 + 3 * index + _SPLITS.index(split)


def lesion_flags(seed: int, split: str, n: int, lesion: bool | float, lesion_splits: Sequence[str]) -> list[bool]:
    """Which of the ``n`` subjects of ``split`` get a lesion: a seeded choice of ``round(lesion * n)`` (all for
    ``lesion >= 1``, none outside ``lesion_splits``)."""
    frac = float(lesion)
    if split not in lesion_splits or frac <= 0.0 or n == 0:
        return [False] * n
    k = n if frac >= 1.0 else int(math.floor(frac * n + 0.5))
    chosen = set(np.random.default_rng([int(seed), 7919, _SPLITS.index(split)]).permutation(n)[:k].tolist())
    return [i in chosen for i in range(n)]


def build_dataset(
    out_dir: str | os.PathLike,
    num_train: int = 8,
    num_val: int = 1,
    num_test: int = 2,
    spacing: float = 2.0,
    lesion: bool | float = False,
    seed: int = 0,
    contrasts: Sequence[str] | None = None,
    lesion_splits: Sequence[str] = _SPLITS,
    force: bool = False,
) -> Path:
    """Write a synthetic dataset and its MONAI datalist; returns the path of ``<out_dir>/datalist.json``.

    ``datalist.json`` = ``{"training": [...], "validation": [...], "test": [...], "metadata": {...}}`` whose items are
    the dicts of :func:`write_subject` (absolute paths). Subject ``i`` of a split has seed :func:`subject_seed`
    (training ``3i``, validation ``3i+1``, test ``3i+2``, plus ``1e6 * seed``), so test subjects are never training
    subjects, and adding training subjects does not change the test subjects' content. Files are numbered
    ``sub-0000``, ``sub-0001``, ... through training, validation and test in that order; ``metadata.subjects``
    records each one's split, seed and lesion flag.

    Args:
        lesion: ``False``/``True`` or the fraction of subjects (per split in ``lesion_splits``) that get a lesion,
            chosen by a seeded permutation.
        lesion_splits: the splits in which lesions may occur (ArRFR keeps tumour cases for testing: ``("test",)``).
        contrasts: image keys to write (default all).
        force: rebuild even when an up-to-date datalist exists.

    Idempotent: when ``datalist.json`` records the same parameters (and the generator version) and all its files
    exist, nothing is regenerated.
    """
    counts = {"training": num_train, "validation": num_val, "test": num_test}
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"the number of {split} subjects must be a non-negative integer, got {n!r}.")
    if num_train < 1:
        raise InputError(f"a dataset needs at least one training subject, got num_train={num_train}.")
    seed, spacing, keys = _check_args(seed, spacing, contrasts)
    frac = float(lesion)
    if not 0.0 <= frac <= 1.0:
        raise InputError(f"lesion must be a boolean or a fraction in [0, 1], got {lesion!r}.")
    bad = [s for s in lesion_splits if s not in _SPLITS]
    if bad:
        raise InputError(f"lesion_splits must name splits among {list(_SPLITS)}, got {bad}.")
    out = Path(out_dir).resolve()
    path = out / "datalist.json"
    params = {"version": PHANTOM_VERSION, "num_train": int(num_train), "num_val": int(num_val),
              "num_test": int(num_test), "spacing": spacing, "lesion": frac, "seed": seed, "contrasts": list(keys),
              "lesion_splits": [s for s in _SPLITS if s in lesion_splits]}
    if not force and current_datalist(path, params, _SPLITS) is not None:
        return path

    out.mkdir(parents=True, exist_ok=True)
    datalist: dict[str, Any] = {s: [] for s in _SPLITS}
    subjects: dict[str, Any] = {}
    number = 0
    total = sum(counts.values())
    logger.info("building the synthetic dataset in %s: %d subjects at %g mm (%s), built once and reused", out, total,
                spacing, ", ".join(keys))
    started = time.perf_counter()
    for split in _SPLITS:
        flags = lesion_flags(seed, split, counts[split], frac, params["lesion_splits"])
        for i in range(counts[split]):
            sid = f"sub-{number:04d}"
            number += 1
            s_seed = subject_seed(seed, split, i)
            subject = make_subject(s_seed, spacing=spacing, lesion=flags[i], contrasts=keys)
            datalist[split].append(write_subject(subject, out, sid))
            subjects[sid] = {"split": split, "seed": s_seed, "lesion": flags[i]}
            logger.info("synthetic dataset: subject %d/%d (%s) written, %.0f s", number, total, split,
                        time.perf_counter() - started)
    datalist["metadata"] = {
        "name": "monai-inr synthetic brain",
        "description": "MNI152 2009a-based multi-contrast and sodium phantom (monai_inr.data.phantom)",
        "labels": {str(v): k for k, v in LABELS.items()},
        "parameters": params,
        "subjects": subjects,
    }
    _write_json(datalist, path)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m monai_inr.data.phantom --out_dir DIR [--num_train N --num_val N --num_test N --spacing MM ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_inr.data.phantom",
        description="Build the synthetic multi-contrast / sodium brain dataset and its MONAI datalist.json.",
    )
    parser.add_argument("--out_dir", required=True, help="output folder (NIfTI files and datalist.json)")
    parser.add_argument("--num_train", type=int, default=8)
    parser.add_argument("--num_val", type=int, default=1)
    parser.add_argument("--num_test", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm: 1 full, 2 small, 4 tiny")
    parser.add_argument("--lesion", type=float, default=0.0, help="fraction of subjects with a tumour (0-1)")
    parser.add_argument("--lesion_splits", nargs="+", default=list(_SPLITS), choices=list(_SPLITS))
    parser.add_argument("--contrasts", nargs="+", default=None, choices=list(IMAGE_KEYS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date datalist exists")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = build_dataset(args.out_dir, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
                             spacing=args.spacing, lesion=args.lesion, seed=args.seed, contrasts=args.contrasts,
                             lesion_splits=args.lesion_splits, force=args.force)
    except InputError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"{path} ({time.perf_counter() - t0:.1f} s)")
    return path


if __name__ == "__main__":
    main()
