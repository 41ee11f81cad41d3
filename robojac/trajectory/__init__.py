"""Trajectories: TUM and KITTI files (byte-compatible with ``evo``), alignment, ATE and RPE.

* TUM: one line per pose, ``timestamp tx ty tz qx qy qz qw``.
* KITTI: one line per pose, the 12 numbers of the top 3x4 of ``T_world_pose`` row by row.
* EuRoC (read only): CSV lines ``timestamp_ns, px, py, pz, qw, qx, qy, qz[, more]``.

Both are written as evo writes them (``numpy.savetxt`` with a space delimiter and numpy's
default ``%.18e``), so ``evo_ape``/``evo_rpe`` read our files and we read theirs.  Error
metrics follow evo's vocabulary: :class:`PoseRelation` and :class:`StatisticsType`; and
:func:`kitti_error`, the KITTI odometry benchmark's error over 100-800 m segments.  Time as evo
handles it: :func:`associate` (nearest timestamps or interpolation, with a time offset),
:func:`interpolate`, :func:`in_time_range`, and :func:`match_times` (bare times: GNSS
fixes onto keyframes); and :func:`project_to_plane`.  GNSS coordinates in
metres: :func:`geodetic_to_enu` and :func:`enu_to_geodetic` (WGS84, about an origin),
:func:`geodetic_to_ecef` and :func:`ecef_to_geodetic`.
"""

from ._io import Trajectory, TrajectoryError, read_euroc, read_kitti, read_tum, write_kitti, write_tum
from ._time import associate, in_time_range, interpolate, match_times
from ._geodetic import ecef_to_geodetic, enu_to_geodetic, geodetic_to_ecef, geodetic_to_enu
from ._segments import KITTI_LENGTHS, KittiError, kitti_error
from ._metrics import (
    ErrorResult, PoseRelation, StatisticsType, align_umeyama, ate, end_drift, path_length, project_to_plane, rpe,
)

__all__ = [
    "ErrorResult", "KITTI_LENGTHS", "KittiError", "PoseRelation", "StatisticsType", "Trajectory", "TrajectoryError",
    "align_umeyama", "associate", "ate", "ecef_to_geodetic", "end_drift", "enu_to_geodetic", "geodetic_to_ecef",
    "geodetic_to_enu", "in_time_range", "interpolate", "kitti_error", "match_times", "path_length", "project_to_plane",
    "read_euroc", "read_kitti", "read_tum", "rpe", "write_kitti", "write_tum",
]
