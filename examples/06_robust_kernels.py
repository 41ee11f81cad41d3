"""Robust kernels on an outlier-heavy pose graph (sphere_bignoise_vertex3): what each one does.

This file's noise is far larger than its information matrices claim (the median whitened edge
residual at the least-squares optimum is about 16 sigma) and its residuals form one broad
distribution rather than inliers plus outliers.  A kernel scale of 1 sigma would call every
edge an outlier, so the scale here is the median whitened residual of the plain solution: each
kernel then discounts the upper half of the edges in its own way.  The pictures show where each
kernel moves the poses away from the least-squares optimum, and each kernel's weight curve
over its residual distribution.

    python examples/06_robust_kernels.py --out out/kernels
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data  # noqa: E402
from robojac.optim import RobustKernel  # noqa: E402
from robojac.posegraph import PGOConfig, optimize, read_g2o  # noqa: E402


def main(path: pathlib.Path, out: pathlib.Path, iterations: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    graph = read_g2o(path)
    print(graph)
    plain = optimize(graph, PGOConfig(method="gn", max_iterations=iterations))
    with torch.no_grad():
        scale = float(graph.chi2(plain.poses).sqrt().median())
    print(f"  least squares: cost {plain.cost:.4g}; kernel scale {scale:.3g} (the median whitened residual |r|)")
    runs = {"none": plain}
    for name in ("huber", "cauchy", "dcs"):
        runs[name] = optimize(graph, PGOConfig(kernel=RobustKernel(name, scale), max_iterations=iterations))
    fig = plt.figure(figsize=(17, 8))
    P0 = plain.poses.translation()
    moves = {name: (r.poses.translation() - P0).norm(dim=-1) for name, r in runs.items()}
    vmax = max(float(m.max()) for m in moves.values()) or 1.0
    for k, (name, r) in enumerate(runs.items()):
        with torch.no_grad():
            chi2 = graph.chi2(r.poses)
        inliers = int((chi2.sqrt() <= scale).sum())
        print(f"  {name:7s}: robust cost {r.cost:.4g}, plain cost {float(graph.cost(r.poses).detach()):.4g}, "
              f"{inliers}/{graph.num_edges} edges within the scale, poses moved up to {float(moves[name].max()):.2f} m "
              f"from the least-squares optimum, {r.iterations} iterations")
        ax = fig.add_subplot(2, 4, k + 1, projection="3d")
        P = r.poses.translation().numpy()
        sc = ax.scatter(P[:, 0], P[:, 1], P[:, 2], c=moves[name].numpy(), cmap="viridis", vmin=0, vmax=vmax, s=4)
        ax.set_title(f"{name}: displacement from least squares", fontsize=9)
        if k == 3:
            fig.colorbar(sc, ax=ax, fraction=0.04, pad=0.1, label="m")
        ax2 = fig.add_subplot(2, 4, k + 5)
        res = chi2.sqrt().clamp_min(1e-3)
        ax2.hist(res.log10().numpy(), bins=60, color="#3b5b92", alpha=0.8, density=True)
        grid = torch.logspace(-0.5, 2.2, 200, dtype=torch.float64)
        w = RobustKernel(name, scale).weight(grid**2)
        ax3 = ax2.twinx()
        ax3.plot(grid.log10().numpy(), w.numpy(), color="#d62728", lw=2, label=f"{name} weight")
        ax3.set_ylim(0, 1.05)
        ax3.legend(fontsize=8, loc="upper left")
        ax2.set_xlabel("log10 whitened edge residual |r|")
    fig.suptitle("sphere_bignoise_vertex3: where each kernel moves the poses, and its weights over the residuals")
    fig.tight_layout()
    fig.savefig(out / "robust_kernels.png", dpi=100)
    plt.close("all")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graph", type=pathlib.Path, default=data.path("posegraph/sphere_bignoise_vertex3.g2o"))
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/kernels"))
    a = p.parse_args()
    main(a.graph, a.out, a.iterations)
