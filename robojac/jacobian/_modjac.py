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
    plain,
    select_parameters,
    substitute,
)

__all__ = ["modjac", "model_function"]


def model_function(model: nn.Module, input=None, *, wrt=None, create_graph: bool = False):
    """``(func, variables, blocks)``: the model as a function of its column variables.

    ``func(*variables)`` runs the model with each chosen parameter replaced by its column
    variable (a zero tangent for Lie groups), returning plain tensors.  Call it inside
    :func:`robojac.lie.raw_autograd` for tangent-correct derivatives.  The building block of
    :func:`modjac` and of the structured Jacobians.
    """
    check_model(model)
    args = as_args(input)
    chosen = select_parameters(model, wrt)
    blocks = [column_block(n, p) for n, p in chosen]
    variables = tuple(column_variable(p, b) for (_, p), b in zip(chosen, blocks))

    def func(*vs):
        overrides = {b.name: substitute(p, b, v, create_graph) for (_, p), b, v in zip(chosen, blocks, vs)}
        return plain(functional_call(model, overrides, args))

    return func, variables, blocks


def modjac(
    model: nn.Module,
    input=None,
    *,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    strategy: str = "reverse-mode",
    flatten: bool = False,
    wrt: Iterable[str | nn.Parameter] | str | None = None,
):
    """Jacobian of ``model(*input)`` with respect to its parameters.

    Arguments and return structure follow ``pypose.optim.functional.modjac`` (and so
    ``torch.autograd.functional.jacobian``): a tuple over parameters, nested in a tuple over
    outputs when the model returns several; ``flatten=True`` gives one ``(outputs, columns)``
    matrix.  Differences, all deliberate:

    * a Lie-group parameter (``pp.Parameter`` of SO3/SE3/RxSO3/Sim3) gets tangent columns, 3
      per SO3 and 6 per SE3, ``d f(Exp(d) * X) / d d`` at ``d = 0`` (left perturbation,
      ``[rho, phi]``), correct even where the model reads the raw numbers
      (``X.translation()``), and in forward mode too; its block has shape
      ``output.shape + X.lshape + (dof,)``.  Lie-algebra parameters keep their own coordinates.
    * only parameters that require grad get columns, or exactly the ``wrt`` names/parameters.
    * a Jacobian with NaN raises ``FloatingPointError`` (pypose asserts).
    """
    check_strategy(strategy, vectorize, create_graph)
    func, variables, blocks = model_function(model, input, wrt=wrt, create_graph=create_graph)
    with torch.enable_grad(), raw_autograd():
        J = torch.autograd.functional.jacobian(
            func, variables, create_graph=create_graph, strict=strict, vectorize=vectorize, strategy=strategy
        )
    J = finite_jacobian(J, create_graph)
    return _flatten(J, blocks) if flatten else J


def _flatten(J, blocks: list[ColumnBlock]) -> Tensor:
    rows = J if isinstance(J[0], tuple) else (J,)
    return torch.cat(
        [torch.cat([j.reshape(-1, b.numel) for j, b in zip(row, blocks)], dim=1) for row in rows], dim=0
    )
