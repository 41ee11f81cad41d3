"""``optimize``: pose-graph optimization, a driver of the solver engine.

The driver initializes the poses (chordal by default), writes the graph as one problem on
:func:`robojac.optim.solve` (an SE3 or SE2 variable, the gauge held, one between factor per
edge), and reads the engine's answer back as a :class:`PGOResult`.  The engine does the rest:
Gauss-Newton or Levenberg-Marquardt, the sparse system, its factorization, the stopping rule,
and the gradients through the answer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import pypose as pp
import torch
from torch import Tensor

from .. import lie, optim
from .._config import check_choice, check_instance, check_int, check_real
from .._precision import PRECISIONS
from .._threads import threads_for, torch_threads
from ..lie import se2_compose
from ..optim import RobustKernel
from ..trajectory import align_umeyama
from ._graph import PoseGraph, PoseGraphError, PositionPriorResidual
from ._init import chordal_state, spanning_tree_state

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
    * ``lambda_initial``: Levenberg-Marquardt's first damping (relative to the diagonal of
      ``J^T W J``, Marquardt's scaling); ignored by ``"gn"``.  ``None`` (the default): for the
      plain cost 1e-10, raised to 1e-6 at once if the first step is refused; under a robust
      kernel 1e-6 (:meth:`robojac.optim.TrustRegionConfig.gauss_newton_first`).  Without a kernel the
      first steps from a good start are then Gauss-Newton's, and a poor start costs one refused
      step: over the graphs of ``data/``, from the chordal and odometry starts, 256 steps in all
      against 616 at 1e-6 (ais2klinik from odometry: 11 against 200, not converged; manhattan 3
      against 11; MIT 16 against 15).  A robust cost is not convex, and the careful first steps
      of 1e-6 reached lower minima from the plain optimum (manhattan under Cauchy, Geman-McClure
      and DCS: 890.99, 480.51, 1032.47 against 891.37, 481.16, 1035.19 at 1e-10):
      ``docs/benchmarks.md#the-first-damping-of-a-pose-graph``.  A value given is used as it is.
    * ``linear_solver``: ``"ldl"`` (sparse LDL^T with AMD ordering, CPU), ``"multifrontal"``
      (batched multifrontal Cholesky in torch, on the graph's device: the GPU path), ``"cg"``
      (block-Jacobi preconditioned CG in torch) or ``"auto"`` (LDL^T on the CPU, multifrontal
      on a GPU).
    * ``cg_tolerance``: with ``"cg"``, each linear solve stops at a residual of this fraction
      of its right-hand side's.
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
    lambda_initial: float | None = None
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
        check_real(owner, "lambda_initial", self.lambda_initial, positive=True, optional=True)
        check_real(owner, "cg_tolerance", self.cg_tolerance, positive=True)
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"PGOConfig.callback: expected a callable or None, got {self.callback!r}")
        check_int(owner, "num_threads", self.num_threads, minimum=1, optional=True)


def _trust_region(config: PGOConfig) -> optim.TrustRegionConfig:
    """The engine's damping for ``config``: its ``lambda_initial`` as given, or the default for its
    kernel with the careful fallback (a robust start, already careful, never falls below it)."""
    if config.lambda_initial is not None:
        return optim.TrustRegionConfig(method=config.method, lambda_initial=config.lambda_initial)
    return optim.TrustRegionConfig.gauss_newton_first(robust=config.kernel.name != "none", method=config.method)


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of :func:`optimize` (the engine's :class:`~robojac.optim.IterationRecord`
    for the one problem): the cost after it, the damping its step was solved with, the step's
    norm, whether it was accepted, and the seconds since the solve began."""

    iteration: int
    cost: float
    damping: float
    step_norm: float
    accepted: bool
    seconds: float


@dataclass(frozen=True)
class PGOResult:
    """Optimized ``poses`` (SE3 ``(N, 7)``, ascending vertex ids; 2D graphs with ``z = 0``; a
    similarity graph's Sim3 ``(N, 8)``)."""

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


SOLVE_DTYPE = torch.float64  # every pose graph is solved in it (see optimize)


def _held(graph: PoseGraph) -> Tensor:
    """The poses the solve holds: the ``FIX`` ones; without any, the first (the gauge), unless
    position priors hold the graph in the world."""
    held = graph.fixed.clone()
    if not held.any() and not graph.num_priors:
        held[0] = True  # the gauge: the first pose (lowest vertex id) keeps its value
    return held


def anchor_offset(graph: PoseGraph, S: Tensor) -> Tensor | None:
    """The position ``c`` of the first held pose in the state ``S`` (of the first position prior,
    for a graph its priors hold), about which the solve works (``None`` for a similarity graph,
    whose state ``T^-1`` is stepped in each pose's own frame).

    The engine steps a pose on the left, ``Exp(d) T``, which turns it about the world's origin: a
    graph in map coordinates (UTM, 4,000 km out) has Jacobian entries ~4e6 times its rotations'
    and normal equations past float64's reach.  There sphere2500, parking-garage, KITTI 00, intel
    and manhattan stopped after 100 iterations unconverged (manhattan at 70 times its optimal
    cost).  Each edge's residual is unchanged when every pose moves by one rigid motion, so the
    solve moves the poses by ``-c`` and back: the answer is the same graph's, in the iterations
    of a graph at the origin."""
    if graph.similarity:
        return None
    k = 2 if graph.dim == 2 else 3
    held = _held(graph)
    if not bool(held.any()):  # held by its position priors: about the first one
        return graph.prior_positions[0].detach().to(S).clone()
    return S[int(held.nonzero()[0]), :k].detach().clone()


def factors(graph: PoseGraph, X: optim.Variable, c: Tensor | None, kernel: RobustKernel | None,
            live: bool, weights: tuple[Tensor, Tensor] | None = None) -> list[optim.Factor]:
    """The graph as factors on its poses ``X`` (a state moved by ``-c``): an edge factor and, where
    the graph has them, a position-prior factor; their data differentiable where ``live``.
    ``weights``: ``(edges (E,), priors (P,))`` scaling each one's information (graduated
    non-convexity's; held constant, as data without a graph)."""
    def carried(data):  # the data as the factors take them: with their graph only where live
        return data if live else tuple(d.detach() for d in data)

    def scaled(L: Tensor, w: Tensor | None) -> Tensor:
        L = L.to(SOLVE_DTYPE)
        return L if w is None else L * w.detach().to(L).clamp_min(0.0).sqrt()[:, None, None]

    def kept(w: Tensor | None) -> Tensor | None:  # the entries a weight keeps (zero ones add nothing)
        return None if w is None or bool((w > 0).all()) else torch.nonzero(w > 0).squeeze(-1).to(graph.edges.device)

    w_edges, w_priors = weights if weights is not None else (None, None)
    data = (graph.measurement_state().to(SOLVE_DTYPE), scaled(graph.sqrt_information, w_edges))
    index, on = graph.edges, kept(w_edges)
    if on is not None:  # edges of zero weight left out: nor their fill (a wrong loop closure joins far poses)
        index, data = index[on], tuple(d[on] for d in data)
    out = [optim.Factor(graph.residual_function(), [X, X], index=index, data=carried(data), kernel=kernel,
                        name="edges")]
    if graph.num_priors:
        p = graph.prior_positions.to(SOLVE_DTYPE)
        data = (p if c is None else p - c, scaled(graph.prior_sqrt_information, w_priors),
                graph.prior_lever_arms.to(SOLVE_DTYPE))
        index, on = graph.prior_index[:, None], kept(w_priors)
        if on is not None:
            index, data = index[on], tuple(d[on] for d in data)
        if index.shape[0]:
            out.append(optim.Factor(PositionPriorResidual(), [X], index=index, data=carried(data), kernel=kernel,
                                    name="priors"))
    return out


def _data_live(graph: PoseGraph) -> bool:
    """Whether any of the graph's measurements require grad (and grad is on)."""
    tensors = (graph.measurements, graph.sqrt_information, graph.prior_positions, graph.prior_sqrt_information,
               graph.prior_lever_arms)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def moved(S: Tensor, c: Tensor | None, sign: int) -> Tensor:
    """The state ``S`` with every position moved by ``sign * c`` (a pure translation on the left)."""
    if c is None:
        return S
    k = c.shape[-1]
    return torch.cat((S[..., :k] + sign * c, S[..., k:]), -1)


def initialize(graph: PoseGraph, init: Init = "chordal") -> Tensor:
    """The initial optimization state (2D ``(N, 3)``, 3D ``(N, 7)``, a similarity graph's inverse
    similarities ``(N, 8)``: :meth:`PoseGraph.state`) of ``graph``.  A graph its position priors
    hold is placed from its first pose, then moved onto the priors by the rigid motion that fits
    them best (``"file"``: the poses as they are)."""
    check_instance("graph", graph, PoseGraph, "a PoseGraph")
    if init not in ("file", "odometry", "chordal"):  # refused before any pose is held or placed
        raise ValueError(f"init: expected 'file', 'odometry' or 'chordal', got {init!r}")
    graph.check_connected()
    if graph.similarity:  # placed as similarities T, solved as their inverses
        with torch.no_grad():
            return graph.state(_similarities(graph, init))
    with torch.no_grad():
        S = graph.state().detach()
        if init == "file":
            return S.clone()
        held = _held(graph)
        if not bool(held.any()):  # held by its priors: placed from the first pose, then moved onto them
            return _onto_priors(graph, _placed(graph, init, S, torch.arange(graph.num_poses, device=S.device) == 0))
        return _placed(graph, init, S, held)


def _onto_priors(graph: PoseGraph, S: Tensor) -> Tensor:
    """The state ``S`` moved by the rigid motion that best fits its prior poses' positions to the
    measured ones (least squares: Umeyama's in 3D, the angle of the cross-covariance in 2D)."""
    a = PositionPriorResidual.point(S[graph.prior_index], graph.prior_lever_arms.detach().to(S)).double()
    b = graph.prior_positions.detach().double()
    if graph.dim == 2:
        ac, bc = a - a.mean(0), b - b.mean(0)
        angle = torch.atan2((ac[:, 0] * bc[:, 1] - ac[:, 1] * bc[:, 0]).sum(), (ac * bc).sum())
        c, s = torch.cos(angle), torch.sin(angle)
        t = b.mean(0) - torch.stack((c * a[:, 0].mean() - s * a[:, 1].mean(), s * a[:, 0].mean() + c * a[:, 1].mean()))
        G = torch.cat((t, angle[None])).to(S)
        return se2_compose(G.expand_as(S), S)
    R, t, _ = align_umeyama(a, b, degenerate_ok=True)  # a straight drive's roll: the fixes' noise decides it
    G = torch.cat((t, lie.matrix_to_quat(R))).to(S)
    return lie.se3_compose(G.expand_as(S), S)


def _placed(graph: PoseGraph, init: Init, S: Tensor, held: Tensor) -> Tensor:
    """The odometry or chordal state of ``graph``, the poses ``held`` keeping their values ``S``."""
    if bool(held.all()):  # every pose held (or a lone one): nothing to place
        return S.clone()
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
    return chordal_state(graph.num_poses, graph.edges, Zs, graph.information, graph.dim, held, S)


def _similarities(graph: PoseGraph, init: Init) -> Tensor:
    """A similarity graph's initial poses ``T (N, 8)``: its own (``"file"``), composed along the
    odometry spanning tree, or chordal (rotations, then log-scales, then translations)."""
    T = graph.poses.detach().as_subclass(Tensor)
    held = _held(graph)
    if init == "file" or bool(held.all()):
        return T.clone()
    if init == "odometry":
        root = int(held.nonzero()[0])
        P = spanning_tree_state(graph.num_poses, graph.edges, graph.measurements, graph.dim, root)
        P = lie.sim3_compose(lie.sim3_compose(T[root], lie.sim3_inverse(P[root])).expand_as(P), P)
        return torch.where(held[:, None], T, P)
    return chordal_state(graph.num_poses, graph.edges, graph.measurements, graph.information, graph.dim, held, T)


def optimize(graph: PoseGraph, config: PGOConfig | None = None) -> PGOResult:
    """Minimize ``0.5 * sum rho(r^T Omega r)`` over the poses of ``graph``.

    The gauge is fixed by the graph's ``FIX`` vertices or, without any, by its position priors
    or else its first pose.
    Returns a :class:`PGOResult`; the graph itself is not modified (use
    ``graph.poses.data.copy_(result.poses)`` to keep the result).  A disconnected graph raises
    :class:`PoseGraphError` naming its components.

    The solve runs in float64 whatever the graph's dtype; the poses come back in the graph's.
    A pose graph's weak directions lie far below float32's rounding (parking-garage's system has
    a condition number ~1e13).  Solved in float32 (the engine sums one large problem's normal
    equations in float64, see :func:`~robojac.optim.solve`), parking-garage and MIT land 2.0 cm and
    1.9 cm from the float64 optimum (8.6 m and 36.6 m, "converged", when the engine summed in
    float32); their float32 data solved in float64 land within 3e-5 m of it (manhattan 4.4e-4 m).
    """
    config = config or PGOConfig()
    check_instance("graph", graph, PoseGraph, "a PoseGraph")
    if graph.poses.dtype not in PRECISIONS:  # as read_g2o refuses to read into one
        raise TypeError(f"graph: its poses are {graph.poses.dtype}; optimize takes graphs in float32 or float64 "
                        f"(graph.to(torch.float32))")
    blocks = 2 * graph.num_edges * graph.tangent_dim**2
    with torch_threads(threads_for(blocks, graph.poses.device, config.num_threads)):
        return _optimize(graph, config)


def _optimize(graph: PoseGraph, config: PGOConfig, start: Tensor | None = None,
              weights: tuple[Tensor, Tensor] | None = None) -> PGOResult:
    """:func:`optimize`'s work, from the state ``start`` where given (else ``config.init``'s),
    with each edge's and prior's information scaled by ``weights`` where given."""
    t0 = time.perf_counter()
    given = (initialize(graph, config.init) if start is None else start).to(SOLVE_DTYPE)  # see optimize(): float64
    init_seconds = time.perf_counter() - t0
    held = _held(graph).to(given.device)
    c = anchor_offset(graph, given)
    S = moved(given, c, -1)  # solved about the anchor (see anchor_offset)
    X = optim.Variable(graph.group, S[None], fixed=held[None], name="poses")
    problem = factors(graph, X, c, config.kernel, _data_live(graph), weights)  # the data live where they require grad
    t1 = time.perf_counter()
    history = []

    def report(rec: optim.IterationRecord) -> None:
        step = IterationRecord(rec.iteration, float(rec.cost[0]), float(rec.damping[0]), float(rec.step_norm[0]),
                               bool(rec.accepted[0]), rec.seconds)
        history.append(step)
        if config.callback is not None:
            config.callback(step)

    solver = "sparse" if config.linear_solver == "auto" else config.linear_solver
    cfg = optim.SolverConfig(
        trust_region=_trust_region(config),
        termination=optim.TerminationConfig(max_iterations=config.max_iterations,
                                            absolute_tolerance=config.absolute_tolerance,
                                            relative_tolerance=config.relative_tolerance,
                                            step_tolerance=config.step_tolerance, gradient_tolerance=0.0),
        backward="implicit", linear_solver=solver, cg_tolerance=config.cg_tolerance,
        num_threads=torch.get_num_threads(), callback=report)  # optimize() has set them
    result = optim.solve([X], problem, cfg)
    solve_seconds = time.perf_counter() - t1
    initial_cost = _finite(graph, float(result.initial_cost[0]))
    cost, reason = float(result.cost[0]), result.reason[0]
    log.info("%s: cost %.9g -> %.9g in %d iterations (%s)", graph.name, initial_cost, cost, int(result.iterations[0]),
             reason)
    answer = torch.where(held[:, None], given, moved(result.values[0][0], c, +1))  # held poses: their own numbers
    poses = graph.poses_from_state(answer.to(graph.poses.dtype))
    return PGOResult(poses, graph.vertex_ids.clone(), cost, initial_cost, int(result.iterations[0]),
                     bool(result.converged[0]), reason, tuple(history), init_seconds, solve_seconds)


def _finite(graph: PoseGraph, cost: float) -> float:
    if not math.isfinite(cost):
        raise PoseGraphError(f"{graph.name}: the initial cost is not finite ({cost}); check the measurements")
    return cost
