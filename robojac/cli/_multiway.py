"""``robojac multiway``: many scans of one object or place, registered into one frame."""

from __future__ import annotations

import pathlib
import sys
import time

from .._files import save_figure_atomic, write_text_atomic
from ._bar import progress
from ._numbers import real


def add_parser(sub) -> None:
    p = sub.add_parser("multiway", help="register many point clouds into one frame (no initial guess)",
                       description="Register every pair of scans (global registration, then GICP), join them in a "
                                   "robust pose graph, and write T_world_scan of each (scan 0 is the world).")
    p.add_argument("clouds", type=pathlib.Path, nargs="+", help="two or more PLY/PCD/XYZ files")
    p.add_argument("--voxel", type=real(positive=True), default=0.003,
                   help="pairwise registration voxel (metres, default 0.003)")
    p.add_argument("--min-fitness", type=real(maximum=1), default=0.3,
                   help="the overlap a pair needs to be used (default 0.3)")
    p.add_argument("--out", type=pathlib.Path, help="write the poses here: one line per scan, "
                                                    "'file tx ty tz qx qy qz qw'")
    p.add_argument("--merged", type=pathlib.Path, help="write the merged cloud here (PLY, coloured by scan)")
    p.add_argument("--merged-voxel", type=real(), default=0.0,
                   help="thin each scan of the merged cloud to this voxel")
    p.add_argument("--plot", type=pathlib.Path, help="draw the scans as given, registered, and the pose graph")
    p.add_argument("--up", choices=("x", "y", "z"), default="z", help="upward axis in the picture (Stanford scans: y)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..icp import MultiwayConfig, multiway_registration, read_point_cloud

    if len(args.clouds) < 2:
        raise ValueError(f"clouds: expected two or more files, got {len(args.clouds)}")
    config = MultiwayConfig(voxel_size=args.voxel, min_fitness=args.min_fitness)
    t0 = time.perf_counter()
    clouds = [read_point_cloud(path) for path in args.clouds]

    def bar(done, total, what):
        if not args.quiet:
            progress(done, total, t0, f"steps ({what})".ljust(24), rate=False)

    try:
        result = multiway_registration(clouds, config=config, progress=bar)
    finally:
        if not args.quiet:
            sys.stderr.write("\n")
    print(f"{len(clouds)} scans: {len(result.pairs)} pairs tried, {len(result.kept)} kept, {len(result.pruned)} "
          f"pruned; converged={result.converged} ({result.reason}), {time.perf_counter() - t0:.1f} s")
    lines = ["# file tx ty tz qx qy qz qw: T_world_scan (scan 0 is the world)"]
    for path, pose in zip(args.clouds, result.poses.tolist()):
        lines.append(f"{path.name} " + " ".join(repr(float(v)) for v in pose))
        print("  " + lines[-1])
    if args.out:
        write_text_atomic(args.out, "\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    if args.merged:
        result.write_merged(args.merged, clouds, voxel_size=args.merged_voxel)
        print(f"wrote {args.merged}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .. import viz

        fig = viz.plot_multiway(clouds, result, labels=[p.stem.removesuffix(".ply") for p in args.clouds],
                                vertical_axis=args.up)
        save_figure_atomic(fig, args.plot, dpi=90)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0 if result.converged else 1
