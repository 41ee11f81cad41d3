"""What the degeneracy check costs next to the alignment it checks.

``icp.observability`` at an alignment's answer (one nearest-neighbour search, the target's
normals, a 6x6 generalized eigenproblem) against ``icp.align`` itself, on the bunny pair, the
LiDAR pair and two KITTI scans, and in ``lidar_odometry`` (``OdometryConfig(observability=True)``)
on the ten KITTI scans.  None of the peers (Open3D, small_gicp, KISS-ICP) reports
degeneracy, so there is no side-by-side: the figure is the check's share of the work.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/observability.py
"""

from __future__ import annotations

import pathlib
import statistics
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from _util import describe_machine, fmt_time, median_time, table  # noqa: E402

from robojac import data  # noqa: E402
from robojac.icp import (  # noqa: E402
    ICPConfig, OdometryConfig, align, lidar_odometry, observability, prepare, read_kitti_bin, read_scans, read_point_cloud, read_stanford_conf, voxel_downsample,
)


def _pairs():
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    b0 = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun000.ply")), 0.003)
    b45 = voxel_downsample(read_point_cloud(data.path("pointclouds/bunny/bun045.ply")), 0.003)
    init = torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]
    yield "bunny 045 -> 000 (3 mm voxels)", b45, b0, init, ICPConfig(method="gicp", max_correspondence_distance=0.01)
    lidar = data.path("pointclouds/lidar_small_gicp")
    src = voxel_downsample(read_point_cloud(lidar / "source.ply.gz"), 0.25)
    tgt = voxel_downsample(read_point_cloud(lidar / "target.ply.gz"), 0.25)
    yield "LiDAR pair (0.25 m voxels)", src, tgt, None, ICPConfig(method="gicp", max_correspondence_distance=1.0)
    k0, k1 = (voxel_downsample(read_kitti_bin(data.path(f"pointclouds/kitti00/{i:06d}.bin.gz")), 0.5) for i in (0, 1))
    yield "KITTI 1 -> 0 (0.5 m voxels)", k1, k0, None, ICPConfig(method="point_to_plane", max_correspondence_distance=1.0)


def main() -> None:
    print(f"# icp.observability against icp.align; {describe_machine()}")
    rows = []
    for name, src, tgt, init, cfg in _pairs():
        result = align(src, tgt, init=init, config=cfg)
        t_align = median_time(lambda: align(src, tgt, init=init, config=cfg))
        dist = cfg.max_correspondence_distance
        o = observability(src, tgt, result.T_target_source, dist)
        t_obs = median_time(lambda: observability(src, tgt, result.T_target_source, dist))
        prepared = prepare(tgt)  # a target align has used: its index and normals are there
        align(src, prepared, init=init, config=cfg)
        t_prep = median_time(lambda: observability(src, prepared, result.T_target_source, dist))
        rows.append([name, f"{src.shape[0]:,} / {tgt.shape[0]:,}", fmt_time(t_align), fmt_time(t_obs),
                     f"{t_obs / t_align:.2f}x", fmt_time(t_prep), f"{t_prep / t_align:.2f}x", f"{o.weakest:.3f}",
                     "yes" if o.degenerate else "no"])
    print(table(["pair", "points (source / target)", "align", "observability", "check / align",
                 "with a prepared target", "check / align", "weakest share", "degenerate"], rows))
    # in LiDAR odometry: the ten KITTI scans, per scan, without and with the check (alternating runs)
    scans, _ = read_scans(data.path("pointclouds/kitti00"))
    per_scan = {False: [], True: []}
    for _ in range(5):
        for check in (False, True):
            r = lidar_odometry(scans, config=OdometryConfig(observability=check))
            per_scan[check].append(float(r.seconds[1:].median()))
    off, on = statistics.median(per_scan[False]), statistics.median(per_scan[True])
    print(table(["LiDAR odometry, KITTI 00, median per scan", "without the check", "with it", "with / without"],
                [["10 scans, 5 alternating runs each", fmt_time(off), fmt_time(on), f"{on / off:.2f}x"]]))


if __name__ == "__main__":
    main()
