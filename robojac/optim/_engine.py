"""The solver engine: Gauss-Newton / Levenberg-Marquardt on many problems at once.

Each problem keeps its own damping, stopping and convergence.  One damping rule (Marquardt's
diagonal with a ridge relative to the system and its precision), one stopping rule, robust
kernels applied in one place (IRLS, in :class:`~robojac.optim.Linearization`), one retraction
per group.  The answer can be differentiated: ``backward="implicit"`` (the default) applies the
implicit function theorem at the solution, ``"unroll"`` differentiates through the iterations,
``"none"`` detaches.

Two solvers keep loops of their own beside this one, each for a measured reason written next to
it: ICP (a step from moment sums takes half the engine's, and it re-matches before every step,
so it would pay a solve's set-up each time: ``robojac/icp/_align.py``, ``benchmarks/icp_step.py``)
and IK's latency path (a lone target in numpy: ``robojac/ik/_lm_numpy.py``).  Both take this
module's damping rule and speak its vocabulary; their gradients come from :func:`attach_gradients`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .._config import check_choice, check_int, check_real
from .._csr import csr_tensor
from .._threads import threads_for, torch_threads
from ._linear import SparseLDL, conjugate_gradient
from ._multifrontal import MultifrontalCholesky
from ._small import cholesky_soa, cholesky_solve_soa, soa_pays
from ._constraints import Augmented, Constraint, ConstraintConfig, Stiff
from ._implicit import Context, Implicit, held_sources, newton_steps
from ._problem import DENSE_MAX, Factor, Linearization, Problem, SparseSystem, hold_fixed
from ._variables import Variable

__all__ = ["RIDGE", "TRUSTED", "History", "IterationRecord", "SolveResult", "SolverConfig", "TerminationConfig",
           "TrustRegionConfig", "attach_gradients", "damped", "solve"]

# a step achieved at least this fraction of the decrease the Gauss-Newton model promised: the
# model describes the cost there (TrustRegionConfig's damping, TerminationConfig.relative_tolerance)
TRUSTED = 0.25
RIDGE = 100.0  # the damping's floor: RIDGE * eps(dtype) * max diag(H), see damped()
# a damping at most this (of the diagonal) leaves a factor that confirms convergence as Gauss-Newton's
# does (_SparseSteps.chord): one factorization fewer for Levenberg-Marquardt's run, without a kernel
CHORD_DAMPING = 1e-9


def damped(H: Tensor, lam: Tensor | None, *, floor: bool = True) -> Tensor:
    """``H + lam diag(H) + RIDGE eps |diag H|_max I`` for ``H (B, n, n)``, ``lam (B,)`` (``None``:
    Gauss-Newton, no Marquardt term).

    Marquardt's scaling, with a floor relative to the system and its precision: a direction the
    residuals do not see (a zero column: a joint that does not move the task) stays regular in
    float32 as in float64, and no other step moves by more than ~1e-5 (float32) or ~2e-14
    (float64) relative.  The one damping rule of every solver on the engine.  The engine adds
    the floor only to a system that does not factor without it (``floor=False`` leaves it out):
    on an ill-conditioned one that does (parking-garage's pose graph, condition ~1e13), the
    floor turned Gauss-Newton's 4 steps into 23."""
    d = H.diagonal(dim1=-2, dim2=-1)
    eps = torch.finfo(H.dtype).eps
    add = None if lam is None else lam[:, None] * d  # Marquardt's term
    if floor:
        ridge = RIDGE * eps * d.amax(-1, keepdim=True).clamp_min(torch.finfo(H.dtype).tiny)
        add = ridge if add is None else add + ridge
    if add is None:
        return H
    if torch.is_grad_enabled() and (H.requires_grad or (lam is not None and lam.requires_grad)):
        return H + torch.diag_embed(add.expand_as(d))
    out = H.clone()  # in H's own layout (a structure-of-arrays system stays one)
    out.diagonal(dim1=-2, dim2=-1).add_(add)
    return out


# TrustRegionConfig.gauss_newton_first's dampings: Gauss-Newton's step first (the plain cost's),
# and the careful one a refused first step falls back to, a robust cost's first (measured in
# docs/benchmarks.md#the-first-damping-of-a-pose-graph)
LAMBDA_PLAIN = 1e-10
LAMBDA_CAREFUL = 1e-6


@dataclass(frozen=True)
class TrustRegionConfig:
    """The damping (Levenberg-Marquardt's ``lambda``), per problem.

    * ``method``: ``"lm"`` (Levenberg-Marquardt) or ``"gn"`` (Gauss-Newton: no damping, every
      step taken).
    * ``lambda_initial``: the first damping.
    * ``factor_down`` / ``factor_up``: ``lambda`` is divided by the first after a step that
      lowers the cost, and multiplied by the second after one that does not (the step is then
      retried), and after a step that lowered it by less than :data:`TRUSTED` (a quarter) of the
      decrease the Gauss-Newton model promised when the step taken before it did too (it is
      taken; the model overstates the steps there, so the region narrows).  Dividing after
      every lower-cost step left a problem whose residuals stay large taking Gauss-Newton steps
      that overshot its valley, each achieving 13% of its promise: 101 iterations to converge
      (past the default limit of 100), where this rule takes 49.  Narrowing after one such step
      (not two) also converged it, but changed MIT's path from its first step, whose fit is 0.21: 15 ->
      23 iterations; this rule leaves every pose graph of ``data/`` on its path.
    * ``lambda_fallback``: until a problem has taken a step, a refused one raises its damping to
      at least this (``0``, the default: no bound).  A small ``lambda_initial`` then tries
      Gauss-Newton's step first, and where the start is poor goes back to a careful damping at
      once instead of tenfold step by step (the pose graphs' default, 1e-10 falling back to
      1e-6: MIT's first Gauss-Newton step raises its cost from 39.6 to 700, and four refusals
      became one).
    * ``lambda_min`` / ``lambda_max``: bounds; a problem whose damping would pass ``lambda_max``
      can take no step that lowers its cost and stops (``reason="damping_limit"``).
    """

    method: Literal["lm", "gn"] = "lm"
    lambda_initial: float = 1e-3
    factor_down: float = 10.0
    factor_up: float = 10.0
    lambda_min: float = 1e-12
    lambda_max: float = 1e10
    lambda_fallback: float = 0.0

    def __post_init__(self):
        check_choice("TrustRegionConfig", "method", self.method, ("lm", "gn"))
        for name in ("lambda_initial", "lambda_min", "lambda_max"):
            check_real("TrustRegionConfig", name, getattr(self, name), positive=True)
        check_real("TrustRegionConfig", "lambda_fallback", self.lambda_fallback, maximum=self.lambda_max)
        for name in ("factor_down", "factor_up"):
            check_real("TrustRegionConfig", name, getattr(self, name), positive=True)
            if getattr(self, name) <= 1:
                raise ValueError(f"TrustRegionConfig.{name}: expected a factor above 1, got {getattr(self, name)}")
        if not self.lambda_min <= self.lambda_initial <= self.lambda_max:
            raise ValueError(f"TrustRegionConfig: expected lambda_min <= lambda_initial <= lambda_max, got "
                             f"{self.lambda_min}, {self.lambda_initial}, {self.lambda_max}")

    @classmethod
    def gauss_newton_first(cls, robust: bool = False, method: Literal["lm", "gn"] = "lm") -> TrustRegionConfig:
        """Gauss-Newton's step first: ``lambda_initial`` :data:`LAMBDA_PLAIN` (1e-10), raised to
        :data:`LAMBDA_CAREFUL` (1e-6) at once where the first step is refused; for a ``robust``
        cost (a kernel) :data:`LAMBDA_CAREFUL` from the start.  The pose graphs' default.  From a
        good start the steps are Gauss-Newton's, converging quadratically where the default 1e-3,
        divided by 10 per step, converges at the rate of its damping (pypose's LM example under
        :func:`fit`: 2 iterations against 4); a poor first step costs one refusal.  A problem that
        needs a large damping later pays for the climb to it, tenfold per refused step (a
        similarity fitted from the identity: 21 iterations against 14), which is why it is not
        the engine's default (``docs/benchmarks.md#fitting-a-module-pyposes-lm``).  A robust cost
        is not convex, and the careful first steps reached lower minima
        (``docs/benchmarks.md#the-first-damping-of-a-pose-graph``)."""
        first = LAMBDA_CAREFUL if robust else LAMBDA_PLAIN
        return cls(method=method, lambda_initial=first, lambda_fallback=LAMBDA_CAREFUL)

    def lowered(self, lam: Tensor) -> Tensor:
        """The damping after a step that lowered the cost: divided by ``factor_down``, not below
        ``lambda_min``."""
        return (lam / self.factor_down).clamp_min(self.lambda_min)


@dataclass(frozen=True)
class TerminationConfig:
    """When a problem stops; the first test it passes is its ``reason``.

    * ``max_iterations``: steps tried (accepted or not); reaching it is not convergence (0
      returns the given values, with their cost).
    * ``absolute_tolerance``: the cost is at most this (``"absolute_tolerance"``).
    * ``relative_tolerance``: the Gauss-Newton model promises, or an accepted step achieved, a
      decrease of at most this fraction of the cost (``"relative_tolerance"``).  An achieved
      decrease counts only where it is at least a quarter of the model's promise: a step that
      lands across a valley a sliver lower (Gauss-Newton on ``atan(x)`` from ``x = 1.3917``
      lands on ``-1.3917``) is a poor model, not a minimum.  It is never taken
      below ``4 eps`` of the dtype: a float32 problem converges where float32 stops improving.
      A cost test stops where the cost stops resolving progress, about ``sqrt(eps)`` of the
      values; ``0`` turns it off, leaving the gradient and step tests (values to ``eps``).
    * ``step_tolerance``: an accepted step's norm is at most this (``"step_tolerance"``).
    * ``gradient_tolerance``: the largest entry of ``J^T r`` is at most this (``"gradient_tolerance"``).

    A factor's residual may also declare ``satisfied(r) -> (B,)``, its task's own tolerances
    (IK's position and orientation errors): a problem whose every such factor is satisfied,
    at the start or after a step, stops there (``"satisfied"``, converged).
    """

    max_iterations: int = 100
    absolute_tolerance: float = 0.0
    relative_tolerance: float = 1e-12
    step_tolerance: float = 1e-14
    gradient_tolerance: float = 1e-12

    def __post_init__(self):
        check_int("TerminationConfig", "max_iterations", self.max_iterations, minimum=0)
        for name in ("absolute_tolerance", "relative_tolerance", "step_tolerance", "gradient_tolerance"):
            check_real("TerminationConfig", name, getattr(self, name))


@dataclass(frozen=True)
class SolverConfig:
    """Options of :func:`solve`.

    * ``trust_region``: the damping (:class:`TrustRegionConfig`).
    * ``termination``: when each problem stops (:class:`TerminationConfig`).
    * ``backward``: how the answer is differentiated with respect to factor data that require
      grad: ``"implicit"`` (the implicit function theorem at the solution: one extra solve with
      the exact Hessian, memory linear in the problem), ``"unroll"`` (through the iterations) or
      ``"none"`` (the answer is detached).
    * ``linear_solver``: ``"dense"`` (batched Cholesky of each problem's ``(n, n)`` system),
      ``"sparse"`` (one problem, ``B = 1``: its system assembled sparse once per step, the
      pattern worked out once, and factored by :class:`SparseLDL` on the CPU or
      :class:`MultifrontalCholesky` elsewhere, the ordering kept across steps), one of those
      two by name (``"ldl"``, ``"multifrontal"``), ``"cg"`` (the sparse system solved by
      block-Jacobi preconditioned conjugate gradients, no factorization) or ``"auto"``: sparse
      for one problem of more than 256 unknowns, dense otherwise.
    * ``cg_tolerance``: ``"cg"`` stops at a residual of this fraction of the right-hand side's.
    * ``num_threads``: torch CPU threads during the solve (restored after); ``None`` picks one
      thread for systems of under ~500k block entries (see :mod:`robojac._threads`), torch's
      setting above.
    * ``callback``: called after every iteration with an :class:`IterationRecord` (a progress
      line, a plot); ``None`` keeps the solve quiet.
    * ``constraints``: the augmented Lagrangian's rounds, for :func:`solve`'s ``constraints``
      (:class:`ConstraintConfig`).
    """

    trust_region: TrustRegionConfig = field(default_factory=TrustRegionConfig)
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    backward: Literal["implicit", "unroll", "none"] = "implicit"
    linear_solver: Literal["auto", "dense", "sparse", "ldl", "multifrontal", "cg"] = "auto"
    cg_tolerance: float = 1e-12
    num_threads: int | None = None
    callback: Callable[[IterationRecord], None] | None = None
    constraints: ConstraintConfig = field(default_factory=ConstraintConfig)

    def __post_init__(self):
        if not isinstance(self.trust_region, TrustRegionConfig):
            raise ValueError(f"SolverConfig.trust_region: expected a TrustRegionConfig, got {self.trust_region!r}")
        if not isinstance(self.termination, TerminationConfig):
            raise ValueError(f"SolverConfig.termination: expected a TerminationConfig, got {self.termination!r}")
        check_choice("SolverConfig", "backward", self.backward, ("implicit", "unroll", "none"))
        check_choice("SolverConfig", "linear_solver", self.linear_solver, _SOLVERS)
        check_real("SolverConfig", "cg_tolerance", self.cg_tolerance, positive=True)
        check_int("SolverConfig", "num_threads", self.num_threads, minimum=1, optional=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"SolverConfig.callback: expected a callable or None, got {self.callback!r}")
        if not isinstance(self.constraints, ConstraintConfig):
            raise ValueError(f"SolverConfig.constraints: expected a ConstraintConfig, got {self.constraints!r}")


_SOLVERS = ("auto", "dense", "sparse", "ldl", "multifrontal", "cg")


@dataclass(frozen=True)
class IterationRecord:
    """One iteration, as :class:`SolverConfig`'s ``callback`` sees it: per problem ``(B,)`` the
    ``cost`` after it, the ``damping`` its step was solved with, the ``step_norm`` and whether
    the step was ``accepted``; ``seconds`` since the solve began."""

    iteration: int
    cost: Tensor
    damping: Tensor
    step_norm: Tensor
    accepted: Tensor
    seconds: float


@dataclass(frozen=True)
class History:
    """Per iteration ``(T, B)``: the cost after it, the damping used, whether the step was taken."""

    cost: Tensor
    damping: Tensor
    accepted: Tensor


@dataclass(frozen=True)
class SolveResult:
    """The engine's answer, one entry per problem.

    ``values``: each variable's values ``(B, N, raw)``, in the order the problem lists them;
    ``converged`` ``(B,)``: a termination test passed (never for ``"max_iterations"``,
    ``"damping_limit"``, ``"singular_system"``, ``"non_finite"`` or ``"no_weight"``: the cost is
    flat where it stopped, every factor giving the free entries zero robust weight, as Tukey's
    kernel does beyond its scale); ``iterations``, ``cost``
    (``0.5 sum rho(|r|^2)``), ``reason`` (the test that stopped it), ``history``,
    ``initial_cost`` (the cost at the given values).

    With ``constraints``: ``constraint_violation (B,)``, the largest violation at the answer
    (an equality's ``|c|``, an inequality's positive part, or its ``|c|`` where it binds: its
    multiplier is positive, so it must be zero); ``converged`` also asks it to be
    within ``ConstraintConfig.tolerance`` (else the reason is ``"constraint_violation"``) and
    the Lagrangian's gradient within ``ConstraintConfig.stationarity`` (else
    ``"not_stationary"``), both at the answer returned;
    ``cost`` and ``initial_cost`` are the factors' own; ``iterations`` and ``history`` run over
    every round (the history's cost is each round's augmented one).  ``None`` without
    constraints.
    """

    values: tuple[Tensor, ...]
    converged: Tensor
    iterations: Tensor
    cost: Tensor
    reason: tuple[str, ...]
    history: History
    initial_cost: Tensor
    constraint_violation: Tensor | None = None


_CONVERGED = ("satisfied", "absolute_tolerance", "relative_tolerance", "step_tolerance", "gradient_tolerance")


def _no_weight(problem: Problem, values: tuple[Tensor, ...], reason: list[str]) -> None:
    """A problem that stopped where no factor weighs any of its free entries (Tukey's kernel,
    every residual beyond its scale) stopped on a flat cost, wherever it started: its reason
    becomes ``"no_weight"``, not a convergence.  Only problems with a kernel whose weight can
    vanish (``RobustKernel.weight_can_vanish``) are checked (one residual evaluation)."""
    if not any(f.kernel.weight_can_vanish for f in problem.factors):
        return
    with torch.no_grad():
        flat = (problem.unweighed(values) | problem.held).all(-1) & ~problem.held.all(-1)
    for b in torch.nonzero(flat).flatten().tolist():
        if reason[b] in _CONVERGED:
            reason[b] = "no_weight"


def solve(variables: Sequence[Variable], factors: Sequence[Factor], config: SolverConfig | None = None,
          constraints: Sequence[Constraint] = ()) -> SolveResult:
    """Minimize ``0.5 sum_factors rho(|r|^2)`` over ``variables`` for every problem of the batch,
    subject to ``constraints`` (:class:`Constraint`: equalities and inequalities, by an augmented
    Lagrangian; see :mod:`robojac.optim._constraints`).

    Each problem steps, damps and stops on its own.  A problem whose residuals turn NaN, or
    whose system cannot be solved at any damping, ends with ``converged=False`` and its reason,
    its values those of its last finite state.  Gradients reach the answer from factor data that
    require grad (see :class:`SolverConfig`), and, with ``backward="implicit"``, from the values
    of fixed entries whose variable's ``value`` requires grad (a trajectory's start and end: the
    answer moves with them by the same implicit function theorem, and a fixed entry's answer is
    its value); a problem that did not converge passes none through its minimum (its
    gradient is zero: there is no solution to differentiate).  Those gradients are taken at the
    minimum itself: with ``backward="implicit"`` and data that require grad, the values returned
    are polished by a Gauss-Newton step (chord steps for one large problem) past what the
    stopping tests resolve; ``cost`` is the one the iterations ended with.
    """
    cfg = config or SolverConfig()
    constraints = tuple(constraints)
    if constraints:
        return _solve_constrained(tuple(variables), tuple(factors), constraints, cfg)
    problem = Problem(variables, factors)
    thetas = [d for f in problem.factors for d in f.data if d.requires_grad]
    held = held_sources(problem) if cfg.backward == "implicit" else {}
    threads = threads_for(problem.block_entries, problem.held.device, cfg.num_threads)
    with torch_threads(threads):
        if cfg.backward == "unroll" and thetas:
            return _run(problem, cfg, differentiable=True)[0]
        with torch.no_grad():
            result, sparse = _run(problem, cfg, differentiable=False)
    if cfg.backward == "implicit" and (thetas or held) and torch.is_grad_enabled():
        values = _with_gradients(problem, result.values, result.converged, sparse, threads)
        result = SolveResult(tuple(values), result.converged, result.iterations, result.cost, result.reason,
                             result.history, result.initial_cost)
    return result


def _with_gradients(problem: Problem, values: tuple[Tensor, ...], converged: Tensor, sparse, threads) -> tuple:
    """``values`` (a minimum of ``problem``), polished and with the implicit gradients attached."""
    held = held_sources(problem)
    thetas = [d for f in problem.factors for d in f.data if d.requires_grad]
    with torch.no_grad(), torch_threads(threads):
        polished, active = _polish(problem, values, converged, sparse)
    context = Context(problem, polished, converged, 0.0)
    context.active, context.sources = active, tuple(held)
    context.threads = threads
    if sparse is not None and sparse.factor is not None:  # the last factorization preconditions the backward
        context.preconditioner = sparse.factor.solve
    return tuple(Implicit.apply(context, *thetas, *held.values()))


def _rebound(variables: tuple[Variable, ...], factors, values: tuple[Tensor, ...]):
    """Copies of ``variables`` at ``values`` and of ``factors`` (or constraints' factors) reading
    those copies: a round's problem, starting where the last one ended."""
    made = {}
    for v, x in zip(variables, values):
        w = Variable.__new__(Variable)
        w.__dict__.update(v.__dict__)
        w.value = x
        made[id(v)] = w
    out = []
    for f in factors:
        g = Factor.__new__(Factor)
        g.__dict__.update(f.__dict__)
        g.variables = tuple(made[id(v)] for v in f.variables)
        g._per_slot = {}
        out.append(g)
    return [made[id(v)] for v in variables], out


def _with_data(f: Factor, residual, extra: tuple[Tensor, ...], name: str) -> Factor:
    """``f`` with another residual and more data (each with leading ``(B, F)``)."""
    g = Factor.__new__(Factor)
    g.__dict__.update(f.__dict__)
    g.residual, g.data, g.name, g._per_slot = residual, f.data + extra, name, {}
    g.pulled_back = False
    return g


def _evaluate(f: Factor, variables: tuple[Variable, ...], values: tuple[Tensor, ...]) -> Tensor:
    """``f``'s residuals ``(B, F, m)`` at ``values`` (of ``variables``, in order)."""
    at = {id(v): x for v, x in zip(variables, values)}
    X = [at[id(v)][:, f.index[:, k]] for k, v in enumerate(f.variables)]
    return f.residual(*X, *f.data)


def _scale(lin: Linearization, which: list[int]) -> Tensor:
    """``(B,)``: the largest squared row norm of the Jacobians of the factors ``which``."""
    out = None
    for i in which:
        s = torch.stack([(J.detach() ** 2).sum(-1).flatten(1).amax(1) for J in lin.jacobians(i)]).sum(0)
        out = s if out is None else torch.maximum(out, s)
    return out


def _own_cost(variables: tuple[Variable, ...], factors: tuple[Factor, ...], values: tuple[Tensor, ...]) -> Tensor:
    """``(B,)``: the factors' own cost ``0.5 sum rho(|r|^2)`` at ``values`` (no constraint terms)."""
    vs, fs = _rebound(variables, factors, values)
    with torch.no_grad():
        return Linearization(Problem(vs, fs), values).cost() if fs else values[0].new_zeros(values[0].shape[0])


def _solve_constrained(variables: tuple[Variable, ...], factors: tuple[Factor, ...], constraints: tuple,
                       cfg: SolverConfig) -> SolveResult:
    """The augmented Lagrangian's rounds (see :mod:`robojac.optim._constraints`)."""
    for c in constraints:
        if not isinstance(c, Constraint):
            raise TypeError(f"constraints: expected robojac.optim.Constraint objects, got {type(c).__name__}")
        for v in c.factor.variables:
            if not any(v is w for w in variables):
                raise ValueError(f"constraints: {c.name} reads variable {v.name!r}, which is not among the variables")
    cc = cfg.constraints
    values = tuple(v.value.detach() for v in variables)
    with torch.no_grad():
        cs = [_evaluate(c.factor, variables, values) for c in constraints]
    B, dt, dev = values[0].shape[0], values[0].dtype, values[0].device
    lams = [torch.zeros_like(c) for c in cs]
    mu = torch.full((B,), cc.initial_penalty, dtype=dt, device=dev)
    before = torch.stack([c.violation(x) for c, x in zip(constraints, cs)]).amax(0)
    inner = dataclasses.replace(cfg, backward="none")
    early = dataclasses.replace(inner, termination=dataclasses.replace(
        cfg.termination, relative_tolerance=max(cfg.termination.relative_tolerance, cc.early_relative_tolerance)))
    iterations = torch.zeros(B, dtype=torch.long, device=dev)
    costs, damping, accepted = [], [], []
    initial = _own_cost(variables, factors, values)
    for _ in range(cc.max_rounds):
        vs, fs = _rebound(variables, factors + tuple(c.factor for c in constraints), values)
        base, own = fs[: len(factors)], fs[len(factors):]
        terms = [_with_data(f, Augmented(f.residual, c.kind), (lam, mu[:, None, None].expand(B, f.count, 1)),
                            f"{c.name} (augmented)") for f, c, lam in zip(own, constraints, lams)]
        # far from feasible, a round's answer only starts the next: solved loosely (ConstraintConfig)
        loose = float(before.max()) > 1e3 * cc.tolerance
        result = solve(vs, list(base) + terms, early if loose else inner)
        values = tuple(v.detach() for v in result.values)
        iterations = iterations + result.iterations
        costs.append(result.history.cost)
        damping.append(result.history.damping)
        accepted.append(result.history.accepted)
        with torch.no_grad():
            cs = [_evaluate(c.factor, variables, values) for c in constraints]
            for i, (c, x) in enumerate(zip(constraints, cs)):
                lams[i] = lams[i] + mu[:, None, None] * x
                if c.kind == "leq":
                    lams[i] = lams[i].clamp(min=0)
            now = torch.stack([c.violation(x, lam) for c, x, lam in zip(constraints, cs, lams)]).amax(0)
            feasible = now <= cc.tolerance
            grow = ~feasible & (now > 0.25 * before)
            mu = torch.where(grow, (mu * cc.penalty_growth).clamp(max=cc.max_penalty), mu)
            before = now
        if not loose and bool((feasible & result.converged).all()):  # (the answer from a round solved tightly:
            break  # with the Newton finish after, every test also passes without this; it is the safer end)
    converged = result.converged & feasible
    reason = tuple(r if f else "constraint_violation" for r, f in zip(result.reason, feasible.tolist()))
    history = History(torch.cat(costs), torch.cat(damping), torch.cat(accepted))
    # the active constraints held stiffly: a Gauss-Newton step to the constrained minimum itself
    # (the rounds stop where the augmented cost stops resolving progress, ~sqrt(eps) of the
    # values along the constraints' surfaces), and the problem the backward differentiates
    live = tuple(torch.where(v.fixed[..., None], v.value, x) if v.value.requires_grad else x
                 for v, x in zip(variables, values))  # the fixed entries with their graphs
    vs, fs = _rebound(variables, factors + tuple(c.factor for c in constraints), live)
    base, own = list(fs[: len(factors)]), fs[len(factors):]
    with torch.no_grad():
        lin = Linearization(Problem(vs, list(fs)), values, closed_forms=True)
        s_f = _scale(lin, list(range(len(base)))) if base else torch.ones(B, dtype=dt, device=dev)
        s_c = _scale(lin, list(range(len(base), len(fs))))
        # the active constraints this much stiffer than the factors: the KKT system's derivative
        # to ~1 / STIFF, rounding at ~STIFF eps
        w = STIFF[dt] * s_f.clamp(min=1.0) / s_c.clamp(min=torch.finfo(dt).tiny)
    stiff = []
    for f, c, lam in zip(own, constraints, lams):
        active = torch.ones_like(lam) if c.kind == "eq" else (lam > 0).to(dt)
        stiff.append(_with_data(f, Stiff(f.residual), (w[:, None, None].expand(B, f.count, 1), active, lam),
                                f"{c.name} (active)"))
    problem = Problem(vs, base + stiff)
    sparse = _SparseSteps(problem, cfg) if B == 1 and problem.size > DENSE_MAX and not problem.bounded else None
    threads = threads_for(problem.block_entries, problem.held.device, cfg.num_threads)
    if sparse is None:  # the Lagrangian's curvature: Newton steps to the constrained minimum
        with torch_threads(threads):
            values = tuple(v.detach() for v in newton_steps(problem, values, converged))
    thetas = [d for f in problem.factors for d in f.data if d.requires_grad]
    if cfg.backward == "implicit" and torch.is_grad_enabled() and (thetas or held_sources(problem)):
        values = _with_gradients(problem, values, converged, sparse, threads)
    else:
        with torch.no_grad(), torch_threads(threads):
            values, _ = _polish(problem, values, converged, sparse)
    with torch.no_grad():
        cs = [_evaluate(c.factor, variables, values) for c in constraints]
        before = torch.stack([c.violation(x, lam) for c, x, lam in zip(constraints, cs, lams)]).amax(0)
    off = converged & (before > cc.tolerance)  # feasible after the rounds, not after the finish: said so
    if bool(off.any()):
        converged = converged & ~off
        reason = tuple("constraint_violation" if o else r for r, o in zip(reason, off.tolist()))
    if sparse is None:
        moving = converged & (_stationarity(problem, Problem(vs, base), values) > cc.stationarity)
        if bool(moving.any()):
            converged = converged & ~moving
            reason = tuple("not_stationary" if m else r for r, m in zip(reason, moving.tolist()))
    cost = _own_cost(variables, factors, values)
    return SolveResult(tuple(values), converged, iterations, cost, reason, history, initial, before)


def _stationarity(problem: Problem, own: Problem, values: tuple[Tensor, ...]) -> Tensor:
    """``(B,)``: the largest entry of the Lagrangian's gradient at ``values`` (``problem``'s: the
    factors and the active constraints' stiff terms, ``J_c^T (lambda + w c)``), coordinates held
    or on a bound the gradient pushes against left out, over ``max(1, the factors' own)``."""
    with torch.no_grad():
        x = tuple(v.detach() for v in values)
        g = Linearization(problem, x, closed_forms=True).normal_equations()[1]
        free = ~(problem.held | problem.at_bounds(x, g)) if problem.bounded else ~problem.held
        scale = torch.ones_like(g[:, 0])
        if own.factors:
            gf = Linearization(own, x, closed_forms=True).normal_equations()[1]
            scale = (gf * free).abs().amax(-1).clamp(min=1.0)
        return (g * free).abs().amax(-1) / scale


#: how much stiffer than the factors the active constraints are held in the backward (their
#: derivative is the KKT system's to about 1 / STIFF)
STIFF = {torch.float64: 1e8, torch.float32: 1e3}


def attach_gradients(variables: Sequence[Variable], factors: Sequence[Factor], values: Sequence[Tensor],
                     converged: Tensor, *, damping: float = 0.0, preconditioner=None,
                     hessian: Literal["exact", "gauss_newton"] = "exact") -> tuple[Tensor, ...]:
    """``values``, a minimum of the problem found by any solver, with gradients attached: the
    implicit function theorem at that minimum, with respect to the factor data that require grad
    (as :func:`solve` gives with ``backward="implicit"``).  This is how a solver with its own
    loop (IK's, ICP's, the pose graphs') makes its answer differentiable.

    ``damping`` adds ``damping * max(diag H)`` to the Hessian's diagonal: for a problem whose
    minimum is not isolated (a redundant arm's self-motion) the derivative is then the damped
    least-norm one.  Problems that did not converge get zero gradients; so does an entry that no
    factor weighs (zero robust weight everywhere: its rows of the Hessian are zero), while the
    others keep theirs.  Without data that
    require grad (or with grad disabled) the values come back as they are, at no cost.

    ``preconditioner``: for one large problem, a function applying the inverse of the
    Gauss-Newton Hessian at the answer (the solver's last factorization), reused instead of
    factoring again: the backward is then conjugate gradients on the exact Hessian's products.

    ``hessian="gauss_newton"`` takes ``J^T W J`` for the Hessian, dropping the residuals'
    second-order terms: exact where the residuals vanish at the answer (a problem that converges
    only when its residual is at its tolerance, as IK's reached targets do, whose answer is itself
    that far from the exact zero), and one Jacobian instead of ``n`` Hessian-vector products
    (dense problems only).  The data's side is linearized as well: the derivative is that of the
    weighted least-squares fit of the residuals linearized at the answer, the robust weights
    held, ``-H^-1 J^T W dr/dtheta``, one backward through the residuals with the values held
    (no second derivative of the residual)."""
    problem = Problem(variables, factors)
    thetas = [d for f in problem.factors for d in f.data if d.requires_grad]
    values = tuple(values)
    if not thetas or not torch.is_grad_enabled():
        return values
    check_real("attach_gradients", "damping", damping)
    check_choice("attach_gradients", "hessian", hessian, ("exact", "gauss_newton"))
    context = Context(problem, values, converged, float(damping))
    context.threads = threads_for(problem.block_entries, problem.held.device)
    context.preconditioner = preconditioner
    context.gauss_newton = hessian == "gauss_newton"
    return tuple(Implicit.apply(context, *thetas))


def _run(problem: Problem, cfg: SolverConfig, differentiable: bool, lam0: Tensor | None = None,
         lin0: Linearization | None = None,
         overstated0: Tensor | None = None, taken0: Tensor | None = None) -> tuple[SolveResult, _SparseSteps | None]:
    tr, term = cfg.trust_region, cfg.termination
    start = time.perf_counter()
    values = tuple(v.value if differentiable else v.value.detach() for v in problem.variables)
    B = problem.batch
    lin = Linearization(problem, values, closed_forms=True) if lin0 is None else lin0
    cost = lin.cost()
    ref = cost
    dev, dt = ref.device, ref.dtype
    lam = torch.full((B,), tr.lambda_initial if tr.method == "lm" else 0.0, dtype=dt, device=dev) if lam0 is None else lam0
    # each problem's last step taken achieved less than TRUSTED of its promise (TrustRegionConfig)
    overstated = torch.zeros(B, dtype=torch.bool, device=dev) if overstated0 is None else overstated0
    taken = torch.zeros(B, dtype=torch.bool, device=dev) if taken0 is None else taken0  # a step, ever
    running = torch.isfinite(cost)
    reason = ["running" if bool(ok) else "non_finite" for ok in running.tolist()]
    sat = problem.satisfied(lin)
    if sat is not None:  # already within the factors' own tolerances: no step to take
        _stop(reason, running, sat, "satisfied")
    iters = torch.zeros(B, dtype=torch.long, device=dev)
    hist_cost, hist_lam, hist_ok = [], [], []
    use_sparse = cfg.linear_solver not in ("auto", "dense") or (
        cfg.linear_solver == "auto" and B == 1 and problem.size > DENSE_MAX)
    if use_sparse and B != 1:
        raise ValueError(f"SolverConfig.linear_solver: {cfg.linear_solver!r} solves one problem (B = 1), got B = {B}")
    if use_sparse and (problem.bounded or problem.pulled):
        raise ValueError("variables: bounds and rest values need the dense linear solver (many small problems), "
                         f"this problem is solved sparse (linear_solver={cfg.linear_solver!r}, B = {B}, size {problem.size})")
    sparse = _SparseSteps(problem, cfg) if use_sparse else None
    moved, chord = True, False
    # Levenberg-Marquardt confirms convergence through its last factor as Gauss-Newton does, where
    # that factor is Gauss-Newton's to CHORD_DAMPING of its diagonal and no kernel reweights the rows
    chord_lm = tr.method == "lm" and all(f.kernel.name == "none" for f in problem.factors)
    rtol = max(term.relative_tolerance, 4 * torch.finfo(dt).eps) if term.relative_tolerance > 0 else 0.0
    # once the running problems fit a smaller power of two, they run on their own (a batch of IK
    # attempts, most of which stop early; see Problem.subset)
    gather = sparse is None and not differentiable and cfg.callback is None and B >= 2 and problem.can_subset()

    def record(it: int, cost: Tensor, lam: Tensor, step_norm: Tensor, take: Tensor) -> None:
        hist_cost.append(cost.detach())
        hist_lam.append(lam.detach())  # lam and take are replaced each iteration, never changed in place
        hist_ok.append(take)
        if cfg.callback is not None:
            cfg.callback(IterationRecord(it, cost.detach(), lam.detach().clone(), step_norm.detach(), take.clone(),
                                         time.perf_counter() - start))

    for it in range(1, term.max_iterations + 1):
        if not bool(running.any()):
            break
        small = running & (cost <= term.absolute_tolerance)
        _stop(reason, running, small, "absolute_tolerance")
        if not bool(running.any()):
            break
        n = int(running.sum()) if gather else B
        size = min(B, max(16, 1 << (n - 1).bit_length()))  # a power of two: the kinematics' workspaces are reused
        if size < B:
            rows = torch.nonzero(running).flatten()
            padded = torch.cat((rows, rows[:1].expand(size - n)))  # copies of one problem, which they follow
            left = dataclasses.replace(term, max_iterations=term.max_iterations - it + 1)
            sub = problem.subset(padded, values)
            out, _ = _run(sub, dataclasses.replace(cfg, termination=left), False, lam[padded], lin.subset(sub, padded),
                          overstated[padded], taken[padded])
            for t in range(out.history.cost.shape[0]):  # their steps, the others' entries as they stopped
                hist_cost.append(cost.index_copy(0, rows, out.history.cost[t, :n]))
                hist_lam.append(lam.index_copy(0, rows, out.history.damping[t, :n]))
                hist_ok.append(torch.zeros_like(running).index_copy(0, rows, out.history.accepted[t, :n]))
            values = tuple(v.index_copy(0, rows, o[:n]) for v, o in zip(values, out.values))
            cost = cost.index_copy(0, rows, out.cost[:n])
            iters = iters.index_copy(0, rows, iters[rows] + out.iterations[:n])
            for b, why in zip(rows.tolist(), out.reason[:n]):
                reason[b] = why
            running = torch.zeros_like(running)
            break
        if chord:  # one large problem: the last factorization may confirm convergence
            chord = False
            out = sparse.chord(lin, values, cost, rtol)
            if out is not None:
                trial, trial_lin, trial_cost, step_norm = out
                decrease = cost - trial_cost
                take = decrease > 0
                small = decrease.abs() <= rtol * cost.abs()
                if bool((take | small).all()):
                    iters = iters + 1
                    new_cost = torch.where(take, trial_cost, cost)
                    record(it, new_cost, lam, step_norm, take)
                    if tr.method == "lm":  # a step taken, as any other
                        lam = torch.where(take, tr.lowered(lam), lam)
                    if bool(take.all()):
                        values, lin, cost, moved = trial, trial_lin, trial_cost, True
                    _stop(reason, running, small, "relative_tolerance")
                    continue  # not converged: the model understated this step, the next one refactors
            # the old factorization no longer fits: a full step from the same point
        if moved:  # after a step rejected everywhere the system is the one already assembled
            if sparse is not None:
                H, g = sparse.system.assemble(lin)
                g = g[None]
            else:
                H, g = lin.normal_equations()
        if term.gradient_tolerance > 0:
            _stop(reason, running, running & (g.abs().amax(-1) <= term.gradient_tolerance), "gradient_tolerance")
            if not bool(running.any()):
                break
        factored_at = lam  # the damping of the factor this step is solved with
        if sparse is not None:
            step, solvable, added = sparse.step(H, g[0], lam)
            step = torch.where((running & solvable)[:, None], step[None], torch.zeros_like(g))
            # (H + diag(added)) step = -g, so step^T H step = -g^T step - added^T step^2: no product with H
            gs = (g * step).sum(-1)
            promised = (-0.5 * gs + 0.5 * (added * step[0].square()).sum()[None]).to(dt)
            step = step.to(dt)  # solved in float64 (see SparseSystem), taken in the variables' dtype
        else:
            D = damped(H, lam, floor=False)
            L = DenseFactor(D)
            if not bool(L.ok.all()):  # the floor, only where the system needs it to factor
                bad = torch.nonzero(~L.ok).flatten()
                D = D.index_copy(0, bad, damped(H[bad], lam[bad]))
                L.patch(bad, D[bad])
            solvable = L.ok
            step = L.solve(-g)
            if problem.pulled or problem.bounded:
                step = _pulled_and_bounded(problem, values, H, D, L, g, step, running & solvable)
            step = torch.where((running & solvable)[:, None], step, torch.zeros_like(step))
            # what the undamped Gauss-Newton model promises for this step
            promised = -((g * step).sum(-1) + 0.5 * (step[:, None, :] @ H @ step[:, :, None])[:, 0, 0]) \
                if rtol > 0 or tr.method == "lm" else None
        trial = problem.retract(values, step)
        trial_lin = Linearization(problem, trial, closed_forms=True)
        trial_cost = trial_lin.cost()
        iters = iters + running.long()
        finite = torch.isfinite(trial_cost) & torch.isfinite(step).all(-1)
        if tr.method == "gn":
            take = running & solvable & finite
        else:
            take = running & solvable & finite & (trial_cost < cost)
        decrease = cost - trial_cost
        step_norm = torch.linalg.vector_norm(step, dim=-1) if term.step_tolerance > 0 or cfg.callback is not None else None
        new_cost = torch.where(take, trial_cost, cost)
        record(it, new_cost, lam, step_norm, take)
        # move the problems that took their step
        moved, every = bool(take.any()), bool(take.all())
        if every:
            values, lin = trial, trial_lin
        elif moved:
            lin = _merge(problem, lin, trial_lin, take)
            values = lin.values
        if tr.method == "gn":
            _stop(reason, running, running & ~solvable, "singular_system")
            _stop(reason, running, running & ~finite, "non_finite")
        else:
            # a second step in a row that lowered the cost by less than a quarter of the model's
            # promise is taken, but narrows the region as a refused one does (TrustRegionConfig)
            poor = take & (decrease < TRUSTED * promised)
            up = lam * tr.factor_up
            if tr.lambda_fallback > 0:  # no step taken yet: back to a careful damping at once
                up = torch.where(taken, up, up.clamp_min(tr.lambda_fallback))
                taken = taken | take
            lam = torch.where(take & ~(poor & overstated), tr.lowered(lam),
                              torch.where(running, up, lam))
            overstated = torch.where(take, poor, overstated)
        if problem.satisfiable and moved:
            _stop(reason, running, running & take & problem.satisfied(lin), "satisfied")
        if rtol > 0:
            scale = rtol * cost.abs().clamp_min(torch.finfo(dt).tiny)
            # an achieved decrease counts where it is a quarter of the promise (TerminationConfig)
            rel = (take & (decrease.abs() <= scale) & (decrease >= TRUSTED * promised)) \
                | (solvable & (promised <= scale))
            _stop(reason, running, running & rel, "relative_tolerance")
        if step_norm is not None:
            _stop(reason, running, running & take & (step_norm <= term.step_tolerance), "step_tolerance")
        if tr.method == "lm":  # after the convergence tests: a step too small to matter is not a stall
            _stop(reason, running, running & ~solvable & (lam > tr.lambda_max), "singular_system")
            _stop(reason, running, running & ~take & (lam > tr.lambda_max), "damping_limit")
        cost = new_cost
        chord = sparse is not None and sparse.factor is not None and bool(take.all()) and (
            tr.method == "gn" or (chord_lm and bool((factored_at <= CHORD_DAMPING).all())))
    for b in range(B):
        if reason[b] == "running":
            reason[b] = "max_iterations"
    _no_weight(problem, values, reason)
    converged = torch.tensor([r in _CONVERGED for r in reason], dtype=torch.bool, device=dev)
    T = len(hist_cost)
    history = History(torch.stack(hist_cost) if T else cost.new_zeros(0, B),
                      torch.stack(hist_lam) if T else cost.new_zeros(0, B),
                      torch.stack(hist_ok) if T else torch.zeros(0, B, dtype=torch.bool, device=dev))
    return SolveResult(values, converged, iters, cost, tuple(reason), history, ref.detach()), sparse


def _polish(problem: Problem, values: tuple[Tensor, ...], converged: Tensor, sparse: _SparseSteps | None,
            steps: int = 1) -> tuple[tuple[Tensor, ...], Tensor | None]:
    """A Gauss-Newton step from a converged answer, before its gradients are taken: the cost
    tests stop where the cost stops resolving progress (about ``sqrt(eps)`` of the values, or a
    pose graph's 1e-6 relative decrease), the implicit derivative wants the minimum itself, and
    a step from a converged answer squares the remaining error.  One large problem takes up to
    three steps through its last factorization instead (chord steps: each costs a gradient and a
    solve, not a system and a factorization, and near the minimum each still divides the error
    by far more than the system's change; sphere2500's forward with grad 0.42 -> 0.31 s).  A problem whose
    gradient is already at rounding level (``1e-13`` of its largest residual) takes none.

    Bounded coordinates held on a bound the cost pushes against (:meth:`Problem.at_bounds`) stay
    there: the step is the Gauss-Newton one of the others (without this, a trajectory with a joint
    on its limit was stepped 0.27 rad away from its minimum, and its goal missed by 11 mm).  The
    mask of those coordinates is returned with the values (``None`` for an unbounded problem), for
    the backward to hold them too."""
    B = problem.batch
    chord = sparse is not None and sparse.factor is not None
    active, kept, before, previous = None, converged, None, values
    for _ in range(3 if chord else steps):
        lin = Linearization(problem, values, closed_forms=True)
        if before is not None:  # the step just taken: undone where it raised the cost
            values, kept, lin = _undo_worse(problem, values, previous, before, lin.cost(), kept, lin)
        if chord:  # one large problem: steps through the last factorization (no new system)
            H, g = None, sparse.system.gradient(lin)[None]
        elif sparse is not None:
            H, g = sparse.system.assemble(lin)
            g = g[None]
        else:
            H, g = lin.normal_equations()
            if problem.bounded:  # (bounds need the dense solver: only here)
                active = problem.at_bounds(values, g) & converged[:, None]
                H, g = hold_fixed(H, active), g.masked_fill(active, 0.0)
        size = torch.stack([r.abs().flatten(1).amax(1) for r in lin.residuals]).amax(0).clamp_min(1.0)
        todo = kept & (g.abs().amax(-1) > 1e-13 * size)
        if not bool(todo.any()):
            before = None
            break
        zero = g.new_zeros(B)
        if chord:
            step = sparse.factor.solve(-g[0])[None]
            ok = torch.ones(1, dtype=torch.bool, device=g.device)
        elif sparse is not None:
            step, ok, _ = sparse.step(H, g[0], zero)
            step = step[None]
        else:
            L = DenseFactor(damped(H, zero, floor=False))
            ok = L.ok
            step = L.solve(-g)
        ok = ok & todo & torch.isfinite(step).all(-1)
        previous, before = values, lin.cost()
        values = problem.retract(values, torch.where(ok[:, None], step, torch.zeros_like(step)).to(values[0].dtype))
    if before is not None:
        values = _undo_worse(problem, values, previous, before, Linearization(problem, values).cost(), kept)[0]
    return values, active


def _undo_worse(problem: Problem, values: tuple, previous: tuple, before: Tensor, after: Tensor, kept: Tensor,
                lin: Linearization | None = None) -> tuple:
    """``(values, kept, lin)`` with a polishing step undone in each problem whose cost it raised
    beyond rounding (``1e-12`` of it), and that problem polished no further (``kept`` false).  A
    step from a converged answer lowers the cost but where the Gauss-Newton model is poor: a
    constrained answer whose Newton finish was refused (the stiff term's curvature missing from
    the model) went 4.4 cm from a balanced humanoid's minimum, off its constraint by 4e-5 m, and
    was still called converged.  ``lin`` is taken again at the restored values."""
    worse = after > before + 1e-12 * before.abs() + torch.finfo(before.dtype).tiny
    if not bool(worse.any()):
        return values, kept, lin
    shape = (-1,) + (1,) * (values[0].dim() - 1)
    values = tuple(torch.where(worse.reshape(shape), p, v) for p, v in zip(previous, values))
    return values, kept & ~worse, (Linearization(problem, values, closed_forms=True) if lin is not None else None)


class _SparseSteps:
    """The damped step of one large problem: its sparse system (:class:`SparseSystem`) plus
    the one damping rule of :func:`damped`, factored with the ordering kept across steps (or
    solved by conjugate gradients)."""

    def __init__(self, problem: Problem, cfg: SolverConfig):
        self.system = SparseSystem(problem)
        self.problem = problem
        dims = {v.group.tangent_dim for v in problem.variables}
        self.block = dims.pop() if len(dims) == 1 else 1
        self.factor = None
        self.solver = cfg.linear_solver if cfg.linear_solver in ("ldl", "multifrontal", "cg") else (
            "ldl" if problem.held.device.type == "cpu" else "multifrontal")
        self.cg_tolerance = cfg.cg_tolerance

    def chord(self, lin: Linearization, values: tuple[Tensor, ...], cost: Tensor, rtol: float):
        """A Gauss-Newton step through the previous iteration's factorization (no new system,
        no refactorization), taken only to confirm convergence: ``(values, linearization, cost,
        step norm)`` there, or ``None`` when the old model promises a decrease above ``rtol`` of
        the cost (``-g^T step / 2``: not converged yet, a full step follows) or the step is not
        finite.  Near the optimum ``J^T W J`` hardly changes from one step to the next, so the
        step that confirms convergence (the last of a Gauss-Newton run) costs one solve instead
        of a system and a factorization.  The caller stops only when the actual decrease is
        below the tolerance as well: an old factor that overshoots (a step twice Gauss-Newton's
        changes a quadratic cost by nothing) is not taken for convergence."""
        g = self.system.gradient(lin)
        step = self.factor.solve(-g)
        promised = -0.5 * float((g * step).sum())
        if not math.isfinite(promised) or promised > rtol * float(cost.abs()):
            return None
        trial = self.problem.retract(values, step[None].to(values[0].dtype))
        trial_lin = Linearization(self.problem, trial, closed_forms=True)
        trial_cost = trial_lin.cost()
        if not bool(torch.isfinite(trial_cost).all()):
            return None
        return trial, trial_lin, trial_cost, step.norm()[None].to(trial_cost.dtype)

    def step(self, H: Tensor, g: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(step (n,), solvable (1,), added (n,))`` with ``(H + diag(added)) step = -g``,
        ``added = lam diag H`` plus the floor of :func:`damped` only if that does not factor to
        a finite step."""
        for floor in (False, True):
            x, added = self._solve(H, g, lam, floor)
            if x is not None:
                return x, torch.tensor([True], device=g.device), added
        return torch.zeros_like(g), torch.tensor([False], device=g.device), added

    def _solve(self, H: Tensor, g: Tensor, lam: Tensor, floor: bool) -> tuple[Tensor | None, Tensor]:
        sys_ = self.system
        vals = H.values()
        d = vals[sys_.diag_slots]
        if not floor and bool((d <= 0).any()):  # a row no factor weighs: only the floor makes it factor (at once,
            return None, lam[0] * d  # and keeping the factor's ordering: a refused one was thrown away)
        ridge = RIDGE * torch.finfo(vals.dtype).eps * d.abs().max().clamp_min(torch.finfo(vals.dtype).tiny) \
            if floor else 0.0
        added = lam[0] * d + ridge
        if floor or bool(lam[0] != 0):
            damped_vals = vals.clone()
            damped_vals[sys_.diag_slots] = d + added
            A = csr_tensor(sys_.crow, sys_.col, damped_vals, H.shape)
        else:  # Gauss-Newton: the system as assembled
            A = H
        try:
            if self.solver == "cg":
                x, _ = conjugate_gradient(A, -g, block=self.block, tol=self.cg_tolerance)
            else:
                if self.factor is None:
                    self.factor = SparseLDL(A, self.block) if self.solver == "ldl" else MultifrontalCholesky(A, self.block)
                else:
                    self.factor.refactor(A)
                x = self.factor.solve(-g)
        except (ValueError, RuntimeError, ArithmeticError, ZeroDivisionError):
            self.factor = None
            return None, added
        return (x if bool(torch.isfinite(x).all()) else None), added


class DenseFactor:
    """Cholesky factors of many small SPD systems ``(B, n, n)``, and their solves: structure-of-
    arrays (:func:`~robojac.optim.cholesky_soa`) for large batches of small systems, where it
    pays (:func:`~robojac.optim.soa_pays`: 10,000 float32 7x7 systems in 0.53 ms against batched
    LAPACK's 4.0), else ``torch.linalg.cholesky_ex``.  ``ok (B,)``: the system is positive
    definite; a solve gives finite numbers everywhere, meaningless where it is not."""

    def __init__(self, A: Tensor):
        B, n = A.shape[0], A.shape[-1]
        self.soa = soa_pays(B, n) and not (torch.is_grad_enabled() and A.requires_grad)  # it works in place
        if self.soa:
            self.L, self.ok = cholesky_soa(A.permute(1, 2, 0).contiguous())  # no copy when A is stored so
        else:
            L, info = torch.linalg.cholesky_ex(A)
            self.ok = info == 0
            self.L = torch.where(self.ok[:, None, None], L, torch.eye(n, dtype=A.dtype, device=A.device).expand(B, n, n))

        self.patched = None

    def patch(self, rows: Tensor, A: Tensor) -> None:
        """Factor the systems ``rows`` again, from ``A (len(rows), n, n)`` (the few that did not
        factor, with the damping's floor), leaving the others' factors as they are."""
        self.patched = (rows, DenseFactor(A))
        self.ok = self.ok.index_copy(0, rows, self.patched[1].ok)

    def solve(self, b: Tensor) -> Tensor:
        """``A^-1 b`` for ``b (B, n)``."""
        if self.soa:
            x = cholesky_solve_soa(self.L, b.T.contiguous()).T
        else:
            x = torch.cholesky_solve(b[..., None], self.L)[..., 0]
        if self.patched is not None:
            rows, other = self.patched
            x = x.index_copy(0, rows, other.solve(b[rows]))
        return x


def _pulled_and_bounded(problem: Problem, values: tuple[Tensor, ...], H: Tensor, D: Tensor, L: "DenseFactor", g: Tensor,
                        step: Tensor, live: Tensor) -> Tensor:
    """The dense step with the variables' rest pulls and bounds (see :class:`Variable`): the
    pull ``gain (d - D^-1 H d)`` added, then, for problems whose step would leave a bound, the
    coordinates that would leave step onto the bound they cross (``at_bound="stop"``) or stay
    (``"hold"``), and the others are solved again given that (``D`` the damped system, ``L`` its
    factor).

    With ``"stop"``, the coordinates on a bound that the gradient pushes against
    (:meth:`Problem.at_bounds`) are held first, and which others would leave is judged from the
    step solved given that.  Judged from the step of every coordinate free, a coordinate on its
    bound whose own gradient pointed inside was held too, by its coupling to the held ones: a
    humanoid's torso joint stayed on its limit 0.054 rad from the minimum, every step."""
    if problem.pulled:
        d, gain = problem.rest_pull(values)
        toward = L.solve((H @ d[..., None])[..., 0])
        step = step + gain * (d - toward)
    if problem.bounded:
        out = problem.leaves_bounds(values, step) & ~problem.held
        if problem.stops_at_bounds:
            active = problem.at_bounds(values, g) & ~problem.held & live[:, None]
            if bool(active.any()):
                step = _holding(problem, values, D, g, step, active, live, onto=False)
                out = (problem.leaves_bounds(values, step) & ~problem.held) | active
        step = _holding(problem, values, D, g, step, out, live, onto=problem.stops_at_bounds)
    return step


def _holding(problem: Problem, values: tuple[Tensor, ...], D: Tensor, g: Tensor, step: Tensor, out: Tensor,
             live: Tensor, onto: bool) -> Tensor:
    """``step`` solved again, in the live problems with coordinates ``out (B, size)``, given those:
    each stepped onto the bound ``step`` takes it past (``onto``; zero where it crosses none) or
    held where it is."""
    rows = torch.nonzero(out.any(-1) & live).flatten()
    if not rows.numel():
        return step
    o = out[rows]
    keep = (~o).to(D.dtype).T.contiguous()  # (n, R)
    Ds = D.permute(1, 2, 0)
    n = Ds.shape[0]
    Dr = (Ds.reshape(n * n, -1).index_select(1, rows).view(n, n, -1) if Ds.is_contiguous()  # (n, n, R)
          else D.index_select(0, rows).permute(1, 2, 0).contiguous())
    rhs = -g[rows] * keep.T
    if onto:  # onto the bound crossed; "hold" leaves those coordinates as they are
        dh = problem.to_bounds(values, step, rows).masked_fill(~o, 0.0)  # (R, n)
        rhs = (rhs - (Dr * dh.T[None]).sum(1).T * keep.T) + dh
    A = Dr * keep[:, None, :] * keep[None, :, :]
    A.diagonal(dim1=0, dim2=1).add_(o.to(D.dtype))
    L2 = DenseFactor(A.permute(2, 0, 1))
    again = L2.solve(rhs)
    step = step.clone()
    step[rows] = torch.where(L2.ok[:, None], again, torch.zeros_like(again))
    return step


def _stop(reason: list, running: Tensor, which: Tensor, why: str) -> None:
    """Record ``why`` for the problems ``which`` that are still running, and stop them (in place)."""
    hit = which & running
    if not bool(hit.any()):
        return
    for b in torch.nonzero(hit).flatten().tolist():
        reason[b] = why
    running &= ~which


def _merge(problem: Problem, old: Linearization, new: Linearization, take: Tensor) -> Linearization:
    """The linearization at each problem's current values: the trial's where it was taken."""
    if bool(take.all()):
        return new
    values = tuple(torch.where(take[:, None, None], t, v) for t, v in zip(new.values, old.values))
    merged = Linearization.__new__(Linearization)
    merged.problem, merged.values, merged.sparse_gradient = problem, values, None
    merged.residuals = [torch.where(take[:, None, None], rn, ro) for rn, ro in zip(new.residuals, old.residuals)]
    merged.blocks = [None if bn is None or bo is None or callable(bn) or callable(bo) else
                     [torch.where(take[:, None, None, None], a, b) for a, b in zip(bn, bo)]
                     for bn, bo in zip(new.blocks, old.blocks)]
    return merged
