"""``robojac odometry``: a folder of LiDAR scans into a trajectory (and its errors, given a reference)."""

from __future__ import annotations

import pathlib
import sys
import time

from .._files import save_figure_atomic
from ._bar import progress
from ._numbers import real


def add_parser(sub) -> None:
    p = sub.add_parser("odometry", help="LiDAR odometry of a folder of scans (KITTI .bin or PLY/PCD)",
                       description="Register each scan to a local map of the ones before it (scan to map, "
                                   "constant velocity, adaptive threshold) and write the trajectory.")
    p.add_argument("scans", type=pathlib.Path, help="folder of scans, in file-name order")
    p.add_argument("--format", choices=("auto", "kitti", "ply"), default="auto",
                   help="KITTI .bin or PLY/PCD scans (default: whichever the folder holds)")
    p.add_argument("--out", type=pathlib.Path, help="write the trajectory here (KITTI format, T_world_scan)")
    p.add_argument("--reference", type=pathlib.Path, help="KITTI-format reference poses: prints ATE and RPE")
    p.add_argument("--calib", type=pathlib.Path,
                   help="KITTI calibration with a 'Tr:' line (velodyne -> camera): the reference is in the camera frame")
    p.add_argument("--times", type=pathlib.Path, help="timestamps, one per scan (seconds)")
    p.add_argument("--voxel", type=real(positive=True), default=0.5, help="local map voxel (metres, default 0.5)")
    p.add_argument("--max-range", type=real(positive=True), default=100.0,
                   help="drop points farther than this from the sensor (metres, default 100)")
    p.add_argument("--plot", type=pathlib.Path, help="draw the map, the trajectory's error and the error over time")
    p.add_argument("--observability", action="store_true",
                   help="also check that each registration fixed every direction (a corridor or a tunnel does not)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import numpy as np
    import torch

    from ..icp import OdometryConfig, lidar_odometry, read_scans
    from ..trajectory import KITTI_LENGTHS, Trajectory, ate, end_drift, kitti_error, path_length, read_kitti, rpe, write_kitti

    t0 = time.perf_counter()
    scans, files = read_scans(args.scans, format=args.format)
    times = None
    if args.times:
        times = torch.tensor(np.loadtxt(args.times, ndmin=1), dtype=torch.float64)
    print(f"{args.scans}: {len(scans)} scans ({files[0].name} ... {files[-1].name})")

    def bar(done, total):
        if not args.quiet:
            progress(done, total, t0, "scans")

    try:
        result = lidar_odometry(scans, timestamps=times,
                                config=OdometryConfig(voxel_size=args.voxel, max_range=args.max_range,
                                                      observability=args.observability), progress=bar)
    finally:
        if not args.quiet:
            sys.stderr.write("\n")
    print(f"converged={result.converged}; {float(result.seconds.median()) * 1e3:.0f} ms per scan (median), "
          f"{time.perf_counter() - t0:.1f} s in all")
    if args.observability:
        bad = result.degenerate_scans
        weakest = min(o.weakest for o in result.observability[1:]) if len(scans) > 1 else 1.0
        if bad:
            o = result.observability[bad[0]]
            print(f"observability: DEGENERATE scans {bad} (their motion along the free directions is the "
                  f"prediction's); scan {bad[0]} free: " + "; ".join(o.weak_directions()))
        else:
            print(f"observability: every scan fixed every direction (the least seen motion: {weakest:.3f} of it)")
    if args.out:
        write_kitti(result.trajectory, args.out)
        print(f"wrote {args.out}")
    reference = None
    if args.reference:
        ref = read_kitti(args.reference, calibration=args.calib)
        if len(ref) < len(scans):
            raise ValueError(f"--reference {args.reference}: {len(ref)} poses for {len(scans)} scans")
        reference = Trajectory(ref.poses[: len(scans)], result.trajectory.timestamps)
        e = ate(reference, result.trajectory)
        print(f"ATE RMSE {e.stats['rmse']:.4f} m; RPE RMSE {rpe(reference, result.trajectory).stats['rmse']:.4f} m per "
              f"scan; end drift {end_drift(reference, result.trajectory) * 100:.2f}% of {path_length(reference):.2f} m")
        if path_length(reference) > KITTI_LENGTHS[0]:  # the benchmark's error needs a 100 m segment
            k = kitti_error(reference, result.trajectory)
            print(f"KITTI error over 100-800 m segments: translation {k.translation_percent:.3f}%, rotation "
                  f"{k.rotation_deg_per_100m:.4f} deg/100m ({int(k.segments.sum())} segments)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .. import viz

        fig = viz.plot_odometry(result, reference, scans=scans)
        save_figure_atomic(fig, args.plot, dpi=90)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0 if result.converged else 1
