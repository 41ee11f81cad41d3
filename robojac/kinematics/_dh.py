"""Serial arms from Denavit-Hartenberg tables (standard and modified conventions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .. import lie
from ._joint import Joint, JointLimits, JointType

__all__ = ["DHRow", "chain_from_dh"]


@dataclass(frozen=True)
class DHRow:
    """One link of a DH table: ``a`` (m), ``alpha`` (rad), ``d`` (m), ``theta`` (rad offset).

    ``joint`` is ``"revolute"`` (the variable adds to ``theta``) or ``"prismatic"`` (adds to
    ``d``); ``lower``/``upper`` are the variable's limits.
    """

    a: float
    alpha: float
    d: float
    theta: float = 0.0
    joint: str = "revolute"
    lower: float = -math.pi
    upper: float = math.pi

    def __post_init__(self):
        if self.joint not in ("revolute", "prismatic"):
            raise ValueError(f"DHRow.joint: expected 'revolute' or 'prismatic', got {self.joint!r}")


def _pose(rot_axis: int | None, angle: float, trans) -> torch.Tensor:
    phi = torch.zeros(3, dtype=torch.float64, device="cpu")
    if rot_axis is not None:
        phi[rot_axis] = angle
    return torch.cat((torch.tensor(trans, dtype=torch.float64, device="cpu"), lie.so3_exp(phi)))


def _compose(*poses) -> torch.Tensor:
    out = poses[0]
    for p in poses[1:]:
        out = lie.se3_compose(out, p)
    return out


def _rows(rows) -> list[DHRow]:
    if isinstance(rows, (str, bytes, DHRow)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows: expected a sequence of DH rows (DHRow, dicts or (a, alpha, d[, theta])), "
                        f"got {type(rows).__name__}")
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, DHRow):
            out.append(r)
        elif isinstance(r, dict):
            out.append(DHRow(**r))
        else:
            try:
                vals = [float(v) for v in r]
            except (TypeError, ValueError):
                raise TypeError(f"rows[{i}]: expected (a, alpha, d[, theta]) or a DHRow, got {r!r}") from None
            if len(vals) not in (3, 4):
                raise ValueError(f"rows[{i}]: expected (a, alpha, d[, theta]) or a DHRow, got {r!r}")
            out.append(DHRow(*vals))
    if not out:
        raise ValueError("rows: a DH table needs at least one row")
    return out


def chain_from_dh(rows: Sequence, convention: str = "standard", *, name: str = "dh_arm", tool=None):
    """A serial chain from DH ``rows`` (``DHRow``, dicts, or ``(a, alpha, d[, theta])``).

    Frames: ``link0`` (base) ... ``linkN`` are the DH frames and ``tool`` (if given as a pose
    ``[t, q]`` relative to ``linkN``) the end effector.  Joints ``joint1`` ... ``jointN``.

    * ``"standard"`` (Denavit-Hartenberg): ``T_{i-1,i} = Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i)``.
      The joint moves about/along ``z_{i-1}`` before the link offset, so each row adds a frame
      ``axis{i}`` on the joint axis and a fixed link offset to ``link{i}``.
    * ``"modified"`` (Craig): ``T_{i-1,i} = Rx(alpha_{i-1}) Tx(a_{i-1}) Rz(theta_i) Tz(d_i)``, with
      ``a``/``alpha`` of row ``i`` read as ``a_{i-1}``/``alpha_{i-1}`` (the usual table layout).
    """
    from ._chain import Chain

    if convention not in ("standard", "modified"):
        raise ValueError(f"convention: expected 'standard' or 'modified', got {convention!r}")
    table = _rows(rows)
    joints = []
    for i, r in enumerate(table, start=1):
        kind = JointType(r.joint)
        limits = JointLimits(r.lower, r.upper)
        parent, child = f"link{i - 1}", f"link{i}"
        if convention == "modified":
            pre = _compose(_pose(0, r.alpha, (0.0, 0.0, 0.0)), _pose(None, 0.0, (r.a, 0.0, 0.0)),
                           _pose(2, r.theta, (0.0, 0.0, 0.0)), _pose(None, 0.0, (0.0, 0.0, r.d)))
            joints.append(Joint(f"joint{i}", kind, parent, child, pre, (0.0, 0.0, 1.0), limits))
        else:
            pre = _compose(_pose(2, r.theta, (0.0, 0.0, 0.0)), _pose(None, 0.0, (0.0, 0.0, r.d)))
            joints.append(Joint(f"joint{i}", kind, parent, f"axis{i}", pre, (0.0, 0.0, 1.0), limits))
            post = _compose(_pose(None, 0.0, (r.a, 0.0, 0.0)), _pose(0, r.alpha, (0.0, 0.0, 0.0)))
            joints.append(Joint(f"link{i}_offset", JointType.FIXED, f"axis{i}", child, post))
    if tool is not None:
        joints.append(Joint("tool_joint", JointType.FIXED, f"link{len(table)}", "tool",
                            torch.as_tensor(tool, dtype=torch.float64, device="cpu")))
    return Chain(joints, name=name)
