"""Robust kernels for least squares: ``cost = 0.5 * sum rho(s)`` with ``s = |r|^2`` whitened.

Each kernel gives ``rho(s)`` (the cost of a squared residual) and the IRLS weight
``w(s) = rho'(s)`` that iteratively reweighted Gauss-Newton applies to the residual's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .._config import check_real

__all__ = ["RobustKernel", "KERNELS"]

KERNELS = ("none", "huber", "cauchy", "geman_mcclure", "tukey", "dcs")
KernelName = Literal["none", "huber", "cauchy", "geman_mcclure", "tukey", "dcs"]


@dataclass(frozen=True)
class RobustKernel:
    """A robust kernel and its scale ``k`` (in whitened residual units, so ``k = 1`` is one sigma).

    * ``huber``: quadratic below ``k``, linear above.
    * ``cauchy``: ``k^2 log(1 + s / k^2)``.
    * ``geman_mcclure``: ``s k^2 / (k^2 + s)``, bounded.
    * ``tukey``: biweight, zero weight beyond ``k``.
    * ``dcs``: dynamic covariance scaling (Agarwal et al. 2013) with ``Phi = k^2``: each
      residual is scaled by ``min(1, 2 Phi / (Phi + s))``, i.e. the M-estimator
      ``rho(s) = s`` below ``Phi`` and ``3 Phi - 4 Phi^2 / (Phi + s)`` above.
    """

    name: KernelName = "none"
    scale: float = 1.0

    def __post_init__(self):
        if self.name not in KERNELS:
            raise ValueError(f"kernel: expected one of {KERNELS}, got {self.name!r}")
        check_real("RobustKernel", "scale", self.scale, positive=True)

    def rho(self, s: Tensor) -> Tensor:
        k2 = self.scale**2
        if self.name == "none":
            return s
        if self.name == "huber":
            root = torch.sqrt(s.clamp_min(0))
            return torch.where(s <= k2, s, 2 * self.scale * root - k2)
        if self.name == "cauchy":
            return k2 * torch.log1p(s / k2)
        if self.name == "geman_mcclure":
            return s * k2 / (k2 + s)
        if self.name == "tukey":
            return torch.where(s <= k2, k2 / 3 * (1 - (1 - s / k2) ** 3), torch.full_like(s, k2 / 3))
        # dcs: the M-estimator whose IRLS weight is the squared DCS scale min(1, 2 Phi / (Phi + s))^2
        return torch.where(s <= k2, s, 3 * k2 - 4 * k2 * k2 / (k2 + s))

    @property
    def weight_can_vanish(self) -> bool:
        """Whether :meth:`weight` reaches zero at a finite residual (Tukey's beyond its scale):
        a residual may then weigh nothing, and so may a variable (see ``Problem.unweighed``)."""
        return self.name == "tukey"

    def row_weights(self, r: Tensor) -> Tensor | None:
        """IRLS weights ``w(|r|^2)`` of residual rows ``r (..., m)``, one per row, or ``None``
        without a kernel (every row weighs 1: callers skip the product).  The one place the
        solvers take their robust weights from."""
        return None if self.name == "none" else self.weight(r.square().sum(-1))

    def weight(self, s: Tensor) -> Tensor:
        k2 = self.scale**2
        if self.name == "none":
            return torch.ones_like(s)
        if self.name == "huber":
            return torch.where(s <= k2, torch.ones_like(s), self.scale / torch.sqrt(s.clamp_min(k2)))
        if self.name == "cauchy":
            return 1 / (1 + s / k2)
        if self.name == "geman_mcclure":
            return (k2 / (k2 + s)) ** 2
        if self.name == "tukey":
            return torch.where(s <= k2, (1 - s / k2) ** 2, torch.zeros_like(s))
        return torch.clamp(2 * k2 / (k2 + s), max=1.0) ** 2  # dcs: the scaled residual's weight
