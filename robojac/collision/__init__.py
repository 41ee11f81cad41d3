"""Collision geometry: spheres and capsules on a robot's links, obstacles (spheres, capsules,
boxes, half-spaces), and the signed distances between them, batched and differentiable in the
configuration.  :class:`robojac.ik.CollisionTask` keeps a solve's answers clear of them."""

from ._distance import capsule_box, capsule_capsule, capsule_halfspace, point_box, segment_parameters
from ._model import Obstacles, RobotCollision
from ._shapes import Box, Capsule, HalfSpace, Sphere

__all__ = [
    "Box",
    "Capsule",
    "HalfSpace",
    "Obstacles",
    "RobotCollision",
    "Sphere",
    "capsule_box",
    "capsule_capsule",
    "capsule_halfspace",
    "point_box",
    "segment_parameters",
]
