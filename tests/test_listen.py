"""`server.listen`: the address the mock server binds (loopback by default), its validation,
and the URLs that reach it from this machine and from another one."""

from __future__ import annotations

import socket

import pytest

from harness.core.errors import HarnessError, ScenarioError
from harness.core.wire import local_opener
from harness.mock.listen import seen_from_elsewhere, url_for
from harness.mock.process import ServerProcess
from harness.scenario.loader import parse_scenario

BASE = """\
name: t
server:
  engine: {engine}{more}
  endpoints:
    api: {{latency: 1ms, size: 5}}
workload: {{endpoint: api}}
load: {{requests: 5, concurrency: 2}}
"""


def scenario(listen: str | None = None, engine: str = "aiohttp", processes: int = 1) -> str:
    more = "" if listen is None else f"\n  listen: {listen!r}"
    if processes > 1:
        more += f"\n  processes: {processes}"
    return BASE.format(engine=engine, more=more)


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.256", "1.2.3", "", "example.com"])
def test_a_listen_address_that_is_not_an_ip_is_refused_in_one_line(bad):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(scenario(bad), "s.yaml")
    message = str(error.value)
    assert message.startswith("s.yaml: server.listen: must be an IPv4 or IPv6 address")
    assert "\n" not in message and repr(bad) in message


def test_listen_defaults_to_loopback_and_keeps_what_is_given():
    assert parse_scenario(scenario()).server.listen == "127.0.0.1"
    for given in ("0.0.0.0", "::", "::1", "10.1.2.3"):
        assert parse_scenario(scenario(given)).server.listen == given


def test_the_run_refuses_a_bad_listen_with_exit_2(write_scenario, cli):
    path = write_scenario(scenario("my-laptop"))
    result = cli("run", path, "--out", path.parent / "out")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{path}: server.listen:" in result.stderr


def test_a_wildcard_is_reached_by_this_machines_host_name():
    host = socket.gethostname()
    assert url_for("0.0.0.0", 80) == f"http://{host}:80"
    assert url_for("::", 81) == f"http://{host}:81"
    assert url_for("::1", 82) == "http://[::1]:82"
    assert url_for("10.0.0.5", 83) == "http://10.0.0.5:83"
    assert seen_from_elsewhere(f"http://{host}:80") == f"http://{host}:80"
    assert seen_from_elsewhere("http://10.0.0.5:83") == "http://10.0.0.5:83"
    for loopback in ("http://127.0.0.1:80", "http://[::1]:82"):
        with pytest.raises(HarnessError, match="loopback.*server.listen: 0.0.0.0"):
            seen_from_elsewhere(loopback)


def _get(url: str) -> int:
    with local_opener().open(url + "/api?seq=1", timeout=5) as response:
        assert len(response.read()) == 5
        return response.status


@pytest.mark.parametrize(("engine", "processes"), [("aiohttp", 1), ("fast", 1), ("fast", 2)])
def test_the_server_binds_the_ipv6_loopback_and_answers_there(engine, processes):
    with ServerProcess(scenario("::1", engine, processes)) as server:
        assert server.url.startswith("http://[::1]:")
        assert _get(server.url) == 200
        port = int(server.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):  # bound to ::1 only, not IPv4's loopback
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(HarnessError):
            server.remote_url()


def test_by_default_the_server_is_on_ipv4_loopback():
    with ServerProcess(scenario()) as server:
        assert server.url.startswith("http://127.0.0.1:") and _get(server.url) == 200
