"""Linear solvers for the normal equations ``H x = b`` of sparse least squares.

* :class:`SparseLDL` -- a sparse LDL^T factorization on the CPU (QDLDL with an AMD fill-reducing
  ordering).  The ordering and symbolic analysis are done once; each later iteration with the
  same sparsity pattern only refactors numerically.  When the factor is dense (heavy fill: many
  flops per column), SuperLU, whose supernodes run dense kernels, factors instead.
* :func:`conjugate_gradient` -- block-Jacobi preconditioned CG in torch (CPU or GPU): the GPU path.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

__all__ = ["SparseLDL", "conjugate_gradient", "block_jacobi_preconditioner"]


SUPERNODAL_FLOPS = 5e7  # sum of squared column counts of L above which SuperLU factors faster


class SparseLDL:
    """Factor a symmetric positive definite CSR matrix (torch or scipy); refactor with new values.

    ``SparseLDL(H, block)`` orders and factors; ``refactor(H)`` reuses the pattern; ``solve(b)``.

    QDLDL factors column by column with scalar operations: fast for light fill (2D graphs,
    trajectories with local loops) and slow when the factor is dense, where a supernodal
    factorization runs dense kernels.  The work a factor needs (``flops``: the sum of squared
    column counts of ``L``) decides: above :data:`SUPERNODAL_FLOPS`, SuperLU
    (``scipy.sparse.linalg.splu``, no pivoting) factors instead.  With ``block > 1`` (``block x
    block`` blocks, as in a pose graph's normal equations) the fill estimate comes from an AMD
    ordering of the block pattern before any numeric work (QDLDL on a small SPD matrix with that
    pattern), and SuperLU's ordering is its own minimum degree on that pattern
    (:func:`_block_mmd`); otherwise both come from QDLDL's first factor, and only later
    refactorizations switch.  On sphere2500's Gauss-Newton system (15k unknowns, 1.3M nonzeros
    in ``L``) SuperLU refactors in ~106 ms against QDLDL's ~180; on parking-garage (0.4M)
    QDLDL stays (10 against 25-28 ms).
    """

    def __init__(self, H, block: int = 1):
        try:
            import qdldl  # noqa: F401
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ImportError("SparseLDL needs the package 'qdldl' (pip install qdldl)") from e
        crow, col, values, n = _csr_parts(H)
        rows = np.repeat(np.arange(n), np.diff(crow))
        keep = col <= rows  # lower triangle of a symmetric CSR == upper triangle read as CSC
        self._keep = keep
        self._diag = np.flatnonzero(col == rows)
        present = np.bincount(rows[self._diag], minlength=n)
        if (present == 0).any():
            raise ValueError(f"H: not positive definite: no diagonal entry in row {int(np.argmin(present))}")
        if (present > 1).any():  # duplicate entries, summed by the factorization: checked by it alone
            self._diag = None
        self._crow = np.concatenate(([0], np.cumsum(np.bincount(rows[keep], minlength=n)))).astype(np.int64)
        self._col = col[keep]
        self.n = n
        self._solver, self._lu, self._perm, self._full, self._M = None, None, None, None, None
        self._check_diagonal(values)
        if block > 1 and n % block == 0:  # decide before any numeric work
            pattern = _block_pattern(crow, col, n, block)
            self.flops = _block_flops(pattern, block)
            if self.flops > SUPERNODAL_FLOPS:
                self._supernodal(_block_mmd(pattern, block), crow, col)
                if self._factor_lu(values):
                    return
            self._factor_qdldl(values)
            return
        self._factor_qdldl(values)  # decide from QDLDL's factor, for the refactorizations
        L, _, perm = self._solver.factors()
        counts = np.diff(L.indptr).astype(np.float64) + 1.0
        self.flops = float((counts * counts).sum())
        if self.flops > SUPERNODAL_FLOPS:
            self._supernodal(np.asarray(perm, dtype=np.int64), crow, col)

    def _supernodal(self, perm: np.ndarray, crow: np.ndarray, col: np.ndarray) -> None:
        """Prepare SuperLU refactorizations on the ordering ``perm``: the permuted full matrix
        ``P H P^T`` as CSC, whose values are ``H``'s in a fixed order."""
        n = self.n
        self._perm = perm
        where = sp.csr_matrix((np.arange(1, len(col) + 1, dtype=np.float64), col, crow), shape=(n, n))
        A = where[perm][:, perm].tocsc()
        A.sort_indices()
        self._full = (A.indptr, A.indices, A.data.astype(np.int64) - 1)

    def _check_diagonal(self, values: np.ndarray) -> None:
        """A positive definite matrix has a positive diagonal.  Checked before each numeric
        factorization because QDLDL's refactorization does not report a zero pivot: it stops at
        that column and leaves the rest of the previous factor, whose solves are finite and
        wrong (a robust kernel that gives every edge of a pose zero weight makes such a row)."""
        if self._diag is None:
            return
        d = values[self._diag]
        bad = np.flatnonzero(~(d > 0))  # zero, negative or NaN
        if len(bad):
            raise ValueError(f"H: not positive definite: diagonal entry {int(bad[0])} is {float(d[bad[0]]):g} "
                             f"({len(bad)} such entries)")

    def _factor_lu(self, values: np.ndarray) -> bool:
        from scipy.sparse.linalg import splu

        indptr, indices, src = self._full
        A = sp.csc_matrix((np.asarray(values, dtype=np.float64)[src], indices, indptr), shape=(self.n, self.n))
        try:
            self._lu = splu(A, permc_spec="NATURAL", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
            return True
        except RuntimeError:  # an exactly singular pivot: let QDLDL report it as it always has
            self._lu = None
            return False

    def _factor_qdldl(self, values: np.ndarray) -> None:
        import qdldl

        data = np.ascontiguousarray(values[self._keep], dtype=np.float64)
        if self._solver is None:
            self._M = sp.csc_matrix((data, self._col, self._crow), shape=(self.n, self.n))
            self._solver = qdldl.Solver(self._M, upper=True)
        else:  # the same pattern: new values into the matrix already built (scipy's checks cost ~40 us)
            self._M.data = data
            self._solver.update(self._M, upper=True)

    def refactor(self, H) -> None:
        """Numeric refactorization for new values on the same sparsity pattern."""
        _, _, values, _ = _csr_parts(H)
        self._check_diagonal(values)
        if self._full is not None and self._factor_lu(values):
            return
        self._factor_qdldl(values)

    def solve(self, b: Tensor) -> Tensor:
        rhs = np.ascontiguousarray(b.detach().cpu().double().numpy())
        if self._lu is not None:
            x = np.empty_like(rhs)
            x[self._perm] = self._lu.solve(rhs[self._perm])
        else:
            x = self._solver.solve(rhs)
        return torch.from_numpy(np.asarray(x)).to(device=b.device, dtype=b.dtype)


def _block_pattern(crow: np.ndarray, col: np.ndarray, n: int, block: int) -> sp.csc_matrix:
    """The ``block x block`` pattern of a CSR matrix as a diagonally dominant SPD matrix of
    ``n / block`` rows (the orderings work on it: 36 times fewer entries than the scalars)."""
    nb = n // block
    # each block is read off its first entry (blocks stored dense, as block Jacobians' normal
    # equations are; a block stored without it only makes the ordering worse, never wrong)
    lo, hi = crow[0:n:block], crow[1 : n + 1 : block]  # the first row of each block row
    counts = hi - lo
    entries = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    first = col[entries] % block == 0
    br, bc = np.repeat(np.arange(nb), counts)[first], col[entries][first] // block
    deg = np.bincount(br, minlength=nb).astype(np.float64)  # blocks per block row, diagonal included
    return sp.csc_matrix((np.where(br == bc, deg[br] + 1.0, -1.0), (br, bc)), shape=(nb, nb))


def _block_flops(pattern: sp.csc_matrix, block: int) -> float:
    """The flops estimate of the scalar factor under an AMD ordering of the block pattern
    (QDLDL's, on its upper triangle): each block column of ``c`` blocks is ``block`` scalar
    columns of about ``block * c`` entries."""
    import qdldl

    L, _, _ = qdldl.Solver(sp.triu(pattern, format="csc"), upper=True).factors()
    c = np.diff(L.indptr).astype(np.float64) + 1.0
    return float(block * ((block * c) ** 2).sum())


def _block_mmd(pattern: sp.csc_matrix, block: int) -> np.ndarray:
    """SuperLU's own minimum-degree ordering (``MMD_AT_PLUS_A``) of the block pattern, expanded to
    scalars: the ordering its factorization runs fastest on.  On sphere2500's system it leaves
    2.69M nonzeros in the factors against AMD's 3.06M and refactors in 106 against 137 ms (the
    big-noise sphere: 197 against 234 ms; ``benchmarks/posegraph.py --orderings``); SuperLU
    ordering the scalars itself reaches the same factor, the ordering redone each time."""
    from scipy.sparse.linalg import splu

    lu = splu(pattern, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options=dict(SymmetricMode=True))
    order = np.argsort(lu.perm_c)  # A Pc: column k of the product is column order[k]
    return (order[:, None] * block + np.arange(block)).reshape(-1)


def _csr_parts(H):
    if isinstance(H, Tensor):
        if H.layout != torch.sparse_csr:
            raise ValueError(f"H: expected a sparse CSR tensor, got layout {H.layout}")
        return (H.crow_indices().cpu().numpy(), H.col_indices().cpu().numpy(),
                H.values().detach().cpu().double().numpy(), H.shape[0])
    H = sp.csr_matrix(H)
    return H.indptr, H.indices, H.data, H.shape[0]


def block_jacobi_preconditioner(H: Tensor, block: int) -> Tensor:
    """Inverses of the ``block x block`` diagonal blocks of a CSR ``H``: ``(n / block, block, block)``."""
    n = H.shape[0]
    crow, col, val = H.crow_indices(), H.col_indices(), H.values()
    rows = torch.repeat_interleave(torch.arange(n, device=val.device), crow[1:] - crow[:-1])
    diag = (rows // block) == (col // block)
    blocks = torch.zeros(n // block, block, block, dtype=val.dtype, device=val.device)
    blocks[rows[diag] // block, rows[diag] % block, col[diag] % block] = val[diag]
    eye = torch.eye(block, dtype=val.dtype, device=val.device)
    return torch.linalg.inv(blocks + 1e-12 * eye * blocks.diagonal(dim1=-2, dim2=-1).abs().amax(-1, keepdim=True)[..., None])


def conjugate_gradient(H: Tensor, b: Tensor, *, block: int = 1, tol: float = 1e-10, max_iter: int = 1000,
                       x0: Tensor | None = None) -> tuple[Tensor, int]:
    """Solve ``H x = b`` (``H`` sparse CSR SPD, any device) by block-Jacobi preconditioned CG.

    Returns ``(x, iterations)``; stops when ``|r| <= tol |b|``.
    """
    Minv = block_jacobi_preconditioner(H, block)

    def precond(r):
        return (Minv @ r.view(-1, block, 1)).view(-1)

    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - H @ x if x0 is not None else b.clone()
    z = precond(r)
    p = z.clone()
    rz = torch.dot(r, z)
    bnorm = torch.linalg.vector_norm(b)
    if bnorm == 0:
        return x, 0
    for it in range(1, max_iter + 1):
        Hp = H @ p
        alpha = rz / torch.dot(p, Hp)
        x = x + alpha * p
        r = r - alpha * Hp
        if torch.linalg.vector_norm(r) <= tol * bnorm:
            return x, it
        z = precond(r)
        rz_new = torch.dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, max_iter
