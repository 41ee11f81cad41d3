"""Shared pieces of the commands: a progress bar on standard error, and the robot arguments."""

from __future__ import annotations

import sys
import time


def progress(done: int, total: int, t0: float, unit: str, *, rate: bool = True) -> None:
    """Redraw ``[#####.....] done/total unit, rate/s`` (the rate only with ``rate``); the caller
    ends the line when finished."""
    width = 30
    k = int(width * done / max(total, 1))
    per_s = f", {done / max(time.perf_counter() - t0, 1e-9):,.0f}/s" if rate else f", {time.perf_counter() - t0:.2f} s"
    sys.stderr.write(f"\r[{'#' * k}{'.' * (width - k)}] {done}/{total} {unit}{per_s}")
    sys.stderr.flush()


def robot_arguments(p, tip: str, root: str, tip_required: bool = True) -> None:
    """The arguments every robot command takes: the robot description, ``--tip`` and ``--root`` (with what
    each means for the command; ``tip_required=False`` where the command checks it itself)."""
    import pathlib

    p.add_argument("urdf", type=pathlib.Path, help="robot description: a URDF, or an MJCF (MuJoCo XML) model")
    p.add_argument("--tip", required=tip_required, help=tip)
    p.add_argument("--root", help=root)


def load_chain(path, root: str | None, tip: str | None, free_joints: str = "refuse"):
    """The chain of a robot description file: an MJCF model if its first element is
    ``<mujoco>`` (its free joints as ``free_joints`` says), a URDF otherwise (whose reader then
    says what is wrong)."""
    from xml.parsers import expat

    from ..kinematics import Chain

    first = []

    def start(tag, attrs):
        first.append(tag)
        raise StopIteration  # the first element is all this needs

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except (StopIteration, expat.ExpatError):
        pass
    if first == ["mujoco"]:
        return Chain.from_mjcf(path, root=root, tip=tip, free_joints=free_joints)
    return Chain.from_urdf(path, root=root, tip=tip)
