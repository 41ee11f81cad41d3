"""Pose-graph marginal covariances: robojac vs GTSAM's ``Marginals``, at the same poses.

Each graph is optimized by robojac (``posegraph.optimize``, its defaults); both sides then take
the covariance of every pose at that one answer.  GTSAM holds the gauge with a prior of sigma
1e-6 on the first pose (as ``benchmarks/posegraph.py``), robojac holds the first pose fixed.
The time of each side covers everything from the poses to the last covariance: GTSAM's
``Marginals(graph, values)`` and one ``marginalCovariance`` per pose, robojac's
``posegraph.covariances(graph, poses)``.  The answers are compared in GTSAM's convention
(perturbations on the right; a ``Pose3``'s ``[phi, rho]`` reordered to robojac's ``[rho, phi]``):
the largest difference of a block relative to the largest entry of that block.  Interleaved
medians over --repeat runs.

``--write-reference FILE`` also stores GTSAM's covariances of eight poses of intel (2D; also
with a Cauchy kernel of scale 1 on every edge, at robojac's robust answer) and smallGrid3D (3D)
at robojac's answer, which ``tests/test_covariances.py`` holds robojac to
(``data/posegraph/gtsam_marginals.json``).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/covariances.py [--graphs intel sphere2500 ...]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import (describe_machine, fmt_time, gtsam_anchored, gtsam_robust, gtsam_values,  # noqa: E402
                   interleaved_medians, plain_copy, table)

from robojac import data  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402
from robojac.posegraph import PGOConfig, covariances, optimize, read_g2o  # noqa: E402

REFERENCE_GRAPHS = ("intel", "smallGrid3D")
POSE3_ORDER = [3, 4, 5, 0, 1, 2]  # GTSAM's [phi, rho] -> robojac's [rho, phi]


def gtsam_marginals(path: pathlib.Path, dim: int, poses: torch.Tensor, ids: torch.Tensor, cauchy: float | None = None):
    """A function computing GTSAM's covariance of every pose at ``poses`` (robojac's order);
    ``cauchy``: every edge's noise model wrapped in a Cauchy kernel of that scale."""
    import gtsam

    graph, _ = gtsam.readG2o(str(path), dim == 3)
    if cauchy is not None:
        graph = gtsam_robust(graph, gtsam.noiseModel.mEstimator.Cauchy.Create(cauchy))
    values = gtsam_values(dim, poses, ids)
    g = gtsam_anchored(graph, values, int(ids.min()), dim)
    keys = ids.tolist()

    def run():
        m = gtsam.Marginals(g, values)
        C = np.stack([m.marginalCovariance(k) for k in keys])
        return C[:, POSE3_ORDER][:, :, POSE3_ORDER] if dim == 3 else C

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", nargs="+", default=["intel", "MIT", "manhattan", "smallGrid3D", "parking-garage", "sphere2500"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write-reference", type=pathlib.Path, default=None)
    args = ap.parse_args()
    print(f"# Pose-graph marginal covariances, robojac vs GTSAM; {describe_machine()}", flush=True)
    rows, reference = [], {}
    for name in args.graphs:
        graph = read_g2o(data.path(f"posegraph/{name}.g2o"))
        result = optimize(graph)
        path = plain_copy(data.path(f"posegraph/{name}.g2o"))  # GTSAM reads no .gz
        theirs = gtsam_marginals(path, graph.dim, result.poses, result.vertex_ids)

        def ours():
            return covariances(graph, result.poses)

        t_ours, t_theirs = interleaved_medians([ours, theirs], repeat=args.repeat, warmup=1)
        C, G = ours().numpy(), theirs()
        scale = np.abs(G).reshape(len(G), -1).max(1)
        diff = float((np.abs(C - G).reshape(len(G), -1).max(1) / scale)[1:].max())  # pose 0: the gauge (GTSAM: 1e-12)
        rows.append([name, f"{graph.num_poses}", fmt_time(t_ours), fmt_time(t_theirs), f"{t_theirs / t_ours:.2f}x",
                     f"{diff:.1e}"])
        print(" | ".join(rows[-1]), flush=True)
        if name in REFERENCE_GRAPHS:
            pick = np.linspace(1, graph.num_poses - 1, 8).round().astype(int)
            reference[name] = {"poses": pick.tolist(), "vertex_ids": result.vertex_ids[pick].tolist(),
                               "covariances": G[pick].tolist()}
            if graph.dim == 2:  # with a robust kernel: its weights at the (robust) answer scale the edges
                robust = optimize(graph, PGOConfig(kernel=RobustKernel("cauchy", 1.0)))
                Gr = gtsam_marginals(path, graph.dim, robust.poses, robust.vertex_ids, cauchy=1.0)()
                reference[f"{name} cauchy 1.0"] = {"poses": pick.tolist(), "vertex_ids": robust.vertex_ids[pick].tolist(),
                                                    "covariances": Gr[pick].tolist()}
    print()
    print(table(["graph", "poses", "robojac", "GTSAM Marginals", "GTSAM / robojac", "largest difference"], rows))
    if args.write_reference is not None:
        reference["note"] = ("GTSAM's Marginals (a prior of sigma 1e-6 on the first pose) at robojac's optimum "
                             "(posegraph.optimize, defaults), body frame, robojac's order ([rho, phi] for 3D); "
                             "written by benchmarks/covariances.py --write-reference")
        tmp = args.write_reference.with_suffix(".tmp")
        tmp.write_text(json.dumps(reference, separators=(",", ":")) + "\n")  # lean: the tests read it
        tmp.replace(args.write_reference)
        print(f"wrote {args.write_reference}")


if __name__ == "__main__":
    main()
