"""A humanoid's hands and feet placed at once: IK of several frames, ``ik.solve(talos, {frame: target})``.

TALOS (32 joints) stands with its soles where they are at the zero configuration, while its
grippers reach to three sets of targets: forward, up, and one hand down to the side.  Each
set is one problem: the feet's and the hands' poses in one call, the three sets one batch.
The second part keeps the feet planted and the right hand still while the left hand's position
(a position target: its orientation left free) draws a circle, each waypoint seeded by the last
answer (``q0``), so the body moves smoothly.

Writes ``humanoid_ik.png`` (the three reaches) and ``humanoid_circle.png`` (the circle, with the
hand's path and the feet's drift, which stays inside the tolerance).

    python examples/24_humanoid_ik.py --out out/humanoid
"""

import argparse
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, ik, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

HANDS = ["gripper_left_base_link", "gripper_right_base_link"]
FEET = ["left_sole_link", "right_sole_link"]


def shifted(X, dx, dy, dz):
    """The pose ``X (7,)`` moved by ``(dx, dy, dz)`` in the root frame, its orientation kept."""
    out = X.clone()
    out[:3] += torch.tensor([dx, dy, dz], dtype=X.dtype)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/humanoid"), help="folder for the pictures")
    ap.add_argument("--waypoints", type=int, default=24, help="points on the left hand's circle")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    talos = Chain.from_urdf(data.path("robots/talos_reduced.urdf"))
    zero = torch.zeros(talos.dof, dtype=torch.float64)
    home = dict(zip(HANDS + FEET, talos.forward_kinematics_tensor(zero, HANDS + FEET)))
    feet = {f: home[f] for f in FEET}
    reaches = {
        "both hands forward": (shifted(home[HANDS[0]], 0.25, 0.0, 0.15), shifted(home[HANDS[1]], 0.25, 0.0, 0.15)),
        "both hands up": (shifted(home[HANDS[0]], 0.15, 0.0, 0.3), shifted(home[HANDS[1]], 0.15, 0.0, 0.3)),
        "left down, right forward": (shifted(home[HANDS[0]], 0.1, 0.15, -0.15),
                                     shifted(home[HANDS[1]], 0.3, 0.05, 0.1)),
    }
    # one batch: each reach is a set of four poses (both hands, both feet)
    names = list(reaches)
    batch = {hand: torch.stack([reaches[n][k] for n in names]) for k, hand in enumerate(HANDS)}
    batch.update({f: home[f].expand(len(names), 7) for f in FEET})
    result = ik.solve(talos, batch, q0=zero.expand(len(names), -1))
    print(f"{'reach':32s} {'converged':>9s}  worst position error  worst rotation error")
    for k, n in enumerate(names):
        print(f"{n:32s} {str(bool(result.converged[k])):>9s}  {float(result.pos_err[k].max()) * 1e3:15.3f} mm"
              f"  {float(result.rot_err[k].max()):16.2e} rad")

    fig = plt.figure(figsize=(15, 5.5))
    for k, n in enumerate(names):
        ax = fig.add_subplot(1, len(names), k + 1, projection="3d")
        viz.plot_arm(talos, zero, ax, color="#bbbbbb", alpha=0.5, show_frame_axes=False)
        marks = torch.stack([batch[f][k][:3] for f in HANDS + FEET])
        viz.plot_arm(talos, result.q[k], ax, frame=HANDS + FEET, target=marks, axis_length=0.08)
        ax.set_title(f"{n}\n{'converged' if result.converged[k] else 'NOT converged'}", fontsize=10)
        ax.view_init(elev=12, azim=-35)
    fig.suptitle("TALOS: hands and feet placed in one solve (grey: the zero configuration)")
    fig.tight_layout()
    fig.savefig(args.out / "humanoid_ik.png", dpi=90)
    plt.close(fig)

    # the left hand draws a circle in the y-z plane, the right hand and the feet hold still
    center = shifted(home[HANDS[0]], 0.25, 0.0, 0.15)
    path, qs, q, drift, failed = [], [], result.q[0], [], 0
    for k in range(args.waypoints + 1):
        a = 2 * math.pi * k / args.waypoints
        target = shifted(center, 0.0, 0.12 * math.cos(a), 0.12 * math.sin(a))
        r = ik.solve(talos, {HANDS[0]: target[:3], HANDS[1]: batch[HANDS[1]][0], **feet}, q0=q)
        failed += not bool(r.converged)
        q = r.q
        qs.append(q)
        path.append(target[:3])
        drift.append(float(r.pos_err[2:].max()))
    X = talos.forward_kinematics_tensor(torch.stack(qs), [HANDS[0]])[:, 0, :3]
    reached = float((X - torch.stack(path)).norm(dim=-1).max())
    print(f"circle: {args.waypoints + 1} waypoints, {failed} not converged, left hand at most {reached * 1e3:.3f} mm "
          f"from its path, feet at most {max(drift) * 1e3:.4f} mm from their poses")
    fig = plt.figure(figsize=(11, 5.5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    for k in range(0, len(qs), max(1, len(qs) // 6)):
        viz.plot_arm(talos, qs[k], ax, alpha=0.35, show_frame_axes=False)
    P = torch.stack(path).numpy()
    ax.plot(*P.T, color="#ff7f0e", lw=2, label="the hand's path")
    ax.legend(loc="upper left")
    ax.set_title("left hand's position on a circle, feet planted")
    ax.view_init(elev=12, azim=-35)
    ax2 = fig.add_subplot(1, 2, 2)
    torso = [k for k, n in enumerate(talos.joint_names) if n.startswith(("torso", "arm_left"))]
    Q = torch.stack(qs)[:, torso].numpy()
    for j, k in enumerate(torso):
        ax2.plot(Q[:, j], label=talos.joint_names[k])
    ax2.set_xlabel("waypoint")
    ax2.set_ylabel("joint value [rad]")
    ax2.set_title("torso and left-arm joints: smooth, seeded by the last answer")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(args.out / "humanoid_circle.png", dpi=110)
    plt.close(fig)
    print(f"wrote {args.out / 'humanoid_ik.png'} and {args.out / 'humanoid_circle.png'}")
    return 0 if bool(result.converged.all()) and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
