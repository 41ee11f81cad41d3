"""The IK iteration in numpy float64, for small batches on the CPU (one target and its restarts).

The same steps as the solver engine takes for IK (:mod:`._lm_engine`; see :func:`robojac.ik.solve`
for the step rule), kept twice for a measured reason: a single target is latency-bound, and
numpy's per-call cost is a fraction of torch's on arrays this small (a lone Panda target,
``IKConfig(engine=...)``, medians of 300 on this 2-core machine, 2026-12-05: 0.71 ms here,
6.5 ms on the engine; the torch loop the engine replaced took 4.5 ms).  Every problem
is stepped each iteration (masked, not gathered), so the number of calls per step (about a
hundred) does not grow with the number of problems.  Several frames' targets at once take the
same steps on their stacked errors (:func:`lm_frames_numpy`).  The tests check both paths take
the same steps as the engine.
"""

from __future__ import annotations

import numpy as np

from ..optim import wrap_periodic
from ._path import FramePaths, SerialPath, rotation_error
from ._step import LAMBDA_DOWN, LAMBDA_MAX, LAMBDA_MIN, LAMBDA_UP, RIDGE, TRUSTED, Problem, on_joints

_EPS, _TINY = np.finfo(np.float64).eps, np.finfo(np.float64).tiny

__all__ = ["lm_numpy", "lm_frames_numpy", "frame_errors", "frames_errors"]


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


def frames_errors(paths: FramePaths, q: np.ndarray, Rt: np.ndarray, pt: np.ndarray, position_only: np.ndarray,
                  jacobian: bool = True):
    """``(Jt (P, dof, 6 K), error (P, 6 K), position errors (P, K), rotation errors (P, K))`` of
    ``K`` frames' targets ``Rt (P, K, 3, 3)``, ``pt (P, K, 3)``: each frame's ``[p* - p; Log(R* R^T)]``,
    the rotation part zero for the position targets (``position_only (K,)``)."""
    R, p, Jt = paths.evaluate(q, jacobian)
    P, K = p.shape[:2]
    dp = pt - p
    pe = np.sqrt((dp * dp).sum(-1))
    dr, re = rotation_error(Rt.reshape(P * K, 3, 3), R.reshape(P * K, 3, 3))
    dr, re = dr.reshape(P, K, 3), re.reshape(P, K)
    if position_only.any():
        dr[:, position_only], re[:, position_only] = 0.0, 0.0
    return Jt, np.concatenate((dp, dr), -1).reshape(P, 6 * K), pe, re


def lm_numpy(path: SerialPath, Rt: np.ndarray, pt: np.ndarray, q: np.ndarray, pb: Problem, evaluated=None):
    """Damped least squares for ``P`` problems (``q (P, dof)``, targets ``Rt (P, 3, 3)``, ``pt (P, 3)``)
    in groups of ``pb.group`` restarts of one target; returns ``(q, pos_err, rot_err, solved, iterations)``.
    Joints off the frame's path (not in ``pb.drive``) keep their starting values.  ``evaluated``:
    ``path.evaluate(q)`` when known (starts from the start table)."""
    def measure(qf: np.ndarray, known=None):
        return frame_errors(path, qf, Rt, pt, pb.position_only, evaluated=known)

    return _on_drive(measure, q, pb, pb.weights2[: 3 if pb.position_only else 6], evaluated)


def lm_frames_numpy(paths: FramePaths, Rt: np.ndarray, pt: np.ndarray, position_only: np.ndarray, w2: np.ndarray,
                    q: np.ndarray, pb: Problem):
    """:func:`lm_numpy` for several frames at once (targets ``Rt (P, K, 3, 3)``, ``pt (P, K, 3)``,
    squared weights ``w2 (6 K,)``, zero on a position target's rotation rows); the errors come
    back ``(P, K)``, and a problem is solved when every frame is within the tolerances.  The
    same steps as the solver engine's (:func:`robojac.ik._frames.attempt`)."""
    def measure(qf: np.ndarray, known=None):
        return frames_errors(paths, qf, Rt, pt, position_only)

    return _on_drive(measure, q, pb, w2, None)


def _on_drive(measure, q: np.ndarray, pb: Problem, w2: np.ndarray, evaluated):
    """:func:`_lm` over the joints ``pb.drive`` of ``q`` (all when ``None``); the others keep their values."""
    if pb.drive is None:
        return _lm(measure, q, pb, w2, evaluated)
    drive = pb.drive

    def on_drive(qr: np.ndarray, known=None):
        qf = q.copy()
        qf[:, drive] = qr
        Jt, e, pe, re = measure(qf, known)
        return Jt[:, drive], e, pe, re

    qr, pe, re, solved, iters = _lm(on_drive, q[:, drive], on_joints(pb, drive), w2, evaluated)
    out = q.copy()
    out[:, drive] = qr
    return out, pe, re, solved, iters


def _within(pe: np.ndarray, re: np.ndarray, ptol: float, rtol: float) -> np.ndarray:
    """``(P,)``: the errors (``(P,)``, or ``(P, K)`` for several frames: all of them) within the tolerances."""
    ok = (pe < ptol) & (re < rtol)
    return ok if ok.ndim == 1 else ok.all(1)


def _lm(errors, q: np.ndarray, pb: Problem, w2: np.ndarray, evaluated=None):
    """The iteration on ``q (P, dof)`` (not changed in place): ``errors(q, evaluated)`` gives
    ``(Jt (P, dof, r), e (P, r), position errors, rotation errors)``, ``w2 (r,)`` the squared weights."""
    q = q.copy()
    P, dof = q.shape
    lo, hi, turn = pb.lower, pb.upper, pb.turn
    eye = np.eye(dof)
    Jt, e, pe, re = errors(q, evaluated)
    cost = (e * e) @ w2
    lam = np.full(P, pb.lambda_initial)
    overstated = np.zeros(P, dtype=bool)  # the last step taken achieved less than TRUSTED of its promise
    ptol, rtol = pb.position_tolerance, pb.orientation_tolerance
    solved = _within(pe, re, ptol, rtol)
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
        per_frame = better.reshape((P,) + (1,) * (pe.ndim - 1))
        np.copyto(pe, pen, where=per_frame)
        np.copyto(re, ren, where=per_frame)
        lam = np.where(better & ~(poor & overstated), np.maximum(lam * LAMBDA_DOWN, LAMBDA_MIN),
                       np.where(active, lam * LAMBDA_UP, lam))
        overstated = np.where(better, poor, overstated)
        iters += active
        solved = _within(pe, re, ptol, rtol)
    return q, pe, re, solved, iters
