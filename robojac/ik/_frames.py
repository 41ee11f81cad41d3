"""IK of several frames at once: ``solve(chain, {frame: target, ...})`` (a humanoid's hands and
feet, a bimanual robot's two grippers).

The same attempts as one frame's IK on the solver engine (:mod:`._lm_engine`): Levenberg-Marquardt
on the joints that move any of the frames, with the joint limits as the variable's bounds and the
same damping schedule, restarts and rounds (:class:`._rounds.Best`).  The residual stacks every
frame's weighted error ``[w_p (p* - p); w_o Log(R* R^T)]`` (a position target's rotation rows
weigh nothing), and its Jacobian is the frames' geometric Jacobians from one kinematics pass
(:meth:`robojac.kinematics.Chain.poses_and_jacobians`).  On the CPU, small rounds (a lone
target's restarts) take the same steps on the numpy loop, as one frame's do: every frame's path
evaluated together (:class:`._path.FramePaths`), :func:`._lm_numpy.lm_frames_numpy`.  The first
round starts from a start table of the frames together (:class:`._table.StartTable`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from .. import lie
from .._precision import working_dtype
from ..kinematics import Chain
from ._lm_engine import attempts, differentiable
from ._lm_numpy import frames_errors, lm_frames_numpy
from ._path import FramePaths, quat_to_matrix_np
from ._rounds import Best, any_in_group, random_source, seeded
from ._step import NUMPY_CHUNK, NUMPY_MAX_ROUND
from ._table import StartTable, rotation_scale
from ._targets import parse_targets

__all__ = ["FramesResidual", "parse_frame_targets", "frame_pose_errors"]

_IDENTITY_QUAT = (0.0, 0.0, 0.0, 1.0)


def parse_frame_targets(chain: Chain, targets: Mapping, cfg=None) -> tuple[tuple[str, ...], Tensor, tuple, Tensor]:
    """``(frames, targets (B, K, 7), batch shape, position_only (K,) bool)`` of a mapping
    ``{frame: target}``; a position target gets the identity rotation (its rotation rows weigh nothing).
    ``cfg`` (an ``IKConfig``) must then name no ``frame``."""
    if cfg is not None and cfg.frame is not None:
        raise ValueError(f"IKConfig.frame: the targets name their frames ({list(targets)!r}); expected None, "
                         f"got {cfg.frame!r}")
    if not isinstance(targets, Mapping) or not targets:
        raise ValueError("target: expected a non-empty mapping {frame name: target}")
    frames, flats, kinds, batch, ref = [], [], [], None, None
    for frame, target in targets.items():
        if not isinstance(frame, str):
            raise ValueError(f"target: expected frame names as keys, got {frame!r}")
        chain._frame_index(frame)  # refuses a frame that does not exist, naming the candidates
        try:
            flat, shape, position_only = parse_targets(target)
        except (TypeError, ValueError) as err:
            raise type(err)(f"target[{frame!r}]: {str(err).removeprefix('target: ')}") from None
        if ref is None:
            batch, ref = shape, flat
        elif shape != batch:
            raise ValueError(f"target[{frame!r}]: expected the batch shape of target[{frames[0]!r}], {batch}; "
                             f"got {shape}")
        elif flat.dtype != ref.dtype or flat.device != ref.device:
            raise ValueError(f"target[{frame!r}]: expected {ref.dtype} on {ref.device} as target[{frames[0]!r}]; "
                             f"got {flat.dtype} on {flat.device}")
        if position_only:
            flat = torch.cat((flat, flat.new_tensor(_IDENTITY_QUAT).expand(flat.shape[0], 4)), -1)
        frames.append(frame)
        flats.append(flat)
        kinds.append(position_only)
    return tuple(frames), torch.stack(flats, 1), batch, torch.tensor(kinds, device=ref.device)


def frame_pose_errors(X: Tensor, T: Tensor, position_only: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(error (P, K, 6), position errors (P, K), rotation errors (P, K))`` of the frames' poses
    ``X (P, K, 7)`` from their targets ``T (P, K, 7)``: ``[p* - p; Log(R* R^T)]``, the rotation
    part zero for the position targets (``position_only (K,)``)."""
    e = torch.cat((T[..., :3] - X[..., :3], lie.so3_log(lie.quat_mul(T[..., 3:], lie.quat_conj(X[..., 3:])))), -1)
    e = torch.where(_rotation_rows(position_only, e.device), 0.0, e)
    return e, e[..., :3].norm(dim=-1), e[..., 3:].norm(dim=-1)


class FramesResidual:
    """The frames' stacked weighted errors as one factor of the solver engine: ``(Q (B, 1, m),
    T (B, 1, K, 7)) -> (B, 1, 6 K)``, ``w (K, 6)`` the weights (zero on a position target's
    rotation rows), with the Jacobian from the frames' geometric ones (``-w_p J_v``, and
    ``-w_o Jr^-1(e_r) J_w``, or ``-w_o J_w`` when ``exact=False``, the step damped least squares
    takes, as one frame's :class:`._targets.TargetResidual`).  With ``tolerances`` it says when
    an attempt is done (every frame within them, or another start of its target is: ``group``
    consecutive problems)."""

    def __init__(self, chain: Chain, frames: tuple[str, ...], q: Tensor, drive: Tensor, w: Tensor,
                 position_only: Tensor, exact: bool, tolerances: tuple[float, float] | None = None, group: int = 1):
        self.chain, self.frames, self.q, self.drive, self.w, self.exact = chain, frames, q, drive, w, exact
        self.position_only = position_only.to(q.device)
        self.every = len(drive) == q.shape[1]  # every joint moves a frame: no gather, no scatter
        self.tolerances, self.group = tolerances, group
        self.target_of = torch.arange(q.shape[0], device=q.device) // group

    def subset(self, rows: Tensor) -> "FramesResidual":
        """The residual of the problems ``rows`` alone (the engine runs the last few by themselves)."""
        out = copy.copy(self)
        out.q, out.target_of = self.q[rows], self.target_of[rows]
        return out

    def _full(self, Q: Tensor) -> Tensor:
        return Q[:, 0] if self.every else self.q.to(Q.dtype).index_copy(1, self.drive, Q[:, 0])

    def __call__(self, Q: Tensor, T: Tensor) -> Tensor:
        X = self.chain.forward_kinematics_tensor(self._full(Q), self.frames)
        e, _, _ = frame_pose_errors(X, T[:, 0], self.position_only)
        return (e * self.w).reshape(Q.shape[0], 1, -1)

    def value_and_jacobians(self, Q: Tensor, T: Tensor):
        X, J = self.chain.poses_and_jacobians(self._full(Q), self.frames)  # (B, K, 7), (B, K, 6, dof)
        e, _, _ = frame_pose_errors(X, T[:, 0], self.position_only)
        if not self.every:
            J = J.index_select(3, self.drive)
        if self.exact:  # Jr^-1(x) = Jl^-1(-x)
            J = torch.cat((J[:, :, :3], lie.so3_left_jacobian_inverse(-e[..., 3:]) @ J[:, :, 3:]), 2)
        B, m = Q.shape[0], J.shape[-1]
        return (e * self.w).reshape(B, 1, -1), ((J * -self.w[..., None]).reshape(B, 1, -1, m),)

    def satisfied(self, r: Tensor) -> Tensor:
        """``(B,)``: every frame within the tolerances (from the weighted residual ``r (B, 1, 6 K)``),
        for the attempt or another start of its target."""
        pos_tol, ori_tol = self.tolerances
        r2 = (r[:, 0] * r[:, 0]).reshape(r.shape[0], -1, 6)
        ok = r2[..., :3].sum(-1) < (pos_tol * self.w[:, 0]) ** 2
        ok = ok & (r2[..., 3:].sum(-1) <= (ori_tol * self.w[:, 3]) ** 2)  # a position target's rows are 0 <= 0
        return any_in_group(ok.all(1), self.target_of, self.group)


def frame_scales(cfg, frames: tuple[str, ...]) -> list[float]:
    """Each frame's weight from ``cfg.frame_weights`` (1 where it names none)."""
    given = cfg.frame_weights or {}
    return [float(given.get(f, 1.0)) for f in frames]


def weights(cfg, frames: tuple[str, ...], position_only: Tensor, dtype, device) -> Tensor:
    """``(K, 6)``: the configured position and orientation weights times each frame's own, none
    on a position target's rotation."""
    w = torch.tensor([cfg.position_weight] * 3 + [cfg.orientation_weight] * 3, dtype=dtype, device=device)
    w = w * torch.tensor(frame_scales(cfg, frames), dtype=dtype, device=device)[:, None]
    return torch.where(_rotation_rows(position_only, device), 0.0, w)


def _rotation_rows(position_only: Tensor, device) -> Tensor:
    """``(K, 6)``: the rotation rows of the position targets (which weigh nothing and read 0)."""
    return position_only.to(device)[:, None] & (torch.arange(6, device=device) >= 3)


def attempt(chain: Chain, frames: tuple[str, ...], T: Tensor, position_only: Tensor, q: Tensor, drive: Tensor,
            pb, cfg):
    """One round of attempts on the engine for problems ``(P,)`` (targets ``T (P, K, 7)``, starts
    ``q (P, dof)``); returns ``(q, pos_err (P, K), rot_err (P, K), solved, iterations)``."""
    w = weights(cfg, frames, position_only, q.dtype, q.device)
    residual = FramesResidual(chain, frames, q, drive, w, position_only, exact=False,
                              tolerances=(pb.position_tolerance, pb.orientation_tolerance), group=pb.group)
    q, iterations = attempts(residual, T, q, drive, pb)
    _, pe, re = frame_pose_errors(chain.forward_kinematics_tensor(q, frames), T, position_only)
    return q, pe, re, within(pe, re, pb.position_tolerance, pb.orientation_tolerance), iterations


def closeness(pe, re, cfg, frames: tuple[str, ...]):
    """The attempts' weighted squared error over ``w_p^2``, summed over the frames (``(P, K)`` ->
    ``(P,)``, numpy or torch)."""
    s2 = [s * s for s in frame_scales(cfg, frames)]
    s2 = pe.new_tensor(s2) if isinstance(pe, Tensor) else np.asarray(s2)
    return (s2 * (pe * pe + (cfg.orientation_weight / cfg.position_weight * re) ** 2)).sum(-1)


def drive_of(chain: Chain, frames: tuple[str, ...], device) -> Tensor:
    """Indices of the joints that move any of ``frames`` (the others keep their starting values)."""
    moving = set().union(*(chain.moving_joints(f) for f in frames))
    return torch.tensor([k for k, n in enumerate(chain.joint_names) if n in moving], dtype=torch.long, device=device)


def gradients(chain: Chain, cfg, frames, T: Tensor, position_only: Tensor, q: Tensor, converged: Tensor) -> Tensor:
    """``q (B, dof)`` differentiable with respect to the targets ``T (B, K, 7)``, as one frame's
    (see :func:`robojac.ik.solve`)."""
    work = working_dtype(T.dtype)
    q = q.detach().to(work)
    drive = drive_of(chain, frames, q.device)
    w = weights(cfg, frames, position_only, work, q.device)
    residual = FramesResidual(chain, frames, q, drive, w, position_only, exact=True)
    return differentiable(residual, T.to(work), q, drive, converged)


def rounds(chain: Chain, cfg, frames, T: Tensor, position_only: Tensor, q0: np.ndarray | None, held, problem,
           starts, returned, paths: FramePaths | None, table: StartTable | None):
    """The rounds of attempts for targets ``T (B, K, 7)``: ``(q (B, dof), best, measured errors)``
    with ``problem(dtype, group, numpy)`` the attempt's constants, ``starts(gen, n, R, distance)`` the
    random starts and ``returned(q)`` the answer in the targets' dtype.  ``q0 (B, dof)`` (float64
    on the host, or ``None``) starts each target's first attempt.  The joints that move no
    frame start, and so stay, at their values in ``held`` (:func:`._rounds.seeded`) in every
    attempt (a humanoid's head does not take a random pose for a target of its hands).
    ``paths``: the frames' numpy evaluator, for targets on the CPU (``None`` elsewhere, or for
    ``engine="torch"``); rounds of at most ``NUMPY_MAX_ROUND`` problems run on it (every round,
    for ``engine="numpy"``), as one frame's.  ``table``: the frames' start table (``None`` for
    ``start_table=0``), which gives the first round's starts."""
    dt, dev = T.dtype, T.device
    B, dof = T.shape[0], chain.dof
    drive = drive_of(chain, frames, dev)
    host = _HostTargets(cfg, frames, T, position_only, drive)
    gen = random_source(cfg.seed)
    best = Best(B, dof, (len(frames),))
    for rnd, todo, R in best.rounds(cfg, seeded=q0 is not None):
        n = todo.size
        on_numpy = paths is not None and (cfg.engine == "numpy" or n * R <= NUMPY_MAX_ROUND)
        if on_numpy:
            distance = host.distance(paths, todo.repeat(R), cfg)
        else:
            work = working_dtype(dt)
            Tr = T[torch.from_numpy(todo).to(dev)].repeat_interleave(R, 0).to(work)

            def distance(q: np.ndarray) -> np.ndarray:
                K = len(q) // len(Tr)
                X = chain.forward_kinematics_tensor(torch.from_numpy(q).to(dtype=work, device=dev), frames)
                _, pe, re = frame_pose_errors(X, Tr.repeat_interleave(K, 0), position_only)
                return closeness(pe, re, cfg, frames).cpu().numpy()

        alone = rnd < 0  # the round of q0 alone: no other start
        if alone:
            qi = np.empty((n, dof))
        elif rnd == 0 and table is not None:
            qi = host.table_starts(chain, table, gen, todo, R)
        else:
            qi = starts(gen, n, R, distance)
        qi = seeded(qi, todo, R, held, q0, alone)
        if on_numpy:
            q, pe, re, ok, it = host.attempt(paths, problem(torch.float64, R, True), qi, todo, R)
        else:
            q_init = torch.from_numpy(qi).to(dtype=work, device=dev)
            q, pe, re, ok, it = (a.detach().cpu().numpy() for a in attempt(chain, frames, Tr, position_only, q_init,
                                                                             drive, problem(work, R, False), cfg))
        best.update(todo, R, q, pe, re, ok, it, closeness(pe.astype(np.float64), re.astype(np.float64), cfg, frames),
                    cfg.patience)
        best.history.append(cost(best.pe, best.re, cfg, frames))
    q = returned(best.q)
    if paths is None:
        X = chain.forward_kinematics_tensor(q.double(), frames)
        _, pe, re = frame_pose_errors(X, T.double(), position_only)
    else:  # measured in float64 on the same paths (a lone target is latency-bound)
        _, _, pe, re = frames_errors(paths, q.double().numpy(), host.Rt, host.pt, host.position_only, jacobian=False)
        pe, re = torch.from_numpy(pe), torch.from_numpy(re)
    return q, best, pe, re


class _HostTargets:
    """The targets and weights of several frames' rounds as float64 numpy arrays on the host:
    the start table's starts, the random starts' distance, and one round of attempts on the
    numpy loop (:func:`._lm_numpy.lm_frames_numpy`)."""

    def __init__(self, cfg, frames, T: Tensor, position_only: Tensor, drive: Tensor):
        T64 = T.detach().cpu().double().numpy()
        self.Rt, self.pt = quat_to_matrix_np(T64[..., 3:]), T64[..., :3].copy()
        self.position_only = position_only.cpu().numpy()
        w = weights(cfg, frames, position_only, torch.float64, "cpu").numpy().reshape(-1)
        self.w2 = w * w
        self.drive = drive.cpu().numpy()  # the joints that move a frame (the numpy loop steps these alone)
        self.frames = frames
        # the table's distance is the attempts' (closeness): each frame's squared weight, no
        # rotation for a position target
        self.rotation_scale = np.where(self.position_only, 0.0, rotation_scale(cfg.position_weight,
                                                                               cfg.orientation_weight, False))
        self.frame_weights = np.square(frame_scales(cfg, frames))

    def table_starts(self, chain: Chain, table: StartTable, gen, todo: np.ndarray, R: int) -> np.ndarray:
        """``(n R, dof)``: the first round's starts of the targets ``todo``, from the table."""
        q, _ = table.starts(chain, gen, (self.Rt, self.pt), todo, R, self.rotation_scale, self.frame_weights)
        return q

    def distance(self, paths: FramePaths, sel: np.ndarray, cfg):
        """The random starts' ranking for the problems' targets ``sel``: candidates ``q`` (``len(q) /
        len(sel)`` per problem) -> their weighted squared errors."""
        def distance(q: np.ndarray) -> np.ndarray:
            s = sel.repeat(len(q) // len(sel))
            _, _, pe, re = frames_errors(paths, q, self.Rt[s], self.pt[s], self.position_only, jacobian=False)
            return closeness(pe, re, cfg, self.frames)

        return distance

    def attempt(self, paths: FramePaths, pb, qi: np.ndarray, todo: np.ndarray, R: int):
        """``(q, pos_err (n R, K), rot_err (n R, K), solved, iterations)`` of ``R`` attempts for
        each target of ``todo``, from ``qi (n R, dof)``."""
        sel = todo.repeat(R)
        pb = replace(pb, drive=None if len(self.drive) == qi.shape[1] else self.drive)
        step = R * max(1, NUMPY_CHUNK // R)  # whole groups per chunk, cache-sized arrays
        outs = [lm_frames_numpy(paths, self.Rt[sel[c : c + step]], self.pt[sel[c : c + step]], self.position_only,
                                self.w2, qi[c : c + step], pb) for c in range(0, len(sel), step)]
        return tuple(np.concatenate(a) for a in zip(*outs)) if len(outs) > 1 else outs[0]


def within(pe: Tensor, re: Tensor, position_tolerance: float, orientation_tolerance: float) -> Tensor:
    """``(B,)``: every frame within the tolerances (``pe``, ``re`` ``(B, K)``; a position target's
    ``re`` is 0, :func:`frame_pose_errors`)."""
    return ((pe < position_tolerance) & (re < orientation_tolerance)).all(-1)


def cost(pe, re, cfg, frames: tuple[str, ...]):
    """``0.5 |e|^2`` of the frames' weighted errors (``(B, K)`` -> ``(B,)``, numpy or torch)."""
    return 0.5 * cfg.position_weight**2 * closeness(pe, re, cfg, frames)

