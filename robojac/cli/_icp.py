"""``robojac icp``: register two point-cloud files."""

from __future__ import annotations

import pathlib
import time

from .._files import save_figure_atomic, write_text_atomic
from ._numbers import integer, real


def add_parser(sub) -> None:
    p = sub.add_parser("icp", help="register SOURCE to TARGET (PLY/PCD/XYZ) and print T_target_source",
                       description="Align a source point cloud to a target: prints and writes T_target_source (4x4).")
    p.add_argument("source", type=pathlib.Path, help="the cloud to move (PLY, PCD, XYZ or KITTI .bin)")
    p.add_argument("target", type=pathlib.Path, help="the cloud it is aligned to")
    p.add_argument("--init", type=pathlib.Path, help="text file with an initial 4x4 T_target_source")
    p.add_argument("--method", choices=("point_to_point", "point_to_plane", "gicp"), default="gicp",
                   help="the residual (default: gicp, plane to plane)")
    p.add_argument("--voxel", type=real(), default=0.0, help="downsampling voxel size (0: none)")
    p.add_argument("--max-distance", type=real(positive=True),
                   help="maximum correspondence distance (default: 10 voxels)")
    p.add_argument("--levels", type=real(positive=True), nargs="+", default=[1.0],
                   help="coarse-to-fine voxel multiples, e.g. 4 2 1")
    p.add_argument("--kernel", choices=("none", "huber", "cauchy", "geman_mcclure", "tukey"), default="none",
                   help="robust kernel on each correspondence's residual (default: none)")
    p.add_argument("--kernel-scale", type=real(positive=True), default=1.0,
                   help="the kernel's scale: metres for point_to_point and point_to_plane, whitened units for gicp "
                        "(default 1)")
    p.add_argument("--restarts", type=integer(minimum=0), default=0, help="also try this many rotated initial guesses")
    p.add_argument("--out", type=pathlib.Path, help="write the 4x4 result here")
    p.add_argument("--plot", type=pathlib.Path, help="draw the clouds before and after")
    p.add_argument("--up", choices=("x", "y", "z"), default="z",
                   help="the clouds' upward axis in the picture (the Stanford scans: y)")


def run(args) -> int:
    import numpy as np
    import torch

    from ..icp import ICPConfig, align, read_point_cloud
    from ..optim import RobustKernel

    source, target = read_point_cloud(args.source), read_point_cloud(args.target)
    print(f"source {args.source}: {len(source)} points; target {args.target}: {len(target)} points")
    init = None
    if args.init:
        try:
            init = torch.from_numpy(np.loadtxt(args.init).reshape(4, 4))
        except ValueError as e:
            raise ValueError(f"--init {args.init}: expected 16 numbers (a 4x4 matrix): {e}") from None
    config = ICPConfig(method=args.method, voxel_size=args.voxel, max_correspondence_distance=args.max_distance,
                       levels=tuple(args.levels), kernel=RobustKernel(args.kernel, args.kernel_scale), restarts=args.restarts)
    t0 = time.perf_counter()
    result = align(source, target, init=init, config=config)
    dt = time.perf_counter() - t0
    print(f"{args.method}: {int(result.iterations)} iterations, converged={bool(result.converged)}, "
          f"fitness {float(result.fitness):.3f}, rmse {float(result.rmse):.6g}, {dt * 1e3:.0f} ms")
    print_observability(source, target, result, config)
    T0 = torch.eye(4, dtype=torch.float64) if init is None else init
    report(args, source, target, T0, result, args.method)
    return 0 if bool(result.converged) else 1


def print_observability(source, target, result, config) -> None:
    """One line on whether the geometry fixed every direction of the answer (``icp.observability``
    on the clouds as ``align`` saw them); a free motion is named, as the answer along it is arbitrary."""
    from ..icp import observability, voxel_downsample

    src, tgt = voxel_downsample(source, config.voxel_size), voxel_downsample(target, config.voxel_size)
    o = observability(src, tgt, result.T_target_source.reshape(7), config.correspondence_distance(tgt))
    if not o.degenerate:
        print(f"observability: every direction fixed (the least seen motion: {o.weakest:.3f} of it, "
              f"threshold {o.threshold})")
        return
    print(f"observability: DEGENERATE (the least seen motion: {o.weakest:.4f} of it); the answer is arbitrary "
          "along each free motion, free: " + "; ".join(o.weak_directions()))


def report(args, source, target, T0, result, label: str) -> None:
    """Print ``T_target_source``, and write it (``--out``) and the picture (``--plot``)."""
    import numpy as np
    import torch

    T = result.matrix().numpy()
    print("T_target_source =")
    print(np.array2string(T, precision=6, suppress_small=True))
    if args.out:
        import io

        buf = io.StringIO()
        np.savetxt(buf, T)
        write_text_atomic(args.out, buf.getvalue())
        print(f"wrote {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .. import viz

        fig = viz.plot_registration_before_after(source, target, torch.as_tensor(T0), result.T_target_source,
                                                 titles=("as given", f"{label}, fitness {float(result.fitness):.2f}"),
                                                 vertical_axis=args.up)
        save_figure_atomic(fig, args.plot, dpi=110)
        plt.close(fig)
        print(f"wrote {args.plot}")
