"""``solve(..., avoid=CollisionTask(...))``: targets reached with the robot's shapes clear of
obstacles and of each other.

A collision task is a cost, and a least-squares solve is local: from a start whose arm passes
through an obstacle it may settle where the frames and the clearance balance, neither met.  So
each target is solved from ``IKConfig.avoid_starts`` starts, all in one batch:

1. ``solve`` without the task, from that many random starts (the first at ``q0`` when given),
   each copy of a target one attempt from its own start (no start table, no restarts beside
   it: with them, every copy came back as the same answer, the table's): answers that reach
   the target, wherever they put the arm;
2. from each, the frames and the collision task together on the solver engine
   (:class:`FramesTask` and the :class:`CollisionTask`, both with closed-form Jacobians), at
   most ``IKConfig.avoid_iterations`` steps;
3. per target, the best: reached and clear first, then reached, then the rest, each by the
   cost of both tasks, or, for a target given ``q0``, by the distance from ``q0`` (the answer
   nearest the configuration it was asked from: a trajectory's goal, a path's next point).

The answer is differentiable in the targets through the engine's implicit gradient (the last
solve, with the chosen start held).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import Tensor

from .. import optim
from .._config import check_instance
from ..kinematics import Chain
from ._frames import frame_pose_errors, frame_scales, parse_frame_targets
from ._targets import check_start, one_frame_targets
from ._tasks import CollisionTask, FramesTask

__all__ = ["solve_avoiding"]

_IDENTITY = (0.0, 0.0, 0.0, 1.0)


def _targets(chain: Chain, cfg, target) -> tuple[tuple[str, ...], Tensor, tuple, Tensor, bool]:
    """``(frames, T (B, K, 7), batch, position_only (K,), mapping)``."""
    if isinstance(target, Mapping):
        frames, T, batch, flags = parse_frame_targets(chain, target, cfg)
        return frames, T, batch, flags, True
    frame, flat, batch, position_only = one_frame_targets(chain, cfg, target)
    if position_only:
        flat = torch.cat((flat, flat.new_tensor(_IDENTITY).expand(flat.shape[0], 4)), -1)
    return (frame,), flat[:, None], batch, torch.tensor([position_only], device=flat.device), False


def _repeat(T: Tensor, frames, flags: Tensor, mapping: bool, S: int):
    """The targets ``T (B, K, 7)`` ``S`` times over, as ``solve`` takes them (no graph)."""
    R = T.detach().repeat(S, 1, 1)
    one = {f: (R[:, k, :3] if bool(flags[k]) else R[:, k]) for k, f in enumerate(frames)}
    return one if mapping else one[frames[0]]


def solve_avoiding(chain: Chain, cfg, target, q0, avoid, solve, result_type):
    check_instance("avoid", avoid, CollisionTask, "an ik.CollisionTask or None")
    if avoid.chain is not chain:
        raise ValueError(f"avoid: its collision model is of chain {avoid.chain.name!r} (another Chain object); "
                         f"expected the chain being solved, {chain.name!r}")
    frames, T, batch, flags, mapping = _targets(chain, cfg, target)
    B, K, S, n = T.shape[0], len(frames), cfg.avoid_starts, chain.dof
    dt, dev = T.dtype, T.device
    if B == 0:  # no targets: an empty answer, as solve gives without avoid
        shape = batch + ((K,) if mapping else ())
        empty = T.new_zeros(batch)
        return result_type(T.new_zeros(batch + (n,)), torch.zeros(batch, dtype=torch.bool, device=dev),
                           T.new_zeros(shape), T.new_zeros(shape), torch.zeros(batch, dtype=torch.long, device=dev),
                           empty, (), T.new_zeros((2,) + batch), empty)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(cfg.seed) if cfg.seed is not None else gen.seed()
    starts = chain.random_configuration(S, B, generator=gen, dtype=dt, device=dev)
    q0 = check_start(chain, cfg, q0, T[:, 0], batch)
    if q0 is not None:
        starts[0] = q0
    with torch.no_grad():  # the starts: IK alone (its gradients are not wanted)
        first = solve(chain, _repeat(T, frames, flags, mapping, S), q0=starts.reshape(S * B, n),
                      config=replace(cfg, frame=None if mapping else frames[0], start_table=0, restarts=1))
    lo, hi = chain.limits_for(dt, dev)
    q = optim.Variable("Rn", first.q.reshape(S * B, 1, n), lower=lo, upper=hi, name="q")
    reach = FramesTask(chain, frames, position_only=[bool(f) for f in flags], position_weight=cfg.position_weight,
                       orientation_weight=cfg.orientation_weight, weights=frame_scales(cfg, frames))
    T_all = T.repeat(S, 1, 1)[:, None]  # (S B, 1, K, 7), the graph kept: the engine's implicit gradient
    config = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=cfg.avoid_iterations))
    result = optim.solve([q], [optim.Factor(reach, [q], data=(T_all,), name="frames"),
                               optim.Factor(avoid, [q], name="clearance")], config)
    Q = result.values[0][:, 0]  # (S B, n)
    with torch.no_grad():
        Qd = Q.detach().double()
        _, pe, re = frame_pose_errors(chain.forward_kinematics_tensor(Qd, list(frames)), T_all[:, 0].detach().double(),
                                      flags)
        clearance = avoid.distances(Qd[:, None].to(dt))[:, 0].amin(-1).double()
        reached = (pe < cfg.position_tolerance).all(-1) & (re < cfg.orientation_tolerance).all(-1)
        reached = reached & chain.within_limits(Qd)
        clear = clearance >= avoid.margin - cfg.position_tolerance
        ok = reached & clear
        # reached and clear first; then reached (but within the margin); then the rest; each by its cost
        rank = (~ok).double() + (~reached).double()  # 0, 1 or 2
        cost_all = result.cost.double()
        if q0 is not None:  # the answer nearest q0 among the equally good (q0 is the first start)
            cost_all = (Qd.reshape(S, B, n) - q0.detach().double()).norm(dim=-1).reshape(S * B)
        score = rank * (cost_all.max() + 1) + cost_all
        best = score.reshape(S, B).argmin(0) * B + torch.arange(B, device=dev)
    q_best = Q.index_select(0, best)
    pe, re, ok, reached, clearance = (x.index_select(0, best) for x in (pe, re, ok, reached, clearance))
    scale = torch.tensor(frame_scales(cfg, frames), dtype=torch.float64, device=dev)
    cost = 0.5 * cfg.position_weight ** 2 * (scale * scale * (pe * pe + (cfg.orientation_weight / cfg.position_weight
                                                                          * re) ** 2)).sum(-1)
    iters = first.iterations.reshape(S * B).index_select(0, best) + result.iterations.index_select(0, best)
    clear = clearance >= avoid.margin - cfg.position_tolerance
    reason = tuple("tolerance" if o else "not_reached" if c else "in_collision" for o, c in zip(ok.tolist(),
                                                                                                clear.tolist()))
    shape = batch + ((K,) if mapping else ())
    history = torch.stack((first.cost.reshape(S * B).double().index_select(0, best), cost)).to(dt)
    return result_type(q_best.reshape(batch + (n,)), ok.reshape(batch), pe.to(dt).reshape(shape),
                       re.to(dt).reshape(shape), iters.reshape(batch), cost.to(dt).reshape(batch), reason,
                       history.reshape((2,) + batch), clearance.to(dt).reshape(batch))
