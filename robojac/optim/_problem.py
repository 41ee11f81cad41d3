"""A least-squares problem: variables, factors, and their linearization from the Jacobian core.

A :class:`Factor` is a residual function of some variables (and data), evaluated for every
factor of every problem at once.  Its Jacobian blocks come from :mod:`robojac.jacobian`: a
residual with a ``value_and_jacobians`` method (a closed form) is used as it is; any other is
differentiated per factor, in the tangent space of its variables, by
:func:`robojac.jacobian.batch_jacobian` (forward mode through the retraction).  A user's new
factor therefore needs no Jacobian.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._config import index_tensor
from .._csr import csr_tensor
from ..jacobian import BlockLayout, batch_jacobian
from ..lie import raw_autograd
from ._kernels import RobustKernel
from ._small import SOA_MAX_SIZE, soa_pays
from ._variables import Variable

__all__ = ["Factor", "Linearization", "Problem", "SparseSystem", "hold_fixed", "sparse_gauss_newton"]


# automatic Jacobians push all tangents in one dual-number pass over repeated rows up to this
# many rows after the repetition (10 SE(3) alignments: 60 rows, 3x faster than vmap's forward
# mode); vmap takes over above (the two cross near 1,800 rows; at 6,000, 8.2 against 5.6 ms)
STACKED_ROWS = 1024


# one problem of more tangent dimensions than this is solved sparse by "auto" and never has its
# exact Hessian formed densely by the implicit backward
DENSE_MAX = 256
# the dtype the normal equations of one large problem are summed, factored and solved in (see SparseSystem)
SPARSE_DTYPE = torch.float64


class Factor:
    """``F`` residuals ``residual(X_1, ..., X_K, *data) -> (B, F, m)`` per problem.

    * ``variables``: the :class:`Variable` each of the ``K`` slots reads from.
    * ``index (F, K)``: which of that variable's ``N`` entries factor ``f`` reads in slot ``k``
      (the same in every problem); ``X_k`` arrives as ``(B, F, raw_k)``.
    * ``data``: tensors with leading ``(B, F)`` (or ``(F,)``, shared by the problems), passed on
      after the variables.  Data that require grad receive gradients through the answer.
    * ``kernel``: a robust kernel on each factor's squared residual norm (IRLS).

    A residual object with ``value_and_jacobians(*X, *data) -> (r, (J_1, ..., J_K))``, blocks
    ``(B, F, m, t_k)`` in left-tangent coordinates, is used as is (the closed form).  Two optional
    declarations make a closed form cheaper on the engine: ``linearize(*X, *data) -> (r, later)``
    with ``later()`` giving the blocks (computed only where a step uses them), and
    ``opposite_jacobians = True`` for two slots with ``J_1 = -J_2`` (a between factor: one
    ``t x t`` product per factor in a sparse system), and ``curvature(v, *X, *data) -> (B, F, T, T)``,
    ``sum_k v_k d^2 r_k`` in the stacked left tangents of the slots (the implicit backward of one
    large problem then forms the exact Hessian per factor instead of differentiating the cost
    twice at every product).  And ``satisfied(r) -> (B,)`` bool: the
    residuals ``r (B, F, m)`` are within the task's own tolerances, and the problem may stop
    (see :class:`~robojac.optim.TerminationConfig`).
    """

    def __init__(self, residual: Callable, variables: Sequence[Variable], index=None, *, data: Sequence[Tensor] = (),
                 kernel: RobustKernel | None = None, name: str = "factor"):
        if not callable(residual):
            raise TypeError(f"{name}.residual: expected a callable, got {type(residual).__name__}")
        variables = tuple(variables)
        if not variables or not all(isinstance(v, Variable) for v in variables):
            raise TypeError(f"{name}.variables: expected one or more Variable objects")
        device = variables[0].value.device
        if index is None:
            index = torch.zeros(1, len(variables), dtype=torch.long, device=device)
        index = index_tensor(index, f"{name}.index", device)
        if index.dim() == 1:
            index = index[:, None]
        if index.dim() != 2 or index.shape[1] != len(variables):
            raise ValueError(f"{name}.index: expected shape (F, {len(variables)}), got {tuple(index.shape)}")
        for k, v in enumerate(variables):
            if index.numel() and (int(index[:, k].min()) < 0 or int(index[:, k].max()) >= v.count):
                raise ValueError(f"{name}.index: slot {k} reads {v.name} entries outside [0, {v.count})")
        B = variables[0].batch
        if any(v.batch != B for v in variables):
            raise ValueError(f"{name}.variables: expected the same number of problems B in every variable")
        F = index.shape[0]
        out = []
        for i, d in enumerate(data):
            d = torch.as_tensor(d, device=variables[0].value.device)
            if d.dim() >= 2 and d.shape[:2] == (B, F):
                out.append(d)
            elif d.dim() >= 1 and d.shape[0] == F:
                out.append(d.expand((B,) + tuple(d.shape)))
            else:
                raise ValueError(f"{name}.data[{i}]: expected leading dims ({B}, {F}) or ({F},), got {tuple(d.shape)}")
        self.residual, self.variables, self.index, self.data = residual, variables, index, tuple(out)
        self.kernel = kernel if kernel is not None else RobustKernel()
        self.name = name
        self.pulled_back = False  # set when the residual turns out to have no forward mode
        self._per_slot: dict = {}

    @property
    def count(self) -> int:
        return self.index.shape[0]

    def per_slot(self, k: int) -> Callable:
        """The function the automatic Jacobian of slot ``k`` differentiates: ``(d, A, *X, *data)``
        with every tensor flattened to rows ``(n F, ...)``, the rows' residuals ``(n F, m)`` at
        ``X_k + A d``, the rest held.  One object per slot, kept: ``jacobian.batch_jacobian``
        remembers functions its torch function mode found nothing to rewrite in."""
        fn = self._per_slot.get(k)
        if fn is None:
            F, K, residual = self.count, len(self.variables), self.residual

            def fn(d, A, *rest):
                n = d.shape[0] // F
                args = list(rest[:K])
                args[k] = args[k] + (A @ d.unsqueeze(-1)).squeeze(-1)
                with raw_autograd():  # pypose's Lie operations: derivatives in the stored numbers, and a jvp
                    r = residual(*(a.reshape(n, F, -1) for a in args),
                                 *(x.reshape((n, F) + tuple(x.shape[1:])) for x in rest[K:]))
                return r.reshape(n * F, -1)

            fn = self._per_slot[k] = fn
        return fn


class Linearization:
    """Residuals at a point and, when asked, the normal equations ``(H (B, n, n), g (B, n))``.

    With ``closed_forms``, a factor with a closed form gives its Jacobian blocks together with
    its residuals (``blocks[i]``; ``None`` for the others): the engine asks for them at each
    trial point, which it mostly accepts, rather than evaluate the residual a second time.  A
    closed form with ``linearize(*X, *data) -> (r, later)`` defers its blocks to ``later()``,
    called only if this point's Jacobian is used (a rejected trial never asks: MIT's pose graph,
    a quarter of whose trials Levenberg-Marquardt rejects, went from 1.25x the old loop's time to
    1.17x with it, in one interleaved measurement)."""

    def __init__(self, problem: Problem, values: tuple[Tensor, ...], *, closed_forms: bool = False):
        self.problem, self.values = problem, values
        self.sparse_gradient = None  # J^T W r of one large problem, once SparseSystem.gradient asks
        self.residuals, self.blocks = [], []
        for f in problem.factors:
            if closed_forms and hasattr(f.residual, "value_and_jacobians"):
                r, J = problem.value_and_jacobians_of(f, values)
            else:
                r, J = problem.residual_of(f, values), None
            self.residuals.append(r)
            self.blocks.append(J)

    def subset(self, problem: "Problem", rows: Tensor) -> "Linearization":
        """This linearization of the problems ``rows`` alone, for ``problem`` (their
        :meth:`Problem.subset`): its residuals and any blocks already at hand, sliced."""
        out = Linearization.__new__(Linearization)
        out.problem, out.values, out.sparse_gradient = problem, tuple(v[rows] for v in self.values), None
        out.residuals = [r[rows] for r in self.residuals]
        out.blocks = [None if J is None or callable(J) else [b[rows] for b in J] for J in self.blocks]
        return out

    def detached(self) -> "Linearization":
        """This linearization cut from the autograd graph: its residuals and every factor's
        blocks (computed now where they were not, with grad off) detached."""
        out = Linearization.__new__(Linearization)
        out.problem, out.values, out.sparse_gradient = self.problem, tuple(v.detach() for v in self.values), None
        out.residuals = [r.detach() for r in self.residuals]
        with torch.no_grad():
            out.blocks = [[b.detach() for b in self.jacobians(i)] for i in range(len(self.residuals))]
        return out

    def jacobians(self, i: int) -> list[Tensor]:
        """Factor ``i``'s blocks at this point (held entries zero): cached or computed now."""
        J = self.blocks[i]
        if callable(J):
            J = self.blocks[i] = self.problem._held_zero(self.problem.factors[i], list(J()))
        return J if J is not None else self.problem.jacobian_of(self.problem.factors[i], self.values)

    def cost(self) -> Tensor:
        """``(B,)``: ``0.5 sum rho(|r|^2)`` per problem."""
        total = self.residuals[0].new_zeros(self.problem.batch) if self.residuals else None
        for f, r in zip(self.problem.factors, self.residuals):
            s = r.square().sum(-1)  # (B, F)
            total = total + 0.5 * f.kernel.rho(s).sum(-1)
        return total

    def normal_equations(self) -> tuple[Tensor, Tensor]:
        """``(H (B, n, n), g (B, n))``.  Large batches of small problems of one factor each (IK's
        target) get ``H`` stored structure-of-arrays (a ``(n, n, B)`` array seen as ``(B, n, n)``),
        in the layout the small dense factorization wants, each block added in place."""
        pb = self.problem
        B, n = pb.batch, pb.size
        ref = self.residuals[0]
        tracked = torch.is_grad_enabled() and (any(r.requires_grad for r in self.residuals) or any(
            J is not None and not callable(J) and any(b.requires_grad for b in J) for J in self.blocks))
        single = all(f.count == 1 for f in pb.factors) and not tracked  # blocks added in place
        soa = single and soa_pays(B, n) and all(r.shape[-1] <= SOA_MAX_SIZE for r in self.residuals)
        Hs = ref.new_zeros(n, n, B) if soa else None
        H = Hs.permute(2, 0, 1) if soa else ref.new_zeros(B, n, n) if single else ref.new_zeros(B, n * n)
        g = ref.new_zeros(B, n)
        for i, (f, r) in enumerate(zip(pb.factors, self.residuals)):
            blocks = self.jacobians(i)  # K x (B, F, m, t_k), zero where fixed
            w = f.kernel.row_weights(r)
            wr = r if w is None else w[..., None] * r
            for k, Jk in enumerate(blocks):
                rows = pb.rows(f, k)  # (F, t_k)
                if soa:  # the block once in the batch-last layout, for g and every product with it
                    r0 = int(rows[0, 0])
                    a = Jk[:, 0].permute(1, 2, 0).contiguous()  # (m, t, B)
                    g[:, r0 : r0 + rows.shape[1]] += (a * wr[:, 0].T[:, None, :]).sum(0).T
                elif single:
                    r0 = int(rows[0, 0])
                    g[:, r0 : r0 + rows.shape[1]] += (Jk[:, 0] * wr[:, 0, :, None]).sum(1)
                else:
                    g.index_add_(1, rows.reshape(-1), (Jk.transpose(-1, -2) @ wr[..., None])[..., 0].reshape(B, -1))
                for l_, Jl in enumerate(blocks):
                    WJl = Jl if w is None else w[..., None, None] * Jl
                    if single:
                        c0 = int(pb.rows(f, l_)[0, 0])
                        if soa:
                            b = a if WJl is Jk else WJl[:, 0].permute(1, 2, 0).contiguous()
                            Hs[r0 : r0 + Jk.shape[-1], c0 : c0 + Jl.shape[-1]] += _gram_soa(a, b)
                        else:
                            H[:, r0 : r0 + Jk.shape[-1], c0 : c0 + Jl.shape[-1]] += Jk[:, 0].transpose(-1, -2) @ WJl[:, 0]
                        continue
                    A = Jk.transpose(-1, -2) @ WJl  # (B, F, t_k, t_l)
                    at = rows[:, :, None] * n + pb.rows(f, l_)[:, None, :]
                    H.index_add_(1, at.reshape(-1), A.reshape(B, -1))
        return hold_fixed(H if single else H.view(B, n, n), pb.held), g.masked_fill(pb.held, 0.0)


def _gram_soa(a: Tensor, b: Tensor) -> Tensor:
    """``Jk^T Jl`` structure-of-arrays ``(t_k, t_l, B)`` from blocks laid out ``(m, t, B)``: one
    rank-1 update per residual row over the contiguous batch (10,000 IK problems' 6 x 7 blocks:
    0.8 ms, where the batched matmul of tiny matrices took 2.6)."""
    A = a[0].unsqueeze(1) * b[0].unsqueeze(0)
    for r in range(1, a.shape[0]):
        A.addcmul_(a[r].unsqueeze(1), b[r].unsqueeze(0))
    return A


def _opposite(f: Factor) -> bool:
    """A two-slot factor whose residual promises ``J_0 = -J_1`` (``opposite_jacobians``: a
    between factor ``Log(Z^-1 X_0^-1 X_1)`` under left perturbations) on one group."""
    return (getattr(f.residual, "opposite_jacobians", False) and len(f.variables) == 2
            and f.variables[0].group.tangent_dim == f.variables[1].group.tangent_dim)


def hold_fixed(H: Tensor, held: Tensor) -> Tensor:
    """``H (B, n, n)`` with the rows and columns of fixed entries ``held (B, n)`` replaced by the
    identity's: their step is zero and they couple to nothing."""
    if not bool(held.any()):
        return H
    H = torch.where(held[:, :, None] | held[:, None, :], torch.zeros((), dtype=H.dtype, device=H.device), H)
    return H + torch.diag_embed(held.to(H.dtype))


def sparse_gauss_newton(lin: Linearization, unit: Tensor | None = None) -> Tensor:
    """``J^T W J`` of one problem (``B = 1``) as a sparse CSR ``(n, n)``; fixed entries, and the
    rows ``unit (n,)`` (see :meth:`SparseSystem.assemble`), get an identity row and column (the
    preconditioner of the implicit backward on one large problem)."""
    return SparseSystem(lin.problem).assemble(lin, unit, gradient=False)[0]


LAYOUT_CACHE = 8  # sparse layouts kept for problems of the same structure solved again


def _structure_key(pb: Problem) -> tuple:
    """What a sparse layout depends on: each variable's entry count, tangent size and fixed
    entries, and each factor's slots and index (by content), on one device."""
    def digest(t: Tensor) -> bytes:
        return hashlib.blake2b(t.detach().cpu().numpy().tobytes(), digest_size=16).digest()

    where = {id(v): i for i, v in enumerate(pb.variables)}
    return (str(pb.held.device),
            tuple((v.count, v.group.tangent_dim, digest(v.fixed[0])) for v in pb.variables),
            tuple((tuple(where[id(v)] for v in f.variables), tuple(f.index.shape), digest(f.index)) for f in pb.factors))


_LAYOUTS: OrderedDict = OrderedDict()  # read only once made: the arrays are shared
_LAYOUT_LOCK = threading.Lock()


class SparseSystem:
    """The normal equations of one large problem (``B = 1``) as a sparse CSR matrix, with the
    pattern worked out once: the block entries every factor slot pair adds, each variable's
    diagonal, and where each lands among the CSR values (duplicates summed by one
    ``index_add``).  Fixed entries get an identity row and column.  What the engine's sparse
    path factors, and the backward's preconditioner.

    ``H`` and ``g`` are summed in float64 (:data:`SPARSE_DTYPE`) whatever the residuals' dtype:
    a large problem's weak directions lie below float32's rounding of ``J^T W J``
    (parking-garage's system has a condition number ~1e13).  Summed in float32, parking-garage
    and MIT in float32 stopped ``converged`` with poses 5.8 m and 39 m from the float64 optimum;
    summed in float64 from the same float32 residuals and Jacobians, 0.55 mm and 1.7 cm
    (``tests/test_posegraph.py``).  The factorizations on the CPU already ran in float64; on a
    GPU the multifrontal factorization now does too."""

    def __init__(self, problem: Problem):
        if problem.batch != 1:
            raise ValueError(f"a sparse system is one problem (B = 1), got B = {problem.batch}")
        self.problem = problem
        key = _structure_key(problem)
        with _LAYOUT_LOCK:
            layout = _LAYOUTS.get(key)
            if layout is not None:
                _LAYOUTS.move_to_end(key)
        if layout is None:  # else the same structure solved again (a learning loop, a benchmark)
            layout = self._layout(problem)
            with _LAYOUT_LOCK:
                _LAYOUTS[key] = layout
                while len(_LAYOUTS) > LAYOUT_CACHE:
                    _LAYOUTS.popitem(last=False)
        self.crow, self.col, self.slot, self.diag_slots, self.off_slots, self.held_diag, self.n = layout

    @staticmethod
    def _layout(pb: Problem) -> tuple:
        dev = pb.held.device
        first, dims = {}, []
        for v in pb.variables:  # entries in coordinate order
            first[id(v)] = sum(len(d) for d in dims)
            dims.append(torch.full((v.count,), v.group.tangent_dim, dtype=torch.long, device=dev))
        dims = torch.cat(dims)
        pairs = [(f, k, l_) for f in pb.factors for k in range(len(f.variables)) for l_ in range(len(f.variables))]
        entry = {(id(f), k): first[id(f.variables[k])] + f.index[:, k] for f in pb.factors
                 for k in range(len(f.variables))}
        diag = torch.arange(dims.numel(), device=dev)
        layout = BlockLayout(torch.cat([entry[(id(f), k)] for f, k, _ in pairs] + [diag]),
                             torch.cat([entry[(id(f), l_)] for f, _, l_ in pairs] + [diag]), dims)
        slots, at = [], 0
        for f, k, l_ in pairs:  # each slot pair's products, in the order assemble() adds them
            slots.append(layout.slots(at, f.count, f.variables[k].group.tangent_dim,
                                      f.variables[l_].group.tangent_dim).reshape(-1))
            at += f.count
        slot = torch.cat(slots) if slots else torch.zeros(0, dtype=torch.long, device=dev)
        diag_slots = layout.diagonal(at)
        fixed = torch.cat([v.fixed[0] for v in pb.variables])  # per entry
        off_slots = layout.block_slots(torch.nonzero(fixed[layout.I] | fixed[layout.J]).flatten())  # fixed
        held_diag = diag_slots[pb.held[0]]  # rows and columns: zero, their diagonal one
        return layout.crow, layout.col, slot, diag_slots, off_slots, held_diag, pb.size

    def assemble(self, lin: Linearization, unit: Tensor | None = None, *,
                 gradient: bool = True) -> tuple[Tensor, Tensor | None]:
        """``(H (n, n) CSR, g (n,))`` at ``lin``'s values, in float64; ``unit (n,)`` bool: rows
        given a unit diagonal, as the fixed ones are (rows no factor weighs, whose other entries
        are zero: :meth:`Problem.unweighed`).  ``gradient=False``: ``g`` is ``None`` (not computed)."""
        pb = self.problem
        vals, weights = [], []
        for i, (f, r) in enumerate(zip(pb.factors, lin.residuals)):
            blocks = [J.to(SPARSE_DTYPE) for J in lin.jacobians(i)]
            w = f.kernel.row_weights(r)
            w = None if w is None else w.to(SPARSE_DTYPE)
            weights.append(w)
            if _opposite(f):  # J_0 = -J_1: one product gives all four blocks
                held = f.variables[1].fixed[:, f.index[:, 1]][0, :, None, None]
                J = torch.where(held, -blocks[0], blocks[1])[0]  # J_1 before its held entries were zeroed
                P = (J.transpose(-1, -2) @ (J if w is None else w[0, :, None, None] * J)).reshape(-1)
                vals += [P, -P, -P, P]
                continue
            # every slot pair's block from one product of the stacked blocks: on a Sim3 graph's 1,649
            # edges one (14 x 7) (7 x 14) product took 1.2 ms, the three 7 x 7 ones 2.7 ms
            J = torch.cat(blocks, -1)[0]  # (F, m, T)
            P = J.transpose(-1, -2) @ (J if w is None else w[0, :, None, None] * J)
            start = [0]  # each slot's first column in the stacked blocks
            for Jk in blocks:
                start.append(start[-1] + Jk.shape[-1])
            for k in range(len(blocks)):
                for l_ in range(len(blocks)):
                    vals.append(P[:, start[k]:start[k + 1], start[l_]:start[l_ + 1]].reshape(-1))
        values = lin.residuals[0].new_zeros(len(self.col), dtype=SPARSE_DTYPE)
        at = 0
        for v in vals:  # each slot pair's products straight into place (no concatenated copy)
            values.index_add_(0, self.slot[at : at + v.numel()], v)
            at += v.numel()
        values[self.off_slots] = 0.0
        values[self.held_diag] = 1.0
        if unit is not None:
            values[self.diag_slots[unit]] = 1.0
        H = csr_tensor(self.crow, self.col, values, (self.n, self.n))
        return H, (self.gradient(lin, weights) if gradient else None)

    def gradient(self, lin: Linearization, weights: list | None = None) -> Tensor:
        """``g = J^T W r`` ``(n,)`` (float64) at ``lin``'s values, zero for fixed entries (kept with ``lin``:
        a Gauss-Newton chord step that falls through to a full step asks twice); ``weights``: the
        factors' robust weights when the caller has them."""
        if lin.sparse_gradient is not None:
            return lin.sparse_gradient
        pb = self.problem
        g = lin.residuals[0].new_zeros(self.n, dtype=SPARSE_DTYPE)
        for i, (f, r) in enumerate(zip(pb.factors, lin.residuals)):
            w = f.kernel.row_weights(r) if weights is None else weights[i]
            wr = r.to(SPARSE_DTYPE) if w is None else w.to(SPARSE_DTYPE)[..., None] * r.to(SPARSE_DTYPE)
            for k, Jk in enumerate(lin.jacobians(i)):
                Jt = Jk.to(SPARSE_DTYPE).transpose(-1, -2)
                g.index_add_(0, pb.rows(f, k).reshape(-1), (Jt @ wr[..., None])[0, ..., 0].reshape(-1))
        lin.sparse_gradient = g.masked_fill(pb.held[0], 0.0)
        return lin.sparse_gradient


class Problem:
    """Variables and factors, laid out for the engine: each problem's tangent vector stacks
    every variable's entries in order (``size`` numbers), fixed ones included (their step is
    held at zero)."""

    def __init__(self, variables: Sequence[Variable], factors: Sequence[Factor]):
        for name, items, cls in (("variables", variables, Variable), ("factors", factors, Factor)):
            if isinstance(items, (str, bytes, cls)) or not isinstance(items, Sequence):
                raise TypeError(f"{name}: expected a sequence of {cls.__name__}s, got {type(items).__name__}")
            for k, item in enumerate(items):
                if not isinstance(item, cls):
                    raise TypeError(f"{name}[{k}]: expected a {cls.__name__}, got {type(item).__name__}")
        self.variables = tuple(variables)
        self.factors = tuple(factors)
        if not self.variables:
            raise ValueError("variables: expected at least one Variable")
        if not self.factors:
            raise ValueError("factors: expected at least one Factor")
        known = {id(v) for v in self.variables}
        for f in self.factors:
            missing = [v.name for v in f.variables if id(v) not in known]
            if missing:
                raise ValueError(f"{f.name}: reads {missing}, which are not among the problem's variables")
        self.batch = self.variables[0].batch
        if any(v.batch != self.batch for v in self.variables):
            raise ValueError("variables: expected the same number of problems B in every variable")
        kinds = {(v.value.dtype, v.value.device) for v in self.variables}
        if len(kinds) > 1:  # one system, in one dtype on one device: nothing is promoted or moved unasked
            found = ", ".join(f"{v.name}: {v.value.dtype} on {v.value.device}" for v in self.variables)
            raise TypeError(f"variables: expected one dtype and device for all, got {found}")
        self.offset, n = {}, 0
        for v in self.variables:
            self.offset[id(v)] = n
            n += v.count * v.group.tangent_dim
        self.size = n
        self.held = torch.cat([v.fixed.repeat_interleave(v.group.tangent_dim, dim=1) for v in self.variables], 1)
        self._rows: dict = {}
        self.bounded = any(v.bounded for v in self.variables)
        self.stops_at_bounds = any(v.bounded and v.at_bound == "stop" for v in self.variables)
        self.pulled = any(v.rest is not None and v.rest_gain != 0 for v in self.variables)
        self.satisfiable = [f for f in self.factors if hasattr(f.residual, "satisfied")]

    def unweighed(self, values: tuple[Tensor, ...]) -> Tensor:
        """``(B, n)`` bool: the tangent entries no factor weighs at ``values`` -- every factor
        that reads them gives them zero robust weight (a kernel whose weight can vanish,
        ``RobustKernel.weight_can_vanish``, as Tukey's does beyond its scale: only those factors'
        residuals are evaluated), or none reads them.  The cost does not change with them: their rows of the Hessian are zero, and
        the answer's derivative along them is zero (the backward holds them)."""
        count = {id(v): torch.zeros(v.fixed.shape, dtype=values[0].dtype, device=v.fixed.device) for v in self.variables}
        for f in self.factors:
            if f.kernel.weight_can_vanish:
                live = (f.kernel.row_weights(self.residual_of(f, values)) > 0).to(values[0].dtype)  # (B, F)
            else:
                live = torch.ones(self.batch, f.count, dtype=values[0].dtype, device=f.index.device)
            for k, v in enumerate(f.variables):
                count[id(v)] = count[id(v)].index_add(1, f.index[:, k], live)
        return torch.cat([(count[id(v)] == 0).repeat_interleave(v.group.tangent_dim, dim=1) for v in self.variables], 1)

    @property
    def block_entries(self) -> int:
        """The normal equations' block entries, over the batch: what sets the torch thread count
        of a loop of mid-sized ops (``robojac._threads.threads_for``).  Measured on the 3D pose
        graphs, it splits them where one thread starts to lose (smallGrid3D 1.42x -> 1.08x of
        the pose-graph loop, parking-garage kept on two)."""
        return sum(self.batch * f.count * sum(v.group.tangent_dim for v in f.variables) ** 2 for f in self.factors)

    def rows(self, f: Factor, k: int) -> Tensor:
        """``(F, t_k)``: the tangent coordinates slot ``k`` of factor ``f`` steps."""
        key = (id(f), k)
        if key not in self._rows:
            v = f.variables[k]
            t = v.group.tangent_dim
            base = self.offset[id(v)] + f.index[:, k] * t
            self._rows[key] = base[:, None] + torch.arange(t, device=base.device)
        return self._rows[key]

    def gather(self, f: Factor, values: tuple[Tensor, ...]) -> list[Tensor]:
        at = {id(v): x for v, x in zip(self.variables, values)}
        return [at[id(v)][:, f.index[:, k]] for k, v in enumerate(f.variables)]

    def residual_of(self, f: Factor, values: tuple[Tensor, ...]) -> Tensor:
        X = self.gather(f, values)
        with raw_autograd():  # pypose's Lie operations differentiated in the stored numbers (the implicit backward's)
            r = f.residual(*X, *f.data)
        return self._checked(f, r)  # the value alone: a closed form's Jacobians only where used

    def _checked(self, f: Factor, r) -> Tensor:
        """``r`` if it is a residual of ``f``: ``(B, F, m)``, real-valued (an integer residual has no
        derivative, and its zero Jacobian had passed for a stationary point: converged)."""
        B, F = self.batch, f.count
        if not isinstance(r, Tensor) or r.dim() != 3 or r.shape[:2] != (B, F):
            shape = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(f"{f.name}: the residual must have shape ({B}, {F}, m), got {shape}")
        if not r.is_floating_point():
            raise TypeError(f"{f.name}: the residual must be real-valued (floating point), got {r.dtype}")
        return r

    def value_and_jacobians_of(self, f: Factor, values: tuple[Tensor, ...]) -> tuple[Tensor, list[Tensor]]:
        """A closed form's residuals and blocks at once (held entries zero), or, for a closed
        form with ``linearize``, the residuals and a function giving the blocks (raw)."""
        X = self.gather(f, values)
        lazy = hasattr(f.residual, "linearize")
        r, blocks = (f.residual.linearize if lazy else f.residual.value_and_jacobians)(*X, *f.data)
        return self._checked(f, r), (blocks if lazy else self._held_zero(f, list(blocks)))

    def jacobian_of(self, f: Factor, values: tuple[Tensor, ...]) -> list[Tensor]:
        """Per slot, ``(B, F, m, t_k)`` blocks in left-tangent coordinates, zero for fixed entries."""
        X = self.gather(f, values)
        B, F = self.batch, f.count
        if hasattr(f.residual, "value_and_jacobians"):
            blocks = list(f.residual.value_and_jacobians(*X, *f.data)[1])
        else:
            blocks = []
            flat_data = [d.reshape((B * F,) + tuple(d.shape[2:])) for d in f.data]
            flat_X = [x.reshape(B * F, -1) for x in X]
            # the rows are sample-wise (factor (b, f) reads row b F + f of everything), so the
            # stacked forward mode may repeat them; a residual that closes over a tensor of the
            # batch's own size cannot be repeated (it raises), and gets vmap's forward mode
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in flat_X + flat_data)
            stacked = not grad and B * F * max(v.group.tangent_dim for v in f.variables) <= STACKED_ROWS
            for k, v in enumerate(f.variables):
                A = v.group.tangent_map(flat_X[k])  # (B F, raw, t): the retraction's derivative at 0
                per_factor = f.per_slot(k)
                zero = flat_X[k].new_zeros(B * F, v.group.tangent_dim)
                args = (A, *flat_X, *flat_data)
                J = None
                if not f.pulled_back and stacked:
                    try:
                        J = batch_jacobian(per_factor, zero, strategy="forward-stacked", args=args)
                    except (RuntimeError, ValueError, IndexError):
                        J = None
                if J is None and not f.pulled_back:
                    try:
                        J = batch_jacobian(per_factor, zero, args=args)
                    except (NotImplementedError, RuntimeError):  # a user's autograd.Function with no forward
                        # mode (no jvp, or no setup_context for vmap): pulled back by a plain backward
                        # instead, from now on; a real error in the residual raises there too
                        f.pulled_back = True
                if J is None:
                    if grad:
                        raise ValueError(f"{f.name}: its residual has no forward mode (an autograd.Function without "
                                         "jvp), so its Jacobian cannot carry the graph that backward='unroll' needs; "
                                         "use backward='implicit' (the default)")
                    J = batch_jacobian(per_factor, zero, strategy="reverse-stacked", args=args)
                blocks.append(J.reshape(B, F, -1, v.group.tangent_dim))
        return self._held_zero(f, blocks)

    @staticmethod
    def _held_zero(f: Factor, blocks: list[Tensor]) -> list[Tensor]:
        out = []
        for k, (v, J) in enumerate(zip(f.variables, blocks)):
            held = v.fixed[:, f.index[:, k]]  # (B, F)
            out.append(J.masked_fill(held[:, :, None, None], 0.0) if bool(held.any()) else J)
        return out

    def retract(self, values: tuple[Tensor, ...], step: Tensor) -> tuple[Tensor, ...]:
        """Every variable moved by its part of ``step (B, size)`` (left retraction), bounded
        vectors projected into their bounds."""
        out = []
        for v, x in zip(self.variables, values):
            t, o = v.group.tangent_dim, self.offset[id(v)]
            d = step[:, o : o + v.count * t].reshape(self.batch, v.count, t)
            x = v.group.retract(x, d)
            out.append(v.project(x) if v.bounded else x)
        return tuple(out)

    def _per_coordinate(self, values: tuple[Tensor, ...], fill, part) -> Tensor:
        """``(R, size)`` for values of ``R`` problems: ``part(v, x)`` (shaped like ``x``) for the
        vectors it applies to, ``fill`` elsewhere."""
        R = values[0].shape[0]
        if len(self.variables) == 1:
            y = part(self.variables[0], values[0])
            if y is not None:
                return y.reshape(R, -1)
        cols = []
        for v, x in zip(self.variables, values):
            y = part(v, x)
            cols.append(y.reshape(R, -1) if y is not None else
                        torch.full((R, v.count * v.group.tangent_dim), fill, dtype=torch.bool if isinstance(fill, bool)
                                   else x.dtype, device=x.device))
        return torch.cat(cols, 1)

    def leaves_bounds(self, values: tuple[Tensor, ...], step: Tensor) -> Tensor:
        """``(B, size)``: the coordinates that ``step`` would take outside their bounds (after
        wrapping by a period)."""
        def part(v, x):
            if not v.bounded:
                return None
            o = self.offset[id(v)]
            y = x + step[:, o : o + v.count * v.group.tangent_dim].reshape(x.shape)
            out = v.outside(y)
            rows = torch.nonzero(out.flatten(1).any(1)).flatten()  # wrapping can only help these
            if rows.numel() == 0 or v.period is None:
                return out
            return out.index_copy(0, rows, v.outside(v.wrap(y[rows])))
        return self._per_coordinate(values, False, part)

    def at_bounds(self, values: tuple[Tensor, ...], gradient: Tensor) -> Tensor:
        """``(B, size)``: the bounded coordinates that sit on a bound the cost's ``gradient``
        ``(B, size)`` pushes them against (on the upper bound with a negative gradient, on the
        lower with a positive one): an active bound, where the minimum is not a stationary point
        of the cost and the coordinate does not move with the data."""
        def part(v, x):
            if not v.bounded:
                return None
            o = self.offset[id(v)]
            g = gradient[:, o : o + v.count * v.group.tangent_dim].reshape(x.shape)
            tol = 4 * torch.finfo(x.dtype).eps
            on = torch.zeros_like(x, dtype=torch.bool)
            if v.upper is not None:
                on = on | ((x >= v.upper - tol * v.upper.abs().clamp(min=1)) & (g < 0))
            if v.lower is not None:
                on = on | ((x <= v.lower + tol * v.lower.abs().clamp(min=1)) & (g > 0))
            return on
        return self._per_coordinate(values, False, part)

    def to_bounds(self, values: tuple[Tensor, ...], step: Tensor, rows: Tensor) -> Tensor:
        """``(R, size)`` for the problems ``rows``: for each bounded coordinate that ``step`` takes
        past a bound, the step onto that bound (zero elsewhere, and for ``at_bound="hold"``)."""
        sub = tuple(x[rows] for x in values)
        srows = step[rows]

        def part(v, x):
            if not v.bounded or v.at_bound == "hold":
                return None
            o = self.offset[id(v)]
            y = x + srows[:, o : o + v.count * v.group.tangent_dim].reshape(x.shape)
            d = torch.zeros_like(x)
            if v.upper is not None:
                d = torch.where(y > v.upper, v.upper - x, d)
            if v.lower is not None:
                d = torch.where(y < v.lower, v.lower - x, d)
            return d

        return self._per_coordinate(sub, 0.0, part)

    def rest_pull(self, values: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """``(d, gain)`` ``(B, size)``: the way to each pulled vector's rest value, and its gain
        (zero for every other coordinate)."""
        d = self._per_coordinate(values, 0.0, lambda v, x: None if v.rest is None or not v.rest_gain else
                                 (v.rest - x).masked_fill(v.fixed[..., None], 0.0))
        gain = self._per_coordinate(values, 0.0, lambda v, x: None if v.rest is None or not v.rest_gain else
                                    torch.full_like(x, v.rest_gain))
        return d, gain

    def can_subset(self) -> bool:
        """Whether :meth:`subset` may slice this problem: every factor's residual says how it
        reads a subset of the problems (``subset(rows)``), so none closes over the whole batch."""
        return all(hasattr(f.residual, "subset") for f in self.factors)

    def subset(self, rows: Tensor, values: tuple[Tensor, ...]) -> "Problem":
        """The problems ``rows`` alone, at ``values``: the engine's remaining steps on the few
        problems still running (see :meth:`can_subset`)."""
        made = {}
        for v, x in zip(self.variables, values):
            w = Variable.__new__(Variable)
            w.__dict__.update(v.__dict__)  # bounds and rest values are shared by the problems
            w.value, w.fixed = x[rows], v.fixed[rows]
            made[id(v)] = w
        factors = []
        for f in self.factors:
            g = Factor.__new__(Factor)
            g.__dict__.update(f.__dict__)
            g.residual = f.residual.subset(rows)
            g._per_slot = {}  # its functions call the new residual
            g.variables = tuple(made[id(v)] for v in f.variables)
            g.data = tuple(d[rows] for d in f.data)
            factors.append(g)
        return Problem([made[id(v)] for v in self.variables], factors)

    def satisfied(self, lin: "Linearization") -> Tensor | None:
        """``(B,)``: every factor that declares ``satisfied(r)`` is satisfied by its residuals at
        ``lin``; ``None`` when none declares it."""
        if not self.satisfiable:
            return None
        out = None
        for f, r in zip(self.factors, lin.residuals):
            if f in self.satisfiable:
                ok = f.residual.satisfied(r)
                out = ok if out is None else out & ok
        return out
