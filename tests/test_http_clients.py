"""Both HTTP clients classify outcomes the same way: ok, http_status, timeout, connect."""

import asyncio
import socket

import pytest

from harness.client.standard_async import AiohttpClient
from harness.client.standard_blocking import BlockingHttpClient
from harness.mock.process import ServerProcess
from tests.conftest import small_scenario

OK = frozenset(range(200, 300))


def blocking(url, total_s=5.0):
    host, port = url.removeprefix("http://").split(":")
    client = BlockingHttpClient(host, int(port), "api", 1.0, total_s, OK)
    try:
        return client.request(3)
    finally:
        client.close()


def via_aiohttp(url, total_s=5.0):
    async def go():
        client = AiohttpClient(url, "api", 2, 1.0, total_s, OK)
        try:
            outcome, slot = await client.request(3)
            return outcome
        finally:
            await client.close()

    return asyncio.run(go())


CLIENTS = [blocking, via_aiohttp]


@pytest.fixture(scope="module")
def servers():
    fast = small_scenario(latency="5ms")
    failing = small_scenario(latency="5ms").replace("size: 128", "size: 0, status: 503")
    slow = small_scenario(latency="2s")
    with ServerProcess(fast) as a, ServerProcess(failing) as b, ServerProcess(slow) as c:
        yield a.url, b.url, c.url


@pytest.mark.parametrize("request_", CLIENTS)
def test_ok_carries_the_server_delay(servers, request_):
    outcome = request_(servers[0])
    assert outcome.ok and outcome.status == 200 and outcome.error is None
    assert outcome.server_delay_target_ns == 5_000_000 <= outcome.server_delay_ns


@pytest.mark.parametrize("request_", CLIENTS)
def test_status_outside_ok_status(servers, request_):
    outcome = request_(servers[1])
    assert not outcome.ok and outcome.status == 503 and outcome.error == "http_status"


@pytest.mark.parametrize("request_", CLIENTS)
def test_total_timeout(servers, request_):
    outcome = request_(servers[2], total_s=0.2)
    assert not outcome.ok and outcome.status == 0 and outcome.error == "timeout"


@pytest.mark.parametrize("request_", CLIENTS)
def test_nothing_listening_is_a_connect_error(request_):
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = request_(f"http://127.0.0.1:{port}")
    assert not outcome.ok and outcome.status == 0 and outcome.error == "connect"
