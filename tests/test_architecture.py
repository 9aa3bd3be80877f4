"""The house's rules hold: each package imports only what its rule allows (import-linter's
contracts in pyproject.toml), a forbidden import breaks the check, few files stand directly in
harness/, and modules and functions stay small enough to read."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
PACKAGES = ("core", "scenario", "mock", "client", "cell", "store", "run", "saturate", "analysis",
            "report")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the `harness` package found under `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"),
                           "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_package_rules_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, forbidden", [
    ("core/units.py", "harness.scenario.model"),  # core imports nothing above it
    ("mock/cpu.py", "harness.client.lean_async"),  # the server knows nothing of the client
    ("run/runner.py", "harness.cell.main"),  # the runner starts cells as processes
    ("analysis/summary.py", "rich.table"),  # rich lives in the report
])
def test_a_forbidden_import_breaks_the_check(tmp_path, module, forbidden):
    shutil.copytree(ROOT / "harness", tmp_path / "harness",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert lint_imports(tmp_path).returncode == 0  # the copy is as clean as the original
    path = tmp_path / "harness" / module
    path.write_text(path.read_text() + f"\n\ndef _wrong():\n    import {forbidden}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


def test_each_package_states_its_rule():
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "harness" / package / "__init__.py")
                                          .read_text()))
        assert doc and "Rule: " in doc, package


def test_few_files_stand_directly_in_harness():
    assert len(list((ROOT / "harness").glob("*.py"))) <= 5


def sources():
    # .venv*: virtual environments, such as bench/.venv-locust that bench-self sets up
    return [p for folder in ("harness", "bench") for p in sorted((ROOT / folder).rglob("*.py"))
            if not any(part.startswith(".venv") for part in p.parts)]


def test_modules_are_small():
    long = {str(p.relative_to(ROOT)): n for p in sources()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_long_functions_say_why():
    """A function over MAX_FUNCTION_LINES lines says why in its docstring, on a line that
    starts with `Long: `."""
    found = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if lines > MAX_FUNCTION_LINES and not any(
                        line.strip().startswith("Long: ") for line in doc.splitlines()):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert found == []


def test_no_comment_names_an_issue():
    """Comments say why, never which issue or stop asked for a thing."""
    import re

    pattern = re.compile(r"\b(issues?|stops?) \d+", re.I)
    files = [*sources(), *(ROOT / "tests").glob("*.py"), ROOT / "pyproject.toml",
             ROOT / "Makefile"]
    found = [f"{p.relative_to(ROOT)}:{i}" for p in files
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
