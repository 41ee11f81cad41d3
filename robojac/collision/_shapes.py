"""The shapes a collision check knows: spheres and capsules (a robot's links and round
obstacles), boxes and half-spaces (tables, shelves, walls, the floor).

A sphere is a capsule whose segment has zero length: both are stored as one segment ``(a, b)``
and a radius, so every distance on a robot's side is one kind of computation.  Positions are in
metres, each shape in its frame: a link's own frame for a robot's shapes, the chain's root frame
(the world) for obstacles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._config import check_real

__all__ = ["Box", "Capsule", "HalfSpace", "Sphere", "segment_of"]


def _point(owner: str, name: str, value) -> tuple[float, float, float]:
    try:
        p = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}.{name}: expected three numbers (m), got {value!r}") from None
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise ValueError(f"{owner}.{name}: expected three finite numbers (m), got {value!r}")
    return p


def _positive(owner: str, name: str, value) -> float:
    check_real(owner, name, value, positive=True)
    return float(value)


@dataclass(frozen=True)
class Sphere:
    """A ball of ``radius`` about ``center``."""

    radius: float
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        object.__setattr__(self, "radius", _positive("Sphere", "radius", self.radius))
        object.__setattr__(self, "center", _point("Sphere", "center", self.center))


@dataclass(frozen=True)
class Capsule:
    """The points within ``radius`` of the segment from ``a`` to ``b`` (a cylinder with
    hemispherical ends; ``a == b`` is a sphere)."""

    radius: float
    a: tuple[float, float, float]
    b: tuple[float, float, float]

    def __post_init__(self):
        object.__setattr__(self, "radius", _positive("Capsule", "radius", self.radius))
        object.__setattr__(self, "a", _point("Capsule", "a", self.a))
        object.__setattr__(self, "b", _point("Capsule", "b", self.b))


@dataclass(frozen=True)
class Box:
    """A box of ``half_extents`` (along its own x, y, z) at ``pose`` ``[t, qx, qy, qz, qw]``
    (its centre and orientation; pypose's order)."""

    half_extents: tuple[float, float, float]
    pose: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self):
        h = _point("Box", "half_extents", self.half_extents)
        if not all(v > 0 for v in h):
            raise ValueError(f"Box.half_extents: expected three numbers > 0 (m), got {self.half_extents!r}")
        try:
            pose = tuple(float(v) for v in self.pose)
        except (TypeError, ValueError):
            raise TypeError(f"Box.pose: expected 7 numbers [t, qx, qy, qz, qw], got {self.pose!r}") from None
        n = math.sqrt(sum(v * v for v in pose[3:])) if len(pose) == 7 else 0.0
        if len(pose) != 7 or not all(math.isfinite(v) for v in pose) or abs(n - 1) > 1e-6:
            raise ValueError(f"Box.pose: expected 7 finite numbers [t, qx, qy, qz, qw] with a unit quaternion, "
                             f"got {self.pose!r}")
        object.__setattr__(self, "half_extents", h)
        object.__setattr__(self, "pose", pose[:3] + tuple(v / n for v in pose[3:]))


@dataclass(frozen=True)
class HalfSpace:
    """The solid ``{x : normal . x <= offset}`` (``normal`` is made unit length; the floor at
    height 0 is ``HalfSpace((0, 0, 1), 0.0)``)."""

    normal: tuple[float, float, float]
    offset: float = 0.0

    def __post_init__(self):
        n = _point("HalfSpace", "normal", self.normal)
        norm = math.sqrt(sum(v * v for v in n))
        if norm < 1e-12:
            raise ValueError(f"HalfSpace.normal: expected a non-zero 3-vector, got {self.normal!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, (int, float)) or not math.isfinite(self.offset):
            raise ValueError(f"HalfSpace.offset: expected a finite number (m), got {self.offset!r}")
        object.__setattr__(self, "normal", tuple(v / norm for v in n))
        object.__setattr__(self, "offset", float(self.offset) / norm)


def segment_of(shape) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
    """``(a, b, radius)`` of a :class:`Sphere` or :class:`Capsule`."""
    if isinstance(shape, Sphere):
        return shape.center, shape.center, shape.radius
    if isinstance(shape, Capsule):
        return shape.a, shape.b, shape.radius
    raise TypeError(f"expected a robojac.collision Sphere or Capsule, got {type(shape).__name__}")
