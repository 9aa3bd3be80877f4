"""One cell's load split across `generators` processes, each with its own event loop (or its
own threads). The cell's process is generator 0 and the coordinator: it starts the others as
`python -m harness.cell` children with the same job plus their index, waits until every one is
ready (sessions and connections open), gives them all one t0, and when they end merges what
they report. Requests come from one shared counter (closed model) or arrival k goes to
generator k mod N (open model); each generator spools its own rows, which the runner merges
with the `generator` column.

The cell's sampler sees the generators as one backend (`Crowd`): in flight is the sum of the
generators' live counts read on one clock (each keeps its gauge in the shared file), completed
the sum of their counts, loop lag the worst of any. A generator that dies leaves the requests
it was given and never recorded as `lost` rows; the others go on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from harness.cell.backends.base import CellSpec, StopFlag
from harness.cell.buffer import RecordBuffer
from harness.cell.gauge import IN_FLIGHT, LAST
from harness.cell.tickets import COMPLETED, LAG_MAX, Shared
from harness.core.clock import now_ns
from harness.core.job import SERVER_DIED, CellJob
from harness.core.schema import LOST_OUTCOME, RECORD_SCHEMA
from harness.core.tls import pooled_connects
from harness.store.spool import read_batches, spool_files, spool_name, write_table

SHARED_FILE = "generators.shared"
PUBLISH_S = 0.02  # how often a generator publishes its completed count and worst loop lag


def gauge_state(shared: Shared, generator: int):
    """Where a generator's gauge keeps [in flight, peak, last stamp]: in the shared file, so
    the cell's sampler can sum the live counts."""
    base = shared.field(generator, 0)
    return shared.words[base:base + 3]


class Publisher(threading.Thread):
    """In a generator: its completed count and worst recent loop lag into the shared file."""

    def __init__(self, backend, shared: Shared, generator: int) -> None:
        super().__init__(name="publisher", daemon=True)
        self.backend, self.shared, self.generator = backend, shared, generator
        self.finished = threading.Event()
        self._lag_index = 0

    def publish(self) -> None:
        words, backend = self.shared.words, self.backend
        words[self.shared.field(self.generator, COMPLETED)] = backend.completed
        samples = backend.lag_samples
        if samples:
            fresh = samples[self._lag_index:]
            self._lag_index += len(fresh)
            if fresh:
                i = self.shared.field(self.generator, LAG_MAX)
                words[i] = max(words[i], max(s[1] for s in fresh))

    def run(self) -> None:
        while not self.finished.wait(PUBLISH_S):
            self.publish()

    def stop(self) -> None:
        self.finished.set()
        self.join()
        self.publish()


class _SumGauge:
    """What the sampler reads as the cell's gauge: the generators' live counts summed."""

    def __init__(self, crowd: Crowd, t0_ns: int) -> None:
        self.crowd, self.t0_ns = crowd, t0_ns
        self.peak = 0

    @property
    def in_flight(self) -> int:
        total = self.crowd.shared.total(IN_FLIGHT)
        if total > self.peak:
            self.peak = total
        return total


class Crowd:
    """The coordinator: generator 0's backend runs in this process; the others are children."""

    def __init__(self, backend, job: CellJob, spec: CellSpec, stop: StopFlag) -> None:
        self.backend, self.job, self.stop = backend, job, stop
        self.count = spec.generators
        self.shared = Shared(str(Path(job.work_dir) / SHARED_FILE), self.count, create=True)
        for g in range(self.count):
            gauge_state(self.shared, g)[LAST] = -1  # no stamp yet
        self.children: list[subprocess.Popen] = []
        self.ready: list[threading.Event] = []
        self.reports: list[dict | None] = [None] * self.count
        self._gauge: _SumGauge | None = None
        self.dead: list[int] = []

    # --- what the sampler reads -----------------------------------------------------------
    @property
    def gauge(self):
        if self._gauge is None and self.backend.gauge is not None:
            self._gauge = _SumGauge(self, self.backend.gauge.t0_ns)
        return self._gauge

    @property
    def completed(self) -> int:
        words, shared = self.shared.words, self.shared
        return self.backend.completed + sum(
            words[shared.field(g, COMPLETED)] for g in range(1, self.count))

    @property
    def lag_samples(self):
        return self.backend.lag_samples

    @property
    def lag_due_ns(self):
        return getattr(self.backend, "lag_due_ns", None)

    def lag_elsewhere(self) -> int:
        """The worst loop lag the other generators published since the last look."""
        return self.shared.worst(LAG_MAX)

    # --- the children -----------------------------------------------------------------------
    def spawn(self, argv: list[str]) -> None:
        """Start generators 1 … N−1 (before the clock; their start-up is not measured)."""
        for g in range(1, self.count):
            work = Path(self.job.work_dir) / f"g{g}"  # e.g. a SQLite file each
            work.mkdir(exist_ok=True)
            job = replace(self.job, generator=g, shared=self.shared.path, work_dir=str(work))
            proc = subprocess.Popen([sys.executable, "-m", "harness.cell", *argv],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            proc.stdin.write(job.to_json() + "\n")
            proc.stdin.flush()
            self.children.append(proc)
            ready = threading.Event()
            self.ready.append(ready)
            threading.Thread(target=self._listen, args=(g, proc, ready), daemon=True).start()
        threading.Thread(target=self._forward_stop, daemon=True).start()

    def _listen(self, g: int, proc: subprocess.Popen, ready: threading.Event) -> None:
        for line in proc.stdout:
            message = json.loads(line)
            if message.get("ready"):
                ready.set()
            elif message.get("done"):
                self.reports[g] = message
        proc.wait()
        ready.set()  # a generator that died before it was ready holds no one up

    def start_clock(self) -> int:
        """Generator 0's clock: once every generator is ready, one t0 for all."""
        for ready in self.ready:
            ready.wait()
        t0 = now_ns()
        for proc in self.children:
            try:
                proc.stdin.write(f"{t0}\n")
                proc.stdin.flush()
            except OSError:
                pass  # died meanwhile: its requests (none yet) are not lost
        return t0

    def _forward_stop(self) -> None:
        self.stop.event.wait()
        signum = SERVER_DIED if self.stop.reason == "server" else signal.SIGTERM
        for proc in self.children:
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def wait(self) -> None:
        """Until every child has ended (generator 0 has: its backend returned)."""
        for g, proc in enumerate(self.children, start=1):
            proc.wait()
            if self.reports[g] is None:
                self.dead.append(g)

    def finish(self, output) -> dict:
        """Once every spool is flushed: `lost` rows for what a dead generator held, and the
        cell's figures over all generators."""
        released = self.shared.released
        if self.dead:
            _write_lost(Path(self.job.spool_dir), released, self.dead[0],
                        self.backend.gauge.stamp if self.backend.gauge else now_ns)
        reports = [r for r in self.reports[1:] if r is not None]
        extras = dict(output.extras)
        speeds = [r["extras"].get("kernel_ns_per_unit") for r in reports]
        if extras.get("kernel_ns_per_unit") is not None and all(s is not None for s in speeds):
            extras["kernel_ns_per_unit"] = float(np.mean([extras["kernel_ns_per_unit"], *speeds]))
        extras.update(pooled_connects([output.extras, *(r["extras"] for r in reports)]))
        return {"released": released,
                "peak_live": self._gauge.peak if self._gauge is not None else 0,
                "interrupted": output.interrupted or any(r["interrupted"] for r in reports),
                "extras": extras, "slots_lost": output.slots_lost + len(self.dead) + sum(
                    r["slots_lost"] for r in reports),
                "spool_error": next((r["spool_error"] for r in reports if r["spool_error"]),
                                    None)}


def _write_lost(spool: Path, released: int, generator: int, stamp) -> None:
    """Every released seq without a row (a dead generator held it, or had not flushed it yet)
    becomes a `lost` row ending now, in a file of that generator's."""
    seen = np.zeros(released, dtype=bool)
    for _, path in spool_files(spool, "requests"):
        for batch in read_batches(path):
            seqs = batch.column("seq").to_numpy()
            seen[seqs[seqs < released]] = True
    missing = np.flatnonzero(~seen)
    if not missing.size:
        return
    buffer = RecordBuffer()
    end = stamp()
    for seq in missing.tolist():
        buffer.append(f"generator-{generator}", f"generator-{generator}", seq, end, end, end,
                      end, LOST_OUTCOME, 0)
    table = buffer.drain()
    write_table(spool / spool_name("requests", generator, "lost"), RECORD_SCHEMA,
                table if table is not None else pa.table({}))
