"""Kinematic calibration: a chain's joint origins and offsets from measured poses or positions.

The model is the chain itself with its origins and offsets as parameters
(:meth:`~robojac.kinematics.Chain.with_parameters`); the problem runs on the solver engine with
one variable, the product of the origins (SE3, stepped on the left in their parent frames) and
the offsets.  The identification Jacobian is written in closed form (an origin's column block
is the adjoint of its parent frame's pose; an offset's column is its joint's twist) and is
tested against :func:`robojac.jacobian.modjac` of the parameterized chain.

Directions the data cannot identify (an origin turned about its own joint axis, which is an
offset; a base transform confounded with the first origin; consecutive fixed joints) are found
from the column-scaled identification Jacobian's singular values, as FIGAROH and ROS
``robot_calibration`` do, reported, and held at their nominal values by a prior on exactly those
directions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import functional_call

from .. import lie
from .._config import check_instance, check_real
from .._threads import threads_for, torch_threads
from ..kinematics import Chain
from ..optim import Factor, History, RobustKernel, SolverConfig, TerminationConfig, Variable, product, solve

__all__ = ["CalibrationConfig", "CalibrationResult", "MeasurementErrors", "calibrate_kinematics", "perturbed_chain",
           "simulate_poses"]


@dataclass(frozen=True)
class CalibrationConfig:
    """Options of :func:`calibrate_kinematics`.

    * ``origins``: the joints whose origin (``T_parent_joint``) is estimated: ``"all"`` (every
      joint between the root and the measured frame, fixed ones included), names, or ``None``.
    * ``offsets``: the actuated joints whose offset (``q + offset``) is estimated: ``"all"``
      (those that move the measured frame), names, or ``None``.
    * ``kernel``: a robust kernel on each measurement's whitened residual (IRLS on the engine);
      ``RobustKernel("cauchy", 3.0)`` discounts gross outliers.
    * ``rank_tolerance``: a parameter direction whose singular value (identification Jacobian
      with unit columns) is below this fraction of the largest is reported unidentifiable and
      held at its nominal value.
    * ``null_space_weight``: the strength of that hold, as a fraction of the largest curvature.
      The measurements do not pull along those directions, so a firm hold costs no accuracy;
      a weak one leaves the system nearly singular where the unidentifiable directions turn
      as the parameters move (a tool's lever arm), and Gauss-Newton then wanders.
    * ``solver``: the engine's configuration (damping, termination, gradients).  The default
      stops at a relative cost decrease of ``1e-10``: a calibration's weakly identifiable
      directions leave the system too ill-conditioned for the engine's ``1e-12`` to be met.
    """

    origins: str | Sequence[str] | None = "all"
    offsets: str | Sequence[str] | None = "all"
    kernel: RobustKernel = field(default_factory=RobustKernel)
    rank_tolerance: float = 1e-6
    null_space_weight: float = 1.0
    solver: SolverConfig = field(default_factory=lambda: SolverConfig(
        termination=TerminationConfig(max_iterations=50, relative_tolerance=1e-10)))

    def __post_init__(self):
        if not isinstance(self.kernel, RobustKernel):
            raise ValueError(f"CalibrationConfig.kernel: expected a RobustKernel, got {self.kernel!r}")
        if not isinstance(self.solver, SolverConfig):
            raise ValueError(f"CalibrationConfig.solver: expected a SolverConfig, got {self.solver!r}")
        check_real("CalibrationConfig", "rank_tolerance", self.rank_tolerance, positive=True, maximum=1.0)
        check_real("CalibrationConfig", "null_space_weight", self.null_space_weight, positive=True)


@dataclass(frozen=True)
class MeasurementErrors:
    """Per measurement: the position error ``(M,)`` in metres and, for pose measurements, the
    rotation error ``(M,)`` in radians (``None`` for positions)."""

    position: Tensor
    rotation: Tensor | None

    @property
    def rms_position(self) -> float:
        return float(self.position.square().mean().sqrt())

    @property
    def rms_rotation(self) -> float | None:
        return None if self.rotation is None else float(self.rotation.square().mean().sqrt())


@dataclass(frozen=True)
class CalibrationResult:
    """The answer of :func:`calibrate_kinematics`.

    * ``chain``: the calibrated chain (a new plain :class:`~robojac.kinematics.Chain`; offsets
      folded into the origins), ready for :meth:`~robojac.kinematics.Chain.to_urdf`.
    * ``converged``, ``iterations``, ``cost``, ``reason``, ``history``: the engine's, as in
      :class:`~robojac.optim.SolveResult` (one problem).
    * ``parameter_names`` ``(P,)``: ``"<joint>.origin.x|y|z|rx|ry|rz"`` (a left perturbation
      of the origin in its parent frame) and ``"<joint>.offset"``.
    * ``estimate`` ``(P,)``: the calibrated deviation from the nominal chain in those
      coordinates; ``std`` ``(P,)``: its standard deviation (from the measurement covariances
      given; scaled by ``sigma0`` when only weights were given), with the unidentifiable
      directions held.
    * ``origins`` ``(K, 7)`` and ``offsets`` ``(D,)``: the calibrated values.
    * ``singular_values`` ``(P,)``: the identifiability spectrum (column-scaled, descending);
      ``scale`` ``(P,)``: the identification Jacobian's column norms (the scaled coordinates
      are ``scale * estimate``); ``null_space`` ``(P, P - r)``: the unidentifiable directions in
      scaled coordinates, held at their nominal values (``null_space.T @ (scale * estimate)``
      is zero); ``identifiable``: the base parameters (one per identifiable
      direction: each the first, in chain order, not explained by those before it); ``unidentifiable``: each other parameter in
      words, as the change of base parameters it cannot be told apart from
      (``"j4.offset = 1 j4.origin.rz"``).
    * ``before``, ``after``: :class:`MeasurementErrors` of the nominal and calibrated chains.
    * ``weights`` ``(M,)``: each measurement's robust weight at the answer (1 without a kernel).
    * ``sigma0``: the a-posteriori standard deviation of unit weight.
    """

    chain: Chain
    converged: bool
    iterations: int
    cost: float
    reason: str
    history: History
    parameter_names: tuple[str, ...]
    estimate: Tensor
    std: Tensor
    origins: Tensor
    offsets: Tensor
    singular_values: Tensor
    scale: Tensor
    null_space: Tensor
    identifiable: tuple[str, ...]
    unidentifiable: tuple[str, ...]
    before: MeasurementErrors
    after: MeasurementErrors
    weights: Tensor
    sigma0: float


class _Measured:
    """Whitened residuals of measured poses ``[p - p_meas; Log(R R_meas^T)]`` (or positions
    ``p - p_meas``) of a frame, with closed-form Jacobians in the parameters' tangent."""

    def __init__(self, pchain: Chain, frame: str, point: Tensor | None):
        self.chain, self.point = pchain, point
        by_child = {j.child: j for j in pchain.joints}
        tree = pchain.tree
        path = [tree.frames[f] for f in tree.path(frame)][1:]
        movable = [by_child[f] for f in path if by_child[f].type.movable]
        origins = [next(j for j in pchain.joints if j.name == n) for n in pchain.origin_joints]
        names = [j.parent for j in origins] + [j.child for j in movable] + [frame]
        self.frames = list(dict.fromkeys(names))
        self.parent_at = [self.frames.index(j.parent) for j in origins]
        self.K, self.D = len(origins), len(pchain.offset_joints)
        # offset columns: every movable joint on the path adds mult * its twist to its source's
        mimic = tree.mimic
        self.twists = []  # (frame index, axis, prismatic, offset column, multiplier)
        for j in movable:
            src, mult = (mimic[j.name][0], mimic[j.name][1]) if j.name in mimic else (j.name, 1.0)
            if src in pchain.offset_joints:
                self.twists.append((self.frames.index(j.child), j.axis, not j.type.rotational,
                                    pchain.offset_joints.index(src), mult))
        self.tip = self.frames.index(frame)

    def split(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        if self.K:
            out["joint_origins"] = x[: 7 * self.K].reshape(self.K, 7)
        if self.D:
            out["joint_offsets"] = x[7 * self.K :]
        return out

    def poses(self, x: Tensor, q: Tensor) -> Tensor:
        return functional_call(self.chain, self.split(x), (q,), {"frames": self.frames})  # (M, F, 7)

    def errors(self, T: Tensor, meas: Tensor) -> Tensor:
        """``(M, m)`` unwhitened errors of tip poses ``T (M, 7)``."""
        if meas.shape[-1] == 3:
            p = T[:, :3] if self.point is None else lie.se3_act(T, self.point.expand(T.shape[0], 3))
            return p - meas
        rot = lie.so3_log(lie.quat_mul(T[:, 3:], lie.quat_conj(meas[:, 3:])))
        return torch.cat((T[:, :3] - meas[:, :3], rot), -1)

    def __call__(self, X: Tensor, q: Tensor, meas: Tensor, L: Tensor) -> Tensor:
        """The whitened residuals ``(1, M, m)`` alone (what the engine differentiates
        automatically when the closed form is bypassed)."""
        e = self.errors(self.poses(X[0, 0], q[0])[:, self.tip], meas[0])
        return (L[0] @ e[..., None])[..., 0][None]

    def value_and_jacobians(self, X: Tensor, q: Tensor, meas: Tensor, L: Tensor):
        if X.shape[0] != 1:
            raise ValueError("calibration runs one problem at a time (B = 1)")
        P = self.poses(X[0, 0], q[0])
        T = P[:, self.tip]
        e = self.errors(T, meas[0])
        M = T.shape[0]
        eye = torch.eye(3, dtype=T.dtype, device=T.device).expand(M, 3, 3)
        if meas.shape[-1] == 3:
            p = e + meas[0]
            tip_map = torch.cat((eye, -lie.skew(p)), -1)  # d p / d (left twist of the tip)
        else:
            top = torch.cat((eye, -lie.skew(T[:, :3])), -1)
            bottom = torch.cat((torch.zeros_like(eye), lie.so3_left_jacobian_inverse(e[:, 3:])), -1)
            tip_map = torch.cat((top, bottom), -2)
        cols = []
        if self.K:
            A = P[:, self.parent_at]  # (M, K, 7): each origin's parent frame
            cols.append(lie.se3_adjoint(A).permute(0, 2, 1, 3).reshape(M, 6, 6 * self.K))
        if self.D:
            off = T.new_zeros(M, 6, self.D)
            for f, axis, prismatic, col, mult in self.twists:
                G = P[:, f]
                z = lie.quat_rotate(G[:, 3:], G.new_tensor(axis).expand(M, 3))
                xi = torch.cat((z, torch.zeros_like(z)), -1) if prismatic else \
                    torch.cat((torch.linalg.cross(G[:, :3], z, dim=-1), z), -1)
                off[:, :, col] += mult * xi
            cols.append(off)
        J = L[0] @ tip_map @ torch.cat(cols, -1)
        r = (L[0] @ e[..., None])[..., 0]
        return r[None], (J[None],)


class _Hold:
    """The prior ``N^T (c * delta)`` that holds unidentifiable directions at their nominal
    values: ``delta`` is each origin's ``Log(X X_nom^-1)`` and each offset's change."""

    def __init__(self, K: int):
        self.K = K  # origins; the offsets follow them in the variable

    def __call__(self, X: Tensor, Nt: Tensor, X_nom: Tensor) -> Tensor:
        return self.value_and_jacobians(X, Nt, X_nom)[0]

    def value_and_jacobians(self, X: Tensor, Nt: Tensor, X_nom: Tensor):
        K = self.K
        x, x0, N = X[:, 0], X_nom[:, 0], Nt[:, 0]  # (B, raw), (B, raw), (B, n0, P)
        B, n0 = x.shape[0], N.shape[1]
        O, O0 = x[:, : 7 * K].reshape(B, K, 7), x0[:, : 7 * K].reshape(B, K, 7)
        d = lie.se3_log(lie.se3_compose(O, lie.se3_inverse(O0)))  # (B, K, 6)
        delta = torch.cat((d.reshape(B, 6 * K), x[:, 7 * K :] - x0[:, 7 * K :]), -1)
        # d delta / d (left step): Jl^-1 of each origin's deviation, the identity for the offsets
        No = torch.einsum("bnki,bkij->bnkj", N[..., : 6 * K].reshape(B, n0, K, 6), lie.se3_left_jacobian_inverse(d))
        J = torch.cat((No.reshape(B, n0, 6 * K), N[..., 6 * K :]), -1)
        return (N @ delta[..., None])[..., 0][:, None], (J[:, None],)


def _names(pchain: Chain) -> tuple[str, ...]:
    names = [f"{j}.origin.{c}" for j in pchain.origin_joints for c in ("x", "y", "z", "rx", "ry", "rz")]
    return tuple(names + [f"{j}.offset" for j in pchain.offset_joints])


def _base_parameters(J: Tensor, rank: int) -> list[int]:
    """The first ``rank`` columns of ``J``, in order, that are independent of those before them
    (scaled to unit norm; two Gram-Schmidt passes): the base parameters, so that each other
    parameter is described in terms of the ones before it in the chain."""
    A = J / _column_norms(J)
    residual = []
    Q = A.new_zeros(A.shape[0], 0)
    for j in range(A.shape[1]):
        a = A[:, j]
        for _ in range(2):
            a = a - Q @ (Q.T @ a)
        residual.append(float(a.norm()))
        if residual[-1] > 1e-6:
            Q = torch.cat((Q, (a / a.norm())[:, None]), 1)
    order = sorted(range(A.shape[1]), key=lambda j: -residual[j])[:rank]  # the rank most independent
    return sorted(order)


def _dependencies(J: Tensor, base: list[int], names: Sequence[str]) -> tuple[str, ...]:
    """Each parameter outside ``base``, in words: the change of base parameters it cannot be told
    apart from (``J_dep = J_base beta``)."""
    rest = [j for j in range(J.shape[1]) if j not in base]
    if not rest:
        return ()
    beta = torch.linalg.lstsq(J[:, base], J[:, rest]).solution if base else J.new_zeros(0, len(rest))
    out = []
    for i, j in enumerate(rest):
        terms = sorted(((float(b), names[base[k]]) for k, b in enumerate(beta[:, i].tolist()) if abs(b) > 1e-6),
                       key=lambda t: -abs(t[0]))
        said = " ".join(f"{'+' if b > 0 else '-'} {abs(b):.4g} {n}" for b, n in terms[:4]).lstrip("+ ")
        more = f" (+{len(terms) - 4} more)" if len(terms) > 4 else ""
        out.append(f"{names[j]} = {said}{more}" if terms else f"{names[j]}: moves nothing measured")
    return tuple(out)


def _measurements(measurements, name: str = "measurements") -> Tensor:
    if hasattr(measurements, "ltype") or (isinstance(measurements, Tensor) and measurements.dim() >= 2
                                          and measurements.shape[-2:] == (4, 4)):
        return lie.se3_tensor(measurements, name=name)
    if not isinstance(measurements, Tensor) or not measurements.is_floating_point():
        raise TypeError(f"{name}: expected poses (an SE3 LieTensor, (M, 7) or (M, 4, 4)) or positions (M, 3), "
                        f"got {type(measurements).__name__}")
    if measurements.dim() != 2 or measurements.shape[-1] not in (3, 7):
        raise ValueError(f"{name}: expected poses (M, 7) / (M, 4, 4) or positions (M, 3), got {tuple(measurements.shape)}")
    bad = ~torch.isfinite(measurements).all(-1)
    if bool(bad.any()):
        raise ValueError(f"{name}: measurement {int(bad.nonzero()[0])} is not finite "
                         f"({int(bad.sum())} such in all)")
    return lie.se3_tensor(measurements, name=name) if measurements.shape[-1] == 7 else measurements


def _whitening(covariance, weight, M: int, m: int, like: Tensor) -> Tensor:
    """``L (M, m, m)`` with ``L^T L`` the information of each measurement."""
    if covariance is None:
        info = torch.eye(m, dtype=like.dtype, device=like.device).expand(M, m, m)
    else:
        C = torch.as_tensor(covariance, dtype=like.dtype, device=like.device)
        if C.shape not in ((m, m), (M, m, m)):
            raise ValueError(f"covariance: expected ({m}, {m}) or ({M}, {m}, {m}), got {tuple(C.shape)}")
        C = C.expand(M, m, m)
        ok = torch.isfinite(C).all((-1, -2)) & (torch.linalg.eigvalsh(0.5 * (C + C.transpose(-1, -2)))[..., 0] > 0)
        if not bool(ok.all()):
            raise ValueError(f"covariance: measurement {int((~ok).nonzero()[0])}'s covariance is not finite and "
                             "positive definite")
        info = torch.cholesky_inverse(torch.linalg.cholesky(C))
    if weight is not None:
        w = torch.as_tensor(weight, dtype=like.dtype, device=like.device)
        if w.shape != (M,) or not bool((torch.isfinite(w) & (w >= 0)).all()):
            raise ValueError(f"weight: expected {M} finite numbers >= 0 (one per measurement), got shape {tuple(w.shape)}")
        info = info * w[:, None, None]
    evals, evecs = torch.linalg.eigh(info)  # L = sqrt(Lambda) V^T: a zero weight is a zero row
    return (evecs * evals.clamp_min(0).sqrt()[..., None, :]).transpose(-1, -2)


def _column_norms(J: Tensor) -> Tensor:
    """``J``'s column norms, floored at ``1e-8`` of the largest: the scale of each parameter
    (a column that is zero to rounding keeps a scale that leaves it near zero)."""
    c = J.norm(dim=0)
    return c.clamp_min(1e-8 * float(c.max()) if c.numel() and float(c.max()) > 0 else 1.0)


def _scaled_svd(J: Tensor, tol: float):
    """``(c, S, Vh, r)`` of ``J (rows, P)``: column norms ``c``, the singular values ``S`` and
    right vectors ``Vh`` of ``J / c``, and its numerical rank.  A column that is zero to
    rounding (a tool frame turned about the measured point) is not scaled up: its norm is
    floored (:func:`_column_norms`), so its noise stays noise and not a direction."""
    c = _column_norms(J)
    _, S, Vh = torch.linalg.svd(J / c, full_matrices=True)
    S = torch.cat((S, S.new_zeros(J.shape[1] - S.shape[0])))
    r = int((S > tol * S[0]).sum())
    return c, S, Vh, r


def calibrate_kinematics(chain: Chain, q: Tensor, measurements, *, frame: str | None = None,
                         point: Tensor | None = None, covariance: Tensor | None = None, weight: Tensor | None = None,
                         config: CalibrationConfig | None = None) -> CalibrationResult:
    """Estimate ``chain``'s joint origins and offsets from measurements of one frame.

    * ``q`` ``(M, dof)``: the joint readings at each measurement.
    * ``measurements``: poses of ``frame`` (default: the tip) in the root frame (an SE3
      LieTensor, ``(M, 7)`` or ``(M, 4, 4)``), or positions ``(M, 3)`` of ``point`` (a point
      fixed in ``frame``, default its origin; a laser tracker's reflector).  The first joint's
      origin plays the base transform: measure in the chain's root frame, or let it absorb the
      instrument's frame.
    * ``covariance``: ``(m, m)`` or ``(M, m, m)`` per measurement, rows ``[position; rotation]``
      (metres, radians; rotation as a left perturbation); ``weight`` ``(M,)`` scales each
      measurement's information.  Without either, every residual weighs 1.

    Returns a :class:`CalibrationResult`; the input chain is not changed.  Raises
    ``ValueError`` for mismatched sizes, non-finite measurements (naming the first), or fewer
    measurements than the identifiable parameters need (saying how many).  A calibration that
    does not converge says so (``converged=False`` and its ``reason``).  Computed in float64.

    Measurements that require grad make ``estimate``, ``origins`` and ``offsets`` differentiable:
    the implicit function theorem at the answer, with the gauge (the hold on the unidentifiable
    directions, and the analysis that finds them) held constant.  What the data identify gets
    the derivative central differences of re-calibrations give (to 1.4e-6 for poses; 0.3-0.7 % for
    positions, whose hold turns with the data); the unidentifiable directions get the gauge's.
    """
    cfg = config or CalibrationConfig()
    check_instance("chain", chain, Chain, "a robojac Chain")
    if chain.origin_joints or chain.offset_joints:
        chain = chain.frozen()
    frame = chain.tip if frame is None else frame
    if frame not in chain.frame_names:
        raise ValueError(f"frame: {frame!r} does not exist; frames: {chain.frame_names}")
    meas = _measurements(measurements)
    chain.check_configuration(q)
    if q.dim() != 2 or q.shape[0] != meas.shape[0]:
        raise ValueError(f"q: expected shape ({meas.shape[0]}, {chain.dof}), one configuration per measurement, got "
                         f"{tuple(q.shape)}")
    dev = q.device
    q, meas = q.to(torch.float64), meas.to(device=dev, dtype=torch.float64)
    M, m = meas.shape[0], (6 if meas.shape[-1] == 7 else 3)
    if point is not None:
        point = torch.as_tensor(point, dtype=torch.float64, device=dev)
        if point.shape != (3,) or not bool(torch.isfinite(point).all()):
            raise ValueError(f"point: expected 3 finite numbers (a point in {frame!r}), got {tuple(point.shape)}")
        if m == 6:
            raise ValueError("point: only for position measurements (M, 3); a pose measures the frame itself")

    # the parameters: joints on the path to the frame
    path_frames = set(chain.tree.frames[f] for f in chain.tree.path(frame)[1:])
    on_path = [j.name for j in chain.joints if j.child in path_frames]
    moving = chain.moving_joints(frame)
    origins = _pick("origins", cfg.origins, on_path)
    offsets = _pick("offsets", cfg.offsets, moving)
    pchain = chain.with_parameters(origins=origins or None, offsets=offsets or None).to(dev).double()
    names = _names(pchain)
    # the analysis's SVDs and QR and the solve's small systems: one torch thread below robojac._threads'
    # size, counted as the identification Jacobian's entries (the measurements' rows, or the 64 probe
    # poses' if more, by the parameters; 60 poses of a Panda: 64.2 -> 48.3 ms, ab.py --case calibration)
    with torch_threads(threads_for(max(M, 64) * m * len(names), dev)):
        residual = _Measured(pchain, frame, point)
        L = _whitening(covariance, weight, M, m, q)
        raw = [p.detach().tensor() if hasattr(p, "ltype") else p.detach() for p in (
            getattr(pchain, "joint_origins", None), getattr(pchain, "joint_offsets", None)) if p is not None]
        x0 = torch.cat([r.reshape(-1) for r in raw]).to(dev)

        # what the measurements can identify: structurally (many random poses) and with these data
        probe = chain.random_configuration(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                                           device=dev)
        probe_meas = residual.poses(x0, probe)[:, residual.tip]
        if m == 3:
            probe_meas = residual.errors(probe_meas, torch.zeros(64, 3, dtype=torch.float64, device=dev))
        eye = torch.eye(m, dtype=torch.float64, device=dev).expand(64, m, m)
        Jp = residual.value_and_jacobians(x0[None, None], probe[None], probe_meas[None], eye[None])[1][0][0]
        needed = _scaled_svd(Jp.reshape(-1, len(names)), cfg.rank_tolerance)[3]
        if M * m < needed:
            raise ValueError(f"measurements: {M} {'poses' if m == 6 else 'positions'} give {M * m} equations; the "
                             f"{needed} identifiable parameters need at least {math.ceil(needed / m)} measurements")
        group = product(("SE3", residual.K), ("Rn", residual.D))
        every = torch.zeros(M, 1, dtype=torch.long, device=dev)  # each measurement reads the one variable
        P = len(names)

        @torch.no_grad()  # the analysis and the gauge it sets (the hold) are constants of the answer's gradients:
        def identify(x: Tensor):  # an SVD's derivative is undefined at its repeated (zero) singular values
            """What the data see at ``x``: the weighted Jacobian, its scaled SVD and rank."""
            r, (J,) = residual.value_and_jacobians(x[None, None], q[None], meas[None], L[None])
            w = cfg.kernel.row_weights(r[0])
            w = torch.ones(M, dtype=torch.float64, device=dev) if w is None else w
            Jw = (w.sqrt()[:, None, None] * J[0]).reshape(-1, P)
            return (Jw, w) + _scaled_svd(Jw, cfg.rank_tolerance)

        # The unidentifiable directions turn as the parameters move (a tool point that sits on the
        # last joint's axis in the nominal model sees that joint's offset nowhere; the true tool,
        # a millimetre off, sees it a little): found where the solve starts, and found again where
        # it ends until they agree (at most three rounds; the first is given 10 iterations, which a
        # calibration whose directions do not turn needs at most, the last the configured count).
        x, runs = x0, []
        Jw, w, c, S, Vh, rank = identify(x0)
        term = cfg.solver.termination
        first = dataclasses.replace(cfg.solver, termination=dataclasses.replace(
            term, max_iterations=min(term.max_iterations, 10)))
        for round_ in range(3):
            var = Variable(group, x[None, None].clone(), name="parameters")
            factors = [Factor(residual, [var], every, data=[q, meas, L], kernel=cfg.kernel, name="measurements")]
            N = Vh[rank:].T  # (P, P - r) in scaled coordinates
            if N.shape[1]:
                Nt = math.sqrt(cfg.null_space_weight) * S[0] * N.T * c  # (P - r, P)
                factors.append(Factor(_Hold(residual.K), [var], data=[Nt[None], x0[None]], name="hold"))
            runs.append(solve([var], factors, first if round_ == 0 else cfg.solver))
            x = runs[-1].values[0][0, 0]
            Jw, w, c1, S1, Vh1, rank1 = identify(x)
            if bool(runs[-1].converged[0]) and rank1 == rank:
                break
            c, S, Vh, rank = c1, S1, Vh1, rank1
        result = runs[-1]
        base = _base_parameters(Jw, rank)
        # the covariance in the identifiable directions (scaled), the others held
        V = Vh[:rank].T
        Js = Jw / c
        cov = (V @ torch.linalg.pinv(V.T @ Js.T @ Js @ V, hermitian=True) @ V.T) / c[:, None] / c[None, :]
        sigma0 = math.sqrt(float(2 * result.cost[0]) / max(M * m - rank, 1))
        std = cov.diagonal().clamp_min(0).sqrt() * (sigma0 if covariance is None else 1.0)
        with torch.no_grad():
            parts = residual.split(x)
            if "joint_origins" in parts:
                pchain.joint_origins.data.copy_(parts["joint_origins"])
            if "joint_offsets" in parts:
                pchain.joint_offsets.data.copy_(parts["joint_offsets"])
        history = History(*(torch.cat([getattr(r.history, k) for r in runs]) for k in ("cost", "damping", "accepted")))
        return CalibrationResult(
            chain=pchain.frozen(), converged=bool(result.converged[0]),
            iterations=sum(int(r.iterations[0]) for r in runs),
            cost=float(result.cost[0]), reason=result.reason[0], history=history, parameter_names=names,
            estimate=_deviation(x, x0, residual.K), std=std, origins=x[: 7 * residual.K].reshape(residual.K, 7),
            offsets=x[7 * residual.K :], singular_values=S1, scale=c, null_space=Vh[rank:].T,
            identifiable=tuple(names[j] for j in base), unidentifiable=_dependencies(Jw, base, names),
            before=_errors(residual, x0, q, meas), after=_errors(residual, x, q, meas), weights=w, sigma0=sigma0)


def perturbed_chain(chain: Chain, *, origin_mm: float = 1.0, origin_deg: float = 0.2, offset_deg: float = 0.3,
                    generator: torch.Generator | None = None) -> Chain:
    """A simulated "real" robot for calibration studies: ``chain`` with every joint origin
    moved by N(0, ``origin_mm``) along each axis and turned by N(0, ``origin_deg``) about each
    (a left perturbation in its parent frame), and every actuated joint's offset drawn from
    N(0, ``offset_deg``).  Returns a new plain chain; ``chain`` is not changed."""
    check_instance("chain", chain, Chain, "a robojac Chain")
    for name, v in (("origin_mm", origin_mm), ("origin_deg", origin_deg), ("offset_deg", offset_deg)):
        check_real("perturbed_chain", name, v)
    p = chain.with_parameters()
    K, dev = len(p.origin_joints), p.joint_offsets.device
    f64 = dict(generator=generator, dtype=torch.float64, device="cpu")
    d = torch.cat((torch.randn(K, 3, **f64) * origin_mm * 1e-3, torch.randn(K, 3, **f64) * math.radians(origin_deg)), -1)
    with torch.no_grad():
        p.joint_origins.data.copy_(lie.se3_compose(lie.se3_exp(d.to(dev)), p.joint_origins.tensor()))
        p.joint_offsets.copy_((torch.randn(chain.dof, **f64) * math.radians(offset_deg)).to(dev))
    return p.frozen()


def simulate_poses(chain: Chain, q: Tensor, *, position_mm: float = 0.05, rotation_deg: float = 0.005,
                   frame: str | None = None, generator: torch.Generator | None = None) -> Tensor:
    """What a tracker measures: ``frame``'s poses ``(M, 7)`` at ``q`` with N(0, ``position_mm``)
    added to each position coordinate and the rotation turned by N(0, ``rotation_deg``) about
    each axis (the noise model of :func:`calibrate_kinematics`' covariance)."""
    check_instance("chain", chain, Chain, "a robojac Chain")
    for name, v in (("position_mm", position_mm), ("rotation_deg", rotation_deg)):
        check_real("simulate_poses", name, v)
    T = chain.forward_kinematics_tensor(q, [frame or chain.tip])[..., 0, :]
    n = torch.randn(T.shape[:-1] + (6,), generator=generator, dtype=torch.float64, device="cpu").to(T)
    return torch.cat((T[..., :3] + position_mm * 1e-3 * n[..., :3],
                      lie.quat_mul(lie.so3_exp(math.radians(rotation_deg) * n[..., 3:]), T[..., 3:])), -1)


def _pick(what: str, chosen, allowed: list[str]) -> list[str]:
    if chosen is None:
        return []
    if chosen == "all":
        return list(allowed)
    chosen = [chosen] if isinstance(chosen, str) else list(chosen)
    off = [n for n in chosen if n not in allowed]
    if off:
        raise ValueError(f"CalibrationConfig.{what}: {off} are not joints that move the measured frame; expected some "
                         f"of {allowed}")
    return chosen


def _deviation(x: Tensor, x0: Tensor, K: int) -> Tensor:
    O, O0 = x[: 7 * K].reshape(K, 7), x0[: 7 * K].reshape(K, 7)
    d = lie.se3_log(lie.se3_compose(O, lie.se3_inverse(O0))).reshape(-1)
    return torch.cat((d, x[7 * K :] - x0[7 * K :]))


def _errors(residual: _Measured, x: Tensor, q: Tensor, meas: Tensor) -> MeasurementErrors:
    with torch.no_grad():
        e = residual.errors(residual.poses(x, q)[:, residual.tip], meas)
    return MeasurementErrors(e[:, :3].norm(dim=-1), e[:, 3:].norm(dim=-1) if e.shape[-1] == 6 else None)
