"""What the engine optimizes: Euclidean vectors and Lie groups, each with one retraction.

A group stores ``raw_dim`` numbers and steps in a ``tangent_dim`` tangent space, on the left:
``X' = Exp(d) * X`` (robojac's convention everywhere; ``x + d`` for vectors).  The retraction is
written once here and used by every problem on the engine.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from .._precision import PRECISIONS

__all__ = ["Group", "group", "product", "Variable", "wrap_periodic"]


def wrap_periodic(x, lower, upper, period):
    """``x`` with each coordinate outside ``[lower, upper]`` brought back by one ``period`` where
    that lands inside (``period`` 0: never), numpy arrays or torch tensors alike: the rule of a
    bounded periodic coordinate (a revolute joint), used by the engine's vector variables and IK's
    numpy path."""
    return x - period * ((x > upper) & (x - period >= lower)) + period * ((x < lower) & (x + period <= upper))


def _as_given(X: Tensor, name: str) -> Tensor:
    return X


def _unit_quaternions(q: Tensor, name: str) -> Tensor:
    """``q`` normalized where its length is off 1 by more than a few roundings (unit ones keep
    their every bit); off by more than the dtype's tolerance (:func:`robojac.lie.unit_tolerance`),
    refused."""
    n = q.norm(dim=-1, keepdim=True)
    off = (n - 1).abs()
    tol = lie.unit_tolerance(q.dtype)
    if q.numel() and float(off.detach().max()) > tol:
        raise ValueError(f"{name}: quaternion [qx, qy, qz, qw] is not of unit length (|q| off by up to "
                         f"{float(off.detach().max()):.2e}, tolerance {tol:.0e} for {q.dtype})")
    return torch.where(off > 8 * torch.finfo(q.dtype).eps, q / n, q)  # unit ones keep their every bit


def _se3_valid(X: Tensor, name: str) -> Tensor:
    return torch.cat((X[..., :3], _unit_quaternions(X[..., 3:], name)), -1)


def _positive_scale(s: Tensor, name: str) -> Tensor:
    if s.numel() and not bool((s > 0).all()):
        raise ValueError(f"{name}: expected a positive scale s (the last number), got {float(s.detach().min()):.3g}")
    return s


def _rxso3_valid(X: Tensor, name: str) -> Tensor:
    return torch.cat((_unit_quaternions(X[..., :4], name), _positive_scale(X[..., 4:], name)), -1)


def _sim3_valid(X: Tensor, name: str) -> Tensor:
    return torch.cat((X[..., :3], _unit_quaternions(X[..., 3:7], name), _positive_scale(X[..., 7:], name)), -1)


@dataclass(frozen=True)
class Group:
    """A variable kind: ``name``, stored size ``raw_dim``, tangent size ``tangent_dim``, and the
    left retraction ``retract(X, d) = Exp(d) * X``; ``tangent_map(X)`` is its derivative at
    ``d = 0``, ``(..., raw_dim, tangent_dim)``, in closed form.  ``valid(X, name)`` gives values
    as the group holds them (unit quaternions, within the dtype's rounding) or refuses them."""

    name: str
    raw_dim: int
    tangent_dim: int
    retract: Callable[[Tensor, Tensor], Tensor]
    tangent_map: Callable[[Tensor], Tensor]
    valid: Callable[[Tensor, str], Tensor] = _as_given


def _se3(X: Tensor, d: Tensor) -> Tensor:
    return lie.se3_compose(lie.se3_exp(d), X)


def _so3(X: Tensor, d: Tensor) -> Tensor:
    return lie.quat_mul(lie.so3_exp(d), X)


def _rxso3(X: Tensor, d: Tensor) -> Tensor:
    # Exp([phi, sigma]) X, exactly: a rotation and a scale compose independently
    return torch.cat((lie.quat_mul(lie.so3_exp(d[..., :3]), X[..., :4]), X[..., 4:] * d[..., 3:].exp()), -1)


def _sim3(X: Tensor, d: Tensor) -> Tensor:
    # Exp(d) X, exactly (lie.sim3_exp).  A retraction equal to it to first order only, (rho, Exp(phi),
    # exp(sigma)) X, turned and scaled each pose about the world's origin: its second-order gap grows
    # with |t|, and a Sim3 pose graph 1 km across took 100 iterations without converging where GTSAM's
    # Levenberg-Marquardt (right retraction) takes 6 (docs/posegraph.md, "Similarity pose graphs")
    return lie.sim3_compose(lie.sim3_exp(d), X)


def _se2(X: Tensor, d: Tensor) -> Tensor:
    return lie.se2_compose(lie.se2_exp(d), X)


def _rn(X: Tensor, d: Tensor) -> Tensor:
    return X + d


# d/dd Exp(d) * X at d = 0 (lie.raw_from_tangent for the Lie groups).  Automatic Jacobians push
# tangents through this linear map rather than through Exp: the same first derivative (the
# directions are tangent to the group), without differentiating exp's series under vmap (5x the
# engine's whole step for small SE3 problems).
def _lie_map(name: str) -> Callable[[Tensor], Tensor]:
    """A Lie group's tangent map, ``robojac.lie``'s ``raw_from_tangent`` (its left retraction's
    derivative at 0)."""
    return functools.partial(lie.raw_from_tangent, group=name)


def _se2_map(X: Tensor) -> Tensor:
    x, y = X[..., 0], X[..., 1]
    one, o = torch.ones_like(x), torch.zeros_like(x)
    return torch.stack((one, o, -y, o, one, x, o, o, one), -1).unflatten(-1, (3, 3))


def _rn_map(X: Tensor) -> Tensor:
    return torch.eye(X.shape[-1], dtype=X.dtype, device=X.device).expand(X.shape + (X.shape[-1],))


_GROUPS = {"SE3": Group("SE3", 7, 6, _se3, _lie_map("SE3"), _se3_valid),
           "SO3": Group("SO3", 4, 3, _so3, _lie_map("SO3"), _unit_quaternions),
           "SE2": Group("SE2", 3, 3, _se2, _se2_map),
           "RxSO3": Group("RxSO3", 5, 4, _rxso3, _lie_map("RxSO3"), _rxso3_valid),
           "Sim3": Group("Sim3", 8, 7, _sim3, _lie_map("Sim3"), _sim3_valid)}


def group(kind: str, dim: int | None = None) -> Group:
    """``"SE3"`` (``[t, qx, qy, qz, qw]``), ``"SO3"`` (``[qx, qy, qz, qw]``), ``"SE2"``
    (``[x, y, theta]``), ``"RxSO3"`` (``[qx, qy, qz, qw, s]``, tangent ``[phi, sigma]``),
    ``"Sim3"`` (``[t, qx, qy, qz, qw, s]``, tangent ``[rho, phi, sigma]``: pypose's layouts) or
    ``"Rn"`` with ``dim`` numbers.  Each steps on the left by ``Exp(d) X`` (Sim3's ``Exp`` is
    :func:`robojac.lie.sim3_exp`)."""
    if kind == "Rn":
        if not isinstance(dim, int) or dim < 0:
            raise ValueError(f"dim: expected the vector size (an int >= 0) for 'Rn', got {dim!r}")
        return Group(f"R{dim}", dim, dim, _rn, _rn_map)
    if kind not in _GROUPS:
        raise ValueError(f"kind: expected one of {('Rn',) + tuple(_GROUPS)}, got {kind!r}")
    return _GROUPS[kind]


def product(*parts: tuple[str | Group, int]) -> Group:
    """One variable made of several group elements, ``parts = ((kind, count), ...)``: its raw
    numbers and tangent coordinates are the parts' in order, each retracted by its own group.
    For a model whose parameters every residual reads together (a robot's joint origins and
    offsets): one slot, one Jacobian block, one product ``J^T J``.
    ``product(("SE3", 8), ("Rn", 7))`` stores ``8 * 7 + 7`` numbers and steps in ``8 * 6 + 7``."""
    if not parts:
        raise ValueError("parts: expected at least one (kind, count) pair")
    groups = []
    for i, part in enumerate(parts):
        if not (isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], int) and part[1] >= 0):
            raise ValueError(f"parts[{i}]: expected (kind, count) with count an int >= 0, got {part!r}")
        kind, count = part
        g = kind if isinstance(kind, Group) else group(kind, 1) if kind == "Rn" else group(kind)
        groups.append((g, count))
    raw = [g.raw_dim * c for g, c in groups]
    tan = [g.tangent_dim * c for g, c in groups]

    def split(x: Tensor, sizes: list[int], dims: list[int]) -> list[Tensor]:
        return [p.unflatten(-1, (c, d)) for p, (c, d) in zip(x.split(sizes, -1), zip([c for _, c in groups], dims))]

    def retract(X: Tensor, d: Tensor) -> Tensor:
        xs = split(X, raw, [g.raw_dim for g, _ in groups])
        ds = split(d, tan, [g.tangent_dim for g, _ in groups])
        return torch.cat([g.retract(x, e).flatten(-2) for (g, _), x, e in zip(groups, xs, ds)], -1)

    def tangent_map(X: Tensor) -> Tensor:
        xs = split(X, raw, [g.raw_dim for g, _ in groups])
        return _block_diag([_block_diag_of(g.tangent_map(x)) for (g, _), x in zip(groups, xs)])

    def valid(X: Tensor, name: str) -> Tensor:
        xs = split(X, raw, [g.raw_dim for g, _ in groups])
        return torch.cat([g.valid(x, f"{name} ({g.name} part)").flatten(-2) for (g, _), x in zip(groups, xs)], -1)

    name = " x ".join(f"{g.name}^{c}" for g, c in groups)
    return Group(name, sum(raw), sum(tan), retract, tangent_map, valid)


def _block_diag_of(M: Tensor) -> Tensor:
    """``(..., c, r, t)`` -> ``(..., c r, c t)``: the ``c`` blocks on the diagonal."""
    c, r, t = M.shape[-3:]
    eye = torch.eye(c, dtype=M.dtype, device=M.device)
    return torch.einsum("...ars,ab->...arbs", M, eye).reshape(M.shape[:-3] + (c * r, c * t))


def _block_diag(blocks: list[Tensor]) -> Tensor:
    """``(..., r_i, t_i)`` blocks -> ``(..., sum r, sum t)`` with them on the diagonal."""
    out = blocks[0].new_zeros(blocks[0].shape[:-2] + (sum(b.shape[-2] for b in blocks), sum(b.shape[-1] for b in blocks)))
    i = j = 0
    for b in blocks:
        out[..., i : i + b.shape[-2], j : j + b.shape[-1]] = b
        i, j = i + b.shape[-2], j + b.shape[-1]
    return out


class Variable:
    """Values of one kind (a name for :func:`group`, or a :class:`Group` such as a
    :func:`product`) for ``B`` problems: ``value (B, N, raw)`` holds each problem's ``N``
    variables (``B = 1`` for one large problem; they are :attr:`batch` and :attr:`count`).
    ``fixed (N,)`` or ``(B, N)`` holds some at their values (a gauge, a FIXed pose).  ``name``
    appears in error messages.

    The value may be a pypose LieTensor or require grad: the solver reads it as the starting
    point (gradients reach the answer through the problem's data, never through the start),
    except at fixed entries, which are data: with ``backward="implicit"`` their gradients pass
    through the answer (a trajectory's start and end, a graph's anchor).

    Vectors (``"Rn"``) may also carry, each broadcastable to ``(N, dim)`` and shared by the
    problems (a robot's joints):

    * ``lower`` / ``upper``: bounds.  A coordinate that a step would take outside stops on the
      bound it crosses (``at_bound="stop"``) or keeps its value for that step (``"hold"``:
      damped least-squares IK's rule, which a joint's limit suits: the arm's other joints take
      up the motion); the others are solved again given that, and the result is clamped into
      the box (outside the Gauss-Newton model: the engine's promise is the step's, before it).
    * ``period``: a coordinate that leaves its bounds comes back by one period when that lands
      inside (``2 pi`` for a revolute joint, ``0``: none).
    * ``rest`` with ``rest_gain``: a preferred value the step pulls toward inside the damped
      null space of the residuals, ``step += gain (d - (H + D)^-1 H d)`` with ``d = rest - x``
      (a redundant arm's rest pose; ``H + D`` the damped system).
    Bounded or pulled variables need the dense linear solver (many small problems)."""

    def __init__(self, kind: str | Group, value: Tensor, *, dim: int | None = None, fixed: Tensor | None = None,
                 name: str = "variable", lower=None, upper=None, period=None, rest=None, rest_gain: float = 0.0,
                 at_bound: str = "stop"):
        value = value.tensor() if hasattr(value, "ltype") else value
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor (B, N, raw), got {type(value).__name__}")
        if value.dtype not in PRECISIONS:
            raise TypeError(f"{name}: expected float32 or float64 values (the engine's precisions: torch has no "
                            f"factorization in a half precision), got {value.dtype}")
        if kind == "Rn" and dim is None:
            dim = value.shape[-1]
        self.group = kind if isinstance(kind, Group) else group(kind, dim)
        if value.dim() != 3 or value.shape[-1] != self.group.raw_dim:
            raise ValueError(f"{name}: expected shape (B, N, {self.group.raw_dim}) for {self.group.name} values, "
                             f"got {tuple(value.shape)}")
        lie.require_values(value, name)
        if not torch.isfinite(value.detach()).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        value = self.group.valid(value, name)
        B, N = value.shape[:2]
        held = torch.zeros(B, N, dtype=torch.bool, device=value.device)
        if fixed is not None:
            fixed = torch.as_tensor(fixed, dtype=torch.bool, device=value.device)
            if fixed.shape not in ((N,), (B, N)):
                raise ValueError(f"{name}.fixed: expected shape ({N},) or ({B}, {N}), got {tuple(fixed.shape)}")
            held = held | fixed
        self.value, self.fixed, self.name = value, held, name
        self.count = N  # variables per problem: fixed (a subset of the problems keeps it; the batch may change)
        self.lower, self.upper, self.period, self.rest = (
            self._shared(x, label, kind) for x, label in ((lower, "lower"), (upper, "upper"), (period, "period"), (rest, "rest")))
        if self.lower is not None and self.upper is not None and bool((self.lower > self.upper).any()):
            raise ValueError(f"{name}: expected lower <= upper in every coordinate")
        if self.period is not None and bool((self.period < 0).any()):
            raise ValueError(f"{name}.period: expected periods >= 0 (0: not periodic)")
        if not isinstance(rest_gain, (int, float)) or not math.isfinite(rest_gain):
            raise ValueError(f"{name}.rest_gain: expected a finite number, got {rest_gain!r}")
        self.rest_gain = float(rest_gain)
        if at_bound not in ("stop", "hold"):
            raise ValueError(f"{name}.at_bound: expected 'stop' or 'hold', got {at_bound!r}")
        self.at_bound = at_bound

    def _shared(self, x, label: str, kind) -> Tensor | None:
        """``x`` as a tensor broadcastable to ``(N, dim)`` (shared by the problems), for a vector
        variable; ``None`` stays."""
        if x is None:
            return None
        if kind != "Rn":
            raise ValueError(f"{self.name}.{label}: only vector ('Rn') variables take {label}, this one is {self.group.name}")
        x = torch.as_tensor(x, dtype=self.value.dtype, device=self.value.device).detach()
        shared = tuple(self.value.shape[1:])
        fits = x.dim() <= 2 and all(a in (1, b) for a, b in zip(reversed(x.shape), reversed(shared)))
        if not fits:
            raise ValueError(f"{self.name}.{label}: expected a shape broadcastable to {shared} (shared by the "
                             f"problems), got {tuple(x.shape)}")
        if torch.isnan(x).any() or (label in ("period", "rest") and not torch.isfinite(x).all()):
            raise ValueError(f"{self.name}.{label}: contains NaN{'' if label in ('lower', 'upper') else ' or infinite'} values")
        return x

    @property
    def bounded(self) -> bool:
        return self.lower is not None or self.upper is not None

    def wrap(self, x: Tensor) -> Tensor:
        """Coordinates outside the bounds brought back by one period where that lands inside."""
        if self.period is None or not self.bounded:
            return x
        lo = self.lower if self.lower is not None else -math.inf
        hi = self.upper if self.upper is not None else math.inf
        return wrap_periodic(x, lo, hi, self.period)

    def outside(self, x: Tensor) -> Tensor:
        """Where ``x`` (after :meth:`wrap`) leaves the bounds."""
        out = torch.zeros_like(x, dtype=torch.bool)
        if self.lower is not None:
            out = out | (x < self.lower)
        if self.upper is not None:
            out = out | (x > self.upper)
        return out

    def project(self, x: Tensor) -> Tensor:
        """``x`` wrapped, then clamped into the bounds (the arithmetic only on the problems with
        a coordinate outside: most steps of a batch stay inside)."""
        rows = torch.nonzero(self.outside(x).flatten(1).any(1)).flatten()
        if rows.numel() == 0:
            return x
        y = self.wrap(x[rows])
        if self.lower is not None:
            y = torch.maximum(y, self.lower.expand_as(y))
        if self.upper is not None:
            y = torch.minimum(y, self.upper.expand_as(y))
        return x.index_copy(0, rows, y)

    @property
    def batch(self) -> int:
        return self.value.shape[0]
