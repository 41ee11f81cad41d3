"""Joints as plain data: type, frames, origin, axis, limits, mimic relation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import Tensor


__all__ = ["JointType", "JointLimits", "Mimic", "Joint", "origin_from_xyz_rpy", "rpy_to_quat"]


class JointType(str, Enum):
    """Kinds of joints (URDF's names)."""

    REVOLUTE = "revolute"
    CONTINUOUS = "continuous"
    PRISMATIC = "prismatic"
    FIXED = "fixed"

    @property
    def movable(self) -> bool:
        return self is not JointType.FIXED

    @property
    def rotational(self) -> bool:
        return self in (JointType.REVOLUTE, JointType.CONTINUOUS)


@dataclass(frozen=True)
class JointLimits:
    """Position limits (rad or m) and, where known, a velocity limit (per second)."""

    lower: float = -math.inf
    upper: float = math.inf
    velocity: float = math.inf
    effort: float = math.inf

    def __post_init__(self):
        if math.isnan(self.lower) or math.isnan(self.upper) or self.lower > self.upper:
            raise ValueError(f"joint limits: expected lower <= upper, got [{self.lower}, {self.upper}]")


@dataclass(frozen=True)
class Mimic:
    """This joint's value is ``multiplier * value(joint) + offset`` (URDF ``<mimic>``)."""

    joint: str
    multiplier: float = 1.0
    offset: float = 0.0


def _numbers_of(values, name: str, n: int) -> tuple[float, ...]:
    """``n`` finite numbers of a sequence or tensor, named in the error otherwise."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected {n} numbers, got {type(values).__name__}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name}: expected {n} finite numbers, got {list(out)}")
    return out


def rpy_to_quat(rpy) -> Tensor:
    """URDF roll-pitch-yaw (fixed axes X, then Y, then Z) to a ``[x, y, z, w]`` quaternion."""
    r, p, y = (0.5 * v for v in _numbers_of(rpy, "rpy", 3))
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    # q_z(y) * q_y(p) * q_x(r), multiplied out (scalar math: a URDF has one per joint)
    return torch.tensor([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
                         cr * cp * cy + sr * sp * sy], dtype=torch.float64, device="cpu")


def origin_from_xyz_rpy(xyz=(0.0, 0.0, 0.0), rpy=(0.0, 0.0, 0.0)) -> Tensor:
    """A pose ``[t, q]`` (float64) from a URDF ``<origin xyz rpy>``."""
    return torch.cat((torch.tensor([float(v) for v in xyz], dtype=torch.float64, device="cpu"), rpy_to_quat(rpy)))


def _identity() -> Tensor:
    return torch.tensor([0.0, 0, 0, 0, 0, 0, 1], dtype=torch.float64, device="cpu")


@dataclass(frozen=True)
class Joint:
    """A joint from link ``parent`` to link ``child``.

    The child frame is ``T_parent_child(v) = origin * Motion(v)`` with ``Motion`` a rotation
    by ``v`` about ``axis`` (revolute, continuous), a translation by ``v`` along it
    (prismatic) or the identity (fixed); ``origin`` is a pose ``[t, qx, qy, qz, qw]``
    (``T_parent_joint``) and ``axis`` a unit vector in the joint frame.
    """

    name: str
    type: JointType
    parent: str
    child: str
    origin: Tensor = field(default_factory=_identity)
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    limits: JointLimits = field(default_factory=JointLimits)
    mimic: Mimic | None = None

    def __post_init__(self):
        object.__setattr__(self, "type", JointType(self.type))
        origin = torch.as_tensor(self.origin, dtype=torch.float64, device="cpu").reshape(-1)
        if origin.shape != (7,) or not torch.isfinite(origin).all():
            raise ValueError(f"joint {self.name!r}: origin must be 7 finite numbers [t, qx, qy, qz, qw], got {origin.tolist()}")
        norm = origin[3:].norm()
        if abs(float(norm) - 1) > 1e-6:
            raise ValueError(f"joint {self.name!r}: origin quaternion must have unit length, got |q| = {float(norm):.6g}")
        object.__setattr__(self, "origin", torch.cat((origin[:3], origin[3:] / norm)))
        if self.type.movable:
            a = torch.tensor([float(v) for v in self.axis], dtype=torch.float64, device="cpu")
            n = float(a.norm())
            if a.shape != (3,) or not math.isfinite(n) or n < 1e-9:
                raise ValueError(f"joint {self.name!r}: axis must be a non-zero 3-vector, got {list(self.axis)}")
            object.__setattr__(self, "axis", tuple((a / n).tolist()))
        if self.type is JointType.CONTINUOUS and (math.isfinite(self.limits.lower) or math.isfinite(self.limits.upper)):
            object.__setattr__(self, "limits", JointLimits(velocity=self.limits.velocity, effort=self.limits.effort))
        if self.mimic is not None and not self.type.movable:
            raise ValueError(f"joint {self.name!r}: a fixed joint cannot mimic another joint")

    @classmethod
    def revolute(cls, name, parent, child, *, origin=None, axis=(0.0, 0.0, 1.0), lower=-math.pi, upper=math.pi,
                 velocity=math.inf, mimic: Mimic | None = None) -> Joint:
        return cls(name, JointType.REVOLUTE, parent, child, _identity() if origin is None else origin, axis,
                   JointLimits(lower, upper, velocity), mimic)

    @classmethod
    def continuous(cls, name, parent, child, *, origin=None, axis=(0.0, 0.0, 1.0), mimic: Mimic | None = None) -> Joint:
        return cls(name, JointType.CONTINUOUS, parent, child, _identity() if origin is None else origin, axis, JointLimits(), mimic)

    @classmethod
    def prismatic(cls, name, parent, child, *, origin=None, axis=(0.0, 0.0, 1.0), lower=-1.0, upper=1.0,
                  velocity=math.inf, mimic: Mimic | None = None) -> Joint:
        return cls(name, JointType.PRISMATIC, parent, child, _identity() if origin is None else origin, axis,
                   JointLimits(lower, upper, velocity), mimic)

    @classmethod
    def fixed(cls, name, parent, child, *, origin=None) -> Joint:
        return cls(name, JointType.FIXED, parent, child, _identity() if origin is None else origin)
