"""Hand-eye calibration against OpenCV's calibrateHandEye / calibrateRobotWorldHandEye, run on
the same data in the same test."""

import math

import numpy as np
import pytest
import torch

from robojac import lie
from robojac.calibration import HandEyeConfig, hand_eye, robot_world_hand_eye
from robojac.optim import RobustKernel

from helpers import max_err

cv2 = pytest.importorskip("cv2")
CV = {"tsai": "CALIB_HAND_EYE_TSAI", "park": "CALIB_HAND_EYE_PARK", "daniilidis": "CALIB_HAND_EYE_DANIILIDIS",
      "horaud": "CALIB_HAND_EYE_HORAUD", "andreff": "CALIB_HAND_EYE_ANDREFF"}


def poses(g, n, rot, trans, device):
    xi = torch.cat((torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu") * trans,
                    torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu") * rot), -1)
    return lie.se3_exp(xi).to(device)


def scene(seed, device, n=30):
    """A camera on a gripper (X = T_gripper_camera) looking at a fixed target (Z = T_base_target)."""
    g = torch.Generator().manual_seed(seed)
    X, Z = poses(g, 1, 0.5, 0.1, device)[0], poses(g, 1, 0.5, 0.5, device)[0]
    Tg = poses(g, n, 0.6, 0.3, device)
    Tc = lie.se3_compose(lie.se3_inverse(lie.se3_compose(Tg, X.expand(n, 7))), Z.expand(n, 7))
    return g, X, Z, Tg, Tc


def noisy(T, g, mm=0.1, deg=0.05):
    """The camera's target poses with 0.1 mm position noise and 0.05 deg rotation noise."""
    n = T.shape[0]
    rot = torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu").to(T.device) * math.radians(deg)
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64, device="cpu").to(T.device) * mm * 1e-3
    return torch.cat((T[:, :3] + pos, lie.quat_mul(lie.so3_exp(rot), T[:, 3:])), -1)


def opencv(Tg, Tc, method):
    Mg, Mc = lie.se3_to_matrix(Tg).cpu().numpy(), lie.se3_to_matrix(Tc).cpu().numpy()
    R, t = cv2.calibrateHandEye([M[:3, :3] for M in Mg], [M[:3, 3] for M in Mg], [M[:3, :3] for M in Mc],
                                [M[:3, 3] for M in Mc], method=getattr(cv2, CV[method]))
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, t[:, 0]
    return lie.matrix_to_se3(torch.tensor(M, dtype=torch.float64, device="cpu"))


def error(Xe, X):
    """(mm, deg) between two poses."""
    d = lie.se3_compose(Xe.cpu(), lie.se3_inverse(X.cpu()))
    return float(d[:3].norm()) * 1e3, math.degrees(float(lie.so3_log(d[3:]).norm()))


@pytest.mark.parametrize("setup", ["eye_in_hand", "eye_to_hand"])
def test_closed_forms_agree_with_opencv_without_noise(setup, device):
    g, X, Z, Tg, Tc = scene(1, device)
    if setup == "eye_to_hand":  # the camera stands still (X = T_base_camera), the target rides on the
        X, Z = Z, X  # gripper (Z = T_gripper_target): T_camera_target = X^-1 T_base_gripper Z
        Tc = lie.se3_compose(lie.se3_compose(lie.se3_inverse(X).expand(30, 7), Tg), Z.expand(30, 7))
    for method in ("tsai", "park", "daniilidis", "refined"):
        r = hand_eye(Tg, Tc, setup=setup, method=method)
        assert (r.X - X).abs().max() < 1e-9, method
        if method != "refined":
            # OpenCV takes the inverted gripper poses for eye to hand, as its documentation says
            ref = opencv(lie.se3_inverse(Tg) if setup == "eye_to_hand" else Tg, Tc, method)
            assert (r.X.cpu() - ref).abs().max() < 1e-9, method


def test_refined_is_at_least_as_accurate_as_opencvs_best(device):
    """30 stations, 0.1 mm / 0.05 deg noise on the camera's target poses, 20 trials: the median
    error of the refinement against OpenCV's best method (by median) on the same data."""
    ours, theirs = [], {m: [] for m in CV}
    for trial in range(20):
        g, X, Z, Tg, Tc = scene(100 + trial, device)
        Tn = noisy(Tc, g)
        ours.append(error(hand_eye(Tg, Tn).X, X))
        for m in CV:
            theirs[m].append(error(opencv(Tg, Tn, m), X))
    med = lambda errs, k: float(np.median([e[k] for e in errs]))  # noqa: E731
    best_mm = min(med(e, 0) for e in theirs.values())
    best_deg = min(med(e, 1) for e in theirs.values())
    assert med(ours, 0) <= best_mm and med(ours, 1) <= best_deg, (med(ours, 0), best_mm, med(ours, 1), best_deg)


def test_robot_world_against_opencv(device):
    g, X, Z, Tg, Tc = scene(2, device)
    r = robot_world_hand_eye(Tg, Tc)
    assert (r.X - X).abs().max() < 1e-9 and (r.Z - Z).abs().max() < 1e-9
    # OpenCV's form: cTw * wTb = cTg * gTb, world = the target
    Mg = lie.se3_to_matrix(lie.se3_inverse(Tg)).cpu().numpy()
    Mc = lie.se3_to_matrix(Tc).cpu().numpy()
    R_bw, t_bw, R_gc, t_gc = cv2.calibrateRobotWorldHandEye([M[:3, :3] for M in Mc], [M[:3, 3:] for M in Mc],
                                                            [M[:3, :3] for M in Mg], [M[:3, 3:] for M in Mg])
    T_camera_gripper = np.eye(4)
    T_camera_gripper[:3, :3], T_camera_gripper[:3, 3] = R_gc, t_gc[:, 0]
    T_target_base = np.eye(4)
    T_target_base[:3, :3], T_target_base[:3, 3] = R_bw, t_bw[:, 0]
    assert np.abs(np.linalg.inv(T_camera_gripper) - lie.se3_to_matrix(r.X).cpu().numpy()).max() < 1e-9
    assert np.abs(np.linalg.inv(T_target_base) - lie.se3_to_matrix(r.Z).cpu().numpy()).max() < 1e-9


def test_matrices_lietensors_and_batches(device):
    import pypose as pp

    scenes = [scene(10 + k, device) for k in range(3)]
    Tg = torch.stack([s[3] for s in scenes])
    Tc = torch.stack([noisy(s[4], s[0]) for s in scenes])
    batched = hand_eye(Tg, Tc)
    assert batched.X.shape == (3, 7) and batched.converged.shape == (3,) and bool(batched.converged.all())
    for k in range(3):
        one = hand_eye(pp.SE3(Tg[k]), lie.se3_to_matrix(Tc[k]))
        assert (one.X - batched.X[k]).abs().max() < 1e-9
        assert error(one.X, scenes[k][1])[0] < 0.2


def test_robust_kernel_rejects_misdetected_stations(device):
    g, X, Z, Tg, Tc = scene(3, device)
    Tn = noisy(Tc, g)
    Tn[[4, 11], :3] += 0.02  # two stations whose target was misdetected by 2 cm
    plain = hand_eye(Tg, Tn)
    robust = hand_eye(Tg, Tn, config=HandEyeConfig(sigma_position=1e-4, sigma_rotation=math.radians(0.05),
                                                   kernel=RobustKernel("cauchy", 3.0)))
    assert error(plain.X, X)[0] > 1.0
    assert error(robust.X, X)[0] < 0.1 and robust.weights[[4, 11]].max() < 1e-3


def test_a_kernel_that_weighs_no_station_is_not_a_calibration(device):
    """Tukey's kernel at a scale below every station's residual (a scale written in metres where
    whitened units were meant) makes the cost flat: the refinement stays at its closed-form
    start and says ``converged=False``, ``reason="no_weight"`` (it had said converged); at a
    scale that weighs the stations it converges."""
    g, X, Z, Tg, Tc = scene(5, device)
    Tn = noisy(Tc, g)
    tight = HandEyeConfig(sigma_position=1e-6, sigma_rotation=1e-6, kernel=RobustKernel("tukey", 1.0))
    flat = hand_eye(Tg, Tn, config=tight)
    assert not bool(flat.converged) and flat.reason == ("no_weight",) and float(flat.weights.max()) == 0.0
    assert max_err(flat.X, hand_eye(Tg, Tn, method="park").X) < 1e-12  # where it started
    weighed = hand_eye(Tg, Tn, config=HandEyeConfig(sigma_position=1e-4, sigma_rotation=math.radians(0.05),
                                                    kernel=RobustKernel("tukey", 4.0)))
    assert bool(weighed.converged) and weighed.reason != ("no_weight",) and error(weighed.X, X)[0] < 0.5


def test_gradients_reach_the_measurements(device):
    """The refined answer is differentiable in the camera's poses (implicit, through the engine)."""
    g, X, Z, Tg, Tc = scene(4, device, n=8)
    Tn = noisy(Tc, g).requires_grad_(True)
    r = hand_eye(Tg, Tn)
    r.X[:3].sum().backward()
    assert Tn.grad is not None and torch.isfinite(Tn.grad).all() and Tn.grad.abs().sum() > 0


def test_bad_input(device):
    g, X, Z, Tg, Tc = scene(5, device)
    with pytest.raises(ValueError, match="one pose of each per station"):
        hand_eye(Tg, Tc[:29])
    with pytest.raises(ValueError, match="at least 3 stations"):
        hand_eye(Tg[:2], Tc[:2])
    # every motion about one axis: z
    angles = torch.linspace(0, 2, 10, dtype=torch.float64, device=device)
    xi = torch.zeros(10, 6, dtype=torch.float64, device=device)
    xi[:, 5], xi[:, 0] = angles, angles * 0.1
    Tz = lie.se3_exp(xi)
    Tcz = lie.se3_compose(lie.se3_inverse(lie.se3_compose(Tz, X.expand(10, 7))), Z.expand(10, 7))
    with pytest.raises(ValueError, match="T_base_gripper: the gripper turns about one axis only"):
        hand_eye(Tz, Tcz)
    # no motion turns at all: translations only
    xi[:, 3:] = 0.0
    Tt = lie.se3_exp(xi)
    Tct = lie.se3_compose(lie.se3_inverse(lie.se3_compose(Tt, X.expand(10, 7))), Z.expand(10, 7))
    with pytest.raises(ValueError, match="T_base_gripper: the gripper does not turn between stations"):
        hand_eye(Tt, Tct)
    bad = Tc.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="T_camera_target"):
        hand_eye(Tg, bad)
    with pytest.raises(ValueError, match="method"):
        hand_eye(Tg, Tc, method="horaud")
    with pytest.raises(ValueError, match="setup"):
        hand_eye(Tg, Tc, setup="eye_on_hand")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_stations_in_a_half_precision_are_solved_in_float32_and_answered_in_theirs(dtype, device):
    """torch has no SVD or Cholesky in a half precision: the stations are widened to float32 (the
    answer of a float32 call on the same stations, to a rounding) and every pose, cost and error
    comes back in the stations' dtype."""
    g, X, Z, Tg, Tc = scene(4, device)
    Hg, Hc = lie.se3_tensor(Tg.to(dtype)), lie.se3_tensor(Tc.to(dtype))  # the rounded stations, as checked
    # the same stations in float32, normalized there (a half quaternion's length is 1 to ~1e-3)
    Fg, Fc = (lie.se3_tensor(H.float(), unit_tol=1e-2) for H in (Hg, Hc))
    for method in ("tsai", "refined"):
        r = hand_eye(Hg, Hc, method=method)
        ref = hand_eye(Fg, Fc, method=method)
        assert r.X.dtype == r.Z.dtype == r.position_error.dtype == r.cost.dtype == dtype
        assert bool(r.converged.all())
        one = torch.finfo(dtype).eps  # a rounding of numbers of order 1 (measured: 0.13-0.35 of it)
        assert max_err(r.X.float(), ref.X.float()) <= one and max_err(r.Z.float(), ref.Z.float()) <= one
        mm, deg = error(r.X.double(), X)  # and near the truth, as the stations' rounding allows (measured:
        assert mm < (0.5 if dtype == torch.float16 else 3) and deg < (0.03 if dtype == torch.float16 else 0.2)  # 0.17/1.2 mm)


def test_the_refined_answer_is_differentiable_and_the_closed_forms_say_they_are_not(device):
    """``"refined"`` differentiates its answer by the implicit function theorem: central
    differences of re-solves agree.  A closed form refuses stations that require grad: its SVDs
    meet repeated singular values, where torch's backward had given NaN for every station."""
    import dataclasses

    g, X, Z, Tg, Tc = scene(6, device)
    Tc = noisy(Tc, g)
    cfg = HandEyeConfig()
    tight = dataclasses.replace(cfg, solver=dataclasses.replace(cfg.solver, termination=dataclasses.replace(
        cfg.solver.termination, relative_tolerance=1e-14, gradient_tolerance=1e-14, step_tolerance=1e-14)))
    w = torch.randn(6, generator=g, dtype=torch.float64, device="cpu").to(device)

    def f(r):  # the answer through well-defined coordinates: X's translation and rotation vector, Z's translation
        return (r.X[:3] * w[:3]).sum() + (lie.so3_log(r.X[3:]) * w[3:]).sum() + r.Z[:3].sum()

    live = Tc.clone().requires_grad_()
    r = hand_eye(Tg, live, config=tight)
    assert bool(r.converged)  # a problem that did not converge passes zero gradients
    f(r).backward()
    assert torch.isfinite(live.grad).all()
    k, eps = 4, 1e-7
    for i in range(3):
        moved = []
        for sign in (1, -1):
            T = Tc.clone()
            T[k, i] += sign * eps
            moved.append(float(f(hand_eye(Tg, T, config=tight))))
        fd = (moved[0] - moved[1]) / (2 * eps)
        assert abs(float(live.grad[k, i]) - fd) <= 2e-4 * abs(fd), (i, float(live.grad[k, i]), fd)  # measured: 2e-9-2.5e-5
    for method in ("tsai", "park", "daniilidis"):
        with pytest.raises(ValueError, match=rf"method: '{method}' is a closed form, and has no derivative to give"):
            hand_eye(Tg, Tc.clone().requires_grad_(), method=method)
        assert not hand_eye(Tg, Tc, method=method).X.requires_grad  # without grad: as before
