"""A smooth trajectory over a wall: ``motion.trajopt`` on the solver engine.

The Panda's hand, pointing down, goes from one side of a wall 0.5 m high to the other.  The
straight blend between the two configurations sweeps the arm through the wall.
``motion.trajopt`` finds 32 waypoints over 2 s that keep every capsule of the arm's skeleton
clear of the wall, the floor and the arm itself, at the waypoints and between them. The
waypoints are smooth (the summed squared acceleration is least, at rest at both ends) and
within the joint and velocity limits.  It is one least-squares problem on ``robojac.optim``,
with closed-form Jacobians, solved from four initial trajectories at once.  Then, as in a model
that learns through the planner, the gradient of the arm's peak height with respect to the
goal's position is taken (the implicit gradient through IK and the trajectory), and checked
against a central difference.

Writes ``trajopt.png`` (the arm along the trajectory, its joints, speeds and clearance over
time) and ``trajopt_blend.png`` (the straight blend, for comparison).

    python examples/32_trajectory_over_a_wall.py --out out/trajopt
"""

import argparse
import math
import pathlib
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import collision, data, ik, motion, viz  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

HAND = "panda_hand_tcp"
READY = [0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/trajopt"), help="folder for the pictures")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    panda = Chain.from_urdf(data.path("robots/panda.urdf"), tip=HAND)
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([
        collision.Box((0.2, 0.05, 0.25), (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0)),  # a wall 0.5 m high, 10 cm thick
        collision.HalfSpace((0.0, 0.0, 1.0), 0.0),  # the floor
    ])
    task = ik.CollisionTask(model, world, margin=0.02)
    ready = torch.tensor(READY, dtype=torch.float64)
    X = panda.forward_kinematics_tensor(ready, [HAND])[0].clone()  # the hand pointing down
    X[:3] = torch.tensor([0.5, -0.3, 0.25], dtype=torch.float64)
    q_start = ik.solve(panda, X, q0=ready, avoid=task, config=ik.IKConfig(frame=HAND)).q
    goal = X.clone()
    goal[1] = 0.3  # the other side of the wall

    cfg = motion.TrajOptConfig(steps=32, duration=2.0, ik=ik.IKConfig(frame=HAND))
    t0 = time.perf_counter()
    result = motion.trajopt(panda, q_start, goal, avoid=task, config=cfg)
    seconds = time.perf_counter() - t0
    s = torch.linspace(0.0, 1.0, cfg.steps, dtype=torch.float64)[:, None]
    blend = result.q[0] + (3 * s * s - 2 * s ** 3) * (result.q[-1] - result.q[0])
    blend_gap = float(task.distances(blend[None]).min())
    print(f"Panda skeleton: {model.num_shapes} capsules, {len(model.pairs)} self-collision pairs; a wall and the floor")
    print(f"straight blend between the ends: closest {blend_gap * 100:+.1f} cm (through the wall)")
    closest, fastest = float(result.clearance) * 100, float(result.speed) * 100
    print(f"trajopt: {cfg.steps} waypoints over {cfg.duration:.1f} s in {seconds:.2f} s ({int(result.iterations)} "
          f"iterations, {cfg.starts} initial trajectories): {result.reason[0]}, closest {closest:+.2f} cm, fastest "
          f"joint at {fastest:.0f}% of its limit, goal off by {float(result.pos_err):.1e} m")

    # the planner inside a model: how the arm's peak height moves with the goal's position
    goal_g = goal.clone().requires_grad_()
    r = motion.trajopt(panda, q_start, goal_g, avoid=task, config=cfg)
    height = panda.forward_kinematics_tensor(r.q, [HAND])[:, 0, 2].max()
    (g,) = torch.autograd.grad(height, goal_g)
    eps = 1e-4
    up, down = goal.clone(), goal.clone()
    up[2] += eps
    down[2] -= eps
    fd = [float(panda.forward_kinematics_tensor(motion.trajopt(panda, q_start, x, avoid=task, config=cfg).q,
                                                [HAND])[:, 0, 2].max()) for x in (up, down)]
    print(f"peak hand height {height.item():.3f} m; d(peak)/d(goal z) = {g[2].item():+.4f} (implicit gradient), "
          f"{(fd[0] - fd[1]) / (2 * eps):+.4f} (central difference)")

    fig = viz.plot_trajopt(panda, result, avoid=task, title="motion.trajopt: over the wall, clear of it", view=(14, 20))
    fig.savefig(args.out / "trajopt.png", dpi=72)
    plt.close(fig)
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    k = int(task.distances(blend[None])[0].amin(-1).argmin())
    viz.plot_collision(model, blend[k], ax, obstacles=world, margin=task.margin, floor_extent=1.0)
    viz.plot_end_effector_path(panda, blend, ax, frame=HAND, view="3d")
    when = float(result.times[k])
    ax.set_title(f"the straight blend at t = {when:.2f} s: {blend_gap * 100:+.1f} cm (red: overlapping)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "trajopt_blend.png", dpi=72)
    plt.close(fig)
    print(f"wrote {args.out / 'trajopt.png'} and {args.out / 'trajopt_blend.png'}")
    return 0 if bool(result.converged) else 1


if __name__ == "__main__":
    sys.exit(main())
