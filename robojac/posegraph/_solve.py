"""``optimize``: sparse Levenberg-Marquardt / Gauss-Newton for pose graphs."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from ..jacobian import BlockSparseJacobian, BlockSparsePattern
from .. import lie, optim
from .._config import check_choice, check_int, check_real
from .._threads import threads_for, torch_threads
from ..jacobian import whiten
from ..optim import MultifrontalCholesky, RobustKernel, SparseLDL, conjugate_gradient
from ._graph import PoseGraph, PoseGraphError
from ._init import chordal_state, spanning_tree_state
from ..lie import se2_compose, se2_exp

__all__ = ["PGOConfig", "PGOResult", "IterationRecord", "optimize", "initialize"]

log = logging.getLogger(__name__)

Init = Literal["file", "odometry", "chordal"]


@dataclass(frozen=True)
class PGOConfig:
    """Options of :func:`optimize`.

    * ``method``: ``"lm"`` (Levenberg-Marquardt, Marquardt's diagonal scaling) or ``"gn"``
      (Gauss-Newton, every step taken).
    * ``init``: ``"chordal"`` (default; see :mod:`robojac.posegraph._init`), ``"odometry"``
      (compose along a spanning tree) or ``"file"`` (the graph's current poses).
    * ``kernel``: a :class:`~robojac.optim.RobustKernel` (``"huber"``, ``"cauchy"``, ``"dcs"``...)
      applied by iteratively reweighted least squares; its cost is what is minimized.
    * stopping: relative cost decrease below ``relative_tolerance`` (1e-6, as the GTSAM runs it is
      compared with; Gauss-Newton's quadratic convergence leaves the final cost within 1e-10
      of the optimum on the benchmark graphs), cost below ``absolute_tolerance``, a step below
      ``step_tolerance``, or ``max_iterations``.
    * ``linear_solver``: ``"ldl"`` (sparse LDL^T with AMD ordering, CPU), ``"multifrontal"``
      (batched multifrontal Cholesky in torch, on the graph's device: the GPU path), ``"cg"``
      (block-Jacobi preconditioned CG in torch) or ``"auto"`` (LDL^T on the CPU, multifrontal
      on a GPU).
    * ``callback``: called with each :class:`IterationRecord` (the CLI prints a progress line).
    * ``num_threads``: torch CPU threads inside ``optimize`` (restored after); ``None`` uses one
      thread for graphs whose Jacobian blocks hold under 500k numbers (every benchmark graph:
      intel runs 1.5x faster on one thread than on two with ``OMP_WAIT_POLICY=PASSIVE``) and
      torch's setting above.
    """

    method: Literal["lm", "gn"] = "lm"
    init: Init = "chordal"
    kernel: RobustKernel = field(default_factory=RobustKernel)
    max_iterations: int = 100
    relative_tolerance: float = 1e-6
    absolute_tolerance: float = 1e-12
    step_tolerance: float = 1e-12
    lambda_initial: float = 1e-6
    linear_solver: Literal["auto", "ldl", "multifrontal", "cg"] = "auto"
    cg_tolerance: float = 1e-12
    callback: Callable[[IterationRecord], None] | None = None
    num_threads: int | None = None

    def __post_init__(self):
        owner = "PGOConfig"
        checks = {"method": ("lm", "gn"), "init": ("file", "odometry", "chordal"),
                  "linear_solver": ("auto", "ldl", "multifrontal", "cg")}
        for name, allowed in checks.items():
            check_choice(owner, name, getattr(self, name), allowed)
        if isinstance(self.kernel, str):
            object.__setattr__(self, "kernel", RobustKernel(self.kernel))
        if not isinstance(self.kernel, RobustKernel):
            raise ValueError(f"PGOConfig.kernel: expected a RobustKernel or kernel name, got {self.kernel!r}")
        check_int(owner, "max_iterations", self.max_iterations, minimum=0)
        for name in ("relative_tolerance", "absolute_tolerance", "step_tolerance"):
            check_real(owner, name, getattr(self, name))
        check_real(owner, "lambda_initial", self.lambda_initial, positive=True)
        check_real(owner, "cg_tolerance", self.cg_tolerance, positive=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"PGOConfig.callback: expected a callable or None, got {self.callback!r}")
        check_int(owner, "num_threads", self.num_threads, minimum=1, optional=True)


@dataclass(frozen=True)
class IterationRecord:
    iteration: int
    cost: float
    lam: float
    step_norm: float
    accepted: bool
    seconds: float


@dataclass(frozen=True)
class PGOResult:
    """Optimized ``poses`` (SE3 ``(N, 7)``, ascending vertex ids; 2D graphs with ``z = 0``)."""

    poses: pp.LieTensor
    vertex_ids: Tensor
    cost: float
    initial_cost: float
    iterations: int
    converged: bool
    reason: str
    history: tuple[IterationRecord, ...]
    init_seconds: float
    solve_seconds: float


def _held(graph: PoseGraph) -> Tensor:
    held = graph.fixed.clone()
    if not held.any():
        held[0] = True  # the gauge: the first pose (lowest vertex id) keeps its value
    return held


def initialize(graph: PoseGraph, init: Init = "chordal") -> Tensor:
    """The initial optimization state (2D ``(N, 3)``, 3D ``(N, 7)``) of ``graph``."""
    graph.check_connected()
    with torch.no_grad():
        S = graph.state().detach()
        if init == "file":
            return S.clone()
        held = _held(graph)
        Zs = graph.measurement_state()
        if init == "odometry":
            root = int(held.nonzero()[0])
            T = spanning_tree_state(graph.num_poses, graph.edges, Zs, graph.dim, root)
            # move the tree so that the root keeps its current pose
            if graph.dim == 2:
                from ..lie import se2_inverse

                offset = se2_compose(S[root], se2_inverse(T[root]))
                T = se2_compose(offset.expand_as(T), T)
            else:
                offset = lie.se3_compose(S[root], lie.se3_inverse(T[root]))
                T = lie.se3_compose(offset.expand_as(T), T)
            # every held (FIXed) pose keeps its value, not only the tree's root: the solver holds
            # them where the initialization leaves them
            return torch.where(held[:, None], S, T)
        if init == "chordal":
            return chordal_state(graph.num_poses, graph.edges, Zs, graph.information, graph.dim, held, S)
    raise ValueError(f"init: expected 'file', 'odometry' or 'chordal', got {init!r}")


class _Linearization:
    """Residuals ``r`` at a state and, on first use, the Jacobian ``J`` there: the state a
    converged run ends on, or a rejected LM trial, never needs its Jacobian."""

    def __init__(self, prob: _Problem, e: Tensor, Xj: Tensor, r: Tensor):
        self.prob, self.e, self.Xj, self.r = prob, e, Xj, r
        self._J: BlockSparseJacobian | None = None

    def cost(self, kernel: RobustKernel) -> float:
        """The robust cost ``0.5 sum rho(|r|^2)`` at this state."""
        return 0.5 * float(kernel.rho(self.r.square().sum(-1)).sum())

    @property
    def J(self) -> BlockSparseJacobian:
        if self._J is None:
            Ji, Jj = self.prob.residual.jacobians_at(self.e, self.Xj, self.prob.L)
            self._J = BlockSparseJacobian(torch.stack((Ji, Jj), 1), self.prob.pattern)
        return self._J


class _Problem:
    """The linearization machinery for one graph: pattern, damping slots, linear solver."""

    def __init__(self, graph: PoseGraph, held: Tensor, solver: str):
        self.graph, self.dim, self.t = graph, graph.dim, graph.tangent_dim
        N = graph.num_poses
        free_index = torch.full((N,), -1, dtype=torch.long, device=held.device)
        free = ~held
        free_index[free] = torch.arange(int(free.sum()), device=held.device)
        self.free = free
        self.pattern = BlockSparsePattern.from_index(free_index[graph.edges], int(free.sum()), self.t, self.t)
        self.residual = graph.residual_function()
        self.Z = graph.measurement_state().detach()
        self.L = graph.sqrt_information.detach()
        self.solver = solver
        self.ldl = None

    @cached_property
    def diag_slots(self) -> Tensor:
        """Where ``H``'s diagonal sits among its CSR values (Levenberg-Marquardt's damping; a
        Gauss-Newton run never asks)."""
        crow, col, _ = self.pattern._hessian_csr
        rows = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow[1:] - crow[:-1])
        return torch.nonzero(rows == col).squeeze(1)

    def linearize(self, S: Tensor):
        lin = self.evaluate(S)
        return lin.r, lin.J

    def evaluate(self, S: Tensor) -> _Linearization:
        """The whitened residuals at ``S``; the Jacobian follows only if asked for."""
        Xj = S[self.graph.edges[:, 1]]
        e = self.residual.error(S[self.graph.edges[:, 0]], Xj, self.Z)
        return _Linearization(self, e, Xj, whiten(e, self.L))

    def solve(self, H: Tensor, g: Tensor, lam: float) -> Tensor:
        vals = H.values()
        if lam > 0:  # Marquardt: H + lam diag(H)
            d = vals[self.diag_slots]
            vals[self.diag_slots] = d + lam * d.clamp_min(1e-12)
        b = -g.reshape(-1)
        if self.solver == "cg":
            x, _ = conjugate_gradient(H, b, block=self.t, tol=1e-12)
            return x.view(-1, self.t)
        if self.ldl is None:
            self.ldl = MultifrontalCholesky(H, self.t) if self.solver == "multifrontal" else SparseLDL(H, self.t)
        else:
            self.ldl.refactor(H)
        return self.ldl.solve(b).view(-1, self.t)

    def retract(self, S: Tensor, delta: Tensor) -> Tensor:
        out = S.clone()
        if self.dim == 2:
            out[self.free] = se2_compose(se2_exp(delta), S[self.free])
        else:
            out[self.free] = lie.se3_compose(lie.se3_exp(delta), S[self.free])
        return out


def optimize(graph: PoseGraph, config: PGOConfig | None = None) -> PGOResult:
    """Minimize ``0.5 * sum rho(r^T Omega r)`` over the poses of ``graph``.

    The gauge is fixed by the graph's ``FIX`` vertices or, without any, by its first pose.
    Returns a :class:`PGOResult`; the graph itself is not modified (use
    ``graph.poses.data.copy_(result.poses)`` to keep the result).  A disconnected graph raises
    :class:`PoseGraphError` naming its components.
    """
    config = config or PGOConfig()
    if not isinstance(graph, PoseGraph):
        raise TypeError(f"graph: expected a PoseGraph, got {type(graph).__name__}")
    blocks = 2 * graph.num_edges * graph.tangent_dim**2
    with torch_threads(threads_for(blocks, graph.poses.device, config.num_threads)):
        return _optimize(graph, config)


def _optimize(graph: PoseGraph, config: PGOConfig) -> PGOResult:
    t0 = time.perf_counter()
    S = initialize(graph, config.init)
    init_seconds = time.perf_counter() - t0
    held = _held(graph).to(S.device)
    solver = config.linear_solver
    if solver == "auto":
        solver = "ldl" if S.device.type == "cpu" else "multifrontal"
    prob = _Problem(graph, held, solver)
    kernel = config.kernel
    t1 = time.perf_counter()
    with torch.no_grad():
        lin = prob.evaluate(S)  # residuals (and, when a step needs it, the Jacobian) at S
    cost = lin.cost(kernel)
    initial_cost = cost
    lam = config.lambda_initial if config.method == "lm" else 0.0
    history, reason, converged, it = [], "max_iterations", False, 0

    def report(rec: IterationRecord) -> None:
        history.append(rec)
        if config.callback is not None:
            config.callback(rec)

    if not math.isfinite(cost):
        raise PoseGraphError(f"{graph.name}: the initial cost is not finite ({cost}); check the measurements")
    chord = False  # Gauss-Newton: the last factorization may serve the next step
    with torch.no_grad():
        while it < config.max_iterations:
            if cost <= config.absolute_tolerance:
                reason, converged = "absolute_tolerance", True
                break
            it += 1
            r = lin.r
            w = kernel.row_weights(r)
            if chord:
                chord = False
                out = _chord_step(prob, lin, r, w, S, kernel, cost, config.relative_tolerance * max(cost, 1e-300))
                if out is not None:
                    S_new, lin_new, new_cost, step = out
                    decrease = cost - new_cost
                    small = abs(decrease) <= config.relative_tolerance * max(cost, 1e-300)
                    if decrease > 0 or small:
                        if decrease > 0:
                            S, lin, cost = S_new, lin_new, new_cost
                        report(IterationRecord(it, cost, lam, step, decrease > 0, time.perf_counter() - t1))
                        if small:
                            reason, converged = "relative_tolerance", True
                            break
                        continue  # the old model understated this step: the next one refactors
                # the old factorization no longer fits: a full step from the same point
            H, g = lin.J.normal_equations(r, w, opposite=True)  # between factors: J_i = -J_j
            accepted, step = False, 0.0
            for _ in range(12 if config.method == "lm" else 1):
                try:
                    delta = prob.solve(H if lam == 0 else _copy_csr(H), g, lam)
                except (RuntimeError, ValueError, np.linalg.LinAlgError, torch.linalg.LinAlgError):
                    delta = None
                if delta is None or not torch.isfinite(delta).all():
                    if config.method == "gn":
                        break
                    lam = max(lam * 10, 1e-6)
                    continue
                S_new = prob.retract(S, delta)
                lin_new = prob.evaluate(S_new)
                new_cost = lin_new.cost(kernel)
                step = float(delta.norm())
                if config.method == "gn" or new_cost < cost:
                    accepted = math.isfinite(new_cost)
                    break
                lam = max(lam * 10, 1e-9)
            report(IterationRecord(it, new_cost if accepted else cost, lam, step, accepted, time.perf_counter() - t1))
            if not accepted:
                reason = "singular_system" if config.method == "gn" else "no_decrease"
                converged = config.method == "lm"  # LM: no damping reduces the cost any more
                break
            decrease = cost - new_cost
            S, lin, prev, cost = S_new, lin_new, cost, new_cost
            if config.method == "lm":
                lam = max(lam / 10, 1e-12)
            if abs(decrease) <= config.relative_tolerance * max(prev, 1e-300):
                reason, converged = "relative_tolerance", True
                break
            if step <= config.step_tolerance:
                reason, converged = "step_tolerance", True
                break
            chord = config.method == "gn" and prob.ldl is not None
    solve_seconds = time.perf_counter() - t1
    log.info("%s: cost %.9g -> %.9g in %d iterations (%s)", graph.name, initial_cost, cost, it, reason)
    poses = graph.poses_from_state(S).detach()
    live = (graph.measurements.requires_grad or graph.sqrt_information.requires_grad) and torch.is_grad_enabled()
    if live:  # gradients are as exact as the optimum: polish it past what the cost can resolve first
        with torch.no_grad():
            S = _polish(prob, S, kernel)
        poses = graph.poses_from_state(_with_gradients(graph, S, held, kernel, converged, prob))
    return PGOResult(poses, graph.vertex_ids.clone(), cost, initial_cost, it, converged,
                     reason, tuple(history), init_seconds, solve_seconds)


def _polish(prob: _Problem, S: Tensor, kernel: RobustKernel, steps: int = 2) -> Tensor:
    """Up to ``steps`` Gauss-Newton steps from a converged ``S``: the cost stops resolving progress
    near ~1e-9 of the poses, the gradient does not, and the implicit derivative is taken at the
    optimum (each step roughly squares the remaining error)."""
    for _ in range(steps):
        lin = prob.evaluate(S)
        r = lin.r
        w = kernel.row_weights(r)
        H, g = lin.J.normal_equations(r, w, opposite=True)
        if float(g.abs().max()) <= 1e-13 * max(1.0, float(r.abs().max())):
            break
        try:
            delta = prob.solve(H, g, 0.0)
        except (RuntimeError, ValueError, np.linalg.LinAlgError, torch.linalg.LinAlgError):
            break
        if not torch.isfinite(delta).all():
            break
        S = prob.retract(S, delta)
    return S


def _with_gradients(graph: PoseGraph, S: Tensor, held: Tensor, kernel: RobustKernel, converged: bool,
                    prob: _Problem) -> Tensor:
    """The optimized state, differentiable with respect to the graph's measurements and
    information (square roots): the implicit function theorem at the optimum, on the solver
    engine (:func:`robojac.optim.attach_gradients`; one large sparse problem: conjugate gradients
    on the exact Hessian, preconditioned by the Gauss-Newton factorization).  FIXed poses (and
    the gauge) get no gradient; an optimization that did not converge passes zero gradient."""
    kind = "SE2" if graph.dim == 2 else "SE3"
    X = optim.Variable(kind, S.detach()[None], fixed=held[None], name="poses")
    edges = optim.Factor(graph.residual_function(), [X, X], index=graph.edges,
                         data=(graph.measurement_state(), graph.sqrt_information), kernel=kernel, name="edges")
    done = torch.tensor([converged], device=S.device)
    free = (~held).repeat_interleave(graph.tangent_dim)

    def precondition(r: Tensor) -> Tensor:  # the last Gauss-Newton factorization (free poses only)
        out = r.clone()
        out[free] = prob.ldl.solve(r[free])
        return out

    (out,) = optim.attach_gradients([X], [edges], (S.detach()[None],), done,
                                    preconditioner=precondition if prob.ldl is not None else None)
    return out[0]


def _chord_step(prob: _Problem, lin: _Linearization, r: Tensor, w: Tensor | None, S: Tensor, kernel: RobustKernel,
                cost: float, tolerance: float):
    """A Gauss-Newton step through the previous iteration's factorization (no new normal
    equations, no refactorization), taken only to confirm convergence: ``(S, linearization,
    cost, step norm)`` there, or ``None`` when the old quadratic model promises a decrease
    above ``tolerance`` (``-g^T delta / 2``: not converged yet, so a full step follows) or the
    step is not finite.

    Near the optimum ``J^T W J`` hardly changes from one iteration to the next and the last
    factor solves this one's system almost exactly, so the step that confirms convergence (the
    last of every run) costs one solve instead of new normal equations and a factorization.
    The caller stops only when the actual decrease is below the tolerance as well.
    """
    g = lin.J.rmatvec(r if w is None else w[:, None] * r)
    delta = prob.ldl.solve(-g.reshape(-1)).view(-1, prob.t)
    predicted = -0.5 * float((g * delta).sum())
    if not math.isfinite(predicted) or predicted > tolerance:
        return None
    S_new = prob.retract(S, delta)
    lin_new = prob.evaluate(S_new)
    new_cost = lin_new.cost(kernel)
    if not math.isfinite(new_cost):
        return None
    return S_new, lin_new, new_cost, float(delta.norm())


def _copy_csr(H: Tensor) -> Tensor:
    return torch.sparse_csr_tensor(H.crow_indices(), H.col_indices(), H.values().clone(), H.shape, device=H.device,
                                   check_invariants=False)

