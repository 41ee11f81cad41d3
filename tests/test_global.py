"""Global registration (no initial guess) and the information matrix of an alignment, against
the Stanford registration of the bunny, the LiDAR pair's reference pose, and Open3D."""

import math

import numpy as np
import pytest
import torch

from robojac import data, lie
from robojac.icp import (GlobalConfig, fpfh_features, global_align, information_matrix, read_point_cloud,
                         read_stanford_conf, voxel_downsample)

pytestmark = pytest.mark.open3d  # FPFH is Open3D's


def bunny(device):
    src = read_point_cloud(data.path("pointclouds/bunny/bun045.ply.gz")).to(device)
    tgt = read_point_cloud(data.path("pointclouds/bunny/bun000.ply.gz")).to(device)
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    truth = lie.matrix_to_se3(torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]).to(device)  # T_000_045
    return src, tgt, truth


def lidar(device):
    folder = "pointclouds/lidar_small_gicp"
    src = read_point_cloud(data.path(f"{folder}/source.ply.gz")).to(device)
    tgt = read_point_cloud(data.path(f"{folder}/target.ply.gz")).to(device)
    T = torch.tensor(np.loadtxt(data.path(f"{folder}/T_target_source.txt")), dtype=torch.float64, device="cpu")
    return src, tgt, lie.matrix_to_se3(T).to(device)


def random_poses(n: int, seed: int, device):
    """Uniform rotations (normalized Gaussian quaternions) and offsets of up to 10 cm."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64, device="cpu")
    off = (torch.rand(n, 3, generator=g, dtype=torch.float64, device="cpu") * 2 - 1) * 0.1 / math.sqrt(3)
    return torch.cat((off, q / q.norm(dim=-1, keepdim=True)), -1).to(device)


def error(T_found, P, truth):
    """(mm, deg) of the found pose for a source moved by ``P`` (the answer times ``P`` is the truth)."""
    d = lie.se3_compose(lie.se3_compose(T_found, P), lie.se3_inverse(truth))
    return float(d[:3].norm()) * 1e3, math.degrees(float(lie.so3_log(d[3:]).norm()))


@pytest.mark.parametrize("case, voxel, trials, mm, deg", [("bunny", 0.003, 12, 2.0, 1.0), ("lidar", 0.25, 4, 100.0, 0.5)])
def test_global_registration_from_any_start(case, voxel, trials, mm, deg, device):
    """The source in a random frame (uniform rotation, up to 10 cm): found within the issue's
    tolerances every time (the 100-trial sweep is benchmarks/global_registration.py)."""
    src, tgt, truth = (bunny if case == "bunny" else lidar)(device)
    for P in random_poses(trials, 1, device):
        moved = lie.se3_act(P.expand(src.shape[0], 7), src)
        r = global_align(moved, tgt, config=GlobalConfig(voxel_size=voxel))
        e = error(r.T_target_source.tensor(), P, truth)
        assert r.converged and e[0] < mm and e[1] < deg, e
        assert int(r.num_inliers) >= 12 and float(r.fitness) > 0.8


def test_clouds_in_map_coordinates_register_as_at_the_origin(device):
    """FPFH's normals came from Open3D's raw moments ``E[p p^T] - E[p] E[p]^T``, which cancel to
    noise far from the origin: 4,000 km out (UTM's northings) every one of the bunny's 1,312
    descriptors moved by more than 1 (of the 300 its histograms hold), RANSAC found 11 inliers,
    not 160, and the pair was refused.  Descriptors do not see a shift (12 move that far, as they
    do for a 1 m shift: ties in the neighbour searches); the pair moved by ``c`` registers to the
    same answer, moved."""
    src, tgt, truth = bunny(device)
    src, tgt = src.double(), tgt.double()
    cfg = GlobalConfig()
    c = torch.tensor([4.0e6, -2.5e6, 312.5], dtype=torch.float64, device=device)
    S = voxel_downsample(src, cfg.voxel_size)
    f0, f = fpfh_features(S, cfg.voxel_size), fpfh_features(S + c, cfg.voxel_size)
    moved = int(((f - f0).abs().amax(1) > 1.0).sum())
    assert moved < 0.05 * len(f), (moved, len(f))
    r0, r = global_align(src, tgt), global_align(src + c, tgt + c)
    C = torch.cat((c, c.new_tensor([0.0, 0.0, 0.0, 1.0])))  # T' = C T C^-1
    back = lie.se3_compose(lie.se3_inverse(C), lie.se3_compose(r.T_target_source.tensor(), C))
    assert bool(r.converged) and int(r.num_inliers) >= 0.8 * int(r0.num_inliers)
    e = error(back, lie.se3_exp(torch.zeros(6, dtype=torch.float64, device=device)), truth)
    assert e[0] < 2.0 and e[1] < 1.0, e


def test_refinement_leaves_a_local_minimum_of_icp(device):
    """A start of the LiDAR pair (trial 8 of benchmarks/global_registration.py --trials 30) where
    RANSAC's pose led ICP into a local minimum 1.2 deg off, reported as converged: the
    refinement's restarts about the pose find the fit that is better by its own measure."""
    src, tgt, truth = lidar(device)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(30, 4, generator=g, dtype=torch.float64, device="cpu")[8]
    off = ((torch.rand(30, 3, generator=g, dtype=torch.float64, device="cpu") * 2 - 1) * 0.1 / math.sqrt(3))[8]
    P = torch.cat((off, q / q.norm())).to(device)
    moved = lie.se3_act(P.expand(src.shape[0], 7), src)
    r = global_align(moved, tgt, config=GlobalConfig(voxel_size=0.25, seed=8))
    mm, deg = error(r.T_target_source.tensor(), P, truth)
    assert r.converged and deg < 0.5 and mm < 100, (mm, deg)
    assert float(r.fitness) > 0.83  # the local minimum's was 0.823


def test_no_overlap_is_not_a_confident_answer(device):
    """Two clouds that share nothing: converged=False with the inlier count, not a wrong pose
    reported as found."""
    src, tgt, _ = bunny(device)
    top = tgt[tgt[:, 1] > tgt[:, 1].quantile(0.6)]  # the ears and head
    bottom = src[src[:, 1] < src[:, 1].quantile(0.3)]  # the feet and belly
    far = bottom + torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64, device=device)
    r = global_align(far, top, config=GlobalConfig(voxel_size=0.003))
    assert not bool(r.converged) and (int(r.num_inliers) < 12 or float(r.fitness) < 0.25)
    assert r.reason[0] in ("no_consistent_pose", "no_correspondences")


def test_reproducible_and_config_errors(device):
    src, tgt, _ = bunny(device)
    a = global_align(src, tgt, config=GlobalConfig(voxel_size=0.004, seed=3))
    b = global_align(src, tgt, config=GlobalConfig(voxel_size=0.004, seed=3))
    assert torch.equal(a.T_target_source.tensor(), b.T_target_source.tensor())
    with pytest.raises(ValueError, match="GlobalConfig.voxel_size"):
        GlobalConfig(voxel_size=0.0)
    with pytest.raises(ValueError, match="GlobalConfig.confidence"):
        GlobalConfig(confidence=1.0)
    with pytest.raises(ValueError, match="source: 1 points after 0.003 m voxels"):
        global_align(src[:1], tgt, config=GlobalConfig(voxel_size=0.003))
    bad = src.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(ValueError, match="source"):
        global_align(bad, tgt)
    with pytest.raises(ValueError, match="source: the point cloud is empty"):
        global_align(src[:0], tgt)


def test_information_matrix_equals_open3d(device):
    o3d = pytest.importorskip("open3d")
    from robojac.icp import voxel_downsample

    src, tgt, truth = bunny(device)
    s, t = voxel_downsample(src, 0.003), voxel_downsample(tgt, 0.003)
    info = information_matrix(s, t, truth, 0.005)
    ps = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(s.cpu().numpy()))
    pt = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(t.cpu().numpy()))
    ref = o3d.pipelines.registration.get_information_matrix_from_point_clouds(
        ps, pt, 0.005, lie.se3_to_matrix(truth).cpu().numpy())
    order = [3, 4, 5, 0, 1, 2]  # Open3D's [rotation, translation] -> robojac's [rho, phi]
    ref = torch.tensor(ref[np.ix_(order, order)], dtype=torch.float64, device="cpu")
    assert (info.cpu() - ref).abs().max() < 1e-9 * ref.abs().max()
    assert torch.linalg.eigvalsh(info).min() > 0  # six constrained directions: an edge weight


def test_register_command(tmp_path, capsys):
    from robojac.cli import main

    bun = [str(data.path(f"pointclouds/bunny/{n}.ply.gz")) for n in ("bun045", "bun000")]
    out = tmp_path / "T.txt"
    assert main(["register", *bun, "--voxel", "0.003", "--out", str(out), "--plot", str(tmp_path / "r.png"),
                 "--up", "y"]) == 0
    _, _, truth = bunny("cpu")
    T = lie.matrix_to_se3(torch.tensor(np.loadtxt(out), dtype=torch.float64, device="cpu"))
    assert error(T, lie.se3_exp(torch.zeros(6, dtype=torch.float64, device="cpu")), truth)[1] < 1.0
    assert "2/2 steps" in capsys.readouterr().err and (tmp_path / "r.png").stat().st_size > 5000
    assert main(["register", str(tmp_path / "missing.ply"), bun[1], "--voxel", "0.003", "-q"]) == 2
    assert "missing.ply" in capsys.readouterr().err


def test_points_in_a_half_precision_are_registered_in_float32(device):
    """Half-precision clouds (torch has no SVD in one): the float32 answer on the same rounded
    points, given back in their dtype, and still the registration bun.conf gives."""
    src, tgt, truth = bunny(device)
    s, t = src.to(torch.float16), tgt.to(torch.float16)
    r, ref = global_align(s, t), global_align(s.float(), t.float())
    assert r.T_target_source.dtype == r.rmse.dtype == torch.float16 and bool(r.converged)
    if torch.device(device).type == "cpu":  # a GPU's sums may round differently
        assert torch.equal(r.T_target_source.tensor(), ref.T_target_source.tensor().half())
    identity = lie.se3_exp(torch.zeros(6, dtype=torch.float64, device=truth.device))
    mm, deg = error(r.T_target_source.tensor().double(), identity, truth)
    assert mm < 1 and deg < 0.3, (mm, deg)  # measured: 0.16 mm, 0.11 deg
