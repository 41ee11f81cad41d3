"""Hand-eye calibration: where a camera sits on a robot (``AX = XB``) and the robot-world
variant (``AX = ZB``), in closed form and refined on the solver engine.

Conventions (OpenCV's ``calibrateHandEye``, in robojac's frame names), per station ``i``:

* eye in hand: the camera rides on the gripper.  From ``T_base_gripper_i`` and
  ``T_camera_target_i``, find ``X = T_gripper_camera`` (and ``Z = T_base_target``).
* eye to hand: the camera stands still and the target rides on the gripper.  The same inputs
  give ``X = T_base_camera`` (and ``Z = T_gripper_target``).

Every station satisfies ``A_i X B_i = Z`` (``A_i = T_base_gripper_i``, or its inverse eye to
hand; ``B_i = T_camera_target_i``).  The closed forms use the motions between every pair of
stations ``i < j`` (``A_ij X = X B_ij`` with ``A_ij = A_j^-1 A_i``, ``B_ij = B_j B_i^-1``, the pairs
OpenCV uses); the refinement fits the stations themselves, with robust kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .. import lie
from .._config import check_choice, check_real
from .._precision import in_dtype, working_dtype
from .._threads import threads_for, torch_threads
from ..optim import Factor, History, RobustKernel, SolverConfig, Variable, solve

__all__ = ["HandEyeConfig", "HandEyeResult", "hand_eye", "robot_world_hand_eye"]

METHODS = ("tsai", "park", "daniilidis", "refined")


@dataclass(frozen=True)
class HandEyeConfig:
    """Options of :func:`hand_eye` and :func:`robot_world_hand_eye`.

    * ``sigma_position`` (m) and ``sigma_rotation`` (rad): the noise of the camera's target
      poses (position, and rotation about the target), which weighs one against the other in
      the refinement; the robot's poses are taken as exact.
    * ``kernel``: a robust kernel on each station's whitened residual (``RobustKernel("cauchy")``
      for stations with a misdetected target).
    * ``start``: the closed form the refinement starts from (``"tsai"``, ``"park"`` or
      ``"daniilidis"``).
    * ``solver``: the engine's configuration.
    """

    sigma_position: float = 1e-3
    sigma_rotation: float = 1e-3
    kernel: RobustKernel = field(default_factory=RobustKernel)
    start: Literal["tsai", "park", "daniilidis"] = "park"
    solver: SolverConfig = field(default_factory=SolverConfig)

    def __post_init__(self):
        check_real("HandEyeConfig", "sigma_position", self.sigma_position, positive=True)
        check_real("HandEyeConfig", "sigma_rotation", self.sigma_rotation, positive=True)
        check_choice("HandEyeConfig", "start", self.start, METHODS[:3])
        if not isinstance(self.kernel, RobustKernel):
            raise ValueError(f"HandEyeConfig.kernel: expected a RobustKernel, got {self.kernel!r}")
        if not isinstance(self.solver, SolverConfig):
            raise ValueError(f"HandEyeConfig.solver: expected a SolverConfig, got {self.solver!r}")


@dataclass(frozen=True)
class HandEyeResult:
    """``X`` and ``Z`` (``(..., 7)``, the inputs' batch shape; see the module's conventions), the
    ``method``, and the engine's vocabulary per problem (``converged``, ``iterations``,
    ``cost``, ``reason``, ``history``; a closed form reports ``reason="closed_form"``, 0
    iterations and ``history=None``).  ``position_error`` / ``rotation_error`` ``(..., N)``: how
    far the target pose each station predicts, ``X^-1 A_i^-1 Z``, lands from the measured
    ``B_i`` (m, rad); ``weights`` ``(..., N)``: the
    robust weights (1 without a kernel)."""

    X: Tensor
    Z: Tensor
    method: str
    converged: Tensor
    iterations: Tensor
    cost: Tensor
    reason: tuple[str, ...]
    history: History | None
    position_error: Tensor
    rotation_error: Tensor
    weights: Tensor


# ---- closed forms -----------------------------------------------------------------------------

def _rotation(q: Tensor) -> Tensor:
    return lie.quat_to_matrix(q)


def _pairs(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    """Motions ``A_ij = A_j^-1 A_i``, ``B_ij = B_j B_i^-1`` of every pair ``i < j``: ``(Bt, K, 7)``."""
    i, j = torch.triu_indices(A.shape[1], A.shape[1], 1, device=A.device)
    return (lie.se3_compose(lie.se3_inverse(A[:, j]), A[:, i]),
            lie.se3_compose(B[:, j], lie.se3_inverse(B[:, i])))


def _translation(RX: Tensor, Ap: Tensor, Bp: Tensor) -> Tensor:
    """``t_X`` from ``(R_A - I) t_X = R_X t_B - t_A`` over the pairs, least squares."""
    RA = _rotation(Ap[..., 3:])
    eye = torch.eye(3, dtype=RA.dtype, device=RA.device)
    M = (RA - eye).flatten(-3, -2)  # (Bt, 3K, 3)
    rhs = ((RX[:, None] @ Bp[..., :3, None])[..., 0] - Ap[..., :3]).flatten(-2)
    return torch.linalg.lstsq(M, rhs[..., None]).solution[..., 0]


def _tsai(Ap: Tensor, Bp: Tensor) -> Tensor:
    def mrp(q):  # the modified Rodrigues vector 2 sin(theta / 2) n, theta in [0, pi]
        return 2 * q[..., :3] * torch.where(q[..., 3:] < 0, -1.0, 1.0)

    Pa, Pb = mrp(Ap[..., 3:]), mrp(Bp[..., 3:])
    M = lie.skew(Pa + Pb).flatten(-3, -2)
    P = torch.linalg.lstsq(M, (Pb - Pa).flatten(-2)[..., None]).solution[..., 0]
    P = 2 * P / torch.sqrt(1 + P.square().sum(-1, keepdim=True))
    n2 = P.square().sum(-1)[..., None, None]
    eye = torch.eye(3, dtype=P.dtype, device=P.device)
    R = (1 - n2 / 2) * eye + 0.5 * (P[..., :, None] * P[..., None, :] + torch.sqrt(4 - n2) * lie.skew(P))
    return R


def _park(Ap: Tensor, Bp: Tensor) -> Tensor:
    alpha, beta = lie.so3_log(Ap[..., 3:]), lie.so3_log(Bp[..., 3:])
    M = (beta[..., :, None] * alpha[..., None, :]).sum(-3)  # sum beta alpha^T
    evals, evecs = torch.linalg.eigh(M.transpose(-1, -2) @ M)
    inv_sqrt = evecs @ torch.diag_embed(evals.clamp_min(torch.finfo(M.dtype).tiny).rsqrt()) @ evecs.transpose(-1, -2)
    return inv_sqrt @ M.transpose(-1, -2)


def _daniilidis(Ap: Tensor, Bp: Tensor) -> Tensor:
    """Dual quaternions (scalar first): a q = q b, the two-dimensional null space of the stacked
    6 x 8 equations, and the combination that is a unit dual quaternion."""
    def dual(X):
        q = lie.xyzw_to_wxyz(X[..., 3:])
        q = torch.where(q[..., :1] < 0, -q, q)
        t = torch.cat((torch.zeros_like(X[..., :1]), X[..., :3]), -1)
        return q, 0.5 * _wxyz_mul(t, q)

    (qa, da), (qb, db) = dual(Ap), dual(Bp)
    va, vb, wa, wb = qa[..., 1:], qb[..., 1:], da[..., 1:], db[..., 1:]
    zero1, zero3 = torch.zeros_like(va[..., :1]), torch.zeros_like(lie.skew(va))
    top = torch.cat(((va - vb)[..., None], lie.skew(va + vb), zero1[..., None].expand(va.shape + (1,)), zero3), -1)
    bottom = torch.cat(((wa - wb)[..., None], lie.skew(wa + wb), (va - vb)[..., None], lie.skew(va + vb)), -1)
    T = torch.cat((top, bottom), -2).flatten(-3, -2)  # (Bt, 6K, 8)
    V = torch.linalg.svd(T, full_matrices=False).Vh.transpose(-1, -2)
    v1, v2 = V[..., 6], V[..., 7]
    u1, w1, u2, w2 = v1[..., :4], v1[..., 4:], v2[..., :4], v2[..., 4:]
    dot = lambda a, b: (a * b).sum(-1)  # noqa: E731
    a, b, c = dot(u1, w1), dot(u1, w2) + dot(u2, w1), dot(u2, w2)
    disc = torch.sqrt((b * b - 4 * a * c).clamp_min(0))
    s1, s2 = (-b + disc) / (2 * a), (-b - disc) / (2 * a)
    val = lambda s: s * s * dot(u1, u1) + 2 * s * dot(u1, u2) + dot(u2, u2)  # noqa: E731
    s = torch.where(val(s1) > val(s2), s1, s2)
    l2 = 1 / torch.sqrt(val(s))
    q = (s * l2)[..., None] * u1 + l2[..., None] * u2
    d = (s * l2)[..., None] * w1 + l2[..., None] * w2
    conj = torch.cat((q[..., :1], -q[..., 1:]), -1)
    t = 2 * _wxyz_mul(d, conj)[..., 1:]  # the dual part carries the translation: d = t q / 2
    return _rotation(lie.wxyz_to_xyzw(q)), t


def _wxyz_mul(a: Tensor, b: Tensor) -> Tensor:
    return lie.xyzw_to_wxyz(lie.quat_mul(lie.wxyz_to_xyzw(a), lie.wxyz_to_xyzw(b)))


def _closed_form(method: str, A: Tensor, B: Tensor) -> Tensor:
    Ap, Bp = _pairs(A, B)
    R, t = _daniilidis(Ap, Bp) if method == "daniilidis" else ({"tsai": _tsai, "park": _park}[method](Ap, Bp), None)
    U, _, Vh = torch.linalg.svd(R)  # the nearest rotation (the forms are rotations up to rounding)
    R = U @ torch.diag_embed(torch.cat((torch.ones_like(R[..., :2, 0]), torch.det(U @ Vh)[..., None]), -1)) @ Vh
    t = _translation(R, Ap, Bp) if t is None else t  # Tsai-Lenz and Park-Martin: least squares
    return torch.cat((t, lie.matrix_to_quat(R)), -1)


def _z_from(A: Tensor, X: Tensor, B: Tensor) -> Tensor:
    """The mean of ``A_i X B_i`` over the stations (chordal: the rotations' SVD projection)."""
    P = lie.se3_compose(lie.se3_compose(A, X[:, None].expand_as(A)), B)
    U, _, Vh = torch.linalg.svd(_rotation(P[..., 3:]).sum(-3))
    R = U @ torch.diag_embed(torch.cat((torch.ones_like(U[..., :2, 0]), torch.det(U @ Vh)[..., None]), -1)) @ Vh
    return torch.cat((P[..., :3].mean(-2), lie.matrix_to_quat(R)), -1)


# ---- the refinement on the engine ------------------------------------------------------------

class _Station:
    """A station's measured target pose ``B_i`` against the one ``X^-1 A_i^-1 Z`` predicts:
    ``[(t - t_B) / sigma_p; Log(R R_B^T) / sigma_r]``, the camera's own error (the engine
    differentiates it: no Jacobian written)."""

    def __init__(self, sigma_p: float, sigma_r: float):
        self.sp, self.sr = sigma_p, sigma_r

    def __call__(self, X: Tensor, Z: Tensor, A: Tensor, B: Tensor) -> Tensor:
        P = lie.se3_compose(lie.se3_inverse(lie.se3_compose(A, X)), Z)
        rot = lie.so3_log(lie.quat_mul(P[..., 3:], lie.quat_conj(B[..., 3:])))
        return torch.cat(((P[..., :3] - B[..., :3]) / self.sp, rot / self.sr), -1)


def _refine(A: Tensor, B: Tensor, X0: Tensor, Z0: Tensor, cfg: HandEyeConfig):
    Bt, N = A.shape[:2]
    X = Variable("SE3", X0[:, None].clone(), name="X")
    Z = Variable("SE3", Z0[:, None].clone(), name="Z")
    index = torch.zeros(N, 2, dtype=torch.long, device=A.device)
    factor = Factor(_Station(cfg.sigma_position, cfg.sigma_rotation), [X, Z], index, data=[A, B], kernel=cfg.kernel,
                    name="stations")
    return solve([X, Z], [factor], cfg.solver)


# ---- public -----------------------------------------------------------------------------------

def _stations(T, name: str) -> Tensor:
    X = lie.se3_tensor(T, name=name)
    if X.dim() < 2:
        raise ValueError(f"{name}: expected one pose per station, (..., N, 7) or (..., N, 4, 4); got a single pose")
    return X


def _check_motion(A: Tensor, name: str) -> None:
    """Refuse a set of motions that cannot determine ``X``: fewer than three stations, or every
    rotation about one axis (``X``'s translation along it is then free)."""
    N = A.shape[1]
    if N < 3:
        raise ValueError(f"{name}: expected at least 3 stations (two motions), got {N}")
    Ap, _ = _pairs(A, A)
    axes = lie.so3_log(Ap[..., 3:])  # (Bt, K, 3), length = angle
    big = axes.norm(dim=-1, keepdim=True) > 1e-3
    s = torch.linalg.svdvals(torch.where(big, axes / axes.norm(dim=-1, keepdim=True).clamp_min(1e-12), 0.0))
    still = s[..., 0] == 0  # no motion turns the gripper by more than 1e-3 rad
    if bool(still.any()):
        which = int(still.nonzero()[0]) if still.dim() else 0
        raise ValueError(f"{name}: the gripper does not turn between stations (problem {which}; every motion "
                         "under 1e-3 rad); the hand-eye rotation is not determined. Rotate the gripper about at "
                         "least two non-parallel axes between stations")
    bad = s[..., 1] < 1e-3 * s[..., 0]
    if bool(bad.any()):
        which = int(bad.nonzero()[0]) if bad.dim() else 0
        raise ValueError(f"{name}: the gripper turns about one axis only (problem {which}); the hand-eye "
                         "transform is not determined (its translation along that axis is free). Rotate the gripper "
                         "about at least two non-parallel axes between stations")


def _finish(method, A, B, X, Z, converged, iterations, cost, reason, history, cfg, batch) -> HandEyeResult:
    """The result at ``X``, ``Z``: each station's errors and robust weight (and, for a closed
    form, ``cost=None``: its cost, from the same residuals)."""
    r = _Station(cfg.sigma_position, cfg.sigma_rotation)(X[:, None].expand_as(A), Z[:, None].expand_as(A), A, B)
    s2 = r.square().sum(-1)
    w = cfg.kernel.row_weights(r)
    w = torch.ones_like(s2) if w is None else w
    cost = 0.5 * cfg.kernel.rho(s2).sum(-1) if cost is None else cost
    pe, re = r[..., :3].norm(dim=-1) * cfg.sigma_position, r[..., 3:].norm(dim=-1) * cfg.sigma_rotation
    shape = lambda t: t.reshape(batch + t.shape[1:])  # noqa: E731
    return HandEyeResult(shape(X), shape(Z), method, shape(converged), shape(iterations), shape(cost), reason, history,
                         shape(pe), shape(re), shape(w))


def _solve(A: Tensor, B: Tensor, method: str, config: HandEyeConfig | None, names: tuple[str, str],
           owner: str) -> HandEyeResult:
    """Both public forms once their stations are read (``names``: the caller's argument names)."""
    cfg = config or HandEyeConfig()
    check_choice(owner, "method", method, METHODS)
    if A.shape != B.shape:
        raise ValueError(f"{names[0]}, {names[1]}: expected one pose of each per station, got {tuple(A.shape)} and "
                         f"{tuple(B.shape)}")
    if method != "refined" and torch.is_grad_enabled() and (A.requires_grad or B.requires_grad):
        raise ValueError(f"method: {method!r} is a closed form, and has no derivative to give: its SVDs meet repeated "
                         f"singular values (a rotation's, a null space's); method='refined' differentiates the answer "
                         f"by the implicit function theorem")
    batch = A.shape[:-2]
    given = A.dtype
    work = working_dtype(given)  # stations in a half precision: solved in float32, answered in theirs
    A, B = A.to(work).reshape(-1, *A.shape[-2:]), B.to(work).reshape(-1, *B.shape[-2:])
    # small SVDs, solves and least squares: one torch thread below robojac._threads' size, counted
    # as the closed forms' largest arrays: every pair of stations' motion, 12 numbers each per
    # problem (30 stations, refined: 15.5 -> 9.5 ms, benchmarks/ab.py --case calibration)
    with torch_threads(threads_for(A.shape[0] * A.shape[1] * A.shape[1] * 12, A.device)):
        _check_motion(A, names[0])
        X = _closed_form(cfg.start if method == "refined" else method, A, B)
        Z = _z_from(A, X, B)
        if method != "refined":
            Bt, dev = A.shape[0], A.device
            out = _finish(method, A, B, X, Z, torch.ones(Bt, dtype=torch.bool, device=dev),
                          torch.zeros(Bt, dtype=torch.long, device=dev), None, ("closed_form",) * Bt, None, cfg, batch)
        else:
            res = _refine(A, B, X, Z, cfg)
            out = _finish(method, A, B, res.values[0][:, 0], res.values[1][:, 0], res.converged, res.iterations,
                          res.cost, res.reason, res.history, cfg, batch)
    return out if work == given else in_dtype(out, given)


def robot_world_hand_eye(A, B, *, method: Literal["tsai", "park", "daniilidis", "refined"] = "refined",
                         config: HandEyeConfig | None = None) -> HandEyeResult:
    """Solve ``A_i X B_i = Z`` for ``X`` and ``Z`` from stations ``A``, ``B`` (SE3 LieTensors,
    ``(..., N, 7)`` or ``(..., N, 4, 4)``; leading dims are independent problems).

    This is the robot-world/hand-eye problem ``AX = ZB`` written with the measured poses as
    they come (``A_i = T_base_gripper_i``, ``B_i = T_camera_target_i``: ``X = T_gripper_camera``,
    ``Z = T_base_target``).  ``method``: a closed form on the station pairs
    (``"tsai"``, ``"park"``, ``"daniilidis"``, each followed by ``Z``'s chordal mean) or
    ``"refined"`` (default): nonlinear least squares on SE3 over the stations' measured target
    poses (maximum likelihood for the noise ``config`` describes), from ``config.start``, with
    ``config.kernel``.

    Stations that require grad make ``"refined"``'s answer differentiable (the implicit function
    theorem at it, on the engine); a closed form refuses them (its SVDs meet repeated singular
    values, where no derivative exists: torch's gave NaN).

    Raises ``ValueError`` for mismatched station counts, fewer than 3 stations, non-finite or
    non-rigid poses (named), or motions that all turn about one axis.
    """
    return _solve(_stations(A, "A"), _stations(B, "B"), method, config, ("A", "B"), "robot_world_hand_eye")


def hand_eye(T_base_gripper, T_camera_target, *, setup: Literal["eye_in_hand", "eye_to_hand"] = "eye_in_hand",
             method: Literal["tsai", "park", "daniilidis", "refined"] = "refined",
             config: HandEyeConfig | None = None) -> HandEyeResult:
    """Hand-eye calibration ``AX = XB`` from stations: the robot's ``T_base_gripper`` and the
    camera's ``T_camera_target`` (a checkerboard's pose), ``(..., N, 7)``, ``(..., N, 4, 4)`` or
    SE3 LieTensors.

    ``setup="eye_in_hand"`` gives ``X = T_gripper_camera`` (and ``Z = T_base_target``);
    ``"eye_to_hand"`` gives ``X = T_base_camera`` (and ``Z = T_gripper_target``).  ``method``
    is a closed form (``"tsai"``: Tsai-Lenz; ``"park"``: Park-Martin; ``"daniilidis"``: dual
    quaternions) or ``"refined"`` (default: the closed form ``config.start``, then nonlinear
    least squares on SE3 with ``config.kernel``; see :func:`robot_world_hand_eye`).
    """
    check_choice("hand_eye", "setup", setup, ("eye_in_hand", "eye_to_hand"))
    A = _stations(T_base_gripper, "T_base_gripper")
    if setup == "eye_to_hand":
        A = lie.se3_inverse(A)
    names = ("T_base_gripper", "T_camera_target")
    return _solve(A, _stations(T_camera_target, names[1]), method, config, names, "hand_eye")
