"""Pose graphs with GNSS fixes in map coordinates: robojac vs GTSAM's ``GPSFactor``, in one run.

Each graph's GTSAM optimum (robojac's, which equals it: ``gtsam_optima.json``) is the truth; a fix
of its position every ``--every`` poses, with 0.5 m of noise, is added as a position prior
(robojac's ``PoseGraph(prior_index=, prior_positions=, prior_information=)``, GTSAM's
``GPSFactor``), and every pose and fix is moved 4,000 km out (UTM-like map coordinates).  Nothing
else holds the graph.  Both sides start from robojac's chordal start moved onto the fixes (its time
charged to both) and stop at a relative decrease of 1e-6 (GTSAM's Levenberg-Marquardt; robojac's
default ``PGOConfig``).  Both final costs are GTSAM's ``graph.error()`` on the returned poses.
Medians over --repeat runs, robojac and GTSAM alternating.  For scale, the same graphs without
fixes at the origin (the first pose held; GTSAM: a prior of sigma 1e-6), from the same kind of
start.  Then robojac's gradient of the answer's positions with respect to every fix's position,
and its cost against the forward solve.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/posegraph_priors.py [--repeat 5] [--every 20]
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
from _util import describe_machine, forward_backward, gtsam_anchored, gtsam_lm, gtsam_values, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, initialize, optimize, read_g2o  # noqa: E402

FAR = torch.tensor([4.0e6, -2.5e6, 312.5], dtype=torch.float64)
SIGMA = 0.5


def scenario(name: str, every: int, seed: int = 1) -> PoseGraph:
    g = read_g2o(data.path(f"posegraph/{name}.g2o"))
    truth = optimize(g).poses.tensor().detach()
    gen = torch.Generator().manual_seed(seed)
    index = torch.arange(0, g.num_poses, every)
    fixes = truth[index, :3] + FAR + SIGMA * torch.randn(len(index), 3, generator=gen, dtype=torch.float64)
    info = torch.eye(3, dtype=torch.float64).expand(len(index), 3, 3) / SIGMA**2
    return PoseGraph(g.poses.tensor().detach(), g.edges, g.measurements, g.information, prior_index=index,
                     prior_positions=fixes, prior_information=info, name=name)


def timed(graph: PoseGraph, fg, ids, repeat: int) -> list[str]:
    """One row: robojac and GTSAM from robojac's chordal start of ``graph``, whose time both are charged."""
    t0 = time.perf_counter()
    start = initialize(graph, "chordal")
    chordal_s = time.perf_counter() - t0
    start_values = gtsam_values(3, start, ids)
    times = {"robojac": [], "GTSAM": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours = optimize(graph, PGOConfig(init="chordal"))
        times["robojac"].append(time.perf_counter() - t0)
        seconds, theirs, its = gtsam_lm(fg, start_values)
        times["GTSAM"].append(seconds + chordal_s)
    P = ours.poses.tensor().detach()
    ours_cost, theirs_cost = fg.error(gtsam_values(3, P, ids)), fg.error(theirs)
    gap = max(float(np.linalg.norm(theirs.atPose3(k).translation() - P[k, :3].numpy())) for k in ids.tolist())
    med = {k: statistics.median(v) for k, v in times.items()}
    return [f"{med['robojac'] * 1e3:.0f} ms ({ours.iterations} it)", f"{med['GTSAM'] * 1e3:.0f} ms ({its} it)",
            f"{med['GTSAM'] / med['robojac']:.2f}x", f"{ours_cost:.9g}", f"{theirs_cost:.9g}", f"{gap:.1e} m"]


def gtsam_graph(graph: PoseGraph):
    import gtsam

    fg = gtsam.NonlinearFactorGraph()
    perm = [3, 4, 5, 0, 1, 2]  # GTSAM's [phi, rho]
    ids = torch.arange(graph.num_poses)
    Z = gtsam_values(3, graph.measurements, torch.arange(graph.num_edges))
    for k, ((i, j), I) in enumerate(zip(graph.edges.tolist(), graph.information.numpy())):
        noise = gtsam.noiseModel.Gaussian.Information(I[np.ix_(perm, perm)])
        fg.add(gtsam.BetweenFactorPose3(i, j, Z.atPose3(k), noise))
    for k, p in zip(graph.prior_index.tolist(), graph.prior_positions.numpy()):
        fg.add(gtsam.GPSFactor(k, p, gtsam.noiseModel.Isotropic.Sigma(3, SIGMA)))
    return fg, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--every", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(describe_machine())
    rows, grads = [], []
    for name in ("parking-garage", "sphere2500"):
        graph = scenario(name, args.every)
        fg, ids = gtsam_graph(graph)
        rows.append([f"{name} ({graph.num_poses} poses, {graph.num_priors} fixes, 4,000 km out)"]
                    + timed(graph, fg, ids, args.repeat))
        plain = PoseGraph(graph.poses.tensor().detach(), graph.edges, graph.measurements, graph.information, name=name)
        pg, _ = gtsam_graph(plain)
        anchored = gtsam_anchored(pg, gtsam_values(3, initialize(plain, "chordal"), ids), 0, 3)
        rows.append([f"{name} without fixes, at the origin"] + timed(plain, anchored, ids, args.repeat))
        def build(graph=graph):  # the same graph, its fixes' positions live
            live = graph.prior_positions.clone().requires_grad_()
            return PoseGraph(graph.poses.tensor().detach(), graph.edges, graph.measurements, graph.information,
                             prior_index=graph.prior_index, prior_positions=live,
                             prior_information=graph.prior_information)

        f, b = forward_backward(build, lambda g: optimize(g, PGOConfig(init="chordal")).poses.tensor()[:, :3].sum(),
                                args.repeat)
        grads.append([name, f"{f * 1e3:.0f} ms", f"{b * 1e3:.0f} ms", f"{b / f:.2f}x"])
    print(table(["graph", "robojac", "GTSAM LM", "GTSAM / robojac", "cost (robojac)", "cost (GTSAM)",
                 "largest position gap"], rows))
    print("robojac, d(positions)/d(fix positions) from the chordal start:")
    print(table(["graph", "forward", "backward", "backward / forward"], grads))


if __name__ == "__main__":
    main()
