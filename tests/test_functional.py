"""robojac.jacobian functional forms: parity with torch.func / torch.autograd.functional,
tangent columns for Lie-group inputs, vmap and nesting."""

import pypose as pp
import pytest
import torch

from robojac import jacobian as rj

from helpers import BATCH_SHAPES, GROUPS, left_perturb, manifold_fd, max_err, random_group


def f2(x, y):
    return torch.sin(x) * y.sum() + y[:1] ** 2


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
@pytest.mark.parametrize("argnums", [0, 1, (0, 1), (1, 0), -1])
def test_jacobian_matches_torch_func(strategy, chunk_size, argnums, device):
    x, y = torch.randn(4, dtype=torch.float64, device=device), torch.randn(3, dtype=torch.float64, device=device)
    ours = rj.jacobian(f2, argnums=argnums, strategy=strategy, chunk_size=chunk_size)(x, y)
    ref = torch.func.jacrev(f2, argnums=argnums)(x, y)
    if isinstance(argnums, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert max_err(a, b) < 1e-14
    else:
        assert max_err(ours, ref) < 1e-14


@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
def test_has_aux_returns_the_auxiliary_value(strategy, device):
    x = torch.randn(5, dtype=torch.float64, device=device)
    J, aux = rj.jacobian(lambda x: (torch.exp(x), x.sum()), has_aux=True, strategy=strategy, chunk_size=2)(x)
    assert max_err(J, torch.diag(torch.exp(x))) < 1e-14
    assert aux == x.sum()


def test_composes_with_vmap_and_nests_into_hessians(device):
    f = lambda x: torch.sin(x) * (x**2).sum()  # noqa: E731
    xs = torch.randn(6, 4, dtype=torch.float64, device=device)
    Jv = torch.vmap(rj.jacobian(f))(xs)
    assert max_err(Jv, torch.stack([torch.func.jacrev(f)(x) for x in xs])) < 1e-14
    g = lambda x: (x**3).sum() * x[0]  # noqa: E731
    H = rj.jacobian(rj.jacobian(g))(xs[0])
    assert max_err(H, torch.autograd.functional.hessian(g, xs[0])) < 1e-12
    H2 = rj.jacobian(rj.jacobian(g, strategy="forward-mode"))(xs[0])
    assert max_err(H2, H) < 1e-12


@pytest.mark.parametrize("group", list(GROUPS))
@pytest.mark.parametrize("shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("strategy", ["reverse-mode", "forward-mode"])
def test_lie_inputs_get_tangent_columns(group, shape, strategy, device):
    X = random_group(group, shape, device=device)
    p = torch.randn(shape + (3,), dtype=torch.float64, device=device)

    def f(X, p):
        return X.Act(p) + X.tensor()[..., :3] + X.Inv().Log().tensor()[..., :3]

    J = rj.jacobian(f, strategy=strategy)(X, p)
    ref = manifold_fd(lambda Z: f(Z, p), X)
    assert J.shape == ref.shape and max_err(J, ref) < 1e-7


def test_lie_inputs_under_vmap_are_declared_with_groups(device):
    X = pp.randn_SE3(5, dtype=torch.float64, device=device)
    p = torch.randn(5, 3, dtype=torch.float64, device=device)
    f = lambda X, p: X.Act(p) + X.translation()  # noqa: E731
    Jv = torch.vmap(rj.jacobian(f, groups={0: "SE3"}))(X.tensor(), p)
    full = manifold_fd(lambda Z: f(Z, p), X)  # (5, 3, 5, 6): per-sample blocks on the diagonal
    assert max_err(Jv, torch.stack([full[i, :, i] for i in range(5)])) < 1e-7


def test_vjp_jvp_hvp_vhp_match_torch_for_tensors(device):
    f = lambda x, y: (torch.sin(x) * y).sum()  # noqa: E731
    g = lambda x, y: torch.sin(x) * y  # noqa: E731
    x, y = torch.randn(4, dtype=torch.float64, device=device), torch.randn(4, dtype=torch.float64, device=device)
    v = (torch.randn(4, dtype=torch.float64, device=device), torch.randn(4, dtype=torch.float64, device=device))
    u = torch.randn(4, dtype=torch.float64, device=device)
    for ours, ref in [
        (rj.vjp(g, (x, y), u), torch.autograd.functional.vjp(g, (x, y), u)),
        (rj.jvp(g, (x, y), v), torch.autograd.functional.jvp(g, (x, y), v)),
        (rj.hvp(f, (x, y), v), torch.autograd.functional.hvp(f, (x, y), v)),
        (rj.vhp(f, (x, y), v), torch.autograd.functional.vhp(f, (x, y), v)),
    ]:
        assert max_err(ours[0], ref[0]) < 1e-14
        for a, b in zip(ours[1], ref[1]):
            assert max_err(a, b) < 1e-13
    H = rj.hessian(f, (x, y))
    Href = torch.autograd.functional.hessian(f, (x, y))
    for ra, rb in zip(H, Href):
        for a, b in zip(ra, rb):
            assert max_err(a, b) < 1e-13


@pytest.mark.parametrize("group", ["SO3", "SE3", "Sim3"])
def test_lie_hessian_is_the_symmetric_second_derivative(group, device):
    X = random_group(group, device=device)
    p = torch.randn(3, dtype=torch.float64, device=device)
    dof = GROUPS[group][2]

    def f(X):
        return (X.Act(p) ** 2).sum() + X.Log().tensor()[0] * X.tensor()[1]

    H = rj.hessian(f, X)
    eps = 1e-4
    g = lambda d: f(left_perturb(X, d))  # noqa: E731
    ref = torch.zeros(dof, dof, dtype=torch.float64, device=device)
    for a in range(dof):
        for b in range(dof):
            ea = torch.zeros(dof, dtype=torch.float64, device=device)
            eb = torch.zeros(dof, dtype=torch.float64, device=device)
            ea[a], eb[b] = eps, eps
            ref[a, b] = (g(ea + eb) - g(ea - eb) - g(-ea + eb) + g(-ea - eb)) / (4 * eps**2)
    assert H.shape == (dof, dof)
    assert max_err(H, H.T) < 1e-12
    assert max_err(H, ref) < 1e-6
    v = torch.randn(dof, dtype=torch.float64, device=device)
    assert max_err(rj.hvp(f, X, v)[1], H @ v) < 1e-12
    assert max_err(rj.vhp(f, X, v)[1], v @ H) < 1e-12


def test_lie_jvp_and_vjp_use_tangent_vectors(device):
    X = pp.randn_SE3(2, dtype=torch.float64, device=device)
    p = torch.randn(2, 3, dtype=torch.float64, device=device)
    f = lambda X: X.Act(p)  # noqa: E731
    J = manifold_fd(f, X)  # (2, 3, 2, 6)
    v = torch.randn(2, 6, dtype=torch.float64, device=device)
    u = torch.randn(2, 3, dtype=torch.float64, device=device)
    _, jv = rj.jvp(f, X, v)
    _, vj = rj.vjp(f, X, u)
    assert max_err(jv, torch.einsum("aibk,bk->ai", J, v)) < 1e-8
    assert max_err(vj, torch.einsum("ai,aibk->bk", u, J)) < 1e-8


def test_functional_bad_input(device):
    x = torch.randn(3, device=device)
    with pytest.raises(ValueError, match="argnums: 2 is not a valid position"):
        rj.jacobian(lambda a, b: a, argnums=2)(x, x)
    with pytest.raises(TypeError, match="argument 0: expected a Tensor"):
        rj.jacobian(lambda a: a)([1.0, 2.0])
    with pytest.raises(ValueError, match="strategy: expected one of"):
        rj.jacobian(lambda a: a, strategy="both")
    with pytest.raises(ValueError, match="chunk_size: expected a positive int"):
        rj.jacobian(lambda a: a, chunk_size=0)
    with pytest.raises(ValueError, match=r"v\[0\]: expected shape \(6,\)"):
        rj.jvp(lambda X: X.translation(), pp.randn_SE3(device=device), torch.randn(7, device=device))
    with pytest.raises(ValueError, match="groups\\[0\\]: expected a group name"):
        rj.jacobian(lambda a: a, groups={0: pp.se3_type})(torch.randn(6, device=device))
    with pytest.raises(ValueError, match="an SE3 element needs last dimension 7"):
        rj.jacobian(lambda a: a, groups={0: "SE3"})(torch.randn(6, device=device))
