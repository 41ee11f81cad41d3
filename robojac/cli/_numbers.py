"""argparse types for numeric options: a value out of range is refused by argparse, naming the
option (``argument --kernel-scale: expected a finite number > 0, got -1.0``, exit code 2), rather
than by the library under a config field's name, or, where nothing checked it, not at all.  The
ranges and their wording are the configs' own (:mod:`robojac._config`)."""

from __future__ import annotations

import argparse

from .._config import int_problem, real_problem


def real(*, positive: bool = False, maximum: float | None = None):
    """A finite float, ``> 0`` when ``positive`` else ``>= 0``, at most ``maximum`` where given."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        problem = real_problem(value, positive=positive, maximum=maximum)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = "number"
    return parse


def integer(*, minimum: int):
    """An integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        problem = int_problem(value, minimum=minimum)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = "integer"
    return parse
