"""``modjac``: the Jacobian of a module's outputs with respect to its parameters.

A drop-in for ``pypose.optim.functional.modjac`` (same arguments, return structure and shapes
for plain-tensor parameters) with tangent-space columns for Lie-group parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..lie import raw_autograd
from ._params import (
    ColumnBlock,
    as_args,
    check_model,
    check_strategy,
    finite_jacobian,
    column_block,
    column_variable,
    evaluated_at,
    plain,
    select_parameters,
    substitute,
)

__all__ = ["VECTORIZE_MAX", "model_function", "modjac", "value_and_modjac"]


def model_function(model: nn.Module, input=None, *, wrt=None, create_graph: bool = False, at=None):
    """``(func, variables, blocks)``: the model as a function of its column variables.

    ``func(*variables)`` runs the model with each chosen parameter replaced by its column
    variable (a zero tangent for Lie groups), returning plain tensors.  Call it inside
    :func:`robojac.lie.raw_autograd` for tangent-correct derivatives.  The building block of
    :func:`modjac` and of the structured Jacobians.  ``at`` (see :func:`modjac`) gives the
    values the chosen parameters take instead of their own.
    """
    check_model(model)
    args = as_args(input)
    chosen = evaluated_at(select_parameters(model, wrt), at)
    blocks = [column_block(n, p) for n, p in chosen]
    variables = tuple(column_variable(p, b) for (_, p), b in zip(chosen, blocks))

    def func(*vs):
        overrides = {b.name: substitute(p, b, v, create_graph) for (_, p), b, v in zip(chosen, blocks, vs)}
        return plain(functional_call(model, overrides, args))

    return func, variables, blocks


# the most rows (reverse mode) or columns (forward mode) the automatic strategy pushes in one
# vectorized pass; beyond both, it goes row by row (pypose's way), whose memory does not grow
VECTORIZE_MAX = 2048


def modjac(
    model: nn.Module,
    input=None,
    *,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool | None = None,
    strategy: str = "auto",
    flatten: bool = False,
    wrt: Iterable[str | nn.Parameter] | str | None = None,
    at: dict[str, Tensor] | None = None,
):
    """Jacobian of ``model(*input)`` with respect to its parameters.

    Arguments and return structure follow ``pypose.optim.functional.modjac`` (and so
    ``torch.autograd.functional.jacobian``): a tuple over parameters, nested in a tuple over
    outputs when the model returns several; ``flatten=True`` gives one ``(outputs, columns)``
    matrix.  ``strategy="reverse-mode"`` / ``"forward-mode"`` and ``vectorize`` are torch's.
    The default, ``strategy="auto"``, picks by size: forward mode when the columns are no more
    than the outputs (and no graph is asked for), else reverse mode, in one vectorized pass of
    at most :data:`VECTORIZE_MAX` directions; where ``vmap`` cannot run the model, or both sizes
    are larger, or ``strict=True`` or ``vectorize=False`` is given, it goes row by row as
    pypose's default does (a camera's 6 columns at 100 points: 3.0 ms against 174 ms row by
    row).  It runs the model once more, without a graph, to size its output.  Differences from
    pypose, all deliberate:

    * a Lie-group parameter (``pp.Parameter`` of SO3/SE3/RxSO3/Sim3) gets tangent columns, 3
      per SO3 and 6 per SE3, ``d f(Exp(d) * X) / d d`` at ``d = 0`` (left perturbation,
      ``[rho, phi]``), correct even where the model reads the raw numbers
      (``X.translation()``), and in forward mode too; its block has shape
      ``output.shape + X.lshape + (dof,)``.  Lie-algebra parameters keep their own coordinates.
    * only parameters that require grad get columns, or exactly the ``wrt`` names/parameters.
    * a Jacobian with NaN raises ``FloatingPointError`` (pypose asserts).
    * ``at={name: value}`` takes the Jacobian where those parameters have those values (a
      tensor of the parameter's shape; for a Lie-group parameter its stored numbers or a
      LieTensor), as :func:`torch.func.functional_call` runs a module: the model is not changed.
      A solver linearizing a model at its trial points (:func:`robojac.optim.fit`) uses it.
    """
    return _modjac(model, input, create_graph=create_graph, strict=strict, vectorize=vectorize, strategy=strategy,
                   flatten=flatten, wrt=wrt, at=at)[1]


# modjac's keywords, which value_and_modjac passes on
_OPTIONS = ("create_graph", "strict", "vectorize", "strategy", "flatten", "wrt", "at")


def value_and_modjac(model: nn.Module, input=None, *, allow_nan: bool = False, **options):
    """``(value, J)``: the model's outputs and :func:`modjac`'s Jacobian, from the same runs.

    ``options`` are :func:`modjac`'s keywords (``create_graph``, ``strict``, ``vectorize``,
    ``strategy``, ``flatten``, ``wrt``, ``at``), and ``J`` is its Jacobian.  ``value`` is
    ``model(*input)`` as plain tensors (a tuple for several outputs), detached, where the
    parameters named in ``at`` take those values.  A solver needs both at every point it
    linearizes: in reverse mode torch runs the model once and pushes the rows back through that
    run, and the automatic strategy runs it once to size its output, so the value costs no run
    of its own there (only an explicit ``strategy="forward-mode"`` runs the model once more for
    it).  pypose's LM runs the model for its residual and again in its ``modjac``;
    :func:`robojac.optim.fit` saved ~1.4 ms of its ~6 ms linearizations on pypose's example
    (``benchmarks/fit.py``).  ``allow_nan=True`` returns a Jacobian with NaN instead of raising
    ``FloatingPointError`` (a solver stops on it, as on a NaN value).
    """
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"value_and_modjac: unexpected keyword {unknown[0]!r}; expected modjac's: "
                        f"{', '.join(_OPTIONS)}")
    return _modjac(model, input, allow_nan=allow_nan, want_value=True, **options)


def _modjac(model, input, *, create_graph=False, strict=False, vectorize=None, strategy="auto", flatten=False,
            wrt=None, at=None, allow_nan=False, want_value=False):
    """``(value, J)`` for :func:`modjac` and :func:`value_and_modjac` (``value`` ``None`` unless
    ``want_value``)."""
    if strategy != "auto":
        check_strategy(strategy, bool(vectorize), create_graph)
    func, variables, blocks = model_function(model, input, wrt=wrt, create_graph=create_graph, at=at)
    runs = []

    def recorded(*vs):  # the value of reverse mode's one run of the model (forward mode's runs are batched)
        out = func(*vs)
        runs.append(out)
        return out

    with torch.enable_grad(), raw_autograd():
        if strategy == "auto":
            value, J = _automatic(recorded, variables, create_graph, strict, vectorize)
        else:
            J = torch.autograd.functional.jacobian(
                recorded, variables, create_graph=create_graph, strict=strict, vectorize=bool(vectorize),
                strategy=strategy)
            value = runs[0] if strategy == "reverse-mode" else None
    if not want_value:
        value = None
    elif value is None:
        with torch.no_grad(), raw_autograd():
            value = func(*variables)
    if value is not None:
        value = tuple(v.detach() for v in value) if isinstance(value, tuple) else value.detach()
    J = finite_jacobian(J, create_graph, allow_nan)
    return value, (_flatten(J, blocks) if flatten else J)


def _automatic(func, variables: tuple, create_graph: bool, strict: bool, vectorize: bool | None):
    """``(value or None, J)`` for ``strategy="auto"`` (see :func:`modjac`); ``func`` records its runs."""
    def jac(**kw):
        return torch.autograd.functional.jacobian(func, variables, create_graph=create_graph, strict=strict, **kw)

    if strict or vectorize is False or not variables:
        return None, jac(vectorize=False, strategy="reverse-mode")
    columns = sum(v.numel() for v in variables)
    with torch.no_grad():
        out = func(*variables)
    rows = sum(o.numel() for o in (out if isinstance(out, tuple) else (out,)))
    if not create_graph and columns <= min(rows, VECTORIZE_MAX):
        mode = "forward-mode"
    elif rows <= VECTORIZE_MAX:
        mode = "reverse-mode"
    else:
        return out, jac(vectorize=False, strategy="reverse-mode")
    try:
        return out, jac(vectorize=True, strategy=mode)
    except (RuntimeError, NotImplementedError):  # an op vmap cannot run (a user's autograd.Function with no jvp)
        return out, jac(vectorize=False, strategy="reverse-mode")


def _flatten(J, blocks: list[ColumnBlock]) -> Tensor:
    rows = J if isinstance(J[0], tuple) else (J,)
    return torch.cat(
        [torch.cat([j.reshape(-1, b.numel) for j, b in zip(row, blocks)], dim=1) for row in rows], dim=0
    )
