"""The voxel Gaussians behind LiDAR odometry, against per-voxel statistics computed in numpy
from the points themselves (group by the floor of the coordinates, then the mean, the biased
covariance and the smallest eigenvector)."""

import numpy as np
import pytest
import torch

from robojac.icp import ICPConfig, PreparedCloud, align, prepare
from robojac.icp._voxelmap import GaussianVoxelMap, nested_voxels


def groups(points: np.ndarray, voxel: float) -> dict[tuple, np.ndarray]:
    """The points of each occupied voxel of edge ``voxel`` (grid at the origin)."""
    cells = np.floor(points / voxel).astype(np.int64)
    _, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return {tuple(cells[np.flatnonzero(inv == g)[0]]): points[inv == g] for g in range(inv.max() + 1)}


def gaussian(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = pts.mean(0)
    d = pts - mu
    return mu, d.T @ d / len(pts)


def planes(n: int, seed: int, device) -> torch.Tensor:
    """Points on three noisy planes (a floor and two walls) and a cloud in between, far from
    the origin (where float digits matter)."""
    g = np.random.default_rng(seed)
    floor = np.c_[g.uniform(0, 6, n), g.uniform(0, 6, n), 0.01 * g.standard_normal(n)]
    wall = np.c_[g.uniform(0, 6, n), 0.01 * g.standard_normal(n) + 6, g.uniform(0, 3, n)]
    side = np.c_[0.01 * g.standard_normal(n), g.uniform(0, 6, n), g.uniform(0, 3, n)]
    blob = g.uniform(1, 5, (n // 4, 3))
    return torch.tensor(np.concatenate((floor, wall, side, blob)) + [1000.0, -2000.0, 30.0], device=device)


def test_nested_voxels_are_the_downsampled_frame_and_its_gaussians(device):
    P = planes(3000, 0, device)
    fine = 0.25
    frame, g = nested_voxels(P, fine)
    pts = P.cpu().numpy()
    want = np.array(sorted(v.mean(0).tolist() for v in groups(pts, fine).values()))
    got = np.array(sorted(frame.cpu().numpy().tolist()))
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-9
    coarse = groups(frame.cpu().numpy(), 3 * fine)
    assert len(coarse) == len(g.keys) and torch.equal(g.keys, torch.sort(g.keys).values)
    means, counts, cov = g.means.cpu().numpy(), g.counts.cpu().numpy(), g.covariances.permute(2, 0, 1).cpu().numpy()
    order = np.lexsort(np.floor(means / (3 * fine)).T[::-1])  # the voxels in (i, j, k) order, as the keys
    assert np.array_equal(order, np.arange(len(order)))
    for v, (cell, members) in enumerate(sorted(coarse.items())):
        mu, C = gaussian(members)
        assert counts[v] == len(members)
        assert np.abs(means[v] - mu).max() < 1e-9 and np.abs(cov[v] - C).max() < 1e-9
        # every small voxel's centroid lies in its large voxel: the grids nest
        assert (np.floor(members / (3 * fine)) == cell).all()


def test_voxel_map_merges_scans_into_the_gaussians_of_all_their_points(device):
    P = planes(2000, 1, device)
    first, second = P[::2], P[1::2]
    vmap = GaussianVoxelMap(0.5, 10**9, P)
    centre = P.mean(0)
    vmap.add(first, centre, 1e6)
    vmap.add(second, centre, 1e6)
    pts = P.cpu().numpy()
    want = groups(pts, 0.5)
    assert len(want) == len(vmap.keys)
    means, counts = vmap.means.cpu().numpy(), vmap.counts.cpu().numpy()
    cov, nrm = vmap.covariances().permute(2, 0, 1).cpu().numpy(), vmap.normals.T.cpu().numpy()
    for v, (_, members) in enumerate(sorted(want.items())):
        mu, C = gaussian(members)
        assert counts[v] == len(members)
        assert np.abs(means[v] - mu).max() < 1e-9 and np.abs(cov[v] - C).max() < 1e-9
        if len(members) >= 3:
            w, V = np.linalg.eigh(C)
            if w[1] > 10 * w[0]:  # a well-defined smallest direction
                assert abs(nrm[v] @ V[:, 0]) > 1 - 1e-6


def test_voxel_map_capacity_range_and_index(device):
    P = planes(2000, 2, device)
    vmap = GaussianVoxelMap(0.5, 4, P)
    centre = P.mean(0)
    vmap.add(P[:2000], centre, 1e6)
    before = dict(zip(vmap.keys.tolist(), vmap.counts.tolist()))
    vmap.add(P[2000:], centre, 1e6)
    after = dict(zip(vmap.keys.tolist(), vmap.counts.tolist()))
    # a voxel full before a scan takes nothing from it; one not yet full takes all it is given
    assert all(after[k] == c for k, c in before.items() if c >= 4)
    assert any(after[k] > c for k, c in before.items() if c < 4)
    # the index: a query's match is the mean of the voxel it falls in, an infinite distance elsewhere
    index, ok = vmap.index()
    assert bool((vmap.counts[ok] >= 3).all()) and len(index.keys) == int(ok.sum())
    gen = torch.Generator(device="cpu").manual_seed(0)
    q = (P[torch.randint(0, len(P), (500,), generator=gen, device="cpu").to(device)]
         + 0.6 * torch.randn(500, 3, generator=gen, device="cpu", dtype=torch.float64).to(device))
    d2, j = index.query(q)
    cells = {tuple(c): i for i, c in enumerate(np.floor(index.points.cpu().numpy() / 0.5).astype(np.int64))}
    qc = np.floor(q.cpu().numpy() / 0.5).astype(np.int64)
    hits = [cells.get(tuple(c)) for c in qc]
    d2, j = d2.cpu().numpy(), j.cpu().numpy()
    assert any(h is None for h in hits) and any(h is not None for h in hits)
    for a, h in enumerate(hits):
        if h is None:
            assert d2[a] == np.inf
        else:
            assert j[a] == h and abs(d2[a] - ((q[a] - index.points[h]) ** 2).sum().item()) < 1e-9
    d2c, jc = index.query(q - index.center, centered=True)
    assert torch.equal(d2c == np.inf, torch.tensor(d2 == np.inf, device=device))
    far, _ = index.query(torch.tensor([[1e9, 0.0, 0.0]], dtype=torch.float64, device=device))
    assert float(far) == np.inf  # beyond the numbering: clamped onto voxels no map holds
    empty = GaussianVoxelMap(0.5, 4, P)
    empty.add(P[:2], centre, 1e6)  # two points: no voxel with three
    d2e, _ = empty.index()[0].query(q)
    assert bool(torch.isinf(d2e).all())
    with pytest.raises(ValueError, match="k: a voxel index answers k=1"):
        index.query(q, k=2)
    # the map forgets what falls out of range
    vmap.add(P[:10], P[0], 2.0)
    centres = (torch.floor(vmap.means / 0.5) + 0.5) * 0.5
    assert float((centres - P[0]).norm(dim=-1).max()) <= 2.0 and len(vmap.keys) < len(after)
    with pytest.raises(ValueError, match="points: expected within 2\\^20 voxels of 0.5 m of where the map began"):
        vmap.add(P[:10] + 1e7, P[0], 2.0)
    with pytest.raises(ValueError, match="points: expected finite coordinates"):
        vmap.add(P[:10] * float("nan"), P[0], 2.0)
    with pytest.raises(ValueError, match="points: expected within 2\\^18 voxels of 0.75 m"):
        nested_voxels(torch.cat((P[:10], P[:10] + 1e6)), 0.25)


@pytest.mark.open3d
def test_align_uses_a_prepared_sources_normals(device):
    """A source given as a PreparedCloud with normals: GICP uses them, and no others.  With the
    normals k-NN would give, the answer is the k-NN path's; with other normals, another answer."""
    P = planes(1500, 3, device)
    target = prepare(P)
    rot = torch.tensor([0.02, 0.05, 0.3, 0.0, 0.02, 0.03], dtype=torch.float64, device=device)
    from robojac import lie

    Q = planes(500, 4, device)  # other samples of the same surfaces: the weights shape the answer
    c = Q.mean(0)
    src = lie.se3_act(lie.se3_exp(rot).expand(len(Q), 7), Q - c) + c  # moved about its centre
    cfg = ICPConfig(method="gicp", max_correspondence_distance=0.5)
    plain = align(src, target, config=cfg)
    own = prepare(src)
    given = PreparedCloud(src, own.index, _normals=own.normals_soa())
    same = align(given, target, config=cfg)
    assert plain.converged and same.converged
    assert torch.allclose(same.T_target_source.tensor(), plain.T_target_source.tensor(), atol=1e-12)
    wrong = PreparedCloud(src, own.index, _normals=torch.roll(own.normals_soa(), 1, dims=0))
    other = align(wrong, target, config=cfg)
    assert float((other.T_target_source.tensor() - plain.T_target_source.tensor()).abs().max()) > 1e-6
