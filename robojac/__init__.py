"""robojac: Lie-group Jacobians for robot kinematics and pose estimation.

``import robojac`` is light: it imports neither torch nor any subpackage until a name is used.
The names a newcomer reaches for first are here at the top level; everything else lives in its
subpackage:

* :mod:`robojac.lie` -- tangent maps, conversions, plain-tensor SO3/SE3 operations
* :mod:`robojac.jacobian` -- ``modjac``, functional Jacobians, per-sample and block-sparse Jacobians
* :mod:`robojac.kinematics` -- ``Chain`` (URDF, DH), joints, ``PoseTransform``
* :mod:`robojac.ik` -- ``solve`` with ``IKConfig``; whole-body tasks
* :mod:`robojac.collision` -- capsules, boxes, half-spaces; a robot's shapes and their distances
* :mod:`robojac.motion` -- ``trajopt``: smooth trajectories clear of obstacles
* :mod:`robojac.icp` -- ``align`` with ``ICPConfig``, point-cloud files
* :mod:`robojac.posegraph` -- g2o files, ``PoseGraph``, ``optimize`` with ``PGOConfig``
* :mod:`robojac.trajectory` -- TUM/KITTI files, ATE/RPE
* :mod:`robojac.optim` -- robust kernels, linear solvers
* :mod:`robojac.models`, :mod:`robojac.data` -- ready arms, the sample files shipped in ``data/``
* :mod:`robojac.viz` -- pictures
"""

from __future__ import annotations

import importlib

from . import _malloc

__version__ = "0.1.0"

_malloc.tune()  # glibc keeps torch's megabyte temporaries' pages (see robojac._malloc)

_SUBMODULES = ("lie", "jacobian", "optim", "kinematics", "models", "data", "collision", "ik", "motion", "calibration",
               "icp", "posegraph", "trajectory", "viz", "cli")

# top-level name -> the subpackage that defines it
_NAMES = {
    "Chain": "kinematics",
    "PoseTransform": "kinematics",
    "modjac": "jacobian",
    "IKConfig": "ik",
    "ICPConfig": "icp",
    "align": "icp",
    "read_point_cloud": "icp",
    "PoseGraph": "posegraph",
    "PGOConfig": "posegraph",
    "read_g2o": "posegraph",
    "write_g2o": "posegraph",
    "RobustKernel": "optim",
    "Trajectory": "trajectory",
}

__all__ = sorted(_NAMES) + list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'robojac' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
