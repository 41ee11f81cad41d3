"""Global registration: a pose without an initial guess, from features, a batched RANSAC in
torch, and ICP to finish.

1. Both clouds are voxel-downsampled; each point gets an FPFH descriptor (Open3D's
   ``compute_fpfh_feature``, on normals from a radius search).
2. Correspondences are mutual nearest neighbours in descriptor space (a source point's best
   target and that target's best source agree).
3. RANSAC draws many minimal samples (three correspondences) at once, drops those whose
   pairwise distances disagree between the clouds (a rigid motion keeps them), fits every
   survivor in closed form (Kabsch, batched SVD) and counts each one's inliers in one batched
   pass: no loop over hypotheses.  The best is refitted on its inliers.
4. ICP (:func:`~robojac.icp.align`) refines it on the full clouds.

A pair with too little consistent evidence ends with ``converged=False`` and the inlier count,
never a confident wrong pose.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .. import lie
from .._config import check_int, check_real
from .._precision import in_dtype, working_dtype
from ._align import ICPConfig, RegistrationResult, align, rigid_fit
from ._cloud import as_points, voxel_downsample
from ._neighbors import NearestNeighbors

__all__ = ["GlobalConfig", "describe", "fpfh_features", "global_align", "information_matrix", "register_described"]


@dataclass(frozen=True)
class GlobalConfig:
    """Options of :func:`global_align`.

    * ``voxel_size``: downsampling before features and RANSAC (metres); the radii below are
      multiples of it.
    * ``normal_radius`` / ``feature_radius``: the neighbourhoods of normals and of FPFH, in
      voxels (Open3D's tutorial uses 2 and 5).
    * ``max_correspondence_distance``: RANSAC's inlier distance, in voxels.
    * ``hypotheses``: the most minimal samples drawn; ``chunk``: how many are scored at once
      (memory).  Drawing stops early once an all-inlier sample has been drawn with probability
      ``confidence``, given the best inlier ratio so far (the classical RANSAC bound).
    * ``edge_ratio``: a sample is kept only if its three pairwise distances agree between the
      clouds to this ratio (0.9 as Open3D's ``CorrespondenceCheckerBasedOnEdgeLength``).
    * ``min_inliers`` and ``min_fitness``: the evidence a pose needs to count as found: RANSAC
      inliers, and the share of source points the refined pose brings within the final ICP's
      correspondence distance.
    * ``icp``: the refinement (default: GICP at half the voxel size, coarse to fine; see
      :meth:`refinement`).
    * ``seed``: RANSAC's random draws (the answer is reproducible).
    """

    voxel_size: float = 0.005
    normal_radius: float = 2.0
    feature_radius: float = 5.0
    max_correspondence_distance: float = 1.5
    hypotheses: int = 100000
    chunk: int = 2000
    confidence: float = 0.999
    edge_ratio: float = 0.9
    min_inliers: int = 12
    min_fitness: float = 0.25
    icp: ICPConfig | None = None
    seed: int = 0

    def __post_init__(self):
        owner = "GlobalConfig"
        for name in ("voxel_size", "normal_radius", "feature_radius", "max_correspondence_distance"):
            check_real(owner, name, getattr(self, name), positive=True)
        check_int(owner, "hypotheses", self.hypotheses, minimum=1)
        check_int(owner, "chunk", self.chunk, minimum=1)
        check_real(owner, "edge_ratio", self.edge_ratio, positive=True, maximum=1.0)
        check_real(owner, "confidence", self.confidence, positive=True)
        if self.confidence >= 1:
            raise ValueError(f"GlobalConfig.confidence: expected a probability below 1, got {self.confidence}")
        check_int(owner, "min_inliers", self.min_inliers, minimum=3)
        check_real(owner, "min_fitness", self.min_fitness, maximum=1.0)
        check_int(owner, "seed", self.seed, minimum=0)
        if self.icp is not None and not isinstance(self.icp, ICPConfig):
            raise ValueError(f"GlobalConfig.icp: expected an ICPConfig or None, got {self.icp!r}")

    def refinement(self) -> ICPConfig:
        """The ICP that finishes the pose: ``icp``, or GICP at half the feature voxel, coarse
        to fine (a finer final grid keeps the answer from depending on how the grid cuts the
        rotated cloud: 0.5 deg of spread on the LiDAR pair at the feature voxel, 0.01 deg at
        half of it), from RANSAC's pose and 2 rotations of it of up to 3 deg, the best fit of
        the coarse level kept (RANSAC's pose can sit in a local minimum of ICP: on the LiDAR
        pair one start in 30 ended 1.2 deg off, at a fitness of 0.823 where the right one has
        0.836)."""
        return self.icp if self.icp is not None else ICPConfig(
            method="gicp", voxel_size=self.voxel_size / 2, levels=(2.0, 1.0),
            max_correspondence_distance=self.voxel_size, restarts=2, restart_angle=math.radians(3.0))


def fpfh_features(points: Tensor, voxel_size: float, normal_radius: float = 2.0,
                  feature_radius: float = 5.0) -> Tensor:
    """FPFH descriptors ``(N, 33)`` of ``points (N, 3)`` (Open3D's, normals from a radius search
    of ``normal_radius`` voxels, features of ``feature_radius``)."""
    points = as_points(points, "points")
    # a NaN radius gave every point zero features, a negative or infinite one other nonsense, without a word
    for name, value in (("voxel_size", voxel_size), ("normal_radius", normal_radius),
                        ("feature_radius", feature_radius)):
        check_real("fpfh_features", name, value, positive=True)
    try:
        import open3d as o3d
    except ImportError as e:  # pragma: no cover - open3d is a dependency
        raise ImportError("fpfh_features needs Open3D (pip install open3d)") from e
    # about the cloud's centre: Open3D's normals come from the raw moments E[p p^T] - E[p] E[p]^T, which
    # 4,000 km out (map coordinates) cancel to noise (a bunny pair then found 11 RANSAC inliers, not 160)
    P = points.detach().double().cpu()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector((P - P.mean(0)).numpy()))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=normal_radius * voxel_size, max_nn=30))
    f = o3d.pipelines.registration.compute_fpfh_feature(
        pc, o3d.geometry.KDTreeSearchParamHybrid(radius=feature_radius * voxel_size, max_nn=100))
    return torch.from_numpy(np.asarray(f.data).T.copy()).to(device=points.device, dtype=points.dtype)


def _mutual_matches(fs: Tensor, ft: Tensor, budget: int = 1 << 21) -> tuple[Tensor, Tensor]:
    """Mutual nearest neighbours in descriptor space: ``(source index, target index)``.  One
    pass over the distance matrix, a block of source rows at a time (float32: descriptors are
    histograms), keeping each row's best target and each column's best source.  A block holds
    about ``budget`` distances (8 MB): on the LiDAR pair's 6k x 6k, blocks of 2048 rows (50 MB,
    fresh pages every block) took 170 ms, of 256-512 rows 80-100 ms."""
    a, b = fs.float(), ft.float()
    chunk = max(1, budget // max(b.shape[0], 1))
    s2t = torch.empty(a.shape[0], dtype=torch.long, device=a.device)
    col_best = torch.full((b.shape[0],), math.inf, device=a.device)
    t2s = torch.zeros(b.shape[0], dtype=torch.long, device=a.device)
    for i in range(0, a.shape[0], chunk):
        D = torch.cdist(a[i : i + chunk], b)
        s2t[i : i + chunk] = D.argmin(1)
        m, arg = D.min(0)
        better = m < col_best
        col_best = torch.where(better, m, col_best)
        t2s = torch.where(better, arg + i, t2s)
    keep = t2s[s2t] == torch.arange(a.shape[0], device=a.device)
    src = torch.nonzero(keep).flatten()
    return src, s2t[src]


def _kabsch(P: Tensor, Q: Tensor) -> Tensor:
    """Poses ``(H, 7)`` with ``Q ~ R P + t`` for point sets ``P, Q (H, K, 3)``: ICP's rigid fit."""
    return rigid_fit(P.transpose(1, 2), Q.transpose(1, 2), torch.ones(P.shape[:2], dtype=P.dtype, device=P.device))


def _ransac(ps: Tensor, pt: Tensor, cfg: GlobalConfig) -> tuple[Tensor, int]:
    """The best pose for correspondences ``ps[i] <-> pt[i]`` and its inlier count.

    Hypotheses are scored by their truncated squared error ``sum min(r^2, d^2)`` (MSAC), which
    prefers the more accurate of two hypotheses with the same inliers; the best is refitted on
    its inliers."""
    C = ps.shape[0]
    if C < 3:
        return lie.se3_exp(ps.new_zeros(6)), 0
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    d = cfg.max_correspondence_distance * cfg.voxel_size
    best_T, best_cost, needed = None, math.inf, cfg.hypotheses
    for start in range(0, cfg.hypotheses, cfg.chunk):
        if start >= needed:  # enough samples to have drawn an all-inlier one with the confidence asked
            break
        H = min(cfg.chunk, cfg.hypotheses - start)
        idx = torch.randint(0, C, (H, 3), generator=g, device="cpu").to(ps.device)
        S, T = ps[idx], pt[idx]  # (H, 3, 3)
        pairs = ((0, 1), (1, 2), (0, 2))
        ls = torch.stack([(S[:, i] - S[:, j]).norm(dim=-1) for i, j in pairs], -1)
        lt = torch.stack([(T[:, i] - T[:, j]).norm(dim=-1) for i, j in pairs], -1)
        ok = ((torch.minimum(ls, lt) >= cfg.edge_ratio * torch.maximum(ls, lt)) & (ls > d)).all(-1)
        if not bool(ok.any()):
            continue
        X = _kabsch(S[ok], T[ok])  # (h, 7)
        r2 = (lie.se3_act(X[:, None, :], ps[None]) - pt[None]).square().sum(-1)  # (h, C)
        cost = r2.clamp_max(d * d).sum(1)
        k = int(cost.argmin())
        if float(cost[k]) < best_cost:
            best_cost, best_T = float(cost[k]), X[k]
            w = float((r2[k] < d * d).float().mean())  # the best hypothesis' inlier ratio
            if 0 < w < 1:
                needed = min(cfg.hypotheses, math.ceil(math.log(1 - cfg.confidence) / math.log1p(-(w**3))))
            elif w >= 1:
                needed = 0
    if best_T is None:
        return lie.se3_exp(ps.new_zeros(6)), 0
    for _ in range(3):  # refit on the inliers of the best hypothesis
        inl = (lie.se3_act(best_T.expand(C, 7), ps) - pt).norm(dim=-1) < d
        if int(inl.sum()) < 3:
            break
        best_T = _kabsch(ps[inl][None], pt[inl][None])[0]
    n = int(((lie.se3_act(best_T.expand(C, 7), ps) - pt).norm(dim=-1) < d).sum())
    return best_T, n


def global_align(source, target, *, config: GlobalConfig | None = None) -> RegistrationResult:
    """Register ``source`` to ``target`` with no initial guess: ``T_target_source``.

    ``source``, ``target``: ``(N, 3)`` tensors (or arrays, Open3D clouds).  Features, a batched
    RANSAC in torch and ICP, as the module describes.  The result is a
    :class:`~robojac.icp.RegistrationResult` (``converged``, ``num_inliers`` = RANSAC's
    inliers among the feature matches, ``fitness`` and ``rmse`` of the refined pose).  A pair
    the evidence does not support (fewer than ``min_inliers`` RANSAC inliers, or a refined
    fitness below ``min_fitness``: clouds that do not overlap) ends with ``converged=False``.
    """
    cfg = config or GlobalConfig()
    src = as_points(source, "source")
    given = src.dtype
    src = src.to(working_dtype(given))  # points in a half precision: registered in float32, answered in theirs
    tgt = as_points(target, "target", dtype=src.dtype, device=src.device)
    result = register_described(src, tgt, describe(src, cfg, "source"), describe(tgt, cfg, "target"), cfg)
    return result if src.dtype == given else in_dtype(result, given)


def describe(points: Tensor, cfg: GlobalConfig, name: str = "points") -> tuple[Tensor, Tensor]:
    """``(downsampled points, their FPFH descriptors)``: what global registration needs of one
    cloud (computed once per cloud when many pairs share it, as in multiway registration)."""
    S = voxel_downsample(points.detach(), cfg.voxel_size)
    if S.shape[0] < 3:
        raise ValueError(f"{name}: {S.shape[0]} points after {cfg.voxel_size} m voxels; features and RANSAC need at "
                         f"least 3 (a smaller GlobalConfig.voxel_size, or more points)")
    return S, fpfh_features(S, cfg.voxel_size, cfg.normal_radius, cfg.feature_radius)


def register_described(src: Tensor, tgt: Tensor, described_src, described_tgt, cfg: GlobalConfig) -> RegistrationResult:
    """:func:`global_align` from the clouds' :func:`describe` results."""
    (S, fs), (T, ft) = described_src, described_tgt
    i, j = _mutual_matches(fs, ft)
    X, inliers = _ransac(S[i], T[j], cfg)
    refined = align(src, tgt, init=X, config=cfg.refinement())
    found = (inliers >= cfg.min_inliers) & (refined.fitness >= cfg.min_fitness) & refined.converged
    n = torch.full_like(refined.num_inliers, inliers)
    reason = tuple(r if bool(ok) else "no_consistent_pose" for r, ok in zip(refined.reason, found.reshape(-1).tolist()))
    return dataclasses.replace(refined, converged=found, num_inliers=n, reason=reason)


def information_matrix(source, target, T_target_source, max_correspondence_distance: float) -> Tensor:
    """The information matrix ``(6, 6)`` of an alignment, in robojac's tangent order
    ``[rho, phi]`` (a left perturbation of ``T_target_source``): ``sum G^T G`` over the
    correspondences (each moved source point's nearest target point ``p`` within
    ``max_correspondence_distance``), ``G = [I, -[p]x]``.  Open3D's
    ``get_information_matrix_from_point_clouds`` with its rows and columns in that order; the
    weight of a pose-graph edge between two scans."""
    src = as_points(source, "source")
    tgt = as_points(target, "target", dtype=src.dtype, device=src.device)
    check_real("information_matrix", "max_correspondence_distance", max_correspondence_distance, positive=True)
    T = lie.se3_tensor(T_target_source, name="T_target_source").to(src)
    if T.shape != (7,):
        raise ValueError(f"T_target_source: expected one pose, got shape {tuple(T.shape)}")
    moved = lie.se3_act(T.expand(src.shape[0], 7), src.detach())
    d2, idx = NearestNeighbors(tgt.detach()).query(moved, k=1)
    p = tgt.detach()[idx[d2 <= max_correspondence_distance**2]]
    eye = torch.eye(3, dtype=p.dtype, device=p.device).expand(p.shape[0], 3, 3)
    G = torch.cat((eye, -lie.skew(p)), -1)  # (K, 3, 6)
    return (G.transpose(1, 2) @ G).sum(0)
