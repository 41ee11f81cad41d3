"""robojac.kinematics' MJCF reader against MuJoCo itself (and Pinocchio on the iiwa file).

MuJoCo compiles the same XML and computes the poses of every body and site (``mj_kinematics``)
and their Jacobians (``mj_jac``); random models exercise every attribute the reader takes.
"""

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robojac import ik
from robojac.data import path as data_path
from robojac.kinematics import Chain, MjcfError, chain_from_mjcf, write_urdf

mujoco = pytest.importorskip("mujoco")


@pytest.fixture(autouse=True, scope="module")
def _mujoco_logs_elsewhere(tmp_path_factory):
    """MuJoCo writes MUJOCO_LOG.TXT into the working folder when a random model's masses warn."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("mujoco"))
    yield
    os.chdir(here)


def _fmt(v):
    return " ".join(f"{float(x):.6g}" for x in v)


class _RandomModel:
    """A random MJCF model that uses every kinematic attribute the reader knows."""

    def __init__(self, seed: int, slide_ranges: bool = False):
        self.slide_ranges = slide_ranges  # every slide joint gets a range (the same model otherwise)
        self.rng = np.random.default_rng(seed)
        self.degrees = bool(self.rng.integers(2))
        self.n_bodies = 0
        self.site_pos_default = bool(self.rng.integers(2))

    def angle(self, rad: float) -> float:
        return math.degrees(rad) if self.degrees else rad

    def orientation(self) -> str:
        r = self.rng
        kind = r.choice(["none", "quat", "axisangle", "euler", "xyaxes", "zaxis"])
        if kind == "quat":
            return f' quat="{_fmt(r.normal(size=4))}"'  # not unit: MuJoCo normalizes
        if kind == "axisangle":
            return f' axisangle="{_fmt(r.normal(size=3))} {self.angle(r.uniform(-3, 3)):.6g}"'
        if kind == "euler":
            return f' euler="{_fmt(self.angle(a) for a in r.uniform(-3, 3, 3))}"'
        if kind == "xyaxes":
            return f' xyaxes="{_fmt(r.normal(size=6))}"'
        if kind == "zaxis":
            z = r.choice([0, 1, 2])
            v = [r.normal(size=3), [0, 0, -1.0], [0, 0, 2.0]][z]
            return f' zaxis="{_fmt(v)}"'
        return ""

    def joint(self) -> str:
        r = self.rng
        attrs = []
        if r.random() < 0.7:
            attrs.append(f'name="j{r.integers(1 << 30)}"')
        hinge = r.random() < 0.75
        if not hinge:
            attrs.append('type="slide"')
        elif r.random() < 0.3:
            attrs.append('type="hinge"')
        if r.random() < 0.7:
            attrs.append(f'axis="{_fmt(r.normal(size=3))}"')
        if r.random() < 0.5:
            attrs.append(f'pos="{_fmt(r.normal(scale=0.2, size=3))}"')
        if r.random() < 0.4:
            ref = r.uniform(-1, 1)
            attrs.append(f'ref="{self.angle(ref) if hinge else ref:.6g}"')
        if r.random() < 0.5 or (self.slide_ranges and not hinge):
            lo, hi = sorted(r.uniform(-2, 2, 2))
            scale = self.angle if hinge else (lambda v: v)
            attrs.append(f'range="{scale(lo):.6g} {scale(hi):.6g}"')
        if r.random() < 0.3:
            attrs.append(f'class="{r.choice(["main", "arm", "wrist"])}"')
        return f"<joint {' '.join(attrs)}/>"

    def site(self) -> str:
        r = self.rng
        name = f'name="s{r.integers(1 << 30)}"' if r.random() < 0.8 else ""
        if r.random() < 0.25 and not self.site_pos_default:  # MuJoCo refuses fromto with a pos, even a default one
            a, b = r.normal(size=3), r.normal(size=3)
            return f'<site {name} type="capsule" size="0.01" fromto="{_fmt(a)} {_fmt(b)}"/>'
        cls = f' class="{r.choice(["main", "arm", "wrist"])}"' if r.random() < 0.3 else ""
        pos = f' pos="{_fmt(r.normal(size=3))}"' if r.random() < 0.7 else ""
        return f"<site {name}{cls}{pos}{self.orientation()}/>"

    def body(self, depth: int) -> str:
        r = self.rng
        self.n_bodies += 1
        name = f' name="b{self.n_bodies}"' if r.random() < 0.85 else ""
        cc = f' childclass="{r.choice(["arm", "wrist"])}"' if r.random() < 0.2 else ""
        inner = [self.joint() for _ in range(r.choice([0, 1, 1, 1, 2, 3]))]
        inner.append(self.geom())
        inner += [self.site() for _ in range(r.integers(0, 3))]
        if depth < 4:
            for _ in range(r.integers(0, 3)):
                inner.append(self.placed(depth + 1))
        return f'<body{name}{cc} pos="{_fmt(r.normal(size=3))}"{self.orientation()}>{"".join(inner)}</body>'

    def geom(self) -> str:
        """A geom MuJoCo weighs: each primitive shape, placed by pos or fromto, by mass or density,
        sometimes inside a <frame> (the body's mass and centre then come from its geoms)."""
        r = self.rng
        kind = r.choice(["sphere", "capsule", "cylinder", "ellipsoid", "box"])
        size = r.uniform(0.02, 0.1, 3)
        if kind in ("capsule", "cylinder", "box", "ellipsoid") and r.random() < 0.4:
            place = f' fromto="{_fmt(r.normal(scale=0.2, size=6))}" size="{size[0]:.6g}"'
        else:
            place = f' pos="{_fmt(r.normal(scale=0.2, size=3))}" size="{_fmt(size)}"'
        weight = f' mass="{r.uniform(0.1, 3):.6g}"' if r.random() < 0.5 else f' density="{r.uniform(200, 3000):.6g}"'
        g = f'<geom type="{kind}"{place}{weight}/>'
        if r.random() < 0.2:
            return f'<frame pos="{_fmt(r.normal(size=3))}"{self.orientation()}>{g}</frame>'
        return g

    def placed(self, depth: int) -> str:
        if self.rng.random() < 0.2:  # a <frame> around the body
            cc = f' childclass="{self.rng.choice(["arm", "wrist"])}"' if self.rng.random() < 0.3 else ""
            return f'<frame{cc} pos="{_fmt(self.rng.normal(size=3))}"{self.orientation()}>{self.body(depth)}</frame>'
        return self.body(depth)

    def xml(self) -> str:
        r = self.rng
        seq = "".join(c if r.random() < 0.5 else c.upper() for c in r.permutation(list("xyz")))
        compiler = f'<compiler angle="{"degree" if self.degrees else "radian"}" eulerseq="{seq}"/>'
        if self.degrees and r.random() < 0.5:
            compiler = f'<compiler eulerseq="{seq}"/>'  # degrees are MuJoCo's default
        site = f'<site pos="{_fmt(r.normal(size=3))}"/>' if self.site_pos_default else ""
        defaults = (f'<default><joint axis="{_fmt(r.normal(size=3))}"/>{site}'
                    f'<default class="arm"><joint range="{self.angle(-1):.6g} {self.angle(1.5):.6g}" '
                    f'ref="{self.angle(0.2):.6g}"/>'
                    f'<site euler="{self.angle(0.5):.6g} 0 0"/>'
                    f'<default class="wrist"><joint axis="1 0 0" pos="0 0 0.1"/><site zaxis="1 1 0"/></default>'
                    '</default></default>')
        bodies = "".join(self.placed(0) for _ in range(r.integers(1, 3)))
        sites = self.site() if r.random() < 0.3 else ""
        return f'<mujoco model="random">{compiler}{defaults}<worldbody>{sites}{bodies}</worldbody></mujoco>'


def _mujoco_poses(model, qpos):
    """Body and site poses (position, rotation matrix) and MuJoCo's data, at ``qpos``."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    mujoco.mj_comPos(model, data)  # the motion axes mj_jac reads
    bodies = {i: (data.xpos[i].copy(), data.xmat[i].reshape(3, 3).copy()) for i in range(model.nbody)}
    sites = {i: (data.site_xpos[i].copy(), data.site_xmat[i].reshape(3, 3).copy()) for i in range(model.nsite)}
    return bodies, sites, data


def _frame_of(name: str, kind: str, index: int) -> str:
    return name or f"{kind}{index}"


def _compare(xml: str, chain: Chain, n_configurations: int = 4, seed: int = 0):
    """Largest position and rotation differences between the chain's frames and MuJoCo's, of the
    sites' Jacobians, and of the centre of mass (MuJoCo's ``subtree_com`` of the world body)."""
    model = mujoco.MjModel.from_xml_string(xml)
    assert model.nq == chain.dof == model.nv
    assert chain.joint_names == [_frame_of(model.joint(i).name, "joint", i) for i in range(model.njnt)]
    gen = torch.Generator().manual_seed(seed)
    q = torch.rand(n_configurations, chain.dof, generator=gen, dtype=torch.float64) * 4 - 2
    q = torch.where(torch.isfinite(chain.lower), torch.maximum(q, chain.lower), q)
    q = torch.where(torch.isfinite(chain.upper), torch.minimum(q, chain.upper), q)
    names = ([_frame_of(model.body(i).name, "body", i) for i in range(model.nbody)]
             + [_frame_of(model.site(i).name, "site", i) for i in range(model.nsite)])
    # a site named like a body is the frame "<site>:site"
    bodies = set(names[: model.nbody])
    names[model.nbody:] = [n if n not in bodies else f"{n}:site" for n in names[model.nbody:]]
    T = chain.forward_kinematics_tensor(q, names)
    worst_t = worst_r = worst_j = worst_c = 0.0
    centres = chain.center_of_mass(q) if model.body_mass.sum() > 0 and not chain.unknown_masses else None
    for b in range(n_configurations):
        body, site, data = _mujoco_poses(model, q[b].numpy())
        if centres is not None:
            mujoco.mj_comPos(model, data)
            worst_c = max(worst_c, float(np.abs(centres[b].numpy() - data.subtree_com[0]).max()))
        ref = list(body.values()) + list(site.values())
        R = _matrices(T[b, :, 3:])
        for k, (p, Rm) in enumerate(ref):
            worst_t = max(worst_t, float(np.abs(T[b, k, :3].numpy() - p).max()))
            worst_r = max(worst_r, float(np.abs(R[k] - Rm).max()))
        for k in range(model.nsite if model.nv else 0):  # every site's Jacobian, linear and angular rows
            jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
            mujoco.mj_jacSite(model, data, jacp, jacr, k)
            J = chain.jacobian(q[b], names[model.nbody + k]).numpy()
            worst_j = max(worst_j, float(np.abs(J - np.vstack((jacp, jacr))).max()))
    return worst_t, worst_r, worst_j, worst_c


def _matrices(quat: torch.Tensor) -> np.ndarray:
    x, y, z, w = quat.unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return R.reshape(*quat.shape[:-1], 3, 3).numpy()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_random_models_pose_every_body_and_site_as_mujoco(seed):
    """Any model of bodies, frames, sites, hinges and slides (each orientation attribute, joint
    pos and ref, ranges in degrees or radians, default classes and childclass on bodies and
    frames, geoms of every primitive shape): every frame's pose, every site's Jacobian and the
    centre of mass equal MuJoCo's."""
    xml = _RandomModel(seed).xml()
    chain = Chain.from_mjcf(xml)
    assert chain.mass == pytest.approx(float(mujoco.MjModel.from_xml_string(xml).body_mass.sum()), rel=1e-12)
    t, r, j, c = _compare(xml, chain, seed=seed)
    assert t < 1e-9 and r < 1e-9 and j < 1e-9 and c < 1e-9, (t, r, j, c, xml)


def test_limits_and_joint_kinds_are_mujocos():
    xml = ('<mujoco><compiler angle="degree"/><default><default class="c"><joint range="-30 60"/></default></default>'
           '<worldbody><body name="a"><joint name="lim" range="-90 45"/><joint name="free"/>'
           '<joint name="cls" class="c"/><joint name="off" range="-90 45" limited="false"/>'
           '<joint name="sl" type="slide" range="-0.5 0.25"/><geom size="0.1"/></body></worldbody></mujoco>')
    chain = Chain.from_mjcf(xml)
    model = mujoco.MjModel.from_xml_string(xml)
    lower, upper = chain.joint_limits
    for i, name in enumerate(chain.joint_names):
        assert name == model.joint(i).name
        if model.jnt_limited[i]:
            assert (float(lower[i]), float(upper[i])) == pytest.approx(tuple(model.jnt_range[i]), abs=1e-12)
        else:
            assert math.isinf(float(lower[i])) and math.isinf(float(upper[i]))
    kinds = {j.name: j.type.value for j in chain.joints if j.type.movable}
    assert kinds == {"lim": "revolute", "free": "continuous", "cls": "revolute", "off": "continuous", "sl": "prismatic"}


def test_the_iiwa_file_matches_mujoco_and_pinocchio():
    pin = pytest.importorskip("pinocchio")
    path = data_path("robots/kuka_iiwa14.xml")
    chain = Chain.from_mjcf(path)
    assert chain.dof == 7 and chain.tip == "lbr_iiwa_link_7"
    t, r, _, c = _compare(path.read_text(), chain, n_configurations=8)
    assert t < 1e-12 and r < 1e-12 and c < 1e-12
    model = pin.buildModelFromMJCF(str(path))
    data = model.createData()
    q = chain.random_configuration(8, generator=torch.Generator().manual_seed(3))
    T = chain.forward_kinematics_tensor(q, chain.frame_names)
    J = chain.jacobian(q)
    for b in range(8):
        pin.computeJointJacobians(model, data, q[b].numpy())
        pin.framesForwardKinematics(model, data, q[b].numpy())
        for k, frame in enumerate(chain.frame_names[1:], start=1):
            M = data.oMf[model.getFrameId(frame)]
            assert np.abs(T[b, k, :3].numpy() - M.translation).max() < 1e-12
            assert np.abs(_matrices(T[b, k, 3:]) - M.rotation).max() < 1e-12
        Jp = pin.getFrameJacobian(model, data, model.getFrameId("lbr_iiwa_link_7"), pin.LOCAL_WORLD_ALIGNED)
        assert np.abs(J[b].numpy() - Jp).max() < 1e-12


def test_ik_solves_on_the_mjcf_arm():
    chain = Chain.from_mjcf(data_path("robots/kuka_iiwa14.xml"))
    tip = "lbr_iiwa_link_7"
    target = chain.forward_kinematics(chain.random_configuration(64, generator=torch.Generator().manual_seed(5)), tip)
    result = ik.solve(chain, target)
    assert bool(result.converged.all()) and bool(chain.within_limits(result.q).all())
    reached = chain.forward_kinematics(result.q, tip)
    assert float((reached.translation() - target.translation()).norm(dim=-1).max()) < ik.IKConfig().position_tolerance


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_written_as_urdf_it_reads_back_the_same(tmp_path, seed):
    """MJCF to URDF: the written file reads back with the same joints and frames.  A slide
    without a range has no URDF form and is refused by name."""
    xml = _RandomModel(seed).xml()
    chain = Chain.from_mjcf(xml)
    unlimited = [j.name for j in chain.joints if j.type.value == "prismatic" and math.isinf(j.limits.upper)]
    if unlimited:
        with pytest.raises(ValueError, match=f"joint '{unlimited[0]}': a prismatic joint with limits"):
            write_urdf(chain, tmp_path / "random.urdf")
        chain = Chain.from_mjcf(_RandomModel(seed, slide_ranges=True).xml())
    write_urdf(chain, tmp_path / "random.urdf")
    back = Chain.from_urdf(tmp_path / "random.urdf")
    assert back.joint_names == chain.joint_names and back.frame_names == chain.frame_names
    q = chain.random_configuration(5, generator=torch.Generator().manual_seed(0))
    a = chain.forward_kinematics_tensor(q, chain.frame_names)
    b = back.forward_kinematics_tensor(q, chain.frame_names)
    assert float((a[..., :3] - b[..., :3]).abs().max()) < 1e-12
    assert float(np.abs(_matrices(a[..., 3:]) - _matrices(b[..., 3:])).max()) < 1e-12


def test_intermediate_frames_are_named_after_body_and_joint():
    xml = ('<mujoco><worldbody><body name="base"><geom size="0.1"/>'
           '<body name="arm" pos="0 0 1"><joint name="yaw"/><joint name="pitch" axis="0 1 0" pos="0 0 0.2"/>'
           '<geom size="0.1"/><site name="tool" pos="0 0 0.5"/></body></body></worldbody></mujoco>')
    chain = Chain.from_mjcf(xml)
    assert chain.frame_names == ["world", "base", "arm:yaw", "arm:pitch", "arm", "tool"]
    assert [j.name for j in chain.joints] == ["base:weld", "yaw", "pitch", "arm:offset", "tool:site"]
    assert chain.tip == "tool"


def test_includes_are_read_relative_to_the_model(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "arm.xml").write_text(
        '<mujoco><body name="arm" pos="0 0 1"><joint name="j" axis="0 1 0"/><geom size="0.1"/></body></mujoco>')
    (tmp_path / "defaults.xml").write_text('<mujoco><compiler angle="radian"/></mujoco>')
    (tmp_path / "robot.xml").write_text(
        '<mujoco model="r"><include file="defaults.xml"/><worldbody><include file="parts/arm.xml"/></worldbody></mujoco>')
    chain = Chain.from_mjcf(tmp_path / "robot.xml")
    assert chain.joint_names == ["j"] and chain.name == "r"
    model = mujoco.MjModel.from_xml_path(str(tmp_path / "robot.xml"))
    t, r, _, _ = _compare(open(tmp_path / "robot.xml").read().replace(
        '<include file="defaults.xml"/>', '<compiler angle="radian"/>').replace(
        '<include file="parts/arm.xml"/>', (tmp_path / "parts" / "arm.xml").read_text()[8:-9]), chain)
    assert model.nq == 1 and t < 1e-12 and r < 1e-12


def test_free_joints_are_refused_or_fixed_where_the_file_puts_them():
    xml = ('<mujoco><worldbody><body name="base" pos="0 0 0.8" euler="0 0 90"><freejoint/><geom size="0.1"/>'
           '<body name="arm" pos="1 0 0"><joint name="j"/><geom size="0.1"/></body></body></worldbody></mujoco>')
    with pytest.raises(MjcfError, match=r"<mjcf string>:1: joint 'joint0' is a free joint.*free_joints='fixed'"):
        Chain.from_mjcf(xml)
    chain = Chain.from_mjcf(xml, free_joints="fixed")
    assert chain.joint_names == ["j"]
    model = mujoco.MjModel.from_xml_string(xml)
    body, _, _ = _mujoco_poses(model, np.concatenate((model.qpos0[:7], [0.4])))
    T = chain.forward_kinematics_tensor(torch.tensor([[0.4]], dtype=torch.float64), ["arm"])[0, 0]
    assert np.abs(T[:3].numpy() - body[2][0]).max() < 1e-12
    with pytest.raises(ValueError, match="free_joints: expected 'refuse' or 'fixed'"):
        Chain.from_mjcf(xml, free_joints="float")


def test_a_subchain_by_root_and_tip():
    chain = chain_from_mjcf(data_path("robots/kuka_iiwa14.xml"), root="lbr_iiwa_link_2", tip="lbr_iiwa_link_5")
    assert chain.joint_names == ["lbr_iiwa_joint_3", "lbr_iiwa_joint_4", "lbr_iiwa_joint_5"]


_BAD = [
    ('<robot name="r"/>', "the root element is <robot>, expected <mujoco>"),
    ("<mujoco><worldbody>", "not well-formed XML"),
    ("<mujoco/>", "<mujoco> has no <worldbody>"),
    ('<mujoco><compiler angle="grad"/><worldbody/></mujoco>', "<compiler angle='grad'>: expected 'degree' or 'radian'"),
    ('<mujoco><compiler eulerseq="xyw"/><worldbody/></mujoco>', "<compiler eulerseq='xyw'>: expected three of"),
    ('<mujoco><compiler coordinate="global"/><worldbody/></mujoco>', "only 'local' coordinates"),
    ('<mujoco><compiler autolimits="yes"/><worldbody/></mujoco>', "autolimits='yes': expected 'true' or 'false'"),
    ('<mujoco><worldbody>\n<body name="a" quat="1 0 0 0" euler="0 0 1"/></worldbody></mujoco>',
     "quat and euler both give an orientation"),
    ('<mujoco><worldbody><body name="a" quat="0 0 0 0"/></worldbody></mujoco>', "quat='0 0 0 0' has zero length"),
    ('<mujoco><worldbody><body name="a" pos="1 2"/></worldbody></mujoco>', "pos='1 2' must be 3 finite numbers"),
    ('<mujoco><worldbody><body name="a" pos="1 nan 2"/></worldbody></mujoco>', "expected finite numbers"),
    ('<mujoco><worldbody><body name="a" xyaxes="1 0 0 2 0 0"/></worldbody></mujoco>', "xyaxes y .* has no direction"),
    ('<mujoco><worldbody><body name="a" zaxis="0 0 0"/></worldbody></mujoco>', "zaxis=0.0 0.0 0.0 has no direction"),
    ('<mujoco><worldbody><body name="a"><joint name="b" type="ball"/></body></worldbody></mujoco>',
     "joint 'b' has type 'ball'; a chain's joints are 'hinge' and 'slide'"),
    ('<mujoco><worldbody><body name="a"><joint name="b" axis="0 0 0"/></body></worldbody></mujoco>', "axis=0.0 0.0 0.0 has no direction"),
    ('<mujoco><worldbody><body name="a"><joint name="b" limited="true"/></body></worldbody></mujoco>',
     "joint 'b' is limited but has no range"),
    ('<mujoco><worldbody><body name="a"><joint name="b" range="1 -1"/></body></worldbody></mujoco>',
     "the lower limit is above the upper"),
    ('<mujoco><compiler autolimits="false"/><worldbody><body name="a"><joint name="b" range="-1 1"/></body>'
     '</worldbody></mujoco>', "joint 'b' has a range but no limited attribute"),
    ('<mujoco><worldbody><body name="a"><joint name="b" limited="maybe"/></body></worldbody></mujoco>',
     "limited='maybe': expected 'true', 'false' or 'auto'"),
    ('<mujoco><worldbody><body name="a"><joint class="nope"/></body></worldbody></mujoco>',
     "class 'nope' is not a default class; classes: \\['main'\\]"),
    ('<mujoco><worldbody><body name="a"/><body name="a"/></worldbody></mujoco>', "body name 'a' is used twice"),
    ('<mujoco><worldbody><body name="a"><site name="s"/><site name="s"/></body></worldbody></mujoco>',
     "site name 's' is used twice"),
    ('<mujoco><worldbody><joint name="j"/></worldbody></mujoco>', "a <joint> belongs directly inside a <body>"),
    ('<mujoco><worldbody><frame><joint name="j"/></frame></worldbody></mujoco>', "a <joint> belongs directly inside a <body>"),
    ('<mujoco><worldbody><replicate count="3"><body/></replicate></worldbody></mujoco>', "<replicate> builds bodies inside MuJoCo"),
    ('<mujoco><default><default/></default><worldbody/></mujoco>', "a nested <default> needs a class attribute"),
    ('<mujoco><default><default class="x"/><default class="x"/></default><worldbody/></mujoco>',
     "default class 'x' is defined twice"),
    ('<mujoco><worldbody><body name="a"><site fromto="0 0 0 1 1 1" pos="1 0 0"/></body></worldbody></mujoco>',
     "both pos and fromto place the element"),
    ('<mujoco><default><site pos="1 0 0"/></default><worldbody><body name="a"><site fromto="0 0 0 1 1 1"/></body>'
     '</worldbody></mujoco>', "both pos and fromto place the element"),
    ('<mujoco><default><site euler="1 0 0" quat="1 0 0 0"/></default><worldbody><body name="a"><site/></body>'
     '</worldbody></mujoco>', "quat and euler both give an orientation"),
    ('<mujoco><worldbody><include file="x.xml"/></worldbody></mujoco>', "relative includes can be found"),
    ('<mujoco><worldbody><body name="a"><joint name="j" ref="x"/></body></worldbody></mujoco>', "ref='x' is not a number"),
]


@pytest.mark.parametrize("xml, message", _BAD)
def test_bad_models_are_refused_naming_the_line(xml, message):
    with pytest.raises(MjcfError, match=r"^<mjcf string>:\d+: .*" + message):
        Chain.from_mjcf(xml)


def test_file_errors_name_the_file(tmp_path):
    (tmp_path / "a.xml").write_text('<mujoco><worldbody>\n<include file="b.xml"/></worldbody></mujoco>')
    (tmp_path / "b.xml").write_text('<mujoco>\n\n<include file="a.xml"/></mujoco>')
    with pytest.raises(MjcfError, match=r"b\.xml:3: <include file='a.xml'> includes itself"):
        Chain.from_mjcf(tmp_path / "a.xml")
    (tmp_path / "c.xml").write_text('<mujoco><worldbody>\n<include file="missing.xml"/></worldbody></mujoco>')
    with pytest.raises(MjcfError, match=r"c\.xml:2: <include file='missing.xml'>: no such file"):
        Chain.from_mjcf(tmp_path / "c.xml")
    (tmp_path / "d.xml").write_text('<mujoco><worldbody>\n<body name="a">\n<joint type="ball"/></body></worldbody></mujoco>')
    with pytest.raises(MjcfError, match=r"d\.xml:3: joint 'joint0' has type 'ball'"):
        Chain.from_mjcf(tmp_path / "d.xml")
    with pytest.raises(FileNotFoundError):
        Chain.from_mjcf(tmp_path / "none.xml")
    with pytest.raises(TypeError, match="source: expected an MJCF path or XML string"):
        Chain.from_mjcf(3)


def test_the_cli_takes_an_mjcf_model(tmp_path, capsys):
    """``robojac ik`` tells an MJCF model from a URDF by its first element; a broken model ends
    with exit code 2 and the file's line."""
    from robojac.cli import main

    path = data_path("robots/kuka_iiwa14.xml")
    chain = Chain.from_mjcf(path)
    q = chain.random_configuration(1, generator=torch.Generator().manual_seed(2))
    p = chain.forward_kinematics(q, "lbr_iiwa_link_7").translation()[0]
    assert main(["ik", str(path), "--tip", "lbr_iiwa_link_7", "--target", *map(str, p.tolist())]) == 0
    out = capsys.readouterr().out
    assert "lbr_iiwa:world->lbr_iiwa_link_7: 7 joints" in out and "converged=True" in out
    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0"?>\n<!-- an arm -->\n<mujoco>\n<worldbody>\n<body name="a">\n'
                   '<joint type="ball"/>\n</body></worldbody></mujoco>\n')
    assert main(["ik", str(bad), "--tip", "a", "--target", "0", "0", "0"]) == 2
    assert "bad.xml:6: joint 'joint0' has type 'ball'" in capsys.readouterr().err


def test_the_urdf_command_converts_an_mjcf(tmp_path, capsys):
    """``robojac urdf model.xml out.urdf`` writes a URDF Pinocchio loads, with MuJoCo's poses;
    a free joint is refused unless ``--free-joints fixed``; a slide without a range has no URDF
    form and ends with exit code 2."""
    from robojac.cli import main

    pin = pytest.importorskip("pinocchio")
    path = data_path("robots/kuka_iiwa14.xml")
    assert main(["urdf", str(path), str(tmp_path / "iiwa.urdf")]) == 0
    out = capsys.readouterr().out
    assert "lbr_iiwa: 7 joints" in out and "17.5 kg in 7 links" in out
    model = pin.buildModelFromUrdf(str(tmp_path / "iiwa.urdf"))
    chain = Chain.from_mjcf(path)
    q = chain.random_configuration(1, generator=torch.Generator().manual_seed(4))
    dat = model.createData()
    pin.framesForwardKinematics(model, dat, q[0].numpy())
    T = chain.forward_kinematics_tensor(q, ["lbr_iiwa_link_7"])[0, 0]
    assert np.abs(dat.oMf[model.getFrameId("lbr_iiwa_link_7")].translation - T[:3].numpy()).max() < 1e-12
    # the masses went with it: Pinocchio's centre of mass of the written file is MuJoCo's body masses'
    c = pin.centerOfMass(model, dat, q[0].numpy())
    assert np.abs(c - chain.center_of_mass(q[0]).numpy()).max() < 1e-12 and dat.mass[0] == pytest.approx(17.5)
    floating = tmp_path / "floating.xml"
    floating.write_text('<mujoco><worldbody><body name="base" pos="0 0 1"><freejoint/>'
                        '<body name="arm"><joint name="j" range="-1 1"/></body></body></worldbody></mujoco>')
    assert main(["urdf", str(floating), str(tmp_path / "f.urdf")]) == 2
    assert "free_joints='fixed'" in capsys.readouterr().err
    assert main(["urdf", str(floating), str(tmp_path / "f.urdf"), "--free-joints", "fixed"]) == 0
    assert Chain.from_urdf(tmp_path / "f.urdf").joint_names == ["j"]
    slide = tmp_path / "slide.xml"
    slide.write_text('<mujoco><worldbody><body name="cart"><joint name="s" type="slide"/></body></worldbody></mujoco>')
    assert main(["urdf", str(slide), str(tmp_path / "s.urdf")]) == 2
    assert "joint 's': a prismatic joint with limits [-inf, inf] cannot be written" in capsys.readouterr().err
    assert not (tmp_path / "s.urdf").exists()
