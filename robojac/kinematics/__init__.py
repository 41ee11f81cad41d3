"""Kinematic chains and trees: joints, URDF, MJCF and DH builders, batched FK and Jacobians."""

from ._chain import Chain
from ._dh import DHRow, chain_from_dh
from ._inertial import Inertial
from ._mjcf import GeomElement, MjcfError, chain_from_mjcf, read_mjcf_geoms
from ._joint import Joint, JointLimits, JointType, Mimic, origin_from_xyz_rpy, rpy_to_quat
from ._transform import PoseTransform
from ._tree import KinematicTreeError
from ._urdf import CollisionElement, UrdfError, parse_urdf, quat_to_rpy, read_urdf_collisions, write_urdf

__all__ = [
    "Chain",
    "CollisionElement",
    "DHRow",
    "GeomElement",
    "Inertial",
    "Joint",
    "JointLimits",
    "JointType",
    "KinematicTreeError",
    "MjcfError",
    "Mimic",
    "PoseTransform",
    "UrdfError",
    "chain_from_dh",
    "chain_from_mjcf",
    "origin_from_xyz_rpy",
    "parse_urdf",
    "quat_to_rpy",
    "read_mjcf_geoms",
    "read_urdf_collisions",
    "rpy_to_quat",
    "write_urdf",
]
