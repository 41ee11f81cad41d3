"""Tasks of whole-body IK as factors of the solver engine: frames at targets, the centre of mass
over a point, shapes clear of obstacles and of each other.  ``solve`` places frames; these let a
problem hold more (a humanoid's balance, a gaze, a robot clear of obstacles, several
configurations of one trajectory) on :func:`robojac.optim.solve`, each with its Jacobian in closed
form from the chain's.

A residual here reads configurations ``Q (B, F, dof)`` (``F`` factors per problem, each reading
one entry of a ``Variable("Rn", (B, N, dof))``) and its data with the same leading ``(B, F)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import lie
from .._config import check_bool, check_instance, check_real
from ..collision import Obstacles, RobotCollision, capsule_capsule
from ..kinematics import Chain
from ._frames import FramesResidual

__all__ = ["CenterOfMassTask", "ClearanceConstraint", "CollisionTask", "FramesTask"]

_AXES = {"x": 0, "y": 1, "z": 2}


def _weight(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _configurations(owner: str, chain: Chain, Q: Tensor) -> Tensor:
    if not isinstance(Q, Tensor) or Q.dim() != 3 or Q.shape[-1] != chain.dof:
        got = f"shape {tuple(Q.shape)}" if isinstance(Q, Tensor) else type(Q).__name__
        raise ValueError(f"{owner}: expected configurations (B, F, {chain.dof}), got {got}")
    return Q


def _data(owner: str, name: str, value: Tensor, Q: Tensor, tail: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor) or tuple(value.shape) != tuple(Q.shape[:2]) + tail:
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{owner}: expected {name} {tuple(Q.shape[:2]) + tail} (the configurations' (B, F) "
                         f"first), got {got}")
    return value


class FramesTask:
    """Frames of a chain at targets: ``(Q (B, F, dof), T (B, F, K, 7)) -> (B, F, 6 K)``, the
    weighted errors ``[w_p (p* - p); w_o Log(R* R^T)]`` of each frame (``solve``'s error), with
    the Jacobian ``[-w_p J_v; -w_o Jr^-1 J_w]`` from the chain's geometric one.

    ``position_only``: one bool, or one per frame; such a frame's target rotation is not read
    and its rotation rows are zero.  ``weights``: one per frame (default 1), multiplying
    ``position_weight`` and ``orientation_weight``.  Use it as
    ``optim.Factor(FramesTask(chain, frames), [q], data=(T,))``."""

    def __init__(self, chain: Chain, frames: Sequence[str], *, position_only: bool | Sequence[bool] = False,
                 position_weight: float = 1.0, orientation_weight: float = 1.0, weights: Sequence[float] | None = None):
        check_instance("chain", chain, Chain, "a robojac Chain")
        if isinstance(frames, str) or not isinstance(frames, Sequence) or not frames:
            raise ValueError(f"FramesTask.frames: expected a non-empty sequence of frame names, got {frames!r}")
        for f in frames:
            chain._frame_index(f)  # a frame that does not exist is refused, naming the candidates
        K = len(frames)
        flags = [position_only] * K if isinstance(position_only, bool) else list(position_only)
        if len(flags) != K or not all(isinstance(b, bool) for b in flags):
            raise ValueError(f"FramesTask.position_only: expected a bool or {K} bools (one per frame), "
                             f"got {position_only!r}")
        scale = [1.0] * K if weights is None else [_weight("FramesTask", "weights", w) for w in weights]
        if len(scale) != K:
            raise ValueError(f"FramesTask.weights: expected {K} weights (one per frame), got {len(scale)}")
        w_p = _weight("FramesTask", "position_weight", position_weight)
        w_o = _weight("FramesTask", "orientation_weight", orientation_weight)
        self.chain, self.frames, self.position_only = chain, tuple(frames), tuple(flags)
        self._w = torch.tensor([[s * w_p] * 3 + [0.0 if p else s * w_o] * 3 for s, p in zip(scale, flags)],
                               dtype=torch.float64, device="cpu")  # (K, 6)
        self._flags = torch.tensor(flags, device="cpu")

    def subset(self, rows):
        """The same task for a subset of the engine's problems (the targets are the factor's data,
        which the engine slices)."""
        return self

    def _residual(self, Q: Tensor) -> FramesResidual:
        """``ik.solve``'s factor of these frames over every joint, for the rows of ``Q``."""
        dev = Q.device
        q = Q.new_empty(0, self.chain.dof)
        drive = torch.arange(self.chain.dof, device=dev)
        return FramesResidual(self.chain, self.frames, q, drive, self._w.to(dtype=Q.dtype, device=dev),
                              self._flags.to(dev), exact=True)

    def __call__(self, Q: Tensor, T: Tensor) -> Tensor:
        Q = _configurations("FramesTask", self.chain, Q)
        T = _data("FramesTask", "targets T", T, Q, (len(self.frames), 7))
        B, F = Q.shape[:2]
        r = self._residual(Q)(Q.reshape(B * F, 1, -1), T.reshape(B * F, 1, len(self.frames), 7))
        return r.reshape(B, F, -1)

    def value_and_jacobians(self, Q: Tensor, T: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        Q = _configurations("FramesTask", self.chain, Q)
        T = _data("FramesTask", "targets T", T, Q, (len(self.frames), 7))
        B, F = Q.shape[:2]
        r, (J,) = self._residual(Q).value_and_jacobians(Q.reshape(B * F, 1, -1),
                                                        T.reshape(B * F, 1, len(self.frames), 7))
        return r.reshape(B, F, -1), (J.reshape(B, F, -1, self.chain.dof),)


class CenterOfMassTask:
    """A chain's centre of mass over a point: ``(Q (B, F, dof), c (B, F, A)) -> (B, F, A)``, the
    weighted difference ``w (c(q) - c*)`` along the ``axes`` (``"xy"``, the default: its ground
    point, a standing robot's balance; ``"xyz"``, ``"z"``, ...), in the chain's root frame, with
    the Jacobian from :meth:`~robojac.kinematics.Chain.center_of_mass_and_jacobian`.  Use it as
    ``optim.Factor(CenterOfMassTask(chain), [q], data=(c,))``."""

    def __init__(self, chain: Chain, axes: str = "xy", *, weight: float = 1.0):
        check_instance("chain", chain, Chain, "a robojac Chain")
        if not isinstance(axes, str) or not axes or any(a not in _AXES for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"CenterOfMassTask.axes: expected some of 'x', 'y', 'z', each once (as 'xy'), "
                             f"got {axes!r}")
        if not chain.mass > 0:  # (an MJCF's masses left to geoms are refused here, by name)
            raise ValueError(f"CenterOfMassTask.chain: chain {chain.name!r} has no mass: none of its links has an "
                             "Inertial")
        self.chain, self.axes, self.weight = chain, axes, _weight("CenterOfMassTask", "weight", weight)
        self._rows = [_AXES[a] for a in axes]

    def __call__(self, Q: Tensor, c: Tensor) -> Tensor:
        Q = _configurations("CenterOfMassTask", self.chain, Q)
        c = _data("CenterOfMassTask", "points c", c, Q, (len(self.axes),))
        return self.weight * (self.chain.center_of_mass(Q)[..., self._rows] - c)

    def value_and_jacobians(self, Q: Tensor, c: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        Q = _configurations("CenterOfMassTask", self.chain, Q)
        c = _data("CenterOfMassTask", "points c", c, Q, (len(self.axes),))
        com, J = self.chain.center_of_mass_and_jacobian(Q)
        return self.weight * (com[..., self._rows] - c), (self.weight * J[..., self._rows, :],)


class CollisionTask:
    """A robot's shapes clear of obstacles and of each other: ``Q (B, F, dof) -> (B, F, M)``,
    ``w max(0, margin - d)`` for each signed distance ``d`` of
    :meth:`~robojac.collision.RobotCollision.distances` (each shape that a joint moves to each
    obstacle, when ``obstacles`` are given: a base on the floor is no task) and of
    :meth:`~robojac.collision.RobotCollision.self_distances` (when ``self_collision``).  A pair
    farther apart than ``margin`` costs nothing and pulls on nothing; a closer one is pushed apart
    along the line of its closest points.  Its Jacobian comes from the links' geometric Jacobians
    (:meth:`value_and_jacobians`).  Use it as ``optim.Factor(CollisionTask(model, obstacles), [q])``.

    A least-squares cost is soft: beside a frame task that pulls into an obstacle, the answer
    stops where the two balance, a little inside ``margin`` (more so for a small ``weight``).
    It declares no ``satisfied``: clear of everything is not done while other tasks are not."""

    def __init__(self, model: RobotCollision, obstacles: Obstacles | None = None, *, margin: float = 0.02,
                 self_collision: bool = True, weight: float = 1.0):
        check_instance("model", model, RobotCollision, "a robojac.collision.RobotCollision")
        if obstacles is not None:
            check_instance("obstacles", obstacles, Obstacles, "robojac.collision.Obstacles or None")
        check_bool("CollisionTask", "self_collision", self_collision)
        if obstacles is None and not (self_collision and len(model.pairs)):
            raise ValueError("CollisionTask: nothing to keep apart: no obstacles and no self-collision pairs")
        check_real("CollisionTask", "margin", margin)
        self.model, self.obstacles, self.self_collision = model, obstacles, self_collision and len(model.pairs) > 0
        self.margin, self.weight = float(margin), _weight("CollisionTask", "weight", weight)
        self.chain = model.chain
        self._moving = torch.tensor([k for k, m in enumerate(model.moving) if m], dtype=torch.long,
                                    device="cpu")  # shapes some joint moves: the others' distances are constants
        if obstacles is not None and not len(self._moving) and not self.self_collision:
            raise ValueError("CollisionTask: no joint moves any of the model's shapes")

    def subset(self, rows):
        """The same task for a subset of the engine's problems (it holds nothing per problem:
        the engine runs its last few running problems on their own)."""
        return self

    def distances(self, Q: Tensor) -> Tensor:
        """The signed distances ``(B, F, M)`` the residual reads: to the obstacles (shape by shape),
        then the self-collision pairs."""
        Q = _configurations("CollisionTask", self.chain, Q)
        a, b, r = self.model.shapes_in_world(Q)
        parts = []
        if self.obstacles is not None and len(self._moving):
            m = self._moving.to(Q.device)
            parts.append(self.obstacles.distances(a[..., m, :], b[..., m, :], r[m]).flatten(-2))
        if self.self_collision:
            parts.append(self.model.pair_distances(a, b, r))
        return torch.cat(parts, -1)

    def __call__(self, Q: Tensor) -> Tensor:
        return self.weight * (self.margin - self.distances(Q)).clamp(min=0)

    def value_and_jacobians(self, Q: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        """The residual and its Jacobian ``(B, F, M, dof)`` (from :meth:`distances_and_jacobians`)."""
        d, Jd = self.distances_and_jacobians(Q)
        gap = self.margin - d
        res = self.weight * gap.clamp(min=0)
        Jr = torch.where((gap > 0)[..., None], -self.weight * Jd, torch.zeros_like(Jd))
        return res, (Jr,)

    def constraint(self) -> "ClearanceConstraint":
        """The clearance as a constraint, ``margin - d <= 0`` for every distance: use it as
        ``optim.Constraint(task.constraint(), [q], kind="leq")`` to hold the margin exactly
        (the task as a factor is a cost: it stops where its pull and the others' balance)."""
        return ClearanceConstraint(self)

    def distances_and_jacobians(self, Q: Tensor) -> tuple[Tensor, Tensor]:
        """The signed distances ``(B, F, M)`` of :meth:`distances` and their Jacobians ``(B, F, M,
        dof)``: each distance's derivative in its capsules' ends (a small backward through the
        distance alone), times the ends' Jacobians ``J_v - [p - o]x J_w`` from the links'
        geometric Jacobians (one kinematics pass)."""
        Q = _configurations("CollisionTask", self.chain, Q)
        B, F, n = Q.shape
        model, dev = self.model, Q.device
        X, J = self.chain.poses_and_jacobians(Q.reshape(B * F, n).detach(), list(model.carriers))
        c = model.carrier.to(dev)
        X, J = X[:, c], J[:, c]  # (N, G, 7), (N, G, 6, n)
        seg = model.segments.to(dtype=Q.dtype, device=dev)
        r = model.radii.to(dtype=Q.dtype, device=dev)
        a, b = lie.se3_act(X, seg[:, 0]), lie.se3_act(X, seg[:, 1])
        Jv, Jw = J[..., :3, :], J[..., 3:, :]
        Ja = Jv - lie.skew(a - X[..., :3]) @ Jw  # a point fixed on the link: v + w x (p - o)
        Jb = Jv - lie.skew(b - X[..., :3]) @ Jw
        values, rows = [], []
        with torch.enable_grad():
            if self.obstacles is not None and len(self._moving):
                m = self._moving.to(dev)
                O = len(self.obstacles)
                A = a[:, m, None, :].expand(-1, -1, O, -1).clone().requires_grad_()
                Bv = b[:, m, None, :].expand(-1, -1, O, -1).clone().requires_grad_()
                d = self.obstacles.grouped_distances(A, Bv, r[m, None])
                gA, gB = torch.autograd.grad(d.sum(), (A, Bv))
                order = self.obstacles.order.to(dev)
                d, gA, gB = d[..., order], gA[:, :, order], gB[:, :, order]
                values.append(d.flatten(1))
                rows.append((gA[..., None, :] @ Ja[:, m, None] + gB[..., None, :] @ Jb[:, m, None]).flatten(1, 3))
            if self.self_collision:
                i, j = (model.pairs[:, k].to(dev) for k in (0, 1))
                ends = [x.clone().requires_grad_() for x in (a[:, i], b[:, i], a[:, j], b[:, j])]
                d = capsule_capsule(ends[0], ends[1], r[i], ends[2], ends[3], r[j])
                g = torch.autograd.grad(d.sum(), ends)
                values.append(d)
                rows.append((g[0][..., None, :] @ Ja[:, i] + g[1][..., None, :] @ Jb[:, i]
                             + g[2][..., None, :] @ Ja[:, j] + g[3][..., None, :] @ Jb[:, j])[..., 0, :])
        d, Jd = torch.cat(values, 1), torch.cat(rows, 1)  # (N, M), (N, M, n)
        return d.reshape(B, F, -1), Jd.reshape(B, F, -1, n)


class ClearanceConstraint:
    """``margin - d`` ``(B, F, M)`` for each signed distance of a :class:`CollisionTask` (at most
    zero where every pair is at least ``margin`` apart), with its Jacobian: the task as an
    inequality constraint (:meth:`CollisionTask.constraint`)."""

    def __init__(self, task: CollisionTask):
        check_instance("task", task, CollisionTask, "an ik.CollisionTask")
        self.task = task

    def subset(self, rows):
        return self

    def __call__(self, Q: Tensor) -> Tensor:
        return self.task.margin - self.task.distances(Q)

    def value_and_jacobians(self, Q: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        d, Jd = self.task.distances_and_jacobians(Q)
        return self.task.margin - d, (-Jd,)
