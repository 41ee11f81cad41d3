"""Every code block in the README and docs/ runs.

Each page's ```python blocks run in order in one namespace (a page reads as one session), in a
fresh folder that has a link to the repository's ``data/``.  ```bash blocks run line by line:
``robojac ...`` through the CLI, ``python examples/...`` as a subprocess, a benchmark script with
``--help`` (its peers are the ``[bench]`` extra), and the README's set-up lines must be the
commands ``.ci/run`` runs.  Other languages (```text, ```yaml, ```toml) are not code.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.open3d  # the examples and pages run the CPU paths, Open3D's search among them
ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
_BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
_NOT_CODE = {"text", "yaml", "toml", "console", "output"}


def _blocks(page):
    text = (ROOT / page).read_text()
    for m in _BLOCK.finditer(text):
        yield m.group(1), m.group(2), text.count("\n", 0, m.start()) + 2


def _ci_commands():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith(("#", "set ", "cd "))]


def _run_shell_line(line, page, lineno, cwd):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT))
    words = shlex.split(line)
    while words and "=" in words[0] and not words[0].startswith("-"):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    where = f"{page}:{lineno}: {line}"
    if words[0].endswith("robojac"):
        from robojac.cli import main

        code = main(words[1:])
        assert code == 0, f"{where} exited with {code}"
    elif words[0].endswith("python") and words[1].startswith(("examples/", "benchmarks/", "docs/")):
        script = ROOT / words[1]
        assert script.is_file(), f"{where}: no {words[1]}"
        args = ["--help"] if words[1].startswith("benchmarks/") else words[2:]
        res = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, f"{where} failed:\n{res.stdout}\n{res.stderr}"
    elif words[0] == "bash" and words[1].startswith("scripts/"):
        assert (ROOT / words[1]).is_file(), f"{where}: no {words[1]}"
    elif words[0].endswith("mkdocs"):
        pass  # the docs' build: .ci/run builds them with --strict, and test_the_docs_build below
    else:
        pytest.fail(f"{where}: a bash block may hold robojac, python examples/..., benchmarks/... or scripts/ lines")


@pytest.mark.parametrize("page", PAGES)
def test_code_blocks_run(page, tmp_path, monkeypatch, capsys):
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    ran = 0
    for lang, code, lineno in _blocks(page):
        if lang == "python":
            exec(compile(code, f"{page}:{lineno}", "exec"), namespace)  # noqa: S102 -- the page's own code
        elif lang == "bash":
            for k, line in enumerate(code.splitlines()):
                line = line.split(" #", 1)[0].strip()
                if "scripts/setup.sh" in line:
                    continue  # the set-up: test_the_readme_set_up_is_what_ci_runs
                if line and not line.startswith("#"):
                    for part in line.split(" && "):
                        _run_shell_line(part, page, lineno + k, tmp_path)
        elif lang not in _NOT_CODE:
            pytest.fail(f"{page}:{lineno}: a code block needs a language (python, bash, or text for output)")
        ran += 1
    assert ran or page not in ("README.md",), f"{page} has no code"


def test_the_readme_set_up_is_what_ci_runs():
    """The README's two set-up commands: the test one is exactly .ci/run's, the demo one exists."""
    text = (ROOT / "README.md").read_text()
    setup = next(code for lang, code, _ in _blocks("README.md") if lang == "bash" and "scripts/setup.sh" in code)
    commands = [ln for ln in setup.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(commands) == 2 and "robojac demo" in commands[0]
    assert commands[1].replace(".venv/bin/", "") in [c.replace(".venv/bin/", "") for c in _ci_commands()]
    assert len(text.splitlines()) <= 200


def test_the_readme_figures_come_from_the_benchmark_page():
    readme, bench = (ROOT / "README.md").read_text(), (ROOT / "docs" / "benchmarks.md").read_text()
    table = readme[readme.index("## Speed against the peers"):readme.index("## Documentation")]
    figures = re.findall(r"\d[\d,]*\.?\d*(?: ?(?:ms|s|%|x|targets/s))", table)
    assert len(figures) >= 10
    for figure in figures:
        assert figure.replace(" ", "") in bench.replace(" ", ""), f"{figure} is not in docs/benchmarks.md"


def test_the_readme_names_the_examples_there_are():
    """The README's example range runs from the first example file to the last one."""
    names = sorted(p.name for p in (ROOT / "examples").glob("[0-9][0-9]_*.py"))
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("Examples:"))
    assert f"examples/{names[0]}" in line and f"`{names[-1]}`" in line, f"README names {line!r}; examples: {names[0]} ... {names[-1]}"


@pytest.mark.slow
def test_the_docs_build(tmp_path):
    """mkdocs in strict mode: a broken link, a missing page or an unresolved API name fails."""
    pytest.importorskip("mkdocs")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_command_line_argument_says_what_it_does():
    """``robojac COMMAND --help`` explains each argument (several said only their choices)."""
    import argparse

    from robojac.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    silent = [f"{name} {a.option_strings[-1] if a.option_strings else a.dest}"
              for name, parser in commands.choices.items() for a in parser._actions
              if not a.help and not isinstance(a, argparse._HelpAction)]
    assert silent == [], f"arguments without a help text: {silent}"


def test_numeric_options_are_refused_by_name(capsys):
    """Each numeric option of the commands is checked as it is read: a value out of its range
    exits 2 naming the option (it had named a config field, ``RobustKernel.scale``, or for
    ``multiway --merged-voxel`` nothing: a NaN wrote the whole cloud), in one line.  The
    trajectory commands keep evo's options as evo reads them."""
    import argparse

    from robojac.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if action.type in (int, float):
                # evo's options as evo reads them; any seed; a target or start that ik.solve refuses by name
                assert name in ("ape", "rpe") or action.dest in ("seed", "target", "q0"), \
                    f"{name} {action.option_strings}: unchecked"
            elif getattr(action.type, "__name__", "") in ("number", "integer") and action.option_strings:
                bad = "nan" if action.type.__name__ == "number" else "-1000000000"
                with pytest.raises(SystemExit) as stop:
                    build_parser().parse_args([name, action.option_strings[-1], bad])
                err = capsys.readouterr().err
                assert stop.value.code == 2 and f"argument {action.option_strings[-1]}: expected" in err, err
                assert err.count("\n") == 1, err  # one line, as every bad input's (not the usage first)
                checked += 1
    assert checked >= 20
