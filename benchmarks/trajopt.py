"""Trajectory optimization: ``motion.trajopt`` on the solver engine, beside SciPy's solvers on the
same problem.

The scene is example 32's: the Panda's hand, pointing down, from one side of a wall 0.5 m high
to the other, its skeleton's capsules (margin 2 cm) clear of the wall, the floor and itself, 32
waypoints over 2 s, the ends held.  Three ways to the trajectory, each from the straight
minimum-acceleration blend between the ends (which crosses the wall):

* ``robojac``: ``motion.trajopt`` with ``end=`` (so no IK in the time), one initial trajectory
  and the default four; and with ``constraints="hard"`` (the clearance and the velocity limits as
  the engine's inequality constraints: SLSQP's problem below);
* ``scipy least_squares``: SciPy's trust-region reflective solver (``method="trf"``, the joint
  limits as bounds) on the very same residuals and closed-form Jacobians (robojac's factors,
  stacked densely): an independent solver of the same cost, whose optimum ours must equal;
* ``scipy SLSQP``: scikit-robot's formulation (``skrobot.planner.sqp_plan_trajectory``, whose
  heavy dependencies are not installed here): the smoothness as the cost, and the clearance, the
  velocity limits and the bounds as hard constraints, by SciPy's SLSQP.

Then a batch of goals (the wall's far side at several heights), robojac alone.  Medians;
float64; ratios are robojac's time over the other's (below 1: robojac is faster).  pyroki
(JAX; not on PyPI) and cuRobo (CUDA only) are the peers users name; neither runs here.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/trajopt.py [--steps 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from _util import describe_machine, fmt_time, median_time, table  # noqa: E402
from helpers import Stacked  # noqa: E402  (the tests' own comparison with SciPy)

from robojac import collision, data, ik, motion  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

HAND = "panda_hand_tcp"
READY = [0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4]


def scene():
    panda = Chain.from_urdf(data.path("robots/panda.urdf"), tip=HAND)
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([collision.Box((0.2, 0.05, 0.25), (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0)),
                                 collision.HalfSpace((0.0, 0.0, 1.0), 0.0)])
    task = ik.CollisionTask(model, world, margin=0.02)
    ready = torch.tensor(READY, dtype=torch.float64)
    X = panda.forward_kinematics_tensor(ready, [HAND])[0].clone()
    X[:3] = torch.tensor([0.5, -0.3, 0.25], dtype=torch.float64)
    q_start = ik.solve(panda, X, q0=ready, avoid=task, config=ik.IKConfig(frame=HAND)).q
    X[1] = 0.3
    q_end = ik.solve(panda, X, q0=q_start, avoid=task, config=ik.IKConfig(frame=HAND)).q
    return panda, model, world, task, q_start, q_end, X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=32, help="waypoints")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per figure (the median is quoted)")
    args = ap.parse_args()
    import scipy
    from scipy.optimize import least_squares, minimize

    print(f"# trajectory optimization; {describe_machine()}; scipy {scipy.__version__}")
    panda, model, world, task, q_start, q_end, X = scene()
    T, duration = args.steps, 2.0
    h = duration / (T - 1)
    cfg = motion.TrajOptConfig(steps=T, duration=duration)
    s = torch.linspace(0.0, 1.0, T, dtype=torch.float64)[:, None]
    blend = q_start + (3 * s * s - 2 * s ** 3) * (q_end - q_start)
    gap = float(task.distances(blend[None]).min())
    print(f"# {model.num_shapes} capsules, {len(model.pairs)} self pairs, a wall and the floor; {T} waypoints over "
          f"{duration:.0f} s; the straight blend's closest approach {gap * 100:+.1f} cm")

    rows = []

    def ours(starts):
        return motion.trajopt(panda, q_start, end=q_end, avoid=task, config=motion.TrajOptConfig(
            steps=T, duration=duration, starts=starts))

    r = motion.trajopt(panda, q_start, end=q_end, avoid=task, config=motion.TrajOptConfig(
        steps=T, duration=duration, starts=1, constraints="hard"))
    t_hard = median_time(lambda: motion.trajopt(panda, q_start, end=q_end, avoid=task, config=motion.TrajOptConfig(
        steps=T, duration=duration, starts=1, constraints="hard")), repeat=args.repeats, budget_s=60)
    hard_row = ["robojac trajopt, hard constraints, 1 start", fmt_time(t_hard), f"{float(r.cost):.4f}",
                f"{float(r.clearance) * 100:+.2f}", f"{float(r.speed):.2f}", r.reason[0], str(int(r.iterations))]
    hard_result = r
    mine = {}
    for S in (1, 4):
        r = ours(S)
        mine[S] = (median_time(lambda: ours(S), repeat=args.repeats, budget_s=60), r)
        rows.append([f"robojac trajopt, {S} start{'s' if S > 1 else ''}", fmt_time(mine[S][0]), f"{float(r.cost):.4f}",
                     f"{float(r.clearance) * 100:+.2f}", f"{float(r.speed):.2f}", r.reason[0], str(int(r.iterations))])

    # the same residuals stacked for SciPy (the factors trajopt builds, from robojac.motion)
    idx = torch.arange(T)
    pairs = torch.stack((idx[:-1], idx[1:]), 1)
    v_max = panda.velocity_limits.double()
    spec = [(motion.Acceleration(h, cfg.acceleration_weight), torch.stack((idx[:-2], idx[1:-1], idx[2:]), 1)),
            (motion.RestAtEnds(h, cfg.acceleration_weight), torch.tensor([[0, 1], [T - 2, T - 1]])),
            (motion.VelocityLimit(h, v_max, cfg.velocity_weight), pairs),
            (motion.SweptClearance(task, cfg.substeps, cfg.collision_weight), pairs)]
    cost_fn = Stacked(spec, q_start, q_end, T)
    lo, hi = (np.tile(x.numpy(), T - 2) for x in panda.limits_for(torch.float64))
    x0 = blend[1:-1].reshape(-1).numpy()

    def scipy_ls():
        return least_squares(lambda x: cost_fn(x)[0], x0, jac=lambda x: cost_fn(x)[1], bounds=(lo, hi), method="trf",
                             xtol=1e-12, ftol=1e-12, gtol=1e-10, max_nfev=2000)

    ls = scipy_ls()
    t_ls = median_time(scipy_ls, repeat=args.repeats, budget_s=120)
    Q_ls = cost_fn.waypoints(ls.x)
    gap_ls = float(task.distances(Q_ls[None]).min())
    speed_ls = float(((Q_ls[1:] - Q_ls[:-1]).abs() / h / v_max).max())
    rows.append(["scipy least_squares (trf), same cost", fmt_time(t_ls), f"{ls.cost:.4f}", f"{gap_ls * 100:+.2f}",
                 f"{speed_ls:.2f}", ls.message[:40], str(ls.nfev)])

    # scikit-robot's formulation: smoothness as the cost, the rest as constraints (SLSQP), the
    # problem trajopt's constraints="hard" solves
    smooth = Stacked(spec[:2], q_start, q_end, T)
    speed = Stacked([(motion.VelocityBound(h, v_max), pairs)], q_start, q_end, T)
    clear = Stacked([(motion.SweptClearance(task.constraint(), cfg.substeps), pairs)], q_start, q_end, T)

    def slsqp():
        def f(x):
            r, J = smooth(x)
            return 0.5 * r @ r, J.T @ r

        # the velocity rows in radians per step (as scikit-robot writes them): SLSQP's stopping
        # test is scale-sensitive, and in rad/s it ran to its 500-iteration limit (43 s, the same answer)
        cons = [{"type": "ineq", "fun": lambda x: -h * speed(x)[0], "jac": lambda x: -h * speed(x)[1]},
                {"type": "ineq", "fun": lambda x: -clear(x)[0], "jac": lambda x: -clear(x)[1]}]
        return minimize(f, x0, jac=True, method="SLSQP", bounds=list(zip(lo, hi)), constraints=cons,
                        options={"maxiter": 500, "ftol": 1e-10})

    t0 = time.perf_counter()
    sq = slsqp()
    t_sq = time.perf_counter() - t0
    if args.repeats > 1:
        t_sq = median_time(slsqp, repeat=max(args.repeats // 2, 1), warmup=0, budget_s=120)
    Q_sq = cost_fn.waypoints(sq.x)
    gap_sq = float(task.distances(Q_sq[None]).min())
    speed_sq = float(((Q_sq[1:] - Q_sq[:-1]).abs() / h / v_max).max())
    rows.append(["scipy SLSQP, hard constraints (skrobot's)", fmt_time(t_sq),
                 f"{float(0.5 * (smooth(sq.x)[0] ** 2).sum()):.4f}", f"{gap_sq * 100:+.2f}", f"{speed_sq:.2f}",
                 sq.message[:40], str(sq.nit)])
    rows.append(hard_row)
    print(table(["solver", "time", "cost (robojac's)", "closest [cm]", "speed / limit", "stopped", "iterations"], rows))
    print(f"# hard constraints: robojac / SLSQP {t_hard / t_sq:.3f}x; smoothness cost robojac "
          f"{float(hard_result.cost):.6f}, SLSQP {float(0.5 * (smooth(sq.x)[0] ** 2).sum()):.6f}; max waypoint "
          f"difference {float((hard_result.q - cost_fn.waypoints(sq.x)).abs().max()):.1e} rad")
    t1 = mine[1][0]
    print(f"# robojac 1 start / scipy least_squares: {t1 / t_ls:.3f}x; / SLSQP: {t1 / t_sq:.3f}x; optimum: "
          f"robojac {float(mine[1][1].cost):.6f} against least_squares {ls.cost:.6f} "
          f"(max waypoint difference {float((mine[1][1].q - Q_ls).abs().max()):.1e} rad)")

    # a batch of goals: the far side at several heights
    B = 16
    goals = X.expand(B, 7).clone()
    goals[:, 2] = torch.linspace(0.15, 0.45, B, dtype=torch.float64)
    goals[:, 0] = 0.45 + 0.1 * torch.linspace(0, 1, B, dtype=torch.float64)
    c = motion.TrajOptConfig(steps=T, duration=duration, ik=ik.IKConfig(frame=HAND))
    r = motion.trajopt(panda, q_start, goals, avoid=task, config=c)
    t_b = median_time(lambda: motion.trajopt(panda, q_start, goals, avoid=task, config=c), repeat=3, budget_s=120)
    print(f"# a batch of {B} pose goals (IK included, 4 starts each): {fmt_time(t_b)}, {fmt_time(t_b / B)} per "
          f"trajectory; {int(r.converged.sum())}/{B} feasible, reasons {sorted(set(r.reason))}, closest "
          f"{float(r.clearance.min()) * 100:+.2f} cm")


if __name__ == "__main__":
    main()
