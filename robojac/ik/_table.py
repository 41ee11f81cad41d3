"""Starts near a target: configurations spread over the joint space, looked up by where they put a frame.

A random start is on average far from its target, and the damped least-squares steps spend
most of their work closing that distance.  A table of ``M`` configurations and the poses of the
frame they produce, built once per chain and frame, gives each target starts that already put
the frame near it: the ``k`` table entries nearest in the solver's own weighted pose error.

The distance is ``|p* - p|^2 + c^2 |R* - R|_F^2`` with ``c = (w_o / w_p) / sqrt 2``: for small
rotations ``|R* - R|_F^2 = 4 (1 - cos angle) ~ 2 angle^2``, so this is the solver's weighted
squared error, and it is a Euclidean distance between the 12-vectors ``[p, c R]``.  A few
queries (a lone target) scan the table in one matrix-vector product; many queries (a batch)
search a KD-tree over those vectors (Open3D), which is built once per weight ratio.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..kinematics import Chain
from ._path import SerialPath

__all__ = ["StartTable"]

_TABLE_SEED = 0x5EED  # the table is the same on every run: solves stay reproducible
_SCAN_MAX = 64  # queries up to this many scan the table; more search the KD-tree
_SCAN_CHUNK = 1024  # a scan of more queries (no Open3D) runs in chunks of this many rows (4096 entries: 32 MB each)


class StartTable:
    """``size`` uniform configurations inside ``chain``'s limits, the frame poses of ``path`` and
    its Jacobians there (a start's first step needs no evaluation)."""

    def __init__(self, chain: Chain, path: SerialPath, size: int):
        gen = torch.Generator().manual_seed(_TABLE_SEED)
        self.q = chain.random_configuration(size, generator=gen, dtype=torch.float64, device="cpu").numpy()
        R, p, self.Jt = path.evaluate(self.q)
        self.p, self.R = np.ascontiguousarray(p), R.reshape(size, 9)
        self.poses = np.ascontiguousarray(np.concatenate((self.p, self.R), 1).T)  # (12, M): [p; R] per column
        self.p_sq = (self.p * self.p).sum(-1)
        self._trees: dict[float, object] = {}  # rotation scale -> Open3D NearestNeighborSearch

    def nearest(self, R_target: np.ndarray, p_target: np.ndarray, k: int, rotation_scale: float) -> np.ndarray:
        """``(B, k)`` indices of the table entries nearest to each target (``R_target (B, 3, 3)``,
        ``p_target (B, 3)``), by ``|dp|^2 + rotation_scale^2 |dR|_F^2``, closest first; ``k`` at
        most the table's size."""
        B = len(p_target)
        if B <= _SCAN_MAX or not _open3d_available():
            # a scan (row chunks bound the memory; also the path where Open3D is not installed)
            return np.concatenate([self._scan(R_target[s : s + _SCAN_CHUNK], p_target[s : s + _SCAN_CHUNK], k,
                                              rotation_scale) for s in range(0, B, _SCAN_CHUNK)])
        import open3d as o3d

        tree = self._tree(rotation_scale)
        idx, _ = tree.knn_search(o3d.core.Tensor.from_numpy(_features(R_target, p_target, rotation_scale)), k)
        return idx.numpy().astype(np.int64)

    def _scan(self, R_target: np.ndarray, p_target: np.ndarray, k: int, rotation_scale: float) -> np.ndarray:
        B = len(p_target)
        # |p_j|^2 - 2 p*.p_j - 2 c^2 R*:R_j (the targets' own norms and |R_j|^2 = 3 are constant per row)
        query = np.concatenate((p_target, (rotation_scale * rotation_scale) * R_target.reshape(B, 9)), 1)
        score = self.p_sq - 2.0 * (query @ self.poses)
        if k < score.shape[1]:
            part = np.argpartition(score, k - 1, axis=1)[:, :k]
        else:
            part = np.arange(k)[None].repeat(B, 0)
        rows = np.arange(B)[:, None]
        return part[rows, np.argsort(score[rows, part], 1)]

    def evaluated(self, idx: np.ndarray):
        """``path.evaluate(q[idx])`` of entries ``idx (N,)``: what the solver's first step needs, already known."""
        return self.R[idx].reshape(-1, 3, 3), self.p[idx], self.Jt[idx]

    def _tree(self, rotation_scale: float):
        tree = self._trees.get(rotation_scale)
        if tree is None:
            import open3d as o3d

            tree = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor.from_numpy(
                _features(self.R.reshape(-1, 3, 3), self.p, rotation_scale)))
            tree.knn_index()
            self._trees[rotation_scale] = tree
        return tree


@functools.lru_cache(maxsize=1)
def _open3d_available() -> bool:
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def _features(R: np.ndarray, p: np.ndarray, rotation_scale: float) -> np.ndarray:
    """The vectors ``[p, c R]`` (``[p]`` when ``c = 0``: position-only IK) in float32."""
    if rotation_scale == 0:
        return np.ascontiguousarray(p, dtype=np.float32)
    return np.concatenate((p, rotation_scale * R.reshape(len(p), 9)), 1).astype(np.float32)


def rotation_scale(position_weight: float, orientation_weight: float, position_only: bool) -> float:
    """``c`` of the table's distance for the solver's weights (0 for position-only IK)."""
    return 0.0 if position_only else orientation_weight / position_weight / math.sqrt(2.0)
