"""robojac.optim's constraints (an augmented Lagrangian on the engine), checked against closed
forms, SciPy's SLSQP and central differences."""

import math

import numpy as np
import pytest
import torch

from robojac import lie, optim

from helpers import max_err


def _vector(x, device):
    """A vector variable of one entry per problem, starting at the rows of ``x`` (made on the CPU)."""
    x = torch.as_tensor(x, dtype=torch.float64, device="cpu") if not isinstance(x, torch.Tensor) else x
    return optim.Variable("Rn", x.to(device=device, dtype=torch.float64).clone()[:, None], name="x")


def test_an_equality_projects_onto_its_plane_in_every_problem(device):
    """min |x - a|^2 subject to sum(x) = 1: the projection a - (sum(a) - 1) / n, per problem."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64, device="cpu").to(device)
    x = _vector(torch.zeros(6, 4, device="cpu"), device)
    near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
    plane = optim.Constraint(lambda x: x.sum(-1, keepdim=True) - 1.0, [x], kind="eq", name="plane")
    r = optim.solve([x], [near], constraints=[plane])
    ref = a - (a.sum(-1, keepdim=True) - 1.0) / 4
    assert bool(r.converged.all()) and max_err(r.values[0][:, 0], ref) < 1e-8
    assert float(r.constraint_violation.max()) <= 1e-8
    assert max_err(r.cost, 0.5 * ((ref - a) ** 2).sum(-1)) < 1e-8  # the factors' own cost
    assert max_err(r.initial_cost, 0.5 * (a ** 2).sum(-1)) < 1e-12  # at the start (x = 0), no constraint term
    assert optim.solve([x], [near]).constraint_violation is None


def test_an_inequality_holds_only_where_it_binds(device):
    """min |x - a|^2 subject to |x|^2 <= 1: a inside the unit ball stays, outside it goes to a / |a|."""
    a = torch.tensor([[0.3, -0.2, 0.1], [2.0, 1.0, -2.0], [0.0, 0.0, 3.0], [-0.5, 0.5, 0.5]],
                     dtype=torch.float64, device=device)
    x = _vector(torch.zeros(4, 3, device="cpu"), device)
    near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
    ball = optim.Constraint(lambda x: (x * x).sum(-1, keepdim=True) - 1.0, [x], kind="leq", name="ball")
    r = optim.solve([x], [near], constraints=[ball])
    n = a.norm(dim=-1, keepdim=True)
    ref = torch.where(n > 1, a / n, a)
    assert bool(r.converged.all()) and max_err(r.values[0][:, 0], ref) < 1e-7
    assert r.reason[0] == optim.solve([x], [near]).reason[0]  # the inside one stops as it would without


def test_a_nonlinear_problem_reaches_scipys_slsqp_optimum(device):
    """Rosenbrock's valley inside a disc and above a line: the best optimum SciPy's SLSQP finds
    from four starts (from robojac's start, (-1, 1), SLSQP stops on the line at f = 1.58;
    robojac goes on to the disc, f = 0.0086)."""
    scipy = pytest.importorskip("scipy.optimize")
    x = _vector([[-1.0, 1.0]], device)
    valley = optim.Factor(lambda x: torch.stack((1.0 - x[..., 0], 10.0 * (x[..., 1] - x[..., 0] ** 2)), -1), [x])
    disc = optim.Constraint(lambda x: (x * x).sum(-1, keepdim=True) - 1.5, [x], kind="leq", name="disc")
    line = optim.Constraint(lambda x: (0.2 - x[..., 1] + 0.5 * x[..., 0])[..., None], [x], kind="leq", name="line")
    r = optim.solve([x], [valley], constraints=[disc, line])
    f = lambda z: (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda z: 1.5 - z @ z}, {"type": "ineq", "fun": lambda z: z[1] - 0.5 * z[0] - 0.2}]
    runs = [scipy.minimize(f, z0, method="SLSQP", constraints=cons, options={"ftol": 1e-14, "maxiter": 500})
            for z0 in ([-1.0, 1.0], [0.5, 0.5], [0.0, 1.0], [1.0, 0.0])]  # from (-1, 1) SLSQP stops at f = 1.58
    ref = min((x for x in runs if x.success), key=lambda x: x.fun)
    assert bool(r.converged.all())
    assert np.abs(r.values[0][0, 0].cpu().numpy() - ref.x).max() < 1e-6
    assert abs(2 * float(r.cost) - ref.fun) < 1e-8
    assert abs(float((r.values[0] ** 2).sum()) - 1.5) < 1e-8  # the disc binds


def test_a_pose_kept_above_a_plane(device):
    """An SE3 pose pulled toward one below the plane z = 0.5 stops on it: the orientation of the
    pull, the position's z on the plane and x, y as pulled (the plane binds along z only)."""
    target = torch.tensor([[0.2, -0.1, 0.1, 0.0, 0.0, math.sin(0.2), math.cos(0.2)]], dtype=torch.float64,
                          device=device)
    X = optim.Variable("SE3", lie.se3_exp(torch.zeros(1, 1, 6, dtype=torch.float64, device=device)), name="X")
    pull = optim.Factor(lambda X, T: lie.se3_log(lie.se3_compose(lie.se3_inverse(T), X)), [X], data=(target[:, None],))
    above = optim.Constraint(lambda X: 0.5 - X[..., 2:3], [X], kind="leq", name="above")
    r = optim.solve([X], [pull], constraints=[above])
    out = r.values[0][0, 0]
    assert bool(r.converged.all()) and abs(float(out[2]) - 0.5) < 1e-8
    assert max_err(out[3:], target[0, 3:]) < 1e-6 and max_err(out[:2], target[0, :2]) < 1e-6


def test_gradients_are_those_of_the_constrained_minimum(device):
    """The plane's projection moves with a as I - 1 1^T / n; the ball's with (I - x x^T) / |a|
    where it binds: both against their closed forms and central differences."""
    a = torch.tensor([[0.4, -0.3, 0.8], [2.0, 1.0, -2.0]], dtype=torch.float64, device=device, requires_grad=True)

    def solve(a, kind):
        x = _vector(torch.zeros(2, 3, device="cpu"), device)
        near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
        if kind == "eq":
            c = optim.Constraint(lambda x: x.sum(-1, keepdim=True) - 1.0, [x], kind="eq")
        else:
            c = optim.Constraint(lambda x: (x * x).sum(-1, keepdim=True) - 1.0, [x], kind="leq")
        return optim.solve([x], [near], constraints=[c]).values[0][:, 0]

    eye = torch.eye(3, dtype=torch.float64, device=device)
    for kind in ("eq", "leq"):
        x = solve(a, kind)
        J = torch.stack([torch.autograd.grad(x[:, i].sum(), a, retain_graph=True)[0] for i in range(3)], 1)  # (2, 3, 3)
        if kind == "eq":
            ref = (eye - 1.0 / 3).expand(2, 3, 3)
        else:
            xb = x[1].detach()
            n = a[1].detach().norm()
            ref = torch.stack((eye, (eye - torch.outer(xb, xb)) / n))  # the first inside: the identity
        assert max_err(J, ref) < 1e-6
        fd = torch.zeros(2, 3, 3, dtype=torch.float64, device=device)
        for j in range(3):
            d = torch.zeros(2, 3, dtype=torch.float64, device=device)
            d[:, j] = 1e-6
            fd[:, :, j] = (solve(a.detach() + d, kind) - solve(a.detach() - d, kind)) / 2e-6
        assert max_err(J, fd) < 1e-6


def test_gradcheck_through_a_constrained_solve():
    a = torch.tensor([[0.4, -0.3, 0.8]], dtype=torch.float64, requires_grad=True)

    def f(a):
        x = optim.Variable("Rn", torch.zeros(1, 1, 3, dtype=torch.float64))
        near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
        c = optim.Constraint(lambda x: (x * x).sum(-1, keepdim=True) - 0.25, [x], kind="leq")
        cfg = optim.SolverConfig(constraints=optim.ConstraintConfig(tolerance=1e-12))
        return optim.solve([x], [near], cfg, constraints=[c]).values[0]

    assert torch.autograd.gradcheck(f, (a,), eps=1e-6, atol=1e-5)


def test_infeasible_constraints_say_so_without_nan(device):
    """x <= 0 and x >= 1 together: never converged, the reason says it, the values finite."""
    x = _vector([[0.5]], device)
    prior = optim.Factor(lambda x: x - 0.5, [x])
    lo = optim.Constraint(lambda x: x, [x], kind="leq", name="below")
    hi = optim.Constraint(lambda x: 1.0 - x, [x], kind="leq", name="above")
    r = optim.solve([x], [prior], optim.SolverConfig(constraints=optim.ConstraintConfig(max_rounds=8)),
                    constraints=[lo, hi])
    assert not bool(r.converged.any()) and r.reason == ("constraint_violation",)
    assert torch.isfinite(r.values[0]).all() and float(r.constraint_violation[0]) > 0.4


def test_a_finish_that_leaves_the_constraint_is_not_called_converged(monkeypatch):
    """Whatever the finish after the rounds does (here a stand-in that moves every answer 1e-3
    off the plane), ``converged`` and ``reason`` are judged at the answer returned."""
    import robojac.optim._engine as engine

    a = torch.tensor([[0.2, 0.7], [1.5, -0.3]], dtype=torch.float64)
    x = _vector(torch.zeros(2, 2), "cpu")
    near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
    plane = optim.Constraint(lambda x: x.sum(-1, keepdim=True) - 1.0, [x], kind="eq", name="plane")
    assert bool(optim.solve([x], [near], constraints=[plane]).converged.all())
    monkeypatch.setattr(engine, "_polish", lambda problem, values, converged, sparse:
                        (tuple(v + 5e-4 for v in values), None))
    r = optim.solve([x], [near], constraints=[plane])
    assert float(r.constraint_violation.min()) > 9e-4
    assert not bool(r.converged.any()) and r.reason == ("constraint_violation", "constraint_violation")


def test_a_feasible_answer_off_the_minimum_is_not_called_converged(monkeypatch):
    """A finish that leaves each answer on the plane but 1e-3 along it from the projection (a
    stand-in for a solve stalled there): feasible, not stationary, and said so."""
    import robojac.optim._engine as engine

    a = torch.tensor([[0.2, 0.7], [1.5, -0.3]], dtype=torch.float64)
    x = _vector(torch.zeros(2, 2), "cpu")
    near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
    plane = optim.Constraint(lambda x: x.sum(-1, keepdim=True) - 1.0, [x], kind="eq", name="plane")
    along = torch.tensor([1e-3, -1e-3], dtype=torch.float64)
    monkeypatch.setattr(engine, "_polish", lambda problem, values, converged, sparse:
                        (tuple(v + along for v in values), None))
    r = optim.solve([x], [near], constraints=[plane])
    assert float(r.constraint_violation.max()) < 1e-8
    assert not bool(r.converged.any()) and r.reason == ("not_stationary", "not_stationary")


def test_loose_early_rounds_reach_the_same_minimum_in_fewer_iterations(device):
    """The rounds far from feasible stop their solves early (``early_relative_tolerance``); the
    answer is still the minimum to rounding, even with those rounds solved to 1e-2, and the
    default takes fewer iterations than rounds solved to 1e-12 throughout."""
    a = torch.tensor([[2.0, 1.0, -2.0], [0.0, 3.0, 4.0]], dtype=torch.float64, device=device)
    ref = a / a.norm(dim=-1, keepdim=True)
    its = {}
    for early in (1e-2, 1e-6, 1e-12):
        x = _vector(torch.zeros(2, 3, device="cpu"), device)
        near = optim.Factor(lambda x, a: x - a, [x], data=(a[:, None],))
        ball = optim.Constraint(lambda x: (x * x).sum(-1, keepdim=True) - 1.0, [x], kind="leq")
        cfg = optim.SolverConfig(constraints=optim.ConstraintConfig(early_relative_tolerance=early))
        r = optim.solve([x], [near], cfg, constraints=[ball])
        assert bool(r.converged.all()) and max_err(r.values[0][:, 0], ref) < 1e-11
        its[early] = int(r.iterations.sum())
    assert its[1e-6] < its[1e-12]


def test_bad_constraints_are_refused_by_name(device):
    x = _vector([[0.5]], device)
    y = _vector([[0.5]], device)
    f = optim.Factor(lambda x: x, [x])
    with pytest.raises(ValueError, match="kind"):
        optim.Constraint(lambda x: x, [x], kind="geq")
    with pytest.raises(TypeError, match="constraints: expected robojac.optim.Constraint"):
        optim.solve([x], [f], constraints=[f])
    with pytest.raises(ValueError, match="reads variable"):
        optim.solve([x], [f], constraints=[optim.Constraint(lambda y: y, [y], name="c")])
    for make, match in ((lambda: optim.ConstraintConfig(penalty_growth=1.0), "ConstraintConfig.penalty_growth"),
                        (lambda: optim.ConstraintConfig(tolerance=0.0), "ConstraintConfig.tolerance"),
                        (lambda: optim.ConstraintConfig(max_rounds=0), "ConstraintConfig.max_rounds"),
                        (lambda: optim.SolverConfig(constraints=3), "SolverConfig.constraints")):
        with pytest.raises(ValueError, match=match):
            make()


def test_one_large_sparse_problem_with_an_equality_equals_its_kkt_solution(device):
    """A chain of 400 values with noisy steps, the first held near 0 and the last constrained to
    5: the sparse path (one problem of 400 unknowns) reaches numpy's solution of the KKT system."""
    N = 400
    g = torch.Generator(device="cpu").manual_seed(3)
    d = (0.01 + 0.02 * torch.rand(N - 1, generator=g, dtype=torch.float64, device="cpu")).to(device)
    x = optim.Variable("Rn", torch.zeros(1, N, 1, dtype=torch.float64, device=device))
    idx = torch.arange(N, device=device)
    steps = optim.Factor(lambda u, v, d: v - u - d[..., None], [x, x], torch.stack((idx[:-1], idx[1:]), 1), data=(d,))
    prior = optim.Factor(lambda u: u, [x], torch.tensor([0], device=device))
    end = optim.Constraint(lambda u: u - 5.0, [x], torch.tensor([N - 1], device=device), kind="eq")
    r = optim.solve([x], [steps, prior], constraints=[end])
    A = np.zeros((N, N))  # rows: the prior, then the steps
    A[0, 0] = 1.0
    for i in range(N - 1):
        A[i + 1, i], A[i + 1, i + 1] = -1.0, 1.0
    b = np.concatenate(([0.0], d.cpu().numpy()))
    K = np.zeros((N + 1, N + 1))
    K[:N, :N], K[:N, N], K[N, :N] = A.T @ A, 0.0, 0.0
    K[:N, N] = K[N, :N] = np.eye(N)[N - 1]
    ref = np.linalg.solve(K, np.concatenate((A.T @ b, [5.0])))[:N]
    assert bool(r.converged.all()) and np.abs(r.values[0][0, :, 0].cpu().numpy() - ref).max() < 1e-8
