"""Robust pose-graph optimization: robojac vs GTSAM's ``noiseModel.Robust``, kernel by kernel.

For each graph, both start from robojac's non-robust optimum (``posegraph.optimize``, its
defaults).  For each kernel (Huber, Cauchy, Geman-McClure, Tukey, DCS; GTSAM's DCS takes
``Phi = k^2`` for robojac's scale ``k``):

* the cost robojac gives those poses (``PoseGraph.cost(poses, kernel)``) and GTSAM's
  ``graph.error`` of the same values under the same kernel: the kernels' definitions;
* each side's robust optimization from there (robojac ``init="file"``, Levenberg-Marquardt,
  relative tolerance 1e-6; GTSAM's Levenberg-Marquardt with the same relative tolerance and a
  prior of sigma 1e-6 on the first pose, as ``benchmarks/posegraph.py``): time, iterations,
  the cost reached, and each answer's cost in GTSAM's own evaluation.  Robust costs are not
  convex: from one start the two may stop in different minima.  Medians over --repeat runs.

``--write-reference FILE`` stores GTSAM's error of each kernel at the start
(``data/posegraph/gtsam_robust_costs.json``), which ``tests/test_posegraph.py`` holds robojac's
costs to.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/robust_kernels.py [--graphs intel manhattan] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time


sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, gtsam_anchored, gtsam_robust, gtsam_values, plain_copy, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, optimize, read_g2o  # noqa: E402

KERNELS = [("huber", 1.0), ("cauchy", 1.0), ("geman_mcclure", 1.0), ("tukey", 3.0), ("dcs", 1.0)]


def gtsam_kernel(name: str, k: float):
    import gtsam

    M = gtsam.noiseModel.mEstimator
    return {"huber": lambda: M.Huber.Create(k), "cauchy": lambda: M.Cauchy.Create(k),
            "geman_mcclure": lambda: M.GemanMcClure.Create(k), "tukey": lambda: M.Tukey.Create(k),
            "dcs": lambda: M.DCS.Create(k * k)}[name]()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", nargs="+", default=["intel", "manhattan"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-reference", type=pathlib.Path, default=None)
    args = ap.parse_args()
    import gtsam

    print(f"# Robust pose graphs, robojac vs GTSAM; {describe_machine()}", flush=True)
    rows, reference = [], {}
    for name in args.graphs:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        start = optimize(graph)
        path = plain_copy(data.path(f"posegraph/{name}.g2o"))  # GTSAM reads no .gz
        begin = PoseGraph(start.poses.detach(), graph.edges, graph.measurements, graph.information,
                          vertex_ids=graph.vertex_ids, dim=graph.dim, fixed=graph.fixed, name=name)
        values = gtsam_values(graph.dim, start.poses, start.vertex_ids)
        first = int(start.vertex_ids.min())
        reference[name] = {}
        for kname, k in KERNELS:
            kernel = RobustKernel(kname, k)
            g = gtsam_robust(gtsam.readG2o(str(path), graph.dim == 3)[0], gtsam_kernel(kname, k))
            ours_at_start, theirs_at_start = float(graph.cost(start.poses, kernel).detach()), g.error(values)
            reference[name][f"{kname} {k}"] = theirs_at_start
            anchored = gtsam_anchored(g, values, first, graph.dim)
            params = gtsam.LevenbergMarquardtParams()
            params.setRelativeErrorTol(1e-6)
            params.setAbsoluteErrorTol(1e-12)
            params.setMaxIterations(100)
            t_ours, t_theirs = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                ours = optimize(begin, PGOConfig(kernel=kernel, init="file"))
                t_ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                opt = gtsam.LevenbergMarquardtOptimizer(anchored, values, params)
                answer = opt.optimize()
                t_theirs.append(time.perf_counter() - t0)
            t_ours, t_theirs = sorted(t_ours)[len(t_ours) // 2], sorted(t_theirs)[len(t_theirs) // 2]
            ours_in_gtsam = g.error(gtsam_values(graph.dim, ours.poses, ours.vertex_ids))
            rows.append([name, f"{kname} {k:g}", f"{ours_at_start:.6f}", f"{theirs_at_start:.6f}",
                         f"{abs(ours_at_start - theirs_at_start) / theirs_at_start:.1e}",
                         f"{t_ours * 1e3:.1f} ms, {ours.iterations} it, {ours.cost:.3f} ({ours.reason}; GTSAM's error {ours_in_gtsam:.3f})",
                         f"{t_theirs * 1e3:.1f} ms, {opt.iterations()} it, {g.error(answer):.3f}",
                         f"{t_theirs / t_ours:.2f}x"])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["graph", "kernel", "robojac cost at the start", "GTSAM error there", "difference",
                 "robojac robust LM", "GTSAM robust LM", "GTSAM / robojac time"], rows))
    if args.write_reference is not None:
        reference["note"] = ("GTSAM 4.3's graph.error of each edge under noiseModel.Robust (Huber, Cauchy, GemanMcClure, "
                             "Tukey of the scale given; DCS of Phi = scale^2) at robojac's non-robust optimum "
                             "(posegraph.optimize, defaults); written by benchmarks/robust_kernels.py --write-reference")
        tmp = args.write_reference.with_suffix(".tmp")
        tmp.write_text(json.dumps(reference, separators=(",", ":")) + "\n")
        tmp.replace(args.write_reference)
        print(f"wrote {args.write_reference}")


if __name__ == "__main__":
    main()
