"""``PoseTransform``: a learnable rigid transform, for calibration and registration."""

from __future__ import annotations

import pypose as pp
import torch
from torch import Tensor, nn

from ..lie import as_SE3

__all__ = ["PoseTransform"]


def _described(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


class PoseTransform(nn.Module):
    """``p -> T * p`` with ``T`` an SE3 ``pp.Parameter`` of shape ``(*batch, 7)``.

    ``T_target_source`` maps points from the source frame to the target frame; give an
    initial pose (LieTensor, ``(..., 7)`` or ``(..., 4, 4)``) or ``batch`` for identities.
    :func:`robojac.jacobian.modjac` differentiates it in the tangent space (6 columns per pose).
    """

    def __init__(self, T_target_source=None, *, batch: tuple[int, ...] = (), dtype=torch.float64, device=None):
        super().__init__()
        if T_target_source is None:
            T = pp.identity_SE3(*batch, dtype=dtype, device=device)
        else:
            T = as_SE3(T_target_source, name="T_target_source")
        self.T = pp.Parameter(T.clone())

    def forward(self, points: Tensor) -> Tensor:
        """Points ``(*batch, N, 3)`` (or ``(*batch, 3)``) in the target frame.  ``points`` come in
        the transform's dtype and device (``.to()`` the module or the points), with a batch shape
        that broadcasts against the transform's."""
        if not isinstance(points, Tensor) or points.shape[-1:] != (3,):
            raise ValueError(f"points: expected a tensor of shape (..., 3), got {_described(points)}")
        if points.dtype != self.T.dtype or points.device != self.T.device:
            raise ValueError(f"points: expected {self.T.dtype} on {self.T.device} (the transform's; .to() the module "
                             f"or the points), got {points.dtype} on {points.device}")
        T = self.T.unsqueeze(-2) if points.dim() > self.T.dim() else self.T
        try:
            torch.broadcast_shapes(T.shape[:-1], points.shape[:-1])
        except RuntimeError:
            raise ValueError(f"points: shape {tuple(points.shape)} does not broadcast against the transform's batch "
                             f"shape {tuple(self.T.shape[:-1])}") from None
        return T.Act(points)

    def matrix(self) -> Tensor:
        """``T`` as ``(*batch, 4, 4)`` matrices (detached)."""
        return self.T.detach().matrix()
