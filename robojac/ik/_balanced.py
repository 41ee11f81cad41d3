"""Whole-body IK with balance in one call: ``solve_balanced(chain, target, support)``.

Frames at their targets (equality constraints), the centre of mass ``margin`` inside the support
polygon (an inequality), and otherwise the posture nearest a reference (the cost): one
constrained problem per target set on the solver engine, from ``ik.solve``'s answer.  The
building blocks (:class:`FramesTask`, :class:`BalanceConstraint`, :class:`PostureTask`) are
public for problems this does not cover (more tasks, other costs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import optim
from .._config import check_instance, check_real
from ..kinematics import Chain
from ._balance import BalanceConstraint, PostureTask, edges
from ._solve import IKConfig, solve
from ._targets import parse_targets, pose_errors
from ._tasks import FramesTask

__all__ = ["BalanceConfig", "BalanceResult", "solve_balanced"]


@dataclass(frozen=True)
class BalanceConfig:
    """Options of :func:`solve_balanced`.

    * ``margin``: the centre of mass is kept this far inside each edge of the support polygon (m).
    * ``posture_weights``: one weight per joint for the posture cost ``w (q - posture)``;
      ``None``: 1 for every joint but a floating base's position (``floating_x, _y, _z`` of
      :meth:`~robojac.kinematics.Chain.with_floating_base`), which is left free.
    * ``position_tolerance`` (m), ``orientation_tolerance`` (rad): a frame is reached within
      these (``ik.IKConfig``'s defaults).
    * ``solver``: the engine's options (its ``constraints`` field: the augmented Lagrangian's).
    """

    margin: float = 0.03
    posture_weights: tuple[float, ...] | None = None
    position_tolerance: float = IKConfig.position_tolerance
    orientation_tolerance: float = IKConfig.orientation_tolerance
    solver: optim.SolverConfig = field(default_factory=lambda: optim.SolverConfig(
        termination=optim.TerminationConfig(max_iterations=400)))

    def __post_init__(self):
        check_real("BalanceConfig", "margin", self.margin)
        for name in ("position_tolerance", "orientation_tolerance"):
            check_real("BalanceConfig", name, getattr(self, name), positive=True)
        check_instance("BalanceConfig.solver", self.solver, optim.SolverConfig, "an optim.SolverConfig")
        if self.posture_weights is not None:
            w = tuple(self.posture_weights)
            if not w or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0
                            for x in w):
                raise ValueError(f"BalanceConfig.posture_weights: expected finite weights >= 0, one per joint, got "
                                 f"{self.posture_weights!r}")
            object.__setattr__(self, "posture_weights", tuple(float(x) for x in w))


@dataclass(frozen=True)
class BalanceResult:
    """A configuration per target set, in the targets' batch shape, dtype and device.

    * ``q (..., dof)``: the answer.
    * ``converged (...)``: every frame within the tolerances, the centre of mass at least
      ``margin`` inside the support polygon (to 1e-6 m), inside the joint limits, and a
      constrained minimum (the engine's test: feasible and stationary).
    * ``reason``, one per target set in flattened order: ``"tolerance"`` (converged),
      ``"not_reached"`` (a frame off its target), ``"off_balance"`` (the centre of mass outside
      the margin), ``"outside_limits"`` (a joint past its limit), or the engine's (``"not_stationary"``, ``"max_iterations"``, ...).
    * ``pos_err``, ``rot_err (..., K)``: each frame's errors, in the targets' order (m, rad; 0
      rotation error for a position target).
    * ``com (..., 3)``: the centre of mass; ``support_margin (...)``: its distance inside the
      nearest edge of the polygon (m; negative outside).
    * ``cost``: the posture cost ``0.5 |w (q - posture)|^2``; ``iterations``: the engine's.
    """

    q: Tensor
    converged: Tensor
    reason: tuple[str, ...]
    pos_err: Tensor
    rot_err: Tensor
    com: Tensor
    support_margin: Tensor
    cost: Tensor
    iterations: Tensor


_DEFAULT = BalanceConfig()


def _batched(name: str, value: Tensor, batch: tuple[int, ...], tail: tuple[int, ...]) -> Tensor:
    """``value`` broadcast to ``batch + tail``, refused by ``name`` where it does not."""
    if not isinstance(value, Tensor) or tuple(value.shape[value.dim() - len(tail):]) != tail:
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name}: expected (..., {', '.join(map(str, tail))}), got {got}")
    try:
        return value.expand(batch + tail)
    except RuntimeError:
        raise ValueError(f"{name}: its batch shape {tuple(value.shape[:value.dim() - len(tail)])} does not broadcast "
                         f"to the targets' {batch}") from None


def _why(converged: bool, reached: bool, balanced: bool, inside_limits: bool, engine: str) -> str:
    if converged:
        return "tolerance"
    if not reached:
        return "not_reached"
    if not balanced:
        return "off_balance"
    return engine if inside_limits else "outside_limits"


def solve_balanced(chain: Chain, target: Mapping[str, Tensor], support: Tensor, *, q0: Tensor | None = None,
                   posture: Tensor | None = None, config: BalanceConfig = _DEFAULT) -> BalanceResult:
    """Frames at their targets with the centre of mass over the support polygon.

    ``target``: ``{frame: target}`` as :func:`solve` takes it (poses ``(..., 7)``, LieTensors,
    ``(..., 4, 4)``, or positions ``(..., 3)``), every frame's batch shape the same.
    ``support``: the support polygon ``(V, 2)`` or ``(..., V, 2)``, convex, in the chain's root
    frame on the ground (:func:`support_polygon` builds one from contact points).  ``posture``:
    the configuration the answer stays nearest, ``(dof,)`` or ``(..., dof)`` (default ``q0``,
    else the middle of each joint's limits, 0 where a joint is unlimited).  ``q0``: the start
    of ``ik.solve``, whose answer starts the balanced solve (default ``posture``).

    Minimizes ``0.5 |w (q - posture)|^2`` subject to the frames at their targets and
    ``BalanceConstraint(margin)``, per target set, in one batch on the engine
    (``config.solver``).  Differentiable in the targets, the support polygon and the posture
    (the implicit function theorem at the constrained minimum).
    """
    check_instance("chain", chain, Chain, "a robojac Chain")
    check_instance("config", config, BalanceConfig, "an ik.BalanceConfig")
    if not isinstance(target, Mapping) or not target:
        raise ValueError("target: expected a mapping {frame: target} of at least one frame")
    frames = list(target)
    parsed = [parse_targets(target[f]) for f in frames]
    batch = parsed[0][1]
    if any(p[1] != batch for p in parsed):
        raise ValueError(f"target: every frame's targets need the same batch shape, got "
                         f"{ {f: p[1] for f, p in zip(frames, parsed)} }")
    ref = parsed[0][0]
    dt, dev = ref.dtype, ref.device
    B, n = math.prod(batch), chain.dof
    if config.posture_weights is not None and len(config.posture_weights) != n:
        raise ValueError(f"BalanceConfig.posture_weights: expected {n} weights, one per joint, got "
                         f"{len(config.posture_weights)}")
    lo, hi = chain.lower.to(dev, dt), chain.upper.to(dev, dt)
    if posture is None:
        posture = q0 if q0 is not None else torch.where(torch.isfinite(lo) & torch.isfinite(hi), (lo + hi) / 2,
                                                        torch.zeros_like(lo))
    posture = _batched("posture", posture, batch, (n,)).to(dev, dt)
    start = _batched("q0", q0, batch, (n,)).to(dev, dt) if q0 is not None else posture
    if not isinstance(support, Tensor) or support.dim() < 2 or support.shape[-1] != 2:
        got = f"shape {tuple(support.shape)}" if isinstance(support, Tensor) else type(support).__name__
        raise ValueError(f"support: expected a polygon (V, 2) or (..., V, 2), got {got}")
    support = _batched("support", support, batch, tuple(support.shape[-2:])).to(dev, dt)
    polygon = support.reshape(B, 1, *support.shape[-2:])
    edges(polygon, "support")  # convex, in order, with area: else refused by name

    position_only = [p[2] for p in parsed]
    eye = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dt, device=dev).expand(B, 4)
    T = torch.stack([torch.cat((flat, eye), -1) if pos else flat for flat, _, pos in parsed], 1)  # (B, K, 7)
    with torch.no_grad():
        first = solve(chain, {f: target[f].detach() if isinstance(target[f], Tensor) else target[f] for f in frames},
                      q0=start.detach(), config=IKConfig(position_tolerance=config.position_tolerance,
                                                         orientation_tolerance=config.orientation_tolerance))
    q = optim.Variable("Rn", first.q.reshape(B, 1, n).to(dt).clone(), lower=lo, upper=hi, name="q")
    if config.posture_weights is not None:
        w = torch.tensor(config.posture_weights, dtype=torch.float64, device="cpu")
    else:
        w = torch.tensor([0.0 if j in chain.floating_joints[:3] else 1.0 for j in chain.joint_names],
                         dtype=torch.float64, device="cpu")
    cost = optim.Factor(PostureTask(chain, weights=w), [q], data=(posture.reshape(B, 1, n),), name="posture")
    reach = optim.Constraint(FramesTask(chain, frames, position_only=position_only), [q], data=(T[:, None],),
                             kind="eq", name="frames")
    balance = optim.Constraint(BalanceConstraint(chain, margin=config.margin), [q], data=(polygon,), kind="leq",
                               name="support polygon")
    result = optim.solve([q], [cost], config.solver, constraints=[reach, balance])
    qs = result.values[0][:, 0]

    with torch.no_grad():
        X = chain.forward_kinematics_tensor(qs.detach(), frames)  # (B, K, 7)
        pe, re = [], []
        for k, (flat, _, pos) in enumerate(parsed):
            _, p, r = pose_errors(X[:, k], flat.detach(), pos)
            pe.append(p)
            re.append(r)
        pos_err, rot_err = torch.stack(pe, -1), torch.stack(re, -1)
        n_k, o_k = edges(polygon.detach())
        c = chain.center_of_mass(qs.detach())
        inside = (o_k[:, 0] - (n_k[:, 0] @ c[:, :2, None])[..., 0]).amin(-1)  # (B,)
        reached = (pos_err <= config.position_tolerance).all(-1) & (rot_err <= config.orientation_tolerance).all(-1)
        balanced = inside >= config.margin - 1e-6
        limits = ((qs.detach() >= lo) & (qs.detach() <= hi)).all(-1)
        converged = result.converged & reached & balanced & limits
    reason = tuple(_why(*flags) for flags in zip(converged.tolist(), reached.tolist(), balanced.tolist(),
                                                  limits.tolist(), result.reason))
    K = len(frames)
    com = chain.center_of_mass(qs) if qs.requires_grad else c  # differentiable with the answer
    return BalanceResult(q=qs.reshape(batch + (n,)), converged=converged.reshape(batch), reason=reason,
                         pos_err=pos_err.reshape(batch + (K,)), rot_err=rot_err.reshape(batch + (K,)),
                         com=com.reshape(batch + (3,)), support_margin=inside.reshape(batch),
                         cost=result.cost.reshape(batch), iterations=result.iterations.reshape(batch))
