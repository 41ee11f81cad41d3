"""Collision geometry: signed distances against coal (Pinocchio's collision library) and against
brute force, their gradients against central differences, a robot's shapes against Pinocchio's
kinematics with coal, and the collision task on the solver engine."""

import math

import numpy as np
import pytest
import torch

from robojac import data, ik, optim
from robojac.collision import (Box, Capsule, HalfSpace, Obstacles, RobotCollision, Sphere, capsule_box,
                               capsule_capsule, capsule_halfspace, point_box)
from robojac.kinematics import Chain

from helpers import coal_capsule as _coal_capsule, pinocchio_collision, pinocchio_configuration

F64 = dict(dtype=torch.float64, device="cpu")


@pytest.fixture(scope="module")
def panda():
    return Chain.from_urdf(data.path("robots/panda.urdf"))


def _random_capsules(rng, n, spread=0.3):
    """Segments of every kind: general, parallel, point-like, crossing."""
    out = []
    for k in range(n):
        a1, b1, a2, b2 = rng.normal(size=(4, 3)) * spread
        if k % 5 == 0:
            b2 = a2 + (b1 - a1) * rng.uniform(-2, 2)  # parallel
        if k % 7 == 0:
            b1 = a1.copy()  # a sphere
        if k % 11 == 0:
            b2 = a2.copy()
        r1, r2 = rng.uniform(0.01, 0.2, 2)
        out.append((a1, b1, r1, a2, b2, r2))
    return out


def _t(x):
    return torch.as_tensor(np.asarray(x), **F64)


def _brute(a1, b1, r1, a2, b2, r2, n=401):
    s = np.linspace(0, 1, n)[:, None]
    p1, p2 = a1 + s * (b1 - a1), a2 + s * (b2 - a2)
    return np.sqrt(((p1[:, None] - p2[None]) ** 2).sum(-1)).min() - r1 - r2


def test_capsule_distances_equal_brute_force_on_a_fine_grid():
    rng = np.random.default_rng(0)
    cases = _random_capsules(rng, 300)
    d = capsule_capsule(*(_t(np.stack([c[k] for c in cases])) for k in range(6)))
    ref = np.array([_brute(*c) for c in cases])
    # the grid's points lie at most half a step (1/800 of a segment) from the closest ones
    assert np.abs(d.numpy() - ref).max() < 2e-3
    assert (d.numpy() <= ref + 1e-12).all()  # the exact minimum is never above a sampled one


def test_capsule_distances_equal_coal_apart_and_overlapping():
    coal = pytest.importorskip("coal")
    rng = np.random.default_rng(1)
    worst, overlapping = 0.0, 0
    for spread in (0.3, 0.08):
        for a1, b1, r1, a2, b2, r2 in _random_capsules(rng, 300, spread):
            g1, T1 = _coal_capsule(coal, a1, b1, r1)
            g2, T2 = _coal_capsule(coal, a2, b2, r2)
            ref = coal.distance(g1, T1, g2, T2, coal.DistanceRequest(), coal.DistanceResult())
            overlapping += ref < 0
            worst = max(worst, abs(float(capsule_capsule(*map(_t, (a1, b1, r1, a2, b2, r2)))) - ref))
    assert overlapping > 200
    assert worst < 1e-12


def _random_box(rng, spread):
    quat = rng.normal(size=4)
    return _t(np.concatenate((rng.normal(size=3) * spread, quat / np.linalg.norm(quat)))), _t(rng.uniform(0.05, 0.3, 3))


def test_capsule_to_box_and_half_space_equal_coal():
    coal = pytest.importorskip("coal")
    import pypose as pp
    rng = np.random.default_rng(2)
    cases, ref_box, ref_plane = [], [], []
    for k in range(600):
        spread = 0.4 if k % 2 else 0.1
        a, b = rng.normal(size=(2, 3)) * spread
        r = rng.uniform(0.01, 0.15)
        X, h = _random_box(rng, 0.2)
        n = rng.normal(size=3)
        n /= np.linalg.norm(n)
        o = rng.normal() * 0.2
        g, T = _coal_capsule(coal, a, b, r)
        M = pp.SE3(X).matrix().numpy()
        ref_box.append(coal.distance(g, T, coal.Box(*(2 * h.numpy())), coal.Transform3s(M[:3, :3], M[:3, 3]),
                                     coal.DistanceRequest(), coal.DistanceResult()))
        ref_plane.append(coal.distance(g, T, coal.Halfspace(n, o), coal.Transform3s(), coal.DistanceRequest(),
                                       coal.DistanceResult()))
        cases.append((_t(a), _t(b), _t(r), X, h, _t(n), _t(o)))
    a, b, r, X, h, n, o = (torch.stack(c) for c in zip(*cases))
    ref_box, ref_plane = np.array(ref_box), np.array(ref_plane)
    assert (ref_box < -r.numpy()).sum() > 50  # segments that enter their box: the separating-axis depth
    assert np.abs(capsule_box(a, b, r, X, h).numpy() - ref_box).max() < 1e-9
    assert np.abs(capsule_halfspace(a, b, r, n, o).numpy() - ref_plane).max() < 1e-12


def test_distance_gradients_equal_central_differences():
    rng = np.random.default_rng(3)
    checked = 0
    cases = _random_capsules(rng, 40, 0.2) + _random_capsules(rng, 40, 0.05)
    for k, case in enumerate(cases):
        a1, b1, r1, a2, b2, r2 = (_t(x) for x in case)
        X, h = _random_box(rng, 0.1 if k % 3 else 0.02)
        n = _t(rng.normal(size=3))
        n = n / n.norm()
        for f in (lambda a, b: capsule_capsule(a, b, r1, a2, b2, r2),
                  lambda a, b: capsule_box(a, b, r1, X, h),
                  lambda a, b: capsule_halfspace(a, b, r1, n, _t(0.1))):
            x = torch.cat((a1, b1)).requires_grad_()
            d = f(x[:3], x[3:])
            if abs(float(d.detach()) + r1 + r2) < 1e-3 or (b1 - a1).norm() < 1e-9 or k % 40 % 5 == 0:
                continue  # crossing centre lines, a sphere's two equal ends, parallel segments: a kink
            (g,) = torch.autograd.grad(d, x)
            step = 1e-6 * torch.eye(6, **F64)
            x = x.detach()
            fd = (f((x + step)[:, :3], (x + step)[:, 3:]) - f((x - step)[:, :3], (x - step)[:, 3:])) / 2e-6
            assert (g - fd).abs().max() < 1e-6, (k, g, fd)
            checked += 1
    assert checked > 150


def test_point_box_is_the_distance_to_the_box_surface():
    h = _t([0.1, 0.2, 0.3])
    X = _t([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0])
    p = _t([[1.0, 2.0, 3.0], [1.5, 2.0, 3.0], [1.3, 2.5, 3.0], [1.05, 2.0, 3.0]])
    assert torch.allclose(point_box(p, X, h), _t([-0.1, 0.4, math.hypot(0.2, 0.3), -0.05]), atol=1e-15)


def test_shapes_and_obstacles_refuse_bad_input_by_name(panda):
    with pytest.raises(ValueError, match="Sphere.radius"):
        Sphere(-1.0)
    with pytest.raises(ValueError, match="Capsule.a"):
        Capsule(0.1, (0, 0, math.nan), (0, 0, 1))
    with pytest.raises(ValueError, match="Box.half_extents"):
        Box((0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match="Box.pose"):
        Box((0.1, 0.1, 0.1), (0, 0, 0, 0, 0, 0, 2))
    with pytest.raises(ValueError, match="HalfSpace.normal"):
        HalfSpace((0, 0, 0))
    with pytest.raises(ValueError, match="no link of chain"):
        RobotCollision(panda, {"hand": Sphere(0.1)})
    with pytest.raises(TypeError, match=r"shapes\['panda_hand'\]\[1\]"):
        RobotCollision(panda, {"panda_hand": [Sphere(0.1), Box((0.1, 0.1, 0.1))]})
    with pytest.raises(ValueError, match=r"ignore\[0\]"):
        RobotCollision(panda, {"panda_hand": Sphere(0.1)}, ignore=[("panda_hand", "nope")])
    with pytest.raises(TypeError, match=r"Obstacles.shapes\[1\]"):
        Obstacles([Sphere(0.1), "table"])
    with pytest.raises(ValueError, match="CollisionTask.margin"):
        ik.CollisionTask(RobotCollision.from_skeleton(panda, 0.05), Obstacles([Sphere(0.1)]), margin=-1)
    with pytest.raises(ValueError, match="nothing to keep apart"):
        ik.CollisionTask(RobotCollision(panda, {"panda_hand": Sphere(0.1)}))


def test_a_robots_distances_equal_pinocchio_with_coal(panda):
    """The skeleton's capsules as Pinocchio geometry objects on the same links: Pinocchio's
    kinematics and coal's distances give every pair's and every obstacle's distance."""
    pin = pytest.importorskip("pinocchio")
    coal = pytest.importorskip("coal")
    model_c = RobotCollision.from_skeleton(panda, 0.05)
    obstacles = [Sphere(0.1, (0.4, 0.1, 0.5)), Capsule(0.05, (0.3, -0.4, 0.2), (0.5, 0.4, 0.3)),
                 Box((0.1, 0.2, 0.05), (0.5, 0.0, 0.2, 0.0, 0.0, 0.3826834, 0.9238795)), HalfSpace((0, 0, 1), 0.05)]
    world = Obstacles(obstacles)
    model, gm = pinocchio_collision(pin, coal, str(data.path("robots/panda.urdf")), model_c, world)
    gd, pd = pin.GeometryData(gm), model.createData()
    q = panda.random_configuration(12, generator=torch.Generator(device="cpu").manual_seed(4))
    ours = torch.cat((model_c.self_distances(q), model_c.distances(q, world).flatten(1)), 1)
    for n in range(len(q)):
        pin.computeDistances(model, pd, gm, gd, pinocchio_configuration(pin, model, panda, q[n]))
        ref = np.array([res.min_distance for res in gd.distanceResults])
        assert np.abs(ours[n].numpy() - ref).max() < 1e-9


def test_the_skeleton_ignores_pairs_that_touch_by_design_and_keeps_real_collisions(panda):
    model = RobotCollision.from_skeleton(panda, 0.05, samples=128)
    q = panda.random_configuration(512, generator=torch.Generator(device="cpu").manual_seed(5))
    d = model.self_distances(q)
    assert not (d < 0).all(0).any()  # no pair left that overlaps everywhere
    assert (d < 0).any()  # the arm can fold into itself: such configurations are seen
    bare = RobotCollision.from_skeleton(panda, 0.05, samples=0)
    assert len(bare.pairs) > len(model.pairs)
    assert (bare.self_distances(q) < 0).all(0).any()  # what was ignored does touch everywhere
    parent, index = panda.tree.parent, panda.frame_names.index
    for u, v in model.pair_names:  # parents and children are never pairs, either way round
        assert parent[index(u)] != index(v) and parent[index(v)] != index(u)


def test_distances_follow_q_dtype_and_batch_shape(panda):
    model = RobotCollision.from_skeleton(panda, 0.05)
    world = Obstacles([Sphere(0.1, (0.4, 0.1, 0.5)), Box((0.1, 0.1, 0.1), (0.5, 0, 0.2, 0, 0, 0, 1)),
                       HalfSpace((0, 0, 1), 0.0)])
    q = panda.random_configuration(2, 3, generator=torch.Generator(device="cpu").manual_seed(6))
    d64 = model.distances(q, world)
    d32 = model.distances(q.float(), world)
    assert d64.shape == (2, 3, model.num_shapes, 3) and d32.dtype == torch.float32
    assert (d32.double() - d64).abs().max() < 1e-5
    assert model.self_distances(q).shape == (2, 3, len(model.pairs))


@pytest.mark.parametrize("shapes", ["skeleton", "off the links' origins"])
def test_the_task_jacobian_equals_autodiff_of_its_residual(panda, shapes):
    model = RobotCollision.from_skeleton(panda, 0.05)
    if shapes != "skeleton":
        model = RobotCollision(panda, {"panda_link3": Capsule(0.06, (0.05, 0.02, -0.1), (0.08, -0.03, 0.0)),
                                       "panda_link5": [Sphere(0.07, (0.0, 0.05, -0.1)), Sphere(0.05, (0.0, 0.08, 0.0))],
                                       "panda_hand": Capsule(0.04, (0.0, -0.08, 0.05), (0.0, 0.08, 0.05)),
                                       "panda_link1": Sphere(0.08, (0.0, -0.04, -0.05))})
    world = Obstacles([Sphere(0.12, (0.45, 0.0, 0.45)), Box((0.1, 0.1, 0.1), (0.3, 0.3, 0.3, 0, 0, 0, 1)),
                       HalfSpace((0, 0, 1), 0.0)])
    task = ik.CollisionTask(model, world, margin=0.1, weight=2.0)
    Q = panda.random_configuration(4, 2, generator=torch.Generator(device="cpu").manual_seed(7))
    r, (J,) = task.value_and_jacobians(Q)
    assert torch.allclose(r, task(Q), atol=1e-14)
    auto = torch.autograd.functional.jacobian(lambda x: task(x).sum((0, 1)), Q)  # (M, B, F, dof)
    auto = auto.permute(1, 2, 0, 3)
    assert (r > 0).sum() >= 10  # pairs within the margin: rows that are not zero
    assert (J - auto).abs().max() < 1e-9
    # the clearance as a constraint, margin - d, every row (the inactive ones too)
    c, (Jc,) = task.constraint().value_and_jacobians(Q)
    assert torch.allclose(c, task.margin - task.distances(Q), atol=1e-14)
    auto = torch.autograd.functional.jacobian(lambda x: task.constraint()(x).sum((0, 1)), Q).permute(1, 2, 0, 3)
    assert (c < 0).sum() >= 10 and (Jc - auto).abs().max() < 1e-9


def test_the_collision_task_keeps_reaches_clear_of_a_ball_where_ik_alone_goes_through(panda):
    model = RobotCollision.from_skeleton(panda, 0.05)
    world = Obstacles([Sphere(0.12, (0.45, 0.0, 0.45)), HalfSpace((0, 0, 1), 0.0)])
    B = 4
    target = torch.zeros(B, 3, **F64)
    target[:, 0], target[:, 1], target[:, 2] = 0.6, torch.tensor([-0.3, -0.2, 0.2, 0.3], **F64), 0.3
    cfg = ik.IKConfig(frame="panda_hand_tcp")
    plain = ik.solve(panda, target, config=cfg)
    task = ik.CollisionTask(model, world, margin=0.02)
    assert (task.distances(plain.q[:, None]).amin((1, 2)) < 0).any()  # IK alone passes through
    lo, hi = panda.joint_limits
    q = optim.Variable("Rn", plain.q[:, None].clone(), lower=lo, upper=hi)
    T = torch.cat((target, _t([0, 0, 0, 1.0]).expand(B, 4)), -1)
    reach = optim.Factor(ik.FramesTask(panda, ["panda_hand_tcp"], position_only=True), [q], data=(T[:, None, None],))
    result = optim.solve([q], [reach, optim.Factor(task, [q])])
    qs = result.values[0][:, 0]
    assert result.converged.all()
    assert (task.distances(qs[:, None]).amin((1, 2)) > 0.02 - 1e-6).all()
    tip = panda.forward_kinematics_tensor(qs, ["panda_hand_tcp"])[:, 0, :3]
    assert ((tip - target).norm(dim=-1) < 1e-9).all()


def test_the_picture_marks_the_overlapping_shapes_and_names_bad_arguments(panda):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robojac import viz

    model = RobotCollision.from_skeleton(panda, 0.05)
    q = torch.tensor([0.0, 0.3, 0.0, -1.5, 0.0, 1.8, 0.8, 0.02], **F64)
    tip = panda.forward_kinematics_tensor(q, ["panda_link7"])[0, :3]

    def reds(world):
        ax = viz.plot_collision(model, q, obstacles=world)
        colours = [c.get_facecolors()[:, :3].mean(0) for c in ax.collections[:model.num_shapes]]
        plt.close(ax.figure)
        return sum(bool(r > 2 * g and r > 2 * b) for r, g, b in colours)  # red, however shaded

    assert reds(Obstacles([Sphere(0.1, tuple(tip.tolist()))])) >= 1  # a ball on the wrist
    assert reds(Obstacles([Sphere(0.1, (3.0, 3.0, 3.0))])) == 0
    with pytest.raises(TypeError, match="model"):
        viz.plot_collision(panda, q)


def _scene(panda):
    model = RobotCollision.from_skeleton(panda, 0.05)
    world = Obstacles([Sphere(0.12, (0.45, 0.0, 0.50)), Box((0.20, 0.40, 0.10), (0.65, 0.0, 0.10, 0.0, 0.0, 0.0, 1.0)),
                       HalfSpace((0.0, 0.0, 1.0), 0.0)])
    return model, world


def test_ik_solve_with_avoid_reaches_clear_where_ik_alone_collides(panda):
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    target = torch.tensor([[0.55, y, 0.32] for y in (-0.21, -0.13, 0.04, 0.13)], **F64)
    cfg = ik.IKConfig(frame="panda_hand_tcp")
    plain = ik.solve(panda, target, config=cfg)
    assert plain.clearance is None
    assert (task.distances(plain.q[:, None]).amin((1, 2)) < 0).all()  # IK alone: every one overlaps
    result = ik.solve(panda, target, config=cfg, avoid=task)
    assert result.converged.all() and result.reason == ("tolerance",) * 4
    d = task.distances(result.q[:, None]).amin((1, 2))
    assert torch.allclose(result.clearance, d) and (d > 0.02 - 1e-4).all()
    tip = panda.forward_kinematics_tensor(result.q, ["panda_hand_tcp"])[:, 0, :3]
    assert ((tip - target).norm(dim=-1) < 1e-4).all() and torch.allclose(result.pos_err, (tip - target).norm(dim=-1))
    assert panda.within_limits(result.q).all()
    assert result.history.shape == (2, 4) and (result.iterations > plain.iterations).all()


def test_ik_solve_with_avoid_says_when_it_cannot_be_clear(panda):
    """A target inside the ball: reached or clear, never both, and never called converged."""
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    target = torch.tensor([[0.45, 0.0, 0.50], [0.55, 0.2, 0.32]], **F64)
    result = ik.solve(panda, target, config=ik.IKConfig(frame="panda_hand_tcp", avoid_starts=4), avoid=task)
    assert result.converged.tolist() == [False, True]
    assert result.reason[0] in ("in_collision", "not_reached") and result.reason[1] == "tolerance"
    assert result.clearance[0] < 0.02 - 1e-4 or result.pos_err[0] > 1e-4


def test_ik_solve_with_avoid_takes_poses_mappings_and_q0_and_refuses_another_chain(panda):
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    qs = panda.random_configuration(256, generator=torch.Generator(device="cpu").manual_seed(8))
    q_ref = qs[int((task.distances(qs[:, None]).amin((1, 2)) > 0.03).nonzero()[0])]  # a clear pose
    X = panda.forward_kinematics_tensor(q_ref, ["panda_hand_tcp"])[0]
    cfg = ik.IKConfig(frame="panda_hand_tcp", avoid_starts=2)
    pose = ik.solve(panda, X, q0=q_ref, config=cfg, avoid=task)
    assert bool(pose.converged) and pose.q.shape == (panda.dof,) and pose.rot_err < 1e-3
    both = ik.solve(panda, {"panda_hand_tcp": X[None], "panda_link4": X[None, :3] * 0 + panda.forward_kinematics_tensor(
        q_ref, ["panda_link4"])[0, :3]}, config=ik.IKConfig(avoid_starts=2), avoid=task)
    assert both.pos_err.shape == (1, 2) and bool(both.converged.all())
    other = Chain.from_urdf(data.path("robots/panda.urdf"))
    with pytest.raises(ValueError, match="avoid: its collision model is of chain"):
        ik.solve(other, X, config=cfg, avoid=task)
    with pytest.raises(TypeError, match="avoid"):
        ik.solve(panda, X, config=cfg, avoid=model)
    with pytest.raises(ValueError, match="IKConfig.avoid_starts"):
        ik.IKConfig(avoid_starts=0)
    none = ik.solve(panda, torch.zeros(0, 3, **F64), config=cfg, avoid=task)  # no targets: an empty answer
    assert none.q.shape == (0, panda.dof) and none.reason == () and none.clearance.shape == (0,)


def test_ik_solve_with_avoid_given_q0_keeps_the_clear_answer_nearest_it(panda):
    """A position target a few centimetres from a clear configuration q0: of the clear answers
    from several starts (q0 among them) the one kept is the nearest q0 (most within 0.5 rad of
    it); without q0, the one of least cost, anywhere."""
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    qs = panda.random_configuration(256, generator=torch.Generator(device="cpu").manual_seed(8))
    clear = (task.distances(qs[:, None]).amin((1, 2)) > 0.03).nonzero().flatten()[:6]
    q0 = qs[clear]
    hand = panda.forward_kinematics_tensor(q0, ["panda_hand_tcp"])[:, 0, :3]
    target = hand + torch.tensor([0.03, -0.02, 0.02], **F64)
    cfg = ik.IKConfig(frame="panda_hand_tcp", avoid_starts=6)
    near = ik.solve(panda, target, q0=q0, config=cfg, avoid=task)
    free = ik.solve(panda, target, config=cfg, avoid=task)
    assert near.converged.all() and free.converged.all()
    gap_near, gap_free = (near.q - q0).norm(dim=-1), (free.q - q0).norm(dim=-1)
    assert (gap_near < gap_free).all() and float(gap_near.median()) < 0.5
    assert (gap_free > 3.0).all()  # the rule matters: by cost alone the answers were 3-6.5 rad away


def test_ik_solve_with_avoid_is_differentiable_in_the_targets(panda):
    """Reached, the hand follows its target one to one, through the joints' derivative."""
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    target = torch.tensor([[0.55, -0.13, 0.32], [0.55, 0.21, 0.32]], **F64, requires_grad=True)
    cfg = ik.IKConfig(frame="panda_hand_tcp", avoid_starts=8)
    result = ik.solve(panda, target, config=cfg, avoid=task)
    assert result.converged.all()
    tip = panda.forward_kinematics_tensor(result.q, ["panda_hand_tcp"])[:, 0, :3]
    (g,) = torch.autograd.grad(tip[:, 1].sum(), target, retain_graph=True)
    assert torch.allclose(g, torch.tensor([[0.0, 1.0, 0.0]] * 2, **F64), atol=1e-6)
    # the joints' derivative: the hand's Jacobian times it is the identity (a redundant arm's q is
    # not a function of the target alone: its self-motion; the damped least-norm derivative)
    G = torch.stack([torch.autograd.grad(result.q[0, k], target, retain_graph=True)[0] for k in range(panda.dof)])
    J = panda.jacobian(result.q[0].detach(), "panda_hand_tcp")[:3]  # (3, dof)
    assert torch.allclose(J @ G[:, 0], torch.eye(3, **F64), atol=1e-6)
    assert G[:, 1].abs().max() == 0  # another target's answer does not move with this one


def test_the_engines_gradient_of_a_redundant_arm_is_the_damped_least_norm_one(panda):
    """Seven joints for three residuals: the undamped Hessian is singular.  The hand still follows
    its target (the gradient had been zero, silently)."""
    target = torch.tensor([[0.5, 0.2, 0.4], [0.4, -0.2, 0.5]], **F64)
    start = ik.solve(panda, target, config=ik.IKConfig(frame="panda_hand_tcp")).q
    q = optim.Variable("Rn", start[:, None].clone())
    T = torch.cat((target, _t([0, 0, 0, 1.0]).expand(2, 4)), -1).requires_grad_()
    reach = optim.Factor(ik.FramesTask(panda, ["panda_hand_tcp"], position_only=True), [q], data=(T[:, None, None],))
    result = optim.solve([q], [reach])
    tip = panda.forward_kinematics_tensor(result.values[0][:, 0], ["panda_hand_tcp"])[:, 0, :3]
    (g,) = torch.autograd.grad(tip[:, 0].sum(), T)
    assert torch.allclose(g[:, :3], torch.tensor([[1.0, 0.0, 0.0]] * 2, **F64), atol=1e-6)


_URDF = """<robot name="capsules">
  <link name="base"><collision><origin xyz="0 0 0.05"/>
    <geometry><cylinder radius="0.08" length="0.1"/></geometry></collision></link>
  <link name="upper">
    <collision><origin xyz="0 0 0.2" rpy="0.3 -0.2 0.1"/>
      <geometry><cylinder radius="0.05" length="0.3"/></geometry></collision>
    <collision><origin xyz="0.02 0 0.4"/><geometry><sphere radius="0.06"/></geometry></collision>
  </link>
  <link name="lower">
    <collision><origin xyz="0.1 0.02 0" rpy="0 1.5707963 0"/>
      <geometry><cylinder radius="0.04" length="0.25"/></geometry></collision>
    <collision><geometry><box size="0.1 0.1 0.1"/></geometry></collision>
    <collision><geometry><mesh filename="package://nowhere/hand.stl"/></geometry></collision>
  </link>
  <joint name="shoulder" type="revolute"><parent link="base"/><child link="upper"/>
    <origin xyz="0 0 0.1" rpy="0 0 0.4"/><axis xyz="0 1 0"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/></joint>
  <joint name="elbow" type="revolute"><parent link="upper"/><child link="lower"/>
    <origin xyz="0 0 0.45" rpy="0.2 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-2" upper="2" effort="1" velocity="1"/></joint>
</robot>"""


def test_a_urdfs_collision_shapes_sit_where_pinocchio_puts_them():
    """Spheres and cylinders (as the capsules containing them) on their links, at configurations:
    each sphere's centre and each cylinder's axis ends where Pinocchio's URDF geometry places them."""
    pin = pytest.importorskip("pinocchio")
    chain = Chain.from_urdf(_URDF)
    model = RobotCollision.from_urdf(chain, _URDF)
    assert [e.kind for e in model.unmodelled] == ["box", "mesh"] and model.unmodelled[0].where.endswith(":12")
    assert model.links == ("base", "upper", "upper", "lower") and len(model.pairs) == 1  # upper-lower: adjacent
    text = "\n".join(line for line in _URDF.splitlines() if "<mesh" not in line)  # a mesh Pinocchio would load
    pmodel = pin.buildModelFromXML(text)
    geom = pin.buildGeomFromUrdfString(pmodel, text, pin.GeometryType.COLLISION)
    pdata, gdata = pmodel.createData(), pin.GeometryData(geom)
    objects = [o for o in geom.geometryObjects if type(o.geometry).__name__ in ("Sphere", "Cylinder")]
    assert len(objects) == model.num_shapes
    q = chain.random_configuration(5, generator=torch.Generator(device="cpu").manual_seed(9))
    a, b, r = model.shapes_in_world(q)
    for n in range(len(q)):
        pin.updateGeometryPlacements(pmodel, pdata, geom, gdata, q[n].numpy())
        for k, o in enumerate(objects):
            M = gdata.oMg[geom.getGeometryId(o.name)]
            half = o.geometry.halfLength if hasattr(o.geometry, "halfLength") else 0.0
            ends = [M.translation - half * M.rotation[:, 2], M.translation + half * M.rotation[:, 2]]
            assert np.abs(a[n, k].numpy() - ends[0]).max() < 1e-12 and np.abs(b[n, k].numpy() - ends[1]).max() < 1e-12
            assert abs(float(r[k]) - o.geometry.radius) < 1e-15


def test_a_urdf_without_spheres_or_cylinders_is_refused_naming_what_it_has(panda):
    with pytest.raises(ValueError, match=r"17 elements: box, mesh"):
        RobotCollision.from_urdf(panda, data.path("robots/panda.urdf"))
    from robojac.kinematics import UrdfError
    with pytest.raises(UrdfError, match=r":3: <sphere> needs radius"):
        RobotCollision.from_urdf(panda, '<robot name="x">\n<link name="panda_link1"><collision><geometry>\n'
                                        '<sphere radius="-1"/></geometry></collision></link></robot>')



_XML = """<mujoco model="geoms">
  <compiler angle="degree"/>
  <default><default class="arm"><geom type="capsule" size="0.04 0.1" rgba="1 0 0 1"/></default></default>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -0.05" euler="5 -3 0"/>
    <geom name="table" type="box" size="0.2 0.3 0.05" pos="0.6 0.1 0.3" euler="0 0 20"/>
    <geom name="ball" type="sphere" size="0.1" pos="0.3 -0.4 0.7"/>
    <geom name="post" type="capsule" fromto="-0.4 0.3 0 -0.4 0.3 0.9" size="0.05"/>
    <geom name="deco" type="sphere" size="0.3" contype="0" conaffinity="0"/>
    <body name="link1" pos="0 0 0.2">
      <joint name="j1" axis="0 0 1" range="-170 170"/>
      <geom class="arm" pos="0 0 0.1"/>
      <body name="link2" pos="0 0 0.25" euler="90 0 0">
        <joint name="j2" axis="0 0 1" pos="0 0 0.02" range="-120 120"/>
        <geom class="arm" fromto="0 0 0 0.35 0 0"/>
        <frame pos="0.2 0.05 0" euler="0 30 0"><geom type="cylinder" size="0.03 0.08"/></frame>
        <body name="link3" pos="0.35 0 0">
          <joint name="j3" axis="0 0 1" range="-150 150"/>
          <geom class="arm" size="0.035 0.12" pos="0.12 0 0" zaxis="1 0 0"/>
          <geom type="sphere" size="0.05" pos="0.28 0 0"/>
          <geom type="box" size="0.02 0.02 0.02" pos="0.3 0 0"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>"""


def test_an_mjcfs_geoms_and_distances_equal_mujocos():
    """Geoms under default classes, in a <frame>, by fromto and zaxis, on hinges with a pos; the
    worldbody's plane, box, sphere and capsule as obstacles: each shape where MuJoCo's kinematics
    puts it, and each distance equal to MuJoCo's mj_geomDistance."""
    mujoco = pytest.importorskip("mujoco")
    chain = Chain.from_mjcf(_XML)
    model = RobotCollision.from_mjcf(chain, _XML)
    world = Obstacles.from_mjcf(_XML)
    assert model.links == ("link1", "link2", "link2", "link3", "link3")
    assert [g.kind for g in model.unmodelled] == ["box"]
    assert [type(s).__name__ for s in world.shapes] == ["HalfSpace", "Box", "Sphere", "Capsule"]  # "deco" left out
    m = mujoco.MjModel.from_xml_string(_XML)
    d = mujoco.MjData(m)
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, i) for i in range(m.ngeom)]
    robot = [i for i in range(m.ngeom) if m.geom_bodyid[i] != 0 and m.geom_type[i] in (2, 3, 5)]  # round ones
    obstacles = [names.index(n) for n in ("floor", "table", "ball", "post")]
    q = chain.random_configuration(20, generator=torch.Generator(device="cpu").manual_seed(10))
    a, b, _ = model.shapes_in_world(q)
    dist = model.distances(q, world)
    compared = 0
    for k in range(len(q)):
        d.qpos[:] = q[k].numpy()
        mujoco.mj_kinematics(m, d)
        for s, g in enumerate(robot):
            half = m.geom_size[g][1] if m.geom_type[g] != 2 else 0.0
            z = d.geom_xmat[g].reshape(3, 3)[:, 2]
            ends = np.stack([d.geom_xpos[g] + sign * half * z for sign in (-1, 1)])  # either way round
            ours = np.stack([a[k, s].numpy(), b[k, s].numpy()])
            assert min(np.abs(ours - ends).max(), np.abs(ours[::-1] - ends).max()) < 1e-12
            if m.geom_type[g] == 5:
                continue  # a cylinder: ours is the capsule containing it
            for o, h in enumerate(obstacles):
                ref = mujoco.mj_geomDistance(m, d, g, h, 10.0, np.zeros(6))
                assert abs(ref - float(dist[k, s, o])) < 1e-9
                compared += 1
    assert compared == 20 * 4 * 4


def test_random_models_geoms_sit_where_mujoco_puts_them():
    """``read_mjcf_geoms`` on random models (every primitive shape, fromto, frames, default
    classes, each orientation attribute): each geom's pose in its body, put in the world by the
    chain's kinematics, is MuJoCo's ``geom_xpos`` and ``geom_xmat``, and its size MuJoCo's."""
    mujoco = pytest.importorskip("mujoco")
    from test_mjcf import _RandomModel

    from robojac.kinematics import read_mjcf_geoms
    from robojac.lie import quat_to_matrix, se3_compose

    compared = 0
    for seed in range(25):
        xml = _RandomModel(seed).xml()
        chain = Chain.from_mjcf(xml)
        geoms = read_mjcf_geoms(xml)
        m = mujoco.MjModel.from_xml_string(xml)
        d = mujoco.MjData(m)
        assert len(geoms) == m.ngeom
        q = chain.random_configuration(3, generator=torch.Generator(device="cpu").manual_seed(seed))
        X = chain.forward_kinematics_tensor(q, [g.body for g in geoms])  # (3, G, 7)
        W = se3_compose(X, torch.tensor([g.pose for g in geoms], **F64))
        for k in range(len(q)):
            d.qpos[:] = q[k].numpy()
            mujoco.mj_kinematics(m, d)
            for i, g in enumerate(geoms):
                assert np.abs(W[k, i, :3].numpy() - d.geom_xpos[i]).max() < 1e-9, (seed, g)
                assert np.abs(quat_to_matrix(W[k, i, 3:]).numpy() - d.geom_xmat[i].reshape(3, 3)).max() < 1e-9
                n = len(g.size)
                assert np.abs(np.array(g.size) - m.geom_size[i][:n]).max() < 1e-12, (seed, g)
                compared += 1
    assert compared > 300


def test_every_path_runs_on_the_devices_and_dtypes_of_its_inputs(panda, device):
    """Distances (a box entered included), the task's Jacobian and ``ik.solve(..., avoid=)`` on
    ``device`` (``--device cuda``; ``--default-device meta`` finds a tensor made without one),
    equal to the CPU's; float32 follows."""
    model, world = _scene(panda)
    q = panda.random_configuration(64, generator=torch.Generator(device="cpu").manual_seed(11))
    ref = (model.self_distances(q), model.distances(q, world))
    assert (ref[1][..., 1] < -0.05).any()  # some capsules inside the table: the depth's rows
    m, w = model.to(device), world.to(device)
    for dt, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        qd = q.to(device=device, dtype=dt)
        out = (m.self_distances(qd), m.distances(qd, w))
        for a, b in zip(out, ref):
            assert a.device.type == torch.device(device).type and a.dtype == dt
            assert (a.cpu().double() - b).abs().max() < tol
    task = ik.CollisionTask(m, w, margin=0.1)
    r, (J,) = task.value_and_jacobians(q.to(device)[:, None])
    r_cpu, (J_cpu,) = ik.CollisionTask(model.cpu(), world.cpu(), margin=0.1).value_and_jacobians(q[:, None])
    assert (r.cpu() - r_cpu).abs().max() < 1e-9 and (J.cpu() - J_cpu).abs().max() < 1e-9
    m, w = model.to(device), world.to(device)
    target = torch.tensor([[0.55, -0.13, 0.32], [0.55, 0.21, 0.32]], dtype=torch.float64, device=device)
    result = ik.solve(panda.to(device), target, config=ik.IKConfig(frame="panda_hand_tcp", avoid_starts=4),
                      avoid=ik.CollisionTask(m, w, margin=0.02))
    assert result.q.device.type == torch.device(device).type and bool(result.converged.all())
    panda.cpu()
    model.cpu()
    world.cpu()


def test_the_tasks_let_the_engine_run_its_last_problems_on_their_own(panda):
    """``CollisionTask`` and ``FramesTask`` say how they read a subset of the problems (they hold
    nothing per problem), so the engine runs its last few running problems as a smaller batch;
    the answers, iterations and reasons equal those of the same residuals that cannot be cut."""
    model, world = _scene(panda)
    task = ik.CollisionTask(model, world, margin=0.02)
    reach = ik.FramesTask(panda, ["panda_hand_tcp"], position_only=True)
    assert task.subset(torch.arange(3)) is task and reach.subset(torch.arange(3)) is reach

    class Uncut:  # the same residual without subset
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, *a):
            return self.inner(*a)

        def value_and_jacobians(self, *a):
            return self.inner.value_and_jacobians(*a)

    B = 40
    g = torch.Generator(device="cpu").manual_seed(2)
    q0 = panda.random_configuration(B, generator=g)
    T = torch.zeros(B, 1, 1, 7, **F64)
    T[..., :3] = torch.tensor([0.55, 0.0, 0.32], **F64) + 0.1 * torch.randn(B, 1, 1, 3, generator=g, **F64)
    T[..., 6] = 1.0
    out = []
    for wrap in (lambda r: r, Uncut):
        q = optim.Variable("Rn", q0[:, None].clone(), lower=panda.lower, upper=panda.upper)
        cfg = optim.SolverConfig(termination=optim.TerminationConfig(max_iterations=60), backward="none")
        out.append(optim.solve([q], [optim.Factor(wrap(reach), [q], data=(T,)), optim.Factor(wrap(task), [q])], cfg))
    cut, whole = out
    assert int(cut.iterations.min()) < int(cut.iterations.max())  # they stop at different steps
    assert torch.equal(cut.iterations, whole.iterations) and cut.reason == whole.reason
    # equal to rounding (a batch of another size sums in another order), which the problems that
    # crawl to max_iterations on a hinge amplify the most
    ok = cut.converged
    assert ((cut.cost - whole.cost).abs() <= 1e-10 * whole.cost.clamp(min=1e-9)).all()
    assert (cut.values[0] - whole.values[0])[ok].abs().max() < 1e-4
