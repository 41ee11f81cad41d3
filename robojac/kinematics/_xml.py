"""XML with line numbers and checked number attributes, shared by the URDF and MJCF readers.

Each helper takes the reader's error class, so a bad file raises that reader's error with a
``file:line`` prefix.
"""

from __future__ import annotations

import math
from xml.etree import ElementTree as ET
from xml.parsers import expat

__all__ = ["parse_xml", "number", "numbers", "ABSURD"]

ABSURD = 1e6  # no robot description holds a length, angle, limit or mimic factor this large


def parse_xml(text: str, name: str, error: type[Exception], comments: bool = False):
    """ElementTree elements plus the line each starts on (expat feeds a TreeBuilder); with
    ``comments`` the comments are kept in the tree (for writing the file back)."""
    builder = ET.TreeBuilder(insert_comments=comments, insert_pis=comments)
    lines: dict[ET.Element, int] = {}
    parser = expat.ParserCreate()
    parser.buffer_text = True  # one data callback per text run, not per line

    def start(tag, attrs):
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    if comments:
        parser.CommentHandler = builder.comment
    try:
        parser.Parse(text, True)
    except expat.ExpatError as e:
        raise error(f"{name}:{e.lineno}: not well-formed XML ({expat.errors.messages[e.code]})") from None
    return builder.close(), lines


def _checked(v: float, attr: str, raw: str, where: str, allow_inf: bool, error: type[Exception]) -> float:
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or (math.isfinite(v) and abs(v) > ABSURD):
        allowed = "finite numbers" if not allow_inf else "numbers (or inf)"
        raise error(f"{where}: {attr}={raw!r}: expected {allowed} of magnitude at most {ABSURD:g}")
    return v


def numbers(raw: str | None, attr: str, n: int, default, where: str, error: type[Exception]) -> tuple[float, ...]:
    """``n`` finite numbers of an attribute's text ``raw`` (``default`` where it is absent)."""
    if raw is None:
        return default
    try:
        vals = tuple(float(v) for v in raw.split())
    except ValueError:
        raise error(f"{where}: {attr}={raw!r} is not {n} numbers") from None
    if len(vals) != n:
        raise error(f"{where}: {attr}={raw!r} must be {n} finite numbers")
    return tuple(_checked(v, attr, raw, where, False, error) for v in vals)


def number(raw: str | None, attr: str, default: float, where: str, error: type[Exception], *,
           allow_inf: bool = False) -> float:
    """One number attribute: NaN and absurd magnitudes are refused, infinity only where allowed."""
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise error(f"{where}: {attr}={raw!r} is not a number") from None
    return _checked(v, attr, raw, where, allow_inf, error)
