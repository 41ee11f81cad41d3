"""``solve``: batched inverse kinematics by damped least squares with joint limits and restarts."""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .._config import check_choice, check_int, check_real
from .._precision import working_dtype
from .._threads import threads_for, torch_threads
from ..kinematics import Chain
from . import _frames
from ._lm_numpy import frame_errors, lm_numpy
from ._lm_engine import differentiable, lm_engine
from ._path import FramePaths, SerialPath, quat_to_matrix_np
from ._rounds import Best, random_source, seeded
from ._step import NUMPY_CHUNK, NUMPY_MAX_ROUND, Problem
from ._table import StartTable, rotation_scale
from ._targets import TargetResidual, check_start, one_frame_targets, pose_errors
from ._avoid import solve_avoiding

__all__ = ["IKConfig", "IKResult", "solve"]

Engine = Literal["auto", "numpy", "torch"]


@dataclass(frozen=True)
class IKConfig:
    """Options of :func:`solve`.

    * ``frame``: the frame to place (default: the chain's tip).
    * Attempts: each attempt runs at most ``max_iterations`` damped least-squares steps from
      one start (the first round's from the start table below, later rounds' uniform inside the
      limits).  A target given ``q0`` is first tried from ``q0`` alone, one attempt, so that its
      answer is the one that start leads to (a path tracked from the last answer stays on its
      branch); the rounds follow where that attempt fails.  Targets still
      unsolved get a fresh round of attempts, up to ``rounds`` rounds.  A round gives each
      unsolved target ``ceil(fill / unsolved)`` restarts (at most ``restarts``), run together;
      a target's restarts stop as soon as one solves it.  A lone target thus tries many starts
      at once, while a large batch runs one start per target.
      A target is given up on when ``patience`` of its rounds ended within 5% of its best error
      so far without solving it: restarts that keep returning to the same error are finding the
      closest pose of an unreachable target, not a hard reachable one.
    * ``candidates``: random configurations drawn for each random start; the one whose frame
      lands closest to the target (the weighted pose error below) starts the attempt.  One
      forward kinematics per candidate buys fewer steps and more first attempts that succeed
      (without the table, 10,000 Panda targets took 17.2 steps each with 4 instead of 22.2
      with 1, and 68% instead of 59% were solved by their first attempt).  Rounds of fewer than
      ``fill`` problems (a few targets' restarts) draw one: they are latency-bound, and the
      extra kinematics costs more than the steps it saves.  1 turns it off.
    * ``start_table``: configurations tabulated once per chain and frame (or set of frames)
      with the frame's pose and Jacobian (uniform inside the limits, the same on every run;
      rebuilt when the limits change); a target's first round starts at the entries nearest to
      it in the weighted pose error (summed over a mapping's frames) instead of random draws
      (the Panda's 10,000 targets: 10.1 steps each instead of 17.2, 83% instead of 68% solved
      by their first attempt; a lone target 3.7 steps instead of 6.4).  0 turns it off.
    * ``position_weight``/``orientation_weight``: the error is ``[w_p (p* - p); w_o Log(R* R^T)]``.
    * ``position_tolerance`` (m) and ``orientation_tolerance`` (rad): a problem is solved, and
      stops, when both errors are below them (inside the joint limits, always).
    * ``lambda_initial``: starting Levenberg-Marquardt damping (adapted per problem).
    * ``rest_pose`` and ``nullspace_gain``: a secondary objective pulling toward ``rest_pose``
      inside the null space of the task (redundant arms).
    * ``engine``: ``"numpy"`` (float64 on the CPU), ``"torch"`` (the targets' dtype and device:
      the GPU path), ``"auto"``: on the CPU, torch for rounds of more than 512 problems and numpy
      for smaller ones (a lone target, the last hard targets of a batch), torch elsewhere; the
      same for a mapping of several frames' targets.  Both run the same algorithm (the tests
      check they take the same steps).
    * ``seed``: for the random starts (reproducible by default; ``None`` draws a fresh one).
    * ``num_threads``: torch CPU threads inside ``solve`` (restored after); ``None`` uses one
      thread when the first round has fewer than 500k joint values (70,000 targets of a 7-joint
      arm; 10,000 targets run twice as fast on one thread as on two here, with
      ``OMP_WAIT_POLICY=PASSIVE``: waking the second thread costs more per op than it saves)
      and torch's setting above.
    * ``avoid_starts`` and ``avoid_iterations``: with ``solve(..., avoid=CollisionTask(...))``,
      each target is solved from ``avoid_starts`` of IK's answers (from as many random starts,
      the first at ``q0``), each then given at most ``avoid_iterations`` steps of the frames and
      the collision task together on the solver engine; the best is kept (see
      :mod:`robojac.ik._avoid`).
    * ``frame_weights``: for a mapping of targets, ``{frame: weight}`` (default 1 each), which
      multiplies ``position_weight`` and ``orientation_weight`` for that frame: where the frames
      cannot all be reached, the heavier ones come closer (feet before hands).  The
      tolerances stay the same for every frame.
    """

    frame: str | None = None
    max_iterations: int = 15
    restarts: int = 8
    fill: int = 128
    rounds: int = 40
    patience: int = 8
    candidates: int = 4
    start_table: int = 4096
    position_weight: float = 1.0
    orientation_weight: float = 0.35
    position_tolerance: float = 1e-4
    orientation_tolerance: float = 1e-3
    lambda_initial: float = 0.01
    rest_pose: Tensor | None = None
    nullspace_gain: float = 0.0
    engine: Engine = "auto"
    seed: int | None = 0
    num_threads: int | None = None
    frame_weights: Mapping[str, float] | None = None
    avoid_starts: int = 8
    avoid_iterations: int = 60

    def __post_init__(self):
        owner = "IKConfig"
        if self.frame is not None and not isinstance(self.frame, str):
            raise ValueError(f"IKConfig.frame: expected a frame name or None, got {self.frame!r}")
        for name in ("max_iterations", "restarts", "fill", "rounds", "patience", "candidates", "avoid_starts",
                     "avoid_iterations"):
            check_int(owner, name, getattr(self, name), minimum=1)
        check_int(owner, "start_table", self.start_table, minimum=0)
        for name in ("position_weight", "orientation_weight", "position_tolerance", "orientation_tolerance",
                     "lambda_initial"):
            check_real(owner, name, getattr(self, name), positive=True)
        check_real(owner, "nullspace_gain", self.nullspace_gain)
        check_choice(owner, "engine", self.engine, ("auto", "numpy", "torch"))
        check_int(owner, "seed", self.seed, minimum=0, optional=True)
        check_int(owner, "num_threads", self.num_threads, minimum=1, optional=True)
        if self.frame_weights is not None:
            if not isinstance(self.frame_weights, Mapping):
                raise ValueError(f"IKConfig.frame_weights: expected a mapping {{frame name: weight}} or None, got "
                                 f"{type(self.frame_weights).__name__}")
            for name, weight in self.frame_weights.items():
                if not isinstance(name, str):
                    raise ValueError(f"IKConfig.frame_weights: expected frame names as keys, got {name!r}")
                check_real(owner, f"frame_weights[{name!r}]", weight, positive=True)
            object.__setattr__(self, "frame_weights", dict(self.frame_weights))  # a copy, so edits do not leak in


@dataclass(frozen=True)
class IKResult:
    """Joint values ``q (..., dof)`` for each target (the target's batch shape, dtype and device).

    ``pos_err`` (m) and ``rot_err`` (rad): the errors of the returned ``q`` (recomputed in
    float64 after rounding to the target's dtype), ``(..., K)`` for a mapping of ``K`` frames'
    targets (in its order; a position target's ``rot_err`` is 0); ``converged``: all below the
    tolerances and ``q`` inside the joint limits; ``iterations``: the steps spent on the returned
    solution (over all its rounds).  In the solver engine's vocabulary (:class:`robojac.optim.SolveResult`):

    * ``cost``: ``0.5 |e|^2`` of the returned ``q``, ``e = [w_p (p* - p); w_o Log(R* R^T)]``
      (summed over the frames);
    * ``reason`` (one per target, in the targets' flattened order): ``"tolerance"`` (converged),
      ``"no_progress"`` (``patience`` rounds ended within 5% of the best error: the closest pose
      of an unreachable target), ``"max_rounds"`` (the rounds ran out) or ``"no_moving_joints"``
      (no joint moves the frame, and it is not at the target);
    * ``history`` ``(rounds, *batch)``: the best cost after each round (a round runs a target's
      restarts together; a target already solved keeps its cost).

    With ``avoid`` (a :class:`CollisionTask`): ``clearance`` ``(...)``, the smallest of its
    signed distances at ``q`` (m); ``converged`` also asks for a clearance of at least the
    task's ``margin`` less ``position_tolerance``; ``reason`` may be ``"in_collision"`` (not
    that clear, the frames reached or not) or ``"not_reached"`` (clear, a frame beyond the
    tolerances: where both cannot be met, the answer is where the two tasks balance);
    ``history`` ``(2, *batch)`` is the chosen start's cost after IK alone and at the end;
    ``iterations`` counts both.  Without it ``clearance`` is ``None``.
    """

    q: Tensor
    converged: Tensor
    pos_err: Tensor
    rot_err: Tensor
    iterations: Tensor
    cost: Tensor
    reason: tuple[str, ...]
    history: Tensor
    clearance: Tensor | None = None


_DEFAULT = IKConfig()
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # chain -> what solve derived from it


def _compiled(chain: Chain, key, build):
    """What ``solve`` derives from a chain (its numpy path, limits in a dtype), built once per chain."""
    store = _COMPILED.setdefault(chain, {})
    if key not in store:
        store[key] = build()
    return store[key]


def _limits(chain: Chain, dtype, device, numpy: bool):
    """``(lower, upper, turn)`` for an engine, rebuilt when the chain's limits are edited."""
    def build():
        lo, hi = chain.limits_for(dtype, device)
        rotational = torch.tensor([j.type.rotational for j in chain.tree.actuated], device=lo.device)
        turn = torch.where(rotational, 2 * math.pi, 0.0).to(dtype=dtype, device=device)
        return tuple(a.cpu().numpy() for a in (lo, hi, turn)) if numpy else (lo, hi, turn)

    return chain._from_limits(("ik", dtype, str(device), numpy), build)


def _table(chain: Chain, frame: str, size: int) -> StartTable:
    """The start table of ``frame`` (built on the first solve, rebuilt when the limits change)."""
    return chain._from_limits(("ik_table", frame, size), lambda: StartTable(chain, _path(chain, frame), size))


def _frames_table(chain: Chain, frames: tuple[str, ...], size: int) -> StartTable:
    """The start table of several ``frames`` at once (as :func:`_table`)."""
    return chain._from_limits(("ik_table", frames, size), lambda: StartTable(chain, _frame_paths(chain, frames), size))


def _numpy_targets(flat: Tensor, position_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(R* (B, 3, 3), p* (B, 3))`` in float64 for the numpy engine."""
    host = flat.detach().cpu()
    # numpy has no bfloat16: half precisions widen in torch, float32/64 in numpy (fewer torch ops)
    T64 = (host if host.dtype in (torch.float32, torch.float64) else host.double()).numpy().astype(np.float64)
    R = np.zeros((T64.shape[0], 3, 3)) if position_only else quat_to_matrix_np(T64[:, 3:])
    return R, T64[:, :3]


def _drive(chain: Chain, frame: str, device, numpy: bool):
    """Indices of the joints that move ``frame`` (on its path; mimic sources count), or ``None``
    when every joint does.  The others have zero Jacobian columns: both engines leave them out
    of the steps (they keep their starting values), which avoids a singular solve (a zero pivot
    that float32 cannot tell from round-off) and shrinks the systems (a humanoid's one arm: 9 of
    TALOS's 32 joints)."""
    def build():
        moves = _path(chain, frame).drives
        if moves.all():
            return None
        drive = np.nonzero(moves)[0]
        return drive if numpy else torch.from_numpy(drive).to(device)

    return _compiled(chain, ("drive", frame, str(device), numpy), build)


def _path(chain: Chain, frame: str) -> SerialPath:
    return _compiled(chain, ("path", frame), lambda: SerialPath(chain, frame))


def _frame_paths(chain: Chain, frames: tuple[str, ...]) -> FramePaths:
    return _compiled(chain, ("paths", frames), lambda: FramePaths(chain, frames))


def _build_problem(chain: Chain, cfg: IKConfig, frame: str, position_only: bool, dtype, device, numpy: bool,
                   group: int, returned=None) -> Problem:
    lo, hi, turn = _limits(chain, dtype, device, numpy)
    w2 = [cfg.position_weight**2] * 3 + [cfg.orientation_weight**2] * 3
    rest = None
    if cfg.rest_pose is not None and cfg.nullspace_gain != 0:
        rest = torch.as_tensor(cfg.rest_pose, dtype=dtype, device=device)
    if numpy:
        w2, rest = np.array(w2), None if rest is None else rest.cpu().numpy()
    else:
        w2 = torch.tensor(w2, dtype=dtype, device=device)
    # when the answer is returned below float64 the attempts aim 1% inside the tolerances: their
    # own errors carry round-off (~1e-7 m on a 1 m arm in float32), and an attempt that stops
    # just under a tolerance by them could fail the float64 re-check of the returned q (1 or 2 of
    # 10,000 targets did); so could a float64 attempt's q rounded to float32 (1 of 30,000 did)
    aim = 1.0 if (returned or dtype) == torch.float64 else 0.99
    return Problem(lo, hi, turn, w2, position_only, aim * cfg.position_tolerance, aim * cfg.orientation_tolerance,
                   cfg.lambda_initial, cfg.max_iterations, group, rest, cfg.nullspace_gain,
                   None if frame is None else _drive(chain, frame, device, numpy))


def _problem(chain: Chain, cfg: IKConfig, frame: str, position_only: bool, dtype, device, numpy: bool,
             group: int, returned=None) -> Problem:
    """The attempt's constants, built once per chain and settings (a lone target's solve is
    latency-bound) and again when the limits change; a rest pose is not memoised.  ``returned``:
    the dtype the answer is returned in (default: ``dtype``).  ``frame=None``: several frames'
    attempt, which picks its joints itself (``drive`` is ``None``)."""
    args = (chain, cfg, frame, position_only, dtype, device, numpy, group, returned)
    if cfg.rest_pose is not None and cfg.nullspace_gain != 0:
        return _build_problem(*args)
    key = ("ik_problem", frame, position_only, dtype, returned, str(device), numpy, group, cfg.position_weight,
           cfg.orientation_weight, cfg.position_tolerance, cfg.orientation_tolerance, cfg.lambda_initial,
           cfg.max_iterations, cfg.nullspace_gain)
    return chain._from_limits(key, lambda: _build_problem(*args))


def _check(chain, cfg, target, q0):
    _check_chain(chain)
    frame, flat, batch, position_only = one_frame_targets(chain, cfg, target)
    _check_engine(cfg, flat)
    return frame, flat, batch, position_only, check_start(chain, cfg, q0, flat, batch)


def _check_engine(cfg: IKConfig, targets: Tensor) -> None:
    if cfg.engine == "numpy" and targets.device.type != "cpu":
        raise ValueError(f"IKConfig.engine: 'numpy' runs on the CPU; the targets are on {targets.device} "
                         f"(use 'torch' or 'auto')")


def _check_chain(chain) -> None:
    if not isinstance(chain, Chain):
        raise TypeError(f"chain: expected a robojac Chain, got {type(chain).__name__}")


def _solve_frames(chain: Chain, cfg: IKConfig, targets: Mapping, q0) -> IKResult:
    """:func:`solve` of a mapping ``{frame: target}``: every frame at its target at once (see :mod:`._frames`)."""
    _check_chain(chain)
    frames, T, batch, position_only = _frames.parse_frame_targets(chain, targets, cfg)
    _check_engine(cfg, T)
    unknown = sorted(set(cfg.frame_weights or ()) - set(frames))
    if unknown:
        raise ValueError(f"IKConfig.frame_weights: {unknown[0]!r} is not one of the targets' frames {list(frames)}")
    q0 = check_start(chain, cfg, q0, T[:, 0], batch)
    B, K, dt, dev = T.shape[0], len(frames), T.dtype, T.device
    if B == 0 or not len(_frames.drive_of(chain, frames, dev)):  # nothing to solve for, or nothing to solve with
        q = (_middle(chain, B, dev) if q0 is None else q0).to(dt)
        with torch.no_grad():
            X = chain.forward_kinematics_tensor(q.double(), frames)
            _, pe, re = _frames.frame_pose_errors(X, T.double(), position_only)
        ok = _frames_solved(chain, cfg, pe, re, q)
        return IKResult(q.reshape(batch + (chain.dof,)), ok.reshape(batch), pe.to(dt).reshape(batch + (K,)),
                        re.to(dt).reshape(batch + (K,)), torch.zeros(B, dtype=torch.long, device=dev).reshape(batch),
                        _frames.cost(pe, re, cfg, frames).to(dt).reshape(batch),
                        tuple("tolerance" if good else "no_moving_joints" for good in ok.tolist()),
                        pe.new_zeros((0,) + batch, dtype=dt))
    first_round = B * min(cfg.restarts, max(1, -(-cfg.fill // B)))
    q0_host = None if q0 is None else q0.detach().to("cpu", torch.float64).numpy()
    with torch_threads(threads_for(first_round * chain.dof, dev, cfg.num_threads)):
        q, best, pe, re = _frames.rounds(
            chain, cfg, frames, T.detach(), position_only, q0_host,
            _held(chain, _frames.drive_of(chain, frames, "cpu").numpy(), q0_host, B),
            problem=lambda work, R, numpy: _problem(chain, cfg, None, False, work, dev, numpy, group=R, returned=dt),
            starts=lambda gen, n, R, distance: _starts(chain, cfg, gen, n, R, distance),
            returned=lambda q: _returned(chain, q, dt, dev),
            paths=_frame_paths(chain, frames) if dev.type == "cpu" and cfg.engine != "torch" else None,
            table=_frames_table(chain, frames, cfg.start_table) if cfg.start_table else None)
    ok = _frames_solved(chain, cfg, pe, re, q)
    solved = ok.cpu().numpy()
    why = np.where(solved, "tolerance", np.where(best.stalled >= cfg.patience, "no_progress", "max_rounds"))
    if T.requires_grad and torch.is_grad_enabled():
        q = _frames.gradients(chain, cfg, frames, T, position_only, q, ok).to(dt)
    history = torch.from_numpy(np.stack(best.history)).to(dtype=dt, device=dev).reshape((len(best.history),) + batch)
    return IKResult(q.reshape(batch + (chain.dof,)), ok.reshape(batch), pe.to(dt).reshape(batch + (K,)),
                    re.to(dt).reshape(batch + (K,)), torch.from_numpy(best.iters).to(dev).reshape(batch),
                    _frames.cost(pe, re, cfg, frames).to(dt).reshape(batch), tuple(why.tolist()), history)


def _frames_solved(chain: Chain, cfg: IKConfig, pe: Tensor, re: Tensor, q: Tensor) -> Tensor:
    """``(B,)``: every frame within the tolerances (errors ``(B, K)``) and ``q`` inside the limits."""
    return _frames.within(pe, re, cfg.position_tolerance, cfg.orientation_tolerance) & chain.within_limits(q.double())


def _middle(chain: Chain, B: int, device) -> Tensor:
    """``(B, dof)``: the middle of each joint's limits (zero for a continuous joint), float64."""
    lo, hi = chain.limits_for(torch.float64, device)
    mid = torch.where(torch.isfinite(lo) & torch.isfinite(hi), 0.5 * (lo + hi), torch.zeros_like(lo))
    return chain.clamp(mid.expand(B, chain.dof))


def solve(chain: Chain, target, *, q0: Tensor | None = None, config: IKConfig | None = None,
          avoid=None) -> IKResult:
    """Joint values placing ``config.frame`` (default the tip) at ``target``.

    ``target``: SE3 poses (LieTensor ``(..., 7)`` in pypose order, or ``(..., 4, 4)``), or
    positions ``(..., 3)`` for position-only IK, in the chain's root frame; float32 or float64,
    any device, any batch shape.  Or a mapping ``{frame: target}`` (each a pose or a position, in
    one batch shape, dtype and device) that places every frame at once: a humanoid's hands and
    feet (``config.frame`` must then be ``None``; see :mod:`robojac.ik._frames`).  ``q0``
    (``(..., dof)`` or ``(dof,)``) starts each target's first attempt, made alone.

    Each step solves ``(J^T W J + lambda diag(J^T W J)) dq = J^T W e`` (Levenberg-Marquardt,
    ``lambda`` per problem: /3 after a step that lowers the cost, x3 and retry after one that
    does not, x3 after a second step in a row that its model overstated fourfold).  Joint limits
    are kept by the step itself: a revolute joint that would leave its range comes back by a full
    turn when that lands inside; joints still outside are frozen and the step re-solved for the
    others; what remains is clamped.  Unreachable targets come back with ``converged=False``
    and their smallest errors (never an exception or NaN).

    ``avoid``: an :class:`~robojac.ik.CollisionTask` (a robot's collision shapes, obstacles,
    a margin) that every answer must also keep: the targets are then solved from several starts
    with the task on the solver engine, and the best kept (:mod:`robojac.ik._avoid`;
    ``IKConfig.avoid_starts``).
    """
    cfg = config or _DEFAULT
    if avoid is not None:
        return solve_avoiding(chain, cfg, target, q0, avoid, solve, IKResult)
    if isinstance(target, Mapping):
        return _solve_frames(chain, cfg, target, q0)
    frame, flat, batch, position_only, q0 = _check(chain, cfg, target, q0)
    B = flat.shape[0]
    if B == 0 or not chain.moving_joints(frame):  # nothing to solve for, or nothing to solve with
        return _without_steps(chain, cfg, frame, flat, batch, position_only, q0)
    first_round = B * min(cfg.restarts, max(1, -(-cfg.fill // B)))
    with torch_threads(threads_for(first_round * chain.dof, flat.device, cfg.num_threads)):
        result = _solve_in_rounds(chain, cfg, frame, flat, batch, position_only, q0)
    if flat.requires_grad and torch.is_grad_enabled():
        result = _with_gradients(chain, cfg, frame, flat, batch, position_only, result)
    return result


def _with_gradients(chain: Chain, cfg: IKConfig, frame: str, flat: Tensor, batch: tuple, position_only: bool,
                    result: IKResult) -> IKResult:
    """``result`` with ``q`` differentiable with respect to the target: the implicit function
    theorem at the solution, on the solver engine (:func:`robojac.optim.attach_gradients`), for the
    weighted error ``[w_p (p* - p); w_o Log(R* R^T)]``.  Joints that do not move the frame get no
    gradient; for a redundant arm the derivative is the damped least-norm one (damping 1e-10 of
    the Hessian's largest entry in float64, 1e-5 below).  The Hessian is Gauss-Newton's: a
    reached target's error is within the tolerances, where the second-order terms are as small as
    the answer's own distance from the exact solution; one closed-form Jacobian replaces the
    exact Hessian's products (10,000 Panda targets' backward 0.12 -> 0.05 s), and one backward
    through the pose error with the joints held replaces the double backward through the
    kinematics (a lone Panda target's backward 4.8-6.3 -> 2.1-2.2 ms).  Active joint limits are
    not treated as constraints; a target that was not reached passes zero gradient."""
    B, dof = flat.shape[0], chain.dof
    work = working_dtype(flat.dtype)  # half-precision targets: differentiated in float32, q given back in theirs
    q = result.q.reshape(B, dof).detach().to(work)
    drive = _frames.drive_of(chain, (frame,), q.device)
    w = torch.tensor([cfg.position_weight] * 3 + ([] if position_only else [cfg.orientation_weight] * 3),
                     dtype=work, device=flat.device)
    residual = TargetResidual(chain, frame, q, drive, w, position_only)  # the joints that move the frame
    q = differentiable(residual, flat.to(work), q, drive, result.converged.reshape(B))
    return replace(result, q=q.to(flat.dtype).reshape(batch + (dof,)))


def _solve_in_rounds(chain: Chain, cfg: IKConfig, frame: str, flat: Tensor, batch: tuple, position_only: bool,
                     q0: Tensor | None) -> IKResult:
    """The rounds of attempts.  Their bookkeeping (best start per target, stalls, give-ups) is
    O(targets) work per round and runs in numpy on the host whatever the device: a lone
    target's solve is latency-bound, and torch spends several microseconds per op on it."""
    dt, dev = flat.dtype, flat.device
    B, dof = flat.shape[0], chain.dof
    numpy_ok = dev.type == "cpu" and cfg.engine != "torch"
    path = _path(chain, frame) if numpy_ok else None
    T = flat.detach()
    np_targets = _numpy_targets(flat, position_only) if numpy_ok or cfg.start_table else None
    gen = random_source(cfg.seed)
    best = Best(B, dof)
    q0_host = None if q0 is None else q0.detach().to("cpu", torch.float64).numpy()
    held = _held(chain, _drive(chain, frame, "cpu", True), q0_host, B)
    measured = True  # every round ran the float64 numpy engine: its errors are the float64 re-check's
    for rnd, todo, R in best.rounds(cfg, seeded=q0 is not None):
        n = todo.size
        # torch for large rounds (float32 at full width), numpy for the few: a lone target's
        # starts, the last hard targets of a batch
        use_numpy = numpy_ok and (cfg.engine == "numpy" or n * R <= NUMPY_MAX_ROUND)
        work_dt = torch.float64 if use_numpy else working_dtype(dt)  # a half precision: the torch engine in float32
        measured &= use_numpy
        pb = _problem(chain, cfg, frame, position_only, work_dt, dev, use_numpy, group=R, returned=dt)
        near, near_eval = _table(chain, frame, cfg.start_table).starts(
            chain, gen, np_targets, todo, R, rotation_scale(cfg.position_weight, cfg.orientation_weight, position_only),
            evaluated=use_numpy and (q0 is None)) if rnd == 0 and cfg.start_table else (None, None)
        alone = rnd < 0  # the round of q0 alone: no other start
        if alone:
            near = np.empty((n, chain.dof))
        if use_numpy:
            sel = todo.repeat(R)
            qi = near if near is not None else _starts(
                chain, cfg, gen, n, R, lambda q: _distance_np(path, q, np_targets, sel, cfg, position_only))
            qi = seeded(qi, todo, R, held, q0_host, alone)
            step = R * max(1, NUMPY_CHUNK // R)  # whole groups per chunk, cache-sized arrays
            outs = [lm_numpy(path, np_targets[0][sel[c : c + step]], np_targets[1][sel[c : c + step]], qi[c : c + step],
                             pb, None if near_eval is None else tuple(a[c : c + step] for a in near_eval))
                    for c in range(0, n * R, step)]
            q, pe, re, ok, it = (np.concatenate(a) for a in zip(*outs)) if len(outs) > 1 else outs[0]
        else:
            rows = torch.from_numpy(todo).to(dev)
            Tr = T[rows].repeat_interleave(R, 0).to(work_dt)
            if near is None:
                near = _starts(chain, cfg, gen, n, R,
                               lambda q: _distance_torch(chain, frame, q, Tr, cfg, position_only, work_dt))
            q_init = torch.from_numpy(seeded(near, todo, R, held, q0_host, alone)).to(dtype=work_dt, device=dev)
            out = lm_engine(chain, frame, Tr, q_init, pb)
            q, pe, re, ok, it = (a.detach().cpu().numpy() for a in out)
        # the attempts ranked by the cost they minimize (what result.cost and history report)
        best.update(todo, R, q, pe, re, ok, it, _closeness(pe.astype(np.float64), re.astype(np.float64), cfg),
                    cfg.patience)
        best.history.append(_cost(best.pe, best.re, cfg))
    best_q, best_pe, best_re, stalled, iters, history = best.q, best.pe, best.re, best.stalled, best.iters, best.history
    q = _returned(chain, best_q, dt, dev)
    if numpy_ok:  # measure the returned q in float64 on the same path
        q64 = q.double().numpy()
        if measured and np.array_equal(q64, best_q):  # nothing rounded, wrapped or clamped since
            pe, re = best_pe, best_re
        else:
            _, _, pe, re = frame_errors(path, q64, *np_targets, position_only, jacobian=False)
        lo, hi, _ = _limits(chain, torch.float64, dev, True)
        ok = (pe < cfg.position_tolerance) & (re < cfg.orientation_tolerance) & ((q64 >= lo) & (q64 <= hi)).all(-1)
        np_dt = np.float32 if dt == torch.float32 else np.float64  # others (half precisions) by .to() below
        cost = torch.from_numpy(_cost(pe, re, cfg).astype(np_dt))  # in numpy: a lone target is latency-bound
        ok, pe, re = torch.from_numpy(ok), torch.from_numpy(pe.astype(np_dt)), torch.from_numpy(re.astype(np_dt))
        solved = ok.numpy()
    else:
        X = chain.forward_kinematics(q.double(), frame).tensor()
        _, pe, re = pose_errors(X, flat.double(), position_only)
        ok = (pe < cfg.position_tolerance) & (re < cfg.orientation_tolerance) & chain.within_limits(q.double())
        cost, solved = _cost(pe, re, cfg), ok.cpu().numpy()
    why = np.where(solved, "tolerance", np.where(stalled >= cfg.patience, "no_progress", "max_rounds"))
    history = torch.from_numpy(np.stack(history)).to(dtype=dt, device=dev).reshape((len(history),) + batch)
    return IKResult(q.reshape(batch + (dof,)), ok.reshape(batch), pe.to(dt).reshape(batch), re.to(dt).reshape(batch),
                    torch.from_numpy(iters).to(dev).reshape(batch), cost.to(dt).reshape(batch), tuple(why.tolist()),
                    history)


def _held(chain: Chain, drive: np.ndarray | None, q0: np.ndarray | None,
          B: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(joints, values (B, len(joints)))``: the joints outside ``drive`` (those that move no
    target frame) and the values they keep in every attempt, ``q0``'s (``(B, dof)``, float64 on
    the host) or the middle of their limits (a humanoid's head does not take a random pose for a
    target of its hand); ``None`` when every joint moves a frame (``drive`` ``None`` or all of
    them)."""
    off = np.empty(0, dtype=np.int64) if drive is None else np.setdiff1d(np.arange(chain.dof), drive)
    if not len(off):
        return None
    if q0 is not None:
        return off, q0[:, off]
    lo, hi, _ = _limits(chain, torch.float64, "cpu", True)  # in numpy: a lone target is latency-bound
    with np.errstate(invalid="ignore"):  # -inf + inf, of an unlimited joint, is masked below
        middle = np.where(np.isfinite(lo) & np.isfinite(hi), 0.5 * (lo + hi), 0.0).clip(lo, hi)  # as _middle
    return off, np.broadcast_to(middle[off], (B, len(off)))


def _without_steps(chain: Chain, cfg: IKConfig, frame: str, flat: Tensor, batch: tuple, position_only: bool,
                   q0: Tensor | None) -> IKResult:
    """The answer when no step can change anything: an empty batch, or a frame no joint moves
    (a chain of fixed joints, a frame fixed to the root).  ``q`` is ``q0`` (or the middle of the
    limits); ``converged`` says whether the frame is already at the target."""
    dt, dev, B = flat.dtype, flat.device, flat.shape[0]
    q = (_middle(chain, B, dev) if q0 is None else q0).to(dt)
    X = chain.forward_kinematics(q.double(), frame).tensor()
    _, pe, re = pose_errors(X, flat.double(), position_only)
    ok = (pe < cfg.position_tolerance) & (re < cfg.orientation_tolerance) & chain.within_limits(q.double())
    reason = tuple("tolerance" if good else "no_moving_joints" for good in ok.tolist())
    return IKResult(q.reshape(batch + (chain.dof,)), ok.reshape(batch), pe.to(dt).reshape(batch),
                    re.to(dt).reshape(batch), torch.zeros(B, dtype=torch.long, device=dev).reshape(batch),
                    _cost(pe, re, cfg).to(dt).reshape(batch), reason, pe.new_zeros((0,) + batch, dtype=dt))


def _cost(pe, re, cfg: IKConfig):
    """``0.5 |e|^2`` of the weighted pose error from its position and rotation parts (numpy or torch)."""
    return 0.5 * cfg.position_weight**2 * _closeness(pe, re, cfg)


def _starts(chain: Chain, cfg: IKConfig, gen: torch.Generator, n: int, R: int, distance) -> np.ndarray:
    """``(n R, dof)`` random starts in float64, ``R`` per target: of ``cfg.candidates`` uniform
    draws each, the one ``distance`` (candidates ``(n R K, dof)`` -> ``(n R K,)``) puts closest."""
    K = cfg.candidates if n * R >= cfg.fill else 1
    q = chain.random_configuration(n * R * K, generator=gen, dtype=torch.float64, device="cpu").numpy()
    if K == 1:
        return q
    k = distance(q).reshape(n * R, K).argmin(1)
    return q.reshape(n * R, K, chain.dof)[np.arange(n * R), k]


def _distance_np(path: SerialPath, q: np.ndarray, targets, sel: np.ndarray, cfg: IKConfig,
                 position_only: bool) -> np.ndarray:
    """Weighted squared pose errors of candidates ``q`` (``len(q) / len(sel)`` per problem) to the targets ``sel``."""
    sel = sel.repeat(len(q) // len(sel))
    _, _, pe, re = frame_errors(path, q, targets[0][sel], targets[1][sel], position_only, jacobian=False)
    return _closeness(pe, re, cfg)


def _distance_torch(chain: Chain, frame: str, q: np.ndarray, T: Tensor, cfg: IKConfig, position_only: bool,
                    dtype) -> np.ndarray:
    """:func:`_distance_np` by the chain's own kinematics (the rounds on the solver engine)."""
    K = len(q) // len(T)
    X = chain.forward_kinematics(torch.from_numpy(q).to(dtype=dtype, device=T.device), frame).tensor()
    _, pe, re = pose_errors(X, T.repeat_interleave(K, 0), position_only)
    return _closeness(pe, re, cfg).cpu().numpy()


def _closeness(pe, re, cfg: IKConfig):
    """The solver's weighted squared error (over ``w_p^2``) from position and rotation errors (numpy or torch)."""
    return pe * pe + (cfg.orientation_weight / cfg.position_weight * re) ** 2


def _returned(chain: Chain, q: np.ndarray, dtype, device) -> Tensor:
    """``q`` (float64, on the host) rounded to ``dtype`` on ``device`` and kept inside the limits
    (continuous joints wrapped into ``[-pi, pi)``)."""
    on_host = torch.device(device).type == "cpu" and dtype in (torch.float32, torch.float64)
    lo, hi, _ = _limits(chain, dtype if on_host else torch.float64, "cpu", True)
    continuous = np.isinf(lo)
    if continuous.any():
        q = np.where(continuous, np.remainder(q + math.pi, 2 * math.pi) - math.pi, q)
    if on_host:  # the same rounding and clamp in numpy (a lone target's solve is latency-bound)
        return torch.from_numpy(np.minimum(np.maximum(q.astype(lo.dtype), lo), hi))
    return chain.clamp(torch.from_numpy(q).to(device=device, dtype=dtype))
