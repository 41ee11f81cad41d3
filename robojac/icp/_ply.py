"""PLY point clouds read and checked against their header (ASCII and binary, ``.ply.gz`` too),
and written (binary, atomically).

Open3D's reader only warns on stderr when a file is shorter than its header says, and then hands
back the header's point count with zero-filled rows.  This reader refuses such a file and says
where it ends: every element the header declares must be there, in full.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from .._files import as_path, atomic_path, read_bytes

__all__ = ["PLYError", "read_ply", "write_ply"]

_SCALARS = {  # PLY type -> numpy type (without byte order)
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


class PLYError(ValueError):
    """A PLY file that cannot be read as its header describes it; the message names the file."""


def _header(path, raw: bytes):
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PLYError(f"{path}: not a PLY file (expected 'ply' first and an 'end_header' line)")
    stop = raw.find(b"\n", end)
    if stop < 0:
        raise PLYError(f"{path}: the file ends right after 'end_header' (no data)")
    lines = raw[:stop].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []  # elements: [name, count, [(prop, type) or (prop, (count_type, item_type))], line]
    for lineno, line in enumerate(lines, start=1):
        tok = line.split()
        if not tok or tok[0] in ("ply", "comment", "obj_info", "end_header"):
            continue
        where = f"{path}:{lineno}"
        if tok[0] == "format":
            if len(tok) != 3 or tok[1] not in _FORMATS:
                raise PLYError(f"{where}: unknown format {' '.join(tok[1:])!r}; expected one of {sorted(_FORMATS)}")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise PLYError(f"{where}: expected 'element NAME COUNT', got {line.strip()!r}")
            elements.append([tok[1], int(tok[2]), [], lineno])
        elif tok[0] == "property":
            if not elements:
                raise PLYError(f"{where}: a property before any element")
            if len(tok) == 5 and tok[1] == "list" and tok[2] in _SCALARS and tok[3] in _SCALARS:
                elements[-1][2].append((tok[4], (_SCALARS[tok[2]], _SCALARS[tok[3]])))
            elif len(tok) == 3 and tok[1] in _SCALARS:
                elements[-1][2].append((tok[2], _SCALARS[tok[1]]))
            else:
                raise PLYError(f"{where}: cannot read property {line.strip()!r}")
        else:
            raise PLYError(f"{where}: unknown header line {line.strip()!r}")
    if fmt is None:
        raise PLYError(f"{path}: the header has no 'format' line")
    return fmt, elements, stop + 1, len(lines)


def _vertex_columns(path, elements):
    for name, count, props, lineno in elements:
        if name == "vertex":
            names = [p for p, _ in props]
            missing = [c for c in "xyz" if c not in names]
            if missing:
                raise PLYError(f"{path}:{lineno}: the vertex element has no {', '.join(missing)} property")
            if any(not isinstance(t, str) for _, t in props):
                raise PLYError(f"{path}:{lineno}: the vertex element has a list property; expected scalars only")
            return [names.index(c) for c in "xyz"]
    raise PLYError(f"{path}: no 'vertex' element in the header")


def _ascii(path, body: bytes, elements, header_lines: int) -> np.ndarray:
    lines = body.decode("ascii", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    expected = sum(count for _, count, _, _ in elements)
    at, points = 0, None
    for name, count, props, _ in elements:
        if at + count > len(lines):
            raise PLYError(
                f"{path}: truncated: the header declares {expected} data lines ({count} '{name}' from line "
                f"{header_lines + at + 1}), the file has {len(lines)}"
            )
        if name == "vertex":
            cols = _vertex_columns(path, elements)
            block = lines[at : at + count]
            try:
                values = np.array(" ".join(block).split(), dtype=np.float64)
            except ValueError:
                values = None
            if values is None or values.size != count * len(props):
                for k, line in enumerate(block):
                    tok = line.split()
                    bad = len(tok) != len(props)
                    if not bad:
                        try:
                            [float(v) for v in tok]
                        except ValueError:
                            bad = True
                    if bad:
                        where = f"{path}:{header_lines + at + k + 1}"
                        got = line.strip()[:80]
                        raise PLYError(f"{where}: expected {len(props)} numbers for a vertex, got {got!r}")
            points = values.reshape(count, len(props))[:, cols]
        at += count
    if len(lines) > at:
        raise PLYError(f"{path}:{header_lines + at + 1}: {len(lines) - at} more data lines than the header declares "
                       f"({expected})")
    return points


def _binary(path, body: bytes, elements, order: str) -> np.ndarray:
    at, points = 0, None
    for name, count, props, lineno in elements:
        if all(isinstance(t, str) for _, t in props):
            dtype = np.dtype([(f"p{k}", order + t) for k, (_, t) in enumerate(props)])
            size = dtype.itemsize * count
            if at + size > len(body):
                raise PLYError(
                    f"{path}: truncated: element '{name}' (header line {lineno}) needs {size} bytes from byte {at} "
                    f"of the data, the file has {len(body) - at}"
                )
            if name == "vertex":
                rec = np.frombuffer(body, dtype=dtype, count=count, offset=at)
                cols = _vertex_columns(path, elements)
                points = np.stack([rec[f"p{c}"].astype(np.float64) for c in cols], axis=1)
            at += size
            continue
        for _ in range(count):  # list properties (faces): walk record by record
            for _, t in props:
                if isinstance(t, str):
                    at += np.dtype(t).itemsize
                    continue
                ctype, itype = np.dtype(order + t[0]), np.dtype(t[1])
                if at + ctype.itemsize > len(body):
                    raise PLYError(f"{path}: truncated inside element '{name}' (header line {lineno})")
                n = int(np.frombuffer(body, dtype=ctype, count=1, offset=at)[0])
                at += ctype.itemsize + n * itype.itemsize
        if at > len(body):
            raise PLYError(f"{path}: truncated inside element '{name}' (header line {lineno})")
    return points


def read_ply(path) -> np.ndarray:
    """The ``(N, 3)`` float64 vertex positions of a PLY file (``.ply.gz`` is decompressed).

    Raises :class:`PLYError` naming the file (and the line, for ASCII) when the data do not
    match the header: too few or too many records, a vertex line that is not numbers, a missing
    ``x``/``y``/``z`` property.  Other elements (faces, range grids) are checked and skipped.
    """
    path = as_path(path, "PLY file")
    raw = read_bytes(path, "PLY file")
    fmt, elements, start, header_lines = _header(path, raw)
    _vertex_columns(path, elements)
    body = raw[start:]
    if fmt == "ascii":
        return _ascii(path, body, elements, header_lines)
    return _binary(path, body, elements, _FORMATS[fmt])


def write_ply(points, path, colors=None) -> pathlib.Path:
    """Write ``points (N, 3)`` (and ``colors (N, 3)``, 0-1 floats or 0-255 integers) as a binary
    little-endian PLY of ``x, y, z`` (and uchar ``red, green, blue``), atomically: an
    interrupted write leaves the old file (or none).  Coordinates keep their precision: float64
    points (and Python or integer numbers) are written as doubles, as Open3D writes them, lower
    precisions as float32.  What is written comes first, as in ``write_g2o(graph, path)`` and
    ``write_kitti(trajectory, path)``."""
    if isinstance(points, (str, os.PathLike)):
        raise TypeError("points: expected (N, 3) coordinates, got a path; the call is write_ply(points, path), "
                        "what is written first, as in write_g2o(graph, path)")
    single = hasattr(points, "dtype") and str(points.dtype).split(".")[-1] in ("float32", "float16", "bfloat16")
    P = np.asarray(points.detach().cpu().double() if hasattr(points, "detach") else points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3 or not np.isfinite(P).all():
        raise ValueError(f"points: expected finite (N, 3) coordinates, got shape {P.shape}")
    real = "<f4" if single else "<f8"
    fields = [("x", real), ("y", real), ("z", real)]
    if colors is not None:
        C = np.asarray(colors.detach().cpu() if hasattr(colors, "detach") else colors)
        if C.shape != P.shape:
            raise ValueError(f"colors: expected one RGB per point {P.shape}, got {C.shape}")
        C = np.clip(np.round(C * 255.0), 0, 255) if np.issubdtype(C.dtype, np.floating) else np.clip(C, 0, 255)
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.empty(P.shape[0], dtype=fields)
    for k, name in enumerate("xyz"):
        rows[name] = P[:, k]
    if colors is not None:
        for k, name in enumerate(("red", "green", "blue")):
            rows[name] = C[:, k]
    kinds = {"<f4": "float", "<f8": "double", "u1": "uchar"}
    props = "".join(f"property {kinds[t]} {n}\n" for n, t in fields)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {P.shape[0]}\n{props}end_header\n"
    path = as_path(path, "PLY file to write")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + rows.tobytes())
    return path
