"""Calibration: a robot's kinematics from measurements, and where a sensor sits on it.

* :func:`calibrate_kinematics` with :class:`CalibrationConfig` -> :class:`CalibrationResult`:
  joint origins and offsets from measured poses or positions, with the unidentifiable
  directions found, reported and held; on the solver engine (:mod:`robojac.optim`).
  :func:`perturbed_chain` and :func:`simulate_poses` make simulated truths and measurements.
* :func:`hand_eye` (``AX = XB``, eye in hand or eye to hand) and :func:`robot_world_hand_eye`
  (``AX = ZB``) with :class:`HandEyeConfig` -> :class:`HandEyeResult`: Tsai-Lenz, Park-Martin,
  Daniilidis, and a robust refinement on SE3.
"""

from ._handeye import HandEyeConfig, HandEyeResult, hand_eye, robot_world_hand_eye
from ._kinematic import (
    CalibrationConfig, CalibrationResult, MeasurementErrors, calibrate_kinematics, perturbed_chain, simulate_poses,
)

__all__ = ["CalibrationConfig", "CalibrationResult", "HandEyeConfig", "HandEyeResult", "MeasurementErrors",
           "calibrate_kinematics", "hand_eye", "perturbed_chain", "robot_world_hand_eye", "simulate_poses"]
