"""A batched multifrontal sparse Cholesky for block-structured SPD matrices (CPU or GPU, torch).

Normal equations over poses have dense ``t x t`` blocks.  A scalar LDL^T spends its time on one
nonzero at a time; this solver works on dense *fronts* and batches every front of a similar
size that can be eliminated at the same time:

Symbolic phase (once per sparsity pattern, numpy):

1. an approximate-minimum-degree ordering of the block graph (QDLDL's AMD) and the block
   structure of every column of ``L`` (QDLDL's factor of a matrix of that pattern, which its
   ordering already factors), relabelled in a postorder of the elimination tree.  This, and the
   supernodes' boundaries found in one vectorized pass, replaced column-by-column loops in
   Python with the same answer (the same fronts on every pose graph; the analysis of intel
   134 -> 94 ms, of kitti_00 289 -> 203 ms, one run side by side);
2. fundamental supernodes, and amalgamation of a child into its parent while few explicit
   zeros are added;
3. supernodes grouped by height in the supernodal tree (same height: independent) and, within
   a height, by front size; every index map (original entries into fronts, children's update
   matrices into parents, right-hand-side gathers) precomputed as flat index tensors.

Numeric phase (each factorization, torch): per group, one scatter of the original entries,
one gather + ``index_add_`` of the children's updates, then batched ``cholesky``,
``solve_triangular`` and ``matmul`` on the padded fronts.  Solves walk the same groups.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import depth_first_order
import torch
from torch import Tensor

from .._threads import torch_threads

__all__ = ["MultifrontalCholesky"]

# On the CPU, a group of fronts whose matrices are all smaller than this (columns, and rows below)
# is factored, solved and inverted on one torch thread.  MKL wakes the second thread for every
# matrix of a batched triangular solve or Cholesky factorization; with OMP_WAIT_POLICY=PASSIVE on
# 2 cores (benchmarks/covariances.py's setting) a group's factorization and inverse took: 60
# fronts of 18 columns 0.54 ms on one thread, 7.45 ms on two; 20 of 24: 0.29 / 3.14 ms; 2 of 128:
# 0.81 / 1.10 ms; one of 160 the same on both; one of 224: 2.13 / 1.90 ms (two threads faster).
FRONT_PARALLEL = 160


def _front_threads(p: dict, device: torch.device, large: int | None) -> int | None:
    """The torch thread count for a group ``p`` of the plan: one for small fronts on the CPU, else
    ``large`` (``None``: the setting around the call)."""
    return 1 if device.type == "cpu" and max(p["K"], p["R"]) < FRONT_PARALLEL else large


def _csr(H):
    if isinstance(H, Tensor):
        return (H.crow_indices().cpu().numpy(), H.col_indices().cpu().numpy(), H.values(), H.shape[0])
    H = sp.csr_matrix(H)
    return H.indptr, H.indices, torch.from_numpy(H.data), H.shape[0]


def _amd_order(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fill-reducing ordering of the graph with edges (rows, cols), from QDLDL's AMD, and the
    structure of the Cholesky factor in that order, as CSC ``(indptr, indices)``: each column's
    rows below the diagonal, ascending.  QDLDL factors a positive definite matrix of the graph's
    pattern, whose factor's pattern is the symbolic one (QDLDL stores every entry its elimination
    tree reaches)."""
    import qdldl

    off = rows != cols
    deg = np.bincount(rows[off], minlength=n).astype(float)
    M = sp.coo_matrix((np.concatenate((-np.ones(off.sum()), deg + 1)),
                       (np.concatenate((rows[off], np.arange(n))), np.concatenate((cols[off], np.arange(n))))), shape=(n, n))
    M = sp.triu(M.tocsc()).tocsc()  # diagonally dominant, so positive definite
    L, _, P = qdldl.Solver(M, upper=True).factors()
    L = sp.csc_matrix(L)
    L.sort_indices()
    return np.asarray(P, dtype=np.int64), L.indptr.astype(np.int64), L.indices.astype(np.int64)


def _trap(ncols: int, below: int) -> int:
    return ncols * (ncols + 1) // 2 + ncols * below


class MultifrontalCholesky:
    """``H = L L^T`` for a sparse SPD ``H`` (torch CSR or scipy) with ``block x block`` blocks.

    ``MultifrontalCholesky(H, block)`` analyses and factors; ``refactor(H)`` factors new values
    on the same pattern; ``solve(b)`` for ``b`` of shape ``(n,)``.  Computations run on the
    device and dtype of ``H``'s values.  Raises ``torch.linalg.LinAlgError`` when ``H`` is not
    positive definite.  On the CPU, groups of fronts smaller than :data:`FRONT_PARALLEL` run on
    one torch thread, and larger ones on ``threads`` (``None``: the setting around each call).

    A chain of the elimination tree merges into one front of at most ``max_merge`` blocks while
    the explicit zeros this adds stay within ``relax`` of the front, and whatever zeros it adds
    while the front has at most ``free_merge`` (scalar) columns: fewer, larger fronts are fewer
    groups to walk, and only large fronts pay for their zeros in flops.
    """

    def __init__(self, H, block: int = 1, *, relax: float = 0.3, max_merge: int = 64, group_ratio: float = 1.3,
                 threads: int | None = None, free_merge: int = 0):
        self.threads = threads
        crow, col, val, n = _csr(H)
        if n % block:
            raise ValueError(f"block: {block} does not divide the matrix size {n}")
        self.n, self.block = n, block
        self.device, self.dtype = val.device, val.dtype
        nb = n // block
        rows = np.repeat(np.arange(n), np.diff(crow))
        brow, bcol = rows // block, col // block
        key = np.unique(brow * nb + bcol)
        order, indptr, indices = _amd_order(nb, key // nb, key % nb)
        size = np.diff(indptr)
        # the elimination tree: a column's parent is its first row below the diagonal
        parent = np.full(nb, -1, dtype=np.int64)
        parent[size > 0] = indices[indptr[:-1][size > 0]]
        post = self._postorder(parent)
        relabel = np.empty(nb, dtype=np.int64)
        relabel[post] = np.arange(nb)
        order = order[post]
        # the factor's structure in the postorder: the columns taken in that order, their rows
        # relabelled and sorted (one sort of (column, row) keys)
        lens = size[post]
        new_ptr = np.concatenate(([0], np.cumsum(lens)))
        at = np.repeat(indptr[post] - new_ptr[:-1], lens) + np.arange(new_ptr[-1])  # old positions, in new order
        keys = np.repeat(np.arange(nb), lens) * nb + relabel[indices[at]]
        indptr, indices = new_ptr, np.sort(keys) % max(nb, 1)
        p = parent[post]
        parent = np.where(p >= 0, relabel[p], -1)
        self._supernodes(nb, indptr, indices, parent, relax, max_merge, free_merge)
        self.perm = (order[:, None] * block + np.arange(block)).reshape(-1)  # new scalar -> old scalar
        self._groups(group_ratio)
        self._index_maps(crow, col)
        self.refactor(H)

    # ---- symbolic ----------------------------------------------------------------------------
    @staticmethod
    def _postorder(parent: np.ndarray) -> np.ndarray:
        """A postorder of the forest ``parent`` (-1: a root): each node after its subtree, each
        subtree contiguous, siblings (and roots) in ascending order.  It is the reverse of a
        depth-first preorder that takes siblings in descending order: scipy's traversal, from a
        virtual root above the roots, over children stored in that order.  (Any postorder is a
        valid one; the siblings' order decides which child chain ends next to its parent, and so
        may merge with it.)"""
        nb = len(parent)
        par = np.where(parent >= 0, parent, nb)
        child = np.lexsort((-np.arange(nb), par))  # by parent, then descending
        indptr = np.concatenate(([0], np.cumsum(np.bincount(par, minlength=nb + 1))))
        tree = sp.csr_matrix((np.ones(nb), child, indptr), shape=(nb + 1, nb + 1))
        pre = depth_first_order(tree, nb, directed=True, return_predecessors=False)
        return pre[:0:-1].astype(np.int64)  # reversed, without the virtual root

    def _supernodes(self, nb, indptr, indices, parent, relax, max_merge, free_merge):
        """Fronts from the factor's structure (CSC ``indptr``, ``indices``) in a postorder."""
        nchild = np.bincount(parent[parent >= 0], minlength=nb)
        size = np.diff(indptr)
        j = np.arange(1, nb)
        joins = (parent[:-1] == j) & (nchild[1:] == 1) & (size[:-1] == size[1:] + 1)  # column j continues j - 1's
        starts = [0] + j[~joins].tolist() + [nb]
        size_, parent_ = size.tolist(), parent.tolist()  # Python ints: a loop over ~every column
        merged = []  # (first column, end column, true nonzeros)
        for a, b in zip(starts[:-1], starts[1:]):
            below = size_[b - 1]
            nz = _trap(b - a, below)
            if merged:
                pa, pb, pnz = merged[-1]
                if pb == a and parent_[pb - 1] == a and b - pa <= max_merge:
                    # the merged front's rows below it are the parent's own: a column's structure
                    # below its parent p lies in p's (the elimination tree's property), p = a starts
                    # a chain (a, b), so the child's rows past b lie in column b - 1's
                    # (the union with them, computed before, was column b - 1's on every graph of data/)
                    total = _trap(b - pa, below)
                    if total - (pnz + nz) <= relax * total or (b - pa) * self.block <= free_merge:
                        merged[-1] = (pa, b, pnz + nz)
                        continue
            merged.append((a, b, nz))
        B = self.block
        self.sn_cols = [(a, b) for a, b, _ in merged]
        self.sn_nonzeros = np.array([nz for *_, nz in merged], dtype=np.int64)  # of each front's blocks: not zeros of L
        col_owner = np.empty(nb, dtype=np.int64)
        for s, (a, b) in enumerate(self.sn_cols):
            col_owner[a:b] = s
        self.col_owner = col_owner
        below = [indices[indptr[b - 1]: indptr[b]] for _, b in self.sn_cols]  # each front's rows below it
        self.sn_parent = np.array([col_owner[r[0]] if len(r) else -1 for r in below], dtype=np.int64)
        self.fronts = [(np.concatenate((np.arange(a, b), r))[:, None] * B + np.arange(B)).reshape(-1)
                       for (a, b), r in zip(self.sn_cols, below)]
        self.k = np.array([(b - a) * B for a, b in self.sn_cols])
        self.m = np.array([len(f) for f in self.fronts])

    @property
    def num_supernodes(self) -> int:
        return len(self.fronts)

    def _groups(self, ratio):
        ns = self.num_supernodes
        height = np.zeros(ns, dtype=np.int64)
        for s in range(ns):  # postorder: children before parents
            p = self.sn_parent[s]
            if p >= 0:
                height[p] = max(height[p], height[s] + 1)
        groups = []
        for h in range(int(height.max()) + 1 if ns else 0):
            members = np.nonzero(height == h)[0]
            members = members[np.argsort(self.m[members], kind="stable")]
            start = 0
            for i in range(1, len(members) + 1):
                if i == len(members) or self.m[members[i]] > ratio * self.m[members[start]] + 8:
                    groups.append(members[start:i])
                    start = i
        self.groups = groups
        self.group_of = np.empty(ns, dtype=np.int64)
        self.slot_in = np.empty(ns, dtype=np.int64)
        for g, mem in enumerate(groups):
            self.group_of[mem] = g
            self.slot_in[mem] = np.arange(len(mem))
        self.KM = [(int(self.k[mem].max()), int((self.m[mem] - self.k[mem]).max())) for mem in groups]

    def _index_maps(self, crow, col):
        n = self.n
        dev = self.device
        iperm = np.empty(n, dtype=np.int64)
        iperm[self.perm] = np.arange(n)
        rows = np.repeat(np.arange(n), np.diff(crow))
        r_new, c_new = iperm[rows], iperm[col]
        src_all = np.arange(len(col))
        lower = r_new >= c_new
        src_all, r_new, c_new = src_all[lower], r_new[lower], c_new[lower]
        owner = self.col_owner[c_new // self.block]
        # update-matrix storage: one flat tensor, each group's (count, R, R) block at an offset
        self.u_offset = np.zeros(len(self.groups) + 1, dtype=np.int64)
        for g, mem in enumerate(self.groups):
            K, R = self.KM[g]
            self.u_offset[g + 1] = self.u_offset[g] + len(mem) * R * R

        # every supernode's front as one sorted key list (supernode s, row r -> s (n + 1) + r): the
        # position of any row in any front is one search, for all entries at once
        ns, B = self.num_supernodes, self.block
        self._fkeys = np.concatenate([s_ * (n + 1) + f for s_, f in enumerate(self.fronts)])
        self._fstart = np.concatenate(([0], np.cumsum(self.m)))[:-1]
        KM = self._KM = np.array(self.KM, dtype=np.int64).reshape(-1, 2)
        first = self.first_col = np.array([a for a, _ in self.sn_cols], dtype=np.int64) * B
        place = self.front_position

        def by_group(g_of, *arrays):  # split arrays by group, in group order
            # numpy's stable sort of 16-bit integers is a radix sort: 1.5M group ids 120 -> 15 ms
            order = np.argsort(g_of.astype(np.int16) if len(self.groups) < 2 ** 15 else g_of, kind="stable")
            cuts = np.searchsorted(g_of[order], np.arange(len(self.groups) + 1))
            arrays = [a[order] for a in arrays]
            return [[a[cuts[g]: cuts[g + 1]] for a in arrays] for g in range(len(self.groups))]

        # the original entries, and their mirror images above the diagonal
        M_of = KM.sum(1)[self.group_of]  # each supernode's padded front size
        lr = place(owner, r_new)
        lc = c_new - first[owner]
        base = self.slot_in[owner] * M_of[owner] ** 2
        off = lr != lc
        # the padding columns' unit diagonals, read from a slot past the values that holds 1
        npad = KM[self.group_of, 0] - self.k
        s_pad = np.repeat(np.arange(ns), npad)
        col_pad = self.k[s_pad] + np.arange(len(s_pad)) - np.repeat(np.cumsum(npad) - npad, npad)
        e_src = np.concatenate((src_all, src_all[off], np.full(len(s_pad), len(col))))
        e_dst = np.concatenate((base + lr * M_of[owner] + lc, (base + lc * M_of[owner] + lr)[off],
                                self.slot_in[s_pad] * M_of[s_pad] ** 2 + col_pad * (M_of[s_pad] + 1)))
        entries = by_group(self.group_of[np.concatenate((owner, owner[off], s_pad))], e_src, e_dst)
        # each child's update matrix into its parent's front
        kids = np.nonzero(self.sn_parent >= 0)[0]
        rc = self.m[kids] - self.k[kids]
        par = self.sn_parent[kids]
        rows_c = np.concatenate([self.fronts[c][self.k[c]:] for c in kids]) if len(kids) else np.zeros(0, dtype=np.int64)
        tgt = place(np.repeat(par, rc), rows_c)
        at = np.concatenate(([0], np.cumsum(rc)))  # each child's rows in rows_c
        k_src, k_dst = [[] for _ in self.groups], [[] for _ in self.groups]
        for i, c in enumerate(kids.tolist()):  # an outer product per child (large fronts: one loop beats pair arrays)
            p_, gc = par[i], self.group_of[c]
            Rc, Mp, uu, tg = KM[gc, 1], M_of[p_], np.arange(rc[i]), tgt[at[i]: at[i + 1]]
            k_src[self.group_of[p_]].append((self.u_offset[gc] + self.slot_in[c] * Rc * Rc + uu[:, None] * Rc + uu[None, :]).reshape(-1))
            k_dst[self.group_of[p_]].append((self.slot_in[p_] * Mp * Mp + tg[:, None] * Mp + tg[None, :]).reshape(-1))
        updates = [[np.concatenate(a) if a else np.zeros(0, dtype=np.int64) for a in (k_src[g], k_dst[g])]
                   for g in range(len(self.groups))]

        def t(x):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(dev)

        self.plan = []
        for g, mem in enumerate(self.groups):
            K, R = self.KM[g]
            cols_idx = np.full((len(mem), K), n, dtype=np.int64)  # n: a dummy slot for padding
            rows_idx = np.full((len(mem), R), n, dtype=np.int64)
            for i, s_ in enumerate(mem):
                k, m, front = self.k[s_], self.m[s_], self.fronts[s_]
                cols_idx[i, :k] = front[:k]
                rows_idx[i, : m - k] = front[k:]
            self.plan.append(dict(
                count=len(mem), K=K, R=R, src=t(entries[g][0]), dst=t(entries[g][1]),
                kids_src=t(updates[g][0]), kids_dst=t(updates[g][1]),
                cols=torch.from_numpy(cols_idx).to(dev), rows=torch.from_numpy(rows_idx).to(dev),
            ))
            self.plan[-1]["threads"] = _front_threads(self.plan[-1], dev, self.threads)
        self.perm_t = torch.from_numpy(self.perm).to(dev)
        # persistent workspaces: fresh multi-megabyte buffers per factorization cost more in page
        # faults than the arithmetic.  The fronts: one group's at a time (its factor is new
        # tensors), so the largest group's size, zeroed per group (sphere2500's covariances: 11.6
        # MB, where every group's fronts together took 88 MB, zeroed and faulted in each call).
        # The update store: every group's part is written whole before a parent reads it
        self._F = torch.empty(max([p["count"] * (p["K"] + p["R"]) ** 2 for p in self.plan], default=0),
                              dtype=self.dtype, device=dev)
        self._U = torch.empty(int(self.u_offset[-1]), dtype=self.dtype, device=dev)

    def front_position(self, s: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Where rows ``r`` (the new numbering) sit in the fronts of supernodes ``s`` (arrays,
        broadcast), in their group's padded layout: a supernode's ``k`` columns first (padded to
        the group's ``K``), then the rows below.  Each row must be in its front."""
        pos = np.searchsorted(self._fkeys, s * (self.n + 1) + r) - self._fstart[s]
        k, K = self.k[s], self._KM[self.group_of[s], 0]
        return np.where(pos < k, pos, K + (pos - k))

    # ---- numeric -----------------------------------------------------------------------------
    def refactor(self, H) -> None:
        """Numeric factorization of ``H`` (same sparsity pattern as at construction)."""
        _, _, val, _ = _csr(H)
        val = val.detach().to(device=self.device, dtype=self.dtype)
        val = torch.cat((val, val.new_ones(1)))  # the padding's diagonal reads the last slot
        U = self._U
        self.factors, infos = [], []
        for g, p in enumerate(self.plan):
            K, R, cnt = p["K"], p["R"], p["count"]
            M = K + R
            F = self._F[: cnt * M * M].zero_()
            F[p["dst"]] = val[p["src"]]
            if p["kids_src"].numel():
                F.index_add_(0, p["kids_dst"], U[p["kids_src"]])
            F = F.view(cnt, M, M)
            with torch_threads(p["threads"]):
                L11, info = torch.linalg.cholesky_ex(F[:, :K, :K])
                infos.append(info)
                if R:
                    L21 = torch.linalg.solve_triangular(L11, F[:, K:, :K].mT, upper=False).mT
                    out = U[int(self.u_offset[g]): int(self.u_offset[g + 1])].view(cnt, R, R)
                    torch.baddbmm(F[:, K:, K:], L21, L21.mT, alpha=-1.0, out=out)
                else:
                    L21 = F.new_zeros(cnt, 0, K)
            self.factors.append((L11, L21))
        # one look at every front's pivots, after the walk (one synchronization on a GPU, not one a
        # group): a front that failed passes meaningless updates to its parents, never used
        if infos and bool(torch.cat(infos).any()):
            self.factors = None
            raise torch.linalg.LinAlgError("matrix is not positive definite")

    def solve(self, b: Tensor) -> Tensor:
        """``H^-1 b`` for ``b`` of shape ``(n,)`` (any device; computed on the factor's).  Raises
        ``torch.linalg.LinAlgError`` after a ``refactor`` that refused its matrix."""
        if self.factors is None:
            raise torch.linalg.LinAlgError("no factor: the last refactor refused its matrix (not positive definite)")
        x = b.detach().to(device=self.device, dtype=self.dtype)
        y = torch.zeros(self.n + 1, dtype=self.dtype, device=self.device)  # the last slot absorbs padding
        y[: self.n] = x[self.perm_t]
        for p, (L11, L21) in zip(self.plan, self.factors):
            with torch_threads(p["threads"]):
                yc = torch.linalg.solve_triangular(L11, y[p["cols"]].unsqueeze(-1), upper=False)
            y[p["cols"]] = yc.squeeze(-1)
            if p["R"]:
                y.index_add_(0, p["rows"].reshape(-1), -(L21 @ yc).reshape(-1))
            y[self.n] = 0.0
        for p, (L11, L21) in zip(reversed(self.plan), reversed(self.factors)):
            rhs = y[p["cols"]].unsqueeze(-1)
            if p["R"]:
                rhs = rhs - L21.mT @ y[p["rows"]].unsqueeze(-1)
            with torch_threads(p["threads"]):
                y[p["cols"]] = torch.linalg.solve_triangular(L11.mT, rhs, upper=True).squeeze(-1)
            y[self.n] = 0.0
        out = torch.empty(self.n, dtype=self.dtype, device=self.device)
        out[self.perm_t] = y[: self.n]
        return out.to(device=b.device, dtype=b.dtype)
