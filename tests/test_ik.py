"""robojac.ik: the benchmark protocol at small size, closed forms, limits, unreachable targets."""

import math

import numpy as np
import pypose as pp
import pytest
import torch

from robojac import ik, lie
from robojac.data import path as data_path
from robojac.kinematics import Chain
from robojac.models import planar_arm, sample_arm

from helpers import max_err

ARMS = [("panda.urdf", "panda_hand"), ("kuka_iiwa14.urdf", "lbr_iiwa_link_7"), ("ur5.urdf", "ee_link")]


def _urdf(name):
    return data_path(f"robots/{name}")


def _chain(name, tip):
    return Chain.from_urdf(_urdf(name), tip=tip)


def _independent_errors(name, tip, q, target):
    """Position and rotation errors of ``q`` recomputed by Pinocchio in float64."""
    pin = pytest.importorskip("pinocchio")
    model = pin.buildModelFromUrdf(str(_urdf(name)))
    data = model.createData()
    fid = model.getFrameId(tip)
    T = target.matrix().double().numpy()
    pos, rot = [], []
    for qi, Ti in zip(q.double().numpy(), T):
        qp = pin.neutral(model)
        qp[: len(qi)] = qi
        pin.framesForwardKinematics(model, data, qp)
        M = data.oMf[fid]
        pos.append(np.linalg.norm(M.translation - Ti[:3, 3]))
        rot.append(np.linalg.norm(pin.log3(Ti[:3, :3].T @ M.rotation)))
    return np.array(pos), np.array(rot)


@pytest.mark.parametrize("name, tip", ARMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_protocol_targets_are_reached_inside_the_limits(name, tip, dtype, device):
    chain = _chain(name, tip).to(device)
    q_true = chain.random_configuration(60, generator=torch.Generator().manual_seed(7), dtype=dtype)
    target = chain.forward_kinematics(q_true, tip)
    result = ik.solve(chain, target)
    assert result.q.dtype == dtype and result.q.shape == (60, chain.dof)
    assert bool(chain.within_limits(result.q.double()).all())  # float64 limits, after float32 rounding
    pos, rot = _independent_errors(name, tip, result.q, target)
    success = (pos < 1e-3) & (rot < 1e-2)
    assert success.mean() >= 59 / 60, f"{name}: {success.mean():.3f}"
    converged = result.converged.cpu().numpy()
    assert np.array_equal(success, converged) or success.mean() >= converged.mean()


@pytest.mark.parametrize("links", [(1.0, 0.7), (1.0, 0.8, 0.5)])
def test_planar_arms_against_their_closed_form(links, device):
    arm = planar_arm(links).to(device)
    q = arm.random_configuration(50, generator=torch.Generator().manual_seed(0))
    X = arm.forward_kinematics(q, "tool")
    if len(links) == 2:
        q_cf, ok = ik.planar_2link_ik(*links, X.translation())
    else:
        q_cf, ok = ik.planar_3link_ik(*links, X.translation(), q.sum(-1))
    Y = arm.forward_kinematics(q_cf, "tool")
    assert bool(ok.all()) and max_err(Y.translation(), X.translation()) < 1e-12
    if len(links) == 3:  # the 3-link closed form also sets the tool angle; two links cannot
        assert float((Y.rotation().Inv() * X.rotation()).Log().norm(dim=-1).max()) < 1e-12
    it = ik.solve(arm, X.translation())  # position-only, the iterative way, default tolerances
    assert bool(it.converged.all())
    assert max_err(arm.forward_kinematics(it.q, "tool").translation(), X.translation()) < 2e-4
    if len(links) == 2:  # two solutions: a tightly converged iterative one is one of the elbows
        it = ik.solve(arm, X.translation(), config=ik.IKConfig(position_tolerance=1e-10))
        assert bool(it.converged.all())
        up, _ = ik.planar_2link_ik(*links, X.translation(), elbow="up")
        down, _ = ik.planar_2link_ik(*links, X.translation(), elbow="down")
        wrap = lambda a: torch.atan2(torch.sin(a), torch.cos(a))  # noqa: E731
        d = torch.minimum(wrap(it.q - up).abs().amax(-1), wrap(it.q - down).abs().amax(-1))
        assert float(d.max()) < 1e-3


def test_unreachable_targets_fail_gracefully_in_a_mixed_batch(device):
    arm = sample_arm().to(device)
    q = arm.random_configuration(4, generator=torch.Generator().manual_seed(3))
    X = arm.forward_kinematics(q, "tool").tensor()
    far = X[:2].clone()
    far[:, 0] += 5.0  # 5 m out of reach
    result = ik.solve(arm, pp.SE3(torch.cat((X, far))))
    assert result.converged.tolist() == [True] * 4 + [False] * 2
    assert bool(torch.isfinite(result.q).all()) and bool(torch.isfinite(result.pos_err).all())
    assert float(result.pos_err[4:].min()) > 4.0
    assert bool(arm.within_limits(result.q).all())


def test_results_speak_the_engines_vocabulary(device):
    """cost, reason and history, on a (2, 3) batch of four reachable targets and two 5 m out of
    reach: the cost equals 0.5 |e|^2 recomputed from the returned q with numpy and scipy (the
    weighted position and rotation-vector errors), the reachable ones stop at the tolerance, the
    others because their rounds stopped improving, and the best cost per round never rises."""
    from scipy.spatial.transform import Rotation

    arm = sample_arm().to(device)
    q = arm.random_configuration(4, generator=torch.Generator().manual_seed(3))
    X = arm.forward_kinematics(q, "tool").tensor()
    far = X[:2].clone()
    far[:, 0] += 5.0
    target = torch.cat((X, far)).reshape(2, 3, 7)
    cfg = ik.IKConfig()
    result = ik.solve(arm, pp.SE3(target), config=cfg)
    assert result.reason == ("tolerance",) * 4 + ("no_progress",) * 2
    assert result.cost.shape == (2, 3) and result.history.shape[1:] == (2, 3) and result.history.shape[0] >= cfg.patience
    M = arm.forward_kinematics(result.q, "tool").matrix().reshape(6, 4, 4).double().cpu().numpy()
    T = pp.SE3(target.reshape(6, 7)).matrix().double().cpu().numpy()
    pe = np.linalg.norm(M[:, :3, 3] - T[:, :3, 3], axis=1)
    re = np.linalg.norm(Rotation.from_matrix(np.einsum("nji,njk->nik", T[:, :3, :3], M[:, :3, :3])).as_rotvec(), axis=1)
    expected = 0.5 * ((cfg.position_weight * pe) ** 2 + (cfg.orientation_weight * re) ** 2)
    assert np.allclose(result.cost.reshape(6).cpu().numpy(), expected, rtol=1e-6, atol=1e-12)
    h = result.history.reshape(len(result.history), 6)
    assert bool((h[1:] <= h[:-1]).all()) and float(h[-1, 4:].min()) > 9.0


def test_unreachable_targets_keep_their_least_cost_attempt_round_after_round(device):
    """Targets 2 m out of reach: each round keeps the attempt of least cost, the cost
    ``result.cost`` reports (not another ranking of the errors), so a target's history never
    rises and its last entry is the returned cost.  Ranked by the errors over their tolerances,
    58 of these 200 iiwa14 targets' histories rose."""
    chain = _chain(*ARMS[1]).to(device)
    X = chain.forward_kinematics(chain.random_configuration(200, generator=torch.Generator().manual_seed(1)),
                                 ARMS[1][1]).tensor()
    X[:, 0] += 2.0
    r = ik.solve(chain, X, config=ik.IKConfig(rounds=4, patience=10))
    h = r.history
    assert h.shape == (4, 200) and not bool(r.converged.any())
    assert bool((h[1:] <= h[:-1]).all())
    assert torch.equal(r.cost, h[-1])


def test_limits_hold_for_targets_at_the_edge(device):
    arm = sample_arm().to(device)
    lo, hi = arm.joint_limits
    q = torch.stack((lo + 1e-4, hi - 1e-4, (lo + hi) / 2)).double()
    target = arm.forward_kinematics(q, "tool")
    result = ik.solve(arm, target)
    assert bool(result.converged.all()) and bool(arm.within_limits(result.q).all())


def test_returned_joint_values_are_rounded_inwards_and_wrapped():
    """A float64 solution at a limit comes back inside the float64 limits after rounding to the
    target's dtype, continuous joints wrapped into [-pi, pi); the host's numpy path gives what
    the chain's own clamp gives."""
    from robojac.ik._solve import _returned

    chain = _chain(*ARMS[0])
    with torch.no_grad():
        chain.lower[6], chain.upper[6] = -math.inf, math.inf  # a continuous joint
    lo, hi = chain.lower.double().numpy(), chain.upper.double().numpy()
    q = np.stack((np.where(np.isinf(lo), 3.5, lo), np.where(np.isinf(hi), -7.0, hi)))
    assert (np.float32(lo[:6]) < lo[:6]).any()  # float32 rounds some of these limits outwards
    wrapped = q.copy()
    wrapped[:, 6] = (3.5 - 2 * math.pi, -7.0 + 2 * math.pi)
    for dtype in (torch.float32, torch.float64):
        out = _returned(chain, q, dtype, "cpu")
        assert out.dtype == dtype and bool(chain.within_limits(out.double()).all())
        assert torch.equal(out, chain.clamp(torch.from_numpy(wrapped).to(dtype)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_targets_come_back_in_their_dtype(dtype, device):
    """Targets in a half precision (numpy has no bfloat16) are solved on the float64 engine and
    come back in their dtype, inside the limits, with the errors of the returned q."""
    arm = sample_arm().to(device)
    target = arm.forward_kinematics(arm.random_configuration(4, generator=torch.Generator().manual_seed(3)), "tool")
    result = ik.solve(arm, target.tensor().to(dtype))
    assert result.q.dtype == dtype and result.pos_err.dtype == dtype
    assert bool(arm.within_limits(result.q.double()).all())
    X = arm.forward_kinematics(result.q.double(), "tool").tensor()
    pos = (X[:, :3] - target.tensor().to(dtype).double()[:, :3]).norm(dim=-1)
    assert max_err(result.pos_err.double(), pos) <= torch.finfo(dtype).eps * float(pos.max())  # one rounding
    # the torch engine (a GPU's, or a large batch's) works in float32 there, and gradients reach the
    # targets (tolerances a half-precision q can meet: a converged target passes its gradient)
    cfg = ik.IKConfig(engine="torch", position_tolerance=5e-2, orientation_tolerance=5e-2)
    t = target.tensor().to(dtype).requires_grad_()
    r = ik.solve(arm, t, config=cfg)
    assert r.q.dtype == dtype and bool(r.converged.all())
    r.q.float().sum().backward()
    t32 = lie.se3_tensor(t.detach().float(), unit_tol=1e-2).requires_grad_()  # normalized in float32
    ik.solve(arm, t32, config=cfg, q0=r.q.detach().float()).q.sum().backward()
    assert t.grad.dtype == dtype and torch.isfinite(t.grad).all() and float(t.grad.abs().max()) > 0
    assert max_err(t.grad.float(), t32.grad) <= 0.01 * float(t32.grad.abs().max())  # the same derivative (0.06-0.24 %)


def test_q0_seeds_and_the_null_space_pulls_toward_a_rest_pose(device):
    arm = planar_arm((1.0, 0.8, 0.5)).to(device)
    target = torch.tensor([1.2, 0.9, 0.0], dtype=torch.float64, device=device)  # position only: one redundant degree
    rest = torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64, device=device)
    free = ik.solve(arm, target, q0=torch.tensor([1.5, -1.0, -1.0], dtype=torch.float64, device=device))
    pulled = ik.solve(arm, target, q0=torch.tensor([1.5, -1.0, -1.0], dtype=torch.float64, device=device),
                      config=ik.IKConfig(rest_pose=rest, nullspace_gain=0.5, restarts=1))
    assert bool(free.converged) and bool(pulled.converged)
    assert float((pulled.q - rest).norm()) < float((free.q - rest).norm())


def test_another_frame_and_mimic_joints(device):
    panda = _chain("panda.urdf", "panda_hand").to(device)
    full = Chain.from_urdf(_urdf("panda.urdf")).to(device)
    q = full.random_configuration(3, generator=torch.Generator().manual_seed(5))
    target = full.forward_kinematics(q, "panda_rightfinger")  # driven through the finger mimic joint
    result = ik.solve(full, target, config=ik.IKConfig(frame="panda_rightfinger"))
    assert bool(result.converged.all())
    mid = panda.forward_kinematics(panda.random_configuration(3), "panda_link5")
    assert bool(ik.solve(panda, mid, config=ik.IKConfig(frame="panda_link5")).converged.all())


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_joints_off_the_frame_path_do_not_stall_float32(engine, device):
    """The full Panda has a finger joint that does not move the hand: its Jacobian column is zero.
    In float32 the torch engine's damped system was singular there and no target moved."""
    full = Chain.from_urdf(_urdf("panda.urdf")).to(device)
    gen = torch.Generator().manual_seed(9)
    target = full.forward_kinematics(full.random_configuration(40, generator=gen), "panda_hand").to(torch.float32)
    q0 = full.random_configuration(40, generator=gen, dtype=torch.float32)
    r = ik.solve(full, target, q0=q0, config=ik.IKConfig(frame="panda_hand", engine=engine))
    assert bool(r.converged.all()), r.pos_err.max()
    finger = [j.name for j in full.tree.actuated].index("panda_finger_joint1")
    one = ik.IKConfig(frame="panda_hand", engine=engine, rounds=1, restarts=1, fill=1, max_iterations=5)
    r = ik.solve(full, target, q0=q0, config=one)
    assert float(r.pos_err.max()) < float(ik.solve(full, target, q0=q0, config=ik.IKConfig(
        frame="panda_hand", engine=engine, rounds=1, restarts=1, fill=1, max_iterations=1)).pos_err.max())
    assert torch.equal(r.q[:, finger], q0[:, finger])  # the finger is off the path: it keeps its start


def test_one_arm_of_a_humanoid_moves_only_its_own_joints(device):
    """TALOS: the left arm's frame is moved by 9 of the robot's 32 joints; both engines step those
    9 alone (the systems are 9 x 9), leave the other 23 at their starting values, and agree."""
    talos = Chain.from_urdf(_urdf("talos_reduced.urdf")).to(device)
    frame = "arm_left_7_link"
    gen = torch.Generator().manual_seed(4)
    target = talos.forward_kinematics(talos.random_configuration(6, generator=gen), frame)
    q0 = talos.random_configuration(6, generator=gen)
    from robojac.ik._solve import _path, _problem

    moves = torch.from_numpy(_path(talos, frame).drives)
    assert int(moves.sum()) == 9 and talos.dof == 32
    for numpy in (True, False):  # what each engine is handed: the 9 joints on the path
        pb = _problem(talos, ik.IKConfig(frame=frame), frame, False, torch.float64, torch.device("cpu"), numpy, 1)
        assert torch.equal(torch.as_tensor(pb.drive, device="cpu"), moves.nonzero().squeeze(1))
    out = {}
    for engine in ("numpy", "torch"):
        cfg = ik.IKConfig(frame=frame, engine=engine, rounds=1, restarts=1, fill=1, max_iterations=6)
        out[engine] = ik.solve(talos, target, q0=q0, config=cfg)
        assert torch.equal(out[engine].q[:, ~moves], q0[:, ~moves])
    # the engine adds its damping floor (2e-14 of the diagonal) only to a system that needs it to
    # factor, the numpy loop to every one: six steps on 9 joints carry that to ~3e-9
    assert max_err(out["numpy"].q, out["torch"].q) < 1e-8
    solved = ik.solve(talos, target, config=ik.IKConfig(frame=frame))
    assert bool(solved.converged.all()) and float(solved.pos_err.max()) < 1e-4


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_joints_off_the_path_keep_q0_or_the_middle_of_their_limits_through_restarts(engine, device):
    """A target of TALOS's left hand, solved with restarts (the start table's entries, random
    draws): the 23 joints that do not move the hand (the head, the legs, the other arm) come back
    at ``q0``, or at the middle of their limits without one, whichever start solved the target."""
    talos = Chain.from_urdf(_urdf("talos_reduced.urdf")).to(device)
    frame = "arm_left_7_link"
    gen = torch.Generator().manual_seed(6)
    target = talos.forward_kinematics(talos.random_configuration(5, generator=gen), frame)
    q0 = talos.random_configuration(5, generator=gen)
    off = torch.tensor([n not in talos.moving_joints(frame) for n in talos.joint_names], device=device)
    lo, hi = talos.limits_for(torch.float64, device)
    cfg = ik.IKConfig(frame=frame, engine=engine, fill=40)  # 8 restarts per target in the first round
    for start, expected in ((None, (0.5 * (lo + hi)).expand(5, -1)), (q0, q0)):
        r = ik.solve(talos, target, q0=start, config=cfg)
        assert bool(r.converged.all())
        assert max_err(r.q[:, off], expected[:, off]) < 1e-12


def test_bad_targets_are_refused(device):
    arm = sample_arm().to(device)
    with pytest.raises(ValueError, match=r"target: expected an SE3 pose \(\.\.\., 7\)"):
        ik.solve(arm, torch.zeros(2, 5, device=device))
    with pytest.raises(ValueError, match="unit length"):
        ik.solve(arm, torch.tensor([0.3, 0, 0.5, 0, 0, 0, 2.0], dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="target: quaternion .* tolerance 1e-05 for torch.float32"):
        ik.solve(arm, torch.tensor([0.3, 0, 0.5, 0, 0, 0, 1.1], dtype=torch.float32, device=device))  # 10% off
    with pytest.raises(ValueError, match="NaN"):
        ik.solve(arm, torch.tensor([float("nan"), 0.0, 0.5], device=device))
    with pytest.raises(ValueError, match="frame 'hand' does not exist"):
        ik.solve(arm, torch.tensor([0.3, 0.0, 0.5], device=device), config=ik.IKConfig(frame="hand"))
    with pytest.raises(ValueError, match="IKConfig.restarts: expected an integer >= 1"):
        ik.IKConfig(restarts=0)
    with pytest.raises(ValueError, match=r"q0: expected shape \(\.\.\., 7\)"):
        ik.solve(arm, torch.tensor([0.3, 0.0, 0.5], device=device), q0=torch.zeros(6, device=device))


@pytest.mark.parametrize("urdf", ["panda.urdf", "kuka_iiwa14.urdf", "ur5.urdf", "simple_humanoid.urdf", "talos_reduced.urdf"])
def test_numpy_path_matches_the_chain_on_every_leaf(urdf):
    from robojac.ik._path import SerialPath

    chain = Chain.from_urdf(_urdf(urdf))
    q = chain.random_configuration(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for leaf in chain.tree.leaves():
        try:
            path = SerialPath(chain, leaf)
        except ValueError:  # a frame fixed to the root: nothing to solve for
            continue
        R, p, Jt = path.evaluate(q.numpy().copy())
        X, J = chain.pose_and_jacobian(q, leaf)
        assert np.abs(p - X[:, :3].numpy()).max() < 1e-12
        assert np.abs(R - pp.SE3(X).rotation().matrix().numpy()).max() < 1e-12
        assert np.abs(Jt.transpose(0, 2, 1) - J.numpy()).max() < 1e-12, leaf


def test_rotation_error_is_the_log_including_half_turns():
    from robojac.ik._path import rotation_error

    gen = torch.Generator().manual_seed(4)
    axis = torch.nn.functional.normalize(torch.randn(6, 3, generator=gen, dtype=torch.float64), dim=-1)
    angle = torch.tensor([0.0, 1e-9, 0.3, 2.0, math.pi - 1e-9, math.pi], dtype=torch.float64)
    w = axis * angle[:, None]
    A = pp.so3(torch.randn(6, 3, generator=gen, dtype=torch.float64)).Exp()
    R_target = (pp.so3(w).Exp() * A).matrix().numpy()  # R* = Exp(w) A, so Log(R* A^T) = w
    v, theta = rotation_error(R_target, A.matrix().numpy())
    assert np.abs(theta - angle.numpy()).max() < 1e-7
    ok = angle.numpy() < math.pi - 1e-6  # at pi the axis sign is a free choice
    assert np.abs(v[ok] - w.numpy()[ok]).max() < 1e-7
    assert np.abs(np.abs(v[~ok]) - np.abs(w.numpy()[~ok])).max() < 1e-6


@pytest.mark.parametrize("name, tip", ARMS[1:])
def test_float32_solutions_pass_the_float64_recheck(name, tip, device):
    """The float32 engine's own errors carry round-off: attempts that stopped just under a
    tolerance by them came back ``converged=False`` at 1.0001e-4 m (1 or 2 of 10,000)."""
    chain = _chain(name, tip).to(device)
    target = chain.forward_kinematics(chain.random_configuration(10000, generator=torch.Generator().manual_seed(2026)),
                                      tip).float()
    for seed in range(3):
        result = ik.solve(chain, target, config=ik.IKConfig(seed=seed))
        assert bool(result.converged.all()), (seed, result.pos_err[~result.converged], result.rot_err[~result.converged])


def test_quaternions_to_matrices_in_numpy_match_pypose():
    from robojac.ik._path import quat_to_matrix_np

    X = pp.randn_SO3(200, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    R = quat_to_matrix_np(X.tensor().numpy())
    assert np.abs(R - X.matrix().numpy()).max() < 1e-14
    assert quat_to_matrix_np(X.tensor().numpy()[0]).shape == (3, 3)


def test_each_start_is_the_closest_of_its_candidates(device):
    from robojac.ik._solve import _distance_np, _numpy_targets, _path, _starts

    chain = _chain(*ARMS[0]).to(device)
    target = chain.forward_kinematics(chain.random_configuration(40, generator=torch.Generator().manual_seed(5)),
                                      ARMS[0][1])
    flat = target.tensor().reshape(-1, 7)
    todo, R = np.arange(40), 4
    sel = todo.repeat(R)
    drawn = []

    def distance(q):
        drawn.append(q)
        return _distance_np(_path(chain, ARMS[0][1]), q, _numpy_targets(flat, False), sel, ik.IKConfig(), False)

    cfg = ik.IKConfig(candidates=5)
    starts = _starts(chain, cfg, torch.Generator().manual_seed(0), 40, R, distance)
    (cands,) = drawn
    d_all = distance(cands).reshape(40 * R, 5)
    d_start = distance(np.repeat(starts, 5, axis=0)).reshape(40 * R, 5)[:, 0]
    assert starts.shape == (40 * R, chain.dof)
    assert np.allclose(d_start, d_all.min(1), rtol=0, atol=1e-12)
    assert (d_start < d_all.mean(1)).all()
    # fewer than ``fill`` problems: one draw per start, no kinematics
    _starts(chain, cfg, torch.Generator().manual_seed(0), 1, 16, lambda q: pytest.fail("drew candidates"))


@pytest.mark.parametrize("name, tip", ARMS[:2])
def test_candidates_solve_more_targets_at_the_first_attempt(name, tip, device):
    chain = _chain(name, tip).to(device)
    target = chain.forward_kinematics(chain.random_configuration(1000, generator=torch.Generator().manual_seed(9)), tip)
    one = dict(rounds=1, restarts=1, fill=1, start_table=0)  # random starts (the table replaces them in round 1)
    first = [float(ik.solve(chain, target, config=ik.IKConfig(candidates=k, **one)).converged.float().mean())
             for k in (1, 4)]  # (Panda 55 -> 65%, iiwa14 84 -> 86% here)
    assert first[1] > first[0] + 0.02, first


@pytest.mark.parametrize("queries", [3, 200])  # a scan of the table, a KD-tree search
def test_table_starts_are_the_nearest_entries(queries):
    """Against an independent ranking: the chain's own float64 kinematics (not the table's numpy
    path) and the distance written out, ``|dp|^2 + c^2 |R* - R|_F^2``."""
    from robojac.ik._solve import _table
    from robojac.ik._table import rotation_scale

    chain = _chain(*ARMS[0])
    tip = ARMS[0][1]
    table = _table(chain, tip, 512)
    M = chain.forward_kinematics(torch.from_numpy(table.q), tip).matrix().numpy()
    target = chain.forward_kinematics(chain.random_configuration(queries, generator=torch.Generator().manual_seed(4)),
                                      tip).matrix().numpy()
    c = rotation_scale(1.0, 0.35, False)
    d = ((target[:, None, :3, 3] - M[None, :, :3, 3]) ** 2).sum(-1) + c * c * (
        (target[:, None, :3, :3] - M[None, :, :3, :3]) ** 2).sum((-1, -2))
    idx = table.nearest(target[:, :3, :3], target[:, :3, 3], 5, c)
    assert idx.shape == (queries, 5)
    assert np.allclose(np.take_along_axis(d, idx, 1), np.sort(d, 1)[:, :5], rtol=1e-4, atol=1e-7)
    # position-only IK ranks by position alone
    idx = table.nearest(np.zeros_like(target[:, :3, :3]), target[:, :3, 3], 1, 0.0)
    dp = ((target[:, None, :3, 3] - M[None, :, :3, 3]) ** 2).sum(-1)
    assert np.allclose(np.take_along_axis(dp, idx, 1)[:, 0], dp.min(1), rtol=1e-4, atol=1e-7)


def test_a_table_smaller_than_the_restarts_fills_them_with_random_starts(device):
    from robojac.ik._solve import _numpy_targets, _table
    from robojac.ik._table import rotation_scale

    chain = _chain(*ARMS[0]).to(device)
    tip = ARMS[0][1]
    target = chain.forward_kinematics(chain.random_configuration(2, generator=torch.Generator().manual_seed(3)), tip)
    cfg = ik.IKConfig(start_table=3)
    q, evaluated = _table(chain, tip, 3).starts(chain, torch.Generator().manual_seed(0),
                                                _numpy_targets(target.tensor(), False), np.arange(2), 8,
                                                rotation_scale(1.0, 0.35, False), evaluated=True)
    assert q.shape == (16, chain.dof) and evaluated is None
    table_rows = {tuple(r) for r in _table(chain, tip, 3).q}
    from_table = np.array([tuple(r) in table_rows for r in q]).reshape(2, 8)
    assert from_table[:, :3].all() and not from_table[:, 3:].any()
    assert chain.within_limits(torch.from_numpy(q)).all()
    assert bool(ik.solve(chain, target, config=cfg).converged.all())


@pytest.mark.parametrize("name, tip", ARMS[:2])
def test_the_start_table_solves_more_targets_at_the_first_attempt(name, tip, device):
    chain = _chain(name, tip).to(device)
    target = chain.forward_kinematics(chain.random_configuration(1000, generator=torch.Generator().manual_seed(9)), tip)
    one = dict(rounds=1, restarts=1, fill=1)
    first = [float(ik.solve(chain, target, config=ik.IKConfig(start_table=m, **one)).converged.float().mean())
             for m in (0, 4096)]  # (Panda 70 -> 83%, iiwa14 93 -> 96% here)
    assert first[1] > first[0] + 0.02, first


def test_solve_follows_limits_edited_after_a_solve(device):
    """The start table and the engines' limits are rebuilt when the chain's limits change: targets
    reachable inside the new, narrower limits are all solved inside them (an engine still on the
    old limits finds solutions outside, which the final clamp then spoils)."""
    from robojac.ik._solve import _table

    chain = _chain(*ARMS[0]).to(device)
    tip = ARMS[0][1]
    gen = torch.Generator().manual_seed(6)
    ik.solve(chain, chain.forward_kinematics(chain.random_configuration(64, generator=gen), tip))
    with torch.no_grad():
        chain.upper[3] = -1.5  # the Panda's elbow: [-3.07, -0.07] -> [-3.07, -1.5]
        chain.lower[0], chain.upper[0] = 0.0, 1.0
        chain.lower[2], chain.upper[2] = -0.5, 0.5
    q_table = _table(chain, tip, ik.IKConfig().start_table).q
    assert (q_table[:, 3] <= -1.5).all() and (q_table[:, 0] >= 0).all()
    target = chain.forward_kinematics(chain.random_configuration(200, generator=gen), tip)
    res = ik.solve(chain, target)
    assert chain.within_limits(res.q).all()
    assert bool(res.converged.all()), int((~res.converged).sum())


def test_a_chain_pickles_and_copies_after_a_solve(device):
    """What a solve memoises on the chain (start tables with their KD-trees) is left behind."""
    import copy
    import pickle

    chain = _chain(*ARMS[2]).to(device)
    target = chain.forward_kinematics(chain.random_configuration(100, generator=torch.Generator().manual_seed(8)),
                                      ARMS[2][1])
    first = ik.solve(chain, target)  # 100 targets: the KD-tree is built
    for other in (pickle.loads(pickle.dumps(chain)), copy.deepcopy(chain)):
        again = ik.solve(other, target)
        assert torch.equal(again.q, first.q) and bool(again.converged.all())


@pytest.mark.parametrize("name, tip", ARMS[:2])
def test_numpy_and_torch_engines_take_the_same_steps(name, tip):
    chain = _chain(name, tip)
    gen = torch.Generator().manual_seed(11)
    target = chain.forward_kinematics(chain.random_configuration(8, generator=gen, dtype=torch.float64), tip)
    q0 = chain.random_configuration(8, generator=gen, dtype=torch.float64)
    one = dict(restarts=1, fill=1, rounds=1, max_iterations=6, position_tolerance=1e-12, orientation_tolerance=1e-12)
    a = ik.solve(chain, target, q0=q0, config=ik.IKConfig(engine="numpy", **one))
    b = ik.solve(chain, target, q0=q0, config=ik.IKConfig(engine="torch", **one))
    assert max_err(a.q, b.q) < 1e-8 and torch.equal(a.iterations, b.iterations)
    assert float(a.pos_err.max()) > 0  # six steps from a random start: still moving, not a fixed point
    rest = dict(one, rest_pose=chain.random_configuration(generator=gen), nullspace_gain=0.2)
    a = ik.solve(chain, target, q0=q0, config=ik.IKConfig(engine="numpy", **rest))
    b = ik.solve(chain, target, q0=q0, config=ik.IKConfig(engine="torch", **rest))
    assert max_err(a.q, b.q) < 1e-8


@pytest.mark.cuda
def test_targets_on_the_gpu_are_solved_there():
    chain = _chain("panda.urdf", "panda_hand").to("cuda")
    q = chain.random_configuration(256, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    target = chain.forward_kinematics(q, "panda_hand")
    result = ik.solve(chain, target)
    assert result.q.device.type == "cuda" and result.q.dtype == torch.float32
    assert float(result.converged.float().mean()) >= 0.99
    with pytest.raises(ValueError, match="IKConfig.engine: 'numpy' runs on the CPU"):
        ik.solve(chain, target, config=ik.IKConfig(engine="numpy"))


def test_targets_file_and_cli(tmp_path, capsys):
    from robojac.cli import main

    arm_urdf = _urdf("ur5.urdf")
    chain = Chain.from_urdf(arm_urdf, tip="ee_link")
    X = chain.forward_kinematics(chain.random_configuration(3, generator=torch.Generator().manual_seed(8)), "ee_link")
    rows = X.tensor().numpy()
    good = tmp_path / "targets.txt"
    good.write_text("# x y z qx qy qz qw\n" + "\n".join(", ".join(f"{v:.12f}" for v in r) for r in rows) + "\n\n")
    assert ik.read_targets(good).shape == (3, 7)
    out = tmp_path / "q.txt"
    assert main(["ik", str(arm_urdf), "--tip", "ee_link", "--targets", str(good), "--out", str(out)]) == 0
    table = np.loadtxt(out)
    assert table.shape == (3, chain.dof + 3) and (table[:, chain.dof] == 1).all() and (table[:, chain.dof + 1] < 1e-4).all()
    assert main(["ik", str(arm_urdf), "--tip", "ee_link", "--target", *map(str, rows[0][:3])]) == 0
    assert "converged=True" in capsys.readouterr().out

    for body, match in [("0.1 0.2 0.3\n0.1 0.2\n", r"targets.txt:2: expected 3 numbers"),
                        ("0.1 0.2 0.3\n0.1 0.2 0.3 0 0 0 1\n", r"targets.txt:2: expected 3 numbers like the lines before"),
                        ("# header\n0.1 0.2 0.3 0 0 0 2\n", r"targets.txt:2: quaternion .* norm 2"),
                        ("0.1 zero 0.3\n", r"targets.txt:1: expected numbers"),
                        ("# nothing\n", "no targets")]:
        bad = tmp_path / "targets.txt"
        bad.write_text(body)
        with pytest.raises(ValueError, match=match):
            ik.read_targets(bad)
    assert main(["ik", str(arm_urdf), "--tip", "ee_link", "--targets", str(bad)]) == 2
    assert "robojac ik: error" in capsys.readouterr().err


@pytest.mark.parametrize("name, tip", ARMS)
def test_position_only_float32_batches_solve(name, tip, device):
    """Position-only targets in float32 on the torch engine (any batch over 512 on the CPU, every
    GPU batch, the CLI's --targets default).  The arm's last joint does not move the frame's
    position (its axis runs through it): before the damping's ridge was made relative to the
    system and its precision, float32 refused every step and solved 1 of 1,000 Panda targets."""
    chain = _chain(name, tip).to(device)
    q = chain.random_configuration(600, generator=torch.Generator().manual_seed(7))
    P = chain.forward_kinematics(q, frame=tip).tensor()[:, :3].float()
    result = ik.solve(chain, P, config=ik.IKConfig(engine="torch"))
    assert result.q.dtype == torch.float32 and result.q.device == device
    check = chain.forward_kinematics(result.q.double(), frame=tip).tensor()[:, :3]  # float64 re-check
    err = (check - P.double()).norm(dim=-1)
    assert int(result.converged.sum()) >= 599 and float(err[result.converged].max()) < 1e-4 * 1.001


# ---- gradients through the answer ----------------------------------------------------------------
_TIGHT = ik.IKConfig(position_tolerance=1e-13, orientation_tolerance=1e-13, max_iterations=40)


def test_ik_answers_are_differentiable_against_central_differences(device):
    """dq/d(left perturbation of the target) of a 6-DoF arm, against re-solving at +-h from the
    solution (float64): relative error < 1e-5."""
    ur5 = _chain("ur5.urdf", "ee_link").to(device)
    q = ur5.random_configuration(2, generator=torch.Generator().manual_seed(11))
    T = ur5.forward_kinematics(q, "ee_link")

    def answer(xi):  # robojac's plain-tensor ops: pypose's own backward gives tangent, not raw, gradients
        return ik.solve(ur5, lie.se3_compose(lie.se3_exp(xi), T.tensor()), config=_TIGHT, q0=q).q

    xi = torch.zeros(2, 6, dtype=torch.float64, device=device)
    J = torch.autograd.functional.jacobian(answer, xi.requires_grad_())  # (2, 6, 2, 6)
    h = 1e-6
    for k in range(6):
        e = torch.zeros_like(xi)
        e[:, k] = h
        fd = (answer(xi.detach() + e) - answer(xi.detach() - e)) / (2 * h)  # (2, 6)
        for b in range(2):
            got = J[b, :, b, k]
            assert float((got - fd[b]).norm()) <= 1e-5 * max(float(fd[b].norm()), 1e-3)


def test_a_redundant_arm_follows_the_target_twist(device):
    """7-DoF Panda: ``J(q) dq/dxi`` is the target's twist map (the damped least-norm derivative
    moves the hand exactly as the target moves)."""
    panda = _chain("panda.urdf", "panda_hand").to(device)
    q = panda.random_configuration(3, generator=torch.Generator().manual_seed(12))
    T = panda.forward_kinematics(q, "panda_hand")
    xi = torch.zeros(3, 6, dtype=torch.float64, device=device, requires_grad=True)
    result = ik.solve(panda, lie.se3_compose(lie.se3_exp(xi), T.tensor()), config=_TIGHT, q0=q)
    assert result.converged.all() and result.q.requires_grad
    dq = torch.stack([torch.autograd.grad(result.q[:, j].sum(), xi, retain_graph=True)[0] for j in range(7)], 1)
    Jq = panda.jacobian(result.q.detach())  # (3, 6, 7): [v; w] in the root frame
    p = T.translation()
    expected = torch.zeros(3, 6, 6, dtype=torch.float64, device=device)  # d[v; w]/d[rho; phi], left perturbation
    expected[:, :3, :3] = torch.eye(3, dtype=torch.float64, device=device)
    expected[:, :3, 3:] = -lie.skew(p)
    expected[:, 3:, 3:] = torch.eye(3, dtype=torch.float64, device=device)
    assert max_err(Jq @ dq, expected) < 1e-5  # the damping (1e-10 of the Hessian) leaves ~1e-6


def test_gradcheck_through_ik():
    arm = planar_arm((1.0, 0.7))
    target = torch.tensor([[1.2, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    cfg = ik.IKConfig(position_tolerance=1e-13, max_iterations=40)
    q0 = torch.tensor([[0.3, 0.6]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ik.solve(arm, t, config=cfg, q0=q0).q, (target,), eps=1e-6, atol=1e-6)


def test_a_target_without_grad_costs_nothing_extra(device):
    arm = sample_arm().to(device)
    target = arm.forward_kinematics(arm.random_configuration(4), frame="tool")
    r = ik.solve(arm, target)
    assert not r.q.requires_grad and r.q.grad_fn is None


@pytest.mark.parametrize("position_only", [False, True])
def test_the_target_factor_jacobian_equals_automatic_differentiation(position_only, device):
    """The implicit backward's Gauss-Newton Hessian comes from the target factor's closed-form
    Jacobian (the chain's geometric one and Jr^-1 of the rotation error); away from the solution
    (errors of ~1 rad) it equals forward-mode differentiation of the factor's own residual."""
    from robojac.ik._targets import TargetResidual as _TargetResidual
    from robojac.jacobian import batch_jacobian

    panda = _chain("panda.urdf", "panda_hand").to(device)
    g = torch.Generator().manual_seed(21)
    q = panda.random_configuration(5, generator=g)
    target = panda.forward_kinematics(panda.random_configuration(5, generator=g), "panda_hand").tensor()
    if position_only:
        target = target[:, :3]
    drive = torch.arange(7, device=device)  # the arm's joints; the fingers stay
    w = torch.tensor([1.0] * 3 + ([] if position_only else [0.35] * 3), dtype=torch.float64, device=device)
    f = _TargetResidual(panda, "panda_hand", q, drive, w, position_only)
    r, (J,) = f.value_and_jacobians(q[:, None, :7], target[:, None])
    auto = batch_jacobian(lambda Q: f(Q[:, None], target[:, None])[:, 0], q[:, :7].clone())
    assert max_err(r[:, 0], f(q[:, None, :7], target[:, None])[:, 0]) < 1e-14
    assert max_err(J[:, 0], auto) < 1e-10


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_path_tracked_from_the_last_answer_stays_on_its_branch(engine):
    """Each waypoint of a figure eight solved from the last answer (``q0``): the q0 attempt is
    made alone first, so a redundant arm follows its path without jumping to another branch of
    its solutions (it had jumped by up to 3 rad, when the table's starts beside q0 solved first)."""
    arm = planar_arm((1.0, 0.8, 0.5))
    s = torch.linspace(0, 2 * math.pi, 61, dtype=torch.float64, device="cpu")
    eight = torch.stack((1.3 + 0.45 * torch.sin(s), 0.6 * torch.sin(s) * torch.cos(s), torch.zeros_like(s)), -1)
    q = torch.tensor([0.3, 0.6, 0.6], dtype=torch.float64, device="cpu")
    cfg = ik.IKConfig(position_tolerance=1e-6, engine=engine)
    steps = []
    for target in eight:
        r = ik.solve(arm, target, q0=q, config=cfg)
        assert bool(r.converged)
        d = r.q - q
        steps.append(float(torch.atan2(torch.sin(d), torch.cos(d)).abs().max()))
        q = r.q
    assert max(steps[1:]) < 0.3, max(steps[1:])  # between waypoints (the first comes from the rest pose)
