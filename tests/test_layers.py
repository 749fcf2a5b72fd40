"""The apps' layers (docs/architecture.md) hold: each app imports only from the layers below
it (the import-linter contract in pyproject.toml, which `make lint` also checks), and an
import of a project module inside a function says why it is deferred."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
APPS = CONFIG["root_packages"]


def test_every_app_imports_only_from_the_layers_below_it():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_project_app_is_in_the_layers():
    """A new app must be placed in a layer, or the contract says nothing about it."""
    packages = {p.parent.name for p in ROOT.glob("*/apps.py")} | {"config"}
    assert packages == set(APPS)


def _deferred_imports(path: Path):
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            if module.split(".")[0] in APPS:
                yield node.lineno, module, lines


def test_a_deferred_import_says_why():
    """Lazy imports dodged cycles before the layers (issue 21); the few left need a reason
    (Django's app loading, the Celery app's import order), in a comment on the import's line
    or the lines just above it that says "deferred"."""
    unexplained = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for lineno, module, lines in _deferred_imports(path):
                nearby = " ".join(lines[max(0, lineno - 4) : lineno]).lower()
                if "deferred" not in nearby:
                    unexplained.append(f"{path.relative_to(ROOT)}:{lineno} {module}")
    assert not unexplained, "\n".join(unexplained)
