"""robojac.motion.trajopt: smooth trajectories on the solver engine, checked against a discrete
minimum-acceleration curve solved by numpy, the continuous one, Pinocchio's kinematics with
coal's distances, the velocity limits, and central differences for the gradients."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import Tensor

from robojac import collision, data, ik, lie, motion
from robojac.kinematics import Chain

from helpers import Stacked, pinocchio_collision, pinocchio_configuration

HAND = "panda_hand_tcp"
READY = torch.tensor([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4], dtype=torch.float64)


@pytest.fixture(scope="module")
def panda():
    return Chain.from_urdf(data.path("robots/panda.urdf"), tip=HAND)


def _wall(panda, device="cpu"):
    """A wall 0.5 m high across the reach of the Panda's hand (and the floor), the skeleton's
    capsules, and a start with the hand 0.3 m to one side of it."""
    model = collision.RobotCollision.from_skeleton(panda, 0.05).to(device)
    world = collision.Obstacles([collision.Box((0.2, 0.05, 0.25), (0.5, 0.0, 0.25, 0.0, 0.0, 0.0, 1.0)),
                                 collision.HalfSpace((0.0, 0.0, 1.0), 0.0)]).to(device)
    task = ik.CollisionTask(model, world, margin=0.02)
    X = panda.forward_kinematics_tensor(READY, [HAND])[0].clone()  # the hand pointing down
    X[:3] = torch.tensor([0.5, -0.3, 0.25], dtype=torch.float64, device="cpu")
    q_start = ik.solve(panda, X.to(device), q0=READY.to(device), avoid=task, config=ik.IKConfig(frame=HAND)).q
    return model, world, task, q_start


def _minimum_acceleration(a: np.ndarray, b: np.ndarray, T: int) -> np.ndarray:
    """The waypoints ``(T, n)`` from ``a`` to ``b`` minimising the summed squared second
    differences, at rest before and after (numpy's least squares on the free waypoints)."""
    rows = []
    for t in range(1, T - 1):
        r = np.zeros(T)
        r[t - 1 : t + 2] = (1.0, -2.0, 1.0)
        rows.append(r)
    for t in (0, T - 2):
        r = np.zeros(T)
        r[t : t + 2] = (-1.0, 1.0)
        rows.append(r)
    A = np.array(rows)
    rhs = -(A[:, :1] * a[None] + A[:, -1:] * b[None])
    x = np.linalg.lstsq(A[:, 1:-1], rhs, rcond=None)[0]
    return np.vstack((a, x, b))


def test_without_obstacles_the_answer_is_the_minimum_acceleration_curve(panda):
    """Between two configurations with nothing in the way the cost is quadratic: the answer is
    numpy's least-squares solution of it, and approaches the continuous minimum-acceleration
    curve ``a + (b - a)(3 s^2 - 2 s^3)`` at the rate of the waypoints' spacing."""
    g = torch.Generator(device="cpu").manual_seed(3)
    a, b = panda.random_configuration(2, generator=g)
    errs = []
    for T in (10, 40, 160):
        r = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(steps=T, duration=20.0, starts=1))
        assert bool(r.converged) and r.reason == ("tolerance",) and r.clearance is None
        ref = _minimum_acceleration(a.numpy(), b.numpy(), T)
        assert np.abs(r.q.numpy() - ref).max() < 1e-8
        assert torch.equal(r.q[0], a) and torch.equal(r.q[-1], b)
        s = np.linspace(0.0, 1.0, T)[:, None]
        errs.append(np.abs(r.q.numpy() - (a.numpy() + (3 * s * s - 2 * s ** 3) * (b - a).numpy())).max())
        assert r.times.shape == (T,) and abs(float(r.times[-1]) - 20.0) < 1e-12
    assert errs[2] < errs[1] < errs[0] and errs[2] * 160 < 1.2 * errs[1] * 40  # O(1 / T)


def test_over_a_wall_the_trajectory_is_clear_by_pinocchio_and_coal(panda):
    """The hand goes from one side of a wall to the other: the straight blend passes through it,
    the answer is clear at every waypoint and at ten configurations between each two, by
    Pinocchio's kinematics and coal's distances; the goal's pose is met by Pinocchio's."""
    pin = pytest.importorskip("pinocchio")
    coal = pytest.importorskip("coal")
    model, world, task, q_start = _wall(panda)
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[1] = 0.3  # the same orientation across the wall
    cfg = motion.TrajOptConfig(steps=24, starts=2, ik=ik.IKConfig(frame=HAND))
    r = motion.trajopt(panda, q_start, X, avoid=task, config=cfg)
    assert bool(r.converged) and r.reason == ("tolerance",)
    assert float(r.clearance) >= 0 and float(r.speed) <= 1.001
    blend = r.q[0] + torch.linspace(0, 1, 24, dtype=torch.float64)[:, None] * (r.q[-1] - r.q[0])
    assert float(task.distances(blend[None]).min()) < -0.05  # the straight way is through the wall
    pm, gm = pinocchio_collision(pin, coal, str(data.path("robots/panda.urdf")), model, world)
    pd, gd = pm.createData(), pin.GeometryData(gm)
    s = torch.linspace(0, 1, 11, dtype=torch.float64)[:-1, None]
    dense = torch.cat([(r.q[t] + s * (r.q[t + 1] - r.q[t])) for t in range(23)] + [r.q[-1:]])
    P, O = len(model.pairs), len(world.shapes)
    counted = [True] * P + [m for m in model.moving for _ in range(O)]  # (the base on the floor is no task)
    closest = math.inf
    for q in dense:
        pin.computeDistances(pm, pd, gm, gd, pinocchio_configuration(pin, pm, panda, q))
        closest = min(closest, min(res.min_distance for res, c in zip(gd.distanceResults, counted) if c))
    assert closest >= 0 and abs(closest - float(r.clearance)) < 0.01
    pin.framesForwardKinematics(pm, pd, pinocchio_configuration(pin, pm, panda, r.q[-1]))
    M = pd.oMf[pm.getFrameId(HAND)]
    assert np.linalg.norm(M.translation - X[:3].numpy()) < 1e-4
    R_goal = ik.pose_errors(panda.forward_kinematics_tensor(r.q[-1:], [HAND])[:, 0], X[None], False)[2]
    assert float(R_goal) < 1e-3 and abs(float(R_goal) - float(r.rot_err)) < 1e-9
    assert panda.within_limits(r.q).all()


def test_hard_constraints_hold_the_margin_exactly_and_reach_slsqps_optimum(panda):
    """``constraints="hard"``: the clearance and the velocity limits as the engine's inequality
    constraints.  Every constrained configuration (the waypoints and ``substeps`` between) is at
    least the margin clear, to 1e-7 (soft: 0.6 mm inside it); the answer is SciPy's SLSQP's on
    the same problem (scikit-robot's formulation: the smoothness as the cost, the rest as
    constraints, robojac's residuals stacked for it), to 1e-9 in cost and 1e-6 rad."""
    scipy = pytest.importorskip("scipy.optimize")
    _, _, task, q_start = _wall(panda)
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[1] = 0.3
    q_end = ik.solve(panda, X, q0=q_start, avoid=task, config=ik.IKConfig(frame=HAND)).q
    T, duration = 12, 2.0
    cfg = motion.TrajOptConfig(steps=T, duration=duration, starts=1, constraints="hard")
    r = motion.trajopt(panda, q_start, end=q_end, avoid=task, config=cfg)
    soft = motion.trajopt(panda, q_start, end=q_end, avoid=task, config=replace(cfg, constraints="soft"))
    assert bool(r.converged) and r.reason == ("tolerance",)
    s = torch.arange(1, cfg.substeps + 2, dtype=torch.float64) / (cfg.substeps + 1)
    checked = torch.cat([r.q[t] + s[:, None] * (r.q[t + 1] - r.q[t]) for t in range(T - 1)])
    assert float(task.distances(checked[None]).min()) >= task.margin - 1e-7
    soft_checked = torch.cat([soft.q[t] + s[:, None] * (soft.q[t + 1] - soft.q[t]) for t in range(T - 1)])
    assert float(task.distances(soft_checked[None]).min()) < task.margin - 4e-4  # the soft one dips into it
    h = duration / (T - 1)
    idx = torch.arange(T)
    pairs = torch.stack((idx[:-1], idx[1:]), 1)
    smooth = Stacked([(motion.Acceleration(h, 1.0), torch.stack((idx[:-2], idx[1:-1], idx[2:]), 1)),
                      (motion.RestAtEnds(h, 1.0), torch.tensor([[0, 1], [T - 2, T - 1]]))], q_start, q_end, T)
    hard = Stacked([(motion.VelocityBound(h, panda.velocity_limits.double()), pairs),
                    (motion.SweptClearance(task.constraint(), cfg.substeps), pairs)], q_start, q_end, T)
    lo, hi = (np.tile(x.numpy(), T - 2) for x in panda.limits_for(torch.float64))
    sigma = (3 * s.new_tensor(np.linspace(0, 1, T)) ** 2 - 2 * s.new_tensor(np.linspace(0, 1, T)) ** 3)[:, None]
    x0 = (q_start + sigma * (q_end - q_start))[1:-1].reshape(-1).numpy()

    def f(x):
        res, J = smooth(x)
        return 0.5 * res @ res, J.T @ res

    ref = scipy.minimize(f, x0, jac=True, method="SLSQP", bounds=list(zip(lo, hi)),
                         constraints=[{"type": "ineq", "fun": lambda x: -hard(x)[0], "jac": lambda x: -hard(x)[1]}],
                         options={"maxiter": 500, "ftol": 1e-12})
    assert ref.success
    assert abs(float(r.cost) - ref.fun) < 1e-9 * ref.fun  # (measured: 2e-14)
    assert np.abs(r.q[1:-1].reshape(-1).numpy() - ref.x).max() < 1e-6  # (6e-8 rad)


def test_velocity_limits_hold_or_the_answer_says_too_fast(panda):
    """Joint 1 turns 2 rad, its limit 2.175 rad/s: in 1.2 s the smooth blend would peak at 1.15x
    the limit, and the answer flattens it to the limit; in 0.9 s no trajectory can (2.22 rad/s
    on average), and the answer says so."""
    a = torch.zeros(7, dtype=torch.float64)
    a[3], a[5] = -1.5, 1.5
    b = a.clone()
    b[0] = 2.0
    ok = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(duration=1.2, starts=1))
    v = (ok.q[1:] - ok.q[:-1]).abs() / (1.2 / 31)
    assert bool(ok.converged) and float(v[:, 0].max()) <= 2.175 * 1.0001 and abs(float(ok.speed) - 1.0) < 1e-4
    assert float(ok.speed) == pytest.approx(float((v / panda.velocity_limits).max()), rel=1e-12)
    slow = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(duration=1.2, velocity_scale=0.5, starts=1))
    too = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(duration=0.9, starts=1))
    for r in (slow, too):
        assert not bool(r.converged) and r.reason == ("too_fast",) and float(r.speed) > 1.001
    hard = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(duration=1.2, starts=1, constraints="hard"))
    assert bool(hard.converged) and abs(float(hard.speed) - 1.0) < 1e-9  # the limit itself, to rounding
    too = motion.trajopt(panda, a, end=b, config=motion.TrajOptConfig(duration=0.9, starts=1, constraints="hard"))
    assert not bool(too.converged) and too.reason == ("too_fast",)


def _central_differences(f, x: Tensor, eps: float = 1e-6) -> Tensor:
    out = torch.zeros_like(x)
    for i in range(x.numel()):
        d = torch.zeros_like(x).flatten()
        d[i] = eps
        out.view(-1)[i] = (f(x + d.reshape(x.shape)) - f(x - d.reshape(x.shape))) / (2 * eps)
    return out


def test_the_trajectory_is_differentiable_in_its_start_and_end(panda):
    """``d q / d start`` and ``d q / d end`` through the engine's implicit gradient (the ends are
    fixed entries of the variable), along two random directions each, equal central differences
    of re-solved trajectories: to 1e-8 with nothing active but the smoothness, to 1e-3 with the
    wall's clearance active as a cost (a hinge: measured 6e-5), and to 1e-5 with it a hard
    constraint (the constrained minimum's derivative: measured 6e-7)."""
    _, _, task, q_start = _wall(panda)
    W = torch.randn(16, 7, dtype=torch.float64, generator=torch.Generator(device="cpu").manual_seed(0))
    U = torch.randn(2, 7, dtype=torch.float64, generator=torch.Generator(device="cpu").manual_seed(1))
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[1] = 0.3
    q_end = ik.solve(panda, X, q0=q_start, avoid=task, config=ik.IKConfig(frame=HAND)).q
    cases = ((None, 20.0, "soft", 1e-8), (task, 2.0, "soft", 1e-3), (task, 2.0, "hard", 1e-5))
    for avoid, duration, mode, tol in cases:
        cfg = motion.TrajOptConfig(steps=16, starts=1, duration=duration, constraints=mode)
        a, b = q_start.clone().requires_grad_(), q_end.clone().requires_grad_()
        r = motion.trajopt(panda, a, end=b, avoid=avoid, config=cfg)
        assert bool(r.converged)
        ga, gb = torch.autograd.grad((r.q * W).sum(), (a, b))

        def loss(start, end):
            return float((motion.trajopt(panda, start, end=end, avoid=avoid, config=cfg).q * W).sum())

        eps = 1e-6
        for u in U:
            fa = (loss(q_start + eps * u, q_end) - loss(q_start - eps * u, q_end)) / (2 * eps)
            fb = (loss(q_start, q_end + eps * u) - loss(q_start, q_end - eps * u)) / (2 * eps)
            scale_a, scale_b = float(ga.norm() * u.norm()), float(gb.norm() * u.norm())
            assert abs(float(ga @ u) - fa) < tol * scale_a and abs(float(gb @ u) - fb) < tol * scale_b
        if mode == "soft" and avoid is not None:
            assert float(r.clearance) < 0.0199  # the clearance's hinge is active


def test_the_trajectory_is_differentiable_in_a_pose_goal(panda):
    """A UR5 (six joints: one IK answer near the start) to a pose goal: ``d q / d target``
    (through IK's gradient and the engine's) equals central differences of re-solved
    trajectories; a redundant Panda's end moves with its target as the goal's twist says,
    ``J(q_end) dq_end/dxi = I`` (IK's damped least-norm derivative)."""
    ur5 = Chain.from_urdf(data.path("robots/ur5.urdf"), tip="ee_link")
    q0 = torch.tensor([0.3, -1.2, 1.4, -1.6, -1.5, 0.2], dtype=torch.float64)
    X = ur5.forward_kinematics_tensor(q0, [ur5.tip])[0].clone()
    X[:3] += torch.tensor([0.1, 0.15, -0.1], dtype=torch.float64)
    tight = ik.IKConfig(position_tolerance=1e-12, orientation_tolerance=1e-12)  # (differences of IK's answers)
    cfg = motion.TrajOptConfig(steps=12, starts=1, duration=4.0, ik=tight)
    W = torch.randn(12, 6, dtype=torch.float64, generator=torch.Generator(device="cpu").manual_seed(1))
    Xg = X.clone().requires_grad_()
    r = motion.trajopt(ur5, q0, Xg, config=cfg)
    assert bool(r.converged)
    (g,) = torch.autograd.grad((r.q * W).sum(), Xg)
    ref = _central_differences(lambda p: float((motion.trajopt(ur5, q0, torch.cat((p, X[3:])), config=cfg).q
                                                 * W).sum()), X[:3], eps=1e-5)  # (1e-6: the solve's noise)
    assert float((g[:3] - ref).norm() / ref.norm()) < 1e-5
    _, _, _, q_start = _wall(panda)
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[:3] += torch.tensor([0.05, 0.1, 0.05], dtype=torch.float64)
    xi = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    target = lie.se3_compose(lie.se3_exp(xi), X)  # a left perturbation of the goal
    tight = ik.IKConfig(frame=HAND, position_tolerance=1e-12, orientation_tolerance=1e-12)
    r = motion.trajopt(panda, q_start, target, config=motion.TrajOptConfig(steps=12, starts=1, ik=tight))
    assert bool(r.converged)
    dq = torch.stack([torch.autograd.grad(r.q[-1, j], xi, retain_graph=True)[0] for j in range(7)])  # (7, 6)
    J = panda.jacobian(r.q[-1].detach(), frame=HAND)  # [v; w] in the root frame
    expected = torch.eye(6, dtype=torch.float64)  # d[v; w]/d[rho; phi] of a left perturbation
    expected[:3, 3:] = -lie.skew(X[:3])
    assert (J @ dq - expected).abs().max() < 1e-5
    dq_mid = torch.autograd.grad(r.q[6].sum(), xi)[0]
    assert dq_mid.abs().max() > 1e-3  # the waypoints between follow the goal too


def test_a_batch_equals_its_problems_solved_alone(panda):
    g = torch.Generator(device="cpu").manual_seed(5)
    a = panda.random_configuration(2, 3, generator=g)
    b = panda.random_configuration(2, 3, generator=g)
    cfg = motion.TrajOptConfig(steps=12, starts=2)
    r = motion.trajopt(panda, a, end=b, config=cfg)
    assert r.q.shape == (2, 3, 12, 7) and r.converged.shape == (2, 3) and len(r.reason) == 6
    assert r.history.shape[1:] == (2, 3) and r.cost.shape == r.iterations.shape == r.speed.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = motion.trajopt(panda, a[i, j], end=b[i, j], config=cfg)
            assert (one.q - r.q[i, j]).abs().max() < 1e-8
    shared = motion.trajopt(panda, a[0, 0], end=b, config=cfg)  # one start, many goals
    assert shared.q.shape == (2, 3, 12, 7) and (shared.q[0, 0] - r.q[0, 0]).abs().max() < 1e-8
    _, _, task, _ = _wall(panda)
    none = motion.trajopt(panda, a[:0, 0], torch.zeros(0, 3, dtype=torch.float64), avoid=task, config=cfg)
    assert none.q.shape == (0, 12, 7) and none.reason == () and none.clearance.shape == (0,)  # no problems, no error


def test_float32_follows_the_start(panda):
    a, b = panda.random_configuration(2, generator=torch.Generator(device="cpu").manual_seed(8), dtype=torch.float32)
    cfg = motion.TrajOptConfig(steps=10, starts=1, duration=20.0)
    r = motion.trajopt(panda, a, end=b, config=cfg)
    ref = motion.trajopt(panda, a.double(), end=b.double(), config=cfg)
    assert r.q.dtype == torch.float32 and r.times.dtype == torch.float32 and bool(r.converged)
    assert (r.q.double() - ref.q).abs().max() < 1e-4


def test_bad_input_is_refused_naming_the_argument(panda):
    q = torch.zeros(7, dtype=torch.float64)
    q[3], q[5] = -1.5, 1.5
    goal = torch.tensor([0.4, 0.2, 0.4], dtype=torch.float64)
    with pytest.raises(ValueError, match="exactly one goal"):
        motion.trajopt(panda, q, goal, end=q)
    with pytest.raises(ValueError, match="exactly one goal"):
        motion.trajopt(panda, q)
    bad = q.clone()
    bad[3] = 0.5
    with pytest.raises(ValueError, match="start: outside the joint limits at joint 'panda_joint4'"):
        motion.trajopt(panda, bad, goal)
    with pytest.raises(ValueError, match="end: outside the joint limits"):
        motion.trajopt(panda, q, end=bad)
    with pytest.raises(ValueError, match=r"start: expected a tensor of shape \(\.\.\., 7\)|start"):
        motion.trajopt(panda, q[:6], goal)
    with pytest.raises(ValueError, match="target: expected an SE3 pose"):
        motion.trajopt(panda, q, goal[:2])
    with pytest.raises(ValueError, match="target: expected the start's dtype"):
        motion.trajopt(panda, q, goal.float())
    with pytest.raises(ValueError, match="TrajOptConfig.steps"):
        motion.TrajOptConfig(steps=2)
    with pytest.raises(ValueError, match="TrajOptConfig.duration"):
        motion.TrajOptConfig(duration=0.0)
    with pytest.raises(ValueError, match="TrajOptConfig.starts"):
        motion.TrajOptConfig(starts=0)
    with pytest.raises((TypeError, ValueError), match="TrajOptConfig.ik"):
        motion.TrajOptConfig(ik="panda_hand")
    with pytest.raises(ValueError, match="frame 'nowhere' does not exist"):
        motion.trajopt(panda, q, goal, config=motion.TrajOptConfig(ik=ik.IKConfig(frame="nowhere")))
    other = Chain.from_urdf(data.path("robots/panda.urdf"), tip=HAND)
    task = ik.CollisionTask(collision.RobotCollision.from_skeleton(other, 0.05), margin=0.02)
    with pytest.raises(ValueError, match="avoid: its collision model is of chain"):
        motion.trajopt(panda, q, goal, avoid=task)
    with pytest.raises((TypeError, ValueError), match="avoid"):
        motion.trajopt(panda, q, goal, avoid="wall")


def test_every_path_runs_on_the_device_and_dtype_of_its_inputs(panda, device):
    """``--device cuda`` runs it on the GPU; ``--default-device meta`` finds a tensor made
    without a device.  The answer equals the CPU's."""
    model, world, task, q_start = _wall(panda)
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[1] = 0.3
    cfg = motion.TrajOptConfig(steps=12, starts=2, ik=ik.IKConfig(frame=HAND))
    ref = motion.trajopt(panda, q_start, X, avoid=task, config=cfg)
    arm = panda.to(device)
    task_d = ik.CollisionTask(model.to(device), world.to(device), margin=0.02)
    try:
        r = motion.trajopt(arm, q_start.to(device), X.to(device), avoid=task_d, config=cfg)
        assert r.q.device.type == torch.device(device).type and r.clearance.device.type == r.q.device.type
        assert (r.q.cpu() - ref.q).abs().max() < 1e-6 and r.reason == ref.reason
    finally:
        panda.cpu()
        model.cpu()
        world.cpu()


def test_the_picture_draws_the_path_the_closest_approach_and_names_bad_arguments(panda):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robojac import viz

    model, world, task, q_start = _wall(panda)
    X = panda.forward_kinematics_tensor(q_start, [HAND])[0].clone()
    X[1] = 0.3
    r = motion.trajopt(panda, q_start, X, avoid=task, config=motion.TrajOptConfig(steps=12, starts=1,
                                                                                 ik=ik.IKConfig(frame=HAND)))
    fig = viz.plot_trajopt(panda, r, avoid=task, frame=HAND)
    ax3d, joints, speeds, gaps = fig.axes
    path = [line for line in ax3d.lines if line.get_label() == f"{HAND} path"][0]
    x, y, z = (np.asarray(v) for v in path.get_data_3d())
    P = panda.forward_kinematics_tensor(r.q, [HAND])[:, 0, :3].numpy()
    assert np.abs(np.stack((x, y, z), 1) - P).max() < 1e-12  # the hand's path, waypoint by waypoint
    assert len(joints.lines) == 7 and len(speeds.lines) == 8  # seven joints; their speeds and the limit
    clearance = gaps.lines[0].get_ydata()
    assert abs(float(np.min(clearance)) - float(task.distances(r.q[None]).min()) * 100) < 1e-9  # cm
    plt.close(fig)
    fig = viz.plot_trajopt(panda, r)  # no obstacles: no clearance panel
    assert len(fig.axes[3].lines) == 0
    plt.close(fig)
    batch = motion.trajopt(panda, q_start.expand(2, 7), X, config=motion.TrajOptConfig(steps=6, starts=1,
                                                                                        ik=ik.IKConfig(frame=HAND)))
    with pytest.raises(ValueError, match="expected one trajectory"):
        viz.plot_trajopt(panda, batch)
    with pytest.raises(TypeError, match="result"):
        viz.plot_trajopt(panda, r.q)
    with pytest.raises(TypeError, match="chain"):
        viz.plot_trajopt(model, r)
