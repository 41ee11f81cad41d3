"""``Chain``: a kinematic tree as an ``nn.Module``, with batched FK and geometric Jacobians."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

import pypose as pp

from ._fk import Plan, compile_program, jacobian_from, origin_constants, plan_jacobian, run_autograd, transpose_into
from .. import lie
from .._threads import on_threads, torch_threads
from ..lie import wrap_lie
from ._inertial import (Inertial, center_of_mass, center_of_mass_and_jacobian, check_inertials, known_mass,
                        mass_constants)
from ._joint import Joint, JointLimits, JointType
from ._tree import TreeLayout, layout, path_joints

__all__ = ["Chain"]

Reference = Literal["world", "local"]


def _configurations(self, q, *args, **kwargs):
    """A kinematics method's work for ``robojac._threads``: ``q``'s entries.  One torch thread
    for mid-sized batches, whose ops each woke a second thread for nothing (the Panda in float32:
    forward kinematics of 1,000 configurations 0.39 ms on one thread, 2.29 ms on two; its
    Jacobian 1.21 / 3.18 ms; at 100,000, 21.6 / 19.8 ms).  Below 16 configurations nothing goes
    parallel, and the setting is left alone, without even a look at it (a lone configuration's
    200 us paid 5-10 us for the scope)."""
    if isinstance(q, Tensor) and q.numel() >= 16 * max(self.dof, 1):
        return q.numel(), q.device
    return None


_on_threads = on_threads(_configurations)


class Chain(nn.Module):
    """A kinematic tree of links (frames) connected by joints.

    Build it from joints in code (``Chain(joints)``), from a URDF (:meth:`from_urdf`), an MJCF
    (:meth:`from_mjcf`) or a DH table (:meth:`from_dh`).  The actuated joints (movable, not
    mimic) are the entries of a configuration ``q`` of shape ``(..., dof)`` in the order
    :attr:`joint_names` gives.  All
    poses are in the root frame, as pypose SE3 ``[t, qx, qy, qz, qw]``.  Constants are buffers,
    so ``.to(device)`` works; computations follow the device and dtype of ``q``.  Links may carry
    a mass (``inertials={link: Inertial}``, or a description's ``<inertial>`` elements), for
    :meth:`center_of_mass` and its Jacobian.
    """

    def __init__(self, joints: Sequence[Joint], *, links: Sequence[str] | None = None, root: str | None = None,
                 name: str = "chain", inertials: Mapping[str, Inertial] | None = None, _sources: Sequence[Joint] = (),
                 _joint_lines: dict[str, str] | None = None, _unknown_masses: Sequence[str] = ()):
        super().__init__()
        if isinstance(joints, (str, bytes)) or not isinstance(joints, Sequence):
            raise TypeError(f"joints: expected a sequence of robojac Joints, got {type(joints).__name__}")
        for k, j in enumerate(joints):
            if not isinstance(j, Joint):
                raise TypeError(f"joints[{k}]: expected a robojac Joint, got {type(j).__name__}")
        if not joints and links is None:
            raise ValueError("joints: expected at least one joint (or links= for a chain of a single frame)")
        self.name = name
        self.tree: TreeLayout = layout(list(joints), links, root, _joint_lines, _sources)
        self._inertials = check_inertials(inertials, self.tree.frames)
        self.unknown_masses: tuple[str, ...] = tuple(f for f in _unknown_masses if f in self.tree.frames)
        self._built = dict(links=links, root=root, name=name, _sources=tuple(_sources), _joint_lines=_joint_lines,
                           inertials=self._inertials, _unknown_masses=self.unknown_masses)
        self.urdf_source: tuple[str, str] | None = None  # (text, file name) of the URDF it was read from
        self.origin_joints: tuple[str, ...] = ()  # joints whose origin is the parameter joint_origins
        self.offset_joints: tuple[str, ...] = ()  # actuated joints whose offset is joint_offsets
        self.floating_joints: tuple[str, ...] = ()  # the six joints of with_floating_base, if made by it
        self._joints = tuple(joints)
        self._sources = tuple(_sources)
        self._program = compile_program(self.tree)
        for key, value in self._program.constants.items():
            self.register_buffer(key, value, persistent=False)
        act = self.tree.actuated
        on_cpu = dict(dtype=torch.float64, device="cpu")  # built on the CPU; .to() moves it
        self.register_buffer("lower", torch.tensor([j.limits.lower for j in act], **on_cpu), persistent=False)
        self.register_buffer("upper", torch.tensor([j.limits.upper for j in act], **on_cpu), persistent=False)
        self.register_buffer("velocity", torch.tensor([j.limits.velocity for j in act], **on_cpu), persistent=False)
        masses, centres = mass_constants(self.tree.frames, self._inertials)
        self.register_buffer("link_masses", masses, persistent=False)  # (F,) kg, frame_names order
        self.register_buffer("link_coms", centres, persistent=False)  # (F, 3) m, each in its own frame
        self._cache: dict = {}
        self._plans = threading.local()
        self._paths: dict[int, list[int]] = {}
        self._moving: dict[int, list[str]] = {}

    # ---- description -------------------------------------------------------------------
    @property
    def dof(self) -> int:
        """Number of actuated joints (the length of ``q``)."""
        return len(self.tree.actuated)

    @property
    def joint_names(self) -> list[str]:
        """Actuated joint names in the order of ``q`` (mimic joints are driven, not listed)."""
        return [j.name for j in self.tree.actuated]

    @property
    def joints(self) -> tuple[Joint, ...]:
        return self._joints

    @property
    def frame_names(self) -> list[str]:
        """Every frame (link), parents before children; the first is the root."""
        return list(self.tree.frames)

    @property
    def root(self) -> str:
        return self.tree.root

    @property
    def tip(self) -> str:
        """The end frame of a serial chain (a branched tree has no single tip: name a frame)."""
        leaves = self.tree.leaves()
        if len(leaves) != 1:
            raise ValueError(f"this chain is branched; pass frame= one of its leaf frames {leaves}")
        return leaves[0]

    @property
    def joint_limits(self) -> tuple[Tensor, Tensor]:
        """``(lower, upper)`` position limits of the actuated joints (``+-inf`` if continuous)."""
        return self.lower, self.upper

    @property
    def velocity_limits(self) -> Tensor:
        """Velocity limits of the actuated joints (``inf`` where the description has none)."""
        return self.velocity

    @property
    def inertials(self) -> dict[str, Inertial]:
        """``{link: Inertial}``: the mass and centre of mass of each link that has them (a URDF's or
        MJCF's ``<inertial>`` elements, or ``Chain(..., inertials=)``)."""
        return dict(self._inertials)

    @property
    def mass(self) -> float:
        """The total mass (kg) of the links this chain holds (0 if none has an :class:`Inertial`).
        Raises ``ValueError`` while :attr:`unknown_masses` names bodies whose mass an MJCF leaves
        to geoms this reader does not measure (meshes, height fields, shells)."""
        return known_mass(self)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, dof={self.dof}, frames={len(self.tree.frames)}, root={self.root!r}"

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_urdf(cls, source, *, root: str | None = None, tip: str | None = None) -> Chain:
        """Parse a URDF file path or XML string (kinematics only); ``root``/``tip`` pick a serial sub-chain."""
        from ._urdf import chain_from_urdf

        return chain_from_urdf(source, root=root, tip=tip)

    @classmethod
    def from_mjcf(cls, source, *, root: str | None = None, tip: str | None = None,
                  free_joints: str = "refuse") -> Chain:
        """Parse an MJCF (MuJoCo XML) file path or string, kinematics only, without MuJoCo.

        ``q`` follows MuJoCo's ``qpos`` order; ``root``/``tip`` pick a serial sub-chain;
        ``free_joints="fixed"`` keeps a floating body where the file puts it.  See
        :func:`robojac.kinematics.chain_from_mjcf` for how bodies, joints and sites map to frames.
        """
        from ._mjcf import chain_from_mjcf

        return chain_from_mjcf(source, root=root, tip=tip, free_joints=free_joints)

    @classmethod
    def from_dh(cls, rows, convention: str = "standard", *, name: str = "dh_arm", tool=None) -> Chain:
        """A serial arm from a Denavit-Hartenberg table (see :func:`robojac.kinematics.chain_from_dh`)."""
        from ._dh import chain_from_dh

        return chain_from_dh(rows, convention, name=name, tool=tool)

    def subchain(self, root: str | None = None, tip: str | None = None) -> Chain:
        """The serial chain from ``root`` (default: this root) to ``tip`` as a new :class:`Chain`.

        Mimic joints on the path whose source lies off it keep following that source, which
        becomes a degree of freedom of the sub-chain.
        """
        root = self.root if root is None else root
        if tip is None:
            raise ValueError(f"tip: name the end frame; frames: {self.frame_names}")
        for what, f in (("root", root), ("tip", tip)):
            if f not in self.tree.frames:
                raise ValueError(f"{what} {f!r} does not exist; frames: {self.frame_names}")
        joints = path_joints(self.tree, root, tip)
        sources = [j for j in self._joints + self._sources if j.type.movable]
        links = None if joints else [root]
        out = Chain(joints, links=links, root=root, name=f"{self.name}:{root}->{tip}", _sources=sources,
                    inertials={f: i for f, i in self._inertials.items() if f == root or f in {j.child for j in joints}},
                    _unknown_masses=self.unknown_masses)
        out.urdf_source = self.urdf_source
        out.floating_joints = tuple(j.name for j in joints if j.name in self.floating_joints)
        return out

    def with_floating_base(self, root: str = "world") -> Chain:
        """A copy of this chain that moves freely in a new root frame ``root``: six joints from
        ``root`` to this chain's root, three prismatic along x, y and z, then three revolute
        about z, y and x (yaw, pitch, roll; Z-Y-X Euler angles), all unlimited.

        ``q = [x, y, z, yaw, pitch, roll, *this chain's q]``, the first six named
        ``floating_x`` ... ``floating_roll``.  A humanoid fixed at its pelvis becomes one whose
        pelvis IK and the centre of mass may move: targets for both feet then hold it up.  The
        angles are singular at pitch ``+-pi/2`` (a base turned to vertical), far from a standing
        robot.  Masses and mimic relations are kept; joint parameters are folded in first
        (:meth:`frozen`).  Raises ``ValueError`` if ``root`` or a joint name is already taken.
        """
        if self.floating_joints:
            raise ValueError(f"this chain already has a floating base: {list(self.floating_joints)}")
        base = self.frozen() if (self.origin_joints or self.offset_joints) else self
        names = [f"floating_{a}" for a in ("x", "y", "z", "yaw", "pitch", "roll")]
        frames = [root] + [f"{root}:{n}" for n in names[:-1]] + [base.root]
        taken = set(base.frame_names) & set(frames[:-1])
        if taken:
            raise ValueError(f"root: the frames {sorted(taken)} already exist in this chain; name another root")
        taken = set(names) & {j.name for j in base._joints + base._sources}
        if taken:
            raise ValueError(f"this chain already has joints named {sorted(taken)}")
        eye = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device="cpu")
        axes = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0)]
        kinds = [JointType.PRISMATIC] * 3 + [JointType.CONTINUOUS] * 3
        floating = [Joint(n, k, frames[i], frames[i + 1], eye, a, JointLimits())
                    for i, (n, k, a) in enumerate(zip(names, kinds, axes))]
        b = base._built
        links = None if b["links"] is None else frames[:-1] + list(b["links"])
        out = Chain(floating + list(base._joints), links=links, root=root, name=base.name, _sources=b["_sources"],
                    _joint_lines=b["_joint_lines"], inertials=b["inertials"], _unknown_masses=b["_unknown_masses"])
        out.floating_joints = tuple(names)
        return out.to(self.lower.device)

    # ---- parameters (calibration) ------------------------------------------------------
    def with_parameters(self, origins: str | Sequence[str] | None = "all",
                        offsets: str | Sequence[str] | None = "all") -> Chain:
        """A copy of this chain whose joint origins and joint offsets are parameters.

        * ``origins``: ``"all"`` (every joint, fixed ones included), joint names, or ``None``.
          They become one SE3 ``pp.Parameter`` ``joint_origins (K, 7)``: ``T_parent_joint`` of
          each joint in :attr:`origin_joints` order.
        * ``offsets``: ``"all"`` (every actuated joint), names, or ``None``: ``joint_offsets (D,)``,
          added to ``q`` (``q + offset``) for the joints :attr:`offset_joints` names.

        :func:`robojac.jacobian.modjac` of the chain then gives 6 tangent columns per origin (a
        left perturbation ``Exp(d) * T_parent_joint``) and one per offset: the identification
        Jacobian of kinematic calibration.  Kinematics follow the parameters' current values (and
        pass gradients to them); :meth:`frozen` folds them back into a plain chain.  This chain is
        not changed.
        """
        names = [j.name for j in self._joints]
        dof_names = self.joint_names
        chosen_o = self._choose("origins", origins, names)
        chosen_d = self._choose("offsets", offsets, dof_names)
        if not chosen_o and not chosen_d:
            raise ValueError("origins, offsets: expected at least one joint to parameterize, got none")
        out = self.frozen()
        by_name = {j.name: j for j in out._joints}
        out.origin_joints, out.offset_joints = tuple(chosen_o), tuple(chosen_d)
        if chosen_o:
            frames = [out.tree.frames.index(by_name[n].child) for n in chosen_o]
            O = torch.stack([by_name[n].origin for n in chosen_o])
            out.joint_origins = pp.Parameter(pp.SE3(O))
            out.register_buffer("_origin_frames", torch.tensor(frames, dtype=torch.long, device="cpu"), persistent=False)
            out.register_buffer("_origin_axes", torch.tensor([by_name[n].axis for n in chosen_o], dtype=torch.float64,
                                                             device="cpu"), persistent=False)
            out.register_buffer("_origin_kinds", torch.tensor([out._program.kind[f] for f in frames], device="cpu"),
                                persistent=False)
        if chosen_d:
            out.joint_offsets = nn.Parameter(torch.zeros(len(chosen_d), dtype=torch.float64, device="cpu"))
            out.register_buffer("_offset_columns", torch.tensor([dof_names.index(n) for n in chosen_d], device="cpu"),
                                persistent=False)
        return out.to(self.lower.device)

    @staticmethod
    def _choose(what: str, chosen, names: list[str]) -> list[str]:
        if chosen is None:
            return []
        if chosen == "all":
            return list(names)
        if isinstance(chosen, str):
            chosen = [chosen]
        chosen = list(chosen)
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ValueError(f"{what}: {unknown} name no joint that can take one; expected some of {names}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"{what}: names a joint twice: {chosen}")
        return [n for n in names if n in chosen]  # the chain's order

    def frozen(self) -> Chain:
        """A plain chain (no parameters) with the current parameter values folded into the joint
        origins: an offset ``o`` of a joint becomes ``origin * Motion(o)`` (and ``mult * o`` for the
        joints that mimic it).  Limits, names, mimic relations and the URDF source are kept."""
        folded = {}
        if self.origin_joints:
            O = self.joint_origins.detach().tensor().to(device="cpu", dtype=torch.float64)
            O = torch.cat((O[:, :3], O[:, 3:] / O[:, 3:].norm(dim=-1, keepdim=True)), -1)
            folded = {n: O[i] for i, n in enumerate(self.origin_joints)}
        shift = {}
        if self.offset_joints:
            vals = self.joint_offsets.detach().to(device="cpu", dtype=torch.float64).tolist()
            shift = dict(zip(self.offset_joints, vals))
        joints = []
        for j in self._joints + self._built["_sources"]:
            origin = folded.get(j.name, j.origin)
            if j.type.movable:
                src, mult = (j.mimic.joint, j.mimic.multiplier) if j.mimic is not None else (j.name, 1.0)
                o = mult * shift.get(src, 0.0)
                if o != 0.0:
                    origin = lie.se3_compose(origin, _motion(j, o))
            joints.append(dataclasses.replace(j, origin=origin) if origin is not j.origin else j)
        n = len(self._joints)
        b = self._built
        out = Chain(joints[:n], links=b["links"], root=b["root"], name=b["name"], _sources=joints[n:],
                    _joint_lines=b["_joint_lines"], inertials=b["inertials"], _unknown_masses=b["_unknown_masses"])
        out.urdf_source = self.urdf_source
        out.floating_joints = self.floating_joints
        return out.to(self.lower.device)

    def to_urdf(self, path) -> None:
        """Write the chain as a URDF file, atomically (see :func:`robojac.kinematics.write_urdf`)."""
        from ._urdf import write_urdf

        write_urdf(self, path)

    # ---- configuration helpers ---------------------------------------------------------
    def _consts(self, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        key = (dtype, device, self.RQ.device, self.RQ.dtype)
        C = self._cache.get(key)
        if C is None:
            C = {k: getattr(self, k).to(device=device, dtype=dtype if getattr(self, k).is_floating_point() else None)
                 for k in self._program.constants}
            self._cache = {key: C}
        if self.origin_joints:  # the origins are parameters: their rows rebuilt on every call, differentiably
            O = self.joint_origins
            O = (O.tensor() if isinstance(O, pp.LieTensor) else O).to(device=device, dtype=dtype)
            RQ, WT = origin_constants(O, self._origin_axes.to(device=device, dtype=dtype), self._origin_kinds.to(device))
            idx = (self._origin_frames.to(device),)
            C = dict(C, RQ=C["RQ"].index_put(idx, RQ), WT=C["WT"].index_put(idx, WT))
        return C

    def _offset(self, q: Tensor) -> Tensor:
        """``q + offset`` for a chain whose joint offsets are parameters (``q`` itself otherwise)."""
        if not self.offset_joints:
            return q
        return q.index_add(-1, self._offset_columns.to(q.device),
                           self.joint_offsets.to(q.dtype).expand(q.shape[:-1] + (len(self.offset_joints),)))

    def _apply(self, fn, recurse=True):
        self.clear_cache()
        return super()._apply(fn, recurse)

    def clear_cache(self) -> None:
        """Free the cached constants and workspaces (kept per thread for the last batch sizes)."""
        self._cache = {}
        self._plans = threading.local()
        self._paths = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"], state["_plans"] = {}, None
        state.pop("_limit_memo", None)  # derived from the limits (IK start tables hold KD-trees): rebuilt on use
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._plans = threading.local()

    def check_configuration(self, q: Tensor, name: str = "q") -> Tensor:
        """Refuse a ``q`` of the wrong type, last dimension or with non-finite values."""
        if not isinstance(q, Tensor):
            raise TypeError(f"{name}: expected a tensor of shape (..., {self.dof}), got {type(q).__name__}")
        if not q.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {q.dtype}")
        if q.dim() == 0 or q.shape[-1] != self.dof:
            raise ValueError(
                f"{name}: expected shape (..., {self.dof}) for the {self.dof} actuated joints {self.joint_names}, "
                f"got {tuple(q.shape)}"
            )
        if _has_values(q) and not torch.isfinite(q).all():
            raise ValueError(f"{name}: contains NaN or infinite joint values")
        return q

    def joint_values(self, q: Tensor) -> Tensor:
        """Values of every movable joint (offsets and mimic relations applied), ``(..., n_movable)``."""
        self.check_configuration(q)
        C = self._consts(q.dtype, q.device)
        return self._offset(q)[..., C["theta_src"]] * C["theta_mult"][:, 0] + C["theta_offset"][:, 0]

    def random_configuration(self, *batch: int, generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """Uniform samples inside the limits, ``(*batch, dof)``; an infinite limit samples as
        ``-pi`` or ``pi`` would (a continuous joint, an MJCF slide without a range)."""
        def build():  # the generator draws on the CPU
            lo, hi = self.lower.cpu().double(), self.upper.cpu().double()
            lo, hi = lo.nan_to_num(neginf=-math.pi), hi.nan_to_num(posinf=math.pi)
            return lo, hi - lo

        lo, span = self._from_limits(("sampling",), build)
        u = torch.rand(*batch, self.dof, generator=generator, dtype=torch.float64, device="cpu")
        return (lo + u * span).to(dtype=dtype, device=device if device is not None else self.lower.device)

    def limits_for(self, dtype: torch.dtype, device=None) -> tuple[Tensor, Tensor]:
        """``(lower, upper)`` in ``dtype``, rounded inwards: a value clamped into them in a lower
        precision is still inside the float64 limits."""
        device = torch.device(device if device is not None else self.lower.device)

        def build():
            lo, hi = self.lower.to(device=device, dtype=dtype), self.upper.to(device=device, dtype=dtype)
            lo = torch.where(lo.double() < self.lower.to(device), torch.nextafter(lo, torch.full_like(lo, math.inf)), lo)
            hi = torch.where(hi.double() > self.upper.to(device), torch.nextafter(hi, torch.full_like(hi, -math.inf)), hi)
            return lo, hi

        return self._from_limits(("limits", dtype, device), build)

    def _from_limits(self, key, build):
        """``build()``, memoised until the limit buffers change (replaced, as by ``.to()``, or
        edited in place): a lone IK target clamps and draws starts in microseconds, and the
        rounded limits alone are eight torch ops."""
        memo = self.__dict__.setdefault("_limit_memo", {})
        lower, upper = self._buffers["lower"], self._buffers["upper"]  # not through Module.__getattr__ (~1 us each)
        hit = memo.get(key)
        if hit is None or hit[0] is not lower or hit[1] is not upper or hit[2] != (lower._version, upper._version):
            hit = memo[key] = (lower, upper, (lower._version, upper._version), build())
        return hit[3]

    def clamp(self, q: Tensor) -> Tensor:
        """``q`` clamped into the position limits (rounded inwards in ``q``'s dtype)."""
        lo, hi = self.limits_for(q.dtype, q.device)
        return torch.maximum(torch.minimum(q, hi), lo)

    def within_limits(self, q: Tensor, tol: float = 0.0) -> Tensor:
        """Whether each configuration lies inside the limits (``(...)`` bools)."""
        return ((q >= self.lower.to(q) - tol) & (q <= self.upper.to(q) + tol)).all(-1)

    # ---- kinematics --------------------------------------------------------------------
    _MAX_PLANS = 8
    #: Bytes of forward-kinematics workspaces a chain keeps per thread for reuse (least recently
    #: used dropped first); a workspace larger than this is used for its call and not kept.
    workspace_budget: int = 256 << 20

    def _plan(self, C: dict[str, Tensor], B: int, frames: tuple[int, ...], jac: tuple[int, ...],
              axes: tuple[int, ...] = ()) -> Plan:
        plans = getattr(self._plans, "od", None)
        if plans is None:
            plans = self._plans.od = OrderedDict()
        key = (B, C["RQ"].dtype, C["RQ"].device, frames, jac, axes, id(C))
        plan = plans.get(key)
        if plan is None:
            plan = Plan(self._program, C, B, list(frames), list(jac), list(axes))
            if plan.nbytes > self.workspace_budget:
                return plan  # too big to keep: this call's alone
            plans[key] = plan
            while len(plans) > self._MAX_PLANS or sum(p.nbytes for p in plans.values()) > self.workspace_budget:
                plans.popitem(last=False)
        else:
            plans.move_to_end(key)
        return plan

    def workspace_bytes(self) -> int:
        """Bytes held by this thread's cached forward-kinematics workspaces (at most
        :attr:`workspace_budget`; :meth:`clear_cache` frees them)."""
        plans = getattr(self._plans, "od", None)
        return 0 if plans is None else sum(p.nbytes for p in plans.values())

    def _path(self, f: int) -> list[int]:
        if f not in self._paths:
            self._paths[f] = self.tree.path(self.tree.frames[f])
        return self._paths[f]

    def moving_joints(self, frame: str | None = None) -> list[str]:
        """The actuated joints that move ``frame`` (default: the tip), in :attr:`joint_names`
        order: those on its path from the root, and the sources of mimic joints there.  Empty for
        a frame fixed to the root (or a chain of no joints)."""
        f = self._frame_index(frame)
        found = self._moving.get(f)
        if found is None:  # the tree never changes: once per frame
            moving = set()
            for g in self.tree.path(self.tree.frames[f])[1:]:
                j = self.tree.joint_of[g]
                if j.type.movable:
                    moving.add(self.tree.mimic[j.name][0] if j.name in self.tree.mimic else j.name)
            found = self._moving[f] = [n for n in self.joint_names if n in moving]
        return list(found)

    def _with_ancestors(self, frames: list[int]) -> list[int]:
        """``frames`` and every frame above them, sorted: a walk up from each that stops where an
        earlier one passed (linear in the tree, where a path per frame was quadratic)."""
        parent, seen = self._program.parent, set()
        for f in frames:
            while f >= 0 and f not in seen:
                seen.add(f)
                f = parent[f]
        return sorted(seen)

    def _frame_index(self, frame: str | None) -> int:
        if frame is None:
            frame = self.tip
        if frame not in self.tree.frames:
            raise ValueError(f"frame {frame!r} does not exist; frames: {self.frame_names}")
        return self.tree.frames.index(frame)

    def _evaluate(self, q: Tensor, frames: list[int], jac: list[int], axes: list[int] = ()) -> _Evaluation:
        """Poses of ``frames`` (and joint axes for the Jacobians of ``jac``, and above ``axes``) for ``q``."""
        self.check_configuration(q)
        batch = q.shape[:-1]
        q2 = q.reshape(batch.numel(), self.dof)  # explicit: -1 is ambiguous for an empty batch or 0 joints
        C = self._consts(q.dtype, q.device)
        needed = self._with_ancestors(frames + jac)
        q2 = self._offset(q2)
        if _plain(q) and not self.origin_joints and not self.offset_joints:
            plan = self._plan(C, q2.shape[0], tuple(needed), tuple(jac), tuple(axes))
            plan.run(q2)
            return _Evaluation(batch, plan.soa.__getitem__, lambda g: plan.Z[:, self._program.slot[g]], plan.soa, plan)
        poses, found = run_autograd(self._program, C, q2, needed, jac, axes)
        return _Evaluation(batch, poses.__getitem__, found.__getitem__, None, None)

    @_on_threads
    def forward_kinematics_tensor(self, q: Tensor, frames: Sequence[str] | None = None) -> Tensor:
        """Poses ``(..., F, 7)`` of ``frames`` (default every frame, in :attr:`frame_names` order)."""
        idx = list(range(len(self.tree.frames))) if frames is None else [self._frame_index(f) for f in frames]
        ev = self._evaluate(q, idx, [])
        src = ev.stack(idx)  # (F, 7, B)
        B = src.shape[-1]
        out = torch.empty(B, len(idx), 7, dtype=src.dtype, device=src.device)
        if ev.plan is not None:
            transpose_into(out.view(B, len(idx) * 7), src.view(len(idx) * 7, B))
        else:
            out = src.permute(2, 0, 1)  # keeps the autograd graph
        return out.reshape(ev.batch + (len(idx), 7))

    @_on_threads
    def forward_kinematics(self, q: Tensor, frame: str | None = None):
        """Poses in the root frame: ``{name: SE3 (..., 7)}`` of every frame, or one ``frame``'s.

        ``q`` has shape ``(..., dof)``; the result has the same leading shape, device and dtype.
        """
        if frame is not None:
            return wrap_lie(self.forward_kinematics_tensor(q, [frame])[..., 0, :])
        idx = list(range(len(self.tree.frames)))
        ev = self._evaluate(q, idx, [])
        src = ev.stack(idx)  # (F, 7, B)
        if ev.plan is not None:
            out = torch.empty(src.shape[0], src.shape[2], 7, dtype=src.dtype, device=src.device)
            if src.shape[2] <= 4096:
                out.copy_(src.transpose(1, 2))
            else:
                for f in idx:
                    transpose_into(out[f], src[f])
        else:
            out = src.transpose(1, 2)
        shape = ev.batch + (7,)
        return {name: wrap_lie(out[f].reshape(shape)) for f, name in enumerate(self.tree.frames)}

    @_on_threads
    def forward(self, q: Tensor, frames: Sequence[str] | None = None) -> Tensor:
        """The tip pose ``(..., 7)`` of a serial chain, or with ``frames`` the poses ``(..., F, 7)``
        of those frames (see :meth:`forward_kinematics`).  The model that
        :func:`torch.func.functional_call` and :func:`robojac.jacobian.modjac` run."""
        if frames is not None:
            return self.forward_kinematics_tensor(q, frames)
        return self.forward_kinematics_tensor(q, [self.tip])[..., 0, :]

    @_on_threads
    def jacobian(self, q: Tensor, frame: str | None = None, *, reference: Reference = "world",
                 method: Literal["analytic", "autodiff"] = "analytic") -> Tensor:
        """Geometric Jacobian ``(..., 6, dof)`` of ``frame`` (default: the tip).

        Rows ``[v; w]``: the linear velocity of the frame's origin and the angular velocity,
        expressed in the root frame (``reference="world"``, Pinocchio's LOCAL_WORLD_ALIGNED) or
        in the frame itself (``"local"``, Pinocchio's LOCAL).  ``method="autodiff"`` computes it
        through :mod:`robojac.jacobian` from the forward kinematics instead of in closed form.
        """
        if reference not in ("world", "local"):
            raise ValueError(f"reference: expected 'world' or 'local', got {reference!r}")
        if method not in ("analytic", "autodiff"):
            raise ValueError(f"method: expected 'analytic' or 'autodiff', got {method!r}")
        f = self._frame_index(frame)
        if method == "autodiff":
            return self._autodiff_jacobian(q, f, reference)
        return self.pose_and_jacobian(q, self.tree.frames[f], reference=reference)[1]

    @_on_threads
    def pose_and_jacobian(self, q: Tensor, frame: str | None = None, *,
                          reference: Reference = "world") -> tuple[Tensor, Tensor]:
        """``(pose (..., 7), jacobian (..., 6, dof))`` of ``frame`` from one pass (what IK needs)."""
        f = self._frame_index(frame)
        ev = self._evaluate(q, [f], [f])
        P = ev.pose(f)
        J = self._frame_jacobian(ev, q, f, reference)
        pose = P.T if ev.plan is None else transpose_into(torch.empty(P.shape[1], 7, dtype=P.dtype, device=P.device), P)
        return pose.reshape(ev.batch + (7,)), J.reshape(ev.batch + (6, self.dof))

    @_on_threads
    def poses_and_jacobians(self, q: Tensor, frames: Sequence[str], *,
                            reference: Reference = "world") -> tuple[Tensor, Tensor]:
        """``(poses (..., F, 7), jacobians (..., F, 6, dof))`` of several ``frames`` from one pass
        (what IK of several frames at once needs); each as :meth:`pose_and_jacobian` gives it."""
        if isinstance(frames, str) or not isinstance(frames, Sequence) or not frames:
            raise ValueError(f"frames: expected a non-empty sequence of frame names, got {frames!r}")
        if reference not in ("world", "local"):
            raise ValueError(f"reference: expected 'world' or 'local', got {reference!r}")
        idx = [self._frame_index(f) for f in frames]
        ev = self._evaluate(q, idx, idx)
        poses = ev.stack(idx).permute(2, 0, 1)  # (B, F, 7); the workspace's own when it holds just these
        poses = poses.clone() if ev.plan is not None else poses
        J = torch.stack([self._frame_jacobian(ev, q, f, reference) for f in idx], 1)
        return poses.reshape(ev.batch + (len(idx), 7)), J.reshape(ev.batch + (len(idx), 6, self.dof))

    def _frame_jacobian(self, ev: _Evaluation, q: Tensor, f: int, reference: Reference) -> Tensor:
        """``(B, 6, dof)``: frame ``f``'s Jacobian from the pass ``ev`` (which evaluated its axes)."""
        if ev.plan is not None:
            return plan_jacobian(ev.plan, f, reference == "local")
        local = ev.pose(f)[3:] if reference == "local" else None
        return jacobian_from(self._program, self._consts(q.dtype, q.device), f, self._path(f),
                             lambda g: ev.pose(g)[:3], ev.axis, local)

    def _autodiff_jacobian(self, q: Tensor, f: int, reference: Reference) -> Tensor:
        from ..jacobian import batch_jacobian
        from ..lie import quat_to_matrix, skew, tangent_from_raw

        self.check_configuration(q)
        batch = q.shape[:-1]
        q2 = q.reshape(batch.numel(), self.dof)  # explicit: -1 is ambiguous for an empty batch or 0 joints
        name = self.tree.frames[f]
        pose_fn = lambda x: self.forward_kinematics_tensor(x, [name])[:, 0]  # noqa: E731
        X = pose_fn(q2)
        raw = batch_jacobian(pose_fn, q2)  # (B, 7, dof): stored numbers per joint
        xi = tangent_from_raw(X, "SE3") @ raw  # left-tangent [rho; phi] per joint
        rho, phi = xi[:, :3], xi[:, 3:]
        v = rho - skew(X[:, :3]) @ phi  # velocity of the origin: rho + phi x t
        J = torch.cat((v, phi), dim=1)
        if reference == "local":
            Rt = quat_to_matrix(X[:, 3:]).transpose(-1, -2)
            J = torch.cat((Rt @ J[:, :3], Rt @ J[:, 3:]), dim=1)
        return J.reshape(batch + (6, self.dof))

    def center_of_mass(self, q: Tensor) -> Tensor:
        """The centre of mass ``(..., 3)`` of the links this chain holds, in the root frame.

        Every link with an :class:`Inertial` counts, the root link's too (Pinocchio's
        ``centerOfMass`` of a fixed-base model leaves the root link out).  Differentiable in
        ``q``.  Raises ``ValueError`` for a chain with no mass, or whose MJCF leaves some bodies'
        masses to geoms this reader does not measure (:attr:`unknown_masses`)."""
        return _in_pieces(self, q, center_of_mass)

    def center_of_mass_and_jacobian(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """``(centre of mass (..., 3), its Jacobian d c / d q (..., 3, dof))`` from one pass, in the
        root frame (Pinocchio's ``jacobianCenterOfMass``, the root link counted as in
        :meth:`center_of_mass`)."""
        return _in_pieces(self, q, center_of_mass_and_jacobian)

    def manipulability(self, q: Tensor, frame: str | None = None, *,
                       rows: Literal["all", "linear", "angular"] | Sequence[int] = "all") -> Tensor:
        """Yoshikawa's measure ``sqrt(det(J J^T))`` of the chosen Jacobian rows, shape ``(...)``.

        ``rows`` is ``"all"``, ``"linear"``, ``"angular"`` or row indices (``(0, 1)`` for the
        xy velocity of a planar arm, whose ``vz`` row is identically zero).
        """
        named = {"all": [0, 1, 2, 3, 4, 5], "linear": [0, 1, 2], "angular": [3, 4, 5]}
        if isinstance(rows, str):
            if rows not in named:
                raise ValueError(f"rows: expected one of {list(named)} or row indices, got {rows!r}")
            idx = named[rows]
        else:
            idx = [int(r) for r in rows]
            if not idx or any(r < 0 or r > 5 for r in idx):
                raise ValueError(f"rows: expected indices in 0..5, got {list(rows)}")
        J = self.jacobian(q, frame)[..., idx, :]
        JJt = J @ J.transpose(-1, -2)
        return torch.sqrt(torch.clamp(torch.linalg.det(JJt), min=0.0))

def _motion(j: Joint, value: float) -> Tensor:
    """``Motion(value)`` of joint ``j`` as a pose: a rotation about, or a translation along, its axis."""
    a = torch.tensor(j.axis, dtype=torch.float64, device="cpu")
    if j.type.rotational:
        return torch.cat((a.new_zeros(3), a * math.sin(value / 2), a.new_tensor([math.cos(value / 2)])))
    return torch.cat((a * value, a.new_tensor([0.0, 0.0, 0.0, 1.0])))


class _Evaluation:
    """Results of one kinematics pass: ``pose(f)`` is ``(7, B)``, ``axis(g)`` is ``(3, B)``."""

    def __init__(self, batch, pose, axis, soa, plan):
        self.batch, self.pose, self.axis, self._soa, self.plan = batch, pose, axis, soa, plan

    def stack(self, idx: list[int]) -> Tensor:
        """``(len(idx), 7, B)``; a view of the workspace when it already holds exactly those."""
        if self._soa is not None and idx == list(range(self._soa.shape[0])):
            return self._soa
        return torch.stack([self.pose(f) for f in idx])


#: Configurations per piece of a large CPU batch of the centre of mass, run on one thread.  TALOS'
#: centre of mass and Jacobian at 100,000 float64 configurations (2 cores, OMP_WAIT_POLICY=PASSIVE):
#: 0.86 s in one piece on two threads, 1.34 s on one; in pieces of 512 / 2,048 / 8,192 on one
#: thread 0.49 / 0.41 / 0.48 s (each piece's arrays stay in the cache), on two 2.5 / 0.94 / 0.57 s.
CENTER_OF_MASS_PIECE = 2048


def _in_pieces(chain: Chain, q: Tensor, compute):
    """``compute(chain, q)`` on :func:`_on_threads`' count, or, for a large batch on the CPU with no
    gradient to keep, in pieces of :data:`CENTER_OF_MASS_PIECE` configurations on one thread,
    joined: the same numbers, in less time."""
    if (not isinstance(q, Tensor) or q.device.type != "cpu" or q.dim() == 0
            or q.shape[:-1].numel() <= 2 * CENTER_OF_MASS_PIECE or not _plain(q)):
        return _on_threads(compute)(chain, q)
    chain.check_configuration(q)
    batch = q.shape[:-1]
    B = batch.numel()
    flat = q.reshape(B, chain.dof)
    with torch_threads(1):
        parts = [compute(chain, flat[i : i + CENTER_OF_MASS_PIECE]) for i in range(0, B, CENTER_OF_MASS_PIECE)]
    if isinstance(parts[0], Tensor):
        return torch.cat(parts).reshape(batch + parts[0].shape[1:])
    return tuple(torch.cat(p).reshape(batch + p[0].shape[1:]) for p in zip(*parts))


def _has_values(q: Tensor) -> bool:
    """Whether ``q``'s values can be read: not a ``meta`` tensor (shapes only) and not a tensor
    batched by ``torch.vmap`` (whose values cannot steer Python).  Value checks skip the others."""
    return q.device.type != "meta" and not torch._C._functorch.is_functorch_wrapped_tensor(q)


def _plain(q: Tensor) -> bool:
    """True when no autograd or functorch transform watches ``q`` (the workspace path is safe)."""
    if q.requires_grad and torch.is_grad_enabled():
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(q):
        return False
    return torch.autograd.forward_ad.unpack_dual(q).tangent is None
