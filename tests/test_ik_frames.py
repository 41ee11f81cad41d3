"""robojac.ik.solve of several frames at once (``{frame: target}``): a humanoid's hands and feet,
checked by Pinocchio; gradients against central differences and the targets' twists; refusals."""

import numpy as np
import pytest
import torch

from robojac import ik, lie
from robojac.data import path as data_path
from robojac.kinematics import Chain

from helpers import max_err, pinocchio_configuration

HANDS = ["gripper_left_base_link", "gripper_right_base_link"]
FEET = ["left_sole_link", "right_sole_link"]
_TIGHT = ik.IKConfig(position_tolerance=1e-12, orientation_tolerance=1e-12, max_iterations=40)


@pytest.fixture(scope="module")
def talos():
    return Chain.from_urdf(data_path("robots/talos_reduced.urdf"))


def _targets(chain, frames, B, seed, dtype=torch.float64, device="cpu"):
    """``({frame: pose (B, 7)}, the configurations that reach them)``."""
    q = chain.random_configuration(B, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    X = chain.forward_kinematics_tensor(q, frames)
    return {f: X[:, k] for k, f in enumerate(frames)}, q


def _pinocchio_errors(q, targets):
    """Each frame's position and rotation errors ``(B, K)`` of ``q``, by Pinocchio in float64."""
    pin = pytest.importorskip("pinocchio")
    model = pin.buildModelFromUrdf(str(data_path("robots/talos_reduced.urdf")))
    data = model.createData()
    pe, re = np.zeros((len(q), len(targets))), np.zeros((len(q), len(targets)))
    chain = Chain.from_urdf(data_path("robots/talos_reduced.urdf"))
    for b, qb in enumerate(q.detach().cpu().double()):
        pin.framesForwardKinematics(model, data, pinocchio_configuration(pin, model, chain, qb))
        for k, (frame, T) in enumerate(targets.items()):
            M = data.oMf[model.getFrameId(frame)]
            t = T[b].detach().cpu().double()
            pe[b, k] = np.linalg.norm(M.translation - t[:3].numpy())
            if t.shape[-1] == 7:
                R = lie.quat_to_matrix(t[3:]).numpy()
                re[b, k] = np.linalg.norm(pin.log3(R.T @ M.rotation))
    return pe, re


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_both_hands_and_feet_reach_their_targets_as_pinocchio_measures(talos, dtype, engine, device):
    """``auto`` runs these 8 targets' rounds on the numpy loop on the CPU, ``torch`` on the engine."""
    chain = talos.to(device)
    targets, _ = _targets(chain, HANDS + FEET, 8, seed=1, dtype=dtype, device=device)
    cfg = ik.IKConfig(engine=engine)
    r = ik.solve(chain, targets, config=cfg)
    assert r.q.shape == (8, chain.dof) and r.q.dtype == dtype and r.q.device.type == device.type
    assert r.pos_err.shape == r.rot_err.shape == (8, 4) and r.cost.shape == r.converged.shape == (8,)
    assert bool(r.converged.all()) and set(r.reason) == {"tolerance"}
    pe, re = _pinocchio_errors(r.q, targets)
    assert pe.max() < cfg.position_tolerance and re.max() < cfg.orientation_tolerance
    assert np.allclose(pe, r.pos_err.cpu().double().numpy(), atol=1e-9)
    assert bool(chain.within_limits(r.q).all())
    w = cfg.orientation_weight / cfg.position_weight
    expected = 0.5 * cfg.position_weight**2 * (pe**2 + (w * re) ** 2).sum(1)
    # a float32 target's quaternion is a unit one to ~6e-8, which the two read differently
    atol = 1e-14 if dtype == torch.float64 else 1e-12
    assert np.allclose(r.cost.cpu().double().numpy(), expected, rtol=1e-3, atol=atol)


def test_positions_and_poses_mix_and_joints_that_move_no_frame_keep_their_start(talos, device):
    chain = talos.to(device)
    poses, _ = _targets(chain, HANDS + FEET, 5, seed=2, device=device)
    targets = {HANDS[0]: poses[HANDS[0]], HANDS[1]: poses[HANDS[1]][:, :3], FEET[0]: poses[FEET[0]][:, :3]}
    q0 = chain.random_configuration(5, generator=torch.Generator().manual_seed(3)).to(device)
    r = ik.solve(chain, targets, q0=q0)
    assert bool(r.converged.all())
    assert float(r.rot_err[:, 1:].abs().max()) == 0.0 and float(r.rot_err[:, 0].max()) > 0
    pe, re = _pinocchio_errors(r.q, targets)
    assert pe.max() < 1e-4 and re[:, 0].max() < 1e-3
    still = [k for k, n in enumerate(chain.joint_names) if n.startswith(("head", "leg_right", "gripper"))]
    assert max_err(r.q[:, still], q0[:, still]) == 0.0
    lo, hi = chain.limits_for(torch.float64, device)  # without q0: the middle of their limits
    r = ik.solve(chain, targets)
    assert bool(r.converged.all()) and max_err(r.q[:, still], (0.5 * (lo + hi))[still].expand(5, -1)) < 1e-12


def test_unreachable_frames_fail_gracefully_and_the_others_still_solve(talos, device):
    chain = talos.to(device)
    targets, _ = _targets(chain, HANDS, 3, seed=4, device=device)
    far = targets[HANDS[1]].clone()
    far[1, :3] += torch.tensor([3.0, 0.0, 0.0], dtype=far.dtype, device=device)  # 3 m beyond the right arm
    r = ik.solve(chain, {HANDS[0]: targets[HANDS[0]], HANDS[1]: far}, config=ik.IKConfig(rounds=4))
    assert r.converged.tolist() == [True, False, True]
    assert r.reason[1] in ("no_progress", "max_rounds") and r.reason[0] == r.reason[2] == "tolerance"
    assert bool(torch.isfinite(r.q).all()) and bool(chain.within_limits(r.q).all())
    assert float(r.pos_err[1, 1]) > 1.0 and float(r.cost[1]) > 0.5
    assert r.history.shape[1:] == (3,) and bool((r.history[1:, 1] <= r.history[:-1, 1]).all())


def test_the_numpy_loop_takes_the_engines_steps(talos):
    """On the CPU both paths run: the numpy loop (``engine="numpy"``, and ``"auto"`` for small
    rounds) and the solver engine.  From the same starts they take the same steps, on a mix of
    poses, positions and a frame fixed to the root."""
    poses, _ = _targets(talos, HANDS + FEET, 6, seed=21)
    targets = {HANDS[0]: poses[HANDS[0]], HANDS[1]: poses[HANDS[1]][:, :3], FEET[0]: poses[FEET[0]],
               "base_link": torch.tensor([0, 0, 0, 0, 0, 0, 1.0], dtype=torch.float64).expand(6, 7)}
    q0 = talos.random_configuration(6, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    out = {}
    for engine in ("numpy", "torch"):
        cfg = ik.IKConfig(engine=engine, rounds=1, restarts=1, fill=1, max_iterations=6)
        out[engine] = ik.solve(talos, targets, q0=q0, config=cfg)
    assert torch.equal(out["numpy"].iterations, out["torch"].iterations)
    # as one frame's two paths (tests/test_ik.py): the engine adds its damping floor only where a
    # system needs it to factor, the numpy loop to every one; six steps on 28 joints carry that to ~1e-8
    assert max_err(out["numpy"].q, out["torch"].q) < 1e-7
    assert max_err(out["numpy"].pos_err, out["torch"].pos_err) < 1e-8
    assert max_err(out["numpy"].q, q0) > 0.1  # the steps went somewhere


def test_the_numpy_paths_give_the_chains_poses_and_jacobians(talos):
    """The numpy evaluator of several frames against the chain's own kinematics in torch: every
    frame of TALOS at once, the root and the mimic-driven grippers' links among them."""
    from robojac.ik._path import FramePaths

    frames = tuple(talos.frame_names)
    q = talos.random_configuration(5, generator=torch.Generator().manual_seed(23), dtype=torch.float64)
    X, J = talos.poses_and_jacobians(q, frames)
    R, p, Jt = FramePaths(talos, frames).evaluate(q.numpy().copy())
    assert np.abs(p - X[..., :3].numpy()).max() < 1e-12
    assert np.abs(R - lie.quat_to_matrix(X[..., 3:]).numpy()).max() < 1e-12
    K = len(frames)
    assert np.abs(Jt.reshape(5, talos.dof, K, 6).transpose(0, 2, 3, 1) - J.numpy()).max() < 1e-12
    R, p, none = FramePaths(talos, frames[:2]).evaluate(q.numpy().copy(), jacobian=False)
    assert none is None and p.shape == (5, 2, 3)


@pytest.mark.parametrize("queries", [3, 100])  # a scan of the table, a KD-tree search
def test_the_frames_start_table_gives_the_nearest_entries(talos, queries):
    """Against an independent ranking: the chain's own float64 kinematics and the distance
    written out, each frame's ``s_k^2 (|dp|^2 + c^2 |R* - R|_F^2)`` summed, a position target's
    without its rotation, a frame weighed 3x."""
    from robojac.ik._solve import _frames_table
    from robojac.ik._table import rotation_scale

    frames = (HANDS[0], HANDS[1], FEET[0])
    table = _frames_table(talos, frames, 512)
    M = talos.forward_kinematics_tensor(torch.from_numpy(table.q), frames)  # (512, 3, 7)
    Mp, MR = M[..., :3].numpy(), lie.quat_to_matrix(M[..., 3:]).numpy()
    targets, _ = _targets(talos, list(frames), queries, seed=24)
    T = torch.stack([targets[f] for f in frames], 1)
    Tp, TR = T[..., :3].numpy(), lie.quat_to_matrix(T[..., 3:]).numpy()
    c = rotation_scale(1.0, 0.35, False)
    cs, s2 = np.array([c, 0.0, c]), np.array([1.0, 1.0, 9.0])  # the right hand by position alone; the foot 3x
    d = sum(s2[k] * (((Tp[:, None, k] - Mp[None, :, k]) ** 2).sum(-1)
                     + cs[k] ** 2 * ((TR[:, None, k] - MR[None, :, k]) ** 2).sum((-1, -2))) for k in range(3))
    idx = table.nearest(TR, Tp, 5, cs, s2)
    assert idx.shape == (queries, 5)
    assert np.allclose(np.take_along_axis(d, idx, 1), np.sort(d, 1)[:, :5], rtol=1e-4, atol=1e-7)
    unweighted = table.nearest(TR, Tp, 5, cs)
    assert not np.array_equal(unweighted, idx)  # the weight changed the ranking


def test_the_start_table_solves_more_target_sets_at_the_first_attempt(talos):
    targets, _ = _targets(talos, HANDS + FEET, 40, seed=25)
    one = dict(rounds=1, restarts=1, fill=1, max_iterations=15)
    first = [ik.solve(talos, targets, config=ik.IKConfig(start_table=m, **one)) for m in (0, 4096)]
    solved = [float(r.converged.double().mean()) for r in first]
    assert solved[1] > solved[0] + 0.1, solved  # (32 -> 60% here)


def test_batch_shapes_empty_batches_and_a_single_frame(talos, device):
    chain = talos.to(device)
    targets, _ = _targets(chain, FEET, 6, seed=5, device=device)
    shaped = {f: t.reshape(2, 3, 7) for f, t in targets.items()}
    r = ik.solve(chain, shaped)
    assert r.q.shape == (2, 3, chain.dof) and r.pos_err.shape == (2, 3, 2) and r.converged.shape == (2, 3)
    assert bool(r.converged.all())
    empty = ik.solve(chain, {f: t[:0] for f, t in targets.items()})
    assert empty.q.shape == (0, chain.dof) and empty.pos_err.shape == (0, 2) and empty.reason == ()
    one = ik.solve(chain, {FEET[0]: targets[FEET[0]][0]})
    assert one.q.shape == (chain.dof,) and one.pos_err.shape == (1,) and bool(one.converged)
    # a frame no joint moves: no steps; converged says whether it is already there
    root = torch.tensor([[0, 0, 0, 0, 0, 0, 1.0], [0.1, 0, 0, 0, 0, 0, 1.0]], dtype=torch.float64, device=device)
    fixed = ik.solve(chain, {"base_link": root})
    assert fixed.converged.tolist() == [True, False] and fixed.reason == ("tolerance", "no_moving_joints")
    assert int(fixed.iterations.sum()) == 0 and abs(float(fixed.pos_err[1, 0]) - 0.1) < 1e-12


def test_gradients_match_central_differences_where_the_answer_is_unique(talos, device):
    """Both feet as poses: 12 joints for 12 constraints, so re-solving at +-h from the answer
    (float64) finds the same branch; dq/d(target entries) within 1e-5 of the differences."""
    chain = talos.to(device)
    targets, _ = _targets(chain, FEET, 2, seed=6, device=device)
    T = torch.stack([targets[f] for f in FEET], 1)
    Tg = T.clone().requires_grad_()
    r = ik.solve(chain, {f: Tg[:, k] for k, f in enumerate(FEET)}, config=_TIGHT)
    assert bool(r.converged.all()) and r.q.requires_grad
    legs = [k for k, n in enumerate(chain.joint_names) if n.startswith("leg")]
    h = 1e-6
    for j in legs[:3] + legs[6:8]:
        (g,) = torch.autograd.grad(r.q[:, j].sum(), Tg, retain_graph=True)
        for k, i in ((0, 0), (0, 2), (1, 1)):
            def answer(sign):
                Tp = T.clone()
                Tp[:, k, i] += sign * h
                return ik.solve(chain, {f: Tp[:, n] for n, f in enumerate(FEET)}, q0=r.q.detach(), config=_TIGHT).q
            fd = (answer(1) - answer(-1))[:, j] / (2 * h)
            assert float((g[:, k, i] - fd).abs().max()) <= 1e-5 * max(float(fd.abs().max()), 1e-2), (j, k, i)


def test_redundant_frames_follow_their_targets_twists(talos, device):
    """Both hands as poses (16 joints for 12 constraints: the arms share the torso): the damped
    least-norm derivative moves each hand exactly as its target moves, ``J_k(q) dq/dxi_k``
    equal to the twist map of a left perturbation ``xi_k``, and not at all as the other moves."""
    chain = talos.to(device)
    targets, _ = _targets(chain, HANDS, 2, seed=7, device=device)
    xi = torch.zeros(2, 2, 6, dtype=torch.float64, device=device, requires_grad=True)
    moved = {f: lie.se3_compose(lie.se3_exp(xi[:, k]), targets[f]) for k, f in enumerate(HANDS)}
    r = ik.solve(chain, moved, config=_TIGHT)
    assert bool(r.converged.all())
    dq = torch.stack([torch.autograd.grad(r.q[:, j].sum(), xi, retain_graph=True)[0] for j in range(chain.dof)], -1)
    _, J = chain.poses_and_jacobians(r.q.detach(), HANDS)  # (2, K, 6, dof)
    for k, f in enumerate(HANDS):
        p = targets[f][:, :3]
        twist = torch.zeros(2, 6, 6, dtype=torch.float64, device=device)
        twist[:, :3, :3] = twist[:, 3:, 3:] = torch.eye(3, dtype=torch.float64, device=device)
        twist[:, :3, 3:] = -lie.skew(p)
        assert max_err(J[:, k] @ dq[:, k].transpose(-1, -2), twist) < 1e-5
        assert max_err(J[:, k] @ dq[:, 1 - k].transpose(-1, -2), torch.zeros_like(twist)) < 1e-5


def test_gradcheck_through_several_frames(talos):
    """Both feet as poses moved by left perturbations ``xi``: 12 joints for 12 constraints, at
    a configuration away from a singularity (seed 8's is near one, its smallest singular value
    6.5e-4: derivatives of ~900, where the damping of 1e-10 and the differences' step part ways)."""
    targets, q = _targets(talos, FEET, 1, seed=6)
    legs = [k for k, n in enumerate(talos.joint_names) if n.startswith("leg")]
    _, J = talos.poses_and_jacobians(q, FEET)
    assert float(torch.linalg.svdvals(J[..., legs].reshape(12, 12)).min()) > 0.05

    def answer(xi):
        moved = {f: lie.se3_compose(lie.se3_exp(xi[:, k]), targets[f]) for k, f in enumerate(FEET)}
        return ik.solve(talos, moved, config=_TIGHT, q0=q).q[:, legs]

    xi = torch.zeros(1, 2, 6, dtype=torch.float64, requires_grad=True)
    # each re-solve stops within 1e-12 of its targets, which the step of 1e-6 and the legs'
    # conditioning (smallest singular value 0.06) carry to ~1e-5 in the differences
    assert torch.autograd.gradcheck(answer, (xi,), eps=1e-6, atol=5e-5, rtol=1e-4)


def test_a_target_set_without_grad_costs_nothing_extra(talos, device):
    targets, _ = _targets(talos.to(device), FEET, 2, seed=9, device=device)
    r = ik.solve(talos, targets)
    assert not r.q.requires_grad and r.q.grad_fn is None


def test_the_frames_factor_jacobian_equals_automatic_differentiation(talos, device):
    from robojac.ik._frames import FramesResidual, weights
    from robojac.jacobian import batch_jacobian

    chain = talos.to(device)
    frames = HANDS + FEET[:1]
    targets, _ = _targets(chain, frames, 4, seed=10, device=device)
    T = torch.stack([targets[f] for f in frames], 1)
    position_only = torch.tensor([False, True, False], device=device)
    q = chain.random_configuration(4, generator=torch.Generator().manual_seed(11)).to(device)  # errors of ~1 rad
    drive = torch.arange(chain.dof, device=device)
    w = weights(ik.IKConfig(), tuple(frames), position_only, torch.float64, device)
    f = FramesResidual(chain, tuple(frames), q, drive, w, position_only, exact=True)
    r, (J,) = f.value_and_jacobians(q[:, None], T[:, None])
    auto = batch_jacobian(lambda Q: f(Q[:, None], T[:, None])[:, 0], q.clone())
    assert max_err(r, f(q[:, None], T[:, None])) < 1e-14
    assert max_err(J[:, 0], auto) < 1e-10
    assert float(r.reshape(4, 3, 6)[:, 1, 3:].abs().max()) == 0.0


def test_frame_weights_decide_which_frame_comes_closer(talos, device):
    """An elbow and a hand of one arm at positions from different configurations (not reachable
    together): the heavier frame (``IKConfig.frame_weights``) comes closer. At a minimum where
    the two errors trade off along one line, 10x the weight gives 100x the closeness (here
    38-108x); the test asks for 10x. ``cost`` is the weighted errors' ``0.5 |e|^2``."""
    chain = talos.to(device)
    frames = ["arm_left_4_link", "gripper_left_base_link"]
    g = torch.Generator().manual_seed(14)
    X1 = chain.forward_kinematics_tensor(chain.random_configuration(3, generator=g).to(device), frames)
    X2 = chain.forward_kinematics_tensor(chain.random_configuration(3, generator=g).to(device), frames)
    targets = {frames[0]: X1[:, 0, :3], frames[1]: X2[:, 1, :3]}
    for heavy in (0, 1):
        cfg = ik.IKConfig(frame_weights={frames[heavy]: 10.0}, rounds=4)
        r = ik.solve(chain, targets, config=cfg)
        assert not bool(r.converged.any()) and set(r.reason) <= {"no_progress", "max_rounds"}
        assert bool((10 * r.pos_err[:, heavy] < r.pos_err[:, 1 - heavy]).all()), (heavy, r.pos_err)
        s2 = torch.ones(2, dtype=torch.float64, device=device)
        s2[heavy] = 100.0
        assert max_err(r.cost, 0.5 * (s2 * r.pos_err**2).sum(-1)) < 1e-12


def test_bad_target_sets_are_refused(talos, device):
    targets, _ = _targets(talos.to(device), FEET, 2, seed=12, device=device)
    a, b = targets[FEET[0]], targets[FEET[1]]
    cases = [
        ({}, "non-empty mapping"),
        ({"no_such_link": a}, "no_such_link"),
        ({FEET[0]: a, 3: b}, "frame names as keys"),
        ({FEET[0]: a, FEET[1]: b[:1]}, r"target\['right_sole_link'\]: expected the batch shape"),
        ({FEET[0]: a, FEET[1]: b.float()}, r"target\['right_sole_link'\]: expected torch.float64"),
        ({FEET[0]: a, FEET[1]: b[:, :5]}, r"target\['right_sole_link'\]: expected an SE3 pose"),
        ({FEET[0]: a, FEET[1]: b.clone().fill_(float("nan"))}, r"target\['right_sole_link'\]"),
    ]
    for target, message in cases:
        with pytest.raises(ValueError, match=message):
            ik.solve(talos, target)
    with pytest.raises(ValueError, match="IKConfig.frame: the targets name their frames"):
        ik.solve(talos, targets, config=ik.IKConfig(frame=FEET[0]))
    if device.type != "cpu":
        with pytest.raises(ValueError, match="IKConfig.engine: 'numpy' runs on the CPU"):
            ik.solve(talos, targets, config=ik.IKConfig(engine="numpy"))
    with pytest.raises(ValueError, match="q0"):
        ik.solve(talos, targets, q0=torch.zeros(3, talos.dof, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match=r"IKConfig.frame_weights: 'no_such_link' is not one of the targets' frames"):
        ik.solve(talos, targets, config=ik.IKConfig(frame_weights={"no_such_link": 2.0}))
    with pytest.raises(ValueError, match="IKConfig.frame_weights: weighs the frames of a mapping"):
        ik.solve(talos, a, config=ik.IKConfig(frame=FEET[0], frame_weights={FEET[0]: 2.0}))
    for bad, message in (({FEET[0]: -1.0}, r"frame_weights\['left_sole_link'\]: expected a finite number > 0"),
                         ({FEET[0]: float("nan")}, r"frame_weights\['left_sole_link'\]"),
                         ({3: 1.0}, "expected frame names as keys"), ([FEET[0]], "expected a mapping")):
        with pytest.raises(ValueError, match=message):
            ik.IKConfig(frame_weights=bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_target_sets_come_back_in_their_dtype(talos, dtype, device):
    """Solved in float32 (the engine's working precision), returned in the targets' dtype inside
    the limits, the errors those of the returned q; gradients reach every target."""
    chain = talos.to(device)
    targets, _ = _targets(chain, FEET, 3, seed=13, device=device)
    half = {f: t.to(dtype).requires_grad_() for f, t in targets.items()}
    cfg = ik.IKConfig(position_tolerance=2e-2, orientation_tolerance=5e-2)  # what a half-precision q can meet
    r = ik.solve(chain, half, config=cfg)
    assert r.q.dtype == r.pos_err.dtype == dtype and bool(r.converged.all())
    assert bool(chain.within_limits(r.q.double()).all())
    X = chain.forward_kinematics_tensor(r.q.detach().double(), FEET)
    pe = torch.stack([(X[:, k, :3] - half[f].detach().double()[:, :3]).norm(dim=-1) for k, f in enumerate(FEET)], 1)
    assert max_err(r.pos_err.double(), pe) <= torch.finfo(dtype).eps * float(pe.max())  # one rounding
    r.q.float().sum().backward()
    assert all(t.grad.dtype == dtype and bool(torch.isfinite(t.grad).all()) and float(t.grad.abs().max()) > 0
               for t in half.values())


def test_the_cli_places_several_frames(talos, tmp_path, capsys):
    from robojac.cli import main

    urdf = str(data_path("robots/talos_reduced.urdf"))
    targets, _ = _targets(talos, FEET + HANDS[:1], 1, seed=15)
    args = ["ik", urdf]
    for k, (f, t) in enumerate(targets.items()):
        values = t[0, :3] if k == 2 else t[0]  # the hand by its position
        args += ["--frame-target", f, *(f"{v:.12f}" for v in values.tolist())]
    out = tmp_path / "q.txt"
    assert main(args + ["--frame-weight", FEET[0], "2", "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr().out
    assert "converged=True" in printed and f"{HANDS[0]} (position)" in printed and (tmp_path / "p.png").exists()
    row = np.loadtxt(out)
    assert row.shape == (talos.dof + 1 + 6,) and row[talos.dof] == 1 and (row[talos.dof + 1 :] < 1e-3).all()
    pe, _ = _pinocchio_errors(torch.from_numpy(row[None, : talos.dof]), {f: t for f, t in targets.items()})
    assert pe[0, :2].max() < 1e-4  # the feet, by Pinocchio (the hand's target was its position alone)
    far = ["ik", urdf, "--frame-target", FEET[0], "3", "0", "0"]
    assert main(far) == 1  # out of reach: did not converge
    for bad, message in ((args + ["--tip", FEET[0]], "--tip: --frame-target names its frames"),
                         (["ik", urdf, "--frame-target", FEET[0], "0", "x", "0"], "expected numbers"),
                         (["ik", urdf, "--frame-target", FEET[0], "0", "0"], "expected 3 numbers"),
                         (["ik", urdf, "--frame-target", FEET[0], "0", "0", "0", "--frame-target", FEET[0], "0", "0",
                           "0"], "'left_sole_link' given twice"),
                         (args + ["--frame-weight", "nope", "2"], "'nope' is not one of the --frame-target frames"),
                         (args + ["--frame-weight", FEET[0], "-1"], "--frame-weight left_sole_link: expected a finite"),
                         (["ik", urdf, "--target", "0", "0", "0"], "--tip: the frame to place"),
                         (["ik", urdf, "--frame-target", "no_such_link", "0", "0", "0"], "no_such_link")):
        assert main(bad) == 2, bad
        err = capsys.readouterr().err
        assert message in err, (message, err)
