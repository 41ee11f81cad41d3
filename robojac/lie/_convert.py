"""Conversions at the edges: quaternion orders, 4x4 matrices, and checked SE3 inputs.

Inside robojac every pose is pypose's ``[tx, ty, tz, qx, qy, qz, qw]``; these helpers are the
only places another order or representation comes in or goes out.
"""

from __future__ import annotations

import math

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from ._ops import matrix_to_se3, se3_to_matrix

__all__ = [
    "require_values",
    "unit_tolerance",
    "wrap_lie",
    "xyzw_to_wxyz",
    "wxyz_to_xyzw",
    "matrix_to_SE3",
    "SE3_to_matrix",
    "as_SE3",
    "tolerance",
]


def wrap_lie(t: Tensor, ltype=pp.SE3_type) -> pp.LieTensor:
    """View ``t`` as a LieTensor of ``ltype`` without copying or re-checking (a hot-path helper;
    the caller guarantees the layout, as pypose's own operations do when they wrap results)."""
    lt = Tensor.as_subclass(t, pp.LieTensor)
    lt.ltype = ltype
    return lt


def _described(x) -> str:
    """What an argument is, for an error: its shape, or its type if it is not a tensor."""
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _quaternions(q, name: str) -> Tensor:
    if not isinstance(q, Tensor) or q.shape[-1:] != (4,):
        raise ValueError(f"{name}: expected quaternions of shape (..., 4), got {_described(q)}")
    return q


def xyzw_to_wxyz(q: Tensor) -> Tensor:
    """Quaternions ``[x, y, z, w]`` (pypose, scipy) to ``[w, x, y, z]`` (jaxlie, Eigen ctor)."""
    q = _quaternions(q, "q")
    return torch.cat((q[..., 3:], q[..., :3]), dim=-1)


def wxyz_to_xyzw(q: Tensor) -> Tensor:
    """Quaternions ``[w, x, y, z]`` to pypose's ``[x, y, z, w]``."""
    q = _quaternions(q, "q")
    return torch.cat((q[..., 1:], q[..., :1]), dim=-1)


def matrix_to_SE3(T: Tensor, *, name: str = "T") -> pp.LieTensor:
    """SE3 LieTensor ``(..., 7)`` from homogeneous matrices ``(..., 4, 4)`` (or ``(..., 3, 4)``).

    A matrix that is not a rigid transform (a rotation block off orthonormal beyond the dtype's
    tolerance, a reflection, a last row other than ``[0, 0, 0, 1]``, NaN) is refused with a
    ``ValueError`` naming ``name``; within the tolerance the rotation is the nearest one
    (:func:`as_SE3`'s rule).  :func:`robojac.lie.matrix_to_se3` converts without checking."""
    if not isinstance(T, Tensor) or T.dim() < 2 or T.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{name}: expected homogeneous matrices of shape (..., 4, 4) or (..., 3, 4), got {_described(T)}")
    return as_SE3(T, name=name)


def SE3_to_matrix(X: Tensor) -> Tensor:
    """Homogeneous ``(..., 4, 4)`` matrices of poses given as SE3 LieTensors or ``(..., 7)``."""
    return se3_to_matrix(X.tensor() if isinstance(X, pp.LieTensor) else X)


def tolerance(dtype: torch.dtype) -> float:
    """A closeness tolerance for geometry in ``dtype`` (jaxlie's per-dtype idea)."""
    return {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-4)


# How far a pose argument's rotation may be from a rotation and still be taken for one: what
# rounding a true rotation to the dtype (and a few operations on it) can do, and no more.
_UNIT_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def require_values(x: Tensor, name: str) -> None:
    """Refuse a ``meta`` tensor (a shape without values) where a computation needs values."""
    if x.device.type == "meta":
        raise ValueError(f"{name}: a meta tensor holds no values; this computation needs them (forward "
                         f"kinematics alone runs on meta tensors, for shapes)")


def unit_tolerance(dtype: torch.dtype) -> float:
    """How far ``|q|`` may be from 1 (or ``R^T R`` from ``I``) in a pose argument of ``dtype``:
    ``1e-6`` in float64, ``1e-5`` in float32, ``4e-3`` in float16, ``3e-2`` in bfloat16 -- what
    rounding a true rotation to that dtype can do.  Within it the rotation is normalized; beyond
    it the argument is refused (:func:`se3_tensor`)."""
    return _UNIT_TOLERANCE.get(dtype, 1e-5)


def as_SE3(value, *, name: str = "pose", unit_tol: float | None = None) -> pp.LieTensor:
    """Check and convert a pose argument: an SE3 LieTensor, ``(..., 7)`` or ``(..., 4, 4)``.

    Raises ``ValueError`` naming ``name`` for a wrong shape, non-finite numbers, a quaternion
    that is not of unit length or a 4x4 matrix that is not a rigid transform (beyond ``unit_tol``,
    default :func:`unit_tolerance` of the dtype).  Within it, the rotation is normalized: the
    same rule in every dtype.  Never returns a silent identity.
    """
    return pp.SE3(se3_tensor(value, name=name, unit_tol=unit_tol))


def se3_tensor(value, *, name: str = "pose", unit_tol: float | None = None) -> Tensor:
    """:func:`as_SE3` as a plain ``(..., 7)`` tensor (no LieTensor wrapping: a lone pose's check
    is latency-bound, and every op on a LieTensor passes through pypose's dispatch)."""
    if isinstance(value, pp.LieTensor):
        if value.ltype is not pp.SE3_type:
            raise ValueError(f"{name}: expected an SE3 LieTensor, got a {type(value.ltype).__name__.removesuffix('Type')} one")
        X = value.tensor()
    elif isinstance(value, Tensor):
        X = value
    else:
        raise TypeError(f"{name}: expected a tensor or SE3 LieTensor, got {type(value).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {X.dtype}")
    require_values(X, name)
    # the checks run in numpy on the CPU (a few microseconds for a lone pose, where each torch
    # op costs several) and in torch elsewhere; the same expressions serve both
    if X.dtype in (torch.float32, torch.float64):
        A = X.detach().numpy() if X.device.type == "cpu" else X.detach()
    else:  # half precisions: checked in float32 (torch has no half determinant on the CPU)
        A = X.detach().float()
    xp = np if isinstance(A, np.ndarray) else torch
    if not xp.isfinite(A).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    tol = unit_tolerance(X.dtype) if unit_tol is None else unit_tol
    empty = math.prod(A.shape) == 0
    if A.ndim >= 2 and A.shape[-2:] in ((4, 4), (3, 4)):
        R = A[..., :3, :3]
        G = R.swapaxes(-1, -2) @ R
        G[..., [0, 1, 2], [0, 1, 2]] -= 1
        err = 0.0 if empty else float(abs(G).max())
        if err > tol or (not empty and (xp.linalg.det(R) <= 0).any()):
            raise ValueError(
                f"{name}: the 3x3 block is not a rotation (|R^T R - I| = {err:.2e}, "
                f"tolerance {tol:.0e}, or det <= 0): not a rigid transform"
            )
        if A.shape[-2] == 4 and not empty and max(float(abs(A[..., 3, :3]).max()), float(abs(A[..., 3, 3] - 1).max())) > tol:
            raise ValueError(f"{name}: the last row of a 4x4 transform must be [0, 0, 0, 1]")
        X = matrix_to_se3(X)  # within the tolerance: the nearest rotation's quaternion, normalized
        return torch.cat((X[..., :3], X[..., 3:] / X[..., 3:].norm(dim=-1, keepdim=True)), -1)
    if X.shape[-1:] != (7,):
        raise ValueError(
            f"{name}: expected an SE3 pose of shape (..., 7) [tx, ty, tz, qx, qy, qz, qw] "
            f"or a (..., 4, 4) matrix, got shape {tuple(X.shape)}"
        )
    if empty:
        return X
    q = A[..., 3:]
    norm = xp.sqrt((q * q).sum(-1))
    off = float(abs(norm - 1).max())
    if off > tol:
        raise ValueError(
            f"{name}: quaternion [qx, qy, qz, qw] is not of unit length (|q| in "
            f"[{float(norm.min()):.6g}, {float(norm.max()):.6g}], tolerance {tol:.0e} for {X.dtype})"
        )
    if off <= 4 * torch.finfo(X.dtype).eps:  # as unit as the dtype can hold: nothing to normalize
        return X
    return torch.cat((X[..., :3], X[..., 3:] / X[..., 3:].norm(dim=-1, keepdim=True)), -1)  # within it: normalized
