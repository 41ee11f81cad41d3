"""``robojac pgo``: optimize a g2o pose graph, write the result, draw it."""

from __future__ import annotations

import pathlib
import time

from .._files import save_figure_atomic
from ._numbers import integer, real


def add_parser(sub) -> None:
    p = sub.add_parser("pgo", help="optimize a g2o pose graph (2D, 3D or Sim3)",
                       description="Read a g2o pose graph, optimize it (sparse LM/GN), write the optimized graph.")
    p.add_argument("input", type=pathlib.Path, help="g2o file (VERTEX_SE2/EDGE_SE2, VERTEX_SE3:QUAT/EDGE_SE3:QUAT or "
                                                    "VERTEX_SIM3:EXPMAP/EDGE_SIM3:EXPMAP; position priors as "
                                                    "EDGE_PRIOR_SE2_XY or EDGE_SE3_XYZ_PRIOR)")
    p.add_argument("-o", "--output", type=pathlib.Path, help="write the optimized graph here (g2o)")
    p.add_argument("--init", choices=("chordal", "odometry", "file"), default="chordal",
                   help="the start: chordal relaxation (default), the odometry edges composed, or the file's vertices")
    p.add_argument("--information", choices=("refuse", "nearest_pd"), default="refuse",
                   help="information matrices that are not positive definite: refuse the file (default), or replace "
                        "each by the nearest positive definite matrix, with a warning")
    p.add_argument("--edge2-order", choices=("toro", "upper"), default="toro",
                   help="the information's order on TORO's EDGE2 lines: TORO's I11 I12 I22 I33 I13 I23 (.graph "
                        "files, the default), or the upper triangle row by row (iSAM's files)")
    p.add_argument("--method", choices=("lm", "gn"), default="lm",
                   help="Levenberg-Marquardt (default) or Gauss-Newton")
    p.add_argument("--kernel", choices=("none", "huber", "cauchy", "geman_mcclure", "tukey", "dcs"), default="none",
                   help="robust kernel on each edge's whitened residual (default: none)")
    p.add_argument("--kernel-scale", type=real(positive=True), default=1.0,
                   help="robust kernel scale, in whitened residual units")
    p.add_argument("--gnc", choices=("tls", "geman_mcclure"),
                   help="graduated non-convexity (for many wrong loop closures): truncated least squares or "
                        "Geman-McClure, the odometry held as inliers; each edge weighed 1 or 0 (TLS)")
    p.add_argument("--max-iterations", type=integer(minimum=0), default=100, help="the most steps (default 100)")
    p.add_argument("--tum", type=pathlib.Path,
                   help="also write the optimized poses as a TUM trajectory (time = vertex id; a Sim3 graph's "
                        "rigid part: positions and rotations)")
    p.add_argument("--kitti", type=pathlib.Path, help="also write the optimized poses as a KITTI pose file")
    p.add_argument("--covariances", type=pathlib.Path,
                   help="also write each pose's marginal covariance at the answer (a line per pose: its vertex id, "
                        "then the d x d matrix row by row; [x, y, theta], [rho, phi] or [rho, phi, sigma] in the "
                        "pose's own frame)")
    p.add_argument("--plot", type=pathlib.Path, help="draw the graph before and after, and the cost per iteration")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(args) -> int:
    from ..optim import RobustKernel
    from ..posegraph import GNCConfig, PGOConfig, optimize, optimize_gnc, read_g2o, write_g2o

    if args.gnc and args.kernel != "none":
        raise ValueError(f"--gnc weighs the edges itself: leave --kernel ({args.kernel}) out")
    kernel = RobustKernel(args.kernel, args.kernel_scale)
    t0 = time.perf_counter()
    graph = read_g2o(args.input, information=args.information, edge2_order=args.edge2_order)
    kind = "Sim3" if graph.similarity else f"{graph.dim}D"
    priors = f", {graph.num_priors} position priors" if graph.num_priors else ""
    print(f"read {args.input}: {kind}, {graph.num_poses} poses, {graph.num_edges} edges{priors} "
          f"({time.perf_counter() - t0:.2f} s); initial cost {float(graph.cost(kernel=kernel).detach()):.9g}")

    def progress(rec):
        if not args.quiet:
            flag = "" if rec.accepted else "  (rejected)"
            print(f"  iter {rec.iteration:3d}  cost {rec.cost:.10g}  lambda {rec.damping:.1e}  |step| {rec.step_norm:.2e}  "
                  f"{rec.seconds:.3f} s{flag}", flush=True)

    config = PGOConfig(method=args.method, init=args.init, kernel=kernel, max_iterations=args.max_iterations,
                       callback=None if args.gnc else progress)
    if args.gnc:
        def rounds(rec):
            if not args.quiet:
                print(f"  round {rec.iteration:3d}  mu {rec.mu:.3g}  weighted cost {rec.cost:.10g}  "
                      f"inliers {rec.inliers}  {rec.solver_iterations} iterations, {rec.seconds:.3f} s", flush=True)

        result = optimize_gnc(graph, GNCConfig(loss=args.gnc, solver=config, callback=rounds))
        print(f"{args.init} initialization {result.init_seconds:.3f} s: cost {result.initial_cost:.10g}")
        dropped, priors = int((~result.inliers).sum()), ""
        if graph.num_priors:
            priors = f" and {int((~result.prior_inliers).sum())} of {graph.num_priors} position priors"
        print(f"GNC ({args.gnc}): {result.iterations} rounds ({result.reason}), {result.solver_iterations} iterations, "
              f"{result.init_seconds + result.solve_seconds:.3f} s; dropped {dropped} of {graph.num_edges} edges"
              f"{priors}; weighted cost {result.cost:.10g}")
    else:
        result = optimize(graph, config)
        print(f"{args.init} initialization {result.init_seconds:.3f} s: cost {result.initial_cost:.10g}")
        print(f"final cost {result.cost:.10g} after {result.iterations} iterations ({result.reason}), "
              f"{result.init_seconds + result.solve_seconds:.3f} s")
    if args.output:
        write_g2o(graph, args.output, result.poses)
        print(f"wrote {args.output}")
    if args.tum or args.kitti:
        import torch

        from ..trajectory import Trajectory, write_kitti, write_tum

        traj = Trajectory(result.poses.tensor()[:, :7], result.vertex_ids.to(torch.float64))  # a Sim3's rigid part
        if args.tum:
            write_tum(traj, args.tum)
            print(f"wrote {args.tum}")
        if args.kitti:
            write_kitti(traj, args.kitti)
            print(f"wrote {args.kitti}")
    if args.covariances:
        from .._files import write_text_atomic
        from ..posegraph import covariances

        C = covariances(graph, result.poses, kernel=config.kernel).reshape(graph.num_poses, -1).cpu().tolist()
        d = "x y theta" if graph.dim == 2 else "rho_x rho_y rho_z phi_x phi_y phi_z" + (" sigma" * graph.similarity)
        lines = [f"# vertex_id, then the covariance in the pose's own frame, row by row, over [{d}]"]
        lines += [" ".join([str(int(v))] + [repr(x) for x in row]) for v, row in zip(result.vertex_ids.tolist(), C)]
        write_text_atomic(args.covariances, "\n".join(lines) + "\n")
        print(f"wrote {args.covariances}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .. import viz

        fig = plt.figure(figsize=(16, 5.5))
        view = "3d" if graph.dim == 3 else None
        before = graph.poses.detach()
        ax1 = fig.add_subplot(1, 3, 1, projection=view)
        ax2 = fig.add_subplot(1, 3, 2, projection=view)
        import torch

        with torch.no_grad():
            vmax = float(max(graph.chi2(before).max(), graph.chi2(result.poses).max()))
        viz.plot_pose_graph(graph, before, ax1, vmax=vmax, colorbar=False,
                            title=f"before ({args.input.name}), cost {float(graph.cost(kernel=kernel).detach()):.6g}")
        viz.plot_pose_graph(graph, result.poses, ax2, vmax=vmax, title=f"after, cost {result.cost:.6g}")
        label = f"GNC ({args.gnc}) rounds, weighted cost" if args.gnc else f"{args.method.upper()} from {args.init}"
        viz.plot_cost_history({label: result}, fig.add_subplot(1, 3, 3))
        fig.tight_layout()
        save_figure_atomic(fig, args.plot, dpi=110)
        plt.close(fig)
        print(f"wrote {args.plot}")
    return 0 if result.converged else 1

