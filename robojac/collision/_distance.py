"""Signed distances between a capsule (a sphere is one of zero length) and a capsule, a
half-space or a box: negative where the two overlap (the depth to separate them), batched over
any broadcast leading dims, differentiable in every position.

Each distance is a minimum over points of the shapes.  The minimizing parameters (where along
each segment the closest points lie) are found without a graph, then the distance is evaluated
at them with one: by the envelope theorem its derivative there is the derivative of the minimum
where the minimizer is unique.  So the gradient is exact, costs no backward through the search,
and has no NaN from its divisions.  Where the minimizer is not unique (parallel segments side by
side) the distance has a kink: tilting a segment either way brings one end of the overlap closer.
Any minimizer gives the same value, and the gradient there is the slope at the one chosen.

* Capsule to capsule: the closest points of two segments, in closed form (clamped to the
  segments, with the parallel and point-like cases taken apart), then ``|p1 - p2| - r1 - r2``.
* Capsule to half-space ``{x : n.x <= o}``: ``min(n.a, n.b) - o - r``.
* Capsule to box, apart: in the box's frame, the squared distance of the segment's point outside
  the box is convex and quadratic between the (at most six) points where a coordinate crosses a
  face's plane: the least of each piece's clamped minimum is the closest point, exactly.  Where
  the segment enters the box, the depth is the shortest move that separates them (not the
  deepest point's depth): the least overlap of their projections on the box's three axes and
  the three crossings of the segment with them (the separating axes of a box and a segment).

Where two segments cross (the distance is ``-(r1 + r2)``), the direction to push them apart is
undefined: the gradient there is zero, not NaN.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import lie

__all__ = ["capsule_box", "capsule_capsule", "capsule_halfspace", "point_box", "segment_parameters"]


def _dot(u: Tensor, v: Tensor) -> Tensor:
    return (u * v).sum(-1)


def _norm(v: Tensor) -> Tensor:
    """``|v|`` over the last dim, with a zero (not NaN) derivative at ``v = 0``."""
    sq = _dot(v, v)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def segment_parameters(a1: Tensor, b1: Tensor, a2: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, t)`` in ``[0, 1]``: ``a1 + s (b1 - a1)`` and ``a2 + t (b2 - a2)`` are closest points
    of the two segments (no graph)."""
    a1, b1, a2, b2 = (x.detach() for x in (a1, b1, a2, b2))
    d1, d2, w = b1 - a1, b2 - a2, a1 - a2
    A, E, B = _dot(d1, d1), _dot(d2, d2), _dot(d1, d2)
    C, F = _dot(d1, w), _dot(d2, w)
    fin = torch.finfo(A.dtype)
    scale = A + E + _dot(w, w)
    small = 64 * fin.eps * scale + fin.tiny  # a squared length below this is a point
    line1, line2 = A > small, E > small
    one = torch.ones_like(A)
    A_, E_ = torch.where(line1, A, one), torch.where(line2, E, one)
    denom = A * E - B * B  # >= 0; 0 for parallel segments
    skew = denom > 64 * fin.eps * A_ * E_
    s = torch.where(skew, (B * F - C * E) / torch.where(skew, denom, one), torch.zeros_like(A)).clamp(0, 1)
    t = (B * s + F) / E_
    below, above = t < 0, t > 1
    s = torch.where(below, (-C / A_).clamp(0, 1), torch.where(above, ((B - C) / A_).clamp(0, 1), s))
    t = t.clamp(0, 1)
    # one segment a point: the other's parameter alone; both points: both at their start
    s = torch.where(line1 & ~line2, (-C / A_).clamp(0, 1), s)
    t = torch.where(line2 & ~line1, (F / E_).clamp(0, 1), t)
    s = torch.where(line1, s, torch.zeros_like(s))
    t = torch.where(line2, t, torch.zeros_like(t))
    return s, t


def capsule_capsule(a1: Tensor, b1: Tensor, r1: Tensor, a2: Tensor, b2: Tensor, r2: Tensor) -> Tensor:
    """Signed distance between capsules ``(a1, b1, r1)`` and ``(a2, b2, r2)``: segments
    ``(..., 3)``, radii ``(...)``, broadcast together."""
    s, t = segment_parameters(a1, b1, a2, b2)
    p1 = a1 + s[..., None] * (b1 - a1)
    p2 = a2 + t[..., None] * (b2 - a2)
    return _norm(p1 - p2) - r1 - r2


def capsule_halfspace(a: Tensor, b: Tensor, r: Tensor, normal: Tensor, offset: Tensor) -> Tensor:
    """Signed distance between capsule ``(a, b, r)`` and the half-space ``{x : normal.x <=
    offset}`` (``normal`` unit length)."""
    return torch.minimum(_dot(normal, a), _dot(normal, b)) - offset - r


def point_box(p: Tensor, X_world_box: Tensor, half_extents: Tensor) -> Tensor:
    """Signed distance from points ``p (..., 3)`` to the box ``half_extents (..., 3)`` at
    ``X_world_box (..., 7)``."""
    local = lie.se3_act(lie.se3_inverse(X_world_box), p)
    q = local.abs() - half_extents
    return _norm(q.clamp(min=0)) + q.max(-1).values.clamp(max=0)


def capsule_box(a: Tensor, b: Tensor, r: Tensor, X_world_box: Tensor, half_extents: Tensor) -> Tensor:
    """Signed distance between capsule ``(a, b, r)`` and a box (:func:`point_box`'s)."""
    s, inside = _segment_box_parameter(a, b, X_world_box, half_extents)
    d = point_box(a + s[..., None] * (b - a), X_world_box, half_extents)
    rows = inside.flatten().nonzero()[:, 0]
    if len(rows):  # the depth of the few segments inside, on those rows alone
        shape = d.shape

        def pick(x: Tensor, n: int) -> Tensor:
            return x.expand(shape + (n,)).reshape(-1, n).index_select(0, rows)

        depth = _segment_box_depth(pick(a, 3), pick(b, 3), pick(X_world_box, 7), pick(half_extents, 3))
        d = d.flatten().index_put((rows,), -depth).reshape(shape)
    return d - r


def _segment_box_parameter(a: Tensor, b: Tensor, X_world_box: Tensor, half_extents: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, inside)``: where along the segment it comes closest to the box, and whether it
    reaches it (no graph).  In the box's frame the point is ``u + s v``; its squared distance
    outside, ``sum_i max(|u_i + s v_i| - h_i, 0)^2``, is convex and quadratic between the (at
    most six) ``s`` where a coordinate crosses a face's plane.  Each piece's minimum, clamped to
    the piece, is a candidate (the middle of a piece inside the box, where it is 0); the least is
    the answer, exactly."""
    shape = torch.broadcast_shapes(a.shape, b.shape, X_world_box.shape[:-1] + (3,), half_extents.shape)
    inv = lie.se3_inverse(X_world_box.detach())
    u = lie.se3_act(inv, a.detach())
    v = (lie.se3_act(inv, b.detach()) - u).expand(shape)
    u = u.expand(shape)
    h = half_extents.detach().expand(shape)
    moving = v.abs() > 0
    v_ = torch.where(moving, v, torch.ones_like(v))
    cross = torch.cat(((h - u) / v_, (-h - u) / v_), -1)  # (..., 6): where each coordinate meets +-h
    cross = torch.where(torch.cat((moving, moving), -1), cross, torch.zeros_like(cross)).clamp(0, 1)
    ends = torch.stack((torch.zeros_like(cross[..., 0]), torch.ones_like(cross[..., 0])), -1)
    knots = torch.cat((ends, cross), -1).sort(-1).values  # (..., 8)
    lo, hi = knots[..., :-1], knots[..., 1:]  # (..., 7) pieces
    mid = (lo + hi) / 2
    x_mid = u[..., None, :] + mid[..., None] * v[..., None, :]  # (..., 7, 3)
    sign = torch.where(x_mid >= 0, 1.0, -1.0).to(u.dtype)
    active = (x_mid.abs() > h[..., None, :]).to(u.dtype)
    c = active * (sign * u[..., None, :] - h[..., None, :])
    d = active * sign * v[..., None, :]
    dd = (d * d).sum(-1)
    stationary = -(c * d).sum(-1) / torch.where(dd > 0, dd, torch.ones_like(dd))
    best = torch.where(dd > 0, stationary, mid).minimum(hi).maximum(lo)  # a piece inside the box: its middle
    cand = torch.cat((best, knots), -1)  # (..., 15)
    x = u[..., None, :] + cand[..., None] * v[..., None, :]
    g = ((x.abs() - h[..., None, :]).clamp(min=0) ** 2).sum(-1)
    k = g.argmin(-1, keepdim=True)
    s = cand.gather(-1, k)[..., 0]
    return s, g.gather(-1, k)[..., 0] <= 0


def _segment_box_depth(a: Tensor, b: Tensor, X_world_box: Tensor, half_extents: Tensor) -> Tensor:
    """The shortest move separating a segment from a box it enters: the least overlap of their
    projections on the separating axes (the box's axes, and the segment's direction crossed
    with each), for rows of one shape ``(N, 3)``, ``(N, 7)``."""
    R = lie.quat_to_matrix(X_world_box[..., 3:])  # (..., 3, 3): the box's axes as columns
    axes = R.transpose(-1, -2)  # (..., 3, 3): rows
    d = b - a
    cross = torch.linalg.cross(d[..., None, :].expand_as(axes), axes, dim=-1)
    length = _norm(cross)
    usable = length > 1e-9 * _norm(d)[..., None].clamp(min=torch.finfo(d.dtype).tiny)
    cross = cross / torch.where(usable, length, torch.ones_like(length))[..., None]
    u = torch.cat((axes, cross), -2)  # (..., 6, 3)
    ok = torch.cat((torch.ones_like(usable), usable), -1)
    radius = ((u @ R).abs() * half_extents[..., None, :]).sum(-1)  # the box's half-width along u
    centre = (u * X_world_box[..., None, :3]).sum(-1)
    pa, pb = (u * a[..., None, :]).sum(-1), (u * b[..., None, :]).sum(-1)
    overlap = torch.minimum(torch.maximum(pa, pb) - (centre - radius), (centre + radius) - torch.minimum(pa, pb))
    return torch.where(ok, overlap, torch.full_like(overlap, math.inf)).min(-1).values
