"""Which parameters get Jacobian columns, and how each is replaced by its column variable."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pypose as pp
import torch
from torch import Tensor, nn

from ..lie import GroupSpec, group_spec, retract_first_order

Strategy = Literal["reverse-mode", "forward-mode"]
STRATEGIES: tuple[str, ...] = ("reverse-mode", "forward-mode")


@dataclass(frozen=True)
class ColumnBlock:
    """The Jacobian columns of one parameter.

    ``shape`` is the parameter's shape without the group's stored-number dimension (its
    ``lshape``) for a Lie-group parameter, else its full shape; ``dof`` is the tangent
    dimension per group element (``None`` for plain tensors); ``numel`` is the column count.
    """

    name: str
    shape: tuple[int, ...]
    dof: int | None
    group: GroupSpec | None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * (self.dof or 1)

    @property
    def column_shape(self) -> tuple[int, ...]:
        return self.shape + ((self.dof,) if self.dof else ())


def check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")


def check_strategy(strategy: str, vectorize: bool, create_graph: bool = False) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    if strategy == "forward-mode" and not vectorize:
        raise ValueError('strategy="forward-mode" requires vectorize=True (as torch.autograd.functional.jacobian)')
    if strategy == "forward-mode" and create_graph:
        raise ValueError('create_graph=True needs strategy="reverse-mode" (torch cannot build the graph in forward mode)')


def as_args(input) -> tuple:
    """The model's positional arguments: ``None`` -> (), a tensor -> (tensor,), a tuple as is."""
    if input is None:
        return ()
    if isinstance(input, Tensor):
        return (input,)
    if isinstance(input, (tuple, list)):
        for i, x in enumerate(input):
            if not isinstance(x, Tensor):
                raise TypeError(f"input[{i}]: expected a Tensor or LieTensor, got {type(x).__name__}")
        return tuple(input)
    raise TypeError(f"input: expected None, a Tensor/LieTensor or a tuple of them, got {type(input).__name__}")


def select_parameters(model: nn.Module, wrt: Iterable[str | nn.Parameter] | str | None) -> list[tuple[str, nn.Parameter]]:
    """The parameters that get columns: those requiring grad, or exactly the ``wrt`` subset."""
    named = dict(model.named_parameters())
    if wrt is None:
        chosen = [(n, p) for n, p in named.items() if p.requires_grad]
        if not chosen:
            what = "no parameters" if not named else f"no parameter that requires grad (frozen: {sorted(named)})"
            raise ValueError(f"model: {type(model).__name__} has {what}; nothing to differentiate")
        return chosen
    if isinstance(wrt, (str, nn.Parameter)):
        wrt = [wrt]
    by_id = {id(p): n for n, p in named.items()}
    chosen, seen = [], set()
    for item in wrt:
        if isinstance(item, str):
            if item not in named:
                raise ValueError(f"wrt: {item!r} names no parameter of {type(model).__name__}; parameters: {sorted(named)}")
            name = item
        elif isinstance(item, Tensor) and id(item) in by_id:
            name = by_id[id(item)]
        else:
            raise ValueError(f"wrt: expected parameter names or parameters of the model, got {type(item).__name__}")
        if name not in seen:
            seen.add(name)
            chosen.append((name, named[name]))
    if not chosen:
        raise ValueError(f"wrt: names nothing; parameters: {sorted(named)}")
    return chosen


def evaluated_at(chosen: list[tuple[str, nn.Parameter]], at) -> list[tuple[str, Tensor]]:
    """``chosen`` with the parameters named in ``at`` replaced by those values (each checked for
    the parameter's shape, dtype and device; a Lie-group parameter's value viewed as its group)."""
    if at is None:
        return chosen
    if not isinstance(at, dict):
        raise TypeError(f"at: expected a dict of parameter names to values, got {type(at).__name__}")
    names = [n for n, _ in chosen]
    unknown = sorted(set(at) - set(names))
    if unknown:
        raise ValueError(f"at: {unknown} name no parameter the Jacobian is taken with respect to; those are {names}")
    out = []
    for name, param in chosen:
        if name not in at:
            out.append((name, param))
            continue
        value = at[name]
        if not isinstance(value, Tensor):
            raise TypeError(f"at[{name!r}]: expected a tensor, got {type(value).__name__}")
        if value.shape != param.shape or value.dtype != param.dtype or value.device != param.device:
            raise ValueError(f"at[{name!r}]: expected {tuple(param.shape)} {param.dtype} on {param.device} as the "
                             f"parameter, got {tuple(value.shape)} {value.dtype} on {value.device}")
        if isinstance(param, pp.LieTensor):
            value = pp.LieTensor(value.as_subclass(Tensor), ltype=param.ltype)
        out.append((name, value))
    return out


def column_block(name: str, param: Tensor) -> ColumnBlock:
    spec = group_spec(param.ltype) if isinstance(param, pp.LieTensor) else None
    if spec is None:
        return ColumnBlock(name, tuple(param.shape), None, None)
    return ColumnBlock(name, tuple(param.shape[:-1]), spec.tangent_dim, spec)


def column_variable(param: Tensor, block: ColumnBlock) -> Tensor:
    """The tensor differentiated for ``param``: a zero tangent for groups, else the value."""
    if block.group is None:
        return param.as_subclass(Tensor) if isinstance(param, pp.LieTensor) else param
    return torch.zeros(block.column_shape, dtype=param.dtype, device=param.device)


def substitute(param: Tensor, block: ColumnBlock, variable: Tensor, keep_graph: bool) -> Tensor:
    """What the model sees in place of ``param`` given its column variable."""
    if block.group is None:
        if isinstance(param, pp.LieTensor) and not isinstance(variable, pp.LieTensor):
            return pp.LieTensor(variable, ltype=param.ltype)
        return variable
    base = param.as_subclass(Tensor)
    base = base if keep_graph else base.detach()
    return pp.LieTensor(retract_first_order(base, variable, block.group), ltype=param.ltype)


def plain(out):
    """Model outputs as plain tensors (LieTensors keep their stored numbers)."""
    if isinstance(out, pp.LieTensor):
        return out.as_subclass(Tensor)
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        if not out:
            raise ValueError("model output: expected a tensor or a non-empty tuple of tensors, got an empty sequence")
        return tuple(plain(o) for o in out)
    raise TypeError(f"model output: expected a tensor or a tuple of tensors, got {type(out).__name__}")


def finite_jacobian(J, keep_graph: bool, allow_nan: bool = False):
    """``J`` with nested lists made tuples and, unless ``keep_graph``, detached.

    Raises ``FloatingPointError`` where it holds NaN, unless ``allow_nan``.  (torch's
    forward-mode ``jacobian`` returns results attached to the parameters' graph even with
    ``create_graph=False``.)
    """
    if isinstance(J, (tuple, list)):
        return tuple(finite_jacobian(j, keep_graph, allow_nan) for j in J)
    if not allow_nan and J is not None and torch.isnan(J).any():
        raise FloatingPointError("Jacobian contains NaN: check the model and its input for NaN or singular points")
    return J if keep_graph or J is None else J.detach()
