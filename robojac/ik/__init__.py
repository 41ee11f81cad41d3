"""Inverse kinematics: ``solve(chain, target)`` (batched damped least squares with restarts and
joint limits, on the solver engine for throughput and a numpy path for latency) and closed-form
solvers for planar 2- and 3-link arms; whole-body tasks (frames at targets, the centre of mass
over a point, a posture) as factors of the solver engine, balance over a support polygon as one
of its constraints, and ``solve_balanced``: frames at targets with the centre of mass over the
polygon, in one call."""

from ._balance import BalanceConstraint, PostureTask, support_polygon
from ._balanced import BalanceConfig, BalanceResult, solve_balanced
from ._io import read_targets
from ._planar import planar_2link_ik, planar_3link_ik
from ._solve import IKConfig, IKResult, solve
from ._targets import parse_targets, pose_errors
from ._tasks import CenterOfMassTask, ClearanceConstraint, CollisionTask, FramesTask

__all__ = ["BalanceConfig", "BalanceConstraint", "BalanceResult", "CenterOfMassTask", "ClearanceConstraint",
           "CollisionTask", "FramesTask", "IKConfig", "IKResult", "PostureTask", "parse_targets", "planar_2link_ik",
           "planar_3link_ik", "pose_errors", "read_targets", "solve", "solve_balanced", "support_polygon"]
