"""Graduated non-convexity: robojac's ``optimize_gnc`` vs GTSAM's ``GncLMOptimizer``, in one run.

Each graph gets wrong loop closures (``posegraph.add_wrong_loop_closures``, seed 0: random pairs
of poses, random motions, as confident as the graph's first loop closure).  Both sides run
truncated least squares with the odometry (consecutive poses) as known inliers and the
chi-square thresholds at 0.99, from robojac's odometry start (its time charged to both); GTSAM's
inner solver is its Levenberg-Marquardt with default parameters, robojac's its default
``PGOConfig``.  Reported: the medians of --repeat runs (alternating), the wrong and the right edges
each drops, whether the inlier sets are equal, the largest gap between the two answers, and the
RMSE of the positions against the clean graph's optimum, next to least squares' and Cauchy's.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/posegraph_gnc.py [--graphs intel:100 smallGrid3D:50] [--repeat 1]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, gtsam_values, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import (GNCConfig, PGOConfig, add_wrong_loop_closures, initialize, optimize,  # noqa: E402
                               optimize_gnc, read_g2o)

DEFAULT = ["intel:100", "smallGrid3D:50", "manhattan:300"]


def gtsam_gnc(graph, start: torch.Tensor):
    """GTSAM's GNC (TLS) on ``graph`` from robojac's ``start`` poses: ``(seconds, poses (N, 3) positions, weights)``."""
    import gtsam

    ids = torch.arange(graph.num_poses)
    values = gtsam_values(graph.dim, start, ids)
    fg = gtsam.NonlinearFactorGraph()
    perm = [3, 4, 5, 0, 1, 2]  # GTSAM's Pose3 tangent [phi, rho]
    Z = gtsam_values(graph.dim, graph.measurements, torch.arange(graph.num_edges))
    for k, ((i, j), info) in enumerate(zip(graph.edges.tolist(), graph.information.numpy())):
        if graph.dim == 3:
            noise = gtsam.noiseModel.Gaussian.Information(info[np.ix_(perm, perm)])
            fg.add(gtsam.BetweenFactorPose3(i, j, Z.atPose3(k), noise))
        else:
            fg.add(gtsam.BetweenFactorPose2(i, j, Z.atPose2(k), gtsam.noiseModel.Gaussian.Information(info)))
    if graph.dim == 3:
        fg.add(gtsam.PriorFactorPose3(0, values.atPose3(0), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    else:
        fg.add(gtsam.PriorFactorPose2(0, values.atPose2(0), gtsam.noiseModel.Isotropic.Sigma(3, 1e-6)))
    params = gtsam.GncLMParams()
    params.setLossType(gtsam.GncLossType.TLS)
    params.setKnownInliers(torch.nonzero(graph.odometry).squeeze(-1).tolist() + [graph.num_edges])  # and the prior
    t0 = time.perf_counter()
    optimizer = gtsam.GncLMOptimizer(fg, values, params)
    answer = optimizer.optimize()
    seconds = time.perf_counter() - t0
    if graph.dim == 3:
        P = np.stack([answer.atPose3(k).translation() for k in range(graph.num_poses)])
    else:
        P = np.stack([[answer.atPose2(k).x(), answer.atPose2(k).y(), 0.0] for k in range(graph.num_poses)])
    return seconds, torch.from_numpy(P), torch.tensor(np.array(optimizer.getWeights())[: graph.num_edges])


def rmse(P: torch.Tensor, truth: torch.Tensor) -> float:
    return float((P[:, :3] - truth[:, :3]).norm(dim=-1).square().mean().sqrt())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", nargs="+", default=DEFAULT, metavar="NAME:WRONG")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(describe_machine())
    rows = []
    for spec in args.graphs:
        name, count = spec.split(":")
        clean = read_g2o(data.path(f"posegraph/{name}.g2o"))
        truth = optimize(clean).poses.tensor().detach()
        graph, wrong = add_wrong_loop_closures(clean, int(count))
        config = GNCConfig(solver=PGOConfig(init="odometry"))
        t0 = time.perf_counter()
        start = graph.poses_from_state(initialize(graph, "odometry")).tensor()
        init_s = time.perf_counter() - t0
        ours_t, theirs_t = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ours = optimize_gnc(graph, config)
            ours_t.append(time.perf_counter() - t0)
            seconds, theirs_P, theirs_w = gtsam_gnc(graph, start)
            theirs_t.append(seconds + init_s)
        P = ours.poses.tensor().detach()
        theirs_in = theirs_w > 0.5
        plain = optimize(graph, PGOConfig(init="odometry"))
        cauchy = optimize(graph, PGOConfig(init="odometry", kernel="cauchy"))
        mo, mt = statistics.median(ours_t), statistics.median(theirs_t)
        rows.append([
            f"{name} + {count}", f"{mo:.2f} s ({ours.iterations} rounds, {ours.solver_iterations} it)", f"{mt:.2f} s",
            f"{mt / mo:.2f}x",
            f"{int((~ours.inliers[wrong]).sum())} / {int((~theirs_in[wrong]).sum())}",
            f"{int((~ours.inliers[~wrong]).sum())} / {int((~theirs_in[~wrong]).sum())}",
            "yes" if torch.equal(ours.inliers, theirs_in) else "no",
            f"{float((P[:, :3] - theirs_P).norm(dim=-1).max()):.1e} m",
            f"{rmse(P, truth):.3f} / {rmse(theirs_P, truth):.3f} / {rmse(plain.poses.tensor(), truth):.2f} / "
            f"{rmse(cauchy.poses.tensor(), truth):.3f} m",
        ])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["graph + wrong loop closures", "robojac", "GTSAM", "GTSAM / robojac",
                 "wrong dropped (robojac / GTSAM)", "right dropped (robojac / GTSAM)", "same inliers",
                 "largest gap", "RMSE: robojac / GTSAM / least squares / Cauchy"], rows))


if __name__ == "__main__":
    main()
