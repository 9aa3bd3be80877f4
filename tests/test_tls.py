"""HTTPS on every backend and client, against the mock server over TLS (server.tls): the CA
it was made with handed to the cells, connect_ns on each connection's first request, a wrong
CA a `connect` error on every row, `verify: false` fine without one; and connect_ns of
connections the server closes after one response."""

import ssl

import pytest
import trustme

from harness.core.tls import TlsSettings, cell_tls, client_context, pooled_connects
from harness.run.runner import run_scenarios
from harness.scenario.loader import parse_scenario
from harness.scenario.model import LoadedScenario
from harness.store.reader import read_run
from tests.conftest import BACKENDS, harness

REQUESTS, CONCURRENCY = 12, 2
TLS = """name: {name}
server:
  tls: true
  endpoints:
    api: {{latency: 2ms, size: 100}}
workload:
  endpoint: api
  client: [standard, lean]
  {tls}
load: {{requests: {requests}, concurrency: {concurrency}, connect_rate: {connect_rate}}}
"""


def run(tmp_path, tls="", connect_rate=0):
    text = TLS.format(name="tls", tls=tls, requests=REQUESTS, concurrency=CONCURRENCY,
                      connect_rate=connect_rate)
    out = tmp_path / "out"
    run_scenarios([LoadedScenario("t.yaml", text, parse_scenario(text))], out=out)
    tables = read_run(out)
    return tables["requests"].to_pandas(), tables["cells"].to_pandas()


@pytest.fixture(scope="module")
def trusted(tmp_path_factory):
    return run(tmp_path_factory.mktemp("trusted"))


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wrong")
    other = folder / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))  # a CA that signed nothing of the server's
    return run(folder, tls=f"tls: {{ca: {other}}}")


@pytest.fixture(scope="module")
def unverified(tmp_path_factory):
    return run(tmp_path_factory.mktemp("unverified"), tls="tls: {verify: false}",
               connect_rate=1000)


def mine(rows, backend, client):
    return rows[(rows.backend == backend) & (rows.client == client)]


CELLS = [(b, c) for b in BACKENDS for c in ("standard", "lean")]


@pytest.mark.parametrize("backend, client", CELLS)
def test_https_on_every_backend_and_client(trusted, backend, client):
    rows = mine(trusted[0], backend, client)
    assert len(rows) == REQUESTS and rows.ok.all(), rows.error.value_counts()
    assert (rows.bytes_received == 100).all()
    # connect_ns: on each connection's first request, and on no other
    opened = rows.dropna(subset=["connect_ns"])
    first = rows.sort_values("start_ns").groupby("slot").head(1)
    assert sorted(opened.seq) == sorted(first.seq)
    assert 1 <= len(opened) <= CONCURRENCY and (opened.connect_ns > 0).all()
    assert rows.slot.str.startswith("conn-").all() or backend in ("threads", "processes")
    cell = trusted[1][(trusted[1].backend == backend) & (trusted[1].client == client)]
    assert cell.connect_p50_ns.isna().all()  # none opened before the clock (connect_rate 0)


@pytest.fixture(scope="module")
def closing(tmp_path_factory):
    """Plain HTTP, every response closing its connection (the request asks for it)."""
    text = TLS.format(name="closing", tls="headers: {Connection: close}", requests=REQUESTS,
                      concurrency=CONCURRENCY, connect_rate=0).replace("  tls: true\n", "")
    out = tmp_path_factory.mktemp("closing") / "out"
    run_scenarios([LoadedScenario("t.yaml", text, parse_scenario(text))], out=out)
    return read_run(out)["requests"].to_pandas()


@pytest.mark.parametrize("backend, client", CELLS)
def test_a_connection_closed_after_its_response_still_gives_its_row_connect_ns(closing,
                                                                               backend, client):
    """aiohttp lets go of such a connection before the request looks at it: its row keeps
    the time it took to open and the port it used all the same."""
    rows = mine(closing, backend, client)
    assert len(rows) == REQUESTS and rows.ok.all(), rows.error.value_counts()
    assert rows.connect_ns.notna().all() and (rows.connect_ns > 0).all()
    assert rows.slot.str.fullmatch(r"conn-\d+").all() or backend in ("threads", "processes")


@pytest.fixture(scope="module")
def timed_out(tmp_path_factory):
    """Plain HTTP, every request timing out after its connection opened (a failed request's
    connection is closed: the next one opens another)."""
    text = TLS.format(name="late", tls="timeout: {total: 100ms}", requests=4, concurrency=2,
                      connect_rate=0).replace("  tls: true\n", "").replace("2ms", "2s")
    out = tmp_path_factory.mktemp("late") / "out"
    run_scenarios([LoadedScenario("t.yaml", text, parse_scenario(text))], out=out)
    return read_run(out)["requests"].to_pandas()


@pytest.mark.parametrize("backend, client", CELLS)
def test_a_request_that_fails_after_connecting_keeps_its_connect_ns(timed_out, backend,
                                                                    client):
    rows = mine(timed_out, backend, client)
    assert len(rows) == 4 and (rows.error == "timeout").all(), rows.error.value_counts()
    assert rows.connect_ns.notna().all() and (rows.connect_ns > 0).all()


@pytest.mark.parametrize("backend, client", CELLS)
def test_a_wrong_ca_is_a_connect_error_on_every_row(wrong_ca, backend, client):
    rows = mine(wrong_ca[0], backend, client)
    assert len(rows) == REQUESTS
    assert (rows.error == "connect").all(), rows.error.value_counts()
    assert rows.connect_ns.isna().all()


@pytest.mark.parametrize("backend, client", CELLS)
def test_verify_false_needs_no_ca_and_counts_connections_before_the_clock(unverified,
                                                                           backend, client):
    rows = mine(unverified[0], backend, client)
    assert len(rows) == REQUESTS and rows.ok.all(), rows.error.value_counts()
    assert rows.connect_ns.isna().all()  # all opened before the clock
    cells = unverified[1]
    cell = cells[(cells.backend == backend) & (cells.client == client)].iloc[0]
    assert 0 < cell.connect_p50_ns <= cell.connect_p99_ns


def test_one_line_run_with_the_ca_harness_serve_prints(tmp_path, write_scenario):
    import re
    import subprocess
    import sys
    import time

    path = write_scenario(TLS.format(name="served", tls="", requests=1, concurrency=1,
                                     connect_rate=0))
    server = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"https://127\.0\.0\.1:\d+", server.stdout.readline()).group(0)
        deadline = time.monotonic() + 30
        while (line := server.stderr.readline()) and "throwaway CA" not in line:
            assert time.monotonic() < deadline
        ca = re.search(r"give clients (\S+)", line).group(1)
        done = harness("run", url + "/api", "-n", "20", "-c", "2", "--tls-ca", ca,
                       "-o", tmp_path / "out", "--set", "load.connect_rate=0")
        assert done.returncode == 0, done.stderr
        rows = read_run(tmp_path / "out")["requests"].to_pandas()
        assert len(rows) == 20 and rows.ok.all() and rows.connect_ns.notna().sum() == 2
        refused = harness("run", url + "/api", "-n", "2", "-c", "1", "-o", tmp_path / "no")
        assert refused.returncode == 0, refused.stderr
        rows = read_run(tmp_path / "no")["requests"].to_pandas()
        assert (rows.error == "connect").all()  # the system's CAs do not trust it
        unchecked = harness("run", url + "/api", "-n", "4", "-c", "2", "--insecure",
                            "-o", tmp_path / "insecure")
        assert unchecked.returncode == 0, unchecked.stderr
        assert read_run(tmp_path / "insecure")["requests"].to_pandas().ok.all()
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("text, problem", [
    ("server: {endpoints: {api: {}}}\nworkload: {endpoint: api, tls: {verify: false}}",
     "workload.tls: applies to https only"),
    ("target: http://127.0.0.1:1\nworkload: {path: /, tls: {ca: x.pem}}",
     "workload.tls: applies to https only"),
    ("target: https://127.0.0.1:1\nworkload: {path: /, tls: {sni: 'bad name'}}",
     "workload.tls.sni"),
    ("target: https://127.0.0.1:1\nworkload: {path: /, tls: {verfy: false}}",
     "did you mean 'verify'"),
    ("target: https://127.0.0.1:1\nworkload: {path: /, tls: {verify: false, ca: x.pem}}",
     "workload.tls: ca: not with verify: false"),
])
def test_bad_tls_settings(write_scenario, text, problem):
    path = write_scenario(f"name: a\n{text}\nload: {{requests: 1, concurrency: 1}}\n")
    result = harness("validate", path)
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreadable_or_bad_ca_file_is_one_line(write_scenario, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    absent = tmp_path / "absent.pem"
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    for ca, problem in ((absent, f"cannot read {absent} (No such file or directory)"),
                        (junk, f"{junk} holds no PEM certificate"),
                        (empty, f"{empty} holds no PEM certificate")):
        path = write_scenario("name: a\ntarget: https://127.0.0.1:1\n"
                              f"workload: {{path: /, tls: {{ca: {ca}}}}}\n"
                              "load: {requests: 1, concurrency: 1}\n")
        result = harness("validate", path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {path}: workload.tls.ca: {problem}"


def test_cell_settings_and_contexts():
    fields = {"verify": True, "ca_pem": None, "sni": "example.test"}
    assert cell_tls(fields, "http://127.0.0.1:1", "CA") is None
    assert cell_tls(fields, "https://127.0.0.1:1", "CA")["ca_pem"] == "CA"
    assert cell_tls({**fields, "ca_pem": "MINE"}, "https://h", "CA")["ca_pem"] == "MINE"
    loose = client_context(TlsSettings(verify=False))
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
    assert client_context(TlsSettings()).verify_mode == ssl.CERT_REQUIRED
    assert client_context(TlsSettings()) is client_context(TlsSettings())  # one per process
    assert pooled_connects([{"connect_ns": [1, 2]}, {}, {"connect_ns": [3]}]) == {
        "connect_ns": [1, 2, 3]}
    assert pooled_connects([{}, {"kernel_ns_per_unit": 1.0}]) == {}


def test_the_summary_connect_p50_prefers_connections_under_the_clock():
    from types import SimpleNamespace

    import pandas as pd

    from harness.analysis.summary import _connect_p50_ms

    cell = SimpleNamespace(connect_p50_ns=9_000_000)
    under = pd.DataFrame({"connect_ns": [1_000_000, None, 3_000_000, None]})
    assert _connect_p50_ms(under, cell) == 2.0
    assert _connect_p50_ms(pd.DataFrame({"connect_ns": [None, None]}), cell) == 9.0
    assert pd.isna(_connect_p50_ms(pd.DataFrame({"connect_ns": [None]}),
                                   SimpleNamespace(connect_p50_ns=None)))


@pytest.mark.parametrize("listen, extra", [("127.0.0.1", None), ("0.0.0.0", None),
                                           ("10.0.0.5", ("IP Address", "10.0.0.5")),
                                           ("fd00::5", ("IP Address", "FD00:0:0:0:0:0:0:5"))])
def test_the_mock_certificate_names_the_address_it_listens_on(tmp_path, listen, extra):
    from harness.mock.tls import mint

    chain, ca_pem = mint(tmp_path, listen)
    names = set(ssl._ssl._test_decode_cert(chain)["subjectAltName"])
    assert {("IP Address", "127.0.0.1"), ("DNS", "localhost")} <= names
    assert extra is None or extra in names
    assert ("IP Address", "0.0.0.0") not in names  # a wildcard is no name to certify
    assert "BEGIN CERTIFICATE" in ca_pem
