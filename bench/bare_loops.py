"""The bare loops the harness wraps, without the harness: `concurrency` coroutines on
one event loop (or, with `--threads`, `concurrency` OS threads), each doing requests back to
back for `seconds` against one URL, counted in place — no producer, no dispatcher, no in-flight
gauge, no records, no sampler. What the harness's `asyncio`/`uvloop` backends (or its `threads`
backend) add on top of the same client is the difference.

    python -m bench.bare_loops lean|aiohttp URL [--seconds 5] [--concurrency 50]
                               [--asyncio | --threads] [--json]

`lean`: harness.client.lean_async.LeanAsyncClient (the client of `client: lean`), `request(seq)`
as a cell calls it. `aiohttp`: one aiohttp.ClientSession as one would write it by hand (a connector
of `concurrency` keep-alive connections, `session.get(url)` and `read()` the body) — not the
harness's AiohttpClient wrapper, which is part of what is measured against it. URL is the base
(`http://127.0.0.1:PORT`) with the path after it (`/api`); the lean loop appends `?seq=N` as a
cell does, and so does the aiohttp loop. `--threads` (lean only): each thread with its own
harness.client.lean_blocking.LeanBlockingClient (the client of a `threads` cell with `client:
lean`), `request(seq)` back to back. Connections are opened inside the timed window, as under
wrk. Printed: requests/s (ok requests ÷ the window, as the harness counts), requests, errors, the
process's CPU time (user and system, every thread, start-up left out) and context switches;
`--json` prints one JSON object instead. Loopback only; bounded in time (≤ 120 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
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


def thread_loop(url: str, concurrency: int, seconds: float) -> tuple[int, int, float]:
    """`concurrency` threads, each with its own blocking lean connection; each counts its own
    requests (a shared counter would lose updates between threads)."""
    from harness.client.lean_blocking import LeanBlockingClient

    parts = urlsplit(url)
    counts = [[0, 0] for _ in range(concurrency)]
    t0 = time.monotonic()
    stop = t0 + seconds

    def loop(index: int) -> None:
        client = LeanBlockingClient(parts.hostname, parts.port, parts.path.lstrip("/"), 2.0,
                                    30.0, OK)
        request, count, seq = client.request, counts[index], index
        while time.monotonic() < stop:
            outcome = request(seq)
            count[0] += 1
            count[1] += not outcome.ok
            seq += concurrency
        client.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.monotonic() - t0
    return sum(c[0] for c in counts), sum(c[1] for c in counts), elapsed


LOOPS = ("uvloop", "asyncio", "threads")


def run(client: str, url: str, concurrency: int, seconds: float, loop: str = "uvloop") -> dict:
    check_loopback(url)
    if loop == "threads":
        if client != "lean":
            raise ValueError("the thread loop runs the lean client only")
        import harness.client.lean_blocking  # noqa: F401  (before the CPU clock)

        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        done, errors, elapsed = thread_loop(url, concurrency, seconds)
    else:
        main = {"lean": lean_loop, "aiohttp": aiohttp_loop}[client]
        if loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        else:
            factory = asyncio.new_event_loop
        if client == "lean":  # imported before the CPU clock, as a cell does before its own
            import harness.client.lean_async  # noqa: F401
        else:
            import aiohttp  # noqa: F401
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        with asyncio.Runner(loop_factory=factory) as runner:
            done, errors, elapsed = runner.run(main(url, concurrency, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    user_s, sys_s = usage.ru_utime - usage0.ru_utime, usage.ru_stime - usage0.ru_stime
    return {"client": client, "loop": loop,
            "requests": done, "errors": errors, "seconds": elapsed,
            "rps": (done - errors) / elapsed,
            "cpu_s": user_s + sys_s, "cpu_user_s": user_s, "cpu_sys_s": sys_s,
            "ctx_switches": (usage.ru_nvcsw - usage0.ru_nvcsw)
            + (usage.ru_nivcsw - usage0.ru_nivcsw)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("client", choices=("lean", "aiohttp"))
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/api")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--asyncio", action="store_true", help="the default loop, not uvloop")
    where.add_argument("--threads", action="store_true",
                       help="OS threads with blocking connections (lean only), not a loop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.seconds <= 120 or not 1 <= args.concurrency <= 10_000:
        parser.error("--seconds must be in (0, 120] and --concurrency in 1..10000")
    if args.threads and args.client != "lean":
        parser.error("--threads runs the lean client only")
    loop = "threads" if args.threads else "asyncio" if args.asyncio else "uvloop"
    result = run(args.client, args.url, args.concurrency, args.seconds, loop)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"bare {result['client']} loop on {result['loop']}, {args.concurrency} "
              f"concurrent: {result['rps']:,.0f} requests/s ({result['requests']} requests, "
              f"{result['errors']} errors, {result['seconds']:.2f} s, CPU "
              f"{result['cpu_s']:.2f} s: user {result['cpu_user_s']:.2f} s, system "
              f"{result['cpu_sys_s']:.2f} s; {result['ctx_switches']:,} context switches)")


if __name__ == "__main__":
    main()
