"""Trajectories in time: association by timestamps (evo's rule), interpolation, time ranges."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from .. import lie
from .._config import check_bool, check_choice
from ._io import Trajectory, TrajectoryError, as_trajectory

__all__ = ["associate", "in_time_range", "interpolate", "match_times"]

SYNC_METHODS = ("nearest_time", "interpolation")


def _stamped(trajectory, name: str) -> Trajectory:
    trajectory = as_trajectory(trajectory, name)
    if trajectory.timestamps is None:
        raise TrajectoryError(f"{name}: the trajectory has no timestamps")
    return trajectory


def _seconds(owner: str, name: str, value, *, optional: bool = False) -> float | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TrajectoryError(f"{owner}: {name} must be a finite number of seconds, got {value!r}")
    return float(value)


def _take(trajectory: Trajectory, index: np.ndarray) -> Trajectory:
    index = torch.from_numpy(np.asarray(index, dtype=np.int64))  # on the CPU whatever the default device
    return Trajectory(trajectory.poses[index.to(trajectory.poses.device)],
                      trajectory.timestamps[index.to(trajectory.timestamps.device)])


def _nearest(ts: np.ndarray, tl: np.ndarray, max_difference: float) -> tuple[np.ndarray, np.ndarray]:
    """``(ok, match)``: for each time of ``ts``, whether a time of ``tl`` lies within
    ``max_difference`` of it, and the index of the nearest (evo's rule and ties: see
    :func:`associate`)."""
    if not len(tl):  # nothing to match against
        return np.zeros(len(ts), dtype=bool), np.zeros(len(ts), dtype=np.int64)
    if bool(np.all(np.diff(tl) >= 0)):  # evo's binary search, step by step: its ties and roundings
        up = np.searchsorted(tl, ts, side="right").clip(max=len(tl) - 1)
        d_up = tl[up] - ts  # signed: negative past the last time, which then wins
        d_low = np.where(up > 0, ts - tl[(up - 1).clip(0)], np.inf)
        take_up = (d_up <= max_difference) & (d_up < d_low)
        ok = take_up | ((d_low <= max_difference) & (d_low <= d_up))
        # a time outside the span is tested against the span widened by max_difference, rounded
        # once (t <= t_last + max_difference): at a tie to a rounding (0.2 against 19 * 0.01) that
        # is not the difference's test
        ok &= (ts >= tl[0] - max_difference) & (ts <= tl[-1] + max_difference)
        return ok, np.where(take_up, up, up - 1)
    # not in order: evo's linear search (argmin); on a tie, the one first in the trajectory
    order = np.argsort(tl, kind="stable")
    sorted_l = tl[order]
    upper = np.searchsorted(sorted_l, ts, side="right").clip(1, len(tl) - 1)  # unsorted: two times or more
    lower = upper - 1
    d_lower, d_upper = np.abs(sorted_l[lower] - ts), np.abs(sorted_l[upper] - ts)
    first = order[np.searchsorted(sorted_l, sorted_l, side="left")]  # the first in the trajectory of equal times
    lo, hi = first[lower], first[upper]
    match = np.where(d_lower < d_upper, lo, np.where(d_upper < d_lower, hi, np.minimum(lo, hi)))
    return np.minimum(d_lower, d_upper) <= max_difference, match


def _check_max_difference(owner: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise TrajectoryError(f"{owner}: max_difference must be a non-negative number of seconds, got {value}")


def _times(owner: str, name: str, value) -> np.ndarray:
    """Seconds ``(N,)`` as float64 numpy, from a tensor, an array or a list (numpy datetimes:
    seconds since the epoch)."""
    if isinstance(value, Trajectory):
        raise TrajectoryError(f"{owner}: {name}: expected times in seconds (a trajectory's are its .timestamps)")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    raw = np.asarray(value)
    if raw.dtype.kind == "M":  # numpy datetimes: seconds since the epoch (float64 holds them to 0.24 us)
        raw = raw.astype("datetime64[ns]").astype(np.int64) / 1e9
    if raw.dtype.kind not in "biuf":
        raise TrajectoryError(f"{owner}: {name}: expected numbers of seconds, got {type(value).__name__}"
                              + (f" of {raw.dtype}" if raw.dtype != object or raw.ndim else f" {value!r}"))
    t = raw.astype(np.float64)
    if t.ndim != 1:
        raise TrajectoryError(f"{owner}: {name}: expected a 1-D array of seconds, got shape {t.shape}")
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        raise TrajectoryError(f"{owner}: {name}: expected finite seconds; entry {int(bad[0])} is {t[bad[0]]}")
    return t


def match_times(times, query, max_difference: float = 0.01, *, offset: float = 0.0) -> tuple[Tensor, Tensor]:
    """``(index, query_index)``: each time of ``query`` matched to the nearest of ``times``, where
    that is within ``max_difference`` seconds, as int64 tensors (on ``times``' device where it is a
    tensor): ``times[index[k]]`` is the time nearest ``query[query_index[k]] + offset``.  Times
    are seconds (tensors, arrays or lists of numbers) or numpy datetimes.

    The measurements of a slower clock (GNSS fixes at 1 Hz) onto the poses of a faster one
    (keyframes): ``PoseGraph(..., prior_index=index, prior_positions=fixes[query_index], ...)``.
    A query time with no time within ``max_difference`` is left out; two query times may match
    one time.  ``query_index`` ascends.  Nearest and ties are :func:`associate`'s rule (evo's),
    for times in any order.  Raises :class:`TrajectoryError` where nothing matches, naming both
    spans of time (seconds against nanoseconds, or GPS time against UTC, 18 s apart, look so).
    """
    owner = "match_times"
    t, q = _times(owner, "times", times), _times(owner, "query", query)
    _check_max_difference(owner, max_difference)
    offset = _seconds(owner, "offset", offset)
    ok, match = _nearest(q + offset, t, max_difference)
    if not ok.any():
        span = lambda x: f"[{x.min():.17g}, {x.max():.17g}] s" if len(x) else "empty"  # noqa: E731
        raise TrajectoryError(f"{owner}: no query time within {max_difference} s of a time (times: {span(t)}; "
                              f"query{' + offset' if offset else ''}: {span(q + offset)})")
    device = times.device if isinstance(times, torch.Tensor) else "cpu"
    keep = np.flatnonzero(ok)
    return tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device) for a in (match[keep], keep))


def associate(reference: Trajectory, estimate: Trajectory, max_difference: float = 0.01, *, offset: float = 0.0,
              method: str = "nearest_time") -> tuple[Trajectory, Trajectory]:
    """Pairs of poses at (nearly) equal times, by evo's rule (``evo_ape --t_max_diff --t_offset
    --sync_method``).

    Each pose of the trajectory with fewer poses (the sparser) is matched to the pose of the other
    whose timestamp is nearest, if that is within ``max_difference``
    seconds; the estimate's timestamps count ``offset`` seconds later for the matching
    (``t_estimate + offset`` against ``t_reference``).  A pose of the sparser trajectory with no
    match within ``max_difference`` is left out; none is matched twice, but a pose of the denser
    one may be matched to two of its poses, as in evo.  Ties are settled as evo settles them.
    Where the denser trajectory's times are in order, the earlier of two equally near times
    wins, and a time beyond them matches when ``t <= t_last + max_difference`` (before them,
    also only when ``t >= t_first - max_difference``): the same test to a rounding.  Where they
    are not in order, the pose first in the trajectory wins.  Timestamps need not be sorted.
    The pairs come in the sparser trajectory's order.

    ``method="nearest_time"`` returns the matched poses themselves, each with its own timestamp.
    ``"interpolation"`` instead resamples the denser trajectory at the matched times of the
    sparser one (converted to its own clock by ``offset``): positions linearly, rotations along
    the shortest arc (:func:`interpolate`, clamped at its ends).
    """
    reference, estimate = _stamped(reference, "reference"), _stamped(estimate, "estimate")
    _check_max_difference("associate", max_difference)
    offset = _seconds("associate", "offset", offset)
    check_choice("associate", "method", method, SYNC_METHODS)
    estimate_longer = len(estimate) > len(reference)
    short, long_ = (reference, estimate) if estimate_longer else (estimate, reference)
    shift = offset if estimate_longer else -offset  # onto the short trajectory's clock
    ts, tl = short.timestamps.cpu().numpy(), long_.timestamps.cpu().numpy() + shift
    ok, match = _nearest(ts, tl, max_difference)
    if not ok.any():
        raise TrajectoryError(f"associate: no timestamps match within {max_difference} s"
                              + (f" (estimate shifted by {offset} s)" if offset else ""))
    a = _take(short, np.nonzero(ok)[0])
    if method == "interpolation":
        b = interpolate(long_, a.timestamps - shift)
    else:
        b = _take(long_, match[ok])
    return (a, b) if estimate_longer else (b, a)


def interpolate(trajectory: Trajectory, timestamps, *, extrapolate: bool = False) -> Trajectory:
    """``trajectory``'s poses at ``timestamps`` (seconds, any order): between the two poses
    around each time, the position linearly and the rotation along the shortest arc (``q_a
    Exp(f Log(q_a^-1 q_b))``: evo's slerp).  Times before the first pose or after the last take
    that pose, or with ``extrapolate`` continue the first or last segment.  The trajectory needs
    two poses or more; its own timestamps need not be sorted."""
    trajectory = _stamped(trajectory, "trajectory")
    check_bool("interpolate", "extrapolate", extrapolate)
    if len(trajectory) < 2:
        raise TrajectoryError(f"interpolate: the trajectory holds {len(trajectory)} pose(s); it needs two or more")
    t = torch.as_tensor(timestamps, dtype=torch.float64, device=trajectory.poses.device).reshape(-1)
    if not bool(torch.isfinite(t).all()):
        raise TrajectoryError("interpolate: timestamps must be finite numbers of seconds")
    order = torch.argsort(trajectory.timestamps, stable=True)
    own, P = trajectory.timestamps[order], trajectory.poses[order]
    nxt = torch.searchsorted(own, t, side="left").clamp(1, len(own) - 1)
    prev = nxt - 1
    dt = own[nxt] - own[prev]
    frac = torch.where(dt > 0, (t - own[prev]) / torch.where(dt > 0, dt, 1.0), 0.0)
    if not extrapolate:
        frac = frac.clamp(0.0, 1.0)
    a, b = P[prev], P[nxt]
    xyz = a[:, :3] + frac[:, None] * (b[:, :3] - a[:, :3])
    turn = lie.so3_log(lie.quat_mul(lie.quat_conj(a[:, 3:]), b[:, 3:]))
    q = lie.quat_mul(a[:, 3:], lie.so3_exp(frac[:, None] * turn))
    return Trajectory(torch.cat((xyz, q / q.norm(dim=-1, keepdim=True)), -1), t)


def in_time_range(trajectory: Trajectory, start: float | None = None, end: float | None = None) -> Trajectory:
    """The poses whose timestamps lie in ``[start, end]`` (seconds; ``None``: unbounded), in
    their order (evo's ``--t_start``/``--t_end``)."""
    trajectory = _stamped(trajectory, "trajectory")
    start = _seconds("in_time_range", "start", start, optional=True)
    end = _seconds("in_time_range", "end", end, optional=True)
    if start is not None and end is not None and start > end:
        raise TrajectoryError(f"in_time_range: start {start} s is after end {end} s")
    keep = torch.ones(len(trajectory), dtype=torch.bool, device=trajectory.timestamps.device)
    if start is not None:
        keep &= trajectory.timestamps >= start
    if end is not None:
        keep &= trajectory.timestamps <= end
    return _take(trajectory, keep.nonzero().flatten().cpu().numpy())

