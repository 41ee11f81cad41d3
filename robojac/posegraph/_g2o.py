"""g2o files in and out: ``VERTEX_SE2``/``EDGE_SE2``, ``VERTEX_SE3:QUAT``/``EDGE_SE3:QUAT``,
``VERTEX_SIM3:EXPMAP``/``EDGE_SIM3:EXPMAP`` (similarity graphs), ``FIX``, and position priors
(GNSS fixes): ``EDGE_PRIOR_SE2_XY id x y`` and ``EDGE_SE3_XYZ_PRIOR id param x y z``, each followed
by the upper triangle of its information (g2o's ``EdgeSE2XYPrior`` and ``EdgeSE3XYZPrior``, whose
error ``t - p`` does not use the ``PARAMS_SE3OFFSET`` parameter the 3D one names; such lines are
read and skipped, and written as the identity).

Information matrices: 2D files store ``[x, y, theta]`` (robojac's order); 3D files store the
upper triangle of a 6x6 matrix in the order ``[x, y, z, qx, qy, qz]``, which robojac (like GTSAM's
reader) takes as the information of the edge error's ``[rho, phi]`` -- so costs equal
GTSAM's ``graph.error()`` on the same file.

Similarity files are g2o's ``types_seven_dof_expmap`` (ORB-SLAM's loop closing writes its
essential graph with them): a vertex holds ``Log(T_world_camera)`` as ``[omega, upsilon, sigma]``
(g2o's sim3 tangent: rotation, translation, log-scale), then camera numbers that a pose graph does
not use (g2o writes four, ORB-SLAM3 its two cameras'); an edge ``i j`` holds ``Log(Z)`` with
``Z = T_i^-1 T_j`` (g2o reads it as ``measurement^-1``, its error being
``Log(measurement S_iw S_jw^-1)``, the same number), then the upper triangle of the 7x7
information in that order.  robojac's tangent is ``[upsilon, omega, sigma]``: the file's
vectors and matrices are permuted on the way in and out.

TORO's 2D lines (``.graph`` files: intel, FR079, CSAIL, w10000) are read too: ``VERTEX2 id x y
theta`` as ``VERTEX_SE2``, and ``EDGE2 i j dx dy dtheta`` followed by the information in TORO's
order ``I11 I12 I22 I33 I13 I23`` (g2o's own reader and GTSAM's ``NoiseFormatTORO`` take it so).
iSAM's files (city10000, manhattanOlson3500) use the same tag with the upper triangle row by row
instead: ``read_g2o(path, edge2_order="upper")``.  A file read in TORO's order whose matrices are
positive definite only in the other order is refused with that remedy.
"""

from __future__ import annotations

import logging
import math
import pathlib
from dataclasses import dataclass

import numpy as np
import torch

from .._config import check_instance
from .._files import as_path, read_text, write_text_atomic
from .._precision import PRECISIONS
from ._graph import PoseGraph, PoseGraphError
from ..lie import se2_to_se3, se3_to_se2, sim3_exp, sim3_log

__all__ = ["G2OError", "read_g2o", "write_g2o"]

log = logging.getLogger(__name__)

_SIM3 = 7  # the "dimension" code of a similarity file's elements (their tangent size)
_SPEC = {  # tag -> (dimension, number of values after the tag; a Sim3 vertex's is the least, cameras follow)
    "VERTEX_SE2": (2, 4),
    "EDGE_SE2": (2, 11),
    "VERTEX2": (2, 4),  # TORO's (and iSAM's) 2D lines
    "EDGE2": (2, 11),
    "VERTEX_SE3:QUAT": (3, 8),
    "EDGE_SE3:QUAT": (3, 30),
    "VERTEX_SIM3:EXPMAP": (_SIM3, 8),
    "EDGE_SIM3:EXPMAP": (_SIM3, 37),
}
_PRIORS = {  # position priors (GNSS fixes): tag -> (dimension, values after the tag)
    "EDGE_PRIOR_SE2_XY": (2, 6),  # g2o's EdgeSE2XYPrior: vertex, x y, the 2x2 information's upper triangle
    "EDGE_SE3_XYZ_PRIOR": (3, 11),  # g2o's EdgeSE3XYZPrior: vertex, offset parameter, x y z, the 3x3's upper triangle
}
_OFFSET = "PARAMS_SE3OFFSET"  # the offset parameter an EDGE_SE3_XYZ_PRIOR names (g2o's error does not use it)
_KIND = {2: "2D", 3: "3D", _SIM3: "Sim3"}
_EDGE2_ORDERS = ("toro", "upper")
_TORO = [0, 1, 4, 2, 5, 3]  # TORO's I11 I12 I22 I33 I13 I23 in the upper triangle's order I11 I12 I13 I22 I23 I33
_G2O_SIM3 = [3, 4, 5, 0, 1, 2, 6]  # g2o's [omega, upsilon, sigma] <-> robojac's [upsilon, omega, sigma] (an involution)
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


@dataclass
class _Parsed:
    """What a g2o file holds, in file order: vertices and edges as arrays (ids are the file's)."""

    dim: int | None
    vertex_ids: np.ndarray  # (V,) int64
    vertex_lines: np.ndarray  # (V,)
    vertices: np.ndarray  # (V, 3) [x, y, theta] or (V, 7) [t, q] (unit q); Sim3: (V, 7) robojac-ordered logs
    edge_ids: np.ndarray  # (E, 2) int64
    edge_lines: np.ndarray  # (E,)
    measurements: np.ndarray  # (E, 3) or (E, 7); Sim3: (E, 7) robojac-ordered logs
    information: np.ndarray  # (E, 3, 3), (E, 6, 6) or (E, 7, 7)
    fixed: set[int]
    normalized: list[str]  # where quaternions were normalized (file order)
    priors: list = None  # (line, vertex id, position, information) of each position prior
    toro: np.ndarray | None = None  # (E,) bool: the edges read from TORO-ordered EDGE2 lines


_INFORMATION = ("refuse", "nearest_pd")
_PD_FLOOR = 1e-6  # "nearest_pd": eigenvalues clipped to this fraction of the matrix's largest |eigenvalue|


def read_g2o(path, *, dtype: torch.dtype = torch.float64, information: str = "refuse",
             edge2_order: str = "toro") -> PoseGraph:
    """Read a 2D or 3D g2o pose graph (a name ending in ``.gz`` is decompressed as it is read).

    Vertices are sorted by id; a file without vertex lines gets its initial poses by composing
    the edges along an odometry spanning tree from the first (or a ``FIX``ed) vertex.  Errors
    name the line and the token: wrong counts, non-numbers, NaN, a mix of 2D and 3D, an edge to
    a vertex the file does not define, a quaternion far from unit length (one within 0.1 is
    normalized, with a warning), a duplicate vertex.

    ``information`` says what to do with information matrices that are not positive definite
    (some benchmark graphs have them: a third of ``cubicle.g2o``'s edges):

    * ``"refuse"`` (the default): raise :class:`G2OError` saying how many edges are affected
      and the line of the first.
    * ``"nearest_pd"``: replace each such matrix by the nearest positive definite one in the
      Frobenius norm with its eigenvalues clipped below at ``1e-6`` times its largest absolute
      eigenvalue (symmetrize, ``eigh``, clip, rebuild), and log a warning that counts them.
      Positive definite matrices are kept as they are.

    ``edge2_order``: the order of the information on TORO's ``EDGE2`` lines: ``"toro"`` (the
    default: ``I11 I12 I22 I33 I13 I23``, TORO's ``.graph`` files) or ``"upper"`` (the upper
    triangle row by row, as iSAM's files write it; see the module's note).

    Well-formed files are parsed a whole column at a time (6-10x faster than line by line, about
    GTSAM's ``readG2o``); at the first thing that is not plainly well formed the file is read
    again line by line, which names what is wrong and where.
    """
    path = as_path(path, "g2o file")
    if information not in _INFORMATION:
        raise ValueError(f"information: expected one of {_INFORMATION}, got {information!r}")
    if edge2_order not in _EDGE2_ORDERS:
        raise ValueError(f"edge2_order: expected one of {_EDGE2_ORDERS}, got {edge2_order!r}")
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype: expected torch.float32 or torch.float64 (the solver's precisions), got {dtype!r}")
    lines = read_text(path, "g2o file").split("\n")
    toro = edge2_order == "toro"
    parsed = _parse_columns(lines, toro)
    if parsed is None:
        parsed = _parse_lines(path, lines, toro)
    else:
        parsed.normalized = [f"{path}:{n}" for n in parsed.normalized]
    _check_edge2_order(path, parsed)
    parsed.information = _checked_information(path, parsed, information)
    return _graph(path, parsed, dtype)


def _positive_definite(M: np.ndarray) -> np.ndarray:
    """``(...,)`` bool: which of the symmetric parts of ``M (..., n, n)`` are positive definite."""
    _, status = torch.linalg.cholesky_ex(torch.from_numpy(0.5 * (M + np.swapaxes(M, -1, -2))))
    return status.numpy() == 0


def _check_edge2_order(path: pathlib.Path, f: _Parsed) -> None:
    """Refuse TORO-ordered ``EDGE2`` information that is positive definite only in the upper
    triangle's order (an iSAM file read as TORO's), naming the remedy."""
    if f.toro is None or not f.toro.any():
        return
    M = f.information[f.toro]
    if _positive_definite(M).all():
        return
    raw = M[:, [0, 0, 1, 2, 0, 1], [0, 1, 1, 2, 2, 2]]  # the numbers as the file holds them
    upper = np.zeros_like(M)
    iu = np.triu_indices(3)
    upper[:, iu[0], iu[1]] = raw
    upper[:, iu[1], iu[0]] = raw
    if _positive_definite(upper).all():
        at = int(f.edge_lines[np.flatnonzero(f.toro)[np.argmin(_positive_definite(M))]])
        raise G2OError(f"{path}:{at}: EDGE2 information read in TORO's order (I11 I12 I22 I33 I13 I23) is not positive "
                       "definite, and in the upper triangle's order (I11 I12 I13 I22 I23 I33, iSAM's files) every "
                       "EDGE2's is: read_g2o(path, edge2_order='upper') (robojac pgo --edge2-order upper)")


def _checked_information(path: pathlib.Path, f: _Parsed, rule: str) -> np.ndarray:
    """The information matrices, symmetrized; those not positive definite refused or repaired."""
    info = 0.5 * (f.information + np.swapaxes(f.information, -1, -2))
    bad = np.flatnonzero(~_positive_definite(info))
    if len(bad) == 0:
        return info
    first = f"edge {f.edge_ids[bad[0]][0]}->{f.edge_ids[bad[0]][1]} at {path}:{f.edge_lines[bad[0]]}"
    if rule == "refuse":
        raise G2OError(
            f"{path}: {len(bad)} of {len(info)} information matrices are not positive definite (the first: {first}); "
            "read_g2o(path, information='nearest_pd') replaces each by the nearest positive definite matrix "
            "(robojac pgo --information nearest_pd)"
        )
    w, V = np.linalg.eigh(info[bad])
    floor = _PD_FLOOR * np.abs(w).max(-1, keepdims=True)
    floor[floor == 0] = _PD_FLOOR
    info[bad] = (V * np.maximum(w, floor)[..., None, :]) @ np.swapaxes(V, -1, -2)
    info[bad] = 0.5 * (info[bad] + np.swapaxes(info[bad], -1, -2))
    log.warning("%s: replaced %d of %d information matrices that were not positive definite by the nearest positive "
                "definite ones (eigenvalues clipped to %g of the largest; the first: %s)",
                path, len(bad), len(info), _PD_FLOOR, first)
    return info


def _parse_columns(lines: list[str], toro: bool = True) -> _Parsed | None:
    """The fast reading of a well-formed file; ``None`` at anything unusual (the line-by-line
    reader then says what).  ``normalized`` holds line numbers here."""
    groups: dict[str, tuple[list[int], list[list[str]]]] = {}
    fixed: set[int] = set()
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if tokens[0] == "FIX":
            if len(tokens) < 2:
                return None
            try:
                fixed.update([int(t) for t in tokens[1:]])
            except ValueError:
                return None
            continue
        group = groups.get(tokens[0])
        if group is None:
            if tokens[0] not in _SPEC or _SPEC[tokens[0]][0] == _SIM3:  # similarity files: line by line
                return None
            group = groups[tokens[0]] = ([], [])
        group[0].append(lineno)
        group[1].append(tokens)
    dims = {_SPEC[tag][0] for tag in groups}
    edge_tags, vertex_tags = (sum(t.startswith(kind) for t in groups) for kind in ("EDGE", "VERTEX"))
    if len(dims) != 1 or edge_tags != 1 or vertex_tags > 1:
        return None  # one vertex tag and one edge tag (VERTEX_SE2 with VERTEX2: line by line)
    dim = dims.pop()
    cols = {}
    for tag, (linenos, rows) in groups.items():
        count = _SPEC[tag][1]
        if any(len(r) != count + 1 for r in rows):
            return None
        n_ids = 1 if tag.startswith("VERTEX") else 2
        try:
            ids = np.array([int(v) for r in rows for v in r[1 : 1 + n_ids]], dtype=np.int64).reshape(len(rows), n_ids)
            vals = np.array([float(v) for r in rows for v in r[1 + n_ids :]]).reshape(len(rows), count - n_ids)
        except ValueError:
            return None
        if not np.isfinite(vals).all():
            return None
        if tag == "EDGE2" and toro:
            vals[:, 3:] = vals[:, 3:][:, _TORO]
        cols["vertex" if n_ids == 1 else "edge"] = (ids, np.array(linenos), vals)
    if "edge" not in cols:
        return None
    n = 3 if dim == 2 else 6
    flagged = []
    vid, vlines, V = cols.get("vertex", (np.zeros((0, 1), np.int64), np.zeros(0, np.int64), np.zeros((0, 3 if dim == 2 else 7))))
    eid, elines, Ev = cols["edge"]
    if dim == 3:
        for vals, q_at, at in ((V, slice(3, 7), vlines), (Ev, slice(3, 7), elines)):
            norm = np.linalg.norm(vals[:, q_at], axis=1)
            if (np.abs(norm - 1) > _REFUSE_TOL).any():
                return None
            flagged.append(at[np.abs(norm - 1) > _UNIT_TOL])
            vals[:, q_at] /= norm[:, None]
    if len(np.unique(vid[:, 0])) != len(vid):
        return None
    iu = np.triu_indices(n)
    info = np.zeros((len(Ev), n, n))
    info[:, iu[0], iu[1]] = Ev[:, 7 if dim == 3 else 3 :]
    info[:, iu[1], iu[0]] = Ev[:, 7 if dim == 3 else 3 :]
    normalized = sorted(np.concatenate(flagged).tolist()) if flagged else []
    toro_edges = np.full(len(Ev), toro and "EDGE2" in groups)
    return _Parsed(dim, vid[:, 0], vlines, V, eid, elines, Ev[:, : 7 if dim == 3 else 3], info, fixed, normalized,
                   toro=toro_edges)


def _parse_lines(path: pathlib.Path, lines: list[str], toro: bool = True) -> _Parsed:
    """The line-by-line reading: every check in file order, errors naming the line and token."""
    dim = None
    vertices: dict[int, tuple[int, list[float]]] = {}
    edges, fixed, normalized, priors = [], set(), [], []
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        tag, where = tokens[0], f"{path}:{lineno}"
        if tag == "FIX":
            if len(tokens) < 2:
                raise G2OError(f"{where}: FIX needs at least one vertex id")
            fixed.update(_vertex_id(t, where, tag) for t in tokens[1:])
            continue
        if tag == _OFFSET:
            if len(tokens) != 9:
                raise G2OError(f"{where}: {tag} needs 8 values (an id, x y z qx qy qz qw), got {len(tokens) - 1}")
            _vertex_id(tokens[1], where, tag)
            _numbers(tokens[2:], where, tag)
            continue
        if tag not in _SPEC and tag not in _PRIORS:
            raise G2OError(f"{where}: unsupported element {tag!r}; supported: "
                           f"{sorted(_SPEC) + sorted(_PRIORS) + ['FIX', _OFFSET]}")
        tag_dim, count = _SPEC[tag] if tag in _SPEC else _PRIORS[tag]
        if dim is None:
            dim = tag_dim
        elif dim != tag_dim:
            raise G2OError(f"{where}: {tag} in a {_KIND[dim]} file: 2D, 3D and Sim3 elements cannot be mixed")
        cameras = tag == "VERTEX_SIM3:EXPMAP"  # g2o's Sim3 vertex: camera numbers follow the log
        if len(tokens) - 1 != count and not (cameras and len(tokens) - 1 > count):
            raise G2OError(f"{where}: {tag} needs {count} values{' or more' if cameras else ''}, got {len(tokens) - 1}")
        if tag in _PRIORS:
            vid = _vertex_id(tokens[1], where, tag)
            if dim == 3:
                _vertex_id(tokens[2], where, tag)  # the offset parameter's id
            vals = _numbers(tokens[2 + (dim == 3):], where, tag)
            priors.append((lineno, vid, vals[:dim], _upper_to_full(vals[dim:], dim)))
        elif tag.startswith("VERTEX"):
            vid = _vertex_id(tokens[1], where, tag)
            vals = _numbers(tokens[2:], where, tag)
            if vid in vertices:
                raise G2OError(f"{where}: vertex {vid} is defined twice (first at line {vertices[vid][0]})")
            if dim == 3:
                vals = vals[:3] + _unit_quat(vals[3:], where, normalized)
            elif dim == _SIM3:
                vals = [vals[k] for k in _G2O_SIM3]  # its log, in robojac's order (the cameras dropped)
            vertices[vid] = (lineno, vals)
        else:
            i, j = _vertex_id(tokens[1], where, tag), _vertex_id(tokens[2], where, tag)
            vals = _numbers(tokens[3:], where, tag)
            if dim == 3:
                meas = vals[:3] + _unit_quat(vals[3:7], where, normalized)
                info = _upper_to_full(vals[7:], 6)
            elif dim == _SIM3:
                meas = [vals[k] for k in _G2O_SIM3]
                info = _upper_to_full(vals[7:], 7)[np.ix_(_G2O_SIM3, _G2O_SIM3)]
            else:
                upper = [vals[3:][k] for k in _TORO] if tag == "EDGE2" and toro else vals[3:]
                meas, info = vals[:3], _upper_to_full(upper, 3)
            edges.append((lineno, i, j, meas, info, tag == "EDGE2" and toro))
    n, k = {None: (3, 3), 2: (3, 3), 3: (6, 7), _SIM3: (7, 7)}[dim]
    return _Parsed(
        dim,
        np.array(list(vertices), dtype=np.int64),
        np.array([v[0] for v in vertices.values()], dtype=np.int64),
        np.array([v[1] for v in vertices.values()], dtype=np.float64).reshape(-1, k),
        np.array([(i, j) for _, i, j, *_ in edges], dtype=np.int64).reshape(-1, 2),
        np.array([e[0] for e in edges], dtype=np.int64),
        np.array([e[3] for e in edges], dtype=np.float64).reshape(-1, k),
        np.array([e[4] for e in edges], dtype=np.float64).reshape(-1, n, n),
        fixed,
        normalized,
        priors,
        np.array([e[5] for e in edges], dtype=bool),
    )


def _graph(path: pathlib.Path, f: _Parsed, dtype) -> PoseGraph:
    """The :class:`PoseGraph` of a parsed file, after the checks across lines."""
    if f.normalized:
        log.warning("%s: normalized %d quaternions that were off unit length by more than %g (first at %s)",
                    path, len(f.normalized), _UNIT_TOL, f.normalized[0])
    if f.dim is None:
        raise G2OError(f"{path}: no pose-graph vertices or edges found (expected VERTEX_SE2/EDGE_SE2, "
                       "VERTEX_SE3:QUAT/EDGE_SE3:QUAT or VERTEX_SIM3:EXPMAP/EDGE_SIM3:EXPMAP lines)")
    has_vertices = len(f.vertex_ids) > 0
    ids = np.sort(f.vertex_ids) if has_vertices else np.unique(f.edge_ids)
    pos = np.searchsorted(ids, f.edge_ids).clip(max=len(ids) - 1)
    missing = ids[pos] != f.edge_ids
    if missing.any():
        k = int(np.nonzero(missing.any(1))[0][0])
        (i, j), v = f.edge_ids[k], f.edge_ids[k][missing[k]][0]
        raise G2OError(f"{path}:{f.edge_lines[k]}: edge {i}->{j} refers to vertex {v}, which the file does not define")
    loops = f.edge_ids[:, 0] == f.edge_ids[:, 1]
    if loops.any():  # as PoseGraph refuses them, said with the file's line
        k = int(np.nonzero(loops)[0][0])
        raise G2OError(f"{path}:{f.edge_lines[k]}: edge {f.edge_ids[k][0]}->{f.edge_ids[k][1]} goes from a vertex to "
                       f"itself, which constrains nothing; {int(loops.sum())} of {len(loops)} edges are such loops")
    known = set(ids.tolist())
    for v in f.fixed:
        if v not in known:
            raise G2OError(f"{path}: FIX names vertex {v}, which is not in the graph")
    E = torch.from_numpy(pos)
    similarity = f.dim == _SIM3
    as_poses = {2: se2_to_se3, 3: lambda x: x, _SIM3: lambda x: sim3_exp(x.double()).to(dtype)}[f.dim]
    Z = as_poses(torch.from_numpy(f.measurements).to(dtype))
    fixed_mask = torch.from_numpy(np.isin(ids, np.array(sorted(f.fixed), dtype=np.int64)))
    dim = 3 if similarity else f.dim
    if has_vertices:
        X = as_poses(torch.from_numpy(f.vertices[np.argsort(f.vertex_ids)]).to(dtype))
    else:
        X = _spanning_tree_poses(len(ids), E, Z, dim, fixed_mask, dtype)
    try:
        graph = PoseGraph(X, E, Z, torch.from_numpy(f.information).to(dtype), vertex_ids=torch.from_numpy(ids),
                          dim=dim, fixed=fixed_mask, name=path.name, edge_lines=f.edge_lines.tolist(),
                          similarity=similarity, **_prior_arguments(path, f, ids, dtype))
    except PoseGraphError as e:  # a property of the whole graph (its priors on one line, say): said with its file
        raise G2OError(f"{path}: {e}") from None
    graph.source = str(path)
    graph.has_initial_estimate = has_vertices
    return graph


def _prior_arguments(path: pathlib.Path, f: _Parsed, ids: np.ndarray, dtype) -> dict:
    """``PoseGraph``'s prior arguments from the file's prior lines (none: no arguments), each
    checked with its line: the vertex it names, a positive definite information."""
    if not f.priors:
        return {}
    index = []
    for lineno, vid, _, info in f.priors:
        k = int(np.searchsorted(ids, vid))
        if k >= len(ids) or ids[k] != vid:
            raise G2OError(f"{path}:{lineno}: the prior refers to vertex {vid}, which the file does not define")
        if not _positive_definite(info):
            raise G2OError(f"{path}:{lineno}: the prior's information matrix is not positive definite")
        index.append(k)
    return dict(prior_index=torch.tensor(index, dtype=torch.long),
                prior_positions=torch.tensor(np.array([p[2] for p in f.priors]), dtype=dtype),
                prior_information=torch.tensor(np.array([p[3] for p in f.priors]), dtype=dtype))


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
    reproduces the graph exactly; a similarity graph's, whose numbers are logarithms, to rounding).
    A similarity graph is written as g2o's ``VERTEX_SIM3:EXPMAP``/``EDGE_SIM3:EXPMAP`` (see the
    module's docstring), each vertex with g2o's default camera numbers ``1 1 0 0``.
    """
    check_instance("graph", graph, PoseGraph, "a PoseGraph (the call is write_g2o(graph, path))")
    path = as_path(path, "g2o file to write")
    X = graph.poses if poses is None else poses
    X = X.as_subclass(torch.Tensor) if hasattr(X, "ltype") else torch.as_tensor(X, device="cpu")
    width = 8 if graph.similarity else 7
    if X.shape != (graph.num_poses, width):
        raise ValueError(f"poses: expected ({graph.num_poses}, {width}), got {tuple(X.shape)}")
    X = X.detach().double().cpu()
    bad = (~torch.isfinite(X).all(-1)).nonzero()
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"poses: vertex {int(graph.vertex_ids[k])} has NaN or infinite values ({len(bad)} poses "
                         f"in all); nothing was written to {path}")
    ids = graph.vertex_ids.cpu().tolist()
    lines = []
    if graph.similarity:  # g2o's [omega, upsilon, sigma]; the vertex's camera numbers: g2o's defaults
        for v, x in zip(ids, sim3_log(X)[:, _G2O_SIM3].tolist()):
            lines.append(" ".join(["VERTEX_SIM3:EXPMAP", str(v)] + [_fmt(a) for a in x] + ["1", "1", "0", "0"]))
        Zs = sim3_log(graph.measurements.detach().double().cpu())[:, _G2O_SIM3]
        iu = np.triu_indices(7)
    elif graph.dim == 2:
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
    if graph.similarity:
        info = info[:, _G2O_SIM3][:, :, _G2O_SIM3]
    tag = "EDGE_SIM3:EXPMAP" if graph.similarity else "EDGE_SE2" if graph.dim == 2 else "EDGE_SE3:QUAT"
    for (i, j), z, I in zip(graph.edges.cpu().tolist(), Zs.tolist(), info):
        lines.append(" ".join([tag, str(ids[i]), str(ids[j])] + [_fmt(a) for a in z] + [_fmt(a) for a in I[iu]]))
    if graph.num_priors and bool((graph.prior_lever_arms != 0).any()):  # g2o's prior edges measure the origin
        raise ValueError(f"graph: its position priors have lever arms, which g2o's EdgeSE2XYPrior and "
                         f"EdgeSE3XYZPrior do not apply (the latter ignores its offset parameter); nothing was "
                         f"written to {path}")
    if graph.num_priors:  # g2o's EdgeSE2XYPrior / EdgeSE3XYZPrior (the latter naming an identity offset)
        k = graph.prior_positions.shape[1]
        tag, offset = ("EDGE_PRIOR_SE2_XY", []) if k == 2 else ("EDGE_SE3_XYZ_PRIOR", ["0"])
        if offset:
            lines.insert(0, f"{_OFFSET} 0 0 0 0 0 0 0 1")
        pu = np.triu_indices(k)
        for v, p, I in zip(graph.prior_index.cpu().tolist(), graph.prior_positions.detach().double().cpu().tolist(),
                           graph.prior_information.detach().double().cpu().numpy()):
            lines.append(" ".join([tag, str(ids[v])] + offset + [_fmt(a) for a in p] + [_fmt(a) for a in I[pu]]))
    fixed = [str(v) for v, f in zip(ids, graph.fixed.cpu().tolist()) if f]
    if fixed:
        lines.append("FIX " + " ".join(fixed))
    return write_text_atomic(path, "\n".join(lines) + "\n")

