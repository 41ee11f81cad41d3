"""An arm from its MJCF (MuJoCo XML) model: read without MuJoCo, checked against MuJoCo, solved and drawn.

The KUKA iiwa's MJCF model becomes a robojac Chain. Where MuJoCo is installed, the pose of every
body is compared with MuJoCo's own forward kinematics. The arm then follows a circle by inverse
kinematics, each solution starting from the last, and is written out as a URDF.

    python examples/18_mjcf_arm.py --out out/mjcf [--mjcf path/to/model.xml --tip frame]
"""

import argparse
import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import data, ik, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402


def check_against_mujoco(path: pathlib.Path, chain: Chain) -> None:
    try:
        import mujoco
    except ImportError:
        print("  (MuJoCo is not installed: no side-by-side check)")
        return
    model = mujoco.MjModel.from_xml_path(str(path))
    mdata = mujoco.MjData(model)
    bodies = [model.body(i).name or f"body{i}" for i in range(model.nbody)]
    q = chain.random_configuration(200, generator=torch.Generator().manual_seed(1))
    T = chain.forward_kinematics_tensor(q, bodies)
    worst = 0.0
    for b in range(len(q)):
        mdata.qpos[:] = q[b].numpy()
        mujoco.mj_kinematics(model, mdata)
        worst = max(worst, float((T[b, :, :3] - torch.from_numpy(mdata.xpos)).abs().max()))
    print(f"  every body of 200 configurations vs MuJoCo {mujoco.__version__}: max position difference {worst:.1e} m")


def main(path: pathlib.Path, tip: str, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    arm = Chain.from_mjcf(path, tip=tip)
    lower, upper = arm.joint_limits
    print(f"{arm}\n  joints (MuJoCo's qpos order): {arm.joint_names}")
    print(f"  limits (rad): {[f'[{a:.2f}, {b:.2f}]' for a, b in zip(lower.tolist(), upper.tolist())]}")
    check_against_mujoco(path, Chain.from_mjcf(path))

    # a circle in front of the arm, the tool pointing down; each target starts from the last answer
    home = torch.zeros(arm.dof, dtype=torch.float64)
    home[1], home[3], home[5] = 0.6, -1.2, 0.8
    start = arm.forward_kinematics(home, tip)
    s = torch.linspace(0, 2 * math.pi, 48, dtype=torch.float64)
    centre = start.translation()
    points = centre + 0.15 * torch.stack((torch.zeros_like(s), torch.cos(s) - 1, torch.sin(s)), -1)
    targets = pp.SE3(torch.cat((points, start.rotation().tensor().expand(len(s), 4)), -1))
    qs, q = [], home
    for target in targets:
        result = ik.solve(arm, target, q0=q)
        if not bool(result.converged):
            raise SystemExit(f"IK did not converge on the circle: {result.reason}")
        q = result.q
        qs.append(q)
    qs = torch.stack(qs)
    reached = arm.forward_kinematics(qs, tip).translation()
    print(f"  circle of {len(s)} poses by IK: largest miss {float((reached - points).norm(dim=-1).max()) * 1e3:.3f} mm")

    ax = viz.plot_end_effector_path(arm, qs, frame=tip)
    viz.plot_arm(arm, qs[0], ax, annotate=False)
    ax.set_title("iiwa from its MJCF model: a circle by IK")
    ax.figure.savefig(out / "circle.png", dpi=120)
    viz.plot_trajectory_strip(arm, qs, num_frames=4, title="iiwa (MJCF) along the circle").savefig(out / "strip.png",
                                                                                                     dpi=90)
    ax = viz.plot_jacobian_heatmap(arm.jacobian(qs[0], tip), col_labels=arm.joint_names,
                                   title="iiwa tool Jacobian on the circle ([v; w], world frame)")
    ax.figure.tight_layout()
    ax.figure.savefig(out / "jacobian.png", dpi=120)
    plt.close("all")

    arm.to_urdf(out / "iiwa_from_mjcf.urdf")  # the same chain as a URDF, read back to check
    back = Chain.from_urdf(out / "iiwa_from_mjcf.urdf", tip=tip)
    diff = float((back.forward_kinematics(qs, tip).tensor() - arm.forward_kinematics(qs, tip).tensor()).abs().max())
    print(f"  written as URDF and read back: max difference {diff:.1e}")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mjcf", type=pathlib.Path, default=data.path("robots/kuka_iiwa14.xml"))
    p.add_argument("--tip", default="lbr_iiwa_link_7")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/mjcf"))
    a = p.parse_args()
    main(a.mjcf, a.tip, a.out)
