"""A map of Gaussians, one per voxel, looked up by hashing: LiDAR odometry's local map.

Each occupied voxel keeps the count, sum and sum of outer products of the points it took
(about the voxel's centre, so that float32 keeps its digits far from the origin); its mean and
covariance follow, and from the covariance a normal.  Adding a scan merges its statistics in one
sort; nothing is rebuilt.  A query point's correspondence is the Gaussian of the voxel it falls
in (the direct lookup of voxelized GICP, Koide et al. 2021): one binary search in the sorted
voxel keys, instead of a KD-tree over the map's points that would be rebuilt at every scan.

Voxels are numbered about an anchor voxel (the first points' centroid), 21 bits per axis:
about a million voxels each way, 500 km at half a metre.  (:func:`~robojac.icp._cloud.voxel_keys`
packs about one cloud's own extent, so its keys do not compare from one scan to the next.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _soa as soa

__all__ = ["VoxelGaussians", "GaussianVoxelMap", "VoxelIndex", "nested_voxels"]

_BITS = 21
_HALF = 1 << (_BITS - 1)  # voxel indices run over [-_HALF, _HALF) about the anchor
_MASK = (1 << _BITS) - 1
_HALF19, _MASK19 = 1 << 18, (1 << 19) - 1  # nested_voxels' keys: 19 bits per axis, times 27 places


def _pack(ijk: Tensor) -> Tensor:
    """``(N,)`` int64 keys of voxel indices ``(N, 3)`` in ``[-_HALF, _HALF)``, ordered as ``(i, j, k)``."""
    u = ijk + _HALF
    return (u[:, 0] << (2 * _BITS)) | (u[:, 1] << _BITS) | u[:, 2]


def _unpack(keys: Tensor) -> Tensor:
    return torch.stack(((keys >> (2 * _BITS)) & _MASK, (keys >> _BITS) & _MASK, keys & _MASK), -1) - _HALF


def _moments(m: Tensor) -> tuple[Tensor, Tensor]:
    """Means ``(V, 3)`` and covariances ``(3, 3, V)`` from moment sums ``m (10, V)``: the count, the
    sums of the coordinates and of their products (the rows of :func:`~robojac.icp._soa.monomials`)."""
    mu = m[1:4] / m[0]
    cov6 = m[4:] / m[0] - soa.monomials(mu)[4:]
    return mu.T, soa._rows(cov6, soa.FULL9).unflatten(0, (3, 3))


class VoxelGaussians:
    """Points grouped by voxel: ``keys (V,)`` sorted, ``counts (V,)``, ``means (V, 3)`` and
    ``covariances (3, 3, V)`` (structure of arrays, the points' scatter about their mean)."""

    def __init__(self, keys: Tensor, counts: Tensor, means: Tensor, covariances: Tensor):
        self.keys, self.counts, self.means, self.covariances = keys, counts, means, covariances

    def normals(self) -> Tensor:
        """``(3, V)``: each voxel's smallest-variance direction (sign arbitrary)."""
        return soa.normals(self.covariances)


def nested_voxels(points: Tensor, fine: float) -> tuple[Tensor, VoxelGaussians]:
    """The centroids ``(F, 3)`` of ``points`` in voxels of edge ``fine`` (what
    :func:`~robojac.icp.voxel_downsample` gives), and those centroids grouped as Gaussians in the
    voxels three times as large, which nest the small ones exactly.

    One sort does both: each point is keyed by its large voxel, then by the small voxel's place
    in it (27 places), so the small voxels come out ordered by the large ones, which are then
    runs.  A downsampling and a grouping took two sorts, ~1.4 ms more per KITTI scan."""
    f = torch.floor(points.T.contiguous() / fine)  # (3, N): rows, fast to broadcast; exact integers
    big = torch.floor(f / 3)  # exact too
    anchor = big[:, :1].clone()
    b = (big - anchor).long() + _HALF19  # the large voxel about the first point's
    lo, hi = torch.aminmax(b)
    if not (int(lo) >= 0 and int(hi) < 2 * _HALF19):
        raise ValueError(f"points: expected within 2^18 voxels of {3 * fine} m of the first point along each axis, "
                         "got a wider spread")
    sub = (f - 3 * big).long()  # the small voxel's place in its large one, {0, 1, 2} per axis
    key = ((b[0] << 38) | (b[1] << 19) | b[2]) * 27 + (sub[0] * 9 + sub[1] * 3 + sub[2])
    cells, inv = torch.unique(key, return_inverse=True)
    F = cells.shape[0]
    counts = torch.bincount(inv, minlength=F).to(points.dtype)
    frame = points.new_zeros(F, 3).index_add_(0, inv, points) / counts[:, None]
    coarse, group = torch.unique_consecutive(torch.div(cells, 27, rounding_mode="floor"), return_inverse=True)
    c = torch.stack(((coarse >> 38) & _MASK19, (coarse >> 19) & _MASK19, coarse & _MASK19)) - _HALF19
    centres = (c + anchor + 0.5) * (3 * fine)  # (3, V)
    off = frame.T.contiguous() - centres[:, group]  # each centroid about its large voxel's centre
    m = points.new_zeros(10, coarse.shape[0]).index_add_(1, group, soa.monomials(off))
    mu, cov = _moments(m)
    centres = centres.T
    return frame, VoxelGaussians(coarse, m[0], centres + mu, cov)


class VoxelIndex:
    """A correspondence index over the voxels of a :class:`GaussianVoxelMap`, with the interface
    of :class:`~robojac.icp.NearestNeighbors` for ``k = 1``: a query's match is the mean of the
    voxel it falls in, or none (an infinite distance) where that voxel is empty."""

    def __init__(self, keys: Tensor, means: Tensor, voxel: float, anchor: Tensor):
        self.keys, self.points, self.voxel, self.anchor = keys, means, voxel, anchor
        self.center = means.mean(0)

    def query(self, queries: Tensor, k: int = 1, *, centered: bool = False) -> tuple[Tensor, Tensor]:
        """``(squared distances, indices)`` ``(Q,)`` of each query's voxel mean; where its voxel holds
        no Gaussian, an infinite distance (and an index of no meaning).  ``centered``: the queries
        are about :attr:`center`."""
        if k != 1:
            raise ValueError(f"k: a voxel index answers k=1 (the query's own voxel), got {k}")
        q = queries + self.center if centered else queries
        if self.keys.shape[0] == 0:  # an empty map answers nothing
            return torch.full_like(q[:, 0], float("inf")), torch.zeros_like(q[:, 0], dtype=torch.long)
        # a query beyond the map's range lands on the outermost voxels, which no map holds
        ijk = (torch.floor(q / self.voxel) - self.anchor).clamp_(-_HALF, _HALF - 1).long()
        key = _pack(ijk)
        j = torch.searchsorted(self.keys, key).clamp_max_(self.keys.shape[0] - 1)
        d = q - self.points[j]
        return (d * d).sum(-1).masked_fill_(self.keys[j] != key, float("inf")), j


class GaussianVoxelMap:
    """A local map of voxel Gaussians in the world frame.

    ``voxel``: the voxel's edge; ``capacity``: a voxel stops taking points once it holds this
    many (the first ones seen stay; moving things do not smear it further); ``min_points``: a
    voxel needs this many points before it answers queries (three make a plane)."""

    def __init__(self, voxel: float, capacity: int, like: Tensor, min_points: int = 3):
        self.voxel, self.capacity, self.min_points = voxel, capacity, min_points
        self.anchor: Tensor | None = None  # the voxel the numbering starts from (float: exact integers)
        self.keys = torch.zeros(0, dtype=torch.long, device=like.device)
        self._m = like.new_zeros(10, 0)  # moment sums about each voxel's centre (see _moments)
        self.means, self.normals = like.new_zeros(0, 3), like.new_zeros(3, 0)

    @property
    def counts(self) -> Tensor:
        """``(V,)``: the points each voxel took."""
        return self._m[0]

    def add(self, points: Tensor, center: Tensor, max_range: float) -> None:
        """Merge ``points (N, 3)`` (world frame) into the map, then drop the voxels farther than
        ``max_range`` from ``center``."""
        f = torch.floor(points / self.voxel)
        if self.anchor is None:
            self.anchor = torch.floor(points.mean(0) / self.voxel)
        f = f - self.anchor
        lo, hi = torch.aminmax(f)
        if not bool(torch.isfinite(f).all()):
            raise ValueError("points: expected finite coordinates, got NaN or infinite ones")
        if not (float(lo) > -_HALF and float(hi) < _HALF - 1):  # the outermost voxels stay empty (see query)
            raise ValueError(f"points: expected within 2^{_BITS - 1} voxels of {self.voxel} m of where the map "
                             "began, got points beyond")
        old = self.keys.shape[0]
        keys, inv = torch.unique(torch.cat((self.keys, _pack(f.long()))), return_inverse=True)
        was, came = inv[:old], inv[old:]  # where the map's voxels and the new points land
        V = keys.shape[0]
        m = self._m.new_zeros(10, V).index_copy_(1, was, self._m)
        take = (m[0, came] < self.capacity).nonzero().squeeze(1)  # voxels full before this scan take nothing
        new = came[take]
        off = (points[take] - (f[take] + self.anchor + 0.5) * self.voxel).T  # about each voxel's centre
        m.index_add_(1, new, soa.monomials(off))
        centres = (_unpack(keys).T + self.anchor[:, None] + 0.5) * self.voxel  # (3, V)
        # the Gaussians of the voxels that took no point stay as they were; the others are redone
        means = self.means.new_empty(V, 3).index_copy_(0, was, self.means)
        nrm = self.normals.new_empty(3, V).index_copy_(1, was, self.normals)
        redo = torch.zeros(V, dtype=torch.bool, device=keys.device)
        redo[new] = True
        redo = redo.nonzero().squeeze(1)
        mu, c = _moments(m[:, redo])
        means.index_copy_(0, redo, centres[:, redo].T + mu)
        nrm.index_copy_(1, redo, soa.normals(c))
        near = ((centres - center[:, None]) ** 2).sum(0) <= max_range * max_range
        if not bool(near.all()):
            near = near.nonzero().squeeze(1)
            keys, m, means, nrm = keys[near], m[:, near], means[near], nrm[:, near]
        self.keys, self._m, self.means, self.normals = keys, m, means, nrm

    def covariances(self) -> Tensor:
        """``(3, 3, V)``: each voxel's scatter about its mean."""
        return _moments(self._m)[1]

    def index(self) -> tuple[VoxelIndex, Tensor]:
        """The index over the voxels with ``min_points`` or more, and which voxels those are ``(V,)``."""
        ok = self.counts >= self.min_points
        return VoxelIndex(self.keys[ok], self.means[ok], self.voxel, self.anchor), ok
