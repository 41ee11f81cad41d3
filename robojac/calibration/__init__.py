"""Calibration: a robot's kinematics from measurements, and where a sensor sits on it.

* :func:`calibrate_kinematics` with :class:`CalibrationConfig` -> :class:`CalibrationResult`:
  joint origins and offsets from measured poses or positions, with the unidentifiable
  directions found, reported and held; on the solver engine (:mod:`robojac.optim`).
"""

from ._kinematic import CalibrationConfig, CalibrationResult, MeasurementErrors, calibrate_kinematics

__all__ = ["CalibrationConfig", "CalibrationResult", "MeasurementErrors", "calibrate_kinematics"]
