"""robojac.data: every sample file is found, credited, and ships inside the wheel."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from robojac import data

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_shipped_file_is_reachable_and_credited():
    names = data.names()
    assert {"robots/panda.urdf", "posegraph/intel.g2o.gz", "pointclouds/bunny/bun.conf"} <= set(names)
    sources = (ROOT / "data" / "SOURCES.md").read_text()
    for name in names:
        assert data.path(name).is_file()
        assert f"`{pathlib.PurePosixPath(name).name}`" in sources, f"{name} is not described in data/SOURCES.md"


def test_every_file_the_project_names_is_shipped():
    """The names passed to data.path anywhere in the project resolve (no file read from outside)."""
    used = set()
    for folder in ("robojac", "tests", "examples", "benchmarks", "docs"):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix in (".py", ".md") and p.name != "test_data.py":
                used |= set(re.findall(r"data\.path\(f?\"([^\"{}]+)\"\)", p.read_text()))
    assert used, "no data.path call found"
    for name in sorted(used):
        assert data.path(name).exists(), name


def test_a_name_without_gz_finds_the_compressed_file():
    assert data.path("posegraph/intel.g2o").name == "intel.g2o.gz"
    assert data.path("robots").is_dir()


@pytest.mark.parametrize("name, match", [
    ("robots/pand.urdf", r"no sample file 'robots/pand.urdf' .*did you mean robots/panda.urdf"),
    ("/etc/passwd", "expected a name relative to the data folder"),
    ("../pyproject.toml", "expected a name relative to the data folder"),
])
def test_bad_names_say_what_is_there(name, match):
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        data.path(name)
    with pytest.raises(TypeError, match="name: expected a relative file name"):
        data.path(3)


def test_robojac_data_points_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "robots").mkdir()
    (tmp_path / "robots" / "mine.urdf").write_text("<robot/>")
    monkeypatch.setenv("ROBOJAC_DATA", str(tmp_path))
    assert data.path("robots/mine.urdf") == tmp_path / "robots" / "mine.urdf"
    monkeypatch.setenv("ROBOJAC_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ROBOJAC_DATA="):
        data.root()


def test_the_package_list_names_every_package():
    """Every package, and every folder of data/ (as robojac._data...: setuptools warns at each
    install about a folder of files that ``packages`` leaves out)."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "robojac").rglob("__init__.py")}
    folders = {".".join(("robojac", "_data") + p.relative_to(ROOT / "data").parts)
               for p in [ROOT / "data", *(ROOT / "data").rglob("*")] if p.is_dir()}
    assert listed == on_disk | folders


@pytest.mark.slow
def test_a_wheel_carries_the_data(tmp_path):
    """Built and installed as a user would from PyPI: Chain.from_urdf(data.path(...)) works, and
    the wheel holds every package on disk (one missing from the package list was left out; an
    import cannot tell, where an editable install stands behind the wheel)."""
    wheel, src = tmp_path / "wheel", tmp_path / "src"  # a clean copy: a checkout's build/ would fill in what is missing
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build", ".venv", ".git", "site", "*.egg-info", "out",
                                                             "robojac_demo", "__pycache__", "gpu_check_out"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheel),
                    str(src)], check=True, capture_output=True)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    *map(str, wheel.glob("*.whl"))], check=True, capture_output=True)
    (whl,) = wheel.glob("*.whl")
    inits = {p.relative_to(ROOT).as_posix() for p in (ROOT / "robojac").rglob("__init__.py")}
    assert inits <= set(zipfile.ZipFile(whl).namelist()), sorted(inits - set(zipfile.ZipFile(whl).namelist()))
    code = ("import robojac; print(robojac.data.path('robots/panda.urdf')); "
            "c = robojac.Chain.from_urdf(robojac.data.path('robots/panda.urdf'), tip='panda_hand'); print(c.dof)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBOJAC_DATA")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True)
    where, dof = out.stdout.split()
    assert pathlib.Path(where).is_relative_to(site / "robojac" / "_data") and dof == "7"


def test_import_robojac_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, robojac; print(sorted(m for m in sys.modules "
                          "if m.split('.')[0] in ('torch', 'numpy', 'pypose', 'open3d', 'matplotlib')))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_the_first_names_are_at_the_top_level():
    import robojac
    from robojac.kinematics import Chain

    assert robojac.Chain is Chain
    for name in robojac.__all__:
        assert getattr(robojac, name) is not None
    chain = robojac.Chain.from_urdf(robojac.data.path("robots/panda.urdf"), tip="panda_hand")
    assert chain.dof == 7
    with pytest.raises(AttributeError, match="no attribute 'Chian'"):
        robojac.Chian  # noqa: B018
