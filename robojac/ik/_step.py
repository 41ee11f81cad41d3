"""What both IK paths share (the numpy loop and the solver engine): the per-problem constants and
the damping schedule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..optim import RIDGE, TRUSTED

__all__ = ["Problem", "NUMPY_CHUNK", "NUMPY_MAX_ROUND", "LAMBDA_DOWN", "LAMBDA_UP", "LAMBDA_MIN", "LAMBDA_MAX",
           "RIDGE", "TRUSTED", "on_joints"]

NUMPY_CHUNK = 4096  # problems per numpy loop call (larger rounds run in chunks)
NUMPY_MAX_ROUND = 512  # under IKConfig(engine="auto") on the CPU, rounds with more problems than this run on torch
LAMBDA_DOWN = 1.0 / 3.0  # damping factor after an accepted step
LAMBDA_UP = 3.0  # after a rejected one, or a second overstated one (optim.TrustRegionConfig)
LAMBDA_MIN = 1e-9
LAMBDA_MAX = 1e8  # a problem whose damping climbs this high has stalled and stops
# The damped system is (A + lambda diag(A) + RIDGE eps |diag(A)|_max I) dq = b: the engine's one
# damping rule (robojac.optim.damped), in the numpy loop's own layout.  The ridge keeps a joint that
# does not move the task (the Panda's joint 7 for a position-only target) from making the system
# singular: an absolute 1e-12 fell under float32's pivot threshold and position-only IK in
# float32 took no step at all (1 of 1,000 Panda targets solved).


@dataclass(frozen=True)
class Problem:
    """The constants of one IK attempt, as arrays of the engine's kind (numpy or torch).

    ``lower``/``upper``: joint limits (``dof,``), rounded inwards for the engine's dtype;
    ``turn``: ``2 pi`` for rotational joints, ``0`` for prismatic ones (a revolute joint that
    leaves its range comes back by a full turn when that lands inside); ``weights2``: the
    squared error weights ``(6,)``; ``group``: restarts per target (consecutive problems; a
    group stops when one of them is solved); ``drive``: the joints on the frame's path.
    """

    lower: Any
    upper: Any
    turn: Any
    weights2: Any
    position_only: bool
    position_tolerance: float
    orientation_tolerance: float
    lambda_initial: float
    max_iterations: int
    group: int = 1
    rest_pose: Any = None
    nullspace_gain: float = 0.0
    drive: Any = None  # indices of the joints that move the frame (the others are left out), or None: all


def on_joints(pb: Problem, drive) -> Problem:
    """``pb`` restricted to the joints ``drive`` (indices, numpy or torch): both engines step only
    the joints that move the frame, the others keep their starting values."""
    return replace(pb, lower=pb.lower[drive], upper=pb.upper[drive], turn=pb.turn[drive], drive=None,
                   rest_pose=None if pb.rest_pose is None else pb.rest_pose[drive])
