"""Reaching past obstacles: IK's frames and a collision task on the solver engine.

The Panda reaches to eight points over a table, under a ball hanging above it.  ``ik.solve``
places the hand exactly, and for most points sweeps the forearm through the ball or the table.
The collision model is the arm's skeleton, capsules of 5 cm radius between its joints
(``collision.RobotCollision.from_skeleton``; the Panda's description names meshes, which are not
shipped here), and its self-collision pairs.  ``ik.solve(..., avoid=ik.CollisionTask(...))``
reaches the same points with every capsule at least 2 cm from the ball, the table, the floor and
the arm's other links: from several of IK's answers at once, each then solved with the frames and
the collision task together on ``robojac.optim`` (both with closed-form Jacobians), the best kept.

Writes ``collision.png`` (one reach: IK alone against clear, the capsules that overlap in red,
those within the margin in orange)
and ``collision_clearance.png`` (each reach's smallest distance to anything, both ways).

    python examples/31_collision_avoidance.py --out out/collision
"""

import argparse
import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import collision, data, ik, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

HAND = "panda_hand_tcp"
MARGIN = 0.02  # m: the clearance asked of every capsule


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/collision"), help="folder for the pictures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    panda = Chain.from_urdf(data.path("robots/panda.urdf"))
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([
        collision.Sphere(0.12, (0.45, 0.0, 0.50)),  # a ball hanging over the table
        collision.Box((0.20, 0.40, 0.10), (0.65, 0.0, 0.10, 0.0, 0.0, 0.0, 1.0)),  # a table, its top at 0.2 m
        collision.HalfSpace((0.0, 0.0, 1.0), 0.0),  # the floor
    ])
    task = ik.CollisionTask(model, world, margin=MARGIN)
    print(f"Panda skeleton: {model.num_shapes} capsules, {len(model.pairs)} self-collision pairs; obstacles: ball, "
          f"table, floor")

    B = 8
    target = torch.zeros(B, 3, dtype=torch.float64)
    target[:, 0] = 0.55
    target[:, 1] = torch.linspace(-0.3, 0.3, B, dtype=torch.float64)
    target[:, 2] = 0.32  # 12 cm over the table, under the ball
    cfg = ik.IKConfig(frame=HAND)
    plain = ik.solve(panda, target, config=cfg)  # IK alone: where it puts the arm
    gap_plain = task.distances(plain.q[:, None]).amin((1, 2))
    t0 = time.perf_counter()
    result = ik.solve(panda, target, config=cfg, avoid=task)  # the same targets, kept clear
    seconds = time.perf_counter() - t0
    q_clear, err, gap = result.q, result.pos_err, result.clearance

    print(f"{'point y':>8s}  {'IK alone: closest':>18s}  {'clear: closest':>15s}  {'hand off':>9s}")
    for k in range(B):
        print(f"{float(target[k, 1]):+7.2f} m  {float(gap_plain[k]):+16.3f} m  {float(gap[k]):+13.3f} m  "
              f"{float(err[k]):7.1e} m")
    through = int((gap_plain < 0).sum())
    done = result.converged
    print(f"IK alone: {through} of {B} reaches pass through an obstacle or the arm itself; with the collision task: "
          f"{int(done.sum())} of {B} reached and {MARGIN * 100:.0f} cm clear ({cfg.avoid_starts} starts each, "
          f"{seconds:.2f} s, reasons {sorted(set(result.reason))})")

    k = int((gap_plain - gap).argmin())  # the reach IK alone misses by the most
    fig = plt.figure(figsize=(12, 6))
    for i, (title, qk) in enumerate((("IK alone", plain.q[k]), ("with the collision task", q_clear[k]))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        viz.plot_collision(model, qk, ax, obstacles=world, margin=MARGIN, floor_extent=1.2)
        viz.plot_arm(panda, qk, ax, frame=HAND, target=target[k], axis_length=0.08, color="#222222")
        d = float(task.distances(qk[None, None]).min())
        ax.set_title(f"{title}: closest {d * 100:+.1f} cm", fontsize=10)
        ax.view_init(elev=18, azim=-60)
    fig.suptitle(f"Panda reaching to y = {float(target[k, 1]):+.2f} m under a ball, over a table "
                 f"(red: overlapping, orange: within {MARGIN * 100:.0f} cm)")
    fig.tight_layout()
    fig.savefig(args.out / "collision.png", dpi=72)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    y = target[:, 1].numpy()
    ax.axhspan(-0.2, 0.0, color="#d62728", alpha=0.1, label="overlap")
    ax.axhline(MARGIN * 100, color="#2ca02c", ls="--", lw=1, label=f"margin ({MARGIN * 100:.0f} cm)")
    ax.plot(y, gap_plain.numpy() * 100, "o-", color="#d62728", label="IK alone")
    ax.plot(y, gap.numpy() * 100, "s-", color="#1f77b4", label="with the collision task")
    ax.set_ylim(min(-2.0, float(gap_plain.min()) * 110), max(8.0, float(gap.max()) * 110))
    ax.set_xlabel("target y [m]")
    ax.set_ylabel("closest distance to anything [cm]")
    ax.set_title("Clearance of each reach")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "collision_clearance.png", dpi=100)
    plt.close(fig)
    print(f"wrote {args.out / 'collision.png'} and {args.out / 'collision_clearance.png'}")
    return 0 if bool(done.all()) else 1


if __name__ == "__main__":
    sys.exit(main())
