"""Multiway registration of the 10 Stanford bunny scans from their raw frames: robojac vs Open3D.

Both start from the scans as the scanner wrote them, with no initial guess, and are checked
scan by scan against Stanford's registration (``bun.conf``), relative to bun000.  Open3D runs
its multiway tutorial's recipe with global registration for the pairs (the issue's): for every
pair, FPFH + RANSAC on feature matches (as in ``benchmarks/global_registration.py``), then
point-to-plane ICP and ``get_information_matrix_from_point_clouds``; odometry edges between
consecutive scans, every other pair an uncertain loop closure; ``global_optimization`` with
Levenberg-Marquardt and the tutorial's options (``edge_prune_threshold=0.25``,
``reference_node=0``).  Both use the same voxel (3 mm features, ICP at 1.5 mm).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/multiway.py
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, table  # noqa: E402

from robojac import data, lie  # noqa: E402
from robojac.icp import multiway_registration, read_point_cloud, read_stanford_conf  # noqa: E402

NAMES = ["bun000", "bun045", "bun090", "bun180", "bun270", "bun315", "chin", "ear_back", "top2", "top3"]
VOXEL = 0.003


def open3d_multiway(clouds: list[np.ndarray]) -> np.ndarray:
    """``T_world_scan (N, 4, 4)`` by Open3D's tutorial recipe, with global registration per pair."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    o3d.utility.random.seed(0)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    prepared = []
    for p in clouds:
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        coarse = pc.voxel_down_sample(VOXEL)
        coarse.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * VOXEL, max_nn=30))
        f = reg.compute_fpfh_feature(coarse, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * VOXEL, max_nn=100))
        fine = pc.voxel_down_sample(VOXEL / 2)
        fine.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * VOXEL, max_nn=30))
        prepared.append((coarse, f, fine))
    graph = reg.PoseGraph()
    odometry = np.eye(4)
    graph.nodes.append(reg.PoseGraphNode(odometry))
    d = 1.5 * VOXEL
    for s in range(len(clouds)):
        for t in range(s + 1, len(clouds)):
            (cs, fs, ps), (ct, ft, pt) = prepared[s], prepared[t]
            ransac = reg.registration_ransac_based_on_feature_matching(
                cs, ct, fs, ft, True, d, reg.TransformationEstimationPointToPoint(False), 3,
                [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9), reg.CorrespondenceCheckerBasedOnDistance(d)],
                reg.RANSACConvergenceCriteria(100000, 0.999))
            icp = reg.registration_icp(ps, pt, d / 2 * 1.5, ransac.transformation,
                                       reg.TransformationEstimationPointToPlane())
            info = reg.get_information_matrix_from_point_clouds(ps, pt, d / 2 * 1.5, icp.transformation)
            if t == s + 1:  # odometry: T_s_t chains the initial poses
                odometry = icp.transformation @ odometry
                graph.nodes.append(reg.PoseGraphNode(np.linalg.inv(odometry)))
                graph.edges.append(reg.PoseGraphEdge(s, t, icp.transformation, info, uncertain=False))
            else:
                graph.edges.append(reg.PoseGraphEdge(s, t, icp.transformation, info, uncertain=True))
    option = reg.GlobalOptimizationOption(max_correspondence_distance=d / 2 * 1.5, edge_prune_threshold=0.25,
                                          reference_node=0)
    reg.global_optimization(graph, reg.GlobalOptimizationLevenbergMarquardt(),
                            reg.GlobalOptimizationConvergenceCriteria(), option)
    return np.stack([n.pose for n in graph.nodes])


def main() -> None:
    print(describe_machine())
    clouds = [read_point_cloud(data.path(f"pointclouds/bunny/{n}.ply.gz")) for n in NAMES]
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    truth = [torch.linalg.inv(conf["bun000.ply"]) @ conf[n + ".ply"] for n in NAMES]
    t0 = time.perf_counter()
    ours = multiway_registration(clouds)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = open3d_multiway([c.numpy() for c in clouds])
    t_theirs = time.perf_counter() - t0

    def err(T, k):
        E = torch.linalg.inv(truth[k]) @ T
        angle = float(lie.so3_log(lie.matrix_to_quat(E[:3, :3])).norm())
        return f"{float(E[:3, 3].norm()) * 1e3:.3f} mm / {math.degrees(angle):.3f} deg"

    rows = [[n, err(lie.se3_to_matrix(ours.poses[k]), k), err(torch.tensor(theirs[k]), k)] for k, n in enumerate(NAMES)]
    rows.append(["total time", f"{t_ours:.1f} s", f"{t_theirs:.1f} s"])
    print(table(["scan", "robojac (vs bun.conf)", "Open3D (vs bun.conf)"], rows))
    print(f"robojac: {len(ours.kept)} pairs kept, {len(ours.pruned)} pruned, converged={ours.converged}")


if __name__ == "__main__":
    main()
