"""Rigid transforms as 4x4 RAS matrices (mm): construction, random draws, and error measures.

A transform ``T`` maps points ``x -> R x + t``. Registration results and simulation truths in this package are stored
as *fixed-to-moving* world maps (the direction ANTs/ITK transforms go): a point of the sodium (fixed) frame is sent to
the point of the T2w (moving) scanner frame that shows the same anatomy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rotation_matrix",
    "rigid_matrix",
    "euler_xyz_deg",
    "rotation_angle_deg",
    "random_rigid",
    "rigid_errors",
    "lps_to_ras_matrix",
]

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    """3x3 rotation about ``axis`` by ``angle_deg`` (right-hand rule, Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    th = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k


def rigid_matrix(angles_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0), center_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 ``x -> R (x - c) + c + t`` with ``R = Rz Ry Rx`` from Euler angles about the RAS x, y, z axes."""
    ax, ay, az = angles_deg
    r = rotation_matrix((0, 0, 1), az) @ rotation_matrix((0, 1, 0), ay) @ rotation_matrix((1, 0, 0), ax)
    c = np.asarray(center_mm, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + np.asarray(translation_mm, dtype=np.float64)
    return m


def euler_xyz_deg(r: np.ndarray) -> np.ndarray:
    """Euler angles (deg) about x, y, z with ``R = Rz Ry Rx`` (inverse of :func:`rigid_matrix`'s rotation)."""
    r = np.asarray(r)[:3, :3]
    ay = -np.arcsin(np.clip(r[2, 0], -1, 1))
    ax = np.arctan2(r[2, 1], r[2, 2])
    az = np.arctan2(r[1, 0], r[0, 0])
    return np.rad2deg([ax, ay, az])


def rotation_angle_deg(r: np.ndarray) -> float:
    """Total rotation angle (deg) of a rotation matrix (axis-angle magnitude)."""
    r = np.asarray(r)[:3, :3]
    return float(np.rad2deg(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def random_rigid(
    rng: np.random.Generator, max_angle_deg: float = 10.0, max_shift_mm: float = 10.0, center_mm=(0.0, 0.0, 0.0)
) -> tuple[np.ndarray, dict]:
    """A random rigid transform: uniform axis, angle uniform in [-max, max], shift uniform in direction with magnitude
    uniform in [0, max]; rotation about ``center_mm``. Returns the 4x4 matrix and its parameters."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = float(rng.uniform(-max_angle_deg, max_angle_deg))
    d = rng.normal(size=3)
    shift = d / np.linalg.norm(d) * float(rng.uniform(0, max_shift_mm))
    c = np.asarray(center_mm, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(axis, angle)
    m[:3, 3] = c - m[:3, :3] @ c + shift
    params = {
        "axis": axis.tolist(),
        "angle_deg": angle,
        "translation_mm": shift.tolist(),
        "center_mm": c.tolist(),
        "euler_xyz_deg": euler_xyz_deg(m).tolist(),
    }
    return m, params


def rigid_errors(estimate: np.ndarray, truth: np.ndarray, points_mm: np.ndarray | None = None, center_mm=None) -> dict:
    """Rotation error (deg, angle of ``R_est R_true^T``), translation error at ``center_mm`` (mm), and the mean / max
    displacement error over ``points_mm`` (e.g. the brain's voxel centres)."""
    e, t = np.asarray(estimate, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    c = np.zeros(3) if center_mm is None else np.asarray(center_mm, dtype=np.float64)
    out = {
        "rotation_error_deg": rotation_angle_deg(e[:3, :3] @ t[:3, :3].T),
        "translation_error_mm": float(np.linalg.norm((e[:3, :3] @ c + e[:3, 3]) - (t[:3, :3] @ c + t[:3, 3]))),
    }
    if points_mm is not None:
        p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        d = np.linalg.norm(p @ (e[:3, :3] - t[:3, :3]).T + (e[:3, 3] - t[:3, 3]), axis=1)
        out["mean_displacement_error_mm"] = float(d.mean())
        out["max_displacement_error_mm"] = float(d.max())
    return out


def lps_to_ras_matrix(m_lps: np.ndarray) -> np.ndarray:
    """A 4x4 point map between LPS frames as the same map between RAS frames (and back: an involution)."""
    return _FLIP @ np.asarray(m_lps, dtype=np.float64) @ _FLIP
