"""ICP arithmetic in structure-of-arrays layout: points ``(R, 3, N)``, matrices ``(R, 3, 3, N)``.

Per-point 3x3 algebra on ``(N, 3, 3)`` tensors runs at a fraction of the machine's speed (tiny
inner dimensions); laid out with the points last, every step is a handful of contiguous row
operations.  These are the Gauss-Newton pieces of point-to-plane and generalized ICP with the
left-perturbation Jacobian ``d(T p)/d xi = [I, -[q]x]`` (``q = T p``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def cross(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cross product of ``(..., 3, N)`` arrays."""
    a0, a1, a2 = a.unbind(-2)
    b0, b1, b2 = b.unbind(-2)
    return torch.stack((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0), dim=-2)


def transform(R: Tensor, t: Tensor, P: Tensor) -> Tensor:
    """``R P + t`` for ``R (R, 3, 3)``, ``t (R, 3)``, ``P (R, 3, N)``."""
    return R @ P + t.unsqueeze(-1)


def rotate_cov(R: Tensor, C: Tensor) -> Tensor:
    """``R C_n R^T`` for every point: ``R (R, 3, 3)``, ``C (R, 3, 3, N)``."""
    Rr, N = R.shape[0], C.shape[-1]
    X = (R @ C.reshape(Rr, 3, 3 * N)).reshape(Rr, 3, 3, N)  # R C
    Y = (R @ X.transpose(1, 2).reshape(Rr, 3, 3 * N)).reshape(Rr, 3, 3, N)  # R (R C)^T = R C^T R^T
    return Y.transpose(1, 2)


def inv_sym3(C: Tensor) -> Tensor:
    """Inverses of symmetric 3x3 matrices ``(..., 3, 3, N)`` (adjugate over determinant)."""
    a, b, c = C[..., 0, 0, :], C[..., 0, 1, :], C[..., 0, 2, :]
    d, e, f = C[..., 1, 1, :], C[..., 1, 2, :], C[..., 2, 2, :]
    A = d * f - e * e
    Bc = c * e - b * f
    Cc = b * e - c * d
    D = a * f - c * c
    E = b * c - a * e
    F = a * d - b * b
    det = a * A + b * Bc + c * Cc
    inv = 1.0 / det
    rows = (torch.stack((A, Bc, Cc), -2), torch.stack((Bc, D, E), -2), torch.stack((Cc, E, F), -2))
    return torch.stack(rows, -3) * inv.unsqueeze(-2).unsqueeze(-2)


def matvec(M: Tensor, v: Tensor) -> Tensor:
    """``M_n v_n`` for ``M (..., 3, 3, N)``, ``v (..., 3, N)``."""
    return (M * v.unsqueeze(-3)).sum(-2)


def gicp_system(q: Tensor, r: Tensor, M: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``H = sum w J^T M J`` ``(R, 6, 6)`` and ``g = sum w J^T M r`` ``(R, 6)`` with ``J = [I, -[q]x]``."""
    Mw = M * w.unsqueeze(-2).unsqueeze(-2)
    # K = M [q]x, column c = M (q x e_c)
    q0, q1, q2 = (c.unsqueeze(-2) for c in q.unbind(-2))  # each (R, 1, N)
    m0, m1, m2 = Mw[..., :, 0, :], Mw[..., :, 1, :], Mw[..., :, 2, :]  # columns of M, each (R, 3, N)
    K = torch.stack((m1 * q2 - m2 * q1, m2 * q0 - m0 * q2, m0 * q1 - m1 * q0), dim=-2)  # (R, 3, 3, N): [a, c]
    H11 = Mw.sum(-1)
    H12 = -K.sum(-1)
    # [q]x^T K = -[q]x K: column c = -(q x K[:, c])
    QK = torch.stack([-cross(q, K[..., :, c, :]) for c in range(3)], dim=-2)  # [a, c] = -(q x K_c)_a
    H21 = H12.transpose(-1, -2)  # H is symmetric
    H22 = QK.sum(-1)  # sum [q]x^T M [q]x = sum -[q]x K
    top = torch.cat((H11, H12), -1)
    bottom = torch.cat((H21, H22), -1)
    Hm = torch.cat((top, bottom), -2)
    Mr = matvec(Mw, r)
    g = torch.cat((Mr.sum(-1), cross(q, Mr).sum(-1)), -1)
    return Hm, g


def plane_system(q: Tensor, n: Tensor, r: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Point-to-plane: ``J = [n; q x n]`` per point (``r = n . (q - p)``)."""
    J = torch.cat((n, cross(q, n)), dim=-2)  # (R, 6, N)
    Jw = J * w.unsqueeze(-2)
    return Jw @ J.transpose(-1, -2), (Jw * r.unsqueeze(-2)).sum(-1)


def covariances(P: Tensor, neighbors: Tensor) -> Tensor:
    """Neighbourhood covariances ``(3, 3, N)`` of points ``P (3, N)`` from indices ``(N, k)``."""
    G = P[:, neighbors]  # (3, N, k)
    c = G - G.mean(-1, keepdim=True)
    k = neighbors.shape[1]
    x, y, z = c.unbind(0)
    xx, yy, zz = (x * x).sum(-1) / k, (y * y).sum(-1) / k, (z * z).sum(-1) / k
    xy, xz, yz = (x * y).sum(-1) / k, (x * z).sum(-1) / k, (y * z).sum(-1) / k
    return torch.stack((torch.stack((xx, xy, xz)), torch.stack((xy, yy, yz)), torch.stack((xz, yz, zz))))


def normals(C: Tensor) -> Tensor:
    """Unit normals ``(3, N)``: smallest-eigenvalue eigenvectors of ``C (3, 3, N)`` (closed form)."""
    a00, a11, a22 = C[0, 0], C[1, 1], C[2, 2]
    a01, a02, a12 = C[0, 1], C[0, 2], C[1, 2]
    q = (a00 + a11 + a22) / 3
    p1 = a01 * a01 + a02 * a02 + a12 * a12
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p = torch.sqrt(((b00 * b00 + b11 * b11 + b22 * b22 + 2 * p1) / 6).clamp_min(1e-300))
    det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02)) / (p * p * p)
    phi = torch.acos((det / 2).clamp(-1, 1)) / 3
    lam = q + 2 * p * torch.cos(phi + 2 * torch.pi / 3)
    r0 = torch.stack((a00 - lam, a01, a02))
    r1 = torch.stack((a01, a11 - lam, a12))
    r2 = torch.stack((a02, a12, a22 - lam))
    c0, c1, c2 = cross(r0, r1), cross(r0, r2), cross(r1, r2)
    s0, s1, s2 = (c0 * c0).sum(0), (c1 * c1).sum(0), (c2 * c2).sum(0)
    use1 = (s1 > s0) & (s1 >= s2)  # the best-conditioned cross product, without argmax
    use2 = (s2 > s0) & (s2 > s1)
    n = torch.where(use2, c2, torch.where(use1, c1, c0))
    nn = torch.sqrt(torch.where(use2, s2, torch.where(use1, s1, s0)))
    fallback = torch.zeros_like(n)
    fallback[2] = 1.0  # an isotropic neighbourhood has no preferred normal
    return torch.where(nn > 1e-30, n / nn.clamp_min(1e-300), fallback)


def plane_covariances(n: Tensor, eps: float = 1e-3) -> Tensor:
    """GICP's regularized covariances ``I - (1 - eps) n n^T`` as ``(3, 3, N)``."""
    eye = torch.eye(3, dtype=n.dtype, device=n.device).unsqueeze(-1)
    return eye - (1 - eps) * n.unsqueeze(1) * n.unsqueeze(0)
