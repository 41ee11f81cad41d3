"""IK targets: what ``solve`` accepts, the pose error the attempts minimise, and that error as a
factor of the solver engine."""

from __future__ import annotations

import copy

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from .. import lie
from ..lie import require_values, se3_tensor
from ._rounds import any_in_group

__all__ = ["AttemptResidual", "TargetResidual", "parse_targets", "pose_errors"]


def parse_targets(target) -> tuple[Tensor, tuple[int, ...], bool]:
    """``(flat targets (B, 7) or (B, 3), batch shape, position_only)`` of one frame's targets:
    an SE3 LieTensor, ``(..., 7)`` poses or ``(..., 4, 4)`` transforms (checked as rotations), or
    ``(..., 3)`` positions; anything else is refused naming ``target``."""
    if isinstance(target, pp.LieTensor) or (isinstance(target, Tensor) and target.shape[-1:] == (7,)) or (
        isinstance(target, Tensor) and target.dim() >= 2 and target.shape[-2:] == (4, 4)
    ):
        X = se3_tensor(target, name="target")
        return X.reshape(-1, 7), tuple(X.shape[:-1]), False
    if isinstance(target, Tensor) and target.shape[-1:] == (3,):
        if not target.is_floating_point():
            raise TypeError(f"target: expected a floating-point tensor, got dtype {target.dtype}")
        require_values(target, "target")
        if not torch.isfinite(target).all():
            raise ValueError("target: contains NaN or infinite values")
        return target.reshape(-1, 3), tuple(target.shape[:-1]), True
    shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
    raise ValueError(f"target: expected an SE3 pose (..., 7) [t, qx, qy, qz, qw], a (..., 4, 4) transform, or a "
                     f"position (..., 3); got {shape}")


def one_frame_targets(chain, cfg, target) -> tuple[str, Tensor, tuple[int, ...], bool]:
    """``(frame, flat targets, batch shape, position_only)`` of one frame's targets for ``cfg``
    (an ``IKConfig``, whose ``frame_weights`` belong to a mapping of targets)."""
    if cfg.frame_weights is not None:
        raise ValueError("IKConfig.frame_weights: weighs the frames of a mapping of targets {frame: target}; "
                         "this target is one frame's")
    frame = cfg.frame or chain.tip
    chain._frame_index(frame)  # refuses a frame that does not exist, naming the candidates
    return (frame, *parse_targets(target))


def check_start(chain, cfg, q0, flat: Tensor, batch: tuple) -> Tensor | None:
    """``q0`` as ``(B, dof)`` inside the limits (or ``None``), after checking it and the rest pose."""
    B = flat.shape[0]
    if q0 is not None:
        q0 = chain.check_configuration(torch.as_tensor(q0, dtype=flat.dtype, device=flat.device), "q0")
        if q0.dim() == 1:
            q0 = q0.expand(batch + (chain.dof,))
        elif tuple(q0.shape[:-1]) != batch:
            raise ValueError(f"q0: expected shape ({chain.dof},) or {batch + (chain.dof,)} (one per target), "
                             f"got {tuple(q0.shape)}")
        q0 = chain.clamp(q0.reshape(B, chain.dof))
    if cfg.rest_pose is not None and tuple(np.shape(cfg.rest_pose)) != (chain.dof,):
        raise ValueError(f"IKConfig.rest_pose: expected shape ({chain.dof},), got {tuple(np.shape(cfg.rest_pose))}")
    return q0


def pose_errors(X: Tensor, target: Tensor, position_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(error (P, 6|3), position error (P,), rotation error (P,))`` of poses ``X (P, 7)``:
    ``[p* - p; Log(R* R^T)]``, the world-frame error the geometric Jacobian linearises."""
    width = 3 if position_only else 7
    for name, v, n in (("X", X, 7), ("target", target, width)):
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[-1] != n:
            got = f"shape {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{name}: expected a tensor (P, {n}), got {got}")
    e = _pose_error(X, target, position_only)
    if position_only:
        return e, e.norm(dim=-1), torch.zeros_like(e[:, 0])
    return e, e[:, :3].norm(dim=-1), e[:, 3:].norm(dim=-1)


def _pose_error(X: Tensor, target: Tensor, position_only: bool) -> Tensor:
    """``[p* - p; Log(R* R^T)]`` ``(P, 6|3)`` alone (:func:`pose_errors` without the norms)."""
    dp = target[:, :3] - X[:, :3]
    if position_only:
        return dp
    return torch.cat((dp, lie.so3_log(lie.quat_mul(target[:, 3:], lie.quat_conj(X[:, 3:])))), -1)


class TargetResidual:
    """The weighted pose error ``[w_p (p* - p); w_o Log(R* R^T)]`` of the joints ``drive`` (the
    others held at ``q``), as a factor of the solver engine: ``(Q (B, 1, m), target (B, 1, 7|3))
    -> (B, 1, 6|3)``, with its Jacobian in closed form from the chain's geometric one
    (``-w_p J_v`` and ``-w_o Jr^-1(e_r) J_w``: ``R* R^T`` moves as ``R* R^T Exp(-J_w dq)``).
    ``exact=False`` takes ``-w_o J_w`` for the rotation rows, as damped least-squares IK steps
    (and :mod:`._lm_numpy`): the step the attempts take; the gradients need the exact one."""

    def __init__(self, chain, frame: str, q: Tensor, drive: Tensor, w: Tensor, position_only: bool,
                 exact: bool = True):
        self.chain, self.frame, self.q, self.drive, self.w, self.position_only = chain, frame, q, drive, w, position_only
        self.every = len(drive) == q.shape[1]  # every joint moves the frame: no gather, no scatter
        self.exact = exact

    def subset(self, rows: Tensor) -> "TargetResidual":
        """The residual of the problems ``rows`` alone (the engine runs the last few by themselves)."""
        out = copy.copy(self)
        out.q = self.q[rows]
        return out

    def _full(self, Q: Tensor) -> Tensor:
        return Q[:, 0] if self.every else self.q.to(Q.dtype).index_copy(1, self.drive, Q[:, 0])

    def __call__(self, Q: Tensor, target: Tensor) -> Tensor:
        X = self.chain.forward_kinematics_tensor(self._full(Q), [self.frame])[:, 0]
        return (_pose_error(X, target[:, 0], self.position_only) * self.w)[:, None]

    def value_and_jacobians(self, Q: Tensor, target: Tensor):
        X, J = self.chain.pose_and_jacobian(self._full(Q), self.frame)
        e = _pose_error(X, target[:, 0], self.position_only)
        if not self.every:
            J = J.index_select(2, self.drive)  # (B, 6, m): [v; w] of the frame, world frame
        if self.position_only:
            J = J[:, :3]
        elif self.exact:  # Jr^-1(x) = Jl^-1(-x)
            J = torch.cat((J[:, :3], lie.so3_left_jacobian_inverse(-e[:, 3:]) @ J[:, 3:]), 1)
        return (e * self.w)[:, None], ((J * -self.w[:, None])[:, None],)


class AttemptResidual(TargetResidual):
    """:class:`TargetResidual` as an IK attempt steps it (damped least squares' Jacobian), which
    also says when the attempt is done (:meth:`satisfied`, asked by the engine): within the
    tolerances, or another start of its target (``group`` consecutive problems) is."""

    def __init__(self, chain, frame: str, q: Tensor, drive: Tensor, w: Tensor, position_only: bool,
                 tolerances: tuple[float, float], group: int = 1):
        super().__init__(chain, frame, q, drive, w, position_only, exact=False)
        self.tolerances = tolerances
        self.target_of = torch.arange(q.shape[0], device=q.device) // group  # each problem's target
        self.group = group

    def subset(self, rows: Tensor) -> "AttemptResidual":
        out = super().subset(rows)
        out.target_of = self.target_of[rows]
        return out

    def within(self, r: Tensor) -> Tensor:
        """``(B,)``: the position error below its tolerance, and the orientation error below its
        own, from the weighted residual ``r (B, 1, 6|3)``."""
        pos_tol, ori_tol = self.tolerances
        r2 = r[:, 0] * r[:, 0]
        ok = r2[:, :3].sum(-1) < (pos_tol * self.w[0]) ** 2
        if not self.position_only:
            ok = ok & (r2[:, 3:].sum(-1) < (ori_tol * self.w[3]) ** 2)
        return ok

    def satisfied(self, r: Tensor) -> Tensor:
        """``(B,)``: the attempt, or another start of its target, is within the tolerances."""
        return any_in_group(self.within(r), self.target_of, self.group)
