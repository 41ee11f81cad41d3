"""Shared look: colours, new axes, equal 3D aspect."""

from __future__ import annotations

import numpy as np
import torch

PALETTE = ("#3b5b92", "#e07a5f", "#3d9970", "#9b5de5", "#f2cc8f", "#81b29a")


def new_axes(view: str = "2d", figsize=(5, 5)):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    return fig.add_subplot(projection="3d" if view == "3d" else None)


def equal_3d(ax, pts) -> None:
    """Equal scale on all three axes around the points ``(N, 3)``."""
    pts = np.asarray(pts, dtype=float).reshape(-1, 3)
    center = (pts.max(0) + pts.min(0)) / 2
    half = max(float((pts.max(0) - pts.min(0)).max()) / 2, 1e-3) * 1.1
    ax.set_xlim(center[0] - half, center[0] + half)
    ax.set_ylim(center[1] - half, center[1] + half)
    ax.set_zlim(center[2] - half, center[2] + half)
    ax.set_box_aspect((1, 1, 1))


def as_numpy(x, name: str = "value") -> np.ndarray:
    """A tensor, LieTensor or array as a float64 numpy array on the host (detached); anything
    that is not numbers is refused, naming the argument."""
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected a tensor or array of numbers, got {type(x).__name__}")
    try:
        x = x.as_subclass(torch.Tensor) if hasattr(x, "ltype") else torch.as_tensor(x, device="cpu")
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: expected a tensor or array of numbers, got {type(x).__name__}") from None
    return x.detach().double().cpu().numpy()


def require(name: str, value, package: str, cls: str, expected: str) -> None:
    """``value`` is a ``robojac.<package>.<cls>`` (imported only when a picture is drawn);
    else a ``TypeError`` naming the argument (a tensor passed where the chain goes, say)."""
    import importlib

    from .._config import check_instance

    check_instance(name, value, getattr(importlib.import_module(f"robojac.{package}"), cls), expected)
