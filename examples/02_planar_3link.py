"""A 3-joint planar arm: a redundant arm's Jacobian, its null space, and pictures.

The tool position (x, y) has 2 numbers and the arm 3 joints, so one joint motion moves the
elbows without moving the tool: the null space of the position Jacobian.

    python examples/02_planar_3link.py --out out/planar3
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
    arm = planar_arm((1.0, 0.8, 0.5))
    q = torch.tensor([0.4, 0.9, -0.6], dtype=torch.float64)
    print(f"{arm}\n  tool at {arm.forward_kinematics(q, 'tool').translation().tolist()}")

    # walk along the null space of J_xy: the tool stays put while the arm reshapes
    qs = [q]
    for _ in range(60):
        Jxy = arm.jacobian(qs[-1], "tool")[:2]
        n = torch.linalg.svd(Jxy).Vh[-1]  # the direction J_xy does not see
        n = n if n[0] >= 0 else -n
        step = qs[-1] + 0.03 * n
        # a Newton correction pulls the tool back onto the start point (curvature drift)
        err = arm.forward_kinematics(q, "tool").translation()[:2] - arm.forward_kinematics(step, "tool").translation()[:2]
        step = step + torch.linalg.pinv(arm.jacobian(step, "tool")[:2]) @ err
        qs.append(step)
    qs = torch.stack(qs)
    drift = (arm.forward_kinematics(qs, "tool").translation() - arm.forward_kinematics(q, "tool").translation()).norm(dim=-1)
    print(f"  self-motion over {len(qs)} steps: tool moved at most {float(drift.max()):.2e} m")

    fig, ax = plt.subplots(figsize=(5, 5))
    for k in range(0, len(qs), 6):
        viz.plot_arm(arm, qs[k], ax, alpha=0.25 + 0.75 * k / len(qs), show_frame_axes=False)
    ax.set_title("3-link arm: self-motion in the null space\n(the tool stays still, the elbows move)")
    fig.savefig(out / "null_space.png", dpi=120)
    viz.plot_trajectory_strip(arm, qs, num_frames=5, title="3-link arm self-motion").savefig(out / "strip.png", dpi=100)
    viz.animate_arm(arm, qs[::2], out / "self_motion.gif", fps=12)

    # a sweep of the first joint, with the tool path
    t = torch.linspace(0, 1, 50, dtype=torch.float64)
    sweep = torch.stack((-0.5 + 1.6 * t, 0.8 * torch.sin(2 * math.pi * t), -0.9 + 0.6 * t), -1)
    ax = viz.plot_arm(arm, sweep[-1], annotate=True)
    viz.plot_end_effector_path(arm, sweep, ax)
    ax.set_title("3-link arm: tool path over a joint sweep")
    ax.figure.savefig(out / "arm.png", dpi=120)
    ax = viz.plot_jacobian_heatmap(arm.jacobian(q, "tool")[[0, 1, 5]], row_labels=["vx", "vy", "wz"],
                                   col_labels=arm.joint_names, title="3-link Jacobian")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "jacobian.png", dpi=120)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/planar3"))
    main(p.parse_args().out)
