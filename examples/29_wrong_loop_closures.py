"""A pose graph with many wrong loop closures: least squares follows them, a robust kernel is pulled
by them, and graduated non-convexity (GNC) finds them.

The graph is intel's (1,728 poses, 2,512 edges) with 100 wrong loop closures added, as a place
recognizer's false matches are: between random pairs of poses, measuring random motions, as
confident as the true ones (``posegraph.add_wrong_loop_closures``).  The truth is the clean graph's
optimum.

* ``posegraph.optimize`` (least squares) bends the whole map to the wrong edges.
* ``PGOConfig(kernel="cauchy")`` from the least-squares start discounts them, and is still pulled.
* ``posegraph.optimize_gnc`` (truncated least squares by graduated non-convexity, the odometry held
  as known inliers) weighs each edge 1 or 0: it drops the wrong ones and lands on the clean
  optimum.

    python examples/29_wrong_loop_closures.py --out out/wrong_loop_closures
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import torch  # noqa: E402

from robojac import data, posegraph  # noqa: E402


def rmse(P: torch.Tensor, truth: torch.Tensor) -> float:
    return float((P[:, :2] - truth[:, :2]).norm(dim=-1).square().mean().sqrt())


def main(out: pathlib.Path, wrong_count: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clean = posegraph.read_g2o(data.path("posegraph/intel.g2o"))
    truth = posegraph.optimize(clean).poses.tensor().detach()
    graph, wrong = posegraph.add_wrong_loop_closures(clean, wrong_count)
    print(f"intel: {clean.num_poses} poses, {clean.num_edges} edges, and {wrong_count} wrong loop closures added")
    start = posegraph.PGOConfig(init="odometry")
    plain = posegraph.optimize(graph, start)
    cauchy = posegraph.optimize(graph, posegraph.PGOConfig(init="odometry", kernel="cauchy"))
    gnc = posegraph.optimize_gnc(graph, posegraph.GNCConfig(solver=start))
    runs = {"least squares": plain, "Cauchy kernel": cauchy, "GNC (truncated least squares)": gnc}
    for name, r in runs.items():
        print(f"  {name:30s} RMSE against the clean optimum {rmse(r.poses.tensor().detach(), truth):7.3f} m")
    dropped_wrong, dropped_right = int((~gnc.inliers[wrong]).sum()), int((~gnc.inliers[~wrong]).sum())
    print(f"  GNC: {gnc.iterations} rounds ({gnc.reason}), {gnc.solver_iterations} solver iterations, "
          f"{gnc.solve_seconds:.2f} s; dropped {dropped_wrong} of the {wrong_count} wrong edges and "
          f"{dropped_right} of the {int((~wrong).sum())} right ones")

    fig, axes = plt.subplots(1, 3, figsize=(18, 6.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    colors = {"least squares": "#d95f02", "Cauchy kernel": "#7570b3", "GNC (truncated least squares)": "#1b9e77"}
    ax = axes[0]
    ax.plot(truth[:, 0], truth[:, 1], color="black", lw=2.2, alpha=0.35, label="the clean graph's optimum")
    for name, r in runs.items():
        P = r.poses.tensor().detach()
        ax.plot(P[:, 0], P[:, 1], color=colors[name], lw=0.9, label=f"{name} (RMSE {rmse(P, truth):.2f} m)")
    ax.set_aspect("equal")
    ax.set_title(f"intel with {wrong_count} wrong loop closures", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[1]
    P = gnc.poses.tensor().detach()
    ax.plot(P[:, 0], P[:, 1], color="#444444", lw=0.8)
    loops = ~graph.odometry
    for mask, color, label, width in ((loops & gnc.inliers, "#1b9e77", "loop closures kept", 0.6),
                                      (~gnc.inliers, "#d62728", "dropped (weight 0)", 0.5)):
        segments = P[graph.edges[mask]][:, :, :2].numpy()
        ax.add_collection(LineCollection(segments, colors=color, linewidths=width, alpha=0.7, label=label))
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("GNC's answer: each edge weighed 1 or 0", fontsize=10)
    ax = axes[2]
    rounds = [h.iteration for h in gnc.history]
    ax.plot(rounds, [h.inliers for h in gnc.history], "o-", color="#1b9e77", ms=3)
    ax.axhline(int((~wrong).sum()), color="black", ls="--", lw=0.8, label="right edges")
    ax.set_xlabel("GNC round")
    ax.set_ylabel("edges weighing more than one half")
    ax.legend(fontsize=8, loc="lower right")
    twin = ax.twinx()
    twin.semilogy(rounds, [h.mu for h in gnc.history], color="#999999", lw=0.8)
    twin.set_ylabel("mu (the surrogate's parameter)", color="#777777")
    ax.set_title("from a convex surrogate to truncated least squares", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "wrong_loop_closures.png", dpi=72)
    print(f"wrote {out / 'wrong_loop_closures.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/wrong_loop_closures"))
    parser.add_argument("--wrong", type=int, default=100, help="wrong loop closures to add")
    args = parser.parse_args()
    main(args.out, args.wrong)
