"""Balance over a support polygon: the hull against SciPy's, the constraint's value against
distances to the edges and its Jacobian against autodiff, a humanoid's whole-body answer against
SciPy's SLSQP on the same problem, gradients against central differences, and the errors."""

import numpy as np
import pytest
import torch

from robojac import data, ik, optim
from robojac.kinematics import Chain

from helpers import TALOS_FEET, TALOS_HANDS, max_err, nearest_standing, slsqp_nearest_standing, talos_standing

FEET, HANDS = TALOS_FEET, TALOS_HANDS


@pytest.fixture(scope="module")
def talos():
    return Chain.from_urdf(data.path("robots/talos_reduced.urdf")).with_floating_base()


@pytest.fixture(scope="module")
def scene(talos):
    """TALOS standing (soles on the ground), its soles' and hands' poses, its support polygon."""
    return talos_standing(talos)


def _whole_body(talos, scene, reach, *, margin=0.03, polygon=None, T=None, balance=True, config=None):
    """``helpers.nearest_standing`` with the hands ``reach`` forward, from IK's answers."""
    stand, X, poly = scene
    B = len(reach)
    if T is None:
        T = X.expand(B, 4, 7).clone()
        T[:, 2:, 0] += reach[:, None]
    goals = {f: T[:, k].detach() if k < 2 else T[:, k, :3].detach() for k, f in enumerate(FEET + HANDS)}
    plain = ik.solve(talos, goals, q0=stand.expand(B, -1))
    poly = poly.expand(B, 1, -1, -1) if polygon is None else polygon
    result = nearest_standing(talos, stand, T, poly, plain.q, margin=margin, balance=balance, config=config)
    return result, T, plain


def test_the_hull_is_scipys(device):
    spatial = pytest.importorskip("scipy.spatial")
    gen = torch.Generator().manual_seed(3)
    for n in (3, 4, 9, 40):
        P = torch.rand(n, 3, dtype=torch.float64, generator=gen, device="cpu")
        P = torch.cat((P, P[:2], 0.5 * (P[:1] + P[1:2])))  # repeated points and a midpoint
        H = ik.support_polygon(P.to(device))
        assert H.device.type == torch.device(device).type and H.dtype == P.dtype
        ref = spatial.ConvexHull(P[:, :2].numpy())  # counter-clockwise in 2D
        want = P[ref.vertices, :2]
        k = int(((want - H[0].cpu()).norm(dim=-1)).argmin())
        assert len(H) == len(want) and max_err(H.cpu(), want.roll(-k, 0)) == 0.0
    area = (H[:, 0] * H.roll(-1, 0)[:, 1] - H.roll(-1, 0)[:, 0] * H[:, 1]).sum()
    assert float(area) > 0


def test_the_value_is_the_distance_to_each_edge(talos, device):
    """A unit square: inside, each row is minus the distance to that edge plus the margin; the
    same polygon the other way round gives the same rows (in its order); the Jacobian is autodiff's."""
    chain = talos.to(device)
    gen = torch.Generator().manual_seed(0)
    Q = chain.random_configuration(3, 2, generator=gen, device=device)
    c = chain.center_of_mass(Q)[..., :2]
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64, device=device)
    poly = square[None, None] + c[..., None, :] - 0.25  # the centre of mass at (0.25, 0.25) of the square
    task = ik.BalanceConstraint(chain, margin=0.1)
    r = task(Q, poly)
    want = torch.tensor([-0.25, -0.75, -0.75, -0.25], dtype=torch.float64, device="cpu") + 0.1  # to y=0, x=1, y=1, x=0
    assert max_err(r, want.expand(3, 2, 4).to(device)) < 1e-12
    back = task(Q, poly.flip(-2))  # clockwise: edges v3->v2 (y=1), v2->v1 (x=1), v1->v0 (y=0), v0->v3 (x=0)
    assert max_err(back, want[[2, 1, 0, 3]].expand(3, 2, 4).to(device)) < 1e-12
    value, (J,) = task.value_and_jacobians(Q, poly)
    assert max_err(value, r) == 0.0
    auto = torch.func.jacrev(lambda x: task(x, poly))(Q.clone())
    auto = torch.stack([torch.stack([auto[b, f, :, b, f] for f in range(2)]) for b in range(3)])
    assert max_err(J, auto) < 1e-12
    post = ik.PostureTask(chain, weight=2.0)
    ref = chain.random_configuration(3, 2, generator=gen, device=device)
    value, (J,) = post.value_and_jacobians(Q, ref)
    assert max_err(value, 2.0 * (Q - ref)) < 1e-15 and max_err(J, 2.0 * torch.eye(chain.dof, dtype=Q.dtype,
                                                                                    device=device).expand_as(J)) == 0


def test_a_reach_that_would_tip_stops_at_the_margin(talos, scene):
    """Reaches of 0.1 to 0.6 m: the near ones leave the constraint slack (their answer is the one
    without it), the far ones hold the centre of mass ``margin`` behind the front edge; every
    frame is reached, and each problem is feasible where it says it converged.  (Before polishing
    steps were undone where they raised the cost, the 0.457 m reach was called converged 4e-5 m
    off its constraint.)"""
    reach = torch.linspace(0.1, 0.6, 8, dtype=torch.float64)
    result, T, plain = _whole_body(talos, scene, reach)
    assert result.converged.all() and (result.constraint_violation <= 1e-8).all()
    q = result.values[0][:, 0]
    X = talos.forward_kinematics_tensor(q, FEET + HANDS)
    assert max_err(X[:, :2], T[:, :2]) < 1e-8 and max_err(X[:, 2:, :3], T[:, 2:, :3]) < 1e-8
    front = float(scene[2][:, 0].max())
    c = talos.center_of_mass(q)[:, 0]
    assert (c <= front - 0.03 + 1e-8).all()
    tip = talos.center_of_mass(plain.q)[:, 0] > front - 0.03  # IK alone puts these past the margin
    assert tip.sum() >= 5 and max_err(c[tip], torch.full_like(c[tip], front - 0.03)) < 1e-8
    free, _, _ = _whole_body(talos, scene, reach[:1], balance=False)
    assert not tip[0] and max_err(free.values[0][0], result.values[0][0]) < 1e-7  # slack: the same answer


def test_the_answer_is_slsqps(talos, scene):
    """SciPy's SLSQP on the same objective and constraints (their values and Jacobians from the
    same closed forms; the hands' zero rotation rows left out) reaches the same configuration."""
    pytest.importorskip("scipy.optimize")
    reach = torch.tensor([0.5], dtype=torch.float64)
    result, T, plain = _whole_body(talos, scene, reach)
    ref = slsqp_nearest_standing(talos, scene[0], T[0], scene[2], plain.q[0])
    assert ref.success
    assert np.abs(result.values[0][0, 0].numpy() - ref.x).max() < 1e-6
    assert abs(float(result.cost[0]) - ref.fun) < 1e-9 * ref.fun


def test_the_balanced_answer_follows_the_polygon_and_the_hands(talos, scene):
    """Moving the support polygon forward moves a bound centre of mass with it one to one; the
    gradient in the hands' targets is the central difference of re-solving."""
    reach = torch.tensor([0.5], dtype=torch.float64)
    poly = scene[2].expand(1, 1, -1, -1).clone().requires_grad_()
    result, _, _ = _whole_body(talos, scene, reach, polygon=poly)
    c = talos.center_of_mass(result.values[0][:, 0])
    (gx,) = torch.autograd.grad(c[0, 0], poly)
    assert abs(float(gx[..., 0].sum()) - 1.0) < 1e-5 and float(gx[..., 1].abs().max()) < 1e-5

    stand, X, _ = scene
    T = X.expand(1, 4, 7).clone()
    T[:, 2:, 0] += 0.5
    T.requires_grad_()
    result, _, _ = _whole_body(talos, scene, reach, T=T)
    pelvis = result.values[0][0, 0, 0]
    (g,) = torch.autograd.grad(pelvis, T)
    h = 1e-5
    for k, i in ((2, 0), (3, 2)):  # the left hand forward, the right hand up
        d = torch.zeros_like(T)
        d[0, k, i] = h
        up, down = (float(_whole_body(talos, scene, reach, T=(T + s * d).detach())[0].values[0][0, 0, 0])
                    for s in (1, -1))
        assert abs(float(g[0, k, i]) - (up - down) / (2 * h)) < 1e-5 * max(1.0, abs(float(g[0, k, i])))


def test_an_impossible_margin_says_so(talos, scene):
    """A margin wider than half the polygon: no point is inside; the solve says so, without NaN."""
    reach = torch.tensor([0.2], dtype=torch.float64)
    config = optim.SolverConfig(constraints=optim.ConstraintConfig(max_rounds=6))
    result, _, _ = _whole_body(talos, scene, reach, margin=0.2, config=config)
    assert not result.converged.any() and result.reason == ("constraint_violation",)
    assert torch.isfinite(result.values[0]).all() and float(result.constraint_violation[0]) > 0.01


def test_bad_input_is_refused_by_name(talos):
    with pytest.raises(ValueError, match="support_polygon: expected points"):
        ik.support_polygon(torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="enclose no area"):
        ik.support_polygon(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="BalanceConstraint.margin"):
        ik.BalanceConstraint(talos, margin=float("nan"))
    with pytest.raises(TypeError, match="chain: expected a robojac Chain"):
        ik.BalanceConstraint("talos")
    task = ik.BalanceConstraint(talos)
    Q = torch.zeros(1, 1, talos.dof, dtype=torch.float64)
    square = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"expected a polygon \(B, F, V, 2\)"):
        task(Q, square)
    with pytest.raises(ValueError, match="not convex"):  # edges that cross
        task(Q, torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 2.0]], dtype=torch.float64)[None, None])
    with pytest.raises(ValueError, match="not convex"):
        task(Q, torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.3], [1.0, 1.0]], dtype=torch.float64)[None, None])
    with pytest.raises(ValueError, match="repeated vertex or no area"):
        task(Q, square[[0, 1, 1, 2]][None, None])
    with pytest.raises(ValueError, match="at least 3 vertices"):
        task(Q, square[:2][None, None])
    with pytest.raises(ValueError, match=r"PostureTask.weights: expected 38 finite weights >= 0"):
        ik.PostureTask(talos, weights=-torch.ones(talos.dof))
    with pytest.raises(ValueError, match="PostureTask: expected reference q_ref"):
        ik.PostureTask(talos)(Q, torch.zeros(1, 1, 3, dtype=torch.float64))


def test_solve_balanced_is_the_problem_assembled_by_hand(talos, scene, device):
    """``ik.solve_balanced`` in one call: the same answers as the problem built from its pieces
    (``helpers.nearest_standing``), in the targets' batch shape, dtype and device; the result's
    figures are the answer's own; the bound centre of mass follows the polygon one to one."""
    stand, X, polygon = scene
    reach = torch.tensor([[0.15, 0.35], [0.5, 0.6]], dtype=torch.float64, device="cpu")  # batch (2, 2)
    T = X.expand(2, 2, 4, 7).clone()
    T[..., 2:, 0] += reach[..., None]
    goals = {f: (T[..., k, :] if k < 2 else T[..., k, :3]).to(device) for k, f in enumerate(FEET + HANDS)}
    support = polygon.to(device).clone().requires_grad_()  # (not the fixture's own tensor)
    r = ik.solve_balanced(talos.to(device), goals, support, posture=stand.to(device))
    assert r.q.device.type == torch.device(device).type and r.q.dtype == torch.float64
    (g,) = torch.autograd.grad(r.com[1, 1, 0], support)
    assert abs(float(g[:, 0].sum()) - 1.0) < 1e-5 and float(g[:, 1].abs().max()) < 1e-5
    r = ik.BalanceResult(**{k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in vars(r).items()})
    assert r.q.shape == (2, 2, talos.dof) and r.converged.shape == (2, 2) and r.pos_err.shape == (2, 2, 4)
    assert bool(r.converged.all()) and r.reason == ("tolerance",) * 4
    by_hand, _, _ = _whole_body(talos, scene, reach.reshape(-1))
    assert max_err(r.q.reshape(4, -1), by_hand.values[0][:, 0]) < 1e-9
    com = talos.center_of_mass(r.q)
    assert max_err(r.com, com) < 1e-12
    front = float(polygon[:, 0].max())
    assert max_err(r.support_margin[1], torch.full((2,), 0.03, dtype=torch.float64, device="cpu")) < 1e-8  # they bind
    assert abs(float(r.support_margin[0, 0]) - min(front - float(com[0, 0, 0]), 0.135 - abs(float(com[0, 0, 1])),
                                                   float(com[0, 0, 0]) + 0.12)) < 1e-9
    assert float(r.pos_err.max()) < 1e-8 and float(r.rot_err[..., :2].max()) < 1e-8 and (r.rot_err[..., 2:] == 0).all()


def test_solve_balanced_says_why_and_refuses_bad_input_by_name(talos, scene):
    stand, X, polygon = scene
    goals = {FEET[0]: X[0], FEET[1]: X[1], HANDS[0]: X[2, :3] + 0.3, HANDS[1]: X[3, :3]}
    cfg = ik.BalanceConfig(margin=0.2, solver=optim.SolverConfig(constraints=optim.ConstraintConfig(max_rounds=5)))
    r = ik.solve_balanced(talos, goals, polygon, posture=stand, config=cfg)  # no point is 0.2 m inside
    assert r.converged.shape == () and not bool(r.converged) and r.reason == ("off_balance",)
    assert float(r.support_margin) < 0.2 and torch.isfinite(r.q).all()
    with pytest.raises(ValueError, match=r"support: expected a polygon \(V, 2\) or \(..., V, 2\)"):
        ik.solve_balanced(talos, goals, polygon[:, 0], posture=stand)
    with pytest.raises(ValueError, match="support: the polygon is not convex"):
        ik.solve_balanced(talos, goals, torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.3], [1.0, 1.0]],
                                                     dtype=torch.float64), posture=stand)
    with pytest.raises(ValueError, match="support: its batch shape"):
        ik.solve_balanced(talos, goals, polygon.expand(3, -1, -1), posture=stand)
    with pytest.raises(ValueError, match="target: every frame's targets need the same batch shape"):
        ik.solve_balanced(talos, {FEET[0]: X[:1], FEET[1]: X[1]}, polygon)
    with pytest.raises(ValueError, match="target: expected a mapping"):
        ik.solve_balanced(talos, X[0], polygon)
    with pytest.raises(ValueError, match="posture: expected"):
        ik.solve_balanced(talos, goals, polygon, posture=stand[:5])
    with pytest.raises(ValueError, match="BalanceConfig.posture_weights: expected 38 weights"):
        ik.solve_balanced(talos, goals, polygon, config=ik.BalanceConfig(posture_weights=(1.0, 2.0)))
    with pytest.raises(ValueError, match="BalanceConfig.posture_weights: expected finite weights >= 0"):
        ik.BalanceConfig(posture_weights=(1.0, -2.0))
    with pytest.raises(ValueError, match="BalanceConfig.margin"):
        ik.BalanceConfig(margin=-0.1)
