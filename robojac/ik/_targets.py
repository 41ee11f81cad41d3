"""IK targets: what ``solve`` accepts, and the pose error both engines minimise."""

from __future__ import annotations

import pypose as pp
import torch
from torch import Tensor

from .. import lie
from ..lie import require_values, se3_tensor

__all__ = ["parse_targets", "pose_errors"]


def parse_targets(target) -> tuple[Tensor, tuple[int, ...], bool]:
    """``(flat targets (B, 7) or (B, 3), batch shape, position_only)``."""
    if isinstance(target, pp.LieTensor) or (isinstance(target, Tensor) and target.shape[-1:] == (7,)) or (
        isinstance(target, Tensor) and target.dim() >= 2 and target.shape[-2:] == (4, 4)
    ):
        X = se3_tensor(target, name="target")
        return X.reshape(-1, 7), tuple(X.shape[:-1]), False
    if isinstance(target, Tensor) and target.shape[-1:] == (3,):
        if not target.is_floating_point():
            raise TypeError(f"target: expected a floating-point tensor, got dtype {target.dtype}")
        require_values(target, "target")
        if not torch.isfinite(target).all():
            raise ValueError("target: contains NaN or infinite values")
        return target.reshape(-1, 3), tuple(target.shape[:-1]), True
    shape = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
    raise ValueError(f"target: expected an SE3 pose (..., 7) [t, qx, qy, qz, qw], a (..., 4, 4) transform, or a "
                     f"position (..., 3); got {shape}")


def pose_errors(X: Tensor, target: Tensor, position_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(error (P, 6|3), position error (P,), rotation error (P,))`` of poses ``X (P, 7)``:
    ``[p* - p; Log(R* R^T)]``, the world-frame error the geometric Jacobian linearises."""
    dp = target[:, :3] - X[:, :3]
    if position_only:
        return dp, dp.norm(dim=-1), torch.zeros_like(dp[:, 0])
    dr = lie.so3_log(lie.quat_mul(target[:, 3:], lie.quat_conj(X[:, 3:])))
    return torch.cat((dp, dr), -1), dp.norm(dim=-1), dr.norm(dim=-1)
