"""``optim.fit``: a module's own parameters fitted on the engine (pypose's ``optim.LM``), checked
against pypose's LM, scipy's ``least_squares``, a numpy cost's central differences on the
manifold, and re-fitted finite differences of its gradients."""

import numpy as np
import pypose as pp
import pytest
import torch
from torch import nn

from robojac import lie, optim
from robojac.jacobian import modjac
from robojac.optim import RobustKernel, SolverConfig, fit


def _randn_SE3(*shape, generator, device="cpu"):
    xi = torch.randn(shape + (6,), generator=generator, dtype=torch.float64, device="cpu")
    return pp.SE3(lie.se3_exp(xi).to(device))


class PoseInv(nn.Module):
    """pypose's own LM example: poses whose product with the input is the identity."""

    def __init__(self, *dim, device="cpu", generator=None):
        super().__init__()
        generator = generator if generator is not None else torch.Generator(device="cpu").manual_seed(0)
        self.pose = pp.Parameter(_randn_SE3(*dim, generator=generator, device=device))

    def forward(self, input):
        return (self.pose @ input).Log().tensor()


class Similarity(nn.Module):
    """``s R p + t``: an SO3 parameter, a scalar (the log of the scale) and a vector."""

    def __init__(self, device):
        super().__init__()
        kw = dict(dtype=torch.float64, device=device)
        self.R = pp.Parameter(pp.identity_SO3(**kw))
        self.log_s = nn.Parameter(torch.zeros((), **kw))
        self.t = nn.Parameter(torch.zeros(3, **kw))

    def forward(self, p):
        return self.log_s.exp() * self.R.Act(p) + self.t


def _data(device, n=40, outliers=0, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    kw = dict(dtype=torch.float64, device="cpu")
    R = pp.SO3(torch.nn.functional.normalize(torch.randn(4, generator=g, **kw), dim=0))
    p = torch.randn(n, 3, generator=g, **kw)
    q = 1.7 * R.Act(p) + torch.tensor([0.3, -0.2, 0.5], **kw) + 0.02 * torch.randn(n, 3, generator=g, **kw)
    q[:outliers] += 3.0 * torch.randn(outliers, 3, generator=g, **kw)
    A = torch.randn(n, 3, 3, generator=g, **kw)
    W = A @ A.transpose(-1, -2) + 0.5 * torch.eye(3, **kw)  # an information matrix per row
    return p.to(device), q.to(device), W.to(device)


def _scipy_rows(p, q, W):
    """The whitened rows of the similarity fit, written in numpy for scipy: ``x = [rotvec, log s, t]``."""
    from scipy.spatial.transform import Rotation

    Lt = np.linalg.cholesky(W).transpose(0, 2, 1)  # W = L L^T, rows L^T r

    def rows(x):
        R = Rotation.from_rotvec(x[:3]).as_matrix()
        r = np.exp(x[3]) * p @ R.T + x[4:] - q
        return np.einsum("nij,nj->ni", Lt, r).ravel()

    return rows


def assert_a_minimum(p, q, W, kernel, R0, log_s0, t0, cost_reported, rtol=1e-10, gtol=1e-6):
    """The similarity ``(R0, log_s0, t0)`` is a minimum of ``0.5 sum rho(r^T W r)`` written here in
    numpy: the cost reported (to ``rtol``), a zero gradient by central differences on the
    manifold (a left rotation step; to ``gtol`` of the cost), and no step of 1e-3 along any
    coordinate lowering it."""
    from scipy.spatial.transform import Rotation

    def cost(d):  # d = [left rotation vector, log scale step, translation step]
        R = Rotation.from_rotvec(d[:3]).as_matrix() @ R0
        r = np.exp(log_s0 + d[3]) * p @ R.T + t0 + d[4:] - q
        s = np.einsum("ni,nij,nj->n", r, W, r)
        return 0.5 * float(kernel.rho(torch.tensor(s, dtype=torch.float64, device="cpu")).sum())

    c0 = cost(np.zeros(7))
    assert abs(c0 - cost_reported) <= rtol * c0 + 1e-300, (c0, cost_reported)
    h = 1e-6
    for i in range(7):
        e = np.zeros(7)
        e[i] = h
        assert abs(cost(e) - cost(-e)) / (2 * h) < gtol * max(1.0, c0), (i, (cost(e) - cost(-e)) / (2 * h))
        e[i] = 1e-3
        assert min(cost(e), cost(-e)) >= c0 * (1 - 1e-12)


def _pose(model):
    return model.R.matrix().detach().cpu().numpy(), float(model.log_s.detach()), model.t.detach().cpu().numpy()


def test_fit_solves_pyposes_own_example_as_its_lm_does(device):
    """pypose's LM documentation fits poses to invert a batch of inputs; ``fit`` lands on the
    inverses (written in closed form by pypose) and on pypose's own LM answer, and leaves the
    answer in the module, as pypose's optimizer does."""
    g = torch.Generator(device="cpu").manual_seed(1)
    input = _randn_SE3(2, 2, generator=g, device=device)
    model = PoseInv(2, 2, generator=g, device=device)
    theirs = PoseInv(2, 2, device=device)
    with torch.no_grad():
        theirs.pose.copy_(model.pose)
    start = model.pose.detach().clone()
    result = fit(model, input)
    assert result.converged and result.cost < 1e-20 and result.initial_cost > 1.0, result
    assert torch.allclose(model.pose.tensor(), input.Inv().tensor(), atol=1e-10)
    assert torch.equal(result.parameters["pose"].tensor(), model.pose.tensor())
    lm = pp.optim.LM(theirs)
    steps = None
    for k in range(1, 11):
        lm.step(input)
        if steps is None and float(0.5 * theirs(input).detach().square().sum()) < 1e-20:
            steps = k
    assert torch.allclose(model.pose.matrix(), theirs.pose.matrix(), atol=1e-8)
    # Gauss-Newton's steps first, as pypose's LM (damping 1e-6) takes them: no more iterations
    # than its steps to the same cost, where the default damping (1e-3, divided by 10 per step)
    # converges at the rate of its damping and takes more
    first = PoseInv(2, 2, device=device)
    with torch.no_grad():
        first.pose.copy_(start)
    gn = fit(first, input, config=SolverConfig(trust_region=optim.TrustRegionConfig.gauss_newton_first()))
    assert steps is not None and gn.converged and gn.iterations <= steps < result.iterations, \
        (gn.iterations, steps, result.iterations)
    assert torch.allclose(first.pose.matrix(), model.pose.matrix(), atol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_lands_on_scipys_least_squares_answer(weighted, device):
    """A similarity (SO3, a scalar and a vector) fitted to 40 noisy correspondences, with an
    information matrix per row or none: the same rotation, scale and translation as scipy's
    trust-region least squares on the rows written in numpy, and the same cost."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    p, q, W = _data(device)
    model = Similarity(device)
    result = fit(model, p, q, weight=W if weighted else None)
    assert result.converged, result.reason
    Wn = W.cpu().numpy() if weighted else np.broadcast_to(np.eye(3), (len(p), 3, 3))
    rows = _scipy_rows(p.cpu().numpy(), q.cpu().numpy(), Wn)
    x = least_squares(rows, np.zeros(7), method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    R, log_s, t = _pose(model)
    assert np.abs(R - Rotation.from_rotvec(x[:3]).as_matrix()).max() < 1e-8
    assert abs(log_s - x[3]) < 1e-8 and np.abs(t - x[4:]).max() < 1e-8
    assert abs(result.cost - 0.5 * (rows(x) ** 2).sum()) < 1e-10 * result.cost
    assert abs(np.log(1.7) - log_s) < 0.01  # and the truth is near: not a vacuous agreement


@pytest.mark.parametrize("kernel", ["huber", "cauchy"])
def test_a_kernel_weighs_each_row_and_the_answer_is_a_minimum_of_its_cost(kernel, device):
    """With a robust kernel each row of the output is a factor weighed by ``rho(r^T W r)`` (as
    pypose applies its kernel to each row): with 8 gross outliers among 40 rows, the answer is a
    stationary point of that cost written in numpy (central differences on the manifold, a left
    rotation step), no step along any coordinate lowers it, and it is nearer the truth than the
    fit without the kernel."""
    p, q, W = _data(device, outliers=8)
    model = Similarity(device)
    k = RobustKernel(kernel, 1.0)
    result = fit(model, p, q, weight=W, kernel=k)
    assert result.converged, result.reason
    R0, log_s0, t0 = _pose(model)
    assert_a_minimum(p.cpu().numpy(), q.cpu().numpy(), W.cpu().numpy(), k, R0, log_s0, t0, result.cost)
    plain = Similarity(device)
    fit(plain, p, q, weight=W)
    assert abs(float(model.log_s.detach()) - np.log(1.7)) < abs(float(plain.log_s.detach()) - np.log(1.7))


def test_the_answer_is_differentiable_by_the_implicit_function_theorem(device):
    """d(answer)/d(target) and d(answer)/d(weight) against central differences of re-fitted
    answers (float64, each re-fit started from the answer): relative error below 1e-5, with and
    without a kernel.  A target without grad costs nothing: the answer then has no graph."""
    p, q, W = _data(device, n=12, outliers=2)
    for kernel in (None, RobustKernel("huber", 1.0)):
        model = Similarity(device)
        start = {n: v.detach().clone() for n, v in model.state_dict().items()}
        q_ = q.clone().requires_grad_()
        W_ = W.clone().requires_grad_()
        result = fit(model, p, q_, weight=W_, kernel=kernel, update=False)
        assert result.converged
        answer = torch.cat([result.parameters["R"].tensor(), result.parameters["log_s"][None], result.parameters["t"]])
        v = torch.randn(answer.shape, generator=torch.Generator(device="cpu").manual_seed(3),
                        dtype=torch.float64, device="cpu").to(device)
        gq, gW = torch.autograd.grad((answer * v).sum(), (q_, W_))

        def refit(q2, W2):
            m = Similarity(device)
            m.load_state_dict(start)
            r = fit(m, p, q2, weight=W2, kernel=kernel,
                    config=SolverConfig(termination=optim.TerminationConfig(relative_tolerance=1e-15)))
            a = torch.cat([r.parameters["R"].tensor(), r.parameters["log_s"][None], r.parameters["t"]])
            a = a if float((a[:4] * answer[:4].detach()).sum()) > 0 else torch.cat([-a[:4], a[4:]])  # one quaternion sign
            return float((a.detach() * v).sum())

        h = 1e-6
        for grad, which in ((gq, "q"), (gW, "W")):
            d = torch.randn(grad.shape, generator=torch.Generator(device="cpu").manual_seed(5),
                            dtype=torch.float64, device="cpu").to(device)
            if which == "W":
                d = d + d.transpose(-1, -2)  # a symmetric direction
                fd = (refit(q, W + h * d) - refit(q, W - h * d)) / (2 * h)
            else:
                fd = (refit(q + h * d, W) - refit(q - h * d, W)) / (2 * h)
            ad = float((grad * d).sum())
            assert abs(ad - fd) < 1e-5 * max(1.0, abs(fd)), (kernel, which, ad, fd)
    assert not fit(Similarity(device), p, q).parameters["t"].requires_grad


def test_several_outputs_frozen_parameters_and_update(device):
    """A module with two outputs (each its own residual block, each its own target and weight),
    a parameter that does not require grad (left as it is), ``wrt`` choosing what is fitted, and
    ``update=False`` leaving the module unchanged."""

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            kw = dict(dtype=torch.float64, device=device)
            self.a = nn.Parameter(torch.zeros(2, **kw))
            self.b = nn.Parameter(torch.ones(1, **kw), requires_grad=False)
            self.c = nn.Parameter(torch.zeros(1, **kw))

        def forward(self, x):
            return self.a * x, self.c * self.b + self.a.sum()

    kw = dict(dtype=torch.float64, device=device)
    x = torch.tensor([1.0, 2.0], **kw)
    m = Two()
    r = fit(m, x, (torch.tensor([2.0, 2.0], **kw), torch.tensor([5.0], **kw)),
            weight=(torch.eye(2, **kw), 4.0 * torch.eye(1, **kw)))
    assert r.converged and r.cost < 1e-20
    assert torch.allclose(m.a, torch.tensor([2.0, 1.0], **kw)) and torch.allclose(m.c, torch.tensor([2.0], **kw))
    assert float(m.b) == 1.0
    m2 = Two()
    r2 = fit(m2, x, (torch.tensor([2.0, 2.0], **kw), torch.tensor([5.0], **kw)), wrt=["a"], update=False)
    assert torch.equal(m2.a, torch.zeros(2, **kw)) and set(r2.parameters) == {"a"}
    assert r2.converged and r2.cost > 0.1  # c held at zero: the second block cannot be met with the first


def test_fit_refuses_what_it_cannot_fit(device):
    kw = dict(dtype=torch.float64, device=device)
    p, q, W = _data(device, n=5)

    class Mixed(Similarity):
        def __init__(self):
            super().__init__(device)
            self.k = nn.Parameter(torch.ones((), dtype=torch.float32, device=device))

    cases = [
        (lambda: fit(Similarity(device), p, q, config=SolverConfig(backward="unroll")), ValueError,
         "config.backward: .* got 'unroll'"),
        (lambda: fit(Similarity(device), p, q[:3]), ValueError, r"target: shape \(3, 3\) does not broadcast"),
        (lambda: fit(Similarity(device), p, q, weight=-W), ValueError, "weight: an information matrix is not positive"),
        (lambda: fit(Similarity(device), p, q, weight=torch.eye(2, **kw)), ValueError,
         r"weight: expected information matrices \(\.\.\., 3, 3\)"),
        (lambda: fit(Similarity(device), p, q, weight=W + torch.triu(W, 1)), ValueError, "weight: expected symmetric"),
        (lambda: fit(Similarity(device), p, q, kernel="huber"), TypeError, "kernel: expected a RobustKernel"),
        (lambda: fit(Similarity(device), p, (q, q)), ValueError, r"target: expected one target per model output \(1\)"),
        (lambda: fit(Similarity(device), p, q, config="lm"), TypeError, "config: expected a SolverConfig"),
        (lambda: fit(Mixed(), p), ValueError, r"parameters 'R' \(torch.float64 .* and 'k' \(torch.float32"),
        (lambda: fit(nn.Linear(2, 2).requires_grad_(False), p), ValueError, "nothing to differentiate"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_a_fit_that_cannot_converge_says_so(device):
    """Residuals that turn NaN stop the fit with ``converged=False`` and a reason, and the
    module keeps finite values."""

    class Sqrt(nn.Module):
        def __init__(self):
            super().__init__()
            self.x = nn.Parameter(torch.tensor([1.0], dtype=torch.float64, device=device))

        def forward(self):
            return torch.sqrt(self.x) + 5.0  # its minimum lies where sqrt is not defined

    m = Sqrt()
    r = fit(m)
    assert not r.converged and r.reason in ("non_finite", "damping_limit", "max_iterations"), r
    assert torch.isfinite(m.x).all()


def test_modjac_at_takes_the_jacobian_at_given_values_and_leaves_the_model(device):
    """``modjac(model, input, at={...})`` equals the Jacobian of a copy moved to those values, and
    the model keeps its own; names and shapes outside the model are refused."""
    g = torch.Generator(device="cpu").manual_seed(2)
    input = _randn_SE3(3, generator=g, device=device)
    model, moved = PoseInv(3, generator=g, device=device), PoseInv(3, device=device)
    other = _randn_SE3(3, generator=g, device=device)
    with torch.no_grad():
        moved.pose.copy_(other)
    before = model.pose.tensor().clone()
    (J,) = modjac(model, input, at={"pose": other.tensor()})
    (J_moved,) = modjac(moved, input)
    (J_own,) = modjac(model, input)
    assert torch.allclose(J, J_moved, atol=1e-12) and not torch.allclose(J, J_own, atol=1e-3)
    assert torch.equal(model.pose.tensor(), before)
    with pytest.raises(ValueError, match=r"at: \['nope'\] name no parameter"):
        modjac(model, input, at={"nope": other.tensor()})
    with pytest.raises(ValueError, match=r"at\['pose'\]: expected \(3, 7\)"):
        modjac(model, input, at={"pose": other.tensor()[:2]})


def test_a_linear_layer_of_315_unknowns_equals_numpys_least_squares(device):
    """``nn.Linear(20, 15)`` fitted to 200 samples: more unknowns than the engine's dense systems
    take (one 315 x 315 block on its sparse path), the weights and bias numpy's ``lstsq`` gives."""
    g = torch.Generator(device="cpu").manual_seed(0)
    X = torch.randn(200, 20, generator=g, dtype=torch.float64, device="cpu")
    Y = torch.randn(200, 15, generator=g, dtype=torch.float64, device="cpu")
    layer = nn.Linear(20, 15, dtype=torch.float64, device=device)
    result = fit(layer, X.to(device), Y.to(device))
    assert result.converged, result.reason
    solution = np.linalg.lstsq(np.c_[X.numpy(), np.ones(200)], Y.numpy(), rcond=None)[0]
    assert np.abs(layer.weight.detach().cpu().numpy() - solution[:20].T).max() < 1e-9
    assert np.abs(layer.bias.detach().cpu().numpy() - solution[20]).max() < 1e-9


class BatchedSimilarity(nn.Module):
    """``B`` independent similarities: sample ``b``'s output reads sample ``b`` of each parameter."""

    def __init__(self, B, device):
        super().__init__()
        kw = dict(dtype=torch.float64, device=device)
        self.R = pp.Parameter(pp.identity_SO3(B, **kw))
        self.log_s = nn.Parameter(torch.zeros(B, **kw))
        self.t = nn.Parameter(torch.zeros(B, 3, **kw))

    def forward(self, p):
        return self.log_s.exp()[:, None, None] * self.R[:, None].Act(p) + self.t[:, None]


class BatchedSim3(nn.Module):
    """``B`` independent similarities as one Sim3 parameter each: ``S_b.Act(p_b)``."""

    def __init__(self, B, device):
        super().__init__()
        self.S = pp.Parameter(pp.identity_Sim3(B, dtype=torch.float64, device=device))

    def forward(self, p):
        return self.S[:, None].Act(p)


def test_per_sample_fits_a_thousand_independent_poses(device):
    """pypose's example at 1,000 poses, as 1,000 problems of 6 unknowns (``per_sample=True``;
    one dense problem would hold 6,000): every pose is its input's inverse, and a small batch
    gives what the one dense problem gives."""
    g = torch.Generator(device="cpu").manual_seed(4)
    input = _randn_SE3(1000, generator=g, device=device)
    model = PoseInv(1000, generator=g, device=device)
    result = fit(model, input, per_sample=True)
    assert result.converged.shape == (1000,) and bool(result.converged.all()) and len(result.reason) == 1000
    assert torch.allclose(model.pose.matrix(), input.Inv().matrix(), atol=1e-9)
    few, dense = PoseInv(5, generator=g, device=device), PoseInv(5, device=device)
    with torch.no_grad():
        dense.pose.copy_(few.pose)
    fit(few, input[:5], per_sample=True)
    fit(dense, input[:5])
    assert torch.allclose(few.pose.matrix(), dense.pose.matrix(), atol=1e-10)


def test_per_sample_problems_with_kernels_weights_and_gradients_are_the_single_fits(device):
    """Three similarity fits at once (each its own 12 correspondences, information per row and
    Huber's kernel on each row) equal the three fitted one by one, and so do their gradients with
    respect to the targets."""
    data = [_data(device, n=12, outliers=2, seed=s) for s in range(3)]
    p = torch.stack([d[0] for d in data])
    q = torch.stack([d[1] for d in data]).requires_grad_()
    W = torch.stack([d[2] for d in data])
    k = RobustKernel("huber", 1.0)
    batched = BatchedSimilarity(3, device)
    result = fit(batched, p, q, weight=W, kernel=k, per_sample=True)
    assert bool(result.converged.all()), result.reason
    (g_batched,) = torch.autograd.grad(result.parameters["t"].sum() + result.parameters["log_s"].sum(), q)
    for b, (pb, qb, Wb) in enumerate(data):
        one = Similarity(device)
        qb = qb.clone().requires_grad_()
        r = fit(one, pb, qb, weight=Wb, kernel=k)
        assert abs(float(result.cost[b]) - r.cost) < 1e-9 * r.cost
        assert torch.allclose(batched.R.matrix()[b], one.R.matrix(), atol=1e-8)
        assert torch.allclose(batched.t[b], one.t, atol=1e-8)
        (g_one,) = torch.autograd.grad(r.parameters["t"].sum() + r.parameters["log_s"], qb)
        assert torch.allclose(g_batched[b], g_one, atol=1e-7), (b, (g_batched[b] - g_one).abs().max())


def test_per_sample_a_problem_that_fails_fails_alone(device):
    """``sqrt(x_b) = y_b`` for three samples, the second with ``y < 0`` (no solution; its steps
    turn NaN): the other two converge to ``y^2``, the second says it did not converge, and every
    value stays finite."""

    class Sqrt(nn.Module):
        def __init__(self):
            super().__init__()
            self.x = nn.Parameter(torch.ones(3, dtype=torch.float64, device=device))

        def forward(self):
            return torch.sqrt(self.x)[:, None]

    y = torch.tensor([[2.0], [-1.0], [3.0]], dtype=torch.float64, device=device)
    m = Sqrt()
    r = fit(m, None, y, per_sample=True)
    assert r.converged.tolist() == [True, False, True], r.reason
    assert torch.allclose(m.x[[0, 2]], torch.tensor([4.0, 9.0], dtype=torch.float64, device=device))
    assert torch.isfinite(m.x).all()


def test_per_sample_refuses_what_is_not_per_sample(device):
    kw = dict(dtype=torch.float64, device=device)

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.zeros(4, **kw))
            self.c = nn.Parameter(torch.zeros(2, **kw))

        def forward(self, x):
            return self.a[:, None] * x + self.c

    with pytest.raises(ValueError, match=r"per_sample: parameter 'c' has shape \(2,\); expected its first dim"):
        fit(Shared(), torch.ones(4, 2, **kw), per_sample=True)
    class Total(Shared):
        def forward(self, x):
            return (self.a[:, None] * x).sum()

    with pytest.raises(ValueError, match="per_sample: expected the model's outputs to share a leading batch dim"):
        fit(Total(), torch.ones(4, 2, **kw), per_sample=True)
    with pytest.raises(TypeError, match="per_sample: expected True or False"):
        fit(Shared(), torch.ones(4, 2, **kw), per_sample=1)

    class Coupled(Shared):  # a's shape is per-sample, but sample b's output reads a[b - 1] too
        def forward(self, x):
            return (self.a + 0.5 * self.a.roll(1))[:, None] * x - 1.0

    with pytest.raises(ValueError, match="'a': changing its sample 0 changes other samples' outputs"):
        fit(Coupled(), torch.ones(4, 2, **kw), per_sample=True, wrt="a")


def test_per_sample_with_two_outputs(device):
    """Two residual blocks per sample: each sample's answer is its own closed form
    (``a = t1 / x``, ``c = t2 - sum(a)``)."""
    kw = dict(dtype=torch.float64, device=device)

    class TwoPerSample(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.zeros(3, 2, **kw))
            self.c = nn.Parameter(torch.zeros(3, 1, **kw))

        def forward(self, x):
            return self.a * x, self.c + self.a.sum(-1, keepdim=True)

    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.5, 1.5]], **kw)
    t1 = torch.tensor([[2.0, 2.0], [1.0, -1.0], [3.0, 0.0]], **kw)
    t2 = torch.tensor([[5.0], [0.0], [-2.0]], **kw)
    m = TwoPerSample()
    r = fit(m, x, (t1, t2), per_sample=True)
    assert bool(r.converged.all())
    assert torch.allclose(m.a, t1 / x, atol=1e-10)
    assert torch.allclose(m.c, t2 - (t1 / x).sum(-1, keepdim=True), atol=1e-10)


def test_a_weight_means_what_it_means_to_pyposes_lm(device):
    """pypose's LM given the same information matrix per row reaches the answer ``fit`` gives
    (its documented cost is ``sum r^T W r``, as here)."""
    p, q, W = _data(device, n=60)
    ours, theirs = Similarity(device), Similarity(device)
    assert fit(ours, p, q, weight=W).converged
    lm = pp.optim.LM(theirs)
    for _ in range(30):
        lm.step(p, q, weight=W)
    assert torch.allclose(ours.R.matrix(), theirs.R.matrix(), atol=1e-8)
    assert torch.allclose(ours.t, theirs.t, atol=1e-8) and torch.allclose(ours.log_s, theirs.log_s, atol=1e-8)
    other = Similarity(device)
    fit(other, p, q, weight=W @ W)  # a different weight lands elsewhere: the agreement is not vacuous
    assert not torch.allclose(other.t, theirs.t, atol=1e-4)


class Acting(nn.Module):
    """One group element acting on points: ``S.Act(p)`` (a Sim3 or an RxSO3 parameter)."""

    def __init__(self, start: pp.LieTensor):
        super().__init__()
        self.S = pp.Parameter(start.clone())

    def forward(self, p):
        return self.S.Act(p)


def test_a_sim3_parameter_lands_on_evos_umeyama_alignment(device):
    """A trajectory estimated at another scale (KITTI 00's 4,541 positions, halved, turned, moved
    and 1% noisy), aligned to the reference by fitting one Sim3 parameter, lands on evo's closed
    form (Umeyama's least squares with scale), from the identity."""
    geometry = pytest.importorskip("evo.core.geometry")
    from robojac import data
    from robojac.posegraph import read_g2o

    reference = read_g2o(data.path("posegraph/kitti_00.g2o")).poses.tensor()[:, :3].detach().to(device)
    g = torch.Generator(device="cpu").manual_seed(7)
    turn = pp.SE3(lie.se3_exp(torch.tensor([20.0, -5.0, 3.0, 0.1, -0.2, 0.9], dtype=torch.float64, device="cpu"))
                  .to(device))
    estimate = 0.5 * turn.Act(reference)
    estimate = estimate + 0.01 * estimate.abs().mean() * torch.randn(estimate.shape, generator=g, dtype=torch.float64,
                                                                      device="cpu").to(device)
    model = Acting(pp.identity_Sim3(dtype=torch.float64, device=device))
    result = fit(model, estimate, reference)
    assert result.converged, result.reason
    r, t, c = geometry.umeyama_alignment(estimate.T.cpu().numpy(), reference.T.cpu().numpy(), with_scale=True)
    S = model.S.detach()
    assert abs(float(S.tensor()[7]) - c) < 1e-9 * c and abs(c - 2.0) < 0.05
    assert np.abs(S.rotation().matrix().cpu().numpy() - r).max() < 1e-9
    assert np.abs(S.translation().cpu().numpy() - t).max() < 1e-6 * np.abs(t).max()


def test_an_rxso3_parameter_lands_on_scipys_least_squares(device):
    """A rotation and a scale fitted to vectors (RxSO3, no translation) land where scipy's
    ``least_squares`` over a rotation vector and a log scale lands, from the identity."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    g = torch.Generator(device="cpu").manual_seed(8)
    p = torch.randn(50, 3, generator=g, dtype=torch.float64, device="cpu")
    truth = Rotation.from_rotvec([0.4, -1.1, 0.7])
    q = torch.from_numpy(1.8 * truth.apply(p.numpy())) + 0.05 * torch.randn(50, 3, generator=g, dtype=torch.float64,
                                                                            device="cpu")
    model = Acting(pp.identity_RxSO3(dtype=torch.float64, device=device))
    result = fit(model, p.to(device), q.to(device))
    assert result.converged, result.reason

    def residual(x):
        return (np.exp(x[3]) * Rotation.from_rotvec(x[:3]).apply(p.numpy()) - q.numpy()).ravel()

    x = least_squares(residual, np.zeros(4), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    S = model.S.detach().cpu()
    assert np.abs(S.rotation().matrix().numpy() - Rotation.from_rotvec(x[:3]).as_matrix()).max() < 1e-9
    assert abs(float(S.tensor()[4]) - np.exp(x[3])) < 1e-9
