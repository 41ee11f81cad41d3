"""The shape of a kinematic tree: validation, frame order, actuated joints, paths."""

from __future__ import annotations

import collections

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from ._joint import Joint, Mimic


class KinematicTreeError(ValueError):
    """A set of links and joints that is not a kinematic tree (says which link or joint)."""


def _where(joint_lines: dict[str, str] | None, joint: str) -> str:
    if joint_lines and joint in joint_lines:
        return f"{joint_lines[joint]}: "
    return ""


@dataclass(frozen=True)
class TreeLayout:
    """Frames in parent-before-child order (index 0 the root) and the actuated joints."""

    frames: tuple[str, ...]
    parent: tuple[int, ...]  # parent frame index, -1 for the root
    joint_of: tuple[Joint | None, ...]  # the joint whose child each frame is
    actuated: tuple[Joint, ...]  # the joints q drives, in q's order
    mimic: dict[str, tuple[str, float, float]]  # mimic joint -> (actuated source, multiplier, offset)

    @property
    def root(self) -> str:
        return self.frames[0]

    def index(self, frame: str) -> int:
        try:
            return self.frames.index(frame)
        except ValueError:
            raise ValueError(f"frame {frame!r} does not exist; frames: {list(self.frames)}") from None

    def path(self, frame: str) -> list[int]:
        """Frame indices from the root to ``frame`` (inclusive)."""
        i = self.index(frame)
        out = []
        while i >= 0:
            out.append(i)
            i = self.parent[i]
        return out[::-1]

    def leaves(self) -> list[str]:
        return list(self._leaves)

    @cached_property
    def _leaves(self) -> tuple[str, ...]:  # asked on every IK solve that names no frame
        has_child = set(p for p in self.parent if p >= 0)
        return tuple(f for i, f in enumerate(self.frames) if i not in has_child)


def layout(joints: Sequence[Joint], links: Sequence[str] | None = None, root: str | None = None,
           joint_lines: dict[str, str] | None = None, sources: Sequence[Joint] = ()) -> TreeLayout:
    """Check that ``joints`` (and ``links``) form one tree and order its frames depth-first.

    ``joint_lines`` maps joint names to a ``file:line`` prefix for error messages;
    ``sources`` are joints off the tree that mimic joints in it may follow (they become
    actuated, after the tree's own).
    """
    names = [j.name for j in joints]
    dupes = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if dupes:
        raise KinematicTreeError(f"{_where(joint_lines, dupes[0])}joint name {dupes[0]!r} is used twice")
    link_set = set(links) if links is not None else set()
    if links is not None:
        for j in joints:
            for role, link in (("parent", j.parent), ("child", j.child)):
                if link not in link_set:
                    raise KinematicTreeError(
                        f"{_where(joint_lines, j.name)}joint {j.name!r}: {role} link {link!r} is not defined"
                    )
    else:
        for j in joints:
            link_set.update((j.parent, j.child))
    parent_joint: dict[str, Joint] = {}
    for j in joints:
        if j.parent == j.child:
            raise KinematicTreeError(f"{_where(joint_lines, j.name)}joint {j.name!r} connects link {j.child!r} to itself")
        if j.child in parent_joint:
            raise KinematicTreeError(
                f"{_where(joint_lines, j.name)}link {j.child!r} has two parent joints ({parent_joint[j.child].name!r} "
                f"and {j.name!r}): a kinematic tree gives each link one parent"
            )
        parent_joint[j.child] = j
    roots = sorted(link_set - set(parent_joint))
    if root is None:
        if not roots:
            raise KinematicTreeError("the joints form a cycle: every link has a parent joint, so there is no root link")
        if len(roots) > 1:
            raise KinematicTreeError(f"several root links (disconnected parts): {roots}; pass root= to choose one")
        root = roots[0]
    elif root not in link_set:
        raise KinematicTreeError(f"root {root!r} does not exist; links: {sorted(link_set)}")
    children: dict[str, list[Joint]] = {}
    for j in joints:
        children.setdefault(j.parent, []).append(j)
    frames, parent, joint_of, order = [root], [-1], [None], []
    seen = {root}
    stack = [(j, 0) for j in reversed(children.get(root, []))]
    while stack:  # depth-first pre-order, children in definition order
        j, pidx = stack.pop()
        if j.child in seen:
            raise KinematicTreeError(f"{_where(joint_lines, j.name)}joint {j.name!r} closes a cycle at link {j.child!r}")
        seen.add(j.child)
        frames.append(j.child)
        parent.append(pidx)
        joint_of.append(j)
        order.append(j)
        idx = len(frames) - 1
        stack.extend((c, idx) for c in reversed(children.get(j.child, [])))
    unreached = sorted(link_set - set(frames))
    if unreached:
        if root in parent_joint or not (set(roots) - {root}):
            raise KinematicTreeError(f"links {unreached} are not below root {root!r} (a cycle or another root)")
        raise KinematicTreeError(f"links {unreached} are not connected to root {root!r}; root links: {roots}")
    by_name = {j.name: j for j in order}
    for j in sources:
        by_name.setdefault(j.name, j)
    mimic = _resolve_mimics(order, by_name, joint_lines)
    actuated = [by_name[j.name] for j in order if j.type.movable and j.mimic is None]
    used_sources = {src for src, _, _ in mimic.values()}
    actuated += [j for j in sources if j.name in used_sources and j.name not in {a.name for a in actuated}]
    return TreeLayout(tuple(frames), tuple(parent), tuple(joint_of), tuple(actuated), mimic)


def _resolve_mimics(order, by_name, joint_lines) -> dict[str, tuple[str, float, float]]:
    out = {}
    for j in order:
        if j.mimic is None:
            continue
        mult, off, seen, cur = 1.0, 0.0, [j.name], j.mimic
        while True:
            src = by_name.get(cur.joint)
            if src is None:
                raise KinematicTreeError(f"{_where(joint_lines, j.name)}joint {j.name!r} mimics {cur.joint!r}, which is not a joint of this chain")
            if not src.type.movable:
                raise KinematicTreeError(f"{_where(joint_lines, j.name)}joint {j.name!r} mimics fixed joint {src.name!r}")
            mult, off = mult * cur.multiplier, off + mult * cur.offset  # v = m1 (m2 src + o2) + o1
            if src.mimic is None:
                break
            if src.name in seen:
                raise KinematicTreeError(f"{_where(joint_lines, j.name)}mimic joints form a cycle: {seen + [src.name]}")
            seen.append(src.name)
            cur = src.mimic
        out[j.name] = (src.name, mult, off)
    return out


def path_joints(layout_: TreeLayout, root: str, tip: str) -> list[Joint]:
    """The joints on the serial path from ``root`` to ``tip``."""
    r = layout_.index(root)
    path = layout_.path(tip)
    if r not in path:
        raise ValueError(f"root {root!r} is not an ancestor of tip {tip!r}; ancestors of the tip: {[layout_.frames[i] for i in path]}")
    chosen = [layout_.joint_of[i] for i in path[path.index(r) + 1 :]]
    return chosen


__all__ = ["KinematicTreeError", "TreeLayout", "layout", "path_joints", "Mimic"]
