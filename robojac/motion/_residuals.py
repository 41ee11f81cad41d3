"""The factors of a trajectory: smoothness, velocity limits and clearance between waypoints.

Each reads waypoints of one ``Variable("Rn", (B, T, dof))``, ``F`` factors per problem, slot
``k`` arriving as ``(B, F, dof)``, and gives its Jacobian blocks in closed form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ik import ClearanceConstraint, CollisionTask

__all__ = ["Acceleration", "RestAtEnds", "SweptClearance", "VelocityBound", "VelocityLimit"]


def _eye_blocks(like: Tensor, scale: float) -> Tensor:
    """``scale I`` as blocks ``(B, F, n, n)`` in ``like``'s shape, dtype and device."""
    B, F, n = like.shape
    return (scale * torch.eye(n, dtype=like.dtype, device=like.device)).expand(B, F, n, n)


class Acceleration:
    """``w sqrt(dt) (q_next - 2 q + q_prev) / dt^2``: the joints' acceleration at a waypoint,
    weighted so that the summed squares are ``w^2`` times the integral of ``|q''|^2`` over time."""

    def __init__(self, dt: float, weight: float):
        self.scale = weight * dt ** 0.5 / dt ** 2

    def subset(self, rows):
        """The same residual for a subset of the problems (it holds nothing per problem)."""
        return self

    def __call__(self, Qp: Tensor, Q: Tensor, Qn: Tensor) -> Tensor:
        return self.scale * (Qn - 2 * Q + Qp)

    def value_and_jacobians(self, Qp: Tensor, Q: Tensor, Qn: Tensor):
        s = self.scale
        return self(Qp, Q, Qn), (_eye_blocks(Q, s), _eye_blocks(Q, -2 * s), _eye_blocks(Q, s))


class RestAtEnds:
    """``w sqrt(dt) (q_b - q_a) / dt^2``: the acceleration at the first and the last waypoint of a
    trajectory at rest before it starts and after it ends (the velocity outside it is zero)."""

    def __init__(self, dt: float, weight: float):
        self.scale = weight * dt ** 0.5 / dt ** 2

    def subset(self, rows):
        """The same residual for a subset of the problems (it holds nothing per problem)."""
        return self

    def __call__(self, Qa: Tensor, Qb: Tensor) -> Tensor:
        return self.scale * (Qb - Qa)

    def value_and_jacobians(self, Qa: Tensor, Qb: Tensor):
        return self(Qa, Qb), (_eye_blocks(Qa, -self.scale), _eye_blocks(Qa, self.scale))


class VelocityLimit:
    """``w max(0, |q_b - q_a| / dt - v_max)`` per joint: a step between two waypoints faster than
    the joint's velocity limit ``v_max (dof,)`` (``inf``: none)."""

    def __init__(self, dt: float, limit: Tensor, weight: float):
        self.dt, self.limit, self.weight = dt, limit, weight

    def _excess(self, Qa: Tensor, Qb: Tensor) -> tuple[Tensor, Tensor]:
        v = (Qb - Qa) / self.dt
        return v, v.abs() - self.limit.to(v)

    def subset(self, rows):
        """The same residual for a subset of the problems (it holds nothing per problem)."""
        return self

    def __call__(self, Qa: Tensor, Qb: Tensor) -> Tensor:
        return self.weight * self._excess(Qa, Qb)[1].clamp(min=0)

    def value_and_jacobians(self, Qa: Tensor, Qb: Tensor):
        v, over = self._excess(Qa, Qb)
        d = torch.where(over > 0, self.weight / self.dt * torch.sign(v), torch.zeros_like(v))
        J = torch.diag_embed(d)
        return self.weight * over.clamp(min=0), (-J, J)


class VelocityBound:
    """``[v - v_max; -v - v_max]`` ``(B, F, 2 dof)`` with ``v = (q_b - q_a) / dt``: a step's
    velocity within the limits ``v_max (dof,)`` as a constraint (``<= 0``; linear, so its
    Jacobian is constant).  A joint without a limit takes a large finite one (an infinite
    residual has no place in the augmented terms)."""

    def __init__(self, dt: float, limit: Tensor):
        self.dt, self.limit = dt, limit.clamp(max=1e6)

    def subset(self, rows):
        """The same residual for a subset of the problems (it holds nothing per problem)."""
        return self

    def __call__(self, Qa: Tensor, Qb: Tensor) -> Tensor:
        v = (Qb - Qa) / self.dt
        lim = self.limit.to(v)
        return torch.cat((v - lim, -v - lim), -1)

    def value_and_jacobians(self, Qa: Tensor, Qb: Tensor):
        B, F, n = Qa.shape
        eye = torch.eye(n, dtype=Qa.dtype, device=Qa.device) / self.dt
        J = torch.cat((eye, -eye)).expand(B, F, 2 * n, n)
        return self(Qa, Qb), (-J, J)


class SweptClearance:
    """A :class:`~robojac.ik.CollisionTask` (times ``weight``), or its constraint
    (:meth:`~robojac.ik.CollisionTask.constraint`), at ``substeps`` configurations
    evenly between two waypoints, ``q_a + s (q_b - q_a)`` with ``s = 1/(k+1), ..., k/(k+1)``, and
    at ``q_b`` itself (``s = 1``): the arm kept clear between the waypoints, not only at them.
    ``(Qa, Qb) -> (B, F, (k + 1) M)``; the blocks are the task's Jacobian at each configuration
    times ``1 - s`` and ``s``."""

    def __init__(self, task: CollisionTask | ClearanceConstraint, substeps: int, weight: float = 1.0):
        self.task, self.substeps, self.weight = task, substeps, weight

    def _between(self, Qa: Tensor, Qb: Tensor) -> tuple[Tensor, Tensor]:
        k = self.substeps
        s = torch.arange(1, k + 2, dtype=Qa.dtype, device=Qa.device) / (k + 1)
        Q = Qa[:, :, None] + s[:, None] * (Qb - Qa)[:, :, None]  # (B, F, k + 1, n)
        B, F, _, n = Q.shape
        return Q.reshape(B, F * (k + 1), n), s

    def subset(self, rows):
        """The same residual for a subset of the problems (it holds nothing per problem)."""
        return self

    def __call__(self, Qa: Tensor, Qb: Tensor) -> Tensor:
        Q, _ = self._between(Qa, Qb)
        B, F = Qa.shape[:2]
        return self.weight * self.task(Q).reshape(B, F, -1)

    def value_and_jacobians(self, Qa: Tensor, Qb: Tensor):
        Q, s = self._between(Qa, Qb)
        B, F, n = Qa.shape
        r, (J,) = self.task.value_and_jacobians(Q)  # (B, F (k+1), M), (B, F (k+1), M, n)
        J = self.weight * J.reshape(B, F, self.substeps + 1, -1, n)
        Ja = (J * (1 - s)[:, None, None]).reshape(B, F, -1, n)
        Jb = (J * s[:, None, None]).reshape(B, F, -1, n)
        return self.weight * r.reshape(B, F, -1), (Ja, Jb)
