"""Closed-form inverse kinematics of planar 2- and 3-link arms (``robojac.models.planar_arm``)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["planar_2link_ik", "planar_3link_ik"]


def _lengths_and_target(lengths: dict, target) -> None:
    """Link lengths are positive numbers and ``target`` a real tensor ``(..., 2 or 3)``."""
    for name, v in lengths.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: expected a positive link length, got {v!r}")
    if not isinstance(target, Tensor) or not target.is_floating_point():
        got = f"dtype {target.dtype}" if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"target: expected a floating-point tensor (..., 2 or 3) of positions, got {got}")
    if target.dim() == 0 or target.shape[-1] not in (2, 3):
        raise ValueError(f"target: expected positions (..., 2 or 3), got shape {tuple(target.shape)}")


def planar_2link_ik(l1: float, l2: float, target: Tensor, *, elbow: str = "up") -> tuple[Tensor, Tensor]:
    """``(q (..., 2), reachable (...))`` putting the tip at ``target (..., 2 or 3)`` (x, y).

    Law of cosines: ``cos q2 = (x^2 + y^2 - l1^2 - l2^2) / (2 l1 l2)``; ``elbow="up"`` takes
    ``q2 <= 0`` (the elbow above the line to the target for ``x > 0``), ``"down"`` ``q2 >= 0``.
    Unreachable targets get the closest stretched or folded pose and ``reachable=False``.
    """
    if elbow not in ("up", "down"):
        raise ValueError(f"elbow: expected 'up' or 'down', got {elbow!r}")
    _lengths_and_target({"l1": l1, "l2": l2}, target)
    x, y = target[..., 0], target[..., 1]
    c2 = (x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    reachable = (c2 >= -1 - 1e-12) & (c2 <= 1 + 1e-12)
    c2 = c2.clamp(-1.0, 1.0)
    q2 = torch.acos(c2) * (-1.0 if elbow == "up" else 1.0)
    q1 = torch.atan2(y, x) - torch.atan2(l2 * torch.sin(q2), l1 + l2 * torch.cos(q2))
    q1 = torch.atan2(torch.sin(q1), torch.cos(q1))
    return torch.stack((q1, q2), -1), reachable


def planar_3link_ik(l1: float, l2: float, l3: float, target: Tensor, phi: Tensor | float | None = None, *,
                    elbow: str = "up") -> tuple[Tensor, Tensor]:
    """``(q (..., 3), reachable (...))`` putting the tip at ``target`` with tool angle ``phi``.

    The wrist is at ``target - l3 (cos phi, sin phi)``; the first two links reach it in closed
    form and ``q3 = phi - q1 - q2``.  Without ``phi`` the tool points along the line from the
    base to the target (one of the arm's infinitely many solutions).
    """
    _lengths_and_target({"l1": l1, "l2": l2, "l3": l3}, target)
    x, y = target[..., 0], target[..., 1]
    if phi is None:
        phi = torch.atan2(y, x)
    phi = torch.as_tensor(phi, dtype=target.dtype, device=target.device).expand_as(x)
    wrist = torch.stack((x - l3 * torch.cos(phi), y - l3 * torch.sin(phi)), -1)
    q12, reachable = planar_2link_ik(l1, l2, wrist, elbow=elbow)
    q3 = phi - q12[..., 0] - q12[..., 1]
    q3 = torch.atan2(torch.sin(q3), torch.cos(q3))
    return torch.cat((q12, q3.unsqueeze(-1)), -1), reachable
