"""Initial estimates for pose graphs: odometry spanning tree and chordal relaxation.

Chordal initialization (Carlone et al., ICRA 2015): relax the rotations to free 3x3 (2D: unit
2-vectors) satisfying ``R_j = R_i R_ij`` in the least-squares sense -- a sparse linear system
-- project them back onto SO(3), then solve the (now linear) translations.  From there a few
Gauss-Newton or Levenberg-Marquardt iterations reach the optimum where the file's own
estimate or odometry would leave the solver in a worse local minimum.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from .. import lie
from ..optim import SparseLDL

__all__ = ["spanning_tree_state", "chordal_state"]


def spanning_tree_state(N: int, edges: Tensor, Z: Tensor, dim: int, root: int = 0) -> Tensor:
    """Poses by composing measurements along an odometry spanning tree from ``root``.

    The tree prefers odometry edges (between consecutive poses) over loop closures -- a
    minimum spanning tree with loop closures weighted by how far apart their poses are -- so
    one bad loop closure does not displace the rest of the trajectory.  ``Z`` holds the
    measurements as states (``[x, y, theta]`` for 2D, ``(E, 7)`` poses for 3D, ``(E, 8)``
    similarities); returns ``(N, 3)``, ``(N, 7)`` or ``(N, 8)`` with ``root`` at the identity.
    """
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

    e = edges.cpu().numpy()
    gap = np.abs(e[:, 0] - e[:, 1])
    weight = np.where(gap == 1, 1.0, 1.0 + gap.astype(float))
    W = sp.coo_matrix((weight, (np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1]))), shape=(N, N)).tocsr()
    W.sum_duplicates()
    tree = minimum_spanning_tree(W).tocoo()
    # the edge (and direction) behind each tree link: prefer the lowest-weight edge of a pair
    best = {}
    for k in np.argsort(weight, kind="stable"):
        a, b = int(e[k, 0]), int(e[k, 1])
        best.setdefault((a, b), k + 1)
        best.setdefault((b, a), -(k + 1))
    rows = np.concatenate((tree.row, tree.col))
    cols = np.concatenate((tree.col, tree.row))
    codes = np.array([best[(int(r), int(c))] for r, c in zip(rows, cols)], dtype=np.int64)
    A = sp.csr_matrix((codes, (rows, cols)), shape=(N, N))
    order, pred = breadth_first_order(A, root, directed=False, return_predecessors=True)
    if len(order) != N:
        raise ValueError(f"the graph is not connected: {N - len(order)} poses cannot be reached from the root")
    Zd = Z.detach().double().cpu()
    dtype, device = Z.dtype, Z.device
    # which edge links each node to its predecessor, and in which direction
    parent = pred[order[1:]]
    code = np.asarray(A[parent, order[1:]]).ravel()
    if dim == 2:
        out = np.zeros((N, 3))
        zs = Zd.numpy()
        for node, par, c in zip(order[1:], parent, code):
            z = zs[abs(c) - 1]
            if c < 0:  # edge node->par: invert it
                cz, sz = math.cos(z[2]), math.sin(z[2])
                z = (-(cz * z[0] + sz * z[1]), sz * z[0] - cz * z[1], -z[2])
            px, py, pt = out[par]
            cp, spp = math.cos(pt), math.sin(pt)
            th = pt + z[2]
            out[node] = (px + cp * z[0] - spp * z[1], py + spp * z[0] + cp * z[1], math.atan2(math.sin(th), math.cos(th)))
        return torch.from_numpy(out).to(dtype=dtype, device=device)
    # 3D: compose level by level (all nodes of one BFS depth at once)
    depth = np.zeros(N, dtype=np.int64)
    for node, par in zip(order[1:], parent):
        depth[node] = depth[par] + 1
    width = Zd.shape[1]
    compose, inverse = (lie.sim3_compose, lie.sim3_inverse) if width == 8 else (lie.se3_compose, lie.se3_inverse)
    X = torch.zeros(N, width, dtype=torch.float64, device="cpu")
    X[:, 6:] = 1.0  # qw, and a similarity's scale
    nodes = order[1:]
    rel = Zd[np.abs(code) - 1]
    inv = torch.from_numpy(code < 0)
    rel[inv] = inverse(rel[inv])
    for level in range(1, int(depth.max()) + 1):
        sel = depth[nodes] == level
        nd, pr = torch.from_numpy(nodes[sel]), torch.from_numpy(parent[sel])
        X[nd] = compose(X[pr], rel[torch.from_numpy(np.nonzero(sel)[0])])
    return X.to(dtype=dtype, device=device)


def _solve_normal(A: sp.csr_matrix, W: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Weighted least squares ``min |W^(1/2) (A x - B)|`` for several right-hand sides."""
    AtW = A.T.multiply(W[None, :]).tocsr()
    H = (AtW @ A).tocsr()
    H.sort_indices()
    solver = SparseLDL(H)
    rhs = AtW @ B
    return np.stack([solver.solve(torch.from_numpy(np.ascontiguousarray(rhs[:, k]))).numpy() for k in range(rhs.shape[1])], 1)


def _edge_system(edges: np.ndarray, free: np.ndarray, blocks_i: np.ndarray, k: int):
    """Rows ``x_j - B_i x_i`` (``k``-dim unknowns per node, constants for held nodes).

    Returns the sparse ``A`` over the free nodes and, for each edge row, the coefficient
    blocks that touch held nodes (for the right-hand side).
    """
    E = len(edges)
    col_of = -np.ones(len(free), dtype=np.int64)
    col_of[free] = np.arange(free.sum())
    rows, cols, vals = [], [], []
    r = (np.arange(E)[:, None] * k + np.arange(k)[None, :])  # (E, k)
    j, i = edges[:, 1], edges[:, 0]
    # +I on x_j
    mj = free[j]
    rows.append(r[mj].ravel())
    cols.append((col_of[j[mj]][:, None] * k + np.arange(k)).ravel())
    vals.append(np.ones(mj.sum() * k))
    # -B on x_i
    mi = free[i]
    rr = np.repeat(r[mi][:, :, None], k, axis=2)
    cc = np.repeat((col_of[i[mi]][:, None] * k + np.arange(k))[:, None, :], k, axis=1)
    rows.append(rr.ravel())
    cols.append(cc.ravel())
    vals.append(-blocks_i[mi].ravel())
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(E * k, int(free.sum()) * k))
    return A


def chordal_state(N: int, edges: Tensor, Z: Tensor, information: Tensor, dim: int, held: Tensor, values: Tensor) -> Tensor:
    """Chordal-relaxation initial states; poses marked ``held`` keep their ``values``.

    ``Z`` are the measurement states (2D ``[x, y, theta]``, 3D poses, similarities ``(E, 8)``),
    ``values`` the current states ``(N, 3|7|8)`` (only the held ones are read; at least one must
    be held: the gauge).  Similarities take one more linear step between the rotations and the
    translations: their log-scales, ``log s_j - log s_i = log s_ij``; then ``t_j - t_i = s_i R_i t_ij``.
    """
    e = edges.cpu().numpy()
    info = information.detach().double().cpu().numpy()
    held = held.cpu().numpy().astype(bool)
    if not held.any():
        raise ValueError("held: chordal initialization needs at least one pose held fixed (the gauge)")
    free = ~held
    Zd = Z.detach().double().cpu()
    V = values.detach().double().cpu()
    if dim == 2:
        th = Zd[:, 2].numpy()
        c, s = np.cos(th), np.sin(th)
        Rz = np.stack((np.stack((c, -s), -1), np.stack((s, c), -1)), -2)  # (E, 2, 2)
        # rotations as unit vectors u = [cos, sin]: u_j = R(theta_ij) u_i
        w_rot = np.maximum(info[:, 2, 2], 1e-12)
        A = _edge_system(e, free, Rz, 2)
        th0 = V[:, 2].numpy()
        u = np.stack((np.cos(th0), np.sin(th0)), -1)
        b = _held_rhs(e, held, Rz, u, 2)
        u[free] = _solve_normal(A, np.repeat(w_rot, 2), b[:, None]).reshape(-1, 2)
        theta = np.arctan2(u[:, 1], u[:, 0])
        # translations: t_j - t_i = R_i t_ij
        ci, si = np.cos(theta[e[:, 0]]), np.sin(theta[e[:, 0]])
        tij = Zd[:, :2].numpy()
        rhs = np.stack((ci * tij[:, 0] - si * tij[:, 1], si * tij[:, 0] + ci * tij[:, 1]), -1).reshape(-1)
        t = _translations(e, free, held, info[:, :2, :2], V[:, :2].numpy(), rhs)
        out = np.concatenate((t, theta[:, None]), 1)
        out[held] = V.numpy()[held]  # held poses come back bit-identical
        return torch.from_numpy(out).to(Z)
    Rz = lie.quat_to_matrix(Zd[:, 3:7]).numpy()  # (E, 3, 3)
    # rows of R: (r_j^a)^T = R_ij^T (r_i^a)^T for a = 0, 1, 2 -- three systems, one matrix
    Bt = np.transpose(Rz, (0, 2, 1))
    A = _edge_system(e, free, Bt, 3)
    w_rot = np.repeat(np.maximum(np.trace(info[:, 3:6, 3:6], axis1=1, axis2=2) / 3, 1e-12), 3)
    R = lie.quat_to_matrix(V[:, 3:7]).numpy().copy()  # held rotations keep their values
    rhs = np.stack([_held_rhs(e, held, Bt, R[:, a, :], 3) for a in range(3)], 1)  # (3E, 3)
    sol = _solve_normal(A, w_rot, rhs)  # (3 Nf, 3): column a = row a of every free R
    R[free] = sol.reshape(-1, 3, 3).transpose(0, 2, 1)
    U, _, Wt = np.linalg.svd(R)
    D = np.ones((N, 3))
    D[:, 2] = np.sign(np.linalg.det(U @ Wt))
    R = (U * D[:, None, :]) @ Wt
    similarity = Zd.shape[1] == 8
    if similarity:  # log-scales: sigma_j - sigma_i = log s_ij, weighted by the scale's information
        sigma = _translations(e, free, held, info[:, 6:, 6:], V[:, 7:].log().numpy(), Zd[:, 7].log().numpy())
        scale = np.exp(sigma)
    # translations: t_j - t_i = R_i t_ij (s_i R_i t_ij for similarities)
    tij = Zd[:, :3].numpy() * (scale[e[:, 0]] if similarity else 1.0)
    rhs = np.einsum("eab,eb->ea", R[e[:, 0]], tij).reshape(-1)
    t = _translations(e, free, held, info[:, :3, :3], V[:, :3].numpy(), rhs)
    q = lie.matrix_to_quat(torch.from_numpy(R))
    out = torch.cat([torch.from_numpy(t), q] + ([torch.from_numpy(scale)] if similarity else []), 1)
    out[torch.from_numpy(held)] = V[torch.from_numpy(held)]  # held poses come back bit-identical
    return out.to(Z)


def _translations(e: np.ndarray, free: np.ndarray, held: np.ndarray, info_t: np.ndarray, t0: np.ndarray,
                  rhs: np.ndarray) -> np.ndarray:
    """Translations ``(N, d)`` with ``t_j - t_i = rhs`` per edge (``rhs (E d,)``, the rotated
    measured translations) by least squares weighted with each edge's mean translation
    information ``info_t (E, d, d)``; held poses keep ``t0``.

    With one weight per edge the ``d`` coordinates separate: one weighted graph Laplacian over
    the nodes, factored once and solved for ``d`` right-hand sides (``d^2`` times fewer nonzeros
    than the ``d N`` system)."""
    E, d = len(e), t0.shape[1]
    one = np.ones((E, 1, 1))
    A = _edge_system(e, free, one, 1)
    w = np.maximum(np.trace(info_t, axis1=1, axis2=2) / d, 1e-12)
    t = t0.copy()
    held_rhs = np.stack([_held_rhs(e, held, one, t[:, a : a + 1], 1) for a in range(d)], 1)  # (E, d)
    t[free] = _solve_normal(A, w, rhs.reshape(E, d) + held_rhs)
    return t


def _held_rhs(edges: np.ndarray, held: np.ndarray, B: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Right-hand side of ``x_j - B_ij x_i = 0`` with held nodes' ``values (N, k)`` moved across."""
    E = len(edges)
    b = np.zeros((E, k))
    i, j = edges[:, 0], edges[:, 1]
    hi, hj = held[i], held[j]
    b[hi] += np.einsum("eab,eb->ea", B[hi], values[i[hi]])  # +B x_i moves to the right
    b[hj] -= values[j[hj]]  # -x_j moves to the right
    return b.reshape(-1)

