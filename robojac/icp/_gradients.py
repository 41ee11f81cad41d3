"""Gradients of an alignment with respect to the points: the implicit function theorem at the
converged pose, on the solver engine.

At the answer the correspondences (and the neighbourhoods behind normals and covariances) are
fixed; the cost is then a smooth function of the pose and of the points, including through the
voxel centroids and the neighbourhood normals and covariances, which are recomputed here in
torch from the same indices.  The pose is first polished to that cost's minimum (a few
Gauss-Newton steps of six unknowns), then :func:`robojac.optim.attach_gradients` differentiates
it: ``T_target_source`` moves with every source and target point that requires grad.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import lie, optim
from .._threads import backward_on_forward_threads, threads_for
from . import _soa as soa
from ._cloud import voxel_downsample
from ._neighbors import NearestNeighbors

__all__ = ["with_point_gradients"]

_PLANE_EPS = 1e-3  # GICP's plane covariances I - (1 - eps) n n^T, as in the forward
_SYM6_OF_9 = [3 * a + b for a, b in soa.SYM6]  # row-major 3x3 entries -> the 6 distinct ones


def _normals(points: Tensor, k: int, backend: str, at: Tensor) -> Tensor:
    """Unit normals ``(len(at), 3)`` at ``points[at]`` from each one's ``k`` nearest neighbours
    (itself included): the smallest-eigenvalue eigenvector of their covariance, differentiable in
    the points.  The neighbours are searched with the forward's backend (the KD-tree on a CPU:
    brute force took 0.2 s of the bunny's 0.28 s forward with grad), and only where asked."""
    with torch.no_grad():
        index = NearestNeighbors(points.detach(), backend=backend)
        _, nb = index.query(points.detach()[at], k=min(k, points.shape[0]))
    nbr = points.index_select(0, nb.reshape(-1)).view(*nb.shape, 3)  # its backward an index_add, not an index_put
    near = nbr - nbr.mean(1, keepdim=True)  # (len(at), k, 3)
    cov = near.transpose(1, 2) @ near / nb.shape[1]
    return torch.linalg.eigh(cov)[1][..., 0]


def _plane_cov(n: Tensor) -> Tensor:
    eye = torch.eye(3, dtype=n.dtype, device=n.device)
    return eye - (1 - _PLANE_EPS) * n[..., :, None] * n[..., None, :]


class _PointToPoint:
    """``T s - t`` per correspondence, with its Jacobian in closed form ``[I, -[T s]x]``: the
    polish runs on the engine, where automatic blocks cost ~6x a closed form's
    (``benchmarks/icp_step.py``, point-to-plane: 9 against 1.5 ms a step on the bunny)."""

    def __call__(self, T, s, t):  # T (1, M, 7); s, t (1, M, 3) -> (1, M, 3)
        return lie.se3_act(T, s) - t

    def value_and_jacobians(self, T, s, t):
        p = lie.se3_act(T, s)
        J = torch.cat((torch.eye(3, dtype=p.dtype, device=p.device).expand(*p.shape[:-1], 3, 3), -lie.skew(p)), -1)
        return p - t, (J,)


class _PointToPlane:
    """``n . (T s - t)`` per correspondence, with its Jacobian in closed form ``[n; T s x n]``."""

    def __call__(self, T, s, t, n):
        return ((lie.se3_act(T, s) - t) * n).sum(-1, keepdim=True)

    def value_and_jacobians(self, T, s, t, n):
        p = lie.se3_act(T, s)
        J = torch.cat((n, torch.linalg.cross(p, n, dim=-1)), -1)[..., None, :]
        return ((p - t) * n).sum(-1, keepdim=True), (J,)


def _residual(method: str):
    return {"point_to_point": _PointToPoint, "point_to_plane": _PointToPlane}[method]()  # GICP: _GICPFixedPoint


def _inverse3(A: Tensor) -> Tensor:
    """Inverses of symmetric ``A (N, 3, 3)`` (GICP's combined covariances, positive definite: their
    smallest eigenvalue at least twice the plane covariances' 1e-3), by the forward's adjugate
    :func:`~._soa.sym6_inverse` on their six distinct entries.  Nothing here is differentiated by
    autograd (the backward is written out), so the layout's gathers cost nothing worth a second
    inverse."""
    S = A.flatten(1)[:, _SYM6_OF_9].T  # (6, N)
    return soa.sym6_inverse(S)[soa.FULL9].T.reshape(-1, 3, 3)


def _turned(C: Tensor, R: Tensor) -> Tensor:
    """``R C R^T`` for each ``C (N, 3, 3)``, as one product of the flattened matrices with
    ``R (x) R`` (0.05 against 0.17 ms as two batched 3x3 products, for the bunny's 3k points)."""
    return (C.reshape(-1, 9) @ torch.kron(R, R).T).reshape(C.shape)


def _gicp_terms(T: Tensor, s: Tensor, t: Tensor, C_t: Tensor, C_s: Tensor, kernel):
    """``(p, d, w M)`` of GICP at the pose ``T``: the moved points ``p = T s``, the differences
    ``d = p - t``, and each one's weighted ``M = (C_t + R C_s R^T)^-1`` (``w = rho'(d^T M d)``)."""
    R = lie.quat_to_matrix(T[3:])
    M = _inverse3(C_t + _turned(C_s, R))
    p = lie.se3_act(T[None], s)
    d = p - t
    w = kernel.weight((d[:, None, :] @ M @ d[:, :, None])[:, 0, 0])
    return p, d, w[:, None, None] * M


def _kernel_slope(kernel, sq: Tensor) -> Tensor:
    """``w'(s)`` of the kernel's IRLS weight at ``sq`` (zero without a kernel): one elementwise
    backward through :meth:`~robojac.optim.RobustKernel.weight`, the one place weights come from."""
    if kernel.name == "none":
        return torch.zeros_like(sq)
    with torch.enable_grad():
        x = sq.detach().requires_grad_()
        (slope,) = torch.autograd.grad(kernel.weight(x).sum(), x, allow_unused=True, materialize_grads=True)
    return slope


class _GICPFixedPoint(torch.autograd.Function):
    """The GICP answer as a function of the points: GICP's step equations
    ``g(T, theta) = sum w J^T M d = 0`` (``d = T s - t``, ``M = (C_t + R C_s R^T)^-1`` at the
    pose, ``w = rho'(d^T M d)``, ``J = [I, -[T s]x]``: where GICP stops, not the minimum of the
    Mahalanobis cost) differentiated implicitly: ``dT/dtheta = -(dg/deps)^-1 dg/dtheta`` for a
    left perturbation ``eps`` (``dg/deps`` is not symmetric: the covariances turn with the pose).

    Both derivatives are written out per correspondence (below), with no autograd graph: the
    bunny's backward took 17 ms when ``dg/deps`` came from six batched backward passes through
    the step equations and ``dg/dtheta`` from one more (``benchmarks/gradients.py``)."""

    @staticmethod
    def forward(ctx, T, kernel, s, t, C_t, C_s):
        ctx.kernel = kernel
        ctx.threads = threads_for(9 * s.shape[0], s.device)  # the forward's (see backward_on_forward_threads)
        ctx.save_for_backward(T, s, t, C_t, C_s)
        return T.clone()

    @staticmethod
    @backward_on_forward_threads
    def backward(ctx, grad_T):
        T, s, t, C_t, C_s = ctx.saved_tensors
        kernel = ctx.kernel
        skew = lie.skew
        R = lie.quat_to_matrix(T[3:])
        p = s @ R.T + T[:3]
        d = p - t
        Sig = _turned(C_s, R)  # the source covariances turned into the target frame
        M = _inverse3(C_t + Sig)
        a = (M @ d[..., None])[..., 0]  # M d
        sq = (d * a).sum(-1)
        w, slope = kernel.weight(sq), _kernel_slope(kernel, sq)
        u = w[:, None] * a  # each correspondence's term of g's translation rows
        Sa = (Sig @ a[..., None])[..., 0]
        # d a / d eps = M J + dM/dphi d, with dM = -M (dphi x Sig - Sig dphi x) M
        # (Sig symmetric: -Sig [a]x = ([a]x Sig)^T, a cross product with each of Sig's columns)
        aSig = torch.linalg.cross(a[:, :, None].expand_as(Sig), Sig, dim=1)
        Da = torch.cat((M, M @ (skew(Sa - p) + aSig.transpose(1, 2))), -1)  # (N, 3, 6)
        dsq = 2 * torch.cat((a, torch.linalg.cross(p, a, dim=-1) + torch.linalg.cross(a, Sa, dim=-1)), -1)  # (N, 6)
        K = w[:, None, None] * Da + slope[:, None, None] * a[..., None] * dsq[:, None, :]  # d u / d eps
        top = K.sum(0)
        # d (p x u) / d eps = sum [p]x K + [-[u]x, [u]x [p]x], with [u]x [p]x = p u^T - (u . p) I
        pK = torch.linalg.cross(p[:, :, None].expand_as(K), K, dim=1).sum(0)
        up = p.T @ u - (u * p).sum() * torch.eye(3, dtype=p.dtype, device=p.device)
        bottom = torch.cat((-skew(u.sum(0)), up), -1) + pK
        A = torch.cat((top, bottom))  # (6, 6): dg/deps
        with torch.enable_grad():  # the output pose's own derivative in eps: seven numbers
            eps = T.new_zeros(6, requires_grad=True)
            moved = lie.se3_compose(lie.se3_exp(eps), T.detach())
            (gbar,) = torch.autograd.grad((moved * grad_T).sum(), eps)
        lam = torch.linalg.solve(A.T, gbar)
        # L = lam . g = sum w c . a with c = lam_t + lam_r x p; minus its derivatives in the data
        c = lam[:3] + torch.linalg.cross(lam[3:].expand_as(p), p, dim=-1)
        e = (c * a).sum(-1)
        m = (M @ c[..., None])[..., 0]
        grad_d = w[:, None] * m + (2 * slope * e)[:, None] * a
        grad_p = grad_d + torch.linalg.cross(u, lam[3:].expand_as(u), dim=-1)
        grad_C = -(w[:, None, None] * m[..., None] * a[:, None, :] + (slope * e)[:, None, None] * a[..., None] * a[:, None, :])
        want = ctx.needs_input_grad
        gs = -(grad_p @ R) if want[2] else None
        gt = grad_d if want[3] else None
        gCt = -grad_C if want[4] else None
        gCs = -_turned(grad_C, R.T) if want[5] else None
        return None, None, gs, gt, gCt, gCs


def _gicp_polished(T: Tensor, s: Tensor, t: Tensor, C_t: Tensor, C_s: Tensor, kernel, steps: int = 30) -> Tensor:
    """GICP's own steps (covariances held at each pose) from ``T``, to its fixed point: in closed
    form, ``(sum w J^T M J) step = -g`` with the terms of :func:`_gicp_terms` and
    ``J = [I, -[T s]x]`` (the Gauss-Newton step GICP itself takes; its fixed point is where ``g``
    vanishes).  Until the step is at rounding level: four steps on the bunny, each dividing it by
    ~1000.  The Newton steps by double backward it replaced took ~13 ms each (the bunny's forward
    with grad 0.059 -> 0.040 s, ``benchmarks/gradients.py``)."""
    eye = torch.eye(3, dtype=T.dtype, device=T.device)
    for _ in range(steps):
        p, d, WM = _gicp_terms(T, s, t, C_t, C_s, kernel)
        J = torch.cat((eye.expand(len(p), 3, 3), -lie.skew(p)), -1)  # (N, 3, 6)
        WMJ = WM @ J
        H = (J.transpose(1, 2) @ WMJ).sum(0)
        g = (WMJ.transpose(1, 2) @ d[:, :, None]).sum(0)[:, 0]
        step = -torch.linalg.solve(H, g)
        T = lie.se3_compose(lie.se3_exp(step), T)
        if float(step.abs().max()) < 1e-14 * max(1.0, float(T[:3].abs().max())):
            break
    return T


class _NoSolution(torch.autograd.Function):
    """The pose of a pair that did not converge, still on the points' graph: there is no solution
    to differentiate, so the points receive zero gradients (never NaN, and a backward through a
    batch of such pairs runs instead of finding no graph)."""

    @staticmethod
    def forward(ctx, pose, *points):
        ctx.shapes = [(p.shape, p.dtype, p.device) for p in points]
        return pose.clone()

    @staticmethod
    def backward(ctx, grad):
        return (None, *(torch.zeros(sh, dtype=dt, device=dev) for sh, dt, dev in ctx.shapes))


def with_point_gradients(cfg, sources: list[Tensor], targets: list[Tensor], T: Tensor, converged: Tensor,
                         dmax: list[float]) -> Tensor:
    """``T (B, 7)`` differentiable with respect to the points of ``sources`` and ``targets`` (which
    may require grad), each pair polished at its converged correspondences; pairs that did not
    converge keep their pose and pass zero gradient."""
    v = cfg.voxel_size * cfg.levels[-1]
    out = []
    for b, (src, tgt) in enumerate(zip(sources, targets)):
        S, G = voxel_downsample(src, v), voxel_downsample(tgt, v)  # centroids: differentiable in the points
        pose = T[b].detach()
        with torch.no_grad():
            d2, j = NearestNeighbors(G.detach(), backend=cfg.neighbors_backend).query(
                lie.se3_act(pose[None], S.detach()))
        keep = torch.nonzero(d2 <= dmax[b] ** 2).squeeze(1)
        if keep.numel() < 3 or not bool(converged[b]):
            out.append(_NoSolution.apply(pose, src, tgt))
            continue
        j = j[keep]
        S_in, G_in = S.index_select(0, keep), G.index_select(0, j)  # the correspondences, on the points' graph
        data = [S_in[None], G_in[None]]
        if cfg.method == "point_to_plane":
            data.append(_normals(G, cfg.num_neighbors, cfg.neighbors_backend, j)[None])
        elif cfg.method == "gicp":
            data = [S_in, G_in, _plane_cov(_normals(G, cfg.num_neighbors, cfg.neighbors_backend, j)),
                    _plane_cov(_normals(S, cfg.num_neighbors, cfg.neighbors_backend, keep))]
        if cfg.method == "gicp":  # a fixed point, not a minimum: its own implicit derivative
            polished = _gicp_polished(pose, *(x.detach() for x in data), cfg.kernel)
            out.append(_GICPFixedPoint.apply(polished, cfg.kernel, *data))
            continue
        index = torch.zeros(keep.numel(), 1, dtype=torch.long, device=pose.device)
        X = optim.Variable("SE3", pose[None, None], name=f"T_target_source[{b}]")
        factor = optim.Factor(_residual(cfg.method), [X], index, data=[d.detach() for d in data],
                              kernel=cfg.kernel, name="correspondences")
        polish = optim.SolverConfig(optim.TrustRegionConfig(method="gn"),
                                    optim.TerminationConfig(max_iterations=5, relative_tolerance=0.0), backward="none")
        polished = optim.solve([X], [factor], polish).values[0]
        X = optim.Variable("SE3", polished, name=f"T_target_source[{b}]")
        live = optim.Factor(_residual(cfg.method), [X], index, data=data, kernel=cfg.kernel, name="correspondences")
        (attached,) = optim.attach_gradients([X], [live], (polished,), converged[b : b + 1])
        out.append(attached[0, 0])
    return torch.stack(out)
