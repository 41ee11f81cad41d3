"""How firmly an alignment's geometry fixes each direction of the pose (degeneracy detection).

ICP on a plane, along a corridor or down a pipe converges, but not to a unique pose: the
geometry leaves some motions free, and the answer along them is wherever the iterations
started.  :func:`observability` measures this at an answer.  A twist ``[v, w]`` (about the
correspondences' centroid ``c``) moves each matched point ``p`` by ``m = v + w x (p - c)``; a
point-to-plane residual sees only ``n . m``, the part of the motion across the surface at ``p``
(normal ``n``).  The fraction

    lambda = mean((n . m)^2) / mean(|m|^2)

is the share of a motion that the surfaces see: 0 for a slide along a plane, about 1/3 for
any motion of a cloud whose normals point every way.  The twists that make it stationary are
the generalized eigenvectors of the point-to-plane information and the motion metric (the
point-to-point information); a small eigenvalue is a motion the alignment cannot see.  No
length scale enters: metres or millimetres give the same shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from .._config import check_int, check_real
from ._align import PreparedCloud
from ._cloud import as_points, knn_covariances
from ._neighbors import NearestNeighbors

__all__ = ["Observability", "observability"]


@dataclass(frozen=True)
class Observability:
    """The observability of one alignment's pose (see :func:`observability`).

    * ``eigenvalues`` ``(6,)``, ascending: for each direction, the share of its motion that
      the surfaces see (0: none, a slide; 1: all of it).
    * ``directions`` ``(6, 6)``: column ``k`` is the twist ``[v, w]`` of ``eigenvalues[k]``
      (target frame, turning about ``center``), scaled to move the points 1 m RMS.
    * ``weakest``: ``eigenvalues[0]`` (0 without correspondences).
    * ``degenerate``: ``weakest`` is below ``threshold``.
    * ``center`` ``(3,)``: the matched target points' centroid.
    * ``inertia`` ``(3, 3)``: their ``mean(|a|^2 I - a a^T)``, ``a = p - center`` (m^2): a
      turn ``w`` moves them ``sqrt(w^T inertia w)`` RMS.
    * ``num_correspondences``: source points with a target point within the distance.
    * ``threshold``: the ``weakest`` share below which the alignment counts as degenerate.
    """

    eigenvalues: Tensor
    directions: Tensor
    weakest: float
    degenerate: bool
    center: Tensor
    inertia: Tensor
    num_correspondences: int
    threshold: float

    def weak_directions(self) -> list[str]:
        """The motions the geometry leaves free (eigenvalues below ``threshold``), in words:
        ``"translation along [1.00, 0.00, 0.00]"`` or ``"rotation about [0.00, 0.00, 1.00]
        through [x, y, z]"`` (with ``" and translation along it"`` for a screw).  Where several
        are free together, the words name the purest translations and rotations among them."""
        weak = [k for k in range(6) if float(self.eigenvalues[k]) < self.threshold]
        if not weak:
            return []
        W = self.directions[:, weak]  # orthonormal in the motion metric
        turning = W[3:].T @ self.inertia @ W[3:]  # the share of each combination's motion that is rotation
        share, C = torch.linalg.eigh((turning + turning.T) / 2)
        out = []
        for k in range(len(weak)):
            v, w = W[:3] @ C[:, k], W[3:] @ C[:, k]
            ww = float(w.dot(w))
            if float(share[k]) < 0.05 or ww == 0.0:
                out.append(f"translation along {_unit_text(v)}")
                continue
            through = self.center + torch.linalg.cross(w, v, dim=-1) / ww  # the nearest point of the screw axis
            words = f"rotation about {_unit_text(w)} through {_text(through)}"
            along = float(w.dot(v)) / ww * w  # the screw's slide along its axis
            if float(along.norm()) > 0.05 * float((v.dot(v) + w @ self.inertia @ w).sqrt()):
                words += " and translation along it"
            out.append(words)
        return out


def _text(x: Tensor) -> str:
    return "[" + ", ".join(f"{round(float(a), 2) + 0.0:.2f}" for a in x) + "]"


def _unit_text(x: Tensor) -> str:
    x = x / x.norm()
    if float(x[int(x.abs().argmax())]) < 0:  # the sign of an eigenvector is arbitrary: show the positive one
        x = -x
    return _text(x)


def observability(source, target, T_target_source, max_correspondence_distance: float, *,
                  num_neighbors: int = 10, threshold: float = 0.01) -> Observability:
    """How firmly the correspondences of an alignment fix each direction of its pose.

    Args:
        source, target: point clouds ``(N, 3)`` (tensors, arrays or Open3D clouds), as given
            to :func:`align` (downsample them as there).  A target :func:`prepare` made (and
            ``align`` used) brings its index and normals: the check then costs one search.
        T_target_source: the alignment's answer (one SE3 pose: a LieTensor, ``(7,)`` or
            ``(4, 4)``).
        max_correspondence_distance: a moved source point counts where its nearest target
            point is at most this far (m).
        num_neighbors: target points for each surface normal (a prepared target's own are used).
        threshold: ``weakest`` below this is ``degenerate``.  The default, 0.01, lies between
            what was measured on flat, corridor, pipe and sphere-shaped scenes with 5 mm of
            noise (at most 0.003) and on the Stanford bunny's overlapping scans and KITTI's
            LiDAR scans (at least 0.034); see ``docs/icp.md``.

    Returns:
        an :class:`Observability`; without correspondences its eigenvalues are zero and it is
        degenerate.
    """
    src = as_points(source, "source")
    prepared = target if isinstance(target, PreparedCloud) else None
    tgt = as_points(prepared.points if prepared else target, "target", dtype=src.dtype, device=src.device)
    check_real("observability", "max_correspondence_distance", max_correspondence_distance, positive=True)
    check_int("observability", "num_neighbors", num_neighbors, minimum=3)
    check_real("observability", "threshold", threshold, maximum=1.0)
    T = lie.se3_tensor(T_target_source, name="T_target_source").to(src)
    if T.shape != (7,):
        raise ValueError(f"T_target_source: expected one pose, got shape {tuple(T.shape)}")
    src, tgt = src.detach(), tgt.detach()
    moved = lie.se3_act(T.expand(src.shape[0], 7), src)
    d2, idx = (prepared.index if prepared else NearestNeighbors(tgt)).query(moved, k=1)
    idx = idx[d2 <= max_correspondence_distance**2]
    K = int(idx.numel())
    eye6 = torch.eye(6, dtype=src.dtype, device=src.device)
    if K == 0:
        return Observability(src.new_zeros(6), eye6, 0.0, True, src.new_zeros(3), src.new_zeros(3, 3), 0, threshold)
    if prepared is not None:  # its normals, as align used them (computed once, kept)
        normals = prepared.normals.to(tgt)
    else:
        normals = knn_covariances(tgt, min(num_neighbors, tgt.shape[0]), with_normals=True)[1].T
    p, n = tgt[idx], normals[idx]
    center = p.mean(0)
    arm = p - center
    a = torch.cat((n, torch.linalg.cross(arm, n, dim=-1)), -1)  # (K, 6): n . (v + w x arm) = a . [v, w]
    H = a.T @ a / K
    S = arm.T @ arm / K
    inertia = S.trace() * eye6[:3, :3] - S  # mean |w x arm|^2 = w^T inertia w (no cross term about the centroid)
    M = torch.block_diag(eye6[:3, :3], inertia)  # mean |v + w x arm|^2 = [v, w]^T M [v, w]
    # a turn that moves no point (every match at the centroid, or on one line through it) is
    # kept regular by a floor far below any share measured
    L = torch.linalg.cholesky(M + 1e-12 * float(M.diagonal().max()) * eye6)
    Li = torch.linalg.solve_triangular(L, eye6, upper=False)
    eigenvalues, Y = torch.linalg.eigh(Li @ H @ Li.T)  # H x = lambda M x, with x = Li^T y
    eigenvalues = eigenvalues.clamp(0.0, 1.0)  # rounding past either end
    directions = Li.T @ Y  # each moves the points 1 m RMS (x^T M x = 1)
    weakest = float(eigenvalues[0])
    return Observability(eigenvalues, directions, weakest, weakest < threshold, center, inertia, K, threshold)
