"""Graduated non-convexity on pose graphs with many wrong loop closures: the outliers found against
the graphs' own optimum (ground truth), GTSAM's GncOptimizer on the same graph, GNSS fixes thrown
off, the clean graph, and bad input."""

import math

import numpy as np
import pytest
import torch

from robojac import data, lie
from robojac.posegraph import (GNCConfig, PGOConfig, PoseGraph, PoseGraphError, add_wrong_loop_closures, optimize,
                               optimize_gnc, read_g2o)

KW = dict(dtype=torch.float64, device="cpu")


def _with_outliers(name: str, count: int, seed: int = 0):
    """``name``'s graph with ``count`` wrong loop closures, its own optimum (the truth), and the
    mask of the wrong edges."""
    g = read_g2o(data.path(f"posegraph/{name}.g2o"))
    graph, wrong = add_wrong_loop_closures(g, count, seed=seed)
    return graph, optimize(g).poses.tensor().detach(), wrong


def _rmse(P: torch.Tensor, truth: torch.Tensor) -> float:
    return float((P[:, :3] - truth[:, :3]).detach().norm(dim=-1).square().mean().sqrt())


def test_gnc_finds_the_wrong_loop_closures_that_least_squares_and_a_kernel_follow():
    """intel with 100 wrong loop closures (7% of its edges): truncated least squares by GNC keeps
    every right edge and drops 99 of the wrong ones (the 100th happens to agree with the poses:
    its residual is under the threshold at the answer), landing on the clean graph's optimum to
    0.23 m RMSE, where least squares is 20 m off and Cauchy's kernel 0.63 m."""
    graph, truth, wrong = _with_outliers("intel", 100)
    seen = []  # each round as it ends
    config = GNCConfig(solver=PGOConfig(init="odometry"), callback=seen.append)
    r = optimize_gnc(graph, config)
    assert r.converged and r.reason == "weights_converged" and r.iterations >= 3
    assert tuple(seen) == r.history
    assert torch.equal(r.weights, r.weights.round())  # binary: inliers and outliers
    assert bool(r.inliers[~wrong].all())  # no right edge lost
    assert int((~r.inliers[wrong]).sum()) >= 98
    kept_wrong = wrong & r.inliers  # any wrong edge kept agrees with the answer
    assert float(torch.cat((graph.chi2(r.poses.tensor())[kept_wrong], torch.zeros(1, **KW))).max()) < 11.35
    plain = optimize(graph, PGOConfig(init="odometry"))
    cauchy = optimize(graph, PGOConfig(init="odometry", kernel="cauchy"))
    assert _rmse(r.poses.tensor(), truth) < 0.3 and _rmse(plain.poses.tensor(), truth) > 10
    assert _rmse(cauchy.poses.tensor(), truth) > 2 * _rmse(r.poses.tensor(), truth)
    assert r.solver_iterations > sum(h.solver_iterations for h in r.history) > r.iterations  # and the plain solve's
    assert [h.iteration for h in r.history] == list(range(1, r.iterations + 1))
    assert all(b.mu > a.mu for a, b in zip(r.history, r.history[1:]))  # TLS: mu grows to the cost itself


def test_gnc_equals_gtsams_gnc_optimizer():
    """smallGrid3D (3D) with 50 wrong loop closures: GTSAM's ``GncLMOptimizer`` (TLS, the odometry
    known inliers, its default 0.99 thresholds) from the same start keeps the same edges (both drop
    the 50 wrong ones and 3 right ones).  Each answer lies within its solver's tolerance of the
    least-squares optimum with those weights, solved tight here (2026-12-07: robojac 6.2e-5 m,
    GTSAM 5.3e-5 m: smallGrid3D's weak directions at a relative decrease of 1e-6 and 1e-5), and
    the two within 1e-4 m of each other (1.1e-5 m)."""
    gtsam = pytest.importorskip("gtsam")
    graph, truth, wrong = _with_outliers("smallGrid3D", 50)
    config = GNCConfig(solver=PGOConfig(init="odometry"))
    r = optimize_gnc(graph, config)
    assert r.converged and bool((~r.inliers[wrong]).all())
    from robojac.posegraph import initialize

    perm = [3, 4, 5, 0, 1, 2]  # GTSAM's [phi, rho]

    def pose3(x):
        x = x.numpy()
        return gtsam.Pose3(gtsam.Rot3.Quaternion(x[6], x[3], x[4], x[5]), x[:3])

    fg, values = gtsam.NonlinearFactorGraph(), gtsam.Values()
    for k, x in enumerate(initialize(graph, "odometry")):
        values.insert(k, pose3(x))
    for (i, j), z, info in zip(graph.edges.tolist(), graph.measurements, graph.information):
        noise = gtsam.noiseModel.Gaussian.Information(info.numpy()[np.ix_(perm, perm)])
        fg.add(gtsam.BetweenFactorPose3(i, j, pose3(z), noise))
    fg.add(gtsam.PriorFactorPose3(0, values.atPose3(0), gtsam.noiseModel.Isotropic.Sigma(6, 1e-6)))
    params = gtsam.GncLMParams()
    params.setLossType(gtsam.GncLossType.TLS)
    params.setKnownInliers(torch.nonzero(graph.odometry).squeeze(-1).tolist() + [graph.num_edges])  # and the prior
    optimizer = gtsam.GncLMOptimizer(fg, values, params)
    theirs = optimizer.optimize()
    w = torch.tensor(np.array(optimizer.getWeights())[: graph.num_edges])
    assert torch.equal(w > 0.5, r.inliers)
    gap = max(float(np.linalg.norm(theirs.atPose3(k).translation() - r.poses.tensor()[k, :3].numpy()))
              for k in range(graph.num_poses))
    assert gap < 1e-4
    from robojac.posegraph._solve import _optimize

    tight = PGOConfig(method="gn", relative_tolerance=1e-14, absolute_tolerance=0.0)
    exact = _optimize(graph, tight, start=graph.state(r.poses.tensor()), weights=(r.weights, r.prior_weights))
    E = exact.poses.tensor()[:, :3]
    assert float((r.poses.tensor()[:, :3] - E).norm(dim=-1).max()) < 1e-4
    theirs_P = np.stack([theirs.atPose3(k).translation() for k in range(graph.num_poses)])
    assert float(np.linalg.norm(theirs_P - E.numpy(), axis=1).max()) < 1e-4


def test_gnc_drops_gnss_fixes_thrown_off_and_keeps_a_clean_graph_as_it_is(device):
    """A drive around a 10 m square (2D) held by a fix every 5 poses, two of them thrown 30 m off:
    GNC weighs the fixes too and drops those two.  A graph with nothing wrong (the same drive, its
    fixes right) ends after the plain solve ("all_inliers"), every weight 1, at optimize's answer.
    On the test's device: the weights, masks and answer on the graph's."""
    kw = dict(dtype=torch.float64, device=device)
    steps = torch.tensor([[1.0, 0, math.pi / 2 if k % 10 == 9 else 0] for k in range(39)], **kw)
    truth = [torch.zeros(3, **kw)]
    for step in steps:
        truth.append(lie.se2_compose(truth[-1], step))
    truth = torch.stack(truth)
    noise = torch.Generator(device).manual_seed(2)
    odometry = lie.se2_to_se3(steps + 0.01 * torch.randn(39, 3, generator=noise, **kw))
    info = torch.diag(torch.tensor([400.0, 400, 1e4], **kw)).expand(39, 3, 3)
    edges = torch.tensor([[k, k + 1] for k in range(39)], device=device)
    fixes = torch.arange(0, 40, 5, device=device)
    positions = truth[fixes, :2] + 0.2 * torch.randn(8, 2, generator=noise, **kw)
    clean = dict(dim=2, prior_index=fixes, prior_information=torch.eye(2, **kw).expand(8, 2, 2) * 4)
    graph = PoseGraph(lie.se2_to_se3(torch.zeros(40, 3, **kw)), edges, odometry, info, prior_positions=positions,
                      **clean)
    r = optimize_gnc(graph)
    assert r.converged and r.reason == "all_inliers" and r.iterations == 0
    assert bool((r.weights == 1).all()) and bool((r.prior_weights == 1).all())
    assert torch.equal(r.poses.tensor(), optimize(graph).poses.tensor())
    thrown = positions.clone()
    thrown[[2, 5]] += torch.tensor([[30.0, 0.0], [0.0, -30.0]], **kw)
    graph = PoseGraph(lie.se2_to_se3(torch.zeros(40, 3, **kw)), edges, odometry, info, prior_positions=thrown,
                      **clean)
    r = optimize_gnc(graph)
    assert r.converged and r.prior_inliers.tolist() == [True, True, False, True, True, False, True, True]
    assert r.weights.device == r.prior_inliers.device == r.poses.device == torch.device(device)
    assert bool(r.inliers.all())  # the odometry: known inliers
    kept = torch.tensor([0, 1, 3, 4, 6, 7], device=device)  # the answer is least squares' without the two thrown fixes
    without = PoseGraph(lie.se2_to_se3(torch.zeros(40, 3, **kw)), edges, odometry, info, dim=2, prior_index=fixes[kept],
                        prior_positions=thrown[kept], prior_information=torch.eye(2, **kw).expand(6, 2, 2) * 4)
    reference = optimize(without, PGOConfig(relative_tolerance=1e-12)).poses.tensor()
    assert float((r.poses.tensor()[:, :2] - reference[:, :2]).norm(dim=-1).max()) < 1e-5
    assert float((reference[:, :2] - truth[:, :2]).norm(dim=-1).max()) < 0.6  # and the drive within its noise
    trusted = optimize_gnc(graph, known_prior_inliers="all")  # every fix known right: nothing to weigh
    assert trusted.converged and trusted.reason == "all_known" and bool(trusted.prior_inliers.all())
    assert torch.equal(trusted.poses.tensor(), optimize(graph).poses.tensor())
    one = torch.zeros(8, dtype=torch.bool, device=device)
    one[2] = True  # a thrown fix held at weight 1: it stays, and bends the drive (other fixes go instead)
    r = optimize_gnc(graph, known_prior_inliers=one)
    assert r.converged and float(r.prior_weights[2]) == 1.0 and bool(r.prior_inliers[2])
    assert float((r.poses.tensor()[10, :2] - truth[10, :2]).norm()) > 5  # pose 10 carries the held fix
    with pytest.raises(ValueError, match=r"known_prior_inliers: expected 'none', 'all' or a bool tensor of shape \(8"):
        optimize_gnc(graph, known_prior_inliers=one[:3])


def test_gnc_refuses_bad_input():
    graph, _, _ = _with_outliers("intel", 5)
    with pytest.raises(ValueError, match=r"known_inliers: expected 'odometry', 'none' or a bool tensor of shape"):
        optimize_gnc(graph, known_inliers=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"optimize_gnc.known_inliers: expected one of \('odometry', 'none'\)"):
        optimize_gnc(graph, known_inliers="loops")
    with pytest.raises(ValueError, match="GNCConfig.solver: its kernel must be none"):
        GNCConfig(solver=PGOConfig(kernel="cauchy"))
    with pytest.raises(ValueError, match=r"GNCConfig.probability: expected a probability in \(0, 1\)"):
        GNCConfig(probability=1.0)
    with pytest.raises(ValueError, match="GNCConfig.callback: expected a callable or None, got 3"):
        GNCConfig(callback=3)
    with pytest.raises(ValueError, match="GNCConfig.mu_step: expected a factor above 1"):
        GNCConfig(mu_step=1.0)
    with pytest.raises(ValueError, match=r"GNCConfig.loss: expected one of \('tls', 'geman_mcclure'\)"):
        GNCConfig(loss="huber")
    with pytest.raises(TypeError, match="config: expected a GNCConfig, got PGOConfig"):
        optimize_gnc(graph, PGOConfig())
    two = PoseGraph(lie.se2_to_se3(torch.zeros(4, 3, **KW)), torch.tensor([[0, 1], [2, 3]]),
                    lie.se2_to_se3(torch.zeros(2, 3, **KW)), torch.eye(3, **KW).expand(2, 3, 3), dim=2)
    with pytest.raises(PoseGraphError, match="not connected"):
        optimize_gnc(two)


@pytest.mark.parametrize("mu", [1e-3, 0.3, 1.0, 7.0, 500.0])
def test_tls_weights_are_the_surrogates_slopes(mu):
    """GNC's TLS weights are the slopes in ``s`` of the paper's surrogate (Yang et al. 2020, eq. 13,
    written here in ``s = r^2``): ``s`` up to ``mu/(mu+1) c2``, ``2 c sqrt(mu (mu+1) s) - mu (c2 + s)``
    up to ``(mu+1)/mu c2``, then ``c2``: continuous, and its central differences equal the weights."""
    from robojac.posegraph._gnc import _weights

    c2 = 11.34

    def surrogate(s):
        lo, hi = mu / (mu + 1) * c2, (mu + 1) / mu * c2
        mid = 2 * math.sqrt(c2 * mu * (mu + 1) * s) - mu * (c2 + s)
        return s if s <= lo else (mid if s < hi else c2)

    s = np.concatenate((np.linspace(1e-3, 3 * c2, 400), [mu / (mu + 1) * c2 * 0.999, (mu + 1) / mu * c2 * 1.001]))
    w = _weights("tls", torch.tensor(s, **KW), torch.full((len(s),), c2, **KW), mu).numpy()
    h = 1e-7 * c2
    slopes = np.array([(surrogate(x + h) - surrogate(x - h)) / (2 * h) for x in s])
    lo, hi = mu / (mu + 1) * c2, (mu + 1) / mu * c2
    away = (np.abs(s - lo) > 1e-4 * c2) & (np.abs(s - hi) > 1e-4 * c2)  # the kinks
    np.testing.assert_allclose(w[away], slopes[away], atol=1e-5)
    for edge in (lo, hi):  # continuous across them
        assert abs(surrogate(edge * (1 - 1e-9)) - surrogate(edge * (1 + 1e-9))) < 1e-6


def test_wrong_loop_closures_are_added_as_a_place_recognizer_errs():
    """``add_wrong_loop_closures``: ``count`` more edges between poses that are not consecutive, as
    confident as the graph's first loop closure, the rest of the graph as it was (priors too), the
    same draw for the same seed; similarity graphs and negative counts refused."""
    g = read_g2o(data.path("posegraph/intel.g2o"))
    more, wrong = add_wrong_loop_closures(g, 40, seed=3)
    assert more.num_edges == g.num_edges + 40 and int(wrong.sum()) == 40 and bool(wrong[g.num_edges:].all())
    added = more.edges[wrong]
    assert bool(((added[:, 1] - added[:, 0]).abs() > 1).all())
    first_loop = int(torch.nonzero((g.edges[:, 1] - g.edges[:, 0]).abs() != 1)[0])
    assert torch.equal(more.information[wrong], g.information[first_loop].expand(40, 3, 3))
    assert torch.equal(more.measurements[~wrong], g.measurements) and torch.equal(more.poses.tensor(), g.poses.tensor())
    assert float(more.chi2(optimize(g).poses.tensor())[wrong].median()) > 1e3  # wrong indeed
    again, _ = add_wrong_loop_closures(g, 40, seed=3)
    assert torch.equal(again.edges, more.edges) and torch.equal(again.measurements, more.measurements)
    with pytest.raises(ValueError, match="add_wrong_loop_closures.count"):
        add_wrong_loop_closures(g, -1)
    sim = PoseGraph(torch.tensor([[0.0, 0, 0, 0, 0, 0, 1, 1]] * 3, **KW), torch.tensor([[0, 1], [1, 2]]),
                    torch.tensor([[1.0, 0, 0, 0, 0, 0, 1, 1]] * 2, **KW), torch.eye(7, **KW).expand(2, 7, 7),
                    similarity=True)
    with pytest.raises(ValueError, match="not similarity graphs"):
        add_wrong_loop_closures(sim, 2)


def test_cli_pgo_gnc_drops_the_wrong_edges(tmp_path, capsys):
    """``robojac pgo --gnc tls`` on a g2o file holding wrong loop closures: it says how many edges it
    dropped, writes the answer and its picture, exits 0; with a kernel too it is bad input (2)."""
    from robojac.cli import main
    from robojac.posegraph import write_g2o

    graph, _ = add_wrong_loop_closures(read_g2o(data.path("posegraph/intel.g2o")), 30)
    write_g2o(graph, tmp_path / "wrong.g2o")
    code = main(["pgo", str(tmp_path / "wrong.g2o"), "--gnc", "tls", "--init", "odometry",
                 "-o", str(tmp_path / "out.g2o"), "--plot", str(tmp_path / "gnc.png")])
    out = capsys.readouterr().out
    assert code == 0 and "GNC (tls):" in out and "(weights_converged)" in out and "dropped 30 of 2542 edges" in out
    assert "  round   1  mu " in out
    answer = read_g2o(tmp_path / "out.g2o")
    clean = optimize(read_g2o(data.path("posegraph/intel.g2o"))).poses.tensor()
    assert _rmse(answer.poses.tensor(), clean) < 1e-3
    assert (tmp_path / "gnc.png").stat().st_size > 10_000
    assert main(["pgo", str(tmp_path / "wrong.g2o"), "--gnc", "tls", "--kernel", "cauchy"]) == 2
    assert "--gnc weighs the edges itself: leave --kernel (cauchy) out" in capsys.readouterr().err


def _small_graph_with_wrong_closures():
    """A 40-pose 2D chain with 4 right loop closures and 4 wrong ones: ``(X, graph, wrong)``."""
    from test_reliability import _small_graph

    X, E, Z, info = _small_graph(40, 2, 0.02, seed=11)
    loops = torch.tensor([[0, 20], [5, 30], [12, 36]], device="cpu")
    Zl = lie.se3_compose(lie.se3_inverse(torch.as_tensor(X)[loops[:, 0]]), torch.as_tensor(X)[loops[:, 1]])
    base, wrong = add_wrong_loop_closures(PoseGraph(X, torch.cat((E, loops)), torch.cat((Z, Zl)),
                                                    torch.cat((info, info[:3])), dim=2), 4, seed=2)
    return X, base, wrong


def test_gnc_gradients_equal_central_differences_of_the_whole_gnc():
    """Truncated least squares settles on binary weights, a decision that a small change of a
    measurement does not flip: the whole GNC's derivative is then the last weighted solve's.
    d(poses)/d(measurements) through ``optimize_gnc`` against central differences of running all
    of GNC again at +-h (the weights checked to be the same there), relative < 1e-5."""
    X, base, wrong = _small_graph_with_wrong_closures()
    Z0 = base.measurements.detach().clone()
    config = GNCConfig(solver=PGOConfig(relative_tolerance=1e-14))  # the final polish to rounding

    def run(measurements):
        return optimize_gnc(PoseGraph(X, base.edges, measurements, base.information, dim=2), config)

    live = Z0.clone().requires_grad_()
    r = run(live)
    assert r.converged and torch.equal(r.weights, r.weights.round()) and bool((~r.inliers[wrong]).all())
    w = torch.randn(40, 4, generator=torch.Generator().manual_seed(3), **KW)
    (r.poses.tensor()[:, :4] * w).sum().backward()
    for at in [(3, 0), (20, 2), (41, 1), (base.num_edges - 5, 0)]:  # odometry, a loop closure, the last right one
        h = 1e-6
        d = torch.zeros_like(Z0)
        d[at] = h
        plus, minus = run(Z0 + d), run(Z0 - d)
        assert torch.equal(plus.weights, r.weights.detach()) and torch.equal(minus.weights, r.weights.detach())
        fd = float(((plus.poses.tensor()[:, :4] - minus.poses.tensor()[:, :4]) * w).sum()) / (2 * h)
        assert abs(float(live.grad[at]) - fd) <= 1e-5 * max(abs(fd), 1e-2), (at, float(live.grad[at]), fd)


def test_gnc_takes_mu_from_the_start_where_gauss_newton_is_thrown_off():
    """Gauss-Newton's plain solve on a graph with wrong loop closures can end far above its start
    (here 25-fold).  mu's start and the first weights then come from the start's residuals: from
    wherever the plain solve ended, the edges GNC kept had depended on changes of 1e-6 in one
    measurement (one run dropped every right loop closure)."""
    X, base, wrong = _small_graph_with_wrong_closures()
    config = GNCConfig(solver=PGOConfig(method="gn", relative_tolerance=1e-15), round_tolerance=1e-15)
    plain = optimize(base, config.solver)
    assert not plain.converged and plain.cost > 10 * plain.initial_cost
    runs = []
    for h in (0.0, 1e-6, -1e-6):
        Z = base.measurements.detach().clone()
        Z[3, 0] += h
        runs.append(optimize_gnc(PoseGraph(X, base.edges, Z, base.information, dim=2), config))
    for r in runs:
        assert r.converged and torch.equal(~r.inliers, wrong)
        assert r.history[0].mu == pytest.approx(runs[0].history[0].mu, rel=1e-6)
