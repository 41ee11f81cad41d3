"""Mass and centre of mass: each link's :class:`Inertial`, the whole chain's centre of mass and its
Jacobian.

The centre of mass of the links a chain holds, in the root frame: ``c = sum_i m_i X_i l_i / M``
with ``X_i`` link ``i``'s pose, ``l_i`` its centre of mass in its own frame and ``M`` the chain's
mass.  Its Jacobian is written per joint, not per link: joint ``g`` (axis ``z_g`` through
``p_g`` in the root frame) moves every link below it, so its column is
``z_g x (W_g - M_g p_g) / M`` for a revolute joint and ``M_g z_g / M`` for a prismatic one, with
``M_g`` the mass below ``g`` and ``W_g`` the sum of ``m_i c_i`` there.  One forward-kinematics
pass gives the poses and axes; the sums below each joint are one product with a constant
``(joints, links)`` matrix.  (Pinocchio's ``jacobianCenterOfMass`` is written the same way, a
subtree sum per joint.)  Mimic joints add their column, times their factor, to their source's.

Unlike Pinocchio's ``centerOfMass`` of a fixed-base model, which leaves out the root link (its
"universe" body), the root link's mass counts here: a humanoid's pelvis weighs 13.5 of TALOS'
90.3 kg, and balancing is about all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from ._fk import PRISMATIC, REVOLUTE, fold_columns

__all__ = ["Inertial", "check_inertials", "known_mass", "mass_constants", "center_of_mass", "center_of_mass_and_jacobian"]


@dataclass(frozen=True)
class Inertial:
    """A link's mass and where it sits: ``mass`` in kg (at least 0) and ``com``, the centre of
    mass in metres in the link's own frame (a URDF ``<inertial>``'s ``origin xyz``, an MJCF
    ``<inertial>``'s ``pos``).  The rotational inertia is not kept: nothing here uses it."""

    mass: float
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        try:
            mass, com = float(self.mass), tuple(float(v) for v in self.com)
        except (TypeError, ValueError):
            raise TypeError(f"Inertial: expected a number mass and three numbers com, got {self.mass!r}, "
                            f"{self.com!r}") from None
        if not math.isfinite(mass) or mass < 0:
            raise ValueError(f"Inertial: expected a finite mass of at least 0 kg, got {mass}")
        if len(com) != 3 or not all(math.isfinite(v) for v in com):
            raise ValueError(f"Inertial: expected com as three finite numbers (m, in the link's frame), got {com}")
        object.__setattr__(self, "mass", mass)
        object.__setattr__(self, "com", com)


def check_inertials(inertials, frames: tuple[str, ...]) -> dict[str, Inertial]:
    """``{link: Inertial}`` of the ``frames`` named, refused by name where a key is no frame or a
    value no :class:`Inertial`."""
    if inertials is None:
        return {}
    if not isinstance(inertials, Mapping):
        raise TypeError(f"inertials: expected a mapping {{link name: Inertial}}, got {type(inertials).__name__}")
    unknown = [k for k in inertials if k not in frames]
    if unknown:
        raise ValueError(f"inertials: {unknown} name no frame of the chain; frames: {list(frames)}")
    for k, v in inertials.items():
        if not isinstance(v, Inertial):
            raise TypeError(f"inertials[{k!r}]: expected a robojac Inertial, got {type(v).__name__}")
    return dict(inertials)


def mass_constants(frames: tuple[str, ...], inertials: dict[str, Inertial]) -> tuple[Tensor, Tensor]:
    """``(masses (F,), centres (F, 3))`` per frame, float64 on the CPU (zero where a frame has none)."""
    on_cpu = dict(dtype=torch.float64, device="cpu")
    m = torch.tensor([inertials[f].mass if f in inertials else 0.0 for f in frames], **on_cpu)
    c = torch.tensor([inertials[f].com if f in inertials else (0.0, 0.0, 0.0) for f in frames], **on_cpu)
    return m, c.reshape(len(frames), 3)


def _layout(chain) -> tuple[list[int], list[int], list[float], Tensor]:
    """``(links, joints, mass below each joint, below (joints, links))``: the frames with mass,
    the movable frames above any of them, and ``below[g, i] = m_i`` where link ``i`` hangs below
    joint ``g`` (float64, on the CPU).  The tree and its masses never change: once per chain."""
    found = chain.__dict__.get("_mass_layout")
    if found is not None:
        return found
    prog, masses = chain._program, chain.link_masses.detach().cpu().tolist()
    links = [f for f, m in enumerate(masses) if m > 0]
    joints = sorted({g for f in links for g in chain._path(f) if prog.kind[g] in (REVOLUTE, PRISMATIC)})
    row = {g: k for k, g in enumerate(joints)}
    below = torch.zeros(len(joints), len(links), dtype=torch.float64, device="cpu")
    for i, f in enumerate(links):
        for g in chain._path(f):
            if g in row:
                below[row[g], i] = masses[f]
    found = (links, joints, below.sum(1).tolist(), below)
    chain.__dict__["_mass_layout"] = found
    return found


def known_mass(chain) -> float:
    """The chain's total mass (kg), refused while some of it is unknown (:attr:`Chain.unknown_masses`)."""
    if chain.unknown_masses:
        raise ValueError(f"the masses of {list(chain.unknown_masses)} are not known: MuJoCo takes them from their "
                         "geoms (no <inertial>), which this reader does not measure; give those bodies an <inertial>")
    return float(chain.link_masses.sum())


def _total(chain) -> float:
    M = known_mass(chain)
    if M <= 0:
        raise ValueError(f"chain {chain.name!r} has no mass: none of its links has an Inertial (a URDF <inertial>, "
                         "an MJCF <inertial>, or Chain(..., inertials=))")
    return M


def _centres(chain, ev, links: list[int], dtype, device) -> Tensor:
    """``(B, L, 3)``: each link's centre of mass in the root frame, from the pass ``ev``."""
    X = ev.stack(links).permute(2, 0, 1)  # (B, L, 7)
    local = chain.link_coms.to(dtype=dtype, device=device)[links]
    return lie.se3_act(X, local)


def center_of_mass(chain, q: Tensor) -> Tensor:
    """``(..., 3)``: the chain's centre of mass in the root frame for configurations ``q``."""
    M = _total(chain)
    links, _, _, _ = _layout(chain)
    ev = chain._evaluate(q, links, [])
    c = _centres(chain, ev, links, q.dtype, q.device)
    m = chain.link_masses.to(dtype=q.dtype, device=q.device)[links]
    return ((m[:, None] * c).sum(-2) / M).reshape(ev.batch + (3,))


def center_of_mass_and_jacobian(chain, q: Tensor) -> tuple[Tensor, Tensor]:
    """``(c (..., 3), J (..., 3, dof))``: the centre of mass and its Jacobian ``dc/dq`` from one pass."""
    M = _total(chain)
    links, joints, below_mass, below = _layout(chain)
    ev = chain._evaluate(q, links, [], axes=links)
    dt, dev = q.dtype, q.device
    c = _centres(chain, ev, links, dt, dev)  # (B, L, 3)
    m = chain.link_masses.to(dtype=dt, device=dev)[links]
    com = (m[:, None] * c).sum(-2) / M
    if not joints:
        return com.reshape(ev.batch + (3,)), c.new_zeros(ev.batch + (3, chain.dof))
    Z = torch.stack([ev.axis(g) for g in joints])  # (n, 3, B)
    P = torch.stack([ev.pose(g)[:3] for g in joints])  # (n, 3, B)
    Mg = torch.tensor(below_mass, dtype=dt, device=dev)[:, None, None]
    W = torch.einsum("gi,bic->gcb", below.to(dtype=dt, device=dev), c)  # (n, 3, B): sum of m_i c_i below g
    cols = torch.linalg.cross(Z, W - Mg * P, dim=1)
    prismatic = torch.tensor([chain._program.kind[g] == PRISMATIC for g in joints], device=dev)[:, None, None]
    cols = torch.where(prismatic, Mg * Z, cols) / M
    rows = torch.tensor([chain._program.slot[g] for g in joints], device=dev)
    J = fold_columns(chain._consts(dt, dev), cols.permute(2, 1, 0), rows, chain.dof)  # (B, 3, dof)
    return com.reshape(ev.batch + (3,)), J.reshape(ev.batch + (3, chain.dof))
