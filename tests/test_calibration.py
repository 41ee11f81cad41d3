"""Chains with Lie-group parameters, URDF writing, and kinematic calibration.

References no one here wrote: central finite differences on the manifold, Pinocchio reading the
written URDF, and a simulated truth the calibration never sees."""

import math
import xml.etree.ElementTree as ET

import pytest
import torch

from robojac import data, lie
from robojac.calibration import CalibrationConfig, calibrate_kinematics, perturbed_chain, simulate_poses
from robojac.jacobian import modjac
from robojac.kinematics import Chain, DHRow, Joint, quat_to_rpy, rpy_to_quat
from robojac.optim import Factor, Problem, RobustKernel, SolverConfig, TerminationConfig, Variable, product

ROBOTS = {"panda": ("panda.urdf", "panda_hand"), "ur5": ("ur5.urdf", "tool0"), "iiwa14": ("kuka_iiwa14.urdf", None)}


def robot(name: str, device) -> Chain:
    file, tip = ROBOTS[name]
    c = Chain.from_urdf(data.path(f"robots/{file}"))
    return (c.subchain(tip=tip) if tip else c).to(device)


def perturbed(chain: Chain, g: torch.Generator) -> Chain:
    """The simulated truth: every origin moved by N(0, 1 mm) and N(0, 0.2 deg), offsets N(0, 0.3 deg)."""
    return perturbed_chain(chain, generator=g)


def measure(truth: Chain, q, g):
    """Poses with 0.05 mm position noise and 0.005 deg rotation noise."""
    return simulate_poses(truth, q, generator=g)


def flange_errors(a: Chain, b: Chain, q) -> tuple[float, float]:
    """RMS position error (mm) and largest rotation error (deg) between two chains' tips."""
    A, B = a(q), b(q)
    pos = (A[:, :3] - B[:, :3]).norm(dim=-1).square().mean().sqrt() * 1e3
    rot = lie.so3_log(lie.quat_mul(A[:, 3:], lie.quat_conj(B[:, 3:]))).norm(dim=-1).max()
    return float(pos), math.degrees(float(rot))


# ---- chains with parameters ----------------------------------------------------------------

def test_simulated_truth_is_what_it_says(device):
    """perturbed_chain's origins differ from the nominal ones by the asked spread (checked
    through the origins themselves), and simulate_poses' noise has the asked size."""
    c = robot("panda", device)
    g = torch.Generator().manual_seed(30)
    truths = [perturbed_chain(c, generator=g) for _ in range(20)]
    nominal = torch.stack([j.origin for j in c.joints])
    d = torch.cat([lie.se3_log(lie.se3_compose(torch.stack([j.origin for j in t.joints]), lie.se3_inverse(nominal)))
                   for t in truths])
    # the revolute joints' origins also carry the folded offsets (0.3 deg about their axes)
    assert 0.8e-3 < float(d[:, :3].std()) < 1.25e-3
    q = c.random_configuration(2000, generator=g, device=device)
    e = simulate_poses(c, q, generator=g) - c(q)
    assert 0.045e-3 < float(e[:, :3].std()) < 0.055e-3


def test_plain_chains_have_no_parameters(device):
    c = robot("panda", device)
    assert list(c.parameters()) == []
    with pytest.raises(ValueError, match="no parameters"):
        modjac(c, c.random_configuration(2, device=device))


def test_identification_jacobian_equals_central_differences(device):
    c = robot("panda", device)
    p = c.with_parameters()
    assert p.origin_joints == tuple(j.name for j in c.joints) and p.offset_joints == tuple(c.joint_names)
    q = c.random_configuration(4, generator=torch.Generator().manual_seed(1), device=device)
    assert (p(q) - c(q)).abs().max() < 1e-15  # the same kinematics at the nominal values
    Jo, Jd = modjac(p, q)
    K = len(p.origin_joints)
    assert Jo.shape == (4, 7, K, 6) and Jd.shape == (4, 7, c.dof)
    X0 = p.joint_origins.detach().tensor().clone()
    eps = 1e-6
    for k, a in ((0, 0), (3, 4), (K - 1, 5), (5, 2)):
        d = torch.zeros(K, 6, dtype=torch.float64, device=device)
        d[k, a] = eps
        with torch.no_grad():
            p.joint_origins.data.copy_(lie.se3_compose(lie.se3_exp(d), X0))
            plus = p(q)
            p.joint_origins.data.copy_(lie.se3_compose(lie.se3_exp(-d), X0))
            minus = p(q)
            p.joint_origins.data.copy_(X0)
        assert (Jo[:, :, k, a] - (plus - minus) / (2 * eps)).abs().max() < 1e-8
    for j in (0, 3, 6):
        with torch.no_grad():
            p.joint_offsets[j] = eps
            plus = p(q)
            p.joint_offsets[j] = -eps
            minus = p(q)
            p.joint_offsets[j] = 0.0
        assert (Jd[:, :, j] - (plus - minus) / (2 * eps)).abs().max() < 1e-8


def test_offset_is_an_origin_turned_about_its_axis(device):
    """q + offset equals origin * Rot(axis, offset): frozen() folds one into the other."""
    c = robot("ur5", device)
    p = c.with_parameters(origins=None, offsets=["shoulder_lift_joint"])
    with torch.no_grad():
        p.joint_offsets[0] = 0.3
    q = c.random_configuration(5, generator=torch.Generator().manual_seed(2), device=device)
    shifted = q.clone()
    shifted[:, 1] += 0.3
    assert (p(q) - c(shifted)).abs().max() < 1e-14
    assert (p.joint_values(q) - c.joint_values(shifted)).abs().max() < 1e-15  # the joints see q + offset
    f = p.frozen()
    assert list(f.parameters()) == [] and (f(q) - c(shifted)).abs().max() < 1e-14


def test_parameters_subset_and_errors(device):
    c = robot("panda", device)
    p = c.with_parameters(origins=["panda_joint2", "panda_joint4"], offsets=None)
    assert p.origin_joints == ("panda_joint2", "panda_joint4") and [n for n, _ in p.named_parameters()] == ["joint_origins"]
    assert modjac(p, c.random_configuration(2, device=device))[0].shape == (2, 7, 2, 6)
    with pytest.raises(ValueError, match=r"origins: \['nope'\] name no joint"):
        c.with_parameters(origins=["nope"])
    with pytest.raises(ValueError, match="at least one joint"):
        c.with_parameters(origins=None, offsets=None)


def test_gradients_reach_the_parameters(device):
    """A loss on the tip trains the origins: an nn.Module with pp.Parameters like any other."""
    c = robot("iiwa14", device)
    p = c.with_parameters()
    q = c.random_configuration(3, device=device)
    p(q)[..., :3].sum().backward()
    assert p.joint_origins.grad is not None and p.joint_offsets.grad.abs().sum() > 0


# ---- URDF out ------------------------------------------------------------------------------

def test_rpy_round_trip():
    g = torch.Generator().manual_seed(3)
    for _ in range(50):
        rpy = (torch.rand(3, generator=g, dtype=torch.float64, device="cpu") * 2 - 1) * torch.tensor([math.pi, math.pi / 2, math.pi],
                                                                                      dtype=torch.float64)
        q = rpy_to_quat(rpy.tolist())
        q2 = rpy_to_quat(quat_to_rpy(q))
        assert min((q - q2).abs().max(), (q + q2).abs().max()) < 1e-14


def test_to_urdf_keeps_the_file_and_reads_back_in_pinocchio(tmp_path, device):
    pin = pytest.importorskip("pinocchio")
    c = robot("panda", device)
    truth = perturbed(c, torch.Generator().manual_seed(4))
    out = tmp_path / "calibrated.urdf"
    truth.to_urdf(out)
    back = Chain.from_urdf(out, tip="panda_hand").to(device)
    q = c.random_configuration(20, generator=torch.Generator().manual_seed(5), device=device)
    assert (back(q) - truth(q)).abs().max() < 1e-12
    # everything else is as it was: visuals, collisions, inertials, limits, other joints
    src, new = ET.parse(data.path("robots/panda.urdf")).getroot(), ET.parse(out).getroot()
    for tag in ("link", "joint", ".//visual", ".//collision", ".//inertial", ".//limit", ".//mimic"):
        assert len(src.findall(tag)) == len(new.findall(tag)), tag
    fingers = [j for j in new.findall("joint") if j.get("name") == "panda_finger_joint1"][0]
    assert fingers.find("origin").get("xyz") == "0 0 0.0584"  # not on the chain: untouched
    # Pinocchio, independent of robojac, reads the same kinematics
    model = pin.buildModelFromUrdf(str(out))
    frame = model.getFrameId("panda_hand")
    dat = model.createData()
    for qi in q[:5].cpu():
        full = torch.zeros(model.nq, dtype=torch.float64, device="cpu")
        full[:7] = qi
        pin.framesForwardKinematics(model, dat, full.numpy())
        T = torch.as_tensor(dat.oMf[frame].homogeneous, device="cpu")
        assert (T - lie.se3_to_matrix(truth(qi.to(device)).cpu())).abs().max() < 1e-12


def test_to_urdf_of_a_chain_built_in_code(tmp_path, device):
    joints = [Joint.revolute("j1", "base", "l1", origin=[0, 0, 0.3, 0, 0, 0, 1], axis=(0, 0, 1)),
              Joint.prismatic("j2", "l1", "l2", origin=[0.2, 0, 0, 0, 0.3826834, 0, 0.9238795], axis=(1, 0, 0)),
              Joint.fixed("tool", "l2", "tip", origin=[0, 0.1, 0, 0, 0, 0, 1])]
    c = Chain(joints, name="coded").to(device)
    c.to_urdf(tmp_path / "coded.urdf")
    back = Chain.from_urdf(tmp_path / "coded.urdf").to(device)
    q = c.random_configuration(10, device=device)
    assert back.joint_names == c.joint_names and (back(q) - c(q)).abs().max() < 1e-12
    assert back.joint_limits[0].tolist() == c.joint_limits[0].tolist()
    assert back.velocity_limits.tolist() == [math.inf, math.inf]  # no limit, written as a number URDF takes
    # urdfdom (ROS, Pinocchio) reads the file too: it refuses "inf" for effort and velocity
    pin = pytest.importorskip("pinocchio")
    model = pin.buildModelFromUrdf(str(tmp_path / "coded.urdf"))
    dat = model.createData()
    for qi in q.cpu():
        pin.framesForwardKinematics(model, dat, qi.numpy())
        T = torch.as_tensor(dat.oMf[model.getFrameId("tip")].homogeneous, device="cpu")
        assert (T - lie.se3_to_matrix(c(qi.to(device)).cpu())).abs().max() < 1e-12


def test_to_urdf_writes_limits_urdf_can_read(tmp_path, device):
    """An unlimited revolute joint is written as a continuous one; an unlimited prismatic joint
    is refused (URDF's limits are numbers): a written file always reads back."""
    c = Chain.from_dh([DHRow(0.3, 0, 0.1, joint="revolute", lower=-math.inf, upper=math.inf),
                       DHRow(0.2, 0.5, 0, joint="prismatic", lower=-0.1, upper=0.4)]).to(device)
    c.to_urdf(tmp_path / "dh.urdf")
    back = Chain.from_urdf(tmp_path / "dh.urdf").to(device)
    assert [j.type.value for j in back.joints if j.type.movable] == ["continuous", "prismatic"]
    q = c.random_configuration(10, device=device)
    assert (back(q) - c(q)).abs().max() < 1e-12
    slide = Chain([Joint.prismatic("s", "base", "tip", lower=-math.inf, upper=math.inf)])
    with pytest.raises(ValueError, match=r"joint 's': a prismatic joint with limits \[-inf, inf\] cannot be written"):
        slide.to_urdf(tmp_path / "slide.urdf")
    assert not (tmp_path / "slide.urdf").exists()


def test_to_urdf_is_atomic(tmp_path, device, monkeypatch):
    c = robot("ur5", device)
    out = tmp_path / "arm.urdf"
    out.write_text("old")
    import robojac.kinematics._urdf as urdf

    monkeypatch.setattr(urdf.ET, "tostring", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        c.to_urdf(out)
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["arm.urdf"]


# ---- calibration ---------------------------------------------------------------------------

def test_closed_form_equals_the_automatic_jacobian(device):
    """The calibration's identification Jacobian (closed form) against the engine's automatic
    one through the parameterized chain (forward-mode through the retraction), and the tip's
    twist against modjac."""
    from robojac.calibration._kinematic import _Hold, _Measured

    c = robot("panda", device)
    p = c.with_parameters().double()
    g = product(("SE3", len(p.origin_joints)), ("Rn", c.dof))
    x0 = torch.cat((p.joint_origins.detach().tensor().reshape(-1), p.joint_offsets.detach()))
    gen = torch.Generator().manual_seed(6)
    x = g.retract(x0[None], 1e-2 * torch.randn(1, g.tangent_dim, generator=gen, dtype=torch.float64, device="cpu").to(device))[0]
    q = c.random_configuration(5, generator=gen, device=device)
    for point, m in ((None, 6), (None, 3), (torch.tensor([0.01, 0.02, 0.1], dtype=torch.float64, device=device), 3)):
        res = _Measured(p, "panda_hand", point)
        T = res.poses(x, q)[:, res.tip]
        meas = T[:, :3] + 0.01 if m == 3 else lie.se3_compose(lie.se3_exp(torch.full((5, 6), 0.05, dtype=torch.float64,
                                                                                       device=device)), T)
        L = torch.eye(m, dtype=torch.float64, device=device).expand(5, m, m)
        var = Variable(g, x[None, None].clone())
        idx = torch.zeros(5, 1, dtype=torch.long, device=device)
        closed = Factor(res, [var], idx, data=[q, meas, L])
        auto = Factor(lambda *a, r=res: r(*a), [var], idx, data=[q, meas, L])
        pb = Problem([var], [closed, auto])
        Jc, Ja = pb.jacobian_of(closed, (var.value,))[0], pb.jacobian_of(auto, (var.value,))[0]
        assert (Jc - Ja).abs().max() < 1e-12 * Ja.abs().max()
    hold = _Hold(len(p.origin_joints))
    Nt = torch.randn(1, 4, g.tangent_dim, generator=gen, dtype=torch.float64, device="cpu").to(device)
    var = Variable(g, x[None, None].clone())
    a, b = Factor(hold, [var], data=[Nt, x0[None]]), Factor(lambda *z: hold(*z), [var], data=[Nt, x0[None]])
    pb = Problem([var], [a, b])
    assert (pb.jacobian_of(a, (var.value,))[0] - pb.jacobian_of(b, (var.value,))[0]).abs().max() < 1e-12
    # the tip twist per parameter (the closed form's core) equals modjac's, in tangent rows
    res = _Measured(p, "panda_hand", None)
    T = p(q)
    _, (J,) = res.value_and_jacobians(x0[None, None], q[None], T[None], torch.eye(6, dtype=torch.float64,
                                                                                     device=device).expand(1, 5, 6, 6))
    Jo, Jd = modjac(p, q)
    raw = torch.cat((Jo.flatten(-2), Jd), -1)  # (5, 7, P)
    twist = lie.tangent_from_raw(T, "SE3") @ raw  # [rho; phi] of the left perturbation
    eye = torch.eye(3, dtype=torch.float64, device=device).expand(5, 3, 3)
    tip_map = torch.cat((torch.cat((eye, -lie.skew(T[:, :3])), -1), torch.cat((0 * eye, eye), -1)), -2)
    assert (J[0] - tip_map @ twist).abs().max() < 1e-12


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_calibration_recovers_the_truth(name, device, tmp_path):
    c = robot(name, device)
    g = torch.Generator().manual_seed(10)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    held_out = c.random_configuration(500, generator=g, device=device)
    res = calibrate_kinematics(c, q, measure(truth, q, g))
    assert res.converged and res.reason in ("relative_tolerance", "gradient_tolerance", "step_tolerance")
    nominal_mm, _ = flange_errors(c, truth, held_out)
    mm, deg = flange_errors(res.chain, truth, held_out)
    assert nominal_mm > 3.0  # several mm off before
    assert mm < 0.1 and deg < 0.01, (mm, deg)
    assert res.before.rms_position > 20 * res.after.rms_position
    assert list(c.parameters()) == [] and (c(q) - robot(name, device)(q)).abs().max() == 0  # input untouched
    # the answer as a file, read back by robojac
    res.chain.to_urdf(tmp_path / "cal.urdf")
    file, tip = ROBOTS[name]
    back = Chain.from_urdf(tmp_path / "cal.urdf")
    back = (back.subchain(tip=tip) if tip else back).to(device)
    assert flange_errors(back, res.chain, held_out)[0] < 1e-9


def test_calibration_through_pinocchio(device, tmp_path):
    """The truth check done by Pinocchio, not robojac: the written URDF's flange against the truth."""
    pin = pytest.importorskip("pinocchio")
    c = robot("iiwa14", device)
    g = torch.Generator().manual_seed(11)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    res = calibrate_kinematics(c, q, measure(truth, q, g))
    res.chain.to_urdf(tmp_path / "cal.urdf")
    model = pin.buildModelFromUrdf(str(tmp_path / "cal.urdf"))
    dat, frame = model.createData(), model.getFrameId("lbr_iiwa_link_7")
    held_out = c.random_configuration(100, generator=g, device=device)
    T_truth = lie.se3_to_matrix(truth(held_out)).cpu()
    errs = []
    for qi, Tt in zip(held_out.cpu().numpy(), T_truth):
        pin.framesForwardKinematics(model, dat, qi)
        errs.append(float(torch.as_tensor(dat.oMf[frame].translation - Tt[:3, 3].numpy(), device="cpu").norm()))
    assert math.sqrt(sum(e * e for e in errs) / len(errs)) < 1e-4


def test_position_only_and_outliers(device):
    c = robot("panda", device)
    g = torch.Generator().manual_seed(12)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    held_out = c.random_configuration(500, generator=g, device=device)
    pos = truth(q)[:, :3] + (torch.randn(60, 3, generator=g, dtype=torch.float64, device="cpu") * 5e-5).to(device)
    res = calibrate_kinematics(c, q, pos)
    assert res.converged
    A, B = res.chain(held_out), truth(held_out)
    assert float((A[:, :3] - B[:, :3]).norm(dim=-1).square().mean().sqrt()) < 2e-4
    assert res.after.rotation is None and len(res.identifiable) == 31  # 4 R + 3 for a 7R arm's points
    # 5% gross outliers (2 cm): a plain fit is pulled mm off; a Cauchy kernel is not
    meas = measure(truth, q, g)
    bad = torch.tensor([5, 17, 42], device=device)
    meas[bad, :3] += (torch.randn(3, 3, generator=g, dtype=torch.float64, device="cpu") * 0.02).to(device)
    cov = torch.diag(torch.tensor([5e-5] * 3 + [math.radians(0.005)] * 3, dtype=torch.float64, device=device) ** 2)
    plain = calibrate_kinematics(c, q, meas, covariance=cov)
    robust = calibrate_kinematics(c, q, meas, covariance=cov, config=CalibrationConfig(kernel=RobustKernel("cauchy", 3.0)))
    assert flange_errors(plain.chain, truth, held_out)[0] > 0.5
    assert flange_errors(robust.chain, truth, held_out)[0] < 0.15
    inliers = torch.ones(60, dtype=torch.bool, device=device)
    inliers[bad] = False
    assert robust.weights[bad].max() < 1e-3 and robust.weights[inliers].min() > 0.1


@pytest.mark.parametrize("kind", ["poses", "positions"])
def test_estimates_are_differentiable_with_respect_to_the_measurements(kind, device):
    """Measurements that require grad give the estimate the implicit function theorem's gradient,
    with the gauge (the hold on the unidentifiable directions) held: finite, and what central
    differences of full re-calibrations give for what the data identify (a functional blind to
    the null directions).  The identifiability analysis had been differentiated too: its SVD's
    backward at the zero singular values gave NaN for every measurement."""
    import dataclasses

    c = robot("panda", device)
    g = torch.Generator().manual_seed(5)
    truth = perturbed(c, g)
    q = c.random_configuration(30, generator=g, device=device)
    meas = measure(truth, q, g)
    meas = meas[:, :3].clone() if kind == "positions" else meas
    base = CalibrationConfig()
    tight = dataclasses.replace(base, solver=dataclasses.replace(base.solver, termination=TerminationConfig(
        max_iterations=100, relative_tolerance=1e-15, absolute_tolerance=0.0, step_tolerance=1e-14)))
    live = meas.clone().requires_grad_()
    r = calibrate_kinematics(c, q, live, config=tight)
    null = r.null_space / r.scale[:, None]  # the unidentifiable directions, in the estimate's coordinates
    w = torch.randn(r.estimate.shape[0], generator=g, dtype=torch.float64, device="cpu").to(device)
    basis = torch.linalg.qr(null)[0]
    w = w - basis @ (basis.T @ w)
    (r.estimate * w).sum().backward()
    assert torch.isfinite(live.grad).all() and float(live.grad.abs().max()) > 0
    k, i, eps = 7, 2, 1e-6
    moved = []
    for sign in (1, -1):
        m = meas.clone()
        m[k, i] += sign * eps
        moved.append(float((calibrate_kinematics(c, q, m, config=tight).estimate * w).sum()))
    fd = (moved[0] - moved[1]) / (2 * eps)
    # measured: poses 1e-8 to 1.4e-6 (the differences' own noise); positions 0.3-0.7 %, where the
    # hold's basis turns with the data
    assert abs(float(live.grad[k, i]) - fd) <= (1e-5 if kind == "poses" else 2e-2) * abs(fd), (float(live.grad[k, i]), fd)

def test_unidentifiable_directions_are_named_and_held(device):
    c = robot("iiwa14", device)
    g = torch.Generator().manual_seed(13)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    res = calibrate_kinematics(c, q, measure(truth, q, g))
    P = len(res.parameter_names)
    assert P == 7 * 6 + 7 and len(res.identifiable) == 30 and res.null_space.shape == (P, P - 30)
    assert len(res.unidentifiable) == P - 30
    # an offset is an origin turned about its own joint axis (in the parent frame: y for joint 3,
    # whose origin turns z onto the parent's y)
    said = {u.split(" = ")[0]: u for u in res.unidentifiable}
    assert said["lbr_iiwa_joint_3.offset"].startswith("lbr_iiwa_joint_3.offset = 1 lbr_iiwa_joint_3.origin.ry")
    # held: no part of the estimate lies along the unidentifiable directions
    u = res.scale * res.estimate
    assert (res.null_space.T @ u).abs().max() < 1e-6 * u.norm()
    assert res.estimate.abs().max() < 0.02  # millimetres and tenths of a degree, nothing drifted
    # the spectrum falls off a cliff where the identifiable directions end
    s = res.singular_values
    assert s[29] > 1e-3 * s[0] and s[30] < 1e-9 * s[0]
    assert torch.isfinite(res.std).all() and (res.std[[res.parameter_names.index(n) for n in res.identifiable]] > 0).all()


def test_standard_deviations_match_the_scatter(device):
    """The reported std against the scatter of 20 repeated calibrations with fresh noise."""
    c = robot("ur5", device)
    g = torch.Generator().manual_seed(14)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    cov = torch.diag(torch.tensor([5e-5] * 3 + [math.radians(0.005)] * 3, dtype=torch.float64, device=device) ** 2)
    runs = [calibrate_kinematics(c, q, measure(truth, q, g), covariance=cov) for _ in range(20)]
    i = runs[0].parameter_names.index(runs[0].identifiable[7])
    scatter = torch.stack([r.estimate[i] for r in runs]).std()
    assert 0.6 < float(scatter / runs[0].std[i]) < 1.5


def test_bad_input(device):
    c = robot("panda", device)
    q = c.random_configuration(60, device=device)
    T = c(q)
    with pytest.raises(ValueError, match=r"5 poses give 30 equations; the 34 identifiable parameters need at least 6"):
        calibrate_kinematics(c, q[:5], T[:5])
    with pytest.raises(ValueError, match=r"q: expected shape \(59, 7\)"):
        calibrate_kinematics(c, q, T[:59])
    bad = T.clone()
    bad[7, 2] = float("nan")
    with pytest.raises(ValueError, match="measurement 7 is not finite"):
        calibrate_kinematics(c, q, bad)
    with pytest.raises(ValueError, match="measurements: expected poses"):
        calibrate_kinematics(c, q, T[:, :5])
    with pytest.raises(ValueError, match="covariance"):
        calibrate_kinematics(c, q, T, covariance=-torch.eye(6, dtype=torch.float64, device=device))
    with pytest.raises(ValueError, match="CalibrationConfig.origins"):
        calibrate_kinematics(c, q, T, config=CalibrationConfig(origins=["panda_finger_joint1"]))
    with pytest.raises(ValueError, match="rank_tolerance"):
        CalibrationConfig(rank_tolerance=0.0)


def test_unconverged_says_so(device):
    c = robot("panda", device)
    g = torch.Generator().manual_seed(15)
    truth = perturbed(c, g)
    q = c.random_configuration(60, generator=g, device=device)
    cfg = CalibrationConfig(solver=SolverConfig(termination=TerminationConfig(max_iterations=1)))
    res = calibrate_kinematics(c, q, measure(truth, q, g), config=cfg)
    assert not res.converged and res.reason == "max_iterations"


# ---- command line --------------------------------------------------------------------------

def test_calibrate_command(tmp_path, device, capsys):
    from robojac.cli import main

    c = robot("panda", device)
    g = torch.Generator().manual_seed(16)
    truth = perturbed(c, g)
    q = c.random_configuration(40, generator=g, device=device)
    T = measure(truth, q, g)
    rows = [",".join(c.joint_names + ["x", "y", "z", "qx", "qy", "qz", "qw"])]
    rows += [",".join(repr(v) for v in qi + Ti) for qi, Ti in zip(q.tolist(), T.tolist())]
    (tmp_path / "m.csv").write_text("# a tracker's log\n" + "\n".join(rows) + "\n")
    urdf, out = str(data.path("robots/panda.urdf")), tmp_path / "cal.urdf"
    args = ["calibrate", urdf, "--tip", "panda_hand", "--data", str(tmp_path / "m.csv")]
    assert main(args + ["--out", str(out), "--plot", str(tmp_path / "cal.png")]) == 0
    said = capsys.readouterr()
    assert "34 identifiable, 27 held at nominal" in said.out and "4/4 steps" in said.err
    back = Chain.from_urdf(out, tip="panda_hand").to(device)
    held_out = c.random_configuration(200, generator=g, device=device)
    assert flange_errors(back, truth, held_out)[0] < 0.1 and (tmp_path / "cal.png").stat().st_size > 5000
    fields = rows[4].split(",")
    fields[2] = "nan"
    (tmp_path / "m.csv").write_text("# a tracker's log\n" + "\n".join(rows[:4] + [",".join(fields)] + rows[5:]) + "\n")
    assert main(args + ["-q"]) == 2
    assert "m.csv:6: NaN or infinite value" in capsys.readouterr().err
    weighted = [rows[0] + ",weight"] + [r + ",1" for r in rows[1:4]] + [rows[4] + ",-0.5"] + [r + ",1" for r in rows[5:]]
    (tmp_path / "m.csv").write_text("\n".join(weighted) + "\n")
    assert main(args + ["-q"]) == 2  # it had been named as the whole weight vector, not the line
    assert "m.csv:5: weight -0.5 is negative; expected a weight >= 0" in capsys.readouterr().err
