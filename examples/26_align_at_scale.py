"""Align a trajectory at another scale to GPS fixes with glitches: one Sim3 parameter (``optim.fit``).

A monocular visual odometry knows its trajectory only up to a similarity: its own scale, turn and
origin.  Here it is KITTI 00's trajectory (the positions of ``data/posegraph/kitti_00.g2o``, every
fifth of 4,541) seen at 0.37 of its size, turned 40 degrees and moved, with 0.3 m of noise.  It is
aligned to GPS fixes of the same positions, of which 8% are glitches: multipath in three street
canyons, 24 fixes in a row each pushed 30-80 m one way.

Umeyama's closed form (evo's ``--correct_scale``, ``robojac.trajectory.align_umeyama``) is the
least-squares similarity, so every glitch pulls on it.  A module with one ``pp.Parameter`` of Sim3
fitted by ``optim.fit`` under Cauchy's kernel (2 m) is not pulled: each fix is a row of its own,
weighed by the kernel.  Both are measured against the true positions.

    python examples/26_align_at_scale.py --out out/align_at_scale
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.optim import RobustKernel, fit  # noqa: E402
from robojac.posegraph import read_g2o  # noqa: E402
from robojac.trajectory import align_umeyama  # noqa: E402


class Similarity(nn.Module):
    """``S_world_odom``: odometry positions ``(N, 3)`` to world positions, one Sim3 parameter."""

    def __init__(self):
        super().__init__()
        self.S_world_odom = pp.Parameter(pp.identity_Sim3(dtype=torch.float64))

    def forward(self, p_odom: torch.Tensor) -> torch.Tensor:
        return self.S_world_odom.Act(p_odom)


def main(out: pathlib.Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64)
    truth = read_g2o(data.path("posegraph/kitti_00.g2o")).poses.tensor()[::5, :3].detach()
    n = truth.shape[0]
    # the odometry's frame: 0.37 of the size, turned 40 degrees about the vertical, moved
    T_odom_world = lie.se3_exp(torch.tensor([12.0, -3.0, 40.0, 0.0, math.radians(40.0), 0.0], **kw))
    odom = 0.37 * lie.se3_act(T_odom_world, truth) + 0.3 * 0.37 * torch.randn(n, 3, generator=g, **kw)
    gps = truth + 0.5 * torch.randn(n, 3, generator=g, **kw)
    # multipath in three street canyons: 24 fixes in a row each, all pushed one way, 30-80 m
    starts = torch.randperm(n // 24, generator=g)[:3] * 24
    glitch = (starts[:, None] + torch.arange(24)).flatten()
    away = torch.randn(3, 1, 3, generator=g, **kw)
    push = (30 + 50 * torch.rand(3, 24, 1, generator=g, **kw)) * away / away.norm(dim=-1, keepdim=True)
    gps[glitch] += push.reshape(-1, 3)

    R, t, s = align_umeyama(odom, gps, with_scale=True)
    closed = s * odom @ R.T + t
    model = Similarity()
    result = fit(model, odom, gps, kernel=RobustKernel("cauchy", 2.0))
    with torch.no_grad():
        robust = model(odom)
    scale = float(model.S_world_odom.detach().tensor()[7])
    errors = {}
    for name, aligned, k in (("Umeyama (least squares)", closed, s), ("fit, Sim3, Cauchy 2 m", robust, scale)):
        e = (aligned - truth).norm(dim=-1)
        errors[name] = e
        print(f"  {name:24s} scale {k:.4f} (true {1 / 0.37:.4f}); against the true positions: "
              f"RMSE {float(e.square().mean().sqrt()):.2f} m, max {float(e.max()):.2f} m")
    print(f"  fit: {result.reason} after {result.iterations} iterations, {len(glitch)} of {n} fixes glitched")

    spread = truth.std(0)
    a, b = [int(i) for i in spread.argsort(descending=True)[:2]]  # the ground plane's two axes
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.3, 1]})
    ax = axes[0]
    ax.plot(truth[:, a], truth[:, b], color="#2d3436", lw=2.5, label="true positions")
    ax.scatter(gps[glitch, a], gps[glitch, b], s=10, marker="x", color="#c0392b", label="GPS glitches")
    ax.plot(closed[:, a], closed[:, b], color="#e67e22", lw=1, label="Umeyama (least squares)")
    ax.plot(robust[:, a], robust[:, b], color="#0984e3", lw=1, ls="--", label="fit: Sim3 under Cauchy's kernel")
    ax.set_aspect("equal")
    ax.set_xlabel(f"axis {a} (m)")
    ax.set_ylabel(f"axis {b} (m)")
    ax.set_title("KITTI 00 seen at 0.37 scale, aligned to GPS fixes (three stretches of glitches)")
    ax.legend(fontsize=8)
    ax = axes[1]
    colours = ("#e67e22", "#0984e3")
    for (name, e), c in zip(errors.items(), colours):
        ax.plot(e, color=c, lw=1, label=f"{name}: RMSE {float(e.square().mean().sqrt()):.2f} m")
    ax.set_yscale("log")
    ax.set_xlabel("position along the trajectory")
    ax.set_ylabel("distance to the true position (m)")
    ax.set_title("each aligned position's error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "align_at_scale.png", dpi=75)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/align_at_scale"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    main(a.out, a.seed)
