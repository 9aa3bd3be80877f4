"""What each step the loop backends take per request costs, in isolation: ns per call,
the best of 5 repeats, on uvloop. A measurement, not a test; with bench/profile_cell.py it says
where the harness's per-request time goes beyond the bare loop (bench/bare_loops.py), whose
per-request work is the client call and a counter.

Per request, AsyncioBackend._load does: produce (room.acquire, Producer.take, now_ns,
jobs.put_nowait), dispatch (jobs.get, room.release, limit.acquire, now_ns, Producer.over,
Producer.release, a dict entry, create_task, a set add, add_done_callback), run_one (the
client call between gauge.enter and gauge.exit, limit.release, the record). The
lean client builds an Outcome per response. The spooler thread drains the buffer to Arrow
(RecordBuffer.drain) while the loop runs, under the same GIL.

    python -m bench.request_parts
"""

from __future__ import annotations

import asyncio
import time
import timeit
from array import array

from bench import machine

N = 200_000
ROWS = 200_000


def per_call(stmt: str, n: int = N, setup: str = "pass", **names) -> float:
    return min(timeit.repeat(stmt, setup, globals=names, number=n, repeat=5)) / n * 1e9


def sync_parts() -> list[tuple[str, float]]:
    from harness.cell.backends.base import CellSpec, Producer, StopFlag
    from harness.cell.buffer import RecordBuffer
    from harness.cell.gauge import InFlightGauge
    from harness.core.clock import now_ns
    from harness.core.keys import CellKey
    from harness.core.schema import Outcome
    from harness.scenario.loader import parse_scenario

    outcome = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                      bytes_received=128)
    from bench.record_baseline import BaselineRecordBuffer

    gauge = InFlightGauge.for_event_loop(now_ns())
    spec = CellSpec(parse_scenario("name: x\nworkload: {type: fake, duration: 1ms}\n"
                                   "load: {duration: 100s, concurrency: 50}\n"),
                    CellKey(backend="uvloop", concurrency=50, repetition=0))
    producer = Producer(spec, StopFlag())
    rows: list = []
    return [
        ("RecordBuffer.row((9 values) + outcome) (the hot paths' entry: one list.extend)",
         per_call("row(('worker-0', 'conn-40000', 1, 1, 1, 1, 2, 50, False) + o)",
                  setup="row = RecordBuffer().row", RecordBuffer=RecordBuffer, o=outcome)),
        ("RecordBuffer.append (the rarer paths: a Python call building the same tuple)",
         per_call("append('worker-0', 'conn-40000', 1, 1, 1, 1, 2, o, 50, False)",
                  setup="append = RecordBuffer().append", RecordBuffer=RecordBuffer,
                  o=outcome)),
        ("  for comparison: the buffer before (bench/record_baseline.py): one struct pack, "
         "one bytearray extend",
         per_call("append('worker-0', 'conn-40000', 1, 1, 1, 1, 2, o, 50, False)",
                  setup="append = Buffer().append", Buffer=BaselineRecordBuffer, o=outcome)),
        ("  for comparison: one list.append of a row tuple (the same fields, one allocation)",
         per_call("append((w, s, 1, 1, 1, 1, 2, o, 50, False))", append=rows.append,
                  w="worker-0", s="conn-40000", o=outcome)),
        ("gauge.enter + gauge.exit (event loop: LoopGauge, no lock)",
         per_call("g.enter(); g.exit()", g=gauge)),
        ("now_ns (time.monotonic_ns)", per_call("now_ns()", now_ns=now_ns)),
        ("Producer.take", per_call("p.take()", p=producer)),
        ("Producer.take_seq (a slot without a queue)", per_call("p.take_seq()", p=producer)),
        ("Producer.release (threading.Lock)", per_call("p.release(None)", p=producer)),
        ("Producer.over(at)", per_call("p.over(1)", p=producer)),
        ("Outcome(...) with keywords (the lean client, per response)",
         per_call("Outcome(True, 200, None, 12345, server_delay_target_ns=12000, "
                  "bytes_sent=0, bytes_received=128)", Outcome=Outcome)),
        ("  for comparison: Outcome built positionally via tuple.__new__",
         per_call("new(Outcome, (True, 200, None, 12345, None, None, None, None, None, 12000, "
                  "0, 128, None))", new=tuple.__new__, Outcome=Outcome)),
    ]


async def loop_parts() -> list[tuple[str, float]]:
    n = 100_000
    found = []

    async def noop() -> None:
        pass

    def timed(label: str, ns: int) -> None:
        found.append((label, ns / n))

    sem = asyncio.Semaphore(10**9)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await sem.acquire()
        sem.release()
    timed("asyncio.Semaphore acquire + release (free)", time.perf_counter_ns() - t0)
    queue: asyncio.Queue = asyncio.Queue()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        queue.put_nowait(1)
        await queue.get()
    timed("asyncio.Queue put_nowait + get (an item ready)", time.perf_counter_ns() - t0)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await noop()
    timed("await a coroutine (the bare loop's call)", time.perf_counter_ns() - t0)
    live: set = set()
    t0 = time.perf_counter_ns()
    for _ in range(n // 50):
        for _ in range(50):
            task = asyncio.create_task(noop())
            live.add(task)
            task.add_done_callback(live.discard)
        await asyncio.sleep(0)  # the tasks' first (and only) step
        await asyncio.sleep(0)  # their done callbacks
    timed("create_task + set add + done callback, run (a task per request)",
          time.perf_counter_ns() - t0)
    return found


def drain_parts() -> list[tuple[str, float]]:
    import numpy as np
    import pyarrow as pa

    from harness.cell.buffer import RecordBuffer
    from harness.core.schema import Outcome

    pa.array([0])  # the first conversion of a list imports pandas: not a per-row cost
    outcome = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                      bytes_received=128)
    buffer = RecordBuffer()
    row = buffer.row
    for seq in range(ROWS):
        row(("worker-0", "conn-40000", seq, seq, seq, seq, seq + 1, 50, False) + outcome)
    t0 = time.perf_counter_ns()
    buffer.drain()
    drain = (time.perf_counter_ns() - t0) / ROWS
    column = array("q", range(ROWS))
    t0 = time.perf_counter_ns()
    pa.array(column, pa.int64())
    sequence = (time.perf_counter_ns() - t0) / ROWS
    t0 = time.perf_counter_ns()
    pa.array(np.frombuffer(column, dtype=np.int64))
    buffered = (time.perf_counter_ns() - t0) / ROWS
    return [("RecordBuffer.drain, per row (the spooler thread)", drain),
            ("  of which one int column: pa.array(array('q')) (a sequence), per row",
             sequence),
            ("  for comparison: pa.array(np.frombuffer(array('q'))), per row", buffered)]


def main() -> None:
    import uvloop

    rows = sync_parts()
    rows += uvloop.run(loop_parts())
    rows += drain_parts()
    for label, ns in rows:
        print(f"{ns:9,.0f} ns  {label}")
    pressure = machine.cpu_pressure_text(("avg10", "avg60", "avg300"), "{window} {value:.2f} %",
                                         unknown=None)
    if pressure is not None:
        print(f"machine CPU pressure: {pressure}")


if __name__ == "__main__":
    main()
