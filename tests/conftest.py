"""Test options (kornia's pattern):

* ``--device cpu|cuda`` runs every test that takes the ``device`` fixture (every test that
  computes in torch) on that device.  CUDA-only paths are marked ``cuda`` and skip without one.
* ``--default-device meta`` (a developer's check of device hygiene, on any machine): while a
  test that takes ``device`` runs, a tensor created without a device lands on ``meta``, so a
  test or library line that forgets ``device=`` fails at once instead of on a GPU machine.
* Tests marked ``open3d`` use Open3D's CPU search; they skip where it is not installed (a bare
  GPU image, which has no room to carry it).
"""

import importlib
import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--device", action="store", default="cpu", help="torch device for the tests: cpu or cuda")
    parser.addoption("--default-device", action="store", default=None,
                     help="torch's default device while a test that takes `device` runs (meta: find forgotten device=)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "open3d: uses Open3D (skipped where it is not installed)")


def pytest_collection_modifyitems(config, items):
    skips = []
    if not torch.cuda.is_available():
        skips.append(("cuda", pytest.mark.skip(reason="CUDA is not available")))
    if not _importable("open3d"):
        skips.append(("open3d", pytest.mark.skip(reason="Open3D is not installed")))
    for item in items:
        for mark, skip in skips:
            if mark in item.keywords:
                item.add_marker(skip)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@pytest.fixture
def device(request):
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    default = request.config.getoption("--default-device")
    if default is None:
        yield torch.device(name)
        return
    torch.set_default_device(default)
    try:
        yield torch.device(name)
    finally:
        torch.set_default_device(None)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
