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
from ._fk import FIXED, PRISMATIC, REVOLUTE, fold_columns

__all__ = ["Inertial", "check_inertials", "known_mass", "mass_constants", "center_of_mass",
           "center_of_mass_and_jacobian"]


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


def _layout(chain) -> dict:
    """The constants of the centre of mass, float64 on the CPU, once per chain (its tree and masses
    never change): ``bodies``, the frames that carry mass; ``mass (L,)`` and ``local (L, 3)``,
    each one's mass and centre in its frame; ``joints``, the movable frames above any body;
    ``below (n, L)``, ``m_i`` where body ``i`` hangs below joint ``g``; ``below_mass (n,)``.

    A link fixed to its parent (a sensor, a gripper of a reduced model) adds its mass to the
    nearest frame above it that moves, at its centre moved by the fixed origins between them:
    one pose fewer to compute each (TALOS' 60 links are 33 bodies).  A chain whose joint origins
    are parameters keeps every link, so that gradients reach those origins."""
    found = chain.__dict__.get("_mass_layout")
    if found is not None:
        return found
    prog, tree = chain._program, chain.tree
    masses, coms = chain.link_masses.detach().cpu().tolist(), chain.link_coms.detach().cpu()
    merge = not chain.origin_joints
    held: dict[int, list] = {}  # body frame -> [mass, first moment (3,)]
    for f, m in enumerate(masses):
        if m <= 0:
            continue
        g, p = f, coms[f].to(torch.float64)
        while merge and prog.kind[g] == FIXED:  # up through fixed joints: p in the parent's frame
            p = lie.se3_act(tree.joint_of[g].origin.to(torch.float64), p)
            g = prog.parent[g]
        entry = held.setdefault(g, [0.0, torch.zeros(3, dtype=torch.float64, device="cpu")])
        entry[0] += m
        entry[1] = entry[1] + m * p
    bodies = sorted(held)
    mass = torch.tensor([held[g][0] for g in bodies], dtype=torch.float64, device="cpu")
    local = (torch.stack([held[g][1] / held[g][0] for g in bodies]) if bodies
             else torch.zeros(0, 3, dtype=torch.float64, device="cpu"))
    joints = sorted({g for f in bodies for g in chain._path(f) if prog.kind[g] in (REVOLUTE, PRISMATIC)})
    row = {g: k for k, g in enumerate(joints)}
    below = torch.zeros(len(joints), len(bodies), dtype=torch.float64, device="cpu")
    for i, f in enumerate(bodies):
        for g in chain._path(f):
            if g in row:
                below[row[g], i] = mass[i]
    found = dict(bodies=bodies, mass=mass, local=local, joints=joints, below=below, below_mass=below.sum(1),
                 prismatic=torch.tensor([prog.kind[g] == PRISMATIC for g in joints], dtype=torch.bool, device="cpu"),
                 slots=torch.tensor([prog.slot[g] for g in joints], dtype=torch.long, device="cpu"), tensors={})
    chain.__dict__["_mass_layout"] = found
    return found


def _constants(chain, dtype, device) -> dict:
    """:func:`_layout`'s tensors in ``dtype`` on ``device`` (kept per dtype and device)."""
    layout = _layout(chain)
    key = (dtype, torch.device(device))
    out = layout["tensors"].get(key)
    if out is None:
        out = {k: layout[k].to(device=device, dtype=dtype if layout[k].is_floating_point() else None)
               for k in ("mass", "local", "below", "below_mass", "prismatic", "slots")}
        out["body_index"] = torch.tensor(layout["bodies"], dtype=torch.long, device=device)
        out["rotation_form"] = lie.quat_rotation_form(out["local"])  # (L, 3, 16)
        out["joint_index"] = torch.tensor(layout["joints"], dtype=torch.long, device=device)
        layout["tensors"][key] = out
    return out


def known_mass(chain) -> float:
    """The chain's total mass (kg), refused while some of it is unknown (:attr:`Chain.unknown_masses`)."""
    if chain.unknown_masses:
        raise ValueError(f"the masses of {list(chain.unknown_masses)} are not known: MuJoCo weighs their mesh, "
                         "height-field or shell geoms, which this reader does not measure; expected an <inertial> "
                         "for each of those bodies (and inertiafromgeom other than 'true')")
    return float(chain.link_masses.sum())


def _total(chain) -> float:
    M = known_mass(chain)
    if M <= 0:
        raise ValueError(f"chain {chain.name!r} has no mass: none of its links has an Inertial (a URDF <inertial>, "
                         "an MJCF <inertial>, or Chain(..., inertials=))")
    return M


def _rows(ev, frames: list[int], index: Tensor, rows: slice) -> Tensor:
    """``(F, len(rows), B)``: rows of the poses of ``frames`` from the pass ``ev``."""
    if ev.plan is not None:
        return ev.plan.soa[:, rows].index_select(0, index)
    return torch.stack([ev.pose(f)[rows] for f in frames])


def _pass(chain, q: Tensor, axes: bool):
    """``(M, constants, pass, centres (L, 3, B), centre of mass (..., 3))``: one kinematics pass
    over the bodies (with the joint axes above them when ``axes``).  Each body's centre is
    ``t + R(q) l``, where ``R(q) l`` is a quadratic form in the quaternion, ``W_l vec(q q^T)``
    (:func:`~robojac.lie.quat_rotation_form`): one batched product for every body."""
    M = _total(chain)
    K = _constants(chain, q.dtype, q.device)
    bodies = _layout(chain)["bodies"]
    ev = chain._evaluate(q, bodies, [], axes=bodies if axes else ())
    X = _rows(ev, bodies, K["body_index"], slice(0, 7))  # (L, 7, B)
    quat = X[:, 3:]
    c = torch.baddbmm(X[:, :3], K["rotation_form"], (quat.unsqueeze(2) * quat.unsqueeze(1)).flatten(1, 2))
    com = torch.einsum("l,lcb->bc", K["mass"], c) / M
    return M, K, ev, c, com.reshape(ev.batch + (3,))


def center_of_mass(chain, q: Tensor) -> Tensor:
    """``(..., 3)``: the chain's centre of mass in the root frame for configurations ``q``."""
    return _pass(chain, q, axes=False)[4]


def center_of_mass_and_jacobian(chain, q: Tensor) -> tuple[Tensor, Tensor]:
    """``(c (..., 3), J (..., 3, dof))``: the centre of mass and its Jacobian ``dc/dq`` from one pass."""
    M, K, ev, c, com = _pass(chain, q, axes=True)
    joints = _layout(chain)["joints"]
    if not joints:
        return com, c.new_zeros(ev.batch + (3, chain.dof))
    if ev.plan is not None:
        Z = ev.plan.Z.index_select(1, K["slots"]).transpose(0, 1)  # (n, 3, B)
    else:
        Z = torch.stack([ev.axis(g) for g in joints])
    P = _rows(ev, joints, K["joint_index"], slice(0, 3))  # (n, 3, B)
    Mg = K["below_mass"][:, None, None]
    W = torch.matmul(K["below"], c.flatten(1)).unflatten(1, c.shape[1:])  # (n, 3, B): sum of m_i c_i below
    cols = torch.where(K["prismatic"][:, None, None], Mg * Z, lie.cross_rows(Z, W - Mg * P)) / M
    J = fold_columns(chain._consts(q.dtype, q.device), cols.permute(2, 1, 0), K["slots"], chain.dof)  # (B, 3, dof)
    return com, J.reshape(ev.batch + (3, chain.dof))
