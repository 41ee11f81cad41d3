"""Trajectory errors (``trajectory.ate``, ``trajectory.rpe``) against evo's ``ape`` and ``rpe``,
on the same trajectories, in one run.

The reference is KITTI 00's pose-graph optimum (``posegraph.optimize``), the estimate its
odometry chain (``initialize(graph, "odometry")``), 4541 poses over 3.7 km.  Each case is run
by both from poses in memory (evo's ``PosePath3D`` built once, outside the timing; robojac's
``Trajectory`` likewise; evo's ``ape`` aligns the estimate in place, so it gets a copy (and
projects both in place, so the projected case copies both), and its
``rpe`` cuts both trajectories down to its pairs unless ``support_loop=True``, which copies
them: the copies are in evo's time), and the errors are compared (the largest difference, relative to the
largest error).  The association cases give both trajectories times (10 Hz, the estimate's
0.03 s late) and time ``associate`` against evo's ``associate_trajectories`` (its poses compared:
the largest position difference, relative to the largest position).  Medians over --repeat
interleaved runs.

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
from robojac.trajectory import PoseRelation, Trajectory, associate, ate, rpe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from evo.core import metrics, sync
    from evo.core.trajectory import Plane, PosePath3D, PoseTrajectory3D
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
    stamps = np.arange(len(ref)) * 0.1
    ref_t, est_t = Trajectory(ref.poses, stamps), Trajectory(est.poses, stamps + 0.03)

    def stamped(t):
        P = t.poses.cpu().numpy()
        return PoseTrajectory3D(positions_xyz=P[:, :3], orientations_quat_wxyz=P[:, [6, 3, 4, 5]],
                                timestamps=t.timestamps.cpu().numpy())

    R_t, E_t = stamped(ref_t), stamped(est_t)
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
        ("APE, aligned, projected to the xy plane", lambda: ate(ref, est, project_to_plane="xy"),
         lambda: evo_ape(copy.deepcopy(R), copy.deepcopy(E), trans, align=True, project_to_plane=Plane.XY)),
        ("associate, nearest time, -0.03 s offset", lambda: associate(ref_t, est_t, offset=-0.03),
         lambda: sync.associate_trajectories(R_t, E_t, offset_2=-0.03)),
        ("associate, interpolation (within 0.05 s)",
         lambda: associate(ref_t, est_t, 0.05, method="interpolation"),
         lambda: sync.associate_trajectories(R_t, E_t, max_diff=0.05, sync_method=sync.SyncMethod.interpolation)),
    ]

    def compared(a, b) -> tuple[int, float]:  # how many errors (or pairs), and the largest difference
        if isinstance(a, tuple):  # associated trajectories: their positions
            a = np.concatenate([t.poses[:, :3].cpu().numpy() for t in a])
            b = np.concatenate([t.positions_xyz for t in b])
            return len(a) // 2, float(np.abs(a - b).max() / np.abs(b).max()) if a.shape == b.shape else float("nan")
        a, b = a.errors.cpu().numpy(), b.np_arrays["error_array"]
        return len(a), float(np.abs(a - b).max() / np.abs(b).max()) if len(a) == len(b) else float("nan")

    rows = []
    for name, ours, theirs in cases:
        count, diff = compared(ours(), theirs())
        t_ours, t_theirs = interleaved_medians([ours, theirs], repeat=args.repeat, warmup=1)
        rows.append([name, f"{count}", f"{diff:.1e}", fmt_time(t_ours), fmt_time(t_theirs), f"{t_theirs / t_ours:.1f}x"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["case (KITTI 00, 4541 poses)", "errors (pairs)", "largest difference", "robojac", "evo", "evo / robojac"], rows))


if __name__ == "__main__":
    main()
