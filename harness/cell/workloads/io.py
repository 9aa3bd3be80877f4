"""`io`: one HTTP request to the mock server, or to an external target. Also the factory of the
HTTP clients every HTTP workload uses: `client: standard | lean`, blocking or for a loop."""

from __future__ import annotations

from pathlib import Path

from harness.core.checks import Checks
from harness.core.mix import Picker
from harness.core.tls import CONNECTS
from harness.core.wire import RequestMix, RequestSpec, endpoint_request
from harness.scenario.target import split_target


def http_settings(spec) -> dict:
    workload = spec.scenario.workload
    return {
        "connect_timeout_s": workload.timeout.connect / 1e9,
        "total_timeout_s": workload.timeout.total / 1e9,
        "ok_status": frozenset(workload.ok_status),
        "tls": spec.tls,
    }


def request_spec(spec, method: str | None = None) -> RequestSpec | RequestMix:
    """What every request of the cell sends (one RequestMix with `workload.requests`), built
    once before the clock starts."""
    workload = spec.scenario.workload
    checks = getattr(workload, "checks", None)
    if checks is not None:
        checks = Checks.from_data(checks.model_dump(by_alias=True))
    entries = getattr(workload, "mix", ())
    if entries:
        specs = tuple(_sent_to(spec, entry.path, method=entry.method,
                               headers=tuple(entry.headers.items()),
                               body=_body_bytes(entry.body), checks=checks) for entry in entries)
        return RequestMix(specs, tuple(e.weight for e in entries), spec.scenario.mix_seed)
    body = getattr(workload, "body", None)
    common = {"method": method or getattr(workload, "method", "GET"),
              "headers": tuple(getattr(workload, "headers", {}).items()),
              "body": _body_bytes(body, spec.body_file), "checks": checks}
    if spec.scenario.target or spec.scenario.service:
        return _sent_to(spec, spec.key.path, **common)
    return endpoint_request(workload.endpoint, **common)


def _sent_to(spec, path: str, **common) -> RequestSpec:
    if spec.scenario.target:
        return RequestSpec(path=path, seq_query=False, mock=False, **common)
    if spec.scenario.service:  # ?seq=N: the service may key its rows by it
        return RequestSpec(path=path, mock=False, **common)
    return RequestSpec(path=path, **common)  # a mock endpoint's path


def _body_bytes(body, body_file: str | None = None) -> bytes:
    if isinstance(body, int):
        return bytes(i % 251 for i in range(body)) if body else b""  # generated, not all one byte
    if body is not None:  # a file, or the image the runner encoded into one
        return Path(body_file or getattr(body, "file", None)).read_bytes()
    return b""


def blocking_client(spec, request: RequestSpec):
    host, port = split_target(spec.server_url)
    if spec.client == "lean":
        from harness.client.lean_blocking import LeanBlockingClient as Client
    else:
        from harness.client.standard_blocking import BlockingHttpClient as Client
    return Client(host, port, request, **http_settings(spec))


def loop_client(spec, request: RequestSpec):
    if spec.client == "lean":
        from harness.client.lean_async import LeanAsyncClient as Client
    else:
        from harness.client.standard_async import AiohttpClient as Client
    return Client(spec.server_url, request, spec.slots, **http_settings(spec))


def fault_labeller(spec):
    """`seq → the fault the mock scheduled` when the endpoint has faults, else None: the same
    seeded function the server uses, so each row says which injected fault it met. With
    `workload.requests`: the fault of the endpoint request `seq` was sent to."""
    scenario = spec.scenario
    server, name = scenario.server, getattr(scenario.workload, "endpoint", None)
    entries = getattr(scenario.workload, "mix", ())
    if entries and server is not None and not (scenario.target or scenario.service):
        from harness.scenario.faults import scheduled_fault

        names = [entry.path.partition("?")[0][1:] for entry in entries]
        if not any(server.endpoints[n].faults for n in names):
            return None
        picker = Picker(scenario.mix_seed, [entry.weight for entry in entries])
        return lambda seq: scheduled_fault(server, names[picker(seq)], seq)
    if server is None or name is None or not server.endpoints[name].faults:
        return None
    from harness.scenario.faults import scheduled_fault

    return lambda seq: scheduled_fault(server, name, seq)


class _SyncIo:
    def __init__(self, client, fault_of) -> None:
        self.client = client
        self.warm = client.warm
        self.run = client.request
        if fault_of is not None:
            self.run = lambda seq: client.request(seq)._replace(fault=fault_of(seq))
        self.abort = client.abort
        self.close = client.close


class _AsyncIo:
    def __init__(self, client, fault_of) -> None:
        self.client = client
        self.run = client.request  # (outcome, connection label)
        if fault_of is not None:
            async def run(seq: int):
                outcome, slot = await client.request(seq)
                return outcome._replace(fault=fault_of(seq)), slot

            self.run = run

    async def warm(self, n: int, rate_per_s: float) -> None:
        """Open up to n connections before the clock, at most rate_per_s a second."""
        await self.client.warm(n, rate_per_s)

    async def close(self) -> None:
        await self.client.close()


class IoWork:
    def __init__(self, spec) -> None:
        self.spec = spec
        self.request = request_spec(spec)
        self.fault_of = fault_labeller(spec)
        self._clients: list = []

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> _SyncIo:
        self._clients.append(blocking_client(self.spec, self.request))
        return _SyncIo(self._clients[-1], self.fault_of)

    async def async_runner(self) -> _AsyncIo:
        self._clients.append(loop_client(self.spec, self.request))
        return _AsyncIo(self._clients[-1], self.fault_of)

    def extras(self) -> dict:
        """The connections opened before the clock: how long each took (TLS included)."""
        connects = [ns for client in self._clients for ns in client.connects]
        return {CONNECTS: connects} if connects else {}
