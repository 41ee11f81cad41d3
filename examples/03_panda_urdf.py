"""The Franka Panda from its URDF: batched FK and Jacobians, checked two ways, and pictures.

    python examples/03_panda_urdf.py --out out/panda [--urdf path/to/panda.urdf]
"""

import argparse
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402



def main(urdf: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    panda = Chain.from_urdf(urdf, tip="panda_hand")
    print(f"{panda}\n  joints: {panda.joint_names}")
    lower, upper = panda.joint_limits
    print(f"  limits: {[f'[{a:.2f}, {b:.2f}]' for a, b in zip(lower.tolist(), upper.tolist())]}")

    # a batch of 10,000 configurations at once
    q = panda.random_configuration(10_000, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    poses = panda.forward_kinematics(q)
    J = panda.jacobian(q)
    dt = time.perf_counter() - t0
    print(f"  FK of {len(poses)} frames + Jacobian for {len(q)} configurations: {dt * 1e3:.1f} ms")
    J_core = panda.jacobian(q[:100], method="autodiff")  # the same Jacobian through robojac.jacobian
    print(f"  closed form vs Jacobian core: max |dJ| = {float((J[:100] - J_core).abs().max()):.1e}")
    m = panda.manipulability(q)
    print(f"  manipulability: median {float(m.median()):.3f}, min {float(m.min()):.2e}")

    home = torch.tensor([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785], dtype=torch.float64)
    ax = viz.plot_arm(panda, home, annotate=False)
    ax.set_title("Panda at its home configuration")
    ax.figure.savefig(out / "arm.png", dpi=120)
    ax = viz.plot_jacobian_heatmap(panda.jacobian(home), col_labels=panda.joint_names,
                                   title="Panda hand Jacobian at home ([v; w], root frame)")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "jacobian.png", dpi=120)

    # a smooth motion from home to a reach pose, inside the limits
    goal = torch.tensor([0.9, 0.3, -0.4, -1.6, 0.3, 1.9, -0.3], dtype=torch.float64)
    s = torch.linspace(0, 1, 36, dtype=torch.float64)[:, None]
    qs = home + (3 * s**2 - 2 * s**3) * (goal - home)
    assert bool(panda.within_limits(qs).all())
    viz.plot_trajectory_strip(panda, qs, num_frames=4, title="Panda: home to reach").savefig(out / "strip.png", dpi=90)
    viz.animate_arm(panda, qs, out / "trajectory.gif", fps=12)
    ax = viz.plot_end_effector_path(panda, qs)
    viz.plot_arm(panda, qs[-1], ax)
    ax.set_title("Panda: hand path")
    ax.figure.savefig(out / "hand_path.png", dpi=120)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--urdf", type=pathlib.Path, default=data.path("robots/panda.urdf"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/panda"))
    a = p.parse_args()
    main(a.urdf, a.out)
