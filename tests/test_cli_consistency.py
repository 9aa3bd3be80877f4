"""One CLI: the same names, metavars and exit codes across commands; validate checks what run
checks; unknown keys get a "did you mean"; list wraps and says when it finds nothing."""

from __future__ import annotations

import pytest

from harness.scenario.loader import load_scenario
from tests.conftest import small_scenario

COMMANDS = ["run", "report", "compare", "saturate", "validate", "schema", "list", "serve",
            "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_lists_its_exit_codes(cli, command):
    out = cli(command, "--help").stdout
    assert "Exit codes:" in out and "  0 " in out
    if command not in ("schema", "list"):
        assert "2 bad input" in out


@pytest.mark.parametrize("command", ["run", "saturate"])
def test_out_says_it_takes_a_folder(cli, command):
    assert "-o, --out DIR" in cli(command, "--help").stdout


def test_saturate_names_its_final_probes_and_keeps_the_old_spelling_hidden(cli, tmp_path):
    help_text = cli("saturate", "--help").stdout
    assert "--final-probes" in help_text and "--repeats" not in help_text
    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(backends="[asyncio]"))
    for spelling in ("--final-probes", "--repeats"):
        result = cli("saturate", path, "--slo", "p99 < 50ms", spelling, "101")
        assert result.returncode == 2
        assert "--final-probes: must be an integer from 0 to 100" in result.stderr


def test_validate_applies_the_remote_guard_as_run_does(cli, tmp_path):
    path = tmp_path / "remote.yaml"
    path.write_text("name: remote\ntarget: http://10.1.2.3:80/\nworkload: {type: http}\n"
                    "load: {requests: 10, concurrency: 4}\n")
    refused = cli("validate", path)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    allowed = cli("validate", "--allow-remote", path)
    assert allowed.returncode == 0 and "ok (remote)" in allowed.stdout


@pytest.mark.parametrize(("old", "new", "field", "suggestion"), [
    ("backends: [threads, processes, asyncio, uvloop]", "backend: [asyncio]", "backend",
     "'backends'"),
    ("concurrency: 4", "concurency: 4", "load.concurency", "'concurrency'"),
    ("{latency: {dist: uniform, min: 5ms, max: 20ms}, size: 128}",
     "{latncy: 5ms, size: 128}", "server.endpoints.api.latncy", "'latency'"),
])
def test_an_unknown_key_gets_the_close_allowed_ones(tmp_path, old, new, field, suggestion):
    from harness.core.errors import HarnessError

    path = tmp_path / "typo.yaml"
    text = small_scenario()
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(HarnessError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert f"{field}: unknown key" in message and f"did you mean {suggestion}?" in message


def test_an_unknown_key_far_from_any_gets_no_guess(tmp_path):
    from harness.core.errors import HarnessError

    path = tmp_path / "typo.yaml"
    path.write_text(small_scenario() + "zzz: 1\n")
    with pytest.raises(HarnessError) as caught:
        load_scenario(path)
    assert "unknown key" in str(caught.value) and "did you mean" not in str(caught.value)


def test_list_wraps_whole_descriptions_and_says_when_there_is_none(cli, tmp_path):
    empty = cli("list", "--dir", tmp_path)
    assert empty.returncode == 0 and f"none: no *.yaml file in {tmp_path}" in empty.stdout
    description = " ".join(["word"] * 60) + " end."
    (tmp_path / "long.yaml").write_text(small_scenario(name="long").replace(
        "server:", f"description: {description}\nserver:"))
    out = cli("list", "--dir", tmp_path).stdout
    assert all(len(line) <= 100 for line in out.splitlines())
    assert out.count("word") == 60 and "end." in out  # nothing cut


def test_quiet_prints_the_results_line_alone_and_no_legend_hides_the_legends(cli, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(requests=6, backends="[asyncio]"))
    quiet = cli("run", path, "--quiet", "-o", tmp_path / "out")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == f"results: {tmp_path / 'out'}\n" and quiet.stderr == ""
    shown = cli("report", tmp_path / "out").stdout
    hidden = cli("report", tmp_path / "out", "--no-legend").stdout
    assert "conc: the cell's limit" in shown and "conc: the cell's limit" not in hidden
    assert "asyncio" in hidden  # the table itself stays
