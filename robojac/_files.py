"""Writing files so a reader never sees half of one."""

from __future__ import annotations

import os
import pathlib
import tempfile

__all__ = ["write_text_atomic"]


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed into place
    once flushed to disk: an interrupted write leaves the old file (or none), never a truncated one."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
