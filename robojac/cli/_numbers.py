"""argparse types for numeric options: a value out of range is refused by argparse, naming the
option (``argument --kernel-scale: expected a finite number > 0, got -1``, exit code 2), rather
than by the library under a config field's name, or, where nothing checked it, not at all."""

from __future__ import annotations

import argparse
import math


def real(*, above: float | None = None, minimum: float | None = None, maximum: float | None = None):
    """A finite float, ``> above``, ``>= minimum`` and ``<= maximum`` where given."""
    bounds = [f"> {above:g}" if above is not None else "", f">= {minimum:g}" if minimum is not None else "",
              f"<= {maximum:g}" if maximum is not None else ""]
    expected = " and ".join(b for b in bounds if b)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and (above is None or value > above) and (minimum is None or value >= minimum)
                and (maximum is None or value <= maximum)):
            raise argparse.ArgumentTypeError(f"expected a finite number{' ' + expected if expected else ''}, got {text}")
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
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
        return value

    parse.__name__ = "integer"
    return parse
