"""Paths of the sample files shipped with robojac: robots, pose graphs and point clouds.

>>> from robojac import data
>>> data.path("robots/panda.urdf").name
'panda.urdf'

The files live in the repository's top-level ``data/`` folder (a clone or an editable install
reads them there) and are copied into the package as ``robojac/_data`` when a wheel is built.
``ROBOJAC_DATA=/some/folder`` points robojac at another copy.  ``data/SOURCES.md`` gives each
file's origin, license and the credit it asks for.
"""

from __future__ import annotations

import difflib
import os
import pathlib

__all__ = ["root", "path", "names"]

_PACKAGE = pathlib.Path(__file__).resolve().parent


def root() -> pathlib.Path:
    """The folder that holds the sample files.

    ``$ROBOJAC_DATA`` if set, else the copy inside an installed wheel (``robojac/_data``), else
    the repository's ``data/`` folder beside the package (a clone or an editable install).
    """
    env = os.environ.get("ROBOJAC_DATA")
    if env:
        folder = pathlib.Path(env).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"ROBOJAC_DATA={env!r} is not a folder")
        return folder
    for folder in (_PACKAGE / "_data", _PACKAGE.parent / "data"):
        if (folder / "SOURCES.md").is_file():
            return folder
    raise FileNotFoundError(
        f"robojac's sample data is not installed: neither {_PACKAGE / '_data'} nor {_PACKAGE.parent / 'data'} "
        "holds it; reinstall robojac, or set ROBOJAC_DATA to a folder with the files of the repository's data/"
    )


def names() -> list[str]:
    """Every sample file, as the relative names :func:`path` takes (``"robots/panda.urdf"``, ...)."""
    base = root()
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def path(name: str) -> pathlib.Path:
    """The absolute path of the sample file (or folder) ``name``, relative to the data folder.

    ``name`` may leave out a ``.gz`` the file is stored with: ``path("posegraph/intel.g2o")``
    gives ``.../posegraph/intel.g2o.gz``, which :func:`robojac.posegraph.read_g2o` reads as it
    is.  An unknown name raises ``FileNotFoundError`` with the closest names there are.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name: expected a relative file name such as 'robots/panda.urdf', got {type(name).__name__}")
    rel = pathlib.PurePosixPath(os.fspath(name).replace(os.sep, "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"name: expected a name relative to the data folder, such as 'robots/panda.urdf', "
                         f"got {name!r}")
    base = root()
    for candidate in (base / rel, base / f"{rel}.gz"):
        if candidate.exists():
            return candidate
    known = names()
    close = difflib.get_close_matches(str(rel), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; robojac.data.names() lists the {len(known)} files"
    raise FileNotFoundError(f"name: no sample file {str(rel)!r} in {base}{hint}")
