"""Marginal covariances: diagonal blocks of the inverse Gauss-Newton Hessian at a solution.

The covariance of a least-squares estimate, to first order (the Laplace approximation), is the
inverse of ``J^T W J`` at the answer, with the residuals whitened by their factors' information
and the robust kernels' weights at that answer.  A variable's marginal covariance is the
diagonal block of that inverse for its tangent coordinates, what GTSAM's ``Marginals`` gives.

Many small problems (or one of at most :data:`~robojac.optim.DENSE_MAX` unknowns) invert their
dense systems.  One large problem takes the *selected inverse* of its sparse Cholesky factor
(:class:`MultifrontalCholesky`): the entries of ``Z = H^-1`` on the factor's pattern, supernode by
supernode from the root down, each from the ones already found above it (Takahashi's
equations in dense blocks),

    Z_RJ = -Z_RR L_RJ L_JJ^-1,    Z_JJ = L_JJ^-T L_JJ^-1 - Z_RJ^T L_RJ L_JJ^-1,

where ``J`` are a supernode's columns and ``R`` the rows below them.  ``Z_RR`` lies on the
pattern (the rows below a supernode form a clique of the filled graph), so no entry off it is
ever needed.  Its cost is about that of one more factorization, whatever the number of
covariances asked for.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .._config import index_tensor
from .._threads import threads_for, torch_threads
from ._multifrontal import MultifrontalCholesky
from ._problem import DENSE_MAX, Factor, Linearization, Problem, SparseSystem, hold_fixed
from ._variables import Variable

__all__ = ["SINGULAR_PIVOT", "covariances", "selected_inverse_blocks"]

# a Cholesky pivot whose square is below this fraction of its own diagonal entry has lost its
# direction to rounding: a direction the factors do not constrain.  Measured on the pose graphs'
# systems at their optima: the smallest ratio of a well-posed graph is 8.5e-10 (ais2klinik;
# intel 3.6e-5, manhattan 1.8e-8); intel without a fixed pose (a free gauge) factors with a
# ratio of 7.0e-15, the other graphs without one do not factor at all
SINGULAR_PIVOT = 1e-12
# The covariances' factor merges a chain of fronts whatever explicit zeros that adds while the
# front stays within MARGINALS_FREE_MERGE columns, and above that while they are at most
# MARGINALS_RELAX of it (the solver's factor: 0.3).  It factors once, and what costs on small
# fronts is the number of groups that the analysis, the factorization and the selected inverse
# walk one by one in Python, not the zeros; on large ones the zeros cost flops (a front's
# selected inverse is ~3 K^3).  Merged freely up to 384 columns, parking-garage's selected
# inverse took 3.1 GFLOP in 24 groups, with this rule 0.55 GFLOP in 36; sphere2500's fronts are
# the same under both, and relax 0.3 split them into 5 more groups (1.11x its time)
# (docs/benchmarks.md#marginal-covariances).
MARGINALS_FREE_MERGE = 96
MARGINALS_RELAX = 0.5


class _SingularError(ValueError):
    pass


def covariances(variables: Sequence[Variable], factors: Sequence[Factor], values: Sequence[Tensor], variable: Variable,
                entries=None) -> Tensor:
    """Marginal covariances ``(B, K, t, t)`` of ``variable``'s entries ``entries`` (``K`` indices,
    all of them by default) at ``values`` (each variable's ``(B, N, raw)``, a solver's answer):
    the diagonal blocks of ``(J^T W J)^-1``, in the engine's tangent (left perturbations,
    ``Exp(d) * X``; ``[rho, phi]`` for SE3, ``[x, y, theta]`` for SE2), in ``values``' dtype.

    Fixed entries have zero covariance (they do not move).  The residuals are taken as whitened:
    a factor's residual divided by its standard deviation (or multiplied by its square-root
    information) makes the answer a covariance in the variables' units.  A system that has a
    direction the factors do not constrain (a pose graph with no fixed pose: a free gauge)
    raises ``ValueError`` naming the problem.
    """
    problem = Problem(variables, factors)
    if not isinstance(variable, Variable) or all(v is not variable for v in problem.variables):
        raise ValueError("variable: expected one of the problem's variables")
    values = tuple(values)
    if len(values) != len(problem.variables):
        raise ValueError(f"values: expected one tensor per variable ({len(problem.variables)}), got {len(values)}")
    for v, x in zip(problem.variables, values):
        if not isinstance(x, Tensor) or tuple(x.shape) != tuple(v.value.shape):
            raise ValueError(f"values: {v.name}'s expected shape {tuple(v.value.shape)}, got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    device, t = variable.value.device, variable.group.tangent_dim
    if entries is None:
        entries = torch.arange(variable.count, device=device)
    else:
        entries = index_tensor(entries, "entries", device)
        if entries.dim() != 1:
            raise ValueError(f"entries: expected a 1-D tensor of indices, got shape {tuple(entries.shape)}")
        if entries.numel() and (int(entries.min()) < 0 or int(entries.max()) >= variable.count):
            raise ValueError(f"entries: expected indices in [0, {variable.count}) of {variable.name}")
    index = problem.offset[id(variable)] + entries[:, None] * t + torch.arange(t, device=device)  # (K, t)
    # a loop of mid-sized ops: one torch thread for a small problem (robojac._threads), and the
    # caller's count for the large fronts of its factor (multifrontal.FRONT_PARALLEL)
    large = torch.get_num_threads()
    with torch.no_grad(), torch_threads(threads_for(problem.block_entries, device)):
        values = tuple(x.detach() for x in values)
        # entries no factor weighs: zero rows and columns, decoupled from the rest; the others'
        # covariances are those of the system without them (their rows held as the identity)
        free = problem.unweighed(values) & ~problem.held
        asked = free[:, index.flatten()].reshape(problem.batch, -1, t).any(-1)  # (B, K)
        if bool(asked.any()):
            b = int(torch.nonzero(asked)[0, 0])
            lost = entries[asked[b]].tolist()
            many = len(lost) > 1
            raise ValueError(f"problem {b}: {variable.name} entr{'ies' if many else 'y'} "
                             f"{', '.join(map(str, lost[:8]))}{' ...' if len(lost) > 8 else ''}: no factor weighs "
                             f"{'them' if many else 'it'} at these values (every factor reading {'them' if many else 'it'} "
                             f"gives zero robust weight, or none reads {'them' if many else 'it'}): "
                             f"{'their covariances are' if many else 'its covariance is'} unbounded")
        lin = Linearization(problem, values, closed_forms=True)
        try:
            if problem.batch == 1 and problem.size > DENSE_MAX:
                system = SparseSystem(problem)
                H, _ = system.assemble(lin, free[0], gradient=False)  # float64
                dims = {v.group.tangent_dim for v in problem.variables}
                block = dims.pop() if len(dims) == 1 else 1
                try:
                    factor = MultifrontalCholesky(H, block, relax=MARGINALS_RELAX, free_merge=MARGINALS_FREE_MERGE,
                                                  threads=large)
                except torch.linalg.LinAlgError:
                    raise _SingularError("problem 0") from None
                C = selected_inverse_blocks(factor, index, diagonal=H.values()[system.diag_slots])[None]
            else:
                C = _dense_blocks(hold_fixed(lin.normal_equations()[0].to(torch.float64), free), index)
        except _SingularError as e:
            raise ValueError(f"{e}: its Gauss-Newton Hessian is singular at these values, a direction the factors do "
                             "not constrain (a free gauge: fix a variable, e.g. a pose graph's first pose)") from None
    held = variable.fixed[:, entries]  # (B, K)
    return C.masked_fill(held[:, :, None, None], 0.0).to(variable.value.dtype)


def _dense_blocks(H: Tensor, index: Tensor) -> Tensor:
    """``(B, K, t, t)`` blocks of ``H^-1`` for the dense systems ``H (B, n, n)``."""
    L, info = torch.linalg.cholesky_ex(H)
    pivots = L.diagonal(dim1=-2, dim2=-1).square()
    bad = (info != 0) | (pivots < SINGULAR_PIVOT * H.diagonal(dim1=-2, dim2=-1)).any(-1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise _SingularError(f"problem{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:5]))}"
                             f"{' ...' if len(rows) > 5 else ''}")
    Z = torch.cholesky_inverse(L)
    return Z[:, index[:, :, None], index[:, None, :]]


def selected_inverse_blocks(factor: MultifrontalCholesky, index: Tensor, *, diagonal: Tensor | None = None) -> Tensor:
    """``(K, t, t)``: the blocks ``H^-1[index[k]][:, index[k]]`` of the matrix ``factor`` holds,
    for ``index (K, t)`` of its (original) coordinates, by the selected inverse (module
    docstring).  ``diagonal``: ``H``'s diagonal, to refuse pivots that lost their direction
    (:data:`SINGULAR_PIVOT`)."""
    plan = _plan(factor)
    if diagonal is not None:  # every front's pivots at once, against their columns' diagonal entries
        pivots = torch.cat([L11.diagonal(dim1=-2, dim2=-1).reshape(-1) for L11, _ in factor.factors])[plan.real]
        if bool((pivots.square() < SINGULAR_PIVOT * diagonal.to(pivots)[plan.real_cols]).any()):
            raise _SingularError("problem 0")
    Z = _selected_inverse(factor, plan)
    iperm = torch.empty_like(factor.perm_t)
    iperm[factor.perm_t] = torch.arange(factor.n, device=factor.perm_t.device)
    new = iperm[index.to(factor.perm_t.device)].cpu().numpy()  # (K, t)
    at = _flat_index(factor, plan, new[:, :, None], new[:, None, :])
    return Z[torch.from_numpy(at).to(Z.device)].to(index.device)


class _Plan:
    """Where each supernode's block ``[Z_JJ; Z_RJ]`` (padded ``(M, K)``, as its group's fronts)
    sits in one flat tensor, and, per group, the flat positions of its ``Z_RR`` entries; which
    of the fronts' padded columns are real (``real``) and their original coordinates."""

    def __init__(self, factor: MultifrontalCholesky):
        B = factor.block
        self.z_offset = np.zeros(len(factor.plan) + 1, dtype=np.int64)
        for g, p in enumerate(factor.plan):
            self.z_offset[g + 1] = self.z_offset[g] + p["count"] * (p["K"] + p["R"]) * p["K"]
        self.zero = int(self.z_offset[-1])  # a slot that stays zero: padding reads it
        self.KM = np.array(factor.KM, dtype=np.int64).reshape(-1, 2)
        cols = torch.cat([p["cols"].reshape(-1) for p in factor.plan])  # every front's columns, padding = n
        self.real = cols < factor.n
        self.real_cols = factor.perm_t[cols[self.real]]  # in the original coordinates
        self.rr = []
        for g, p in enumerate(factor.plan):  # in blocks, then expanded: B^2 fewer searches
            R = p["R"]
            if not R:
                self.rr.append(None)
                continue
            rows = p["rows"].cpu().numpy()[:, ::B]  # (count, R / B) blocks' first rows, padding = n
            pad = rows == factor.n
            blocks = np.where(pad, 0, rows) // B
            X, Y = blocks[:, :, None], blocks[:, None, :]
            base, K = _block_base(factor, self, np.maximum(X, Y), np.minimum(X, Y))
            a = np.arange(B)
            # E[c, x, i, y, j]: where Z[x B + i, y B + j] sits when x >= y (row i of the block in the
            # columns of y's supernode); base and K are symmetric in (x, y), so for x < y the entry,
            # read as Z[y B + j, x B + i], is E with the two (block, offset) pairs swapped
            E = base[:, :, None, :, None] + K[:, :, None, :, None] * a[:, None, None] + a
            at = np.where((X >= Y)[:, :, None, :, None], E, E.transpose(0, 3, 4, 1, 2))
            at[pad] = self.zero  # padding rows and columns read the zero slot
            at.transpose(0, 3, 4, 1, 2)[pad] = self.zero
            self.rr.append(torch.from_numpy(at.reshape(len(rows), R, R)).to(factor.device))


def _plan(factor: MultifrontalCholesky) -> _Plan:
    plan = getattr(factor, "_marginals_plan", None)
    if plan is None:  # once per factor (its pattern)
        plan = factor._marginals_plan = _Plan(factor)
    return plan


def _block_base(factor: MultifrontalCholesky, plan: _Plan, hi: np.ndarray, lo: np.ndarray):
    """``(base, K)`` for the block ``Z[hi, lo]`` (``hi >= lo``, new block coordinates): the flat
    position of its first entry, in the columns of ``lo``'s supernode and the row of ``hi``
    (padded as its group's fronts), and that group's ``K`` (the stride of a row)."""
    B = factor.block
    s = factor.col_owner[lo]
    row = factor.front_position(s, hi * B)  # hi's first row in s's front
    g = factor.group_of[s]
    K, R = plan.KM[g, 0], plan.KM[g, 1]
    return plan.z_offset[g] + factor.slot_in[s] * (K + R) * K + row * K + (lo * B - factor.first_col[s]), K


def _flat_index(factor: MultifrontalCholesky, plan: _Plan, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Flat positions of ``Z[x, y]`` (new scalar coordinates, broadcast): ``Z`` is symmetric, so
    the entry is read in the columns of the smaller one's supernode."""
    x, y = np.broadcast_arrays(x, y)
    X, a = np.divmod(x, factor.block)
    Y, b = np.divmod(y, factor.block)
    down = X >= Y
    base, K = _block_base(factor, plan, np.maximum(X, Y), np.minimum(X, Y))
    return base + K * np.where(down, a, b) + np.where(down, b, a)


def _selected_inverse(factor: MultifrontalCholesky, plan: _Plan) -> Tensor:
    """The flat tensor of every supernode's ``[Z_JJ; Z_RJ]``, roots first (Takahashi)."""
    Z = torch.zeros(plan.zero + 1, dtype=factor.dtype, device=factor.device)
    for g in reversed(range(len(factor.plan))):
        p, (L11, L21) = factor.plan[g], factor.factors[g]
        K, R, count = p["K"], p["R"], p["count"]
        eye = torch.eye(K, dtype=factor.dtype, device=factor.device).expand(count, K, K)
        with torch_threads(p["threads"]):  # small fronts on one thread (multifrontal.FRONT_PARALLEL)
            Linv = torch.linalg.solve_triangular(L11, eye, upper=False)  # L_JJ^-1
            ZJJ = Linv.mT @ Linv
            if R:
                W = L21 @ Linv  # L_RJ L_JJ^-1 (count, R, K)
                ZRJ = -(Z[plan.rr[g]] @ W)
                ZJJ = ZJJ - ZRJ.mT @ W
                block = torch.cat((ZJJ, ZRJ), dim=1)
            else:
                block = ZJJ
        Z[int(plan.z_offset[g]): int(plan.z_offset[g + 1])] = block.reshape(-1)
    return Z
