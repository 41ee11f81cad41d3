"""A 2-joint planar arm: forward kinematics, the Jacobian, manipulability, and pictures.

    python examples/01_planar_2link.py --out out/planar2
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import viz  # noqa: E402
from robojac.models import planar_arm  # noqa: E402


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arm = planar_arm((1.0, 0.7))  # link lengths in metres
    q = torch.tensor([0.6, 1.1], dtype=torch.float64)
    tool = arm.forward_kinematics(q, "tool")
    print(f"{arm}\n  joints {arm.joint_names}, tool at {tool.translation().tolist()}")
    J = arm.jacobian(q, "tool")
    print("  Jacobian [v; w] (root frame):\n", J.numpy().round(3))

    # manipulability over the whole joint space: zero on the singular lines q2 = 0, +-pi
    grid = torch.linspace(-math.pi, math.pi, 181, dtype=torch.float64)
    Q = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
    m = arm.manipulability(Q, "tool", rows=(0, 1))
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(m.T.numpy(), origin="lower", extent=[-math.pi, math.pi, -math.pi, math.pi], cmap="magma")
    fig.colorbar(im, ax=ax, label="sqrt(det(J J^T)) of (vx, vy)")
    ax.set_xlabel("q1 [rad]")
    ax.set_ylabel("q2 [rad]")
    ax.set_title("2-link arm: manipulability (zero where the elbow is straight)")
    fig.tight_layout()
    fig.savefig(out / "manipulability.png", dpi=120)

    # a joint-space trajectory: arm, end-effector path, strip, GIF
    t = torch.linspace(0, 1, 40, dtype=torch.float64)
    qs = torch.stack((0.2 + 1.2 * torch.sin(math.pi * t), 0.3 + 1.5 * t), -1)
    ax = viz.plot_arm(arm, qs[0], alpha=0.4, show_frame_axes=False)
    viz.plot_end_effector_path(arm, qs, ax)
    viz.plot_arm(arm, qs[-1], ax, annotate=True)
    ax.set_title("2-link arm: start (faded), end and tool path")
    ax.figure.savefig(out / "arm.png", dpi=120)
    viz.plot_trajectory_strip(arm, qs, num_frames=5, title="2-link arm trajectory").savefig(out / "strip.png", dpi=100)
    viz.animate_arm(arm, qs, out / "trajectory.gif", fps=12)
    ax = viz.plot_jacobian_heatmap(J[[0, 1, 5]], row_labels=["vx", "vy", "wz"], col_labels=arm.joint_names,
                                   title="Which joint moves what (q = [0.6, 1.1])")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "jacobian.png", dpi=120)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/planar2"))
    main(p.parse_args().out)
