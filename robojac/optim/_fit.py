"""``fit``: least squares over a module's own parameters, on the engine (pypose's ``optim.LM``).

A pypose user writes a module whose ``forward`` gives residuals and steps
``pp.optim.LM(model).step(input, target)`` in a loop.  Here that module is one problem on the
engine (with ``per_sample``, its leading batch dim ``B`` independent ones, each with the
per-sample blocks of :func:`robojac.jacobian.per_sample_modjac`): its chosen parameters are one
variable (a :func:`~robojac.optim.product` of an SO3, SE3, RxSO3 or
Sim3 part per Lie-group parameter, stepped on the left, and a vector part per plain tensor), each
output one factor (or, with a robust kernel, each row of it), and the Jacobians are
:func:`robojac.jacobian.modjac`'s tangent columns taken at each trial point (``at=``).  The
engine's damping, stopping tests, robust weights and implicit gradients then apply unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pypose as pp
import torch
from torch import Tensor, nn

from ..jacobian import VECTORIZE_MAX, model_function, per_sample_modjac, value_and_modjac
from ._engine import History, SolverConfig, solve
from ._kernels import RobustKernel
from ._problem import Factor
from ._variables import Variable, product

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """The answer of :func:`fit`, in the engine's vocabulary.

    ``parameters``: each fitted parameter's value at the answer, in its shape (a LieTensor for a
    Lie-group parameter); differentiable with respect to an ``input``, ``target`` or ``weight``
    that requires grad (the implicit function theorem at the answer, as :func:`solve` gives).
    ``converged``, ``reason``, ``iterations``, ``cost`` (``0.5 sum rho(r^T W r)`` over the rows,
    at the answer), ``initial_cost`` and ``history`` are :class:`SolveResult`'s for the one
    problem (a bool, a str, an int, floats); with ``per_sample=True`` they are its per problem,
    ``(B,)`` tensors and a tuple of reasons.
    """

    parameters: dict[str, Tensor]
    converged: bool | Tensor
    reason: str | tuple[str, ...]
    iterations: int | Tensor
    cost: float | Tensor
    initial_cost: float | Tensor
    history: History


class _Carried:
    """How a tensor the model needs travels as factor data: ``(B, F, ...)`` for ``B`` problems of
    ``F`` factors each, and back whole.  A tensor already laid out ``(B, F, ...)`` goes as it is;
    one whose first dim is the ``F`` rows of the one problem, or the ``B`` problems, is a
    broadcast view along the other; any other (common to all) a broadcast view of itself.  No
    copy, so a gradient reaches it at about its own size.  A LieTensor travels as its numbers
    and comes back a LieTensor of its type."""

    def __init__(self, x: Tensor, B: int, F: int):
        self.ltype = x.ltype if isinstance(x, pp.LieTensor) else None
        x = x.as_subclass(Tensor) if self.ltype is not None else x
        if x.dim() >= 2 and tuple(x.shape[:2]) == (B, F):
            self.how, self.data = "laid out", x
        elif B == 1 and x.dim() >= 1 and x.shape[0] == F:
            self.how, self.data = "rows", x.unsqueeze(0)
        elif B > 1 and x.dim() >= 1 and x.shape[0] == B:
            self.how, self.data = "problems", x[:, None].expand((B, F) + tuple(x.shape[1:]))
        else:
            self.how, self.data = "common", x[None, None].expand((B, F) + tuple(x.shape))

    def back(self, d: Tensor) -> Tensor:
        if self.how == "rows":
            d = d[0]
        elif self.how == "problems":
            d = d[:, 0]
        elif self.how == "common":
            d = d[0, 0]
        return d if self.ltype is None else pp.LieTensor(d, ltype=self.ltype)


class _ModuleResidual:
    """Output ``k`` of ``model`` minus its target, whitened, as ``F`` factors of ``d`` numbers per
    problem, each reading the one variable that holds the problem's fitted parameters.  One
    problem (``B = 1``: the variable's row holds every parameter whole), or, with ``per_sample``,
    ``B`` independent ones (row ``b`` holds sample ``b`` of each parameter)."""

    def __init__(self, model: nn.Module, names: list[str], layout: tuple, batch: int | None, k: int,
                 offsets: tuple[int, int], rows: int, shape: tuple, F: int, carried: list[_Carried],
                 has_target: bool, has_root: bool):
        self.model, self.names = model, names
        self.sizes, self.shapes, self.ltypes, self.tangents = layout  # per problem
        self.batch, self.k, self.offsets, self.rows = batch, k, offsets, rows
        self.shape, self.F = shape, F  # the residuals of one problem (..., m)
        self.carried, self.has_target, self.has_root = carried, has_target, has_root
        self.n_inputs = len(carried) - has_target - has_root
        self.independent = False  # per_sample_modjac has checked that the samples are independent

    def values(self, X: Tensor) -> dict[str, Tensor]:
        """The parameters' values in the variable's values ``X (B, F, raw)``, each in its shape."""
        x = X[0, 0] if self.batch is None else X[:, 0]
        lead = () if self.batch is None else (self.batch,)
        out = {}
        for name, piece, shape, ltype in zip(self.names, x.split(self.sizes, -1), self.shapes, self.ltypes):
            piece = piece.reshape(lead + shape)
            out[name] = piece if ltype is None else pp.LieTensor(piece, ltype=ltype)
        return out

    def _unpack(self, data):
        whole = [c.back(d) for c, d in zip(self.carried, data)]
        inputs = tuple(whole[: self.n_inputs])
        target = whole[self.n_inputs] if self.has_target else None
        root = whole[-1] if self.has_root else None
        return inputs, target, root

    def _finish(self, out: Tensor, target: Tensor | None, root: Tensor | None) -> Tensor:
        r = out if target is None else out - target
        B = self.batch or 1
        r = r.reshape((B,) + self.shape)  # (B, ..., m)
        if root is not None:
            r = (root.reshape((B,) + root.shape[-len(self.shape) - 1:]) @ r.unsqueeze(-1)).squeeze(-1)
        return r.reshape(B, self.F, -1)

    def __call__(self, X: Tensor, *data: Tensor) -> Tensor:
        inputs, target, root = self._unpack(data)
        func, variables, _ = model_function(self.model, inputs, wrt=self.names, create_graph=True, at=self.values(X))
        outs = func(*variables)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return self._finish(outs[self.k], target, root)

    def value_and_jacobians(self, X: Tensor, *data: Tensor):
        inputs, target, root = self._unpack(data)
        B, T = self.batch or 1, sum(self.tangents)
        at = self.values(X.detach())
        # the value from the Jacobian's own runs of the model, but where the residual's graph must
        # reach the data (the implicit backward runs with grad)
        r = self(X, *data) if torch.is_grad_enabled() else None
        if self.batch is not None:  # a NaN sample stops its own problem; the others' blocks stay finite
            # the samples' independence is the model's structure: checked at the first linearization
            got = per_sample_modjac(self.model, inputs, wrt=self.names, at=at, allow_nan=True,
                                    check_independent=not self.independent)
            self.independent = True
            value, J = got.value, got.jacobian[:, self.offsets[0]:self.offsets[1]]  # (B, this output's numbers, T)
        else:
            value, J = self._dense(inputs, at, T)
        if r is None:
            r = self._finish((value if isinstance(value, tuple) else (value,))[self.k], target, root)
        if self.batch is None and not (torch.isfinite(r).all() and torch.isfinite(J).all()):
            # the engine stops on a NaN residual; a NaN derivative of a finite value (sqrt at 0) too
            return r, (r.new_full((1, self.F, r.shape[-1], T), math.nan),)
        J = J.reshape((B,) + self.shape + (T,))
        if root is not None:
            J = root.detach().reshape((B,) + root.shape[-len(self.shape) - 1:]) @ J
        return r, (J.reshape(B, self.F, -1, T),)

    def _dense(self, inputs, at, T: int) -> tuple:
        """The one problem's outputs and its Jacobian rows of this output ``(numbers, T)``, NaN
        where a derivative is undefined."""
        # the mode chosen here from the sizes known (modjac's automatic mode would run the model once
        # more to learn them; it is the fallback where vmap cannot run the model, and beyond
        # VECTORIZE_MAX directions, where it goes row by row).  Forward mode only at twice as many
        # rows as columns: raw_autograd's forward rule is a vmap of its reverse one, and at 24 of
        # each (benchmarks/fit.py's first case) a fit took 39.4 ms forward and 34.6 ms reverse
        # (medians of 15, alternating)
        mode = "forward-mode" if 2 * T <= self.rows else "reverse-mode"
        chosen = (T if mode == "forward-mode" else self.rows) <= VECTORIZE_MAX
        kw = dict(wrt=self.names, at=at, flatten=True, allow_nan=True)
        try:
            value, J = value_and_modjac(self.model, inputs, **kw,
                                        **(dict(strategy=mode, vectorize=True) if chosen else {}))
        except (RuntimeError, NotImplementedError):
            if not chosen:
                raise
            value, J = value_and_modjac(self.model, inputs, **kw)
        return value, J[self.offsets[0]:self.offsets[1]]


def _per_output(name: str, value, outputs: int, kind: str) -> list:
    """``value`` for each of the model's outputs: one value for a single output, or a tuple/list
    of one per output (``None`` for none)."""
    if isinstance(value, (tuple, list)):
        if len(value) != outputs:
            raise ValueError(f"{name}: expected one {kind} per model output ({outputs}), got {len(value)}")
        return list(value)
    if outputs > 1 and value is not None:
        raise ValueError(f"{name}: the model gives {outputs} outputs; expected a tuple of one {kind} per output")
    return [value] * outputs


def _tensor(name: str, x) -> Tensor | None:
    if x is None or isinstance(x, pp.LieTensor):
        return x
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    return x


def _plain(x: Tensor | None) -> Tensor | None:
    return x.as_subclass(Tensor) if isinstance(x, pp.LieTensor) else x


def _square_root(name: str, W: Tensor, shape: tuple, like: Tensor) -> Tensor:
    """``L^T`` with ``W = L L^T`` for information matrices ``W`` broadcastable to ``(..., m, m)``
    of residuals ``shape = (..., m)``; refused unless symmetric positive definite."""
    m = shape[-1]
    if W.dim() < 2 or W.shape[-2:] != (m, m):
        raise ValueError(f"{name}: expected information matrices (..., {m}, {m}) for residuals {shape}, "
                         f"got shape {tuple(W.shape)}")
    try:
        W = W.to(like).expand(shape[:-1] + (m, m))
    except RuntimeError:
        raise ValueError(f"{name}: shape {tuple(W.shape)} does not broadcast to the residuals' "
                         f"{shape[:-1]} + ({m}, {m})") from None
    if not torch.isfinite(W).all() or (W - W.transpose(-1, -2)).abs().amax() > 1e-9 * (1 + W.abs().amax()):
        raise ValueError(f"{name}: expected symmetric, finite information matrices")
    L, info = torch.linalg.cholesky_ex(W)
    if (info != 0).any():
        raise ValueError(f"{name}: an information matrix is not positive definite")
    return L.transpose(-1, -2)


def fit(model: nn.Module, input=None, target=None, *, weight=None, kernel=None, config: SolverConfig | None = None,
        wrt: Iterable[str | nn.Parameter] | str | None = None, update: bool = True,
        per_sample: bool = False) -> FitResult:
    """Fit ``model``'s parameters so that ``model(*input)`` matches ``target``, by the engine:
    minimize ``0.5 sum rho(r^T W r)``, ``r = model(*input) - target`` over the rows of the output's
    last dimension (pypose's ``LM(model).step(input, target, weight)``, run to convergence).

    * ``model``: a module whose ``forward`` gives a tensor or LieTensor (or a tuple of them: each
      is a residual block).  The parameters requiring grad are fitted (or exactly ``wrt``):
      ``pp.Parameter`` of SO3, SE3, RxSO3 or Sim3 stepped on the left, ``X' = Exp(d) X`` (tangent
      columns from :func:`robojac.jacobian.modjac`; Sim3 by a retraction equal to it to first
      order, see :func:`robojac.optim.group`), any other tensor (a Lie algebra's numbers too) as a
      vector.
    * ``input``: ``None``, a tensor or a tuple of them, passed to ``forward``.
    * ``target``: ``None`` (the output is the residual), or a tensor broadcastable to the output
      (a tuple of one per output).
    * ``weight``: ``None``, or information matrices ``(m, m)`` or ``(..., m, m)`` over the output's
      last dimension ``m``, broadcastable to its rows, symmetric positive definite (a tuple of one
      per output).  Each row's squared norm is ``r^T W r``.
    * ``kernel``: a :class:`RobustKernel` on each row's ``r^T W r`` (a tuple of one per output).
      Without one, each output is one factor; with one, each row is.
    * ``config``: the engine's :class:`SolverConfig` (``backward="implicit"`` or ``"none"``).
      A model whose Gauss-Newton steps are good from its start converges faster with
      ``SolverConfig(trust_region=TrustRegionConfig.gauss_newton_first())``, as pypose's LM
      steps with a damping of 1e-6 (pypose's example: 2 iterations, not 4); one that needs a
      large damping on the way pays for the climb to it (a similarity from the identity: 21,
      not 14), so it is not the default (``docs/benchmarks.md#fitting-a-module-pyposes-lm``).
    * ``update``: write the answer into the model's parameters (as pypose's optimizer does), so
      the next fit starts from it.

    * ``per_sample``: the output's first dim ``B`` holds independent problems, sample ``b`` of the
      output reading sample ``b`` of every fitted parameter (each parameter's first dim is ``B``:
      ``B`` poses, ``B`` joint vectors): ``B`` problems of the parameters' per-sample size, each
      stepping, damping and stopping on its own, their Jacobian blocks from
      :func:`robojac.jacobian.per_sample_modjac` (which refuses a parameter that couples the
      samples).

    Without ``per_sample`` the module is one problem, its Jacobian one dense ``rows x unknowns``
    block (pypose's LM forms the same); a model whose residuals each read a few of thousands of
    unknowns (a pose graph) is solved sparse when written as :class:`Factor` s.

    An ``input``, ``target`` or ``weight`` that requires grad makes ``result.parameters``
    differentiable (see :class:`FitResult`); a fit that did not converge passes zero gradients.
    With a kernel, each row is a factor, and an input whose first dim is not the output's row
    count reaches every row as a view of itself; a gradient with respect to it then passes
    through ``rows x its size`` numbers.
    """
    config = SolverConfig() if config is None else config
    if not isinstance(config, SolverConfig):
        raise TypeError(f"config: expected a SolverConfig, got {type(config).__name__}")
    if config.backward == "unroll":
        raise ValueError("config.backward: fit differentiates its answer by the implicit function theorem; "
                         "expected 'implicit' or 'none', got 'unroll'")
    if not isinstance(per_sample, bool):
        raise TypeError(f"per_sample: expected True or False, got {per_sample!r}")
    func, variables, blocks = model_function(model, input, wrt=wrt)  # checks the model, input and wrt
    inputs = () if input is None else (input,) if isinstance(input, Tensor) else tuple(input)  # model_function checked
    named = dict(model.named_parameters())
    params = [named[b.name] for b in blocks]
    first = params[0]
    for b, p in zip(blocks, params):
        if p.dtype != first.dtype or p.device != first.device:
            raise ValueError(f"model: parameters {blocks[0].name!r} ({first.dtype} on {first.device}) and {b.name!r} "
                             f"({p.dtype} on {p.device}) differ; fit steps them as one variable")
    with torch.no_grad():
        outs = func(*variables)
    outs = outs if isinstance(outs, tuple) else (outs,)
    n = len(outs)
    B = None
    if per_sample:
        B = outs[0].shape[0] if outs[0].dim() else None
        if B is None or any(o.dim() == 0 or o.shape[0] != B for o in outs):
            raise ValueError("per_sample: expected the model's outputs to share a leading batch dim, got shapes "
                             f"{[tuple(o.shape) for o in outs]}")
        for b, p in zip(blocks, params):
            if not b.shape or b.shape[0] != B:
                raise ValueError(f"per_sample: parameter {b.name!r} has shape {tuple(p.shape)}; expected its first "
                                 f"dim to be the outputs' batch {B}")
    lead = 1 if B is None else B
    parts = [("Rn", p.numel() // lead) if b.group is None else (b.group.name, math.prod(b.shape) // lead)
             for b, p in zip(blocks, params)]
    layout = ([p.numel() // lead for p in params], [tuple(p.shape)[B is not None:] for p in params],
              [p.ltype if b.group is not None else None for b, p in zip(blocks, params)],
              [b.numel // lead for b in blocks])
    x0 = torch.cat([p.detach().as_subclass(Tensor).reshape(lead, -1) for p in params], -1)
    var = Variable(product(*parts), x0.reshape(lead, 1, -1), name="parameters")

    targets = [_plain(_tensor("target" if n == 1 else f"target[{k}]", t)) for k, t in
               enumerate(_per_output("target", target, n, "target"))]
    weights = [_plain(_tensor("weight" if n == 1 else f"weight[{k}]", w)) for k, w in
               enumerate(_per_output("weight", weight, n, "weight matrix"))]
    kernels = _per_output("kernel", kernel, n, "kernel")
    numbers = [o.numel() // lead for o in outs]  # per problem
    factors = []
    for k, (out, t, w, ker) in enumerate(zip(outs, targets, weights, kernels)):
        where = "" if n == 1 else f"[{k}]"
        if ker is not None and not isinstance(ker, RobustKernel):
            raise TypeError(f"kernel{where}: expected a RobustKernel or None, got {type(ker).__name__}")
        shape = tuple(out.shape)[B is not None:]  # one problem's residuals (..., m)
        shape = (1, 1) if not shape else (1,) + shape if len(shape) == 1 else shape
        if t is not None:
            try:
                grown = torch.broadcast_shapes(t.shape, out.shape)
            except RuntimeError:
                raise ValueError(f"target{where}: shape {tuple(t.shape)} does not broadcast to the model's output "
                                 f"{tuple(out.shape)}") from None
            if grown != out.shape:
                raise ValueError(f"target{where}: shape {tuple(t.shape)} would enlarge the model's output "
                                 f"{tuple(out.shape)}")
            t = t.expand(out.shape) if B is not None else t  # each problem's own rows
        full = shape if B is None else (B,) + shape
        root = None if w is None else _square_root(f"weight{where}", w, full, out)
        F = math.prod(shape[:-1]) if ker is not None else 1
        carried = [_Carried(x, lead, F) for x in inputs + tuple(v for v in (t, root) if v is not None)]
        residual = _ModuleResidual(model, [b.name for b in blocks], layout, B, k,
                                   (sum(numbers[:k]), sum(numbers[:k + 1])), sum(numbers) * lead, shape, F,
                                   carried, t is not None, root is not None)
        factors.append(Factor(residual, [var], torch.zeros(F, 1, dtype=torch.long, device=x0.device),
                              data=[c.data for c in carried], kernel=ker, name=f"output{where}"))
    result = solve([var], factors, config)
    answer = factors[0].residual.values(result.values[0])
    if update:
        with torch.no_grad():
            for p, b in zip(params, blocks):
                p.copy_(answer[b.name].detach())
    if B is None:
        return FitResult(answer, bool(result.converged[0]), result.reason[0], int(result.iterations[0]),
                         float(result.cost[0]), float(result.initial_cost[0]), result.history)
    return FitResult(answer, result.converged, result.reason, result.iterations, result.cost, result.initial_cost,
                     result.history)
