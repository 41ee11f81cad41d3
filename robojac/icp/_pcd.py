"""PCD (Point Cloud Library) and XYZ point clouds, read and checked against what they declare.

Open3D's PCD reader hands back a file shorter than its ``POINTS`` line with the missing rows
filled from uninitialized memory (values like ``2.5e-296``), and its XYZ reader skips lines it
cannot parse.  These readers refuse such files, naming the file (and the line, for text).

* PCD: the header (``FIELDS``, ``SIZE``, ``TYPE``, ``COUNT``, ``WIDTH``, ``HEIGHT``,
  ``POINTS``, ``DATA``) and ``ascii``, ``binary`` or ``binary_compressed`` data (LZF, each
  field's values for all points in turn); ``x``, ``y``, ``z`` are read as float64.  NaN points
  (an organized cloud's pixels without a return) come back as NaN, as the file has them.
* XYZ (``.xyz``, ``.xyzn``, ``.xyzrgb``, ``.txt``): a line of numbers per point, the same count
  on every line, the first three ``x y z``; ``#`` comments and blank lines are skipped.
"""

from __future__ import annotations


import numpy as np

from .._files import as_path, read_bytes, read_text

__all__ = ["PCDError", "read_pcd", "read_xyz"]

_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
          ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}
_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")


class PCDError(ValueError):
    """A PCD file that cannot be read as its header describes it; the message names the file."""


def _header(path, raw: bytes) -> tuple[dict, int, int]:
    """``(entries, data offset, header lines)``: each key's tokens and line number."""
    entries, at, lineno = {}, 0, 0
    while True:
        stop = raw.find(b"\n", at)
        if stop < 0:
            raise PCDError(f"{path}: the header ends without a DATA line (not a PCD file?)")
        lineno += 1
        line = raw[at:stop].decode("ascii", errors="replace").strip()
        at = stop + 1
        if not line or line.startswith("#"):
            continue
        key, *tok = line.split()
        if key not in _KEYS:
            raise PCDError(f"{path}:{lineno}: unknown header line {line[:60]!r}; expected one of {', '.join(_KEYS)}")
        entries[key] = (tok, lineno)
        if key == "DATA":
            return entries, at, lineno


def _layout(path, entries: dict) -> tuple[list[str], list[np.dtype], list[int], int]:
    """Field names, numpy types and counts, and the point count."""
    for key in ("FIELDS", "SIZE", "TYPE", "DATA"):
        if key not in entries:
            raise PCDError(f"{path}: the header has no {key} line")
    names, line = entries["FIELDS"]
    n = len(names)

    def ints(key, default=None):
        tok, where = entries.get(key, (None, None))
        if tok is None:
            return default
        try:
            values = [int(t) for t in tok]
        except ValueError:
            raise PCDError(f"{path}:{where}: {key} expects integers, got {' '.join(tok)!r}") from None
        if any(v < 0 for v in values):
            raise PCDError(f"{path}:{where}: {key} expects non-negative integers, got {' '.join(tok)!r}")
        return values

    sizes, counts = ints("SIZE"), ints("COUNT", [1] * n)
    if any(c < 1 for c in counts):
        raise PCDError(f"{path}:{entries['COUNT'][1]}: COUNT expects values of 1 or more, got {counts}")
    kinds, kind_line = entries["TYPE"]
    for key, values in (("SIZE", sizes), ("TYPE", kinds), ("COUNT", counts)):
        if len(values) != n:
            raise PCDError(f"{path}:{entries[key][1]}: {key} has {len(values)} entries for {n} FIELDS")
    types = []
    for name, kind, size in zip(names, kinds, sizes):
        if (kind, size) not in _TYPES:
            raise PCDError(f"{path}:{kind_line}: field {name!r} has TYPE {kind} of SIZE {size}; expected F (4, 8), "
                           "U or I (1, 2, 4, 8)")
        types.append(np.dtype("<" + _TYPES[kind, size]))
    missing = [c for c in "xyz" if c not in names]
    if missing:
        raise PCDError(f"{path}:{line}: FIELDS has no {', '.join(missing)}")
    def one(key):
        values = ints(key, [None])
        if len(values) != 1:
            raise PCDError(f"{path}:{entries[key][1]}: {key} expects one integer, got {len(values)}")
        return values[0]

    width, height, points = one("WIDTH"), one("HEIGHT"), one("POINTS")
    if points is None:
        if width is None:
            raise PCDError(f"{path}: the header gives neither POINTS nor WIDTH")
        points = width * (1 if height is None else height)
    elif width is not None and height is not None and width * height != points:
        raise PCDError(f"{path}:{entries['POINTS'][1]}: POINTS {points} is not WIDTH x HEIGHT = {width} x {height}")
    return names, types, counts, points


def _columns(names: list[str], counts: list[int]) -> list[int]:
    """Where ``x``, ``y``, ``z`` sit among a point's values (fields of COUNT > 1 take several)."""
    return [sum(counts[: names.index(c)]) for c in "xyz"]


def _lzf_decompress(path, data: bytes, size: int) -> bytes:
    """LZF (liblzf's format, as PCL writes ``binary_compressed``): literal runs and back references."""
    out = bytearray(size)
    i = o = 0
    n_in = len(data)
    try:
        while i < n_in:
            ctrl = data[i]
            i += 1
            if ctrl < 32:  # a literal run of ctrl + 1 bytes
                n = ctrl + 1
                if i + n > n_in or o + n > size:
                    raise IndexError
                out[o : o + n] = data[i : i + n]
                i += n
                o += n
                continue
            n = ctrl >> 5  # a back reference: length - 2 (7: one more byte of length), then the offset
            if n == 7:
                n += data[i]
                i += 1
            ref = o - ((ctrl & 0x1F) << 8) - data[i] - 1
            i += 1
            n += 2
            if ref < 0 or o + n > size:
                raise IndexError
            if ref + n <= o:
                out[o : o + n] = out[ref : ref + n]
            else:  # the reference overlaps what it writes: its last o - ref bytes, repeated
                period = bytes(out[ref:o])
                out[o : o + n] = (period * (n // len(period) + 1))[:n]
            o += n
    except IndexError:
        raise PCDError(f"{path}: the compressed data are corrupt (at byte {i} of {n_in})") from None
    if o != size:
        raise PCDError(f"{path}: the compressed data unpack to {o} bytes, the header promises {size}")
    return bytes(out)


def read_pcd(path) -> np.ndarray:
    """The ``(N, 3)`` float64 ``x, y, z`` of a PCD file (``ascii``, ``binary`` or
    ``binary_compressed``).  Raises :class:`PCDError` naming the file (and the line, for
    ``ascii``) when the data do not match the header: too few or too many points, a line of the
    wrong length or not numbers, a missing ``x``/``y``/``z`` field, corrupt compressed data."""
    path = as_path(path, "PCD file")
    raw = read_bytes(path, "PCD file")
    entries, start, header_lines = _header(path, raw)
    names, types, counts, N = _layout(path, entries)
    fields = [names.index(c) for c in "xyz"]  # each coordinate is its field's first value
    kind = entries["DATA"][0][0].lower() if entries["DATA"][0] else ""
    body = raw[start:]
    if kind == "ascii":
        lines = body.decode("ascii", errors="replace").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        width = sum(counts)
        if len(lines) != N:
            raise PCDError(f"{path}: POINTS {N}, but {len(lines)} data lines follow the header (from line "
                           f"{header_lines + 1})")
        try:
            values = np.array(" ".join(lines).split(), dtype=np.float64)
        except ValueError:
            values = None
        if values is None or values.size != N * width:
            for k, line in enumerate(lines):
                tok = line.split()
                try:
                    [float(t) for t in tok]
                    ok = len(tok) == width
                except ValueError:
                    ok = False
                if not ok:
                    raise PCDError(f"{path}:{header_lines + k + 1}: expected {width} numbers for a point, got "
                                   f"{line.strip()[:80]!r}")
        return values.reshape(N, width)[:, _columns(names, counts)]
    point_size = sum(t.itemsize * c for t, c in zip(types, counts))
    if kind == "binary":
        if len(body) < N * point_size:
            raise PCDError(f"{path}: truncated: POINTS {N} of {point_size} bytes need {N * point_size} bytes of data, "
                           f"the file has {len(body)}")
        record = np.dtype([(f"f{k}", t, (c,)) for k, (t, c) in enumerate(zip(types, counts))])
        rec = np.frombuffer(body, dtype=record, count=N)
        return np.stack([rec[f"f{k}"][:, 0].astype(np.float64) for k in fields], axis=1)
    if kind == "binary_compressed":
        if len(body) < 8:
            raise PCDError(f"{path}: truncated: binary_compressed data need 8 bytes of sizes, the file has {len(body)}")
        packed, size = (int(v) for v in np.frombuffer(body, dtype="<u4", count=2))
        if size != N * point_size:
            raise PCDError(f"{path}: the compressed data unpack to {size} bytes, POINTS {N} of {point_size} bytes "
                           f"need {N * point_size}")
        if len(body) < 8 + packed:
            raise PCDError(f"{path}: truncated: {packed} bytes of compressed data, the file has {len(body) - 8}")
        data = _lzf_decompress(path, body[8 : 8 + packed], size)
        out, at = [], 0
        for k, (t, c) in enumerate(zip(types, counts)):  # each field's values for all points in turn
            block = np.frombuffer(data, dtype=t, count=N * c, offset=at).reshape(N, c)
            out.append(block)
            at += N * c * t.itemsize
        return np.stack([out[k][:, 0].astype(np.float64) for k in fields], axis=1)
    raise PCDError(f"{path}:{entries['DATA'][1]}: DATA {kind!r}; expected ascii, binary or binary_compressed")


def read_xyz(path) -> np.ndarray:
    """The ``(N, 3)`` float64 points of an XYZ text file: a line of numbers per point (the same
    count on every line, at least 3; the first three are ``x y z``).  A line of another count, or
    one that is not numbers, raises ``ValueError`` naming the file and line."""
    path = as_path(path, "XYZ file")
    rows, width, first = [], None, None
    for lineno, line in enumerate(read_text(path, "XYZ point file").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        tok = text.replace(",", " ").split()
        try:
            values = [float(t) for t in tok]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected numbers (x y z ...), got {text[:80]!r}") from None
        if width is None:
            if len(values) < 3:
                raise ValueError(f"{path}:{lineno}: expected at least 3 numbers (x y z), got {len(values)}")
            width, first = len(values), lineno
        elif len(values) != width:
            raise ValueError(f"{path}:{lineno}: expected {width} numbers like line {first}, got {len(values)}")
        rows.append(values[:3])
    if not rows:
        raise ValueError(f"{path}: no points found")
    return np.array(rows, dtype=np.float64)
