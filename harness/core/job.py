"""What the runner and a cell process say to each other: the job on the cell's stdin (plain
data: JSON), and the signals with their meaning. The cell answers with JSON lines on stdout and
Arrow spool files; see harness.cell.main."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict, dataclass

GRACE_S = 5.0  # on stop: how long in-flight requests may finish before they are cancelled
SERVER_DIED = signal.SIGUSR2  # from the runner: the mock server died, release nothing more


@dataclass(frozen=True)
class CellJob:
    scenario_text: str
    key: dict  # the CellKey's fields
    server_url: str
    units: int | None
    work_dir: str  # scratch: the SQLite file, the slot gauge's lock
    spool_dir: str
    generator: int = 0  # which of the cell's generator processes runs this job
    shared: str = ""  # the generators' shared file (set by generator 0 for the others)
    mock_url: str = ""  # the mock server's, when server_url is a started service's
    body_file: str = ""  # the request body the runner made (an image), read before the clock
    # Generator `generator` of the key's `generators`, each a standalone process (machines
    # apart): no shared file; seqs strided, its own timeline, a start time read on stdin.
    spread: bool = False
    tls: dict | None = None  # https: core.tls.TlsSettings' fields (the CA's text, not a path)

    def to_json(self) -> str:
        return json.dumps(asdict(self))
