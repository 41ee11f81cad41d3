"""LiDAR odometry on 10 real KITTI scans (sequence 00), against the SemanticKITTI poses.

Each Velodyne scan is registered to a local map of the ones before it, with a
constant-velocity prediction and an adaptive correspondence threshold, the ingredients
KISS-ICP showed matter.  The reference poses are in KITTI's camera frame and are
brought into the LiDAR's with the calibration: ``T_velo = Tr^-1 P Tr``.  (The official KITTI
ground truth disagrees with these scans by about a metre over the clip: see data/SOURCES.md.)

    python examples/17_kitti_odometry.py --out out/odometry
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robojac import data  # noqa: E402
from robojac.icp import lidar_odometry, read_scans  # noqa: E402
from robojac.trajectory import Trajectory, ate, end_drift, path_length, read_kitti, rpe, write_kitti  # noqa: E402
from robojac.viz import plot_odometry  # noqa: E402


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    folder = data.path("pointclouds/kitti00")
    scans, files = read_scans(folder)
    times = torch.tensor(np.loadtxt(folder / "times.txt"), dtype=torch.float64)
    lidar = read_kitti(folder / "semantickitti_poses_first10.txt", calibration=folder / "Tr_velo_to_cam0.txt")
    reference = Trajectory(lidar.poses, times)
    print(f"{len(scans)} KITTI scans of {len(scans[0]):,}-{max(len(s) for s in scans):,} points ({files[0].name} ...)")
    result = lidar_odometry(scans, timestamps=times)
    e = ate(reference, result.trajectory)
    drift = end_drift(reference, result.trajectory)
    print(f"converged={result.converged}; {float(result.seconds.median()) * 1e3:.0f} ms per scan (median)")
    print(f"ATE RMSE {e.stats['rmse'] * 100:.2f} cm, drift {drift * 100:.2f}% of the {path_length(reference):.2f} m path, "
          f"RPE {rpe(reference, result.trajectory).stats['rmse'] * 100:.2f} cm per frame")
    write_kitti(result.trajectory, out / "trajectory_kitti.txt")
    fig = plot_odometry(result, reference, scans=scans)
    fig.savefig(out / "odometry.png", dpi=80)
    plt.close("all")
    print(f"  trajectory and picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/odometry"))
    main(p.parse_args().out)
