"""Multiway registration: many scans of one object or place, merged into one model.

1. Every pair of scans is registered: from a given initial guess refined by ICP, or with no
   guess at all by :func:`~robojac.icp.global_align` (each scan's features computed once).
   Pairs with too little overlap are left out.
2. Each kept pair becomes a pose-graph edge ``Z_ij = T_i^-1 T_j`` weighted by the information
   matrix of its alignment (:func:`~robojac.icp.information_matrix`, brought into the graph's
   tangent convention).  Consecutive scans are odometry edges; the others loop closures.
3. The initial poses come from the strongest pairs (a maximum spanning tree from scan 0).
4. A robust pose-graph optimization (DCS by default) finds the poses; edges it cannot
   reconcile are pruned, and the kept pairs are refined again from the optimized poses by ICP
   before a last optimization.

Scan 0 is the world: ``poses[0]`` is the identity.

The work is done about the centre of scan 0's points (``origin``), and the poses and pairs are
given back in the clouds' own frame.  An alignment's information matrix, taken about the world's
origin, grows with the square of the distance: scans in map coordinates (4,000 km out) gave
matrices that were no longer positive definite in float64, and their graph was refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import lie
from .._config import check_real
from .._precision import in_dtype, working_dtype
from ..optim import RobustKernel
from ..posegraph import PGOConfig, PoseGraph, optimize
from ._align import ICPConfig, RegistrationResult, align
from ._cloud import as_points, check_resolution, voxel_downsample
from ._global import GlobalConfig, describe, information_matrix, register_described
from ._ply import write_ply

__all__ = ["MultiwayConfig", "MultiwayResult", "multiway_registration"]


@dataclass(frozen=True)
class MultiwayConfig:
    """Options of :func:`multiway_registration`.

    * ``voxel_size``: the pairwise registration's voxel (features, RANSAC; ICP at half of it).
    * ``max_correspondence_distance``: of the information matrices, in voxels; the pairwise
      ICP refinement (at half the voxel) uses half of it.
    * ``min_fitness``: a pair is kept when at least this share of its source points lies within
      that distance of the target after registration (its overlap).
    * ``kernel``: the pose graph's robust kernel, on each edge's whitened residual.
    * ``prune_chi2``: after the robust optimization, edges whose chi^2 exceeds this are pruned
      (wrong pairs: a symmetric object registered the wrong way round).
    * ``refine_rounds``: times the kept pairs are re-registered by ICP from the optimized
      poses, each followed by an optimization.
    * ``global_config``: the pairwise global registration (default: :class:`GlobalConfig` at
      ``voxel_size``).
    """

    voxel_size: float = 0.003
    max_correspondence_distance: float = 1.5
    min_fitness: float = 0.3
    kernel: RobustKernel = field(default_factory=lambda: RobustKernel("dcs", 1.0))
    prune_chi2: float = 25.0
    refine_rounds: int = 1
    global_config: GlobalConfig | None = None

    def __post_init__(self):
        owner = "MultiwayConfig"
        check_real(owner, "voxel_size", self.voxel_size, positive=True)
        check_real(owner, "max_correspondence_distance", self.max_correspondence_distance, positive=True)
        check_real(owner, "min_fitness", self.min_fitness, maximum=1.0)
        check_real(owner, "prune_chi2", self.prune_chi2, positive=True)
        if not isinstance(self.kernel, RobustKernel):
            raise ValueError(f"MultiwayConfig.kernel: expected a RobustKernel, got {self.kernel!r}")
        if isinstance(self.refine_rounds, bool) or not isinstance(self.refine_rounds, int) or self.refine_rounds < 0:
            raise ValueError(f"MultiwayConfig.refine_rounds: expected an integer >= 0, got {self.refine_rounds!r}")
        if self.global_config is not None and not isinstance(self.global_config, GlobalConfig):
            raise ValueError(f"MultiwayConfig.global_config: expected a GlobalConfig or None, got {self.global_config!r}")

    def global_registration(self) -> GlobalConfig:
        """``global_config``, or :class:`GlobalConfig` at ``voxel_size`` whose ICP refinement
        leaves out :func:`global_align`'s restarts: here the pose graph weighs each pair against
        all the others, and the restarts took the bunny's 45 pairs from 11.6 to 21.5 s."""
        if self.global_config is not None:
            return self.global_config
        g = GlobalConfig(voxel_size=self.voxel_size)
        return dataclasses.replace(g, icp=dataclasses.replace(g.refinement(), restarts=0))

    def icp(self) -> ICPConfig:
        return ICPConfig(method="gicp", voxel_size=self.voxel_size / 2,
                         max_correspondence_distance=self.max_correspondence_distance * self.voxel_size / 2)


@dataclass(frozen=True)
class MultiwayResult:
    """The answer of :func:`multiway_registration`.

    * ``poses``: ``T_world_scan`` ``(N, 7)``, scan 0 the world.
    * ``graph``: the :class:`~robojac.posegraph.PoseGraph` of the kept pairs (at the answer).
    * ``pairs``: ``{(i, j): RegistrationResult}`` of every pair tried (``T_target_source`` is
      ``T_i_j``: scan ``j`` into scan ``i``'s frame).
    * ``kept`` / ``pruned``: the pairs in the graph, and those the optimization rejected.
    * ``converged``: the final optimization converged and every scan is connected to scan 0.
    * ``reason``: the final optimization's reason, or why the scans could not be joined.
    * ``origin``: ``(3,)`` the centre of scan 0's points (to a whole voxel), about which the work
      is done: the ``graph`` is in scan 0's frame moved there (its poses are
      ``Tr(-origin) T Tr(origin)``, its information matrices the alignments' about the scans),
      ``poses`` and ``pairs`` are not.
    """

    poses: Tensor
    graph: PoseGraph | None
    pairs: dict
    kept: tuple[tuple[int, int], ...]
    pruned: tuple[tuple[int, int], ...]
    converged: bool
    reason: str
    origin: Tensor | None = None

    def _placed(self, clouds: Sequence, voxel_size: float) -> list[Tensor]:
        """Each cloud in the world frame, thinned to ``voxel_size`` on its own (0: as it is)."""
        out = []
        for k, c in enumerate(clouds):
            p = lie.se3_act(self.poses[k].expand(len(c), 7), as_points(c, f"clouds[{k}]").to(self.poses))
            out.append(voxel_downsample(p, voxel_size))  # which refuses a size < 0 or NaN (0: as it is)
        return out

    def merged(self, clouds: Sequence, voxel_size: float = 0.0) -> Tensor:
        """Every cloud moved into the world frame and stacked ``(M, 3)`` (the union
        voxel-downsampled when ``voxel_size`` > 0)."""
        return voxel_downsample(torch.cat(self._placed(clouds, 0.0)), voxel_size)

    def write_merged(self, path, clouds: Sequence, voxel_size: float = 0.0, *, colors: bool = True):
        """Write the scans in the world frame as one PLY (binary, atomic), each scan in its own
        colour; ``voxel_size`` thins each scan on its own (so that every point keeps its scan's
        colour), unlike :meth:`merged`, which thins the union."""
        import numpy as np

        palette = np.array([[59, 91, 146], [224, 122, 95], [61, 153, 112], [155, 93, 229], [242, 204, 143],
                            [129, 178, 154], [214, 39, 40], [23, 190, 207], [140, 86, 75], [127, 127, 127]])
        pts = self._placed(clouds, voxel_size)
        cols = [np.repeat(palette[k % len(palette)][None], len(p), 0) for k, p in enumerate(pts)]
        return write_ply(torch.cat(pts), path, np.concatenate(cols).astype(np.uint8) if colors else None)


def _edge_information(src: Tensor, tgt: Tensor, T_ij: Tensor, distance: float) -> Tensor:
    """The information of ``Z = T_ij`` in the pose graph's tangent (``T_i^-1 T_j = Z Exp(e)``):
    the alignment's left-perturbation information ``I`` seen through ``Ad(Z)``."""
    info = information_matrix(src, tgt, T_ij, distance)
    Ad = lie.se3_adjoint(T_ij)
    return Ad.T @ info @ Ad


def _conjugated(C: Tensor, T: Tensor) -> Tensor:
    """``C T C^-1`` for poses ``T (..., 7)``: ``T`` in a frame moved by ``C``."""
    C = C.expand_as(T)
    return lie.se3_compose(C, lie.se3_compose(T, lie.se3_inverse(C)))


def _pairs_back(pairs: dict, C: Tensor) -> dict:
    """The pairs' results with ``T_target_source`` back in the clouds' own frame."""
    return {e: dataclasses.replace(r, T_target_source=lie.wrap_lie(_conjugated(C, r.T_target_source.tensor())))
            for e, r in pairs.items()}


def _spanning_tree(N: int, edges: list[tuple[int, int]], weights: list[float], Z: dict) -> Tensor | None:
    """Poses from scan 0 along the maximum spanning tree of the pairs (Prim's); ``None`` if a
    scan cannot be reached."""
    if not edges:
        return None
    poses: dict[int, Tensor] = {0: lie.se3_exp(Z[edges[0]].new_zeros(6))}
    while len(poses) < N:
        best, pick = -math.inf, None
        for (i, j), w in zip(edges, weights):
            if (i in poses) != (j in poses) and w > best:
                best, pick = w, (i, j)
        if pick is None:
            return None
        i, j = pick
        if i in poses:
            poses[j] = lie.se3_compose(poses[i], Z[pick])
        else:
            poses[i] = lie.se3_compose(poses[j], lie.se3_inverse(Z[pick]))
    return torch.stack([poses[k] for k in range(N)])


def multiway_registration(clouds: Sequence, *, init: Tensor | None = None, config: MultiwayConfig | None = None,
                          progress=None) -> MultiwayResult:
    """Register ``clouds`` (a list of ``(N_k, 3)`` point sets, two or more) into one frame, scan 0's.

    ``init``: optional initial poses ``T_world_scan`` ``(N, 7)`` (or ``(N, 4, 4)``); without
    them, every pair is registered globally (no guess needed).  ``progress``: an optional
    ``callback(done, total, what)`` for each pair and stage.  Returns a
    :class:`MultiwayResult`; scans that no kept pair joins to scan 0 leave ``converged=False``.
    """
    cfg = config or MultiwayConfig()
    if not isinstance(clouds, (list, tuple)) or len(clouds) < 2:
        raise ValueError(f"clouds: expected a list of two or more point clouds, got "
                         f"{len(clouds) if isinstance(clouds, (list, tuple)) else type(clouds).__name__}")
    pts = [as_points(c, f"clouds[{k}]") for k, c in enumerate(clouds)]
    check_resolution(pts, [f"clouds[{k}]" for k in range(len(pts))])
    given, device = pts[0].dtype, pts[0].device
    dtype = working_dtype(given)  # clouds in a half precision: registered in float32 (the graph stays in it)
    pts = [p.to(dtype=dtype, device=device).detach() for p in pts]
    N = len(pts)
    T0 = given_init = None
    if init is not None:
        T0 = given_init = lie.se3_tensor(init, name="init").to(dtype=dtype, device=device)
        if T0.shape != (N, 7):
            raise ValueError(f"init: expected {N} poses (one per cloud), got shape {tuple(T0.shape)}")
    # the work is done about scan 0's centre (see the module's note), on a whole number of voxels: the same
    # voxel grids as in the clouds' frame (without it the bunny's scans moved by up to 0.26 mm; with it by
    # up to 0.04 mm, where a rounding turns a tie in a neighbour search)
    origin = (torch.round(pts[0].double().mean(0) / cfg.voxel_size) * cfg.voxel_size).to(dtype)
    C = torch.cat((origin, origin.new_tensor([0.0, 0.0, 0.0, 1.0])))
    pts = [p - origin for p in pts]
    if T0 is not None:
        T0 = _conjugated(lie.se3_inverse(C), T0)
    gcfg, icfg = cfg.global_registration(), cfg.icp()
    dist = cfg.max_correspondence_distance * cfg.voxel_size
    pair_list = [(i, j) for i in range(N) for j in range(i + 1, N)]
    total = len(pair_list) + 2 + cfg.refine_rounds
    say = progress or (lambda done, total, what: None)
    described = [describe(p, gcfg, f"clouds[{k}]") for k, p in enumerate(pts)] if T0 is None else None
    pairs: dict[tuple[int, int], RegistrationResult] = {}
    for n, (i, j) in enumerate(pair_list):
        if T0 is None:
            r = register_described(pts[j], pts[i], described[j], described[i], gcfg)
        else:
            r = align(pts[j], pts[i], init=lie.se3_compose(lie.se3_inverse(T0[i]), T0[j]), config=icfg)
        pairs[(i, j)] = r
        say(n + 1, total, f"pair {i}-{j}")
    good = [e for e in pair_list if bool(pairs[e].converged) and float(pairs[e].fitness) >= cfg.min_fitness]
    Z = {e: pairs[e].T_target_source.tensor() for e in good}
    start = _spanning_tree(N, good, [float(pairs[e].fitness) for e in good], Z) if good else None
    if start is None:
        reached = "no pair" if not good else "some scans"
        kept_poses = given_init if T0 is not None else lie.se3_exp(torch.zeros(N, 6, dtype=dtype, device=device))
        out = MultiwayResult(kept_poses, None, _pairs_back(pairs, C), tuple(good), (), False,
                             f"disconnected: {reached} overlaps enough to join every scan to scan 0 "
                             f"(min_fitness {cfg.min_fitness})", origin)
        return out if dtype == given else in_dtype(out, given)
    poses, kept, pruned, result, graph = start, list(good), [], None, None
    rounds, round_ = cfg.refine_rounds, 0
    while True:
        if round_ > 0 and round_ <= cfg.refine_rounds:  # re-register the kept pairs from the optimized poses
            for e in kept:
                i, j = e
                pairs[e] = align(pts[j], pts[i], init=lie.se3_compose(lie.se3_inverse(poses[i]), poses[j]), config=icfg)
                Z[e] = pairs[e].T_target_source.tensor()
        info = torch.stack([_edge_information(pts[j], pts[i], Z[(i, j)], dist) for i, j in kept])
        graph = PoseGraph(poses, torch.tensor(kept, dtype=torch.long, device=device), torch.stack([Z[e] for e in kept]),
                          info, fixed=torch.arange(N, device=device) == 0, name="multiway")
        result = optimize(graph, PGOConfig(init="file", kernel=cfg.kernel if round_ == 0 else RobustKernel()))
        poses = result.poses.tensor()
        say(min(len(pair_list) + 1 + round_, total - 1), total, "pose graph")
        if round_ == 0:
            with torch.no_grad():
                chi2 = graph.chi2(poses)
            bad = [e for e, c in zip(kept, chi2.tolist()) if c > cfg.prune_chi2]
            still = [e for e in kept if e not in bad]
            if bad and _spanning_tree(N, still, [1.0] * len(still), Z) is not None:
                pruned, kept = bad, still
                rounds = max(rounds, 1)  # the graph the answer comes from holds only the kept pairs
        if round_ >= rounds:
            break
        round_ += 1
    say(total, total, "done")
    out = MultiwayResult(_conjugated(C, poses), graph, _pairs_back(pairs, C), tuple(kept), tuple(pruned),
                         bool(result.converged), result.reason, origin)
    return out if dtype == given else in_dtype(out, given)  # poses, pairs in the clouds' dtype; the graph float32
