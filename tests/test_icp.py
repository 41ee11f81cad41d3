"""robojac.icp: known transforms recovered, real scans against their registration, batches, errors."""

import dataclasses
import gzip
import math
import pathlib

import numpy as np
import pypose as pp
import pytest
import torch
from torch import Tensor

from robojac.data import path as data_path
from robojac.icp import (
    ICPConfig, NearestNeighbors, PCDError, PLYError, align, prepare, read_point_cloud, read_stanford_conf, voxel_downsample,
)
from robojac import lie
from robojac.lie import _ops as ops
from robojac.optim import RobustKernel

from helpers import max_err

CPU = torch.device("cpu")


def _bunny(device=CPU):
    conf = read_stanford_conf(data_path("pointclouds/bunny/bun.conf"))
    T_gt = torch.linalg.inv(conf["bun000.ply"]) @ conf["bun045.ply"]
    return (read_point_cloud(data_path("pointclouds/bunny/bun045.ply")).to(device),
            read_point_cloud(data_path("pointclouds/bunny/bun000.ply")).to(device), T_gt.to(device))


def _rand(*shape, g):
    """Seeded draws on the CPU (the same numbers whatever the test's device)."""
    return torch.rand(*shape, dtype=torch.float64, generator=g, device=CPU)


def _randn(*shape, g):
    return torch.randn(*shape, dtype=torch.float64, generator=g, device=CPU)


def _surface(n=1500, seed=0, device=CPU):
    """A bumpy, asymmetric surface patch plus a wall: well-constrained in all six directions."""
    g = torch.Generator().manual_seed(seed)
    u, v = _rand(n, g=g) * 2 - 1, _rand(n, g=g) * 2 - 1
    z = 0.3 * torch.sin(2.5 * u) * torch.cos(1.7 * v) + 0.1 * u * v
    floor = torch.stack((u, v, z), -1)
    a, b = _rand(n // 3, g=g) * 2 - 1, _rand(n // 3, g=g)
    wall = torch.stack((a, torch.full_like(a, 1.0) + 0.05 * torch.sin(3 * a), b), -1)
    return torch.cat((floor, wall)).to(device)


def _distinct_pairs(count: int, seed: int, n_target, n_source, scale: float, noise: float = 0.0, device=CPU):
    """``count`` ragged pairs with distinct targets (surfaces of ``n_target(k)`` points) and sources
    (their first ``n_source(k)`` points, moved by a random pose of size ``scale``, plus noise)."""
    g = torch.Generator().manual_seed(seed)
    sources, targets = [], []
    for k in range(count):
        tgt = _surface(n_target(k), seed=seed * 10 + k)
        T = pp.se3(scale * _randn(6, g=g)).Exp()
        n = n_source(k)
        sources.append((T.Inv().Act(tgt[:n]) + noise * _randn(n, 3, g=g)).to(device))
        targets.append(tgt.to(device))
    return sources, targets


def _err(T, T_gt):
    E = torch.linalg.inv(T_gt) @ T
    return math.degrees(float(ops.so3_log(ops.matrix_to_quat(E[:3, :3])).norm())), float(E[:3, 3].norm())


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane", "gicp"])
@pytest.mark.parametrize("kernel", ["none", "huber", "cauchy", "geman_mcclure", "tukey"])
def test_known_transforms_are_recovered(method, kernel, device):
    target = _surface(device=device)
    T = pp.se3(torch.tensor([0.05, -0.03, 0.02, 0.06, -0.04, 0.08], dtype=torch.float64, device=device)).Exp()
    source = T.Inv().Act(target)  # target = T * source, point for point
    cfg = ICPConfig(method=method, kernel=RobustKernel(kernel, 0.1), max_correspondence_distance=0.5, max_iterations=100,
                    rotation_tolerance=1e-10, translation_tolerance=1e-10)
    r = align(source, target, config=cfg)
    deg, dist = _err(r.matrix(), T.matrix())
    assert deg < 1e-6 and dist < 1e-7, (method, kernel, deg, dist)
    assert bool(r.converged) and float(r.fitness) == 1.0 and float(r.rmse) < 1e-7


@pytest.mark.open3d
def test_fitness_and_rmse_are_those_of_the_last_step_and_agree_with_open3d_at_the_answer():
    """``num_inliers``, ``fitness`` and ``rmse`` describe the correspondences of the last step, the
    same ones as ``cost``: for point-to-point without a kernel ``cost = rmse^2 num_inliers / 2``
    exactly.  Open3D evaluates its own search at the answer; the two differ only by the last
    step, below the tolerances."""
    import open3d as o3d

    src, tgt, T_gt = _bunny(CPU)
    s, t = voxel_downsample(src, 0.003), voxel_downsample(tgt, 0.003)
    for method in ("point_to_point", "gicp"):
        r = align(s, t, init=T_gt, config=ICPConfig(method=method, max_correspondence_distance=0.01))
        n = int(r.num_inliers)
        assert bool(r.converged) and float(r.fitness) == n / s.shape[0]
        if method == "point_to_point":
            assert abs(float(r.cost) - 0.5 * float(r.rmse) ** 2 * n) < 1e-12 * float(r.cost)
        pcd = lambda p: o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p.numpy()))  # noqa: E731
        ev = o3d.pipelines.registration.evaluate_registration(pcd(s), pcd(t), 0.01, r.matrix().numpy())
        assert abs(float(r.fitness) - ev.fitness) < 2e-3 and abs(float(r.rmse) - ev.inlier_rmse) < 1e-2 * ev.inlier_rmse


@pytest.mark.parametrize("method, deg_max, mm_max", [("gicp", 0.2, 0.5), ("point_to_plane", 0.6, 2.0)])
def test_bunny_pair_against_the_stanford_registration(method, deg_max, mm_max,
                                                      device):
    src, tgt, T_gt = _bunny(device)
    r = align(src, tgt, config=ICPConfig(method=method, voxel_size=0.003, max_iterations=60))
    deg, dist = _err(r.matrix(), T_gt)
    assert deg < deg_max and dist * 1000 < mm_max, (deg, dist)


def test_stanford_conf_convention_puts_the_scans_together(device):
    src, tgt, T_gt = _bunny(device)
    moved = ops.se3_act(ops.matrix_to_se3(T_gt).reshape(1, 7), voxel_downsample(src, 0.002))
    d, _ = NearestNeighbors(tgt).query(moved)
    assert float(d.sqrt().median()) < 1e-3


def test_restarts_reach_the_answer_from_far_away(device):
    src, tgt, T_gt = _bunny(device)
    angle = math.radians(80)
    R = ops.se3_to_matrix(torch.tensor([0, 0, 0, math.sin(angle / 2), 0, 0, math.cos(angle / 2)], dtype=torch.float64,
                                       device=device))
    init = T_gt @ R
    plain = align(src, tgt, init=init, config=ICPConfig(voxel_size=0.003, max_correspondence_distance=0.02))
    wide = align(src, tgt, init=init, config=ICPConfig(voxel_size=0.003, levels=(4, 1), max_correspondence_distance=0.02, restarts=8))
    assert _err(plain.matrix(), T_gt)[0] > 10
    assert _err(wide.matrix(), T_gt)[0] < 0.3


def test_batched_equals_one_by_one_with_ragged_pairs(device):
    target = _surface(1200)
    g = torch.Generator().manual_seed(2)
    sources, targets, truths = [], [], []
    for k in range(5):
        T = pp.se3(0.05 * _randn(6, g=g)).Exp()
        n = 600 + 100 * k
        sources.append(T.Inv().Act(target[:n] + 0.001 * _randn(n, 3, g=g)).to(device))
        targets.append(target.to(device))
        truths.append(T.to(device))
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.5)
    batch = align(sources, targets, config=cfg)
    assert batch.T_target_source.shape == (5, 7) and batch.converged.shape == (5,)
    for k in range(5):
        one = align(sources[k], targets[k], config=cfg)
        assert max_err(batch.T_target_source.tensor()[k], one.T_target_source.tensor()) < 1e-9
        assert int(batch.iterations[k]) == int(one.iterations)
        assert _err(one.matrix(), truths[k].matrix())[0] < 0.2


def test_padded_batches_with_lengths_equal_lists(device):
    """A padded (B, N, 3) batch with per-row lengths is the same ragged batch as a list; the
    padding (NaN here) is never read; numpy batches are accepted too."""
    sources, targets = _distinct_pairs(3, 4, lambda k: 300 + 100 * k, lambda k: 250 + 50 * k, 0.03, device=device)

    def padded(clouds):
        out = torch.full((len(clouds), max(len(c) for c in clouds), 3), float("nan"), dtype=torch.float64,
                         device=device)
        for b, c in enumerate(clouds):
            out[b, : len(c)] = c
        return out, torch.tensor([len(c) for c in clouds], device=device)

    (S, ns), (T, nt) = padded(sources), padded(targets)
    cfg = ICPConfig(max_correspondence_distance=0.3)
    ref = align(sources, targets, config=cfg)
    for got in (align(S, T, source_lengths=ns, target_lengths=nt, config=cfg),
                align(S.cpu().numpy(), targets, source_lengths=ns.tolist(), config=cfg)):
        assert max_err(got.T_target_source.tensor(), ref.T_target_source.tensor()) < 1e-12
        assert torch.equal(got.num_inliers, ref.num_inliers) and bool(got.converged.all())
    with pytest.raises(ValueError, match=r"source_lengths: expected 3 integer point counts"):
        align(S, targets, source_lengths=[250, 300], config=cfg)
    with pytest.raises(ValueError, match=r"source_lengths: expected 3 integer point counts"):
        align(S, targets, source_lengths=ns.double(), config=cfg)
    with pytest.raises(ValueError, match=rf"target_lengths: row 1 has 999 points; expected 1 to {T.shape[1]} "):
        align(S, T, source_lengths=ns, target_lengths=[300, 999, 500], config=cfg)
    with pytest.raises(ValueError, match=r"target_lengths: only for a padded \(B, N, 3\) target"):
        align(S, targets, source_lengths=ns, target_lengths=nt, config=cfg)
    with pytest.raises(ValueError, match=r"source\[0\]: 100 of 350 points have NaN"):  # padding read as points
        align(S, T, target_lengths=nt, config=cfg)
    with pytest.raises(ValueError, match=r"source\[1\]: the point cloud is empty"):
        align(S, T, source_lengths=[250, 0, 350], target_lengths=nt, config=cfg)


@pytest.mark.parametrize("backend", ["auto", "brute"])
def test_batch_of_distinct_targets_equals_one_by_one_even_far_off(backend, device):
    """Distinct targets share one stacked KD-tree (CPU) or one padded brute-force search (the
    GPU's path, forced here on the CPU); a source that starts far off (in another pair's slot of
    the stacked tree) must find no correspondences, exactly as when aligned alone, and ragged
    pairs' statistics must be finite."""
    sources, targets = _distinct_pairs(4, 5, lambda k: 500 + 100 * k, lambda k: 400 + 50 * k, 0.03, device=device)
    inits = [torch.eye(4, dtype=torch.float64, device=device) for _ in range(4)]
    inits[2] = inits[2].clone()
    inits[2][0, 3] = -9.0  # lands in pair 1's slot of the stacked tree
    cfg = ICPConfig(method="point_to_point", max_correspondence_distance=0.3, neighbors_backend=backend)
    batch = align(sources, targets, init=torch.stack(inits), config=cfg)
    assert not bool(batch.converged[2]) and int(batch.num_inliers[2]) == 0
    for k in range(4):
        one = align(sources[k], targets[k], init=inits[k], config=ICPConfig(method="point_to_point", max_correspondence_distance=0.3))
        assert max_err(batch.T_target_source.tensor()[k], one.T_target_source.tensor()) < 1e-9
        assert bool(batch.converged[k]) == bool(one.converged) and int(batch.num_inliers[k]) == int(one.num_inliers)
        assert torch.allclose(batch.rmse[k], one.rmse) and torch.allclose(batch.fitness[k], one.fitness)
    assert torch.isfinite(batch.rmse[[0, 1, 3]]).all()


@pytest.mark.open3d
def test_gicp_batch_on_the_padded_brute_force_path_equals_the_kdtree_path():
    """The GPU's batched path (padded brute-force neighbours, batched covariances), run on the
    CPU: the same poses, iterations and inlier counts as the CPU's KD-tree path, for GICP and
    point-to-plane over ragged pairs, with restarts."""
    from robojac.icp._cloud import knn_covariances_many

    sources, targets = _distinct_pairs(3, 7, lambda k: 400 + 150 * k, lambda k: 300 + 80 * k, 0.04, noise=0.002)
    for method in ("gicp", "point_to_plane"):
        for restarts in (0, 2):
            cfg = dict(method=method, max_correspondence_distance=0.3, restarts=restarts)
            # the batch, and one pair alone (a GPU's single pair: its covariances searched alone)
            for S, T in ((sources, targets), (sources[1], targets[1])):
                kd = align(S, T, config=ICPConfig(**cfg))
                brute = align(S, T, config=ICPConfig(**cfg, neighbors_backend="brute"))
                assert max_err(brute.T_target_source.tensor(), kd.T_target_source.tensor()) < 1e-9
                assert torch.equal(brute.iterations, kd.iterations) and torch.equal(brute.num_inliers, kd.num_inliers)
                assert max_err(brute.rmse, kd.rmse) < 1e-12
    # batched covariances and normals against Open3D's: ragged with a cloud below k among them,
    # one cloud alone, and a small cloud alone (each searched over all its points)
    clouds = [targets[0], targets[1], targets[2][:7], sources[2]]
    for group in (clouds, clouds[1:2], clouds[2:3], [targets[0][:2]]):
        ref = knn_covariances_many(group, 10, with_normals=True, batched=False)
        got = knn_covariances_many(group, 10, with_normals=True, batched=True)
        assert len(got) == len(group)
        for (C1, n1), (C2, n2) in zip(ref, got):
            assert C1.shape == C2.shape and max_err(C1, C2) < 1e-12 * float(C1.abs().max())
            assert float((n1 * n2).sum(0).abs().min()) > 1 - 1e-9  # the same axes, sign arbitrary


@pytest.mark.open3d
def test_padded_neighbours_are_exact_far_from_the_origin():
    """Many ragged clouds searched at once equal a KD-tree per cloud, in float32 too, with the
    clouds 10 km from the origin (the naive |q|^2 - 2 q.p + |p|^2 would lose every digit)."""
    from robojac.icp import PaddedNeighbors

    g = torch.Generator().manual_seed(3)
    clouds = [torch.rand(n, 3, dtype=torch.float64, generator=g) + 1e4 for n in (50, 120, 80)]
    qs = [c[:40] + 0.01 * torch.randn(40, 3, dtype=torch.float64, generator=g) for c in clouds]
    which = torch.tensor([2, 0, 1])
    q = torch.stack([qs[int(w)] for w in which])
    for dt in (torch.float64, torch.float32):
        d, i = PaddedNeighbors([c.to(dt) for c in clouds], budget=1000).query(q.to(dt), which, k=3)  # rows split
        for r, w in enumerate(which.tolist()):  # the reference: a KD-tree on the same (rounded) numbers
            dr, ir = NearestNeighbors(clouds[w].to(dt).double(), backend="kdtree").query(qs[w].to(dt).double(), k=3)
            assert torch.equal(i[r], ir)
            assert max_err(d[r].double(), dr) < (1e-12 if dt == torch.float64 else 1e-6 * float(dr.max()))


def test_a_target_shared_by_many_pairs_is_prepared_once(monkeypatch, device):
    from robojac.icp import _align

    calls = []
    real = _align._prepare_ordered
    monkeypatch.setattr(_align, "_prepare_ordered", lambda *a, **k: calls.append(1) or real(*a, **k))
    target = _surface(600, device=device)
    sources = [pp.se3(torch.tensor([0.01 * k, 0, 0, 0, 0, 0.02], dtype=torch.float64, device=device)).Exp().Inv()
               .Act(target[:400])
               for k in range(4)]
    r = align(sources, target, config=ICPConfig(max_correspondence_distance=0.3))
    assert len(calls) == 1 and bool(r.converged.all())


def test_a_prepared_target_is_reused(device):
    target = _surface(device=device)
    T = pp.se3(torch.tensor([0.02, 0.01, 0.0, 0.03, 0.0, 0.05], dtype=torch.float64, device=device)).Exp()
    source = T.Inv().Act(target)
    prepared = prepare(target)
    a = align(source, prepared, config=ICPConfig(max_correspondence_distance=0.5))
    b = align(source, target, config=ICPConfig(max_correspondence_distance=0.5))
    assert max_err(a.T_target_source.tensor(), b.T_target_source.tensor()) < 1e-12
    assert prepared._cov is not None  # built once, kept for the next call


@pytest.mark.open3d
def test_neighbour_backends_agree_and_downsampling_averages():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2000, 3, dtype=torch.float64, generator=g)
    q = torch.rand(500, 3, dtype=torch.float64, generator=g)
    d1, i1 = NearestNeighbors(pts, backend="kdtree").query(q, k=3)
    d2, i2 = NearestNeighbors(pts, backend="brute", chunk=64).query(q, k=3)
    assert torch.equal(i1, i2) and max_err(d1, d2) < 1e-12
    one_voxel = torch.tensor([[0.1, 0.1, 0.1], [0.3, 0.2, 0.1], [0.2, 0.3, 0.4]], dtype=torch.float64)
    assert max_err(voxel_downsample(one_voxel, 1.0), one_voxel.mean(0, keepdim=True)) < 1e-15


def test_gicp_system_from_moments_equals_the_dense_sum(device):
    """The moment-sum Gauss-Newton system against ``sum w J^T M J`` built point by point."""
    from robojac.icp import _soa as soa
    from robojac.lie import skew

    g = torch.Generator().manual_seed(3)
    R_, N = 2, 50
    q, r = _randn(R_, 3, N, g=g).to(device), _randn(R_, 3, N, g=g).to(device)
    A = _randn(R_, N, 3, 3, g=g).to(device)
    M = A @ A.transpose(-1, -2) + 0.1 * torch.eye(3, dtype=torch.float64, device=device)  # SPD per point
    w = _rand(R_, N, g=g).to(device)
    M6 = torch.stack([M[..., a, b] for a, b in soa.SYM6], dim=1)  # (R, 6, N)
    Mr = soa.sym6_matvec(M6, r)
    assert max_err(Mr, (M @ r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)) < 1e-12
    H, gv = soa.gicp_system(q, Mr, M6, w)
    eye = torch.eye(3, dtype=torch.float64, device=device).expand(R_, N, 3, 3)
    J = torch.cat((eye, -skew(q.transpose(1, 2))), -1)  # (R, N, 3, 6)
    JtM = J.transpose(-1, -2) @ M * w[..., None, None]
    assert max_err(H, (JtM @ J).sum(1)) < 1e-10
    assert max_err(gv, (JtM @ r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).sum(1)) < 1e-10


def test_symmetric_six_entry_algebra(device):
    from robojac.icp import _soa as soa

    g = torch.Generator().manual_seed(4)
    A = _randn(7, 3, 3, g=g).to(device)
    C = A @ A.transpose(-1, -2) + 0.5 * torch.eye(3, dtype=torch.float64, device=device)  # (7 points, 3, 3)
    six = lambda X: torch.stack([X[..., a, b] for a, b in soa.SYM6], dim=-1).T.unsqueeze(0)  # (1, 6, 7)
    assert max_err(soa.sym6_inverse(six(C)), six(torch.linalg.inv(C))) < 1e-12
    Rm = ops.quat_to_matrix(pp.randn_SO3(1, dtype=torch.float64, device=device).tensor())  # (1, 3, 3)
    assert max_err(soa.sym6_rotation(Rm) @ six(C), six(Rm @ C @ Rm.transpose(-1, -2))) < 1e-12
    n = torch.nn.functional.normalize(_randn(1, 3, 7, g=g).to(device), dim=1)
    nn_t = n[0].T  # (7, 3)
    dense = torch.eye(3, dtype=torch.float64, device=device) - (1 - 1e-3) * nn_t[:, :, None] * nn_t[:, None, :]
    assert max_err(soa.sym6_plane_covariances(n), six(dense)) < 1e-15


def test_without_open3d_the_cpu_takes_a_kdtree_and_gives_the_neighbourhoods_covariances(monkeypatch):
    """Open3D is a dependency, but a bare image may lack it: the CPU's covariances then come from
    a KD-tree query, and equal each point's 10 nearest neighbours' covariance (torch's distances
    and ``eigh``, here)."""
    import sys

    from robojac.icp._cloud import knn_covariances

    monkeypatch.setitem(sys.modules, "open3d", None)  # ``import open3d`` raises ImportError
    pts = _surface(800)
    C, n = knn_covariances(pts, 10, with_normals=True)
    near = torch.cdist(pts, pts).topk(10, largest=False).indices  # (N, 10), the point itself included
    X = pts[near] - pts[near].mean(1, keepdim=True)
    ref = X.mT @ X / 10
    assert max_err(C.permute(2, 0, 1), ref) < 1e-12 * float(ref.abs().max())
    axis = torch.linalg.eigh(ref).eigenvectors[:, :, 0]
    assert float((axis * n.T).sum(-1).abs().min()) > 1 - 1e-9  # the smallest axis, sign arbitrary
    assert knn_covariances(pts.float(), 10).dtype == torch.float32


@pytest.mark.open3d
def test_open3d_covariances_equal_our_neighbourhood_covariances():
    from robojac.icp import estimate_covariances, normals_from_covariances
    from robojac.icp._cloud import knn_covariances

    pts = _surface(800)
    _, nb = NearestNeighbors(pts, backend="brute").query(pts, k=10)
    ours = estimate_covariances(pts, nb)  # (N, 3, 3)
    o3d_path = knn_covariances(pts, 10).permute(2, 0, 1)
    assert max_err(o3d_path, ours) < 1e-12 * float(ours.abs().max())
    assert knn_covariances(pts.float(), 10).dtype == torch.float32
    C, n = knn_covariances(pts, 10, with_normals=True)  # Open3D's normals from those covariances
    ours_n = normals_from_covariances(C.permute(2, 0, 1))
    assert float((ours_n * n.T).sum(-1).abs().min()) > 1 - 1e-9  # the same axes, sign arbitrary
    # points already in spatial order are taken as they come, with the same answers
    from robojac.icp import spatial_order

    o = spatial_order(pts)
    C2, n2 = knn_covariances(pts[o], 10, with_normals=True, ordered=True)
    assert max_err(C2, C[..., o]) < 1e-12 * float(ours.abs().max())
    assert float((n2 * n[:, o]).sum(0).abs().min()) > 1 - 1e-12


def test_covariance_helpers_refuse_bad_arguments_by_name():
    """``estimate_covariances`` and ``normals_from_covariances`` name a bad argument (an ``int``
    for the neighbour indices had stopped with "'int' object has no attribute 'shape'" inside
    the structure-of-arrays code, and an index past the end read another point's memory)."""
    from robojac.icp import estimate_covariances, normals_from_covariances

    pts = _surface(50)
    N = pts.shape[0]
    _, nb = NearestNeighbors(pts, backend="brute").query(pts, k=5)
    for neighbors, error, match in [
        (10, TypeError, r"neighbors: expected an integer tensor \(N, k\) of point indices, got int"),
        (nb.double(), TypeError, "neighbors: .* got dtype torch.float64"),
        (nb[:10], ValueError, rf"neighbors: expected shape \({N}, k\) with k >= 1"),
        (nb[:, :0], ValueError, rf"neighbors: expected shape \({N}, k\)"),
        (nb + 1, ValueError, rf"neighbors: indices must lie in \[0, {N}\)"),
        (nb - 1, ValueError, rf"neighbors: indices must lie in \[0, {N}\)"),
    ]:
        with pytest.raises(error, match=match):
            estimate_covariances(pts, neighbors)
    with pytest.raises(ValueError, match=r"points: expected shape \(N, 3\)"):
        estimate_covariances(pts[:, :2], nb)
    C = estimate_covariances(pts, nb)
    for cov, error, match in [
        (C.numpy(), TypeError, "cov: expected a floating-point tensor .* got ndarray"),
        (C[:, :2], ValueError, rf"cov: expected shape \(N, 3, 3\), got \({N}, 2, 3\)"),
        (C * float("nan"), ValueError, "cov: contains NaN"),
    ]:
        with pytest.raises(error, match=match):
            normals_from_covariances(cov)


def test_spatial_order_is_a_permutation_that_keeps_neighbours_close(device):
    from robojac.icp import spatial_order

    g = torch.Generator().manual_seed(3)
    pts = (_rand(4000, 3, g=g) * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64, device=CPU) + 1e3).to(device)
    o = spatial_order(pts)
    assert torch.equal(torch.sort(o).values, torch.arange(4000, device=device))
    step = lambda p: float((p[1:] - p[:-1]).norm(dim=-1).mean())  # noqa: E731
    # consecutive points of a random order are ~1 apart; of a Z curve over 4000 points, a small fraction of that
    assert step(pts[o]) < 0.15 * step(pts)
    assert torch.equal(spatial_order(pts.T.contiguous().T), o)  # any layout: a transposed view too
    assert torch.equal(spatial_order(pts[:1]), torch.zeros(1, dtype=torch.long, device=device))
    assert torch.equal(spatial_order(pts[:1].expand(5, 3)).sort().values, torch.arange(5, device=device))


@pytest.mark.open3d
def test_thread_count_is_scoped_and_checked():
    from robojac._threads import threads_for, torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(None):
            assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before

    import threading

    seen = []

    def worker():  # torch's count is the process's: a block in another thread restores what it found
        start = torch.get_num_threads()
        with torch_threads(1):
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads() == start)
    w = threading.Thread(target=worker)
    w.start()
    w.join()
    assert seen == [1, True] and torch.get_num_threads() == before

    # a backward runs on its forward's count, whatever the caller's, and gives the caller's back
    from robojac._threads import backward_on_forward_threads

    class Twice(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.threads = 1
            return 2 * x

        @staticmethod
        @backward_on_forward_threads
        def backward(ctx, g):
            seen.append(torch.get_num_threads())
            return 2 * g

    x = torch.ones(3, dtype=torch.float64, device=CPU, requires_grad=True)
    with torch_threads(2):
        Twice.apply(x).sum().backward()
        assert seen[-1] == 1 and torch.get_num_threads() == 2 and torch.equal(x.grad, torch.full_like(x, 2.0))
    assert threads_for(1000, torch.device("cpu")) == 1 and threads_for(10**7, torch.device("cpu")) is None
    with pytest.raises(ValueError, match="ICPConfig.num_threads: expected an integer >= 1"):
        ICPConfig(num_threads=0)
    pts = _surface(300)
    align(pts, pts, config=ICPConfig(max_correspondence_distance=0.1, num_threads=1))
    assert torch.get_num_threads() == before


def test_bad_input_is_refused_and_no_overlap_is_not_success(device):
    pts = _surface(300, device=device)
    with pytest.raises(ValueError, match="source: the point cloud is empty"):
        align(torch.zeros(0, 3, device=device), pts)
    bad = pts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"target: 1 of 400 points have NaN or infinite coordinates .* keep the "
                                         r"finite ones: points\[torch.isfinite\(points\).all\(-1\)\]"):
        align(pts, bad)
    with pytest.raises(ValueError, match=r"expected shape \(N, 3\)"):
        align(torch.zeros(10, 2, device=device), pts)
    with pytest.raises(ValueError, match="batch sizes differ"):
        align([pts, pts], [pts, pts, pts])
    with pytest.raises(ValueError, match="not a rigid transform"):
        align(pts, pts, init=2 * torch.eye(4, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match=r"ICPConfig.method: expected one of"):
        ICPConfig(method="ndt")
    far = ops.se3_to_matrix(torch.tensor([100.0, 0, 0, 0, 0, 0, 1], dtype=torch.float64, device=device))
    r = align(pts, pts, init=far, config=ICPConfig(max_correspondence_distance=0.1))
    assert not bool(r.converged) and int(r.num_inliers) == 0
    assert max_err(r.matrix(), far) == 0  # the initial pose, reported as not converged: no silent identity


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane", "gicp"])
def test_correspondences_the_kernel_gives_no_weight_are_not_success(method, device):
    """Tukey's kernel of a scale far below every residual gives each correspondence zero weight:
    there is no step to take.  The pair stops at its initial pose, ``converged=False`` with reason
    ``"no_correspondences"``, while its inliers (by distance) are still counted.  (Point-to-point
    had stopped on its zero step and said converged; point-to-plane and GICP solved a system of
    zeros and returned NaN poses.)"""
    pts = _surface(600, device=device)
    init = ops.se3_to_matrix(torch.tensor([0.05, -0.02, 0.03, 0, 0, math.sin(0.1), math.cos(0.1)], dtype=torch.float64,
                                          device=device))
    cfg = ICPConfig(method=method, kernel=RobustKernel("tukey", 1e-9), max_correspondence_distance=0.5)
    r = align(pts, pts, init=init, config=cfg)
    assert not bool(r.converged) and r.reason == ("no_correspondences",) and int(r.num_inliers) > 500
    assert max_err(r.matrix(), init) < 1e-12  # finite: the initial pose
    loose = align(pts, pts, init=init, config=dataclasses.replace(cfg, kernel=RobustKernel("tukey", 1.0)))
    assert bool(loose.converged) and max_err(loose.matrix(), torch.eye(4, dtype=torch.float64, device=device)) < 1e-6


@pytest.mark.cuda
def test_gpu_path_matches_cpu():
    target = _surface()
    T = pp.se3(torch.tensor([0.05, -0.03, 0.02, 0.06, -0.04, 0.08], dtype=torch.float64)).Exp()
    source = T.Inv().Act(target)
    cpu = align(source, target, config=ICPConfig(max_correspondence_distance=0.5))
    gpu = align(source.cuda(), target.cuda(), config=ICPConfig(max_correspondence_distance=0.5))
    assert gpu.T_target_source.device.type == "cuda"
    assert max_err(gpu.T_target_source.tensor().cpu(), cpu.T_target_source.tensor()) < 1e-6


@pytest.mark.cuda
def test_gpu_batch_of_distinct_targets_matches_cpu():
    sources, targets = _distinct_pairs(6, 11, lambda k: 500 + 60 * k, lambda k: 350 + 40 * k, 0.04)
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.3, restarts=2)
    cpu = align(sources, targets, config=cfg)
    gpu = align([s.cuda() for s in sources], [t.cuda() for t in targets], config=cfg)
    assert gpu.T_target_source.device.type == "cuda"
    assert max_err(gpu.T_target_source.tensor().cpu(), cpu.T_target_source.tensor()) < 1e-6
    assert torch.equal(gpu.num_inliers.cpu(), cpu.num_inliers)


@pytest.mark.open3d
def test_icp_command_registers_the_bunny_and_reports_bad_input(tmp_path, capsys):
    from robojac.cli import main

    _, _, T_gt = _bunny()
    src, tgt = data_path("pointclouds/bunny/bun045.ply"), data_path("pointclouds/bunny/bun000.ply")
    out, pic = tmp_path / "T.txt", tmp_path / "aligned.png"
    assert main(["icp", str(src), str(tgt), "--voxel", "0.003", "--out", str(out), "--plot", str(pic), "--up", "y"]) == 0
    deg, m = _err(torch.from_numpy(np.loadtxt(out)), T_gt)
    assert deg < 0.5 and m < 0.002 and pic.stat().st_size > 10_000
    assert "converged=True" in capsys.readouterr().out
    bad = tmp_path / "init.txt"
    bad.write_text("1 0 0\n0 1 0\n")
    assert main(["icp", str(src), str(tgt), "--init", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--init" in err and "expected 16 numbers" in err
    assert main(["icp", str(tmp_path / "missing.ply"), str(tgt)]) == 2
    assert "not found" in capsys.readouterr().err


# ---- PLY files: read as Open3D reads them, and refused when they do not match their header ----
def _plain(tmp_path, name):
    """An uncompressed copy of a shipped ``.ply.gz`` (what Open3D, the reference, can read)."""
    out = tmp_path / pathlib.Path(name).name
    out.write_bytes(gzip.decompress(data_path(name + ".gz").read_bytes()))
    return out


@pytest.mark.open3d
@pytest.mark.parametrize("name", ["pointclouds/bunny/bun000.ply", "pointclouds/lidar_small_gicp/source.ply"])
def test_ply_files_read_as_open3d_reads_them(tmp_path, name):
    import open3d as o3d

    plain = _plain(tmp_path, name)
    ref = np.asarray(o3d.io.read_point_cloud(str(plain)).points)
    assert np.array_equal(read_point_cloud(plain).numpy(), ref)
    assert np.array_equal(read_point_cloud(data_path(name)).numpy(), ref)  # the .gz, read directly
    assert read_point_cloud(plain, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("name, cut", [("pointclouds/bunny/bun000.ply", 0.5), ("pointclouds/bunny/bun000.ply", 0.97),
                                       ("pointclouds/lidar_small_gicp/source.ply", 0.6)])
def test_truncated_ply_files_are_refused_naming_the_file(tmp_path, name, cut):
    plain = _plain(tmp_path, name)
    raw = plain.read_bytes()
    short = tmp_path / "short.ply"
    short.write_bytes(raw[: int(len(raw) * cut)])
    with pytest.raises(PLYError, match=r"short\.ply: truncated"):
        read_point_cloud(short)


def _tiny_binary_ply(faces: bool) -> bytes:
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty double x\nproperty double y\n" \
           "property double z\nproperty uchar red\n"
    if faces:
        head += "element face 1\nproperty list uchar int vertex_indices\n"
    body = b"".join(np.array([k, 2 * k, 3 * k], "<f8").tobytes() + bytes([k]) for k in range(3))
    if faces:
        body += bytes([3]) + np.array([0, 1, 2], "<i4").tobytes()
    return (head + "end_header\n").encode() + body


def test_ply_with_other_properties_and_faces(tmp_path):
    p = tmp_path / "t.ply"
    p.write_bytes(_tiny_binary_ply(faces=True))
    assert read_point_cloud(p).tolist() == [[0, 0, 0], [1, 2, 3], [2, 4, 6]]
    p.write_bytes(_tiny_binary_ply(faces=True)[:-4])
    with pytest.raises(PLYError, match="truncated inside element 'face'"):
        read_point_cloud(p)


@pytest.mark.parametrize("text, match", [
    ("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
     "1 2 3\n4 oops 6\n", r"bad\.ply:9: expected 3 numbers for a vertex, got '4 oops 6'"),
    ("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
     "1 2 3\n4 5 6\n7 8 9\n", r"bad\.ply:10: 1 more data lines than the header declares \(2\)"),
    ("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n",
     r"bad\.ply:3: the vertex element has no z property"),
    ("ply\nformat binary_middle_endian 1.0\nend_header\n", r"bad\.ply:2: unknown format"),
    ("solid\n", r"bad\.ply: not a PLY file"),
    ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n"
     "1 2 3\n4 oops 6\n", r"bad\.pcd:11: expected 3 numbers for a point, got '4 oops 6'"),
    ("VERSION 0.7\nFIELDS x y\nSIZE 4 4\nTYPE F F\nPOINTS 1\nDATA ascii\n1 2\n", r"bad\.pcd:2: FIELDS has no z"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F Q\nPOINTS 1\nDATA ascii\n1 2 3\n", r"bad\.pcd:3: field 'z' has TYPE Q"),
    ("FIELDS x y z\nSIZE 4 4\nTYPE F F F\nPOINTS 1\nDATA ascii\n1 2 3\n", r"bad\.pcd:2: SIZE has 2 entries"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 3\nHEIGHT 2\nPOINTS 5\nDATA ascii\n",
     r"bad\.pcd:6: POINTS 5 is not WIDTH x HEIGHT"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA lzma\n", r"bad\.pcd:5: DATA 'lzma'"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH\nPOINTS 1\nDATA ascii\n1 2 3\n",  # an IndexError had escaped
     r"bad\.pcd:4: WIDTH expects one integer, got 0"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 0 1\nPOINTS 1\nDATA binary\n",
     r"bad\.pcd:4: COUNT expects values of 1 or more"),
    ("solid facet\n", r"bad\.pcd:1: unknown header line 'solid facet'"),
])
def test_corrupt_point_files_say_where(tmp_path, text, match):
    """PLY and PCD files that do not hold what their header says: the error names the file (and line)."""
    ply = text.startswith(("ply", "solid\n"))
    _refused_naming(tmp_path / ("bad.ply" if ply else "bad.pcd"), text, PLYError if ply else PCDError, match)


def _refused_naming(path: pathlib.Path, text: str, error, match: str) -> None:
    path.write_text(text)
    with pytest.raises(error, match=match):
        read_point_cloud(path)


# ---- PCD and XYZ files: read as Open3D writes them, refused where they do not hold what they say ----
@pytest.mark.open3d
@pytest.mark.parametrize("kind", ["ascii", "binary", "binary_compressed"])
def test_pcd_files_read_as_open3d_writes_them(tmp_path, kind):
    """Open3D writes the file (with normals and colours, so x y z sit among other fields); the
    points come back as it reads them, and a cut-off file is refused: Open3D's own reader had
    filled the missing points from uninitialized memory (values like 2.5e-296)."""
    import open3d as o3d

    rng = np.random.default_rng(0)
    P = np.round(rng.normal(size=(3000, 3)), 3)  # rounded: the compressed data hold back references too
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
    pcd.normals = o3d.utility.Vector3dVector(rng.normal(size=(3000, 3)))
    pcd.colors = o3d.utility.Vector3dVector(np.zeros((3000, 3)))  # long runs: overlapping references
    path = tmp_path / "cloud.pcd"
    o3d.io.write_point_cloud(str(path), pcd, write_ascii=kind == "ascii", compressed=kind == "binary_compressed")
    assert f"DATA {kind}".encode() in path.read_bytes()[:400]
    got = read_point_cloud(path).numpy()
    assert np.array_equal(got, np.asarray(o3d.io.read_point_cloud(str(path)).points))
    assert np.abs(got - P).max() < 1e-6  # float32 in the file
    short = tmp_path / "short.pcd"
    short.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(PCDError, match=r"short\.pcd: (truncated|POINTS 3000, but 299\d data lines)"):
        read_point_cloud(short)


def test_xyz_files_keep_every_line_or_name_the_one_they_cannot_read(tmp_path):
    """Open3D's XYZ reader had skipped the lines it could not parse, keeping the rest."""
    p = tmp_path / "c.xyz"
    p.write_text("# x y z nx ny nz\n0 0 0 0 0 1\n\n1,2,3,0,0,1\n")
    assert read_point_cloud(p).tolist() == [[0, 0, 0], [1, 2, 3]]
    for text, match in (("0 0 0\nfoo bar baz\n", r"c\.xyz:2: expected numbers"),
                        ("0 0 0\n1 1\n", r"c\.xyz:2: expected 3 numbers like line 1, got 2"),
                        ("1 2\n", r"c\.xyz:1: expected at least 3 numbers"), ("# nothing\n", r"c\.xyz: no points")):
        _refused_naming(p, text, ValueError, match)


@pytest.mark.open3d
def test_icp_command_refuses_a_truncated_file(tmp_path, capsys):
    from robojac.cli import main

    plain = _plain(tmp_path, "pointclouds/bunny/bun045.ply")
    short = tmp_path / "short.ply"
    short.write_bytes(plain.read_bytes()[:300_000])
    assert main(["icp", str(short), str(data_path("pointclouds/bunny/bun000.ply"))]) == 2
    assert "short.ply: truncated" in capsys.readouterr().err


# ---- far from the origin: map and UTM coordinates ----------------------------------------------
def _offset_truth(T: pp.LieTensor, o: Tensor) -> pp.LieTensor:
    """The same motion seen with both clouds shifted by ``o``: ``Tr(o) T Tr(-o)``."""
    shift = lambda v: pp.SE3(torch.cat((v, torch.tensor([0, 0, 0, 1.0], dtype=v.dtype, device=v.device))))  # noqa: E731
    return shift(o) * T * shift(-o)


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane", "gicp"])
@pytest.mark.parametrize("offset", [100.0, 1000.0, 5e6])
def test_clouds_far_from_the_origin_align_as_at_the_origin(method, offset, device):
    """An exact copy of the bunny moved by a known pose, both clouds ``offset`` metres away: the
    linearization is about the target's centre, so the answer is as exact as at the origin (the
    old code came back 0.13 rad off at 100 m, converged=False, and said converged=True at 1 km
    in float32)."""
    tgt = voxel_downsample(_bunny()[1], 0.004)
    T = pp.se3(torch.tensor([0.01, -0.02, 0.015, 0.05, -0.03, 0.08], dtype=torch.float64, device="cpu")).Exp()
    src = T.Inv().Act(tgt)
    o = torch.tensor([offset, -offset, 0.5 * offset], dtype=torch.float64, device="cpu")
    cfg = ICPConfig(method=method, max_correspondence_distance=0.05, rotation_tolerance=1e-10,
                    translation_tolerance=1e-10, max_iterations=60)
    r = align((src + o).to(device), (tgt + o).to(device), config=cfg)
    E = _offset_truth(T, o).Inv() * pp.SE3(r.T_target_source.tensor().cpu())
    assert bool(r.converged)
    assert float(E.rotation().Log().norm()) < 1e-9 and float(E.translation().norm()) < 1e-9 * max(offset, 1.0)


def test_float32_far_off_is_as_good_as_its_inputs(device):
    """In float32 at 1 km the points themselves are rounded to ~6e-5 m: the answer equals the
    float64 answer on the same rounded numbers, and is right to their precision."""
    tgt = voxel_downsample(_bunny()[1], 0.004)
    T = pp.se3(torch.tensor([0.01, -0.02, 0.015, 0.05, -0.03, 0.08], dtype=torch.float64, device="cpu")).Exp()
    o = torch.tensor([1000.0, -1000.0, 500.0], dtype=torch.float64, device="cpu")
    src32, tgt32 = (T.Inv().Act(tgt) + o).float(), (tgt + o).float()
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.05)
    r32 = align(src32.to(device), tgt32.to(device), config=cfg)
    r64 = align(src32.double().to(device), tgt32.double().to(device), config=cfg)
    E = pp.SE3(r64.T_target_source.tensor().cpu()).Inv() * pp.SE3(r32.T_target_source.tensor().cpu().double())
    assert bool(r32.converged) and float(E.rotation().Log().norm()) < 2e-6
    truth = _offset_truth(T, o).Inv() * pp.SE3(r32.T_target_source.tensor().cpu().double())
    assert float(truth.rotation().Log().norm()) < 1e-4  # the rounding's own limit: ~2e-5 rad here


@pytest.mark.parametrize("offset", [[1000.0, 1000.0, 0.0], [3e5, 5e6, 100.0]])
def test_the_lidar_pair_far_off_lands_on_its_own_answer(offset, device):
    src = read_point_cloud(data_path("pointclouds/lidar_small_gicp/source.ply")).to(device)
    tgt = read_point_cloud(data_path("pointclouds/lidar_small_gicp/target.ply")).to(device)
    cfg = ICPConfig(method="gicp", voxel_size=0.25)
    at_origin = align(src, tgt, config=cfg).T_target_source.tensor().cpu()
    o = torch.tensor(offset, dtype=torch.float64, device="cpu")
    far = align(src + o.to(device), tgt + o.to(device), config=cfg).T_target_source.tensor().cpu()
    E = _offset_truth(pp.SE3(at_origin), o).Inv() * pp.SE3(far)  # covariances and steps about the centres
    lever = float(o.norm())  # a rotation difference of 1e-12 moves the far points by 1e-12 * |o|
    assert float(E.rotation().Log().norm()) < 1e-9 and float(E.translation().norm()) < 1e-6 + 1e-11 * lever


def test_voxel_keys_never_merge_distant_points(device):
    """A voxel of 1 um over 10,000 km: a packed key would overflow int64 and merge points 1 m
    apart; the keys are then compared whole."""
    p = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 1e7, 0], [0, 0, 1e7], [1.0, 0, 0]], dtype=torch.float64, device=device)
    out = voxel_downsample(p, 1e-6)
    assert out.shape == (4, 3)
    with pytest.raises(ValueError, match="voxel_size: expected a finite size >= 0"):
        voxel_downsample(p, float("nan"))
    with pytest.raises(ValueError, match="too small for coordinates this large"):
        voxel_downsample(p * 1e9, 1e-9)


# ---- gradients through the alignment ---------------------------------------------------------------
def _grad_pair(device, n=300):
    tgt = voxel_downsample(_bunny()[1], 0.01)[:n]
    T = pp.se3(torch.tensor([0.005, -0.003, 0.002, 0.02, -0.01, 0.03], dtype=torch.float64, device="cpu")).Exp()
    g = torch.Generator().manual_seed(0)
    src = T.Inv().Act(tgt) + 0.0005 * torch.randn(len(tgt), 3, dtype=torch.float64, generator=g, device="cpu")
    return src.to(device), tgt.to(device)


@pytest.mark.parametrize("method, kernel", [("point_to_point", "none"), ("point_to_plane", "none"), ("gicp", "none"),
                                            ("gicp", "cauchy")])
def test_alignments_are_differentiable_against_central_differences(method, kernel, device):
    """d T_target_source / d(source and target points) on a bunny subset, against re-aligning at
    +-h from the answer (float64): relative error < 1e-5.  GICP's answer is a fixed point (its
    covariances turn with the pose), differentiated as one, in closed form: with a kernel its
    weights' slope enters both derivatives."""
    src, tgt = _grad_pair(device)
    cfg = ICPConfig(method=method, max_correspondence_distance=0.02, rotation_tolerance=1e-12,
                    translation_tolerance=1e-12, max_iterations=100, kernel=RobustKernel(kernel, 0.5))
    s, t = src.clone().requires_grad_(), tgt.clone().requires_grad_()
    r = align(s, t, config=cfg)
    assert bool(r.converged) and r.T_target_source.requires_grad
    w = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1), device="cpu").to(device)
    (r.T_target_source.tensor() * w).sum().backward()
    start = r.T_target_source.tensor().detach()

    def loss(a, b):
        with torch.no_grad():
            return float((align(a, b, init=start, config=cfg).T_target_source.tensor() * w).sum())

    h = 1e-6
    for which, base, grad in (("source", src, s.grad), ("target", tgt, t.grad)):
        for i, c in [(0, 0), (120, 2), (299, 1)]:
            d = torch.zeros_like(base)
            d[i, c] = h
            args = (src + d, tgt) if which == "source" else (src, tgt + d)
            args_m = (src - d, tgt) if which == "source" else (src, tgt - d)
            fd = (loss(*args) - loss(*args_m)) / (2 * h)
            assert abs(float(grad[i, c]) - fd) <= 1e-5 * max(abs(fd), 1e-3), (which, i, c, float(grad[i, c]), fd)


def test_gradcheck_through_gicp():
    """torch.autograd.gradcheck on a small GICP alignment: the closed-form implicit derivative
    against gradcheck's own re-alignments, for the source and the target points."""
    src, tgt = _grad_pair("cpu", 40)
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.05, rotation_tolerance=1e-13,
                    translation_tolerance=1e-13, max_iterations=100, kernel=RobustKernel("cauchy", 0.5))
    start = align(src, tgt, config=cfg).T_target_source.tensor()
    assert torch.autograd.gradcheck(lambda s, t: align(s, t, init=start, config=cfg).T_target_source.tensor(),
                                    (src.clone().requires_grad_(), tgt.clone().requires_grad_()), eps=1e-6, atol=1e-6)


def test_a_batch_with_voxels_and_a_kernel_backpropagates(device):
    """The reported failure: align() with a source that requires grad gave a result whose
    backward() raised (an in-place modification); now each pair of a batch passes gradients,
    through the voxel centroids and a robust kernel."""
    src, tgt = _grad_pair(device, 350)
    s = torch.stack((src, src + 0.001)).requires_grad_()
    r = align(s, torch.stack((tgt, tgt)), config=ICPConfig(voxel_size=0.012, kernel=RobustKernel("huber", 0.01)))
    r.T_target_source.tensor()[:, :3].sum().backward()
    assert s.grad.shape == s.shape and torch.isfinite(s.grad).all() and float(s.grad.abs().sum()) > 0
    assert not align(src, tgt).T_target_source.requires_grad  # no grad asked, none paid for


def test_a_pair_that_did_not_converge_passes_zero_gradients(device):
    """No solution, no derivative: the documented zero, not NaN and not a backward with no graph."""
    src, tgt = _grad_pair(device)
    s = src.clone().requires_grad_()
    r = align(s, tgt, config=ICPConfig(method="point_to_plane", max_iterations=1))
    assert not bool(r.converged)
    r.T_target_source.tensor().sum().backward()
    assert s.grad is not None and float(s.grad.abs().max()) == 0.0


def test_registration_results_speak_the_engines_vocabulary(device):
    """cost, reason and history per pair: the cost falls, the last recorded entry is the cost,
    and each way of stopping says which it was."""
    src, tgt, _ = _bunny(device)
    far = src + torch.tensor([5.0, 0.0, 0.0], dtype=src.dtype, device=device)
    r = align([src, src, far], [tgt, tgt, tgt], config=ICPConfig(method="gicp", voxel_size=0.003))
    assert r.reason[0] == "step_tolerance" and r.reason[2] == "no_correspondences" and not bool(r.converged[2])
    h = r.history.cost[:, 0]
    h = h[torch.isfinite(h)]
    assert len(h) == int(r.iterations[0]) and float(h[-1]) == float(r.cost[0]) and float(h[-1]) < float(h[0]) / 10
    assert bool(r.history.accepted[: len(h), 0].all()) and not bool(r.history.accepted[len(h):, 0].any())
    once = align(src, tgt, config=ICPConfig(method="point_to_plane", voxel_size=0.003, max_iterations=1))
    assert once.reason == ("max_iterations",) and not bool(once.converged)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_points_in_a_half_precision_are_registered_in_float32_and_answered_in_theirs(dtype, device):
    """torch solves nothing in a half precision: the points are widened to float32 (the very
    answer of a float32 call on the same rounded points), and the pose and statistics come back
    in their dtype; a target prepared in it is prepared again in float32, and gradients reach the
    half points (the float32 gradient, rounded once)."""
    (src,), (tgt,) = _distinct_pairs(1, 5, lambda k: 800, lambda k: 800, 0.05)
    s, t = src.to(dtype).to(device), tgt.to(dtype).to(device)
    # the same numbers on the CPU; on a GPU, whose sums may round differently, to one rounding
    one = 0.0 if torch.device(device).type == "cpu" else torch.finfo(dtype).eps
    for method in ("point_to_point", "point_to_plane", "gicp"):
        cfg = ICPConfig(method=method, max_correspondence_distance=0.3)
        r, ref = align(s, t, config=cfg), align(s.float(), t.float(), config=cfg)
        assert r.T_target_source.dtype == r.rmse.dtype == r.fitness.dtype == r.cost.dtype == r.history.cost.dtype == dtype
        assert bool(r.converged) and torch.equal(r.iterations.cpu(), ref.iterations.cpu())
        assert max_err(r.T_target_source.tensor().float(), ref.T_target_source.tensor().to(dtype).float()) <= one
        assert max_err(align(s, prepare(t), config=cfg).T_target_source.tensor().float(),
                       r.T_target_source.tensor().float()) <= one
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.3)
    s_half, s32 = s.clone().requires_grad_(), s.float().requires_grad_()
    align(s_half, t, config=cfg).T_target_source.tensor().float().sum().backward()
    align(s32, t, config=cfg).T_target_source.tensor().sum().backward()
    assert s_half.grad.dtype == dtype and torch.isfinite(s_half.grad).all()
    assert max_err(s_half.grad.float(), s32.grad.to(dtype).float()) <= one * float(s32.grad.abs().max())
    assert float(s_half.grad.abs().max()) > 0



def test_write_ply_takes_what_it_writes_first_and_round_trips(tmp_path):
    """``write_ply(points, path)``, as ``write_g2o(graph, path)``: points in any dtype, with
    gradients too, come back as they were: float64 as doubles (it had written float32 for
    every dtype, so float64 map coordinates of 1e5 m came back a centimetre off), lower
    precisions as float32.  Open3D reads the same numbers; the old order is refused with the call."""
    from robojac.icp import write_ply

    g = torch.Generator().manual_seed(2)
    P = _rand(50, 3, g=g) + torch.tensor([4.5e5, 5.1e6, 30.0], dtype=torch.float64)  # UTM-like coordinates
    for pts in (P, P.numpy(), P.tolist(), P.float().requires_grad_(), P.bfloat16()):
        back = read_point_cloud(write_ply(pts, tmp_path / "p.ply"))
        exact = torch.as_tensor(pts.detach().double() if hasattr(pts, "detach") else np.asarray(pts, dtype=np.float64))
        assert max_err(back, exact) == 0
    o3d = pytest.importorskip("open3d")
    write_ply(P, tmp_path / "p.ply", colors=torch.rand(50, 3, generator=g))
    assert np.array_equal(np.asarray(o3d.io.read_point_cloud(str(tmp_path / "p.ply")).points), P.numpy())
    with pytest.raises(TypeError, match=r"points: expected \(N, 3\) coordinates, got a path; the call is write_ply\(points, path\)"):
        write_ply(tmp_path / "q.ply", P)


@pytest.mark.parametrize("method", ["point_to_point", "point_to_plane", "gicp"])
def test_searches_skipped_by_distance_bounds_change_no_answer(method, monkeypatch):
    """A point whose lower bound on its distance (its last searched distance less how far it has
    moved since) exceeds the limit has no correspondence and is not searched again.  On scans
    that overlap in part (half their points beyond the limit) the KD-tree path then searches
    subsets, and every answer, iteration count and inlier count is the one without the bounds,
    bit for bit: a lone pair, stacked targets, restarts."""
    import robojac.icp._align as icp_align

    clouds = [voxel_downsample(read_point_cloud(data_path(f"pointclouds/bunny/{n}.ply")), 0.004)
              for n in ("bun000", "bun045", "bun090")]
    T = torch.linalg.inv(read_stanford_conf(data_path("pointclouds/bunny/bun.conf"))["bun000.ply"])
    start = lie.matrix_to_SE3(T @ read_stanford_conf(data_path("pointclouds/bunny/bun.conf"))["bun045.ply"])
    cfg = ICPConfig(method=method, max_correspondence_distance=0.006)
    searched = []
    nearest = icp_align._TargetSet.nearest

    def counting(self, q, mask, rows=None):
        searched.append(1.0 if mask is None else float(mask.float().mean()))
        return nearest(self, q, mask, rows)

    monkeypatch.setattr(icp_align._TargetSet, "nearest", counting)

    def runs():
        return [align(clouds[1], clouds[0], init=start, config=cfg),
                align([clouds[1], clouds[2]], [clouds[0], clouds[1]], config=cfg),
                align(clouds[1], clouds[0], init=start, config=ICPConfig(method=method, max_correspondence_distance=0.006,
                                                                          restarts=2, restart_angle=0.05))]

    bounded = runs()
    assert min(searched) < 0.8  # the bounds did skip searches
    monkeypatch.setattr(icp_align, "_FAR_WORTH", -1.0)  # never worth it: every point searched every step
    for a, b in zip(bounded, runs()):
        assert torch.equal(a.T_target_source.tensor(), b.T_target_source.tensor())
        assert torch.equal(a.iterations, b.iterations) and torch.equal(a.num_inliers, b.num_inliers)


def test_pcd_fields_of_several_values_and_other_types(tmp_path):
    """x, y, z found behind a field of COUNT 3 (float64) and before a uint16 one, in all three
    encodings (binary_compressed holds each field's values for all points in turn)."""
    rng = np.random.default_rng(0)
    n = 7
    P, H, L = rng.normal(size=(n, 3)).astype("<f4"), rng.normal(size=(n, 3)), np.arange(n, dtype="<u2")

    def head(kind):
        return (f"FIELDS hist x y z label\nSIZE 8 4 4 4 2\nTYPE F F F F U\nCOUNT 3 1 1 1 1\nWIDTH {n}\nHEIGHT 1\n"
                f"POINTS {n}\nDATA {kind}\n").encode()

    rows = np.empty(n, dtype=[("h", "<f8", (3,)), ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("l", "<u2")])
    rows["h"], rows["x"], rows["y"], rows["z"], rows["l"] = H, P[:, 0], P[:, 1], P[:, 2], L
    plain = H.tobytes() + P[:, 0].tobytes() + P[:, 1].tobytes() + P[:, 2].tobytes() + L.tobytes()
    literal = b"".join(bytes([min(31, len(plain) - k - 1)]) + plain[k : k + 32] for k in range(0, len(plain), 32))
    text = "".join(" ".join(map(repr, [*h, *p, int(c)])) + "\n" for h, p, c in zip(H.tolist(), P.tolist(), L))
    files = {"binary": head("binary") + rows.tobytes(), "ascii": head("ascii") + text.encode(),
             "binary_compressed": head("binary_compressed") + np.array([len(literal), len(plain)], "<u4").tobytes()
             + literal}
    for kind, raw in files.items():
        path = tmp_path / f"{kind}.pcd"
        path.write_bytes(raw)
        assert np.array_equal(read_point_cloud(path).numpy(), P.astype(np.float64)), kind


def _lidar_pair(device, voxel=1.0):
    files = (data_path(f"pointclouds/lidar_small_gicp/{n}.ply.gz") for n in ("source", "target"))
    return tuple(voxel_downsample(read_point_cloud(f).to(device), voxel) for f in files)


FAR = (4.0e6, -2.5e6, 312.5)  # UTM-like map coordinates (metres)


def test_clouds_that_their_dtype_rounds_coarsely_say_so_once_a_call(caplog, device):
    """float32 keeps 7 digits: 4,000 km out a coordinate is held to 0.25 m, which moves the LiDAR
    pair's answer by 0.1 m (docs/icp.md) before any solve sees it.  ``align`` says so once a call,
    naming the worst cloud, the rounding and the remedy; float64 there, float32 near the origin,
    or a scan in its sensor's frame, say nothing."""
    S, T = _lidar_pair(device)
    far = torch.tensor(FAR, dtype=torch.float64, device=device)
    quick = ICPConfig(voxel_size=1.0, max_iterations=2)
    with caplog.at_level("WARNING"):
        align((S + far).float(), T.float(), config=quick)  # the source far, the target near: one named
        assert caplog.text.count("WARNING") == 1
        assert ("source: coordinates up to 4e+06 from the origin are held in torch.float32 to 0.25, "
                "3.4e-03 of the cloud's extent (72.8") in caplog.text
        assert "Use float64 (read_point_cloud's default)" in caplog.text
        caplog.clear()
        align([S.float(), S.float()], [T.float(), (T + far).float()], config=quick)  # a batch: the one named
        assert caplog.text.count("WARNING") == 1 and "target[1]: coordinates up to 4e+06" in caplog.text
        caplog.clear()
        align(S + far, T + far, config=quick)  # float64: held to 5e-10
        align(S.float(), T.float(), config=quick)  # a scan in its sensor's frame
        align((S + 1e4).float(), (T + 1e4).float(), config=quick)  # 10 km out: 1 mm of a 73 m scan
    assert caplog.text == ""


@pytest.mark.open3d
def test_global_and_multiway_registration_say_it_once_too(caplog, device):
    """``global_align`` (which refines with ``align``) and ``multiway_registration`` (which works
    about scan 0's centre, where the rounding no longer shows) name the coarse cloud once."""
    from robojac.icp import global_align, multiway_registration

    S, T = _lidar_pair(device)
    far = torch.tensor(FAR, dtype=torch.float64, device=device)
    with caplog.at_level("WARNING"):
        global_align((S + far).float()[::4], (T + far).float()[::4])
        assert caplog.text.count("WARNING") == 1 and "source: coordinates up to 4e+06" in caplog.text
        caplog.clear()
        multiway_registration([(S + far).float(), (T + far).float()])
        assert caplog.text.count("WARNING") == 1 and "clouds[0]: coordinates up to 4e+06" in caplog.text
