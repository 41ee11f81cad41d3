"""Similarity (Sim3) pose graphs: the edge's closed form, the cost against scipy and GTSAM, optimality by
central differences, the SE3 limit against GTSAM's optimum, initializations, gradients, covariances, errors."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.transform import Rotation

from robojac import lie, optim
from robojac.data import path as data_path
from robojac.posegraph import (PGOConfig, PoseGraph, PoseGraphError, Sim3BetweenResidual, covariances, initialize,
                               optimize, read_g2o, write_g2o)

from helpers import max_err

KW = dict(dtype=torch.float64, device="cpu")


def _random_similarities(n: int, seed: int, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 7, generator=g, **KW) * torch.tensor([spread] * 3 + [0.6] * 3 + [0.3], **KW)
    return lie.sim3_exp(x)


def _walk(n: int, seed: int, noise: float = 0.01, loops: int = 6):
    """A drive of ``n`` similarities (1 m steps, turning, the scale wandering) and its graph: the odometry
    chain and ``loops`` closures, measured with ``noise`` (metres, radians, log-scale)."""
    g = torch.Generator().manual_seed(seed)
    ahead = torch.tensor([[1.0, 0, 0]], **KW) + 0.2 * torch.randn(n - 1, 3, generator=g, **KW)
    turn, scale = 0.15 * torch.randn(n - 1, 3, generator=g, **KW), 0.03 * torch.randn(n - 1, 1, generator=g, **KW)
    steps = torch.cat((ahead, turn, scale), -1)
    T = [lie.sim3_exp(torch.zeros(7, **KW))]
    for z in lie.sim3_exp(steps):
        T.append(lie.sim3_compose(T[-1], z))
    truth = torch.stack(T)
    half = lambda: torch.randperm(n // 2, generator=g, device="cpu")[:loops]  # noqa: E731
    pairs = torch.stack((half(), n // 2 + half()), 1)
    edges = torch.cat((torch.stack((torch.arange(n - 1, device="cpu"), torch.arange(1, n, device="cpu")), 1), pairs))
    exact = lie.sim3_compose(lie.sim3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]])
    Z = lie.sim3_compose(exact, lie.sim3_exp(noise * torch.randn(len(edges), 7, generator=g, **KW)))
    info = torch.eye(7, **KW).expand(len(edges), 7, 7) / noise**2
    return truth, edges, Z, info


def _matrix(S: np.ndarray) -> np.ndarray:
    """4x4 ``[[s R, t], [0, 1]]`` of similarities ``(N, 8)``, by scipy's quaternions."""
    M = np.tile(np.eye(4), (len(S), 1, 1))
    M[:, :3, :3] = S[:, 7, None, None] * Rotation.from_quat(S[:, 3:7]).as_matrix()
    M[:, :3, 3] = S[:, :3]
    return M


def independent_cost(graph: PoseGraph, poses: torch.Tensor) -> float:
    """``0.5 sum e^T Omega e`` with ``e`` from scipy's matrix logarithm of ``Z^-1 T_i^-1 T_j`` (its
    generator is ``[[[phi]x + sigma I, rho], [0, 0]]``): no code of robojac's or pypose's."""
    P, Z = _matrix(poses.detach().numpy()), _matrix(graph.measurements.numpy())
    e = graph.edges.numpy()
    total = 0.0
    for k, (i, j) in enumerate(e):
        Lg = np.real(scipy.linalg.logm(np.linalg.inv(Z[k]) @ np.linalg.inv(P[i]) @ P[j]))
        sigma = np.trace(Lg[:3, :3]) / 3
        phi = np.array([Lg[2, 1], Lg[0, 2], Lg[1, 0]])
        r = np.concatenate((Lg[:3, 3], phi, [sigma]))
        total += 0.5 * r @ graph.information[k].numpy() @ r
    return total


def test_closed_form_blocks_equal_central_differences_far_from_the_origin(device):
    """``dr/dY`` of the closed form against central differences through the engine's Sim3 retraction
    (``Exp(d) Y``), at similarities up to ~300 m from the origin and errors up to ~1 rad."""
    Yi, Yj = _random_similarities(6, 1, 100.0).to(device), _random_similarities(6, 2, 100.0).to(device)
    Z = lie.sim3_compose(lie.sim3_compose(Yi, lie.sim3_inverse(Yj)), _random_similarities(6, 3, 0.5).to(device))
    L = torch.linalg.cholesky(torch.diag(torch.arange(1.0, 8.0, **KW)).to(device)).mT.expand(6, 7, 7)
    f = Sim3BetweenResidual()
    r, (Ji, Jj) = f.value_and_jacobians(Yi, Yj, Z, L)
    assert max_err(r, f(Yi, Yj, Z, L)) == 0
    G = optim.group("Sim3")
    h = 1e-6
    for k in range(7):
        d = torch.zeros(6, 7, **KW).to(device)
        d[:, k] = h
        fd_i = (f(G.retract(Yi, d), Yj, Z, L) - f(G.retract(Yi, -d), Yj, Z, L)) / (2 * h)
        fd_j = (f(Yi, G.retract(Yj, d), Z, L) - f(Yi, G.retract(Yj, -d), Z, L)) / (2 * h)
        assert max_err(fd_i, Ji[..., k]) < 1e-6 * (1 + Ji.abs().max())
        assert max_err(fd_j, Jj[..., k]) < 1e-6 * (1 + Jj.abs().max())


def test_closed_form_and_automatic_jacobians_take_the_same_path():
    """The same graph solved with the closed form and with a plain function of the same residual (its
    blocks from ``robojac.jacobian``): the same costs at every iteration, the same answer."""
    truth, edges, Z, info = _walk(30, 4)
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    S = graph.state()
    held = torch.zeros(1, 30, dtype=torch.bool)
    held[0, 0] = True
    L = graph.sqrt_information
    runs = []
    for residual in (Sim3BetweenResidual(), lambda Yi, Yj, Z, L: Sim3BetweenResidual()(Yi, Yj, Z, L)):
        X = optim.Variable("Sim3", S[None], fixed=held)
        runs.append(optim.solve([X], [optim.Factor(residual, [X, X], index=edges, data=(Z, L))]))
    a, b = runs
    assert int(a.iterations) == int(b.iterations) and bool(a.converged) and bool(b.converged)
    assert max_err(a.history.cost, b.history.cost) < 1e-9 * float(a.history.cost.max())
    assert max_err(a.values[0], b.values[0]) < 1e-9


def test_the_cost_is_scipys_and_the_answer_is_stationary_by_central_differences():
    """At the answer, the cost equals scipy's matrix-logarithm evaluation, and central differences of
    the cost along every pose's own 7 directions (``T Exp(d)``) are zero to 1e-7 of their size at
    the start; the answer recovers the drive within the noise."""
    truth, edges, Z, info = _walk(40, 5)
    start = lie.sim3_compose(truth, lie.sim3_exp(0.05 * torch.randn(40, 7, generator=torch.Generator().manual_seed(6),
                                                                    **KW)))
    start[0] = truth[0]
    graph = PoseGraph(start, edges, Z, info, similarity=True)
    result = optimize(graph, PGOConfig(init="file", relative_tolerance=1e-14))
    assert result.converged and result.poses.shape == (40, 8)
    P = result.poses.tensor()
    assert result.cost == pytest.approx(independent_cost(graph, P), rel=1e-9)
    assert float(graph.cost(P)) == pytest.approx(result.cost, rel=1e-12)

    def slopes(P):
        out, h = [], 1e-6
        for k in range(1, 40, 7):
            for a in range(7):
                d = torch.zeros(7, **KW)
                d[a] = h
                plus, minus = P.clone(), P.clone()
                plus[k], minus[k] = lie.sim3_compose(P[k], lie.sim3_exp(d)), lie.sim3_compose(P[k], lie.sim3_exp(-d))
                out.append((float(graph.cost(plus)) - float(graph.cost(minus))) / (2 * h))
        return torch.tensor(out)

    assert float(slopes(P).abs().max()) < 1e-7 * float(slopes(start).abs().max())
    assert float((P[:, :3] - truth[:, :3]).norm(dim=-1).max()) < 1.0  # 40 m of drive, 1% noise


def test_the_rigid_limit_reaches_gtsams_se3_optimum(device):
    """sphere2500 as similarities of scale 1 whose measured scale ratios (1) are trusted 1e10-fold:
    the Sim3 optimum is the SE3 one, ``data/posegraph/gtsam_optima.json``'s cost (GTSAM 4.3's), to
    1e-7.  (sim3's ``rho`` at ``sigma = 0`` is se3's: ``W(phi, 0) = Jl_so3(phi)``.)"""
    g = read_g2o(data_path("posegraph/sphere2500.g2o"))
    ones = lambda T: torch.cat((T, torch.ones(T.shape[0], 1, **KW)), -1)  # noqa: E731
    info = torch.zeros(g.num_edges, 7, 7, **KW)
    info[:, :6, :6] = g.information
    info[:, 6, 6] = 1e10
    graph = PoseGraph(ones(g.poses.tensor().detach()), g.edges, ones(g.measurements), info, similarity=True).to(device)
    result = optimize(graph)
    reference = json.loads(data_path("posegraph/gtsam_optima.json").read_text())["sphere2500"]["gtsam_optimum_cost"]
    assert result.converged
    assert result.cost == pytest.approx(reference, rel=1e-7)
    assert float((result.poses.tensor()[:, 7] - 1).abs().max()) < 1e-6


def test_gtsams_between_factor_agrees_on_the_cost_and_stops_above_the_minimum():
    """GTSAM's ``BetweenFactorSimilarity3`` (its ``Similarity3`` is ``(R, t / s, s)``, tangent ``[phi,
    rho, sigma]``) evaluates robojac's answer to robojac's cost; its own Levenberg-Marquardt, run to
    1e-14, ends no lower (its Jacobians are ~0.1% off its own central differences, so it stalls
    above the minimum on larger graphs), and from its answer robojac's descends back to it."""
    gtsam = pytest.importorskip("gtsam")
    truth, edges, Z, info = _walk(60, 7, noise=0.02, loops=10)
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    ours = optimize(graph, PGOConfig(init="odometry", relative_tolerance=1e-14))
    order = [3, 4, 5, 0, 1, 2, 6]

    def similarity(x):
        x = [float(v) for v in x]
        return gtsam.Similarity3(gtsam.Rot3.Quaternion(x[6], x[3], x[4], x[5]), np.array(x[:3]) / x[7], x[7])

    factors = gtsam.NonlinearFactorGraph()
    for (i, j), z, I in zip(edges.tolist(), Z, info[:, order][:, :, order].numpy()):
        factors.add(gtsam.BetweenFactorSimilarity3(i, j, similarity(z), gtsam.noiseModel.Gaussian.Information(I)))
    values = gtsam.Values()
    for k, x in enumerate(ours.poses.tensor()):
        values.insert(k, similarity(x))
    assert factors.error(values) == pytest.approx(ours.cost, rel=1e-10)
    held = gtsam.NonlinearFactorGraph(factors)
    held.add(gtsam.PriorFactorSimilarity3(0, similarity(truth[0]), gtsam.noiseModel.Isotropic.Sigma(7, 1e-8)))
    start = gtsam.Values()
    for k, x in enumerate(initialize(graph, "odometry")):
        start.insert(k, similarity(lie.sim3_inverse(x)))
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(1e-14)
    params.setAbsoluteErrorTol(1e-14)
    theirs = gtsam.LevenbergMarquardtOptimizer(held, start, params).optimize()
    assert factors.error(theirs) >= ours.cost - 1e-9 * ours.cost
    def ours_from(S):
        R = torch.as_tensor(S.rotation().matrix())
        t = torch.as_tensor(S.translation()) * S.scale()
        return torch.cat((t, lie.matrix_to_quat(R), torch.tensor([S.scale()], **KW)))

    back = torch.stack([ours_from(theirs.atSimilarity3(k)) for k in range(60)])
    again = optimize(PoseGraph(back, edges, Z, info, similarity=True), PGOConfig(init="file", relative_tolerance=1e-14))
    assert again.cost == pytest.approx(ours.cost, rel=1e-9)


@pytest.mark.parametrize("init", ["odometry", "chordal"])
def test_initializations_recover_a_noise_free_drive(init, device):
    """Exact measurements: the odometry tree and the chordal relaxation (rotations, log-scales,
    translations) each give back the drive, from its first pose."""
    truth, edges, Z, info = _walk(25, 8, noise=1e-12)
    start = truth.clone()
    start[1:] = lie.sim3_exp(torch.zeros(24, 7, **KW))
    graph = PoseGraph(start, edges, lie.sim3_compose(lie.sim3_inverse(truth[edges[:, 0]]), truth[edges[:, 1]]),
                      info, similarity=True).to(device)
    placed = graph.poses_from_state(initialize(graph, init)).tensor()
    assert max_err(placed[:, :3], truth[:, :3].to(device)) < 1e-9
    assert max_err(placed[:, 7], truth[:, 7].to(device)) < 1e-12


def test_chordal_start_is_near_the_optimum_on_a_noisy_drive():
    truth, edges, Z, info = _walk(60, 9, noise=0.02, loops=10)
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    chordal = optimize(graph, PGOConfig(init="chordal"))
    odometry = optimize(graph, PGOConfig(init="odometry"))
    assert chordal.converged and odometry.converged
    assert chordal.cost == pytest.approx(odometry.cost, rel=1e-6)
    assert chordal.initial_cost < 0.1 * odometry.initial_cost


def _resolved(graph: PoseGraph, start: torch.Tensor) -> torch.Tensor:
    """The optimum re-solved from ``start`` by Gauss-Newton to a gradient of 1e-12 (the reference)."""
    held = torch.zeros(1, graph.num_poses, dtype=torch.bool)
    held[0, 0] = True
    V = optim.Variable("Sim3", graph.state(start)[None].clone(), fixed=held)
    f = optim.Factor(graph.residual_function(), [V, V], index=graph.edges,
                     data=(graph.measurements, graph.sqrt_information))
    exact = optim.TerminationConfig(relative_tolerance=0.0, gradient_tolerance=1e-12, max_iterations=30)
    out = optim.solve([V], [f], optim.SolverConfig(optim.TrustRegionConfig(method="gn"), exact, backward="none"))
    _, g = optim.Linearization(optim.Problem([V], [f]), out.values).normal_equations()
    assert float(g.abs().max()) < 1e-8  # against information of 2,500: poses within ~1e-11 of the minimum
    return graph.poses_from_state(out.values[0][0]).tensor()


@pytest.mark.parametrize("n", [12, 50], ids=["dense backward", "sparse backward"])
def test_gradients_through_the_answer_equal_central_differences(n):
    """``d(poses)/d(measurements)`` by the implicit backward, against central differences that
    re-solve from the answer (float64): relative error below 1e-5.  12 poses (84 tangent
    dimensions: the dense exact Hessian) and 50 (350: conjugate gradients, the Hessian's products
    through the cost).  The measurements move on the group, ``Z Exp(xi)``, in each of the 7
    directions (a raw quaternion entry alone would leave the group)."""
    truth, edges, Z, info = _walk(n, 10, noise=0.02, loops=3)
    w = torch.randn(n, 8, generator=torch.Generator().manual_seed(11), **KW)
    xi = torch.zeros(len(edges), 7, **KW, requires_grad=True)
    result = optimize(PoseGraph(truth, edges, lie.sim3_compose(Z, lie.sim3_exp(xi)), info, similarity=True),
                      PGOConfig(init="file"))
    assert result.converged
    (grad,) = torch.autograd.grad((result.poses.tensor() * w).sum(), xi)
    start = result.poses.tensor().detach()
    h = 1e-6
    for e, k in ((0, 0), (5, 2), (12, 6), (13, 4), (3, 3), (13, 6), (1, 5)):
        d = torch.zeros(len(edges), 7, **KW)
        d[e, k] = h
        fd = float(sum(sign * (_resolved(PoseGraph(truth, edges, lie.sim3_compose(Z, lie.sim3_exp(sign * d)), info,
                                                   similarity=True), start) * w).sum() for sign in (1, -1))) / (2 * h)
        assert abs(fd - float(grad[e, k])) < 1e-5 * max(1e-2, abs(fd)), (e, k, fd, float(grad[e, k]))


def test_covariances_are_the_inverse_of_central_difference_normal_equations():
    """``covariances(frame="body")``: the diagonal blocks of ``(J^T J)^-1``, ``J`` the whitened
    residuals' central differences along each free pose's own 7 directions (``T Exp(d)``);
    ``frame="world"`` is ``Ad(T)`` of them."""
    truth, edges, Z, info = _walk(10, 12, noise=0.02, loops=2)
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    P = optimize(graph, PGOConfig(init="file", relative_tolerance=1e-14)).poses.tensor()
    h, cols = 1e-6, []
    for k in range(1, 10):
        for a in range(7):
            d = torch.zeros(7, **KW)
            d[a] = h
            plus, minus = P.clone(), P.clone()
            plus[k], minus[k] = lie.sim3_compose(P[k], lie.sim3_exp(d)), lie.sim3_compose(P[k], lie.sim3_exp(-d))
            cols.append(((graph.residuals(plus) - graph.residuals(minus)) / (2 * h)).flatten())
    J = torch.stack(cols, 1)
    C = torch.linalg.inv(J.T @ J)
    body = covariances(graph, P)
    assert max_err(body[0], torch.zeros(7, 7, **KW)) == 0  # the gauge
    for k in range(1, 10):
        block = C[7 * (k - 1): 7 * k, 7 * (k - 1): 7 * k]
        assert max_err(body[k], block) < 1e-6 * float(block.abs().max())
    A = lie.sim3_adjoint(P)
    assert max_err(covariances(graph, P, frame="world"), A @ body @ A.mT) < 1e-12


def test_similarity_graphs_refuse_bad_input_by_name():
    truth, edges, Z, info = _walk(6, 13)
    bad = truth.clone()
    bad[3, 7] = -0.5
    with pytest.raises(PoseGraphError, match=r"poses: vertex 3 has scale -0.5; a similarity's scale"):
        PoseGraph(bad, edges, Z, info, similarity=True)
    badZ = Z.clone()
    badZ[2, 7] = 0.0
    with pytest.raises(PoseGraphError, match=r"measurements: edge 2 2->3 has scale 0; a similarity's scale"):
        PoseGraph(truth, edges, badZ, info, similarity=True)
    with pytest.raises(PoseGraphError, match=r"poses: expected a float tensor \(N, 8\) \[t, qx, qy, qz, qw, s\]"):
        PoseGraph(truth[:, :7], edges, Z, info, similarity=True)
    with pytest.raises(PoseGraphError, match=r"information \(E, 7, 7\) expected"):
        PoseGraph(truth, edges, Z, info[:, :6, :6], similarity=True)
    with pytest.raises(ValueError, match=r"similarity: similarity graphs are 3D \(dim=3\)"):
        PoseGraph(truth, edges, Z, info, similarity=True, dim=2)
    with pytest.raises(TypeError, match=r"similarity: expected True or False"):
        PoseGraph(truth, edges, Z, info, similarity="yes")
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    with pytest.raises(ValueError, match=r"poses: expected \(6, 8\), got \(6, 7\)"):
        write_g2o(graph, "/nonexistent/never_written.g2o", truth[:, :7])
    with pytest.raises(ValueError, match=r"poses: expected the graph's 6 poses as \(N, 8\)"):
        covariances(graph, truth[:, :7])
    lone = PoseGraph(truth[:1], torch.zeros(0, 2, dtype=torch.long), Z[:0], info[:0], similarity=True)
    rigid = PoseGraph(truth[:, :7], edges, Z[:, :7], info[:, :6, :6])
    for g in (graph, lone, rigid):  # a misspelt start is refused, even where there is nothing to place
        with pytest.raises(ValueError, match=r"init: expected 'file', 'odometry' or 'chordal', got 'chordl'"):
            initialize(g, "chordl")


def test_chordal_of_a_rigid_graph_is_the_se3_chordal_whatever_the_scale_information():
    """smallGrid3D as similarities of scale 1, each edge's scale information drawn at random: the
    chordal start is the SE3 graph's (rotations weighed by the rotation block alone, the log-scales
    all 0, then the same translations)."""
    g = read_g2o(data_path("posegraph/smallGrid3D.g2o"))
    ones = lambda T: torch.cat((T, torch.ones(T.shape[0], 1, **KW)), -1)  # noqa: E731
    info = torch.zeros(g.num_edges, 7, 7, **KW)
    info[:, :6, :6] = g.information
    info[:, 6, 6] = torch.rand(g.num_edges, generator=torch.Generator().manual_seed(14), **KW) * 1e6
    graph = PoseGraph(ones(g.poses.tensor().detach()), g.edges, ones(g.measurements), info, similarity=True)
    rigid = initialize(g, "chordal")
    placed = graph.poses_from_state(initialize(graph, "chordal")).tensor()
    assert max_err(placed[:, 7], torch.ones(g.num_poses, **KW)) < 1e-12
    assert max_err(placed[:, :3], rigid[:, :3]) < 1e-9
    sign = torch.sign((placed[:, 3:7] * rigid[:, 3:7]).sum(-1, keepdim=True))
    assert max_err(placed[:, 3:7] * sign, rigid[:, 3:7]) < 1e-12


def test_curvature_equals_second_differences(device):
    """``Sim3BetweenResidual.curvature(v, ...)`` = the Hessian of ``v . r(Exp(a) Y_i, Exp(b) Y_j)`` in
    ``[a, b]``, against second central differences, at errors up to ~1 rad with a square-root
    information."""
    from helpers import per_sample_hessian_fd

    g = torch.Generator().manual_seed(15)
    Yi, Yj = _random_similarities(5, 16, 2.0).to(device), _random_similarities(5, 17, 2.0).to(device)
    Z = lie.sim3_compose(lie.sim3_compose(Yi, lie.sim3_inverse(Yj)), _random_similarities(5, 18, 0.5).to(device))
    M = torch.randn(5, 7, 7, generator=g, **KW).to(device)
    L = torch.linalg.cholesky(M @ M.mT + torch.eye(7, **KW).to(device)).mT
    v = torch.randn(5, 7, generator=g, **KW).to(device)
    f = Sim3BetweenResidual()
    H = f.curvature(v, Yi, Yj, Z, L)

    def weighted(ab):
        return (v * f(lie.sim3_compose(lie.sim3_exp(ab[:, :7]), Yi), lie.sim3_compose(lie.sim3_exp(ab[:, 7:]), Yj),
                      Z, L)).sum(-1)

    fd = per_sample_hessian_fd(weighted, torch.zeros(5, 14, **KW).to(device))
    assert max_err(H, fd) < 1e-5 * float(H.abs().max())


def test_a_robust_kernel_ignores_a_wrong_loop_closure():
    """One of 8 loop closures joins the wrong keyframes (a place recognizer's false match): least
    squares bends the drive to it, Cauchy's kernel leaves it as near the truth as the graph
    without that edge."""
    truth, edges, Z, info = _walk(60, 19, noise=0.01, loops=8)
    wrong = Z.clone()
    wrong[-1] = lie.sim3_exp(torch.tensor([20.0, -15.0, 3.0, 0.5, -0.3, 1.0, 0.7], **KW))  # 25 m off, twice the scale
    clean = optimize(PoseGraph(truth[:], edges[:-1], Z[:-1], info[:-1], similarity=True), PGOConfig(init="odometry"))
    graph = PoseGraph(truth, edges, wrong, info, similarity=True)
    plain = optimize(graph, PGOConfig(init="odometry"))
    robust = optimize(graph, PGOConfig(init="odometry", kernel=optim.RobustKernel("cauchy", 5.0)))
    assert clean.converged and plain.converged and robust.converged
    error = lambda r: float((r.poses.tensor()[:, :3] - truth[:, :3]).norm(dim=-1).max())  # noqa: E731
    assert error(plain) > 10 * error(clean) and error(robust) < 1.5 * error(clean), (error(plain), error(robust),
                                                                                    error(clean))



def _generator_expm(v: np.ndarray) -> np.ndarray:
    """4x4 ``expm([[[omega]x + sigma I, upsilon], [0, 0]])`` of g2o-ordered ``[omega, upsilon, sigma]``
    (scipy's matrix exponential): the similarity g2o's ``Sim3(v)`` builds."""
    w, u, sigma = v[:3], v[3:6], v[6]
    G = np.zeros((4, 4))
    G[:3, :3] = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) + sigma * np.eye(3)
    G[:3, 3] = u
    return scipy.linalg.expm(G)


def test_a_g2o_sim3_file_reads_as_g2o_defines_it(tmp_path):
    """``VERTEX_SIM3:EXPMAP id [omega, upsilon, sigma] cameras...`` holds ``Log(T_world_camera)``;
    ``EDGE_SIM3:EXPMAP i j [omega, upsilon, sigma] info(28)`` holds ``Log(T_i^-1 T_j)`` and the upper
    triangle of the information in that order (g2o's ``types_seven_dof_expmap``).  Read: each pose
    is scipy's matrix exponential of its line, the information is permuted to ``[rho, phi,
    sigma]``, and the vertices' camera numbers (4 in g2o, 8 for two cameras, none) are skipped."""
    rng = np.random.default_rng(20)
    v = rng.normal(size=(3, 7)) * [0.5, 0.5, 0.5, 3, 3, 3, 0.2]
    z = rng.normal(size=(2, 7)) * [0.2, 0.2, 0.2, 1, 1, 1, 0.1]
    M = rng.normal(size=(2, 7, 7))
    info = M @ np.swapaxes(M, -1, -2) + 7 * np.eye(7)
    iu = np.triu_indices(7)
    cameras = [" 1 1 0 0", " 458.6 457.3 367.2 248.4 458.6 457.3 367.2 248.4", ""]
    text = [f"VERTEX_SIM3:EXPMAP {k} " + " ".join(map(repr, v[k].tolist())) + cameras[k] for k in range(3)]
    numbers = lambda a: " ".join(map(repr, a.tolist()))  # noqa: E731
    text += [f"EDGE_SIM3:EXPMAP {i} {j} {numbers(z[k])} {numbers(info[k][iu])}"
             for k, (i, j) in enumerate([(0, 1), (1, 2)])]
    path = tmp_path / "sim3.g2o"
    path.write_text("\n".join(text) + "\nFIX 0\n")
    graph = read_g2o(path)
    assert graph.similarity and graph.num_poses == 3 and bool(graph.fixed[0])
    pairs = [(graph.poses.tensor().detach()[k], v[k]) for k in range(3)]
    pairs += [(graph.measurements[k], z[k]) for k in range(2)]
    for X, vec in pairs:
        T = _generator_expm(vec)
        s_ = float(np.cbrt(np.linalg.det(T[:3, :3])))
        assert abs(float(X[7]) - s_) < 1e-12 * s_
        assert np.abs(X[:3].numpy() - T[:3, 3]).max() < 1e-12 * max(1.0, np.abs(T[:3, 3]).max())
        assert np.abs(Rotation.from_quat(X[3:7].numpy()).as_matrix() - T[:3, :3] / s_).max() < 1e-12
    order = [3, 4, 5, 0, 1, 2, 6]
    assert max_err(graph.information, torch.from_numpy(info[:, order][:, :, order])) < 1e-12


def test_a_similarity_graph_round_trips_through_g2o(tmp_path):
    """``write_g2o`` then ``read_g2o``: the same poses, measurements (to rounding: logarithms in the
    file), information and FIXed vertex; a file of edges alone gets its poses along the odometry."""
    truth, edges, Z, info = _walk(15, 21, loops=3)
    graph = PoseGraph(truth, edges, Z, info, similarity=True, fixed=torch.arange(15) == 4)
    path = write_g2o(graph, tmp_path / "drive.g2o")
    back = read_g2o(path)
    assert back.similarity and bool(back.fixed[4]) and int(back.fixed.sum()) == 1
    assert max_err(back.poses.tensor(), truth) < 1e-12 and max_err(back.measurements, Z) < 1e-12
    assert max_err(back.information, info) == 0
    edges_only = tmp_path / "edges.g2o"
    edges_only.write_text("\n".join(ln for ln in path.read_text().splitlines() if ln.startswith("EDGE")) + "\n")
    composed = read_g2o(edges_only).poses.tensor()
    expected = [truth[0]]
    for z in Z[:14]:
        expected.append(lie.sim3_compose(expected[-1], z))
    assert max_err(composed, torch.stack(expected)) < 1e-12


def test_sim3_g2o_lines_that_cannot_be_read_name_their_line(tmp_path):
    from robojac.posegraph import G2OError

    edge = "EDGE_SIM3:EXPMAP 0 1 " + " ".join(["0.1"] * 7) + " " + " ".join(["1"] * 28)
    cases = {
        "VERTEX_SIM3:EXPMAP 0 0 0 0 0 0 0\n" + edge: r"f.g2o:1: VERTEX_SIM3:EXPMAP needs 8 values or more, got 7",
        edge + " 1": r"f.g2o:1: EDGE_SIM3:EXPMAP needs 37 values, got 38",
        "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\n" + edge: r"f.g2o:2: EDGE_SIM3:EXPMAP in a 3D file: 2D, 3D and Sim3",
        edge.replace("0.1", "nan", 1): r"f.g2o:1: EDGE_SIM3:EXPMAP: value 1 'nan' is not finite",
    }
    for text, error in cases.items():
        (tmp_path / "f.g2o").write_text(text + "\n")
        with pytest.raises(G2OError, match=error):
            read_g2o(tmp_path / "f.g2o")


def test_the_cli_optimizes_a_sim3_file(tmp_path, capsys):
    """``robojac pgo`` on a similarity file: the optimum ``optimize`` reaches, written back as g2o
    and as a TUM trajectory of the keyframes' rigid poses."""
    from robojac.cli import main
    from robojac.trajectory import read_tum

    truth, edges, Z, info = _walk(20, 22, loops=3)
    graph = PoseGraph(truth, edges, Z, info, similarity=True)
    path = write_g2o(graph, tmp_path / "in.g2o")
    assert main(["pgo", str(path), "-q", "-o", str(tmp_path / "out.g2o"), "--tum", str(tmp_path / "out.tum")]) == 0
    assert "Sim3, 20 poses, 22 edges" in capsys.readouterr().out
    result = optimize(graph)
    assert max_err(read_g2o(tmp_path / "out.g2o").poses.tensor(), result.poses.tensor()) < 1e-9
    assert max_err(read_tum(tmp_path / "out.tum").poses, result.poses.tensor()[:, :7]) < 1e-9
