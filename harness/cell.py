"""One measured cell in a fresh process: `python -m harness.cell`, driven by the runner.

Protocol: a JSON job on stdin; JSON lines on stdout (`{"completed": n}` while running, then
`{"done": ...}`); records, loop-lag samples and the timeline as Arrow IPC streams in the job's
`work_dir`. SIGINT and SIGTERM stop the cell gracefully: whatever was measured is written."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.backends import get_backend
from harness.backends.base import CellSpec, StopFlag
from harness.sampler import Sampler, lag_table
from harness.scenario import parse_scenario
from harness.schema import to_ipc_bytes

PROGRESS_EVERY = 5  # samples (of 100 ms) between progress lines
RECORDS, LAG, TIMELINE = "records.arrow", "lag.arrow", "timeline.arrow"


@dataclass(frozen=True)
class CellJob:
    scenario_text: str
    backend: str
    concurrency: int
    repetition: int
    strategy: str
    variant: str
    server_url: str
    units: int | None
    work_dir: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def run_cell(job: CellJob, stop: StopFlag, report=print) -> dict:
    spec = CellSpec(parse_scenario(job.scenario_text), job.backend, job.concurrency,
                    job.repetition, job.strategy, job.variant, job.server_url, job.units,
                    job.work_dir)
    backend = get_backend(job.backend)
    count = [0]

    def progress(completed: int) -> None:
        count[0] += 1
        if count[0] % PROGRESS_EVERY == 0:
            report(json.dumps({"completed": completed}))

    sampler = Sampler(backend, on_sample=progress)
    sampler.start()
    try:
        output = backend.run(spec, stop)
    finally:
        sampler.stop()
    work = Path(job.work_dir)
    (work / RECORDS).write_bytes(to_ipc_bytes(output.records))
    (work / LAG).write_bytes(to_ipc_bytes(lag_table(backend.lag_samples)))
    (work / TIMELINE).write_bytes(to_ipc_bytes(sampler.table()))
    return {"done": True, "rows": output.records.num_rows, "peak_live": output.peak_live,
            "interrupted": output.interrupted, "extras": output.extras,
            "has_loop": backend.lag_samples is not None,
            "cpu_user_s": sampler.cpu_user_s, "cpu_sys_s": sampler.cpu_sys_s}


def main() -> None:
    stop = StopFlag()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    job = CellJob(**json.loads(sys.stdin.read()))
    result = run_cell(job, stop, report=lambda line: print(line, flush=True))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
