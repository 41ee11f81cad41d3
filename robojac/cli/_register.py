"""``robojac register``: two point clouds with no initial guess (features, RANSAC, then ICP)."""

from __future__ import annotations

import pathlib
import sys
import time

from ._bar import progress
from ._icp import print_observability, report
from ._numbers import integer, real


def add_parser(sub) -> None:
    p = sub.add_parser("register", help="register SOURCE to TARGET with no initial guess (global, then ICP)",
                       description="Find T_target_source without an initial guess: FPFH features, a batched RANSAC, "
                                   "then GICP; prints and writes the 4x4 result.")
    p.add_argument("source", type=pathlib.Path, help="the cloud to move (PLY, PCD, XYZ or KITTI .bin)")
    p.add_argument("target", type=pathlib.Path, help="the cloud it is registered to")
    p.add_argument("--voxel", type=real(positive=True), required=True,
                   help="feature voxel size in metres (the bunny: 0.003; a LiDAR scan: 0.25)")
    p.add_argument("--hypotheses", type=integer(minimum=1), default=100000, help="the most RANSAC samples")
    p.add_argument("--seed", type=int, default=0,
                   help="the RANSAC sampler's seed (default 0: the same answer each run)")
    p.add_argument("--out", type=pathlib.Path, help="write the 4x4 result here")
    p.add_argument("--plot", type=pathlib.Path, help="draw the clouds as given and registered")
    p.add_argument("--up", choices=("x", "y", "z"), default="z",
                   help="the clouds' upward axis in the picture (the Stanford scans: y)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from ..icp import GlobalConfig, global_align, read_point_cloud

    config = GlobalConfig(voxel_size=args.voxel, hypotheses=args.hypotheses, seed=args.seed)
    t0 = time.perf_counter()
    try:
        if not args.quiet:
            progress(0, 2, t0, "steps (reading the clouds)   ", rate=False)
        source, target = read_point_cloud(args.source), read_point_cloud(args.target)
        if not args.quiet:
            progress(1, 2, t0, "steps (features, RANSAC, ICP)", rate=False)
        result = global_align(source, target, config=config)
        if not args.quiet:
            progress(2, 2, t0, "steps (registered)           ", rate=False)
    finally:
        if not args.quiet:
            sys.stderr.write("\n")
    print(f"source {args.source}: {len(source)} points; target {args.target}: {len(target)} points")
    print(f"global registration: {int(result.num_inliers)} RANSAC inliers, converged={bool(result.converged)}, "
          f"fitness {float(result.fitness):.3f}, rmse {float(result.rmse):.6g}, {time.perf_counter() - t0:.2f} s")
    if not bool(result.converged):
        print("no consistent pose found (too few inliers or too little overlap); the pose below is the best guess")
    else:
        print_observability(source, target, result, config.refinement())
    report(args, source, target, torch.eye(4, dtype=torch.float64), result, "global + GICP")
    return 0 if bool(result.converged) else 1
