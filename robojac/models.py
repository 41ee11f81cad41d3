"""Ready-made arms, so that examples and tests need no file (Pinocchio's sample-model idea)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .kinematics import Chain, DHRow, Joint

__all__ = ["planar_arm", "sample_arm", "PANDA_DH"]

# The Franka Emika Panda's published kinematics (modified DH, Craig's convention) with its
# joint limits; ``flange`` adds the 0.107 m offset to the flange (panda_link8).
PANDA_DH = (
    DHRow(0.0, 0.0, 0.333, lower=-2.8973, upper=2.8973),
    DHRow(0.0, -math.pi / 2, 0.0, lower=-1.7628, upper=1.7628),
    DHRow(0.0, math.pi / 2, 0.316, lower=-2.8973, upper=2.8973),
    DHRow(0.0825, math.pi / 2, 0.0, lower=-3.0718, upper=-0.0698),
    DHRow(-0.0825, -math.pi / 2, 0.384, lower=-2.8973, upper=2.8973),
    DHRow(0.0, math.pi / 2, 0.0, lower=-0.0175, upper=3.7525),
    DHRow(0.088, math.pi / 2, 0.0, lower=-2.8973, upper=2.8973),
)


def planar_arm(link_lengths: Sequence[float] = (1.0, 1.0), *, limits: tuple[float, float] = (-math.pi, math.pi),
               name: str | None = None) -> Chain:
    """A planar arm of revolute joints about ``z``, links along ``x``, in the ``xy`` plane.

    Frames ``base``, ``link1`` ... ``linkN`` (at each joint) and ``tool`` (the arm's end);
    joint ``i`` sits at the end of link ``i-1``.  ``planar_arm((1, 1))`` is the classic
    2-joint arm, ``planar_arm((1, 0.8, 0.5))`` a 3-joint one.
    """
    lengths = [float(v) for v in link_lengths]
    if not lengths or any(not math.isfinite(v) or v <= 0 for v in lengths):
        raise ValueError(f"link_lengths: expected positive lengths, got {list(link_lengths)}")
    joints, parent, offset = [], "base", 0.0
    for i, length in enumerate(lengths, start=1):
        origin = torch.tensor([offset, 0, 0, 0, 0, 0, 1], dtype=torch.float64, device="cpu")
        joints.append(Joint.revolute(f"joint{i}", parent, f"link{i}", origin=origin, axis=(0, 0, 1),
                                     lower=limits[0], upper=limits[1]))
        parent, offset = f"link{i}", length
    joints.append(Joint.fixed("tool_joint", parent, "tool",
                              origin=torch.tensor([offset, 0, 0, 0, 0, 0, 1.0], dtype=torch.float64, device="cpu")))
    return Chain(joints, name=name or f"planar{len(lengths)}")


def sample_arm() -> Chain:
    """A 7-DoF arm: the Franka Panda's published modified-DH kinematics, base ``link0`` to ``flange``."""
    return Chain.from_dh(PANDA_DH, "modified", name="sample_arm",
                         tool=torch.tensor([0, 0, 0.107, 0, 0, 0, 1.0], device="cpu"))
