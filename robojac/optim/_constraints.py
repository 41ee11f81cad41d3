"""Constraints on the engine: ``c(X) = 0`` and ``c(X) <= 0`` by an augmented Lagrangian.

``solve(variables, factors, config, constraints=[...])`` minimizes the factors' cost subject to
the constraints, in rounds of the engine's unconstrained solve of the augmented cost

* ``0.5 sum rho(|r|^2) + 0.5 mu |c + lambda / mu|^2`` for an equality,
* ``0.5 sum rho(|r|^2) + 0.5 mu |max(0, c + lambda / mu)|^2`` for an inequality,

each round from the last one's answer.  Between rounds the multipliers move by the residual
(``lambda <- lambda + mu c``, held at zero or above for an inequality) and, in a problem whose
largest violation did not fall below a quarter of the round before's, the penalty ``mu`` grows
(Nocedal and Wright's algorithm 17.4, as jaxls and pyroki run it).  Each problem of a batch
keeps its own multipliers and penalty and is judged feasible on its own; the rounds go on until
every problem is (a feasible one's next round starts at its minimum and stops at once).

The rounds end where the augmented cost stops resolving progress, about ``sqrt(eps)`` of the
values along the constraints' surfaces.  The answer is finished by Newton steps on the factors
with the active constraints (every equality, the inequalities whose multiplier is positive) held
by a stiff augmented term (:class:`Stiff`).  Gradients through the answer
(``backward="implicit"``) are the implicit function theorem's on that same problem: the KKT
system's derivative, to about the inverse of the stiffness (``_engine.STIFF``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._config import check_choice, check_int, check_real
from ._problem import Factor
from ._variables import Variable

__all__ = ["Constraint", "ConstraintConfig"]


@dataclass(frozen=True)
class ConstraintConfig:
    """The augmented Lagrangian's options (:class:`SolverConfig`'s ``constraints``).

    * ``max_rounds``: unconstrained solves at most (each up to the termination's
      ``max_iterations``).
    * ``initial_penalty``: ``mu`` of the first round.
    * ``penalty_growth``: ``mu`` is multiplied by this where a round left more than a quarter of
      the round before's violation.
    * ``max_penalty``: ``mu`` grows no further (a problem still infeasible there is reported so).
    * ``tolerance``: a problem is feasible when every equality's residual is within this of zero
      and every inequality's at most this (in the constraint's own units).
    * ``early_relative_tolerance``: a round that starts farther than ``1e3 * tolerance`` from
      feasible stops its unconstrained solve at this relative decrease (its answer only starts
      the next round: Nocedal and Wright's inexact minimizations); the others use the
      termination's own, and a solve ends (feasible, before ``max_rounds``) only on one of them.  Example 30's balanced
      reaches took 38-249 iterations with every round solved to 1e-12, 30-91 with this; example
      32's hard trajectory 134 and 52, at the same answers.
    * ``stationarity``: a feasible answer is a minimum (converged) where the Lagrangian's gradient
      (the factors' plus each active constraint's times its multiplier; coordinates held, or on
      a bound the gradient pushes against, left out) is at most this times ``max(1, the
      factors' own gradient)`` (else ``reason="not_stationary"``).  Many small problems only:
      one large sparse problem is not checked.
    """

    max_rounds: int = 20
    initial_penalty: float = 10.0
    penalty_growth: float = 10.0
    max_penalty: float = 1e10
    tolerance: float = 1e-8
    early_relative_tolerance: float = 1e-6
    stationarity: float = 1e-4

    def __post_init__(self):
        check_int("ConstraintConfig", "max_rounds", self.max_rounds, minimum=1)
        for name in ("initial_penalty", "max_penalty", "tolerance", "early_relative_tolerance", "stationarity"):
            check_real("ConstraintConfig", name, getattr(self, name), positive=True)
        check_real("ConstraintConfig", "penalty_growth", self.penalty_growth, positive=True)
        if self.penalty_growth <= 1:
            raise ValueError(f"ConstraintConfig.penalty_growth: expected a number > 1, got {self.penalty_growth!r}")


class Constraint:
    """``F`` constraints ``residual(X_1, ..., X_K, *data) -> (B, F, m)`` per problem, each
    residual ``= 0`` (``kind="eq"``) or ``<= 0`` (``kind="leq"``).  The arguments are a
    :class:`Factor`'s (``variables``, ``index``, ``data``), and so are the Jacobians: a
    closed form ``value_and_jacobians`` is used, any other residual is differentiated by the
    Jacobian core."""

    def __init__(self, residual, variables: Sequence[Variable], index=None, *, data: Sequence[Tensor] = (),
                 kind: str = "eq", name: str = "constraint"):
        check_choice(name, "kind", kind, ("eq", "leq"))
        self.factor = Factor(residual, variables, index, data=data, name=name)
        self.kind, self.name = kind, name

    def violation(self, c: Tensor, lam: Tensor | None = None) -> Tensor:
        """``(B,)``: the largest violation of residuals ``c (B, F, m)`` (0 where all hold): an
        equality's ``|c|``; an inequality's positive part, or ``|c|`` where its multiplier ``lam``
        is positive (it binds: its residual must be zero, the complementarity of the KKT
        conditions)."""
        if self.kind == "eq":
            v = c.abs()
        else:
            v = c.clamp(min=0) if lam is None else torch.where(lam > 0, c.abs(), c.clamp(min=0))
        return v.flatten(1).amax(1) if v.numel() else c.new_zeros(c.shape[0])


class Augmented:
    """A constraint's term of the augmented cost: ``sqrt(mu) (c + lambda / mu)`` (its positive part
    for an inequality), with ``lambda (B, F, m)`` and ``mu (B, F, 1)`` the factor's last data."""

    def __init__(self, residual, kind: str):
        self.residual, self.kind = residual, kind
        if hasattr(residual, "value_and_jacobians"):
            self.value_and_jacobians = self._value_and_jacobians

    @property
    def subset(self):
        inner = getattr(self.residual, "subset")  # an AttributeError here: the engine cannot cut it
        return lambda rows: Augmented(inner(rows), self.kind)

    def _shift(self, c: Tensor, lam: Tensor, mu: Tensor) -> Tensor:
        z = c + lam / mu
        return z.clamp(min=0) if self.kind == "leq" else z

    def __call__(self, *args):
        *rest, lam, mu = args
        return mu.sqrt() * self._shift(self.residual(*rest), lam, mu)

    def _value_and_jacobians(self, *args):
        *rest, lam, mu = args
        c, blocks = self.residual.value_and_jacobians(*rest)
        z = c + lam / mu
        s = mu.sqrt()
        if self.kind == "leq":
            on = (z > 0).to(c.dtype)
            return s * z * on, tuple(J * (s * on)[..., None] for J in blocks)
        return s * z, tuple(J * s[..., None] for J in blocks)


class Stiff:
    """The active constraints held by a stiff augmented term, ``sqrt(w) (c + lambda / w)`` on the
    rows ``active`` (``w (B, F, 1)``, ``active`` and the multipliers ``lambda (B, F, m)`` the
    factor's last data): its minimum with the factors is the constrained one where ``lambda`` is
    the constraints' multiplier (the shift cancels the factors' pull, leaving ``c = 0``), and its
    Hessian holds the active constraints ``w`` times stiffer than the factors (the backward's
    stand-in for the KKT system)."""

    def __init__(self, residual):
        self.residual = residual
        if hasattr(residual, "value_and_jacobians"):
            self.value_and_jacobians = self._value_and_jacobians

    def __call__(self, *args):
        *rest, w, active, lam = args
        return (w.sqrt() * self.residual(*rest) + lam / w.sqrt()) * active

    def _value_and_jacobians(self, *args):
        *rest, w, active, lam = args
        c, blocks = self.residual.value_and_jacobians(*rest)
        s = w.sqrt() * active
        return s * c + lam / w.sqrt() * active, tuple(J * s[..., None] for J in blocks)
