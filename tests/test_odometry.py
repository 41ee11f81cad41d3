"""LiDAR odometry on 10 real KITTI scans, the KITTI scan reader, and the trajectory metrics
beside evo's."""

import gzip

import numpy as np
import pytest
import torch

from robojac import data
from robojac.icp import OdometryConfig, lidar_odometry, read_kitti_bin, read_scans
from robojac.trajectory import PoseRelation, Trajectory, ate, end_drift, kitti_error, read_kitti, rpe, write_kitti

FOLDER = data.path("pointclouds/kitti00")


def reference_in_lidar_frame(name: str = "semantickitti_poses_first10.txt") -> Trajectory:
    """KITTI's camera-frame poses brought into the Velodyne frame by ``read_kitti``'s calibration."""
    times = torch.tensor(np.loadtxt(FOLDER / "times.txt"), dtype=torch.float64, device="cpu")
    return Trajectory(read_kitti(FOLDER / name, calibration=FOLDER / "Tr_velo_to_cam0.txt").poses, times)


def test_kitti_calibration_brings_camera_poses_into_the_lidar_frame(tmp_path):
    """``Tr^-1 P Tr``, computed here with numpy from the files, against read_kitti's; a bad
    calibration line says which file and line."""
    Tr = np.eye(4)
    Tr[:3] = np.loadtxt(FOLDER / "Tr_velo_to_cam0.txt", usecols=range(1, 13)).reshape(3, 4)
    P = np.loadtxt(FOLDER / "semantickitti_poses_first10.txt").reshape(-1, 3, 4)
    P = np.concatenate((P, np.tile([[[0.0, 0, 0, 1]]], (len(P), 1, 1))), 1)
    expected = np.linalg.inv(Tr) @ P @ Tr
    got = reference_in_lidar_frame().matrices().cpu().numpy()
    # to the files' digits: KITTI's Tr and poses are orthonormal to ~1e-7, and a pose's rotation
    # is projected onto SO(3); without the calibration the poses differ by metres
    assert np.abs(got - expected).max() < 2e-6
    assert np.abs(read_kitti(FOLDER / "semantickitti_poses_first10.txt").matrices().cpu().numpy() - expected).max() > 0.1
    (tmp_path / "calib.txt").write_text("P0: 1 2 3\nTr: 1 0 0\n")
    with pytest.raises(ValueError, match=r"calib.txt:2: expected 'Tr:' and 12 numbers"):
        read_kitti(FOLDER / "semantickitti_poses_first10.txt", calibration=tmp_path / "calib.txt")
    (tmp_path / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(ValueError, match=r"calib.txt: no 'Tr:' line"):
        read_kitti(FOLDER / "semantickitti_poses_first10.txt", calibration=tmp_path / "calib.txt")


def test_kitti_reader_and_folder(tmp_path, device):
    scans, files = read_scans(FOLDER)
    assert len(scans) == 10 and [f.name for f in files][:2] == ["000000.bin.gz", "000001.bin.gz"]
    assert scans[0].shape == (41556, 3) and scans[0].dtype == torch.float64
    with_r = read_kitti_bin(files[0], reflectance=True)
    assert with_r.shape == (41556, 4) and 0 <= float(with_r[:, 3].min()) and float(with_r[:, 3].max()) <= 1
    raw = gzip.decompress(files[0].read_bytes())
    (tmp_path / "cut.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"cut.bin: 664891 bytes is not a whole number of 16-byte KITTI records"):
        read_kitti_bin(tmp_path / "cut.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no scans"):
        read_scans(tmp_path / "empty")


@pytest.mark.slow
def test_odometry_on_kitti_00(device):
    """ATE RMSE against the SemanticKITTI poses at most 5 cm, drift at most 1% of the path."""
    scans, _ = read_scans(FOLDER)
    ref = reference_in_lidar_frame()
    seen = []
    r = lidar_odometry([s.to(device) for s in scans], timestamps=ref.timestamps.to(device),
                       progress=lambda done, total: seen.append(done))
    assert r.converged and len(r.trajectory) == 10 and seen[-1] == 10
    est = Trajectory(r.trajectory.poses.cpu(), r.trajectory.timestamps.cpu())
    assert torch.equal(est.timestamps, ref.timestamps)
    e = ate(ref, est)
    drift = end_drift(ref, est)
    per_step = rpe(ref, est).stats["mean"] / float((ref.positions[1:] - ref.positions[:-1]).norm(dim=-1).mean())
    assert e.stats["rmse"] < 0.05 and drift < 0.01, (e.stats["rmse"], drift)
    assert per_step < 0.05  # per frame: the reference's own noise (~2 cm) over 0.74 m steps
    assert len(r.local_map) > 10000 and float(r.thresholds[2:].min()) > 0


def test_odometry_bad_input(device):
    scans, _ = read_scans(FOLDER)
    with pytest.raises(ValueError, match="two or more scans"):
        lidar_odometry(scans[:1])
    far = [scans[0].to(device), scans[1].to(device) * 1000]
    with pytest.raises(ValueError, match=r"scans\[1\]: 0 points between 0.0 and 100.0 m"):
        lidar_odometry(far)
    bad = scans[1].clone().to(device)
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"scans\[1\]"):
        lidar_odometry([scans[0].to(device), bad])
    with pytest.raises(ValueError, match="timestamps: expected 2 values"):
        lidar_odometry([s.to(device) for s in scans[:2]], timestamps=torch.zeros(3, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="OdometryConfig: expected min_range < max_range"):
        OdometryConfig(min_range=5.0, max_range=1.0)
    for bad_tolerance in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="OdometryConfig.tolerance"):
            OdometryConfig(tolerance=bad_tolerance)
    for name in ("deskew", "prefetch"):
        with pytest.raises(ValueError, match=f"OdometryConfig.{name}: expected True or False, got 'no'"):
            OdometryConfig(**{name: "no"})
    # scans too sparse to hold 3 planes at the voxel: refused by name, never a NaN pose
    gen = torch.Generator(device="cpu").manual_seed(0)
    sparse = [(torch.rand(20, 3, generator=gen, dtype=torch.float64, device="cpu") * 50).to(device) for _ in range(3)]
    with pytest.raises(ValueError, match=r"scans\[0\]: 0 voxels of 0.75 m hold 3 or more of its points"):
        lidar_odometry(sparse)
    dense_then_sparse = [s.to(device) for s in scans[:2]] + [sparse[0]]
    with pytest.raises(ValueError, match=r"scans\[2\]: 0 voxels of 0.75 m"):
        lidar_odometry(dense_then_sparse)
    # a line of points 0.25 m apart: 3 to each 0.75 m voxel of the scan, 2 to each 0.5 m voxel of the map
    x = 0.125 + 0.25 * torch.arange(40, dtype=torch.float64, device="cpu")
    line = torch.stack((x, torch.full_like(x, 0.1), torch.full_like(x, 0.1)), -1).to(device)
    with pytest.raises(ValueError, match=r"scans\[0:1\]: the map they make holds 0 voxels of 0.5 m"):
        lidar_odometry([line, line])
    # a bad scan further on is named when its turn comes, prepared ahead or not
    late = [s.to(device) for s in scans[:3]] + [scans[3][:0].to(device)]
    for prefetch in (True, False):
        with pytest.raises(ValueError, match=r"scans\[3\]: the point cloud is empty"):
            lidar_odometry(late, config=OdometryConfig(prefetch=prefetch))


def test_prefetching_gives_the_same_trajectory(device):
    """The next scan prepared on a second thread (deskewed by the motion just estimated, where
    asked): the same poses to the last bit as in turn."""
    scans, _ = read_scans(FOLDER)
    scans = [s.to(device) for s in scans[:4]]
    for deskew in (False, True):
        ahead = lidar_odometry(scans, config=OdometryConfig(prefetch=True, deskew=deskew))
        in_turn = lidar_odometry(scans, config=OdometryConfig(prefetch=False, deskew=deskew))
        assert torch.equal(ahead.trajectory.poses, in_turn.trajectory.poses)
        assert torch.equal(ahead.local_map, in_turn.local_map)


def test_metrics_equal_evos_on_its_test_trajectory():
    """evo's APE and RPE (its API, in the same test) against ours to 1e-9 (relative where the
    value is above 1: rotation angles near 140 deg differ in the 12th digit between evo's arccos
    and our log): reference = the first
    10 poses of evo's test trajectory KITTI_00_gt.txt, estimate = the SemanticKITTI poses."""
    evo_sync = pytest.importorskip("evo.core.sync")
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    ref, est = (read_kitti(FOLDER / n) for n in ("poses_gt_first10.txt", "semantickitti_poses_first10.txt"))
    times = np.loadtxt(FOLDER / "times.txt")
    ref_evo = PoseTrajectory3D(poses_se3=list(ref.matrices().cpu().numpy()), timestamps=times)
    est_evo = PoseTrajectory3D(poses_se3=list(est.matrices().cpu().numpy()), timestamps=times)
    ref_evo, est_evo = evo_sync.associate_trajectories(ref_evo, est_evo)
    est_evo.align(ref_evo)
    relations = [(PoseRelation.TRANSLATION_PART, metrics.PoseRelation.translation_part),
                 (PoseRelation.ROTATION_ANGLE_DEG, metrics.PoseRelation.rotation_angle_deg),
                 (PoseRelation.FULL_TRANSFORMATION, metrics.PoseRelation.full_transformation)]
    for ours_rel, evo_rel in relations:
        ape = metrics.APE(evo_rel)
        ape.process_data((ref_evo, est_evo))
        mine = ate(ref, est, relation=ours_rel)
        for stat in ("rmse", "mean", "max"):
            theirs = ape.get_statistic(getattr(metrics.StatisticsType, stat))
            assert abs(mine.stats[stat] - theirs) < 1e-9 * max(1.0, abs(theirs)), (ours_rel, stat)
    for delta in (1, 3):
        r = metrics.RPE(metrics.PoseRelation.translation_part, delta=delta, delta_unit=metrics.Unit.frames,
                        all_pairs=False)
        r.process_data((ref_evo, est_evo))
        mine = rpe(ref, est, delta=delta)
        assert abs(mine.stats["rmse"] - r.get_statistic(metrics.StatisticsType.rmse)) < 1e-9


@pytest.mark.slow
def test_odometry_command(tmp_path, capsys):
    from robojac.cli import main

    out = tmp_path / "traj.txt"
    assert main(["odometry", str(FOLDER), "--out", str(out), "--reference", str(FOLDER / "semantickitti_poses_first10.txt"),
                 "--calib", str(FOLDER / "Tr_velo_to_cam0.txt"), "--times", str(FOLDER / "times.txt"),
                 "--plot", str(tmp_path / "o.png"), "--observability"]) == 0
    said = capsys.readouterr()
    assert "10/10 scans" in said.err and "ATE RMSE" in said.out
    assert "observability: every scan fixed every direction" in said.out
    est = read_kitti(out)
    assert len(est) == 10 and ate(reference_in_lidar_frame(), est).stats["rmse"] < 0.05
    assert "KITTI error" not in said.out  # 8 m of path: no 100 m segment
    # a reference long enough for the benchmark's error (poses 20 m apart: 180 m), printed as kitti_error gives it
    far = torch.zeros(10, 7, dtype=torch.float64)
    far[:, 0], far[:, 6] = 20.0 * torch.arange(10, dtype=torch.float64), 1.0
    write_kitti(Trajectory(far), tmp_path / "far.txt")
    assert main(["odometry", str(FOLDER), "--out", str(out), "--reference", str(tmp_path / "far.txt"), "-q"]) == 0
    k = kitti_error(Trajectory(far), read_kitti(out))
    assert (f"KITTI error over 100-800 m segments: translation {k.translation_percent:.3f}%, rotation "
            f"{k.rotation_deg_per_100m:.4f} deg/100m ({int(k.segments.sum())} segments)") in capsys.readouterr().out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "000000.bin").write_bytes(b"\0" * 20)
    assert main(["odometry", str(tmp_path / "bad"), "-q"]) == 2
    assert "000000.bin: 20 bytes" in capsys.readouterr().err


def test_scans_in_a_half_precision_are_registered_and_mapped_in_float32():
    """Half-precision scans (KITTI coordinates to ~3 cm in float16): registered and mapped in
    float32, the float32 answer on the same rounded points; the map and the registrations in the
    scans' dtype, the trajectory in float64 as always."""
    scans, _ = read_scans(data.path("pointclouds/kitti00"))
    half = [s.to(torch.float16) for s in scans[:4]]
    r, ref = lidar_odometry(half), lidar_odometry([s.float() for s in half])
    assert r.converged and r.local_map.dtype == torch.float16 and r.trajectory.poses.dtype == torch.float64
    assert all(g.T_target_source.dtype == torch.float16 for g in r.registrations[1:])
    assert torch.equal(r.trajectory.poses, ref.trajectory.poses)
    assert torch.equal(r.local_map, ref.local_map.half())


def _corridor_scan(x: float, g: torch.Generator, n: int = 20000) -> torch.Tensor:
    """A LiDAR-like scan, in the sensor frame, of a straight corridor (walls at y = +-2 m, 3 m
    high, and a floor) seen from ``x`` along it, within 15 m: the same for every ``x``, as
    nothing marks a place along the corridor."""
    s = torch.rand(n, generator=g, dtype=torch.float64) * 30 - 15
    side = torch.randint(0, 3, (n,), generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    y = torch.where(side == 0, -2.0, torch.where(side == 1, 2.0, 4 * u - 2))
    P = torch.stack((s, y, torch.where(side == 2, -1.0, 3 * u - 1.0)), -1)  # the sensor 1 m above the floor
    return P + 0.01 * torch.randn(P.shape, generator=g, dtype=torch.float64)


def test_odometry_flags_the_scans_whose_motion_nothing_sees():
    """Down a corridor every scan looks the same: the sensor moves 1 m a scan, the odometry
    finds no motion and says converged, and with ``observability=True`` every registration is
    flagged, naming the translation along the corridor.  KITTI's scans fix every direction."""
    g = torch.Generator().manual_seed(0)
    scans = [_corridor_scan(float(k), g) for k in range(5)]  # what the sensor sees does not change with x
    r = lidar_odometry(scans, config=OdometryConfig(observability=True))
    assert r.converged  # "converged" ...
    assert float(r.trajectory.positions[-1, 0]) < 0.5  # ... with the sensor 4 m further along
    assert r.degenerate_scans == [1, 2, 3, 4] and r.observability[0] is None
    for o in r.observability[1:]:  # in the scan's frame, along the corridor
        (words,) = o.weak_directions()
        assert words.startswith("translation along [1.00, ") and float(o.eigenvalues[0]) < 0.002
        assert float(o.eigenvalues[1]) > 0.1
    plain = lidar_odometry(scans)
    assert plain.observability == () and plain.degenerate_scans == []
    assert torch.equal(plain.trajectory.poses, r.trajectory.poses)  # the check changes no answer
    kitti, _ = read_scans(FOLDER)
    k = lidar_odometry(kitti, config=OdometryConfig(observability=True))
    assert k.degenerate_scans == [] and min(o.weakest for o in k.observability[1:]) > 0.1


def test_icp_command_reads_kitti_scans(tmp_path, capsys):
    """``robojac icp`` takes two KITTI ``.bin`` scans as it takes PLY files (it said "no points
    could be read" before): scan 1 aligned to scan 0 lands on SemanticKITTI's relative pose."""
    from robojac.cli import main

    out = tmp_path / "T.txt"
    assert main(["icp", str(FOLDER / "000001.bin.gz"), str(FOLDER / "000000.bin.gz"), "--voxel", "0.5",
                 "--max-distance", "1.0", "--out", str(out)]) == 0
    P = reference_in_lidar_frame().matrices().cpu().numpy()
    expected = np.linalg.inv(P[0]) @ P[1]
    T = np.loadtxt(out)
    angle = np.degrees(np.arccos(np.clip((np.trace(expected[:3, :3].T @ T[:3, :3]) - 1) / 2, -1, 1)))
    assert np.linalg.norm(T[:3, 3] - expected[:3, 3]) < 0.05 and angle < 0.1, (T, expected)
    assert np.linalg.norm(expected[:3, 3]) > 0.5  # the car moved: the identity would fail
