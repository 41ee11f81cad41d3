"""Inverse kinematics of the 2- and 3-link planar arms: closed form against the iterative solver.

The 2-link arm has two answers per reachable target (elbow up and down); the law of cosines
gives both.  The 3-link arm has infinitely many for a position: the closed form fixes the tool
angle, the iterative solver (``robojac.ik.solve``, position-only) finds one of them.  Both agree
on where the tool ends up; the picture shows the solutions and the iterations a grid of
targets took.

    python examples/08_planar_ik.py --out out/planar_ik
"""

import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robojac import ik, viz  # noqa: E402
from robojac.models import planar_arm  # noqa: E402


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    two, three = planar_arm((1.0, 0.7)), planar_arm((1.0, 0.8, 0.5))
    target = torch.tensor([1.1, 0.8, 0.0], dtype=torch.float64)

    up, _ = ik.planar_2link_ik(1.0, 0.7, target, elbow="up")
    down, _ = ik.planar_2link_ik(1.0, 0.7, target, elbow="down")
    it2 = ik.solve(two, target, config=ik.IKConfig(position_tolerance=1e-10))
    print(f"2-link, target {target[:2].tolist()}: elbow up {up.numpy().round(4)}, elbow down {down.numpy().round(4)}, "
          f"iterative {it2.q.numpy().round(4)} ({int(it2.iterations)} steps, error {float(it2.pos_err):.1e} m)")

    phi = torch.tensor(0.3, dtype=torch.float64)
    cf3, _ = ik.planar_3link_ik(1.0, 0.8, 0.5, target, phi)
    it3 = ik.solve(three, target, q0=torch.full((3,), 0.5, dtype=torch.float64))
    print(f"3-link: closed form (tool angle 0.3) {cf3.numpy().round(4)}, iterative {it3.q.numpy().round(4)} "
          f"(tool angle {float(it3.q.sum()):.3f})")

    # a grid of targets over the 3-link workspace: closed form vs iterative, time and agreement
    xs = torch.linspace(-2.2, 2.2, 45, dtype=torch.float64)
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack((X.flatten(), Y.flatten(), torch.zeros(X.numel(), dtype=torch.float64)), -1)
    t0 = time.perf_counter()
    q_cf, reach = ik.planar_3link_ik(1.0, 0.8, 0.5, grid)
    t_cf = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = ik.solve(three, grid)
    t_it = time.perf_counter() - t0
    err_cf = (three.forward_kinematics(q_cf, "tool").translation() - grid).norm(dim=-1)
    print(f"grid of {len(grid)} targets: closed form (tool along the base-target line) reaches {int(reach.sum())} "
          f"in {t_cf * 1e3:.2f} ms, exact to {float(err_cf[reach].max()):.0e} m; iterative (any tool angle) converges "
          f"on {int(res.converged.sum())} in {t_it * 1e3:.0f} ms, to {float(res.pos_err[res.converged].max()):.0e} m")

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    ax = axes[0]
    viz.plot_arm(two, up, ax, color="#4C72B0", label="closed form, elbow up", show_frame_axes=False)
    viz.plot_arm(two, down, ax, color="#DD8452", label="closed form, elbow down", show_frame_axes=False)
    viz.plot_arm(two, it2.q, ax, color="#55A868", alpha=0.6, label=f"iterative ({int(it2.iterations)} steps)",
                 show_frame_axes=False, target=target)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, fontsize=8)
    ax.set_title("2 links: two answers, the iterative one is one of them")
    ax = axes[1]
    viz.plot_arm(three, cf3, ax, color="#4C72B0", label="closed form, tool angle 0.3", show_frame_axes=False)
    viz.plot_arm(three, it3.q, ax, color="#55A868", label="iterative from q = (0.5, 0.5, 0.5)", show_frame_axes=False, target=target)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, fontsize=8)
    ax.set_title("3 links: one of infinitely many answers")
    ax = axes[2]
    it = np.where(res.converged.numpy(), res.iterations.numpy(), np.nan).reshape(X.shape)
    im = ax.imshow(it, origin="lower", extent=(-2.2, 2.2, -2.2, 2.2), cmap="viridis")
    ax.add_patch(plt.Circle((0, 0), 2.3, fill=False, ls="--", color="grey"))
    fig.colorbar(im, ax=ax, shrink=0.8, label="iterations to converge")
    ax.set_title(f"3 links, {len(grid)} targets: {int(res.converged.sum())} solved\n(blank: out of reach)")
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "planar_ik.png", dpi=90)
    plt.close(fig)
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/planar_ik"))
    main(p.parse_args().out)
