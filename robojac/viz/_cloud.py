"""Pictures of point-cloud registration: the clouds before and after alignment."""

from __future__ import annotations

import numpy as np
import torch

from ._style import equal_3d

__all__ = ["plot_registration", "plot_registration_before_after"]


def _np(x, max_points: int, seed: int = 0) -> np.ndarray:
    x = x.as_subclass(torch.Tensor) if hasattr(x, "ltype") else torch.as_tensor(x, device="cpu")
    x = x.detach().double().cpu()
    if x.shape[0] > max_points:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points]]
    return x.numpy()


def plot_registration(source, target, T_target_source=None, ax=None, *, title: str | None = None,
                      max_points: int = 6000, view: tuple[float, float] | None = None, vertical_axis: str = "z"):
    """Target (grey) and source mapped by ``T_target_source`` (orange) in one 3D view; returns ``ax``."""
    import matplotlib.pyplot as plt

    from .. import lie

    ax = ax if ax is not None else plt.figure(figsize=(5.5, 5.5)).add_subplot(projection="3d")
    src = torch.from_numpy(_np(source, max_points, 1))
    if T_target_source is not None:
        T = (T_target_source.as_subclass(torch.Tensor) if hasattr(T_target_source, "ltype")
             else torch.as_tensor(T_target_source, device="cpu"))
        T = T.double()
        if T.shape[-2:] == (4, 4):
            T = lie.matrix_to_se3(T)
        src = lie.se3_act(T.reshape(1, 7), src)
    tgt = _np(target, max_points, 2)
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
