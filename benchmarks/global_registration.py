"""Global registration: robojac's ``global_align`` vs Open3D's RANSAC, over the same trials.

The issue's protocol: the source is moved by a random pose (rotation uniform on SO3, offset up
to 10 cm), so it starts in a frame that says nothing about the answer; each library registers
it to the target with no initial guess, then refines.  Success: within 1 deg / 2 mm of the
Stanford registration (bunny 045 -> 000), within 0.5 deg / 10 cm of the reference pose (LiDAR
pair).  Open3D runs its tutorial's recipe: FPFH on the same voxels, RANSAC on feature matches
(mutual filter, 1.5-voxel inliers, edge-length 0.9 and distance checkers, 100,000 iterations at
0.999 confidence), then point-to-plane ICP at the same final voxel and distance as robojac's
refinement.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/global_registration.py [--trials 100]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.icp import GlobalConfig, global_align, read_point_cloud, read_stanford_conf  # noqa: E402

CASES = {  # name: (voxel, success mm, success deg)
    "bunny 045->000": (0.003, 2.0, 1.0),
    "LiDAR pair": (0.25, 100.0, 0.5),
}


def load(name: str):
    if name.startswith("bunny"):
        src = read_point_cloud(data.path("pointclouds/bunny/bun045.ply.gz"))
        tgt = read_point_cloud(data.path("pointclouds/bunny/bun000.ply.gz"))
        conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
        return src, tgt, lie.matrix_to_se3(torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"])
    folder = "pointclouds/lidar_small_gicp"
    T = torch.tensor(np.loadtxt(data.path(f"{folder}/T_target_source.txt")), dtype=torch.float64)
    return (read_point_cloud(data.path(f"{folder}/source.ply.gz")), read_point_cloud(data.path(f"{folder}/target.ply.gz")),
            lie.matrix_to_se3(T))


def open3d_global(src: np.ndarray, tgt: np.ndarray, voxel: float, seed: int) -> np.ndarray:
    import open3d as o3d

    reg = o3d.pipelines.registration
    o3d.utility.random.seed(seed)

    def prep(p):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p)).voxel_down_sample(voxel)
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
        f = reg.compute_fpfh_feature(pc, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * voxel, max_nn=100))
        return pc, f

    (ps, fs), (pt, ft) = prep(src), prep(tgt)
    d = 1.5 * voxel
    ransac = reg.registration_ransac_based_on_feature_matching(
        ps, pt, fs, ft, True, d, reg.TransformationEstimationPointToPoint(False), 3,
        [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(d)],
        reg.RANSACConvergenceCriteria(100000, 0.999))
    fine = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(src)).voxel_down_sample(voxel / 2)
    fine_t = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(tgt)).voxel_down_sample(voxel / 2)
    fine_t.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * voxel, max_nn=30))
    icp = reg.registration_icp(fine, fine_t, voxel, ransac.transformation, reg.TransformationEstimationPointToPlane())
    return icp.transformation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=100)
    a = p.parse_args()
    print(describe_machine())
    rows = []
    for name, (voxel, ok_mm, ok_deg) in CASES.items():
        src, tgt, truth = load(name)
        g = torch.Generator().manual_seed(0)
        q = torch.randn(a.trials, 4, generator=g, dtype=torch.float64)
        off = (torch.rand(a.trials, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.1 / math.sqrt(3)
        poses = torch.cat((off, q / q.norm(dim=-1, keepdim=True)), -1)
        stats = {"robojac": [], "Open3D": []}
        for k, P in enumerate(poses):
            moved = lie.se3_act(P.expand(src.shape[0], 7), src)
            t0 = time.perf_counter()
            r = global_align(moved, tgt, config=GlobalConfig(voxel_size=voxel, seed=k))
            t_rj = time.perf_counter() - t0
            t0 = time.perf_counter()
            M = open3d_global(moved.numpy(), tgt.numpy(), voxel, k)
            t_o3 = time.perf_counter() - t0
            for lib, T, seconds, claimed in (("robojac", r.T_target_source.tensor(), t_rj, bool(r.converged)),
                                             ("Open3D", lie.matrix_to_se3(torch.tensor(M)), t_o3, None)):
                d = lie.se3_compose(lie.se3_compose(T, P), lie.se3_inverse(truth))
                mm, deg = float(d[:3].norm()) * 1e3, math.degrees(float(lie.so3_log(d[3:]).norm()))
                stats[lib].append((mm < ok_mm and deg < ok_deg, seconds, mm, deg, claimed))
        for lib, s in stats.items():
            good = sum(x[0] for x in s)
            wrong_but_claimed = sum(1 for x in s if not x[0] and x[4])
            rows.append([name, lib, f"{good}/{len(s)}", f"{statistics.median(x[2] for x in s):.2f} mm",
                         f"{statistics.median(x[3] for x in s):.3f} deg", fmt_time(statistics.median(x[1] for x in s)),
                         "-" if lib == "Open3D" else str(wrong_but_claimed)])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(["pair", "library", "within tolerance", "median error (position)", "median error (rotation)",
                 "median time", "wrong yet converged"], rows))


if __name__ == "__main__":
    main()
