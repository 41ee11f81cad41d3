"""ICP arithmetic in structure-of-arrays layout: points ``(R, 3, N)``, matrices ``(R, 3, 3, N)``,
symmetric matrices as their 6 distinct entries ``(R, 6, N)``.

Per-point 3x3 algebra on ``(N, 3, 3)`` tensors runs at a fraction of the machine's speed (tiny
inner dimensions); laid out with the points last, every step is a handful of contiguous row
operations.  These are the Gauss-Newton pieces of point-to-plane and generalized ICP with the
left-perturbation Jacobian ``d(T p)/d xi = [I, -[q]x]`` (``q = T p``); GICP's system is
assembled from moment sums (:func:`gicp_system`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ..lie import cross_rows


def transform(R: Tensor, t: Tensor, P: Tensor) -> Tensor:
    """``R P + t`` for ``R (R, 3, 3)``, ``t (R, 3)``, ``P (R, 3, N)``."""
    return R @ P + t.unsqueeze(-1)


# Symmetric 3x3 matrices are stored as their 6 distinct entries ``[xx, xy, xz, yy, yz, zz]``
# along the second-to-last axis: ``(..., 6, N)``.
SYM6 = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
_SYM_I = [0, 0, 0, 1, 1, 2]
_SYM_J = [0, 1, 2, 1, 2, 2]
FULL9 = [0, 1, 2, 1, 3, 4, 2, 4, 5]  # row-major 3x3 entry -> its slot among the 6
_DIAG = [0, 3, 5]


_INDEX: dict = {}


def _rows(x: Tensor, idx: list[int]) -> Tensor:
    """``x[..., idx, :]`` through ``index_select`` (several times faster than advanced indexing)."""
    key = (tuple(idx), x.device)
    t = _INDEX.get(key)
    if t is None:
        t = _INDEX[key] = torch.tensor(idx, device=x.device)
    return x.index_select(-2, t)


def sym6_identity(*shape, dtype=None, device=None) -> Tensor:
    """Identity matrices in the 6-entry layout: ``(*shape[:-1], 6, shape[-1])``."""
    out = torch.zeros(*shape[:-1], 6, shape[-1], dtype=dtype, device=device)
    out[..., _DIAG, :] = 1.0
    return out


def sym6_plane_covariances(n: Tensor, eps: float = 1e-3) -> Tensor:
    """GICP's regularized covariances ``I - (1 - eps) n n^T`` of unit normals ``n (..., 3, N)``."""
    out = -(1 - eps) * _rows(n, _SYM_I) * _rows(n, _SYM_J)
    out[..., _DIAG, :] += 1.0
    return out


def sym6_rotation(R: Tensor) -> Tensor:
    """``K (..., 6, 6)`` with ``sym6(R C R^T) = K @ sym6(C)`` for any symmetric ``C``."""
    RR = _rows(R, _SYM_I).unsqueeze(-1) * _rows(R, _SYM_J).unsqueeze(-2)  # (..., 6, 3, 3): R[a, c] R[b, d]
    return RR.flatten(-2) @ _fold(R.dtype, R.device)


@functools.lru_cache(maxsize=None)
def _fold(dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(9, 6)``: sums the ``(c, d)`` and ``(d, c)`` terms of a row-major 3x3 into one slot of six."""
    fold = torch.zeros(9, 6, dtype=dtype, device=device)
    fold[torch.arange(9, device=device), FULL9] = 1.0
    return fold


_COF_A = [3, 2, 1, 0, 1, 0]
_COF_B = [5, 4, 4, 5, 2, 3]
_COF_C = [4, 1, 2, 2, 0, 1]
_COF_D = [4, 5, 3, 2, 4, 1]


def sym6_inverse(C: Tensor) -> Tensor:
    """Inverses of symmetric 3x3 matrices ``(..., 6, N)`` (adjugate over determinant); the
    gradients' ``_inverse3`` goes through it too."""
    cof = _rows(C, _COF_A) * _rows(C, _COF_B) - _rows(C, _COF_C) * _rows(C, _COF_D)
    det = (C[..., :3, :] * cof[..., :3, :]).sum(-2, keepdim=True)
    return cof / det


def sym6_matvec(M: Tensor, v: Tensor) -> Tensor:
    """``M_n v_n`` for ``M (..., 6, N)``, ``v (..., 3, N)``."""
    M9 = _rows(M, FULL9).unflatten(-2, (3, 3))
    return (M9 * v.unsqueeze(-3)).sum(-2)


def monomials(q: Tensor) -> Tensor:
    """``[1, q0, q1, q2, q0q0, q0q1, q0q2, q1q1, q1q2, q2q2]`` per point: ``(..., 10, N)``."""
    return torch.cat((torch.ones_like(q[..., :1, :]), q, _rows(q, _SYM_I) * _rows(q, _SYM_J)), dim=-2)


@functools.lru_cache(maxsize=None)
def _gicp_maps(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Constant maps from moment sums to the Gauss-Newton system of ``J = [I, -[q]x]``.

    ``J(q) = J0 + sum_c q_c J_c`` is affine in ``q``, so ``J^T M J`` is bilinear in the 6 entries
    of ``M`` and the 10 monomials of ``q``; ``J^T v`` bilinear in ``v`` and ``[1, q]``.  Returns
    ``A^T (60, 36)`` and ``B^T (12, 6)`` with ``vec H = A vec(sum w M6 m^T)`` and ``g = B vec(sum v [1, q]^T)``.
    """
    J0 = torch.zeros(3, 6, dtype=torch.float64, device="cpu")
    J0[:, :3] = torch.eye(3, dtype=torch.float64, device="cpu")
    Jc = []
    for c in range(3):
        e = torch.zeros(3, dtype=torch.float64, device="cpu")
        e[c] = 1.0
        S = torch.zeros(3, 3, dtype=torch.float64, device="cpu")  # [e]x
        S[0, 1], S[0, 2], S[1, 0], S[1, 2], S[2, 0], S[2, 1] = -e[2], e[1], e[2], -e[0], -e[1], e[0]
        J = torch.zeros(3, 6, dtype=torch.float64, device="cpu")
        J[:, 3:] = -S
        Jc.append(J)
    A = torch.zeros(6, 6, 6, 10, dtype=torch.float64, device="cpu")
    for m, (a, b) in enumerate(SYM6):
        E = torch.zeros(3, 3, dtype=torch.float64, device="cpu")
        E[a, b] = E[b, a] = 1.0
        A[:, :, m, 0] = J0.T @ E @ J0
        for c in range(3):
            A[:, :, m, 1 + c] = J0.T @ E @ Jc[c] + Jc[c].T @ E @ J0
        for k, (c, d) in enumerate(SYM6):
            A[:, :, m, 4 + k] = Jc[c].T @ E @ Jc[c] if c == d else Jc[c].T @ E @ Jc[d] + Jc[d].T @ E @ Jc[c]
    B = torch.stack([J0.T] + [J.T for J in Jc], dim=-1)  # (6, 3, 4)
    return (A.reshape(36, 60).T.contiguous().to(dtype=dtype, device=device),
            B.reshape(6, 12).T.contiguous().to(dtype=dtype, device=device))


def gicp_system(q: Tensor, Mr: Tensor, M: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """``H = sum w J^T M J`` ``(R, 6, 6)`` and ``g = sum w J^T M r`` ``(R, 6)`` with ``J = [I, -[q]x]``,
    from ``q (R, 3, N)``, ``Mr = M r (R, 3, N)``, ``M (R, 6, N)`` and weights ``w (R, N)``: two
    batched matrix products of moment sums and two constant maps."""
    At, Bt = _gicp_maps(q.dtype, q.device)
    G = monomials(q)  # (R, 10, N)
    wt = w.unsqueeze(-2)
    S = (M * wt) @ G.transpose(-1, -2)  # (R, 6, 10)
    V = (Mr * wt) @ G[..., :4, :].transpose(-1, -2)  # (R, 3, 4)
    H = (S.flatten(-2) @ At).unflatten(-1, (6, 6))
    g = V.flatten(-2) @ Bt
    return H, g


def plane_system(q: Tensor, n: Tensor, r: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Point-to-plane: ``J = [n; q x n]`` per point (``r = n . (q - p)``)."""
    J = torch.cat((n, cross_rows(q, n)), dim=-2)  # (R, 6, N)
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
    c0, c1, c2 = cross_rows(r0, r1), cross_rows(r0, r2), cross_rows(r1, r2)
    s0, s1, s2 = (c0 * c0).sum(0), (c1 * c1).sum(0), (c2 * c2).sum(0)
    use1 = (s1 > s0) & (s1 >= s2)  # the best-conditioned cross product, without argmax
    use2 = (s2 > s0) & (s2 > s1)
    n = torch.where(use2, c2, torch.where(use1, c1, c0))
    nn = torch.sqrt(torch.where(use2, s2, torch.where(use1, s1, s0)))
    fallback = torch.zeros_like(n)
    fallback[2] = 1.0  # an isotropic neighbourhood has no preferred normal
    return torch.where(nn > 1e-30, n / nn.clamp_min(1e-300), fallback)
