"""Per-sample Jacobians of modules whose leading batch dim holds independent problems.

A model with a batched parameter (``B`` poses, ``B`` joint vectors) and outputs ``(B, ...)``
where sample ``b``'s output depends only on sample ``b``'s slice has a block-diagonal
Jacobian.  Its ``B`` blocks ``(B, m, n)`` cost ``n`` forward passes over the whole batch (one
per column, the same unit tangent in every sample), or ``m`` reverse passes; never the dense
``(B*m, B*n)`` matrix that ``modjac`` builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..lie import raw_autograd
from ._modjac import model_function
from ._params import STRATEGIES, ColumnBlock, finite_jacobian

__all__ = ["PerSampleJacobian", "per_sample_modjac"]


@dataclass(frozen=True)
class PerSampleJacobian:
    """Value and per-sample Jacobian blocks of a batched model.

    ``value``: the model's output (a tensor, or a tuple of tensors), each ``(B, ...)``.
    ``jacobian``: ``(B, m, n)``, rows the flattened outputs of one sample (outputs
    concatenated in order), columns ``columns`` in order.  ``columns`` describes each
    parameter's columns per sample (``shape`` without the batch dim for per-sample ones).
    """

    value: Tensor | tuple[Tensor, ...]
    jacobian: Tensor
    columns: tuple[ColumnBlock, ...]
    shared: tuple[str, ...]

    def column_slice(self, name: str) -> slice:
        """Columns of the parameter ``name`` in ``jacobian``."""
        start = 0
        for block in self.columns:
            if block.name == name:
                return slice(start, start + block.numel)
            start += block.numel
        raise KeyError(f"{name!r} has no columns; columns: {[b.name for b in self.columns]}")


def per_sample_modjac(
    model: nn.Module,
    input=None,
    *,
    wrt: Iterable[str | nn.Parameter] | str | None = None,
    shared: Iterable[str] = (),
    strategy: str = "forward-mode",
    chunk_size: int | None = None,
    at: dict[str, Tensor] | None = None,
    allow_nan: bool = False,
    check_independent: bool = True,
) -> PerSampleJacobian:
    """Per-sample Jacobian blocks of ``model(*input)`` with respect to its parameters.

    Every chosen parameter (those requiring grad, or ``wrt``) is per-sample, its first
    dimension the batch ``B`` of the output, unless named in ``shared`` (then every sample's
    block holds all its columns).  Lie-group parameters get tangent columns as in
    :func:`~robojac.jacobian.modjac`.  ``strategy="reverse-mode"`` (``m`` passes) is allowed
    only without shared parameters.  The model must be written for ``torch.func`` (no
    data-dependent Python control flow on tensor values).  ``at`` takes the blocks at other
    values of the parameters, as :func:`~robojac.jacobian.modjac`'s does.  A block with NaN
    raises ``FloatingPointError``, unless ``allow_nan`` (a solver evaluating trial points, where
    a sample's NaN stops that sample alone: the samples are independent, so the others' blocks
    stay finite).  ``check_independent=False`` skips the probe that refuses a parameter coupling
    the samples (one forward-mode pass per parameter, a third of the time on 300 poses): for a
    solver linearizing one model again and again, after the first call has checked it.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    shared = tuple(shared)
    func, variables, blocks = model_function(model, input, wrt=wrt, at=at)
    names = [b.name for b in blocks]
    for s in shared:
        if s not in names:
            raise ValueError(f"shared: {s!r} is not among the differentiated parameters {names}")
    if strategy == "reverse-mode" and shared:
        raise ValueError("strategy='reverse-mode' sums over samples, so it cannot give shared-parameter columns; use 'forward-mode'")
    with torch.no_grad(), raw_autograd():
        value = func(*variables)
    outs = value if isinstance(value, tuple) else (value,)
    B = outs[0].shape[0] if outs[0].dim() else None
    if B is None or any(o.dim() == 0 or o.shape[0] != B for o in outs):
        raise ValueError(f"model output: expected tensors with a common leading batch dim, got shapes {[tuple(o.shape) for o in outs]}")
    columns = []
    for b in blocks:
        if b.name in shared:
            columns.append(b)
            continue
        if not b.shape or b.shape[0] != B:
            raise ValueError(
                f"parameter {b.name!r}: a per-sample parameter needs leading dim {B} (the output batch), "
                f"got shape {b.column_shape}; name it in shared= if it is common to all samples"
            )
        columns.append(ColumnBlock(b.name, b.shape[1:], b.dof, b.group))
    with torch.enable_grad(), raw_autograd():
        if check_independent:
            _check_independent(func, variables, blocks, shared, B)
        if strategy == "forward-mode":
            J = _forward(func, variables, blocks, columns, shared, B, chunk_size)
        else:
            J = _reverse(func, variables, outs, B, chunk_size)
    return PerSampleJacobian(value, finite_jacobian(J, True, allow_nan), tuple(columns), shared)


def _check_independent(func, variables, blocks, shared, B: int) -> None:
    """Refuse a "per-sample" parameter whose sample 0 moves other samples' outputs.

    One forward-mode pass per parameter with a random tangent in sample 0 alone; catches a
    shared parameter whose first dim merely equals ``B``, which would give wrong blocks.
    """
    if B < 2:
        return
    for i, b in enumerate(blocks):
        if b.name in shared:
            continue
        tangents = [torch.zeros_like(v) for v in variables]
        tangents[i][0] = torch.randn_like(variables[i][0])
        out = _flat_out(torch.func.jvp(func, variables, tuple(tangents))[1], B).detach()  # a check, not a result
        own, others = out[0].abs().max(), out[1:].abs().max()
        if others > 1e-6 * max(float(own), 1.0):
            raise ValueError(
                f"parameter {b.name!r}: changing its sample 0 changes other samples' outputs, so it is not "
                f"per-sample; name it in shared= (or use modjac for coupled problems)"
            )


def _flat_out(out, B: int) -> Tensor:
    outs = out if isinstance(out, tuple) else (out,)
    return torch.cat([o.reshape(B, -1) for o in outs], dim=1)


def _forward(func, variables, blocks, columns, shared, B, chunk_size) -> Tensor:
    sizes = [c.numel for c in columns]
    n = sum(sizes)

    def push(e):
        tangents, start = [], 0
        for v, b, c, size in zip(variables, blocks, columns, sizes):
            piece = e[start : start + size]
            start += size
            if b.name in shared:
                tangents.append(piece.view(v.shape))
            else:
                tangents.append(piece.view((1,) + v.shape[1:]).expand(v.shape))
        return _flat_out(torch.func.jvp(func, variables, tuple(tangents))[1], B)

    ref = variables[0]
    cols = torch.vmap(push, chunk_size=chunk_size)(torch.eye(n, dtype=ref.dtype, device=ref.device))
    return cols.permute(1, 2, 0)


def _reverse(func, variables, outs, B, chunk_size) -> Tensor:
    _, pull = torch.func.vjp(func, *variables)
    sizes = [o[0].numel() for o in outs]
    m = sum(sizes)

    def row(u):
        cots, start = [], 0
        for o, size in zip(outs, sizes):
            cots.append(u[start : start + size].view((1,) + o.shape[1:]).expand(o.shape))
            start += size
        grads = pull(tuple(cots) if len(outs) > 1 else cots[0])
        return torch.cat([g.reshape(B, -1) for g in grads], dim=1)

    ref = variables[0]
    rows = torch.vmap(row, chunk_size=chunk_size)(torch.eye(m, dtype=ref.dtype, device=ref.device))
    return rows.permute(1, 0, 2)
