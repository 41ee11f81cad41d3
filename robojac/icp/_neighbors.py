"""Nearest-neighbour search: Open3D's KD-tree on the CPU, chunked brute force on a GPU.

The GPU path never builds an ``N x M x 3`` tensor (pypose's ICP does): it computes squared
distances ``|q|^2 - 2 q.p + |p|^2`` for a chunk of queries at a time with one matmul and keeps
only the running minimum.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["NearestNeighbors"]


class NearestNeighbors:
    """An index over ``points (M, 3)`` answering ``k``-nearest queries; keep it, reuse it (the
    KD-tree is built on the first query).

    ``backend="auto"`` uses Open3D's KD-tree for CPU tensors (about twice as fast as scipy's
    cKDTree here) and chunked brute force for GPU tensors; ``"kdtree"``/``"brute"`` force one.
    """

    def __init__(self, points: Tensor, *, backend: str = "auto", chunk: int = 4096):
        if backend not in ("auto", "kdtree", "brute"):
            raise ValueError(f"backend: expected 'auto', 'kdtree' or 'brute', got {backend!r}")
        self.points = points
        self.backend = ("kdtree" if points.device.type == "cpu" else "brute") if backend == "auto" else backend
        self.chunk = chunk
        self._tree = None  # built on the first query: a batch answered by a stacked index never needs it
        if self.backend == "brute":
            self._sq = (points * points).sum(-1)

    def _kdtree(self):
        if self._tree is None:
            import open3d as o3d

            tree = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(self.points.detach().cpu().double().numpy()))
            if not tree.knn_index():
                raise RuntimeError("Open3D could not build a KD-tree index for these points")
            self._tree = tree
        return self._tree

    def query(self, queries: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """``(squared distances, indices)`` of the ``k`` nearest points, each ``(Q,)`` or ``(Q, k)``."""
        if self.backend == "kdtree":
            import open3d as o3d

            tree = self._kdtree()
            q = o3d.core.Tensor(np.ascontiguousarray(queries.detach().cpu().double().numpy()))
            i, d = tree.knn_search(q, k)
            d = torch.from_numpy(d.numpy()).to(device=queries.device, dtype=queries.dtype)  # squared
            i = torch.from_numpy(i.numpy().astype(np.int64)).to(queries.device)
            return (d[:, 0], i[:, 0]) if k == 1 else (d, i)
        ds, idx = [], []
        P = self.points.to(queries.dtype)
        for s in range(0, queries.shape[0], self.chunk):
            q = queries[s : s + self.chunk]
            d2 = (q * q).sum(-1, keepdim=True) - 2 * q @ P.T + self._sq.to(q.dtype)
            vals, ind = torch.topk(d2, k, dim=1, largest=False)
            ds.append(vals.clamp_min(0))
            idx.append(ind)
        d, i = torch.cat(ds), torch.cat(idx)
        return (d[:, 0], i[:, 0]) if k == 1 else (d, i)
