"""Multiway registration of the 10 Stanford bunny scans, against Stanford's own registration."""

import math

import numpy as np
import pytest
import torch

from robojac import data, lie
from robojac.icp import MultiwayConfig, multiway_registration, read_point_cloud, read_stanford_conf

pytestmark = pytest.mark.open3d  # the pairs' features are Open3D's FPFH
NAMES = ["bun000", "bun045", "bun090", "bun180", "bun270", "bun315", "chin", "ear_back", "top2", "top3"]


def scans(device):
    clouds = [read_point_cloud(data.path(f"pointclouds/bunny/{n}.ply.gz")).to(device) for n in NAMES]
    conf = read_stanford_conf(data.path("pointclouds/bunny/bun.conf"))
    truth = torch.stack([lie.matrix_to_se3(torch.linalg.inv(conf["bun000.ply"]) @ conf[n + ".ply"]) for n in NAMES])
    return clouds, truth.to(device)  # T_bun000_scan


def errors(poses, truth):
    d = lie.se3_compose(poses, lie.se3_inverse(truth))
    return d[:, :3].norm(dim=-1) * 1e3, torch.rad2deg(lie.so3_log(d[:, 3:]).norm(dim=-1))


@pytest.mark.slow
def test_ten_bunny_scans_from_their_raw_frames(device, tmp_path):
    """No initial guess: every scan within 1 mm and 0.5 deg of bun.conf, relative to bun000."""
    clouds, truth = scans(device)
    seen = []
    r = multiway_registration(clouds, progress=lambda done, total, what: seen.append((done, total)))
    mm, deg = errors(r.poses, truth)
    assert r.converged and mm.max() < 1.0 and deg.max() < 0.5, (mm, deg)
    assert (r.poses[0] - lie.se3_exp(torch.zeros(6, dtype=torch.float64, device=device))).abs().max() < 1e-12
    assert seen[-1][0] == seen[-1][1] and len(r.pairs) == 45 and len(r.kept) >= 9
    assert r.graph is not None and r.graph.num_edges == len(r.kept)
    # the merged model, written and read back
    path = tmp_path / "bunny.ply"
    r.write_merged(path, clouds, voxel_size=0.002)
    model = read_point_cloud(path)
    from robojac.icp import voxel_downsample

    each = sum(len(voxel_downsample(lie.se3_act(r.poses[k].expand(len(c), 7), c), 0.002)) for k, c in enumerate(clouds))
    assert len(model) == each and len(r.merged(clouds, 0.002)) < each  # the union is thinned where scans overlap


def test_from_a_rough_initial_guess(device):
    """Given poses off by ~2 deg and 5 mm, the pairs are refined by ICP instead: the same accuracy."""
    clouds, truth = scans(device)
    g = torch.Generator().manual_seed(0)
    noise = torch.cat((torch.randn(10, 3, generator=g, dtype=torch.float64, device="cpu") * 0.005,
                       torch.randn(10, 3, generator=g, dtype=torch.float64, device="cpu") * math.radians(2)), -1)
    noise[0] = 0
    init = lie.se3_compose(lie.se3_exp(noise.to(device)), truth)
    r = multiway_registration(clouds, init=init)
    mm, deg = errors(r.poses, truth)
    assert r.converged and mm.max() < 1.0 and deg.max() < 0.5, (mm, deg)


@pytest.mark.parametrize("guess", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["rough guess", "no guess"])
def test_scans_in_map_coordinates_register_as_at_the_origin(guess, device):
    """An alignment's information matrix, taken about the world's origin, grows with the square of
    the distance: the scans moved 4,000 km out (UTM's northings) gave matrices that were no
    longer positive definite in float64, and the graph was refused (``PoseGraphError``).  The work
    is done about scan 0's centre; the poses and pairs come back in the clouds' own frame."""
    clouds, truth = scans(device)
    pick = [0, 1, 5, 2] if guess else list(range(len(clouds)))  # bun000, 045, 315, 090: each overlaps two others
    clouds, truth, n = [clouds[k] for k in pick], truth[pick], len(pick)
    c = torch.tensor([4.0e6, -2.5e6, 312.5], dtype=torch.float64, device=device)
    C = torch.cat((c, c.new_tensor([0.0, 0.0, 0.0, 1.0]))).expand(n, 7)
    moved = lambda T: lie.se3_compose(C[: len(T)], lie.se3_compose(T, lie.se3_inverse(C[: len(T)])))  # noqa: E731
    far = [x.double() + c for x in clouds]
    init = None
    if guess:
        g = torch.Generator().manual_seed(0)
        noise = torch.cat((torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu") * 0.005,
                           torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu") * math.radians(2)), -1)
        noise[0] = 0
        init = moved(lie.se3_compose(lie.se3_exp(noise.to(device)), truth))
    r = multiway_registration(far, init=init)
    back = lie.se3_compose(lie.se3_inverse(C), lie.se3_compose(r.poses, C))
    mm, deg = errors(back, truth)
    assert r.converged and mm.max() < 1.0 and deg.max() < 0.5, (mm, deg)
    v = MultiwayConfig().voxel_size  # the origin: scan 0's centre, to a whole voxel
    assert float((r.origin - far[0].mean(0)).abs().max()) <= 0.5 * v + 1e-9
    assert float((r.origin / v - torch.round(r.origin / v)).abs().max()) < 1e-6
    assert r.graph.num_edges == len(r.kept)
    for i, j in r.kept:  # each kept pair's T_i_j, in the clouds' frame
        T_ij = r.pairs[(i, j)].T_target_source.tensor()
        local = lie.se3_compose(lie.se3_inverse(C[0]), lie.se3_compose(T_ij, C[0]))
        mm, deg = errors(local[None], lie.se3_compose(lie.se3_inverse(truth[i]), truth[j])[None])
        assert mm.max() < 2.0 and deg.max() < 0.5, (i, j, mm, deg)


def test_bad_input_and_disconnected_scans(device, tmp_path):
    clouds, _ = scans(device)
    with pytest.raises(ValueError, match="two or more point clouds"):
        multiway_registration(clouds[:1])
    with pytest.raises(ValueError, match=r"init: expected 3 poses"):
        multiway_registration(clouds[:3], init=lie.se3_exp(torch.zeros(2, 6, dtype=torch.float64, device=device)))
    with pytest.raises(ValueError, match="MultiwayConfig.min_fitness"):
        MultiwayConfig(min_fitness=2.0)
    # a scan that overlaps nothing (the LiDAR scan, far away): not joined, said so
    lidar = read_point_cloud(data.path("pointclouds/lidar_small_gicp/source.ply.gz")).to(device)[::20] * 0.01 + 5.0
    r = multiway_registration([clouds[0], clouds[1], lidar])
    assert not r.converged and r.reason.startswith("disconnected")
    assert np.isfinite(r.poses.cpu().numpy()).all()
    # a voxel size below 0 or NaN thinned nothing and wrote the cloud whole, without a word
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="voxel_size: expected a finite size >= 0"):
            r.write_merged(tmp_path / "merged.ply", [clouds[0], clouds[1], lidar], voxel_size=bad)
        with pytest.raises(ValueError, match="voxel_size: expected a finite size >= 0"):
            r.merged([clouds[0], clouds[1], lidar], voxel_size=bad)
    assert not (tmp_path / "merged.ply").exists()


def test_multiway_command(tmp_path, capsys):
    from robojac.cli import main

    files = [str(data.path(f"pointclouds/bunny/{n}.ply.gz")) for n in ("bun000", "bun045", "bun315")]
    out, merged = tmp_path / "poses.txt", tmp_path / "model.ply"
    assert main(["multiway", *files, "--out", str(out), "--merged", str(merged), "--merged-voxel", "0.002",
                 "--plot", str(tmp_path / "mw.png"), "--up", "y"]) == 0
    assert "6/6 steps (done)" in capsys.readouterr().err
    rows = [line.split() for line in out.read_text().splitlines() if not line.startswith("#")]
    assert [r[0] for r in rows] == ["bun000.ply.gz", "bun045.ply.gz", "bun315.ply.gz"]
    _, truth = scans("cpu")
    poses = torch.tensor([[float(v) for v in r[1:]] for r in rows], dtype=torch.float64, device="cpu")
    mm, deg = errors(poses, truth[[0, 1, 5]])
    assert mm.max() < 1.0 and deg.max() < 0.5
    assert len(read_point_cloud(merged)) > 10000 and (tmp_path / "mw.png").stat().st_size > 5000
    assert main(["multiway", files[0], "-q"]) == 2
    assert "two or more" in capsys.readouterr().err


def test_clouds_in_a_half_precision_are_registered_in_float32(device):
    """Half-precision clouds: the float32 answer on the same rounded points, its poses and pair
    registrations given back in their dtype (the pose graph stays in its solver's float32)."""
    clouds, truth = scans(device)
    half = [c.to(torch.bfloat16) for c in clouds[:3]]
    r = multiway_registration(half, init=truth[:3])
    ref = multiway_registration([c.float() for c in half], init=truth[:3].float())
    assert r.converged and r.poses.dtype == torch.bfloat16 and r.graph.poses.dtype == torch.float32
    assert all(p.T_target_source.dtype == torch.bfloat16 for p in r.pairs.values())
    if torch.device(device).type == "cpu":  # a GPU's sums may round differently
        assert torch.equal(r.poses, ref.poses.to(torch.bfloat16))
    mm, deg = errors(r.poses.double(), truth[:3])
    assert mm.max() < 1 and deg.max() < 0.5, (mm, deg)  # as from float64 clouds (measured: 0.19 mm, 0.18 deg)
