"""Half precisions.

torch factors and decomposes nothing in ``float16`` or ``bfloat16`` (no Cholesky, LU or SVD, on
the CPU or a GPU).  The solvers that take measured data (``ik.solve``, the registrations and
odometry of ``icp``, the hand-eye calibrations) work on such data in a wider precision and give
their answers back in the data's dtype; the engine (``optim.Variable``) and
``posegraph.optimize`` refuse it, naming the argument (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["PRECISIONS", "working_dtype", "in_dtype", "spacing"]

PRECISIONS = (torch.float32, torch.float64)  # what torch factors in: the solvers' own dtypes


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """``dtype`` itself where torch solves in it (:data:`PRECISIONS`), else ``float32`` (the
    half precisions)."""
    return dtype if dtype in PRECISIONS else torch.float32


def spacing(magnitude: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The gap between neighbouring numbers of ``dtype`` at ``magnitude`` (a float64 tensor):
    what a coordinate that far from the origin is rounded to (float32 4,000 km out: 0.25 m)."""
    return torch.finfo(dtype).eps * torch.exp2(torch.floor(torch.log2(magnitude.clamp_min(torch.finfo(dtype).tiny))))


def in_dtype(result, dtype: torch.dtype):
    """A result dataclass with every floating-point tensor in it (LieTensors, nested results such
    as a history, and the results in a dict, such as multiway's pairs) in ``dtype``; flags,
    counts, reasons and other objects (a pose graph) as they are."""
    return dataclasses.replace(result, **{f.name: _in(getattr(result, f.name), dtype)
                                          for f in dataclasses.fields(result)})


def _in(v, dtype: torch.dtype):
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.to(dtype)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return in_dtype(v, dtype)
    if isinstance(v, dict):
        return {k: _in(x, dtype) for k, x in v.items()}
    return v
