"""Graduated non-convexity (GNC): pose graphs whose loop closures are many of them wrong.

A robust kernel from the plain optimum keeps what a wrong loop closure has already bent; with a
fifth of a graph's loop closures wrong, Cauchy's and Geman-McClure's minima stay metres off.  GNC
(Yang, Antonante, Tzoumas, Carlone, "Graduated Non-Convexity for Robust Spatial Perception",
RA-L 2020) minimizes a truncated least squares (TLS) or Geman-McClure cost through a sequence of
surrogates, from a convex one to the cost itself, each solved as weighted least squares (the
engine, from the plain solve's start) with the weights the surrogate's Black-Rangarajan duality
gives at the last residuals.  For TLS, with ``s`` an edge's ``e^T Omega e``, ``c2`` its
inlier threshold and ``mu`` the surrogate's parameter (growing by ``mu_step``):

* ``w = 1`` for ``s <= mu / (mu + 1) c2``, ``w = 0`` for ``s >= (mu + 1) / mu c2``, and
  ``sqrt(c2 mu (mu + 1) / s) - mu`` between;
* ``mu`` starts at ``c2 / (2 s_max - c2)`` over the plain optimum's residuals (the surrogate is
  then convex), and the weights end binary: inliers and outliers.

Geman-McClure: ``w = (mu c2 / (mu c2 + s))^2``, ``mu`` from ``2 s_max / c2`` down to 1.  As
GTSAM's ``GncOptimizer`` (whose thresholds, ``0.5 chi2``, are on its ``0.5 s``), the threshold is
the chi-square quantile of the factor's dimension at ``probability``, edges known to be right
(the odometry) keep weight 1, and the run stops when the weighted cost changes by less than
``relative_tolerance``, the TLS weights are binary within ``weight_tolerance``, or ``mu`` reaches
1 (Geman-McClure).  Each round's solve starts from the plain solve's start, as GTSAM's do:
warm-started from the last round's answer instead, smallGrid3D with 50 wrong loop closures kept
12-17 of its 297 right edges out (RMSE 0.13-0.15 m), from the start 3 (0.056 m, GTSAM's answer),
in about as many iterations.  The last round's answer is then polished, from where it ended, with
the final weights.  ``mu``'s start comes from the plain optimum's residuals (the paper's; GTSAM's
from the initial values'), or from the start's where the plain solve ended above its start
(Gauss-Newton thrown off by the wrong edges).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import pypose as pp
import torch
from torch import Tensor

from .._config import check_choice, check_instance, check_int, check_real
from ._graph import PoseGraph, PoseGraphError
from ._solve import PGOConfig, _optimize, initialize

__all__ = ["GNCConfig", "GNCRecord", "GNCResult", "optimize_gnc"]

LOSSES = ("tls", "geman_mcclure")


@dataclass(frozen=True)
class GNCConfig:
    """Options of :func:`optimize_gnc`.

    * ``loss``: ``"tls"`` (truncated least squares: each edge an inlier, weight 1, or an outlier,
      weight 0) or ``"geman_mcclure"``.
    * ``probability``: each factor's inlier threshold is the chi-square quantile of its dimension
      (3 or 6 for an edge, 2 or 3 for a position prior) at this probability: 0.99 gives
      ``s <= 11.34`` for a 2D edge and ``16.81`` for a 3D one (GTSAM's default).
    * ``mu_step``: the factor by which ``mu`` grows (TLS) or shrinks (Geman-McClure) each round.
    * ``max_iterations``: rounds of weights and solve after the plain solve.
    * ``relative_tolerance``: stop when the weighted cost changes by less than this fraction.
    * ``weight_tolerance``: (TLS) stop when every weight is within this of 0 or 1.
    * ``round_tolerance``: each round's solve stops at this relative cost decrease (the weights are
      worked out again from its answer); the last round's answer is then polished with the final
      weights to ``solver.relative_tolerance``.  The rounds' path through the surrogates depends
      on it: on manhattan + 300 wrong loop closures 1e-3 ended with 51 right edges dropped and
      0.53 m RMSE, 1e-5 with 49 and 0.25 m, 1e-4 with 41 and 0.24 m in 485 iterations (1e-6,
      the solver's own: 41, 0.25 m, 556 iterations).
    * ``solver``: each weighted least-squares solve's :class:`PGOConfig` (its ``init`` starts the
      first, plain solve; its ``kernel`` must be none: the weights are GNC's).
    * ``callback``: called with each round's :class:`GNCRecord` as it ends (the CLI prints a
      progress line).
    """

    loss: Literal["tls", "geman_mcclure"] = "tls"
    probability: float = 0.99
    mu_step: float = 1.4
    max_iterations: int = 100
    relative_tolerance: float = 1e-5
    weight_tolerance: float = 1e-4
    round_tolerance: float = 1e-4
    solver: PGOConfig = field(default_factory=PGOConfig)
    callback: Callable[[GNCRecord], None] | None = None

    def __post_init__(self):
        owner = "GNCConfig"
        check_choice(owner, "loss", self.loss, LOSSES)
        check_real(owner, "probability", self.probability, positive=True)
        if not self.probability < 1:
            raise ValueError(f"GNCConfig.probability: expected a probability in (0, 1), got {self.probability!r}")
        check_real(owner, "mu_step", self.mu_step, positive=True)
        if not self.mu_step > 1:
            raise ValueError(f"GNCConfig.mu_step: expected a factor above 1, got {self.mu_step!r}")
        check_int(owner, "max_iterations", self.max_iterations, minimum=0)
        check_real(owner, "relative_tolerance", self.relative_tolerance)
        check_real(owner, "weight_tolerance", self.weight_tolerance, maximum=0.5)
        check_real(owner, "round_tolerance", self.round_tolerance)
        check_instance("GNCConfig.solver", self.solver, PGOConfig, "a PGOConfig")
        if self.callback is not None and not callable(self.callback):
            raise ValueError(f"GNCConfig.callback: expected a callable or None, got {self.callback!r}")
        if self.solver.kernel.name != "none":
            raise ValueError(f"GNCConfig.solver: its kernel must be none (GNC weighs the edges itself), got "
                             f"{self.solver.kernel.name!r}")


@dataclass(frozen=True)
class GNCRecord:
    """One round of :func:`optimize_gnc`: its ``mu``, the weighted ``cost`` its solve reached, the
    count of edges and priors weighing more than one half (``inliers``), the solve's
    ``solver_iterations`` and the round's ``seconds``."""

    iteration: int
    mu: float
    cost: float
    inliers: int
    solver_iterations: int
    seconds: float


@dataclass(frozen=True)
class GNCResult:
    """The answer of :func:`optimize_gnc`, in :class:`~robojac.posegraph.PGOResult`'s vocabulary.

    ``poses`` and ``vertex_ids`` as ``optimize`` gives them; ``weights (E,)`` and
    ``prior_weights (P,)``: each edge's and position prior's last weight (1 and 0 for TLS once it
    has converged), ``inliers``/``prior_inliers`` those above one half; ``cost``: the weighted
    cost ``0.5 sum w s`` of the last solve, ``initial_cost`` the plain solve's start;
    ``iterations``: rounds after the plain solve, ``solver_iterations`` every solve's iterations
    together; ``converged`` and ``reason`` (``"weights_converged"``, ``"relative_tolerance"``,
    ``"mu_converged"``, ``"all_inliers"`` where the plain optimum had no residual above its
    threshold, ``"all_known"`` where nothing was left to weigh, ``"max_iterations"``, or the last
    solve's reason where it did not converge).
    """

    poses: pp.LieTensor
    vertex_ids: Tensor
    weights: Tensor
    inliers: Tensor
    prior_weights: Tensor
    prior_inliers: Tensor
    cost: float
    initial_cost: float
    iterations: int
    solver_iterations: int
    converged: bool
    reason: str
    history: tuple[GNCRecord, ...]
    init_seconds: float
    solve_seconds: float


def _known_inliers(graph: PoseGraph, known) -> Tensor:
    """``(E,)`` bool: the edges held at weight 1."""
    E, device = graph.num_edges, graph.edges.device
    if isinstance(known, str):
        check_choice("optimize_gnc", "known_inliers", known, ("odometry", "none"))
        if known == "none":
            return torch.zeros(E, dtype=torch.bool, device=device)
        return graph.odometry
    return _mask(known, E, "known_inliers", "'odometry', 'none'", "edge").to(device)


def _known_prior_inliers(graph: PoseGraph, known) -> Tensor:
    """``(P,)`` bool: the position priors held at weight 1."""
    P, device = graph.num_priors, graph.edges.device
    if isinstance(known, str):
        check_choice("optimize_gnc", "known_prior_inliers", known, ("none", "all"))
        return torch.full((P,), known == "all", dtype=torch.bool, device=device)
    return _mask(known, P, "known_prior_inliers", "'none', 'all'", "position prior").to(device)


def _mask(known, n: int, name: str, words: str, each: str) -> Tensor:
    if not isinstance(known, Tensor) or known.dtype != torch.bool or tuple(known.shape) != (n,):
        got = f"shape {tuple(known.shape)}, {known.dtype}" if isinstance(known, Tensor) else type(known).__name__
        raise ValueError(f"{name}: expected {words} or a bool tensor of shape ({n},) (one per {each}), got {got}")
    return known


def _chi2_quantile(probability: float, dof: int) -> float:
    from scipy.stats import chi2

    return float(chi2.ppf(probability, dof))


def _weights(loss: str, s: Tensor, c2: Tensor, mu: float) -> Tensor:
    """The surrogate's weights at squared residuals ``s`` (the module's formulas)."""
    if loss == "geman_mcclure":
        return (mu * c2 / (mu * c2 + s)).square()
    lower, upper = mu / (mu + 1) * c2, (mu + 1) / mu * c2
    between = (torch.sqrt(c2 * mu * (mu + 1) / s.clamp_min(1e-300)) - mu).clamp(0.0, 1.0)
    return torch.where(s <= lower, torch.ones_like(s), torch.where(s >= upper, torch.zeros_like(s), between))


def _mu_start(loss: str, s: Tensor, c2: Tensor) -> float:
    """``mu`` at which the surrogate is convex over the residuals ``s`` (of the factors GNC
    weighs); ``-1`` where every one is under its threshold (TLS: nothing to do)."""
    if loss == "geman_mcclure":
        return float((2 * s / c2).max()) if s.numel() else -1.0
    excess = 2 * s - c2
    if not bool((excess > 0).any()):
        return -1.0
    return max(float((c2[excess > 0] / excess[excess > 0]).min()), 1e-6)


def _round(graph: PoseGraph, solver: PGOConfig, start: Tensor, w: Tensor, E: int, what: str):
    """One weighted solve (edges ``w[:E]``, priors ``w[E:]``) from ``start``, its errors named."""
    try:
        return _optimize(graph, solver, start=start, weights=(w[:E], w[E:]))
    except PoseGraphError as e:
        raise PoseGraphError(f"{graph.name}: graduated non-convexity, {what}: {e}") from e


def optimize_gnc(graph: PoseGraph, config: GNCConfig | None = None, *, known_inliers="odometry",
                 known_prior_inliers="none") -> GNCResult:
    """Minimize a truncated least squares (or Geman-McClure) cost over the poses of ``graph`` by
    graduated non-convexity (see the module): the plain optimum first, then rounds of weights and
    weighted solves.  ``known_inliers``: ``"odometry"`` (:attr:`PoseGraph.odometry`, the edges
    between consecutive poses: the default, as an odometry is rarely wrong), ``"none"``, or a
    bool tensor ``(E,)``; those keep weight 1.  Position priors are weighed as the unknown edges
    are (a GNSS fix thrown off by a reflection goes too), unless ``known_prior_inliers`` is
    ``"all"`` (an RTK fix or a surveyed marker) or a bool tensor ``(P,)``.  Where every edge and
    prior is known, the plain optimum is the answer (``reason="all_known"``).

    Gradients (where the graph's data require grad) are the last weighted solve's, with the weights
    held: each weight is a threshold decision, constant almost everywhere (TLS's binary weights
    are; the tests hold the gradient to central differences of the whole run).  A disconnected graph
    raises :class:`PoseGraphError`, as :func:`optimize` does.
    """
    config = config or GNCConfig()
    check_instance("config", config, GNCConfig, "a GNCConfig")
    check_instance("graph", graph, PoseGraph, "a PoseGraph")
    known = torch.cat((_known_inliers(graph, known_inliers), _known_prior_inliers(graph, known_prior_inliers)))
    t0 = time.perf_counter()
    with torch.no_grad():
        start = initialize(graph, config.solver.init).to(torch.float64)  # every solve's start
    init_seconds = time.perf_counter() - t0
    plain = _optimize(graph, config.solver, start=start)  # the plain optimum: every weight 1
    solver_iterations = plain.iterations
    d, k = graph.tangent_dim, (2 if graph.dim == 2 else 3)
    dtype, device = torch.float64, graph.edges.device
    c2 = torch.full((graph.num_edges,), _chi2_quantile(config.probability, d), dtype=dtype, device=device)
    c2p = torch.full((graph.num_priors,), _chi2_quantile(config.probability, k), dtype=dtype, device=device)
    unknown = ~known

    def squared(poses) -> Tensor:  # every edge's and prior's s, at poses
        with torch.no_grad():
            return graph.squared_residuals(poses.tensor().detach()).to(dtype)

    c2_all = torch.cat((c2, c2p))
    # the first weights and mu's start come from the plain optimum's residuals, or from the start's
    # where the plain solve ended above its start (Gauss-Newton thrown off by the wrong edges: on a
    # 40-pose graph with 4, from 1.4e4 to 3.7e5, and mu then depended on changes of 1e-6 in the data)
    s = squared(plain.poses if plain.cost <= plain.initial_cost else graph.poses_from_state(start))
    mu = _mu_start(config.loss, s[unknown], c2_all[unknown])
    w = torch.ones_like(s)
    history: list[GNCRecord] = []
    result, reason = plain, ("all_inliers" if bool(unknown.any()) else "all_known")
    rounds = dataclasses.replace(config.solver, relative_tolerance=max(config.round_tolerance,
                                                                      config.solver.relative_tolerance))
    E = graph.num_edges
    if mu > 0 and bool(unknown.any()):
        reason = "max_iterations"
        prev = 0.5 * float(s.sum())
        for it in range(1, config.max_iterations + 1):
            t_round = time.perf_counter()
            w = torch.where(unknown, _weights(config.loss, s, c2_all, mu), torch.ones_like(s))
            result = _round(graph, rounds, start, w, E, f"round {it} (mu {mu:.4g})")
            solver_iterations += result.iterations
            s = squared(result.poses)
            cost = 0.5 * float((w * s).sum())
            history.append(GNCRecord(it, mu, cost, int((w > 0.5).sum()), result.iterations,
                                     time.perf_counter() - t_round))
            if config.callback is not None:
                config.callback(history[-1])
            if config.loss == "tls" and bool(((w - w.round()).abs() <= config.weight_tolerance).all()):
                reason = "weights_converged"
                break
            if abs(cost - prev) / max(prev, 1e-7) < config.relative_tolerance:
                reason = "relative_tolerance"
                break
            if config.loss == "geman_mcclure" and math.isclose(mu, 1.0, abs_tol=1e-9):
                reason = "mu_converged"
                break
            prev = cost
            mu = mu * config.mu_step if config.loss == "tls" else max(1.0, mu / config.mu_step)
    if history and rounds.relative_tolerance > config.solver.relative_tolerance:  # polished with the final weights
        warm = graph.state(result.poses.tensor().detach()).to(dtype)
        polish = _round(graph, config.solver, warm, w, E, "the final polish")
        solver_iterations += polish.iterations
        result = dataclasses.replace(polish, converged=polish.converged and result.converged)
        s = squared(result.poses)
    converged = reason in ("weights_converged", "relative_tolerance", "mu_converged", "all_inliers", "all_known")
    if converged and not result.converged:  # the last solve's own answer did not settle
        converged, reason = False, result.reason
    final_cost = 0.5 * float((w * s).sum())
    return GNCResult(result.poses, result.vertex_ids, w[:E].to(graph.poses.dtype), w[:E] > 0.5,
                     w[E:].to(graph.poses.dtype), w[E:] > 0.5, final_cost, plain.initial_cost, len(history),
                     solver_iterations, converged, reason, tuple(history), init_seconds,
                     time.perf_counter() - t0 - init_seconds)
