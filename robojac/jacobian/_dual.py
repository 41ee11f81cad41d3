"""Forward-mode dual numbers without torch's zero-tangent slow path.

In forward-mode AD, an elementwise op between a dual tensor and an operand with no tangent (a
Python number, or a plain tensor: a constant, a held datum) fills the missing tangent with an
"efficient zero tensor".  On torch 2.13's CPU build every op on such a tensor infers its shape
through Python meta functions: ``2.0 * x`` on a dual ``(60, 3)`` took 385 us here, against
6 us for the same product through ``aten.mul.Scalar`` and 8 us for dual times dual.  A
residual's Jacobian pays it on every constant: ``se3_log``'s stacked Jacobian of 8 poses took
5.9 ms, 1.7 ms without it (the same values).  The mode itself costs each operation a Python
call (a dual product 6.9 -> 9.0 us) and an operation between two tensors the look at which
carry tangents (-> 13.8 us): a function with no such operation is slower under it
(``benchmarks/ab.py --case jacobian``: ``quat_mul``'s Jacobian 1.36x), one with a single
constant in it already faster (``se3_act``'s 0.53x).

:class:`ZeroTangents` is a torch function mode for the span of one dual-number pass.  It sends
arithmetic between a dual tensor and a Python number to aten's ``Scalar`` overloads (whose
forward derivative needs no second tangent).  A plain floating-point tensor that meets a dual
one in an op of two arguments gets an explicit zero tangent, and so does an integer or bool
tensor (a mask) in arithmetic, as the dual's dtype, which type promotion gives the result
anyway.  In-place ops and calls with ``out=`` pass through as they are, and so do ops of three
or more arguments (``where``'s zero tangents cost microseconds).  The values and tangents are
the ones torch computes without the mode.

:func:`zero_tangents` puts a function's pass under the mode, and remembers a function in whose
pass the mode found nothing to rewrite (every operation between dual tensors, as in
``quat_mul``): its later passes run without it, at torch's own speed (``quat_mul``'s stacked
Jacobian of 8 pairs 255 -> 198 us, ``benchmarks/ab.py --case jacobian``; remembering costs a
pass ~2 us).  Its passes take the same operations whatever the values, unless the function
branches in Python on them; a later pass that met a missing tangent would still be right, only
slower.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextlib import contextmanager
from types import ModuleType

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["ZeroTangents", "zero_tangents"]

_aten = torch.ops.aten
_T = Tensor
_SCALAR_FORMS = {  # func(dual, number) -> the aten overload that takes the number as a Scalar
    _T.__mul__: _aten.mul.Scalar, _T.__rmul__: _aten.mul.Scalar, torch.mul: _aten.mul.Scalar, _T.mul: _aten.mul.Scalar,
    _T.__add__: _aten.add.Scalar, _T.__radd__: _aten.add.Scalar, torch.add: _aten.add.Scalar, _T.add: _aten.add.Scalar,
    _T.__sub__: _aten.sub.Scalar, torch.sub: _aten.sub.Scalar, _T.sub: _aten.sub.Scalar,
    _T.__rsub__: _aten.rsub.Scalar,
    _T.__truediv__: _aten.div.Scalar, torch.div: _aten.div.Scalar, _T.div: _aten.div.Scalar,
}
_SCALAR_FORMS[_T.__rtruediv__] = lambda a, b: _aten.mul.Scalar(_aten.reciprocal(a), b)  # b / a
_NUMBER = (int, float)
_in_place: dict = {}


def _writes_in_place(func) -> bool:
    known = _in_place.get(func)
    if known is None:
        name = getattr(func, "__name__", "")
        known = _in_place[func] = name.startswith("__i") or (name.endswith("_") and not name.endswith("__"))
    return known


def _has_tangent(t: Tensor, level: int) -> bool:
    # torch._unpack_dual is what fwAD.unpack_dual calls, without its checks: 1.5 against 4.8 us
    return torch._unpack_dual(t, level)[1] is not None


class ZeroTangents(TorchFunctionMode):
    """Within ``fwAD.dual_level()`` (its ``level``): no op meets a missing tangent (module
    docstring)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level
        self.acted = False  # whether any op met a missing tangent (and was rewritten)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        if len(args) != 2 or "out" in kwargs:
            return func(*args, **kwargs)
        a, b = args
        if type(b) in _NUMBER and not kwargs:  # bool excluded: its type is not int
            form = _SCALAR_FORMS.get(func)
            if form is not None and isinstance(a, Tensor) and a.is_floating_point():
                self.acted = True
                return form(a, b)  # the same value; without a tangent, as fast as before
        elif isinstance(a, Tensor) and isinstance(b, Tensor) and not _writes_in_place(func):
            fa, fb = a.is_floating_point(), b.is_floating_point()
            if fa and fb:
                da, db = _has_tangent(a, self.level), _has_tangent(b, self.level)
                if da != db:
                    self.acted = True
                    if da:
                        b = fwAD.make_dual(b, torch.zeros_like(b))
                    else:
                        a = fwAD.make_dual(a, torch.zeros_like(a))
            elif fa != fb and func in _SCALAR_FORMS:  # arithmetic with an integer or bool tensor (a mask)
                if fa and _has_tangent(a, self.level):
                    self.acted = True
                    b = fwAD.make_dual(b.to(a.dtype), torch.zeros(b.shape, dtype=a.dtype, device=b.device))
                elif fb and _has_tangent(b, self.level):
                    self.acted = True
                    a = fwAD.make_dual(a.to(b.dtype), torch.zeros(a.shape, dtype=b.dtype, device=a.device))
        return func(a, b, **kwargs)


_PLAIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # functions the mode found nothing to rewrite in


def _key(func: Callable):
    """What a function is remembered by: its code, if it closes over nothing but modules (a lambda
    written inline is a new function object at every call, with the same operations), else the
    function itself (the engine's per-slot functions share one code, each its own residual)."""
    code, cells = getattr(func, "__code__", None), getattr(func, "__closure__", ())
    try:
        modules_only = all(isinstance(c.cell_contents, ModuleType) for c in cells or ())
    except ValueError:  # a cell not filled yet
        modules_only = False
    return code if code is not None and modules_only else func


@contextmanager
def zero_tangents(func: Callable, level: int):
    """:class:`ZeroTangents` over a pass of ``func``, unless an earlier pass of ``func`` (see
    :func:`_key`) gave it nothing to do (module docstring).  A function that cannot be weakly
    referenced (a builtin) is not remembered."""
    key = _key(func)
    try:
        plain = key in _PLAIN
    except TypeError:
        plain = False
    if plain:
        yield
        return
    mode = ZeroTangents(level)
    with mode:
        yield
    if not mode.acted:
        try:
            _PLAIN[key] = True
        except TypeError:
            pass
