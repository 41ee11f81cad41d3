"""Plain-tensor SO3/SE3 operations in pypose's layout, for the analytic fast paths.

Poses are tensors ``(..., 7)`` holding ``[tx, ty, tz, qx, qy, qz, qw]`` and tangents
``(..., 6)`` holding ``[rho, phi]`` (pypose's order); no LieTensor dispatch, any number of
leading batch dims, and every small-angle branch written so that values *and* gradients stay
finite at zero angle (the "double where" pattern).  Results agree with pypose's operations.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ._operands import MATRIX34, POINT, POSE, QUAT, ROT, SIM3, SIM3_TWIST, TWIST, operands
from ._tangent import skew

__all__ = [
    "quat_mul",
    "quat_conj",
    "quat_rotate",
    "quat_to_matrix",
    "matrix_to_quat",
    "so3_exp",
    "so3_log",
    "so3_left_jacobian",
    "so3_left_jacobian_inverse",
    "se3_exp",
    "sim3_exp",
    "sim3_ad",
    "sim3_left_jacobian",
    "sim3_left_jacobian_inverse",
    "sim3_log",
    "sim3_compose",
    "sim3_inverse",
    "sim3_adjoint",
    "se3_log",
    "se3_compose",
    "se3_inverse",
    "se3_act",
    "se3_to_matrix",
    "matrix_to_se3",
    "se3_adjoint",
    "se3_ad",
    "se3_left_jacobian_inverse",
    "se3_left_jacobian_inverse_transpose_times",
    "se3_right_jacobian_inverse",
    "small_angle",
    "mm3",
    "quat_product_matrix",
    "quat_rotation_form",
]


def mm3(A: Tensor, B: Tensor) -> Tensor:
    """``A @ B`` for batches of 3x3 matrices (a named seam: a batched matmul measured fastest
    on the CPU against broadcast-and-sum and per-row forms)."""
    return A @ B


def small_angle(dtype: torch.dtype) -> float:
    """Below this angle (radians) the series forms are used: error below the dtype's eps."""
    return 1e-3 if dtype == torch.float64 else 2e-2


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """``a x b`` over the last axis, the leading axes broadcast as every other operation here
    broadcasts them (``torch.linalg.cross`` refuses operands of different ranks: a pose ``(7,)``
    composed with poses ``(10, 7)`` raised from deep inside torch)."""
    if a.dim() != b.dim():
        a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b, dim=-1)


def cross_rows(a: Tensor, b: Tensor) -> Tensor:
    """``a x b`` of ``(..., 3, N)`` arrays (a batch of vectors laid out structure-of-arrays, the
    batch last), row by row; the leading axes broadcast.  ``torch.linalg.cross(a, b, dim=-2)``
    takes 3.4x as long on such arrays (32 x 3 x 2,048 float64, one thread: 1.09 ms against
    0.31 ms).  ICP's point-to-plane and GICP steps and the centre of mass's Jacobian run on it."""
    a0, a1, a2 = a.unbind(-2)
    b0, b1, b2 = b.unbind(-2)
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=-2)


@operands(a=QUAT, b=QUAT)
def quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of ``[x, y, z, w]`` quaternions."""
    av, aw = a[..., :3], a[..., 3:]
    bv, bw = b[..., :3], b[..., 3:]
    v = aw * bv + bw * av + _cross(av, bv)
    w = aw * bw - (av * bv).sum(-1, keepdim=True)
    return torch.cat((v, w), dim=-1)


@operands(q=QUAT)
def quat_conj(q: Tensor) -> Tensor:
    return torch.cat((-q[..., :3], q[..., 3:]), dim=-1)


@operands(q=QUAT, p=POINT)
def quat_rotate(q: Tensor, p: Tensor) -> Tensor:
    """Rotate points ``p (..., 3)`` by unit quaternions ``q (..., 4)``."""
    v, w = q[..., :3], q[..., 3:]
    uv = 2.0 * _cross(v, p)
    return p + w * uv + _cross(v, uv)


# the four square-root branches of matrix_to_quat, each a quaternion [x, y, z, w] linear in R.flat
# (row b: component -> ((flat index of R, sign), ...)); branch b's square term t_b = 1 + s . diag(R)
_M2Q_ROWS = (
    (((7, 1), (5, -1)), ((2, 1), (6, -1)), ((3, 1), (1, -1)), ((0, 1), (4, 1), (8, 1))),
    (((0, 1), (4, -1), (8, -1)), ((1, 1), (3, 1)), ((2, 1), (6, 1)), ((7, 1), (5, -1))),
    (((1, 1), (3, 1)), ((0, -1), (4, 1), (8, -1)), ((5, 1), (7, 1)), ((2, 1), (6, -1))),
    (((2, 1), (6, 1)), ((5, 1), (7, 1)), ((0, -1), (4, -1), (8, 1)), ((3, 1), (1, -1))),
)
_M2Q_SQUARE = (3, 0, 1, 2)  # the component of branch b that holds t_b


@functools.lru_cache(maxsize=None)
def _quat_branch_maps(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`matrix_to_quat`'s branches as one linear map of ``R.flat`` plus a constant, and where
    each branch's ``t_b`` sits: a few ops per call instead of ~50 indexing and arithmetic ops
    (each costs microseconds on the small batches of IK and ICP; 3.4x faster on one matrix,
    1.2x on 2,000)."""
    m2q = torch.zeros(9, 16, dtype=torch.float64, device=device)
    const = torch.zeros(16, dtype=torch.float64, device=device)
    for b, row in enumerate(_M2Q_ROWS):
        for k, terms in enumerate(row):
            for i, sign in terms:
                m2q[i, 4 * b + k] = sign
        const[4 * b + _M2Q_SQUARE[b]] = 1.0
    square = torch.tensor([4 * b + k for b, k in enumerate(_M2Q_SQUARE)], device=device)
    return m2q.to(dtype=dtype, device=device), const.to(dtype=dtype, device=device), square


@functools.lru_cache(maxsize=None)
def _quat_matrix_map(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """:func:`quat_to_matrix` as one linear map of the quaternion's outer product ``q q^T``
    (flattened, ``[x, y, z, w]``) plus the identity: a handful of ops per call instead of ~22
    (each costs microseconds on the one-pose batches of ICP and IK)."""
    x, y, z, w = range(4)
    terms = {  # entry of R -> (coefficient, i, j): 2 q_i q_j is split over (i, j) and (j, i)
        (0, 0): [(-2, y, y), (-2, z, z)], (0, 1): [(1, x, y), (1, y, x), (-1, w, z), (-1, z, w)],
        (0, 2): [(1, x, z), (1, z, x), (1, w, y), (1, y, w)], (1, 0): [(1, x, y), (1, y, x), (1, w, z), (1, z, w)],
        (1, 1): [(-2, x, x), (-2, z, z)], (1, 2): [(1, y, z), (1, z, y), (-1, w, x), (-1, x, w)],
        (2, 0): [(1, x, z), (1, z, x), (-1, w, y), (-1, y, w)], (2, 1): [(1, y, z), (1, z, y), (1, w, x), (1, x, w)],
        (2, 2): [(-2, x, x), (-2, y, y)],
    }
    C = torch.zeros(16, 9, dtype=torch.float64, device="cpu")
    for (r, c), entry in terms.items():
        for coeff, i, j in entry:
            C[4 * i + j, 3 * r + c] += coeff
    return C.to(dtype=dtype, device=device), torch.eye(3, dtype=dtype, device=device).flatten()


@operands(q=QUAT)
def quat_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of unit quaternions ``[x, y, z, w]``: ``R = I + 2 w [v]x
    + 2 [v]x^2`` entry by entry (``1 - 2 (y^2 + z^2)``, ``2 (x y - w z)``, ...).

    The same sums two ways, by measured speed (one CPU thread): up to 256 quaternions as one
    product of their outer products with a constant map (7 us for one, against 51 us for the
    22 element-wise ops), beyond that element-wise (130 against 250 us for 5,000: the product's
    16 x 9 shape runs slowly).  They agree to an ulp."""
    if q.numel() <= 4 * 256:
        C, eye = _quat_matrix_map(q.dtype, q.device)
        outer = (q.unsqueeze(-1) * q.unsqueeze(-2)).flatten(-2)  # (..., 16)
        return (outer @ C + eye).unflatten(-1, (3, 3))
    x, y, z, w = q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    return torch.stack(
        (
            1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
        ),
        dim=-1,
    ).unflatten(-1, (3, 3))


@operands(R=ROT)
def matrix_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions ``[x, y, z, w]`` (w >= 0) of rotation matrices ``(..., 3, 3)``.

    Uses the best-conditioned of the four square-root branches for each matrix.
    """
    m2q, const, square = _quat_branch_maps(R.dtype, R.device)
    flat = R.flatten(-2) @ m2q + const  # (..., 16): branch b's [x, y, z, w] times 2 sqrt(t_b)
    cands, ts = flat.unflatten(-1, (4, 4)), flat.index_select(-1, square)  # ts: (..., 4) the t_b
    best = ts.argmax(-1, keepdim=True)
    q = torch.take_along_dim(cands, best[..., None], dim=-2).squeeze(-2)
    t = torch.take_along_dim(ts, best, dim=-1)
    q = q * (0.5 / torch.sqrt(t.clamp_min(torch.finfo(R.dtype).tiny)))
    return q * torch.where(q[..., 3:] < 0, -1.0, 1.0).to(q.dtype)


@operands(phi=POINT)
def so3_exp(phi: Tensor) -> Tensor:
    """Quaternion ``[x, y, z, w]`` of the rotation vector ``phi (..., 3)``."""
    theta2 = (phi * phi).sum(-1, keepdim=True)
    small = theta2 < small_angle(phi.dtype) ** 2
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    half = 0.5 * theta
    imag = torch.where(small, 0.5 - theta2 / 48.0 + theta2 * theta2 / 3840.0, torch.sin(half) / theta)
    real = torch.where(small, 1.0 - theta2 / 8.0 + theta2 * theta2 / 384.0, torch.cos(half))
    return torch.cat((phi * imag, real), dim=-1)


@operands(q=QUAT)
def so3_log(q: Tensor) -> Tensor:
    """Rotation vector of unit quaternions (the same value as pypose's ``SO3.Log``)."""
    v, w = q[..., :3], q[..., 3:]
    sign = torch.where(w < 0, -1.0, 1.0).to(q.dtype)
    v, w = v * sign, w * sign
    n2 = (v * v).sum(-1, keepdim=True)
    small = n2 < small_angle(q.dtype) ** 2
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    w_s = torch.where(small, w, torch.ones_like(w))
    # 2 atan(n / w) / n, and its series 2/w - 2 n^2 / (3 w^3) for tiny n (then w ~ 1)
    factor = torch.where(small, 2.0 / w_s - (2.0 / 3.0) * n2 / w_s**3, 2.0 * torch.atan2(n, w) / n)
    return factor * v


def _so3_coeffs(theta2: Tensor, dtype: torch.dtype):
    """(1 - cos t)/t^2 and (t - sin t)/t^3 with series below the small angle."""
    small = theta2 < small_angle(dtype) ** 2
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    h = torch.sin(0.5 * t) / t  # 1 - cos t = 2 sin^2(t/2): no cancellation just above the switch
    a = torch.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0, 2 * h * h)
    b = torch.where(small, 1.0 / 6.0 - theta2 / 120.0 + theta2 * theta2 / 5040.0, (t - torch.sin(t)) / (t2 * t))
    return a, b


@operands(phi=POINT)
def so3_left_jacobian(phi: Tensor) -> Tensor:
    """``Jl(phi) = I + a [phi]x + b [phi]x^2``, shape ``(..., 3, 3)``."""
    K = skew(phi)
    theta2 = (phi * phi).sum(-1)[..., None, None]
    a, b = _so3_coeffs(theta2, phi.dtype)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + a * K + b * (K @ K)


def _so3_inverse_coeff(theta2: Tensor, dtype: torch.dtype) -> Tensor:
    """``c = 1/t^2 - (1 + cos t) / (2 t sin t)`` of ``Jl^-1``, with its series below the small angle.

    Written ``1/t^2 - cos(t/2) / (2 t sin(t/2))``: near a half turn ``1 + cos t`` and ``sin t``
    both vanish, and their rounding left ``Log(Exp(xi))`` 1.4e-9 off there in float64 and 5.0e-5
    in float32 (``benchmarks/lie_precision.py`` on the code before)."""
    small = theta2 < small_angle(dtype) ** 2
    t2 = torch.where(small, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    return torch.where(
        small,
        1.0 / 12.0 + theta2 / 720.0 + theta2 * theta2 / 30240.0,
        1.0 / t2 - torch.cos(0.5 * t) / (2 * t * torch.sin(0.5 * t)),
    )


@operands(phi=POINT)
def so3_left_jacobian_inverse(phi: Tensor) -> Tensor:
    """``Jl(phi)^-1 = I - [phi]x / 2 + c [phi]x^2``, ``c = 1/t^2 - (1 + cos t) / (2 t sin t)``."""
    K = skew(phi)
    c = _so3_inverse_coeff((phi * phi).sum(-1)[..., None, None], phi.dtype)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye - 0.5 * K + c * mm3(K, K)


# Q's coefficients cancel: the numerators of c1, c2 and c3 are t^3/6, t^4/12 and t^5/60 of terms
# of size 1, so computed as written they lose 6 eps/t^2, 24 eps/t^4 and 60 eps/t^4 of themselves,
# and 2 eps/t, eps/t^2 and eps/(2 t) of Q.  Switched to two-term series at the small angle (1e-3
# rad in float64, 2e-2 in float32), they left Jl^-1 4.9e-11 off in float64 and 9.8e-5 in float32
# just above it.  Below 0.5 rad the Taylor series take over now, with terms to t^10: their
# truncation stays under 1.2e-15 of each coefficient at 0.5 rad, and above it the closed forms'
# rounding under 5 eps of Q (tests/test_lie.py measures Jl^-1 within 20 eps at every angle).
_Q_SERIES_BELOW = 0.5
_Q_SERIES = tuple(
    tuple(coefficient(k) for k in range(6))
    for coefficient in (
        lambda k: (-1) ** k / math.factorial(2 * k + 3),  # c1 = (t - sin t) / t^3
        lambda k: (-1) ** k / math.factorial(2 * k + 4),  # c2 = (t^2 + 2 cos t - 2) / (2 t^4)
        lambda k: (-1) ** k * (k + 1) / math.factorial(2 * k + 5),  # c3 = (2 t - 3 sin t + t cos t) / (2 t^5)
    )
)


def _horner(x: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """``sum_k coefficients[k] x^k``."""
    out = torch.full_like(x, coefficients[-1])
    for a in reversed(coefficients[:-1]):
        out = out * x + a
    return out


def _sine_remainder(theta2: Tensor) -> Tensor:
    """``c1 = (t - sin t) / t^3`` of ``theta2 = t^2``, on its series below ``_Q_SERIES_BELOW``
    (Q's ``c1`` and SE2's ``Jr^-1``).  ``_so3_coeffs``' ``b`` is the same function on a two-term
    series, kept so: in ``Exp`` it weighs ``t^2``, so its cancellation leaves SE3 ``Exp`` within
    5 eps (``benchmarks/lie_precision.py``), and ``Exp`` retracts every ICP step and every SE3
    variable of the engine, where the longer series would add its dozen operations for nothing."""
    series = theta2 < _Q_SERIES_BELOW**2
    t2 = torch.where(series, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    return torch.where(series, _horner(theta2, _Q_SERIES[0]), (t - torch.sin(t)) / (t2 * t))


def _se3_Q_parts(rho: Tensor, phi: Tensor, theta2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(v, c1, k, m)`` with ``Q = [v]x + (c1 rho + k phi) phi^T + c1 phi rho^T + m I`` (see
    :func:`_se3_Q`), from Barfoot's ``c1 = (t - sin t) / t^3``, ``c2 = (t^2 + 2 cos t - 2) / (2 t^4)``
    and ``c3 = (2 t - 3 sin t + t cos t) / (2 t^5)``, with their series below ``_Q_SERIES_BELOW``."""
    series = theta2 < _Q_SERIES_BELOW**2
    t2 = torch.where(series, torch.ones_like(theta2), theta2)
    t = torch.sqrt(t2)
    s, c = torch.sin(t), torch.cos(t)
    c1 = _sine_remainder(theta2)
    c2 = torch.where(series, _horner(theta2, _Q_SERIES[1]), (t2 + 2 * c - 2) / (2 * t2 * t2))
    c3 = torch.where(series, _horner(theta2, _Q_SERIES[2]), (2 * t - 3 * s + t * c) / (2 * t2 * t2 * t))
    d = (phi * rho).sum(-1, keepdim=True)
    v = (0.5 - c2 * theta2) * rho + (2 * c2 - c1) * d * phi
    return v, c1, -2 * c3 * d, 2 * d * (c3 * theta2 - c1)


def _se3_Q(rho: Tensor, phi: Tensor) -> Tensor:
    """The upper-right block of the SE3 left Jacobian (Barfoot's Q), in closed form.

    Barfoot's series ``Q = R/2 + c1 (PR + RP + PRP) + c2 (PPR + RPP - 3 PRP) + c3 (PRPP + PPRP)``
    (``P = [phi]x``, ``R = [rho]x``) collapses through ``[a]x [b]x = b a^T - (a.b) I``: with
    ``d = phi.rho``, ``PRP = -d P``, ``PPR = (phi x rho) phi^T - d P``, ``RPP = -phi (phi x rho)^T - d P``
    and ``P^2 = phi phi^T - theta^2 I``, so ``Q = [v]x + c1 (rho phi^T + phi rho^T) + k phi phi^T + m I``
    with ``v = (1/2 - c2 theta^2) rho + (2 c2 - c1) d phi``, ``k = -2 c3 d``, ``m = 2 d (c3 theta^2 - c1)``:
    outer products instead of nine 3x3 matrix products (2.7x faster on a pose graph's edges).
    """
    v, c1, k, m = _se3_Q_parts(rho, phi, (phi * phi).sum(-1, keepdim=True))
    outer = (c1 * rho + k * phi).unsqueeze(-1) * phi.unsqueeze(-2) + (c1 * phi).unsqueeze(-1) * rho.unsqueeze(-2)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return skew(v) + outer + m.unsqueeze(-1) * eye


@operands(xi=TWIST)
def se3_exp(xi: Tensor) -> Tensor:
    """Pose ``(..., 7)`` of the twist ``xi = [rho, phi]``: ``t = Jl(phi) rho``."""
    rho, phi = xi[..., :3], xi[..., 3:]
    a, b = _so3_coeffs((phi * phi).sum(-1, keepdim=True), phi.dtype)
    k = torch.linalg.cross(phi, rho, dim=-1)  # Jl rho = rho + a [phi]x rho + b [phi]x^2 rho, without the matrices
    t = rho + a * k + b * torch.linalg.cross(phi, k, dim=-1)
    return torch.cat((t, so3_exp(phi)), dim=-1)


# sim3's W(phi, sigma) = int_0^1 exp(u sigma) Exp(u phi) du = a I + b K + c K^2 (K = [phi]x) and the
# derivatives of W rho that the inverse left Jacobian needs are integrals over u of exp(u sigma)
# times entire functions of (u theta): Gauss-Legendre quadrature with 16 nodes on [0, 1] takes them
# with no special case.  Their closed forms have three singular limits (sigma -> 0, |phi| -> 0, both):
# pypose's sim3.Exp loses up to 2e-5 of its translation near them, its Sim3.Log 2e-9, and its
# sim3_Jl is a truncated series (1e-4 off at unit angles).  The rule is exact for polynomials of
# degree 31 in u: with angles up to pi and log-scales up to 3 (scale ratios to 20) the integrands'
# Taylor terms left out are below 1e-16 of them (tests/test_lie.py holds W to 40-node quadrature of
# the definition, the inverse left Jacobian to the matrix exponential).  At 1,649 tangents the inverse
# left Jacobian takes 3.7 ms, against 16.0 ms for inverting the 14x14 matrix exponential that also
# gives it (torch.linalg.matrix_exp; one thread, medians of 31 alternating runs, a session script).
_NODES = 16


@functools.lru_cache(maxsize=None)
def _gauss_legendre(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    import numpy as np

    u, w = np.polynomial.legendre.leggauss(_NODES)
    as_t = lambda a: torch.from_numpy(0.5 * a).to(dtype=dtype, device=device)  # noqa: E731  [-1, 1] -> [0, 1]
    return as_t(u + 1), as_t(w)


def _sinc_family(x2: Tensor, count: int = 4) -> tuple[Tensor, ...]:
    """The first ``count`` of ``(sin x / x, (1 - cos x) / x^2, d/dx of the first / x, d/dx of the
    second / x)`` at ``x^2 = x2``, by their Taylor series (to ``x^14``) below ``x = 0.5`` and their
    closed forms above (where their rounding stays under ``eps / x^4`` of them: 4e-15).  Taken
    from ``x^2``, they are smooth to every order at 0 (a square root there had left the implicit
    backward's second derivatives NaN)."""
    small = x2 < 0.25
    xs = torch.sqrt(torch.where(small, torch.ones_like(x2), x2))
    sn, cs = torch.sin(xs), torch.cos(xs)
    closed = (lambda: sn / xs, lambda: (1 - cs) / xs**2, lambda: (xs * cs - sn) / xs**3,
              lambda: (xs * sn - 2 * (1 - cs)) / xs**4)
    out = []
    for k in range(count):
        # s1 = sum_j (-1)^j x^2j / (2j+1)!, s2 = sum_j (-1)^j x^2j / (2j+2)!, and t = s' / x
        series = torch.zeros_like(x2)
        for j in range(7, -1, -1):
            n = 2 * j + 1 + k % 2
            coeff = (-1) ** j / math.factorial(n) if k < 2 else (-1) ** (j + 1) * (2 * j + 2) / math.factorial(n + 2)
            series = series * x2 + coeff
        out.append(torch.where(small, series, closed[k]()))
    return tuple(out)


def _sim3_coefficients(phi: Tensor, sigma: Tensor, derivatives: bool = False):
    """``W``'s ``(a, b, c)`` ``(..., 1)`` and, with ``derivatives``, ``(da, db, dc)/dsigma`` and
    ``(db, dc)/dtheta / theta``."""
    u, w = _gauss_legendre(phi.dtype, phi.device)
    theta2 = (phi * phi).sum(-1, keepdim=True)
    eu = torch.exp(sigma * u) * w  # (..., nodes), the weights folded in
    s = _sinc_family(theta2 * u**2, 4 if derivatives else 2)
    sums = [eu, eu * u * s[0], eu * u**2 * s[1]]
    if derivatives:
        sums += [eu * u, eu * u**2 * s[0], eu * u**3 * s[1], eu * u**3 * s[2], eu * u**4 * s[3]]
    return tuple(q.sum(-1, keepdim=True) for q in sums)


def _sim3_w(phi: Tensor, sigma: Tensor) -> Tensor:
    """``W(phi, sigma) = int_0^1 exp(u sigma) Exp(u phi) du = a I + b K + c K^2`` ``(..., 3, 3)``."""
    a, b, c = _sim3_coefficients(phi, sigma)
    K = skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return a.unsqueeze(-1) * eye + b.unsqueeze(-1) * K + c.unsqueeze(-1) * mm3(K, K)


@operands(x=SIM3_TWIST)
def sim3_ad(x: Tensor) -> Tensor:
    """``ad(x)`` ``(..., 7, 7)`` of ``x = [rho, phi, sigma]``:
    ``[[[phi]x + sigma I, [rho]x, -rho], [0, [phi]x, 0], [0, 0, 0]]`` (``exp(ad(x)) = Ad(Exp(x))``)."""
    rho, phi, sigma = x[..., :3], x[..., 3:6], x[..., 6:]
    K = skew(phi)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    z3, z1 = torch.zeros_like(K), torch.zeros_like(rho).unsqueeze(-1)
    top = torch.cat((K + sigma.unsqueeze(-1) * eye, skew(rho), -rho.unsqueeze(-1)), -1)
    mid = torch.cat((z3, K, z1), -1)
    return torch.cat((top, mid, torch.zeros_like(top[..., :1, :])), -2)


@operands(x=SIM3_TWIST)
def sim3_left_jacobian_inverse(x: Tensor) -> Tensor:
    """``Jl(x)^-1`` ``(..., 7, 7)``: the derivative of ``Log(Exp(d) Exp(x))`` in ``d`` at 0.

    With ``X = Exp(x) = (t = W rho, R, s)``, a left step moves ``t`` by ``d_rho - [t]x d_phi +
    t d_sigma``, ``phi`` by ``Jl_so3(phi)^-1 d_phi`` and ``sigma`` by ``d_sigma``, and
    ``rho = W^-1 t`` by ``W^-1 (dt - dW rho)``: ``[[W^-1, -W^-1 ([t]x + D_phi Jl_so3^-1), W^-1 (t - D_sigma)],
    [0, Jl_so3^-1, 0], [0, 0, 1]]`` with ``D = d(W rho)`` at fixed ``rho``."""
    rho, phi, sigma = x[..., :3], x[..., 3:6], x[..., 6:]
    a, b, c, a_s, b_s, c_s, b_t, c_t = (q.unsqueeze(-1) for q in _sim3_coefficients(phi, sigma, derivatives=True))
    K = skew(phi)
    K2 = mm3(K, K)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    W = a * eye + b * K + c * K2
    r, f = rho.unsqueeze(-1), phi.unsqueeze(-1)
    Kr = K @ r
    KKr = K @ Kr
    t = W @ r
    # d(W rho)/dphi: b K rho and c K^2 rho = c (phi phi^T - theta^2 I) rho, their coefficients through theta
    fT = f.mT
    D_phi = (-b * skew(rho) + Kr @ (b_t * fT) + c * (f @ r.mT + (fT @ r) * eye - 2 * r @ fT) + KKr @ (c_t * fT))
    D_sigma = a_s * r + b_s * Kr + c_s * KKr
    J_so3 = so3_left_jacobian_inverse(phi)
    top = torch.linalg.solve(W, torch.cat((eye.expand(W.shape), -(skew(t.squeeze(-1)) + mm3(D_phi, J_so3)),
                                           t - D_sigma), -1))
    mid = torch.cat((torch.zeros_like(K), J_so3, torch.zeros_like(r)), -1)
    bottom = torch.cat((torch.zeros_like(x[..., :6]), torch.ones_like(sigma)), -1).unsqueeze(-2)
    return torch.cat((top, mid, bottom), -2)


@operands(x=SIM3_TWIST)
def sim3_left_jacobian(x: Tensor) -> Tensor:
    """Exact left Jacobian of sim3, ``Jl(x) = int_0^1 exp(u ad(x)) du``, shape ``(..., 7, 7)``:
    ``Exp(x + d) = Exp(Jl(x) d) Exp(x)`` to first order (the inverse of
    :func:`sim3_left_jacobian_inverse`)."""
    return torch.linalg.inv(sim3_left_jacobian_inverse(x))


@operands(x=SIM3_TWIST)
def sim3_exp(x: Tensor) -> Tensor:
    """Similarity ``(..., 8)`` ``[t, qx, qy, qz, qw, s]`` of the sim3 tangent ``x = [rho, phi, sigma]``
    (pypose's layouts): ``R = Exp(phi)``, ``s = exp(sigma)``, ``t = W(phi, sigma) rho`` with
    ``W = int_0^1 exp(u sigma) Exp(u phi) du``, exact to rounding (see ``_NODES``)."""
    rho, phi, sigma = x[..., :3], x[..., 3:6], x[..., 6:]
    t = (_sim3_w(phi, sigma) @ rho.unsqueeze(-1)).squeeze(-1)
    return torch.cat((t, so3_exp(phi), sigma.exp()), dim=-1)


@operands(X=SIM3)
def sim3_log(X: Tensor) -> Tensor:
    """``Log(X)`` ``(..., 7)`` ``[rho, phi, sigma]`` of similarities ``(..., 8)``, the inverse of
    :func:`sim3_exp` (rotation angles up to pi): ``rho = W(phi, sigma)^-1 t``."""
    phi, sigma = so3_log(X[..., 3:7]), X[..., 7:].log()
    rho = torch.linalg.solve(_sim3_w(phi, sigma), X[..., :3].unsqueeze(-1)).squeeze(-1)
    return torch.cat((rho, phi, sigma), dim=-1)


@functools.lru_cache(maxsize=None)
def _twist_hat_map(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The 4x4 twist matrix ``W = [[phi]x, rho; 0, 0]`` of ``xi = [rho, phi]`` as one linear map
    ``(6, 16)`` of ``xi`` (row-major), and the 4x4 identity."""
    hat = torch.zeros(6, 4, 4, dtype=torch.float64, device="cpu")
    for i in range(3):
        hat[i, i, 3] = 1.0  # rho in the last column
    for k, (i, j) in enumerate(((2, 1), (0, 2), (1, 0))):  # [phi]x: phi_k at (i, j), -phi_k at (j, i)
        hat[3 + k, i, j], hat[3 + k, j, i] = 1.0, -1.0
    return hat.flatten(1).to(dtype=dtype, device=device), torch.eye(4, dtype=dtype, device="cpu").to(device)


@operands(xi=TWIST)
def se3_exp_matrix(xi: Tensor) -> Tensor:
    """Homogeneous matrix ``(..., 4, 4)`` of the twist ``xi = [rho, phi]`` (the matrix of
    :func:`se3_exp`): a loop that keeps its pose as a matrix (ICP's left updates) takes it in
    one product.

    The twist matrix ``W`` satisfies ``W^4 = -t^2 W^2`` (``t = |phi|``), so its exponential is
    ``I + W + a W^2 + b W^3`` with :func:`se3_exp`'s coefficients ``a = (1 - cos t)/t^2`` and
    ``b = (t - sin t)/t^3`` (series below the small angle: exact values and derivatives at every
    angle; a series-free form from ``torch.sinc`` lost up to 7e-9 in the derivative at 1e-8
    rad).  Its blocks are Rodrigues' rotation ``I + (1 - t^2 b) [phi]x + a [phi]x^2`` and
    ``Jl(phi) rho``; the products of 4x4s take a dozen ops where the blocks one by one took ~50."""
    phi = xi[..., 3:]
    a, b = _so3_coeffs((phi * phi).sum(-1, keepdim=True).unsqueeze(-1), xi.dtype)
    hat, eye = _twist_hat_map(xi.dtype, xi.device)
    W = (xi @ hat).unflatten(-1, (4, 4))
    W2 = W @ W
    return eye + W + a * W2 + b * (W2 @ W)


@operands(X=POSE)
def se3_log(X: Tensor) -> Tensor:
    """Twist ``[rho, phi]`` of poses ``(..., 7)`` (the same value as pypose's ``SE3.Log``)."""
    phi = so3_log(X[..., 3:])
    rho = (so3_left_jacobian_inverse(phi) @ X[..., :3].unsqueeze(-1)).squeeze(-1)
    return torch.cat((rho, phi), dim=-1)


@operands(X=POSE, Y=POSE)
def se3_compose(X: Tensor, Y: Tensor) -> Tensor:
    """``X * Y`` for poses ``(..., 7)``."""
    t = X[..., :3] + quat_rotate(X[..., 3:], Y[..., :3])
    return torch.cat((t, quat_mul(X[..., 3:], Y[..., 3:])), dim=-1)


@operands(X=POSE)
def se3_inverse(X: Tensor) -> Tensor:
    qi = quat_conj(X[..., 3:])
    return torch.cat((-quat_rotate(qi, X[..., :3]), qi), dim=-1)


@operands(X=SIM3, Y=SIM3)
def sim3_compose(X: Tensor, Y: Tensor) -> Tensor:
    """``X * Y`` for similarities ``(..., 8)`` ``[t, q, s]`` (``p -> s R p + t``, pypose's Sim3)."""
    t = X[..., :3] + X[..., 7:] * quat_rotate(X[..., 3:7], Y[..., :3])
    return torch.cat((t, quat_mul(X[..., 3:7], Y[..., 3:7]), X[..., 7:] * Y[..., 7:]), dim=-1)


@operands(X=SIM3)
def sim3_inverse(X: Tensor) -> Tensor:
    """``X^-1`` for similarities ``(..., 8)``: ``(-R^T t / s, q*, 1 / s)``."""
    qi = quat_conj(X[..., 3:7])
    return torch.cat((-quat_rotate(qi, X[..., :3]) / X[..., 7:], qi, X[..., 7:].reciprocal()), dim=-1)


@operands(X=SIM3)
def sim3_adjoint(X: Tensor) -> Tensor:
    """``Ad(X)`` ``(..., 7, 7)`` on ``[rho, phi, sigma]``: ``Exp(Ad(X) d) = X Exp(d) X^-1``;
    ``[[s R, [t]x R, -t], [0, R, 0], [0, 0, 1]]``."""
    t, s = X[..., :3], X[..., 7:]
    R = quat_to_matrix(X[..., 3:7])
    z3 = torch.zeros_like(R)
    top = torch.cat((s.unsqueeze(-1) * R, mm3(skew(t), R), -t.unsqueeze(-1)), -1)
    mid = torch.cat((z3, R, torch.zeros_like(t).unsqueeze(-1)), -1)
    bottom = torch.cat((torch.zeros_like(X[..., :6]), torch.ones_like(s)), -1).unsqueeze(-2)
    return torch.cat((top, mid, bottom), -2)


@operands(X=POSE, p=POINT)
def se3_act(X: Tensor, p: Tensor) -> Tensor:
    """``X * p`` for poses ``(..., 7)`` and points ``(..., 3)``."""
    return X[..., :3] + quat_rotate(X[..., 3:], p)


@operands(X=POSE)
def se3_to_matrix(X: Tensor) -> Tensor:
    """Homogeneous matrices ``(..., 4, 4)`` of poses ``(..., 7)``."""
    R = quat_to_matrix(X[..., 3:])
    top = torch.cat((R, X[..., :3].unsqueeze(-1)), dim=-1)
    bottom = X.new_zeros(X.shape[:-1] + (1, 4))
    bottom[..., 0, 3] = 1
    return torch.cat((top, bottom), dim=-2)


@operands(T=MATRIX34)
def matrix_to_se3(T: Tensor) -> Tensor:
    """Poses ``(..., 7)`` of homogeneous ``(..., 4, 4)`` or ``(..., 3, 4)`` matrices."""
    return torch.cat((T[..., :3, 3], matrix_to_quat(T[..., :3, :3])), dim=-1)


@operands(X=POSE)
def se3_adjoint(X: Tensor) -> Tensor:
    """``Ad(X) = [[R, [t]x R], [0, R]]``, shape ``(..., 6, 6)``, for ``[rho, phi]`` twists."""
    R = quat_to_matrix(X[..., 3:])
    top = torch.cat((R, mm3(skew(X[..., :3]), R)), dim=-1)
    bottom = torch.cat((torch.zeros_like(R), R), dim=-1)
    return torch.cat((top, bottom), dim=-2)


@operands(xi=TWIST)
def se3_ad(xi: Tensor) -> Tensor:
    """The Lie algebra's adjoint ``ad(xi) = [[[phi]x, [rho]x], [0, [phi]x]]``, shape ``(..., 6, 6)``,
    for ``[rho, phi]`` twists: ``ad(x) y`` is the bracket ``[x, y]``, the derivative of ``Ad(Exp(t x))``
    at ``t = 0``."""
    P, R = skew(xi[..., 3:]), skew(xi[..., :3])
    top = torch.cat((P, R), dim=-1)
    bottom = torch.cat((torch.zeros_like(P), P), dim=-1)
    return torch.cat((top, bottom), dim=-2)


@operands(xi=TWIST)
def se3_left_jacobian_inverse(xi: Tensor) -> Tensor:
    """Exact ``Jl(xi)^-1`` of se3, shape ``(..., 6, 6)``."""
    rho, phi = xi[..., :3], xi[..., 3:]
    Ji = so3_left_jacobian_inverse(phi)
    Q = _se3_Q(rho, phi)
    top = torch.cat((Ji, -mm3(mm3(Ji, Q), Ji)), dim=-1)
    bottom = torch.cat((torch.zeros_like(Ji), Ji), dim=-1)
    return torch.cat((top, bottom), dim=-2)


@operands(xi=TWIST, w=TWIST)
def se3_left_jacobian_inverse_transpose_times(xi: Tensor, w: Tensor) -> Tensor:
    """``Jl(xi)^-T w``, shape ``(..., 6)``, without forming the matrix: with
    ``Jl^-1 = [[Ji, -Ji Q Ji], [0, Ji]]`` it is ``[z, Ji^T (w2 - Q^T z)]``, ``z = Ji^T w1``, each a
    few cross and dot products (what differentiating ``Jr^-1(e)^T w`` in ``e`` runs on)."""
    rho, phi = xi[..., :3], xi[..., 3:]
    theta2 = (phi * phi).sum(-1, keepdim=True)
    c = _so3_inverse_coeff(theta2, xi.dtype)

    def ji_t(a):  # Ji^T a = a + [phi]x a / 2 + c [phi]x^2 a
        pa = torch.linalg.cross(phi, a, dim=-1)
        return a + 0.5 * pa + c * torch.linalg.cross(phi, pa, dim=-1)

    z = ji_t(w[..., :3])
    v, c1, k, m = _se3_Q_parts(rho, phi, theta2)
    # Q = [v]x + (c1 rho + k phi) phi^T + c1 phi rho^T + m I, transposed onto z
    qz = (-torch.linalg.cross(v, z, dim=-1) + phi * ((c1 * rho + k * phi) * z).sum(-1, keepdim=True)
          + c1 * rho * (phi * z).sum(-1, keepdim=True) + m * z)
    return torch.cat((z, ji_t(w[..., 3:] - qz)), dim=-1)


@operands(xi=TWIST)
def se3_right_jacobian_inverse(xi: Tensor) -> Tensor:
    """``Jr(xi)^-1 = Jl(-xi)^-1``: ``Log(Exp(xi) Exp(e)) = xi + Jr^-1 e + O(e^2)``."""
    return se3_left_jacobian_inverse(-xi)


@operands(Q=QUAT)
def quat_product_matrix(Q: Tensor) -> Tensor:
    """``(..., 4, 4)`` matrix ``A`` with ``A @ p = p (x) Q`` for quaternions ``p`` (column vectors).

    Makes "compose every parent with a constant" one matmul over a batch laid out ``(4, B)``.
    """
    x, y, z, w = Q.unbind(-1)
    return torch.stack(
        (w, z, -y, x,
         -z, w, x, y,
         y, -x, w, z,
         -x, -y, -z, w),
        dim=-1,
    ).unflatten(-1, (4, 4))


@operands(v=POINT)
def quat_rotation_form(v: Tensor) -> Tensor:
    """``(..., 3, 16)`` matrix ``W`` with ``W @ vec(q q^T) = R(q) v`` for unit quaternions ``q``.

    ``R(q) v`` is a quadratic form in ``q``; with the monomials ``q_i q_j`` of a batch laid out
    ``(16, B)``, rotating a constant vector by every quaternion is one matmul.
    """
    a, b, c = v.unbind(-1)
    o = torch.zeros_like(a)
    # symmetric coefficient matrices C_k (4 x 4, index order x, y, z, w), flattened row-major
    C0 = (a, b, c, o,  b, -a, o, c,  c, o, -a, -b,  o, c, -b, a)
    C1 = (-b, a, o, -c,  a, b, c, o,  o, c, -b, a,  -c, o, a, b)
    C2 = (-c, o, a, b,  o, -c, b, -a,  a, b, c, o,  b, -a, o, c)
    return torch.stack((torch.stack(C0, -1), torch.stack(C1, -1), torch.stack(C2, -1)), dim=-2)
