"""Point-cloud registration on real scans: the Stanford bunny (bun045 -> bun000) and a LiDAR pair.

    python examples/07_icp_bunny.py --out out/icp
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

from robojac import data, lie, viz  # noqa: E402
from robojac.icp import ICPConfig, align, read_point_cloud, read_stanford_conf  # noqa: E402



def pose_error(T, T_gt) -> tuple[float, float]:
    """(degrees, millimetres) between two 4x4 transforms."""
    E = torch.linalg.inv(T_gt) @ T
    angle = float(lie.so3_log(lie.matrix_to_quat(E[:3, :3])).norm())
    return math.degrees(angle), float(E[:3, 3].norm()) * 1000


def main(folder: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bunny = folder / "bunny"
    poses = read_stanford_conf(bunny / "bun.conf")
    T_gt = torch.linalg.inv(poses["bun000.ply"]) @ poses["bun045.ply"]  # T_000_045
    src, tgt = read_point_cloud(bunny / "bun045.ply.gz"), read_point_cloud(bunny / "bun000.ply.gz")
    print(f"bunny: {len(src)} -> {len(tgt)} points; ground truth {pose_error(T_gt, torch.eye(4, dtype=torch.float64))[0]:.1f} deg apart")
    results = {}
    for method in ("point_to_point", "point_to_plane", "gicp"):
        t0 = time.perf_counter()
        r = align(src, tgt, config=ICPConfig(method=method, voxel_size=0.003, max_iterations=60))
        dt = time.perf_counter() - t0
        deg, mm = pose_error(r.matrix(), T_gt)
        results[method] = r
        print(f"  {method:15s} {deg:6.3f} deg, {mm:6.3f} mm from bun.conf; {int(r.iterations):2d} iterations, {dt * 1e3:4.0f} ms")
    fig = viz.plot_registration_before_after(src, tgt, torch.eye(4, dtype=torch.float64), results["gicp"].T_target_source,
                                             titles=("bun045 over bun000 (identity)", "after GICP"), vertical_axis="y",
                                             view=(15, -70))
    fig.savefig(out / "bunny_before_after.png", dpi=110, bbox_inches="tight")

    # a wide initial error: restarts in one batch
    angle = math.radians(80)
    init = T_gt @ lie.se3_to_matrix(torch.tensor([0, 0, 0, math.sin(angle / 2), 0, 0, math.cos(angle / 2)], dtype=torch.float64))
    plain = align(src, tgt, init=init, config=ICPConfig(voxel_size=0.003, max_correspondence_distance=0.02))
    wide = align(src, tgt, init=init, config=ICPConfig(voxel_size=0.003, levels=(4, 1), max_correspondence_distance=0.02, restarts=8))
    print(f"  from 80 deg off: plain GICP {pose_error(plain.matrix(), T_gt)[0]:.2f} deg; "
          f"with 8 restarts {pose_error(wide.matrix(), T_gt)[0]:.3f} deg")

    lidar = folder / "lidar_small_gicp"
    ls, lt = read_point_cloud(lidar / "source.ply.gz"), read_point_cloud(lidar / "target.ply.gz")
    T_ref = torch.from_numpy(np.loadtxt(lidar / "T_target_source.txt"))
    t0 = time.perf_counter()
    r = align(ls, lt, config=ICPConfig(method="gicp", voxel_size=0.25))
    dt = time.perf_counter() - t0
    deg, mm = pose_error(r.matrix(), T_ref)
    print(f"lidar: {len(ls)} -> {len(lt)} points; GICP {deg:.3f} deg, {mm / 1000:.3f} m from the approximate reference "
          f"(good to ~0.3 deg); {dt * 1e3:.0f} ms with 0.25 m voxels")
    fig = viz.plot_registration_before_after(ls, lt, torch.eye(4, dtype=torch.float64), r.T_target_source,
                                             titles=("LiDAR pair, identity", "after GICP"), view=(35, -60))
    fig.savefig(out / "lidar_before_after.png", dpi=110)
    plt.close("all")
    print(f"  pictures in {out}/")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=pathlib.Path, default=data.path("pointclouds"),
                   help="a folder laid out as data/pointclouds (bunny/, lidar_small_gicp/)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/icp"))
    a = p.parse_args()
    main(a.data, a.out)
