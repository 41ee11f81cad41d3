"""``trajopt``: a smooth joint trajectory from a start configuration to a goal, clear of
obstacles, inside the joint and velocity limits, as one least-squares problem on the solver
engine (pyroki's and cuRobo's trajectory optimization, on :mod:`robojac.optim`).

The unknowns are ``steps`` waypoints ``q_0 .. q_{T-1}`` at even times over ``duration``, the
first held at the start.  The factors, each with its Jacobian in closed form:

* the joints' acceleration at every waypoint, the trajectory at rest before and after
  (:class:`Acceleration`, :class:`RestAtEnds`): ``0.5 w_a^2`` times the integral of ``|q''|^2``;
* steps faster than the chain's velocity limits (:class:`VelocityLimit`);
* with ``avoid`` (an ``ik.CollisionTask``): its clearance at every waypoint and at ``substeps``
  configurations between each two (:class:`SweptClearance`);
* the joint limits are the variable's bounds (every step stays inside them).

The last waypoint is held at the goal configuration: ``end``, or for a pose or position goal
IK's answer from the start (``ik.solve`` with ``q0`` the start, the branch nearest it; with
``avoid``, where that answer is not clear by the margin, IK with the collision task).  Both ends
are fixed entries of the variable, so the answer is differentiable in the start, ``end`` and a
goal pose through the engine's implicit gradient (and IK's).  A goal held as a weighted frame
factor instead was tried first: its curved valley (a stiff nonlinear residual) slowed
Levenberg-Marquardt to a crawl, 100 iterations short of converging on a 16-waypoint Panda
trajectory that the held goal solves in under 20.

A least-squares solve is local, so each problem starts from ``starts`` initial trajectories at
once (one batch): the minimum-acceleration curve from the start to the goal configuration (IK's,
for a pose goal) and others bent through random configurations; the best is kept, feasible
first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .. import ik, optim
from .._config import check_choice, check_instance, check_int, check_real
from ..kinematics import Chain
from ._residuals import Acceleration, RestAtEnds, SweptClearance, VelocityBound, VelocityLimit

__all__ = ["TrajOptConfig", "TrajOptResult", "trajopt"]


@dataclass(frozen=True)
class TrajOptConfig:
    """Options of :func:`trajopt`.

    * ``steps``: waypoints ``T``, the start and the end included (at least 3).
    * ``duration``: seconds from the start to the end; the waypoints are ``duration / (T - 1)``
      apart.
    * ``acceleration_weight``: ``w_a``; the smoothness cost is ``0.5 w_a^2 sum dt |q''|^2``.
    * ``collision_weight``: multiplies the ``avoid`` task's weight at every checked configuration.
    * ``velocity_weight``: ``w max(0, |q'| - v_max)`` per joint and step.
    * ``velocity_scale``: the fraction of the chain's velocity limits allowed (its
      ``velocity_limits``; a joint without one is not limited).
    * ``constraints``: ``"soft"`` (the clearance and the velocity limits are costs: the margin a
      cushion the answer may dip into) or ``"hard"`` (they are inequality constraints on the
      engine, :class:`robojac.optim.Constraint`: every checked configuration at least ``margin``
      clear and every step within the limits, exactly, in rounds of an augmented Lagrangian; the
      ``*_weight`` of those two are then unused).
    * ``substeps``: configurations between each two waypoints where the clearance is a cost (0:
      at the waypoints only).
    * ``check_substeps``: configurations between each two waypoints where the answer's clearance
      is measured (``TrajOptResult.clearance``).
    * ``starts``: initial trajectories per problem, solved together (the first the
      minimum-acceleration curve, the others bent through random configurations).
    * ``max_iterations``: Levenberg-Marquardt steps of the solve.
    * ``ik``: the goal's frame and tolerances, and the options of the IK solve that finds a pose
      goal's configuration (:class:`robojac.ik.IKConfig`).
    * ``seed``: for the bent initial trajectories (reproducible by default; ``None``: fresh).
    """

    steps: int = 32
    duration: float = 2.0
    acceleration_weight: float = 1.0
    collision_weight: float = 100.0
    velocity_weight: float = 1000.0
    velocity_scale: float = 1.0
    constraints: Literal["soft", "hard"] = "soft"
    substeps: int = 2
    check_substeps: int = 8
    starts: int = 4
    max_iterations: int = 200
    ik: ik.IKConfig = field(default_factory=ik.IKConfig)
    seed: int | None = 0

    def __post_init__(self):
        check_int("TrajOptConfig", "steps", self.steps, minimum=3)
        for name in ("duration", "acceleration_weight", "collision_weight", "velocity_weight",
                     "velocity_scale"):
            check_real("TrajOptConfig", name, getattr(self, name), positive=True)
        check_choice("TrajOptConfig", "constraints", self.constraints, ("soft", "hard"))
        check_int("TrajOptConfig", "substeps", self.substeps, minimum=0)
        check_int("TrajOptConfig", "check_substeps", self.check_substeps, minimum=0)
        check_int("TrajOptConfig", "starts", self.starts, minimum=1)
        check_int("TrajOptConfig", "max_iterations", self.max_iterations, minimum=1)
        check_instance("TrajOptConfig.ik", self.ik, ik.IKConfig, "an ik.IKConfig")
        check_int("TrajOptConfig", "seed", self.seed, minimum=0, optional=True)


@dataclass(frozen=True)
class TrajOptResult:
    """A trajectory per problem, in the start's batch shape, dtype and device.

    * ``q (..., T, dof)``: the waypoints, ``q[..., 0, :]`` the start; ``times (T,)``: when each is
      reached (s).
    * ``converged (...)``: the trajectory is feasible: the goal within ``ik``'s tolerances, every
      waypoint inside the joint limits, every step within the velocity limits (times
      ``velocity_scale``, to 0.1%), and, with ``avoid``, no checked configuration in contact
      (``clearance >= 0``).
    * ``reason``, one per problem in flattened order: ``"tolerance"`` (converged),
      ``"in_collision"``, ``"not_reached"`` or ``"too_fast"`` (the first that fails, in that order).
    * ``pos_err``, ``rot_err (...)``: the goal frame's errors at the last waypoint (m, rad; 0 for
      a configuration goal, and ``rot_err`` 0 for a position goal).
    * ``clearance (...)``: the smallest signed distance of the ``avoid`` task at the waypoints
      and ``check_substeps`` configurations between each two (m); ``None`` without ``avoid``.
    * ``speed (...)``: the largest ``|q'| / (velocity_scale v_max)`` over joints and steps
      (at most 1 when within the limits; 0 for a chain without velocity limits).
    * ``cost``, ``iterations``, ``history ((iterations + 1), ...)``: the engine's, for the
      trajectory kept (its cost after each iteration; the last repeated once it stopped).
    """

    q: Tensor
    times: Tensor
    converged: Tensor
    reason: tuple[str, ...]
    pos_err: Tensor
    rot_err: Tensor
    clearance: Tensor | None
    speed: Tensor
    cost: Tensor
    iterations: Tensor
    history: Tensor


_DEFAULT = TrajOptConfig()


def _inside(chain: Chain, q: Tensor, name: str) -> Tensor:
    q = chain.check_configuration(q, name)
    out = ~((q >= chain.lower.to(q)) & (q <= chain.upper.to(q)))
    if bool(out.any()):
        j = int(torch.nonzero(out.reshape(-1, chain.dof).any(0))[0])
        raise ValueError(f"{name}: outside the joint limits at joint {chain.joint_names[j]!r} "
                         f"([{float(chain.lower[j]):.4g}, {float(chain.upper[j]):.4g}])")
    return q


def _profile(T: int, dtype, device) -> tuple[Tensor, Tensor]:
    """``(sigma, bump)`` ``(T,)``: the minimum-acceleration blend from 0 to 1 at rest at both ends
    (``3 s^2 - 2 s^3``), and a bump from 0 to 1 and back, also at rest (``16 s^2 (1 - s)^2``)."""
    s = torch.linspace(0.0, 1.0, T, dtype=dtype, device=device)
    return s * s * (3 - 2 * s), 16 * s * s * (1 - s) ** 2


def _goal_configuration(chain: Chain, T_goal: Tensor, q_start: Tensor, avoid, cfg: TrajOptConfig):
    """``(q (B, dof), pos_err, rot_err)``: IK's answer for each goal from its start (the branch
    nearest the start); with ``avoid``, the goals whose answer is not reached and clear by the
    margin solved again with the collision task (its answer nearest the start)."""
    found = ik.solve(chain, T_goal, q0=q_start, config=cfg.ik)
    if avoid is None:
        return found.q, found.pos_err, found.rot_err
    q, pe, re = found.q.clone(), found.pos_err.clone(), found.rot_err.clone()
    with torch.no_grad():
        clear = avoid.distances(found.q.detach()[:, None])[:, 0].amin(-1) >= avoid.margin - cfg.ik.position_tolerance
    rows = torch.nonzero(~(found.converged & clear)).flatten()
    if rows.numel():
        again = ik.solve(chain, T_goal[rows], q0=q_start[rows], avoid=avoid, config=cfg.ik)
        q[rows], pe[rows], re[rows] = again.q, again.pos_err, again.rot_err
    return q, pe, re


def trajopt(chain: Chain, start: Tensor, target=None, *, end: Tensor | None = None,
            avoid: ik.CollisionTask | None = None, config: TrajOptConfig | None = None) -> TrajOptResult:
    """A smooth trajectory from ``start (..., dof)`` to a goal, batched over the leading dims.

    The goal is ``target``, a pose of ``config.ik.frame`` (the chain's tip by default) as an SE3
    LieTensor, a ``(..., 7)`` tensor or ``(..., 4, 4)`` matrices, or its position ``(..., 3)``;
    or ``end``, a configuration ``(..., dof)``.  ``avoid``, an :class:`robojac.ik.CollisionTask`
    of this chain, keeps the arm clear of its obstacles and of itself along the way (its
    ``margin`` a cushion by default, held exactly with ``constraints="hard"``: the answer's
    ``clearance`` says how clear).

    Differentiable in ``start``, ``end`` and a pose or position ``target`` (the engine's implicit
    gradient at the kept trajectory, through IK's for a pose); the obstacles are held.  See
    :class:`TrajOptConfig` and :class:`TrajOptResult`.
    """
    cfg = _DEFAULT if config is None else config
    check_instance("chain", chain, Chain, "a robojac Chain")
    check_instance("config", cfg, TrajOptConfig, "a motion.TrajOptConfig or None")
    if (target is None) == (end is None):
        raise ValueError("trajopt: expected exactly one goal: target (a pose or position of the goal frame) or end "
                         "(a configuration)")
    if avoid is not None:
        check_instance("avoid", avoid, ik.CollisionTask, "an ik.CollisionTask or None")
        if avoid.chain is not chain:
            raise ValueError(f"avoid: its collision model is of chain {avoid.chain.name!r} (another Chain object); "
                             f"expected the chain being planned, {chain.name!r}")
    start = _inside(chain, start, "start")
    frame = cfg.ik.frame or chain.tip
    if frame not in chain.frame_names:
        raise ValueError(f"TrajOptConfig.ik.frame: frame {frame!r} does not exist; frames: {chain.frame_names}")
    if end is not None:
        if not isinstance(end, Tensor) or end.dtype != start.dtype or end.device != start.device:
            got = f"{end.dtype} on {end.device}" if isinstance(end, Tensor) else type(end).__name__
            raise ValueError(f"end: expected a tensor (..., {chain.dof}) in the start's dtype and device "
                             f"({start.dtype}, {start.device}), got {got}")
        end = _inside(chain, end, "end")
        batch = torch.broadcast_shapes(start.shape[:-1], end.shape[:-1])
    else:
        flat, goal_batch, _ = ik.parse_targets(target)  # a pose or a position alike: IK places it
        T_goal = flat.reshape(goal_batch + flat.shape[-1:])
        if T_goal.dtype != start.dtype or T_goal.device != start.device:
            raise ValueError(f"target: expected the start's dtype and device ({start.dtype}, {start.device}), got "
                             f"{T_goal.dtype} on {T_goal.device}")
        batch = torch.broadcast_shapes(start.shape[:-1], goal_batch)
    n, T, S = chain.dof, cfg.steps, cfg.starts
    dt, dev = start.dtype, start.device
    B = math.prod(batch)
    h = cfg.duration / (T - 1)
    if B == 0:  # no problems: an empty answer in the batch's shape
        zeros = start.new_zeros(batch)
        return TrajOptResult(start.new_zeros(batch + (T, n)), torch.arange(T, dtype=dt, device=dev) * h,
                             torch.zeros(batch, dtype=torch.bool, device=dev), (), zeros, zeros,
                             None if avoid is None else zeros, zeros, zeros,
                             torch.zeros(batch, dtype=torch.long, device=dev), start.new_zeros((1,) + batch))
    q_start = start.expand(batch + (n,)).reshape(B, n)
    if end is None:
        T_goal = T_goal.expand(batch + T_goal.shape[-1:]).reshape(B, -1)
        q_goal, pe, re = _goal_configuration(chain, T_goal, q_start, avoid, cfg)
        pe, re = pe.detach().double(), re.detach().double()
    else:
        q_goal = end.expand(batch + (n,)).reshape(B, n)
        pe = re = torch.zeros(B, dtype=torch.float64, device=dev)
    reached = (pe < cfg.ik.position_tolerance) & (re < cfg.ik.orientation_tolerance)

    # the initial trajectories (S B, T, n): the minimum-acceleration curve, then bent ones; the
    # first and last waypoints (fixed) carry the start's and the goal's graphs
    sigma, bump = _profile(T, dt, dev)
    Q0 = q_start[:, None] + sigma[:, None] * (q_goal - q_start)[:, None]  # (B, T, n)
    Q0 = Q0.expand(S, B, T, n)
    if S > 1:
        gen = torch.Generator(device="cpu")
        gen.manual_seed(cfg.seed) if cfg.seed is not None else gen.seed()
        via = chain.random_configuration(S - 1, B, generator=gen, dtype=dt, device=dev)
        mid = 0.5 * (q_start + q_goal).detach()
        Q0 = torch.cat((Q0[:1], chain.clamp(Q0[1:] + bump[:, None] * (0.5 * (via - mid))[:, :, None])))
    Q0 = Q0.reshape(S * B, T, n)

    lo, hi = chain.limits_for(dt, dev)
    fixed = torch.zeros(T, dtype=torch.bool, device=dev)
    fixed[0] = fixed[-1] = True
    q = optim.Variable("Rn", Q0, lower=lo, upper=hi, fixed=fixed, name="q")
    idx = torch.arange(T, device=dev)
    factors = [
        optim.Factor(Acceleration(h, cfg.acceleration_weight), [q, q, q],
                     torch.stack((idx[:-2], idx[1:-1], idx[2:]), 1), name="acceleration"),
        optim.Factor(RestAtEnds(h, cfg.acceleration_weight), [q, q],
                     torch.tensor([[0, 1], [T - 2, T - 1]], device=dev), name="rest_at_ends"),
    ]
    pairs = torch.stack((idx[:-1], idx[1:]), 1)
    v_max = chain.velocity_limits.to(dtype=dt, device=dev) * cfg.velocity_scale
    constraints = []
    if bool(torch.isfinite(v_max).any()):
        if cfg.constraints == "hard":
            constraints.append(optim.Constraint(VelocityBound(h, v_max), [q, q], pairs, kind="leq", name="velocity"))
        else:
            factors.append(optim.Factor(VelocityLimit(h, v_max, cfg.velocity_weight), [q, q], pairs, name="velocity"))
    if avoid is not None:
        if cfg.constraints == "hard":
            constraints.append(optim.Constraint(SweptClearance(avoid.constraint(), cfg.substeps), [q, q], pairs,
                                                kind="leq", name="clearance"))
        else:
            factors.append(optim.Factor(SweptClearance(avoid, cfg.substeps, cfg.collision_weight), [q, q], pairs,
                                        name="clearance"))
    solver = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=cfg.max_iterations),
                                linear_solver="dense")  # the bounds need it
    result = optim.solve([q], factors, solver, constraints=constraints)
    Q = result.values[0]  # (S B, T, n)

    with torch.no_grad():
        Qd = Q.detach()
        vel = (Qd[:, 1:] - Qd[:, :-1]).abs().double() / h
        speed = (vel / v_max.double()).flatten(1).amax(1)  # an unlimited joint: 0
        slow = speed <= 1.001
        inside = chain.within_limits(Qd.double()).all(1)
        if avoid is not None:
            k = cfg.check_substeps
            s = torch.arange(0, k + 1, dtype=dt, device=dev) / (k + 1)
            dense = Qd[:, :-1, None] + s[:, None] * (Qd[:, 1:] - Qd[:, :-1])[:, :, None]  # (S B, T-1, k+1, n)
            dense = torch.cat((dense.flatten(1, 2), Qd[:, -1:]), 1)
            clearance = avoid.distances(dense).flatten(1).amin(1).double()
            clear = clearance >= 0
        else:
            clearance, clear = None, torch.ones_like(inside)
        ok = reached.repeat(S) & inside & slow & clear
        rank = (~ok).double() + (~clear).double()
        cost_all = result.cost.double()
        score = rank * (cost_all.max() + 1) + cost_all
        best = score.reshape(S, B).argmin(0) * B + torch.arange(B, device=dev)
    pick = (lambda x: x.index_select(0, best))
    ok, speed, clear = map(pick, (ok, speed, clear))
    reason = tuple("tolerance" if o else "in_collision" if not c else "not_reached" if not r else "too_fast"
                   for o, c, r in zip(ok.tolist(), clear.tolist(), reached.tolist()))
    history = result.history.cost.index_select(1, best)  # (iterations, B)
    history = torch.cat((result.initial_cost.index_select(0, best)[None], history), 0)
    return TrajOptResult(
        q=pick(Q).reshape(batch + (T, n)), times=torch.arange(T, dtype=dt, device=dev) * h,
        converged=ok.reshape(batch), reason=reason, pos_err=pe.to(dt).reshape(batch), rot_err=re.to(dt).reshape(batch),
        clearance=None if clearance is None else pick(clearance).to(dt).reshape(batch),
        speed=speed.to(dt).reshape(batch), cost=pick(result.cost).reshape(batch),
        iterations=pick(result.iterations).reshape(batch), history=history.reshape((-1,) + batch))
