"""The KITTI odometry benchmark's error: relative pose errors over path segments of set lengths."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from .._config import check_int
from ._io import TrajectoryError, as_trajectory
from ._metrics import on_pose_threads

__all__ = ["KITTI_LENGTHS", "KittiError", "kitti_error"]

KITTI_LENGTHS = (100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0)  # the benchmark's segments (m)


@dataclass(frozen=True)
class KittiError:
    """What :func:`kitti_error` measured.

    * ``translation_percent``: the translation error per metre travelled, over every segment,
      in percent (KITTI's "translation error", KISS-ICP's "average translation error").
    * ``rotation_deg_per_100m``: the rotation error per 100 m travelled, over every segment.
    * ``lengths`` ``(L,)``: the segment lengths (m); ``segments`` ``(L,)``: how many segments of
      each length the reference's path holds; ``translation_percent_by_length``,
      ``rotation_deg_per_100m_by_length`` ``(L,)``: the same errors per length (NaN for a length
      the path is too short for).
    """

    translation_percent: float
    rotation_deg_per_100m: float
    lengths: Tensor
    segments: Tensor
    translation_percent_by_length: Tensor
    rotation_deg_per_100m_by_length: Tensor


@on_pose_threads
def kitti_error(reference, estimate, *, lengths=KITTI_LENGTHS, step: int = 10) -> KittiError:
    """The KITTI odometry benchmark's error of ``estimate`` against ``reference`` (one pose each
    per frame, associated): from every ``step``-th frame, for each length ``d`` in ``lengths``
    (metres, 100 to 800 by default), the first later frame whose distance along the reference's
    path exceeds ``d`` closes a segment; its relative pose error
    ``E = (P_i^-1 P_j)^-1 (Q_i^-1 Q_j)`` gives ``|t(E)| / d`` and ``angle(E) / d``, averaged over
    all segments.  This is the KITTI development kit's ``evaluate_odometry`` (and KISS-ICP's
    ``sequence_error``) on these poses, in any frame both trajectories share; no alignment is
    made.  A reference whose path is shorter than the shortest length has no segment and is
    refused.
    """
    reference, estimate = as_trajectory(reference, "reference"), as_trajectory(estimate, "estimate")
    if len(reference) != len(estimate):
        raise TrajectoryError(f"kitti_error: {len(reference)} reference poses but {len(estimate)} estimated; "
                              "associate them first")
    check_int("kitti_error", "step", step, minimum=1)
    L = torch.as_tensor(lengths, dtype=torch.float64, device="cpu").reshape(-1)
    if L.numel() == 0 or not bool(torch.isfinite(L).all()) or not bool((L > 0).all()):
        raise ValueError(f"lengths: expected positive segment lengths in metres, got {lengths!r}")
    Q = reference.poses.detach()  # float64, as a Trajectory holds them
    P = estimate.poses.detach().to(Q.device)
    L = L.to(Q.device)
    dist = reference.distances.detach()
    first = torch.arange(0, len(Q), step, device=Q.device)
    # the first frame past each (first, length) pair: dist[last] > dist[first] + length
    last = torch.searchsorted(dist, (dist[first][:, None] + L[None, :]).contiguous(), right=True)
    valid = last < len(Q)
    if not bool(valid.any()):
        raise TrajectoryError(f"kitti_error: the reference's path is {float(dist[-1]):.1f} m, shorter than the shortest "
                              f"segment ({float(L.min()):g} m): there is no segment to measure")
    i = first[:, None].expand_as(last)[valid]
    j = last[valid]
    d = L[None, :].expand_as(last)[valid]
    dQ = lie.se3_compose(lie.se3_inverse(Q[i]), Q[j])
    dP = lie.se3_compose(lie.se3_inverse(P[i]), P[j])
    E = lie.se3_compose(lie.se3_inverse(dP), dQ)
    t_err = E[:, :3].norm(dim=-1) / d
    r_err = 2.0 * torch.atan2(E[:, 3:6].norm(dim=-1), E[:, 6].abs()) / d  # the angle: acos(trace), exact near 0
    which = torch.nonzero(valid)[:, 1]
    count = torch.bincount(which, minlength=L.numel())
    per_t = torch.zeros_like(L).index_add_(0, which, t_err) / count
    per_r = torch.zeros_like(L).index_add_(0, which, r_err) / count
    deg100 = 100.0 * 180.0 / math.pi
    return KittiError(float(t_err.mean()) * 100.0, float(r_err.mean()) * deg100, L, count, per_t * 100.0, per_r * deg100)
