"""One measured cell in a fresh process: `python -m harness.cell`, driven by the runner.

Protocol: a JSON job on stdin; JSON lines on stdout (`{"completed": n}` while running, then
`{"done": ...}`); the records as an Arrow IPC stream at the job's `records_path`. SIGINT and
SIGTERM stop the cell gracefully: whatever was measured is still written."""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass

from harness.backends import get_backend
from harness.backends.base import CellSpec, StopFlag
from harness.scenario import parse_scenario
from harness.schema import to_ipc_bytes

PROGRESS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CellJob:
    scenario_text: str
    backend: str
    concurrency: int
    repetition: int
    server_url: str
    records_path: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def run_cell(job: CellJob, stop: StopFlag, report=print) -> dict:
    spec = CellSpec(parse_scenario(job.scenario_text), job.backend, job.concurrency,
                    job.repetition, job.server_url)
    backend = get_backend(job.backend)
    finished = threading.Event()

    def progress() -> None:
        while not finished.wait(PROGRESS_INTERVAL_S):
            report(json.dumps({"completed": backend.completed}))

    reporter = threading.Thread(target=progress, name="progress", daemon=True)
    reporter.start()
    try:
        output = backend.run(spec, stop)
    finally:
        finished.set()
        reporter.join()
    with open(job.records_path, "wb") as fh:
        fh.write(to_ipc_bytes(output.records))
    return {"done": True, "rows": output.records.num_rows, "peak_live": output.peak_live,
            "interrupted": output.interrupted}


def main() -> None:
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    job = CellJob(**json.loads(sys.stdin.read()))
    result = run_cell(job, stop, report=lambda line: print(line, flush=True))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
