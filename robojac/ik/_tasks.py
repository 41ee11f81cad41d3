"""Tasks of whole-body IK as factors of the solver engine: frames at targets, the centre of mass
over a point.  ``solve`` places frames; these let a problem hold more (a humanoid's balance, a
gaze, several configurations of one trajectory) on :func:`robojac.optim.solve`, each with its
Jacobian in closed form from the chain's.

A residual here reads configurations ``Q (B, F, dof)`` (``F`` factors per problem, each reading
one entry of a ``Variable("Rn", (B, N, dof))``) and its data with the same leading ``(B, F)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._config import check_instance
from ..kinematics import Chain
from ._frames import FramesResidual

__all__ = ["CenterOfMassTask", "FramesTask"]

_AXES = {"x": 0, "y": 1, "z": 2}


def _weight(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}.{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _configurations(owner: str, chain: Chain, Q: Tensor) -> Tensor:
    if not isinstance(Q, Tensor) or Q.dim() != 3 or Q.shape[-1] != chain.dof:
        got = f"shape {tuple(Q.shape)}" if isinstance(Q, Tensor) else type(Q).__name__
        raise ValueError(f"{owner}: expected configurations (B, F, {chain.dof}), got {got}")
    return Q


def _data(owner: str, name: str, value: Tensor, Q: Tensor, tail: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor) or tuple(value.shape) != tuple(Q.shape[:2]) + tail:
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{owner}: expected {name} {tuple(Q.shape[:2]) + tail} (the configurations' (B, F) "
                         f"first), got {got}")
    return value


class FramesTask:
    """Frames of a chain at targets: ``(Q (B, F, dof), T (B, F, K, 7)) -> (B, F, 6 K)``, the
    weighted errors ``[w_p (p* - p); w_o Log(R* R^T)]`` of each frame (``solve``'s error), with
    the Jacobian ``[-w_p J_v; -w_o Jr^-1 J_w]`` from the chain's geometric one.

    ``position_only``: one bool, or one per frame; such a frame's target rotation is not read
    and its rotation rows are zero.  ``weights``: one per frame (default 1), multiplying
    ``position_weight`` and ``orientation_weight``.  Use it as
    ``optim.Factor(FramesTask(chain, frames), [q], data=(T,))``."""

    def __init__(self, chain: Chain, frames: Sequence[str], *, position_only: bool | Sequence[bool] = False,
                 position_weight: float = 1.0, orientation_weight: float = 1.0, weights: Sequence[float] | None = None):
        check_instance("chain", chain, Chain, "a robojac Chain")
        if isinstance(frames, str) or not isinstance(frames, Sequence) or not frames:
            raise ValueError(f"FramesTask.frames: expected a non-empty sequence of frame names, got {frames!r}")
        for f in frames:
            chain._frame_index(f)  # a frame that does not exist is refused, naming the candidates
        K = len(frames)
        flags = [position_only] * K if isinstance(position_only, bool) else list(position_only)
        if len(flags) != K or not all(isinstance(b, bool) for b in flags):
            raise ValueError(f"FramesTask.position_only: expected a bool or {K} bools (one per frame), "
                             f"got {position_only!r}")
        scale = [1.0] * K if weights is None else [_weight("FramesTask", "weights", w) for w in weights]
        if len(scale) != K:
            raise ValueError(f"FramesTask.weights: expected {K} weights (one per frame), got {len(scale)}")
        w_p = _weight("FramesTask", "position_weight", position_weight)
        w_o = _weight("FramesTask", "orientation_weight", orientation_weight)
        self.chain, self.frames, self.position_only = chain, tuple(frames), tuple(flags)
        self._w = torch.tensor([[s * w_p] * 3 + [0.0 if p else s * w_o] * 3 for s, p in zip(scale, flags)],
                               dtype=torch.float64, device="cpu")  # (K, 6)
        self._flags = torch.tensor(flags, device="cpu")

    def _residual(self, Q: Tensor) -> FramesResidual:
        """``ik.solve``'s factor of these frames over every joint, for the rows of ``Q``."""
        dev = Q.device
        q = Q.new_empty(0, self.chain.dof)
        drive = torch.arange(self.chain.dof, device=dev)
        return FramesResidual(self.chain, self.frames, q, drive, self._w.to(dtype=Q.dtype, device=dev),
                              self._flags.to(dev), exact=True)

    def __call__(self, Q: Tensor, T: Tensor) -> Tensor:
        Q = _configurations("FramesTask", self.chain, Q)
        T = _data("FramesTask", "targets T", T, Q, (len(self.frames), 7))
        B, F = Q.shape[:2]
        r = self._residual(Q)(Q.reshape(B * F, 1, -1), T.reshape(B * F, 1, len(self.frames), 7))
        return r.reshape(B, F, -1)

    def value_and_jacobians(self, Q: Tensor, T: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        Q = _configurations("FramesTask", self.chain, Q)
        T = _data("FramesTask", "targets T", T, Q, (len(self.frames), 7))
        B, F = Q.shape[:2]
        r, (J,) = self._residual(Q).value_and_jacobians(Q.reshape(B * F, 1, -1),
                                                        T.reshape(B * F, 1, len(self.frames), 7))
        return r.reshape(B, F, -1), (J.reshape(B, F, -1, self.chain.dof),)


class CenterOfMassTask:
    """A chain's centre of mass over a point: ``(Q (B, F, dof), c (B, F, A)) -> (B, F, A)``, the
    weighted difference ``w (c(q) - c*)`` along the ``axes`` (``"xy"``, the default: its ground
    point, a standing robot's balance; ``"xyz"``, ``"z"``, ...), in the chain's root frame, with
    the Jacobian from :meth:`~robojac.kinematics.Chain.center_of_mass_and_jacobian`.  Use it as
    ``optim.Factor(CenterOfMassTask(chain), [q], data=(c,))``."""

    def __init__(self, chain: Chain, axes: str = "xy", *, weight: float = 1.0):
        check_instance("chain", chain, Chain, "a robojac Chain")
        if not isinstance(axes, str) or not axes or any(a not in _AXES for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"CenterOfMassTask.axes: expected some of 'x', 'y', 'z', each once (as 'xy'), "
                             f"got {axes!r}")
        if not chain.mass > 0:  # (an MJCF's masses left to geoms are refused here, by name)
            raise ValueError(f"CenterOfMassTask.chain: chain {chain.name!r} has no mass: none of its links has an "
                             "Inertial")
        self.chain, self.axes, self.weight = chain, axes, _weight("CenterOfMassTask", "weight", weight)
        self._rows = [_AXES[a] for a in axes]

    def __call__(self, Q: Tensor, c: Tensor) -> Tensor:
        Q = _configurations("CenterOfMassTask", self.chain, Q)
        c = _data("CenterOfMassTask", "points c", c, Q, (len(self.axes),))
        return self.weight * (self.chain.center_of_mass(Q)[..., self._rows] - c)

    def value_and_jacobians(self, Q: Tensor, c: Tensor) -> tuple[Tensor, tuple[Tensor]]:
        Q = _configurations("CenterOfMassTask", self.chain, Q)
        c = _data("CenterOfMassTask", "points c", c, Q, (len(self.axes),))
        com, J = self.chain.center_of_mass_and_jacobian(Q)
        return self.weight * (com[..., self._rows] - c), (self.weight * J[..., self._rows, :],)
