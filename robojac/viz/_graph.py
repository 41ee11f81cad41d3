"""Pictures of pose graphs and trajectories: the graph (edges coloured by residual), before
and after optimization, the cost per iteration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ._style import PALETTE, as_numpy, equal_3d, new_axes, require

__all__ = ["plot_pose_graph", "plot_graph_before_after", "plot_cost_history", "plot_trajectories"]


def _on_graph(graph, poses) -> torch.Tensor:
    """``poses`` as a float64 tensor on the graph's device, for its residuals."""
    return torch.from_numpy(as_numpy(poses)).to(graph.edges.device)


def _edge_segments(P: np.ndarray, edges: np.ndarray, dims: int) -> np.ndarray:
    return np.stack((P[edges[:, 0], :dims], P[edges[:, 1], :dims]), axis=1)


def _priors(ax, graph, X, P: np.ndarray, dims: int, coll_cls, colour: dict | None) -> None:
    """The position priors: crosses at the measured positions, segments to the points they measure."""
    def padded(a: np.ndarray) -> np.ndarray:  # a planar graph's points, in its plane
        return np.concatenate((a, np.zeros((len(a), max(0, dims - a.shape[1])))), 1)[:, :dims]

    fixes = padded(as_numpy(graph.prior_positions))
    with torch.no_grad():
        points = padded(as_numpy(graph.prior_points(_on_graph(graph, X))))  # T a: what each fix measures
    segs = np.stack((points, fixes), axis=1)
    if colour is None:
        lines = coll_cls(segs, colors=PALETTE[3], linewidths=0.8, alpha=0.8)
    else:
        with torch.no_grad():
            chi2 = graph.prior_residuals(_on_graph(graph, X)).square().sum(-1).cpu().numpy()
        lines = coll_cls(segs, linewidths=0.8, alpha=0.9, **colour)
        lines.set_array(np.clip(chi2, colour["norm"].vmin, None))
    ax.add_collection(lines) if dims == 2 else ax.add_collection3d(lines)
    ax.scatter(*fixes.T, marker="x", s=10, linewidths=0.8, color=PALETTE[3], label="position priors")


def plot_pose_graph(graph, poses=None, ax=None, *, view: str = "auto", color_by_residual: bool = True,
                    cmap: str = "RdYlGn_r", vmax: float | None = None, title: str | None = None, colorbar: bool = True,
                    covariances=None, sigma: float = 3.0, ellipse_every: int = 1):
    """Draw ``graph`` at ``poses`` (default its own): the odometry chain as a line, the other
    edges as thin segments coloured by their chi^2 = e^T Omega e (log scale).  Returns ``ax``.

    ``covariances``: the poses' marginal covariances, ``posegraph.covariances(graph, poses)``
    (``(N, d, d)``, each in its pose's frame), drawn as the ``sigma``-ellipses of the positions
    in the x-y plane (a 2D view), every ``ellipse_every``-th pose.  A graph's position priors
    (GNSS fixes) are drawn as crosses, each joined to its pose by a segment coloured by its chi^2
    on the edges' scale (a fix the answer leaves far away shows red)."""
    require("graph", graph, "posegraph", "PoseGraph", "a PoseGraph")
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    if view == "auto":
        view = "2d" if graph.dim == 2 else "3d"
    if covariances is not None and view != "2d":
        raise ValueError("covariances: the ellipses are drawn in a 2D view (view='2d'), this one is 3D")
    ax = ax if ax is not None else new_axes(view, figsize=(6, 5.5))
    X = graph.poses if poses is None else poses
    P = as_numpy(X)[:, :3]
    e = graph.edges.cpu().numpy()
    dims = 2 if view == "2d" else 3
    odo = graph.odometry.cpu().numpy()
    if color_by_residual:
        with torch.no_grad():
            chi2 = graph.chi2(_on_graph(graph, X)).cpu().numpy()
        top = vmax or float(chi2.max()) + 1e-12
        low = max(float(np.percentile(chi2, 5)), top * 1e-6)  # six decades, green (good) to red (bad)
        chi2 = np.clip(chi2, low, None)
        norm = LogNorm(vmin=low, vmax=top)
    segs_loop = _edge_segments(P, e[~odo], dims)
    segs_odo = _edge_segments(P, e[odo], dims)
    if dims == 2:
        coll_cls = LineCollection
    else:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection as coll_cls
    kw = dict(linewidths=0.6, alpha=0.8)
    if color_by_residual:
        loops = coll_cls(segs_loop, cmap=cmap, norm=norm, **kw)
        loops.set_array(chi2[~odo])
        odo_c = coll_cls(segs_odo, cmap=cmap, norm=norm, linewidths=1.2)
        odo_c.set_array(chi2[odo])
    else:
        loops = coll_cls(segs_loop, colors=PALETTE[1], **kw)
        odo_c = coll_cls(segs_odo, colors=PALETTE[0], linewidths=1.2)
    drawn = [c for c, segs in ((loops, segs_loop), (odo_c, segs_odo)) if len(segs)]  # an empty 3D collection fails
    for c in drawn:
        ax.add_collection(c) if dims == 2 else ax.add_collection3d(c)
    if color_by_residual and colorbar and drawn:
        ax.figure.colorbar(drawn[-1], ax=ax, fraction=0.046, pad=0.04, label="edge chi^2 = e^T Omega e")
    if graph.num_priors:
        _priors(ax, graph, X, P, dims, coll_cls, dict(cmap=cmap, norm=norm) if color_by_residual else None)
    if covariances is not None:
        _ellipses(ax, as_numpy(X), as_numpy(covariances, "covariances"), graph, sigma, ellipse_every)
    if dims == 2:
        ax.set_xlim(P[:, 0].min() - 1, P[:, 0].max() + 1)
        ax.set_ylim(P[:, 1].min() - 1, P[:, 1].max() + 1)
        ax.set_aspect("equal", adjustable="box")
    else:
        equal_3d(ax, P)
    ax.set_title(title or f"{graph.name}: {graph.num_poses} poses, {graph.num_edges} edges", fontsize=10)
    return ax


def _ellipses(ax, X: np.ndarray, C: np.ndarray, graph, sigma: float, every: int) -> None:
    """The positions' ``sigma``-ellipses in the x-y plane: each pose's translation block turned
    into the world's axes (``R C_tt R^T``; ``s^2 R C_tt R^T`` for a similarity, whose body-frame
    step ``rho`` moves its position by ``s R rho``), then its x-y part."""
    from matplotlib.collections import EllipseCollection

    from .. import lie
    from .._config import check_int, check_real

    d = graph.tangent_dim
    if C.shape != (len(X), d, d):
        raise ValueError(f"covariances: expected ({len(X)}, {d}, {d}), one per pose (posegraph.covariances), "
                         f"got {C.shape}")
    check_real("plot_pose_graph", "sigma", sigma, positive=True)
    check_int("plot_pose_graph", "ellipse_every", every, minimum=1)
    R = lie.quat_to_matrix(torch.from_numpy(np.ascontiguousarray(X[:, 3:7]))).numpy()
    Ct = np.zeros((len(X), 3, 3))
    k = 2 if graph.dim == 2 else 3
    Ct[:, :k, :k] = C[:, :k, :k]
    if graph.similarity:
        Ct *= np.square(X[:, 7])[:, None, None]
    W = (R @ Ct @ np.swapaxes(R, -1, -2))[::every, :2, :2]
    lam, vec = np.linalg.eigh(W)
    lam = np.clip(lam, 0.0, None)
    angle = np.degrees(np.arctan2(vec[:, 1, 1], vec[:, 0, 1]))  # the larger axis
    ax.add_collection(EllipseCollection(2 * sigma * np.sqrt(lam[:, 1]), 2 * sigma * np.sqrt(lam[:, 0]), angle,
                                        units="xy", offsets=X[::every, :2], offset_transform=ax.transData,
                                        facecolors=PALETTE[3], edgecolors=PALETTE[3], alpha=0.35, linewidths=0.5))


def plot_graph_before_after(graph, before, after, *, costs: tuple[float, float] | None = None, fig=None):
    """Two panels, the same colour scale: the graph at ``before`` and at ``after``.  Returns the figure."""
    require("graph", graph, "posegraph", "PoseGraph", "a PoseGraph")
    import matplotlib.pyplot as plt

    view = "2d" if graph.dim == 2 else "3d"
    fig = fig or plt.figure(figsize=(12, 5.5))
    with torch.no_grad():
        vmax = float(max(graph.chi2(_on_graph(graph, before)).max(), graph.chi2(_on_graph(graph, after)).max()))
    for k, (poses, label) in enumerate(((before, "before"), (after, "after"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d" if view == "3d" else None)
        cost = "" if costs is None else f", cost {costs[k]:.6g}"
        plot_pose_graph(graph, poses, ax, vmax=vmax, title=f"{graph.name} {label}{cost}", colorbar=k == 1)
    fig.tight_layout()
    return fig


def plot_cost_history(results: Mapping[str, object] | Sequence[object], ax=None, *, optimum: float | None = None):
    """Cost per iteration of one or more optimization results (log scale).  Returns ``ax``."""
    import matplotlib.pyplot as plt

    if isinstance(results, Mapping):
        items = list(results.items())
    elif isinstance(results, Sequence) and not isinstance(results, (str, bytes)):
        items = [(f"run {k}", r) for k, r in enumerate(results)]
    else:
        raise TypeError(f"results: expected {{name: result}} or a list of solver results, got {type(results).__name__}")
    for label, r in items:
        if not (hasattr(r, "initial_cost") and hasattr(r, "history")):
            raise TypeError(f"results[{label!r}]: expected a solver result (with initial_cost and history), "
                            f"got {type(r).__name__}")
    ax = ax if ax is not None else plt.figure(figsize=(5.5, 4)).add_subplot()
    for k, (label, r) in enumerate(items):
        costs = [r.initial_cost] + [h.cost for h in r.history]
        ax.semilogy(range(len(costs)), costs, "o-", ms=4, color=PALETTE[k % len(PALETTE)], label=label)
    if optimum is not None:
        ax.axhline(optimum, color="black", ls="--", lw=1, label=f"reference optimum {optimum:.6g}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost 0.5 sum e^T Omega e")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_trajectories(trajectories: Mapping[str, object], ax=None, *, view: str = "2d"):
    """Positions of several :class:`~robojac.trajectory.Trajectory` (or ``(N, 7)`` poses)."""
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise TypeError(f"trajectories: expected a non-empty {{name: Trajectory or poses (N, 7)}}, "
                        f"got {type(trajectories).__name__}")
    ax = ax if ax is not None else new_axes(view)
    dims = 2 if view == "2d" else 3
    allp = []
    for k, (label, t) in enumerate(trajectories.items()):
        P = as_numpy(getattr(t, "poses", t), f"trajectories[{label!r}]")
        if P.ndim != 2 or P.shape[-1] < 3:
            raise ValueError(f"trajectories[{label!r}]: expected poses (N, 7) or positions (N, 3), got shape {P.shape}")
        P = P[:, :3]
        allp.append(P)
        ax.plot(*P[:, :dims].T, color=PALETTE[k % len(PALETTE)], lw=1.5, label=label)
    ax.legend(fontsize=8)
    if dims == 2:
        ax.set_aspect("equal", adjustable="datalim")
    else:
        equal_3d(ax, np.concatenate(allp))
    return ax
