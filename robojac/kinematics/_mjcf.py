"""MJCF (MuJoCo's XML) in, as a kinematic tree.

The reader needs no MuJoCo.  It takes the kinematics (bodies, hinge and slide joints, sites,
frames, default classes, ``<include>`` and the ``<compiler>`` settings that change kinematics:
``angle``, ``eulerseq``, ``autolimits``) and each body's mass and centre of mass as MuJoCo's
compiler makes them: from its ``<inertial>``, or, for a body without one (every body, under
``inertiafromgeom="true"``), from its geoms: spheres, capsules, cylinders, ellipsoids and
boxes, by ``mass`` or ``density`` times volume, within ``inertiagrouprange``; then
``<compiler settotalmass boundmass>``.  Meshes, height fields and shells are not measured: a
body that needs them is listed in ``Chain.unknown_masses``, and the centre of mass is refused
while there are any.  Actuators, tendons, equality constraints and assets are ignored.  Errors
name the file and line.

How MuJoCo's bodies become a :class:`~robojac.kinematics.Chain`:

- each body is a frame of its name (an unnamed body is ``body<id>``, its MuJoCo body id), and
  the world body is the root frame ``world``;
- a body's joints act in the order they are written, each about (or along) its axis through
  its ``pos``.  A joint whose ``pos`` is not the body origin, and every joint but a body's last,
  ends on an intermediate frame ``<body>:<joint>``; a fixed joint ``<body>:offset`` then
  carries the rest;
- a body without joints hangs from its parent by the fixed joint ``<body>:weld``;
- a site is a frame of its name, on the fixed joint ``<site>:site`` (``<site>:site`` is also
  the frame's name if a body already has the site's name);
- a joint's ``ref`` is the value at which the body is where the file puts it, as in MuJoCo.

The joints of ``q`` are in MuJoCo's ``qpos`` order (depth-first body order, a body's joints in
their order), so a configuration means the same thing to both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import os
from xml.etree import ElementTree as ET

import torch

from .. import lie
from .._files import read_text
from ._inertial import Inertial
from ._joint import Joint, JointLimits, JointType
from ._tree import KinematicTreeError
from ._xml import number, numbers, parse_xml

__all__ = ["GeomElement", "MjcfError", "chain_from_mjcf", "read_mjcf_geoms"]

_ORIENTATIONS = ("quat", "axisangle", "euler", "xyaxes", "zaxis")
_GENERATING = {"composite", "flexcomp", "replicate", "attach"}  # elements that make bodies MuJoCo-side
_MAX_INCLUDE_DEPTH = 20
_CPU64 = dict(dtype=torch.float64, device="cpu")  # parsed on the CPU, whatever the default device


class MjcfError(ValueError):
    """An MJCF file that cannot be read as a kinematic tree; the message starts with ``file:line``."""


# ---- reading, with <include> spliced in and every element's file:line -----------------------
def _read(source) -> tuple[str, str, str | None]:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not source.lstrip().startswith("<")):
        path = os.fspath(source)
        return read_text(path, "MJCF file"), path, os.path.dirname(os.path.abspath(path))
    if isinstance(source, bytes):
        return source.decode("utf-8"), "<mjcf string>", None
    if isinstance(source, str):
        return source, "<mjcf string>", None
    raise TypeError(f"source: expected an MJCF path or XML string, got {type(source).__name__}")


def _load(text: str, name: str, folder: str | None, where: dict, chain: tuple[str, ...]) -> ET.Element:
    root, lines = parse_xml(text, name, MjcfError)
    for el, line in lines.items():
        where[el] = f"{name}:{line}"
    if root.tag != "mujoco":
        raise MjcfError(f"{where[root]}: the root element is <{root.tag}>, expected <mujoco>")
    _splice_includes(root, folder, where, chain + (name,))
    return root


def _splice_includes(parent: ET.Element, folder: str | None, where: dict, chain: tuple[str, ...]) -> None:
    for i, el in enumerate(list(parent)):
        if el.tag != "include":
            _splice_includes(el, folder, where, chain)
            continue
        file = el.get("file")
        if not file:
            raise MjcfError(f"{where[el]}: <include> has no file attribute")
        if folder is None and not os.path.isabs(file):
            raise MjcfError(f"{where[el]}: <include file={file!r}> in a model given as a string: "
                            "read the model from its file so that relative includes can be found")
        path = os.path.normpath(os.path.join(folder or "", file))
        if path in chain or len(chain) > _MAX_INCLUDE_DEPTH:
            raise MjcfError(f"{where[el]}: <include file={file!r}> includes itself (through {list(chain)})")
        if not os.path.isfile(path):
            raise MjcfError(f"{where[el]}: <include file={file!r}>: no such file {path!r}")
        sub = _load(read_text(path, "MJCF include"), path, folder, where, chain)
        at = list(parent).index(el)
        parent.remove(el)
        for k, child in enumerate(list(sub)):
            parent.insert(at + k, child)


# ---- numbers and orientations -------------------------------------------------------------
class _Compiler:
    def __init__(self, root: ET.Element, where: dict):
        self.degrees, self.eulerseq, self.autolimits = True, "xyz", True
        self.from_geoms, self.total_mass, self.bound_mass = "auto", -1.0, 0.0  # MuJoCo's defaults
        self.group_range = (0, 5)
        for el in root.iter("compiler"):
            w = where[el]
            angle = el.get("angle", "degree" if self.degrees else "radian")
            if angle not in ("degree", "radian"):
                raise MjcfError(f"{w}: <compiler angle={angle!r}>: expected 'degree' or 'radian'")
            self.degrees = angle == "degree"
            seq = el.get("eulerseq", self.eulerseq)
            if len(seq) != 3 or any(c not in "xyzXYZ" for c in seq):
                raise MjcfError(f"{w}: <compiler eulerseq={seq!r}>: expected three of x, y, z, X, Y, Z")
            self.eulerseq = seq
            self.autolimits = _boolean(el, "autolimits", self.autolimits, w)
            self.from_geoms = el.get("inertiafromgeom", self.from_geoms)
            if self.from_geoms not in ("auto", "true", "false"):
                raise MjcfError(f"{w}: <compiler inertiafromgeom={self.from_geoms!r}>: expected 'auto', 'true' or "
                                "'false'")
            self.total_mass = number(el.get("settotalmass"), "settotalmass", self.total_mass, w, MjcfError)
            self.bound_mass = number(el.get("boundmass"), "boundmass", self.bound_mass, w, MjcfError)
            self.group_range = tuple(int(v) for v in numbers(el.get("inertiagrouprange"), "inertiagrouprange", 2,
                                                             self.group_range, w, MjcfError))
            if el.get("coordinate", "local") != "local":
                raise MjcfError(f"{w}: <compiler coordinate={el.get('coordinate')!r}>: only 'local' coordinates "
                                "exist (MuJoCo removed 'global' in 2.3.3)")

    def angle(self, v: float) -> float:
        return math.radians(v) if self.degrees else v


def _boolean(el, attr: str, default: bool, where: str) -> bool:
    raw = el.get(attr)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise MjcfError(f"{where}: {attr}={raw!r}: expected 'true' or 'false'")
    return raw == "true"


def _vec(attrs: dict, key: str, n: int, default, where: str) -> tuple[float, ...]:
    return numbers(attrs.get(key), key, n, default, where, MjcfError)


def _quat(axis: tuple[float, ...], angle: float) -> torch.Tensor:
    """``[x, y, z, w]`` of a turn by ``angle`` about the unit ``axis``."""
    s = math.sin(0.5 * angle)
    return torch.tensor([axis[0] * s, axis[1] * s, axis[2] * s, math.cos(0.5 * angle)], **_CPU64)


def _unit(v, what: str, where: str) -> tuple[float, ...]:
    n = math.sqrt(sum(x * x for x in v))
    if n < 1e-9:
        raise MjcfError(f"{where}: {what}={' '.join(repr(x) for x in v)} has no direction (length {n:.3g}); "
                        "expected a non-zero vector")
    return tuple(x / n for x in v)


def _orientation(attrs: dict, compiler: _Compiler, where: str) -> torch.Tensor:
    """The ``[x, y, z, w]`` quaternion of an element's one orientation attribute (identity if none)."""
    given = [k for k in _ORIENTATIONS if k in attrs]
    if len(given) > 1:
        raise MjcfError(f"{where}: {' and '.join(given)} both give an orientation; MJCF allows one")
    if not given:
        return torch.tensor([0.0, 0.0, 0.0, 1.0], **_CPU64)
    key = given[0]
    if key == "quat":
        w, x, y, z = _vec(attrs, key, 4, None, where)  # MJCF writes w first
        n = math.sqrt(w * w + x * x + y * y + z * z)
        if n < 1e-9:
            raise MjcfError(f"{where}: quat={attrs[key]!r} has zero length; expected a quaternion w x y z "
                            "of non-zero length")
        return torch.tensor([x / n, y / n, z / n, w / n], **_CPU64)
    if key == "axisangle":
        v = _vec(attrs, key, 4, None, where)
        return _quat(_unit(v[:3], "axisangle axis", where), compiler.angle(v[3]))
    if key == "euler":
        q = torch.tensor([0.0, 0.0, 0.0, 1.0], **_CPU64)
        for c, a in zip(compiler.eulerseq, _vec(attrs, key, 3, None, where)):
            turn = _quat(tuple(float(c.lower() == k) for k in "xyz"), compiler.angle(a))
            # lower case: about the turned (moving) axes, so applied on the right; upper: fixed axes
            q = lie.quat_mul(q, turn) if c.islower() else lie.quat_mul(turn, q)
        return q
    if key == "xyaxes":
        v = _vec(attrs, key, 6, None, where)
        x = _unit(v[:3], "xyaxes x", where)
        d = sum(a * b for a, b in zip(x, v[3:]))
        y = _unit([b - d * a for a, b in zip(x, v[3:])], "xyaxes y (its part across x)", where)
        z = (x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0])
        R = torch.tensor([x, y, z], **_CPU64).T  # columns: the new axes
        return lie.matrix_to_quat(R)
    return _z_to(_unit(_vec(attrs, key, 3, None, where), "zaxis", where))


def _z_to(z: tuple[float, ...]) -> torch.Tensor:
    """The shortest turn taking ``[0, 0, 1]`` to the unit ``z`` (half a turn about x if opposite)."""
    axis = (-z[1], z[0], 0.0)  # [0, 0, 1] x z
    s = math.hypot(axis[0], axis[1])
    if s < 1e-12:
        return _quat((1.0, 0.0, 0.0), 0.0 if z[2] > 0 else math.pi)
    return _quat((axis[0] / s, axis[1] / s, 0.0), math.atan2(s, z[2]))


def _pose(attrs: dict, compiler: _Compiler, where: str) -> torch.Tensor:
    """``[t, q]`` of an element's ``pos`` and orientation (or of a site's ``fromto``, which
    overrides an orientation and cannot come with a ``pos``, as in MuJoCo)."""
    if "fromto" in attrs:
        if "pos" in attrs:
            raise MjcfError(f"{where}: both pos and fromto place the element (pos may come from a default class)")
        v = _vec(attrs, "fromto", 6, None, where)
        mid = [0.5 * (a + b) for a, b in zip(v[:3], v[3:])]
        q = _z_to(_unit([a - b for a, b in zip(v[:3], v[3:])], "fromto (from minus to)", where))
        return torch.cat((torch.tensor(mid, **_CPU64), q))
    t = torch.tensor(_vec(attrs, "pos", 3, (0.0, 0.0, 0.0), where), **_CPU64)
    return torch.cat((t, _orientation(attrs, compiler, where)))


_IDENTITY = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], **_CPU64)


def _shift(p) -> torch.Tensor:
    return torch.cat((torch.as_tensor(p, **_CPU64), _IDENTITY[3:]))


# ---- default classes ----------------------------------------------------------------------
def _merged(base: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """``base`` overridden by ``own``; an orientation in ``own`` replaces ``base``'s, of any kind."""
    out = dict(base)
    if any(k in own for k in _ORIENTATIONS):
        for k in _ORIENTATIONS:
            out.pop(k, None)
    out.update(own)
    return out


def _defaults(root: ET.Element, where: dict) -> dict[str, dict[str, dict[str, str]]]:
    """Class name -> element tag -> attributes, each class holding its ancestors' values."""
    classes: dict[str, dict[str, dict[str, str]]] = {}

    def visit(el: ET.Element, inherited: dict[str, dict[str, str]], top: bool) -> None:
        name = el.get("class", "main" if top else None)
        if name is None:
            raise MjcfError(f"{where[el]}: a nested <default> needs a class attribute")
        if name in classes and not (top and name == "main"):
            raise MjcfError(f"{where[el]}: default class {name!r} is defined twice")
        own = {tag: dict(attrs) for tag, attrs in inherited.items()}
        for child in el:
            if child.tag != "default":
                own[child.tag] = _merged(own.get(child.tag, {}), child.attrib)
        if name in classes:  # a second top-level <default>: it adds to main
            for tag, attrs in own.items():
                classes[name][tag] = _merged(classes[name].get(tag, {}), attrs)
            own = classes[name]
        classes[name] = own
        for child in el:
            if child.tag == "default":
                visit(child, own, False)

    for el in root.findall("default"):
        visit(el, {}, True)
    classes.setdefault("main", {})
    return classes


# ---- the body tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class GeomElement:
    """One ``<geom>`` of an MJCF model, as :func:`read_mjcf_geoms` gives it: its ``body`` (a
    frame of the model's chain; ``"world"`` for the worldbody's), ``name`` (or ``None``),
    ``kind`` (MuJoCo's ``type``: ``"sphere"``, ``"capsule"``, ``"cylinder"``, ``"box"``,
    ``"plane"``, ``"mesh"``, ...), ``size`` (MuJoCo's half sizes: ``(r,)``, ``(r, half
    length)``, ``(x, y, z)``; a ``fromto``'s half length is taken from it), its ``pose``
    ``[t, qx, qy, qz, qw]`` in the body's frame (a capsule's or cylinder's axis along its z),
    ``contype``, ``conaffinity``, ``group`` and ``where`` (``file:line``), with its default
    class applied."""

    body: str
    name: str | None
    kind: str
    size: tuple[float, ...]
    pose: tuple[float, ...]
    contype: int
    conaffinity: int
    group: int
    where: str


class _Builder:
    def __init__(self, compiler: _Compiler, classes: dict, where: dict, free_joints: str):
        self.compiler, self.classes, self.where, self.free_joints = compiler, classes, where, free_joints
        self.joints: list[Joint] = []
        self.frames: list[str] = ["world"]
        self.lines: dict[str, str] = {}
        self.body_names: set[str] = {"world"}
        self.sites: list[tuple[ET.Element, str, torch.Tensor, str]] = []
        self.inertials: dict[str, Inertial] = {}
        self.unknown_masses: list[str] = []  # bodies whose mass MuJoCo takes from their geoms
        self.n_bodies, self.n_joints, self.n_sites = 1, 0, 0
        self.geoms_read: list[GeomElement] | None = None  # collected for read_mjcf_geoms only

    def attrs(self, el: ET.Element, tag: str, childclass: str) -> dict[str, str]:
        cls = el.get("class", childclass)
        if cls not in self.classes:
            raise MjcfError(f"{self.where[el]}: class {cls!r} is not a default class; classes: {sorted(self.classes)}")
        return _merged(self.classes[cls].get(tag, {}), el.attrib)

    def add(self, joint: Joint, where: str) -> None:
        self.joints.append(joint)
        self.lines[joint.name] = where
        if joint.child in self.frames:
            raise MjcfError(f"{where}: frame name {joint.child!r} is used twice; rename the body, joint or site")
        self.frames.append(joint.child)

    def walk(self, el: ET.Element, parent: str, placed: torch.Tensor, childclass: str) -> None:
        """The children of ``el``, placed at ``placed`` in frame ``parent`` (not identity below a <frame>)."""
        for child in el:
            w = self.where[child]
            if child.tag == "body":
                self.body(child, parent, placed, child.get("childclass", childclass))
            elif child.tag == "frame":
                inner = lie.se3_compose(placed, _pose(child.attrib, self.compiler, w))
                self.walk(child, parent, inner, child.get("childclass", childclass))
            elif child.tag == "site":
                self.n_sites += 1
                attrs = self.attrs(child, "site", childclass)
                name = attrs.get("name") or f"site{self.n_sites - 1}"
                if any(name == s[1] for s in self.sites):
                    raise MjcfError(f"{w}: site name {name!r} is used twice")
                self.sites.append((child, name, lie.se3_compose(placed, _pose(attrs, self.compiler, w)), parent))
            elif child.tag in ("joint", "freejoint"):
                if el.tag != "body":
                    raise MjcfError(f"{w}: a <{child.tag}> belongs directly inside a <body>, not in <{el.tag}>")
            elif child.tag in _GENERATING:
                raise MjcfError(f"{w}: <{child.tag}> builds bodies inside MuJoCo; robojac reads written-out "
                                "bodies only (save the model MuJoCo compiled with mujoco.mj_saveLastXML)")

    def body(self, el: ET.Element, parent: str, placed: torch.Tensor, childclass: str) -> None:
        w = self.where[el]
        self.n_bodies += 1
        name = el.get("name") or f"body{self.n_bodies - 1}"
        if name in self.body_names:
            raise MjcfError(f"{w}: body name {name!r} is used twice")
        self.body_names.add(name)
        pending = lie.se3_compose(placed, _pose(el.attrib, self.compiler, w))  # T_parent_body at the refs
        moving = [c for c in el if c.tag in ("joint", "freejoint")]
        frame = parent
        for k, jel in enumerate(moving):
            attrs = self.attrs(jel, "joint", childclass) if jel.tag == "joint" else {"type": "free"}
            jw = self.where[jel]
            self.n_joints += 1
            jname = attrs.get("name") or f"joint{self.n_joints - 1}"
            jtype = attrs.get("type", "hinge")
            if jtype == "free":
                if self.free_joints == "fixed":
                    continue  # the body stays where the file puts it (its free joint's qpos0)
                raise MjcfError(f"{jw}: joint {jname!r} is a free joint (a floating base): pass free_joints='fixed' "
                                "to keep the body where the file puts it")
            if jtype not in ("hinge", "slide"):
                raise MjcfError(f"{jw}: joint {jname!r} has type {jtype!r}; a chain's joints are 'hinge' and "
                                "'slide' (a ball joint is three hinges about x, y and z)")
            hinge = jtype == "hinge"
            p = _vec(attrs, "pos", 3, (0.0, 0.0, 0.0), jw)
            axis = _unit(_vec(attrs, "axis", 3, (0.0, 0.0, 1.0), jw), "axis", jw)
            ref = number(attrs.get("ref"), "ref", 0.0, jw, MjcfError)
            lo, hi = self.limits(attrs, hinge, jname, jw)
            # a hinge: T(p) Turn(v - ref) T(-p) = [T(p) Turn(-ref)] Turn(v) [T(-p)];
            # a slide moves every point alike, so its pos does not matter: [Shift(-ref)] Shift(v)
            if hinge:
                at_ref = torch.cat((torch.tensor(p, **_CPU64), _quat(axis, -self.compiler.angle(ref))))
            else:
                at_ref = _shift([-ref * a for a in axis])
            origin = lie.se3_compose(pending, at_ref)
            last = k == len(moving) - 1
            child = name if last and (not hinge or not any(p)) else f"{name}:{jname}"
            kind = JointType.PRISMATIC if not hinge else \
                JointType.REVOLUTE if math.isfinite(lo) else JointType.CONTINUOUS
            try:
                joint = Joint(jname, kind, frame, child, origin, axis, JointLimits(lo, hi))
            except ValueError as e:
                raise MjcfError(f"{jw}: {e}") from None
            self.add(joint, jw)
            frame = child
            pending = _shift([-x for x in p]) if hinge else _IDENTITY.clone()
        if frame != name:
            label = "offset" if frame != parent else "weld"
            self.add(Joint(f"{name}:{label}", JointType.FIXED, frame, name, pending), w)
        self.mass_of(el, name, childclass)
        if self.geoms_read is not None:
            self.collect_geoms(el, name, _IDENTITY.clone(), childclass)
        self.walk(el, name, _IDENTITY.clone(), childclass)

    def geoms(self, el: ET.Element, placed: torch.Tensor, childclass: str):
        """``(attributes, placed, where)`` of each geom of a body or of a ``<frame>`` in it (and
        in frames inside those), ``placed`` its frame's pose in the body, its default class
        applied."""
        for child in el:
            w = self.where[child]
            if child.tag == "frame":
                yield from self.geoms(child, lie.se3_compose(placed, _pose(child.attrib, self.compiler, w)),
                                      child.get("childclass", childclass))
            elif child.tag == "geom":
                yield self.attrs(child, "geom", childclass), placed, w

    def collect_geoms(self, el: ET.Element, body: str, placed: torch.Tensor, childclass: str) -> None:
        """The geoms of a body, as :class:`GeomElement`s in the body's frame."""
        for attrs, at, w in self.geoms(el, placed, childclass):
            ints = {k: int(number(attrs.get(k), k, d, w, MjcfError)) for k, d in
                    (("contype", 1.0), ("conaffinity", 1.0), ("group", 0.0))}
            pose = lie.se3_compose(at, _pose(attrs, self.compiler, w))
            self.geoms_read.append(GeomElement(body, attrs.get("name"), attrs.get("type", "sphere"), _sizes(attrs, w),
                                               tuple(pose.tolist()), ints["contype"], ints["conaffinity"],
                                               ints["group"], w))

    def mass_of(self, el: ET.Element, name: str, childclass: str) -> None:
        """Body ``name``'s mass and centre of mass, as MuJoCo's compiler makes them: from its
        ``<inertial>``, or (with none, or under ``inertiafromgeom="true"``) from its geoms."""
        inertial = el.find("inertial")
        from_geoms = self.compiler.from_geoms == "true" or (self.compiler.from_geoms == "auto" and inertial is None)
        if from_geoms and _has_geoms(el):
            found = self.geom_mass(el, _IDENTITY.clone(), childclass)
            if found is None:
                self.unknown_masses.append(name)
                return
            mass, moment = found
            centre = (moment / mass).tolist() if mass > 0 else (0.0, 0.0, 0.0)
            self.inertials[name] = Inertial(max(mass, self.compiler.bound_mass), centre)
            return
        if inertial is None:
            return  # massless (inertiafromgeom="false", or no geoms)
        w = self.where[inertial]
        for attr in ("mass", "pos"):
            if inertial.get(attr) is None:
                raise MjcfError(f"{w}: the <inertial> of body {name!r} has no {attr} (MuJoCo requires it)")
        mass = number(inertial.get("mass"), "mass", 0.0, w, MjcfError)
        if mass < 0:
            raise MjcfError(f"{w}: body {name!r} has mass {mass}; expected at least 0 kg")
        self.inertials[name] = Inertial(max(mass, self.compiler.bound_mass), _vec(inertial.attrib, "pos", 3, None, w))

    def geom_mass(self, el: ET.Element, placed: torch.Tensor, childclass: str):
        """``(mass, first moment (3,))`` of the geoms of a body (or of a ``<frame>`` in it, placed at
        ``placed`` in the body's frame), or ``None`` when one of them has a shape this reader does
        not measure (a mesh, a height field, a shell).  A geom's mass is its ``mass``, or its
        ``density`` (1000 by default) times its volume; its centre is its ``pos`` (a ``fromto``'s
        midpoint).  Geoms outside ``<compiler inertiagrouprange>`` weigh nothing, as in MuJoCo."""
        mass, moment = 0.0, torch.zeros(3, **_CPU64)
        lo, hi = self.compiler.group_range
        for attrs, at, w in self.geoms(el, placed, childclass):
            group = int(number(attrs.get("group"), "group", 0.0, w, MjcfError))
            if not lo <= group <= hi:
                continue
            if "mass" in attrs:
                m = number(attrs["mass"], "mass", 0.0, w, MjcfError)
            else:
                volume = _volume(attrs, w)
                if volume is None:
                    return None
                m = number(attrs.get("density"), "density", 1000.0, w, MjcfError) * volume
            if m < 0:
                raise MjcfError(f"{w}: a geom of mass {m}; expected at least 0 kg")
            if "fromto" in attrs:
                v = _vec(attrs, "fromto", 6, None, w)
                centre = torch.tensor([0.5 * (a + b) for a, b in zip(v[:3], v[3:])], **_CPU64)
            else:
                centre = torch.tensor(_vec(attrs, "pos", 3, (0.0, 0.0, 0.0), w), **_CPU64)
            mass, moment = mass + m, moment + m * lie.se3_act(at, centre)
        return mass, moment

    def masses(self) -> dict[str, Inertial]:
        """The bodies' inertials, scaled to ``<compiler settotalmass>`` where it is set (as MuJoCo does)."""
        total = sum(i.mass for i in self.inertials.values())
        if self.compiler.total_mass <= 0 or total <= 0 or self.unknown_masses:
            return self.inertials
        k = self.compiler.total_mass / total
        return {b: Inertial(i.mass * k, i.com) for b, i in self.inertials.items()}

    def limits(self, attrs: dict, hinge: bool, jname: str, where: str) -> tuple[float, float]:
        limited = attrs.get("limited", "auto")
        if limited not in ("true", "false", "auto"):
            raise MjcfError(f"{where}: limited={limited!r}: expected 'true', 'false' or 'auto'")
        given = "range" in attrs
        if limited == "auto" and given and not self.compiler.autolimits:  # ambiguous: MuJoCo refuses it too
            raise MjcfError(f"{where}: joint {jname!r} has a range but no limited attribute, and "
                            "<compiler autolimits='false'>: give limited='true' or 'false'")
        if limited == "false" or (limited == "auto" and not given):
            return -math.inf, math.inf
        if not given:
            raise MjcfError(f"{where}: joint {jname!r} is limited but has no range")
        lo, hi = _vec(attrs, "range", 2, None, where)
        if hinge:
            lo, hi = self.compiler.angle(lo), self.compiler.angle(hi)
        if lo > hi:
            raise MjcfError(f"{where}: joint {jname!r} has range {attrs['range']!r}: "
                            "the lower limit is above the upper")
        return lo, hi

    def place_sites(self) -> None:
        for el, name, pose, body in self.sites:
            frame = name if name not in self.frames else f"{name}:site"
            self.add(Joint(f"{name}:site", JointType.FIXED, body, frame, pose), self.where[el])


_SIZES = {"sphere": 1, "capsule": 2, "cylinder": 2, "ellipsoid": 3, "box": 3}  # the half sizes each type needs


def _sizes(attrs: dict, where: str) -> tuple[float, ...]:
    """A geom's half sizes as MuJoCo reads them: its ``size``, with the numbers its ``type``
    needs (all of them for another type: a plane's, a mesh's); a ``fromto`` gives the half
    length along its axis, the long one (a box's or ellipsoid's two others are both ``size[0]``)."""
    kind = attrs.get("type", "sphere")
    raw = attrs.get("size", "")
    try:
        size = [float(v) for v in raw.split()]
    except ValueError:
        raise MjcfError(f"{where}: size={raw!r} is not numbers") from None
    if "fromto" in attrs:
        v = _vec(attrs, "fromto", 6, None, where)
        size = size[:1] * (1 if kind in ("sphere", "capsule", "cylinder") else 2) + [0.5 * math.dist(v[:3], v[3:])]
    need = _SIZES.get(kind)
    if need is None:
        return tuple(size)
    if len(size) < need or not all(math.isfinite(x) and x >= 0 for x in size[:need]):
        raise MjcfError(f"{where}: a {kind} geom needs {need} sizes of at least 0, got size={raw!r}")
    return tuple(size[:need])


def _volume(attrs: dict, where: str) -> float | None:
    """A geom's volume from its ``type`` and :func:`_sizes`, as MuJoCo's compiler measures it;
    ``None`` for a mesh, a height field, a plane or a shell (``shellinertia``), which this reader
    does not measure."""
    kind = attrs.get("type", "sphere")
    if kind not in _SIZES or attrs.get("shellinertia") == "true":
        return None
    size = _sizes(attrs, where)
    r = size[0]
    if kind == "sphere":
        return 4.0 / 3.0 * math.pi * r**3
    if kind == "capsule":
        return math.pi * r * r * 2 * size[1] + 4.0 / 3.0 * math.pi * r**3
    if kind == "cylinder":
        return math.pi * r * r * 2 * size[1]
    return (4.0 / 3.0 * math.pi if kind == "ellipsoid" else 8.0) * r * size[1] * size[2]


def _has_geoms(body: ET.Element) -> bool:
    """Whether a body holds geoms (directly, or inside its ``<frame>`` elements, not its child bodies)."""
    for child in body:
        if child.tag == "geom" or (child.tag == "frame" and _has_geoms(child)):
            return True
    return False


def read_mjcf_geoms(source, *, free_joints: str = "refuse") -> list[GeomElement]:
    """Every ``<geom>`` of an MJCF file path or XML string, in the order MuJoCo reads them, each in
    its body's frame (see :class:`GeomElement`); the model is read as :func:`chain_from_mjcf`
    reads it, so its bodies are the frames of that chain."""
    return chain_from_mjcf(source, free_joints=free_joints, _want_geoms=True)


def chain_from_mjcf(source, *, root: str | None = None, tip: str | None = None, free_joints: str = "refuse",
                    _want_geoms: bool = False):
    """A :class:`~robojac.kinematics.Chain` from an MJCF file path or XML string (kinematics only).

    Needs no MuJoCo.  Bodies become frames of their names under the root frame ``world``;
    hinge joints become revolute joints (continuous where unlimited), slide joints prismatic
    ones, sites frames of their names; the module's description above gives the details.
    ``q`` is in MuJoCo's ``qpos`` order, in radians and metres whatever the file's
    ``<compiler angle>``, and at ``q = ref`` each body is where the file puts it.

    Args:
        source: a file path, or the XML text.  ``<include file>`` is read relative to the
            model's folder (so a string may only include absolute paths).
        root, tip: give ``tip`` (and optionally ``root``) for the serial chain between them.
        free_joints: ``"refuse"`` (the default) stops at a free joint, a floating base that
            a chain cannot hold; ``"fixed"`` keeps such a body where the file puts it.

    Raises:
        MjcfError: a file that is not such a model: bad XML, numbers or names, ball joints,
            elements that make bodies inside MuJoCo (``composite``, ``replicate``, ...).  The
            message starts with the ``file:line`` of the element.
    """
    from ._chain import Chain

    if free_joints not in ("refuse", "fixed"):
        raise ValueError(f"free_joints: expected 'refuse' or 'fixed', got {free_joints!r}")
    text, name, folder = _read(source)
    where: dict[ET.Element, str] = {}
    model = _load(text, name, folder, where, ())
    bodies = model.findall("worldbody")  # MuJoCo reads every one, in order
    if not bodies:
        raise MjcfError(f"{where[model]}: <mujoco> has no <worldbody>")
    build = _Builder(_Compiler(model, where), _defaults(model, where), where, free_joints)
    if _want_geoms:
        build.geoms_read = []
    for wb in bodies:
        if _want_geoms:
            build.collect_geoms(wb, "world", _IDENTITY.clone(), "main")
        build.walk(wb, "world", _IDENTITY.clone(), "main")
    build.place_sites()
    if _want_geoms:
        return build.geoms_read
    try:
        chain = Chain(build.joints, links=build.frames, root="world", name=model.get("model", "mujoco"),
                      inertials=build.masses(), _joint_lines=build.lines, _unknown_masses=build.unknown_masses)
    except KinematicTreeError as e:
        raise MjcfError(str(e)) from None
    if root is None and tip is None:
        return chain
    if tip is None:
        raise ValueError(f"tip: give the end frame with root={root!r}; frames: {chain.frame_names}")
    return chain.subchain(root, tip)
