"""Pictures of a trajectory against its reference (evo's style): the map from above with the
path, the path coloured by its error, and the error over time."""

from __future__ import annotations

import numpy as np
import torch

from ._style import PALETTE, as_numpy, require

__all__ = ["plot_kitti_error", "plot_trajectory_error", "plot_odometry"]


def _errors(estimate, reference) -> np.ndarray:
    """Per-pose position error (m) of ``estimate`` aligned to ``reference`` (evo's APE)."""
    from ..trajectory import ate

    return as_numpy(ate(reference, estimate).errors)


def _unit(err: np.ndarray) -> tuple[float, str]:
    """Centimetres for errors under half a metre (an odometry clip), metres otherwise."""
    return (100.0, "cm") if len(err) and float(np.max(err)) < 0.5 else (1.0, "m")


def plot_trajectory_error(estimate, reference, ax=None, *, cmap: str = "viridis", title: str | None = None):
    """Top view (x, y) of the reference (grey, dashed) and the estimate aligned to it, coloured
    by each pose's position error, with a colour bar (centimetres while every error is under
    half a metre, metres otherwise).  Returns ``ax``."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from ..trajectory import ate

    ax = ax if ax is not None else plt.figure(figsize=(6, 5)).add_subplot()
    result = ate(reference, estimate)
    err = as_numpy(result.errors)
    A = as_numpy(result.alignment) if result.alignment is not None else np.eye(4)
    P = as_numpy(estimate.poses)[:, :3] @ A[:3, :3].T + A[:3, 3]
    R = as_numpy(reference.poses)[:, :3]
    ax.plot(R[:, 0], R[:, 1], "--", color="0.55", lw=1.5, label="reference")
    segs = np.stack((P[:-1, :2], P[1:, :2]), 1)
    lc = LineCollection(segs, cmap=cmap, linewidths=2.5)
    lc.set_array(0.5 * (err[:-1] + err[1:]))
    ax.add_collection(lc)
    scale, unit = _unit(err)
    sc = ax.scatter(P[:, 0], P[:, 1], c=err * scale, cmap=cmap, s=18, zorder=3, label="estimate")
    lc.set_array(lc.get_array() * scale)
    lc.set_clim(sc.get_clim())
    plt.colorbar(sc, ax=ax, label=f"position error ({unit})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"ATE RMSE {result.stats['rmse'] * 100:.2f} cm")
    return ax


def plot_odometry(result, reference=None, *, scans=None, fig=None, max_points: int = 60000):
    """LiDAR odometry in three panels: the map from above with the path, 30 m around it (with
    ``scans``, every scan placed by the trajectory and coloured by its index, the scans' points
    drawn mixed; without, the local map coloured by height); the path against ``reference``
    coloured by error (when given); the error over time.  Returns the figure."""
    require("result", result, "icp", "OdometryResult", "an OdometryResult (lidar_odometry's answer)")
    import matplotlib.pyplot as plt

    fig = fig or plt.figure(figsize=(16, 5))
    n = 3 if reference is not None else 1
    ax = fig.add_subplot(1, n, 1)
    P = as_numpy(result.trajectory.poses)[:, :3]
    rng = np.random.default_rng(0)
    if scans is not None:
        from .. import lie

        per = max(1, max_points // max(len(scans), 1))
        poses = result.trajectory.poses.detach().double().cpu()
        W, k = [], []
        for i, scan in enumerate(scans):
            S = torch.as_tensor(scan, device="cpu").detach().double()[:, :3]
            S = S[torch.from_numpy(rng.choice(len(S), min(per, len(S)), replace=False))]
            W.append(lie.se3_act(poses[i].reshape(1, 7), S).numpy())
            k.append(np.full(len(S), i))
        W, k = np.concatenate(W), np.concatenate(k)
        order = rng.permutation(len(W))  # drawn mixed, so that no scan hides the ones before it
        sc = ax.scatter(W[order, 0], W[order, 1], c=k[order], cmap="viridis", s=0.4, alpha=0.6,
                        vmin=0, vmax=max(len(scans) - 1, 1), rasterized=True)
        fig.colorbar(sc, ax=ax, label="scan", fraction=0.046, pad=0.02)
        ax.set_title(f"{len(scans)} scans placed by the trajectory, from above")
    else:
        M = as_numpy(result.local_map)
        if len(M) > max_points:
            M = M[rng.choice(len(M), max_points, replace=False)]
        lo, hi = np.percentile(M[:, 2], [2, 98]) if len(M) else (0, 1)
        ax.scatter(M[:, 0], M[:, 1], c=np.clip(M[:, 2], lo, hi), cmap="terrain", s=0.3, alpha=0.7, rasterized=True)
        ax.set_title(f"local map from above ({len(result.local_map):,} voxel means)")
    ax.plot(P[:, 0], P[:, 1], "-", color="white", lw=4.5, zorder=4)  # a halo: the path over any map
    ax.plot(P[:, 0], P[:, 1], "-o", color=PALETTE[1], ms=3, lw=2, zorder=5, label="trajectory")
    ax.plot(P[:1, 0], P[:1, 1], "s", color="k", ms=6, zorder=6, label="start")
    # the path and 30 m around it, square: the map's far points (a scan reaches ~80 m) cut off
    lo, hi = P[:, :2].min(0), P[:, :2].max(0)
    half = 0.5 * float((hi - lo).max()) + 30.0
    mid = 0.5 * (lo + hi)
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="upper right", fontsize=8)
    if reference is not None:
        plot_trajectory_error(result.trajectory, reference, fig.add_subplot(1, 3, 2))
        ax3 = fig.add_subplot(1, 3, 3)
        err = _errors(result.trajectory, reference)
        t = as_numpy(result.trajectory.timestamps) if result.trajectory.timestamps is not None else np.arange(len(err))
        scale, unit = _unit(err)
        ax3.plot(t, err * scale, "-o", color=PALETTE[0], ms=3)
        ax3.set_xlabel("time (s)" if result.trajectory.timestamps is not None else "scan")
        ax3.set_ylabel(f"position error ({unit})")
        ax3.set_ylim(0, None)
        ax3.set_title("error over time")
        ax3.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_kitti_error(errors, axes=None):
    """The KITTI odometry error per segment length of one or more estimates, as grouped bars:
    ``errors`` maps a name to :func:`robojac.trajectory.kitti_error`'s result (the same lengths
    for all).  Two panels: translation (%) and rotation (deg/100 m), the overall averages in the
    legend.  ``axes``: two axes to draw in (a new figure otherwise).  Returns the two axes."""
    import matplotlib.pyplot as plt

    if not isinstance(errors, dict) or not errors:
        raise ValueError("errors: expected a dict {name: kitti_error(...)} with at least one entry")
    for name, e in errors.items():
        require(f"errors[{name!r}]", e, "trajectory", "KittiError", "a kitti_error result")
    lengths = [as_numpy(e.lengths) for e in errors.values()]
    if any(L.shape != lengths[0].shape or not np.array_equal(L, lengths[0]) for L in lengths):
        raise ValueError("errors: expected the same segment lengths in every result")
    if axes is None:
        axes = plt.figure(figsize=(11, 4.2)).subplots(1, 2)
    L = lengths[0]
    width = 0.8 * float(np.diff(L).min() if len(L) > 1 else L[0]) / len(errors)
    for k, (name, e) in enumerate(errors.items()):
        shift = (k - (len(errors) - 1) / 2) * width
        color = PALETTE[k % len(PALETTE)]
        axes[0].bar(L + shift, as_numpy(e.translation_percent_by_length), width, color=color,
                    label=f"{name}: {e.translation_percent:.3f}%")
        axes[1].bar(L + shift, as_numpy(e.rotation_deg_per_100m_by_length), width, color=color,
                    label=f"{name}: {e.rotation_deg_per_100m:.4f} deg/100m")
    for ax, what in ((axes[0], "translation error (%)"), (axes[1], "rotation error (deg / 100 m)")):
        ax.set_xticks(L)
        ax.set_xlabel("segment length (m)")
        ax.set_ylabel(what)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_title("KITTI translation error per segment length", fontsize=10)
    axes[1].set_title("KITTI rotation error per segment length", fontsize=10)
    return axes
