"""Degenerate geometry: ICP down a corridor "converges" anywhere along it, and observability says so.

Two scans of one corridor (two walls and a floor, 5 mm of noise) are aligned from a start 0.4 m
off along the corridor. ICP stops with converged=True where it started along the corridor,
because every position along it fits as well. robojac.icp.observability measures, at the
answer, the share of each motion of the points that the surfaces see, and names the motion that
nothing sees. The bunny's overlapping scans and two KITTI LiDAR scans, for contrast, fix all six.

    python examples/19_icp_degeneracy.py --out out/degeneracy
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from robojac import data, viz  # noqa: E402
from robojac.icp import (  # noqa: E402
    ICPConfig, align, observability, read_kitti_bin, read_point_cloud, read_stanford_conf, voxel_downsample,
)

F64 = dict(dtype=torch.float64)


def corridor(g: torch.Generator, n: int = 6000, length: float = 30.0) -> torch.Tensor:
    """Points on two walls (y = +-1.5 m, 3 m high) and the floor of a straight corridor."""
    x = torch.rand(n, generator=g, **F64) * length
    side = torch.randint(0, 3, (n,), generator=g)
    u = torch.rand(n, generator=g, **F64)
    y = torch.where(side == 0, -1.5, torch.where(side == 1, 1.5, 3 * u - 1.5))
    P = torch.stack((x, y, torch.where(side == 2, 0.0, 3 * u)), -1)
    return P + 0.005 * torch.randn(P.shape, generator=g, **F64)


def main(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    source, target = corridor(g), corridor(g)  # the same corridor twice: the true pose is the identity
    start = torch.tensor([0.4, 0.05, 0.0, 0.0, 0.0, 0.0099995, 0.99995], **F64)
    result = align(source, target, init=start, config=ICPConfig(method="point_to_plane", max_correspondence_distance=0.5))
    T = result.T_target_source.tensor()
    print(f"corridor: ICP converged={bool(result.converged)} ({result.reason[0]}), "
          f"{float(T[0]):.3f} m along the corridor from the truth, {abs(float(T[1])) * 1e3:.2f} mm across it")
    seen = {"corridor": observability(source, target, result.T_target_source, 0.5)}
    o = seen["corridor"]
    print(f"  weakest share seen {o.weakest:.4f} (threshold {o.threshold}): degenerate={o.degenerate}")
    for words in o.weak_directions():
        print(f"  free: {words}")

    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    b0 = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun000.ply")), 0.003)
    b45 = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun045.ply")), 0.003)
    T_bunny = torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]
    seen["bunny 045 -> 000"] = observability(b45, b0, T_bunny, 0.01)
    scans = [voxel_downsample(read_kitti_bin(data.path(f"pointclouds/kitti00/{i:06d}.bin.gz")), 0.5) for i in (0, 1)]
    lidar = align(scans[1], scans[0], config=ICPConfig(method="point_to_plane", max_correspondence_distance=1.0))
    seen["KITTI 1 -> 0"] = observability(scans[1], scans[0], lidar.T_target_source, 1.0)
    for name, o in seen.items():
        shares = ", ".join(f"{float(v):.3f}" for v in o.eigenvalues)
        print(f"{name:>17}: shares seen [{shares}] -> {'degenerate' if o.degenerate else 'every direction fixed'}")

    ax = viz.plot_observability(seen)
    ax.figure.tight_layout()
    ax.figure.savefig(out / "shares.png", dpi=120)

    # the corridor from above: the source where ICP put it, and the motion no surface sees
    from robojac import lie

    moved = lie.se3_act(T.expand(source.shape[0], 7), source)
    fig, ax = plt.subplots(figsize=(9, 2.6))
    pick = torch.randperm(source.shape[0], generator=g)[:2500]
    ax.scatter(target[pick, 0], target[pick, 1], s=2, c="#7f8c8d", alpha=0.5, label="target scan")
    ax.scatter(moved[pick, 0], moved[pick, 1], s=2, c="#e67e22", alpha=0.5,
               label=f"source at ICP's answer: converged, {float(T[0]):.2f} m off along the corridor")
    o = seen["corridor"]
    c = o.center.numpy()
    for k in range(6):
        if float(o.eigenvalues[k]) < o.threshold:
            v = o.directions[:3, k].numpy()
            v = 5 * v / (v ** 2).sum() ** 0.5
            ax.annotate("", xy=(c[0] + v[0], c[1] + v[1]), xytext=(c[0] - v[0], c[1] - v[1]),
                        arrowprops=dict(arrowstyle="<->", color="#c0392b", lw=2.5))
            ax.text(c[0], c[1] + 0.45, f"free: share seen {float(o.eigenvalues[k]):.3f}", color="#c0392b",
                    ha="center", va="bottom", fontsize=9,
                    bbox=dict(facecolor="white", alpha=0.85, edgecolor="none", pad=1.5))
    ax.set_aspect("equal")
    ax.set_ylim(-3.4, 2.4)
    ax.set_xlabel("x along the corridor [m]")
    ax.set_ylabel("y [m]")
    ax.legend(fontsize=8, loc="lower center", ncol=2, markerscale=4)
    ax.set_title("corridor from above: observability names the motion ICP cannot see")
    fig.tight_layout()
    fig.savefig(out / "corridor.png", dpi=120)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/degeneracy"))
    main(p.parse_args().out)
