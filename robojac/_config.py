"""Field checks for the config dataclasses: every field, by name, with what was expected.

A config that cannot describe a run (an infinite damping, a NaN tolerance, 2.5 iterations, a
negative restart count) is refused where it is built, never turned into a run that takes no step
and reports ``converged=True``.  And :func:`index_tensor`, the one check of index arguments
(factor and edge indices): integers, never floats truncated to them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["check_bool", "check_callable", "check_choice", "check_instance", "check_int", "check_real", "index_tensor",
           "int_problem", "real_problem"]


def int_problem(value, *, minimum: int, optional: bool = False) -> str | None:
    """What is wrong with ``value`` as an integer of at least ``minimum`` (``"expected ..., got
    ..."``), or ``None``: the one wording of :func:`check_int` and the command line's options."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return f"expected an integer >= {minimum}{' or None' if optional else ''}, got {value!r}"
    if value < minimum:
        return f"expected an integer >= {minimum}, got {value}"
    return None


def real_problem(value, *, positive: bool = False, maximum: float | None = None) -> str | None:
    """What is wrong with ``value`` as a finite real number, ``> 0`` when ``positive`` else
    ``>= 0`` (and at most ``maximum``), or ``None``: the one wording of :func:`check_real` and the
    command line's options."""
    bound = "> 0" if positive else ">= 0"
    if maximum is not None:
        bound += f" and <= {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"expected a finite number {bound}, got {value!r}"
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0) or (maximum is not None and v > maximum):
        return f"expected a finite number {bound}, got {value!r}"
    return None


def check_int(owner: str, name: str, value, *, minimum: int, optional: bool = False) -> None:
    """``value`` is an integer (not a bool or a float) of at least ``minimum`` (or ``None``)."""
    if optional and value is None:
        return
    problem = int_problem(value, minimum=minimum, optional=optional)
    if problem is not None:
        raise ValueError(f"{owner}.{name}: {problem}")


def check_real(owner: str, name: str, value, *, positive: bool = False, optional: bool = False,
               maximum: float | None = None) -> None:
    """``value`` is a finite real number, ``> 0`` when ``positive`` else ``>= 0`` (and at most
    ``maximum``), or ``None`` when ``optional``."""
    if optional and value is None:
        return
    problem = real_problem(value, positive=positive, maximum=maximum)
    if problem is not None:
        raise ValueError(f"{owner}.{name}: {problem}")


def check_choice(owner: str, name: str, value, allowed: Iterable) -> None:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{owner}.{name}: expected one of {allowed}, got {value!r}")


def check_bool(owner: str, name: str, value) -> None:
    """``value`` is ``True`` or ``False`` (not a truthy number or string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name}: expected True or False, got {value!r}")


def index_tensor(value, name: str, device=None):
    """``value`` as a ``long`` tensor of indices on ``device``; a float, complex or bool tensor
    (or list) of any entries is refused, naming ``name`` (``torch.long`` of 1.7 would read 1)."""
    import torch

    t = torch.as_tensor(value, device=device)
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise TypeError(f"{name}: expected integer indices, got dtype {t.dtype}")
    return t.long()


def check_instance(name: str, value, cls, expected: str) -> None:
    """``value`` is a ``cls`` (a class or a tuple of them); else a ``TypeError`` naming the
    argument, what was expected and what came (a tensor where a Chain goes, say)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")


def check_callable(name: str, value) -> None:
    """``value`` can be called (the function a Jacobian is taken of)."""
    if not callable(value):
        raise TypeError(f"{name}: expected a function to differentiate, got {type(value).__name__}")
