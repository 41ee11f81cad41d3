"""Balance as a region: a standing robot's centre of mass over its support polygon (the convex
hull of its contacts on the ground), kept ``margin`` inside each edge, as an inequality
constraint of the solver engine; and a posture cost, which picks one answer where a redundant
body has many.

A point held by a factor (:class:`~robojac.ik.CenterOfMassTask`) moves the body until the centre
of mass sits exactly there.  A region leaves it free inside: the body moves only as far as
balance needs.  As a least-squares hinge (``max(0, n . (c - a) + margin)`` per edge) the region
has a kink where it starts to bind, and Levenberg-Marquardt stopped on it at its damping limit
in 6 of 8 reaches, 1e-4 m off the frames; as a constraint (``optim.Constraint(...,
kind="leq")``) it is met exactly, with its multipliers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._config import check_instance, check_real
from ..kinematics import Chain
from ._tasks import _configurations, _data, _weight

__all__ = ["BalanceConstraint", "PostureTask", "support_polygon"]


def support_polygon(points: Tensor) -> Tensor:
    """The convex hull ``(V, 2)`` of contact points ``(N, 2)`` or ``(N, 3)`` on the ground (their
    ``x, y``), counter-clockwise from the lowest ``x`` (then ``y``), without repeating the first
    vertex; collinear points on an edge are left out.  In the points' dtype and device.

    Andrew's monotone chain on the CPU (a robot's contacts are a handful of points).  Fewer than
    three points, or all on one line, have no area to balance over and are refused."""
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[-1] not in (2, 3):
        got = f"shape {tuple(points.shape)}" if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"support_polygon: expected points (N, 2) or (N, 3), got {got}")
    if not points.is_floating_point() or not bool(torch.isfinite(points).all()):
        raise ValueError("support_polygon: expected finite floating-point points")
    xy = points[:, :2].detach().to("cpu", torch.float64)
    order = sorted(range(len(xy)), key=lambda k: (float(xy[k, 0]), float(xy[k, 1])))
    P = [(float(xy[k, 0]), float(xy[k, 1]), k) for k in order]

    def turn(o, a, b):  # > 0: o -> a -> b turns left
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and turn(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(P), chain(reversed(P))
    hull = lower[:-1] + upper[:-1]
    if len(hull) < 3:
        raise ValueError(f"support_polygon: the {len(xy)} points enclose no area (fewer than three, or all on one "
                         "line): nothing to balance over")
    return points[[k for _, _, k in hull], :2]


def edges(polygon: Tensor, owner: str = "BalanceConstraint") -> tuple[Tensor, Tensor]:
    """``(outward unit normals (..., V, 2), offsets (..., V))`` of convex polygons ``(..., V, 2)``
    given in either turning direction: a point ``c`` is inside edge ``k`` where ``n_k . c <=
    o_k``.  A polygon that is not convex, has a repeated vertex or no area is refused by name."""
    if polygon.shape[-2] < 3:
        raise ValueError(f"{owner}: a polygon needs at least 3 vertices, got {polygon.shape[-2]}")
    if not bool(torch.isfinite(polygon).all()):
        raise ValueError(f"{owner}: the polygon has a non-finite vertex")
    e = polygon.roll(-1, dims=-2) - polygon  # edge k: v_k -> v_{k+1}
    length = e.norm(dim=-1)
    area2 = (polygon[..., 0] * polygon.roll(-1, dims=-2)[..., 1]
             - polygon.roll(-1, dims=-2)[..., 0] * polygon[..., 1]).sum(-1)  # twice the signed area
    scale = length.amax(-1).clamp(min=torch.finfo(polygon.dtype).tiny)
    if bool((length <= 1e-12 * scale[..., None]).any()) or bool((area2.abs() <= 1e-12 * scale**2).any()):
        raise ValueError(f"{owner}: the polygon has a repeated vertex or no area")
    turn = e[..., 0] * e.roll(-1, dims=-2)[..., 1] - e[..., 1] * e.roll(-1, dims=-2)[..., 0]
    if bool((turn * area2.sign()[..., None] < -1e-9 * scale[..., None] ** 2).any()):
        raise ValueError(f"{owner}: the polygon is not convex (or its vertices are not in order around it): "
                         "ik.support_polygon(points) gives the convex hull")
    n = torch.stack((e[..., 1], -e[..., 0]), -1) * (area2.sign()[..., None, None] / length[..., None])
    return n, (n * polygon).sum(-1)


class BalanceConstraint:
    """A chain's centre of mass over a support polygon, ``margin`` inside each edge:
    ``(Q (B, F, dof), polygon (B, F, V, 2)) -> (B, F, V)``, ``n_k . (c_xy(q) - v_k) + margin``
    for each edge ``k`` (outward unit normal ``n_k``, from vertex ``v_k``), at most zero inside.
    The polygon is convex, its vertices in order (either way round) in the chain's root frame,
    on the ground (``x, y``); :func:`support_polygon` builds one from contact points.  The
    Jacobian is ``n_k^T J_c`` from :meth:`~robojac.kinematics.Chain.center_of_mass_and_jacobian`.

    Use it as ``optim.Constraint(BalanceConstraint(chain, margin=0.03), [q], data=(polygon,),
    kind="leq")``.  A ``margin`` larger than the polygon allows leaves no feasible point: the
    solve says so (``converged=False``, ``reason="constraint_violation"``)."""

    def __init__(self, chain: Chain, *, margin: float = 0.0):
        check_instance("chain", chain, Chain, "a robojac Chain")
        if not chain.mass > 0:
            raise ValueError(f"BalanceConstraint.chain: chain {chain.name!r} has no mass: none of its links has an "
                             "Inertial")
        check_real("BalanceConstraint", "margin", margin)
        self.chain, self.margin = chain, float(margin)

    def subset(self, rows):
        return self

    def _edges(self, Q: Tensor, polygon: Tensor) -> tuple[Tensor, Tensor]:
        Q = _configurations("BalanceConstraint", self.chain, Q)
        if not isinstance(polygon, Tensor) or polygon.dim() != 4 or polygon.shape[-1] != 2:
            got = f"shape {tuple(polygon.shape)}" if isinstance(polygon, Tensor) else type(polygon).__name__
            raise ValueError(f"BalanceConstraint: expected a polygon (B, F, V, 2), got {got}")
        _data("BalanceConstraint", "polygon", polygon, Q, tuple(polygon.shape[2:]))
        return edges(polygon)

    def __call__(self, Q: Tensor, polygon: Tensor) -> Tensor:
        n, o = self._edges(Q, polygon)
        c = self.chain.center_of_mass(Q)[..., :2]
        return (n @ c[..., None])[..., 0] - o + self.margin

    def value_and_jacobians(self, Q: Tensor, polygon: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        n, o = self._edges(Q, polygon)
        c, J = self.chain.center_of_mass_and_jacobian(Q)
        return (n @ c[..., :2, None])[..., 0] - o + self.margin, (n @ J[..., :2, :],)


class PostureTask:
    """Joints near a reference posture: ``(Q (B, F, dof), q_ref (B, F, dof)) -> (B, F, dof)``,
    ``w (q - q_ref)``, with the Jacobian ``w I``.  Beside equality constraints that a redundant
    body meets in many ways (frames at targets), it makes the answer the one nearest the
    posture, so the problem has one minimum and its gradients are defined.  ``weights``: one
    per joint (default 1), times ``weight``; a zero leaves that joint free (a floating base's
    position, say)."""

    def __init__(self, chain: Chain, *, weight: float = 1.0, weights: Tensor | None = None):
        check_instance("chain", chain, Chain, "a robojac Chain")
        self.chain, self.weight = chain, _weight("PostureTask", "weight", weight)
        w = torch.ones(chain.dof, dtype=torch.float64, device="cpu")
        if weights is not None:
            w = torch.as_tensor(weights, dtype=torch.float64, device="cpu")
            if w.shape != (chain.dof,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
                raise ValueError(f"PostureTask.weights: expected {chain.dof} finite weights >= 0, one per joint, "
                                 f"got {tuple(w.shape)} values")
        self._w = self.weight * w

    def subset(self, rows):
        return self

    def __call__(self, Q: Tensor, q_ref: Tensor) -> Tensor:
        Q = _configurations("PostureTask", self.chain, Q)
        q_ref = _data("PostureTask", "reference q_ref", q_ref, Q, (self.chain.dof,))
        return self._w.to(Q) * (Q - q_ref)

    def value_and_jacobians(self, Q: Tensor, q_ref: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        r = self(Q, q_ref)
        J = torch.diag_embed(self._w.to(Q)).expand(Q.shape[:2] + (self.chain.dof, self.chain.dof))
        return r, (J,)
