"""Functional Jacobians with respect to a function's inputs, tangent-aware for Lie groups.

``jacobian`` mirrors ``torch.func.jacrev``/``jacfwd`` (``argnums``, ``has_aux``,
``chunk_size``; composable with ``vmap`` and with itself), and ``vjp``/``jvp``/``hessian``/
``vhp``/``hvp`` mirror ``torch.autograd.functional``.  Wherever an input is a Lie-group
element (a LieTensor of SO3/SE3/RxSO3/Sim3, or a plain tensor declared in ``groups``), its
derivative lives in the tangent space: ``d f(Exp(d) * X) / d d`` at ``d = 0``, shape
``(..., dof)`` per element, and tangent vectors ``v`` passed to ``jvp``/``hvp`` have that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pypose as pp
import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from .._config import check_callable
from ..lie import GroupSpec, group_spec, raw_autograd, retract_first_order
from .. import lie
from ._params import STRATEGIES

__all__ = ["jacobian", "vjp", "jvp", "hessian", "vhp", "hvp"]

_LTYPES = {"SO3": pp.SO3_type, "SE3": pp.SE3_type, "RxSO3": pp.RxSO3_type, "Sim3": pp.Sim3_type}


def _plain(out):
    return tree_map(lambda t: t.as_subclass(Tensor) if isinstance(t, pp.LieTensor) else t, out)


def _argnums(argnums, n: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError("argnums: expected an int or a non-empty tuple of ints")
    for a in nums:
        if not isinstance(a, int) or not -n <= a < n:
            raise ValueError(f"argnums: {a!r} is not a valid position for a function called with {n} arguments")
    return tuple(a % n for a in nums)


def _group_of(arg, i: int, groups: Mapping[int, Any] | None) -> GroupSpec | None:
    declared = None if groups is None else groups.get(i)
    if declared is not None:
        spec = group_spec(declared) if isinstance(declared, str) else group_spec(declared)
        if spec is None:
            raise ValueError(f"groups[{i}]: expected a group name {sorted(_LTYPES)} or a pypose group ltype, got {declared!r}")
        return spec
    if isinstance(arg, pp.LieTensor):
        return group_spec(arg.ltype)
    return None


class _Tangentized:
    """A function of column variables standing in for chosen inputs of ``func``."""

    def __init__(self, func, args, nums, groups, exact: bool):
        self.func, self.args, self.nums, self.exact = func, args, nums, exact
        self.specs = []
        self.variables = []
        for i in nums:
            a = args[i]
            if not isinstance(a, Tensor):
                raise TypeError(f"argument {i}: expected a Tensor or LieTensor to differentiate, got {type(a).__name__}")
            spec = _group_of(a, i, groups)
            if spec is not None and a.shape[-1] != spec.raw_dim:
                raise ValueError(f"argument {i}: an {spec.name} element needs last dimension {spec.raw_dim}, got shape {tuple(a.shape)}")
            self.specs.append(spec)
            if spec is None:
                self.variables.append(a.as_subclass(Tensor) if isinstance(a, pp.LieTensor) else a)
            else:
                self.variables.append(a.new_zeros(a.shape[:-1] + (spec.tangent_dim,)).as_subclass(Tensor))
        self.variables = tuple(self.variables)

    def _value(self, i: int, spec: GroupSpec | None, v: Tensor):
        a = self.args[i]
        if spec is None:
            return pp.LieTensor(v, ltype=a.ltype) if isinstance(a, pp.LieTensor) else v
        base = a.as_subclass(Tensor) if isinstance(a, pp.LieTensor) else a
        if self.exact and spec.name == "SE3":
            raw = lie.se3_compose(lie.se3_exp(v), base)
        elif self.exact and spec.name == "SO3":
            raw = lie.quat_mul(lie.so3_exp(v), base)
        elif self.exact:
            alg = {"RxSO3": pp.rxso3_type, "Sim3": pp.sim3_type}[spec.name]
            raw = (pp.LieTensor(v, ltype=alg).Exp() * pp.LieTensor(base, ltype=_LTYPES[spec.name])).as_subclass(Tensor)
        else:
            raw = retract_first_order(base, v, spec)
        return pp.LieTensor(raw, ltype=_LTYPES[spec.name])

    def __call__(self, *vs):
        call = list(self.args)
        for i, spec, v in zip(self.nums, self.specs, vs):
            call[i] = self._value(i, spec, v)
        return self.func(*call)


def jacobian(
    func: Callable,
    argnums: int | tuple[int, ...] = 0,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
    strategy: str = "reverse-mode",
    groups: Mapping[int, Any] | None = None,
) -> Callable:
    """The Jacobian of ``func`` with respect to the arguments at ``argnums``, as a function.

    Like ``torch.func.jacrev`` (``strategy="reverse-mode"``) or ``jacfwd`` (``"forward-mode"``):
    ``jacobian(f)(x)`` has shape ``f(x).shape + x.shape``; a tuple ``argnums`` gives a tuple;
    ``has_aux`` returns ``(jac, aux)``; ``chunk_size`` bounds how many rows (reverse) or
    columns (forward) are computed at once.  Works under ``torch.func.vmap`` and nests
    (``jacobian(jacobian(f))`` is a Hessian).  Lie-group inputs get tangent columns; under
    ``vmap`` LieTensors arrive as plain tensors, so declare them: ``groups={0: "SE3"}``.
    """
    check_callable("func", func)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size: expected a positive int or None, got {chunk_size!r}")

    def jac_fn(*args):
        nums = _argnums(argnums, len(args))
        g = _Tangentized(func, args, nums, groups, exact=False)
        inner_argnums = tuple(range(len(nums))) if not isinstance(argnums, int) else 0

        def inner(*vs):
            out = g(*vs)
            return (_plain(out[0]), out[1]) if has_aux else _plain(out)

        with raw_autograd():
            if strategy == "reverse-mode":
                return torch.func.jacrev(inner, argnums=inner_argnums, has_aux=has_aux, chunk_size=chunk_size)(*g.variables)
            return _jacfwd_chunked(inner, inner_argnums, has_aux, chunk_size)(*g.variables)

    return jac_fn


def _jacfwd_chunked(f, argnums, has_aux: bool, chunk_size: int | None):
    """``torch.func.jacfwd`` with a bound on how many columns are pushed forward at once."""
    if chunk_size is None:
        return torch.func.jacfwd(f, argnums=argnums, has_aux=has_aux)

    def run(*xs):
        nums = (argnums,) if isinstance(argnums, int) else argnums
        prims = [xs[i] for i in nums]
        sizes = [p.numel() for p in prims]
        total = sum(sizes)

        def push(e):
            tangents, start = [], 0
            for p, n in zip(prims, sizes):
                tangents.append(e[start : start + n].view_as(p))
                start += n
            call = list(xs)

            def partial(*ps):
                for i, p in zip(nums, ps):
                    call[i] = p
                return f(*call)

            res = torch.func.jvp(partial, tuple(prims), tuple(tangents), has_aux=has_aux)
            return res[1] if not has_aux else (res[1], res[2])

        basis = torch.eye(total, dtype=prims[0].dtype, device=prims[0].device)
        cols = torch.vmap(push, chunk_size=chunk_size)(basis)
        aux = None
        if has_aux:
            cols, aux = cols
            aux = tree_map(lambda a: a[0], aux)

        def split(col):  # col: (total, *out_shape) -> per-input (*out_shape, *p.shape)
            outs, start = [], 0
            for p, n in zip(prims, sizes):
                piece = col[start : start + n].movedim(0, -1)
                outs.append(piece.reshape(piece.shape[:-1] + p.shape))
                start += n
            return outs[0] if isinstance(argnums, int) else tuple(outs)

        jac = tree_map(split, cols)
        return (jac, aux) if has_aux else jac

    return run


def _prepare(func, inputs, groups, exact: bool):
    check_callable("func", func)
    is_tuple = isinstance(inputs, (tuple, list))
    args = tuple(inputs) if is_tuple else (inputs,)
    if not args:
        raise ValueError("inputs: expected a tensor or a non-empty tuple of tensors")
    g = _Tangentized(func, args, tuple(range(len(args))), groups, exact=exact)

    def inner(*vs):
        return _plain(g(*vs))

    variables = g.variables if is_tuple else g.variables[0]
    return inner, variables


def _check_tangent(v, variables, name: str):
    vs = v if isinstance(v, (tuple, list)) else (v,)
    ref = variables if isinstance(variables, tuple) else (variables,)
    if v is None:
        return
    for i, (a, b) in enumerate(zip(vs, ref)):
        if isinstance(a, Tensor) and a.shape != b.shape:
            raise ValueError(f"{name}[{i}]: expected shape {tuple(b.shape)} (tangent shape for Lie inputs), got {tuple(a.shape)}")


# Each product: torch's function, whether a Lie input takes the exact retraction (a product
# with the Hessian needs second order; a first derivative does not), and whether ``v`` lives in
# the inputs' tangent space (``vjp``'s is shaped like the output).
_PRODUCTS = {
    "vjp": (torch.autograd.functional.vjp, False, False),
    "jvp": (torch.autograd.functional.jvp, False, True),
    "vhp": (torch.autograd.functional.vhp, True, True),
    "hvp": (torch.autograd.functional.hvp, True, True),
}


def _product(kind: str, func, inputs, v, create_graph: bool, strict: bool, groups):
    """One of torch.autograd.functional's products, with Lie inputs in tangent coordinates."""
    torch_fn, exact, tangent_v = _PRODUCTS[kind]
    inner, variables = _prepare(func, inputs, groups, exact=exact)
    if tangent_v:
        _check_tangent(v, variables, "v")
    with raw_autograd():
        return torch_fn(inner, variables, v, create_graph=create_graph, strict=strict)


def vjp(func, inputs, v=None, *, create_graph: bool = False, strict: bool = False, groups=None):
    """``(func(inputs), v^T J)`` as ``torch.autograd.functional.vjp``; tangent-shaped for Lie inputs."""
    return _product("vjp", func, inputs, v, create_graph, strict, groups)


def jvp(func, inputs, v=None, *, create_graph: bool = False, strict: bool = False, groups=None):
    """``(func(inputs), J v)`` as ``torch.autograd.functional.jvp``; ``v`` tangent-shaped for Lie inputs."""
    return _product("jvp", func, inputs, v, create_graph, strict, groups)


def hessian(func, inputs, *, create_graph: bool = False, strict: bool = False, vectorize: bool = False,
            outer_jacobian_strategy: str = "reverse-mode", groups=None):
    """Hessian of a scalar ``func`` as ``torch.autograd.functional.hessian``.

    For a Lie-group input it is ``d^2 f(Exp(d) * X) / d d^2`` at ``d = 0`` (symmetric; the
    retraction is exact to second order).
    """
    inner, variables = _prepare(func, inputs, groups, exact=True)
    with raw_autograd():
        return torch.autograd.functional.hessian(
            inner, variables, create_graph=create_graph, strict=strict, vectorize=vectorize,
            outer_jacobian_strategy=outer_jacobian_strategy,
        )


def vhp(func, inputs, v=None, *, create_graph: bool = False, strict: bool = False, groups=None):
    """``(func(inputs), v^T H)`` as ``torch.autograd.functional.vhp``, ``H`` the Hessian of
    :func:`hessian` (tangent coordinates for a Lie input, where ``v`` is tangent-shaped)."""
    return _product("vhp", func, inputs, v, create_graph, strict, groups)


def hvp(func, inputs, v=None, *, create_graph: bool = False, strict: bool = False, groups=None):
    """``(func(inputs), H v)`` as ``torch.autograd.functional.hvp``, ``H`` the Hessian of
    :func:`hessian` (symmetric, so the same numbers as :func:`vhp`; ``v`` tangent-shaped for a
    Lie input)."""
    return _product("hvp", func, inputs, v, create_graph, strict, groups)
