"""Files in and out: reading text or bytes (gzip-compressed or not) with errors that name the
file, and writing so that a reader never sees half of one."""

from __future__ import annotations

import contextlib
import gzip
import os
import pathlib
import stat
import tempfile
import zlib

__all__ = ["as_path", "atomic_path", "read_bytes", "read_text", "save_figure_atomic", "write_text_atomic"]


def as_path(path, what: str = "file") -> pathlib.Path:
    """``path`` as a ``pathlib.Path``; anything but a ``str`` or ``os.PathLike`` is refused,
    naming what was expected (a tensor passed where the file name goes, say)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected the name of a {what} (str or os.PathLike), got {type(path).__name__}")
    return pathlib.Path(path)


def read_bytes(path, what: str = "file") -> bytes:
    """The bytes of ``path``; a name ending in ``.gz`` is decompressed.

    A missing file raises ``FileNotFoundError``, a folder ``IsADirectoryError``, a corrupt gzip
    stream ``ValueError``; each message names the file (and what was expected: the ``what``,
    ``"g2o file"``, ...)."""
    path = as_path(path, what)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: expected a {what}, got a folder")
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from None


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (see :func:`read_bytes`), without the byte-order mark that
    Windows editors put first (a g2o file saved by Notepad had been refused at its first tag);
    undecodable bytes raise ``ValueError`` naming the file, the line and the byte."""
    raw = read_bytes(path, what)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: byte {raw[exc.start]:#04x} is not UTF-8 text (is this a {what}?)") from None


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # no other way to read it: set and restore at once
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` to write to; renamed over ``path`` once the block ends.

    The temporary file is flushed to disk first, and takes the mode of the file it replaces (or,
    for a new file, the mode the umask gives).  If the block raises (or the process is told to
    stop by a signal that raises, as the CLI arranges for SIGTERM and SIGHUP), the temporary
    file is removed and ``path`` is left as it was.
    """
    path = as_path(path, "file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; expected a file name to write")
    # the suffix stays last: writers that pick the format from the name (matplotlib, Pillow) still can
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else _new_file_mode()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`): an interrupted write
    leaves the old file (or none), never a truncated one."""
    path = as_path(path, "file to write")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_figure_atomic(fig, path, **kwargs) -> pathlib.Path:
    """``fig.savefig`` to exactly ``path``, atomically; the format follows the suffix (PNG when
    there is none, and the name is kept as given)."""
    path = pathlib.Path(path)
    fmt = path.suffix[1:].lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return path
