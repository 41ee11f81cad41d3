"""The KITTI odometry error (``trajectory.kitti_error``) against KISS-ICP's ``sequence_error``,
on the same trajectories, in one run.

The reference is each KITTI pose graph's optimum (``posegraph.optimize``); the estimate is the
graph's odometry chain (``initialize(graph, "odometry")``: the odometry edges alone, composed),
3.7 km for KITTI 00 and 2.2 km for KITTI 05.  KISS-ICP follows the KITTI development kit in
C++ but returns its averages as float32, and turns radians into degrees with ``180 / 3.14``
(``cpp/kiss_icp/metrics/Metrics.cpp``), per metre; its rotation figure is shown as it comes and
converted (``* 3.14 / pi * 100``, deg/100m).  Medians over --repeat runs.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/kitti_metric.py
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, interleaved_medians, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.posegraph import initialize, optimize, read_g2o  # noqa: E402
from robojac.trajectory import Trajectory, kitti_error  # noqa: E402


def matrices(P: torch.Tensor):
    T = torch.eye(4, dtype=torch.float64).repeat(len(P), 1, 1)
    T[:, :3, :3] = lie.quat_to_matrix(P[:, 3:])
    T[:, :3, 3] = P[:, :3]
    return T.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", nargs="+", default=["kitti_00", "kitti_05"])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    from kiss_icp.metrics import sequence_error

    print(f"# KITTI odometry error, robojac vs KISS-ICP; {describe_machine()}", flush=True)
    rows = []
    for name in args.graphs:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        ref = optimize(graph).poses.tensor().detach()
        est = graph.poses_from_state(initialize(graph, "odometry")).tensor().detach()
        R, E = matrices(ref), matrices(est)
        ours = kitti_error(Trajectory(ref), Trajectory(est))
        theirs = sequence_error(R, E)
        t_ours, t_theirs = interleaved_medians([lambda: kitti_error(Trajectory(ref), Trajectory(est)),
                                                lambda: sequence_error(R, E)], repeat=args.repeat, warmup=1)
        rows.append([name, f"{len(ref)}", f"{ours.translation_percent:.10g} %", f"{theirs[0]:.10g} %",
                     f"{ours.rotation_deg_per_100m:.10g}", f"{theirs[1]:.10g} deg/m ({theirs[1] * 3.14 / math.pi * 100:.10g})",
                     fmt_time(t_ours), fmt_time(t_theirs), f"{t_theirs / t_ours:.2f}x"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["trajectory", "poses", "robojac translation", "KISS-ICP translation", "robojac deg/100m",
                 "KISS-ICP rotation (converted)", "robojac", "KISS-ICP", "KISS-ICP / robojac"], rows))


if __name__ == "__main__":
    main()
