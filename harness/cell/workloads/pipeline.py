"""`pipeline`: the reference inference service. Per request: (1) CPU pre-processing of a
generated RGB image with NumPy (which releases the GIL for most of the work, as OpenCV does),
(2) a call to the mock server's inference endpoint, (3) a write of the result to a database.
Each step's duration is recorded: cpu_ns, cpu_wait_ns, io_ns, db_ns.

Databases: SQLite (default; a file in the cell's scratch folder, no set-up) through sqlite3 —
from each slot on threads/processes, from one dedicated thread on the event loops; PostgreSQL
through psycopg 3 on threads/processes and asyncpg on the event loops."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.cell.workloads.io import blocking_client, fault_labeller, loop_client, request_spec
from harness.core import postgres
from harness.core.clock import now_ns
from harness.core.image import preprocess
from harness.core.offload import Offload
from harness.core.schema import DB, Outcome

TABLE = "harness_pipeline"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (cell TEXT, seq BIGINT, checksum DOUBLE "
           "PRECISION, status INTEGER)")


def _dsn(spec) -> str:
    dsn = spec.scenario.workload.dsn or postgres.dsn()
    if not dsn:
        raise ValueError("database postgres needs workload.dsn, $HARNESS_POSTGRES_DSN or "
                         "the .pg/dsn `make postgres` writes")
    return dsn


def _cell_name(spec) -> str:
    return f"{spec.backend}/{spec.strategy}/c{spec.concurrency}/r{spec.repetition}"


class _SqliteSink:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")

    def write(self, cell: str, seq: int, checksum: float, status: int) -> None:
        self.conn.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", (cell, seq, checksum, status))

    def close(self) -> None:
        self.conn.close()


class _PostgresSink:
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)

    def write(self, cell: str, seq: int, checksum: float, status: int) -> None:
        self.conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)",
                          (cell, seq, checksum, status))

    def close(self) -> None:
        self.conn.close()


class _SyncPipeline:
    def __init__(self, spec, sink) -> None:
        self.http = blocking_client(spec, request_spec(spec, "POST"))
        self.fault_of = fault_labeller(spec)
        self.sink, self.side, self.cell = sink, spec.scenario.workload.image, _cell_name(spec)

    def run(self, seq: int) -> Outcome:
        cpu_ns, _, checksum, tensor = preprocess(seq, self.side)
        start = now_ns()
        out = self.http.request(seq, tensor)  # the AI API call: POST the tensor
        if self.fault_of is not None:
            out = out._replace(fault=self.fault_of(seq))
        io_ns = now_ns() - start
        if not out.ok:
            return out._replace(cpu_ns=cpu_ns, cpu_wait_ns=0, io_ns=io_ns)
        start = now_ns()
        try:
            self.sink.write(self.cell, seq, checksum, out.status)
        except Exception:  # noqa: BLE001 - any driver error is a failed write
            return out._replace(ok=False, error=DB, cpu_ns=cpu_ns, cpu_wait_ns=0, io_ns=io_ns,
                                db_ns=now_ns() - start)
        return out._replace(cpu_ns=cpu_ns, cpu_wait_ns=0, io_ns=io_ns, db_ns=now_ns() - start)

    def abort(self) -> None:
        self.http.abort()

    def close(self) -> None:
        self.http.close()
        self.sink.close()


class _AsyncPipeline:
    def __init__(self, spec, offload: Offload, write, close_db) -> None:
        self.http = loop_client(spec, request_spec(spec, "POST"))
        self.fault_of = fault_labeller(spec)
        self.offload, self.write, self.close_db = offload, write, close_db
        self.side, self.cell = spec.scenario.workload.image, _cell_name(spec)

    async def run(self, seq: int) -> tuple[Outcome, str]:
        (cpu_ns, _, checksum, tensor), wait_ns = await self.offload.call(preprocess, seq,
                                                                          self.side)
        start = now_ns()
        out, slot = await self.http.request(seq, tensor)  # the AI API call: POST the tensor
        if self.fault_of is not None:
            out = out._replace(fault=self.fault_of(seq))
        io_ns = now_ns() - start
        if not out.ok:
            return out._replace(cpu_ns=cpu_ns, cpu_wait_ns=wait_ns, io_ns=io_ns), slot
        start = now_ns()
        try:
            await self.write(self.cell, seq, checksum, out.status)
        except Exception:  # noqa: BLE001 - any driver error is a failed write
            return out._replace(ok=False, error=DB, cpu_ns=cpu_ns, cpu_wait_ns=wait_ns,
                                io_ns=io_ns, db_ns=now_ns() - start), slot
        return out._replace(cpu_ns=cpu_ns, cpu_wait_ns=wait_ns, io_ns=io_ns,
                            db_ns=now_ns() - start), slot

    async def close(self) -> None:
        await self.http.close()
        await self.close_db()
        self.offload.close()


class PipelineWork:
    def __init__(self, spec) -> None:
        self.spec = spec
        self.postgres = spec.scenario.workload.database == "postgres"
        self.sqlite_path = str(Path(spec.work_dir or ".") / "pipeline.sqlite")

    def prepare(self) -> None:
        """Create the table before the clock starts."""
        sink = self._sink()
        sink.conn.execute(_CREATE)
        sink.close()

    def _sink(self):
        return _PostgresSink(_dsn(self.spec)) if self.postgres else _SqliteSink(self.sqlite_path)

    def sync_runner(self, slot: str) -> _SyncPipeline:
        return _SyncPipeline(self.spec, self._sink())

    async def async_runner(self) -> _AsyncPipeline:
        offload = Offload(self.spec.strategy, self.spec.scenario.pool_size)
        await offload.start(preprocess, 0, self.spec.scenario.workload.image)  # warm: NumPy
        if self.postgres:
            import asyncpg

            pool = await asyncpg.create_pool(_dsn(self.spec), min_size=1,
                                             max_size=self.spec.slots)
            sql = f"INSERT INTO {TABLE} VALUES ($1, $2, $3, $4)"

            async def write(cell, seq, checksum, status):
                await pool.execute(sql, cell, seq, checksum, status)

            return _AsyncPipeline(self.spec, offload, write, pool.close)
        # sqlite3 blocks: the loop hands writes to one dedicated thread owning the connection.
        executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        sink = await asyncio.get_running_loop().run_in_executor(
            executor, _SqliteSink, self.sqlite_path)

        async def write(cell, seq, checksum, status):
            await asyncio.get_running_loop().run_in_executor(
                executor, sink.write, cell, seq, checksum, status)

        async def close_db():
            await asyncio.get_running_loop().run_in_executor(executor, sink.close)
            executor.shutdown(wait=True)

        return _AsyncPipeline(self.spec, offload, write, close_db)

    def extras(self) -> dict:
        return {}
