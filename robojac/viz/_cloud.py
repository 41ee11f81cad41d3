"""Pictures of point-cloud registration: the clouds before and after alignment, and many scans
merged by multiway registration."""

from __future__ import annotations

import numpy as np
import torch

from ._style import as_numpy, equal_3d, require

__all__ = ["plot_multiway", "plot_observability", "plot_registration", "plot_registration_before_after", "plot_scans"]


def _np(x, max_points: int, seed: int = 0, name: str = "points") -> np.ndarray:
    """``x`` as numpy points ``(N, 3)``, at most ``max_points`` rows (a seeded random subset)."""
    x = as_numpy(x, name)
    if x.ndim != 2 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected points (N, 3), got shape {x.shape}")
    if x.shape[0] > max_points:
        x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points].numpy()]
    return x


def plot_registration(source, target, T_target_source=None, ax=None, *, title: str | None = None,
                      max_points: int = 6000, view: tuple[float, float] | None = None, vertical_axis: str = "z"):
    """Target (grey) and source mapped by ``T_target_source`` (orange) in one 3D view; returns ``ax``."""
    import matplotlib.pyplot as plt

    from .. import lie

    ax = ax if ax is not None else plt.figure(figsize=(5.5, 5.5)).add_subplot(projection="3d")
    src = torch.from_numpy(_np(source, max_points, 1, "source"))
    if T_target_source is not None:
        T = torch.from_numpy(as_numpy(T_target_source))  # on the host, detached (a differentiable answer too)
        T = lie.se3_tensor(T, name="T_target_source")  # checked: NaN or a non-rigid 4x4 is named
        src = lie.se3_act(T.reshape(1, 7), src)
    tgt = _np(target, max_points, 2, "target")
    s = src.numpy()
    ax.scatter(*tgt.T, s=1.5, c="#7f8c8d", alpha=0.45, label="target", depthshade=False)
    ax.scatter(*s.T, s=1.5, c="#e67e22", alpha=0.6, label="source", depthshade=False)
    equal_3d(ax, np.concatenate((tgt, s)))
    elev, azim = view if view is not None else (20.0, -60.0)
    ax.view_init(elev, azim, vertical_axis=vertical_axis)
    ax.set_axis_off()
    ax.legend(loc="upper left", fontsize=8, markerscale=6)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_registration_before_after(source, target, T_init, T_result, *, titles=("before", "after"),
                                   view: tuple[float, float] | None = None, vertical_axis: str = "z", fig=None):
    """Two views: source at ``T_init`` and at ``T_result`` over the target.  Returns the figure."""
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(11, 5.5))
    for k, (T, title) in enumerate(((T_init, titles[0]), (T_result, titles[1]))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        plot_registration(source, target, T, ax, title=title, view=view, vertical_axis=vertical_axis)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.92, wspace=0.0)  # 3D axes: tight_layout clips titles
    return fig


def _scan_colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(n)]


def plot_scans(clouds, poses=None, ax=None, *, title: str | None = None, max_points: int = 2500,
               view: tuple[float, float] | None = None, vertical_axis: str = "z", labels=None):
    """Several scans, each in its own colour, placed by ``poses`` (``T_world_scan (N, 7)``; as
    given without).  Returns ``ax``."""
    import matplotlib.pyplot as plt

    from .. import lie

    if isinstance(clouds, torch.Tensor) or not hasattr(clouds, "__len__"):
        raise TypeError(f"clouds: expected a list of point clouds (N_i, 3), got {type(clouds).__name__}")
    if len(clouds) == 0:
        raise ValueError("clouds: expected at least one point cloud to draw, got none")
    if poses is not None and len(poses) != len(clouds):
        raise ValueError(f"poses: expected {len(clouds)} poses (one per cloud), got {len(poses)}")
    ax = ax if ax is not None else plt.figure(figsize=(5.5, 5.5)).add_subplot(projection="3d")
    colours, shown = _scan_colours(len(clouds)), []
    for k, c in enumerate(clouds):
        p = torch.from_numpy(_np(c, max_points, k))
        if poses is not None:
            P = poses[k].as_subclass(torch.Tensor) if hasattr(poses[k], "ltype") else poses[k]
            p = lie.se3_act(P.detach().double().cpu().reshape(1, 7), p)
        p = p.numpy()
        shown.append(p)
        ax.scatter(*p.T, s=1.0, color=colours[k], alpha=0.6, depthshade=False,
                   label=(labels[k] if labels is not None else f"scan {k}"))
    equal_3d(ax, np.concatenate(shown))
    elev, azim = view if view is not None else (20.0, -60.0)
    ax.view_init(elev, azim, vertical_axis=vertical_axis)
    ax.set_axis_off()
    ax.legend(loc="upper left", fontsize=7, markerscale=6, ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_multiway(clouds, result, *, labels=None, vertical_axis: str = "z", fig=None):
    """A multiway registration in three panels: the scans as given (their raw frames), the
    merged model coloured by scan, and the pose graph of the scans, each drawn at its registered
    centroid (odometry edges between consecutive scans, loop closures dashed, pruned pairs
    red).  Returns the figure."""
    require("result", result, "icp", "MultiwayResult", "a MultiwayResult (multiway_registration's answer)")
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(16, 5.5))
    plot_scans(clouds, None, fig.add_subplot(1, 3, 1, projection="3d"), title="as given (raw frames)",
               vertical_axis=vertical_axis, labels=labels)
    plot_scans(clouds, result.poses, fig.add_subplot(1, 3, 2, projection="3d"), title="registered",
               vertical_axis=vertical_axis, labels=labels)
    ax = fig.add_subplot(1, 3, 3, projection="3d")
    from .. import lie

    poses = result.poses.detach().double().cpu()
    P = np.stack([lie.se3_act(poses[k].reshape(1, 7), torch.from_numpy(_np(c, 5000, k))).mean(0).numpy()
                  for k, c in enumerate(clouds)])
    colours = _scan_colours(len(clouds))
    for (i, j), kind in [(e, "kept") for e in result.kept] + [(e, "pruned") for e in result.pruned]:
        seg = np.stack((P[i], P[j]))
        style = dict(color="#c0392b", lw=1.5) if kind == "pruned" else \
            dict(color="0.3", lw=1.2, ls="-" if j == i + 1 else "--")
        ax.plot(*seg.T, **style)
    for k, p in enumerate(P):
        ax.scatter(*p, color=colours[k], s=40, depthshade=False)
        ax.text(*p, f" {labels[k] if labels is not None else k}", fontsize=7)
    equal_3d(ax, P)
    ax.view_init(20.0, -60.0, vertical_axis=vertical_axis)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    ax.set_title(f"pose graph: {len(result.kept)} pairs kept, {len(result.pruned)} pruned", fontsize=10)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.92, wspace=0.0)
    return fig


def plot_observability(results, ax=None, *, title: str | None = "How much of each motion the surfaces see"):
    """The six shares of :func:`robojac.icp.observability` for ``{name: Observability}``,
    weakest first, on a log scale, with each one's degeneracy threshold as a dashed line: a
    bar below it is a motion the alignment cannot see.  Returns ``ax``."""
    import matplotlib.pyplot as plt

    from ._style import PALETTE

    if not isinstance(results, dict) or not results:
        raise ValueError("results: expected a non-empty {name: Observability} dict")
    for name, o in results.items():
        if not hasattr(o, "eigenvalues") or tuple(o.eigenvalues.shape) != (6,):
            raise ValueError(f"results[{name!r}]: expected an Observability (robojac.icp.observability), "
                             f"got {type(o).__name__}")
    ax = ax if ax is not None else plt.figure(figsize=(7, 3.4)).add_subplot()
    width = 0.8 / len(results)
    floor = 1e-5  # a share of exactly 0 (no correspondences) still shows as a bar
    for k, (name, o) in enumerate(results.items()):
        shares = np.maximum(as_numpy(o.eigenvalues), floor)
        x = np.arange(6) + (k - (len(results) - 1) / 2) * width
        colour = PALETTE[k % len(PALETTE)]
        label = f"{name} ({'degenerate' if o.degenerate else 'all seen'})"
        ax.bar(x, shares, width=width, color=colour, label=label)
        ax.hlines(o.threshold, x[0] - width / 2, x[-1] + width / 2, colors="#555555", linestyles="dashed", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xticks(np.arange(6), [f"direction {i + 1}" for i in range(6)], fontsize=8)
    ax.set_ylabel("share of the motion seen")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax
