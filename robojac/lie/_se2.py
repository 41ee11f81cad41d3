"""Planar poses ``[x, y, theta]`` for 2D pose graphs (plain tensors, any leading dims).

Tangent ``[v_x, v_y, omega]``, left perturbation ``X' = Exp(d) * X``, and the log of GTSAM's
``Pose2::Logmap`` (``v = V(theta)^-1 t``), so 2D costs are GTSAM's.  Small-angle series keep
values and gradients finite at ``theta = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops as ops
from ._operands import POSE, SE2, operands

__all__ = [
    "se2_compose", "se2_inverse", "se2_exp", "se2_log", "se2_ad", "se2_adjoint", "se2_right_jacobian_inverse",
    "se2_to_se3", "se3_to_se2", "wrap_angle",
]


def wrap_angle(theta: Tensor) -> Tensor:
    """Angles in ``(-pi, pi]``."""
    return torch.atan2(torch.sin(theta), torch.cos(theta))


@operands(a=SE2, b=SE2)
def se2_compose(a: Tensor, b: Tensor) -> Tensor:
    c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    x = a[..., 0] + c * b[..., 0] - s * b[..., 1]
    y = a[..., 1] + s * b[..., 0] + c * b[..., 1]
    return torch.stack((x, y, wrap_angle(a[..., 2] + b[..., 2])), dim=-1)


@operands(a=SE2)
def se2_inverse(a: Tensor) -> Tensor:
    c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    x = -(c * a[..., 0] + s * a[..., 1])
    y = -(-s * a[..., 0] + c * a[..., 1])
    return torch.stack((x, y, -a[..., 2]), dim=-1)


def _small(theta: Tensor) -> Tensor:
    return theta.abs() < (1e-4 if theta.dtype == torch.float64 else 1e-2)


def _v_coeffs(theta: Tensor):
    """``sin(t)/t`` and ``(1 - cos(t))/t`` with series near zero."""
    small = _small(theta)
    t = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    p = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    h = torch.sin(0.5 * t)  # 1 - cos t = 2 sin^2(t/2): written 1 - cos t, Exp was 4.9e-13 off in float64
    # and 2.5e-6 in float32 (benchmarks/lie_precision.py on the code before)
    q = torch.where(small, theta / 2 - theta * t2 / 24, 2 * h * h / t)
    return p, q


@operands(xi=SE2)
def se2_exp(xi: Tensor) -> Tensor:
    """``[x, y, theta]`` of the twist ``[v_x, v_y, omega]``."""
    p, q = _v_coeffs(xi[..., 2])
    x = p * xi[..., 0] - q * xi[..., 1]
    y = q * xi[..., 0] + p * xi[..., 1]
    return torch.stack((x, y, wrap_angle(xi[..., 2])), dim=-1)


@operands(a=SE2)
def se2_log(a: Tensor) -> Tensor:
    """Twist of ``[x, y, theta]``: ``v = V(theta)^-1 t`` (GTSAM's ``Pose2::Logmap``)."""
    theta = wrap_angle(a[..., 2])
    small = _small(theta)
    t = torch.where(small, torch.ones_like(theta), theta)
    half = 0.5 * t
    # V^-1 = [[alpha, beta], [-beta, alpha]] with alpha = (t/2) cot(t/2), beta = t/2
    alpha = torch.where(small, 1 - theta * theta / 12, half * torch.cos(half) / torch.sin(half))
    beta = 0.5 * theta
    vx = alpha * a[..., 0] + beta * a[..., 1]
    vy = -beta * a[..., 0] + alpha * a[..., 1]
    return torch.stack((vx, vy, theta), dim=-1)


@operands(a=SE2)
def se2_adjoint(a: Tensor) -> Tensor:
    """``Ad(X)`` for ``[v, omega]`` twists: ``[[R, (y, -x)^T], [0, 0, 1]]``."""
    c, s = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    o, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack((c, -s, a[..., 1], s, c, -a[..., 0], o, o, one), dim=-1).unflatten(-1, (3, 3))


@operands(xi=SE2)
def se2_ad(xi: Tensor) -> Tensor:
    """The Lie algebra's adjoint ``ad(xi) = [[0, -theta, y], [theta, 0, -x], [0, 0, 0]]``, shape
    ``(..., 3, 3)``, for ``[x, y, theta]`` twists: ``ad(a) b`` is the bracket ``[a, b]``."""
    o = torch.zeros_like(xi[..., 0])
    return torch.stack((o, -xi[..., 2], xi[..., 1], xi[..., 2], o, -xi[..., 0], o, o, o), dim=-1).unflatten(-1, (3, 3))


@operands(xi=SE2)
def se2_right_jacobian_inverse(xi: Tensor) -> Tensor:
    """``Jr(xi)^-1``: ``Log(Exp(xi) Exp(e)) = xi + Jr^-1 e + O(e^2)``."""
    r1, r2, theta = xi[..., 0], xi[..., 1], xi[..., 2]
    p, q = _v_coeffs(theta)
    # Jr = [[p, q, b1], [-q, p, b2], [0, 0, 1]] with b1 = t c1 r1 - a r2, b2 = a r1 + t c1 r2, where
    # a = (1 - cos t) / t^2 = 2 (sin(t/2) / t)^2 and c1 = (t - sin t) / t^3 (lie._ops'
    # _sine_remainder).  Written as (t r1 - r2 + r2 cos t - r1 sin t) / t^2, 1 - cos t
    # and t - sin t cancelled: Jr^-1 was 9.6e-9 off in float64 and 3.7e-4 in float32 just above the
    # small angle (benchmarks/lie_precision.py on the code before).
    small = _small(theta)
    t = torch.where(small, torch.ones_like(theta), theta)
    h = torch.sin(0.5 * t) / t
    a = torch.where(small, 0.5 - theta * theta / 24, 2 * h * h)
    c1 = ops._sine_remainder(theta * theta)
    b1 = theta * c1 * r1 - a * r2
    b2 = a * r1 + theta * c1 * r2
    det = p * p + q * q
    i11, i12 = p / det, -q / det  # inverse of [[p, q], [-q, p]]
    i21, i22 = q / det, p / det
    o, one = torch.zeros_like(p), torch.ones_like(p)
    return torch.stack(
        (i11, i12, -(i11 * b1 + i12 * b2), i21, i22, -(i21 * b1 + i22 * b2), o, o, one), dim=-1
    ).unflatten(-1, (3, 3))


@operands(a=SE2)
def se2_to_se3(a: Tensor) -> Tensor:
    """Planar poses as SE3 ``[x, y, 0, 0, 0, sin(t/2), cos(t/2)]``."""
    half = 0.5 * a[..., 2]
    z = torch.zeros_like(half)
    return torch.stack((a[..., 0], a[..., 1], z, z, z, torch.sin(half), torch.cos(half)), dim=-1)


@operands(X=POSE)
def se3_to_se2(X: Tensor) -> Tensor:
    """``[x, y, yaw]`` of SE3 poses (their rotation about z; exact for planar poses)."""
    R = ops.quat_to_matrix(X[..., 3:])
    return torch.stack((X[..., 0], X[..., 1], torch.atan2(R[..., 1, 0], R[..., 0, 0])), dim=-1)

