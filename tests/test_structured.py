"""Per-sample and block-sparse Jacobians, and the analytic fast paths, against dense modjac
and central differences on the manifold."""

import pypose as pp
import pytest
import torch
from torch import nn

from robojac.jacobian import (
    BlockSparsePattern,
    SE3BetweenResidual,
    block_sparse_jacobian,
    modjac,
    per_sample_modjac,
    se3_act_jacobian,
    se3_between,
)

from helpers import BATCH_SHAPES, euclid_fd, manifold_fd, max_err, per_sample_hessian_fd


class BatchedTransform(nn.Module):
    """B independent problems: pose b acts on points (b, M, 3); w is shared."""

    def __init__(self, B, device):
        super().__init__()
        self.T = pp.Parameter(pp.randn_SE3(B, dtype=torch.float64, device=device))
        self.w = nn.Parameter(torch.randn(3, dtype=torch.float64, device=device))
        self.a = nn.Parameter(torch.randn(B, 2, dtype=torch.float64, device=device))

    def forward(self, p):
        y = self.T.unsqueeze(-2).Act(p) * self.w + self.T.translation().unsqueeze(-2)
        return y, (self.a**2).sum(-1, keepdim=True) * self.T.tensor()[..., :1]


def _dense_blocks(model, p, B, M):
    D = modjac(model, p, flatten=True)  # rows: y (B*M*3), z (B); columns: T (B*6), w (3), a (B*2)
    rows = torch.cat([D[: B * M * 3].reshape(B, M * 3, -1), D[B * M * 3 :].reshape(B, 1, -1)], 1)
    blocks = []
    for b in range(B):
        blocks.append(torch.cat([rows[b][:, b * 6 : b * 6 + 6], rows[b][:, B * 6 : B * 6 + 3],
                                 rows[b][:, B * 6 + 3 + 2 * b : B * 6 + 5 + 2 * b]], 1))
    return torch.stack(blocks)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_per_sample_blocks_equal_the_dense_diagonal(chunk_size, device):
    B, M = 4, 5
    model = BatchedTransform(B, device)
    p = torch.randn(B, M, 3, dtype=torch.float64, device=device)
    r = per_sample_modjac(model, p, shared=["w"], chunk_size=chunk_size)
    assert r.jacobian.shape == (B, M * 3 + 1, 11)
    assert [c.name for c in r.columns] == ["T", "w", "a"]
    assert r.column_slice("a") == slice(9, 11)
    assert max_err(r.jacobian, _dense_blocks(model, p, B, M)) < 1e-13
    assert max_err(r.value[0], model(p)[0]) == 0


def test_per_sample_reverse_mode_equals_forward_mode(device):
    model = BatchedTransform(6, device)
    p = torch.randn(6, 3, 3, dtype=torch.float64, device=device)
    fwd = per_sample_modjac(model, p, wrt=["T", "a"])
    rev = per_sample_modjac(model, p, wrt=["T", "a"], strategy="reverse-mode", chunk_size=2)
    assert max_err(fwd.jacobian, rev.jacobian) < 1e-13


def test_per_sample_refuses_what_it_cannot_do(device):
    model = BatchedTransform(4, device)
    p = torch.randn(4, 2, 3, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="'w': a per-sample parameter needs leading dim 4"):
        per_sample_modjac(model, p)
    coincident = BatchedTransform(3, device)  # w has shape (3,) = (B,): only its coupling gives it away
    with pytest.raises(ValueError, match="'w': changing its sample 0 changes other samples"):
        per_sample_modjac(coincident, torch.randn(3, 2, 3, dtype=torch.float64, device=device))
    # a solver's later linearizations skip the probe (fit checks at its first): w then gets one
    # column per sample, and the coupling the probe is for goes unseen
    unchecked = per_sample_modjac(coincident, torch.randn(3, 2, 3, dtype=torch.float64, device=device),
                                  check_independent=False)
    assert unchecked.jacobian.shape == (3, 7, 6 + 1 + 2)
    with pytest.raises(ValueError, match="cannot give shared-parameter columns"):
        per_sample_modjac(model, p, shared=["w"], strategy="reverse-mode")
    with pytest.raises(ValueError, match="shared: 'v' is not among"):
        per_sample_modjac(model, p, shared=["v"])


def _graph(device, N=30, E=70, seed=0):
    g = torch.Generator(device).manual_seed(seed)
    X = pp.SE3(pp.randn_SE3(N, dtype=torch.float64, device=device).tensor())
    idx = torch.stack([torch.randint(0, N, (E,), generator=g, device=device),
                       torch.randint(0, N, (E,), generator=g, device=device)], 1)
    Z = pp.randn_SE3(E, dtype=torch.float64, device=device)
    A = torch.randn(E, 6, 6, dtype=torch.float64, generator=g, device=device)
    L = torch.linalg.cholesky(A @ A.mT + 6 * torch.eye(6, dtype=torch.float64, device=device)).mT
    return X, idx, Z, L


class PoseGraphModel(nn.Module):
    def __init__(self, X, idx, Z, L):
        super().__init__()
        self.X = pp.Parameter(X.clone())
        self.idx, self.Z, self.L = idx, Z, L

    def forward(self):
        Ti, Tj = self.X[self.idx[:, 0]], self.X[self.idx[:, 1]]
        e = (self.Z.Inv() * Ti.Inv() * Tj).Log().tensor()
        return (self.L @ e.unsqueeze(-1)).squeeze(-1)


def _autodiff_between(Ti, Tj, Z, L):
    e = (pp.SE3(Z).Inv() * Ti.Inv() * Tj).Log().tensor()
    return (L @ e.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("residual", ["analytic", "autodiff"])
def test_block_sparse_equals_dense_modjac(residual, device):
    X, idx, Z, L = _graph(device)
    fn = SE3BetweenResidual() if residual == "analytic" else _autodiff_between
    r, J = block_sparse_jacobian(fn, X, idx, data=(Z.tensor(), L), chunk_size=5)
    D = modjac(PoseGraphModel(X, idx, Z, L), flatten=True)
    assert J.shape == D.shape == (70 * 6, 30 * 6)
    assert max_err(J.to_dense(), D) < 1e-12
    assert max_err(r, PoseGraphModel(X, idx, Z, L)()) < 1e-12
    assert abs(J.to_scipy().toarray() - D.cpu().numpy()).max() < 1e-12
    v = torch.randn(30, 6, dtype=torch.float64, device=device)
    u = torch.randn(70, 6, dtype=torch.float64, device=device)
    assert max_err(J.matvec(v).reshape(-1), D @ v.reshape(-1)) < 1e-12
    assert max_err(J.rmatvec(u).reshape(-1), D.T @ u.reshape(-1)) < 1e-12
    w = torch.rand(70, dtype=torch.float64, device=device)
    H, g = J.normal_equations(r, w)
    W = w.repeat_interleave(6)
    assert max_err(H.to_dense(), D.T @ (W[:, None] * D)) < 1e-10
    assert max_err(g.reshape(-1), D.T @ (W * r.reshape(-1))) < 1e-10
    H2, g2 = J.normal_equations(r, w, opposite=True)  # between factors: the two blocks are opposite
    assert max_err(H2.to_dense(), D.T @ (W[:, None] * D)) < 1e-10 and max_err(g2, g) < 1e-12


def test_pattern_is_reused_and_checked(device):
    X, idx, Z, L = _graph(device)
    res = SE3BetweenResidual()
    _, J1 = block_sparse_jacobian(res, X, idx, data=(Z.tensor(), L))
    X2 = pp.randn_SE3(30, dtype=torch.float64, device=device)
    r2, J2 = block_sparse_jacobian(res, X2, idx, data=(Z.tensor(), L), pattern=J1.pattern)
    assert J2.pattern is J1.pattern
    _, J3 = block_sparse_jacobian(res, X2, idx, data=(Z.tensor(), L))
    assert max_err(J2.to_dense(), J3.to_dense()) == 0
    with pytest.raises(ValueError, match="pattern: does not match"):
        block_sparse_jacobian(res, X2, idx[:10], data=(Z.tensor()[:10], L[:10]), pattern=J1.pattern)


def test_duplicate_variables_in_a_factor_are_summed(device):
    X, _, Z, L = _graph(device, N=5, E=3)
    idx = torch.tensor([[0, 0], [1, 2], [3, 3]], device=device)
    _, J = block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(), L))
    D = modjac(PoseGraphModel(X, idx, Z, L), flatten=True)
    assert max_err(J.to_dense(), D) < 1e-12


def test_euclidean_variables_get_plain_columns(device):
    pts = torch.randn(10, 3, dtype=torch.float64, device=device)
    idx = torch.tensor([[0, 1], [2, 3], [4, 9], [9, 0]], device=device)
    fn = lambda a, b: torch.stack(((a - b).norm(dim=-1), (a * b).sum(-1)), -1)  # noqa: E731
    r, J = block_sparse_jacobian(fn, pts, idx)
    dense = euclid_fd(lambda P: fn(P[idx[:, 0]], P[idx[:, 1]]), pts).reshape(8, 30)
    assert max_err(J.to_dense(), dense) < 1e-8


def test_block_sparse_bad_input(device):
    X, idx, Z, L = _graph(device)
    res = SE3BetweenResidual()
    with pytest.raises(ValueError, match=r"data\[0\]: expected a tensor with leading dim 70"):
        block_sparse_jacobian(res, X, idx, data=(Z.tensor()[:5], L))
    with pytest.raises(ValueError, match=r"index: entries must lie in \[0, 30\)"):
        block_sparse_jacobian(res, X, idx + 100, data=(Z.tensor(), L))
    with pytest.raises(TypeError, match="index: expected integer indices, got dtype torch.float"):
        block_sparse_jacobian(res, X, idx + 0.7, data=(Z.tensor(), L))  # had been truncated to the indices
    with pytest.raises(ValueError, match="variables: expected shape"):
        block_sparse_jacobian(res, X.tensor()[None], idx, data=(Z.tensor(), L))
    _, J = block_sparse_jacobian(res, X, idx, data=(Z.tensor(), L))
    with pytest.raises(ValueError, match=r"v: expected shape \(30, 6\) or \(180,\)"):
        J.matvec(torch.randn(7, device=device))


@pytest.mark.parametrize("shape", BATCH_SHAPES, ids=str)
def test_se3_act_jacobian_against_autodiff_and_differences(shape, device):
    T = pp.randn_SE3(*shape, dtype=torch.float64, device=device)
    p = torch.randn(shape + (3,), dtype=torch.float64, device=device)
    q, J_T, J_p = se3_act_jacobian(T, p)
    assert max_err(q, T.Act(p)) < 1e-14
    fd = manifold_fd(lambda X: X.Act(p), T)
    n = T.shape[:-1].numel()
    diag = torch.arange(n, device=device)  # sample b's block of the dense Jacobians
    diag_fd = fd.reshape(n, 3, n, 6)[diag, :, diag] if shape else fd
    assert max_err(J_T.reshape(-1, 3, 6), diag_fd.reshape(-1, 3, 6)) < 1e-8
    (J_auto,) = modjac(_ActModel(T), p)
    assert max_err(J_T.reshape(-1, 3, 6), J_auto.reshape(n, 3, n, 6)[diag, :, diag]) < 1e-12
    J_p_auto = torch.autograd.functional.jacobian(lambda x: T.Act(x), p).reshape(n, 3, n, 3)[diag, :, diag]
    assert max_err(J_p, J_p_auto.reshape(J_p.shape)) < 1e-12


class _ActModel(nn.Module):
    def __init__(self, T):
        super().__init__()
        self.T = pp.Parameter(T.clone())

    def forward(self, p):
        return self.T.Act(p)


def test_se3_between_blocks_against_differences(device):
    Ti, Tj, Z = (pp.randn_SE3(8, sigma=1.5, dtype=torch.float64, device=device) for _ in range(3))
    e, (Ji, Jj) = SE3BetweenResidual().value_and_jacobians(Ti, Tj, Z)
    assert max_err(e, (Z.Inv() * Ti.Inv() * Tj).Log().tensor()) < 1e-12
    eight = torch.arange(8, device=device)
    fd_i = manifold_fd(lambda X: se3_between(X, Tj, Z), Ti).reshape(8, 6, 8, 6)[eight, :, eight]
    fd_j = manifold_fd(lambda X: se3_between(Ti, X, Z), Tj).reshape(8, 6, 8, 6)[eight, :, eight]
    assert max_err(Ji, fd_i) < 1e-7 and max_err(Jj, fd_j) < 1e-7


def test_se3_between_curvature_against_hessians_and_second_differences(device):
    """``curvature(v, ...)`` = the Hessian of ``v . r(Exp(a) Ti, Exp(b) Tj)`` in ``[a, b]``: against
    second central differences through pypose's group operations, and autograd's Hessian through
    robojac's, at large errors and with a square-root information."""
    from robojac import lie

    g = torch.Generator().manual_seed(3)
    F = 6
    Ti, Tj, Z = (pp.randn_SE3(F, sigma=1.5, dtype=torch.float64, device=device) for _ in range(3))
    M = torch.randn(F, 6, 6, dtype=torch.float64, generator=g, device="cpu").to(device)
    L = torch.linalg.cholesky(M @ M.mT + torch.eye(6, dtype=torch.float64, device=device)).mT
    v = torch.randn(F, 6, dtype=torch.float64, generator=g, device="cpu").to(device)
    H = SE3BetweenResidual().curvature(v, Ti, Tj, Z, L)

    def weighted(ab):  # (F, 12) -> (F,): pypose's group operations, not robojac's
        a, b = pp.se3(ab[:, :6]).Exp(), pp.se3(ab[:, 6:]).Exp()
        e = (Z.Inv() * (a * Ti).Inv() * (b * Tj)).Log().tensor()
        return (v * (L @ e.unsqueeze(-1)).squeeze(-1)).sum(-1)

    def by_lie(ab):  # the same through robojac.lie (pypose's Exp has no second derivative at zero)
        a = lie.se3_compose(lie.se3_exp(ab[:, :6]), Ti.tensor())
        b = lie.se3_compose(lie.se3_exp(ab[:, 6:]), Tj.tensor())
        e = lie.se3_log(lie.se3_compose(lie.se3_inverse(Z.tensor()), lie.se3_compose(lie.se3_inverse(a), b)))
        return (v * (L @ e.unsqueeze(-1)).squeeze(-1)).sum()

    zero = torch.zeros(F, 12, dtype=torch.float64, device=device)
    full = torch.autograd.functional.hessian(by_lie, zero)
    each = torch.arange(F, device=device)
    assert max_err(H, full[each, :, each, :]) < 1e-9 * float(H.abs().max())
    assert max_err(H, per_sample_hessian_fd(weighted, zero)) < 1e-5 * float(H.abs().max())


def test_constant_variables_get_no_columns(device):
    X, idx, Z, L = _graph(device, N=12, E=30)
    _, J = block_sparse_jacobian(SE3BetweenResidual(), X, idx, data=(Z.tensor(), L))
    held = torch.tensor([0, 5], device=device)  # hold poses 0 and 5 constant; renumber the rest
    free = torch.tensor([k for k in range(12) if k not in held.tolist()], device=device)
    new = torch.full((12,), -1, dtype=torch.long, device=device)
    new[free] = torch.arange(len(free), device=device)
    P = BlockSparsePattern.from_index(new[idx], len(free), 6, 6)
    from robojac.jacobian import BlockSparseJacobian

    Jc = BlockSparseJacobian(J.blocks, P)
    cols = (free[:, None] * 6 + torch.arange(6, device=device)).reshape(-1)
    D = J.to_dense()[:, cols]
    assert max_err(Jc.to_dense(), D) < 1e-14
    H, _ = Jc.normal_equations()
    assert max_err(H.to_dense(), D.T @ D) < 1e-10
    v = torch.randn(len(free), 6, dtype=torch.float64, device=device)
    u = torch.randn(30, 6, dtype=torch.float64, device=device)
    assert max_err(Jc.matvec(v).reshape(-1), D @ v.reshape(-1)) < 1e-12
    assert max_err(Jc.rmatvec(u).reshape(-1), D.T @ u.reshape(-1)) < 1e-12
