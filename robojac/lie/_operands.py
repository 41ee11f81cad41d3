"""The operand check of ``robojac.lie``'s plain-tensor operations.

Each public operation declares the trailing shape of each tensor it takes
(``@operands(X=POSE, p=POINT)``).  A call then checks, before any arithmetic, that every operand
is a floating-point tensor with that trailing shape and that they share one dtype and one device;
where torch then refuses the call, it says which arguments' leading dims do not broadcast.  Each
error names the operation, the argument and what was expected.  Without it a wrong last axis
came back as torch's ``linalg.cross: inputs dimension -1 must have length 3`` from deep inside,
and ``so3_exp`` of a ``(10, 4)`` array returned a ``(10, 5)`` "quaternion" without a word.  A
pypose LieTensor is taken as its stored numbers.  Other tensor subclasses pass unchecked: the
Jacobian core's dual numbers (``robojac.jacobian``) dispatch every attribute read through
``__torch_function__``, where the check took 14 of 262 us of a stacked Jacobian of ``se3_act``;
the residuals they run through have been evaluated, and so checked, on plain tensors first.

The check is a few attribute reads per operand: about 1.7 us a call of two operands
(``se3_act`` of ten poses under ``timeit``: 23.1 against 21.4 us unchecked), where the operations
themselves take 20-170 us.
"""

from __future__ import annotations

import functools
import inspect

import pypose as pp
import torch
from torch import Tensor

__all__ = ["operands", "POSE", "QUAT", "POINT", "TWIST", "SIM3_TWIST", "SIM3", "ROT", "SE2", "MATRIX34"]

# trailing shapes (alternatives of one rank), each with the words an error shows for it
POSE = (((7,),), "SE3 poses (..., 7) [tx, ty, tz, qx, qy, qz, qw]")
QUAT = (((4,),), "quaternions (..., 4) [qx, qy, qz, qw]")
POINT = (((3,),), "vectors (..., 3)")
TWIST = (((6,),), "twists (..., 6) [rho, phi]")
ROT = (((3, 3),), "rotation matrices (..., 3, 3)")
SIM3_TWIST = (((7,),), "sim3 tangents (..., 7) [rho, phi, sigma]")
SIM3 = (((8,),), "similarities (..., 8) [tx, ty, tz, qx, qy, qz, qw, s]")
SE2 = (((3,),), "planar poses or twists (..., 3) [x, y, theta]")
MATRIX34 = (((4, 4), (3, 4)), "homogeneous matrices (..., 4, 4) or (..., 3, 4)")


def _operand(op: str, name: str, x, tails, words) -> Tensor:
    if type(x) is not Tensor:
        if isinstance(x, pp.LieTensor):
            x = x.tensor()
        elif isinstance(x, Tensor):
            return x  # another subclass (the Jacobian core's dual numbers): see the module
        else:
            raise TypeError(f"{op}: {name}: expected a tensor of {words}, got {type(x).__name__}")
    if x.shape[-len(tails[0]):] not in tails:
        raise ValueError(f"{op}: {name}: expected {words}, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: {name}: expected a floating-point tensor of {words}, got dtype {x.dtype}")
    return x


def _mismatch(op: str, names, a: Tensor, b: Tensor) -> None:
    raise ValueError(f"{op}: {names[0]} is {a.dtype} on {a.device} but {names[1]} is {b.dtype} on {b.device}; "
                     "expected one dtype and one device")


def _diagnose(op: str, names, xs, tails) -> None:
    """Raise the error that names the arguments, where the operands of a call that torch refused
    have leading dims that do not broadcast."""
    try:
        torch.broadcast_shapes(*(x.shape[: x.dim() - len(t[0])] for x, t in zip(xs, tails)))
    except RuntimeError:
        shapes = ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, xs))
        raise ValueError(f"{op}: the leading (batch) dims of {shapes} do not broadcast") from None


def operands(**specs):
    """Check the named positional tensor arguments (one or two) of a ``robojac.lie`` operation
    (see the module)."""

    def wrap(fn):
        names = tuple(inspect.signature(fn).parameters)[: len(specs)]
        if set(names) != set(specs) or len(names) > 2:
            raise TypeError(f"operands: {fn.__name__} takes {names} first, not {tuple(specs)}")
        op = fn.__name__
        (ta, wa), name_a = specs[names[0]], names[0]
        if len(names) == 1:

            @functools.wraps(fn)
            def one(*args, **kw):
                if not args:
                    return fn(**kw) if name_a not in kw else one(kw.pop(name_a), **kw)
                return fn(_operand(op, name_a, args[0], ta, wa), *args[1:], **kw)

            return one
        (tb, wb), name_b = specs[names[1]], names[1]

        @functools.wraps(fn)
        def two(*args, **kw):
            if len(args) < 2:  # operands given by name
                if any(n not in kw for n in names[len(args):]):
                    return fn(*args, **kw)  # Python's own error for a missing argument
                return two(*args, *(kw.pop(n) for n in names[len(args):]), **kw)
            a, b = _operand(op, name_a, args[0], ta, wa), _operand(op, name_b, args[1], tb, wb)
            rest = args[2:]
            if type(a) is Tensor is type(b) and (a.dtype != b.dtype or a.device != b.device):  # torch promotes some
                _mismatch(op, names, a, b)
            try:
                return fn(a, b, *rest, **kw)
            except (RuntimeError, ValueError):  # torch's refusal, or an inner operation's check
                _diagnose(op, names, (a, b), (ta, tb))
                raise

        return two

    return wrap
