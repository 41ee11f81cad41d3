"""Closed-form Jacobians where they pay: SE3 acting on points, SE3 between residuals.

All in the left-perturbation, ``[rho, phi]`` convention of the rest of robojac, on plain
tensors in pypose's layout (LieTensors are accepted too), with any leading batch dims.  Each
is tested against autodiff through :func:`robojac.jacobian.modjac` and central differences
on the manifold.
"""

from __future__ import annotations

import pypose as pp
import torch
from torch import Tensor

from .. import lie
from ..lie import skew
from ._divergence import batch_jacobian

__all__ = ["between_curvature", "se3_act_jacobian", "SE3BetweenResidual", "se3_between", "whiten"]


def _raw(x):
    return x.as_subclass(Tensor) if isinstance(x, pp.LieTensor) else x


def se3_act_jacobian(T: Tensor, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(q, dq/dT, dq/dp)`` for ``q = T * p``: shapes ``(..., 3)``, ``(..., 3, 6)``, ``(..., 3, 3)``.

    ``dq/dT = [I, -[q]x]`` (left tangent of ``T``), ``dq/dp = R``.  ``T`` and ``p`` broadcast.
    """
    T = _raw(T)
    if T.shape[-1] != 7 or p.shape[-1] != 3:
        raise ValueError(f"se3_act_jacobian: expected T (..., 7) and p (..., 3), got {tuple(T.shape)} and {tuple(p.shape)}")
    q = lie.se3_act(T, p)
    eye = torch.eye(3, dtype=q.dtype, device=q.device).expand(q.shape[:-1] + (3, 3))
    J_T = torch.cat((eye, -skew(q)), dim=-1)
    R = lie.quat_to_matrix(T[..., 3:])
    return q, J_T, R.expand(q.shape[:-1] + (3, 3))


def se3_between(Ti: Tensor, Tj: Tensor, Z: Tensor) -> Tensor:
    """``Log(Z^-1 Ti^-1 Tj)``, shape ``(..., 6)``: the error of a relative-pose measurement ``Z``."""
    Ti, Tj, Z = _raw(Ti), _raw(Tj), _raw(Z)
    return lie.se3_log(lie.se3_compose(lie.se3_inverse(Z), lie.se3_compose(lie.se3_inverse(Ti), Tj)))


class SE3BetweenResidual:
    """The pose-graph edge residual ``r = L Log(Z^-1 Ti^-1 Tj)`` with ``Omega = L^T L``.

    Call it as a residual function ``(Ti, Tj, Z[, L]) -> (..., 6)``; its
    :meth:`value_and_jacobians` gives the two ``(..., 6, 6)`` blocks in closed form:
    ``dr/dTj = L Jr^-1(e) Ad(Tj^-1)`` and ``dr/dTi = -dr/dTj`` (``e`` the unwhitened error),
    which :func:`~robojac.jacobian.block_sparse_jacobian` uses instead of autodiff.
    ``opposite_jacobians`` says so to the solver engine (one product per edge, not four).
    :meth:`curvature` gives the residual's second-order term, which the engine's implicit
    backward needs for the exact Hessian of one large graph.
    """

    opposite_jacobians = True

    def __call__(self, Ti: Tensor, Tj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None) -> Tensor:
        return whiten(se3_between(Ti, Tj, Z), sqrt_info)

    def value_and_jacobians(self, Ti: Tensor, Tj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None):
        r, later = self.linearize(Ti, Tj, Z, sqrt_info)
        return r, later()

    def linearize(self, Ti: Tensor, Tj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None):
        """``(r, later)``: the residual now, its blocks from ``later()`` (computed only if used)."""
        e = se3_between(Ti, Tj, Z)
        return whiten(e, sqrt_info), lambda: self.jacobians_at(e, Tj, sqrt_info)

    def curvature(self, v: Tensor, Ti: Tensor, Tj: Tensor, Z: Tensor, sqrt_info: Tensor | None = None) -> Tensor:
        """``sum_k v_k d^2 r_k``, shape ``(..., 12, 12)``: the residual's second derivatives in the
        left tangents ``[a, b]`` of ``(Ti, Tj)``, weighted by ``v (..., 6)`` (the exact Hessian of a
        cost ``0.5 |r|^2`` is ``J^T J`` plus this with ``v = r``); see :func:`between_curvature`.
        ``Jr^-1(e)^T w`` is differentiated matrix-free
        (:func:`~robojac.lie.se3_left_jacobian_inverse_transpose_times`)."""
        Ti, Tj, Z = _raw(Ti), _raw(Tj), _raw(Z)
        e = se3_between(Ti, Tj, Z)
        return between_curvature(v, e, lie.se3_adjoint(lie.se3_inverse(Tj)), lie.se3_right_jacobian_inverse,
                                 lie.se3_ad(torch.eye(6, dtype=e.dtype, device=e.device)), sqrt_info,
                                 transpose_times=lambda y, w: lie.se3_left_jacobian_inverse_transpose_times(-y, w))

    @staticmethod
    def error(Ti: Tensor, Tj: Tensor, Z: Tensor) -> Tensor:
        """The unwhitened error ``e = Log(Z^-1 Ti^-1 Tj)``, from which :meth:`jacobians_at` continues."""
        return se3_between(Ti, Tj, Z)

    @staticmethod
    def jacobians_at(e: Tensor, Tj: Tensor, sqrt_info: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(dr/dTi, dr/dTj)`` at the unwhitened error ``e`` of :meth:`error` (the residual's
        value is not recomputed: a solver can take the cost first and the Jacobian only if it
        needs it)."""
        Tj_raw = _raw(Tj)
        # Jr^-1 = [[A, B], [0, A]] and Ad(Tj^-1) = [[R, S], [0, R]]: three 3x3 products
        Jr = lie.se3_right_jacobian_inverse(e)
        A, B = Jr[..., :3, :3], Jr[..., :3, 3:]
        inv = lie.se3_inverse(Tj_raw)
        R = lie.quat_to_matrix(inv[..., 3:])
        S = skew(inv[..., :3]) @ R
        AR = (A @ R)
        top = torch.cat((AR, (A @ S) + (B @ R)), dim=-1)
        Jj = torch.cat((top, torch.cat((torch.zeros_like(AR), AR), dim=-1)), dim=-2)
        if sqrt_info is not None:
            Jj = sqrt_info @ Jj
        return -Jj, Jj


def between_curvature(v: Tensor, e: Tensor, A: Tensor, right_jacobian_inverse, ad_basis: Tensor,
                      sqrt_info: Tensor | None = None, *, transpose_times=None) -> Tensor:
    """``sum_k v_k d^2 r_k`` ``(..., 2t, 2t)`` of a between residual ``r = L Log(Z^-1 Xi^-1 Xj)`` on
    any Lie group, in the left tangents ``[a, b]`` of ``(Xi, Xj)``, weighted by ``v (..., t)``.

    With ``E = Z^-1 Xi^-1 Xj`` (error ``e = Log E``) and ``A = Ad(Xj^-1)``, the perturbed error is
    ``Log(E Exp(-A a) Exp(A b)) = Log(E Exp(g))``, ``g = beta - alpha - [alpha, beta] / 2 + ...``
    (Baker-Campbell-Hausdorff, ``alpha = A a``, ``beta = A b``), and
    ``Log(E Exp(g)) = e + K g + (1/2) g^T N g + ...`` with ``K = Jr^-1(e)``, where ``w^T N`` is
    the derivative of ``Jr^-1(e + x)^T w`` along ``x = K g``.  So, for ``w = L^T v`` and
    ``u = K^T w``: the symmetric part of ``N`` on ``beta - alpha``, and the bracket's
    ``-u^T [alpha, beta] / 2`` across the two.  ``N`` is a ``t x t`` Jacobian per factor from the
    Jacobian core (:func:`~robojac.jacobian.batch_jacobian`, stacked reverse mode: no function
    transforms or forward-mode AD, whose first use in a process costs ~1 s more); the rest is
    closed form.

    ``right_jacobian_inverse(e) -> (..., t, t)``; ``ad_basis (t, t, t)``: ``ad(e_i)`` of the
    basis twists; ``transpose_times(y, w)``: ``Jr^-1(y)^T w`` without the matrix, if the group
    has one.  The result is a value: ``N`` carries no graph, so it is not differentiated further.
    Checked against autograd's Hessian and second differences in the tests."""
    w = v if sqrt_info is None else (sqrt_info.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
    K = right_jacobian_inverse(e)
    t, shape = e.shape[-1], e.shape[:-1]
    flat_e, flat_w = e.reshape(-1, t), w.expand(shape + (t,)).reshape(-1, t)
    pulled = transpose_times or (lambda y, w: (right_jacobian_inverse(y).transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1))
    D = batch_jacobian(lambda x, e, w: pulled(e + x, w), torch.zeros_like(flat_e), strategy="reverse-stacked",
                       args=(flat_e, flat_w))
    N = D.reshape(shape + (t, t)) @ K
    S = 0.5 * (N + N.transpose(-1, -2))  # on beta - alpha
    u = (K.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)
    C = -0.5 * torch.einsum("ikj,...k->...ij", ad_basis, u)  # -u^T [alpha, beta] / 2 = alpha^T C beta
    # in [a, b] = diag(A, A)^-1 [alpha, beta]: [[P, Q - P], [Q^T - P, P]], P = A^T S A, Q = A^T C A
    At = A.transpose(-1, -2)
    P, Q = At @ S @ A, At @ C @ A
    return torch.cat((torch.cat((P, Q - P), -1), torch.cat((Q.transpose(-1, -2) - P, P), -1)), -2)


def whiten(e: Tensor, sqrt_info: Tensor | None) -> Tensor:
    """``L e`` for errors ``e (..., d)`` and square-root information ``L (..., d, d)`` (``e`` without one)."""
    return e if sqrt_info is None else (sqrt_info @ e.unsqueeze(-1)).squeeze(-1)
