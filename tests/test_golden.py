"""What users see stays byte for byte: every command's --help, `harness schema`, `harness list`,
`harness report` of saved runs in every format, `compare --between`, and the one-line error of
every file in tests/bad_scenarios/. The expected outputs live in tests/data/golden/; a change
that alters them on purpose rewrites them with HARNESS_UPDATE_GOLDEN=1 and shows the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = DATA / "golden"
CORPUS = Path(__file__).resolve().parent / "bad_scenarios"
UPDATE = os.environ.get("HARNESS_UPDATE_GOLDEN") == "1"
COMMANDS = ["compare", "list", "report", "run", "saturate", "schema", "serve", "validate"]
V4 = DATA / "v4_run"
V2 = DATA / "v2_run"

CASES = {
    "help": ["--help"],
    **{f"help-{c}": [c, "--help"] for c in COMMANDS},
    "schema": ["schema"],
    "list": ["list"],
    "report-v4-table": ["report", V4],
    "report-v4-wide": ["report", V4, "--wide"],
    "report-v4-markdown": ["report", V4, "--format", "markdown"],
    "report-v4-json": ["report", V4, "--format", "json"],
    "report-v4-csv": ["report", V4, "--format", "csv"],
    "report-v2-table": ["report", V2, "--wide"],
    "report-v2-json": ["report", V2, "--format", "json"],
    "compare-v4-between": ["compare", V4, "--between", "threads,asyncio", "--format", "json"],
    "validate-golden": ["validate", DATA / "golden.yaml"],
}


def check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden output {path.name}: run once with HARNESS_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def relative(text: str) -> str:
    """Paths as the test names them, not where the clone stands."""
    return text.replace(str(DATA), "tests/data")


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_is_unchanged(cli, monkeypatch, name):
    import click.core

    monkeypatch.chdir(DATA.parent.parent)
    # the program's name as a user types it, however pytest was started
    monkeypatch.setattr(click.core, "_detect_program_name", lambda *a, **k: "harness")
    monkeypatch.setenv("COLUMNS", "100")
    result = cli(*CASES[name])
    check(name, f"exit {result.returncode}\n--- stdout\n{relative(result.stdout)}"
                f"--- stderr\n{relative(result.stderr)}")


def test_bad_scenario_errors_are_unchanged(cli, monkeypatch):
    monkeypatch.chdir(DATA.parent.parent)
    lines = []
    for path in sorted(CORPUS.glob("*.yaml")):
        if path.name == "expected.yaml":
            continue
        result = cli("validate", f"tests/bad_scenarios/{path.name}")
        lines.append(f"{result.returncode} {result.stderr.rstrip()}{result.stdout.rstrip()}")
    check("bad-scenarios", "\n".join(lines) + "\n")
