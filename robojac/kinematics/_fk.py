"""Batched forward kinematics and geometric Jacobians of a kinematic tree.

The batch is laid out structure-of-arrays: a frame's quaternions are ``(4, B)`` and its
translations ``(3, B)``.  Every per-frame step is then a handful of large, contiguous ops:

* rotation: ``q_child = q_parent (x) q_origin (x) Exp(theta a)``.  For a revolute joint this is
  ``cos(theta/2) q_parent (x) Q1 + sin(theta/2) q_parent (x) Q2`` with constants
  ``Q1 = q_origin`` and ``Q2 = q_origin (x) [a, 0]``: one ``(8, 4) @ (4, B)`` matmul.
* translation: ``t_child = t_parent + R(q_parent) t_origin``, and ``R(q) v`` is a quadratic form
  in ``q``: one ``(3, 16) @ (16, B)`` matmul on the parent's monomials ``q_i q_j``.  Frames are
  visited grouped by parent, so each parent's monomials are computed once into one buffer.
* prismatic joints add ``theta R(q_child) a``, the same form on the child's monomials.

The Jacobian column of a revolute joint ``j`` at frame ``f`` is ``[z_j x (p_f - p_j); z_j]`` with
``z_j = R(q_j) a_j`` (again the quadratic form); a prismatic joint's is ``[z_j; 0]``.  Mimic
joints map onto the actuated columns through the constant matrix ``d theta / d q``.

Without autograd, a :class:`Plan` holds a workspace for one batch size (reused from call to
call: fresh multi-megabyte buffers cost more in page faults than the arithmetic) and every
view the loop needs, so a call is a flat sequence of ``out=`` ops.  With autograd the same
loop allocates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from ._joint import JointType
from ._tree import TreeLayout

ROOT, FIXED, REVOLUTE, PRISMATIC = 0, 1, 2, 3


@dataclass(frozen=True)
class Program:
    """A tree compiled to Python structure (the loop) and float64 constants (buffers)."""

    kind: tuple[int, ...]  # ROOT / FIXED / REVOLUTE / PRISMATIC per frame
    slot: tuple[int, ...]  # row of theta driving each frame's joint (-1 if fixed)
    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    constants: dict[str, Tensor]
    identity_map: bool  # theta == q (no mimic joints): Jacobian columns need no mapping
    dof: int = 0  # actuated joints (the columns of q)

    @property
    def num_frames(self) -> int:
        return len(self.kind)


def compile_program(tree: TreeLayout) -> Program:
    F = len(tree.frames)
    kind, slot = [ROOT], [-1]
    index = {j.name: k for k, j in enumerate(tree.actuated)}
    rows = []  # (actuated index, multiplier, offset) per theta row
    for f in range(1, F):
        j = tree.joint_of[f]
        if j.type is JointType.FIXED:
            kind.append(FIXED)
            slot.append(-1)
            continue
        kind.append(REVOLUTE if j.type.rotational else PRISMATIC)
        slot.append(len(rows))
        if j.mimic is None:
            rows.append((index[j.name], 1.0, 0.0))
        else:
            src, mult, off = tree.mimic[j.name]
            rows.append((index[src], mult, off))
    # the constants of every frame at once (a loop of small ops per joint took seconds at 10,000 joints)
    on_cpu = dict(dtype=torch.float64, device="cpu")
    RQ = torch.zeros(F, 8, 4, **on_cpu)
    WT = torch.zeros(F, 3, 16, **on_cpu)
    WZ = torch.zeros(F, 3, 16, **on_cpu)
    if F > 1:
        origins = torch.stack([tree.joint_of[f].origin for f in range(1, F)])  # (F - 1, 7)
        axes = torch.tensor([tree.joint_of[f].axis for f in range(1, F)], **on_cpu)
        RQ[1:], WT[1:] = origin_constants(origins, axes, torch.tensor(kind[1:], device="cpu"))
        moving = torch.tensor([k != FIXED for k in kind[1:]], device="cpu")
        WZ[1:][moving] = lie.quat_rotation_form(axes[moving])
    dof = len(tree.actuated)
    # theta[r] = mult[r] q[src[r]] + offset[r]: one row per movable joint (a mimic joint reads its
    # source); kept as index, factor and offset, linear in the joints (a dense rows x dof map was
    # 800 MB for a 10,000-joint chain)
    theta_src = torch.tensor([k for k, _, _ in rows], dtype=torch.long, device="cpu")
    theta_mult = torch.tensor([[m] for _, m, _ in rows], dtype=torch.float64, device="cpu").reshape(-1, 1)
    theta_offset = torch.tensor([[o] for _, _, o in rows], dtype=torch.float64, device="cpu").reshape(-1, 1)
    children = [[] for _ in range(F)]
    for f in range(1, F):
        children[tree.parent[f]].append(f)
    identity = [k for k, _, _ in rows] == list(range(dof)) and all(m == 1.0 and o == 0.0 for _, m, o in rows)
    constants = dict(RQ=RQ, WT=WT, WZ=WZ, theta_src=theta_src, theta_mult=theta_mult, theta_offset=theta_offset)
    return Program(tuple(kind), tuple(slot), tuple(tree.parent), tuple(tuple(c) for c in children), constants, identity,
                   dof)


def origin_constants(origins: Tensor, axes: Tensor, kinds: Tensor) -> tuple[Tensor, Tensor]:
    """``(RQ (K, 8, 4), WT (K, 3, 16))`` of joints with ``origins (K, 7)``, ``axes (K, 3)`` and
    ``kinds (K,)``: the rotation matrices ``[q_origin (x); q_origin (x) [a, 0] (x)]`` (the second
    for revolute joints only) and the rotation form of the origin's translation.  Differentiable
    in the origins: a chain whose origins are parameters rebuilds its rows with it."""
    top = lie.quat_product_matrix(origins[:, 3:])
    pure = torch.cat((axes, axes.new_zeros(axes.shape[0], 1)), -1)  # the axis as a quaternion
    bottom = lie.quat_product_matrix(lie.quat_mul(origins[:, 3:], pure))
    bottom = torch.where((kinds == REVOLUTE)[:, None, None], bottom, torch.zeros_like(bottom))
    return torch.cat((top, bottom), -2), lie.quat_rotation_form(origins[:, :3])


def axis_frames(prog: Program, jac_frames) -> set[int]:
    """The movable frames on the paths from the root to ``jac_frames``: whose joint axes the
    Jacobians of those frames need."""
    need = set()
    for f in jac_frames:
        g = f
        while g > 0:
            if prog.kind[g] in (REVOLUTE, PRISMATIC):
                need.add(g)
            g = prog.parent[g]
    return need


class Plan:
    """Buffers and views for one batch size, dtype and device; reused while they match.

    ``frames`` is the set of frames computed (ancestors included).  ``soa`` holds every
    computed frame's pose as ``(F, 7, B)`` (translation rows then quaternion rows).
    """

    def __init__(self, prog: Program, C: dict[str, Tensor], B: int, frames: list[int], jac_frames: list[int],
                 axis_of: list[int] = ()):
        self.prog, self.B, self.dof = prog, B, prog.dof
        dt, dev = C["RQ"].dtype, C["RQ"].device
        F = prog.num_frames
        n = C["theta_src"].shape[0]
        self.soa = torch.zeros(F, 7, B, dtype=dt, device=dev)
        self.soa[0, 6] = 1.0
        self.P = torch.empty(8, B, dtype=dt, device=dev)
        self.m = torch.empty(4, 4, B, dtype=dt, device=dev)
        self.m2 = self.m.view(16, B)
        self.theta = torch.empty(n, B, dtype=dt, device=dev)
        self.half = torch.empty(n, B, dtype=dt, device=dev)
        self.cos = torch.empty(n, B, dtype=dt, device=dev)
        self.sin = torch.empty(n, B, dtype=dt, device=dev)
        self.tmp3 = torch.empty(3, B, dtype=dt, device=dev)
        self.Z = torch.zeros(3, max(n, 1), B, dtype=dt, device=dev)  # joint axes in the root frame
        self.C = C
        wanted = set(frames)
        needs_axis = axis_frames(prog, list(jac_frames) + list(axis_of))  # axis_of: axes above these too
        self.axis_frames = needs_axis
        self.jac = {}
        for f in jac_frames:  # per Jacobian frame: its columns and a (6, n, B) buffer
            g, cols = f, []
            while g > 0:
                if prog.kind[g] in (REVOLUTE, PRISMATIC):
                    cols.append(g)
                g = prog.parent[g]
            cols = cols[::-1]
            slots = [prog.slot[g] for g in cols]
            Jn = torch.empty(6, len(cols), B, dtype=dt, device=dev)
            prism = [i for i, g in enumerate(cols) if prog.kind[g] == PRISMATIC]
            direct = slots == list(range(n)) and len(jac_frames) == 1
            if direct:  # a serial chain: the FK pass writes the axes straight into the Jacobian
                self.Z = Jn[3:]
            self.jac[f] = (cols, slots, prism, Jn, direct, torch.empty(3, B, dtype=dt, device=dev))
        # the flat program: per parent, its views and its children's steps
        self.steps = []
        parents = sorted({prog.parent[f] for f in wanted if f > 0} | (needs_axis & wanted))
        for p in parents:
            kids = []
            for f in prog.children[p]:
                if f not in wanted:
                    continue
                k = prog.slot[f]
                kids.append((prog.kind[f], C["WT"][f], C["RQ"][f], C["RQ"][f, :4], C["WZ"][f],
                             self.soa[f, 3:], self.soa[f, :3],
                             self.cos[k] if k >= 0 else None, self.sin[k] if k >= 0 else None,
                             self.theta[k] if k >= 0 else None))
            axis = (C["WZ"][p], self.Z[:, prog.slot[p]]) if p in needs_axis else None
            self.steps.append((self.soa[p, 3:], self.soa[p, :3], kids, axis))
        buffers = [self.soa, self.P, self.m, self.theta, self.half, self.cos, self.sin, self.tmp3, self.Z]
        buffers += [t for v in self.jac.values() for t in (v[3], v[5])]
        seen = {}
        for t in buffers:  # views share storage: count each storage once
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        self.nbytes = sum(seen.values())

    def run(self, q: Tensor) -> None:
        """Fill ``soa`` (and the joint axes) for configurations ``q`` of shape ``(B, dof)``."""
        C = self.C
        if self.prog.identity_map:
            self.theta.copy_(q.T)
        else:
            torch.index_select(q.T, 0, C["theta_src"], out=self.theta)
            torch.addcmul(C["theta_offset"], self.theta, C["theta_mult"], out=self.theta)
        torch.mul(self.theta, 0.5, out=self.half)
        torch.cos(self.half, out=self.cos)
        torch.sin(self.half, out=self.sin)
        m, m2, P = self.m, self.m2, self.P
        for qp, tp, kids, axis in self.steps:
            torch.mul(qp.unsqueeze(1), qp.unsqueeze(0), out=m)
            if axis is not None:
                torch.matmul(axis[0], m2, out=axis[1])
            for kind, WT, RQ, RQ4, WZ, qf, tf, c, s, th in kids:
                torch.addmm(tp, WT, m2, out=tf)
                if kind == REVOLUTE:
                    torch.matmul(RQ, qp, out=P)
                    torch.mul(P[:4], c, out=qf)
                    qf.addcmul_(P[4:], s)
                else:
                    torch.matmul(RQ4, qp, out=qf)
                    if kind == PRISMATIC:
                        mf = (qf.unsqueeze(1) * qf.unsqueeze(0)).reshape(16, -1)
                        tf.addcmul_(torch.matmul(WZ, mf, out=self.tmp3), th)


def transpose_into(dst: Tensor, src: Tensor, block: int = 4096) -> Tensor:
    """``dst (B, R) <- src (R, B)^T``, in column blocks (a wide transpose is cache-bound)."""
    B = src.shape[-1]
    if B <= 2 * block:
        return dst.copy_(src.T)
    for i in range(0, B, block):
        dst[i : i + block].copy_(src[:, i : i + block].T)
    return dst


def plan_jacobian(plan: Plan, f: int, local: bool) -> Tensor:
    """``(B, 6, dof)`` Jacobian of frame ``f`` from a plan that has run (columns ``[v; w]``)."""
    prog, C = plan.prog, plan.C
    cols, slots, prism, Jn, direct, d = plan.jac[f]
    dof = plan.dof
    B, n = plan.B, len(cols)
    if not cols:
        return Jn.new_zeros(B, 6, dof)
    if not direct:
        for i, k in enumerate(slots):
            Jn[3:, i].copy_(plan.Z[:, k])
    Z, lin, tf = Jn[3:], Jn[:3], plan.soa[f, :3]
    if B <= 256:  # tiny batches: one vectorised cross product has the least overhead
        D = tf.unsqueeze(1) - plan.soa[cols, :3].transpose(0, 1)
        torch.linalg.cross(Z, D, dim=0, out=lin)
        cols_loop = ()
    else:  # wide batches: row by row, in place (linalg.cross is slow on this layout)
        cols_loop = cols
    for i, g in enumerate(cols_loop):  # lin_i = z_i x (p_f - p_i)
        torch.sub(tf, plan.soa[g, :3], out=d)
        z = Z[:, i]
        li = lin[:, i]
        torch.mul(z[1], d[2], out=li[0])
        li[0].addcmul_(z[2], d[1], value=-1.0)
        torch.mul(z[2], d[0], out=li[1])
        li[1].addcmul_(z[0], d[2], value=-1.0)
        torch.mul(z[0], d[1], out=li[2])
        li[2].addcmul_(z[1], d[0], value=-1.0)
    for i in prism:
        lin[:, i].copy_(Z[:, i])
        Z[:, i].zero_()
    J = torch.empty(B, 6, n, dtype=Jn.dtype, device=Jn.device)
    transpose_into(J.view(B, 6 * n), Jn.view(6 * n, B))
    if local:
        Rt = lie.quat_to_matrix(plan.soa[f, 3:].T).transpose(-1, -2)  # (B, 3, 3)
        J = torch.cat((Rt @ J[:, :3], Rt @ J[:, 3:]), dim=1)
    if prog.identity_map and n == dof and slots == list(range(dof)):
        return J
    return fold_columns(C, J, torch.tensor(slots, device=J.device), dof)


def theta_of(C: dict[str, Tensor], q: Tensor) -> Tensor:
    """Every movable joint's value ``(n, B)`` for configurations ``q (B, dof)`` (mimic relations applied)."""
    return q.T.index_select(0, C["theta_src"]) * C["theta_mult"] + C["theta_offset"]


def fold_columns(C: dict[str, Tensor], J: Tensor, rows: Tensor, dof: int) -> Tensor:
    """``(..., dof)`` Jacobian columns of the actuated joints from ``J (..., n)``, whose column ``i``
    belongs to theta row ``rows[i]``: a mimic joint's column, times its factor, is added to its
    source's (the chain rule through ``theta = mult q[src] + offset``)."""
    out = J.new_zeros(J.shape[:-1] + (dof,))
    return out.index_add_(-1, C["theta_src"][rows], J * C["theta_mult"][rows, 0])


def run_autograd(prog: Program, C: dict[str, Tensor], q: Tensor, frames: list[int], jac_frames: list[int],
                 axis_of: list[int] = ()):
    """The same computation without ``out=`` (so autograd flows): ``(poses, axes)`` dicts (axes
    above ``jac_frames`` and ``axis_of``).

    ``poses[f]`` is ``(7, B)``; ``axes[f]`` the ``(3, B)`` root-frame axis of movable frame ``f``.
    """
    B = q.shape[0]
    theta = theta_of(C, q)
    half = 0.5 * theta
    cos, sin = torch.cos(half), torch.sin(half)
    one = C["RQ"].new_zeros(7, 1)
    one[6] = 1.0
    qs, ts = {0: one[3:].expand(4, B)}, {0: one[:3].expand(3, B)}
    axes = {}
    wanted = set(frames)
    need_axis = axis_frames(prog, list(jac_frames) + list(axis_of))
    for p in sorted({prog.parent[f] for f in wanted if f > 0} | (need_axis & wanted)):
        qp = qs[p]
        m = (qp.unsqueeze(1) * qp.unsqueeze(0)).reshape(16, B)
        if p in need_axis:
            axes[p] = C["WZ"][p] @ m
        for f in prog.children[p]:
            if f not in wanted:
                continue
            kind, k = prog.kind[f], prog.slot[f]
            t = torch.addmm(ts[p], C["WT"][f], m)
            if kind == REVOLUTE:
                P = C["RQ"][f] @ qp
                qf = P[:4] * cos[k] + P[4:] * sin[k]
            else:
                qf = C["RQ"][f, :4] @ qp
                if kind == PRISMATIC:
                    mf = (qf.unsqueeze(1) * qf.unsqueeze(0)).reshape(16, B)
                    t = t + (C["WZ"][f] @ mf) * theta[k]
            qs[f], ts[f] = qf, t
    for g in need_axis - set(axes):  # movable frames with no computed children
        m = (qs[g].unsqueeze(1) * qs[g].unsqueeze(0)).reshape(16, B)
        axes[g] = C["WZ"][g] @ m
    poses = {f: torch.cat((ts[f], qs[f]), dim=0) for f in qs}
    return poses, axes


def jacobian_from(prog: Program, C: dict[str, Tensor], f: int, path: list[int], pos, axis, local_quat) -> Tensor:
    """``(B, 6, dof)`` Jacobian of frame ``f`` from joint positions/axes (``(3, B)`` each)."""
    cols = [g for g in path if prog.kind[g] in (REVOLUTE, PRISMATIC)]
    dof = prog.dof
    B = pos(f).shape[-1]
    if not cols:
        return C["RQ"].new_zeros(B, 6, dof)
    Z = torch.stack([axis(g) for g in cols])  # (n, 3, B)
    P = torch.stack([pos(g) for g in cols])
    lin = torch.linalg.cross(Z, pos(f).unsqueeze(0) - P, dim=1)
    prismatic = [i for i, g in enumerate(cols) if prog.kind[g] == PRISMATIC]
    ang = Z
    if prismatic:
        mask = torch.zeros(len(cols), 1, 1, dtype=torch.bool, device=Z.device)
        mask[prismatic] = True
        lin = torch.where(mask, Z, lin)
        ang = torch.where(mask, torch.zeros_like(Z), Z)
    Jj = torch.cat((lin, ang), dim=1)  # (n, 6, B)
    if prog.identity_map and len(cols) == dof and [prog.slot[g] for g in cols] == list(range(dof)):
        J = Jj.permute(2, 1, 0)
    else:
        rows = torch.tensor([prog.slot[g] for g in cols], device=Z.device)
        J = fold_columns(C, Jj.permute(2, 1, 0), rows, dof)
    if local_quat is not None:
        Rt = lie.quat_to_matrix(local_quat.T).transpose(-1, -2)  # (B, 3, 3)
        J = torch.cat((Rt @ J[:, :3], Rt @ J[:, 3:]), dim=1)
    return J.contiguous()
