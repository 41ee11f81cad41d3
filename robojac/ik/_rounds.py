"""The rounds' bookkeeping that one frame's IK and several frames' share: the best start of each
target so far, its stalls, and when a target is done."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["Best", "any_in_group", "random_source", "seeded"]


class Best:
    """Per target (``B``): the best ``q`` so far, its ``score`` (a solved start beats any unsolved
    one), its errors ``pe``/``re`` (each ``(B, *err_shape)``), the steps spent on it, the rounds
    that ended within 5% of the best (``stalled``), and ``done``; ``history``: whatever the
    caller appends after each round."""

    def __init__(self, B: int, dof: int, err_shape: tuple[int, ...] = ()):
        self.q = np.zeros((B, dof))
        self.score = np.full(B, math.inf)
        self.pe, self.re = np.zeros((B,) + err_shape), np.zeros((B,) + err_shape)
        self.done = np.zeros(B, dtype=bool)
        self.iters = np.zeros(B, dtype=np.int64)
        self.stalled = np.zeros(B, dtype=np.int64)
        self.history: list = []

    def todo(self) -> np.ndarray:
        """The targets not done yet."""
        return np.nonzero(~self.done)[0]

    def rounds(self, cfg, seeded: bool = False):
        """``(round, the targets not done, restarts per target)`` for each round of ``cfg`` (an
        ``IKConfig``) until every target is done: ``restarts``, or fewer when fewer fill ``fill``.
        ``seeded`` (a ``q0`` was given) first yields round ``-1``, the first of the ``rounds``: one
        attempt per target from ``q0`` alone.  Run beside other starts, the ``q0`` attempt was stopped as soon as another
        solved the target (a start table's entry, in two steps), and the answer jumped to another
        branch of the arm's solutions: a path tracked from the last answer moved a joint by up to
        3 rad between waypoints (``examples/09_ik_target_path.py``)."""
        if seeded:  # the first of the ``rounds``
            todo = self.todo()
            if todo.size:
                yield -1, todo, 1
        for rnd in range(cfg.rounds - seeded):
            todo = self.todo()
            if todo.size == 0:
                return
            yield rnd, todo, min(cfg.restarts, max(1, -(-cfg.fill // todo.size)))

    def update(self, todo: np.ndarray, R: int, q, pe, re, ok, it, score, patience: int) -> None:
        """Keep, of the ``R`` consecutive attempts of each target in ``todo``, the best (``score``
        ``(n R,)``: the attempts' cost, lower is better; ``ok``: solved), if it beats the best so far."""
        n = todo.size
        score = np.where(ok, score - 1e30, score).reshape(n, R)
        k = score.argmin(1)
        first = np.arange(n)
        cand = score[first, k]
        prev = self.score[todo]
        better = cand < prev
        self.stalled[todo] += np.isfinite(prev) & (np.abs(cand - prev) <= 0.05 * prev)
        chosen = todo[better]
        pick = (first * R + k)[better]
        self.q[chosen], self.score[chosen], self.pe[chosen], self.re[chosen] = q[pick], cand[better], pe[pick], re[pick]
        self.iters[todo] += it.reshape(n, R)[first, k]
        self.done[todo] = ok.reshape(n, R).any(1) | (self.stalled[todo] >= patience)


def seeded(q: np.ndarray, todo: np.ndarray, R: int, held, q0: np.ndarray | None, first: bool) -> np.ndarray:
    """The starts ``q (n R, dof)`` of the targets ``todo`` (``R`` each; changed in place and
    returned) with the joints ``held[0]`` that move no target frame at their values ``held[1]
    (B, len(held[0]))`` (``held`` ``None``: every joint moves one), and in the ``first`` round each
    target's first attempt at ``q0 (B, dof)`` (float64, or ``None``; the round of ``q0`` alone,
    ``R = 1``, is all of them)."""
    if held is not None:
        q[:, held[0]] = held[1][todo.repeat(R)]
    if first and q0 is not None:
        q[::R] = q0[todo]
    return q


def any_in_group(ok: Tensor, target_of: Tensor, group: int) -> Tensor:
    """``(B,)``: ``ok`` of any problem of the same target (``target_of``; ``group`` consecutive problems each)."""
    if group == 1:
        return ok
    hits = torch.zeros(int(target_of.max()) + 1 if len(ok) else 0, dtype=torch.int32, device=ok.device)
    return hits.index_add_(0, target_of, ok.to(torch.int32))[target_of] > 0


def random_source(seed: int | None) -> torch.Generator:
    """The random starts' generator (on the CPU): ``seed``, or a fresh one for ``None``."""
    gen = torch.Generator()
    gen.manual_seed(seed) if seed is not None else gen.seed()
    return gen
