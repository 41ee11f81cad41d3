"""Pictures of arms: a configuration, a trajectory strip and GIF, the end-effector path, and
which joint moves which output (a Jacobian heatmap)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._files import atomic_path

from ._style import PALETTE, as_numpy, equal_3d, new_axes, require

__all__ = ["plot_arm", "plot_trajectory_strip", "animate_arm", "plot_end_effector_path", "plot_jacobian_heatmap"]


def _poses(chain, q) -> dict[str, np.ndarray]:
    q = torch.as_tensor(q, dtype=torch.float64, device=chain.lower.device)
    chain.check_configuration(q)  # a q of the wrong length is named as forward kinematics names it
    with torch.no_grad():
        X = chain.forward_kinematics_tensor(q.reshape(-1, chain.dof))[0]
    return {name: X[i].cpu().numpy() for i, name in enumerate(chain.frame_names)}


def _is_planar(chain, q) -> bool:
    poses = _poses(chain, q)
    z = np.array([p[2] for p in poses.values()])
    axes_z = [j.axis for j in chain.joints if j.type.movable]
    return bool(np.abs(z).max() < 1e-9 and all(abs(abs(a[2]) - 1) < 1e-9 for a in axes_z))


def _rotation(quat: np.ndarray) -> np.ndarray:
    x, y, z, w = quat
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def plot_arm(chain, q, ax=None, *, view: str = "auto", frame: str | None = None, color: str | None = None,
             alpha: float = 1.0, label: str | None = None, show_frame_axes: bool = True, axis_length: float | None = None,
             target=None, annotate: bool = False, center_of_mass: bool = False):
    """Draw the arm at configuration ``q`` (``(dof,)``) as a stick figure; returns ``ax``.

    Links are segments between parent and child frame origins, joints are dots, the base a
    square, and ``frame`` (default: the tip of a serial chain; or several names, a humanoid's
    hands and feet) gets its x/y/z axes in red/green/blue.  ``view`` is ``"2d"`` (the xy
    plane), ``"3d"``, or ``"auto"`` (2d for a planar arm).  ``target`` (a point or pose
    ``[x, y, z, ...]``, or several as rows ``(K, 3|7)``) is drawn as a star each.
    ``center_of_mass=True`` marks the chain's centre of mass (a black and white disc; in 3d with
    a dotted drop to the height of the lowest frame, where a standing robot's feet are).  The
    six joints of a floating base (:meth:`~robojac.kinematics.Chain.with_floating_base`) are
    not drawn: the base's square is where the robot's own root is.
    """
    require("chain", chain, "kinematics", "Chain", "a robojac Chain")
    if view == "auto":
        view = "2d" if _is_planar(chain, q) else "3d"
    if view not in ("2d", "3d"):
        raise ValueError(f"view: expected '2d', '3d' or 'auto', got {view!r}")
    ax = ax if ax is not None else new_axes(view)
    color = color or PALETTE[0]
    poses = _poses(chain, q)
    names = chain.frame_names
    pts = np.array([poses[n][:3] for n in names])
    dims = 2 if view == "2d" else 3
    virtual = {i for i, j in enumerate(chain.tree.joint_of) if j is not None and j.name in chain.floating_joints}
    base = max(virtual) if virtual else 0
    drawn = pts[[i for i in range(len(pts)) if not virtual or (i not in virtual and i > 0) or i == base]]
    reach = float(np.ptp(drawn, axis=0).max()) or 1.0
    first = True
    for i, parent in enumerate(chain.tree.parent):
        if parent < 0 or i in virtual:
            continue
        seg = pts[[parent, i], :dims].T
        ax.plot(*seg, color=color, lw=3, alpha=alpha, solid_capstyle="round", label=label if first else None)
        first = False
    movable = [i for i, j in enumerate(chain.tree.joint_of) if j is not None and j.type.movable and i not in virtual]
    ax.scatter(*pts[movable, :dims].T, s=40, color="white", edgecolors=color, linewidths=2, zorder=3, alpha=alpha)
    ax.scatter(*pts[base : base + 1, :dims].T, s=120, marker="s", color="#444444", zorder=3, alpha=alpha)
    if center_of_mass:
        with torch.no_grad():
            c = chain.center_of_mass(torch.as_tensor(q, dtype=torch.float64, device=chain.lower.device)).cpu().numpy()
        if dims == 3:
            floor = drawn[:, 2].min()
            ax.plot([c[0], c[0]], [c[1], c[1]], [c[2], floor], color="black", lw=1, ls=":", alpha=alpha)
            ax.scatter(c[0], c[1], floor, marker="x", s=60, color="black", alpha=alpha, zorder=4)
        ax.scatter(*c[:dims], s=160, color="white", edgecolors="black", linewidths=2, zorder=5, alpha=alpha,
                   label="centre of mass")
        ax.scatter(*c[:dims], s=30, color="black", zorder=6, alpha=alpha)
    if annotate:
        for i in movable:
            ax.text(*pts[i, :dims], f" {chain.tree.joint_of[i].name}", fontsize=7, alpha=alpha)
    if show_frame_axes:
        if frame is None:
            try:
                frame = chain.tip
            except ValueError:  # a tree: no tip to show
                frame = ()
        for tip in [frame] if isinstance(frame, str) else frame:
            if tip not in poses:
                raise ValueError(f"frame: {tip!r} is not a frame of the chain; frames: {names}")
            X = poses[tip]
            R = _rotation(X[3:])
            length = axis_length or 0.15 * reach
            for k, c in enumerate(("#d62728", "#2ca02c", "#1f77b4")):
                end = X[:3] + length * R[:, k]
                ax.plot(*np.stack((X[:dims], end[:dims])).T, color=c, lw=2, alpha=alpha)
    if target is not None:
        t = np.asarray(torch.as_tensor(target, device="cpu").detach(), dtype=float)
        t = t.reshape(-1, t.shape[-1]) if t.ndim > 1 else t.reshape(1, -1)
        ax.scatter(*t[:, :dims].T, marker="*", s=220, color="#ff7f0e", edgecolors="black", zorder=4, label="target")
    if view == "2d":
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
    else:
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.set_zlabel("z [m]")
        equal_3d(ax, drawn)
    return ax


def plot_end_effector_path(chain, qs, ax=None, *, frame: str | None = None, view: str = "auto", cmap: str = "viridis"):
    """The path of ``frame`` over configurations ``qs`` (``(T, dof)``), coloured by time."""
    require("chain", chain, "kinematics", "Chain", "a robojac Chain")
    qs = torch.as_tensor(qs, dtype=torch.float64, device="cpu")  # pictures: host values
    if view == "auto":
        view = "2d" if _is_planar(chain, qs[0]) else "3d"
    ax = ax if ax is not None else new_axes(view)
    frame = frame or chain.tip
    with torch.no_grad():
        P = chain.forward_kinematics(qs.to(chain.lower.device), frame).tensor()[:, :3].cpu().numpy()
    dims = 2 if view == "2d" else 3
    import matplotlib.pyplot as plt

    colors = plt.get_cmap(cmap)(np.linspace(0, 1, len(P)))
    for i in range(len(P) - 1):
        ax.plot(*P[i : i + 2, :dims].T, color=colors[i], lw=2)
    ax.scatter(*P[0, :dims], color=colors[0], s=30, label="start")
    ax.scatter(*P[-1, :dims], color=colors[-1], s=30, marker="D", label="end")
    if view == "2d":
        ax.set_aspect("equal", adjustable="box")
    return ax


def plot_trajectory_strip(chain, qs, *, num_frames: int = 6, view: str = "auto", targets=None, fig=None,
                          title: str | None = None):
    """A row of panels showing the arm at ``num_frames`` evenly spaced steps of ``qs``.

    Each panel also ghosts the earlier steps and traces the end-effector path so far.
    Returns the figure.
    """
    require("chain", chain, "kinematics", "Chain", "a robojac Chain")
    import matplotlib.pyplot as plt

    qs = torch.as_tensor(qs, dtype=torch.float64, device="cpu")  # pictures: host values
    T = qs.shape[0]
    num_frames = max(1, min(num_frames, T))
    steps = np.linspace(0, T - 1, num_frames).round().astype(int)
    if view == "auto":
        view = "2d" if _is_planar(chain, qs[0]) else "3d"
    fig = fig or plt.figure(figsize=(3.2 * num_frames, 3.4))
    all_pts = np.concatenate([np.array([p[:3] for p in _poses(chain, q).values()]) for q in qs[steps]])
    lo, hi = all_pts.min(0), all_pts.max(0)
    pad = 0.1 * float((hi - lo).max() or 1.0)
    for k, s in enumerate(steps):
        ax = fig.add_subplot(1, num_frames, k + 1, projection="3d" if view == "3d" else None)
        for g in steps[:k]:
            plot_arm(chain, qs[g], ax, view=view, alpha=0.15, show_frame_axes=False)
        if s > 0:
            plot_end_effector_path(chain, qs[: s + 1], ax, view=view)
        tgt = None if targets is None else torch.as_tensor(targets, device="cpu")[s]
        plot_arm(chain, qs[s], ax, view=view, target=tgt)
        ax.set_title(f"step {s}", fontsize=9)
        if view == "2d":
            ax.set_xlim(lo[0] - pad, hi[0] + pad)
            ax.set_ylim(lo[1] - pad, hi[1] + pad)
        else:
            equal_3d(ax, np.stack((lo - pad, hi + pad)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def animate_arm(chain, qs, path, *, fps: int = 15, view: str = "auto", targets=None, trail: bool = True,
                title: str | None = None) -> str:
    """Write an animated GIF of the arm following ``qs`` (``(T, dof)``) to ``path``; returns it."""
    require("chain", chain, "kinematics", "Chain", "a robojac Chain")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    qs = torch.as_tensor(qs, dtype=torch.float64, device="cpu")  # pictures: host values
    if view == "auto":
        view = "2d" if _is_planar(chain, qs[0]) else "3d"
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(projection="3d" if view == "3d" else None)
    all_pts = np.concatenate([np.array([p[:3] for p in _poses(chain, q).values()]) for q in qs[:: max(1, len(qs) // 20)]])
    lo, hi = all_pts.min(0), all_pts.max(0)
    pad = 0.15 * float((hi - lo).max() or 1.0)

    def draw(i):
        ax.cla()
        if trail and i > 0:
            plot_end_effector_path(chain, qs[: i + 1], ax, view=view)
        tgt = None if targets is None else torch.as_tensor(targets, device="cpu")[i]
        plot_arm(chain, qs[i], ax, view=view, target=tgt)
        if view == "2d":
            ax.set_xlim(lo[0] - pad, hi[0] + pad)
            ax.set_ylim(lo[1] - pad, hi[1] + pad)
        else:
            equal_3d(ax, np.stack((lo - pad, hi + pad)))
        ax.set_title(title or f"{chain.name}  step {i + 1}/{len(qs)}", fontsize=9)

    anim = FuncAnimation(fig, draw, frames=len(qs))
    with atomic_path(path) as tmp:
        anim.save(str(tmp), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return str(path)


def plot_jacobian_heatmap(J, ax=None, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                          title: str | None = None, annotate: bool = True, cmap: str = "RdBu_r"):
    """A ``(m, n)`` Jacobian as a diverging heatmap: which input moves which output, and how much.

    For a chain Jacobian the rows default to ``vx vy vz wx wy wz``; pass ``col_labels`` (for
    example ``chain.joint_names``).  Returns ``ax``.
    """
    import matplotlib.pyplot as plt

    J = as_numpy(J, "J")  # on the host, detached, float64 (from any dtype: numpy has no bfloat16)
    if J.ndim != 2:
        raise ValueError(f"J: expected a 2-D (outputs, inputs) matrix, got shape {J.shape}")
    ax = ax if ax is not None else plt.figure(figsize=(1.0 + 0.7 * J.shape[1], 1.0 + 0.45 * J.shape[0])).add_subplot()
    if row_labels is None and J.shape[0] == 6:
        row_labels = ["vx", "vy", "vz", "wx", "wy", "wz"]
    for name, labels, count, what in (("row_labels", row_labels, J.shape[0], "row"),
                                      ("col_labels", col_labels, J.shape[1], "column")):
        if labels is not None and len(labels) != count:
            raise ValueError(f"{name}: expected {count} labels (one per {what} of J, shape {J.shape}), got {len(labels)}")
    vmax = float(np.abs(J).max()) or 1.0
    im = ax.imshow(J, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if row_labels is not None:
        ax.set_yticks(range(J.shape[0]), labels=list(row_labels))
    if col_labels is not None:
        ax.set_xticks(range(J.shape[1]), labels=list(col_labels), rotation=45, ha="right")
    if annotate and J.size <= 400:
        for (r, c), v in np.ndenumerate(J):
            ax.text(c, r, f"{v:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * vmax else "black")
    if title:
        ax.set_title(title)
    return ax
