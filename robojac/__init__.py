"""robojac: Lie-group Jacobians for robot kinematics and pose estimation.

Subpackages (imported on first use, so ``import robojac`` stays light):

* :mod:`robojac.lie` -- tangent maps, conversions, plain-tensor SO3/SE3 operations
* :mod:`robojac.jacobian` -- ``modjac``, functional Jacobians, per-sample and block-sparse
  Jacobians, analytic fast paths
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("lie", "jacobian", "optim", "kinematics", "models", "ik", "icp", "posegraph", "trajectory", "viz", "cli")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'robojac' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
