"""The centre of mass and its Jacobian, against Pinocchio, MuJoCo, autograd and finite differences."""

import math

import numpy as np
import pytest
import torch

from robojac.data import path as data_path
from robojac.kinematics import Chain, Inertial, Joint, JointLimits, JointType, Mimic, MjcfError, UrdfError

from helpers import max_err, pinocchio_configuration


def _pinocchio_reference(pin, model, chain, q):
    """Pinocchio's centre of mass and its Jacobian (columns in the chain's joints, a mimic joint's
    added to its source's), with the root link counted: Pinocchio's ``centerOfMass`` of a
    fixed-base model leaves it out (it is the "universe" body's inertia)."""
    data = model.createData()
    qp = pinocchio_configuration(pin, model, chain, q)
    c = pin.centerOfMass(model, data, qp)
    Jp = pin.jacobianCenterOfMass(model, data, qp)
    moving, root = data.mass[0], model.inertias[0]
    total = moving + root.mass
    J = np.zeros((3, chain.dof))
    for k, name in enumerate(chain.joint_names):
        J[:, k] += Jp[:, model.joints[model.getJointId(name)].idx_v]
    for m, (src, mult, _) in chain.tree.mimic.items():
        J[:, chain.joint_names.index(src)] += mult * Jp[:, model.joints[model.getJointId(m)].idx_v]
    return (moving * c + root.mass * root.lever) / total, J * moving / total, total


@pytest.mark.parametrize("urdf", ["talos_reduced.urdf", "panda.urdf", "ur5.urdf", "kuka_iiwa14.urdf"])
def test_center_of_mass_and_jacobian_equal_pinocchios(urdf, device):
    pin = pytest.importorskip("pinocchio")
    path = data_path(f"robots/{urdf}")
    chain = Chain.from_urdf(path).to(device)
    model = pin.buildModelFromUrdf(str(path))
    q = chain.random_configuration(6, generator=torch.Generator().manual_seed(3), device=device)
    c, J = chain.center_of_mass_and_jacobian(q)
    assert max_err(c, chain.center_of_mass(q)) == 0.0
    for b in range(q.shape[0]):
        ref_c, ref_J, total = _pinocchio_reference(pin, model, chain, q[b].cpu())
        assert np.abs(c[b].cpu().numpy() - ref_c).max() < 1e-12
        assert np.abs(J[b].cpu().numpy() - ref_J).max() < 1e-12
        assert chain.mass == pytest.approx(total, rel=1e-14)


def test_iiwa_mjcf_equals_mujocos_subtree_com(device, tmp_path, monkeypatch):
    mujoco = pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)  # MuJoCo may write its log file into the working folder
    path = str(data_path("robots/kuka_iiwa14.xml"))
    chain = Chain.from_mjcf(path).to(device)
    model = mujoco.MjModel.from_xml_path(path)
    data = mujoco.MjData(model)
    assert chain.mass == pytest.approx(float(model.body_mass.sum()), rel=1e-14)
    q = chain.random_configuration(5, generator=torch.Generator().manual_seed(1), device=device)
    _assert_mujocos(mujoco, model, data, chain, q)


def _assert_mujocos(mujoco, model, data, chain, q):
    """The chain's centre of mass and its Jacobian equal MuJoCo's ``subtree_com`` of the world body
    and ``mj_jacSubtreeCom`` at every configuration of ``q (B, dof)``, to 1e-12."""
    c, J = chain.center_of_mass_and_jacobian(q)
    for b in range(q.shape[0]):
        data.qpos[:] = q[b].cpu().numpy()
        mujoco.mj_forward(model, data)
        ref = np.zeros((3, model.nv))
        mujoco.mj_jacSubtreeCom(model, data, ref, 0)
        assert np.abs(c[b].cpu().numpy() - data.subtree_com[0]).max() < 1e-12
        assert np.abs(J[b].cpu().numpy() - ref).max() < 1e-12


def _slider_arm(device):
    """A revolute, a prismatic and a mimic joint, with masses on the root, the middle and the tip."""
    eye = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    joints = [
        Joint("turn", JointType.REVOLUTE, "base", "a", torch.tensor([0.1, 0, 0.2, 0, 0, 0, 1.0], device="cpu"),
              (0, 0, 1), JointLimits(-3, 3)),
        Joint("slide", JointType.PRISMATIC, "a", "b",
              torch.tensor([0.3, 0, 0, 0, 0.3826834, 0, 0.9238795], device="cpu"), (1, 0, 0), JointLimits(-0.5, 0.5)),
        Joint("follow", JointType.REVOLUTE, "b", "c", torch.tensor([0.2, 0.1, 0, *eye[3:]], device="cpu"), (0, 1, 0),
              JointLimits(-9, 9), mimic=Mimic("turn", -1.5, 0.2)),
    ]
    inertials = {"base": Inertial(2.0, (0.0, 0.1, 0.0)), "a": Inertial(1.0, (0.05, 0.0, 0.1)),
                 "c": Inertial(0.5, (0.1, -0.2, 0.3))}
    return Chain(joints, inertials=inertials).to(device)


def test_jacobian_equals_finite_differences_and_autograd(device):
    chain = _slider_arm(device)
    q = torch.tensor([[0.4, 0.2], [-1.1, -0.3]], dtype=torch.float64, device=device)
    _, J = chain.center_of_mass_and_jacobian(q)
    h = 1e-6
    for k in range(chain.dof):
        d = torch.zeros_like(q)
        d[:, k] = h
        fd = (chain.center_of_mass(q + d) - chain.center_of_mass(q - d)) / (2 * h)
        assert max_err(fd, J[..., k]) < 1e-9
    auto = torch.func.vmap(torch.func.jacrev(chain.center_of_mass))(q.clone())
    assert max_err(auto, J) < 1e-14
    # the point masses by hand: the weighted mean of each link's centre moved by its pose
    X = chain.forward_kinematics(q)
    by_hand = sum(i.mass * X[f].Act(torch.tensor(i.com, dtype=q.dtype, device=device)) for f, i in
                  chain.inertials.items()) / 3.5
    assert max_err(by_hand, chain.center_of_mass(q)) < 1e-15


@pytest.mark.parametrize("shape", [(), (0,), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_shapes_and_dtypes(shape, dtype, device):
    chain = Chain.from_urdf(data_path("robots/panda.urdf")).to(device)
    q = chain.random_configuration(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype, device=device)
    c, J = chain.center_of_mass_and_jacobian(q)
    assert c.shape == shape + (3,) and J.shape == shape + (3, chain.dof)
    assert c.dtype == J.dtype == dtype and c.device == J.device == q.device
    if q.numel() and device.type != "meta":
        ref_c, ref_J = chain.center_of_mass_and_jacobian(q.double())
        tol = 1e-5 if dtype == torch.float32 else 1e-15
        assert max_err(c.double(), ref_c) < tol and max_err(J.double(), ref_J) < tol


def test_subchains_parameters_and_copies_keep_the_masses(device):
    panda = Chain.from_urdf(data_path("robots/panda.urdf")).to(device)
    arm = panda.subchain(tip="panda_link8")
    assert set(arm.inertials) == {f for f in arm.frame_names if f in panda.inertials}
    assert "panda_leftfinger" not in arm.inertials and arm.mass < panda.mass
    q = panda.random_configuration(3, generator=torch.Generator().manual_seed(2), device=device)
    assert max_err(panda.frozen().center_of_mass(q), panda.center_of_mass(q)) == 0.0
    tuned = panda.with_parameters(origins=None, offsets=["panda_joint2"])
    with torch.no_grad():
        tuned.joint_offsets.fill_(0.1)
    shifted = q.clone()
    shifted[:, 1] += 0.1
    assert max_err(tuned.center_of_mass(q), panda.center_of_mass(shifted)) < 1e-15


def test_a_chain_without_masses_and_bad_inertials_are_refused(device, tmp_path):
    eye = torch.tensor([0.0, 0, 0, 0, 0, 0, 1], device="cpu")
    bare = Chain([Joint("j", JointType.REVOLUTE, "a", "b", eye, (0, 0, 1), JointLimits(-1, 1))]).to(device)
    assert bare.mass == 0.0
    with pytest.raises(ValueError, match="chain 'chain' has no mass: none of its links has an Inertial"):
        bare.center_of_mass(torch.zeros(1, dtype=torch.float64, device=device))
    j = [Joint("j", JointType.REVOLUTE, "a", "b", eye, (0, 0, 1), JointLimits(-1, 1))]
    with pytest.raises(ValueError, match=r"inertials: \['c'\] name no frame of the chain"):
        Chain(j, inertials={"c": Inertial(1.0)})
    with pytest.raises(TypeError, match=r"inertials\['b'\]: expected a robojac Inertial, got float"):
        Chain(j, inertials={"b": 1.0})
    with pytest.raises(ValueError, match="expected a finite mass of at least 0 kg, got -1.0"):
        Inertial(-1.0)
    with pytest.raises(ValueError, match="expected com as three finite numbers"):
        Inertial(1.0, (0.0, math.nan, 0.0))
    urdf = tmp_path / "no_mass.urdf"
    urdf.write_text('<robot name="r">\n<link name="a"/>\n<link name="b">\n  <inertial>\n'
                    '    <origin xyz="0 0 1"/>\n  </inertial>\n</link>\n</robot>\n')
    with pytest.raises(UrdfError, match=r"no_mass.urdf:4: the <inertial> of link 'b' has no <mass value=...>"):
        Chain.from_urdf(urdf)
    urdf.write_text('<robot name="r">\n<link name="a">\n<inertial><mass value="-2"/></inertial>\n</link>\n</robot>\n')
    with pytest.raises(UrdfError, match=r"no_mass.urdf:3: link 'a' has mass -2.0; expected at least 0 kg"):
        Chain.from_urdf(urdf)


def test_urdf_written_from_code_keeps_the_masses(device, tmp_path):
    chain = _slider_arm(device)
    chain.to_urdf(tmp_path / "arm.urdf")
    back = Chain.from_urdf(tmp_path / "arm.urdf").to(device)
    assert back.inertials == chain.inertials
    q = torch.tensor([0.3, -0.2], dtype=torch.float64, device=device)
    assert max_err(back.center_of_mass(q), chain.center_of_mass(q)) < 1e-15


_GEOMS = """<mujoco>{compiler}<worldbody><geom type="plane" size="1 1 0.1"/>
  <body name="upper" pos="0 0 1"><joint name="j1" axis="0 1 0"/>
    <inertial pos="0 0 -0.2" mass="{m1}" diaginertia="0.01 0.01 0.01"/>
    <geom type="capsule" size="0.05" fromto="0 0 0 0 0 -0.4"/>
    <body name="lower" pos="0 0 -0.4"><joint name="j2" axis="0 1 0"/>
      {lower}
    </body>
  </body>
</worldbody></mujoco>"""


@pytest.mark.parametrize("compiler", ["", '<compiler settotalmass="9"/>', '<compiler boundmass="2.5"/>'])
def test_mjcf_masses_follow_mujocos_compiler(compiler, device, tmp_path, monkeypatch):
    mujoco = pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)
    xml = _GEOMS.format(compiler=compiler, m1=3.0, lower='<inertial pos="0.1 0 -0.3" mass="1.5" '
                        'diaginertia="0.01 0.01 0.01"/><geom type="sphere" size="0.1" pos="0 0 -0.3"/>')
    chain = Chain.from_mjcf(xml).to(device)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    assert chain.mass == pytest.approx(float(model.body_mass.sum()), rel=1e-14)
    _assert_mujocos(mujoco, model, data, chain, torch.tensor([[0.7, -1.2]], dtype=torch.float64, device=device))


def test_mjcf_masses_from_geoms_equal_mujocos(device, tmp_path, monkeypatch):
    """Bodies without <inertial> weigh their geoms: every primitive shape, by mass or density
    (a default class's), placed by pos, fromto or inside a <frame>; a geom outside
    inertiagrouprange weighs nothing."""
    mujoco = pytest.importorskip("mujoco")
    monkeypatch.chdir(tmp_path)
    xml = ('<mujoco><compiler angle="radian" inertiagrouprange="0 3"/><default><geom density="800"/>'
           '<default class="heavy"><geom density="3000" type="box" size="0.1 0.05 0.02"/></default></default>'
           '<worldbody><geom type="plane" size="1 1 0.1"/>'
           '<body name="a" pos="0 0 1"><joint name="j1" axis="0 1 0"/>'
           '<geom type="capsule" size="0.05" fromto="0 0 0 0.1 0 -0.4"/>'
           '<geom type="sphere" size="0.07" pos="0.02 0.03 -0.1" mass="2"/>'
           '<frame pos="0.1 0 0" euler="0 0.5 0.3"><geom class="heavy" pos="0.05 0.02 0"/></frame>'
           '<body name="b" pos="0 0 -0.4"><joint name="j2" axis="1 0 0"/>'
           '<geom type="cylinder" size="0.04 0.1" pos="0 0.1 0"/>'
           '<geom type="ellipsoid" size="0.04 0.05 0.06" pos="0 0 -0.2"/>'
           '<geom type="ellipsoid" size="0.03" fromto="0 0 0 0.1 0.1 0.1"/>'
           '<geom type="box" size="0.02" fromto="0 0 0 0 0.2 -0.2"/>'
           '<geom type="sphere" size="0.3" group="4"/>'
           '</body></body></worldbody></mujoco>')
    chain = Chain.from_mjcf(xml).to(device)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    assert chain.unknown_masses == ()
    for k, body in enumerate(("a", "b"), start=1):
        assert chain.inertials[body].mass == pytest.approx(float(model.body_mass[k]), rel=1e-13)
        assert np.abs(np.array(chain.inertials[body].com) - model.body_ipos[k]).max() < 1e-13
    _assert_mujocos(mujoco, model, data, chain, torch.tensor([[0.3, -0.7], [-1.2, 2.0]], dtype=torch.float64,
                                                             device=device))


def test_mjcf_masses_this_reader_cannot_measure_are_named_not_guessed(device):
    xml = _GEOMS.format(compiler="", m1=3.0, lower='<geom type="mesh" mesh="shin" pos="0 0 -0.3"/>')
    chain = Chain.from_mjcf(xml).to(device)
    assert chain.unknown_masses == ("lower",)
    q = torch.zeros(2, dtype=torch.float64, device=device)
    for call in (lambda: chain.mass, lambda: chain.center_of_mass(q), lambda: chain.center_of_mass_and_jacobian(q)):
        with pytest.raises(ValueError, match=r"the masses of \['lower'\] are not known: MuJoCo weighs their mesh"):
            call()
    everything = Chain.from_mjcf(xml.replace("<mujoco>", '<mujoco><compiler inertiafromgeom="true"/>'))
    assert everything.unknown_masses == ("lower",)  # "upper"'s capsule is measured, its <inertial> set aside
    assert everything.subchain(tip="upper").mass == pytest.approx(math.pi * 0.05**2 * (0.4 + 4 / 3 * 0.05) * 1000)
    arm = chain.subchain(tip="upper")  # the sub-chain above the body of unknown mass is whole
    assert arm.unknown_masses == () and arm.mass == 3.0
    bad = xml.replace('mass="3.0"', "")
    with pytest.raises(MjcfError, match=r"<mjcf string>:3: the <inertial> of body 'upper' has no mass"):
        Chain.from_mjcf(bad)
    with pytest.raises(MjcfError, match=r"a capsule geom needs 2 sizes of at least 0, got size='0.05'"):
        Chain.from_mjcf(xml.replace('<geom type="mesh" mesh="shin" pos="0 0 -0.3"/>',
                                    '<geom type="capsule" size="0.05" pos="0 0 -0.3"/>'))


def _zyx_quaternion(yaw, pitch, roll):
    """``[x, y, z, w]`` of ``Rz(yaw) Ry(pitch) Rx(roll)``, written out (not through robojac)."""
    cy, sy, cp, sp, cr, sr = (f(a / 2) for a in (yaw, pitch, roll) for f in (math.cos, math.sin))
    return [sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy]


def test_floating_base_equals_pinocchios_free_flyer(device):
    pin = pytest.importorskip("pinocchio")
    path = data_path("robots/talos_reduced.urdf")
    fixed = Chain.from_urdf(path)
    chain = fixed.with_floating_base().to(device)
    assert chain.joint_names[:6] == ["floating_x", "floating_y", "floating_z", "floating_yaw", "floating_pitch",
                                     "floating_roll"]
    assert chain.dof == fixed.dof + 6 and chain.root == "world" and chain.mass == pytest.approx(fixed.mass, rel=1e-15)
    model = pin.buildModelFromUrdf(str(path), pin.JointModelFreeFlyer())
    data = model.createData()
    q = chain.random_configuration(3, generator=torch.Generator().manual_seed(4), device=device)
    c, J = chain.center_of_mass_and_jacobian(q)
    X = chain.forward_kinematics_tensor(q)
    for b in range(3):
        qb = q[b].cpu()
        qp = pin.neutral(model)
        qp[:3] = qb[:3].numpy()
        qp[3:7] = _zyx_quaternion(*qb[3:6].tolist())
        joints = pinocchio_configuration(pin, model, fixed, qb[6:])
        qp[7:] = joints[7:]
        pin.framesForwardKinematics(model, data, qp)
        for frame in fixed.frame_names:
            k = chain.frame_names.index(frame)
            assert np.abs(X[b, k, :3].cpu().numpy() - data.oMf[model.getFrameId(frame)].translation).max() < 1e-12
        assert np.abs(c[b].cpu().numpy() - pin.centerOfMass(model, data, qp)).max() < 1e-12
    eye = torch.eye(3, dtype=q.dtype, device=device).expand(3, 3, 3)
    assert max_err(J[..., :3], eye) < 1e-15  # the base's translation moves the centre of mass one to one


def test_floating_base_is_kept_by_copies_and_refuses_taken_names(device):
    chain = Chain.from_urdf(data_path("robots/panda.urdf")).with_floating_base("ground").to(device)
    assert chain.floating_joints == tuple(chain.joint_names[:6])
    assert chain.frozen().floating_joints == chain.floating_joints
    assert chain.subchain(tip="panda_hand").floating_joints == chain.floating_joints
    assert chain.subchain("panda_link0", "panda_hand").floating_joints == ()
    with pytest.raises(ValueError, match=r"this chain already has a floating base: \['floating_x', 'floating_y'"):
        chain.with_floating_base("sky")
    panda = Chain.from_urdf(data_path("robots/panda.urdf"))
    with pytest.raises(ValueError, match=r"root: the frames \['panda_link8'\] already exist in this chain"):
        panda.with_floating_base("panda_link8")
    eye = torch.tensor([0.0, 0, 0, 0, 0, 0, 1], device="cpu")
    slider = Chain([Joint("floating_x", JointType.PRISMATIC, "a", "b", eye, (1, 0, 0), JointLimits(-1, 1))])
    with pytest.raises(ValueError, match=r"this chain already has joints named \['floating_x'\]"):
        slider.with_floating_base()
