"""Requests a second of the lean async client against aiohttp's, both on uvloop, against the mock
server (one ServerProcess, zero latency: server-bound). A measurement, not a test.

Each client runs `--concurrency` request loops for `--seconds`, one client after the other, after
a warm-up round that opens its connections. Printed per client: requests/s, the client's CPU
(this process) and the server's, in % of one core and per request, and the ratio lean ÷
aiohttp. CPU per request is the steadier figure on a shared machine.

    python -m bench.lean_client [--seconds 5] [--concurrency 50] [--asyncio] [--blocking]

--asyncio repeats the pair on the default asyncio loop; --blocking also compares the blocking
clients (LeanBlockingClient, BlockingHttpClient), one request at a time from one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

from harness.client.lean_async import LeanAsyncClient
from harness.client.lean_blocking import LeanBlockingClient
from harness.client.standard_async import AiohttpClient
from harness.client.standard_blocking import BlockingHttpClient
from harness.mock.process import ServerProcess

SCENARIO = """\
name: lean_bench
server:
  endpoints:
    api: {latency: 0, size: 128}
workload: {endpoint: api}
load: {requests: 1, concurrency: 1, workers: 1}
backends: [uvloop]
"""
OK = frozenset(range(200, 300))


async def drive(client, concurrency: int, seconds: float) -> tuple[int, int]:
    await asyncio.gather(*(client.request(10**9 + i) for i in range(concurrency)))  # warm-up
    done = errors = 0
    stop = time.monotonic() + seconds

    async def loop(first: int) -> None:
        nonlocal done, errors
        seq = first
        while time.monotonic() < stop:
            outcome, _ = await client.request(seq)
            done += 1
            errors += not outcome.ok
            seq += concurrency

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    await client.close()
    return done, errors


def drive_blocking(client, seconds: float) -> tuple[int, int]:
    client.request(10**9)  # warm-up: connects
    done = errors = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        errors += not client.request(done).ok
        done += 1
    client.close()
    return done, errors


def measure(server: ServerProcess, name: str, make, loop_factory, concurrency: int,
            seconds: float) -> float:
    cpu0, server0 = time.process_time(), server.stats()["cpu_s"]
    t0 = time.monotonic()

    async def main():
        return await drive(make(), concurrency, seconds)

    if loop_factory is None:
        done, errors = drive_blocking(make(), seconds)
    else:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            done, errors = runner.run(main())
    wall = time.monotonic() - t0  # the warm-up included, as in the CPU times
    cpu, server_cpu = time.process_time() - cpu0, server.stats()["cpu_s"] - server0
    rate = done / seconds
    total = done + concurrency  # the warm-up's requests are in the CPU times too
    print(f"{name:18s} {rate:7.0f} req/s  errors {errors:<3d} CPU: client {100 * cpu / wall:3.0f} %"
          f" {1e6 * cpu / total:5.1f} µs/req, server {100 * server_cpu / wall:3.0f} %"
          f" {1e6 * server_cpu / total:5.1f} µs/req")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--asyncio", action="store_true", help="also both on the asyncio loop")
    parser.add_argument("--blocking", action="store_true", help="also the blocking clients")
    args = parser.parse_args()
    c = args.concurrency
    with ServerProcess(SCENARIO) as server:
        def lean():
            return LeanAsyncClient(server.url, "api", c, 1.0, 5.0, OK)

        def aio():
            return AiohttpClient(server.url, "api", c, 1.0, 5.0, OK)

        loops = [("uvloop", uvloop.new_event_loop)]
        if args.asyncio:
            loops.append(("asyncio", asyncio.new_event_loop))
        for loop_name, factory in loops:
            rate_lean = measure(server, f"lean on {loop_name}", lean, factory, c, args.seconds)
            rate_aio = measure(server, f"aiohttp on {loop_name}", aio, factory, c, args.seconds)
            print(f"{'lean / aiohttp':18s} {rate_lean / rate_aio:7.2f} × the requests/s")
        if args.blocking:
            host, port = server.url.removeprefix("http://").split(":")
            settings = (host, int(port), "api", 1.0, 5.0, OK)
            rate_lean = measure(server, "lean blocking", lambda: LeanBlockingClient(*settings),
                                None, 1, args.seconds)
            rate_std = measure(server, "http.client", lambda: BlockingHttpClient(*settings),
                               None, 1, args.seconds)
            print(f"{'lean / http.client':18s} {rate_lean / rate_std:7.2f} × the requests/s")


if __name__ == "__main__":
    main()
