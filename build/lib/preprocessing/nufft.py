"""One NUFFT operator, three backends: ``pynufft`` (required), ``finufft`` (optional, fast), ``dft`` (direct sum).

Convention, identical in every backend (checked against each other and the direct DFT in the tests)::

    forward:  y[m] = sum_n x[n] exp(-i om[m] . (n - N // 2))          (image (N1, N2, N3) -> samples (M,))
    adjoint:  x[n] = sum_m y[m] exp(+i om[m] . (n - N // 2))          (the exact Hermitian adjoint)

``om`` is (M, 3) in radians, ``om = 2 pi k spacing`` for k in 1/cm and the voxel size in cm, within [-pi, pi].

Backend specifics handled here:

* pynufft's ``adjoint`` returns ``E^H y / prod(Kd)``: multiplied back by ``prod(Kd)``;
* pynufft centres odd axes at ``N / 2`` rather than ``N // 2``: corrected with a per-sample phase;
* pynufft's ``plan`` builds an M x prod(Kd) sparse matrix with ``J^3`` non-zeros per row (about 90 bytes x M x J^3 of
  peak memory), so the trajectory is split into chunks of at most ``max_plan_points / J^3`` samples; chunk plans are
  kept only when all of them fit in the budget (or ``keep_plans=True``), otherwise they are rebuilt on each call
  and memory stays bounded by one chunk;
* pynufft's ``SyntaxWarning`` at import is silenced locally.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Sequence

import numpy as np

__all__ = ["NufftOperator", "available_backends", "resolve_backend", "BACKENDS"]

log = logging.getLogger(__name__)

BACKENDS = ("pynufft", "finufft", "dft")


def _import_pynufft():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import pynufft
    return pynufft


def _import_finufft():
    import finufft

    return finufft


def available_backends() -> list[str]:
    """Backends that import in this environment (``dft`` always; ``pynufft`` is a hard dependency)."""
    out = []
    for name, imp in (("pynufft", _import_pynufft), ("finufft", _import_finufft)):
        try:
            imp()
            out.append(name)
        except ImportError:
            pass
    return out + ["dft"]


def resolve_backend(name: str = "auto") -> str:
    """``auto`` -> ``finufft`` when it imports, else ``pynufft`` (logged); other names are checked and returned."""
    if name == "auto":
        try:
            _import_finufft()
            return "finufft"
        except ImportError:
            log.info("finufft is not installed; using the pynufft backend (pip install finufft for speed).")
            return "pynufft"
    if name not in BACKENDS:
        raise ValueError(f"unknown NUFFT backend {name!r}; choose one of auto, {', '.join(BACKENDS)}.")
    if name == "finufft":
        try:
            _import_finufft()
        except ImportError as e:
            raise ImportError(
                "the finufft backend was requested but finufft is not installed (pip install finufft)."
            ) from e
    return name


def _default_threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "0")) or len(os.sched_getaffinity(0)))
    except (AttributeError, ValueError):
        return max(1, os.cpu_count() or 1)


class NufftOperator:
    """Type-2 (forward) / type-1 (adjoint) 3D NUFFT between an image grid and arbitrary k-space samples.

    Args:
        om: (M, 3) frequencies in radians within [-pi, pi] (see the module docstring).
        shape: image shape (N1, N2, N3).
        backend: ``pynufft``, ``finufft``, ``dft`` or ``auto``.
        oversampling: pynufft oversampled grid ``Kd = ceil(oversampling * N)`` (even).
        kernel_width: pynufft interpolation kernel ``J`` (4: relative error ~6e-4; 6: ~2e-5).
        eps: finufft tolerance.
        max_plan_points: pynufft memory budget as ``samples x J^3`` per plan (3e7 ~ 2.7 GB).
        keep_plans: keep every pynufft chunk plan even above the budget (faster repeated use, more memory).
        nthreads: finufft threads (default: OMP_NUM_THREADS or the CPU affinity).
    """

    def __init__(
        self,
        om: np.ndarray,
        shape: Sequence[int],
        backend: str = "pynufft",
        oversampling: float = 2.0,
        kernel_width: int = 4,
        eps: float = 1e-6,
        max_plan_points: float = 3e7,
        keep_plans: bool | None = None,
        nthreads: int | None = None,
    ):
        om = np.ascontiguousarray(np.asarray(om, dtype=np.float64).reshape(-1, 3))
        if not np.all(np.isfinite(om)):
            raise ValueError("NUFFT frequencies contain NaN or Inf.")
        if om.size and np.abs(om).max() > np.pi * (1 + 1e-6):
            raise ValueError(f"NUFFT frequencies must lie within [-pi, pi]; max |om| = {np.abs(om).max():.4f}.")
        self.om = np.clip(om, -np.pi, np.pi)
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) != 3:
            raise ValueError(f"NufftOperator is 3D; got image shape {self.shape}.")
        self.backend = resolve_backend(backend)
        self.oversampling = float(oversampling)
        self.kernel_width = int(kernel_width)
        self.eps = float(eps)
        self.max_plan_points = float(max_plan_points)
        self.nthreads = nthreads or _default_threads()
        self.M = int(self.om.shape[0])
        self._center = np.array([n // 2 for n in self.shape], dtype=np.float64)
        if self.backend == "pynufft":
            self.Kd = tuple(int(2 * np.ceil(self.oversampling * n / 2)) for n in self.shape)
            self.chunk_size = max(1, int(self.max_plan_points // self.kernel_width**3))
            n_chunks = max(1, -(-self.M // self.chunk_size))
            self.keep_plans = (n_chunks == 1) if keep_plans is None else bool(keep_plans)
            self._chunks = [slice(i * self.chunk_size, min(self.M, (i + 1) * self.chunk_size)) for i in range(n_chunks)]
            self._plans: dict[int, object] = {}
            # pynufft centres axis a at N/2; we centre at N//2: y_ours = y_pynufft * exp(-i om . (N/2 - N//2))
            shift = np.array([n / 2 - n // 2 for n in self.shape])
            self._phase = np.exp(-1j * (self.om @ shift)) if shift.any() else None
            if n_chunks > 1:
                log.info(
                    "pynufft: %d samples split into %d plan chunks (budget %.2g samples x J^3)%s.",
                    self.M, n_chunks, self.max_plan_points, "" if self.keep_plans else ", re-planned per call",
                )
        elif self.backend == "finufft":
            self._fplans: dict[int, object] = {}

    # ------------------------------------------------------------------ pynufft
    def _pynufft_plan(self, i: int):
        if i in self._plans:
            return self._plans[i]
        pynufft = _import_pynufft()
        plan = pynufft.NUFFT()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan.plan(self.om[self._chunks[i]], self.shape, self.Kd, (self.kernel_width,) * 3)
        if self.keep_plans:
            self._plans[i] = plan
        return plan

    def _pynufft_forward(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(self.M, dtype=np.complex128)
        for i, sl in enumerate(self._chunks):
            out[sl] = self._pynufft_plan(i).forward(x)
        if self._phase is not None:
            out *= self._phase
        return out

    def _pynufft_adjoint(self, y: np.ndarray) -> np.ndarray:
        if self._phase is not None:
            y = y * np.conj(self._phase)
        out = np.zeros(self.shape, dtype=np.complex128)
        scale = float(np.prod(self.Kd))
        for i, sl in enumerate(self._chunks):
            out += self._pynufft_plan(i).adjoint(np.ascontiguousarray(y[sl])) * scale
        return out

    # ------------------------------------------------------------------ finufft
    def _finufft_plan(self, kind: int):
        if kind not in self._fplans:
            finufft = _import_finufft()
            plan = finufft.Plan(
                kind, self.shape, n_trans=1, eps=self.eps, isign=-1 if kind == 2 else 1,
                dtype="complex128", nthreads=self.nthreads, modeord=0,
            )
            plan.setpts(*(np.ascontiguousarray(self.om[:, a]) for a in range(3)))
            self._fplans[kind] = plan
        return self._fplans[kind]

    # ------------------------------------------------------------------ direct DFT
    def _dft_apply(self, v: np.ndarray, adjoint: bool) -> np.ndarray:
        idx = np.stack(
            np.meshgrid(*[np.arange(n) - n // 2 for n in self.shape], indexing="ij"), axis=-1
        ).reshape(-1, 3).astype(np.float64)
        step = max(1, int(2**22 // max(1, idx.shape[0])))
        if adjoint:
            out = np.zeros(idx.shape[0], dtype=np.complex128)
            for s in range(0, self.M, step):
                out += np.exp(1j * (idx @ self.om[s : s + step].T)) @ v[s : s + step]
            return out.reshape(self.shape)
        flat = v.reshape(-1)
        out = np.empty(self.M, dtype=np.complex128)
        for s in range(0, self.M, step):
            out[s : s + step] = np.exp(-1j * (self.om[s : s + step] @ idx.T)) @ flat
        return out

    # ------------------------------------------------------------------ public
    def forward(self, image: np.ndarray) -> np.ndarray:
        """Image (N1, N2, N3) -> (M,) complex64 samples."""
        x = np.asarray(image)
        if x.shape != self.shape:
            raise ValueError(f"forward expects an image of shape {self.shape}, got {x.shape}.")
        x = np.ascontiguousarray(x, dtype=np.complex128)
        if self.M == 0:
            return np.zeros(0, np.complex64)
        if self.backend == "pynufft":
            y = self._pynufft_forward(x)
        elif self.backend == "finufft":
            y = self._finufft_plan(2).execute(x)
        else:
            y = self._dft_apply(x, adjoint=False)
        return y.astype(np.complex64)

    def adjoint(self, data: np.ndarray) -> np.ndarray:
        """(M,) samples -> image (N1, N2, N3) complex64: the exact adjoint of :meth:`forward`."""
        y = np.asarray(data).reshape(-1)
        if y.shape[0] != self.M:
            raise ValueError(f"adjoint expects {self.M} samples, got {y.shape[0]}.")
        y = np.ascontiguousarray(y, dtype=np.complex128)
        if self.M == 0:
            return np.zeros(self.shape, np.complex64)
        if self.backend == "pynufft":
            x = self._pynufft_adjoint(y)
        elif self.backend == "finufft":
            x = self._finufft_plan(1).execute(y)
        else:
            x = self._dft_apply(y, adjoint=True)
        return np.asarray(x).reshape(self.shape).astype(np.complex64)

    def normal(self, image: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """``A^H W A x``."""
        y = self.forward(image)
        return self.adjoint(y if weights is None else weights.reshape(-1) * y)

    def grid(self, data: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Gridding: the adjoint of density-compensated (and windowed) data, ``A^H (w y)`` (complex)."""
        y = np.asarray(data).reshape(-1)
        return self.adjoint(y if weights is None else np.asarray(weights).reshape(-1) * y)

    def describe(self) -> dict:
        d = {"backend": self.backend, "n_samples": self.M, "shape": list(self.shape)}
        if self.backend == "pynufft":
            d.update(kernel_width=self.kernel_width, Kd=list(self.Kd), chunks=len(self._chunks),
                     max_plan_points=self.max_plan_points)
        elif self.backend == "finufft":
            d.update(eps=self.eps, nthreads=self.nthreads)
        return d
