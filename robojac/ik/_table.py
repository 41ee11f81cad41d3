"""Starts near a target: configurations spread over the joint space, looked up by where they put a frame.

A random start is on average far from its target, and the damped least-squares steps spend
most of their work closing that distance.  A table of ``M`` configurations and the poses of the
frame they produce, built once per chain and frame (or set of frames), gives each target starts
that already put the frame near it: the ``k`` table entries nearest in the solver's own weighted
pose error.

The distance is ``|p* - p|^2 + c^2 |R* - R|_F^2`` with ``c = (w_o / w_p) / sqrt 2``: for small
rotations ``|R* - R|_F^2 = 4 (1 - cos angle) ~ 2 angle^2``, so this is the solver's weighted
squared error, and it is a Euclidean distance between the 12-vectors ``[p, c R]``.  For several
frames it is their sum, each frame's times its squared frame weight (``c = 0`` for a position
target): a distance between ``12 K``-vectors.  A few queries (a lone target) scan the table in
one matrix-vector product; many queries (a batch) search a KD-tree over those vectors (Open3D),
which is built once per set of weights.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..kinematics import Chain
from ._path import FramePaths

__all__ = ["StartTable"]

_TABLE_SEED = 0x5EED  # the table is the same on every run: solves stay reproducible
_SCAN_MAX = 64  # queries up to this many scan the table; more search the KD-tree
_SCAN_CHUNK = 1024  # a scan of more queries (no Open3D) runs in chunks of this many rows (4096 entries: 32 MB each)


class StartTable:
    """``size`` uniform configurations inside ``chain``'s limits, the poses they give the ``K``
    frames of ``paths`` (one frame's :class:`SerialPath`, or several frames' :class:`FramePaths`)
    and, for one frame, its Jacobians there (a start's first step needs no evaluation).  Several
    frames' Jacobians are not kept: TALOS's four would take 25 MB (4096 x 32 x 24 float64), the
    Panda's one 1.4 MB."""

    def __init__(self, chain: Chain, paths: FramePaths, size: int):
        gen = torch.Generator().manual_seed(_TABLE_SEED)
        self.q = chain.random_configuration(size, generator=gen, dtype=torch.float64, device="cpu").numpy()
        self.K = paths.K
        R, p, self.Jt = paths.evaluate(self.q, jacobian=self.K == 1)  # (M, [K,] 3, 3), (M, [K,] 3)
        self.p, self.R = np.ascontiguousarray(p).reshape(size, self.K, 3), R.reshape(size, self.K, 9)
        # (12 K, M): [p_1; R_1; ...; p_K; R_K] per column
        self.poses = np.ascontiguousarray(np.concatenate((self.p, self.R), 2).reshape(size, 12 * self.K).T)
        self.p_sq = (self.p * self.p).sum(-1)  # (M, K)
        self._trees: dict[tuple, object] = {}  # _Weights.key -> (Open3D NearestNeighborSearch, columns)
        self._by_weights: dict[tuple, _Weights] = {}

    def nearest(self, R_target: np.ndarray, p_target: np.ndarray, k: int, rotation_scale,
                frame_weights=None) -> np.ndarray:
        """``(B, k)`` indices of the table entries nearest to each target (``R_target (B, K, 3, 3)``,
        ``p_target (B, K, 3)``; ``(B, 3, 3)``, ``(B, 3)`` for one frame), by
        ``sum_k s_k (|dp_k|^2 + c_k^2 |dR_k|^2)_F`` with ``c = rotation_scale`` and ``s =
        frame_weights`` (each a number or ``(K,)``; ``s`` defaults to 1), closest first; ``k`` at
        most the table's size."""
        B, K = len(p_target), self.K
        query = np.concatenate((p_target.reshape(B, K, 3), R_target.reshape(B, K, 9)), 2).reshape(B, 12 * K)
        w = self._weights(rotation_scale, frame_weights)
        if B <= _SCAN_MAX or not _open3d_available():
            # a scan (row chunks bound the memory; also the path where Open3D is not installed)
            return np.concatenate([self._scan(query[i : i + _SCAN_CHUNK], k, w) for i in range(0, B, _SCAN_CHUNK)])
        import open3d as o3d

        tree, cols = self._tree(w)
        idx, _ = tree.knn_search(o3d.core.Tensor.from_numpy(_features(query, w.scale, cols)), k)
        return idx.numpy().astype(np.int64)

    def _weights(self, rotation_scale, frame_weights) -> "_Weights":
        """The distance's weights for ``c`` and ``s`` (built once per value: a lone target is latency-bound)."""
        key = (np.asarray(rotation_scale, dtype=np.float64).tobytes(),
               None if frame_weights is None else np.asarray(frame_weights, dtype=np.float64).tobytes())
        found = self._by_weights.get(key)
        if found is None:
            K = self.K
            c = np.broadcast_to(np.asarray(rotation_scale, dtype=np.float64), (K,))
            s = np.ones(K) if frame_weights is None else np.broadcast_to(np.asarray(frame_weights, np.float64), (K,))
            # sum_k s_k (|p_kj|^2 - 2 p*_k.p_kj - 2 c_k^2 R*_k:R_kj) ranks as the distance does (the
            # targets' own norms and |R_kj|^2 = 3 are constant per row): the query's weights
            query = np.concatenate((np.repeat(s[:, None], 3, 1), np.repeat((s * c * c)[:, None], 9, 1)), 1)
            scale = np.sqrt(s)[:, None] * np.concatenate((np.ones((K, 3)), np.repeat(c[:, None], 9, 1)), 1)
            found = self._by_weights[key] = _Weights(query.reshape(-1), self.p_sq @ s, scale.reshape(-1), key)
        return found

    def _scan(self, query: np.ndarray, k: int, w: "_Weights") -> np.ndarray:
        B = len(query)
        score = w.p_sq - 2.0 * ((query * w.query) @ self.poses)
        if k < score.shape[1]:
            part = np.argpartition(score, k - 1, axis=1)[:, :k]
        else:
            part = np.arange(k)[None].repeat(B, 0)
        rows = np.arange(B)[:, None]
        return part[rows, np.argsort(score[rows, part], 1)]

    def starts(self, chain: Chain, gen: torch.Generator, targets, todo: np.ndarray, R: int, rotation_scale,
               frame_weights=None, evaluated: bool = False):
        """``((n R, dof) starts, their path evaluation or None)`` of the targets ``todo`` (of
        ``targets = (R*, p*)``, as :meth:`nearest` takes them): their ``R`` nearest entries,
        closest first (uniform draws from ``gen`` after the table's size).  The evaluation (for
        the numpy loop's first step, one frame's) only when ``evaluated``."""
        n, k = todo.size, min(R, len(self.q))
        idx = self.nearest(targets[0][todo], targets[1][todo], k, rotation_scale, frame_weights).reshape(n * k)
        if k == R:
            return self.q[idx], self.evaluated(idx) if evaluated else None
        drawn = chain.random_configuration(n, R - k, generator=gen, dtype=torch.float64, device="cpu").numpy()
        q = np.concatenate((self.q[idx].reshape(n, k, -1), drawn), 1)
        return q.reshape(n * R, chain.dof), None

    def evaluated(self, idx: np.ndarray):
        """``path.evaluate(q[idx])`` of one frame's entries ``idx (N,)``: what the solver's first
        step needs, already known."""
        return self.R[idx].reshape(-1, 3, 3), self.p[idx].reshape(-1, 3), self.Jt[idx]

    def _tree(self, w: "_Weights"):
        """The KD-tree over the entries' features scaled by ``w.scale (12 K,)``, and the feature
        columns it keeps (those of nonzero scale: a position target's rotation drops out)."""
        found = self._trees.get(w.key)
        if found is None:
            import open3d as o3d

            cols = np.nonzero(w.scale)[0]
            tree = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor.from_numpy(
                _features(self.poses.T, w.scale, cols)))
            tree.knn_index()
            found = self._trees[w.key] = (tree, cols)
        return found


@dataclass(frozen=True)
class _Weights:
    """The table distance's weights for one ``(c, s)``: the query's ``(12 K,)`` multipliers, the
    entries' ``sum_k s_k |p_kj|^2`` ``(M,)``, the KD-tree features' ``(12 K,)`` scales, and the key."""

    query: np.ndarray
    p_sq: np.ndarray
    scale: np.ndarray
    key: tuple


@functools.lru_cache(maxsize=1)
def _open3d_available() -> bool:
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def _features(F: np.ndarray, scale: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The vectors ``F (N, 12 K)`` (``[p_1, R_1, ..., p_K, R_K]`` each) times ``scale``, their
    columns ``cols``, in float32."""
    return np.ascontiguousarray((F * scale)[:, cols], dtype=np.float32)


def rotation_scale(position_weight: float, orientation_weight: float, position_only: bool) -> float:
    """``c`` of the table's distance for the solver's weights (0 for position-only IK)."""
    return 0.0 if position_only else orientation_weight / position_weight / math.sqrt(2.0)
