"""The import rules of docs/design.md: packages import down the table, through public names."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "robojac"
SHARED = {"_files", "_threads", "_config", "_malloc", "_precision", "_csr"}  # internals of the whole package, importing nothing of ours
ALLOWED = {  # package -> the packages it may import
    "lie": set(),
    "jacobian": {"lie"},
    "optim": {"lie", "jacobian"},
    "kinematics": {"lie", "jacobian"},
    "models": {"kinematics"},
    "collision": {"lie", "kinematics"},
    "data": set(),
    "__main__": {"cli"},
    "ik": {"lie", "jacobian", "optim", "kinematics", "collision"},
    "motion": {"optim", "kinematics", "ik"},
    "calibration": {"lie", "jacobian", "optim", "kinematics"},
    "posegraph": {"lie", "jacobian", "optim", "trajectory"},
    "trajectory": {"lie"},
    "icp": {"lie", "jacobian", "optim", "posegraph", "trajectory"},
    "viz": {"lie", "jacobian", "optim", "kinematics", "collision", "models", "ik", "motion", "calibration", "posegraph",
            "trajectory", "icp"},
    "cli": {"lie", "jacobian", "optim", "kinematics", "collision", "models", "data", "ik", "motion", "calibration",
            "posegraph", "trajectory", "icp", "viz"},
}


def _imports(path: pathlib.Path):
    """``(line, target package, imported names)`` of every relative import reaching another package."""
    pkg = path.relative_to(ROOT).parts[0].removesuffix(".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            depth = node.level - (0 if path.name == "__init__.py" and path.parent != ROOT else 0)
            inside = len(path.relative_to(ROOT).parts) - 1  # folders below robojac/
            if depth <= inside:
                continue  # within its own package
            parts = (node.module or "").split(".")
            target = parts[0] if node.module else None
            names = [a.name for a in node.names]
            yield node.lineno, pkg, target, parts, names


def test_packages_import_down_the_table_through_public_names():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        for line, pkg, target, parts, names in _imports(path):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if target is None:  # from .. import lie
                targets = names
            else:
                targets = [target]
                if len(parts) > 1 and parts[1].startswith("_"):
                    bad.append(f"{where}: imports the private module {'.'.join(parts)}")
            for t in targets:
                if t in SHARED or t == "__version__":
                    continue
                if t.startswith("_") and t not in SHARED:
                    bad.append(f"{where}: imports the private name {t}")
                if pkg in SHARED:
                    bad.append(f"{where}: {pkg} is shared by all and imports nothing of ours, yet imports {t}")
                elif t not in ALLOWED.get(pkg, set()) and t != pkg:
                    bad.append(f"{where}: {pkg} may not import {t} (allowed: {sorted(ALLOWED.get(pkg, set()))})")
            for n in names:
                if n.startswith("_") and target is not None and target not in SHARED:
                    bad.append(f"{where}: imports the private name {n} from {target}")
    assert not bad, "\n".join(bad)


def test_nothing_below_imports_viz_or_cli():
    for path in ROOT.rglob("*.py"):
        pkg = path.relative_to(ROOT).parts[0]
        if pkg in ("viz", "cli", "__main__.py"):
            continue
        text = path.read_text()
        assert "import viz" not in text and "from ..viz" not in text and "from ..cli" not in text, path


def test_examples_use_public_names_only():
    """The examples are what users copy: they import robojac through its public names only."""
    bad = []
    for path in sorted((ROOT.parent / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robojac"):
                mods = node.module.split(".")
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [p for a in node.names if a.name.startswith("robojac") for p in a.name.split(".")]
                names = []
            else:
                continue
            private = [m for m in mods + names if m.startswith("_")]
            if private:
                bad.append(f"{path.name}:{node.lineno}: {', '.join(private)}")
    assert not bad, "private names in examples: " + "; ".join(bad)


def test_every_config_field_is_documented_in_its_class():
    """The config dataclasses say what each field does, in the class's own docstring (the
    engine's rule); ICPConfig's num_neighbors and neighbors_backend, and PGOConfig's
    lambda_initial and cg_tolerance, had been left out."""
    import dataclasses
    import importlib
    import inspect

    configs = set()
    for path in ROOT.rglob("*.py"):
        if path.stem in ("__main__", "__init__"):  # running __main__ would run the command line
            continue
        module = importlib.import_module("robojac." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        configs |= {c for n, c in vars(module).items()
                    if n.endswith("Config") and inspect.isclass(c) and dataclasses.is_dataclass(c)}
    assert len(configs) >= 10
    missing = [f"{c.__name__}.{f.name}" for c in configs for f in dataclasses.fields(c)
               if f"``{f.name}``" not in (c.__doc__ or "")]
    assert not missing, missing
