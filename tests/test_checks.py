"""Response checks: each kind passing and failing (pure), their validation, and on every
backend and client alike a failed check as the error `check` naming it."""

from __future__ import annotations

import pytest

from harness.core.checks import Checks
from harness.core.errors import HarnessError
from harness.run.runner import run_scenarios
from harness.scenario.loader import load_scenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS, small_scenario

HEADERS = {"content-type": "application/json", "x-id": "abc-123"}
BODY = b'{"data": {"id": 7, "tags": ["a", "b"]}, "ok": true}'


@pytest.mark.parametrize(("data", "failed"), [
    ({"header": {"Content-Type": "application/json"}}, None),
    ({"header": {"Content-Type": "text/html"}}, "header content-type"),
    ({"header": {"X-Id": {"regex": r"^abc-\d+$"}}}, None),
    ({"header": {"X-Id": {"regex": r"^xyz"}}}, "header x-id"),
    ({"header": {"X-Missing": "1"}}, "header x-missing"),
    ({"body_contains": ["\"id\": 7", "tags"]}, None),
    ({"body_contains": ["nope"]}, "body_contains"),
    ({"body_regex": [r'"id": \d+']}, None),
    ({"body_regex": [r'"id": "']}, "body_regex"),
    ({"json": {"data.id": 7, "data.tags.1": "b", "ok": True}}, None),
    ({"json": {"data.id": 8}}, "json data.id"),
    ({"json": {"data.missing": None}}, "json data.missing"),
    ({"max_bytes": len(BODY)}, None),
    ({"max_bytes": len(BODY) - 1}, "max_bytes"),
])
def test_each_check_kind(data, failed):
    assert Checks.from_data(data).failed(HEADERS.get, BODY) == failed


def test_json_check_of_a_body_that_is_not_json():
    assert Checks.from_data({"json": {"a": 1}}).failed(HEADERS.get, b"<html>") == "json a"


@pytest.mark.parametrize(("checks", "message"), [
    ("{body_regex: '(unclosed'}", "workload.checks.body_regex"),
    ("{header: {X-Id: {regex: '['}}}", "not a regular expression"),
    ("{max_byte: 10}", "did you mean 'max_bytes'?"),
    ("{max_bytes: lots}", "workload.checks.max_bytes"),
])
def test_bad_checks_are_one_line(tmp_path, checks, message):
    path = tmp_path / "s.yaml"
    path.write_text(small_scenario().replace("workload: {endpoint: api}",
                                             f"workload: {{endpoint: api, checks: {checks}}}"))
    with pytest.raises(HarnessError) as caught:
        load_scenario(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def _run(tmp_path, checks: str):
    path = tmp_path / "s.yaml"
    path.write_text(small_scenario(requests=8, concurrency=2,
                                   backends="[" + ", ".join(BACKENDS) + "]").replace(
        "workload: {endpoint: api}",
        f"workload: {{endpoint: api, client: [standard, lean], checks: {checks}}}"))
    run_scenarios([load_scenario(path)], out=tmp_path / "out")
    return read_run(tmp_path / "out")["requests"].to_pandas()


def test_a_failed_check_is_the_error_check_on_every_backend_and_client(tmp_path, cli):
    rows = _run(tmp_path, "{max_bytes: 100, body_regex: '.'}")  # the mock's bodies: 128 bytes
    assert len(rows) == 8 * len(BACKENDS) * 2
    assert set(zip(rows.backend, rows.client, strict=True)) == {
        (b, c) for b in BACKENDS for c in ("standard", "lean")}
    assert (~rows.ok).all() and (rows.error == "check").all()
    assert (rows.error_detail == "max_bytes").all() and (rows.status == 200).all()
    shown = cli("report", tmp_path / "out").stdout
    assert "failed checks" in shown and "max_bytes" in shown


def test_passing_checks_leave_every_row_ok(tmp_path):
    rows = _run(tmp_path, "{header: {Content-Length: '128', Content-Type: {regex: '.'}}, "
                          "body_regex: '.', max_bytes: 128}")
    assert len(rows) == 8 * len(BACKENDS) * 2 and rows.ok.all()
