"""Registration with no initial guess: the bunny and a LiDAR pair, each source thrown into a random
frame first.

``global_align`` finds the pose from FPFH features and a batched RANSAC in torch (100,000
minimal samples scored in chunks, stopped early once the evidence is enough), then refines it
with GICP.  The answer is checked against the Stanford registration (bunny) and the pair's
reference pose (LiDAR).  Two clouds that do not overlap are refused (``converged=False``).

    python examples/15_global_registration.py --out out/global
"""

import argparse
import math
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.icp import GlobalConfig, global_align, read_point_cloud, read_stanford_conf  # noqa: E402


def random_pose(g: torch.Generator) -> torch.Tensor:
    """A rotation uniform on SO3 and an offset of up to 10 cm."""
    q = torch.randn(4, generator=g, dtype=torch.float64)
    off = (torch.rand(3, generator=g, dtype=torch.float64) * 2 - 1) * 0.1 / math.sqrt(3)
    return torch.cat((off, q / q.norm()))


def main(out: pathlib.Path, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    lidar = "pointclouds/lidar_small_gicp"
    cases = {
        "bunny 045 -> 000": (read_point_cloud(data.path("pointclouds/bunny/bun045.ply.gz")),
                             read_point_cloud(data.path("pointclouds/bunny/bun000.ply.gz")),
                             lie.matrix_to_se3(torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]), 0.003, "y"),
        "LiDAR pair": (read_point_cloud(data.path(f"{lidar}/source.ply.gz")),
                       read_point_cloud(data.path(f"{lidar}/target.ply.gz")),
                       lie.matrix_to_se3(torch.tensor(np.loadtxt(data.path(f"{lidar}/T_target_source.txt")))), 0.25, "z"),
    }
    fig = plt.figure(figsize=(11, 9))
    for row, (name, (src, tgt, truth, voxel, up)) in enumerate(cases.items()):
        P = random_pose(g)  # the source, thrown into a random frame: the start says nothing
        moved = lie.se3_act(P.expand(src.shape[0], 7), src)
        t0 = time.perf_counter()
        r = global_align(moved, tgt, config=GlobalConfig(voxel_size=voxel))
        took = time.perf_counter() - t0
        d = lie.se3_compose(lie.se3_compose(r.T_target_source.tensor(), P), lie.se3_inverse(truth))
        print(f"{name}: {int(r.num_inliers)} RANSAC inliers, fitness {float(r.fitness):.2f}, "
              f"converged={bool(r.converged)}, {took * 1e3:.0f} ms; error against the reference "
              f"{float(d[:3].norm()) * 1e3:.2f} mm, {math.degrees(float(lie.so3_log(d[3:]).norm())):.3f} deg")
        axes = [fig.add_subplot(2, 2, 2 * row + k + 1, projection="3d") for k in range(2)]
        step = max(1, src.shape[0] // 8000)
        for ax, (T, title) in zip(axes, ((lie.se3_exp(torch.zeros(6, dtype=torch.float64)), f"{name}: as given"),
                                        (r.T_target_source.tensor(), f"found with no guess, fitness {float(r.fitness):.2f}"))):
            a = lie.se3_act(T.expand(moved[::step].shape[0], 7), moved[::step]).numpy()
            b = tgt[::step].numpy()
            ax.scatter(*b.T, s=0.3, color="0.55", label="target")
            ax.scatter(*a.T, s=0.3, color="#e07a5f", label="source")
            ax.set_title(title)
            ax.set_axis_off()
            ax.view_init(elev=20, azim=-60, vertical_axis=up)
        axes[0].legend(loc="upper left", markerscale=15, fontsize=8)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.96, wspace=0, hspace=0.02)
    fig.savefig(out / "global_registration.png", dpi=80)
    plt.close("all")
    # no overlap: the bunny's feet against its ears, a metre apart
    src, tgt = cases["bunny 045 -> 000"][0], cases["bunny 045 -> 000"][1]
    feet = src[src[:, 1] < src[:, 1].quantile(0.3)] + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    ears = tgt[tgt[:, 1] > tgt[:, 1].quantile(0.6)]
    r = global_align(feet, ears, config=GlobalConfig(voxel_size=0.003))
    print(f"feet against ears: converged={bool(r.converged)} ({int(r.num_inliers)} RANSAC inliers, "
          f"fitness {float(r.fitness):.2f}): no consistent pose, as it should be")
    print(f"  picture in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/global"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    main(a.out, a.seed)
