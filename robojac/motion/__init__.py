"""Motion: smooth joint trajectories to a goal, clear of obstacles and inside the limits
(``trajopt``), one least-squares problem on :mod:`robojac.optim` with the IK tasks as factors."""

from ._residuals import Acceleration, RestAtEnds, SweptClearance, VelocityBound, VelocityLimit
from ._trajopt import TrajOptConfig, TrajOptResult, trajopt

__all__ = ["Acceleration", "RestAtEnds", "SweptClearance", "TrajOptConfig", "TrajOptResult", "VelocityBound",
           "VelocityLimit", "trajopt"]
