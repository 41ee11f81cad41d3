"""Similarity (Sim3) pose graphs: robojac vs GTSAM's ``BetweenFactorSimilarity3``, in one run.

The graph is example 27's: KITTI 00's 1,514 keyframes seen by a monocular odometry whose scale
drifts, with the g2o file's loop closures (``examples/27_monocular_loop_closure.py``,
``scenario(seed)``).  Both sides start from the same poses (the odometry's, or robojac's chordal
initialization, whose time is charged to both), hold the first keyframe (GTSAM: a prior of sigma
1e-6), and stop at a relative decrease of 1e-6 (GTSAM's Levenberg-Marquardt; robojac's default
``PGOConfig``).  GTSAM's ``Similarity3`` holds ``(R, t / s, s)`` and orders its tangent
``[phi, rho, sigma]``; the information matrices are permuted to it.  Every final cost is
evaluated by GTSAM's ``graph.error()`` (without the prior) on the returned poses.  Medians over
--repeat runs, robojac and GTSAM alternating.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/posegraph_sim3.py [--repeat 9] [--seed 0]
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, forward_backward, gtsam_lm, table  # noqa: E402

from robojac.posegraph import PGOConfig, PoseGraph, initialize, optimize  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "27_monocular_loop_closure.py"
ORDER = [3, 4, 5, 0, 1, 2, 6]  # robojac's [rho, phi, sigma] -> GTSAM's [phi, rho, sigma]


def load_scenario(seed: int) -> dict:
    spec = importlib.util.spec_from_file_location("monocular_loop_closure", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scenario(seed)


def to_gtsam(x):
    import gtsam

    x = [float(v) for v in x]
    return gtsam.Similarity3(gtsam.Rot3.Quaternion(x[6], x[3], x[4], x[5]), gtsam.Point3(*x[:3]) / x[7], x[7])


def from_gtsam(values, n: int) -> torch.Tensor:
    from robojac import lie

    out = []
    for k in range(n):
        S = values.atSimilarity3(k)
        R = torch.as_tensor(S.rotation().matrix(), dtype=torch.float64)
        q = lie.matrix_to_quat(R)
        out.append(torch.cat((torch.as_tensor(S.translation(), dtype=torch.float64) * S.scale(), q,
                              torch.tensor([S.scale()], dtype=torch.float64))))
    return torch.stack(out)


def gtsam_graphs(graph: PoseGraph):
    """GTSAM's factor graph of ``graph`` (with a prior holding its first pose) and one without the prior."""
    import gtsam

    plain = gtsam.NonlinearFactorGraph()
    info = graph.information.detach()[:, ORDER][:, :, ORDER].numpy()
    for (i, j), z, I in zip(graph.edges.tolist(), graph.measurements.detach(), info):
        plain.add(gtsam.BetweenFactorSimilarity3(i, j, to_gtsam(z), gtsam.noiseModel.Gaussian.Information(I)))
    held = gtsam.NonlinearFactorGraph(plain)
    held.add(gtsam.PriorFactorSimilarity3(0, to_gtsam(graph.poses.detach().tensor()[0]),
                                          gtsam.noiseModel.Isotropic.Sigma(7, 1e-6)))
    return held, plain


def values_of(P: torch.Tensor):
    import gtsam

    values = gtsam.Values()
    for k, x in enumerate(P):
        values.insert(k, to_gtsam(x))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(describe_machine())
    s = load_scenario(args.seed)
    graph = PoseGraph(s["odometry"], s["edges"], s["measurements"], s["information"], similarity=True,
                      name="KITTI 00 monocular")
    held, plain = gtsam_graphs(graph)
    n = graph.num_poses
    print(f"{graph.name}: {n} keyframes, {graph.num_edges} edges")
    t0 = time.perf_counter()
    chordal = graph.poses_from_state(initialize(graph, "chordal")).tensor()
    chordal_s = time.perf_counter() - t0
    rows = []
    for start_name, start, init, extra in (("odometry", s["odometry"], "file", 0.0),
                                          ("chordal", chordal, "chordal", chordal_s)):
        times = {"robojac": [], "GTSAM": []}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ours = optimize(graph, PGOConfig(init=init))
            times["robojac"].append(time.perf_counter() - t0)
            seconds, theirs, its = gtsam_lm(held, values_of(start))
            times["GTSAM"].append(seconds + extra)
        ours_cost = plain.error(values_of(ours.poses.tensor().detach()))
        theirs_cost = plain.error(theirs)
        gap = float((ours.poses.tensor().detach()[:, :3] - from_gtsam(theirs, n)[:, :3]).norm(dim=-1).max())
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append([start_name, f"{med['robojac'] * 1e3:.0f} ms ({ours.iterations} it)",
                     f"{med['GTSAM'] * 1e3:.0f} ms ({its} it)", f"{med['GTSAM'] / med['robojac']:.2f}x",
                     f"{ours_cost:.9g}", f"{theirs_cost:.9g}", f"{gap:.1e} m"])
    print(table(["start", "robojac", "GTSAM LM", "GTSAM / robojac", "cost (robojac)", "cost (GTSAM)",
                 "largest position gap"], rows))
    # robojac alone: the gradient of the answer's positions with respect to every measurement
    def build():  # the graph of live measurements
        return PoseGraph(s["odometry"], s["edges"], s["measurements"].clone().requires_grad_(), s["information"],
                         similarity=True)

    f, b = forward_backward(build, lambda g: optimize(g, PGOConfig(init="chordal")).poses.tensor()[:, :3].sum(),
                            args.repeat)
    print(f"robojac, d(positions)/d(measurements) from the chordal start: forward {f * 1e3:.0f} ms, "
          f"backward {b * 1e3:.0f} ms ({b / f:.2f}x the forward)")


if __name__ == "__main__":
    main()
