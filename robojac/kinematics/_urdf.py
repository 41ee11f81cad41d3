"""URDF in and out.

The reader takes the kinematics (links, joints, origins, axes, limits, mimic relations) and each
link's mass and centre of mass (``<inertial>``'s ``<mass>`` and ``<origin xyz>``; the rotational
inertia is not kept).  Visual, collision, transmission and gazebo elements are ignored, so meshes
that are not on disk do not matter; :func:`read_urdf_collisions` reads the ``<collision>``
elements' shapes on their own (for :mod:`robojac.collision`).  Errors name the file and line.
The writer puts a chain's joint origins
back into the file it was read from, everything else as it was.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from xml.etree import ElementTree as ET

import torch

from .._config import check_instance
from .._files import read_text, write_text_atomic
from ._inertial import Inertial
from ._joint import Joint, JointLimits, JointType, Mimic, _numbers_of, origin_from_xyz_rpy
from ._tree import KinematicTreeError
from ._xml import number, numbers, parse_xml

__all__ = ["CollisionElement", "UrdfError", "chain_from_urdf", "parse_urdf", "quat_to_rpy", "read_urdf_collisions",
           "write_urdf"]

_TYPES = {t.value: t for t in JointType}
log = logging.getLogger(__name__)


class UrdfError(ValueError):
    """A URDF that cannot be read as a kinematic tree; the message starts with ``file:line``."""


def _read(source) -> tuple[str, str]:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith("<")):
        path = os.fspath(source)
        return read_text(path, "URDF file"), path
    if isinstance(source, bytes):
        return source.decode("utf-8"), "<urdf string>"
    if isinstance(source, str):
        return source, "<urdf string>"
    raise TypeError(f"source: expected a URDF path or XML string, got {type(source).__name__}")


def _parse_xml(text: str, name: str, comments: bool = False):
    return parse_xml(text, name, UrdfError, comments)


def _floats(el, attr: str, n: int, default, where: str) -> tuple[float, ...]:
    return numbers(el.get(attr) if el is not None else None, attr, n, default, where, UrdfError)


def _float(el, attr: str, default: float, where: str) -> float:
    return number(el.get(attr), attr, default, where, UrdfError)


# URDF requires a number for a joint's effort and velocity limits, and urdfdom (ROS, Pinocchio)
# refuses "inf": a limit the chain does not have is written as the largest double, and read back
# as no limit.
_NO_LIMIT = sys.float_info.max


def _unbounded(v: float) -> str:
    return repr(_NO_LIMIT if math.isinf(v) else v)


def _rate(el, attr: str, where: str) -> float:
    """A velocity or effort limit: no limit where absent, ``inf``, or the text :func:`write_urdf`
    writes for none."""
    raw = el.get(attr)
    if raw is not None and raw.strip() == _unbounded(math.inf):
        return math.inf
    return number(raw, attr, math.inf, where, UrdfError, allow_inf=True)


def parse_urdf(source):
    """``(robot name, link names, joints, {joint: "file:line"})`` of a URDF path or string."""
    return _parse(*_read(source))[:4]


@dataclass(frozen=True)
class CollisionElement:
    """One ``<collision>`` of a URDF link: ``kind`` (``"sphere"``, ``"cylinder"``, ``"capsule"``,
    ``"box"`` or ``"mesh"``), its ``size`` (``(radius,)``, ``(radius, length)``, ``(radius,
    length)``, ``(x, y, z)`` or ``()`` for a mesh, in metres), its ``origin`` ``[t, qx, qy, qz,
    qw]`` in the link's frame, and ``where`` (``file:line``).  ``<capsule radius length>`` is not
    URDF's own (some tools write it); it is read as Drake and Pinocchio read it, along the
    origin's z axis."""

    link: str
    kind: str
    size: tuple[float, ...]
    origin: tuple[float, ...]
    where: str


_SIZES = {"sphere": ("radius",), "cylinder": ("radius", "length"), "capsule": ("radius", "length")}


def read_urdf_collisions(source) -> list[CollisionElement]:
    """Every ``<collision>`` element of a URDF path or string, in file order (a link's
    ``<collision>`` with no ``<geometry>`` is refused, naming its line)."""
    text, name = _read(source)
    root, lines = _parse_xml(text, name)
    out = []
    for link in root.findall("link"):
        for el in link.findall("collision"):
            where = f"{name}:{lines[el]}"
            geometry = el.find("geometry")
            shape = None if geometry is None else next(iter(geometry), None)
            if shape is None:
                raise UrdfError(f"{where}: the <collision> of link {link.get('name')!r} has no <geometry> shape")
            swhere = f"{name}:{lines[shape]}"
            if shape.tag in _SIZES:
                size = tuple(_float(shape, a, math.nan, swhere) for a in _SIZES[shape.tag])
                if not all(math.isfinite(v) and v >= 0 for v in size) or size[0] <= 0:
                    raise UrdfError(f"{swhere}: <{shape.tag}> needs {' and '.join(_SIZES[shape.tag])} >= 0 "
                                    f"(a radius > 0), got {dict(shape.attrib)}")
            elif shape.tag == "box":
                size = _floats(shape, "size", 3, None, swhere)
                if size is None or not all(v > 0 for v in size):
                    raise UrdfError(f"{swhere}: <box> needs size='x y z' > 0, got {shape.get('size')!r}")
            elif shape.tag == "mesh":
                size = ()
            else:
                raise UrdfError(f"{swhere}: <{shape.tag}> is no URDF geometry (sphere, cylinder, box, mesh; or "
                                "capsule)")
            origin = el.find("origin")
            owhere = f"{name}:{lines[origin]}" if origin is not None else where
            pose = origin_from_xyz_rpy(_floats(origin, "xyz", 3, (0.0, 0.0, 0.0), owhere),
                                       _floats(origin, "rpy", 3, (0.0, 0.0, 0.0), owhere))
            out.append(CollisionElement(link.get("name"), shape.tag, size, tuple(pose.tolist()), swhere))
    return out


def _inertial(el, link: str, name: str, lines) -> Inertial:
    """A link's ``<inertial>``: its ``<mass value>`` (required, as URDF has it) and ``<origin xyz>``."""
    where = f"{name}:{lines[el]}"
    mass = el.find("mass")
    if mass is None or mass.get("value") is None:
        raise UrdfError(f"{where}: the <inertial> of link {link!r} has no <mass value=...> (URDF requires it)")
    mw = f"{name}:{lines[mass]}"
    value = _float(mass, "value", 0.0, mw)
    if value < 0:
        raise UrdfError(f"{mw}: link {link!r} has mass {value}; expected at least 0 kg")
    origin = el.find("origin")
    com = _floats(origin, "xyz", 3, (0.0, 0.0, 0.0), f"{name}:{lines[origin]}" if origin is not None else where)
    return Inertial(value, com)


def _parse(text: str, name: str):
    root, lines = _parse_xml(text, name)
    if root.tag != "robot":
        raise UrdfError(f"{name}:{lines[root]}: the root element is <{root.tag}>, expected <robot>")
    links, known, inertials = [], set(), {}
    for el in root.findall("link"):
        link = el.get("name")
        if not link:
            raise UrdfError(f"{name}:{lines[el]}: <link> has no name")
        if link in known:
            raise UrdfError(f"{name}:{lines[el]}: link {link!r} is defined twice")
        links.append(link)
        known.add(link)
        if el.find("inertial") is not None:
            inertials[link] = _inertial(el.find("inertial"), link, name, lines)
    joints, where_of = [], {}
    for el in root.findall("joint"):
        where = f"{name}:{lines[el]}"
        jname = el.get("name")
        if not jname:
            raise UrdfError(f"{where}: <joint> has no name")
        jtype = el.get("type")
        if jtype not in _TYPES:
            raise UrdfError(
                f"{where}: joint {jname!r} has type {jtype!r}; supported: {sorted(_TYPES)} "
                "(floating and planar joints are not kinematic-chain joints here)"
            )
        parent, child = el.find("parent"), el.find("child")
        if parent is None or not parent.get("link") or child is None or not child.get("link"):
            raise UrdfError(f"{where}: joint {jname!r} needs <parent link=...> and <child link=...>")
        origin = el.find("origin")
        owhere = f"{name}:{lines[origin]}" if origin is not None else where
        xyz = _floats(origin, "xyz", 3, (0.0, 0.0, 0.0), owhere)
        rpy = _floats(origin, "rpy", 3, (0.0, 0.0, 0.0), owhere)
        axis_el = el.find("axis")
        axis = _floats(axis_el, "xyz", 3, (1.0, 0.0, 0.0), f"{name}:{lines[axis_el]}" if axis_el is not None else where)
        limits = JointLimits()
        lim = el.find("limit")
        if lim is not None:
            lw = f"{name}:{lines[lim]}"
            lower, upper = _float(lim, "lower", 0.0, lw), _float(lim, "upper", 0.0, lw)
            if _TYPES[jtype] is JointType.CONTINUOUS:
                lower, upper = -math.inf, math.inf
            elif lower > upper:
                raise UrdfError(f"{lw}: joint {jname!r} has lower limit {lower} above upper limit {upper}")
            limits = JointLimits(lower, upper, _rate(lim, "velocity", lw), _rate(lim, "effort", lw))
        elif _TYPES[jtype] in (JointType.REVOLUTE, JointType.PRISMATIC):
            raise UrdfError(f"{where}: {jtype} joint {jname!r} needs a <limit> element (URDF requires it)")
        mimic = None
        mim = el.find("mimic")
        if mim is not None:
            mw = f"{name}:{lines[mim]}"
            if not mim.get("joint"):
                raise UrdfError(f"{mw}: <mimic> in joint {jname!r} has no joint attribute")
            mimic = Mimic(mim.get("joint"), _float(mim, "multiplier", 1.0, mw), _float(mim, "offset", 0.0, mw))
            if _TYPES[jtype] is JointType.FIXED:  # a fixed joint never moves: the tag has no effect
                log.info("%s: ignoring <mimic> of fixed joint %r", mw, jname)
                mimic = None
        try:
            joints.append(
                Joint(jname, _TYPES[jtype], parent.get("link"), child.get("link"), origin_from_xyz_rpy(xyz, rpy), axis, limits, mimic)
            )
        except ValueError as e:
            raise UrdfError(f"{where}: {e}") from None
        where_of[jname] = where
    return root.get("name", "robot"), links, joints, where_of, inertials


def chain_from_urdf(source, *, root: str | None = None, tip: str | None = None):
    from ._chain import Chain

    text, name = _read(source)
    robot, links, joints, where_of, inertials = _parse(text, name)
    try:
        chain = Chain(joints, links=links, name=robot, inertials=inertials, _joint_lines=where_of)
    except KinematicTreeError as e:
        raise UrdfError(str(e)) from None
    chain.urdf_source = (text, name)
    if root is None and tip is None:
        return chain
    if tip is None:
        raise ValueError(f"tip: give the end frame with root={root!r}; frames: {chain.frame_names}")
    return chain.subchain(root, tip)


def quat_to_rpy(q) -> tuple[float, float, float]:
    """URDF roll-pitch-yaw of a ``[x, y, z, w]`` quaternion (the inverse of
    :func:`~robojac.kinematics.rpy_to_quat`; pitch in ``[-pi/2, pi/2]``)."""
    x, y, z, w = _numbers_of(q, "q", 4)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n == 0:
        raise ValueError("q: expected a quaternion [x, y, z, w] of non-zero length (a rotation), got [0, 0, 0, 0]")
    x, y, z, w = x / n, y / n, z / n, w / n
    r00, r10 = 1 - 2 * (y * y + z * z), 2 * (x * y + w * z)
    r20, r21, r22 = 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)
    return math.atan2(r21, r22), math.atan2(-r20, math.hypot(r00, r10)), math.atan2(r10, r00)


def _numbers(values) -> str:
    return " ".join(repr(float(v)) for v in values)  # the shortest text that reads back exactly


def _set_origin(el, origin: torch.Tensor) -> None:
    o = el.find("origin")
    if o is None:
        o = ET.Element("origin")
        el.insert(0, o)
        o.tail, o.text = "\n    ", None
    o.set("xyz", _numbers(origin[:3].tolist()))
    o.set("rpy", _numbers(quat_to_rpy(origin[3:].tolist())))


def _urdf_type(j) -> JointType:
    """The joint's URDF type: a revolute joint without limits is URDF's continuous one; a
    limit URDF cannot hold (a prismatic joint's infinite one) is refused."""
    lim = j.limits
    if j.type not in (JointType.REVOLUTE, JointType.PRISMATIC) or (math.isfinite(lim.lower) and math.isfinite(lim.upper)):
        return j.type
    if j.type is JointType.REVOLUTE and lim.lower == -math.inf and lim.upper == math.inf:
        return JointType.CONTINUOUS
    raise ValueError(f"joint {j.name!r}: a {j.type.value} joint with limits [{lim.lower}, {lim.upper}] cannot be "
                     "written to URDF, whose limits are finite numbers (give the joint finite limits first)")


def _fresh_urdf(chain) -> ET.Element:
    robot = ET.Element("robot", name=chain.name)
    inertials = chain.inertials
    for f in chain.frame_names:
        link = ET.SubElement(robot, "link", name=f)
        if f in inertials:  # a point mass: Inertial keeps no rotational inertia, so none is written
            el = ET.SubElement(link, "inertial")
            ET.SubElement(el, "origin", xyz=_numbers(inertials[f].com), rpy="0 0 0")
            ET.SubElement(el, "mass", value=repr(inertials[f].mass))
            ET.SubElement(el, "inertia", ixx="0", ixy="0", ixz="0", iyy="0", iyz="0", izz="0")
    for j in chain.joints:
        kind = _urdf_type(j)
        el = ET.SubElement(robot, "joint", name=j.name, type=kind.value)
        _set_origin(el, j.origin)
        ET.SubElement(el, "parent", link=j.parent)
        ET.SubElement(el, "child", link=j.child)
        if j.type.movable:
            ET.SubElement(el, "axis", xyz=_numbers(j.axis))
        if kind in (JointType.REVOLUTE, JointType.PRISMATIC):
            lim = j.limits
            ET.SubElement(el, "limit", lower=repr(lim.lower), upper=repr(lim.upper), effort=_unbounded(lim.effort),
                          velocity=_unbounded(lim.velocity))
        if j.mimic is not None:
            ET.SubElement(el, "mimic", joint=j.mimic.joint, multiplier=repr(j.mimic.multiplier), offset=repr(j.mimic.offset))
    ET.indent(robot)
    return robot


def write_urdf(chain, path) -> None:
    """Write ``chain`` as a URDF file at ``path``, atomically.

    A chain read from a URDF (or a sub-chain of one, or one derived by ``frozen()`` or
    calibration) is written as that file with each of its joints' ``<origin>`` replaced by the
    chain's (``xyz`` and ``rpy`` to full precision); links, visuals, collisions, inertials,
    limits, mimic tags, other joints and comments stay as they were.  Any other chain is written
    from its joints, each link's :class:`~robojac.kinematics.Inertial` as a point mass (a zero
    ``<inertia>``).  Reading the file back gives the chain's kinematics to rounding (~1e-15).
    A chain with parameters is written with their current values (see ``Chain.frozen``)."""
    from ._chain import Chain

    check_instance("chain", chain, Chain, "a robojac Chain (the call is write_urdf(chain, path))")
    if chain.origin_joints or chain.offset_joints:
        chain = chain.frozen()
    if chain.urdf_source is None:
        root = _fresh_urdf(chain)
    else:
        text, name = chain.urdf_source
        root, _ = _parse_xml(text, name, comments=True)
        ours = {j.name: j for j in chain.joints}
        for el in root.findall("joint"):
            j = ours.get(el.get("name"))
            if j is not None:
                _set_origin(el, j.origin)
    body = ET.tostring(root, encoding="unicode")
    write_text_atomic(path, '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n")
