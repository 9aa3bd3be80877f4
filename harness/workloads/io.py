"""`io`: one HTTP request to the mock server (the foundation's workload)."""

from __future__ import annotations

from harness.http.blocking import BlockingHttpClient


def http_settings(spec) -> dict:
    workload = spec.scenario.workload
    return {
        "endpoint": workload.endpoint,
        "connect_timeout_s": workload.timeout.connect / 1e9,
        "total_timeout_s": workload.timeout.total / 1e9,
        "ok_status": frozenset(workload.ok_status),
    }


def blocking_client(spec) -> BlockingHttpClient:
    host, port = spec.host_port
    return BlockingHttpClient(host, port, **http_settings(spec))


def aiohttp_client(spec):
    from harness.http.aiohttp_client import AiohttpClient

    return AiohttpClient(spec.server_url, concurrency=spec.concurrency, **http_settings(spec))


class _AsyncIo:
    def __init__(self, client) -> None:
        self.client = client
        self.run = client.request  # (outcome, connection label)

    async def close(self) -> None:
        await self.client.close()


class IoWorkload:
    def __init__(self, spec) -> None:
        self.spec = spec

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> BlockingHttpClient:
        client = blocking_client(self.spec)
        client.run = client.request
        return client

    async def async_runner(self) -> _AsyncIo:
        return _AsyncIo(aiohttp_client(self.spec))

    def extras(self) -> dict:
        return {}
