"""robojac.kinematics: FK and Jacobians against Pinocchio, differences, DH by hand, errors."""

import math
import pathlib
import subprocess
import sys

import numpy as np
import pypose as pp
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robojac.data import path as data_path
from robojac.jacobian import modjac
from robojac.kinematics import Chain, DHRow, Joint, KinematicTreeError, Mimic, PoseTransform, UrdfError
from robojac.models import planar_arm, sample_arm

from helpers import max_err, pinocchio_configuration

URDFS = ["panda.urdf", "kuka_iiwa14.urdf", "ur5.urdf", "simple_humanoid.urdf", "talos_reduced.urdf"]


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _robot(name):
    return data_path(f"robots/{name}")


def _worst_against_pinocchio(pin, model, chain, q) -> tuple[float, float]:
    """Largest differences of every frame's pose and of its world- and local-frame Jacobians
    between the chain and Pinocchio's model, over the configurations ``q`` (B, dof)."""
    data = model.createData()
    poses = chain.forward_kinematics(q)
    worst_pose = worst_jac = 0.0
    for b in range(q.shape[0]):
        qp = pinocchio_configuration(pin, model, chain, q[b])
        pin.framesForwardKinematics(model, data, qp)
        if model.nv:  # Pinocchio stops the process on a model without degrees of freedom here
            pin.computeJointJacobians(model, data, qp)
        for frame in chain.frame_names[1:]:
            fid = model.getFrameId(frame)
            ours = poses[frame][b].matrix().cpu().numpy()
            worst_pose = max(worst_pose, np.abs(ours - data.oMf[fid].homogeneous).max())
            if not chain.dof:
                continue
            for where, reference in ((pin.LOCAL_WORLD_ALIGNED, "world"), (pin.LOCAL, "local")):
                Jp = np.asarray(pin.getFrameJacobian(model, data, fid, where)).reshape(6, -1)  # (6,) when nv is 1
                ref = np.zeros((6, chain.dof))
                for k, name in enumerate(chain.joint_names):
                    ref[:, k] += Jp[:, model.joints[model.getJointId(name)].idx_v]
                for m, (src, mult, _) in chain.tree.mimic.items():
                    ref[:, chain.joint_names.index(src)] += mult * Jp[:, model.joints[model.getJointId(m)].idx_v]
                J = chain.jacobian(q[b], frame, reference=reference).cpu().numpy()
                worst_jac = max(worst_jac, np.abs(J - ref).max())
    return worst_pose, worst_jac


@pytest.mark.parametrize("urdf", URDFS)
def test_every_frame_and_jacobian_matches_pinocchio(urdf, device):
    pin = pytest.importorskip("pinocchio")
    path = _robot(urdf)
    model = pin.buildModelFromUrdf(str(path))
    chain = Chain.from_urdf(path).to(device)
    q = chain.random_configuration(12, generator=torch.Generator().manual_seed(1))
    worst_pose, worst_jac = _worst_against_pinocchio(pin, model, chain, q)
    assert worst_pose < 1e-10 and worst_jac < 1e-10


def _random_urdf(seed: int) -> str:
    """A random tree of 1-9 joints of every kind URDF's kinematics has (revolute, continuous,
    prismatic, fixed), with or without origins, rpy at and near gimbal lock, axes along the
    coordinate axes (either sign) or anywhere, mimic joints (of mimic joints too) with multipliers
    and offsets, and the links and joints written in a shuffled order."""
    r = np.random.default_rng(seed)
    n = int(r.integers(1, 10))
    movable, joints = [], []
    for i in range(1, n + 1):
        kind = str(r.choice(["revolute", "continuous", "prismatic", "fixed"]))
        parts = [f'<joint name="j{i}" type="{kind}"><parent link="l{r.integers(i)}"/><child link="l{i}"/>']
        if r.random() < 0.85:
            xyz = f' xyz="{" ".join(repr(float(v)) for v in r.uniform(-1, 1, 3))}"' if r.random() < 0.9 else ""
            angles = [float(r.choice([0.0, math.pi / 2, -math.pi / 2, math.pi, 1.5707963])) if r.random() < 0.3
                      else float(r.uniform(-4, 4)) for _ in range(3)]
            rpy = f' rpy="{" ".join(repr(v) for v in angles)}"' if r.random() < 0.9 else ""
            parts.append(f"<origin{xyz}{rpy}/>")
        if kind != "fixed" and r.random() < 0.9:
            axis = r.normal(size=3) if r.random() < 0.6 else np.eye(3)[r.integers(3)] * r.choice([-1, 1])
            parts.append(f'<axis xyz="{" ".join(repr(float(v)) for v in axis / np.linalg.norm(axis))}"/>')
        if kind in ("revolute", "prismatic") or r.random() < 0.3:
            parts.append(f'<limit lower="{r.uniform(-3, 0)!r}" upper="{r.uniform(0, 3)!r}" effort="1" velocity="1"/>')
        if kind != "fixed" and movable and r.random() < 0.25:  # a mimic of any moving joint, a mimic too
            source = movable[r.integers(len(movable))]
            multiplier, offset = r.uniform(-2, 2), r.uniform(-0.5, 0.5)
            parts.append(f'<mimic joint="{source}" multiplier="{multiplier!r}" offset="{offset!r}"/>')
        if kind != "fixed":
            movable.append(f"j{i}")
        joints.append("".join(parts) + "</joint>")
    elements = [f'<link name="l{i}"/>' for i in range(n + 1)] + joints
    return '<robot name="random">' + "".join(elements[k] for k in r.permutation(len(elements))) + "</robot>"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_random_urdfs_pose_every_link_as_pinocchio(seed):
    """Any URDF tree: every link's pose and its Jacobians (world and local) equal Pinocchio's
    (4,000 random trees passed when this test was written; CI runs 60)."""
    pin = pytest.importorskip("pinocchio")
    xml = _random_urdf(seed)
    chain = Chain.from_urdf(xml)
    q = chain.random_configuration(3, generator=torch.Generator().manual_seed(seed))
    worst_pose, worst_jac = _worst_against_pinocchio(pin, pin.buildModelFromXML(xml), chain, q)
    assert worst_pose < 1e-12 and worst_jac < 1e-12, xml


@pytest.mark.parametrize("reference", ["world", "local"])
@pytest.mark.parametrize("frame", ["panda_hand", "panda_rightfinger", "panda_link4"])
def test_analytic_jacobian_equals_the_jacobian_core(reference, frame, device):
    chain = Chain.from_urdf(_robot("panda.urdf")).to(device)
    q = chain.random_configuration(2, 3)
    a = chain.jacobian(q, frame, reference=reference)
    b = chain.jacobian(q, frame, reference=reference, method="autodiff")
    assert a.shape == (2, 3, 6, chain.dof) and max_err(a, b) < 1e-12


def test_jacobian_against_finite_differences_of_fk(device):
    chain = Chain.from_urdf(_robot("ur5.urdf")).to(device)
    q = chain.random_configuration(generator=torch.Generator().manual_seed(3))
    J = chain.jacobian(q, "tool0")
    eps = 1e-6
    cols = []
    for k in range(chain.dof):
        e = torch.zeros(chain.dof, dtype=torch.float64, device=device)
        e[k] = eps
        Xp, Xm = chain.forward_kinematics(q + e, "tool0"), chain.forward_kinematics(q - e, "tool0")
        v = (Xp.translation() - Xm.translation()) / (2 * eps)
        w = (Xp.rotation() * Xm.rotation().Inv()).Log().tensor() / (2 * eps)
        cols.append(torch.cat((v, w)))
    assert max_err(J, torch.stack(cols, -1)) < 1e-8


@pytest.mark.parametrize("shape", [(), (3,), (2, 4)], ids=str)
def test_batch_shapes_dtypes_and_autograd_agree(shape, dtype, device):
    chain = sample_arm().to(device)
    q = chain.random_configuration(*shape, dtype=torch.float64)
    X64 = chain.forward_kinematics_tensor(q)
    J64 = chain.jacobian(q)
    assert X64.shape == shape + (len(chain.frame_names), 7) and J64.shape == shape + (6, 7)
    X = chain.forward_kinematics_tensor(q.to(dtype))
    J = chain.jacobian(q.to(dtype))
    assert X.dtype == dtype and J.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert max_err(X.double(), X64) < tol and max_err(J.double(), J64) < tol
    # the autograd path (no workspace) gives the same values and real gradients
    qg = q.clone().requires_grad_()
    Xg = chain.forward_kinematics_tensor(qg)
    Jg = chain.jacobian(qg)
    assert max_err(Xg.detach(), X64) < 1e-12 and max_err(Jg.detach(), J64) < 1e-12
    (g,) = torch.autograd.grad(Xg[..., -1, :3].sum(), qg)
    assert max_err(g, J64[..., :3, :].sum(-2)) < 1e-12  # d(sum of tip position)/dq = sum of v rows


def test_dict_output_and_single_frame(device):
    chain = Chain.from_urdf(_robot("panda.urdf"), tip="panda_hand").to(device)
    q = chain.random_configuration(5)
    poses = chain.forward_kinematics(q)
    assert list(poses) == chain.frame_names
    assert all(isinstance(p, pp.LieTensor) and p.ltype is pp.SE3_type and p.shape == (5, 7) for p in poses.values())
    one = chain.forward_kinematics(q, frame="panda_link5")
    assert max_err(one.tensor(), poses["panda_link5"].tensor()) == 0
    assert max_err(chain(q), poses["panda_hand"].tensor()) == 0
    pose, J = chain.pose_and_jacobian(q)
    assert max_err(pose, poses["panda_hand"].tensor()) == 0 and max_err(J, chain.jacobian(q)) == 0


@pytest.mark.parametrize("grad", [False, True], ids=["workspace", "autograd"])
@pytest.mark.parametrize("reference", ["world", "local"])
def test_several_frames_from_one_pass_are_each_frames_own(grad, reference, device):
    """``poses_and_jacobians``: each frame's pose and Jacobian as ``pose_and_jacobian`` gives it,
    in a branched tree (TALOS's hands and feet share no path below the root), on both paths."""
    chain = Chain.from_urdf(_robot("talos_reduced.urdf")).to(device)
    frames = ["gripper_left_base_link", "left_sole_link", "torso_2_link", "right_sole_link"]
    q = chain.random_configuration(2, 3, generator=torch.Generator().manual_seed(5)).requires_grad_(grad)
    X, J = chain.poses_and_jacobians(q, frames, reference=reference)
    assert X.shape == (2, 3, 4, 7) and J.shape == (2, 3, 4, 6, chain.dof)
    for k, f in enumerate(frames):
        Xk, Jk = chain.pose_and_jacobian(q.detach(), f, reference=reference)
        assert max_err(X[..., k, :], Xk) < 1e-14 and max_err(J[..., k, :, :], Jk) < 1e-14  # the paths round apart
    assert X.requires_grad == grad
    for bad in ("left_sole_link", [], ["no_such_link"]):
        with pytest.raises(ValueError, match="frame"):
            chain.poses_and_jacobians(q, bad)
    with pytest.raises(ValueError, match="reference"):
        chain.poses_and_jacobians(q, frames, reference="body")


def test_module_moves_with_to_and_reports_limits(device):
    chain = Chain.from_urdf(_robot("panda.urdf"), tip="panda_hand").to(device)
    assert chain.dof == 7 and chain.joint_names[0] == "panda_joint1"
    lower, upper = chain.joint_limits
    assert lower[3] == pytest.approx(-3.0718) and upper[5] == pytest.approx(3.7525)
    assert chain.velocity_limits[0] == pytest.approx(2.175)
    q = chain.random_configuration(1000, generator=torch.Generator().manual_seed(0))
    assert chain.within_limits(q).all()
    assert not chain.within_limits(q + 10).any()
    assert chain.within_limits(chain.clamp(q + 10)).all()
    chain32 = chain.to(torch.float32)
    assert chain32.lower.dtype == torch.float32
    assert chain32.forward_kinematics(q[:2].float(), "panda_hand").dtype == torch.float32


def test_derived_limits_follow_edits_and_moves(device):
    """``limits_for`` and the sampling bounds are memoised: an in-place edit of the limits, or
    new buffers (``.to()``), must be seen at once, never the stale values."""
    chain = Chain.from_urdf(_robot("panda.urdf"), tip="panda_hand").to(device)
    lo32, _ = chain.limits_for(torch.float32)
    assert chain.limits_for(torch.float32)[0] is lo32  # memoised
    gen = torch.Generator().manual_seed(0)
    chain.random_configuration(10, generator=gen)
    with torch.no_grad():
        chain.lower[0] = -0.5
    assert float(chain.limits_for(torch.float32)[0][0]) == -0.5
    assert float(chain.random_configuration(2000, generator=gen)[:, 0].min()) >= -0.5
    assert float(chain.clamp(torch.full((7,), -3.0, device=device))[0]) == -0.5
    chain.upper = torch.zeros(7, dtype=torch.float64, device=device)  # a replaced buffer
    assert float(chain.limits_for(torch.float64)[1].abs().max()) == 0.0
    assert float(chain.random_configuration(100, generator=gen).max()) <= 0.0


def test_mimic_joints_follow_their_source_with_multiplier_and_offset(device):
    joints = [
        Joint.revolute("a", "base", "l1", axis=(0, 0, 1)),
        Joint.revolute("b", "l1", "l2", origin=[1.0, 0, 0, 0, 0, 0, 1], axis=(0, 0, 1),
                       mimic=Mimic("a", multiplier=-2.0, offset=0.3)),
        Joint.prismatic("c", "l2", "l3", origin=[0.5, 0, 0, 0, 0, 0, 1], axis=(1, 0, 0)),
        Joint.prismatic("d", "l3", "tip", axis=(0, 1, 0), mimic=Mimic("c", multiplier=0.5)),
    ]
    chain = Chain(joints).to(device)
    assert chain.joint_names == ["a", "c"] and chain.dof == 2
    free = Chain([Joint(j.name, j.type, j.parent, j.child, j.origin, j.axis, j.limits) for j in joints]).to(device)
    q = torch.tensor([[0.4, 0.2], [-1.0, 0.7]], dtype=torch.float64, device=device)
    q_free = torch.stack((q[:, 0], -2 * q[:, 0] + 0.3, q[:, 1], 0.5 * q[:, 1]), -1)
    assert max_err(chain.forward_kinematics_tensor(q), free.forward_kinematics_tensor(q_free)) < 1e-14
    Jf = free.jacobian(q_free, "tip")
    expected = torch.stack((Jf[..., 0] - 2 * Jf[..., 1], Jf[..., 2] + 0.5 * Jf[..., 3]), -1)
    assert max_err(chain.jacobian(q, "tip"), expected) < 1e-14
    assert max_err(chain.jacobian(q, "tip", method="autodiff"), expected) < 1e-12
    assert max_err(chain.joint_values(q), q_free) < 1e-15


def test_subchain_between_frames_of_a_branched_tree(device):
    tree = Chain.from_urdf(_robot("simple_humanoid.urdf")).to(device)
    with pytest.raises(ValueError, match="this chain is branched; pass frame="):
        _ = tree.tip
    arm = tree.subchain(tip="LARM_LINK6")
    assert arm.tip == "LARM_LINK6" and arm.dof < tree.dof
    q_tree = tree.random_configuration(4)
    idx = [tree.joint_names.index(n) for n in arm.joint_names]
    a = arm.forward_kinematics(q_tree[:, idx], "LARM_LINK6").tensor()
    b = tree.forward_kinematics(q_tree, "LARM_LINK6").tensor()
    assert max_err(a, b) < 1e-14
    J_tree = tree.jacobian(q_tree, "LARM_LINK6")
    assert max_err(arm.jacobian(q_tree[:, idx]), J_tree[..., idx]) < 1e-14
    assert max_err(J_tree[..., [k for k in range(tree.dof) if k not in idx]], torch.zeros(1, device=device)) == 0


def test_subchain_keeps_an_off_path_mimic_source(device):
    panda = Chain.from_urdf(_robot("panda.urdf")).to(device)
    finger = panda.subchain(tip="panda_rightfinger")  # finger_joint2 mimics finger_joint1, off this path
    assert finger.joint_names[-1] == "panda_finger_joint1"
    q = panda.random_configuration(3)
    assert max_err(finger.forward_kinematics(q, "panda_rightfinger").tensor(),
                   panda.forward_kinematics(q, "panda_rightfinger").tensor()) < 1e-14


def _dh_matrix(a, alpha, d, theta, modified):
    def rz(t):
        return np.array([[math.cos(t), -math.sin(t), 0, 0], [math.sin(t), math.cos(t), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])

    def rx(t):
        return np.array([[1, 0, 0, 0], [0, math.cos(t), -math.sin(t), 0], [0, math.sin(t), math.cos(t), 0], [0, 0, 0, 1]])

    def tr(x, y, z):
        m = np.eye(4)
        m[:3, 3] = (x, y, z)
        return m

    if modified:
        return rx(alpha) @ tr(a, 0, 0) @ rz(theta) @ tr(0, 0, d)
    return rz(theta) @ tr(0, 0, d) @ tr(a, 0, 0) @ rx(alpha)


@pytest.mark.parametrize("convention", ["standard", "modified"])
def test_dh_tables_against_the_matrix_product(convention, device):
    rows = [DHRow(0.1, 0.3, 0.2, 0.1), DHRow(0.4, -1.2, 0.0), DHRow(0.0, 0.7, 0.3, joint="prismatic", lower=-1, upper=1),
            (0.25, math.pi / 2, 0.05)]
    chain = Chain.from_dh(rows, convention).to(device)
    q = torch.tensor([0.3, -0.8, 0.15, 1.1], dtype=torch.float64, device=device)
    T = np.eye(4)
    for r, v in zip(rows, q.tolist()):
        r = r if isinstance(r, DHRow) else DHRow(*r)
        theta = r.theta + (v if r.joint == "revolute" else 0.0)
        d = r.d + (v if r.joint == "prismatic" else 0.0)
        T = T @ _dh_matrix(r.a, r.alpha, d, theta, convention == "modified")
    assert np.abs(chain.forward_kinematics(q, "link4").matrix().cpu().numpy() - T).max() < 1e-12


def test_sample_arm_is_the_panda_flange(device):
    urdf = Chain.from_urdf(_robot("panda.urdf"), tip="panda_link8").to(device)
    arm = sample_arm().to(device)
    q = urdf.random_configuration(50)
    a, b = arm.forward_kinematics(q, "tool"), urdf.forward_kinematics(q, "panda_link8")
    assert max_err(a.matrix(), b.matrix()) < 1e-8  # the URDF writes pi/2 to 16 digits
    assert torch.equal(arm.lower, urdf.lower) and torch.equal(arm.upper, urdf.upper)


def test_planar_arm_closed_form(device):
    arm = planar_arm((1.0, 0.8, 0.5)).to(device)
    q = torch.tensor([[0.3, -0.4, 1.2], [2.0, 0.5, -2.5]], dtype=torch.float64, device=device)
    c = torch.cumsum(q, -1)
    L = torch.tensor([1.0, 0.8, 0.5], dtype=torch.float64, device=device)
    x = (L * torch.cos(c)).sum(-1)
    y = (L * torch.sin(c)).sum(-1)
    tool = arm.forward_kinematics(q, "tool")
    assert max_err(tool.translation(), torch.stack((x, y, torch.zeros_like(x)), -1)) < 1e-14
    assert max_err(tool.rotation().Log().tensor()[:, 2], c[:, -1]) < 1e-14
    two = planar_arm((1.0, 0.5)).to(device)
    m = two.manipulability(torch.tensor([[0.2, 0.0], [0.2, 1.0]], dtype=torch.float64, device=device), rows=(0, 1))
    assert max_err(m, torch.tensor([0.0, 0.5 * math.sin(1.0)], dtype=torch.float64, device=device)) < 1e-12


def test_pose_transform_gets_six_columns(device):
    T = pp.randn_SE3(dtype=torch.float64, device=device)
    model = PoseTransform(T)
    p = torch.randn(5, 3, dtype=torch.float64, device=device)
    assert max_err(model(p), T.Act(p)) < 1e-14
    (J,) = modjac(model, p)
    y = T.Act(p)  # d Exp(d) T p / d d at d = 0 is [I, -[T p]x] (left perturbation, [rho, phi])
    skew = torch.zeros(5, 3, 3, dtype=torch.float64, device=device)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -y[:, 2], y[:, 1], -y[:, 0]
    skew = skew - skew.transpose(1, 2)
    eye = torch.eye(3, dtype=torch.float64, device=device).expand(5, 3, 3)
    assert J.shape == (5, 3, 6) and max_err(J, torch.cat((eye, -skew), -1)) < 1e-13
    with pytest.raises(ValueError, match="not a rigid transform"):
        PoseTransform(2 * torch.eye(4, device=device))
    # points it cannot move say so (they had stopped inside torch: "expected scalar type Double")
    with pytest.raises(ValueError, match=r"points: expected torch.float64 .* got torch.float32"):
        model(p.float())
    with pytest.raises(ValueError, match=r"points: shape \(3, 5, 3\) does not broadcast against the transform's "
                                         r"batch shape \(2,\)"):
        PoseTransform(batch=(2,), device=device)(torch.zeros(3, 5, 3, dtype=torch.float64, device=device))
    assert PoseTransform(batch=(2,), device=device).float()(p.float().expand(2, 5, 3)).shape == (2, 5, 3)


URDF_HEAD = '<?xml version="1.0"?>\n<robot name="r">\n  <link name="a"/>\n  <link name="b"/>\n'


@pytest.mark.parametrize(
    "body, match",
    [
        ('  <joint name="j" type="revolute">\n    <parent link="a"/>\n    <child link="c"/>\n    <limit lower="0" upper="1"/>\n  </joint>\n',
         r":5: joint 'j': child link 'c' is not defined"),
        ('  <joint name="j" type="floating">\n    <parent link="a"/>\n    <child link="b"/>\n  </joint>\n',
         r":5: joint 'j' has type 'floating'; supported:"),
        ('  <joint name="j" type="fixed">\n    <parent link="a"/>\n    <child link="b"/>\n  </joint>\n'
         '  <joint name="k" type="fixed">\n    <parent link="b"/>\n    <child link="a"/>\n  </joint>\n',
         "cycle"),
        ('  <joint name="j" type="fixed">\n    <parent link="a"/>\n    <child link="b"/>\n    <origin xyz="0 0"/>\n  </joint>\n',
         r":8: xyz='0 0' must be 3 finite numbers"),
        ('  <joint name="j" type="fixed">\n    <parent link="a"/>\n    <child link="b">\n  </joint>\n', r":8: not well-formed XML"),
        ('  <joint name="j" type="revolute">\n    <parent link="a"/>\n    <child link="b"/>\n  </joint>\n',
         r":5: revolute joint 'j' needs a <limit> element"),
    ],
)
def test_bad_urdf_names_the_line(body, match, device):
    with pytest.raises(UrdfError, match=match):
        Chain.from_urdf(URDF_HEAD + body + "</robot>\n").to(device)


def test_bad_tree_and_bad_configuration(device):
    with pytest.raises(KinematicTreeError, match="link 'b' has two parent joints"):
        Chain([Joint.fixed("j1", "a", "b"), Joint.fixed("j2", "c", "b")])
    with pytest.raises(KinematicTreeError, match=r"several root links \(disconnected parts\)"):
        Chain([Joint.fixed("j1", "a", "b"), Joint.fixed("j2", "c", "d")])
    with pytest.raises(KinematicTreeError, match="mimics 'x', which is not a joint"):
        Chain([Joint.revolute("j1", "a", "b", mimic=Mimic("x"))])
    arm = Chain.from_urdf(_robot("panda.urdf"), tip="panda_hand").to(device)
    with pytest.raises(ValueError, match=r"root 'nowhere' does not exist; frames: \['panda_link0'"):
        Chain.from_urdf(_robot("panda.urdf"), root="nowhere", tip="panda_hand").to(device)
    with pytest.raises(ValueError, match="root 'panda_hand' is not an ancestor of tip 'panda_link3'"):
        Chain.from_urdf(_robot("panda.urdf"), root="panda_hand", tip="panda_link3").to(device)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 7\) for the 7 actuated joints \['panda_joint1'"):
        arm.forward_kinematics(torch.zeros(3, 6, device=device))
    with pytest.raises(ValueError, match="NaN or infinite"):
        arm.jacobian(torch.full((7,), float("nan"), device=device))
    with pytest.raises(TypeError, match="floating-point"):
        arm.forward_kinematics(torch.zeros(7, dtype=torch.long, device=device))
    with pytest.raises(ValueError, match="frame 'hand' does not exist"):
        arm.jacobian(torch.zeros(7, device=device), "hand")
    with pytest.raises(ValueError, match="reference: expected 'world' or 'local'"):
        arm.jacobian(torch.zeros(7, device=device), reference="body")


def _snake_urdf(n: int) -> str:
    parts = ['<robot name="snake">'] + [f'<link name="l{k}"/>' for k in range(n + 1)]
    parts += [f'<joint name="j{k}" type="revolute"><parent link="l{k}"/><child link="l{k + 1}"/>'
              f'<origin xyz="0.01 0 0" rpy="0 0 0.001"/><axis xyz="0 0 1"/>'
              f'<limit lower="-1" upper="1" velocity="1" effort="1"/></joint>' for k in range(n)]
    return "\n".join(parts + ["</robot>"])


def test_a_long_chain_is_linear_in_its_links(device):
    """A 10,000-joint chain: its constants grow with the joints (a dense theta map was 10k x 10k,
    800 MB), and FK of every frame matches composing the joints one by one."""
    chain = Chain.from_urdf(_snake_urdf(10_000)).to(device)
    held = sum(b.numel() for b in chain.buffers())
    assert chain.dof == 10_000 and held < 200 * len(chain.frame_names)
    q = chain.random_configuration(2, generator=torch.Generator().manual_seed(0))
    poses = chain.forward_kinematics(q)
    # planar: joint k's 1 cm step points along the heading h_k = sum_{i<k} (q_i + 0.001)
    heading = torch.cat((torch.zeros_like(q[:, :1]), torch.cumsum(q + 0.001, dim=-1)[:, :-1]), -1)
    tip = 0.01 * torch.stack((torch.cos(heading), torch.sin(heading)), -1).sum(1)
    assert max_err(poses["l10000"].translation()[:, :2], tip) < 1e-9
    chain.clear_cache()
    assert chain.workspace_bytes() == 0


def test_fk_workspaces_stay_inside_their_budget(device):
    """Workspaces are kept per batch size for reuse, but never more than the budget (five calls at
    1M and 2M rows once kept 6.9 GB); a workspace larger than the budget is not kept at all."""
    chain = Chain.from_urdf(_robot("panda.urdf"), tip="panda_hand").to(device)
    chain.workspace_budget = 4 << 20
    for B in (1000, 20_000, 1001, 40_000, 1002, 20_000):
        q = chain.random_configuration(B)
        X = chain.forward_kinematics(q)
        assert X["panda_hand"].shape == (B, 7)
        assert chain.workspace_bytes() <= chain.workspace_budget
    assert chain.workspace_bytes() > 0  # the small ones are kept


@pytest.mark.slow
def test_loading_a_long_chain_takes_little_memory():
    """Measured in a fresh process: loading and FK of every frame of a 10,000-joint chain add
    less than 300 MB (2 GB before, from the dense theta map and a path per frame)."""
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from test_kinematics import _snake_urdf\n"
        "from robojac.kinematics import Chain\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "text = _snake_urdf(10_000); before = rss()\n"
        "c = Chain.from_urdf(text); c.forward_kinematics(c.random_configuration(4))\n"
        "print(rss() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) < 300 << 20
