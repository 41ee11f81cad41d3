"""Point-cloud registration: point-to-point, point-to-plane and generalized ICP, batched.

``align(source, target, init=..., config=ICPConfig(...))`` returns a :class:`RegistrationResult`
with ``T_target_source`` (``target ~ T * source``).  Nearest neighbours use a KD-tree on the
CPU and chunked brute force on a GPU (one padded search for a batch of targets,
:class:`PaddedNeighbors`); a target can be prepared once (:func:`prepare`) and reused.
"""

from ._align import ICPConfig, PreparedCloud, RegistrationResult, align, prepare
from ._cloud import (
    PLYError, as_points, estimate_covariances, normals_from_covariances, read_point_cloud, read_stanford_conf,
    voxel_downsample,
)
from ._neighbors import NearestNeighbors, PaddedNeighbors

__all__ = [
    "ICPConfig", "PLYError", "NearestNeighbors", "PaddedNeighbors", "PreparedCloud", "RegistrationResult", "align",
    "as_points",
    "estimate_covariances", "normals_from_covariances", "prepare", "read_point_cloud", "read_stanford_conf", "voxel_downsample",
]
