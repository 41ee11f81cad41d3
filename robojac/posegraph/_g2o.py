"""g2o files in and out: ``VERTEX_SE2``/``EDGE_SE2``, ``VERTEX_SE3:QUAT``/``EDGE_SE3:QUAT``, ``FIX``.

Information matrices: 2D files store ``[x, y, theta]`` (robojac's order); 3D files store the
upper triangle of a 6x6 matrix in the order ``[x, y, z, qx, qy, qz]``, which robojac (like GTSAM's
reader) takes as the information of the edge error's ``[rho, phi]`` -- so costs equal
GTSAM's ``graph.error()`` on the same file.
"""

from __future__ import annotations

import logging
import math
import pathlib

import numpy as np
import torch

from .._files import write_text_atomic
from ._graph import PoseGraph
from ._se2 import se2_to_se3, se3_to_se2

__all__ = ["G2OError", "read_g2o", "write_g2o"]

log = logging.getLogger(__name__)

_SPEC = {  # tag -> (dimension, number of values after the tag)
    "VERTEX_SE2": (2, 4),
    "EDGE_SE2": (2, 11),
    "VERTEX_SE3:QUAT": (3, 8),
    "EDGE_SE3:QUAT": (3, 30),
}
_UNIT_TOL = 1e-6  # quaternions off unit length by more are normalized with a warning
_REFUSE_TOL = 0.1  # ... and by more than this refused


class G2OError(ValueError):
    """A g2o file that cannot be read; the message starts with ``file:line``."""


def _numbers(tokens, where: str, tag: str) -> list[float]:
    out = []
    for k, tok in enumerate(tokens):
        try:
            v = float(tok)
        except ValueError:
            raise G2OError(f"{where}: {tag}: value {k + 1} {tok!r} is not a number") from None
        if not math.isfinite(v):
            raise G2OError(f"{where}: {tag}: value {k + 1} {tok!r} is not finite")
        out.append(v)
    return out


def _vertex_id(tok: str, where: str, tag: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise G2OError(f"{where}: {tag}: vertex id {tok!r} is not an integer") from None


def _unit_quat(q: list[float], where: str, normalized: list[str]) -> list[float]:
    n = math.sqrt(sum(v * v for v in q))
    if abs(n - 1) > _REFUSE_TOL:
        raise G2OError(f"{where}: quaternion [qx, qy, qz, qw] = {q} has length {n:.6g}; refused (not a rotation)")
    if abs(n - 1) > _UNIT_TOL:
        normalized.append(where)
    return [v / n for v in q]


def _upper_to_full(vals: list[float], n: int) -> np.ndarray:
    M = np.zeros((n, n))
    M[np.triu_indices(n)] = vals
    return M + np.triu(M, 1).T


def read_g2o(path, *, dtype: torch.dtype = torch.float64) -> PoseGraph:
    """Read a 2D or 3D g2o pose graph.

    Vertices are sorted by id; a file without vertex lines gets its initial poses by composing
    the edges along an odometry spanning tree from the first (or a ``FIX``ed) vertex.  Errors
    name the line and the token: wrong counts, non-numbers, NaN, a mix of 2D and 3D, an edge to
    a vertex the file does not define, a quaternion far from unit length (one within 0.1 is
    normalized, with a warning), a duplicate vertex.  Information matrices that are not
    positive definite are refused with the edge's line.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"g2o file not found: {path}")
    dim = None
    vertices: dict[int, tuple[int, list[float]]] = {}
    edges, fixed, normalized = [], set(), []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            tokens = line.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            tag, where = tokens[0], f"{path}:{lineno}"
            if tag == "FIX":
                if len(tokens) < 2:
                    raise G2OError(f"{where}: FIX needs at least one vertex id")
                fixed.update(_vertex_id(t, where, tag) for t in tokens[1:])
                continue
            if tag not in _SPEC:
                raise G2OError(f"{where}: unsupported element {tag!r}; supported: {sorted(_SPEC) + ['FIX']}")
            tag_dim, count = _SPEC[tag]
            if dim is None:
                dim = tag_dim
            elif dim != tag_dim:
                raise G2OError(f"{where}: {tag} in a {dim}D file: 2D and 3D elements cannot be mixed")
            if len(tokens) - 1 != count:
                raise G2OError(f"{where}: {tag} needs {count} values, got {len(tokens) - 1}")
            if tag.startswith("VERTEX"):
                vid = _vertex_id(tokens[1], where, tag)
                vals = _numbers(tokens[2:], where, tag)
                if vid in vertices:
                    raise G2OError(f"{where}: vertex {vid} is defined twice (first at line {vertices[vid][0]})")
                if dim == 3:
                    vals = vals[:3] + _unit_quat(vals[3:], where, normalized)
                vertices[vid] = (lineno, vals)
            else:
                i, j = _vertex_id(tokens[1], where, tag), _vertex_id(tokens[2], where, tag)
                vals = _numbers(tokens[3:], where, tag)
                if dim == 3:
                    meas = vals[:3] + _unit_quat(vals[3:7], where, normalized)
                    info = _upper_to_full(vals[7:], 6)
                else:
                    meas, info = vals[:3], _upper_to_full(vals[3:], 3)
                edges.append((lineno, i, j, meas, info))
    if normalized:
        log.warning("%s: normalized %d quaternions that were off unit length by more than %g (first at %s)",
                    path, len(normalized), _UNIT_TOL, normalized[0])
    if dim is None or not edges:
        raise G2OError(f"{path}: no pose-graph edges found (expected EDGE_SE2 or EDGE_SE3:QUAT lines)")
    if vertices:
        for lineno, i, j, *_ in edges:
            for v in (i, j):
                if v not in vertices:
                    raise G2OError(f"{path}:{lineno}: edge {i}->{j} refers to vertex {v}, which the file does not define")
        ids = sorted(vertices)
    else:
        ids = sorted({v for _, i, j, *_ in edges for v in (i, j)})
    for v in fixed:
        if v not in set(ids):
            raise G2OError(f"{path}: FIX names vertex {v}, which is not in the graph")
    index = {v: k for k, v in enumerate(ids)}
    E = torch.tensor([[index[i], index[j]] for _, i, j, *_ in edges], dtype=torch.long)
    meas = torch.tensor([m for *_, m, _ in edges], dtype=dtype)
    info = torch.tensor(np.stack([I for *_, I in edges]), dtype=dtype)
    lines = [e[0] for e in edges]
    if dim == 2:
        Z = se2_to_se3(meas)
    else:
        Z = meas
    if vertices:
        V = torch.tensor([vertices[v][1] for v in ids], dtype=dtype)
        X = se2_to_se3(V) if dim == 2 else V
    else:
        X = None
    fixed_mask = torch.tensor([v in fixed for v in ids], dtype=torch.bool)
    if X is None:
        X = _spanning_tree_poses(len(ids), E, Z, dim, fixed_mask, dtype)
    graph = PoseGraph(X, E, Z, info, vertex_ids=torch.tensor(ids), dim=dim, fixed=fixed_mask, name=path.name,
                      edge_lines=lines)
    graph.source = str(path)
    graph.has_initial_estimate = bool(vertices)
    return graph


def _spanning_tree_poses(N: int, edges: torch.Tensor, Z: torch.Tensor, dim: int, fixed: torch.Tensor, dtype) -> torch.Tensor:
    from ._init import spanning_tree_state

    S = spanning_tree_state(N, edges, se3_to_se2(Z) if dim == 2 else Z, dim, int(fixed.nonzero()[0]) if fixed.any() else 0)
    return se2_to_se3(S) if dim == 2 else S


def _fmt(v: float) -> str:
    return repr(float(v))


def write_g2o(graph: PoseGraph, path, poses=None) -> pathlib.Path:
    """Write ``graph`` (with ``poses``, default its own) as a g2o file, atomically.

    The file is written next to ``path`` under a temporary name and renamed over it, so a
    crash never leaves half a file.  Numbers are written with full precision (a round trip
    reproduces the graph exactly).
    """
    path = pathlib.Path(path)
    X = graph.poses if poses is None else poses
    X = X.as_subclass(torch.Tensor) if hasattr(X, "ltype") else torch.as_tensor(X)
    if X.shape != (graph.num_poses, 7):
        raise ValueError(f"poses: expected ({graph.num_poses}, 7), got {tuple(X.shape)}")
    X = X.detach().double().cpu()
    ids = graph.vertex_ids.cpu().tolist()
    lines = []
    if graph.dim == 2:
        S = se3_to_se2(X)
        for v, s in zip(ids, S.tolist()):
            lines.append(" ".join(["VERTEX_SE2", str(v)] + [_fmt(a) for a in s]))
        Zs = se3_to_se2(graph.measurements.detach().double().cpu())
        iu = np.triu_indices(3)
    else:
        for v, x in zip(ids, X.tolist()):
            lines.append(" ".join(["VERTEX_SE3:QUAT", str(v)] + [_fmt(a) for a in x]))
        Zs = graph.measurements.detach().double().cpu()
        iu = np.triu_indices(6)
    info = graph.information.detach().double().cpu().numpy()
    tag = "EDGE_SE2" if graph.dim == 2 else "EDGE_SE3:QUAT"
    for (i, j), z, I in zip(graph.edges.cpu().tolist(), Zs.tolist(), info):
        lines.append(" ".join([tag, str(ids[i]), str(ids[j])] + [_fmt(a) for a in z] + [_fmt(a) for a in I[iu]]))
    fixed = [str(v) for v, f in zip(ids, graph.fixed.cpu().tolist()) if f]
    if fixed:
        lines.append("FIX " + " ".join(fixed))
    return write_text_atomic(path, "\n".join(lines) + "\n")

