"""Trajectory errors (``trajectory.ate``, ``trajectory.rpe``) against evo's ``ape`` and ``rpe``,
on the same trajectories, in one run.

The reference is KITTI 00's pose-graph optimum (``posegraph.optimize``), the estimate its
odometry chain (``initialize(graph, "odometry")``), 4541 poses over 3.7 km.  Each case is run
by both from poses in memory (evo's ``PosePath3D`` built once, outside the timing; robojac's
``Trajectory`` likewise; evo's ``ape`` aligns the estimate in place, so it gets a copy, and its
``rpe`` cuts both trajectories down to its pairs unless ``support_loop=True``, which copies
them: the copies are in evo's time), and the errors are compared (the largest difference, relative to the
largest error).  Medians over --repeat interleaved runs.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/trajectory_errors.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, interleaved_medians, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import initialize, optimize, read_g2o  # noqa: E402
from robojac.trajectory import PoseRelation, Trajectory, ate, rpe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from evo.core import metrics
    from evo.core.trajectory import PosePath3D
    from evo.main_ape import ape as evo_ape
    from evo.main_rpe import rpe as evo_rpe

    print(f"# Trajectory errors, robojac vs evo; {describe_machine()}", flush=True)
    graph = read_g2o(data.path("posegraph/kitti_00.g2o"))
    ref = Trajectory(optimize(graph).poses.detach())
    est = Trajectory(graph.poses_from_state(initialize(graph, "odometry")))

    def path(t):
        P = t.poses.cpu().numpy()
        return PosePath3D(positions_xyz=P[:, :3], orientations_quat_wxyz=P[:, [6, 3, 4, 5]])

    R, E = path(ref), path(est)
    trans, angle = metrics.PoseRelation.translation_part, metrics.PoseRelation.rotation_angle_deg
    cases = [
        ("APE, aligned (Umeyama)", lambda: ate(ref, est),
         lambda: evo_ape(R, copy.deepcopy(E), trans, align=True, correct_scale=False)),
        ("APE, aligned with scale", lambda: ate(ref, est, correct_scale=True),
         lambda: evo_ape(R, copy.deepcopy(E), trans, align=True, correct_scale=True)),
        ("RPE, 1 frame", lambda: rpe(ref, est, delta=1),
         lambda: evo_rpe(R, E, trans, delta=1, delta_unit=metrics.Unit.frames, support_loop=True)),
        ("RPE, 100 m, consecutive", lambda: rpe(ref, est, delta=100.0, delta_unit="meters"),
         lambda: evo_rpe(R, E, trans, delta=100.0, delta_unit=metrics.Unit.meters, support_loop=True)),
        ("RPE, 100 m, all pairs", lambda: rpe(ref, est, delta=100.0, delta_unit="meters", all_pairs=True),
         lambda: evo_rpe(R, E, trans, delta=100.0, delta_unit=metrics.Unit.meters, all_pairs=True,
                         support_loop=True)),
        ("RPE, 30 deg, consecutive (rotation angle)",
         lambda: rpe(ref, est, delta=30.0, delta_unit="degrees", relation=PoseRelation.ROTATION_ANGLE_DEG),
         lambda: evo_rpe(R, E, angle, delta=30.0, delta_unit=metrics.Unit.degrees, support_loop=True)),
    ]
    rows = []
    for name, ours, theirs in cases:
        a, b = ours().errors.cpu().numpy(), theirs().np_arrays["error_array"]
        diff = float(np.abs(a - b).max() / np.abs(b).max()) if len(a) == len(b) else float("nan")
        t_ours, t_theirs = interleaved_medians([ours, theirs], repeat=args.repeat, warmup=1)
        rows.append([name, f"{len(a)}", f"{diff:.1e}", fmt_time(t_ours), fmt_time(t_theirs), f"{t_theirs / t_ours:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["case (KITTI 00, 4541 poses)", "errors", "largest difference", "robojac", "evo", "evo / robojac"], rows))


if __name__ == "__main__":
    main()
