"""``align``: batched ICP (point-to-point, point-to-plane, generalized ICP) on SE3."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from .. import lie
from ..lie import se3_tensor, wrap_lie
from .._config import check_choice, check_int, check_real
from .._precision import PRECISIONS, in_dtype, working_dtype
from .._threads import threads_for, torch_threads
from ..optim import History, RobustKernel, damped
from . import _soa as soa
from ._cloud import as_points, check_resolution, knn_covariances, knn_covariances_many, spatial_order, voxel_downsample
from ._neighbors import NearestNeighbors, PaddedNeighbors

__all__ = ["ICPConfig", "RegistrationResult", "PreparedCloud", "prepare", "align"]

Method = Literal["point_to_point", "point_to_plane", "gicp"]
METHODS = ("point_to_point", "point_to_plane", "gicp")


@dataclass(frozen=True)
class ICPConfig:
    """Options of :func:`align`.

    * ``method``: ``"point_to_point"`` (closed-form SVD step), ``"point_to_plane"`` or ``"gicp"``
      (plane-to-plane: both clouds' local covariances), the last two Gauss-Newton on SE3.
    * ``voxel_size``: downsampling inside ``align`` (0: none); ``levels`` multiply it, coarse to
      fine (``(4, 2, 1)`` runs three stages), each stage starting where the last ended.
    * ``max_correspondence_distance``: pairs farther apart are ignored (scaled with the level);
      ``None`` uses 10 voxels, or 10 % of the target's extent without downsampling.
    * ``kernel``: a :class:`~robojac.optim.RobustKernel` on the residual (Mahalanobis for GICP).
    * ``restarts``: also try this many rotations of the initial guess (up to ``restart_angle``,
      about the source's centroid) in the same batch, and keep the one that fits best after the
      first level: for initial errors beyond a local method's basin.
    * stopping per pair: a step below ``rotation_tolerance`` (rad) and
      ``translation_tolerance``, or ``max_iterations`` per level.
    * ``num_neighbors``: the neighbourhood (points, the point itself included) whose scatter
      gives each point's normal and covariance (point-to-plane, GICP).
    * ``neighbors_backend``: ``"auto"`` (a KD-tree on the CPU, brute force elsewhere),
      ``"kdtree"`` (small_gicp's, CPU) or ``"brute"`` (the GPU's batched path, on any device).
    * ``num_threads``: torch CPU threads inside ``align`` (restored after); ``None`` uses one
      thread for problems under ~55k points (where waking a second thread costs more than it
      saves) and torch's setting above.
    """

    method: Method = "gicp"
    voxel_size: float = 0.0
    max_correspondence_distance: float | None = None
    kernel: RobustKernel = field(default_factory=RobustKernel)
    levels: tuple[float, ...] = (1.0,)
    max_iterations: int = 30
    rotation_tolerance: float = 1e-4
    translation_tolerance: float = 1e-5
    num_neighbors: int = 10
    restarts: int = 0
    restart_angle: float = math.pi / 2
    neighbors_backend: str = "auto"
    num_threads: int | None = None

    def correspondence_distance(self, target: Tensor, factor: float = 1.0) -> float:
        """The correspondence distance ``align`` uses for ``target`` (points ``(N, 3)``) at a
        level ``factor``: the configured one, else 10 voxels, else (no voxels: the target as
        given) 10 % of the target's extent."""
        if self.max_correspondence_distance is not None:
            return self.max_correspondence_distance * factor
        if self.voxel_size > 0:
            return 10.0 * self.voxel_size * factor
        return 0.1 * float((target.max(0).values - target.min(0).values).norm())

    def __post_init__(self):
        owner = "ICPConfig"
        check_choice(owner, "method", self.method, METHODS)
        if isinstance(self.kernel, str):
            object.__setattr__(self, "kernel", RobustKernel(self.kernel))
        if not isinstance(self.kernel, RobustKernel):
            raise ValueError(f"ICPConfig.kernel: expected a RobustKernel or kernel name, got {self.kernel!r}")
        check_real(owner, "voxel_size", self.voxel_size)
        check_real(owner, "max_correspondence_distance", self.max_correspondence_distance, positive=True, optional=True)
        levels = tuple(self.levels) if isinstance(self.levels, (tuple, list)) else ()
        if not levels:
            raise ValueError(f"ICPConfig.levels: expected positive multiples of the voxel size, got {self.levels!r}")
        for v in levels:
            check_real(owner, "levels", v, positive=True)
        object.__setattr__(self, "levels", levels)
        check_int(owner, "max_iterations", self.max_iterations, minimum=1)
        check_real(owner, "rotation_tolerance", self.rotation_tolerance)
        check_real(owner, "translation_tolerance", self.translation_tolerance)
        check_int(owner, "num_neighbors", self.num_neighbors, minimum=5)
        check_int(owner, "restarts", self.restarts, minimum=0)
        check_real(owner, "restart_angle", self.restart_angle, positive=True, maximum=math.pi)
        check_choice(owner, "neighbors_backend", self.neighbors_backend, ("auto", "kdtree", "brute"))
        check_int(owner, "num_threads", self.num_threads, minimum=1, optional=True)


@dataclass(frozen=True)
class RegistrationResult:
    """``T_target_source`` (SE3, batch shape of the input) maps source points into the target frame.

    The engine's vocabulary (:class:`~robojac.optim.SolveResult`), per pair: ``converged``,
    ``iterations`` (over all levels), ``cost`` (``0.5 sum rho(r^2)`` of the method's residual:
    distances, plane distances or GICP's Mahalanobis distances, over the correspondences within
    the distance, at the pose the last iteration stepped from: the answer, to within its last
    step), ``reason`` (``"step_tolerance"``, ``"max_iterations"`` or ``"no_correspondences"``: fewer
    than three correspondences within the distance, or of nonzero weight under the kernel;
    ``global_align`` adds ``"no_consistent_pose"``; in the flattened batch order) and ``history``
    (each iteration's cost at the pose it stepped from, ``(T, B)``; NaN once a pair has stopped;
    ``damping`` zero, ``accepted`` where a step was taken).  And ``num_inliers`` (source points
    whose nearest target point lies within the correspondence distance), ``fitness`` (inliers /
    source points after downsampling) and ``rmse`` (of the inlier distances), at the same pose as
    ``cost``: of the correspondences the last step was computed from (as small_gicp reports
    them; Open3D searches once more at the answer, which cost ~6 % of a bunny alignment).  At a
    converged pair they differ from the answer's by at most the last step, which is below the
    tolerances.
    """

    T_target_source: pp.LieTensor
    converged: Tensor
    iterations: Tensor
    num_inliers: Tensor
    fitness: Tensor  # inliers / source points (after downsampling)
    rmse: Tensor  # of the inlier distances
    cost: Tensor | None = None
    reason: tuple[str, ...] = ()
    history: History | None = None

    def matrix(self) -> Tensor:
        """``T_target_source`` as ``(..., 4, 4)`` matrices."""
        return lie.se3_to_matrix(self.T_target_source.tensor())


@dataclass(eq=False)
class PreparedCloud:
    """A cloud with what ICP needs from it: downsampled points, a neighbour index, and (on
    demand) normals and covariances.  Prepare a target once and align many sources to it."""

    points: Tensor
    index: NearestNeighbors
    num_neighbors: int = 10
    _cov: Tensor | None = None  # (3, 3, N)
    _normals: Tensor | None = None  # (3, N)
    _ordered: bool = False  # the points are in spatial_order (align's own, for faster searches)

    @property
    def points_t(self) -> Tensor:
        return self.points.T.contiguous()

    def covariances_soa(self) -> Tensor:
        if self._cov is None:
            self._cov, self._normals = knn_covariances(self.points, self.num_neighbors, with_normals=True,
                                                       ordered=self._ordered)
        return self._cov

    def normals_soa(self) -> Tensor:
        if self._normals is None:
            self.covariances_soa()
        return self._normals

    @property
    def covariances(self) -> Tensor:
        """Neighbourhood covariances ``(N, 3, 3)``."""
        return self.covariances_soa().permute(2, 0, 1)

    @property
    def normals(self) -> Tensor:
        """Unit normals ``(N, 3)`` (sign arbitrary)."""
        return self.normals_soa().T


def prepare(cloud, voxel_size: float = 0.0, *, num_neighbors: int = 10, backend: str = "auto", name: str = "cloud") -> PreparedCloud:
    """Downsample ``cloud`` and give it a neighbour index (built on first use, then reused across
    :func:`align` calls, as are its covariances and normals, from ``num_neighbors`` neighbours:
    keep it equal to :attr:`ICPConfig.num_neighbors`, whose default it shares)."""
    pts = as_points(cloud, name)
    pts = voxel_downsample(pts, voxel_size)
    return PreparedCloud(pts, NearestNeighbors(pts, backend=backend), num_neighbors)


def _prepare_ordered(points: Tensor, voxel_size: float, num_neighbors: int, backend: str) -> PreparedCloud:
    """:func:`prepare` for ``align``'s own use: the points put in :func:`spatial_order` (no one
    outside sees their order), which makes the covariances' neighbour search faster."""
    pts = voxel_downsample(points, voxel_size)
    ordered = pts.device.type == "cpu"  # a brute-force search (any other device) gains nothing from it
    if ordered:
        pts = pts[spatial_order(pts)]
    return PreparedCloud(pts, NearestNeighbors(pts, backend=backend), num_neighbors, _ordered=ordered)


def _pairs(source, target, source_lengths=None, target_lengths=None):
    """Lists of per-pair clouds and the batch shape: single pair, (B, N, 3) tensors or arrays
    (padded, with lengths, or not), or lists."""
    def listify(x, name, lengths):
        if isinstance(x, np.ndarray) and x.ndim == 3:
            x = torch.from_numpy(x)
        padded = isinstance(x, Tensor) and x.dim() == 3
        if lengths is not None:
            if not padded:
                raise ValueError(f"{name}_lengths: only for a padded (B, N, 3) {name}, got {name} as "
                                 f"{type(x).__name__}{tuple(x.shape) if hasattr(x, 'shape') else ''}")
            return [x[b, :n] for b, n in enumerate(_lengths(lengths, x.shape[0], x.shape[1], f"{name}_lengths"))], True
        if isinstance(x, (list, tuple)):
            return list(x), True
        if padded:
            return list(x.unbind(0)), True
        return [x], False

    srcs, sb = listify(source, "source", source_lengths)
    tgts, tb = listify(target, "target", target_lengths)
    if len(tgts) == 1 and len(srcs) > 1:
        tgts = tgts * len(srcs)
    if len(srcs) != len(tgts):
        raise ValueError(f"source and target: batch sizes differ ({len(srcs)} sources, {len(tgts)} targets)")
    return srcs, tgts, ((len(srcs),) if (sb or tb) else ())


def _lengths(lengths, B: int, N: int, name: str) -> list[int]:
    """Checked per-row point counts of a padded ``(B, N, 3)`` batch."""
    t = torch.as_tensor(lengths, device="cpu") if not isinstance(lengths, Tensor) else lengths
    if t.shape != (B,) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected {B} integer point counts (one per row of the padded batch), "
                         f"got {t.dtype} of shape {tuple(t.shape)}")
    out = t.tolist()
    bad = [b for b, n in enumerate(out) if not 0 <= n <= N]
    if bad:
        raise ValueError(f"{name}: row {bad[0]} has {out[bad[0]]} points; expected 1 to {N} (the padded size)")
    return out


def _restart_rotations(n: int, max_angle: float, dtype) -> Tensor:
    """``n`` rotation vectors spread over directions (Fibonacci sphere) and angles up to ``max_angle``."""
    k = torch.arange(n, dtype=dtype, device="cpu")
    golden = math.pi * (3 - math.sqrt(5))
    z = 1 - 2 * (k + 0.5) / n
    r = torch.sqrt(1 - z * z)
    axes = torch.stack((r * torch.cos(golden * k), r * torch.sin(golden * k), z), -1)
    angles = max_angle * torch.sqrt((k + 1) / n)
    return axes * angles[:, None]


def align(source, target, *, init=None, config: ICPConfig | None = None, source_lengths=None,
          target_lengths=None) -> RegistrationResult:
    """Register ``source`` to ``target``: ``T_target_source`` with ``target ~ T * source``.

    ``source``/``target``: ``(N, 3)`` tensors (or arrays, Open3D clouds), a batch ``(B, N, 3)``,
    or ragged batches: lists of clouds of different sizes, or a padded ``(B, N, 3)`` batch with
    ``source_lengths``/``target_lengths`` ``(B,)`` (row ``b`` holds ``lengths[b]`` points; the
    padding is never read).  ``target`` may also be a :class:`PreparedCloud` (or a list of them)
    to reuse its index.  ``init``: an SE3 pose (LieTensor, ``(..., 7)`` or ``(..., 4, 4)``) per
    pair or shared.  All pairs run together.  A pair without correspondences within the distance
    ends with ``converged=False`` and its initial pose, never a silent identity.

    Points that require grad make ``T_target_source`` differentiable with respect to them: the
    implicit function theorem at the converged correspondences (through the voxel centroids,
    normals and covariances).  A pair that did not converge has no solution to differentiate:
    its points receive zero gradients.
    """
    cfg = config or ICPConfig()
    srcs, tgts, batch = _pairs(source, target, source_lengths, target_lengths)
    B = len(srcs)
    if B == 0:  # an empty batch: an empty answer, in the batch's dtype and device where it has them
        ref = source if isinstance(source, Tensor) else torch.zeros(0, dtype=torch.float64)
        z = ref.new_zeros(0)
        return RegistrationResult(wrap_lie(ref.new_zeros(0, 7)), z.bool(), z.long(), z.long(), z, z, z, (),
                                  History(ref.new_zeros(0, 0), ref.new_zeros(0, 0), torch.zeros(0, 0, dtype=torch.bool)))
    src_live = [s.points if isinstance(s, PreparedCloud) else as_points(s, f"source[{b}]" if batch else "source")
                for b, s in enumerate(srcs)]
    src_normals = [s._normals if isinstance(s, PreparedCloud) else None for s in srcs]
    as_given = src_live
    given, device = src_live[0].dtype, src_live[0].device
    dtype = working_dtype(given)  # points in a half precision: registered in float32, answered in theirs
    if dtype != given:
        src_live = [s.to(dtype) for s in src_live]  # differentiable: gradients reach the points as given
        src_normals = [None if n is None else n.to(dtype) for n in src_normals]
    tgt_live, seen, tgt_names = [], {}, []
    for b, t in enumerate(tgts):  # a target given for several pairs is checked and prepared once
        key = id(t)
        if key not in seen:
            tgt_names.append(f"target[{b}]" if batch else "target")
            if isinstance(t, PreparedCloud) and t.points.dtype not in PRECISIONS:
                t = t.points  # prepared in a half precision: prepared again here, in float32
            seen[key] = t if isinstance(t, PreparedCloud) else as_points(t, f"target[{b}]" if batch else "target",
                                                                           dtype=dtype)
        tgt_live.append(seen[key])
    check_resolution(as_given + [t.points if isinstance(t, PreparedCloud) else t for t in seen.values()],
                     [f"source[{b}]" if batch else "source" for b in range(B)] + tgt_names)
    # the iterations never see the points' graph: gradients come from the answer, not the steps
    live = torch.is_grad_enabled() and any(isinstance(c, Tensor) and c.requires_grad for c in src_live + tgt_live)
    src0 = [s.detach() for s in src_live]
    detached = {}  # one detached copy per distinct target: a target shared by pairs is prepared once
    tgt0 = [t if isinstance(t, PreparedCloud) else detached.setdefault(id(t), t.detach()) for t in tgt_live]
    if init is None:
        T = lie.se3_exp(torch.zeros(B, 6, dtype=dtype, device=device))
    else:
        T = se3_tensor(init, name="init").to(dtype=dtype, device=device).reshape(-1, 7)
        if T.shape[0] == 1:
            T = T.expand(B, 7).clone()
        if T.shape[0] != B:
            raise ValueError(f"init: expected {B} poses (one per pair) or one shared pose, got {T.shape[0]}")
    H = cfg.restarts + 1
    if cfg.restarts:
        rot = _restart_rotations(cfg.restarts, cfg.restart_angle, dtype).to(device)
        rot = torch.cat((torch.zeros(1, 3, dtype=dtype, device=device), rot))  # hypothesis 0: the init itself
        c = torch.stack([s.mean(0) for s in src0])  # rotate about each source's centroid
        Rq = lie.so3_exp(rot)  # (H, 4)
        T_h = []
        for b in range(B):
            about = torch.cat((c[b] - lie.quat_rotate(Rq, c[b].expand(H, 3)), Rq), -1)  # p -> R (p - c) + c
            T_h.append(lie.se3_compose(T[b].expand(H, 7), about))
        T = torch.stack(T_h).reshape(B * H, 7)
    elements = 9 * H * sum(s.shape[0] for s in src0)  # the largest per-point arrays: 3x3 per point
    with torch_threads(threads_for(elements, device, cfg.num_threads)):
        result = _run_levels(cfg, src0, tgt0, T, H, batch, src_normals)
        if live:  # the polish and the gradients' set-up: arrays of the same sizes, the same threads
            result = _differentiable(cfg, src_live, tgt_live, result, batch)
    return result if given == dtype else in_dtype(result, given)


def _differentiable(cfg: ICPConfig, sources: list[Tensor], targets: list, result: RegistrationResult,
                    batch: tuple) -> RegistrationResult:
    """``result`` with ``T_target_source`` differentiable with respect to the points that
    require grad (see :mod:`._gradients`)."""
    from ._gradients import with_point_gradients

    pts = [t.points if isinstance(t, PreparedCloud) else t for t in targets]
    last = cfg.levels[-1]
    dmax = _max_distance(cfg, last, [p.detach() for p in pts])  # as the last level had it
    T = result.T_target_source.tensor().reshape(-1, 7)
    T = with_point_gradients(cfg, sources, pts, T, result.converged.reshape(-1), dmax)
    return dataclasses.replace(result, T_target_source=wrap_lie(T.reshape(batch + (7,))))


def _run_levels(cfg: ICPConfig, src0: list[Tensor], tgt0: list, T: Tensor, H: int, batch: tuple,
                src_normals: list[Tensor | None]) -> RegistrationResult:
    B, device = len(src0), T.device
    iters = torch.zeros(B * H, dtype=torch.long, device=device)
    converged = torch.zeros(B * H, dtype=torch.bool, device=device)
    histories: list[Tensor] = []
    for level_no, factor in enumerate(cfg.levels):
        v = cfg.voxel_size * factor
        S, normals = _ordered_sources(src0, v, src_normals)
        prepared: dict[int, PreparedCloud] = {}
        for t in tgt0:
            if id(t) not in prepared:
                reuse = isinstance(t, PreparedCloud) and level_no == len(cfg.levels) - 1 and v == 0
                prepared[id(t)] = t if reuse else _prepare_ordered(t.points if isinstance(t, PreparedCloud) else t, v,
                                                                   cfg.num_neighbors, cfg.neighbors_backend)
        Tg = [prepared[id(t)] for t in tgt0]
        dist = _max_distance(cfg, factor, [t.points for t in Tg])
        targets = _TargetSet(Tg, H, dist, cfg)
        T, it, conv, hist, inl, sq, last, weighed = _iterate(cfg, S, targets, T, normals)
        iters, converged = iters + it, conv
        histories.append(hist)
        fit, rmse = _fitness(S, H, inl, sq)
        if cfg.restarts and level_no == 0:  # keep each pair's best hypothesis
            score = fit - 1e-9 * rmse
            best = score.view(B, H).argmax(1)
            sel = torch.arange(B, device=device) * H + best
            T, iters, converged, H = T[sel], iters[sel], converged[sel], 1
            fit, rmse, inl, last, weighed = fit[sel], rmse[sel], inl[sel], last[sel], weighed[sel]
            histories = [h[:, sel] for h in histories]
            targets = targets.with_hypotheses(1)
    # a pair that stopped for want of correspondences did not converge: fewer than three within the
    # distance, or fewer than three the kernel gives weight (Tukey's beyond its scale gives none)
    converged = converged & (weighed >= 3)
    hist = torch.cat(histories) if histories else T.new_zeros(0, B)
    reason = tuple("step_tolerance" if c else "no_correspondences" if n < 3 else "max_iterations"
                   for c, n in zip(converged.tolist(), weighed.tolist()))
    history = History(hist, torch.zeros_like(hist), torch.isfinite(hist))
    shape = batch
    return RegistrationResult(wrap_lie(T.reshape(shape + (7,))), converged.reshape(shape), iters.reshape(shape),
                              inl.reshape(shape), fit.reshape(shape), rmse.reshape(shape), last.reshape(shape), reason,
                              history)


def _ordered_sources(src0: list[Tensor], v: float, src_normals: list[Tensor | None]):
    """Each source at voxel size ``v``, and its normals where it came prepared with them (used
    where its points are used as given, ``v == 0``).  Sources are put in
    :func:`spatial_order` (the order of a pair's points changes no answer; its searches run
    faster), except a prepared one used as given, which comes in an order of its own choosing."""
    S, normals = [], []
    for s, n in zip(src0, src_normals):
        if v == 0 and n is not None:
            S.append(s)
            normals.append(n)
            continue
        s = voxel_downsample(s, v)
        S.append(s[spatial_order(s)] if s.device.type == "cpu" else s)
        normals.append(None)
    return S, normals


def _max_distance(cfg: ICPConfig, factor: float, targets: list[Tensor]) -> list[float]:
    """Each target's correspondence distance at a level ``factor`` (:meth:`ICPConfig.correspondence_distance`)."""
    return [cfg.correspondence_distance(t, factor) for t in targets]


def _pad(clouds: list[Tensor]) -> tuple[Tensor, Tensor]:
    n = max(c.shape[0] for c in clouds)
    out = clouds[0].new_zeros(len(clouds), n, 3)
    mask = torch.zeros(len(clouds), n, dtype=torch.bool, device=clouds[0].device)
    for b, c in enumerate(clouds):
        out[b, : c.shape[0]] = c
        mask[b, : c.shape[0]] = True
    return out, mask


class _StackedIndex:
    """One KD-tree over several clouds, each shifted far along x so that their points never
    mix: one query answers every pair of a batch (instead of a Python loop over pairs)."""

    def __init__(self, clouds: list[Tensor], spacing: float):
        self.starts = torch.tensor([0] + [c.shape[0] for c in clouds], device=clouds[0].device).cumsum(0)
        self.shift = spacing
        pts = torch.cat([c + torch.tensor([k * spacing, 0.0, 0.0], dtype=c.dtype, device=c.device) for k, c in enumerate(clouds)])
        self.index = NearestNeighbors(pts, backend="kdtree")

    def query(self, q: Tensor, which: Tensor, k: int = 1, *, centers: Tensor | None = None):
        """``q (Q, 3)`` belonging to clouds ``which (Q,)``: distances and indices local to each cloud.
        ``centers (C, 3)``: the queries are about their cloud's centre (added back in float64)."""
        q64 = q.double() if centers is None else q.double() + centers.double()[which]
        q64[:, 0] += which.double() * self.shift
        d, i = self.index.query(q64, k=k)
        d = d.to(q.dtype)
        base, size = self.starts[which], (self.starts[1:] - self.starts[:-1])[which]
        if k > 1:
            base, size = base[:, None], size[:, None]
        i = i - base
        # a point that strayed into another cloud's slot found that cloud's points: it has no
        # correspondence in its own (the slots are spaced so that its own nearest point would
        # be farther than any correspondence distance), as when aligned alone
        foreign = (i < 0) | (i >= size)
        return d.masked_fill(foreign, float("inf")), i.masked_fill(foreign, 0)


def _spacing(clouds: list[Tensor], margin: float) -> float:
    ext = max(float(c.abs().max()) for c in clouds)
    return 4.0 * ext + 10.0 * margin + 1.0


class _Concat:
    """Per-target arrays (last dim = points) concatenated, for one gather across all rows;
    row ``r`` of the batch reads array ``slot[r]``."""

    def __init__(self, arrays: list[Tensor], slot: Tensor, transform=None):
        sizes = torch.tensor([a.shape[-1] for a in arrays], device=arrays[0].device)
        starts = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
        self.cat = torch.cat(arrays, dim=-1)
        if transform is not None:  # a per-point function, applied once to the concatenation
            self.cat = transform(self.cat)
        self.row_start = starts[slot]  # (R,): where row r's array starts
        self.one = len(arrays) == 1  # every row reads the same array: no offsets

    def gather(self, j: Tensor, rows: Tensor | None = None) -> Tensor:
        """Row ``r`` takes ``arrays[slot[r]][..., j[r]]``: shape ``(R, ..., N)`` (only ``rows``, if given)."""
        if self.one:
            flat = j.reshape(-1)
        else:
            start = self.row_start if rows is None else self.row_start[rows]
            flat = (j + start[:, None]).reshape(-1)
        g = self.cat.index_select(-1, flat).unflatten(-1, j.shape)  # (..., R, N)
        return g.movedim(-2, 0)


class _TargetSet:
    """The distinct targets of a batch and one search over all of them.

    Row ``r`` of the batch (pair ``r // H``, hypothesis ``r % H``) aligns to target ``slot[r]``.
    One distinct target: its own index answers every row in one query.  Several, on the CPU:
    one stacked KD-tree.  Several on a GPU (or with ``neighbors_backend="brute"``): one padded
    brute-force search, a batched matmul per chunk of rows.  Never a Python loop over pairs.
    """

    def __init__(self, Tg: list[PreparedCloud], H: int, dist: list[float], cfg: ICPConfig):
        order: dict[int, int] = {}
        self.clouds: list[PreparedCloud] = []
        pair_slot = []
        for t in Tg:
            if id(t) not in order:
                order[id(t)] = len(self.clouds)
                self.clouds.append(t)
            pair_slot.append(order[id(t)])
        device, dt = Tg[0].points.device, Tg[0].points.dtype
        self.pair_slot = torch.tensor(pair_slot, device=device)
        self.pair_dmax2 = torch.tensor([d * d for d in dist], dtype=dt, device=device)[:, None]
        self._set_hypotheses(H)
        pts = [t.points for t in self.clouds]
        # every search and residual is about each target's centre (its indexes' own): far from the
        # origin (map or UTM coordinates) the linearization and float32 keep their digits
        self.center = torch.stack([t.index.center for t in self.clouds])  # (C, 3)
        if len(self.clouds) == 1:
            self.index = None
        elif device.type == "cpu" and cfg.neighbors_backend != "brute":
            self.index = _StackedIndex(pts, _spacing(pts, max(dist)))
        else:
            self.index = PaddedNeighbors(pts)

    def _set_hypotheses(self, H: int) -> None:
        self.H = H
        self.slot = self.pair_slot.repeat_interleave(H)  # (R,): each row's target
        self.dmax2 = self.pair_dmax2.repeat_interleave(H, 0)  # (R, 1): each row's squared distance limit

    def with_hypotheses(self, H: int) -> "_TargetSet":
        """The same targets and index for ``H`` hypotheses per pair."""
        out = copy.copy(self)
        out._set_hypotheses(H)
        return out

    def concat(self, arrays: list[Tensor], transform=None) -> _Concat:
        """Per-distinct-target arrays, gathered by row."""
        return _Concat(arrays, self.slot, transform)

    def row_centers(self, rows: Tensor | None = None) -> Tensor:
        """``(R, 3)``: the centre of each row's target."""
        return self.center[self.slot if rows is None else self.slot[rows]]

    def nearest(self, q: Tensor, mask: Tensor | None, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Squared distance and index of the nearest target point to each ``q (A, N, 3)`` of rows
        ``rows`` of the batch (all by default), ``q`` about each row's target centre; padding
        (``~mask``; ``None``: no padding) gets an infinite distance."""
        slot = self.slot if rows is None else self.slot[rows]
        if isinstance(self.index, PaddedNeighbors):
            d2, idx = self.index.query(q, slot, centered=True)
            return (d2, idx) if mask is None else (d2.masked_fill(~mask, float("inf")), idx.masked_fill(~mask, 0))
        if self.index is None and mask is None:  # one target, no padding: one query over every row
            d2, idx = self.clouds[0].index.query(q.reshape(-1, 3), centered=True)
            return d2.view(q.shape[:2]), idx.view(q.shape[:2])
        if mask is None:
            mask = torch.ones(q.shape[:2], dtype=torch.bool, device=q.device)
        d2 = torch.full(q.shape[:2], float("inf"), dtype=q.dtype, device=q.device)
        idx = torch.zeros(q.shape[:2], dtype=torch.long, device=q.device)
        if self.index is None:
            d2[mask], idx[mask] = self.clouds[0].index.query(q[mask], centered=True)
        else:
            d2[mask], idx[mask] = self.index.query(q[mask], slot.unsqueeze(1).expand(q.shape[:2])[mask],
                                                   centers=self.center)
        return d2, idx


def _centred_sources(S: list[Tensor], H: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(points (R, N, 3), mask (R, N), centres (R, 3))``: each row's source about its own centre."""
    centres = torch.stack([s.mean(0) for s in S for _ in range(H)])
    src, mask = _pad([s - s.mean(0) for s in S for _ in range(H)])
    return src, mask, centres


def _shift_pose(T: Tensor, before: Tensor, after: Tensor) -> Tensor:
    """``Tr(after) T Tr(before)`` for poses ``T (R, 7)`` and translations ``(R, 3)``: how a pose
    moves between the original coordinates and the centred ones.  Computed in float64: the
    centres may be kilometres from the origin."""
    T64 = T.double()
    t = lie.quat_rotate(T64[:, 3:], before.double()) + T64[:, :3] + after.double()
    return torch.cat((t, T64[:, 3:]), -1).to(T.dtype)


def _iterate(cfg: ICPConfig, S: list[Tensor], targets: _TargetSet, T: Tensor, normals: list[Tensor | None]):
    """Steps every row's pose until it converges; works about each row's source and target
    centres (``T' = Tr(-c_target) T Tr(c_source)``), so the left update linearizes about the
    target's centre, not the origin of its coordinates.

    ICP's own Gauss-Newton loop, beside the engine's (:func:`robojac.optim.solve`), with the
    engine's damping rule and vocabulary.  The measured reason for two
    (``benchmarks/icp_step.py``, the bunny's 3,310 point-to-plane correspondences): a step here
    (the system from moment sums, structure-of-arrays) takes 0.8 ms; on the engine 1.5 ms with a
    closed-form factor and 9 ms with automatic Jacobians, plus 1.4-1.7 ms of set-up per solve,
    which ICP would pay at every step, since it re-matches before each one.

    Returns the poses, iterations, converged flags, the cost history, and each row's inlier
    count, sum of squared inlier distances, cost and count of inliers of nonzero weight at its
    last iteration (every row takes at least one).  A row with fewer than three of the last
    takes no step and stops.
    """
    H = targets.H
    src, mask, s_ctr = _centred_sources(S, H)
    t_ctr = targets.row_centers()
    T = _shift_pose(T, s_ctr, -t_ctr)
    srcT = src.transpose(1, 2).contiguous()  # (R, 3, N)
    R_ = T.shape[0]
    dt, dev = T.dtype, T.device
    dmax2 = targets.dmax2.to(dt)
    tgt_pts = targets.concat([(t.points - c).T.contiguous().to(dt) for t, c in zip(targets.clouds, targets.center)])
    batched = dev.type != "cpu" or cfg.neighbors_backend == "brute"  # neighbourhoods of all clouds in one search
    if cfg.method != "point_to_point":
        _prime_normals(targets.clouds, batched)
    if cfg.method == "gicp":
        covs = _plane_covariances(S, cfg.num_neighbors, batched, normals)
        src_cov = soa.sym6_identity(R_, src.shape[1], dtype=dt, device=dev)  # padding: any SPD matrix
        for r in range(R_):
            c = covs[r // H]
            src_cov[r, :, : c.shape[-1]] = c
        tgt_cov = targets.concat([t.normals_soa() for t in targets.clouds], soa.sym6_plane_covariances)
    elif cfg.method == "point_to_plane":
        tgt_nrm = targets.concat([t.normals_soa() for t in targets.clouds])
    active = torch.ones(R_, dtype=torch.bool, device=dev)
    iters = torch.zeros(R_, dtype=torch.long, device=dev)
    inliers = torch.zeros(R_, dtype=torch.long, device=dev)  # of the last iteration, where its step was taken
    weighed = torch.zeros(R_, dtype=torch.long, device=dev)  # its inliers the kernel gives weight
    sq = torch.zeros(R_, dtype=dt, device=dev)  # the sum of its inliers' squared distances
    last = torch.zeros(R_, dtype=dt, device=dev)  # and its cost
    costs = []  # (rows, cost) of each iteration: the cost where the step was taken
    M4 = lie.se3_to_matrix(T)  # the poses as matrices while they step: a left update is one product
    padded = not bool(mask.all())
    tol = torch.tensor([cfg.translation_tolerance, cfg.rotation_tolerance], dtype=dt, device=dev)
    # A lower bound on each point's distance to the target (its last searched distance less how far
    # it has moved since): a point whose bound exceeds the row's distance limit has no
    # correspondence, and a KD-tree search skips it (exact; see _far_bounds).
    prune = not batched
    near = dmax2.sqrt() * (1 + _FAR_MARGIN)  # (R, 1)
    bound = torch.zeros(R_, src.shape[1], dtype=dt, device=dev) if prune else None
    first = True  # the first search is of every point: it gives the first distances
    for _ in range(cfg.max_iterations):
        a = active.nonzero().squeeze(1)  # step only the running pairs
        if a.numel() == 0:
            break
        whole = a.numel() == R_
        pick = (lambda x: x) if whole else (lambda x: x[a])
        rows = None if whole else a
        Ma, mk = pick(M4), pick(mask)
        Rm = Ma[:, :3, :3]
        q = soa.transform(Rm, Ma[:, :3, 3], pick(srcT))  # (A, 3, N)
        search = mk if padded else None
        if prune and not first:
            maybe = pick(bound) <= pick(near)
            if float(maybe.sum()) < _FAR_WORTH * maybe.numel():  # enough to skip that the masked search pays
                search = maybe & mk if padded else maybe
            else:  # the bounds skip too little (steps as long as the margins): stop keeping them
                prune = False
        d2, j = targets.nearest(q.transpose(1, 2), search, rows)
        valid = (d2 <= pick(dmax2)) & mk if padded else d2 <= pick(dmax2)
        p = tgt_pts.gather(j, rows)  # (A, 3, N)
        if cfg.method == "point_to_point":
            w = valid.to(dt) * cfg.kernel.weight(d2)  # ones without a kernel
            delta = _umeyama_step(q, p, w)
            s2 = d2
        else:
            if cfg.method == "point_to_plane":
                n = tgt_nrm.gather(j, rows)
                res = (n * (q - p)).sum(1)  # (R, N)
                s2 = res * res
                w = valid.to(dt) * cfg.kernel.weight(s2)
                Hm, g = soa.plane_system(q, n, res, w)
            else:
                C = tgt_cov.gather(j, rows) + soa.sym6_rotation(Rm) @ pick(src_cov)  # (A, 6, N)
                M = soa.sym6_inverse(C)
                res = q - p
                Mr = soa.sym6_matvec(M, res)
                s_ = (res * Mr).sum(1)
                s2 = s_
                w = valid.to(dt) * cfg.kernel.weight(s_)
                Hm, g = soa.gicp_system(q, Mr, M, w)
            # Gauss-Newton (ICP re-matches every step, so no step is rejected): the engine's
            # damping rule without its Marquardt term, its floor keeping a direction no correspondence sees regular
            delta = -torch.linalg.solve(damped(Hm, None), g.unsqueeze(-1)).squeeze(-1)
        n_in = valid.sum(1)
        sq_in = torch.where(valid, d2, 0.0).sum(1)
        n_w = (w > 0).sum(1)  # w: zero outside the distance
        has = n_w >= 3  # else no step (a system of zero weights has none: its solve gave NaN poses)
        cost = 0.5 * torch.where(valid, cfg.kernel.rho(s2), 0.0).sum(1)
        costs.append((a, cost))
        delta = torch.where(has[:, None], delta, 0.0)
        E = lie.se3_exp_matrix(delta)
        stepped = E @ Ma  # left update
        if prune and first and float(valid.sum()) > _FAR_WORTH * valid.numel():
            prune = False  # nearly every point has a correspondence: bounds would never skip a search
        first = False
        if prune:
            # a point searched in a stacked index that strayed into another cloud's slot has no
            # distance (inf): its bound is the limit itself, so it is searched again once it moves
            found = torch.where(torch.isfinite(d2), d2.sqrt(), pick(near))
            if search is not None:
                found = torch.where(search, found, pick(bound))
            b = _far_bounds(found, E, delta, q)
            bound = b if whole else bound.index_copy(0, a, b)
        small = (torch.linalg.vector_norm(delta.unflatten(-1, (2, 3)), dim=-1) < tol).all(-1)  # translation, rotation
        if whole:
            M4, iters, active, inliers, sq, last, weighed = stepped, iters + 1, ~small & has, n_in, sq_in, cost, n_w
        else:
            M4[a] = stepped
            iters[a] += 1
            active[a] = ~small & has
            inliers[a], sq[a], weighed[a] = n_in, sq_in, n_w
            last = last.index_copy(0, a, cost)  # not in place: an earlier iteration's cost, kept in costs, may be it
    history = T.new_full((len(costs), R_), math.nan)
    for i, (rows_i, c) in enumerate(costs):
        history[i, rows_i] = c
    return _shift_pose(lie.matrix_to_se3(M4), -s_ctr, t_ctr), iters, ~active, history, inliers, sq, last, weighed


_FAR_MARGIN = 1e-3  # a point is skipped only when its bound exceeds the limit by this share: rounding never skips one
_FAR_WORTH = 0.9  # search a subset only when at least a tenth of the points can be skipped


def _far_bounds(distance: Tensor, E: Tensor, delta: Tensor, q: Tensor) -> Tensor:
    """Lower bounds ``(A, N)`` on the points' distances to the target after the step ``E``
    (``(A, 4, 4)``, the twist ``delta``) moves them from ``q (A, 3, N)``: the target does not
    move, so a distance shrinks by at most the point's own displacement, and
    ``|R q + t - q| <= |t| + theta |q|`` (``|R - I| = 2 sin(theta / 2) <= theta``).

    ``distance`` is each point's searched distance at ``q`` (or, for a point not searched, its
    bound there).  The next positions are computed, not exact: ``64 eps |q|`` more allows for
    their rounding (float32 coordinates 50 m from the target's centre: ~0.2 mm).  Partial
    overlaps gain most: in a multiway registration of the bunny's scans, about half the points
    of a pair lie beyond the limit at every step after the first.
    """
    theta = torch.linalg.vector_norm(delta[:, 3:], dim=-1, keepdim=True)  # (A, 1)
    shift = torch.linalg.vector_norm(E[:, :3, 3], dim=-1, keepdim=True)
    rounding = 64 * torch.finfo(q.dtype).eps
    return distance - (shift + (theta + rounding) * torch.linalg.vector_norm(q, dim=1))


def _plane_covariances(clouds: list[Tensor], k: int, batched: bool, normals: list[Tensor | None]) -> list[Tensor]:
    """GICP's regularized covariances ``(6, N)`` (distinct entries) of each source cloud, from its
    given normals ``(3, N)`` or, for the clouds without, from their ``k`` nearest neighbours, all
    of those in one pass."""
    todo = [c for c, n in zip(clouds, normals) if n is None]
    found = knn_covariances_many(todo, k, with_normals=True, batched=batched, ordered=True) if todo else []
    found = iter(n for _, n in found)  # the sources without normals are in spatial_order (_ordered_sources)
    n = torch.cat([next(found) if given is None else given.to(c.dtype) for c, given in zip(clouds, normals)], dim=-1)
    C = soa.sym6_plane_covariances(n)
    return list(C.split([c.shape[0] for c in clouds], dim=-1))


def _prime_normals(clouds: list[PreparedCloud], batched: bool) -> None:
    """Covariances and normals of the prepared targets that lack them, all in one pass (one
    brute-force search if ``batched``); each target keeps its own neighbour count."""
    todo = [t for t in clouds if t._normals is None]
    for kk, ordered in sorted({(t.num_neighbors, t._ordered) for t in todo}):
        group = [t for t in todo if (t.num_neighbors, t._ordered) == (kk, ordered)]
        found = knn_covariances_many([t.points for t in group], kk, with_normals=True, batched=batched, ordered=ordered)
        for t, (C, n) in zip(group, found):
            t._cov, t._normals = C, n


def _umeyama_step(q: Tensor, p: Tensor, w: Tensor) -> Tensor:
    """The twist of the weighted rigid alignment of ``q`` onto ``p`` (``(R, 3, N)``), as a left update."""
    return lie.se3_log(rigid_fit(q, p, w))


def rigid_fit(q: Tensor, p: Tensor, w: Tensor) -> Tensor:
    """Poses ``(R, 7)`` of the weighted rigid alignments ``p ~ T q`` of point sets ``q, p``
    ``(R, 3, N)`` with weights ``w (R, N)`` (Kabsch/Umeyama, batched SVD): ICP's point-to-point
    step and global registration's hypotheses."""
    ws = w.sum(-1, keepdim=True).clamp_min(1e-12)
    mq = (q * w.unsqueeze(1)).sum(-1) / ws
    mp = (p * w.unsqueeze(1)).sum(-1) / ws
    Cm = ((p - mp.unsqueeze(-1)) * w.unsqueeze(1)) @ (q - mq.unsqueeze(-1)).transpose(1, 2)  # (R, 3, 3)
    U, _, Vt = torch.linalg.svd(Cm)
    D = torch.ones_like(mq)
    D[:, 2] = torch.sign(torch.det(U @ Vt))
    R = (U * D[:, None, :]) @ Vt
    t = mp - (R @ mq.unsqueeze(-1)).squeeze(-1)
    return torch.cat((t, lie.matrix_to_quat(R)), -1)


def _fitness(S: list[Tensor], H: int, n_in: Tensor, sq: Tensor) -> tuple[Tensor, Tensor]:
    """``(fitness, rmse)`` per row from its inlier count and sum of squared inlier distances:
    inliers over the source's points, and an infinite rmse where there are none."""
    n_pts = torch.tensor([s.shape[0] for s in S for _ in range(H)], dtype=sq.dtype, device=sq.device)
    rmse = torch.sqrt(sq / n_in.clamp_min(1).to(sq.dtype))
    return n_in.to(sq.dtype) / n_pts, torch.where(n_in > 0, rmse, torch.full_like(rmse, float("inf")))
