"""Point-cloud registration: point-to-point, point-to-plane and generalized ICP, batched.

``align(source, target, init=..., config=ICPConfig(...))`` returns a :class:`RegistrationResult`
with ``T_target_source`` (``target ~ T * source``).  ``global_align`` needs no initial guess
(FPFH features, a batched RANSAC in torch, then ICP); ``information_matrix`` weighs an
alignment as a pose-graph edge, and ``observability`` tells whether its geometry fixed every
direction of the pose (a plane, a corridor or a pipe does not).  Nearest neighbours use a KD-tree on the
CPU and chunked brute force on a GPU (one padded search for a batch of targets,
:class:`PaddedNeighbors`); a target can be prepared once (:func:`prepare`) and reused.
"""

from ._align import ICPConfig, PreparedCloud, RegistrationResult, align, prepare
from ._cloud import (
    PCDError, PLYError, as_points, estimate_covariances, normals_from_covariances, read_kitti_bin, read_point_cloud, read_scans,
    read_stanford_conf, spatial_order, voxel_downsample,
)
from ._global import GlobalConfig, fpfh_features, global_align, information_matrix
from ._multiway import MultiwayConfig, MultiwayResult, multiway_registration
from ._observability import Observability, observability
from ._ply import write_ply
from ._neighbors import NearestNeighbors, PaddedNeighbors
from ._odometry import OdometryConfig, OdometryResult, lidar_odometry

__all__ = [
    "GlobalConfig", "ICPConfig", "MultiwayConfig", "MultiwayResult", "NearestNeighbors", "Observability", "OdometryConfig",
    "OdometryResult", "PCDError", "PLYError", "PaddedNeighbors", "PreparedCloud", "RegistrationResult", "align", "as_points",
    "estimate_covariances", "fpfh_features", "global_align", "information_matrix", "lidar_odometry",
    "multiway_registration", "normals_from_covariances", "observability", "prepare", "read_kitti_bin", "read_point_cloud", "read_scans",
    "read_stanford_conf", "spatial_order", "voxel_downsample", "write_ply",
]
