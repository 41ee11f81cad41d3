"""A robot's collision model (spheres and capsules on its links) and a world of obstacles, with
the signed distances between them and between the robot's own links.

``RobotCollision(chain, {link: [Sphere | Capsule, ...]})`` holds the shapes as buffers: each
shape's segment in its link's frame, its radius and its link.  One forward-kinematics pass of
the links that carry shapes puts them in the world, for any leading batch of configurations, on
``q``'s device and dtype; the distances are then differentiable in ``q`` (and through the
chain's parameters), which is what a collision task of the solver needs.

Self-collision pairs are the shapes of two links that are not the same body (links joined by a
fixed joint are one body) nor parent and child, less the link pairs in ``ignore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .. import lie
from .._config import check_int, check_real
from ..kinematics import Chain, read_mjcf_geoms, read_urdf_collisions
from ._distance import capsule_box, capsule_capsule, capsule_halfspace
from ._shapes import Box, Capsule, HalfSpace, Sphere, segment_of

__all__ = ["Obstacles", "RobotCollision"]

_CPU = dict(dtype=torch.float64, device="cpu")  # built on the CPU; .to() moves them


def _shape_list(owner: str, link: str, value) -> list:
    items = [value] if isinstance(value, (Sphere, Capsule)) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(f"{owner}: shapes[{link!r}]: expected a Sphere, a Capsule or a sequence of them, got "
                        f"{type(value).__name__}")
    items = list(items)
    for k, s in enumerate(items):
        if not isinstance(s, (Sphere, Capsule)):
            raise TypeError(f"{owner}: shapes[{link!r}][{k}]: expected a robojac.collision Sphere or Capsule, got "
                            f"{type(s).__name__}")
    return items


def _bodies(chain: Chain) -> list[int]:
    """Each frame's body: the nearest frame at or above it whose joint moves (or the root)."""
    tree = chain.tree
    body = []
    for f in range(len(tree.frames)):
        g = f
        while tree.parent[g] >= 0 and not tree.joint_of[g].type.movable:
            g = tree.parent[g]
        body.append(g)
    return body


def _round_geom(g) -> Sphere | Capsule | None:
    """An MJCF geom as a sphere or a capsule (a cylinder as the capsule containing it), in its
    body's frame; ``None`` for any other shape."""
    X = torch.tensor(g.pose, **_CPU)
    if g.kind == "sphere":
        return Sphere(g.size[0], tuple(X[:3].tolist()))
    if g.kind in ("capsule", "cylinder"):
        ends = lie.se3_act(X, torch.tensor([[0.0, 0.0, -g.size[1]], [0.0, 0.0, g.size[1]]], **_CPU))
        return Capsule(g.size[0], tuple(ends[0].tolist()), tuple(ends[1].tolist()))
    return None


def _moved(chain: Chain) -> set[str]:
    """The links some joint moves (every link below a movable joint)."""
    tree = chain.tree
    moved: set[int] = set()
    for f in range(1, len(tree.frames)):  # parents come before children
        if tree.joint_of[f].type.movable or tree.parent[f] in moved:
            moved.add(f)
    return {tree.frames[f] for f in moved}


class RobotCollision(nn.Module):
    """Spheres and capsules on a chain's links.

    ``shapes``: ``{link: shape or [shapes]}``, each shape in its link's frame.  ``ignore``: link
    pairs whose shapes are never checked against each other (beside each link with itself, the
    links of one body, and a parent body with its child, which are never checked): two links
    that touch by design, as capsules meeting at a joint.  :meth:`from_skeleton` builds the
    capsules from the chain's joint origins.

    :meth:`self_distances` gives ``(..., P)``, one signed distance per pair in :attr:`pairs`;
    :meth:`distances` gives ``(..., G, O)``, each shape to each obstacle.  Negative is overlap.
    """

    def __init__(self, chain: Chain, shapes: Mapping[str, Sphere | Capsule | Sequence[Sphere | Capsule]], *,
                 ignore: Iterable[tuple[str, str]] = ()):
        super().__init__()
        if not isinstance(chain, Chain):
            raise TypeError(f"RobotCollision.chain: expected a robojac Chain, got {type(chain).__name__}")
        if not isinstance(shapes, Mapping) or not shapes:
            raise ValueError("RobotCollision.shapes: expected a non-empty mapping {link: shape or [shapes]}")
        frames = chain.frame_names
        links, segments, radii = [], [], []
        for link, value in shapes.items():
            if link not in frames:
                raise ValueError(f"RobotCollision.shapes: {link!r} is no link of chain {chain.name!r}; links: {frames}")
            for s in dict.fromkeys(_shape_list("RobotCollision", link, value)):  # each once
                a, b, r = segment_of(s)
                links.append(link)
                segments.append((a, b))
                radii.append(r)
        if not links:
            raise ValueError("RobotCollision.shapes: expected at least one shape")
        self.chain = chain
        self.links: tuple[str, ...] = tuple(links)  # each shape's link
        self.carriers: tuple[str, ...] = tuple(dict.fromkeys(links))  # the links that carry shapes, once each
        self.register_buffer("segments", torch.tensor(segments, **_CPU), persistent=False)  # (G, 2, 3) in each link
        self.register_buffer("radii", torch.tensor(radii, **_CPU), persistent=False)  # (G,)
        self.register_buffer("carrier", torch.tensor([self.carriers.index(n) for n in links], dtype=torch.long,
                                                     device="cpu"), persistent=False)
        moved = _moved(chain)
        self.moving: tuple[bool, ...] = tuple(link in moved for link in links)  # does any joint move each shape?
        skip = set()
        for k, pair in enumerate(ignore):
            if isinstance(pair, (str, bytes)) or len(tuple(pair)) != 2 or any(p not in frames for p in pair):
                raise ValueError(f"RobotCollision.ignore[{k}]: expected a pair of link names of chain "
                                 f"{chain.name!r}, got {pair!r}")
            skip.add(frozenset(pair))
        self.ignored: frozenset = frozenset(skip)
        self.unmodelled: tuple = ()  # a description's collision elements that are no sphere or capsule
        body, parent = _bodies(chain), chain.tree.parent
        index = {f: i for i, f in enumerate(frames)}

        def near(u: str, v: str) -> bool:
            bu, bv = body[index[u]], body[index[v]]
            return (bu == bv or (parent[bu] >= 0 and body[parent[bu]] == bv)
                    or (parent[bv] >= 0 and body[parent[bv]] == bu))

        pairs = [(i, j) for i in range(len(links)) for j in range(i + 1, len(links))
                 if not near(links[i], links[j]) and frozenset((links[i], links[j])) not in skip]
        self.register_buffer("pairs", torch.tensor(pairs, dtype=torch.long, device="cpu").reshape(-1, 2),
                             persistent=False)  # (P, 2) shape indices

    @classmethod
    def from_skeleton(cls, chain: Chain, radius: float | Mapping[str, float], *, links: Sequence[str] | None = None,
                      ignore: Iterable[tuple[str, str]] = (), samples: int = 256, seed: int = 0) -> RobotCollision:
        """Capsules along the chain's skeleton: on each link, one from its origin to each child
        link's origin, of ``radius`` (one for all, or ``{link: radius}``; a link it does not name
        gets none).  ``links`` limits them to those links.  A coarse model when the real shapes
        are meshes: it covers the segments between the joints, not the links' bodies.

        Capsules that meet at a joint overlap at every configuration.  Link pairs that overlap at
        every one of ``samples`` random configurations within the limits (drawn from ``seed``)
        are ignored as touching by design, as a description's "adjacent" and "always in
        collision" pairs are; ``samples=0`` ignores none (``ignore`` adds pairs of your own)."""
        if not isinstance(chain, Chain):
            raise TypeError(f"RobotCollision.from_skeleton.chain: expected a robojac Chain, got {type(chain).__name__}")
        frames, tree = chain.frame_names, chain.tree
        chosen = frames if links is None else list(links)
        for f in chosen:
            if f not in frames:
                raise ValueError(f"RobotCollision.from_skeleton.links: {f!r} is no link of chain {chain.name!r}")
        check_int("RobotCollision.from_skeleton", "samples", samples, minimum=0)

        def radius_of(f: str) -> float | None:
            r = radius.get(f) if isinstance(radius, Mapping) else radius
            check_real("RobotCollision.from_skeleton", "radius", r, positive=True, optional=True)
            return None if r is None else float(r)

        shapes: dict[str, list] = {}
        for c in range(1, len(frames)):
            f = frames[tree.parent[c]]
            end = tree.joint_of[c].origin[:3]
            r = radius_of(f) if f in chosen else None
            if r is None or float(end.norm()) < 1e-9:
                continue
            shapes.setdefault(f, []).append(Capsule(r, (0.0, 0.0, 0.0), tuple(end.tolist())))
        if not shapes:
            raise ValueError(f"RobotCollision.from_skeleton: chain {chain.name!r} has no link with a child at a "
                             "distance from it among those given a radius")
        model = cls(chain, shapes, ignore=ignore)
        if samples and len(model.pairs):
            gen = torch.Generator(device="cpu").manual_seed(seed)
            q = chain.random_configuration(samples, generator=gen)
            with torch.no_grad():
                always = (model.self_distances(q) < 0).all(0)
            touching = {(model.links[int(i)], model.links[int(j)]) for (i, j), a in zip(model.pairs.tolist(), always)
                        if a}
            if touching:
                model = cls(chain, shapes, ignore=list(model.ignored) + sorted(touching))
        return model

    @classmethod
    def from_urdf(cls, chain: Chain, source, *, ignore: Iterable[tuple[str, str]] = ()) -> RobotCollision:
        """The spheres, cylinders and capsules of a URDF's ``<collision>`` elements (``source``:
        a path or the XML), on ``chain``'s links (a link the chain does not have is skipped: a
        subchain).  A cylinder becomes the capsule that contains it (its axis as the segment, its
        radius): ``radius`` more at each end, a conservative model.  Boxes and meshes cannot be
        spheres or capsules: they are listed in :attr:`unmodelled` (the elements, with their
        ``file:line``), and a description with nothing else is refused, naming what it has."""
        if not isinstance(chain, Chain):
            raise TypeError(f"RobotCollision.from_urdf.chain: expected a robojac Chain, got {type(chain).__name__}")
        frames = set(chain.frame_names)
        shapes: dict[str, list] = {}
        unmodelled = []
        for el in read_urdf_collisions(source):
            if el.link not in frames:
                continue
            if el.kind in ("box", "mesh"):
                unmodelled.append(el)
                continue
            X = torch.tensor(el.origin, **_CPU)
            if el.kind == "sphere":
                shape = Sphere(el.size[0], tuple(X[:3].tolist()))
            else:  # a cylinder or a capsule: its axis is the origin's z
                half = lie.se3_act(X, torch.tensor([[0.0, 0.0, -el.size[1] / 2], [0.0, 0.0, el.size[1] / 2]], **_CPU))
                shape = Capsule(el.size[0], tuple(half[0].tolist()), tuple(half[1].tolist()))
            shapes.setdefault(el.link, []).append(shape)
        return cls._described(chain, shapes, unmodelled, "from_urdf", ignore)

    @classmethod
    def from_mjcf(cls, chain: Chain, source, *, ignore: Iterable[tuple[str, str]] = ()) -> RobotCollision:
        """The sphere, capsule and cylinder geoms of an MJCF model (``source``: a path or the XML)
        on ``chain``'s bodies other than the world (the worldbody's geoms are obstacles:
        :meth:`Obstacles.from_mjcf`).  A geom that collides with nothing (``contype`` and
        ``conaffinity`` both 0: a visual one) is left out.  A cylinder becomes the capsule that
        contains it, as in :meth:`from_urdf`; boxes, ellipsoids, meshes and other shapes are
        listed in :attr:`unmodelled`."""
        if not isinstance(chain, Chain):
            raise TypeError(f"RobotCollision.from_mjcf.chain: expected a robojac Chain, got {type(chain).__name__}")
        frames = set(chain.frame_names) - {chain.root}
        shapes: dict[str, list] = {}
        unmodelled = []
        for g in read_mjcf_geoms(source, free_joints="fixed"):
            if g.body not in frames or (g.contype == 0 and g.conaffinity == 0):
                continue
            shape = _round_geom(g)
            if shape is None:
                unmodelled.append(g)
            else:
                shapes.setdefault(g.body, []).append(shape)
        return cls._described(chain, shapes, unmodelled, "from_mjcf", ignore)

    @classmethod
    def _described(cls, chain: Chain, shapes: dict, unmodelled: list, reader: str, ignore) -> RobotCollision:
        """The model of a description's round shapes, its other shapes kept in :attr:`unmodelled`;
        a description with no round shape on the chain is refused, naming what it has."""
        if not shapes:
            kinds = sorted({e.kind for e in unmodelled})
            raise ValueError(f"RobotCollision.{reader}: no sphere, cylinder or capsule on chain {chain.name!r}'s links "
                             f"({len(unmodelled)} elements: {', '.join(kinds) or 'none'}); give the shapes in code, "
                             "or use RobotCollision.from_skeleton")
        model = cls(chain, shapes, ignore=ignore)
        model.unmodelled = tuple(unmodelled)
        return model

    @property
    def num_shapes(self) -> int:
        return len(self.links)

    @property
    def pair_names(self) -> list[tuple[str, str]]:
        """The link names of each self-collision pair, in :meth:`self_distances`' order."""
        return [(self.links[i], self.links[j]) for i, j in self.pairs.tolist()]

    def shapes_in_world(self, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, b, radii)``: each shape's segment ends ``(..., G, 3)`` in the chain's root frame
        at configurations ``q (..., dof)``, and its radius ``(G,)``, in ``q``'s dtype."""
        X = self.chain.forward_kinematics_tensor(q, list(self.carriers))  # (..., L, 7)
        X = X[..., self.carrier.to(X.device), :]  # (..., G, 7)
        seg = self.segments.to(dtype=X.dtype, device=X.device)
        a, b = lie.se3_act(X, seg[:, 0]), lie.se3_act(X, seg[:, 1])
        return a, b, self.radii.to(dtype=X.dtype, device=X.device)

    def self_distances(self, q: Tensor) -> Tensor:
        """Signed distances ``(..., P)`` of the pairs in :attr:`pairs` at ``q (..., dof)``."""
        return self.pair_distances(*self.shapes_in_world(q))

    def pair_distances(self, a: Tensor, b: Tensor, r: Tensor) -> Tensor:
        """:meth:`self_distances` from the shapes already in the world (:meth:`shapes_in_world`'s
        ``a, b (..., G, 3)`` and ``r (G,)``)."""
        i, j = self.pairs[:, 0].to(a.device), self.pairs[:, 1].to(a.device)
        return capsule_capsule(a[..., i, :], b[..., i, :], r[i], a[..., j, :], b[..., j, :], r[j])

    def distances(self, q: Tensor, obstacles: Obstacles) -> Tensor:
        """Signed distances ``(..., G, O)`` from each shape to each obstacle at ``q (..., dof)``."""
        if not isinstance(obstacles, Obstacles):
            raise TypeError(f"RobotCollision.distances.obstacles: expected robojac.collision.Obstacles, got "
                            f"{type(obstacles).__name__}")
        a, b, r = self.shapes_in_world(q)
        return obstacles.distances(a, b, r)

    def colliding_pairs(self, q: Tensor, margin: float = 0.0) -> list[tuple[str, str]]:
        """The link pairs closer than ``margin`` at one configuration ``q (dof,)``."""
        if q.dim() != 1:
            raise ValueError(f"RobotCollision.colliding_pairs.q: expected one configuration ({self.chain.dof},), got "
                             f"shape {tuple(q.shape)}")
        d = self.self_distances(q).detach()
        return [p for p, v in zip(self.pair_names, d.tolist()) if v < margin]


class Obstacles(nn.Module):
    """Fixed obstacles in the chain's root frame: spheres, capsules, boxes and half-spaces, in
    the order given (the columns of :meth:`RobotCollision.distances`)."""

    def __init__(self, shapes: Sequence[Sphere | Capsule | Box | HalfSpace]):
        super().__init__()
        if isinstance(shapes, (Sphere, Capsule, Box, HalfSpace)):
            shapes = [shapes]
        if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence) or not shapes:
            raise ValueError("Obstacles.shapes: expected a non-empty sequence of Sphere, Capsule, Box or HalfSpace")
        round_, boxes, planes = [], [], []
        for k, s in enumerate(shapes):
            if isinstance(s, (Sphere, Capsule)):
                round_.append((k, segment_of(s)))
            elif isinstance(s, Box):
                boxes.append((k, s))
            elif isinstance(s, HalfSpace):
                planes.append((k, s))
            else:
                raise TypeError(f"Obstacles.shapes[{k}]: expected a Sphere, Capsule, Box or HalfSpace, got "
                                f"{type(s).__name__}")
        self.shapes = tuple(shapes)
        self.register_buffer("segments", torch.tensor([(a, b) for _, (a, b, _) in round_], **_CPU).reshape(-1, 2, 3),
                             persistent=False)
        self.register_buffer("radii", torch.tensor([r for _, (_, _, r) in round_], **_CPU), persistent=False)
        self.register_buffer("box_poses", torch.tensor([s.pose for _, s in boxes], **_CPU).reshape(-1, 7),
                             persistent=False)
        self.register_buffer("box_half_extents", torch.tensor([s.half_extents for _, s in boxes], **_CPU)
                             .reshape(-1, 3), persistent=False)
        self.register_buffer("normals", torch.tensor([s.normal for _, s in planes], **_CPU).reshape(-1, 3),
                             persistent=False)
        self.register_buffer("offsets", torch.tensor([s.offset for _, s in planes], **_CPU), persistent=False)
        order = [k for k, _ in round_] + [k for k, _ in boxes] + [k for k, _ in planes]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long, device="cpu").argsort(), persistent=False)

    @classmethod
    def from_mjcf(cls, source) -> Obstacles:
        """The worldbody's geoms of an MJCF model (``source``: a path or the XML): spheres,
        capsules, cylinders (as the capsules containing them), boxes and planes (the half-space
        below the plane, its normal the geom's z).  A geom that collides with nothing
        (``contype`` and ``conaffinity`` both 0) is left out; another shape (a mesh, a height
        field) is refused, naming its ``file:line``."""
        shapes = []
        for g in read_mjcf_geoms(source, free_joints="fixed"):
            if g.body != "world" or (g.contype == 0 and g.conaffinity == 0):
                continue
            shape = _round_geom(g)
            if shape is None and g.kind == "box":
                shape = Box(g.size, g.pose)
            elif shape is None and g.kind == "plane":
                normal = lie.quat_rotate(torch.tensor(g.pose[3:], **_CPU), torch.tensor([0.0, 0.0, 1.0], **_CPU))
                shape = HalfSpace(tuple(normal.tolist()), float(normal @ torch.tensor(g.pose[:3], **_CPU)))
            elif shape is None:
                raise ValueError(f"{g.where}: a {g.kind} geom in the worldbody: an obstacle here is a sphere, "
                                 "capsule, cylinder, box or plane")
            shapes.append(shape)
        if not shapes:
            raise ValueError("Obstacles.from_mjcf: the worldbody has no geom that collides")
        return cls(shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def distances(self, a: Tensor, b: Tensor, r: Tensor) -> Tensor:
        """Signed distances ``(..., G, O)`` from capsules ``(a, b (..., G, 3), r (G,))`` to each
        obstacle."""
        d = self.grouped_distances(a[..., None, :], b[..., None, :], r[:, None])
        return d[..., self.order.to(a.device)]

    def grouped_distances(self, a: Tensor, b: Tensor, r: Tensor) -> Tensor:
        """:meth:`distances` with the obstacles grouped by kind (round ones, boxes, half-spaces,
        each in the order given; :attr:`order` puts them back), from capsules ``a, b (..., G, 1 or
        O, 3)`` and ``r (G, 1)``: laid out per obstacle, each distance reads its own copy of its
        capsule (for the gradient of each distance alone)."""
        kw = dict(dtype=a.dtype, device=a.device)
        n_round, n_box = len(self.radii), len(self.box_poses)
        cut = (0, n_round, n_round + n_box, len(self.shapes))

        def part(x: Tensor, k: int) -> Tensor:
            return x if x.shape[-2] == 1 else x[..., cut[k]:cut[k + 1], :]

        out = []
        if n_round:
            seg = self.segments.to(**kw)
            out.append(capsule_capsule(part(a, 0), part(b, 0), r, seg[:, 0], seg[:, 1], self.radii.to(**kw)))
        if n_box:
            out.append(capsule_box(part(a, 1), part(b, 1), r, self.box_poses.to(**kw),
                                   self.box_half_extents.to(**kw)))
        if len(self.offsets):
            out.append(capsule_halfspace(part(a, 2), part(b, 2), r, self.normals.to(**kw), self.offsets.to(**kw)))
        return torch.cat(out, -1)
