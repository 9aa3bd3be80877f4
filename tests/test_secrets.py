"""Secrets never written: each form a secret can take in a scenario — a DSN's password in its
libpq and URL spellings, $HARNESS_POSTGRES_DSN, credential headers, `${NAME}` — run for real
(`harness run` in a child process) and looked for in every byte of its run folder, the HTML
report and everything the commands printed. Each secret starts with its own token, so a cut-
short echo of it is caught too."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.core.errors import ScenarioError
from harness.core.secrets import (
    UnreadableReference,
    dsn_secrets,
    interpolate,
    is_secret_header,
    redact_dsn,
    scrub,
)
from harness.scenario.loader import parse_scenario, scenario_from_text
from tests.conftest import harness

SERVER = "server: {endpoints: {infer: {latency: 1ms}}}\n"
LOAD = "load: {requests: 2, concurrency: 1}\nbackends: [threads]\n"
NO_DB = "127.0.0.1:1"  # nothing listens on port 1: the cell's connection is refused


def _pipeline(dsn_line: str) -> str:
    return (SERVER + "workload:\n  type: pipeline\n  endpoint: infer\n  image: 8\n"
            "  database: postgres\n" + dsn_line + LOAD)


# name → (scenario body, the secret's token). The first line of each is the YAML of `dsn:`.
DSN_FORMS = {
    # libpq key=value, the quoted value inside a single-quoted YAML string ('' is one quote)
    "kv_quoted": (_pipeline(
        "  dsn: 'host=127.0.0.1 port=1 user=u password=''kvquote7 se cret'' dbname=d'\n"),
        "kvquote7"),
    # libpq backslash escapes (a space, a quote, a backslash) in a double-quoted YAML string
    "kv_backslash": (_pipeline(
        "  dsn: \"host=127.0.0.1 port=1 password=bslash9\\\\ x\\\\'y\\\\\\\\z dbname=d\"\n"),
        "bslash9"),
    # a URL password with ", ', :, a %-escaped @ and /, in a block scalar
    "url_escapes": (_pipeline(
        "  dsn: >-\n    postgresql://u:urlpw5%40a\"b'c:d%2F@127.0.0.1:1/db\n"), "urlpw5"),
    # a raw @ in a URL password: libpq and urllib split it differently
    "url_raw_at": (_pipeline("  dsn: 'postgresql://u:rawat6@x@127.0.0.1:1/db'\n"), "rawat6"),
    # a %-escape libpq refuses, quoting it in its error
    "url_bad_escape": (_pipeline("  dsn: postgresql://u:pctbad9%ZZ@127.0.0.1:1/db\n"),
                       "pctbad9"),
    # the password in a query parameter
    "url_query": (_pipeline(
        "  dsn: 'postgresql://u@127.0.0.1:1/db?password=querypw2&sslmode=disable'\n"),
        "querypw2"),
    "env_dsn": (_pipeline(""), "envpw4"),  # $HARNESS_POSTGRES_DSN
    "interp_dsn": (_pipeline("  dsn: ${TEST_SECRET_DSN}\n"), "interpdsn8"),
    "interp_password": (_pipeline(
        "  dsn: 'postgresql://u:${TEST_SECRET_PW}@127.0.0.1:1/db'\n"), "interppw3"),
}
DSN_ENV = {
    "HARNESS_POSTGRES_DSN": f"postgresql://u:envpw4-x@{NO_DB}/db",
    "TEST_SECRET_DSN": "host=127.0.0.1 port=1 password=interpdsn8-z",
    "TEST_SECRET_PW": "interppw3%3Aq",
}

# header name → value (token first); the last one read from the environment
HEADER_FORMS = {
    "Authorization": "Bearer hdrauth1-abc.def",
    "Proxy-Authorization": "Basic hdrproxy2xyz=",
    "Cookie": "sid=hdrcookie3; theme=dark",
    "X-Api-Key": "hdrkey4'\"q",
    "X-Auth-Token": "hdrtoken5 with space",
    "X-Env-Secret": "${TEST_SECRET_HEADER}",
}
HEADER_ENV = {"TEST_SECRET_HEADER": "hdrenv6-from-env"}


def _token(value: str) -> str:
    return (HEADER_ENV["TEST_SECRET_HEADER"] if value.startswith("${") else value)[:8]


def _leaks(token: str, folder: Path, *outputs: str) -> list[str]:
    """Where the token appears: files of the folder (as bytes, Parquet included), outputs."""
    found = [str(path) for path in sorted(folder.rglob("*"))
             if path.is_file() and token.encode() in path.read_bytes()]
    return found + [f"output {i}" for i, text in enumerate(outputs) if token in text]


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k != "HARNESS_POSTGRES_DSN" and not k.startswith("TEST_SECRET")}
    return {**env, **extra}


def _run_all(tmp: Path, scenarios: dict[str, str], env: dict):
    for name, body in scenarios.items():
        (tmp / f"{name}.yaml").write_text(f"name: {name}\n{body}")
    run = harness("run", *sorted(p.name for p in tmp.glob("*.yaml")), cwd=tmp, env=_env(env))
    # the report reads the recorded texts without the variables: `${NAME}` stays as written
    report = harness("report", "results", "--html", "report.html", cwd=tmp, env=_env({}))
    return run, report


@pytest.fixture(scope="module")
def dsn_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsn")
    run, report = _run_all(tmp, {name: body for name, (body, _) in DSN_FORMS.items()}, DSN_ENV)
    return tmp, run, report


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def do_GET(self):  # noqa: N802 - the http.server hook
        _Recorder.seen.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def header_run(tmp_path_factory):
    """An io workload against a loopback target of ours that records what it receives."""
    tmp = tmp_path_factory.mktemp("headers")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    headers = "\n".join(f"    {name}: '{value.replace(chr(39), chr(39) * 2)}'"
                        for name, value in HEADER_FORMS.items())
    body = (f"target: http://127.0.0.1:{server.server_address[1]}\n"
            f"workload:\n  path: /x\n  headers:\n{headers}\n    Accept: text/plain\n"
            "load: {requests: 3, concurrency: 1}\nbackends: [threads, asyncio]\n")
    try:
        run, report = _run_all(tmp, {"hdr": body}, HEADER_ENV)
    finally:
        server.shutdown()
    return tmp, run, report, list(_Recorder.seen)


@pytest.mark.parametrize("form", DSN_FORMS)
def test_a_dsn_password_is_in_no_file_of_the_run_and_no_output(dsn_runs, form):
    tmp, run, report = dsn_runs
    token = DSN_FORMS[form][1]
    folders = list((tmp / "results" / form).iterdir())
    assert len(folders) == 1 and (folders[0] / "run.json").exists()
    # the run happened: its one cell failed on the refused connection, and said so
    assert run.returncode == 3 and f"cell {form} threads" in run.stderr, run.stderr
    assert (tmp / "report.html").exists(), report.stderr
    assert _leaks(token, folders[0], run.stdout, run.stderr, report.stdout, report.stderr,
                  (tmp / "report.html").read_text()) == []


def test_the_drivers_own_error_is_scrubbed_not_silenced(dsn_runs):
    """libpq quotes a bad %-escape in its message: the message is kept, the secret is not."""
    _, run, _ = dsn_runs
    line = next(line for line in run.stderr.splitlines() if "cell url_bad_escape" in line)
    assert "invalid percent-encoded token" in line and "***" in line


def test_the_kept_text_still_parses_and_keeps_references(dsn_runs):
    import json

    tmp = dsn_runs[0]
    for form in DSN_FORMS:
        meta = json.loads(next((tmp / "results" / form).glob("*/run.json")).read_text())
        kept = meta["scenarios"][0]["text"]
        scenario = parse_scenario(kept, recorded=True)
        if form.startswith("interp"):
            assert "${TEST_SECRET_" in kept
        elif form != "env_dsn":
            assert "***" in scenario.workload.dsn
        import hashlib

        assert meta["scenarios"][0]["sha256"] == hashlib.sha256(kept.encode()).hexdigest()


@pytest.mark.parametrize("name", HEADER_FORMS)
def test_a_secret_header_reaches_the_server_and_nothing_written(header_run, name):
    tmp, run, report, seen = header_run
    value = HEADER_FORMS[name]
    sent = HEADER_ENV["TEST_SECRET_HEADER"] if value.startswith("${") else value
    assert run.returncode == 0, run.stderr
    assert len(seen) == 6 and all(h.get(name) == sent for h in seen)  # 3 requests × 2 cells
    folder = next((tmp / "results" / "hdr").iterdir())
    assert _leaks(_token(value), folder, run.stdout, run.stderr, report.stdout, report.stderr,
                  (tmp / "report.html").read_text()) == []
    assert "text/plain" in (folder / "run.json").read_text()  # other headers are kept


# ---- errors --------------------------------------------------------------------------------


def test_an_unset_variable_is_one_line_naming_file_and_field(cli, write_scenario, monkeypatch):
    monkeypatch.delenv("TEST_SECRET_UNSET", raising=False)
    path = write_scenario("name: t\nserver: {endpoints: {a: {}}}\n"
                          "workload: {endpoint: a, headers: {Authorization: 'Bearer "
                          "${TEST_SECRET_UNSET}'}}\nload: {requests: 1, concurrency: 1}\n")
    result = cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {path}: workload.headers.Authorization: ${{TEST_SECRET_UNSET}}: environment "
        "variable TEST_SECRET_UNSET is not set")


@pytest.mark.parametrize(("field", "value"), [
    ("target", "ftp://errtarg7.example/path"),  # the target's check quotes the URL
    ("workload.headers.Accept", "errctrl8 value\x01"),  # a control character: quoted too
    ("workload.headers.X-Api-Key", "errkey9 \x7f"),
    ("workload.ok_status", "errstat5"),
])
def test_an_error_about_a_value_read_from_the_environment_does_not_quote_it(
        cli, write_scenario, monkeypatch, field, value):
    monkeypatch.setenv("TEST_SECRET_BAD", value)
    workload = {"workload.headers.Accept": "headers: {Accept: '${TEST_SECRET_BAD}'}",
                "workload.headers.X-Api-Key": "headers: {X-Api-Key: '${TEST_SECRET_BAD}'}",
                "workload.ok_status": "ok_status: '${TEST_SECRET_BAD}'"}.get(field, "")
    target = "${TEST_SECRET_BAD}" if field == "target" else "http://127.0.0.1:9"
    path = write_scenario(f"name: t\ntarget: '{target}'\nworkload: {{path: /, {workload}}}\n"
                          "load: {requests: 1, concurrency: 1}\n")
    result = cli("validate", path)
    assert result.returncode == 2 and f": {field}: " in result.stderr, result.stderr
    assert value[:6] not in result.stderr
    with pytest.raises(ScenarioError) as raised:  # the library's error, not only the CLI's
        parse_scenario(path.read_text())
    assert raised.value.field == field and value[:6] not in str(raised.value)


def test_a_literal_secret_field_is_not_quoted_in_its_error(cli, write_scenario):
    """Not even a password too short to be looked for elsewhere (3 characters)."""
    dsn = "postgresql://u:q7z@h/" + "x" * 1100
    path = write_scenario("name: t\n" + _pipeline(f"  dsn: {dsn}\n"))
    result = cli("validate", path)
    assert result.returncode == 2 and "workload.dsn: must be at most 1024" in result.stderr
    assert "q7z" not in result.stderr
    for workload, field in (("{endpoint: a, headers: {Cookie: \"k9w\\x01\"}}",
                             "workload.headers.Cookie"),
                            ("{requests: [{path: /a, headers: {Cookie: \"k9w\\x01\"}}]}",
                             "workload.requests[0].headers.Cookie")):
        path = write_scenario(f"name: t\nserver: {{endpoints: {{a: {{}}}}}}\nworkload: "
                              f"{workload}\nload: {{requests: 1, concurrency: 1}}\n")
        result = cli("validate", path)
        assert result.returncode == 2 and f"{field}: control" in result.stderr, result.stderr
        assert "k9w" not in result.stderr


def test_references_are_refused_where_the_value_would_be_written(write_scenario, cli):
    for field, line in (("name", "name: ${HOME}"),
                        ("expect", "name: t\nexpect: ['p99_ms < ${X}']")):
        path = write_scenario(f"{line}\nserver: {{endpoints: {{a: {{}}}}}}\n"
                              "workload: {endpoint: a}\nload: {requests: 1, concurrency: 1}\n")
        result = cli("validate", path)
        assert result.returncode == 2 and f": {field}: ${{NAME}} is not read here" in (
            result.stderr), result.stderr


@pytest.mark.parametrize("field, workload", [
    ("workload.path", "{path: '/a?key=${HOME}'}"),
    ("workload.path", "{path: [/b, '/a?key=${HOME}']}"),
    ("workload.requests[1].name", "{requests: [{path: /a}, {name: 'k ${HOME}', path: /b}]}"),
    ("workload.requests[0].path", "{requests: [{path: '/a?key=${HOME}'}]}"),
])
def test_a_reference_is_refused_in_the_path_and_request_columns(write_scenario, cli, field,
                                                                 workload):
    """The path and request columns hold these as written: a value read there would be in
    every row."""
    path = write_scenario(f"name: t\ntarget: http://127.0.0.1:1\nworkload: {workload}\n"
                          "load: {requests: 1, concurrency: 1}\n")
    result = cli("validate", path)
    assert result.returncode == 2, result.stderr
    assert f": {field}: ${{NAME}} is not read here" in result.stderr
    assert os.environ["HOME"] not in result.stderr


def test_a_requests_entrys_secret_header_is_kept_out_like_the_workloads(monkeypatch):
    monkeypatch.setenv("TEST_SECRET_MIX", "mixenv7-value")
    text = ("name: k\ntarget: http://127.0.0.1:1\nworkload:\n  requests:\n"
            "    - {path: /a, headers: {Authorization: 'Bearer mixlit5-value'}}\n"
            "    - {path: /b, headers: {X-Api-Key: '${TEST_SECRET_MIX}', Accept: a/b}}\n"
            "load: {requests: 1, concurrency: 1}\n")
    loaded = scenario_from_text(text)
    assert "mixlit5-value" not in loaded.kept_text and "${TEST_SECRET_MIX}" in loaded.kept_text
    entries = parse_scenario(loaded.kept_text, recorded=True).workload.requests
    assert entries[0].headers["Authorization"] == "***" and entries[1].headers["Accept"] == "a/b"
    assert "mixenv7-value" in loaded.secrets  # and both remembered: scrubbed from any output
    assert scrub("Bearer mixlit5-value mixenv7-value") == "*** ***"


# ---- the rule itself -----------------------------------------------------------------------


@pytest.mark.parametrize("dsn", [
    "host=h password='se cret' user=u",
    r"password=se\ cr\\et\'x dbname=d",
    r"password = 'it\'s' port=1",
    "user=u password=plain",
    "postgresql://u:p%40s\"s'w:d@h:5/db?sslmode=disable",
    "postgresql://u:p%3As@h/db",
    "postgresql://u:a:b@h/db",
    "postgresql://u@h/db?password=q%2Fz",
])
def test_dsn_passwords_are_read_as_libpq_reads_them(dsn):
    from psycopg.conninfo import conninfo_to_dict

    password = conninfo_to_dict(dsn)["password"]
    assert password in dsn_secrets(dsn)
    redacted = redact_dsn(dsn)
    assert password not in redacted and conninfo_to_dict(redacted)["password"] == "***"


def test_secret_headers_by_name():
    secret = ["Authorization", "proxy-authorization", "COOKIE", "X-Api-Key", "X-Auth-Token",
              "X-Client-Secret", "X-Password"]
    assert all(map(is_secret_header, secret))
    assert not any(map(is_secret_header, ["Accept", "Content-Type", "User-Agent", "X-Trace"]))


def test_interpolation_escapes_and_malformed_references():
    env = {"A": "1", "B": "two"}.get
    assert interpolate("x${A}-${B}", env) == ("x1-two", ["1", "two"])
    assert interpolate("$${A} and $$ and $x", env) == ("${A} and $$ and $x", [])
    for bad in ("${1A}", "${A", "${}"):
        with pytest.raises(UnreadableReference, match=r"write \$\$\{ for a literal"):
            interpolate(bad, env)


def test_scrub_catches_a_secret_cut_short():
    secret = "scrubtok-0123456789"
    assert scrub(f"got '{secret[:10]}…) and {secret}!", [secret]) == "got '***…) and ***!"
    assert scrub(f"(got {secret[:12]!r}", [secret]) == "(got '***'"
    assert scrub("the word scr is not it", [secret]) == "the word scr is not it"


def test_kept_text_rewrites_each_spelling_and_still_parses(monkeypatch):
    monkeypatch.setenv("TEST_SECRET_TOK", "keptenv1-value")
    text = ("name: k\nserver: {endpoints: {a: {}}}\n"
            "workload:\n  endpoint: a\n  headers:\n"
            "    Authorization: &tok \"Bearer kept\\x41lit2\"\n"  # an escape, and an anchor
            "    X-Other-Token: *tok\n"
            "    Cookie: |-\n      keptblock3\n"
            "    X-Api-Key: 'Bearer ${TEST_SECRET_TOK}'\n"
            "    Accept: text/plain  # not Bearer keptAlit2 nor keptenv1-value\n"
            "load: {requests: 1, concurrency: 1}\n")
    loaded = scenario_from_text(text)
    kept = loaded.kept_text
    for token in ("keptAlit2", "kept\\x41lit2", "keptblock3", "keptenv1-value"):
        assert token not in kept
    assert "'Bearer ${TEST_SECRET_TOK}'" in kept and "Accept: text/plain" in kept
    headers = parse_scenario(kept, recorded=True).workload.headers
    assert headers["Authorization"] == "***" and headers["Cookie"] == "***"
    assert loaded.scenario.workload.headers["X-Api-Key"] == "Bearer keptenv1-value"


def test_a_recorded_text_reads_what_it_can_and_keeps_the_rest(monkeypatch):
    """A report re-reads the kept text: unset variables, and a `${` from a run older than
    `${NAME}`, stay as written instead of failing the report."""
    monkeypatch.delenv("TEST_SECRET_UNSET", raising=False)
    monkeypatch.setenv("TEST_SECRET_SET", "set-value")
    text = ("name: r\ndescription: 'costs ${5}'\nserver: {endpoints: {a: {}}}\n"
            "workload: {endpoint: a, headers: {X-A: '${TEST_SECRET_UNSET}', "
            "X-B: '${TEST_SECRET_SET}', X-C: '${1'}}\nload: {requests: 1, concurrency: 1}\n")
    scenario = parse_scenario(text, recorded=True)
    assert scenario.description == "costs ${5}"
    assert scenario.workload.headers == {"X-A": "${TEST_SECRET_UNSET}", "X-B": "set-value",
                                         "X-C": "${1"}
    with pytest.raises(ScenarioError, match="description: "):
        parse_scenario(text)
