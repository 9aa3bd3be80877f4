"""Records on their way to disk while a cell runs: Arrow IPC stream files (`.arrows`) under
`RUN/.spool/cell-NNNN/`, appended at least every FLUSH_S by a thread of the cell process, so a
SIGKILL or an OOM of the cell loses at most the last interval. Memory holds only what arrived
since the last flush. Once the cell's Parquet files are in place the folder is deleted.

A stream cut short (killed mid-write) is read up to its last whole batch."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

FLUSH_S = 0.5  # at most a second of rows lost to a kill; half leaves room for a slow write
SPOOL_DIR = ".spool"


class _SpoolFile:
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self._sink = pa.OSFile(str(path), "wb")  # unbuffered: each batch reaches the kernel
        self._writer = pa.ipc.new_stream(self._sink, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write(batch)  # a RecordBatch, or a Table of them

    def close(self) -> None:
        self._writer.close()
        self._sink.close()


class Spooler(threading.Thread):
    """Drains registered sources into their files every `interval_s`, and once more at stop.
    A source is a callable returning what is new (a RecordBatch or a Table), or None."""

    def __init__(self, folder: Path, interval_s: float = FLUSH_S, generator: int = 0) -> None:
        super().__init__(name="spooler", daemon=True)
        self.folder, self.interval_s = Path(folder), interval_s
        self.generator = generator  # a cell's generator processes share its spool folder
        self._files: dict[str, tuple[_SpoolFile, list[Callable]]] = {}
        self._finished = threading.Event()
        self._write_lock = threading.Lock()
        self.error: str | None = None  # first write failure, "path: reason"
        self.on_error: Callable[[str], None] | None = None

    def add(self, name: str, schema: pa.Schema,
            drain: Callable[[], pa.RecordBatch | pa.Table | None]
            ) -> None:
        if name not in self._files:
            path = self.folder / spool_name(name, self.generator)
            self._files[name] = (_SpoolFile(path, schema), [])
        self._files[name][1].append(drain)

    def flush(self) -> None:
        with self._write_lock:
            if self.error is not None:
                return
            for spool_file, drains in list(self._files.values()):
                for drain in drains:
                    batch = drain()
                    if batch is None or not batch.num_rows:
                        continue
                    try:
                        spool_file.write(batch)
                    except (OSError, pa.ArrowException) as exc:
                        self.error = f"{spool_file.path}: {reason(exc)}"
                        if self.on_error is not None:
                            self.on_error(self.error)
                        return

    def run(self) -> None:
        while not self._finished.wait(self.interval_s):
            self.flush()

    def stop(self) -> None:
        self._finished.set()
        if self.is_alive():
            self.join()
        self.flush()
        for spool_file, _ in self._files.values():
            try:
                spool_file.close()
            except (OSError, pa.ArrowException):
                pass


def spool_name(kind: str, generator: int = 0, part: str = "") -> str:
    """`requests.arrows` for generator 0 (and every single-process cell), `requests.g1.arrows`
    for generator 1, …; `part` names a further file of one generator (e.g. its lost rows)."""
    tag = f".g{generator}" if generator or part else ""
    return f"{kind}{tag}{'.' + part if part else ''}.arrows"


_SPOOL_FILE = re.compile(r"^(?P<kind>[a-z_]+)(?:\.g(?P<generator>\d+))?(?:\.[a-z]+)?\.arrows$")


def spool_files(folder: Path, kind: str) -> list[tuple[int, Path]]:
    """(generator, path) of every spool file of `kind` in a cell's folder, generator by
    generator."""
    found = []
    for path in Path(folder).glob(f"{kind}*.arrows"):
        match = _SPOOL_FILE.match(path.name)
        if match and match["kind"] == kind:
            found.append((int(match["generator"] or 0), path))
    return sorted(found)


def write_table(path: Path, schema: pa.Schema, table: pa.Table) -> None:
    """A spool file written at once (e.g. rows the cell writes for a dead generator)."""
    spool_file = _SpoolFile(path, schema)
    try:
        spool_file.write(table)
    finally:
        spool_file.close()


def reason(exc: BaseException) -> str:
    """The OS's words for what went wrong ("No space left on device"), also from Arrow's
    errors, which carry the errno only in their text."""
    found = re.search(r"\[errno (\d+)\]", str(exc))
    if found:
        return os.strerror(int(found[1]))
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def read_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Every whole batch of a spool file; a missing, empty or cut-short file yields what it
    holds and stops there."""
    try:
        source = pa.OSFile(str(path), "rb")
    except (OSError, pa.ArrowException):
        return
    with source:
        try:
            reader = pa.ipc.open_stream(source)
        except (OSError, pa.ArrowException):
            return
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowException):  # the tail a kill cut short
                return
