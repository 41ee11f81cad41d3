"""Learning pose-graph edge weights through the optimizer: Intel lab with wrong loop closures.

A tenth of the Intel lab's loop closures are replaced by wrong ones (a place recognizer's false
matches: off by about a metre and half a radian).  Each edge ``k`` gets a learnable weight
``w_k = exp(theta_k)`` that scales its information matrix; ``posegraph.optimize`` solves the
weighted graph, and the loss is the RMS position error of the solved poses against the ground
truth (here, the optimum of the uncorrupted graph, in the same gauge).  The gradient reaches
every ``theta_k`` through the optimizer by the implicit function theorem (``optimize``'s poses
are differentiable with respect to the graph's measurements and information matrices), and
Adam lowers the weights of the wrong closures.

The weights are fitted to this one graph against its truth, as in Theseus' "learning cost
weights" tutorials: a demonstration of gradients through the solver, not an outlier detector
that generalizes (``11_learn_through_a_solver.py`` trains a model that does).  A Cauchy kernel
on the same corrupted graph is printed beside it for scale.

    python examples/12_learn_edge_weights.py --out out/edge_weights
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pypose as pp  # noqa: E402
import torch  # noqa: E402

from robojac import data  # noqa: E402
from robojac.posegraph import PGOConfig, PoseGraph, optimize, read_g2o  # noqa: E402
from robojac.trajectory import Trajectory, ate  # noqa: E402


def corrupt(graph: PoseGraph, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(measurements, wrong)``: ``fraction`` of the loop closures (edges between non-consecutive
    poses) replaced by ``Z Exp(d)``, ``d`` ~ 1 m in x and y and 0.5 rad in heading."""
    g = torch.Generator().manual_seed(seed)
    E = graph.edges
    loops = torch.nonzero((E[:, 1] - E[:, 0]).abs() > 1).squeeze(1)
    bad = loops[torch.randperm(loops.numel(), generator=g)[: int(fraction * loops.numel())]]
    Z = graph.measurements.clone()
    d = torch.zeros(bad.numel(), 6, dtype=Z.dtype)
    d[:, :2] = torch.randn(bad.numel(), 2, dtype=Z.dtype, generator=g)
    d[:, 5] = 0.5 * torch.randn(bad.numel(), dtype=Z.dtype, generator=g)
    Z[bad] = (pp.SE3(Z[bad]) * pp.se3(d).Exp()).tensor()
    wrong = torch.zeros(E.shape[0], dtype=torch.bool)
    wrong[bad] = True
    return Z, wrong


def position_rmse(poses: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return (poses[:, :2] - truth[:, :2]).square().sum(-1).mean().sqrt()


def main(g2o: pathlib.Path, out: pathlib.Path, steps: int, fraction: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clean = read_g2o(g2o)
    config = PGOConfig(method="gn")
    truth = optimize(clean, config).poses.tensor()
    Z, wrong = corrupt(clean, fraction, seed=0)
    loops = (clean.edges[:, 1] - clean.edges[:, 0]).abs() > 1
    print(f"{clean.name}: {clean.num_poses} poses, {clean.num_edges} edges; {int(wrong.sum())} of {int(loops.sum())} "
          "loop closures replaced by wrong ones")

    def solve(theta: torch.Tensor, kernel: str = "none"):
        graph = PoseGraph(clean.poses.detach(), clean.edges, Z, clean.information * theta.exp()[:, None, None],
                          dim=2, vertex_ids=clean.vertex_ids, name="intel, weighted")
        return optimize(graph, PGOConfig(method="gn", kernel=kernel))

    theta = torch.zeros(clean.num_edges, dtype=truth.dtype, requires_grad=True)  # every weight 1 at first
    opt = torch.optim.Adam([theta], lr=0.15)
    losses = []
    for step in range(steps):
        result = solve(theta)
        if not result.converged:
            raise SystemExit(f"step {step}: the weighted graph did not converge ({result.reason})")
        loss = position_rmse(result.poses.tensor(), truth)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        before = solve(torch.zeros_like(theta)).poses.tensor()
        after_result = solve(theta)
        after = after_result.poses.tensor()
        cauchy = solve(torch.zeros_like(theta), kernel="cauchy").poses.tensor()
    ids = clean.vertex_ids.double()

    def ate_rmse(poses):  # evo's ATE (SE(3) Umeyama alignment), the figure a SLAM paper would quote
        return ate(Trajectory(truth, ids), Trajectory(poses, ids))["rmse"]

    w = theta.detach().exp()
    print(f"training loss (position RMSE, m): {losses[0]:.3f} -> {float(position_rmse(after, truth)):.3f} "
          f"in {steps} steps; converged: {bool(after_result.converged)}")
    print(f"ATE rmse: equal weights {ate_rmse(before):.3f} m, a Cauchy kernel {ate_rmse(cauchy):.3f} m, "
          f"learned weights {ate_rmse(after):.3f} m")
    print(f"median learned weight: wrong closures {float(w[wrong].median()):.2f}, right closures "
          f"{float(w[loops & ~wrong].median()):.2f}, odometry {float(w[~loops].median()):.2f}")

    fig, axes = plt.subplots(1, 4, figsize=(20, 5), gridspec_kw=dict(width_ratios=[1, 1.2, 1.2, 1]))
    axes[0].plot(np.arange(1, steps + 1), losses, color="#3b5b92")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("position RMSE against the truth (m)")
    axes[0].set_title("loss on the optimizer's answer")
    axes[0].set_yscale("log")
    P = {k: v[:, :2].numpy() for k, v in dict(truth=truth, before=before, after=after).items()}
    Ew = clean.edges[wrong].numpy()
    for ax, key, title in ((axes[1], "before", f"equal weights: ATE {ate_rmse(before):.2f} m"),
                           (axes[2], "after", f"learned weights: ATE {ate_rmse(after):.2f} m")):
        ax.plot(*P["truth"].T, color="#b0b0b0", lw=2.5, label="truth")
        ax.plot(*P[key].T, color="#d62728" if key == "before" else "#3b5b92", lw=0.8, label="optimized")
        size = np.full(len(Ew), 14.0) if key == "before" else 14.0 * np.minimum(w[wrong].numpy(), 1.0)
        ax.scatter(*P["truth"][Ew[:, 0]].T, s=size, color="#ff7f0e", zorder=3,  # the wrong closures, sized by weight
                   label="wrong closures (by weight)")
        ax.set_aspect("equal")
        ax.set_title(title)
        ax.legend(loc="lower left", fontsize=8)
    logw = theta.detach().numpy() / np.log(10)
    bins = np.linspace(logw.min(), logw.max(), 40)
    for mask, label, color in ((~loops, "odometry", "#808080"), (loops & ~wrong, "right closures", "#2ca02c"),
                               (wrong, "wrong closures", "#ff7f0e")):
        axes[3].hist(logw[mask.numpy()], bins=bins, density=True, histtype="step", lw=2, label=label, color=color)
    axes[3].set_xlabel("log10 learned weight")
    axes[3].set_ylabel("share of the edges (density)")
    axes[3].set_title("what the weights learned")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learned_edge_weights.png", dpi=90)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--g2o", type=pathlib.Path, default=data.path("posegraph/intel.g2o"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/edge_weights"))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--fraction", type=float, default=0.1, help="the share of loop closures made wrong")
    a = p.parse_args()
    main(a.g2o, a.out, a.steps, a.fraction)
