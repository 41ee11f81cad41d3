"""Trajectory alignment and error metrics (ATE, RPE) in evo's vocabulary."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from .. import lie
from .._config import check_bool, check_choice, check_instance, check_real
from .._threads import on_threads
from ._io import Trajectory, TrajectoryError, as_trajectory

__all__ = ["PoseRelation", "StatisticsType", "ErrorResult", "align_umeyama", "ate", "end_drift", "path_length",
           "project_to_plane", "rpe"]

PLANES = {"xy": 2, "xz": 1, "yz": 0}  # the plane -> the axis of its normal


def _pose_work(reference, *args, **kwargs):
    """A metric's work for ``robojac._threads``: a matrix per reference pose.  Its ops run over
    arrays of a few numbers per pose and woke a second torch thread for nothing (KITTI 00's 4541
    poses, ``docs/benchmarks.md#trajectory-errors``); a very long trajectory keeps the caller's
    count."""
    poses = reference.poses if isinstance(reference, Trajectory) else reference
    if isinstance(poses, Tensor) and poses.dim() > 0:
        return 16 * poses.shape[0], poses.device
    return None  # refused by the metric, by name


on_pose_threads = on_threads(_pose_work)


def align_umeyama(source: Tensor, target: Tensor, *, with_scale: bool = False,
                  degenerate_ok: bool = False) -> tuple[Tensor, Tensor, float]:
    """``(R, t, s)`` minimizing ``sum |target_i - (s R source_i + t)|^2`` (Umeyama 1991).

    Raises :class:`TrajectoryError` where the points do not fix the rotation: when either set
    lies on one line or one point, any turn about that line fits equally well, so an answer
    would be arbitrary (evo refuses these too).  The test: the covariance's second singular
    value is zero to float64's rounding, both of the first singular value and of what rounding
    the coordinates leaves across a line once centred (a set far from the origin, or at one
    point, keeps ``1e-16`` of its coordinates there).  ``degenerate_ok=True`` takes one of the
    equally good rotations instead (what it does to the points is the same for all of them): a
    caller that only needs the points placed, such as a pose graph's start on a straight drive."""
    for name, x in (("source", source), ("target", target)):  # shapes: _umeyama's check, ate's too
        check_instance(name, x, Tensor, "points (N, 3) as a tensor")
        if not bool(torch.isfinite(x).all()):
            raise TrajectoryError(f"{name}: contains NaN or infinite coordinates")
    check_bool("align_umeyama", "degenerate_ok", degenerate_ok)
    return _umeyama(source, target, with_scale, degenerate_ok=degenerate_ok)


def _umeyama(source: Tensor, target: Tensor, with_scale: bool, *, degenerate_ok: bool):
    """:func:`align_umeyama`; with ``degenerate_ok`` positions on a line or at a point get one of
    their equally good rotations (what it does to the positions is the same for all of them)."""
    x, y = source.double(), target.double()
    if x.shape != y.shape or x.dim() != 2 or x.shape[1] != 3 or x.shape[0] < 3:
        raise TrajectoryError(f"align: expected two (N >= 3, 3) point sets, got {tuple(x.shape)} and {tuple(y.shape)}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / x.shape[0]
    U, D, Vt = torch.linalg.svd(cov)
    # centring leaves each coordinate off by up to its rounding (eps times the largest): points
    # that are one point or on one line in exact arithmetic keep that much scatter across, and
    # the covariance that much rank (a set far from the origin: a relative test alone misses it)
    nx, ny = _RANK_TOLERANCE * float(x.abs().max()), _RANK_TOLERANCE * float(y.abs().max())
    spread = float(xc.square().sum(1).mean())
    rounding = nx * math.sqrt(float(yc.square().sum(1).mean())) + ny * math.sqrt(spread)
    if not bool((D[1] > D[0] * _RANK_TOLERANCE) & (D[1] > rounding)) and not degenerate_ok:
        raise TrajectoryError("align: the positions lie on one line or at one point, so no rotation aligns them "
                              "uniquely; pass align=False (and correct_scale=False) for such a trajectory")
    if with_scale and not spread > nx * nx:
        raise TrajectoryError("align: the estimate's positions are all one point, so no scale fits them; pass "
                              "correct_scale=False")
    S = torch.eye(3, dtype=x.dtype, device=x.device)
    if torch.det(U) * torch.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    s = float((D * S.diagonal()).sum() / spread) if with_scale else 1.0
    t = my - s * R @ mx
    return R, t, s


_RANK_TOLERANCE = 64 * torch.finfo(torch.float64).eps  # of the largest singular value


class PoseRelation(str, Enum):
    """Which part of the pose error a metric measures (evo's names)."""

    TRANSLATION_PART = "translation_part"
    ROTATION_ANGLE_RAD = "rotation_angle_rad"
    ROTATION_ANGLE_DEG = "rotation_angle_deg"
    FULL_TRANSFORMATION = "full_transformation"


class StatisticsType(str, Enum):
    RMSE = "rmse"
    MEAN = "mean"
    MEDIAN = "median"
    STD = "std"
    MIN = "min"
    MAX = "max"
    SSE = "sse"


@dataclass(frozen=True)
class ErrorResult:
    """Per-pose (or per-pair) ``errors`` and their statistics; the alignment used, if any."""

    errors: Tensor
    stats: dict = field(default_factory=dict)
    relation: PoseRelation = PoseRelation.TRANSLATION_PART
    alignment: Tensor | None = None  # 4x4 applied to the estimate (scale folded into the rotation)
    scale: float = 1.0

    def __getitem__(self, key) -> float:
        return self.stats[StatisticsType(key)]


def _stats(err: Tensor) -> dict:
    e = err.double()
    ranked = e.sort().values
    mid = len(ranked) // 2  # numpy's (and evo's) median: the mean of the middle two of an even count
    median = ranked[mid] if len(ranked) % 2 else 0.5 * (ranked[mid - 1] + ranked[mid])
    return {
        StatisticsType.RMSE: float(e.square().mean().sqrt()),
        StatisticsType.MEAN: float(e.mean()),
        StatisticsType.MEDIAN: float(median),
        StatisticsType.STD: float(e.std(unbiased=False)),
        StatisticsType.MIN: float(e.min()),
        StatisticsType.MAX: float(e.max()),
        StatisticsType.SSE: float(e.square().sum()),
    }


def _relation_error(E: Tensor, relation: PoseRelation) -> Tensor:
    """Errors of relative poses ``E (M, 7)`` (identity = no error)."""
    relation = PoseRelation(relation)
    if relation is PoseRelation.TRANSLATION_PART:
        return E[:, :3].norm(dim=1)
    angle = lie.so3_log(E[:, 3:]).norm(dim=1)
    if relation is PoseRelation.ROTATION_ANGLE_RAD:
        return angle
    if relation is PoseRelation.ROTATION_ANGLE_DEG:
        return torch.rad2deg(angle)
    M = lie.se3_to_matrix(E) - torch.eye(4, dtype=E.dtype, device=E.device)
    return M.flatten(1).norm(dim=1)  # evo: Frobenius norm of E - I


def project_to_plane(trajectory: Trajectory, plane: str) -> Trajectory:
    """``trajectory`` flattened into ``plane`` (``"xy"``, ``"xz"`` or ``"yz"``), as evo's
    ``--project_to_plane``: the coordinate along the plane's normal is set to zero, and each
    rotation is replaced by the rotation about the normal by that axis' angle among the
    rotation's static x-y-z Euler angles (``R = R_z(c) R_y(b) R_x(a)``: ``c`` for ``"xy"``, ``b``
    for ``"xz"``, ``a`` for ``"yz"``; at ``b = +-90 deg``, evo's convention ``c = 0``).  A
    ground robot's 3D estimate is then measured in its plane of travel only."""
    trajectory = as_trajectory(trajectory, "trajectory")
    check_choice("project_to_plane", "plane", plane, tuple(PLANES))
    return Trajectory(_project(trajectory.poses, plane), trajectory.timestamps)


def _project(P: Tensor, plane: str) -> Tensor:
    """Poses ``(N, 7)`` flattened into ``plane``, one of :data:`PLANES` (:func:`project_to_plane`)."""
    axis = PLANES[plane]
    R = lie.quat_to_matrix(P[:, 3:])
    cy = torch.sqrt(R[:, 0, 0] ** 2 + R[:, 1, 0] ** 2)
    regular = cy > 4 * torch.finfo(torch.float64).eps  # evo's (transformations.py's) gimbal-lock test
    if axis == 2:
        angle = torch.where(regular, torch.atan2(R[:, 1, 0], R[:, 0, 0]), 0.0)
    elif axis == 1:
        angle = torch.atan2(-R[:, 2, 0], cy)
    else:
        angle = torch.where(regular, torch.atan2(R[:, 2, 1], R[:, 2, 2]), torch.atan2(-R[:, 1, 2], R[:, 1, 1]))
    phi = torch.zeros_like(P[:, :3])
    phi[:, axis] = angle
    xyz = P[:, :3].clone()
    xyz[:, axis] = 0.0
    return torch.cat((xyz, lie.so3_exp(phi)), -1)


@on_pose_threads
def ate(reference: Trajectory, estimate: Trajectory, *, relation: PoseRelation = PoseRelation.TRANSLATION_PART,
        align: bool = True, correct_scale: bool = False, align_origin: bool = False,
        n_to_align: int | None = None, project_to_plane: str | None = None) -> ErrorResult:
    """Absolute trajectory error: the estimate aligned to the reference, then
    ``E_i = P_ref,i^-1 P_est,i`` per pose (evo's APE).

    The alignment is evo's: ``align`` fits a rigid motion (Umeyama), ``align`` with
    ``correct_scale`` a similarity, and ``correct_scale`` alone only the similarity's scale,
    applied about the world's origin.  ``n_to_align`` fits them to the first that many poses
    only (all by default).  ``align_origin`` (with ``align=False``) instead moves the estimate
    so that its first pose is the reference's, as an odometry's first scan defines its world.
    Positions all on one line (or at one point) fix no rotation about it: the translation part
    is measured all the same (every such rotation leaves the aligned positions where they are),
    the rotation relations are refused (evo refuses both), and so is a scale of one point.
    ``project_to_plane`` (``"xy"``, ``"xz"`` or ``"yz"``) flattens both trajectories into that
    plane after the alignment, as evo does (:func:`project_to_plane`).
    Poses ``(N, 7)`` or ``(N, 4, 4)`` stand for trajectories too."""
    reference, estimate = as_trajectory(reference, "reference"), as_trajectory(estimate, "estimate")
    if len(reference) != len(estimate):
        raise TrajectoryError(f"ate: {len(reference)} reference poses but {len(estimate)} estimated; associate them first")
    if project_to_plane is not None:
        check_choice("ate", "project_to_plane", project_to_plane, tuple(PLANES))
    P, A, s = _aligned(reference, estimate, relation, align, correct_scale, align_origin, n_to_align, "ate")
    Q = reference.poses
    if project_to_plane is not None:
        Q, P = _project(Q, project_to_plane), _project(P, project_to_plane)
    E = lie.se3_compose(lie.se3_inverse(Q), P)
    err = _relation_error(E, relation)
    return ErrorResult(err, _stats(err), PoseRelation(relation), A, s)


def _aligned(reference: Trajectory, estimate: Trajectory, relation, align: bool, correct_scale: bool,
             align_origin: bool, n_to_align: int | None, metric: str) -> tuple[Tensor, Tensor | None, float]:
    """The estimate's poses aligned as :func:`ate` describes, the 4x4 applied (``None``: none) and
    the scale."""
    if align and align_origin:
        raise TrajectoryError(f"{metric}: align_origin replaces the Umeyama alignment; pass align=False with it")
    fitted = len(estimate)
    if n_to_align is not None:
        if not (align or correct_scale):
            raise TrajectoryError(f"{metric}: n_to_align sets how many poses the alignment fits; pass align=True or "
                                  "correct_scale=True with it")
        if isinstance(n_to_align, bool) or not isinstance(n_to_align, int) or not 3 <= n_to_align <= len(estimate):
            raise TrajectoryError(f"{metric}: n_to_align must be an integer in [3, {len(estimate)}] (poses), got {n_to_align!r}")
        fitted = n_to_align
    P = estimate.poses
    A = None
    s = 1.0
    if align or correct_scale:
        # the translation part is the same for every rotation of positions on a line (they
        # turn about it): only the rotation relations need the rotation to be unique
        R, t, s = _umeyama(estimate.positions[:fitted], reference.positions[:fitted], correct_scale,
                           degenerate_ok=PoseRelation(relation) is PoseRelation.TRANSLATION_PART)
        if not align:  # the scale alone (evo's correct_only_scale)
            R, t = torch.eye(3, dtype=R.dtype, device=R.device), torch.zeros_like(t)
        A = torch.eye(4, dtype=torch.float64, device=P.device)
        A[:3, :3], A[:3, 3] = s * R, t
        q = lie.matrix_to_quat(R).expand(len(P), 4)
        P = torch.cat(((s * (R @ P[:, :3].T)).T + t, lie.quat_mul(q, P[:, 3:])), 1)
    if align_origin:
        if len(P) == 0:
            raise TrajectoryError(f"{metric}: align_origin needs a first pose; the trajectories are empty")
        T_origin = lie.se3_compose(reference.poses[0], lie.se3_inverse(P[0]))
        P = lie.se3_compose(T_origin.expand_as(P), P)
        M = lie.se3_to_matrix(T_origin)
        A = M if A is None else M @ A
    return P, A, s


@on_pose_threads
def rpe(reference: Trajectory, estimate: Trajectory, *, delta: float = 1,
        relation: PoseRelation = PoseRelation.TRANSLATION_PART, all_pairs: bool = False,
        delta_unit: str = "frames", rel_tol: float = 0.1, pairs_from_reference: bool = False, align: bool = False,
        correct_scale: bool = False, align_origin: bool = False, n_to_align: int | None = None,
        project_to_plane: str | None = None) -> ErrorResult:
    """Relative pose error over pairs ``(i, j)``: ``E = (Q_i^-1 Q_j)^-1 (P_i^-1 P_j)``, as evo's RPE.

    The pairs come from the estimate (or the reference, with ``pairs_from_reference``), as evo
    takes them:

    * ``delta_unit="frames"``: ``j = i + delta`` (an integer), consecutive windows, or every
      ``i`` with ``all_pairs``.
    * ``delta_unit="meters"``: ``delta`` metres travelled along that trajectory.  Consecutive: the
      first pair starts at the first pose and each ends where the path since its start first
      reaches ``delta``; the next starts there.  With ``all_pairs``: each ``i`` paired with the
      later ``j`` whose path from ``i`` is nearest ``delta`` (the first of equals), kept if
      within ``rel_tol * delta`` of it.  evo's ``--delta_unit m`` (as evo 1.38 pairs them).
    * ``delta_unit="degrees"`` or ``"radians"``: the same by the angle turned.  Consecutive: the
      angles of the rotations from each pose to the next, summed; with ``all_pairs``: every later
      pose whose rotation from ``i`` is within ``rel_tol * delta`` of ``delta`` (evo's
      ``deg``/``rad`` units).

    ``align``, ``correct_scale``, ``align_origin`` and ``n_to_align`` align the estimate first,
    as :func:`ate` does (and evo's RPE): a rigid alignment changes no relative pose, a scale
    does.  ``project_to_plane`` then flattens both trajectories into that plane, before the pairs
    are found (as evo).  Raises :class:`TrajectoryError` when no pair fits (a path shorter than ``delta``)."""
    reference, estimate = as_trajectory(reference, "reference"), as_trajectory(estimate, "estimate")
    if len(reference) != len(estimate):
        raise TrajectoryError(f"rpe: {len(reference)} reference poses but {len(estimate)} estimated; associate them first")
    if len(reference) < 2:
        raise TrajectoryError(f"rpe: {len(reference)} poses hold no relative pose; it needs two or more")
    check_choice("rpe", "delta_unit", delta_unit, ("frames", "meters", "degrees", "radians"))
    check_real("rpe", "rel_tol", rel_tol)  # used by the distance and angle units; refused by every one
    if project_to_plane is not None:
        check_choice("rpe", "project_to_plane", project_to_plane, tuple(PLANES))
    P, A, s = _aligned(reference, estimate, relation, align, correct_scale, align_origin, n_to_align, "rpe")
    if project_to_plane is not None:
        reference = Trajectory(_project(reference.poses, project_to_plane), reference.timestamps)
        P = _project(P, project_to_plane)
    if A is not None or project_to_plane is not None:
        estimate = Trajectory(P, estimate.timestamps)
    n = len(reference)
    if delta_unit == "frames":
        if not isinstance(delta, int) or isinstance(delta, bool) or delta < 1 or delta >= n:
            raise TrajectoryError(f"rpe: delta must be a whole number of frames in [1, {n - 1}], got {delta!r}")
        i = torch.arange(0, n - delta, 1 if all_pairs else delta, device=reference.poses.device)
        j = i + delta
    else:
        turn = {"degrees": 180.0, "radians": math.pi}.get(delta_unit)
        check_real("rpe", "delta", delta, positive=True, maximum=turn)  # a rotation's angle is at most a half turn
        along, name = (reference, "reference") if pairs_from_reference else (estimate, "estimate")
        d = math.radians(delta) if delta_unit == "degrees" else float(delta)
        i, j = _pairs_by_delta(along, d, delta_unit if turn is None else "radians", float(rel_tol) * d, all_pairs)
        if i.numel() == 0:
            far = f"its path is {path_length(along):.6g} m" if turn is None else "its poses never turn that far"
            unit = {"meters": "m", "degrees": "deg", "radians": "rad"}[delta_unit]
            raise TrajectoryError(f"rpe: no pair of poses {delta} {unit} apart along the {name} ({far}); "
                                  "try a smaller delta")
    Q = reference.poses
    dQ = lie.se3_compose(lie.se3_inverse(Q[i]), Q[j])
    dP = lie.se3_compose(lie.se3_inverse(P[i]), P[j])
    err = _relation_error(lie.se3_compose(lie.se3_inverse(dQ), dP), relation)
    return ErrorResult(err, _stats(err), PoseRelation(relation), A, s)


def _pairs_by_delta(trajectory: Trajectory, delta: float, unit: str, tol: float,
                    all_pairs: bool) -> tuple[Tensor, Tensor]:
    """Pairs ``(i, j)`` of poses ``delta`` metres (or radians) apart along ``trajectory``, with
    ``tol`` in the same unit (see :func:`rpe`)."""
    device = trajectory.poses.device
    P = trajectory.poses.cpu()
    if unit == "meters":
        if not all_pairs:
            return _consecutive(trajectory.steps.cpu().numpy(), delta, device)
        along = trajectory.distances.cpu().numpy()  # the path from the first pose
        last = len(along) - 1
        k = np.searchsorted(along, along + delta)  # the first pose at or past the goal
        after = np.arange(1, last + 2)  # candidates after i only
        below, above = np.clip(k - 1, after, last), np.clip(k, after, last)
        miss_below = np.abs((along[below] - along) - delta)
        miss_above = np.abs((along[above] - along) - delta)
        j = np.where(miss_below <= miss_above, below, above)  # the nearer; the first of equals
        ok = (np.minimum(miss_below, miss_above) <= tol) & (np.arange(last + 1) < last)
        i, j = np.flatnonzero(ok), j[ok]
    else:
        q = P[:, 3:]

        def turn(a: Tensor, b: Tensor) -> Tensor:  # the angle of the rotation from a to b
            return lie.so3_log(lie.quat_mul(lie.quat_conj(a), b)).norm(dim=-1)

        if not all_pairs:
            return _consecutive(turn(q[:-1], q[1:]).numpy(), delta, device)
        i, j = [], []
        for a in range(len(q) - 1):  # every later pose within the tolerance (evo's all pairs)
            hit = np.flatnonzero(np.abs(turn(q[a].expand(len(q) - a - 1, 4), q[a + 1 :]).numpy() - delta) <= tol)
            i.append(np.full(len(hit), a))
            j.append(hit + a + 1)
        i, j = (np.concatenate(i), np.concatenate(j)) if i else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return torch.as_tensor(i, dtype=torch.long, device=device), torch.as_tensor(j, dtype=torch.long, device=device)


def _consecutive(steps: np.ndarray, delta: float, device) -> tuple[Tensor, Tensor]:
    """Consecutive pairs from the first pose: each ends where the steps summed since its start
    (one by one, as evo sums them) first reach ``delta``, and the next starts there."""
    ends, run = [0], 0.0
    for k, step in enumerate(steps.tolist(), start=1):
        run += step
        if run >= delta:
            ends.append(k)
            run = 0.0
    return (torch.tensor(ends[:-1], dtype=torch.long, device=device),
            torch.tensor(ends[1:], dtype=torch.long, device=device))


def path_length(trajectory: Trajectory) -> float:
    """The distance travelled: the sum of the steps between consecutive positions (m)."""
    return float(as_trajectory(trajectory, "trajectory").steps.sum())


def end_drift(reference: Trajectory, estimate: Trajectory) -> float:
    """How far the estimate's last position lies from the reference's, as a share of the
    reference's path length (odometry's drift; both trajectories start at the same pose, as an
    odometry's first scan defines its world, and are not aligned)."""
    reference, estimate = as_trajectory(reference, "reference"), as_trajectory(estimate, "estimate")
    if len(reference) != len(estimate):
        raise TrajectoryError(f"end_drift: {len(reference)} reference poses but {len(estimate)} estimated")
    length = path_length(reference)
    if length <= 0:
        raise TrajectoryError("end_drift: the reference does not move (path length 0)")
    return float((estimate.positions[-1] - reference.positions[-1]).norm()) / length
