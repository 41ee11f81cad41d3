"""Collision distances, side by side with Pinocchio and coal.

The Panda's skeleton capsules (``RobotCollision.from_skeleton(panda, 0.05)``: 8 capsules, 16
self-collision pairs) and three obstacles (a ball, a box, the floor): every self-collision
pair's and every capsule-obstacle signed distance (40 distances) for a batch of configurations.
robojac: ``self_distances`` and ``distances`` on the whole batch, float64 and float32.
Pinocchio 4 with coal: the same shapes as geometry objects on the same links,
``computeDistances`` per configuration from Python (as a batched user calls it), float64.  The
answers are compared first.  Medians; ratios are robojac's time over the peer's (below 1:
robojac is faster).

Then ``ik.solve(..., avoid=CollisionTask)`` on the same scene (the hand over the table, under the
ball; no peer in this run): IK alone and clear, how many targets each leaves clear, and the time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/collision.py [--batches 1 1000 100000]
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from _util import batch_arguments, describe_machine, fmt_time, median_time, table  # noqa: E402
from helpers import pinocchio_collision, pinocchio_configuration  # noqa: E402  (the test's own comparison)

from robojac import collision, data, ik  # noqa: E402
from robojac.kinematics import Chain  # noqa: E402

PER_CALL = 2000  # configurations the per-configuration peer is timed on (scaled to the batch)


def main() -> None:
    args = batch_arguments(__doc__)
    try:
        import coal
        import pinocchio as pin
    except ImportError:
        pin = coal = None
    print(f"# collision distances; {describe_machine()}")
    print(f"# Pinocchio: {pin.__version__ if pin else 'not installed'}, coal: {coal.__version__ if coal else '-'}")
    path = data.path("robots/panda.urdf")
    panda = Chain.from_urdf(path)
    model = collision.RobotCollision.from_skeleton(panda, 0.05)
    world = collision.Obstacles([
        collision.Sphere(0.12, (0.45, 0.0, 0.50)),
        collision.Box((0.20, 0.40, 0.10), (0.65, 0.0, 0.10, 0.0, 0.0, 0.0, 1.0)),
        collision.HalfSpace((0.0, 0.0, 1.0), 0.0),
    ])

    def ours(q):
        return torch.cat((model.self_distances(q), model.distances(q, world).flatten(-2)), -1)

    q_all = panda.random_configuration(max(args.batches), generator=torch.Generator().manual_seed(0))
    print(f"# {model.num_shapes} capsules, {len(model.pairs)} pairs, {len(world)} obstacles: "
          f"{ours(q_all[0]).shape[-1]} distances per configuration")
    rows = []
    if pin is not None:
        pmodel, gm = pinocchio_collision(pin, coal, str(path), model, world)
        pdata, gdata = pmodel.createData(), pin.GeometryData(gm)
        n = min(PER_CALL, len(q_all))
        qp = [pinocchio_configuration(pin, pmodel, panda, q_all[k]) for k in range(n)]
        worst = 0.0
        for k in range(min(n, 200)):
            pin.computeDistances(pmodel, pdata, gm, gdata, qp[k])
            ref = np.array([r.min_distance for r in gdata.distanceResults])
            worst = max(worst, float(np.abs(ours(q_all[k]).numpy() - ref).max()))
        print(f"# robojac vs Pinocchio + coal over 200 configurations: max difference {worst:.1e} m")

        def run() -> None:
            for k in range(n):
                pin.computeDistances(pmodel, pdata, gm, gdata, qp[k])

        per_config = median_time(run, repeat=max(3, args.repeats // 3)) / n
    for dtype in args.dtypes:
        for B in args.batches:
            q = q_all[:B].to(getattr(torch, dtype))
            t = median_time(lambda: ours(q), repeat=args.repeats)
            row = [dtype, f"{B:,}", fmt_time(t), f"{B / t / 1e3:.1f}"]
            if pin is not None:
                theirs = per_config * B
                row += [fmt_time(theirs), f"{1 / per_config / 1e3:.1f}", f"{t / theirs:.2f}x"]
            rows.append(row)
    print(table(["robojac dtype", "batch", "robojac", "robojac k/s", "Pinocchio + coal (per call)",
                 "Pinocchio k/s", "robojac / Pinocchio"], rows))

    task = ik.CollisionTask(model, world, margin=0.02)
    cfg = ik.IKConfig(frame="panda_hand_tcp")
    rows = []
    for B in (8, 64):
        g = torch.Generator().manual_seed(1)
        target = torch.stack((0.45 + 0.2 * torch.rand(B, generator=g, dtype=torch.float64),
                              -0.3 + 0.6 * torch.rand(B, generator=g, dtype=torch.float64),
                              0.28 + 0.08 * torch.rand(B, generator=g, dtype=torch.float64)), -1)
        plain = ik.solve(panda, target, config=cfg)
        clear = ik.solve(panda, target, config=cfg, avoid=task)
        t_plain = median_time(lambda: ik.solve(panda, target, config=cfg), repeat=5)
        t_clear = median_time(lambda: ik.solve(panda, target, config=cfg, avoid=task), repeat=3)
        overlap = int((task.distances(plain.q[:, None]).amin((1, 2)) < 0).sum())
        rows.append([f"{B}", f"{overlap} of {B}", fmt_time(t_plain), f"{int(clear.converged.sum())} of {B}",
                     f"{sorted(set(clear.reason))}", fmt_time(t_clear)])
    print(table(["targets", "IK alone: overlapping", "IK alone", f"avoid ({cfg.avoid_starts} starts): converged",
                 "reasons", "avoid"], rows))


if __name__ == "__main__":
    main()
