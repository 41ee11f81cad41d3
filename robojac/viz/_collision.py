"""Collision shapes in 3D: a robot's capsules and spheres at a configuration, and obstacles
(spheres, capsules, boxes, half-spaces), each shaded by how close it is to contact."""

from __future__ import annotations

import numpy as np
import torch

from ._style import PALETTE, equal_3d, new_axes, require

__all__ = ["draw_obstacles", "plot_collision"]

_RED, _ORANGE = "#d62728", "#ff9f1c"


def _frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``d`` and to each other."""
    z = d / np.linalg.norm(d)
    x = np.cross(z, [1.0, 0.0, 0.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    return x, np.cross(z, x)


def _capsule_surface(a: np.ndarray, b: np.ndarray, r: float, n: int = 14):
    """``(X, Y, Z)`` of a capsule's surface: a sphere split at its equator, the halves pushed to
    ``a`` and ``b``."""
    d = b - a
    length = float(np.linalg.norm(d))
    z = d / length if length > 1e-12 else np.array([0.0, 0.0, 1.0])
    x, y = _frame(z)
    u = np.linspace(0, 2 * np.pi, n)
    v = np.linspace(0, np.pi, n + 1)
    cu, su, cv, sv = np.cos(u)[:, None], np.sin(u)[:, None], np.cos(v)[None], np.sin(v)[None]
    pts = r * (cu * sv)[..., None] * x + r * (su * sv)[..., None] * y + r * (np.ones_like(cu) * cv)[..., None] * z
    pts = pts + np.where((np.ones_like(cu) * cv)[..., None] >= 0, b, a)
    return pts[..., 0], pts[..., 1], pts[..., 2]


def _box_faces(pose: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``(6, 4, 3)``: a box's faces, each a loop of four corners in the world."""
    import pypose as pp

    faces = []
    for axis in range(3):
        u, v = [k for k in range(3) if k != axis]
        for side in (-1.0, 1.0):
            loop = []
            for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                c = np.zeros(3)
                c[axis], c[u], c[v] = side, su, sv
                loop.append(c * h)
            faces.append(loop)
    local = torch.as_tensor(np.array(faces), dtype=torch.float64)
    return pp.SE3(torch.as_tensor(pose, dtype=torch.float64)).Act(local).numpy()


def draw_obstacles(ax, obstacles, base: np.ndarray, floor_extent: float) -> list[np.ndarray]:
    """Draw ``obstacles`` (:class:`~robojac.collision.Obstacles`) in grey on the 3D ``ax``; a
    half-space as a square of ``floor_extent`` metres about the foot of ``base (3,)`` on its
    plane.  Returns points that bound what was drawn (for the axes' limits)."""
    pts = []
    grey = "#7f7f7f"
    for s in obstacles.shapes:
        kind = type(s).__name__
        if kind in ("Sphere", "Capsule"):
            sa, sb = (np.array(s.center),) * 2 if kind == "Sphere" else (np.array(s.a), np.array(s.b))
            ax.plot_surface(*_capsule_surface(sa, sb, s.radius, 20), color=grey, alpha=0.5, linewidth=0)
            pts += [sa[None] - s.radius, sb[None] + s.radius]
        elif kind == "Box":
            from mpl_toolkits.mplot3d.art3d import Poly3DCollection

            faces = _box_faces(np.array(s.pose), np.array(s.half_extents))
            ax.add_collection3d(Poly3DCollection(faces, facecolor=grey, edgecolor="#555555", alpha=0.35, lw=0.8))
            pts.append(faces.reshape(-1, 3))
        else:
            n, o = np.array(s.normal), s.offset
            centre = base - (n @ base - o) * n  # the base's foot on the plane
            x, y = _frame(n)
            g = np.linspace(-1, 1, 2) * floor_extent / 2
            P = centre + g[:, None, None] * x + g[None, :, None] * y
            ax.plot_surface(P[..., 0], P[..., 1], P[..., 2], color="#c8c8c8", alpha=0.3, linewidth=0)
    return pts


def plot_collision(model, q, ax=None, *, obstacles=None, margin: float = 0.0, color: str | None = None,
                   alpha: float = 0.35, floor_extent: float = 0.6):
    """Draw a :class:`~robojac.collision.RobotCollision`'s shapes at one configuration ``q
    (dof,)`` and the ``obstacles`` (:class:`~robojac.collision.Obstacles`); returns the 3D ``ax``.

    A robot shape that overlaps an obstacle or another link is drawn red, one closer than
    ``margin`` orange, the others in ``color``; a shape that no joint moves (a base on the floor)
    is not judged.  A half-space is drawn as a square of ``floor_extent`` metres on its boundary
    plane, about the point nearest the robot's base."""
    require("model", model, "collision", "RobotCollision", "a robojac.collision.RobotCollision")
    if obstacles is not None:
        require("obstacles", obstacles, "collision", "Obstacles", "robojac.collision.Obstacles or None")
    ax = ax if ax is not None else new_axes("3d", figsize=(6, 6))
    q = torch.as_tensor(q).detach().cpu().to(torch.float64)
    if q.dim() != 1:
        raise ValueError(f"q: expected one configuration ({model.chain.dof},), got shape {tuple(q.shape)}")
    with torch.no_grad():
        a, b, r = (x.numpy() for x in model.shapes_in_world(q))
        closest = np.full(len(r), np.inf)
        if len(model.pairs):
            d = model.self_distances(q).numpy()
            for (i, j), v in zip(model.pairs.tolist(), d):
                closest[i], closest[j] = min(closest[i], v), min(closest[j], v)
        if obstacles is not None:
            moving = np.array(model.moving)
            closest[moving] = np.minimum(closest[moving], model.distances(q, obstacles).numpy().min(-1)[moving])
    base = color or PALETTE[0]
    for k in range(len(r)):
        X, Y, Z = _capsule_surface(a[k], b[k], float(r[k]))
        c = _RED if closest[k] < 0 else _ORANGE if closest[k] < margin - 1e-6 else base
        ax.plot_surface(X, Y, Z, color=c, alpha=alpha, linewidth=0, shade=True)
    pts = [a.reshape(-1, 3), b.reshape(-1, 3)]
    if obstacles is not None:
        pts += draw_obstacles(ax, obstacles, a[0], floor_extent)
    equal_3d(ax, np.concatenate(pts))
    return ax
