"""Marginal covariances: against GTSAM's Marginals, the inverse of a finite-difference Hessian,
and the dense inverse; the frames; the errors."""

from __future__ import annotations

import json

import pypose as pp
import pytest
import torch

from robojac import lie, optim
from robojac.data import path as data_path
from robojac.posegraph import PoseGraph, PoseGraphError, covariances, optimize, read_g2o

from helpers import max_err

REFERENCE = json.loads(data_path("posegraph/gtsam_marginals.json").read_text())


def _graph(name, device="cpu", dtype=torch.float64):
    return read_g2o(data_path(f"posegraph/{name}.g2o.gz"), dtype=dtype).to(device)


def _rel(a, b) -> float:
    """The largest difference of each block relative to that block's largest entry."""
    scale = b.abs().flatten(-2).amax(-1)
    return float(((a - b).abs().flatten(-2).amax(-1) / scale).max())


@pytest.mark.parametrize("name", ["intel", "smallGrid3D"])
def test_equal_gtsams_marginals_at_the_same_answer(name, device):
    """GTSAM's ``Marginals`` (a prior of sigma 1e-6 on the first pose) at robojac's optimum,
    written by ``benchmarks/covariances.py --write-reference``: eight poses along each graph."""
    ref = REFERENCE[name]
    graph = _graph(name, device)
    result = optimize(graph)
    assert result.vertex_ids[ref["poses"]].tolist() == ref["vertex_ids"]
    C = covariances(graph, result.poses, which=ref["poses"])
    G = torch.tensor(ref["covariances"], dtype=torch.float64, device=device)
    assert C.shape == G.shape and C.device == device
    assert _rel(C, G) < 1e-6  # measured: 9.0e-8 (intel), 2.4e-10 (smallGrid3D)


def test_equal_gtsams_marginals_with_a_robust_kernel(device):
    """Every edge under a Cauchy kernel of scale 1, on both sides (GTSAM's ``noiseModel.Robust``),
    at robojac's robust answer: the kernel's weights there scale each edge's information."""
    from robojac.optim import RobustKernel
    from robojac.posegraph import PGOConfig

    ref = REFERENCE["intel cauchy 1.0"]
    graph = _graph("intel", device)
    kernel = RobustKernel("cauchy", 1.0)
    result = optimize(graph, PGOConfig(kernel=kernel))
    C = covariances(graph, result.poses, which=ref["poses"], kernel=kernel)
    G = torch.tensor(ref["covariances"], dtype=torch.float64, device=device)
    assert _rel(C, G) < 1e-6  # measured: 3.1e-8
    plain = covariances(graph, result.poses, which=ref["poses"])
    assert _rel(plain, G) > 1e-3  # the weights matter: without them the answer is another


def _whitened_residuals(graph, P: pp.LieTensor) -> torch.Tensor:
    """Every edge's ``L Log(Z^-1 T_i^-1 T_j)``, written with pypose's own operations."""
    Z = pp.SE3(graph.measurements)
    e = (Z.Inv() * P[graph.edges[:, 0]].Inv() * P[graph.edges[:, 1]]).Log().tensor()
    return (graph.sqrt_information @ e[..., None])[..., 0].reshape(-1)


@pytest.mark.parametrize("name, frame", [("tinyGrid3D", "body"), ("tinyGrid3D", "world"), ("smallGrid3D", "body"),
                                         ("smallGrid3D", "world")])
def test_equal_the_inverse_of_a_finite_difference_hessian(name, frame):
    """``(J^T J)^-1`` with ``J`` the central differences of the whitened residuals (pypose's
    operations) under perturbations ``T Exp(d)`` (body) or ``Exp(d) T`` (world) of every pose
    but the first (the gauge).  tinyGrid3D's 54 unknowns take the dense path, smallGrid3D's
    750 the selected inverse."""
    graph = _graph(name)
    P = optimize(graph).poses
    N, h = graph.num_poses, 1e-6
    cols = []
    for i in range(1, N):
        for k in range(6):
            d = torch.zeros(6, dtype=torch.float64)
            d[k] = h
            out = []
            for s in (1.0, -1.0):
                Q = P.clone()
                step = pp.se3(s * d).Exp()
                Q[i] = (Q[i] * step) if frame == "body" else (step * Q[i])
                out.append(_whitened_residuals(graph, pp.SE3(Q)))
            cols.append((out[0] - out[1]) / (2 * h))
    J = torch.stack(cols, dim=1)
    Z = torch.linalg.inv(J.T @ J)
    ref = torch.stack([Z[6 * i: 6 * i + 6, 6 * i: 6 * i + 6] for i in range(N - 1)])
    C = covariances(graph, P, frame=frame)
    assert C.shape == (N, 6, 6) and float(C[0].abs().max()) == 0.0  # the gauge does not move
    assert _rel(C[1:], ref) < 1e-6


def test_the_selected_inverse_equals_the_dense_inverse_in_2d_and_with_mixed_variables():
    """MIT (808 planar poses, 3x3 blocks) against the dense inverse of the same system; and a
    problem of SE3 poses and R^2 offsets (mixed tangent sizes: the factor works on scalars)."""
    from robojac.optim._problem import Linearization, SparseSystem

    graph = _graph("MIT")
    P = optimize(graph).poses
    X = optim.Variable("SE2", graph.state(P.tensor())[None], fixed=torch.arange(graph.num_poses) == 0)
    edges = optim.Factor(graph.residual_function(), [X, X], graph.edges,
                         data=[graph.measurement_state(), graph.sqrt_information])
    pb = optim.Problem([X], [edges])
    H = SparseSystem(pb).assemble(Linearization(pb, (X.value,), closed_forms=True))[0].to_dense()
    Zd = torch.linalg.inv(H)
    C = optim.covariances([X], [edges], [X.value], X)[0]
    ref = torch.stack([Zd[3 * i: 3 * i + 3, 3 * i: 3 * i + 3] for i in range(graph.num_poses)])
    assert _rel(C[1:], ref[1:]) < 1e-7 and float(C[0].abs().max()) == 0.0

    g = torch.Generator().manual_seed(3)
    N = 60  # 60 poses and 30 offsets: 420 unknowns, solved sparse
    T = _random_poses(g, N)[None]
    V = optim.Variable("SE3", T, fixed=torch.arange(N) == 0)
    off = optim.Variable("Rn", torch.randn(1, 30, 2, generator=g, dtype=torch.float64))
    pairs = torch.stack((torch.arange(N - 1), torch.arange(1, N)), 1)
    prior = optim.Factor(lambda a, b: lie_log_between(a, b), [V, V], pairs)
    mix = optim.Factor(lambda x, o: torch.cat((x[..., :2] - o, o.square()), -1), [V, off],
                       torch.stack((torch.arange(30) * 2, torch.arange(30)), 1))
    pb = optim.Problem([V, off], [prior, mix])
    H = SparseSystem(pb).assemble(Linearization(pb, (V.value, off.value), closed_forms=True))[0].to_dense()
    Zd = torch.linalg.inv(H)
    for var, base, t in ((V, 0, 6), (off, 6 * N, 2)):
        C = optim.covariances([V, off], [prior, mix], [V.value, off.value], var)[0]
        ref = torch.stack([Zd[base + t * i: base + t * i + t, base + t * i: base + t * i + t] for i in range(var.count)])
        held = var.fixed[0]
        assert _rel(C[~held], ref[~held]) < 1e-8 and float(C[held].abs().sum()) == 0.0


def _random_poses(g, *shape):
    return lie.se3_exp(torch.randn(*shape, 6, generator=g, dtype=torch.float64, device="cpu"))


def lie_log_between(a, b):
    return lie.se3_log(lie.se3_compose(lie.se3_inverse(a), b))


def test_many_small_problems_take_their_own_dense_inverses(device):
    """A batch of three small pose chains: each problem's covariance is its own system's."""
    g = torch.Generator().manual_seed(1)
    T = _random_poses(g, 3, 5).to(device)
    X = optim.Variable("SE3", T, fixed=torch.arange(5, device=device) == 0)
    f = optim.Factor(lie_log_between, [X, X], torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [0, 4]], device=device))
    C = optim.covariances([X], [f], [X.value], X, entries=[4, 2])
    assert C.shape == (3, 2, 6, 6)
    for b in range(3):
        Xb = optim.Variable("SE3", T[b: b + 1], fixed=torch.arange(5, device=device) == 0)
        fb = optim.Factor(lie_log_between, [Xb, Xb], f.index)
        assert max_err(optim.covariances([Xb], [fb], [Xb.value], Xb, entries=[4, 2])[0], C[b]) < 1e-12


@pytest.mark.parametrize("dim", [2, 3])
def test_one_edge_from_the_gauge_gives_the_inverse_information_in_the_body_frame(dim, device):
    """At the answer of one edge from the held pose, ``d r / d xi_body = I``: the body-frame
    covariance of the other pose is exactly ``Omega^-1``, whatever the poses; the world-frame
    one is ``Ad(T) Omega^-1 Ad(T)^T``.  A lone pose and an empty selection are answered too."""
    g = torch.Generator().manual_seed(4)
    d = 3 if dim == 2 else 6
    A = torch.randn(d, d, generator=g, dtype=torch.float64, device="cpu")
    info = (A @ A.T + d * torch.eye(d, dtype=torch.float64, device="cpu")).to(device)
    if dim == 2:
        from robojac.lie import se2_adjoint, se2_to_se3

        xi = torch.randn(2, 3, generator=g, dtype=torch.float64, device="cpu").to(device)
        P = se2_to_se3(xi)  # planar poses: heading xi[:, 2]
        Ad = se2_adjoint(xi[1])
    else:
        P = _random_poses(g, 2).to(device)
        Ad = lie.se3_adjoint(P[1])
    Z = lie.se3_compose(lie.se3_inverse(P[0]), P[1])[None]
    graph = PoseGraph(P, torch.tensor([[0, 1]], device=device), Z, info[None], dim=dim)
    inv = torch.linalg.inv(info)
    body, world = covariances(graph), covariances(graph, frame="world")
    assert float(body[0].abs().max()) == 0.0 and max_err(body[1], inv) < 1e-12
    assert max_err(world[1], Ad @ inv @ Ad.T) < 1e-12
    assert covariances(graph, which=[]).shape == (0, d, d)
    lone = PoseGraph(P[:1], torch.zeros(0, 2, dtype=torch.long, device=device), Z[:0], info[None][:0], dim=dim)
    assert covariances(lone).shape == (1, d, d) and float(covariances(lone).abs().max()) == 0.0


def test_a_float32_graph_gets_float32_covariances_on_its_device(device):
    graph = _graph("smallGrid3D", device, torch.float32)
    result = optimize(graph)
    C = covariances(graph, result.poses, which=[3, 100])
    C64 = covariances(_graph("smallGrid3D", device), result.poses.double(), which=[3, 100])
    assert C.dtype == torch.float32 and C.device == device
    assert _rel(C.double(), C64) < 1e-5


@pytest.mark.parametrize("dim, N", [(2, 40), (3, 50)])
def test_a_pose_no_edge_weighs_is_refused_and_the_others_ignore_it(dim, N, device):
    """Tukey's kernel gives both edges of pose 17 zero weight (it is metres from where they put
    it): its covariance is unbounded and asking for it is refused, naming it; every other pose's
    covariance is the one of the graph without pose 17 (it is decoupled from them).  Both the
    dense inverse (2D: 117 unknowns) and the selected inverse (3D: 294) had refused the whole
    graph as a free gauge."""
    from test_posegraph import _synthetic

    X, E, Z, info = _synthetic(dim, N=N, noise=0.02, device=device)
    start = X.tensor().clone()
    start[17, :2] += torch.tensor([5.0, -4.0], dtype=start.dtype, device=device)
    kernel = optim.RobustKernel("tukey", 3.0)
    graph = PoseGraph(start, E, Z, info, dim=dim)
    assert (N * (3 if dim == 2 else 6) > 256) == (dim == 3)  # above optim's dense limit: the selected inverse
    with pytest.raises(ValueError, match=r"poses entry 17: no factor weighs it at these values .* its covariance is unbounded"):
        covariances(graph, which=[3, 17], kernel=kernel)
    others = [k for k in range(N) if k != 17]
    keep = (E != 17).all(1)
    rest = PoseGraph(start[others], E[keep] - (E[keep] > 17).long(), Z[keep], info[keep], dim=dim)
    got = covariances(graph, which=others, kernel=kernel)
    assert max_err(got, covariances(rest, kernel=kernel)) < 1e-9 * float(got.abs().max())


def test_a_free_gauge_and_bad_arguments_are_refused():
    g = torch.Generator().manual_seed(2)
    T = _random_poses(g, 1, 5)
    X = optim.Variable("SE3", T)  # nothing fixed: the chain can move as a whole
    f = optim.Factor(lie_log_between, [X, X], torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4]]))
    with pytest.raises(ValueError, match=r"problem 0: its Gauss-Newton Hessian is singular at these values.*free gauge"):
        optim.covariances([X], [f], [X.value], X)
    big = _graph("smallGrid3D")  # the same through the selected inverse
    Y = optim.Variable("SE3", big.poses.tensor().detach()[None])
    e = optim.Factor(big.residual_function(), [Y, Y], big.edges, data=[big.measurement_state(), big.sqrt_information])
    with pytest.raises(ValueError, match=r"singular.*free gauge"):
        optim.covariances([Y], [e], [Y.value], Y)
    other = optim.Variable("SE3", T, name="other")
    with pytest.raises(ValueError, match="variable: expected one of the problem's variables"):
        optim.covariances([X], [f], [X.value], other)
    with pytest.raises(ValueError, match=r"entries: expected indices in \[0, 5\) of variable"):
        optim.covariances([X], [f], [X.value], X, entries=[5])
    with pytest.raises(ValueError, match=r"values: poses's expected shape|values: variable's expected shape"):
        optim.covariances([X], [f], [T[:, :3]], X)

    graph = _graph("tinyGrid3D")
    with pytest.raises(ValueError, match=r"frame: expected one of"):
        covariances(graph, frame="left")
    with pytest.raises(ValueError, match=r"which: expected a 1-D list of pose indices in \[0, 9\) \(positions in "
                                         r"graph.poses, not vertex ids\), got \[9\]"):
        covariances(graph, which=[9])
    with pytest.raises(TypeError, match=r"which: expected integer indices"):
        covariances(graph, which=[0.5])
    with pytest.raises(ValueError, match=r"poses: expected the graph's 9 poses as \(N, 7\)"):
        covariances(graph, graph.poses.tensor()[:3])
    apart = PoseGraph(graph.poses.tensor().detach(), torch.tensor([[0, 1], [2, 3]]), graph.measurements[:2],
                      graph.information[:2])
    with pytest.raises(PoseGraphError, match="not connected"):
        covariances(apart)


def test_the_cli_writes_each_poses_covariance(tmp_path, capsys):
    from robojac.cli import main

    out = tmp_path / "cov.txt"
    assert main(["pgo", str(data_path("posegraph/tinyGrid3D.g2o.gz")), "-q", "--covariances", str(out)]) == 0
    rows = [ln.split() for ln in out.read_text().splitlines() if not ln.startswith("#")]
    graph = _graph("tinyGrid3D")
    C = covariances(graph, optimize(graph).poses)
    assert [int(r[0]) for r in rows] == graph.vertex_ids.tolist()
    written = torch.tensor([[float(x) for x in r[1:]] for r in rows], dtype=torch.float64).reshape(-1, 6, 6)
    assert max_err(written, C) < 1e-12 * float(C.abs().max())
