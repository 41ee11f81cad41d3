"""Every example script and the demo run and write their pictures."""

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.open3d  # the examples and pages run the CPU paths, Open3D's search among them
ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("[0-9]*.py"))


def _run(args, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{args} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs_and_draws(script, tmp_path):
    out = tmp_path / "out"
    _run([str(ROOT / "examples" / script), "--out", str(out)], tmp_path)
    pictures = [p for p in out.rglob("*") if p.suffix in (".png", ".gif")]
    assert pictures, f"{script} wrote no pictures"
    assert all(p.stat().st_size > 5000 for p in pictures)


def test_demo_command(tmp_path):
    res = _run(["-m", "robojac", "demo", "--out", str(tmp_path / "demo")], tmp_path)
    assert "Jacobians in the tangent space" in res.stdout
    assert len(list((tmp_path / "demo").glob("*.png"))) >= 3
