"""The IK iteration in torch, for large batches and any device (see :func:`robojac.ik.solve`).

The same algorithm as :mod:`._lm_numpy`, which serves the latency-bound small rounds on the CPU
(a lone Panda target: 0.67 ms there against 4.5 ms here; the measurement is written there).

Each iteration works only on the problems still running, gathered into a batch padded to a
power of two (a handful of distinct sizes, so the chain's per-size workspaces are reused as the
set shrinks), and solves its ``dof x dof`` systems structure-of-arrays
(:func:`robojac.optim.spd_solve_soa`), several times faster than batched LAPACK at this size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..kinematics import Chain
from ..optim import spd_solve_soa
from ._step import LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, RIDGE, Problem, on_joints, wrap_into
from ._targets import pose_errors

__all__ = ["lm_torch"]


def _bucket(n: int, P: int) -> int:
    return min(P, max(16, 1 << (n - 1).bit_length()))


def _normal_equations(J: Tensor, e: Tensor, w2: Tensor) -> tuple[Tensor, Tensor]:
    """``(J^T W J (dof, dof, n), J^T W e (dof, n))``, structure-of-arrays, for ``J (n, rows, dof)``:
    one rank-1 update per error row, over the contiguous batch (a batched matmul of 7x6 blocks
    is twice as slow, a single broadcast product allocates rows x more)."""
    Js = J.permute(1, 2, 0).contiguous()  # (rows, dof, n)
    JW = Js * w2[:, None, None]
    A = JW[0].unsqueeze(1) * Js[0].unsqueeze(0)
    for r in range(1, Js.shape[0]):
        A.addcmul_(JW[r].unsqueeze(1), Js[r].unsqueeze(0))
    return A, (JW * e.T.unsqueeze(1)).sum(0)


def _solve(A: Tensor, b: Tensor) -> Tensor:
    """``x (n, ...)`` solving structure-of-arrays systems ``A (d, d, n)``, ``b (d, n)`` or ``(d, k, n)``
    (zero where ``A`` is not positive definite)."""
    x, ok = spd_solve_soa(A, b, min_pivot=torch.finfo(A.dtype).eps * 1e-3)
    x = x.movedim(-1, 0)
    good = ok & torch.isfinite(x).flatten(1).all(1)
    return torch.where(good.view((-1,) + (1,) * (x.dim() - 1)), x, torch.zeros_like(x))


def lm_torch(chain: Chain, frame: str, T: Tensor, q: Tensor, pb: Problem):
    """Damped least squares for problems ``(P,)`` (targets ``T (P, 7|3)``, starts ``q (P, dof)``)
    in groups of ``pb.group`` restarts; returns ``(q, pos_err, rot_err, solved, iterations)``.

    Joints off the frame's path (not in ``pb.drive``: the Panda's fingers when the frame is the
    hand, the other limbs of a humanoid) keep their starting values and stay out of the linear
    algebra: TALOS's left arm solves 9 x 9 systems instead of 32 x 32 (3.6x the targets per second)."""
    if pb.drive is None:
        return _lm(chain, frame, T, q, pb, None)
    qr, pe, re, solved, iters = _lm(chain, frame, T, q, on_joints(pb, pb.drive), pb.drive)
    return q.index_copy(1, pb.drive, qr), pe, re, solved, iters


def _lm(chain: Chain, frame: str, T: Tensor, q_full: Tensor, pb: Problem, drive: Tensor | None):
    """:func:`lm_torch` over the joints ``drive`` of ``q_full`` (all when ``None``); returns their values."""
    rows_e = 3 if pb.position_only else 6

    def evaluate(qr: Tensor, rows: Tensor | None):
        qf = qr if drive is None else (q_full if rows is None else q_full[rows]).index_copy(1, drive, qr)
        X, J = chain.pose_and_jacobian(qf, frame)
        J = J[:, :rows_e]
        return X, (J if drive is None else J.index_select(2, drive)).contiguous()

    q = q_full if drive is None else q_full.index_select(1, drive)
    P, dof = q.shape
    dt, dev = q.dtype, q.device
    lo, hi, turn = pb.lower, pb.upper, pb.turn
    w2 = pb.weights2[:rows_e]
    X, J = evaluate(q, None)
    e, pe, re = pose_errors(X, T, pb.position_only)
    cost = (w2 * e * e).sum(-1)
    lam = torch.full((P,), pb.lambda_initial, dtype=dt, device=dev)
    solved = (pe < pb.position_tolerance) & (re < pb.orientation_tolerance)
    iters = torch.zeros(P, dtype=torch.long, device=dev)
    rest = pb.rest_pose
    for _ in range(pb.max_iterations):
        active = ~solved & (lam < LAMBDA_MAX)
        if pb.group > 1:
            active &= ~solved.view(-1, pb.group).any(1).repeat_interleave(pb.group)
        idx = torch.nonzero(active).squeeze(1)
        n = idx.numel()
        if n == 0:
            break
        full = 2 * n > P  # most still running: step all, keep the active ones' results (no gather/scatter)
        if full:
            idx_p, qa, Ja, ea, la, Ta = None, q, J, e, lam, T
        else:
            pad = _bucket(n, P)
            idx_p = torch.cat((idx, idx[:1].expand(pad - n))) if pad > n else idx
            qa, Ja, ea, la, Ta = q[idx_p], J[idx_p], e[idx_p], lam[idx_p], T[idx_p]
        A, b = _normal_equations(Ja, ea, w2)
        Ad = A.clone()
        diag = Ad.diagonal(dim1=0, dim2=1)  # (n, dof), a view of Ad
        ridge = (RIDGE * torch.finfo(dt).eps) * diag.amax(1, keepdim=True) + torch.finfo(dt).tiny
        diag.mul_(1.0 + la[:, None]).add_(ridge)
        if rest is None:
            dq = _solve(Ad, b)
        else:  # pull toward the rest pose inside the (damped) null space of the task
            d = rest - qa
            A_d = (A * d.T.unsqueeze(0)).sum(1)  # (dof, n): A d
            x = _solve(Ad, torch.stack((b, A_d), 1))
            dq = x[..., 0] + pb.nullspace_gain * (d - x[..., 1])
        qn = wrap_into(qa + dq, lo, hi, turn)
        viol = (qn < lo) | (qn > hi)
        rows = torch.nonzero(viol.any(1)).squeeze(1)
        if rows.numel():  # freeze the joints that would leave their range, re-solve for the others
            keep = (~viol[rows]).T.to(dt)
            A2 = Ad[:, :, rows] * keep.unsqueeze(1) * keep.unsqueeze(0)
            A2.diagonal(dim1=0, dim2=1).add_(viol[rows].to(dt))
            qn[rows] = wrap_into(qa[rows] + _solve(A2, b[:, rows] * keep), lo, hi, turn)
        qn = torch.maximum(torch.minimum(qn, hi), lo)
        Xn, Jn = evaluate(qn, idx_p)
        en, pen, ren = pose_errors(Xn, Ta, pb.position_only)
        cn = (w2 * en * en).sum(-1)
        if full:
            better = (cn < cost) & active
            q, J, e = torch.where(better[:, None], qn, q), torch.where(better[:, None, None], Jn, J), \
                torch.where(better[:, None], en, e)
            pe, re, cost = torch.where(better, pen, pe), torch.where(better, ren, re), torch.where(better, cn, cost)
            lam = torch.where(better, (lam * LAMBDA_DOWN).clamp_min(LAMBDA_MIN), torch.where(active, lam * LAMBDA_UP, lam))
            iters += active
            solved = solved | (better & (pen < pb.position_tolerance) & (ren < pb.orientation_tolerance))
            continue
        cn = cn[:n]
        better = cn < cost[idx]
        took = better.nonzero().squeeze(1)  # accepted steps: write only those back
        acc = idx[took]
        q[acc], J[acc], e[acc] = qn[took], Jn[took], en[took]
        pe[acc], re[acc], cost[acc] = pen[took], ren[took], cn[took]
        la = la[:n]
        lam[idx] = torch.where(better, (la * LAMBDA_DOWN).clamp_min(LAMBDA_MIN), la * LAMBDA_UP)
        iters[idx] += 1
        solved[acc] = (pen[took] < pb.position_tolerance) & (ren[took] < pb.orientation_tolerance)
    return q, pe, re, solved, iters
