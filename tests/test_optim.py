"""robojac.optim's engine: user factors without Jacobians, batches that stop on their own,
failures that say so, and gradients through the answer checked against finite differences."""

import math

import pypose as pp
import pytest
import torch

from robojac import lie, optim

from helpers import max_err


def point_to_point(X, p, q):
    """``X (B, 1, 7)`` moves points ``p (B, 1, M, 3)`` onto ``q``: residual ``(B, 1, 3M)``."""
    return (lie.se3_act(X[:, :, None, :], p) - q).flatten(2)


class ClosedPointToPoint:
    """The same residual with its closed-form Jacobian ``[I, -[q]x]`` (left perturbation)."""

    def __call__(self, X, p, q):
        return point_to_point(X, p, q)

    def value_and_jacobians(self, X, p, q):
        moved = lie.se3_act(X[:, :, None, :], p)  # (B, 1, M, 3)
        eye = torch.eye(3, dtype=X.dtype, device=X.device).expand(moved.shape + (3,))
        J = torch.cat((eye, -lie.skew(moved)), -1)  # (B, 1, M, 3, 6)
        return (moved - q).flatten(2), (J.flatten(2, 3),)


def _pairs(B, M, noise, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, device="cpu")
    T = pp.se3(0.3 * torch.randn(B, 6, generator=g, **kw)).Exp()
    p = torch.randn(B, M, 3, generator=g, **kw)
    q = T.unsqueeze(1).Act(p) + noise * torch.randn(B, M, 3, generator=g, **kw)
    return T.to(device), p.to(device), q.to(device)


def _pose_problem(p, q, residual=point_to_point):
    B = p.shape[0]
    X = optim.Variable("SE3", pp.identity_SE3(B, 1, dtype=p.dtype, device=p.device).tensor(), name="T_q_p")
    return X, optim.Factor(residual, [X], data=(p[:, None], q[:, None]), name="points")


def test_a_factor_without_a_jacobian_solves_a_batch(device):
    T, p, q = _pairs(4, 25, 0.0, device)
    X, f = _pose_problem(p, q)
    r = optim.solve([X], [f])
    assert r.converged.all() and r.values[0].shape == (4, 1, 7) and r.values[0].device == device
    assert max_err((pp.SE3(r.values[0][:, 0]).Inv() * T).Log().tensor(), torch.zeros(4, 6, dtype=torch.float64,
                                                                                         device=device)) < 1e-10
    assert set(r.reason) <= {"gradient_tolerance", "relative_tolerance", "absolute_tolerance"}
    assert r.history.cost.shape == (int(r.iterations.max()), 4)


def test_closed_forms_and_autodiff_take_the_same_steps(device):
    _, p, q = _pairs(3, 30, 0.01, device)
    X1, f1 = _pose_problem(p, q)
    X2, f2 = _pose_problem(p, q, ClosedPointToPoint())
    pb1, pb2 = optim.Problem([X1], [f1]), optim.Problem([X2], [f2])
    lin1, lin2 = optim.Linearization(pb1, (X1.value,)), optim.Linearization(pb2, (X2.value,))
    (H1, g1), (H2, g2) = lin1.normal_equations(), lin2.normal_equations()
    assert max_err(H1, H2) < 1e-10 and max_err(g1, g2) < 1e-10
    a, b = optim.solve([X1], [f1]), optim.solve([X2], [f2])
    assert torch.equal(a.iterations, b.iterations) and max_err(a.values[0], b.values[0]) < 1e-12


def test_a_point_to_line_factor_with_lie_variables(device):
    """A new factor with SE3 variables: points measured on known lines (a laser tracker's rays);
    no Jacobian is written anywhere."""
    T, p, _ = _pairs(2, 40, 0.0, device, seed=3)
    g = torch.Generator().manual_seed(4)
    d = torch.nn.functional.normalize(torch.randn(2, 40, 3, dtype=torch.float64, generator=g, device="cpu"), dim=-1)
    d = d.to(device)
    on_line = T.unsqueeze(1).Act(p) + 0.7 * d  # a point of each line, not the point itself

    def point_to_line(X, p, a, d):  # distance of X p from the line through a along d
        v = lie.se3_act(X[:, :, None, :], p) - a
        return (v - (v * d).sum(-1, keepdim=True) * d).flatten(2)

    X = optim.Variable("SE3", pp.identity_SE3(2, 1, dtype=torch.float64, device=device).tensor())
    f = optim.Factor(point_to_line, [X], data=(p[:, None], on_line[:, None], d[:, None]))
    r = optim.solve([X], [f], optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=200)))
    assert r.converged.all()
    assert float((pp.SE3(r.values[0][:, 0]).Inv() * T).Log().norm(dim=-1).max()) < 1e-8


def test_problems_stop_on_their_own_and_failures_say_why(device):
    _, p, q = _pairs(3, 20, 0.01, device)
    q = q.clone()
    q[1, 5, 0] = float("nan")  # problem 1's residual is NaN from the start
    X, f = _pose_problem(p, q)
    r = optim.solve([X], [f])
    assert r.converged.tolist() == [True, False, True] and r.reason[1] == "non_finite"
    assert torch.isfinite(r.values[0]).all()  # its values: the last finite state (the start)
    few = optim.solve([X], [optim.Factor(point_to_point, [X], data=(p[:, None], q[:, None]))],
                      optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=1)))
    assert few.reason[0] == "max_iterations" and not bool(few.converged[0])


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_a_step_across_the_valley_a_sliver_lower_is_not_convergence(method, device):
    """Gauss-Newton on ``r = atan(x)`` from just inside its 2-cycle (``x* = 1.39174520027``) lands
    just inside on the other side, 3e-10 of the cost lower, although the model promised all of
    it.  Counted as a small decrease, that step stopped at ``x = -1.3917``, cost 0.449, reported
    converged; the minimum is ``x = 0``."""
    x = optim.Variable("Rn", torch.tensor([[[1.3917452]]], dtype=torch.float64, device=device))
    r = optim.solve([x], [optim.Factor(torch.atan, [x])],
                    optim.SolverConfig(trust_region=optim.TrustRegionConfig(method=method, lambda_initial=1e-12),
                                       termination=optim.TerminationConfig(relative_tolerance=1e-6)))
    assert bool(r.converged[0]) and abs(float(r.values[0])) < 1e-8 and float(r.cost) < 1e-16
    assert int(r.iterations[0]) > 1


def test_a_refused_first_step_falls_back_to_the_careful_damping_at_once(device):
    """``lambda_fallback``: Gauss-Newton on ``atan(x)`` from ``x = 3`` (outside its 2-cycle)
    overshoots to ``x = -9.5``; until a step is taken, a refusal raises ``lambda`` to the fallback
    at once, where without it the damping climbs tenfold step by step (1e-10, 1e-9, ...).  The
    problem beside it starts inside the cycle, takes its steps and is never raised."""
    kw = dict(dtype=torch.float64, device=device)
    runs = {}
    for fallback in (0.0, 0.1):
        x = optim.Variable("Rn", torch.tensor([[[3.0]], [[0.5]]], **kw))
        tr = optim.TrustRegionConfig(lambda_initial=1e-10, lambda_fallback=fallback)
        runs[fallback] = optim.solve([x], [optim.Factor(torch.atan, [x])], optim.SolverConfig(trust_region=tr))
        assert bool(runs[fallback].converged.all()) and float(runs[fallback].values[0].abs().max()) < 1e-8
    plain, falls = runs[0.0].history, runs[0.1].history
    assert not bool(plain.accepted[0, 0]) and float(plain.damping[1, 0]) == pytest.approx(1e-9)
    assert not bool(falls.accepted[0, 0]) and float(falls.damping[1, 0]) == pytest.approx(0.1)
    assert int(runs[0.1].iterations[0]) < int(runs[0.0].iterations[0])
    assert bool(falls.accepted[:, 1][: int(runs[0.1].iterations[1])].all())  # the other: every step taken
    assert float(falls.damping[:, 1].max()) <= 1e-10
    with pytest.raises(ValueError, match="lambda_fallback"):
        optim.TrustRegionConfig(lambda_fallback=-1.0)


def test_fixed_variables_keep_their_values(device):
    B = 2
    kw = dict(dtype=torch.float64, device=device)
    target = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], **kw).expand(B, 3, 2)
    x = optim.Variable("Rn", torch.zeros(B, 3, 2, **kw), fixed=[False, True, False])
    f = optim.Factor(lambda X, t: X - t, [x], index=[0, 1, 2], data=(target[0],))
    r = optim.solve([x], [f])
    assert r.converged.all() and torch.equal(r.values[0][:, 1], torch.zeros(B, 2, **kw))
    assert max_err(r.values[0][:, [0, 2]], target[:, [0, 2]]) < 1e-9  # the held entry keeps a cost of 12.5


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_implicit_gradients_equal_central_differences(noise, device):
    """d(answer)/d(data) by the implicit function theorem, against re-solving at data +- h
    (float64, from the solution): relative error < 1e-5, with and without residuals at the optimum."""
    T, p, q = _pairs(2, 12, noise, device, seed=5)
    q = q.clone().requires_grad_()
    X, f = _pose_problem(p, q)
    r = optim.solve([X], [f])
    w = torch.randn(2, 1, 7, dtype=torch.float64, device=device)
    (r.values[0] * w).sum().backward()
    got = q.grad.clone()

    def answer(qq):
        Xs, fs = _pose_problem(p, qq.detach())
        out = optim.solve([Xs], [fs], optim.SolverConfig(backward="none"))
        assert out.converged.all()
        return (out.values[0] * w).sum()

    h, ref = 1e-6, torch.zeros_like(got)
    for b, m, c in [(0, 0, 0), (0, 3, 2), (1, 7, 1), (1, 11, 0), (0, 5, 1)]:
        e = torch.zeros_like(q)
        e[b, m, c] = h
        ref[b, m, c] = (answer(q + e) - answer(q - e)) / (2 * h)
        assert abs(float(got[b, m, c] - ref[b, m, c])) <= 1e-5 * max(abs(float(ref[b, m, c])), 1e-3)


def test_the_gauss_newton_backward_is_the_weighted_fit_with_its_weights_held(device):
    """``attach_gradients(hessian="gauss_newton")`` differentiates the fit linearized at the
    answer, its robust weights held.  For a robust (Cauchy) mean of several readings of each
    entry that is, written out, each reading's IRLS weight over its entry's total; the readings
    of a fixed entry get nothing.  The exact Hessian's derivative also moves the weights (a
    different answer here), and for poses fitted to points the two agree where the residuals
    vanish at the answer, and only there."""
    kw = dict(dtype=torch.float64, device=device)
    g = torch.Generator().manual_seed(3)
    index = [0, 0, 0, 1, 1, 1, 1, 2]
    b = torch.randn(2, 8, 2, generator=g, dtype=torch.float64, device="cpu").to(device).requires_grad_()
    x = optim.Variable("Rn", torch.zeros(2, 3, 2, **kw), fixed=[False, False, True])
    f = optim.Factor(lambda X, t: X - t, [x], index=index, data=(b,), kernel=optim.RobustKernel("cauchy", 0.5))
    r = optim.solve([x], [f], optim.SolverConfig(backward="none"))
    assert r.converged.all()
    up = torch.randn(2, 3, 2, generator=g, dtype=torch.float64, device="cpu").to(device)
    grads = {}
    for hessian in ("gauss_newton", "exact"):
        (xs,) = optim.attach_gradients([x], [f], (r.values[0],), r.converged, hessian=hessian)
        (grads[hessian],) = torch.autograd.grad((xs * up).sum(), b)
    with torch.no_grad():
        res = r.values[0][:, index] - b  # (2, 8, 2)
        w = 1 / (1 + res.square().sum(-1) / 0.25)  # Cauchy's IRLS weight, per reading
        idx = torch.tensor(index, device=device)
        total = torch.zeros(2, 3, **kw).index_add_(1, idx, w)
        expected = (w / total[:, idx])[..., None] * up[:, idx]
        expected[:, idx == 2] = 0.0  # the fixed entry's readings
    assert max_err(grads["gauss_newton"], expected) < 1e-10
    assert max_err(grads["exact"], expected) > 1e-3

    for noise, agree in ((0.0, True), (0.05, False)):
        _, p, q = _pairs(2, 12, noise, device, seed=5)
        q = q.clone().requires_grad_()
        X, fp = _pose_problem(p, q)
        sol = optim.solve([X], [fp], optim.SolverConfig(backward="none"))
        assert sol.converged.all()
        grads = {}
        for hessian in ("gauss_newton", "exact"):
            (Xs,) = optim.attach_gradients([X], [fp], sol.values, sol.converged, hessian=hessian)
            (grads[hessian],) = torch.autograd.grad((Xs * up[:, :1, :1]).sum(), q)
        gap = max_err(grads["gauss_newton"], grads["exact"]) / float(grads["exact"].abs().max())
        assert (gap < 1e-9) if agree else (gap > 1e-4), (noise, gap)


def test_an_entry_no_factor_weighs_has_no_derivative_and_the_others_keep_theirs(device):
    """Tukey's kernel gives entry 1's residual zero weight (it is 50 from its target, the scale
    10): the Hessian's rows there are zero.  Its derivative is zero, and the others' are the
    identity (each lands on its target).  The dense backward's solve had failed on the
    singular Hessian and passed zeros for every entry, without a word."""
    kw = dict(dtype=torch.float64, device=device)
    target = torch.tensor([[[1.0, 2.0], [30.0, 40.0], [5.0, 6.0]]], **kw).expand(2, 3, 2).clone().requires_grad_()
    x = optim.Variable("Rn", torch.zeros(2, 3, 2, **kw))
    f = optim.Factor(lambda X, t: X - t, [x], index=[0, 1, 2], data=(target,), kernel=optim.RobustKernel("tukey", 10.0))
    r = optim.solve([x], [f])
    assert r.converged.all() and max_err(r.values[0][:, [0, 2]], target[:, [0, 2]]) < 1e-9
    assert torch.equal(r.values[0][:, 1], torch.zeros(2, 2, **kw))  # no pull: it stays
    w = torch.arange(6, **kw).reshape(1, 3, 2) + 1
    (r.values[0] * w).sum().backward()
    expected = w.expand(2, 3, 2).clone()
    expected[:, 1] = 0
    assert max_err(target.grad, expected) < 1e-9


def test_a_problem_no_factor_weighs_stops_with_no_weight_not_converged(device):
    """Problem 1's every residual lies beyond Tukey's scale: its cost is flat, it has nowhere to
    go, and it says so (``"no_weight"``, not converged); problem 0, weighed, converges.  A
    problem whose only unweighed entries are some of them converges (the test above)."""
    kw = dict(dtype=torch.float64, device=device)
    target = torch.tensor([[[1.0, 2.0], [30.0, 40.0], [5.0, 6.0]]], **kw).expand(2, 3, 2).clone()
    target[1] *= 100
    x = optim.Variable("Rn", torch.zeros(2, 3, 2, **kw))
    f = optim.Factor(lambda X, t: X - t, [x], index=[0, 1, 2], data=(target,), kernel=optim.RobustKernel("tukey", 10.0))
    r = optim.solve([x], [f])
    assert r.converged.tolist() == [True, False] and r.reason == ("relative_tolerance", "no_weight")
    assert torch.equal(r.values[0][1], torch.zeros(3, 2, **kw))


def test_gradcheck_through_the_solver():
    """torch.autograd.gradcheck on a small nonlinear problem (a rotation fitted to vectors)."""
    g = torch.Generator().manual_seed(6)
    a = torch.randn(1, 6, 3, dtype=torch.float64, generator=g)
    R = pp.randn_SO3(1, dtype=torch.float64)
    b0 = R.unsqueeze(1).Act(a) + 0.05 * torch.randn(1, 6, 3, dtype=torch.float64, generator=g)

    def rotate(Q, a, b):
        return (lie.quat_rotate(Q[:, :, None, :], a) - b).flatten(2)

    def answer(b):
        Q = optim.Variable("SO3", pp.identity_SO3(1, 1, dtype=torch.float64).tensor())
        out = optim.solve([Q], [optim.Factor(rotate, [Q], data=(a[:, None], b[:, None]))])
        return out.values[0]

    assert torch.autograd.gradcheck(answer, (b0.clone().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_gradcheck_through_a_sim3_solve():
    """A Sim3 variable (a similarity fitted to points, its action written with plain tensor
    operations, Jacobians automatic): the answer is the points' similarity and gradcheck passes
    with respect to the target points."""
    g = torch.Generator().manual_seed(9)
    kw = dict(dtype=torch.float64, device="cpu")
    a = torch.randn(1, 8, 3, generator=g, **kw)
    R = pp.randn_SO3(1, **kw)
    b0 = 1.5 * R.unsqueeze(1).Act(a) + torch.tensor([0.3, -0.2, 0.5], **kw)
    b0 = b0 + 0.02 * torch.randn(1, 8, 3, generator=g, **kw)

    def similarity(S, a, b):
        S = S[:, :, None, :]
        return (S[..., 7:] * lie.quat_rotate(S[..., 3:7], a) + S[..., :3] - b).flatten(2)

    def answer(b):
        S = optim.Variable("Sim3", pp.identity_Sim3(1, 1, **kw).tensor())
        out = optim.solve([S], [optim.Factor(similarity, [S], data=(a[:, None], b[:, None]))])
        assert bool(out.converged.all()), out.reason
        return out.values[0]

    assert abs(float(answer(b0)[0, 0, 7]) - 1.5) < 0.02
    assert torch.autograd.gradcheck(answer, (b0.clone().requires_grad_(),), eps=1e-6, atol=1e-6)


def test_unrolled_and_implicit_gradients_agree_at_convergence(device):
    _, p, q = _pairs(1, 15, 0.02, device, seed=7)
    grads = {}
    for mode in ("implicit", "unroll"):
        qq = q.clone().requires_grad_()
        X, f = _pose_problem(p, qq)
        r = optim.solve([X], [f], optim.SolverConfig(backward=mode))
        r.values[0][..., :3].sum().backward()
        grads[mode] = qq.grad
    assert max_err(grads["implicit"], grads["unroll"]) < 1e-6 * float(grads["implicit"].abs().max())


def test_an_unconverged_problem_passes_no_gradient(device):
    _, p, q = _pairs(2, 10, 0.02, device)
    q = q.clone().requires_grad_()
    X, f = _pose_problem(p, q)
    r = optim.solve([X], [f], optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=1)))
    assert not bool(r.converged.any())
    r.values[0].sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q))


def test_no_grad_costs_nothing_extra_and_bad_configs_are_refused(device):
    _, p, q = _pairs(1, 10, 0.0, device)
    X, f = _pose_problem(p, q.clone().requires_grad_())
    with torch.no_grad():  # data that require grad, with grad off: no backward attached
        assert not optim.solve([X], [f]).values[0].requires_grad
    detached = optim.solve([X], [f], optim.SolverConfig(backward="none")).values[0]
    assert not detached.requires_grad and optim.solve([X], [f]).values[0].requires_grad  # "none" is what detaches
    for build, match in ((lambda: optim.TrustRegionConfig(lambda_initial=float("inf")), "lambda_initial"),
                         (lambda: optim.TrustRegionConfig(factor_up=1.0), "factor_up: expected a factor above 1"),
                         (lambda: optim.TerminationConfig(max_iterations=2.5), "max_iterations"),
                         (lambda: optim.TerminationConfig(gradient_tolerance=-1), "gradient_tolerance"),
                         (lambda: optim.SolverConfig(backward="adjoint"), "backward"),
                         (lambda: optim.SolverConfig(linear_solver="qr"), "linear_solver"),
                         (lambda: optim.SolverConfig(cg_tolerance=0.0), "cg_tolerance"),
                         (lambda: optim.SolverConfig(num_threads=0), "num_threads"),
                         (lambda: optim.SolverConfig(callback="print"), "callback: expected a callable"),
                         (lambda: optim.Variable("SE4", torch.zeros(1, 1, 7)), "kind: expected one of"),
                         (lambda: optim.Variable("SE3", torch.zeros(1, 7)), r"expected shape \(B, N, 7\)"),
                         (lambda: optim.Factor(point_to_point, [X], index=[[3]]), "outside")):
        with pytest.raises(ValueError, match=match):
            build()


def _group_values(kind: str, device) -> torch.Tensor:
    """Six random values of ``kind`` (positive scales, unit quaternions)."""
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(6, {"SE3": 7, "SO3": 4, "SE2": 3, "Rn": 5, "RxSO3": 5, "Sim3": 8}[kind], dtype=torch.float64,
                      generator=g, device="cpu")
    q = {"SE3": slice(3, 7), "SO3": slice(0, 4), "RxSO3": slice(0, 4), "Sim3": slice(3, 7)}.get(kind)
    if q is not None:
        raw[:, q] = raw[:, q] / raw[:, q].norm(dim=-1, keepdim=True)
    if kind in ("RxSO3", "Sim3"):
        raw[:, -1] = raw[:, -1].exp()
    return raw.to(device)


@pytest.mark.parametrize("kind", ["SE3", "SO3", "SE2", "Rn", "RxSO3", "Sim3"])
def test_each_groups_tangent_map_is_its_retractions_derivative(kind, device):
    """Automatic Jacobians push tangents through ``tangent_map``; it must equal the derivative of
    ``retract(X, d)`` at ``d = 0`` (reverse mode through Exp, which it replaces)."""
    X = _group_values(kind, device)
    G = optim.group(kind, 5 if kind == "Rn" else None)
    zero = X.new_zeros(6, G.tangent_dim)
    J = torch.func.vmap(torch.func.jacrev(G.retract, argnums=1))(X, zero)
    assert J.shape == (6, G.raw_dim, G.tangent_dim)
    assert max_err(G.tangent_map(X), J) < 1e-12


class _Scaled(torch.autograd.Function):
    """``2 x`` with a backward that reads a number (``.item()``): vmap cannot batch it."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, g):
        return g * (2.0 if float(g.abs().sum().item()) >= 0 else 0.0)


def test_the_dense_backward_takes_products_one_at_a_time_when_vmap_cannot(device):
    """A residual whose derivative vmap cannot batch: the implicit gradient still comes, equal to
    the one of the same residual written with plain ops."""
    _, p, q = _pairs(2, 12, 0.05, device, seed=4)

    class Plain(ClosedPointToPoint):
        def value_and_jacobians(self, X, p, q):
            r, (J,) = super().value_and_jacobians(X, p, q)
            return 2 * r, (2 * J,)

    class Opaque(Plain):  # the same numbers, the value through the opaque op
        def value_and_jacobians(self, X, p, q):
            r, (J,) = super().value_and_jacobians(X, p, q)
            return _Scaled.apply(r / 2), (J,)

    grads = []
    for residual in (Plain(), Opaque()):
        qq = q.clone().requires_grad_()
        X = optim.Variable("SE3", pp.identity_SE3(2, 1, dtype=p.dtype, device=p.device).tensor(), name="T_q_p")
        r = optim.solve([X], [optim.Factor(residual, [X], data=(p[:, None], qq[:, None]))])
        assert bool(r.converged.all())
        r.values[0].sum().backward()
        grads.append(qq.grad)
    assert float(grads[0].abs().max()) > 1e-3 and max_err(grads[1], grads[0]) < 1e-9


def test_row_weights_are_the_kernels_weights_of_each_rows_squared_norm(device):
    r = torch.tensor([[0.0, 0.5], [3.0, 4.0]], dtype=torch.float64, device=device)
    assert optim.RobustKernel("none").row_weights(r) is None  # no kernel: no product to take
    w = optim.RobustKernel("cauchy", 2.0).row_weights(r)
    assert max_err(w, 1 / (1 + torch.tensor([0.25, 25.0], dtype=torch.float64, device=device) / 4)) < 1e-15


def test_one_large_sparse_problem_reaches_gtsams_optimum(device):
    """parking-garage (1,661 SE3 poses, 9,966 unknowns) as one problem on the engine: the sparse
    path (pattern once, LDL^T with the ordering kept) reaches GTSAM's optimum, as the pose-graph
    solver does, in as many steps; the dense path would need a 9,966^2 matrix."""
    import json

    from robojac import data
    from robojac.jacobian import SE3BetweenResidual
    from robojac.posegraph import initialize, read_g2o

    g = read_g2o(data.path("posegraph/parking-garage.g2o.gz")).to(device)
    fixed = torch.zeros(g.num_poses, dtype=torch.bool, device=device)
    fixed[0] = True
    X = optim.Variable("SE3", initialize(g, "chordal")[None].clone(), fixed=fixed, name="poses")
    edges = optim.Factor(SE3BetweenResidual(), [X, X], g.edges,
                         data=[g.measurement_state().detach(), g.sqrt_information.detach()], name="edges")
    cfg = optim.SolverConfig(trust_region=optim.TrustRegionConfig(lambda_initial=1e-6),
                             termination=optim.TerminationConfig(relative_tolerance=1e-10))
    r = optim.solve([X], [edges], cfg)
    gtsam = json.loads(data.path("posegraph/gtsam_optima.json").read_text())["parking-garage"]["gtsam_optimum_cost"]
    assert r.converged and int(r.iterations) <= 10
    assert abs(float(r.cost) - gtsam) < 1e-9 * gtsam
    with pytest.raises(ValueError, match="linear_solver: 'sparse' solves one problem"):
        Y = optim.Variable("SE3", X.value.expand(2, -1, -1).clone(), fixed=fixed)
        optim.solve([Y], [optim.Factor(SE3BetweenResidual(), [Y, Y], g.edges[:10],
                                       data=[g.measurement_state()[:10].detach(), g.sqrt_information[:10].detach()])],
                    optim.SolverConfig(linear_solver="sparse"))


def test_sparse_and_dense_paths_take_the_same_steps(device):
    """A problem small enough for both: the sparse path's answer and history equal the dense one's."""
    g = torch.Generator().manual_seed(3)
    N = 60
    truth = lie.se3_exp(torch.randn(N, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    i = torch.arange(N - 1, device=device)
    edges = torch.cat((torch.stack((i, i + 1), 1), torch.tensor([[0, N - 1], [5, 40]], device=device)))
    Z = lie.se3_compose(lie.se3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]])
    noise = lie.se3_exp(0.05 * torch.randn(N, 6, generator=g, dtype=torch.float64, device="cpu").to(device))
    start = lie.se3_compose(noise, truth)
    from robojac.jacobian import SE3BetweenResidual

    out = {}
    for solver in ("dense", "sparse"):
        X = optim.Variable("SE3", start[None].clone(), fixed=torch.arange(N, device=device) == 0)
        f = optim.Factor(SE3BetweenResidual(), [X, X], edges, data=[Z], kernel=optim.RobustKernel("huber", 0.1))
        out[solver] = optim.solve([X], [f], optim.SolverConfig(linear_solver=solver))
    a, b = out["dense"], out["sparse"]
    assert a.reason == b.reason and int(a.iterations) == int(b.iterations)
    assert (a.values[0] - b.values[0]).abs().max() < 1e-10 and (a.history.cost - b.history.cost).abs().max() < 1e-10


@pytest.mark.parametrize("kernel", ["none", "cauchy"])
@pytest.mark.parametrize("group", ["SE3", "SE2"])
def test_closed_form_curvature_backward_equals_hessian_vector_products(group, kernel, device):
    """One large problem's implicit backward from its factors' closed-form Hessians (the
    residual's ``curvature``) gives the gradient that Hessian-vector products through the cost
    give (the same residual without ``curvature``): 120 poses, a held pose on some edges, a
    square-root information and a robust kernel (its second derivative enters the Hessian)."""
    from robojac.jacobian import SE3BetweenResidual
    from robojac.posegraph import SE2BetweenResidual

    g = torch.Generator().manual_seed(7)
    N, t = 120, (6 if group == "SE3" else 3)
    if group == "SE3":
        residual, exp, compose, inverse = SE3BetweenResidual(), lie.se3_exp, lie.se3_compose, lie.se3_inverse
    else:
        residual, exp, compose, inverse = SE2BetweenResidual(), lie.se2_exp, lie.se2_compose, lie.se2_inverse
    truth = exp(torch.randn(N, t, generator=g, dtype=torch.float64, device="cpu")).to(device)
    i = torch.arange(N - 1, device=device)
    edges = torch.cat((torch.stack((i, i + 1), 1), torch.tensor([[0, N - 1], [5, 40], [3, 0]], device=device)))
    Z0 = compose(exp(0.1 * torch.randn(len(edges), t, generator=g, dtype=torch.float64, device="cpu")).to(device),
                 compose(inverse(truth[edges[:, 0]]), truth[edges[:, 1]]))
    M = torch.randn(len(edges), t, t, generator=g, dtype=torch.float64, device="cpu").to(device)
    L = torch.linalg.cholesky(M @ M.mT + t * torch.eye(t, dtype=torch.float64, device=device)).mT
    w = torch.randn(N, truth.shape[-1], generator=g, dtype=torch.float64, device="cpu").to(device)

    class Plain:  # the same residual, no curvature: Hessian-vector products through the cost
        def __call__(self, *args):
            return residual(*args)

    grads = []
    for r in (residual, Plain()):
        Z = Z0.clone().requires_grad_()
        X = optim.Variable(group, truth[None].clone(), fixed=torch.arange(N, device=device) == 0)
        f = optim.Factor(r, [X, X], edges, data=[Z, L], kernel=optim.RobustKernel(kernel, 2.0))
        out = optim.solve([X], [f], optim.SolverConfig(linear_solver="sparse"))
        assert bool(out.converged.all())
        (out.values[0] * w).sum().backward()
        grads.append(Z.grad)
    assert max_err(grads[0], grads[1]) < 1e-6 * float(grads[1].abs().max())


def test_closed_form_curvature_backward_mixes_with_factors_without_it(device):
    """A large problem whose between factors declare ``curvature`` and whose position priors (a
    user's plain function) do not: the priors' part of each Hessian product goes through their
    cost, and the gradients to the measurements and to the priors equal those of Hessian-vector
    products through the whole cost."""
    from robojac.jacobian import SE3BetweenResidual

    g = torch.Generator().manual_seed(11)
    N = 60
    truth = lie.se3_exp(torch.randn(N, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    i = torch.arange(N - 1, device=device)
    edges = torch.cat((torch.stack((i, i + 1), 1), torch.tensor([[0, N - 1], [7, 33]], device=device)))
    Z0 = lie.se3_compose(lie.se3_exp(0.1 * torch.randn(len(edges), 6, generator=g, dtype=torch.float64, device="cpu")).to(device),
                         lie.se3_compose(lie.se3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]]))
    at = torch.tensor([5, 20, 41, 59], device=device)
    gps0 = truth[at, :3] + 0.2 * torch.randn(4, 3, generator=g, dtype=torch.float64, device="cpu").to(device)
    w = torch.randn(N, 7, generator=g, dtype=torch.float64, device="cpu").to(device)

    class Plain:
        def __call__(self, *args):
            return SE3BetweenResidual()(*args)

    grads = []
    for between in (SE3BetweenResidual(), Plain()):
        Z, gps = Z0.clone().requires_grad_(), gps0.clone().requires_grad_()
        X = optim.Variable("SE3", truth[None].clone())
        f = optim.Factor(between, [X, X], edges, data=[Z], kernel=optim.RobustKernel("cauchy", 1.0))
        prior = optim.Factor(lambda x, p: 3.0 * (x[..., :3] - p), [X], at, data=[gps])
        out = optim.solve([X], [f, prior], optim.SolverConfig(linear_solver="sparse"))
        assert bool(out.converged.all())
        (out.values[0] * w).sum().backward()
        grads.append((Z.grad, gps.grad))
    for a, b in zip(*grads):
        assert max_err(a, b) < 1e-6 * float(b.abs().max())


def test_sparse_layouts_are_reused_only_for_the_same_structure(device):
    """A problem of the same structure (new tensors, same sizes, fixed entries and factor
    indices) reuses the cached layout; a different fixed entry or edge gets its own, and each
    assembles its own dense normal equations."""
    from robojac.jacobian import SE3BetweenResidual
    from robojac.optim import _problem as P

    g = torch.Generator().manual_seed(9)
    N = 6
    poses = lie.se3_exp(torch.randn(1, N, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    Z = lie.se3_exp(0.1 * torch.randn(5, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)

    def system(edges, held):
        X = optim.Variable("SE3", poses.clone(), fixed=torch.arange(N, device=device) == held)
        f = optim.Factor(SE3BetweenResidual(), [X, X], torch.tensor(edges, device=device), data=[Z])
        pb = optim.Problem([X], [f])
        lin = P.Linearization(pb, (X.value,), closed_forms=True)
        H, _ = P.SparseSystem(pb).assemble(lin)
        assert max_err(H.to_dense(), lin.normal_equations()[0][0]) < 1e-12 * float(H.values().abs().max())
        return H

    P._LAYOUTS.clear()
    chain = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]
    a, b = system(chain, 0), system(chain, 0)
    assert len(P._LAYOUTS) == 1 and a.col_indices().data_ptr() == b.col_indices().data_ptr()
    system(chain, 3)  # another fixed pose: its own layout (its identity rows)
    system([[0, 1], [1, 2], [2, 3], [3, 4], [0, 5]], 0)  # another edge
    assert len(P._LAYOUTS) == 3


def test_sparse_system_equals_the_dense_normal_equations(device):
    """The sparse system's layout (worked out on blocks of mixed tangent sizes) and its one-product
    path for opposite blocks give the dense normal equations exactly: SE3 poses with a between
    factor (a held pose on either side of some edges, so the opposite path must undo the zeroed
    block) and an R^2 variable coupled to the poses by a user factor."""
    from robojac.jacobian import SE3BetweenResidual
    from robojac.optim._problem import Linearization, SparseSystem

    g = torch.Generator().manual_seed(5)
    N = 7
    poses = lie.se3_exp(torch.randn(1, N, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    edges = torch.tensor([[0, 1], [1, 2], [3, 2], [2, 3], [4, 6], [6, 5], [0, 6]], device=device)
    Z = lie.se3_exp(0.1 * torch.randn(len(edges), 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    L = torch.linalg.cholesky(torch.eye(6, dtype=torch.float64, device="cpu")
                              + 0.1 * torch.ones(6, 6, dtype=torch.float64, device="cpu")).to(device)
    X = optim.Variable("SE3", poses, fixed=torch.tensor([False, False, True, False, False, False, False], device=device))
    R = optim.Variable("Rn", torch.randn(1, 4, 2, generator=g, dtype=torch.float64, device="cpu").to(device))
    between = optim.Factor(SE3BetweenResidual(), [X, X], edges, data=[Z, L.expand(len(edges), 6, 6)],
                           kernel=optim.RobustKernel("cauchy", 0.5))
    user = optim.Factor(lambda x, r: torch.cat((x[..., :2] * r, r.square()), -1), [X, R],
                        torch.tensor([[0, 1], [5, 1], [2, 3], [6, 0]], device=device))
    pb = optim.Problem([X, R], [between, user])
    lin = Linearization(pb, (X.value, R.value), closed_forms=True)
    H_dense, g_dense = lin.normal_equations()
    H, grad = SparseSystem(pb).assemble(lin)
    crow, col = H.crow_indices(), H.col_indices()
    row_end = torch.zeros(len(col), dtype=torch.bool, device=col.device)
    row_end[crow[1:] - 1] = True  # no row is empty: every entry has its diagonal block
    assert H.shape == (pb.size, pb.size) and bool((col[1:] > col[:-1])[~row_end[:-1]].all())  # sorted rows (LDL^T needs them)
    assert max_err(H.to_dense(), H_dense[0]) < 1e-12 * float(H_dense.abs().max())
    assert max_err(grad, g_dense[0]) < 1e-12 * float(g_dense.abs().max())


def test_callback_records_every_iteration_as_the_history_does(device):
    """The callback's records are the history's rows (cost, damping, acceptance), one per
    iteration, with the step norms and growing times; initial_cost is the cost at the start."""
    _, p, q = _pairs(3, 12, 0.01, device)
    X, f = _pose_problem(p, q)
    records = []
    r = optim.solve([X], [f], optim.SolverConfig(callback=records.append))
    start = optim.Linearization(optim.Problem([X], [f]), (X.value,)).cost()
    assert max_err(r.initial_cost, start) == 0.0 and bool((r.cost < r.initial_cost).all())
    assert [rec.iteration for rec in records] == list(range(1, len(r.history.cost) + 1))
    assert len(records) == int(r.iterations.max())
    for k, rec in enumerate(records):
        assert rec.cost.shape == rec.step_norm.shape == (3,)
        assert max_err(rec.cost, r.history.cost[k]) == 0.0 and max_err(rec.damping, r.history.damping[k]) == 0.0
        assert bool((rec.accepted == r.history.accepted[k]).all())
    assert all(b.seconds >= a.seconds for a, b in zip(records, records[1:]))
    assert float(records[0].step_norm.min()) > 0


@pytest.mark.parametrize("solver", ["multifrontal", "cg"])
def test_sparse_solvers_by_name_reach_the_same_answer(solver, device):
    """One large problem through LDL^T, the multifrontal Cholesky and conjugate gradients: the
    same optimum; Gauss-Newton's chord step confirms convergence through the last factorization."""
    from robojac.jacobian import SE3BetweenResidual

    g = torch.Generator().manual_seed(8)
    N = 80
    truth = lie.se3_exp(torch.randn(N, 6, generator=g, dtype=torch.float64, device="cpu")).to(device)
    i = torch.arange(N - 1, device=device)
    edges = torch.cat((torch.stack((i, i + 1), 1), torch.stack((i[:-5], i[:-5] + 5), 1)))
    noise = lie.se3_exp(0.02 * torch.randn(len(edges), 6, generator=g, dtype=torch.float64, device="cpu").to(device))
    Z = lie.se3_compose(lie.se3_compose(lie.se3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]]), noise)
    start = lie.se3_compose(lie.se3_exp(0.1 * torch.randn(N, 6, generator=g, dtype=torch.float64, device="cpu").to(device)), truth)
    out = {}
    for name in ("ldl", solver):
        X = optim.Variable("SE3", start[None].clone(), fixed=torch.arange(N, device=device) == 0)
        f = optim.Factor(SE3BetweenResidual(), [X, X], edges, data=[Z])
        cfg = optim.SolverConfig(trust_region=optim.TrustRegionConfig(method="gn"), linear_solver=name,
                                 termination=optim.TerminationConfig(relative_tolerance=1e-10))
        out[name] = optim.solve([X], [f], cfg)
    a, b = out["ldl"], out[solver]
    assert bool(a.converged.all()) and bool(b.converged.all())
    assert abs(float(a.cost) - float(b.cost)) < 1e-9 * float(a.cost)
    assert max_err(a.values[0], b.values[0]) < 1e-6


def test_a_residual_that_closes_over_the_batch_gets_its_jacobian_too(device):
    """The engine's automatic Jacobians repeat the rows (one dual-number pass); a residual that
    closes over a tensor of the batch's own size cannot be repeated and takes the vmapped path:
    both give the same Jacobian as a residual that receives the tensor as data."""
    from robojac.optim import Linearization, Problem

    _, p, q = _pairs(3, 12, 0.01, device)
    X, f = _pose_problem(p, q)  # q as data: the stacked path
    closed = optim.Factor(lambda T, pp_: point_to_point(T, pp_, q[:, None]), [X], data=(p[:, None],))
    values = (lie.se3_exp(0.1 * torch.ones(3, 1, 6, dtype=torch.float64, device=device)),)
    a = Problem([X], [f]).jacobian_of(f, values)[0]
    b = Problem([X], [closed]).jacobian_of(closed, values)[0]
    assert a.shape == (3, 1, 36, 6) and max_err(a, b) < 1e-14
    H, _ = Linearization(Problem([X], [closed]), values).normal_equations()
    assert bool(torch.isfinite(H).all())


def _pypose_between(X, p, q):
    """The point-to-point residual written with pypose's LieTensor operations, as a pypose user
    writes it: ``Inv``, ``Mul`` and ``Act`` on ``pp.SE3`` of the raw values."""
    T = pp.SE3(X[:, :, None, :])
    return ((T.Inv() * T * T).Act(p) - q).flatten(2)


def test_factors_written_with_pypose_or_without_a_forward_mode_solve_and_differentiate(device):
    """A residual written with pypose's Lie operations (autograd.Functions whose backward hands a
    pose the tangent cotangent, and which have no forward mode) reaches the answer, in the same
    steps, with the same implicit gradient, as the same residual written with ``robojac.lie``:
    the engine evaluates residuals within ``lie.raw_autograd`` (it had raised NotImplementedError
    from inside torch).  A residual whose own autograd.Function has no forward mode (``_Scaled``:
    no jvp, and a backward vmap cannot batch) is differentiated by a plain backward instead."""
    _, p, q = _pairs(3, 12, 0.01, device)
    out = {}
    for name, residual in (("robojac", point_to_point), ("pypose", _pypose_between),
                           ("no jvp", lambda X, p, q: _Scaled.apply(point_to_point(X, p, q)) / 2)):
        qg = q.clone().requires_grad_(True)
        X, f = _pose_problem(p, qg, residual)
        r = optim.solve([X], [f])
        (g,) = torch.autograd.grad(r.values[0][..., :3].sum() + r.values[0][..., 3:].square().sum(), qg)
        out[name] = (r, g, f)
    ref, g_ref, _ = out["robojac"]
    assert bool(ref.converged.all())
    for name in ("pypose", "no jvp"):
        r, g, f = out[name]
        assert bool(r.converged.all()) and r.iterations.tolist() == ref.iterations.tolist(), name
        assert max_err(r.values[0], ref.values[0]) < 1e-12 and max_err(g, g_ref) < 1e-9 * g_ref.abs().max(), name
    assert not out["pypose"][2].pulled_back and out["no jvp"][2].pulled_back
    # unrolled, its Jacobian would need a graph a plain backward does not keep: refused, named
    X, f = _pose_problem(p, q.clone().requires_grad_(True), lambda X, p, q: _Scaled.apply(point_to_point(X, p, q)) / 2)
    with pytest.raises(ValueError, match="points: its residual has no forward mode.*use backward='implicit'"):
        optim.solve([X], [f], optim.SolverConfig(backward="unroll"))


# ---- bounds, rest values, satisfied factors, and problems that run on their own -------------------
def _quadratic(target):
    """``x - target`` per problem (one factor, identity Jacobian), able to run on a subset."""

    class Residual:
        def __init__(self, t):
            self.t = t

        def __call__(self, X):
            return X - self.t[:, None]

        def subset(self, rows):
            return Residual(self.t[rows])

    return Residual(target)


def test_bounded_vectors_stop_at_their_bounds_and_come_back_by_a_period(device):
    """The minimum of |x - t|^2 over a box is t clamped into it; a periodic coordinate whose step
    leaves the box comes back by one period when that lands inside, never beyond a bound."""
    t = torch.tensor([[2.0, -0.5, 0.3], [0.2, 0.1, -3.0]], dtype=torch.float64, device=device)
    X = optim.Variable("Rn", torch.zeros(2, 1, 3, dtype=torch.float64, device=device), lower=-1.0, upper=1.0)
    r = optim.solve([X], [optim.Factor(_quadratic(t), [X])], optim.SolverConfig(backward="none"))
    assert max_err(r.values[0][:, 0], t.clamp(-1.0, 1.0)) < 1e-9
    assert bool(r.converged.all())
    # "hold" (IK's rule): a coordinate whose step would cross its bound keeps its value, the others move
    X = optim.Variable("Rn", torch.zeros(2, 1, 3, dtype=torch.float64, device=device), lower=-1.0, upper=1.0, at_bound="hold")
    r = optim.solve([X], [optim.Factor(_quadratic(t), [X])], optim.SolverConfig(backward="none"))
    assert max_err(r.values[0][:, 0], torch.where(t.abs() > 1, 0.0, t)) < 1e-6  # the held ones dominate the cost
    with pytest.raises(ValueError, match="at_bound: expected 'stop' or 'hold'"):
        optim.Variable("Rn", torch.zeros(1, 1, 2, device=device), lower=0.0, at_bound="clamp")
    # an angle in [-pi, pi] stepped from 3.0 toward 3.5: it lands at 3.5 - 2 pi, inside
    a = optim.Variable("Rn", torch.full((1, 1, 1), 3.0, dtype=torch.float64, device=device), lower=-math.pi,
                       upper=math.pi, period=2 * math.pi)
    trig = optim.Factor(lambda x: torch.cat((torch.cos(x) - math.cos(3.5), torch.sin(x) - math.sin(3.5)), -1), [a])
    out = optim.solve([a], [trig], optim.SolverConfig(backward="none")).values[0]
    assert abs(float(out) - (3.5 - 2 * math.pi)) < 1e-6
    with pytest.raises(ValueError, match="shared by the problems"):
        optim.Variable("Rn", torch.zeros(2, 1, 3, device=device), lower=torch.zeros(2, 1, 3, device=device))
    with pytest.raises(ValueError, match="only vector"):
        optim.Variable("SO3", torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], device=device), upper=1.0)
    with pytest.raises(ValueError, match="lower <= upper"):
        optim.Variable("Rn", torch.zeros(1, 1, 2, device=device), lower=1.0, upper=0.0)


def test_a_coordinate_on_an_active_bound_stays_there_and_does_not_move_with_the_data(device):
    """min (x - t)^2 + (x + y - 2 t)^2 with x <= 0.5 and t = 1: the free minimum (1, 1) is
    outside, so x sits on its bound (the cost pushes it out) and y = 2 t - x = 1.5.  With t
    requiring grad the answer is polished and differentiated with x held: dx/dt = 0 and
    dy/dt = 2 (the unconstrained derivative would be 1 and 1, and its Gauss-Newton polish would
    step x off the bound and y with it).  From the other side, x = -1 is inside and free."""
    for t0, x_ref, y_ref, dx, dy in ((1.0, 0.5, 1.5, 0.0, 2.0), (-1.0, -1.0, -1.0, 1.0, 1.0)):
        t = torch.tensor([[t0]], dtype=torch.float64, device=device, requires_grad=True)
        X = optim.Variable("Rn", torch.zeros(1, 1, 2, dtype=torch.float64, device=device), upper=torch.tensor(
            [0.5, math.inf], dtype=torch.float64, device=device))
        f = optim.Factor(lambda x, t: torch.cat((x[..., :1], x.sum(-1, keepdim=True)), -1) - t[..., None] * torch.tensor(
            [1.0, 2.0], dtype=x.dtype, device=x.device), [X], data=(t,))
        r = optim.solve([X], [f])
        x, y = r.values[0][0, 0]
        assert bool(r.converged.all())
        assert abs(x.item() - x_ref) < 1e-12 and abs(y.item() - y_ref) < 1e-9
        (gx,) = torch.autograd.grad(x, t, retain_graph=True)
        (gy,) = torch.autograd.grad(y, t)
        assert abs(gx.item() - dx) < 1e-9 and abs(gy.item() - dy) < 1e-9


def test_a_coordinate_on_its_bound_leaves_it_where_its_gradient_points_inside(device):
    """min 0.5 (z - a)^T H (z - a), H = [[1, -0.9], [-0.9, 1]], a = (-0.1, -1), z >= 0, from
    (0, 0): the gradient pushes y against its bound and pulls x inside.  The minimum (KKT: y on
    its bound, d/dx = 0) is (0.8, 0).  The unbounded step, (-0.1, -1), takes both outside;
    judged from it both were held, a zero step, and the solve stopped at (0, 0) as converged."""
    R = torch.linalg.cholesky(torch.tensor([[1.0, -0.9], [-0.9, 1.0]], dtype=torch.float64, device="cpu")).T.to(device)
    a = torch.tensor([-0.1, -1.0], dtype=torch.float64, device=device)
    z = optim.Variable("Rn", torch.zeros(1, 1, 2, dtype=torch.float64, device=device), lower=0.0)
    r = optim.solve([z], [optim.Factor(lambda z: (z - a) @ R.T, [z])], optim.SolverConfig(backward="none"))
    want = torch.tensor([0.8, 0.0], dtype=torch.float64, device="cpu")
    assert bool(r.converged.all()) and max_err(r.values[0][0, 0].cpu(), want) < 1e-9


def test_fixed_values_that_require_grad_pass_their_gradients_through_the_answer(device):
    """x0 = a and x2 = b held, x1 free: min (x1 - x0)^2 + (x2 - x1)^2 + (x1 - c)^2 puts x1 at
    (a + b + c) / 3.  With a and b requiring grad, d x1 / d a = d x1 / d b = 1/3 (through the
    minimum) and the held entries' own derivative is 1; a value that is only a start passes
    nothing (x1's start)."""
    kw = dict(dtype=torch.float64, device=device)
    a, b, s = (torch.tensor(v, **kw, requires_grad=True) for v in (1.0, 4.0, 7.0))
    c = torch.tensor([[[2.0]]], **kw, requires_grad=True)
    X = optim.Variable("Rn", torch.stack((a, s, b)).reshape(1, 3, 1), fixed=torch.tensor([True, False, True],
                                                                                          device=device))
    steps = optim.Factor(lambda u, v: v - u, [X, X], torch.tensor([[0, 1], [1, 2]], device=device))
    prior = optim.Factor(lambda x, c: x - c, [X], torch.tensor([1], device=device), data=(c[0],))
    x = optim.solve([X], [steps, prior]).values[0][0, :, 0]
    assert abs(x[1].item() - 7.0 / 3.0) < 1e-12
    ga, gb, gc, gs = torch.autograd.grad(x[1], (a, b, c, s), allow_unused=True)
    assert abs(ga.item() - 1 / 3) < 1e-12 and abs(gb.item() - 1 / 3) < 1e-12 and abs(gc.item() - 1 / 3) < 1e-12
    assert gs is None or gs.item() == 0.0
    x = optim.solve([X], [steps, prior]).values[0][0, :, 0]
    ga, gb = torch.autograd.grad(x.sum(), (a, b))
    assert abs(ga.item() - 4 / 3) < 1e-12 and abs(gb.item() - 4 / 3) < 1e-12
    none = optim.solve([X], [steps, prior], optim.SolverConfig(backward="none")).values[0]
    assert not none.requires_grad


def test_a_rest_value_pulls_inside_the_null_space_only(device):
    """x1 + x2 = 1 has a line of solutions.  From the origin, Gauss-Newton's least-norm step lands
    on (0.5, 0.5); with a rest value (2, 0) the pull, in the damped null space of the residual,
    moves the step along the line toward it: (0.5, 0.5) + gain ((2, 0) - (1, 1)) = (1, 0), still a
    solution."""
    def solve(**rest):
        X = optim.Variable("Rn", torch.zeros(1, 1, 2, dtype=torch.float64, device=device), **rest)
        f = optim.Factor(lambda x: x.sum(-1, keepdim=True) - 1.0, [X])
        cfg = optim.SolverConfig(optim.TrustRegionConfig(lambda_initial=1e-12, lambda_min=1e-12), backward="none")
        return optim.solve([X], [f], cfg).values[0][0, 0]

    plain = solve()
    pulled = solve(rest=torch.tensor([2.0, 0.0], dtype=torch.float64, device=device), rest_gain=0.5)
    assert max_err(plain, torch.tensor([0.5, 0.5], dtype=torch.float64, device=device)) < 1e-9
    assert max_err(pulled, torch.tensor([1.0, 0.0], dtype=torch.float64, device=device)) < 1e-9


def test_a_satisfied_factor_stops_its_problem_and_the_rest_run_on_their_own(device):
    """A factor that says when its task is done stops each problem there ("satisfied", converged);
    once most have stopped, the rest run as a smaller batch (Problem.subset) and reach the same
    values, iterations and reasons as a residual that cannot be cut."""
    g = torch.Generator().manual_seed(3)
    B = 64
    t = 0.8 * torch.tanh(torch.randn(B, 3, generator=g, dtype=torch.float64, device="cpu")).to(device)
    t[: B // 2] *= 1e-3  # half start within a step's reach of the tolerance

    class Satisfied:
        def __init__(self, t, cut=True):
            self.t = t
            if cut:
                self.subset = lambda rows: Satisfied(self.t[rows])

        def __call__(self, X):
            return torch.sin(X) - self.t[:, None]  # a few Gauss-Newton steps to reach

        def satisfied(self, r):
            return r.square().sum((-1, -2)) < 1e-18

    outs = []
    for cut in (True, False):
        X = optim.Variable("Rn", torch.zeros(B, 1, 3, dtype=torch.float64, device=device))
        cfg = optim.SolverConfig(termination=optim.TerminationConfig(relative_tolerance=0.0, step_tolerance=0.0,
                                                                     gradient_tolerance=0.0), backward="none")
        outs.append(optim.solve([X], [optim.Factor(Satisfied(t, cut), [X])], cfg))
    a, b = outs
    assert set(a.reason) == {"satisfied"} and bool(a.converged.all())
    assert max_err(a.values[0], b.values[0]) < 1e-12 and torch.equal(a.iterations, b.iterations) and a.reason == b.reason
    assert int(a.iterations.min()) < int(a.iterations.max())  # the problems did stop at different steps
    assert max_err(a.values[0][:, 0], torch.asin(t)) < 1e-8  # |r| < 1e-9 where each stopped
    assert a.history.cost.shape == b.history.cost.shape


def test_bounds_need_the_dense_solver(device):
    X = optim.Variable("Rn", torch.zeros(1, 300, 1, dtype=torch.float64, device=device), lower=-1.0)
    f = optim.Factor(lambda x: x - 2.0, [X], torch.arange(300, device=device))
    with pytest.raises(ValueError, match="bounds and rest values need the dense linear solver"):
        optim.solve([X], [f], optim.SolverConfig(linear_solver="ldl", backward="none"))


def test_large_batches_of_small_systems_solve_as_small_ones_do(device):
    """Past optim.soa_pays' batch size the engine's normal equations and factorizations run
    structure-of-arrays; the answers equal those of the same problems solved in small batches
    (batched LAPACK), step for step."""
    B = 2 * 1024
    assert optim.soa_pays(B, 6) and not optim.soa_pays(64, 6)
    g = torch.Generator().manual_seed(5)
    p = torch.randn(B, 1, 4, 3, dtype=torch.float64, generator=g, device="cpu").to(device)
    truth = lie.se3_exp(0.3 * torch.randn(B, 6, dtype=torch.float64, generator=g, device="cpu")).to(device)
    q = lie.se3_act(truth[:, None, None, :], p)
    start = torch.zeros(B, 1, 7, dtype=torch.float64, device=device)
    start[..., 6] = 1.0

    class PointToPoint:  # one factor per problem, 12 rows: the structure-of-arrays path
        def __call__(self, T, p, q):
            return (lie.se3_act(T[:, :, None, :], p) - q).flatten(2)

    cfg = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=6), backward="none")

    def solve(rows):
        X = optim.Variable("SE3", start[rows].clone())
        return optim.solve([X], [optim.Factor(PointToPoint(), [X], data=(p[rows], q[rows]))], cfg)

    whole = solve(slice(None))
    parts = [solve(slice(k, k + 64)) for k in range(0, B, 64)]
    values = torch.cat([r.values[0] for r in parts])
    assert max_err(whole.values[0], values) < 1e-12
    assert torch.equal(whole.iterations, torch.cat([r.iterations for r in parts]))
    assert bool(whole.converged.all())


def test_damped_is_marquardts_scaling_with_a_relative_floor(device):
    """``damped(H, lam)`` adds ``lam diag(H)`` and a floor of ``RIDGE eps max diag(H)``; ``None``
    (Gauss-Newton) only the floor; ``floor=False`` only the Marquardt term; through autograd too."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, 4, dtype=torch.float64, generator=g, device="cpu").to(device)
    H = A @ A.mT
    H0 = H.clone()
    lam = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64, device=device)
    d = H.diagonal(dim1=-2, dim2=-1)
    floor = optim.RIDGE * torch.finfo(H.dtype).eps * d.amax(-1, keepdim=True)
    eye = torch.eye(4, dtype=H.dtype, device=device)
    assert max_err(optim.damped(H, lam), H + torch.diag_embed(lam[:, None] * d) + floor[..., None] * eye) < 1e-12
    assert max_err(optim.damped(H, None), H + floor[..., None] * eye) < 1e-12
    assert max_err(optim.damped(H, lam, floor=False), H + torch.diag_embed(lam[:, None] * d)) < 1e-12
    assert optim.damped(H, None, floor=False) is H
    Hg = H.clone().requires_grad_()
    assert max_err(optim.damped(Hg, None), optim.damped(H, None)) < 1e-15
    assert torch.equal(H, H0)  # the input is never changed in place


def test_half_precisions_and_mixed_dtypes_are_refused_naming_the_variables():
    """torch factors nothing in a half precision, so the engine refuses such values (the solvers
    above it that take measured data widen it first); and one problem's variables share one dtype
    and device: the solver would otherwise promote or move them unasked."""
    for dt in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=rf"pose: expected float32 or float64 values .*got {dt}"):
            optim.Variable("SE3", pp.identity_SE3(1, 2, dtype=torch.float32).tensor().to(dt), name="pose")
    a = optim.Variable("Rn", torch.zeros(1, 2, 3, dtype=torch.float64, device="cpu"), name="a")
    b = optim.Variable("Rn", torch.ones(1, 2, 3, dtype=torch.float32, device="cpu"), name="b")
    f = optim.Factor(lambda x, y: x - y.to(x.dtype), [a, b], index=[[0, 0], [1, 1]], name="difference")
    with pytest.raises(TypeError, match=r"variables: expected one dtype and device for all, got a: torch.float64 on "
                                        r"cpu, b: torch.float32 on cpu"):
        optim.solve([a, b], [f])


def test_residuals_of_the_wrong_shape_or_kind_are_refused_naming_the_factor():
    """A residual must be ``(B, F, m)`` and real-valued.  An integer one has no derivative: its
    zero Jacobian had passed for a stationary point, ``converged`` at the start with the cost at
    3 where the minimum is 0."""
    x = optim.Variable("Rn", torch.zeros(2, 3, 2, dtype=torch.float64, device="cpu"), name="x")
    index = torch.arange(3)[:, None]
    good = optim.solve([x], [optim.Factor(lambda v: v - 1, [x], index, name="pull")])
    assert bool(good.converged.all()) and float(good.cost.max()) < 1e-20
    for residual, error in (
            (lambda v: (v - 1).sum(-1), r"pull: the residual must have shape \(2, 3, m\), got \(2, 3\)"),
            (lambda v: (v - 1)[:1], r"pull: the residual must have shape \(2, 3, m\), got \(1, 3, 2\)"),
            (lambda v: ((v - 1), 0), r"pull: the residual must have shape \(2, 3, m\), got tuple"),
            (lambda v: (v - 1).long(), r"pull: the residual must be real-valued \(floating point\), got torch.int64")):
        with pytest.raises((ValueError, TypeError), match=error):
            optim.solve([x], [optim.Factor(residual, [x], index, name="pull")])
    with pytest.raises(TypeError, match=r"pull.index: expected integer indices, got dtype torch.float32"):
        optim.Factor(lambda v: v - 1, [x], index + 0.6, name="pull")  # had been truncated to entries 0, 1, 2


@pytest.mark.parametrize("kind", ["RxSO3", "Sim3"])
def test_similarity_retractions_agree_with_pyposes_exp(kind, device):
    """pypose's ``Exp(d) * X`` is the reference: both retractions are it, to rounding, at steps of
    0.3 and 0.03 (where pypose's ``sim3.Exp`` is exact; ``test_lie.py`` checks ``lie.sim3_exp``
    against the matrix exponential near its singular limits, where pypose's is not)."""
    X = _group_values(kind, device)
    G = optim.group(kind)
    algebra = {"RxSO3": pp.rxso3, "Sim3": pp.sim3}[kind]
    group = {"RxSO3": pp.RxSO3, "Sim3": pp.Sim3}[kind]
    d = 0.3 * torch.randn(6, G.tangent_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(4),
                          device="cpu").to(device)
    gaps = []
    for h in (1.0, 0.1):
        theirs = (algebra(h * d).Exp() * group(X)).tensor()
        gaps.append(max_err(G.retract(X, h * d), theirs))
    assert max(gaps) < 1e-13, gaps
    with pytest.raises(ValueError, match=r"scale: expected a positive scale s \(the last number\), got -"):
        optim.Variable(kind, -X[None, :, :], name="scale")


def test_lie_values_off_the_group_are_refused_or_normalized():
    """SO3 and SE3 values (alone or in a product) hold unit quaternions: within the dtype's
    rounding they are normalized (unit ones keep every bit), beyond it refused naming the
    variable.  A pose of |q| = 2 had been solved and given back with |q| = 2."""
    T = pp.randn_SE3(1, 3, dtype=torch.float64, device="cpu").tensor()
    assert torch.equal(optim.Variable("SE3", T, name="pose").value, T)
    near = T.clone()
    near[..., 3:] *= 1 + 1e-7
    v = optim.Variable("SE3", near, name="pose").value
    assert max_err(v[..., 3:].norm(dim=-1), torch.ones(1, 3, dtype=torch.float64)) < 1e-15 and torch.equal(v[..., :3], T[..., :3])
    far = T.clone()
    far[..., 3:] *= 2
    for kind, value, name in (("SE3", far, "pose"), ("SO3", far[..., 3:], "rotation"),
                              (optim.product(("SE3", 3), ("Rn", 2)), torch.cat((far.flatten(1), torch.zeros(1, 2, dtype=torch.float64)), -1)[:, None], "model")):
        with pytest.raises(ValueError, match=rf"{name}.*: quaternion \[qx, qy, qz, qw\] is not of unit length"):
            optim.Variable(kind, value, name=name)
    with pytest.raises(ValueError, match=r"rotation: quaternion .* not of unit length"):
        optim.Variable("SO3", torch.zeros(1, 2, 4, dtype=torch.float64), name="rotation")
