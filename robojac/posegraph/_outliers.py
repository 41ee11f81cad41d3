"""Wrong loop closures for a pose graph: what place recognition adds when it errs, to measure a
robust solver against (``optimize_gnc``, robust kernels) on graphs whose truth is known."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import lie
from .._config import check_instance, check_int
from ._graph import PoseGraph

__all__ = ["add_wrong_loop_closures"]


def add_wrong_loop_closures(graph: PoseGraph, count: int, *, seed: int = 0,
                            reach: float = 10.0) -> tuple[PoseGraph, Tensor]:
    """``(graph with count more edges, wrong (E + count,) bool)``: loop closures between random
    pairs of poses that are not consecutive, each measuring a random motion (a translation up to
    ``reach`` metres in each axis, a rotation up to a half turn about z in 2D, up to one radian
    per axis in 3D), with the information of the graph's first loop closure (its first edge where
    it has none), as a place recognizer's false matches are as confident as its true ones.  The
    graph's poses, position priors and FIXed poses are kept; ``seed`` makes it repeatable.  SE3
    and 2D graphs."""
    check_instance("graph", graph, PoseGraph, "a PoseGraph")
    check_int("add_wrong_loop_closures", "count", count, minimum=0)
    if graph.similarity:
        raise ValueError("graph: add_wrong_loop_closures takes SE3 and 2D graphs, not similarity graphs")
    if graph.num_poses < 3:
        raise ValueError(f"graph: {graph.num_poses} poses hold no loop closure (it needs three or more)")
    gen = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, device="cpu")
    pairs = torch.zeros(0, 2, dtype=torch.long)
    while pairs.shape[0] < count:  # pairs that are not the odometry's (a few draws: most pairs qualify)
        ij = torch.randint(0, graph.num_poses, (2 * count + 8, 2), generator=gen)
        pairs = torch.cat((pairs, ij[(ij[:, 1] - ij[:, 0]).abs() > 1]))[:count]
    if graph.dim == 2:
        xyt = torch.cat((reach * (2 * torch.rand(count, 2, generator=gen, **kw) - 1),
                         math.pi * (2 * torch.rand(count, 1, generator=gen, **kw) - 1)), -1)
        Z = lie.se2_to_se3(xyt)
    else:
        twist = torch.cat((reach * (2 * torch.rand(count, 3, generator=gen, **kw) - 1),
                           2 * torch.rand(count, 3, generator=gen, **kw) - 1), -1)
        Z = lie.se3_exp(twist)
    loops = torch.nonzero(~graph.odometry).squeeze(-1)
    first = int(loops[0]) if len(loops) else 0
    device, dtype = graph.edges.device, graph.measurements.dtype
    info = graph.information[first].detach().expand(count, -1, -1)
    more = PoseGraph(graph.poses.detach().tensor(), torch.cat((graph.edges, pairs.to(device))),
                     torch.cat((graph.measurements.detach(), Z.to(device=device, dtype=dtype))),
                     torch.cat((graph.information.detach(), info)), dim=graph.dim, vertex_ids=graph.vertex_ids,
                     fixed=graph.fixed, name=f"{graph.name} + {count} wrong loop closures",
                     **_priors(graph))
    wrong = torch.zeros(more.num_edges, dtype=torch.bool, device=device)
    wrong[graph.num_edges:] = True
    return more, wrong


def _priors(graph: PoseGraph) -> dict:
    if not graph.num_priors:
        return {}
    return dict(prior_index=graph.prior_index, prior_positions=graph.prior_positions.detach(),
                prior_information=graph.prior_information.detach(), prior_lever_arms=graph.prior_lever_arms.detach())
