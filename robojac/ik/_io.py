"""IK targets from a text file: one target per line, ``x y z`` or ``x y z qx qy qz qw``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._files import as_path, read_text

__all__ = ["read_targets"]


def read_targets(path) -> Tensor:
    """``(N, 3)`` positions or ``(N, 7)`` poses ``[t, qx, qy, qz, qw]`` (float64) from a text file.

    Blank lines and ``#`` comments are skipped; numbers may be separated by spaces or commas.
    Every line must have the same count (3 or 7); quaternions must be unit length (to 1e-6,
    then normalised).  A line that breaks this raises a ``ValueError`` naming the file and line.
    """
    path = as_path(path, "targets file")
    rows, width = [], None
    for no, raw in enumerate(read_text(path, "targets file").splitlines(), 1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        try:
            vals = [float(v) for v in line.split()]
        except ValueError:
            raise ValueError(f"{path}:{no}: expected numbers, got {raw.strip()!r}") from None
        if len(vals) not in (3, 7):
            raise ValueError(f"{path}:{no}: expected 3 numbers (x y z) or 7 (x y z qx qy qz qw), got {len(vals)}")
        if width is not None and len(vals) != width:
            raise ValueError(f"{path}:{no}: expected {width} numbers like the lines before, got {len(vals)}")
        if not all(math.isfinite(v) for v in vals):
            raise ValueError(f"{path}:{no}: contains NaN or infinite values")
        if len(vals) == 7:
            norm = math.sqrt(sum(v * v for v in vals[3:]))
            if abs(norm - 1.0) > 1e-6:
                raise ValueError(f"{path}:{no}: quaternion (qx qy qz qw) has norm {norm:.6g}, expected unit length")
            vals[3:] = [v / norm for v in vals[3:]]
        width = len(vals)
        rows.append(vals)
    if not rows:
        raise ValueError(f"{path}: no targets (expected lines of 3 or 7 numbers)")
    return torch.tensor(rows, dtype=torch.float64, device="cpu")
