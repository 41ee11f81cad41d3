"""LiDAR odometry: a sequence of scans into a trajectory and a local map.

Each scan is registered to a local map of the scans before it (scan-to-map), with the
ingredients KISS-ICP showed matter:

* a **constant-velocity prediction**: the last motion, applied again, is the initial guess;
* an **adaptive correspondence threshold**: the spread of the prediction's error over the
  frames so far (its translation plus the rotation's displacement at the sensor's range), three
  sigmas of it, and a robust kernel of that sigma;
* a **voxel map**: one Gaussian per voxel (:class:`._voxelmap.GaussianVoxelMap`), the far
  voxels dropped as the sensor moves on.  A scan's point finds its correspondence by hashing
  into its voxel, so nothing is rebuilt per scan: a KD-tree over the map's points cost 12-18 ms
  a scan to rebuild on KITTI, as much as everything else together.

Registration is :func:`~robojac.icp.align` (GICP by default) from the scan's own voxel
Gaussians, three times the map's fine voxel, to the map's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import lie
from .._config import check_bool, check_choice, check_int, check_real
from .._precision import in_dtype, working_dtype
from .._threads import threads_for, torch_threads
from ..optim import RobustKernel
from ..trajectory import Trajectory
from ._align import ICPConfig, PreparedCloud, RegistrationResult, align
from ._cloud import as_points
from ._neighbors import NearestNeighbors
from ._observability import Observability, observability
from ._voxelmap import GaussianVoxelMap, VoxelGaussians, nested_voxels

__all__ = ["OdometryConfig", "OdometryResult", "lidar_odometry"]


@dataclass(frozen=True)
class OdometryConfig:
    """Options of :func:`lidar_odometry`.

    * ``min_range`` / ``max_range``: points nearer or farther than these (metres, from the
      sensor) are dropped (the car's roof, the sparse far field).
    * ``voxel_size``: the local map's voxel; a scan is thinned to half of it (centroids) for the
      map, and those centroids grouped in voxels 1.5 times it, one Gaussian each, to register
      (KISS-ICP's ratios; its default voxel is ``max_range / 100``, 1 m for KITTI; on KITTI 00,
      0.5 m gave an ATE of 0.70 cm against 1 m's 1.21 cm, at 10.3 against 8.5 ms a scan).
    * ``points_per_voxel``: a map voxel's Gaussian stops taking points once it holds this many
      (8: as many as one scan thinned to half the voxel can put there; the first scans that see
      a place shape it, and a passing car does not smear it further).
    * ``initial_threshold``: the correspondence distance before any motion has been seen (m).
    * ``min_motion``: frames that move less than this (m) do not update the threshold.
    * ``method``: the registration (``"gicp"``, ``"point_to_plane"`` or ``"point_to_point"``,
      KISS-ICP's).
    * ``max_iterations``: ICP iterations per scan.
    * ``tolerance``: ICP stops when a step turns the scan by less than this (rad) and moves it by
      less than this (m).  1e-3 (a millimetre) is well under the map's centimetre of noise: on
      KITTI 00 it took 4 iterations a scan instead of 1e-4's 8, at an ATE of 0.70 instead of
      0.72 cm, the poses within 1.2 mm of fully converged ones.
    * ``deskew``: undo the motion during a sweep: each point is moved by the constant-velocity
      motion over its share of the sweep, its time taken from its azimuth (a spinning LiDAR
      that starts and ends its sweep behind the sensor, as KITTI's Velodyne).  Off by default:
      on KITTI 00 it moved the end drift from 0.56% to 0.66% and the ATE from 0.70 to 1.37 cm
      (with the point map before, 0.60 to 0.51% and 0.95 to 1.22 cm); ten scans do not settle it.
    * ``prefetch``: on the CPU, prepare the next scan (range, deskewing, voxels, normals) on a
      second thread while this one updates the map (torch lets go of the GIL in its ops); the
      same answers, in about four fifths of the time per scan on KITTI with two cores.
    * ``observability``: also measure whether each scan's registration fixed every direction
      of its pose (:func:`~robojac.icp.observability` of the map's voxels against the scan,
      with the normals of the scan's own Gaussians: one more search a scan, 1.14-1.15x the time
      per scan on KITTI in ``benchmarks/observability.py``), into
      :attr:`OdometryResult.observability`.  A scan down a tunnel or a corridor is
      degenerate: its motion along it is the prediction's.  (The scan's Gaussians, from dense
      points, give sharper normals than the map's few-point voxels: on a corridor the weakest
      share read 0.0004-0.0006 with them and 0.0095-0.026 with the map's, against KITTI's
      0.16-0.18.)
    """

    min_range: float = 0.0
    max_range: float = 100.0
    voxel_size: float = 0.5
    points_per_voxel: int = 8
    initial_threshold: float = 2.0
    min_motion: float = 0.1
    method: str = "gicp"
    max_iterations: int = 100
    tolerance: float = 1e-3
    deskew: bool = False
    prefetch: bool = True
    observability: bool = False

    def __post_init__(self):
        owner = "OdometryConfig"
        check_real(owner, "min_range", self.min_range)
        check_real(owner, "max_range", self.max_range, positive=True)
        if self.min_range >= self.max_range:
            raise ValueError(f"OdometryConfig: expected min_range < max_range, got {self.min_range} and {self.max_range}")
        check_real(owner, "voxel_size", self.voxel_size, positive=True)
        check_int(owner, "points_per_voxel", self.points_per_voxel, minimum=1)
        check_real(owner, "initial_threshold", self.initial_threshold, positive=True)
        check_real(owner, "min_motion", self.min_motion)
        check_choice(owner, "method", self.method, ("point_to_point", "point_to_plane", "gicp"))
        check_int(owner, "max_iterations", self.max_iterations, minimum=1)
        check_real(owner, "tolerance", self.tolerance, positive=True)
        check_bool(owner, "deskew", self.deskew)
        check_bool(owner, "prefetch", self.prefetch)
        check_bool(owner, "observability", self.observability)


@dataclass(frozen=True)
class OdometryResult:
    """The answer of :func:`lidar_odometry`.

    * ``trajectory``: ``T_world_scan`` per scan (a :class:`~robojac.trajectory.Trajectory`,
      with the timestamps where given); scan 0 is the world.
    * ``registrations``: each scan's :class:`~robojac.icp.RegistrationResult` against the map
      (scan 0 has none: ``None``).
    * ``local_map``: the map after the last scan, in the world frame: the mean of each voxel's
      points ``(V, 3)``.
    * ``thresholds`` ``(S,)``: the correspondence distance each scan was registered with.
    * ``converged``: every registration converged; ``seconds`` ``(S,)``: time per scan, from the
      scan before's pose to this one's (with ``prefetch``, the next scan's preparation overlaps).
    * ``observability``: with :attr:`OdometryConfig.observability`, each scan's
      :class:`~robojac.icp.Observability` against the map, its directions in the scan's frame
      (scan 0: ``None``); else empty.
      :attr:`degenerate_scans` lists the scans whose registration left a motion free.
    """

    trajectory: Trajectory
    registrations: tuple[RegistrationResult | None, ...]
    local_map: Tensor
    thresholds: Tensor
    converged: bool
    seconds: Tensor
    observability: tuple[Observability | None, ...] = ()

    @property
    def degenerate_scans(self) -> list[int]:
        """The scans whose registration left a motion of their pose free (empty unless
        :attr:`OdometryConfig.observability` was asked for)."""
        return [k for k, o in enumerate(self.observability) if o is not None and o.degenerate]


class _Threshold:
    """The adaptive correspondence distance: 3 sigma of the prediction's errors so far."""

    def __init__(self, cfg: OdometryConfig):
        self.cfg, self.sse, self.count = cfg, 0.0, 0

    def sigma(self) -> float:
        return self.cfg.initial_threshold / 3 if self.count == 0 else math.sqrt(self.sse / self.count)

    def update(self, deviation: Tensor, motion: Tensor) -> None:
        if float(motion[:3].norm()) < self.cfg.min_motion:
            return
        angle = float(lie.so3_log(deviation[3:]).norm())
        err = float(deviation[:3].norm()) + 2 * self.cfg.max_range * math.sin(angle / 2)
        self.sse += err * err
        self.count += 1


def _deskew(P: Tensor, motion: Tensor) -> Tensor:
    """Points of one sweep brought to the sweep's middle: a point seen at sweep time ``s`` in
    ``[0, 1]`` (from its azimuth) is moved by ``Exp((s - 1/2) Log(motion))``, the constant-velocity
    motion over that part of the sweep."""
    s = 0.5 + torch.atan2(P[:, 1], P[:, 0]) / (2 * math.pi)
    xi = lie.se3_log(motion)
    T = lie.se3_exp((s - 0.5)[:, None] * xi)
    return lie.se3_act(T, P)


def _source(g: VoxelGaussians) -> PreparedCloud:
    """A scan to register: one point per voxel (the mean of the frame's points there) with the
    normal of their scatter; voxels of fewer than three points, whose normal is undefined, are
    left out."""
    ok = g.counts >= 3
    pts = g.means[ok]
    return PreparedCloud(pts, NearestNeighbors(pts), _cov=g.covariances[..., ok], _normals=g.normals()[:, ok])


def _target(vmap: GaussianVoxelMap) -> PreparedCloud:
    """The map as ICP's target: its voxels' means and normals, matched by voxel."""
    index, ok = vmap.index()
    return PreparedCloud(index.points, index, _normals=vmap.normals[:, ok])


def lidar_odometry(scans: Sequence, *, timestamps=None, config: OdometryConfig | None = None,
                   progress=None) -> OdometryResult:
    """Estimate the sensor's trajectory from a sequence of LiDAR scans (each ``(N_k, 3)`` in the
    sensor frame), scan to map.  ``timestamps`` ``(S,)`` are carried into the trajectory.
    ``progress``: an optional ``callback(done, total)`` after each scan.

    Raises ``ValueError`` for fewer than two scans, a scan with no points in range (named), NaN
    points, or timestamps that do not match the scans."""
    cfg = config or OdometryConfig()
    if not isinstance(scans, (list, tuple)) or len(scans) < 2:
        n = len(scans) if isinstance(scans, (list, tuple)) else type(scans).__name__
        raise ValueError(f"scans: expected a sequence of two or more scans (odometry needs motion), got {n}")
    first = as_points(scans[0], "scans[0]")
    given, device = first.dtype, first.device
    dtype = working_dtype(given)  # scans in a half precision: registered and mapped in float32
    first = first.to(dtype)
    if timestamps is not None:
        timestamps = torch.as_tensor(timestamps, dtype=torch.float64, device=device).reshape(-1)
        if timestamps.shape[0] != len(scans):
            raise ValueError(f"timestamps: expected {len(scans)} values (one per scan), got {timestamps.shape[0]}")
    v = cfg.voxel_size
    world = lie.se3_exp(torch.zeros(6, dtype=dtype, device=device))
    poses, regs, thresholds, seconds = [world], [None], [0.0], []
    seen: list[Observability] = []  # each registration's, where asked for
    vmap = GaussianVoxelMap(v, cfg.points_per_voxel, first)
    threshold = _Threshold(cfg)
    motion = world
    ok = True

    def prepare(k: int, motion: Tensor | None) -> tuple[Tensor, PreparedCloud]:
        """Scan ``k`` in range (deskewed by ``motion`` where asked): its points for the map, and
        the cloud to register."""
        with torch_threads(threads):
            P = as_points(scans[k], f"scans[{k}]", dtype=dtype, device=device).detach()
            r = P.norm(dim=-1)
            P = P[(r >= cfg.min_range) & (r <= cfg.max_range)]
            if P.shape[0] < 3:
                raise ValueError(f"scans[{k}]: {P.shape[0]} points between {cfg.min_range} and {cfg.max_range} m; "
                                 "odometry needs a scan with points in range")
            if motion is not None:
                P = _deskew(P, motion)
            frame, coarse = nested_voxels(P, 0.5 * v)  # the map's points, and the source's voxels of 1.5 v
            source = _source(coarse)
            if source.points.shape[0] < 3:
                raise ValueError(f"scans[{k}]: {source.points.shape[0]} voxels of {1.5 * v} m hold 3 or more of its "
                                 "points, and registration needs 3 such planes: a scan this sparse needs a smaller "
                                 "voxel_size")
            return frame, source

    # one thread: a scan's arrays are small enough that waking a second costs more than it gives
    threads = threads_for(9 * first.shape[0], device)
    # a scan's preparation needs at most the motion just estimated: on the CPU the next one is
    # prepared on a second thread while this one updates the map (torch lets go of the GIL)
    ahead = ThreadPoolExecutor(1) if cfg.prefetch and device.type == "cpu" else None
    t0 = time.perf_counter()
    try:
        with torch_threads(threads):
            coming = ahead.submit(prepare, 0, None) if ahead else None
            for k in range(len(scans)):
                frame, source = coming.result() if ahead else prepare(k, motion if cfg.deskew and k > 1 else None)
                if ahead and k + 1 < len(scans) and k == 0:
                    coming = ahead.submit(prepare, k + 1, None)
                if k == 0:
                    vmap.add(frame, world[:3], cfg.max_range)
                    seconds.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    continue
                sigma = threshold.sigma()
                guess = lie.se3_compose(poses[-1], motion)
                icp = ICPConfig(method=cfg.method, max_correspondence_distance=3 * sigma,
                                kernel=RobustKernel("geman_mcclure", sigma), max_iterations=cfg.max_iterations,
                                rotation_tolerance=cfg.tolerance, translation_tolerance=cfg.tolerance,
                                num_neighbors=10)
                target = _target(vmap)
                if target.points.shape[0] < 3:
                    raise ValueError(f"scans[0:{k}]: the map they make holds {target.points.shape[0]} voxels of {v} m "
                                     "with 3 or more points, and registration needs 3: scans this sparse need a "
                                     "smaller voxel_size")
                reg = align(source, target, init=guess, config=icp)
                pose = reg.T_target_source.tensor()
                if cfg.observability:
                    seen.append(observability(target.points, source, lie.se3_inverse(pose), 3 * sigma))
                threshold.update(lie.se3_compose(lie.se3_inverse(guess), pose),
                                 lie.se3_compose(lie.se3_inverse(poses[-1]), pose))
                motion = lie.se3_compose(lie.se3_inverse(poses[-1]), pose)
                if ahead and k + 1 < len(scans):  # alongside the map's few large ops, not ICP's many small ones
                    coming = ahead.submit(prepare, k + 1, motion if cfg.deskew else None)
                vmap.add(lie.se3_act(pose.expand(len(frame), 7), frame), pose[:3], cfg.max_range)
                poses.append(pose)
                regs.append(reg)
                thresholds.append(3 * sigma)
                ok = ok and bool(reg.converged)
                seconds.append(time.perf_counter() - t0)  # since the scan before was done
                t0 = time.perf_counter()
                if progress is not None:
                    progress(k + 1, len(scans))
    finally:
        if ahead:
            ahead.shutdown(cancel_futures=True)
    if dtype != given:  # the map and the registrations in the scans' dtype (the trajectory is float64)
        regs = [None if r is None else in_dtype(r, given) for r in regs]
    return OdometryResult(Trajectory(torch.stack(poses), timestamps), tuple(regs), vmap.means.to(given),
                          torch.tensor(thresholds, dtype=torch.float64, device=device), ok,
                          torch.tensor(seconds, dtype=torch.float64, device=device),
                          (None, *seen) if cfg.observability else ())
