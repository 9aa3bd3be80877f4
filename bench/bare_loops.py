"""The bare loops the harness wraps, without the harness: `concurrency` coroutines on
one event loop, each doing requests back to back for `seconds` against one URL, counted in
place — no producer, no dispatcher, no in-flight gauge, no records, no sampler. What the
harness's `asyncio`/`uvloop` backends add on top of the same client is the difference.

    python -m bench.bare_loops lean|aiohttp URL [--seconds 5] [--concurrency 50] [--asyncio]
                               [--json]

`lean`: harness.client.lean_async.LeanAsyncClient (the client of `client: lean`), `request(seq)`
as a cell calls it. `aiohttp`: one aiohttp.ClientSession as one would write it by hand (a connector
of `concurrency` keep-alive connections, `session.get(url)` and `read()` the body) — not the
harness's AiohttpClient wrapper, which is part of what is measured against it. URL is the base
(`http://127.0.0.1:PORT`) with the path after it (`/api`); the lean loop appends `?seq=N` as a
cell does, and so does the aiohttp loop. Connections are opened inside the timed window, as in
a cell and under wrk. Printed: requests/s (ok requests ÷ the window, as the harness counts),
requests, errors, the process's CPU time; `--json` prints one JSON object instead. Loopback
only; bounded in time (≤ 120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

OK = frozenset(range(200, 300))


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        sys.exit(f"bare_loops: {url}: loopback addresses only")


async def lean_loop(url: str, concurrency: int, seconds: float) -> tuple[int, int, float]:
    from harness.client.lean_async import LeanAsyncClient

    parts = urlsplit(url)
    client = LeanAsyncClient(f"http://{parts.netloc}", parts.path.lstrip("/"), concurrency,
                             2.0, 30.0, OK)
    done = errors = 0
    t0 = time.monotonic()
    stop = t0 + seconds

    async def loop(seq: int) -> None:
        nonlocal done, errors
        request = client.request
        while time.monotonic() < stop:
            outcome, _ = await request(seq)
            done += 1
            errors += not outcome.ok
            seq += concurrency

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    elapsed = time.monotonic() - t0
    await client.close()
    return done, errors, elapsed


async def aiohttp_loop(url: str, concurrency: int, seconds: float) -> tuple[int, int, float]:
    import aiohttp

    done = errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30, connect=2)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        t0 = time.monotonic()
        stop = t0 + seconds

        async def loop(seq: int) -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                try:
                    async with session.get(f"{url}?seq={seq}") as resp:
                        await resp.read()
                        errors += not 200 <= resp.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                done += 1
                seq += concurrency

        await asyncio.gather(*(loop(i) for i in range(concurrency)))
        elapsed = time.monotonic() - t0
    return done, errors, elapsed


def run(client: str, url: str, concurrency: int, seconds: float, use_uvloop: bool = True
        ) -> dict:
    check_loopback(url)
    main = {"lean": lean_loop, "aiohttp": aiohttp_loop}[client]
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    if client == "lean":  # imported before the CPU clock, as a cell does before its own
        import harness.client.lean_async  # noqa: F401
    else:
        import aiohttp  # noqa: F401
    cpu0 = time.process_time()
    with asyncio.Runner(loop_factory=factory) as runner:
        done, errors, elapsed = runner.run(main(url, concurrency, seconds))
    return {"client": client, "loop": "uvloop" if use_uvloop else "asyncio",
            "requests": done, "errors": errors, "seconds": elapsed,
            "rps": (done - errors) / elapsed,
            "cpu_s": time.process_time() - cpu0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=("lean", "aiohttp"))
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/api")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--asyncio", action="store_true", help="the default loop, not uvloop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 1 <= args.concurrency <= 10_000:
        parser.error("--seconds must be in (0, 120] and --concurrency in 1..10000")
    result = run(args.client, args.url, args.concurrency, args.seconds, not args.asyncio)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bare {result['client']} loop on {result['loop']}, {args.concurrency} "
              f"concurrent: {result['rps']:,.0f} requests/s ({result['requests']} requests, "
              f"{result['errors']} errors, {result['seconds']:.2f} s, CPU "
              f"{result['cpu_s']:.2f} s)")


if __name__ == "__main__":
    main()
