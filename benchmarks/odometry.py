"""LiDAR odometry on the 10 KITTI 00 scans: robojac vs KISS-ICP, same scans, same run.

Both run scan to map from the same points (the repository's KITTI scans: every third point of
the originals), each with its defaults: robojac's ``lidar_odometry`` (GICP, 0.5 m map voxels,
the next scan prepared on a second thread), and KISS-ICP's ``KissICP`` with its default
``KISSConfig`` (point-to-point, ``max_range / 100`` = 1 m voxels, its own threads; no per-point
timestamps, so no deskewing).  Also robojac at KISS-ICP's 1 m voxels, in turn instead of
prepared ahead, with the ICP tolerance before this stop, and deskewed.  Accuracy against the
SemanticKITTI poses brought into the LiDAR frame (``Tr^-1 P Tr``); time per scan is the median
over every scan of 5 runs of the sequence (REPEAT, the first argument), the rows taking turns
run by run, after a warm-up run of each: for robojac, from one scan's pose to the next's.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/odometry.py [REPEAT]
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.icp import OdometryConfig, lidar_odometry, read_scans  # noqa: E402
from robojac.trajectory import Trajectory, ate, end_drift, read_kitti, rpe  # noqa: E402

FOLDER = data.path("pointclouds/kitti00")
REPEAT = int(sys.argv[1]) if len(sys.argv) > 1 else 5  # runs of the sequence per configuration: this machine's noise needs more than 9 scans


def reference(times: torch.Tensor) -> Trajectory:
    poses = read_kitti(FOLDER / "semantickitti_poses_first10.txt", calibration=FOLDER / "Tr_velo_to_cam0.txt")
    return Trajectory(poses.poses, times)


def kiss_icp(scans: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP

    config = KISSConfig()
    config.mapping.voxel_size = config.data.max_range / 100.0  # as kiss_icp's load_config sets it
    odometry = KissICP(config)
    poses, seconds = [], []
    for frame in scans:
        t0 = time.perf_counter()
        odometry.register_frame(frame, np.empty(0))
        seconds.append(time.perf_counter() - t0)
        poses.append(odometry.last_pose.copy())
    return np.stack(poses), seconds


def main() -> None:
    print(describe_machine())
    scans, _ = read_scans(FOLDER)
    times = torch.tensor(np.loadtxt(FOLDER / "times.txt"), dtype=torch.float64)
    ref = reference(times)

    def row(name, traj, seconds, iterations="-"):
        e = ate(ref, traj)
        drift = end_drift(ref, traj)
        return [name, f"{e.stats['rmse'] * 100:.2f} cm", f"{rpe(ref, traj).stats['rmse'] * 100:.2f} cm",
                f"{drift * 100:.2f}%", fmt_time(statistics.median(seconds[1:])), iterations]

    configs = {"robojac (defaults: GICP, 0.5 m)": OdometryConfig(),
               "robojac (GICP, KISS-ICP's 1 m voxels)": OdometryConfig(voxel_size=1.0),
               "robojac (defaults, each scan in turn)": OdometryConfig(prefetch=False),
               "robojac (defaults, ICP to 1e-4)": OdometryConfig(tolerance=1e-4),
               "robojac (defaults, deskewed)": OdometryConfig(deskew=True)}
    runs = {name: (lambda cfg=cfg: lidar_odometry(scans, timestamps=times, config=cfg)) for name, cfg in configs.items()}
    try:
        frames = [s.numpy() for s in scans]
        runs["KISS-ICP (defaults)"] = lambda: kiss_icp(frames)
    except ImportError:
        pass
    for run in runs.values():  # warm-up
        run()
    seconds = {name: [] for name in runs}
    last = {}
    for _ in range(REPEAT):  # round robin: a slow stretch of the machine falls on every row alike
        for name, run in runs.items():
            last[name] = run()
            seconds[name] += (last[name].seconds[1:].tolist() if name in configs else last[name][1][1:])
    rows = []
    for name in configs:
        r = last[name]
        its = [int(g.iterations) for g in r.registrations[1:]]
        rows.append(row(name, r.trajectory, [0.0] + seconds[name], f"{statistics.median(its):.0f}"))
    if "KISS-ICP (defaults)" in runs:
        P = last["KISS-ICP (defaults)"][0]
        rows.append(row("KISS-ICP (defaults)", Trajectory(lie.matrix_to_se3(torch.tensor(P)), times),
                        [0.0] + seconds["KISS-ICP (defaults)"]))
    else:
        rows.append(["KISS-ICP", "not installed (pip install kiss-icp)", "", "", "", ""])
    print()
    print(table(["odometry", "ATE RMSE", "RPE RMSE (per scan)", "end drift (of 6.69 m)", "time per scan (median)",
                 "ICP iterations per scan (median)"], rows))


if __name__ == "__main__":
    main()
