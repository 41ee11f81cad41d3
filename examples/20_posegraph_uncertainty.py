"""How sure is the map? Each pose's marginal covariance after pose-graph optimization.

The Manhattan graph (3,500 poses) is optimized, then every pose's covariance is taken at the answer
(``posegraph.covariances``: the inverse Gauss-Newton Hessian's diagonal blocks, what GTSAM's
``Marginals`` gives). The first pose holds the gauge, so the uncertainty grows with the distance
travelled from it; loop closures pull it back. The same graph with its loop closures removed
(odometry alone) shows what they buy.

    python examples/20_posegraph_uncertainty.py --out out/uncertainty
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.posegraph import PoseGraph, covariances, optimize, read_g2o  # noqa: E402


def position_sigma(C: torch.Tensor, dims: int) -> torch.Tensor:
    """The position's standard deviation, sqrt of the trace of its covariance (any frame)."""
    return C[:, :dims, :dims].diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(0).sqrt()


def main(path: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    result = optimize(graph)
    C = covariances(graph, result.poses)  # (N, 3, 3): [x, y, theta] in each pose's frame
    sigma = position_sigma(C, 2)
    worst = int(sigma.argmax())
    print(f"{graph.name}: {graph.num_poses} poses, cost {result.cost:.6g} after {result.iterations} iterations")
    print(f"  position sigma: median {float(sigma.median()) * 100:.1f} cm, largest {float(sigma[worst]) * 100:.1f} cm "
          f"(pose {int(result.vertex_ids[worst])}); heading sigma up to "
          f"{float(C[:, 2, 2].max().sqrt()) * 180 / torch.pi:.2f} deg")

    odo = graph.odometry  # the odometry chain alone
    chain = PoseGraph(result.poses.tensor(), graph.edges[odo], graph.measurements[odo], graph.information[odo], dim=2,
                      name="odometry only")
    sigma_chain = position_sigma(covariances(chain), 2)  # at the same poses
    print(f"  without its {int((~odo).sum())} loop closures: position sigma up to {float(sigma_chain.max()):.2f} m")

    fig, axes = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw=dict(width_ratios=(1.1, 1)))
    viz.plot_pose_graph(graph, result.poses, axes[0], covariances=C, sigma=1.0, ellipse_every=25, colorbar=False,
                        title=f"{graph.name}: 1-sigma position ellipses (every 25th pose)")
    axes[1].semilogy(sigma_chain.numpy(), color="C1", label="odometry alone")
    axes[1].semilogy(sigma.numpy(), color="C0", label="with the loop closures")
    axes[1].set_xlabel("pose (the first holds the gauge)")
    axes[1].set_ylabel("position sigma (m)")
    axes[1].set_title("uncertainty along the trajectory")
    axes[1].legend()
    axes[1].grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / f"{graph.name.split('.')[0]}_uncertainty.png", dpi=110)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/manhattan.g2o"))
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/uncertainty"))
    a = p.parse_args()
    main(a.graph, a.out)
