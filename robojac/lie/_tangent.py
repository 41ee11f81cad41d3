"""Maps between a Lie group element's stored numbers and its tangent space.

pypose stores a group element as raw numbers (SO3: ``[qx, qy, qz, qw]``, SE3:
``[tx, ty, tz, qx, qy, qz, qw]``, RxSO3: ``[q, s]``, Sim3: ``[t, q, s]``) and perturbs it on
the left, ``X' = Exp(d) * X``, with tangent order ``[rho, phi(, sigma)]``.  Two matrices tie the
two views together at a point ``X``:

* ``raw_from_tangent(X)`` (``M``, shape ``(..., raw, dof)``): the first-order change of the
  stored numbers, ``raw(Exp(d) * X) = raw(X) + M d + O(|d|^2)``.
* ``tangent_from_raw(X)`` (``P``, shape ``(..., dof, raw)``): the left-tangent change that a
  change of the stored numbers makes, ``Log(X' * X^-1) = P (raw(X') - raw(X)) + O(.^2)``;
  changes that leave the manifold (the quaternion's length) map to zero.

``P @ M`` is the identity; these two maps are all the Jacobian core needs to turn any
derivative with respect to stored numbers into a tangent-space derivative and back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pypose as pp
import torch
from torch import Tensor

from ._operands import POINT, operands

__all__ = [
    "GroupSpec",
    "group_spec",
    "is_lie_group",
    "raw_from_tangent",
    "tangent_from_raw",
    "retract_first_order",
    "skew",
]


@dataclass(frozen=True)
class GroupSpec:
    """Sizes of one pypose Lie group: stored numbers and tangent dimension."""

    name: str
    raw_dim: int
    tangent_dim: int


_SPECS = {
    "SO3": GroupSpec("SO3", 4, 3),
    "SE3": GroupSpec("SE3", 7, 6),
    "RxSO3": GroupSpec("RxSO3", 5, 4),
    "Sim3": GroupSpec("Sim3", 8, 7),
}
_LTYPE_NAMES = {
    id(pp.SO3_type): "SO3",
    id(pp.SE3_type): "SE3",
    id(pp.RxSO3_type): "RxSO3",
    id(pp.Sim3_type): "Sim3",
}


def group_spec(ltype) -> GroupSpec | None:
    """The :class:`GroupSpec` of a pypose ``ltype`` (or group name); ``None`` for algebras."""
    if isinstance(ltype, str):
        if ltype not in _SPECS:
            raise ValueError(f"unknown group name {ltype!r}: expected one of {sorted(_SPECS)}")
        return _SPECS[ltype]
    name = _LTYPE_NAMES.get(id(ltype))
    return None if name is None else _SPECS[name]


def is_lie_group(x) -> bool:
    """True for a pypose LieTensor whose type is a group (SO3, SE3, RxSO3, Sim3)."""
    return isinstance(x, pp.LieTensor) and group_spec(x.ltype) is not None


@operands(v=POINT)
def skew(v: Tensor) -> Tensor:
    """The cross-product matrix ``[v]x`` of ``v`` with shape ``(..., 3)`` -> ``(..., 3, 3)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).unflatten(-1, (3, 3))


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device).expand(like.shape[:-1] + (n, n))


def _so3_M(q: Tensor) -> Tensor:
    # d/dphi of (Exp(phi) (x) q) at phi = 0 is 0.5 * [w I - [v]x ; -v^T]
    v, w = q[..., :3], q[..., 3:]
    top = w.unsqueeze(-1) * _eye(3, v) - skew(v)
    return 0.5 * torch.cat((top, -v.unsqueeze(-2)), dim=-2)


def _so3_P(q: Tensor) -> Tensor:
    # phi = 2 vec(dq (x) q^*) / |q|^2 = 2 [w I + [v]x | -v] dq / |q|^2
    v, w = q[..., :3], q[..., 3:]
    left = w.unsqueeze(-1) * _eye(3, v) + skew(v)
    P = torch.cat((left, -v.unsqueeze(-1)), dim=-1)
    return (2.0 / (q * q).sum(-1))[..., None, None] * P


def _blocks(X: Tensor, rows) -> Tensor:
    """A ``(..., R, C)`` matrix from rows of blocks ``(..., r, c)``; an ``(r, c)`` tuple is a zero block."""
    zero = lambda shape: X.new_zeros(X.shape[:-1] + shape)  # noqa: E731
    return torch.cat([torch.cat([zero(b) if isinstance(b, tuple) else b for b in row], -1) for row in rows], -2)


def _group_of(X: Tensor, group: str | GroupSpec) -> tuple[Tensor, GroupSpec]:
    g = group if isinstance(group, GroupSpec) else group_spec(group)
    X = X.tensor() if isinstance(X, pp.LieTensor) else X
    _check_last(X, g)
    return X, g


def raw_from_tangent(X: Tensor, group: str | GroupSpec) -> Tensor:
    """``M(X)``: stored-number change per unit left-tangent step, shape ``(..., raw, dof)``.

    ``X`` holds stored numbers (a plain tensor or a LieTensor) with last dimension
    ``group.raw_dim``.
    """
    X, g = _group_of(X, group)
    if g.name == "SO3":
        return _so3_M(X)
    if g.name == "SE3":  # t' = t + rho + phi x t, q' = Exp(phi) q
        t, q = X[..., :3], X[..., 3:]
        return _blocks(X, [[_eye(3, t), -skew(t)], [(4, 3), _so3_M(q)]])
    if g.name == "RxSO3":
        q, s = X[..., :4], X[..., 4:]
        return _blocks(X, [[_so3_M(q), (4, 1)], [(1, 3), s.unsqueeze(-1)]])
    # Sim3: t' = t + rho + phi x t + sigma t, q' = Exp(phi) q, s' = s (1 + sigma)
    t, q, s = X[..., :3], X[..., 3:7], X[..., 7:]
    return _blocks(X, [[_eye(3, t), -skew(t), t.unsqueeze(-1)], [(4, 3), _so3_M(q), (4, 1)], [(1, 6), s.unsqueeze(-1)]])


def tangent_from_raw(X: Tensor, group: str | GroupSpec) -> Tensor:
    """``P(X)``: left-tangent change per stored-number change, shape ``(..., dof, raw)``."""
    X, g = _group_of(X, group)
    if g.name == "SO3":
        return _so3_P(X)
    if g.name == "SE3":  # phi = P_q dq, rho = dt + [t]x phi
        t, q = X[..., :3], X[..., 3:]
        Pq = _so3_P(q)
        return _blocks(X, [[_eye(3, t), skew(t) @ Pq], [(3, 3), Pq]])
    if g.name == "RxSO3":
        q, s = X[..., :4], X[..., 4:]
        return _blocks(X, [[_so3_P(q), (3, 1)], [(1, 4), (1.0 / s).unsqueeze(-1)]])
    # Sim3: sigma = ds / s, phi = P_q dq, rho = dt + [t]x phi - t sigma
    t, q, s = X[..., :3], X[..., 3:7], X[..., 7:]
    Pq = _so3_P(q)
    inv_s = (1.0 / s).unsqueeze(-1)
    return _blocks(X, [[_eye(3, t), skew(t) @ Pq, -t.unsqueeze(-1) * inv_s], [(3, 3), Pq, (3, 1)], [(1, 7), inv_s]])


def retract_first_order(X: Tensor, d: Tensor, group: str | GroupSpec) -> Tensor:
    """Stored numbers ``raw(X) + M(X) d``: equal to ``Exp(d) * X`` to first order in ``d``.

    Differentiating a function of this at ``d = 0`` gives exactly the left-tangent derivative,
    at the cost of one small matrix product (no Exp, no quaternion product).
    """
    g = group if isinstance(group, GroupSpec) else group_spec(group)
    X = X.tensor() if isinstance(X, pp.LieTensor) else X
    return X + (raw_from_tangent(X, g) @ d.unsqueeze(-1)).squeeze(-1)


def _check_last(X: Tensor, g: GroupSpec) -> None:
    if X.shape[-1] != g.raw_dim:
        raise ValueError(
            f"expected {g.name} stored numbers with last dimension {g.raw_dim}, got shape {tuple(X.shape)}"
        )
