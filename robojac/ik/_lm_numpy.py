"""The IK iteration in numpy float64, for small batches on the CPU (one target and its restarts).

The same steps as the solver engine takes for IK (:mod:`._lm_engine`; see :func:`robojac.ik.solve`
for the step rule), kept twice for a measured reason: a single target is latency-bound, and
numpy's per-call cost is a fraction of torch's on arrays this small (a lone Panda target,
``IKConfig(engine=...)``, medians of 300 on this 2-core machine, 2026-12-05: 0.71 ms here,
6.5 ms on the engine; the torch loop the engine replaced took 4.5 ms).  Every problem
is stepped each iteration (masked, not gathered), so the number of calls per step (about a
hundred) does not grow with the number of problems.  The tests check both take the same steps.
"""

from __future__ import annotations

import numpy as np

from ..optim import wrap_periodic
from ._path import SerialPath, rotation_error
from ._step import LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, RIDGE, TRUSTED, Problem, on_joints

_EPS, _TINY = np.finfo(np.float64).eps, np.finfo(np.float64).tiny

__all__ = ["lm_numpy", "frame_errors"]


def frame_errors(path: SerialPath, q: np.ndarray, Rt: np.ndarray, pt: np.ndarray, position_only: bool,
                 jacobian: bool = True, evaluated=None):
    """``(Jt (P, dof, 6|3), error (P, 6|3), position error, rotation error)`` of ``q``
    (``evaluated``: ``path.evaluate(q)`` when the caller has it already)."""
    R, p, Jt = path.evaluate(q, jacobian) if evaluated is None else evaluated
    dp = pt - p
    pe = np.sqrt((dp * dp).sum(-1))
    if position_only:
        return (None if Jt is None else Jt[..., :3]), dp, pe, np.zeros_like(pe)
    dr, re = rotation_error(Rt, R)
    return Jt, np.concatenate((dp, dr), -1), pe, re


def lm_numpy(path: SerialPath, Rt: np.ndarray, pt: np.ndarray, q: np.ndarray, pb: Problem, evaluated=None):
    """Damped least squares for ``P`` problems (``q (P, dof)``, targets ``Rt (P, 3, 3)``, ``pt (P, 3)``)
    in groups of ``pb.group`` restarts of one target; returns ``(q, pos_err, rot_err, solved, iterations)``.
    Joints off the frame's path (not in ``pb.drive``) keep their starting values.  ``evaluated``:
    ``path.evaluate(q)`` when known (starts from the start table)."""
    if pb.drive is None:
        return _lm(path, Rt, pt, q, pb, None, evaluated)
    qr, pe, re, solved, iters = _lm(path, Rt, pt, q, on_joints(pb, pb.drive), pb.drive, evaluated)
    out = q.copy()
    out[:, pb.drive] = qr
    return out, pe, re, solved, iters


def _lm(path: SerialPath, Rt: np.ndarray, pt: np.ndarray, q_full: np.ndarray, pb: Problem, drive: np.ndarray | None,
        evaluated=None):
    """:func:`lm_numpy` over the joints ``drive`` of ``q_full`` (all when ``None``); returns their values."""

    def errors(qr: np.ndarray, known=None):  # known: the path's evaluation of qr, when given
        if drive is None:
            return frame_errors(path, qr, Rt, pt, pb.position_only, evaluated=known)
        qf = q_full.copy()
        qf[:, drive] = qr
        Jt, e, pe, re = frame_errors(path, qf, Rt, pt, pb.position_only, evaluated=known)
        return Jt[:, drive], e, pe, re

    q = (q_full if drive is None else q_full[:, drive]).copy()
    P, dof = q.shape
    lo, hi, turn = pb.lower, pb.upper, pb.turn
    w2 = pb.weights2[: 3 if pb.position_only else 6]
    eye = np.eye(dof)
    Jt, e, pe, re = errors(q, evaluated)
    cost = (e * e) @ w2
    lam = np.full(P, pb.lambda_initial)
    overstated = np.zeros(P, dtype=bool)  # the last step taken achieved less than TRUSTED of its promise
    ptol, rtol = pb.position_tolerance, pb.orientation_tolerance
    solved = (pe < ptol) & (re < rtol)
    iters = np.zeros(P, dtype=np.int64)
    rest, g = pb.rest_pose, pb.group
    for _ in range(pb.max_iterations):
        # a problem runs until it or one of its group's restarts is solved, or its damping stalls
        active = (~solved.reshape(-1, g).any(1, keepdims=True) & (lam < LAMBDA_MAX).reshape(-1, g)).reshape(P)
        if not active.any():
            break
        JW = Jt * w2
        A = JW @ Jt.transpose(0, 2, 1)
        b = JW @ e[..., None]  # (P, dof, 1)
        ridge = (RIDGE * _EPS) * np.diagonal(A, axis1=1, axis2=2).max(1) + _TINY
        Ad = A + (lam[:, None, None] * A + ridge[:, None, None]) * eye
        dq = np.linalg.solve(Ad, b)[..., 0]
        if rest is not None:  # pull toward the rest pose inside the (damped) null space of the task
            d = rest - q
            dq += pb.nullspace_gain * (d - np.linalg.solve(Ad, A @ d[..., None])[..., 0])
        qn = wrap_periodic(q + dq, lo, hi, turn)
        viol = (qn < lo) | (qn > hi)
        if viol.any():  # freeze the joints that would leave their range, re-solve for the others
            keep = ~viol
            A2 = np.where(keep[:, :, None] & keep[:, None, :], Ad, eye)
            held = np.linalg.solve(A2, b * keep[:, :, None])[..., 0]
            frozen = wrap_periodic(q + held, lo, hi, turn)
            moved = viol.any(1, keepdims=True)
            qn = np.minimum(np.maximum(np.where(moved, frozen, qn), lo), hi)
            dq = np.where(moved, held, dq)
        Jn, en, pen, ren = errors(qn)
        cn = (en * en) @ w2
        better = active & (cn < cost)
        # what the undamped model promised for the step, in the engine's cost (half this one's)
        promised = (b[..., 0] * dq).sum(1) - 0.5 * np.einsum("pi,pij,pj->p", dq, A, dq)
        poor = better & (0.5 * (cost - cn) < TRUSTED * promised)  # the engine's damping rule
        b1 = better[:, None]
        np.copyto(q, qn, where=b1)
        np.copyto(Jt, Jn, where=better[:, None, None])
        np.copyto(e, en, where=b1)
        np.copyto(cost, cn, where=better)
        np.copyto(pe, pen, where=better)
        np.copyto(re, ren, where=better)
        lam = np.where(better & ~(poor & overstated), np.maximum(lam * LAMBDA_DOWN, LAMBDA_MIN),
                       np.where(active, lam * LAMBDA_UP, lam))
        overstated = np.where(better, poor, overstated)
        iters += active
        solved = (pe < ptol) & (re < rtol)
    return q, pe, re, solved, iters
