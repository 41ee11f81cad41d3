"""A planned trajectory (:func:`robojac.motion.trajopt`): the arm along it among the obstacles,
and its joints, speeds and clearance over time."""

from __future__ import annotations

import numpy as np
import torch

from ._arm import plot_arm
from ._collision import draw_obstacles
from ._style import PALETTE, equal_3d, require

__all__ = ["plot_trajopt"]


def plot_trajopt(chain, result, *, avoid=None, frame: str | None = None, snapshots: int = 5, fig=None,
                 title: str | None = None, floor_extent: float = 1.0, view: tuple[float, float] | None = None):
    """One trajectory of a :class:`~robojac.motion.TrajOptResult` (``q (T, dof)``; index a
    batch first): on the left the arm at ``snapshots`` waypoints (lighter to darker) and the path
    of ``frame`` (default: the chain's tip) through every waypoint, among the obstacles of
    ``avoid`` (an :class:`~robojac.ik.CollisionTask`), whose closest approach is marked; on the
    right the joint values, their speeds as a fraction of the velocity limits, and (with
    ``avoid``) the clearance, each over time.  ``view``: the 3D view's ``(elevation, azimuth)``
    in degrees (matplotlib's default when ``None``).  Returns the figure."""
    import matplotlib.pyplot as plt

    require("chain", chain, "kinematics", "Chain", "a robojac Chain")
    require("result", result, "motion", "TrajOptResult", "a robojac.motion.TrajOptResult")
    if avoid is not None:
        require("avoid", avoid, "ik", "CollisionTask", "an ik.CollisionTask or None")
    q = result.q.detach().cpu().double()
    if q.dim() != 2:
        raise ValueError(f"result: expected one trajectory, q (T, dof); got q of shape {tuple(q.shape)} (index the "
                         "batch first: a TrajOptResult's fields are batched alike, so pass q's trajectory alone "
                         "through dataclasses.replace or plot each problem from its own result)")
    if not isinstance(snapshots, int) or snapshots < 2:
        raise ValueError(f"snapshots: expected an int >= 2, got {snapshots!r}")
    t = result.times.detach().cpu().double().numpy()
    frame = frame or chain.tip
    fig = fig if fig is not None else plt.figure(figsize=(13, 6.5))
    grid = fig.add_gridspec(3, 2, width_ratios=(1.25, 1))
    ax = fig.add_subplot(grid[:, 0], projection="3d")
    T = len(q)
    keep = np.unique(np.linspace(0, T - 1, snapshots).round().astype(int))
    for k, i in enumerate(keep):
        shade = 0.25 + 0.75 * k / max(len(keep) - 1, 1)
        plot_arm(chain, q[i], ax, view="3d", frame=frame, color=plt.get_cmap("Blues")(shade), alpha=0.9,
                 show_frame_axes=i in (keep[0], keep[-1]), axis_length=0.06)
    with torch.no_grad():
        P = chain.forward_kinematics_tensor(q.to(chain.lower.device), [frame])[:, 0, :3].cpu().numpy()
    ax.plot(*P.T, color=PALETTE[1], lw=2, label=f"{frame} path")
    ax.scatter(*P[0], color=PALETTE[2], s=40, label="start")
    ax.scatter(*P[-1], color=PALETTE[3], s=40, marker="D", label="goal")
    pts = [P]
    clearance = None
    if avoid is not None:
        if avoid.obstacles is not None:
            pts += draw_obstacles(ax, avoid.obstacles, np.zeros(3), floor_extent)
        with torch.no_grad():
            clearance = avoid.distances(q.to(avoid.model.radii.device)[None])[0].amin(-1).cpu().double().numpy()
        k = int(np.argmin(clearance))
        ax.scatter(*P[k], color="#d62728", s=60, marker="x",
                   label=f"closest: {clearance[k] * 100:.1f} cm (t = {t[k]:.2f} s)")
    equal_3d(ax, np.concatenate([p.reshape(-1, 3) for p in pts]))
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "trajectory", fontsize=11)
    if view is not None:
        ax.view_init(elev=view[0], azim=view[1])

    names = list(chain.joint_names)
    a1 = fig.add_subplot(grid[0, 1])
    for j in range(q.shape[1]):
        a1.plot(t, q[:, j].numpy(), color=PALETTE[j % len(PALETTE)], label=names[j])
    a1.set_ylabel("joint [rad or m]")
    a1.legend(fontsize=6, ncol=2, loc="best")
    a2 = fig.add_subplot(grid[1, 1], sharex=a1)
    v = np.abs(np.diff(q.numpy(), axis=0)) / np.diff(t)[:, None]
    limit = chain.velocity_limits.detach().cpu().double().numpy()
    ratio = np.where(np.isfinite(limit), v / limit, 0.0)
    tm = 0.5 * (t[1:] + t[:-1])
    for j in range(q.shape[1]):
        a2.plot(tm, ratio[:, j], color=PALETTE[j % len(PALETTE)])
    a2.axhline(1.0, color="#d62728", ls="--", lw=1, label="velocity limit")
    a2.set_ylabel("|speed| / limit")
    a2.legend(fontsize=7, loc="upper right")
    a3 = fig.add_subplot(grid[2, 1], sharex=a1)
    if clearance is not None:
        a3.plot(t, clearance * 100, "o-", ms=3, color=PALETTE[0], label="closest distance")
        a3.axhline(avoid.margin * 100, color="#2ca02c", ls="--", lw=1, label=f"margin ({avoid.margin * 100:.0f} cm)")
        a3.axhspan(min(-1.0, float(clearance.min()) * 110), 0.0, color="#d62728", alpha=0.1, label="contact")
        a3.set_ylabel("clearance [cm]")
        a3.legend(fontsize=7, loc="upper right")
    else:
        a3.text(0.5, 0.5, "no obstacles (avoid=None)", ha="center", va="center", transform=a3.transAxes)
        a3.set_yticks([])
    a3.set_xlabel("time [s]")
    fig.tight_layout()
    return fig
