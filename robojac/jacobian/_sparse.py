"""Block-sparse Jacobians of residual models whose factors each touch a few variables.

A residual model (a pose graph, a bundle adjustment, ICP over many poses) is ``F`` factors;
factor ``f`` reads the ``K`` variables ``index[f]`` and returns ``r`` numbers.  Its Jacobian is
``F * K`` dense ``(r, t)`` blocks (``t`` the variables' tangent dimension), which this module
computes (analytically where the residual offers it, else by forward-mode autodiff over all
factors at once) and assembles into a sparse matrix.  The sparsity pattern depends only on
``index``: :class:`BlockSparsePattern` computes it once and maps every block entry straight to
its CSR slot, so each later assembly is one ``index_add_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pypose as pp
import torch
from torch import Tensor

from .._config import index_tensor
from .._csr import csr_tensor
from ..lie import GroupSpec, group_spec, raw_autograd, retract_first_order

__all__ = ["BlockLayout", "BlockSparsePattern", "BlockSparseJacobian", "block_sparse_jacobian"]


def _csr_map(rows: np.ndarray, cols: np.ndarray, num_rows: int, num_cols: int):
    """CSR structure of entries (rows, cols) and each entry's slot (duplicates share one).

    Entries with a negative row or column (a variable held constant) get the slot ``nnz``,
    one past the end: values written there are dropped.
    """
    keep = (rows >= 0) & (cols >= 0)
    keys = rows[keep].astype(np.int64) * num_cols + cols[keep].astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    slot = np.full(rows.shape, len(uniq), dtype=np.int64)
    slot[keep] = inverse
    u_rows = uniq // num_cols
    crow = np.zeros(num_rows + 1, dtype=np.int64)
    np.add.at(crow, u_rows + 1, 1)
    return np.cumsum(crow), (uniq % num_cols).astype(np.int64), slot


class BlockLayout:
    """The CSR layout of a symmetric block matrix (a ``J^T J``) whose blocks pair variable
    entries of any tangent sizes, worked out on blocks and only then expanded to numbers (a
    unique over the ~``t^2`` times more numbers took parking-garage's setup 25 ms, this 11 ms, of a
    ~200 ms solve).

    ``rows``/``cols`` ``(P,)``: the entries of each block product, duplicates summed; ``dims``
    ``(E,)``: each entry's tangent size (its coordinates follow the previous entries').  Gives
    ``crow``/``col`` and, through :meth:`slots`, where each product's numbers land among the
    values.  Every entry's diagonal block should be among the pairs (:attr:`diagonal` needs it).
    """

    def __init__(self, rows: Tensor, cols: Tensor, dims: Tensor):
        dev, E = dims.device, dims.numel()
        self.dims, self.num_entries = dims, E
        lo, hi = (int(dims.min()), int(dims.max())) if E else (0, 1)
        self.uniform = lo if lo == hi else None
        self.offsets = torch.cumsum(dims, 0) - dims  # each entry's first coordinate
        keys, self.which = torch.unique(rows * E + cols, return_inverse=True)  # by block row, then column
        self.I, self.J = keys // E, keys % E
        self.width = torch.zeros(E, dtype=torch.long, device=dev).index_add_(0, self.I, dims[self.J])
        row_start = torch.cumsum(dims * self.width, 0) - dims * self.width  # block row I's first value
        col_in_row = torch.cumsum(dims[self.J], 0) - dims[self.J]
        count = torch.bincount(self.I, minlength=E)
        first = torch.cumsum(count, 0) - count  # block row I's first block
        self.block_at = row_start[self.I] + col_in_row - col_in_row[first[self.I]]  # each block's (0, 0)
        n = int(dims.sum())
        self.crow = torch.zeros(n + 1, dtype=torch.long, device=dev)
        self.crow[1:] = torch.cumsum(torch.repeat_interleave(self.width, dims), 0)
        self.col = torch.empty(int(self.crow[-1]), dtype=torch.long, device=dev)
        for sel, dr, dc in self._by_shape(torch.arange(len(keys), device=dev)):
            at = self._table(sel, dr, dc)
            c = torch.arange(dc, device=dev)
            self.col[at.reshape(-1)] = (self.offsets[self.J[sel]][:, None, None] + c).expand_as(at).reshape(-1)

    def _table(self, blocks: Tensor, dr: int, dc: int) -> Tensor:
        """``(len(blocks), dr, dc)``: the value slot of every number of these blocks."""
        a = torch.arange(dr, device=blocks.device)[None, :, None]
        c = torch.arange(dc, device=blocks.device)[None, None, :]
        return self.block_at[blocks][:, None, None] + a * self.width[self.I[blocks]][:, None, None] + c

    def block_slots(self, blocks: Tensor) -> Tensor:
        """``(k,)``: the value slots of every number of the blocks ``blocks`` (indices among the
        unique blocks, e.g. ``nonzero(mask[I] | mask[J])``)."""
        return torch.cat([self.col.new_zeros(0)] + [self._table(sel, dr, dc).reshape(-1)
                                                    for sel, dr, dc in self._by_shape(blocks)])

    def _by_shape(self, blocks: Tensor):
        """``(blocks of one shape, rows, cols)`` for each block shape among ``blocks``."""
        dims = self.dims
        if self.uniform is not None:  # one tangent size (a pose graph): one shape, nothing to sort
            yield blocks, self.uniform, self.uniform
            return
        top = int(dims.max()) + 1 if dims.numel() else 1
        key = dims[self.I[blocks]] * top + dims[self.J[blocks]]
        for k in torch.unique(key).tolist():
            yield blocks[key == k], k // top, k % top

    def slots(self, start: int, count: int, dr: int, dc: int) -> Tensor:
        """``(count, dr, dc)``: where the products of pairs ``start .. start + count`` land."""
        return self._table(self.which[start : start + count], dr, dc)

    def diagonal(self, start: int) -> Tensor:
        """``(n,)``: every diagonal number's value slot, in coordinate order, given that pairs
        ``start ..`` are the entries' diagonal blocks in entry order."""
        dims = self.dims
        a = torch.arange(int(dims.sum()), device=dims.device) - torch.repeat_interleave(self.offsets, dims)
        at = self.block_at[self.which[start : start + self.num_entries]]
        return torch.repeat_interleave(at, dims) + a * (torch.repeat_interleave(self.width, dims) + 1)


@dataclass(frozen=True, eq=False)
class BlockSparsePattern:
    """Where the blocks of a factor graph's Jacobian (and of ``J^T J``) sit; reusable.

    ``index``: ``(F, K)`` variable of each block, ``-1`` for a variable held constant (its
    block gets no columns); ``num_variables`` ``N``; ``residual_dim`` ``r``; ``tangent_dim``
    ``t``.  The Jacobian is ``(F * r, N * t)``.  ``num_factors`` ``F`` and ``arity`` ``K`` are
    read from the index.
    """

    index: Tensor
    num_variables: int
    residual_dim: int
    tangent_dim: int
    num_factors: int = field(init=False)
    arity: int = field(init=False)

    def __post_init__(self):
        idx = self.index
        if not isinstance(idx, Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"index: expected an integer tensor (factors, variables per factor), got "
                             f"{getattr(idx, 'dtype', type(idx).__name__)} {tuple(getattr(idx, 'shape', ()))}")
        if idx.numel() and (idx.min() < -1 or idx.max() >= self.num_variables):
            raise ValueError(f"index: entries must lie in [0, {self.num_variables}) (or be -1 for a constant), "
                             f"got [{int(idx.min())}, {int(idx.max())}]")
        object.__setattr__(self, "num_factors", idx.shape[0])  # frozen: set once, here
        object.__setattr__(self, "arity", idx.shape[1])

    @classmethod
    def from_index(cls, index: Tensor, num_variables: int, residual_dim: int, tangent_dim: int) -> BlockSparsePattern:
        return cls(index.long(), int(num_variables), int(residual_dim), int(tangent_dim))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_factors * self.residual_dim, self.num_variables * self.tangent_dim)

    @cached_property
    def _jacobian_csr(self):
        F, r, t = self.num_factors, self.residual_dim, self.tangent_dim
        idx = self.index.cpu().numpy()
        rows = (np.arange(F)[:, None, None, None] * r + np.arange(r)[None, None, :, None])
        cols = np.where(idx[:, :, None, None] >= 0, idx[:, :, None, None] * t + np.arange(t)[None, None, None, :], -1)
        rows, cols = np.broadcast_arrays(rows, cols)  # (F, K, r, t)
        return self._to_device(_csr_map(rows.ravel(), cols.ravel(), F * r, self.num_variables * t))

    @cached_property
    def _hessian_csr(self):
        """CSR of ``J^T J``: the :class:`BlockLayout` of the factors' variable pairs, and each
        factor's ``(k, l)`` block's slots (a constant's: a slot past the end, dropped)."""
        F, K, t, N = self.num_factors, self.arity, self.tangent_dim, self.num_variables
        idx = self.index.long()
        bi = idx[:, :, None].expand(F, K, K).reshape(-1)
        bj = idx[:, None, :].expand(F, K, K).reshape(-1)
        keep = (bi >= 0) & (bj >= 0)
        layout = BlockLayout(bi[keep], bj[keep], torch.full((N,), t, dtype=torch.long, device=idx.device))
        nnz = layout.col.numel()
        table = torch.full((F * K * K, t, t), nnz, dtype=torch.long, device=idx.device)
        table[keep] = layout.slots(0, int(keep.sum()), t, t)
        return layout.crow, layout.col, table.reshape(-1)

    def _to_device(self, arrays):
        dev = self.index.device
        return tuple(torch.from_numpy(a).to(dev) for a in arrays)

    def jacobian_csr(self, blocks: Tensor) -> Tensor:
        """Torch sparse CSR ``(F * r, N * t)`` from blocks ``(F, K, r, t)``."""
        crow, col, slot = self._jacobian_csr
        values = blocks.new_zeros(col.shape[0] + 1).index_add_(0, slot, blocks.reshape(-1))[:-1]
        return csr_tensor(crow, col, values, self.shape)

    def hessian_csr(self, products: Tensor) -> Tensor:
        """Torch sparse CSR ``(N * t, N * t)`` from per-factor products ``(F, K, K, t, t)``."""
        crow, col, slot = self._hessian_csr
        values = products.new_zeros(col.shape[0] + 1).index_add_(0, slot, products.reshape(-1))[:-1]
        n = self.num_variables * self.tangent_dim
        return csr_tensor(crow, col, values, (n, n))


@dataclass(frozen=True)
class BlockSparseJacobian:
    """A factor graph's Jacobian as blocks ``(F, K, r, t)`` plus their :class:`BlockSparsePattern`.

    Rows ``f * r + a`` (factor ``f``, residual entry ``a``), columns ``i * t + c`` (variable
    ``i``, tangent entry ``c``).  Products with vectors never build the matrix.
    """

    blocks: Tensor
    pattern: BlockSparsePattern

    @property
    def shape(self) -> tuple[int, int]:
        return self.pattern.shape

    def to_sparse_csr(self) -> Tensor:
        return self.pattern.jacobian_csr(self.blocks)

    def to_dense(self) -> Tensor:
        return self.to_sparse_csr().to_dense()

    def to_scipy(self):
        """A ``scipy.sparse.csr_matrix`` (CPU float64 copy) of the Jacobian."""
        import scipy.sparse as sp

        J = self.to_sparse_csr()
        data = J.values().detach().cpu().double().numpy()
        return sp.csr_matrix((data, J.col_indices().cpu().numpy(), J.crow_indices().cpu().numpy()), shape=self.shape)

    def matvec(self, v: Tensor) -> Tensor:
        """``J v`` for ``v`` of shape ``(N, t)`` or ``(N * t,)``; returns ``(F, r)``."""
        N, t = self.pattern.num_variables, self.pattern.tangent_dim
        v = _as_blocks(v, (N, t), "v")
        idx = self.pattern.index
        gathered = v[idx.clamp_min(0)] * (idx >= 0).unsqueeze(-1).to(v.dtype)  # (F, K, t)
        return (self.blocks @ gathered.unsqueeze(-1)).squeeze(-1).sum(1)

    def rmatvec(self, u: Tensor) -> Tensor:
        """``J^T u`` for ``u`` of shape ``(F, r)`` or ``(F * r,)``; returns ``(N, t)``."""
        F, r = self.pattern.num_factors, self.pattern.residual_dim
        u = _as_blocks(u, (F, r), "u")
        contrib = (self.blocks.transpose(-1, -2) @ u[:, None, :, None]).squeeze(-1)  # (F, K, t)
        idx = self.pattern.index.reshape(-1)
        out = u.new_zeros(self.pattern.num_variables + 1, self.pattern.tangent_dim)
        target = torch.where(idx >= 0, idx, self.pattern.num_variables)  # constants: a dropped row
        return out.index_add_(0, target, contrib.reshape(-1, self.pattern.tangent_dim))[:-1]

    def normal_equations(self, residual: Tensor | None = None, weights: Tensor | None = None, *,
                         opposite: bool = False):
        """``(H, g)``: ``H = J^T W J`` as a sparse CSR ``(N t, N t)`` and ``g = J^T W r`` ``(N, t)``.

        ``weights`` ``(F,)`` scale each factor (robust-kernel weights); ``g`` is ``None``
        without a ``residual``.  ``opposite=True`` promises two blocks per factor with
        ``J_1 = -J_2`` (a between factor ``Log(Z^-1 X_1^-1 X_2)`` under left perturbations):
        the four ``t x t`` products are then ``+-J_2^T W J_2``, one product per factor instead of four.
        """
        A = self.blocks
        if weights is not None:
            if weights.shape != (self.pattern.num_factors,):
                raise ValueError(f"weights: expected shape ({self.pattern.num_factors},), got {tuple(weights.shape)}")
            A_w = A * weights[:, None, None, None]
        else:
            A_w = A
        if opposite:
            if A.shape[1] != 2:
                raise ValueError(f"opposite: expected factors of two blocks, got {A.shape[1]}")
            P = A_w[:, 1].transpose(-1, -2) @ A[:, 1]  # (F, t, t)
            products = torch.stack((P, -P, -P, P), 1).unflatten(1, (2, 2))
        else:
            products = torch.einsum("fkra,flrb->fklab", A_w, A)
        H = self.pattern.hessian_csr(products)
        g = None
        if residual is not None:
            r = residual if weights is None else residual * weights[:, None]
            g = self.rmatvec(r)
        return H, g


def _as_blocks(x: Tensor, shape: tuple[int, int], name: str) -> Tensor:
    if x.shape == shape:
        return x
    if x.shape == (shape[0] * shape[1],):
        return x.view(shape)
    raise ValueError(f"{name}: expected shape {shape} or ({shape[0] * shape[1]},), got {tuple(x.shape)}")


def block_sparse_jacobian(
    residual,
    variables: Tensor,
    index: Tensor,
    *,
    data: tuple = (),
    pattern: BlockSparsePattern | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, BlockSparseJacobian]:
    """Residuals ``(F, r)`` and the block-sparse Jacobian of a factor graph, in one call.

    ``residual(X_1, ..., X_K, *data)`` evaluates all ``F`` factors at once, ``X_k`` being
    ``variables[index[:, k]]`` (LieTensors of the variables' group, or plain tensors) and each
    ``data`` tensor having leading dim ``F``.  If ``residual`` has a
    ``value_and_jacobians(X_1, ..., X_K, *data)`` method (the analytic residuals in
    :mod:`robojac.jacobian`), it is used; otherwise the blocks come from ``K * t``
    forward-mode passes over all factors (``chunk_size`` of them at once).  Variables of a
    Lie group get tangent columns.  Pass the ``pattern`` of an earlier call with the same
    ``index`` to skip recomputing it.
    """
    if not isinstance(variables, Tensor):
        raise TypeError(f"variables: expected a tensor or LieTensor (N, dim), got {type(variables).__name__}")
    if variables.dim() != 2:
        raise ValueError(f"variables: expected shape (N, dim), got {tuple(variables.shape)}")
    if not isinstance(index, Tensor) or index.dim() != 2:
        raise ValueError(f"index: expected an integer tensor (factors, variables per factor), got {getattr(index, 'shape', index)!r}")
    index = index_tensor(index, "index", index.device)
    spec = group_spec(variables.ltype) if isinstance(variables, pp.LieTensor) else None
    t = spec.tangent_dim if spec else variables.shape[-1]
    N = variables.shape[0]
    if index.numel() and (index.min() < 0 or index.max() >= N):
        raise ValueError(f"index: entries must lie in [0, {N}), got [{int(index.min())}, {int(index.max())}]")
    for i, d in enumerate(data):
        if not isinstance(d, Tensor) or d.shape[:1] != index.shape[:1]:
            raise ValueError(f"data[{i}]: expected a tensor with leading dim {index.shape[0]} (one per factor), got "
                             f"{tuple(d.shape) if isinstance(d, Tensor) else type(d).__name__}")
    raw = variables.as_subclass(Tensor) if isinstance(variables, pp.LieTensor) else variables
    gathered = [raw[index[:, k]] for k in range(index.shape[1])]
    if hasattr(residual, "value_and_jacobians"):
        args = [pp.LieTensor(g, ltype=variables.ltype) if spec else g for g in gathered]
        value, jacs = residual.value_and_jacobians(*args, *data)
        blocks = torch.stack(tuple(jacs), dim=1)
    else:
        value, blocks = _autodiff_blocks(residual, gathered, spec, variables, data, chunk_size)
    if value.dim() != 2 or value.shape[0] != index.shape[0]:
        raise ValueError(f"residual: expected an output of shape ({index.shape[0]}, r), got {tuple(value.shape)}")
    if pattern is None:
        pattern = BlockSparsePattern.from_index(index, variables.shape[0], value.shape[1], t)
    elif pattern.index.shape != index.shape or pattern.residual_dim != value.shape[1] or pattern.tangent_dim != t:
        raise ValueError("pattern: does not match this index, residual size or tangent size; build a new one")
    return value, BlockSparseJacobian(blocks, pattern)


def _autodiff_blocks(residual, gathered, spec: GroupSpec | None, variables, data, chunk_size):
    K = len(gathered)
    t = spec.tangent_dim if spec else gathered[0].shape[-1]
    if spec is not None:
        prims = tuple(g.new_zeros(g.shape[:-1] + (t,)) for g in gathered)
    else:
        prims = tuple(gathered)

    def func(*vs):
        args = []
        for g, v in zip(gathered, vs):
            args.append(pp.LieTensor(retract_first_order(g, v, spec), ltype=variables.ltype) if spec else v)
        out = residual(*args, *data)
        return out.as_subclass(Tensor) if isinstance(out, pp.LieTensor) else out

    def push(e):
        e = e.view(K, t)
        tangents = tuple(e[k].expand_as(p) for k, p in enumerate(prims))
        return torch.func.jvp(func, prims, tangents)[1]

    with torch.enable_grad(), raw_autograd():
        value = func(*prims).detach()
        eye = torch.eye(K * t, dtype=prims[0].dtype, device=prims[0].device)
        cols = torch.vmap(push, chunk_size=chunk_size)(eye)  # (K t, F, r)
    F, r = value.shape
    blocks = cols.view(K, t, F, r).permute(2, 0, 3, 1)  # (F, K, r, t)
    return value, blocks.contiguous()
