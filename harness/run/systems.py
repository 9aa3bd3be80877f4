"""What a scenario's cells load, started by the runner: the mock server and the service
(`service:`), both fresh for each cell or kept for the run (`service.restart: per_run`), so a
service's `{mock_url}` always names the mock server that is running."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.postgres import dsn as postgres_dsn
from harness.core.secrets import dsn_secrets
from harness.core.tls import cell_tls, tls_fields
from harness.mock.process import ServerProcess
from harness.run.service import ServiceError, ServiceProcess
from harness.run.workers import Worker
from harness.scenario.loader import wire_text
from harness.scenario.model import LoadedScenario
from harness.scenario.service import fill

SERVICE_DIR = "service"  # in the run folder: each start's output, cell-NNNN.{out,err}


@dataclass
class Up:
    """The systems one cell loads, started for cell number `cell`."""

    cell: int
    server: ServerProcess | None = None
    service: ServiceProcess | None = None
    fresh: bool = True  # has served no cell yet

    def alive(self) -> bool:
        return ((self.server is None or self.server.proc.poll() is None)
                and (self.service is None or self.service.alive()))

    def url(self, target: str | None) -> str:
        """What the cell loads: the service, else the mock server, else the user's target."""
        if self.service is not None:
            return self.service.url
        return self.server.url if self.server is not None else target or ""

    @property
    def mock_url(self) -> str:
        """The mock server's URL when the cell loads a service (else it is `url`)."""
        return self.server.url if self.server is not None and self.service else ""

    def begin(self) -> None:
        """A cell starts: CPU time and loop lag count from now (a kept pair served others)."""
        if self.server is not None and not self.fresh:
            self.server.ready_cpu_s = self.server.stats().get("cpu_s", self.server.ready_cpu_s)
        if self.service is not None:
            self.service.mark()

    def stats(self) -> tuple[dict, dict]:
        """After the cell, before any stop: the mock server's counts and the service's."""
        server = _server_stats(self.server) if self.server is not None else {}
        if server and not self.fresh:
            server["peak_in_flight"] = None  # counted since an earlier cell
        service = {}
        if self.service is not None:
            service = {"service_cpu_s": self.service.cpu_since_ready_s(),
                       "service_loop_lag_p99_ns": self.service.lag_p99_ns(),
                       "service_exit": self.service.proc.poll()}
        return server, service


SERVER_POLL_S = 0.1


def _server_stats(server: ServerProcess) -> dict:
    """The server's counts after the cell, with its exit code (None: alive)."""
    stats = server.stats()
    code = server.proc.poll()
    if code is None and not stats:  # not answering: dead or dying
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = server.proc.wait(SERVER_POLL_S * 10)
    stats["exit"] = code
    return stats


class Systems:
    """The mock server and service of one scenario's cells. `scratch`: a private folder for
    the service's raw output (it may print its secrets; the run folder gets it redacted)."""

    def __init__(self, item: LoadedScenario, scratch: Path, run_id: str,
                 server: Worker | None = None) -> None:
        self.item = item
        self.server = server  # the mock server's interpreter: None, the runner's
        self.wire = wire_text(item)  # the scenario as its cells and mock server read it
        self.run_id = run_id
        self.config = item.scenario.service
        self.scratch = scratch
        self.per_run = self.config is not None and self.config.restart == "per_run"
        self.up: Up | None = None
        self.secrets: tuple[str, ...] = item.secrets
        # the CA file read here: a cluster worker has no such file
        self.tls_fields = tls_fields(item.scenario.workload, read_ca(item))

    def tls(self, up: Up) -> dict | None:
        """The TLS settings of the cell `up` serves (None over http://)."""
        server_ca = up.server.ca_pem if up.server is not None else None
        return cell_tls(self.tls_fields, up.url(self.item.scenario.target), server_ca)

    def start(self, cell: int) -> Up:
        """What cell `cell` loads, running: a per-run pair kept while it lives, else a fresh
        pair (a pair started ahead for this very cell is used as it is). Raises ServiceError
        (what stopped the service is in it)."""
        up = self.up
        if up is not None and (up.fresh and up.cell == cell or self.per_run and up.alive()):
            up.begin()
            return up
        self.up = None
        server = self._server().__enter__() if self.item.scenario.server else None
        up = Up(cell, server)
        if self.config is not None:
            try:
                up.service = self._service(server, cell).start()
            except ServiceError as exc:
                raise ServiceError(f"{self.item.path}: {exc}", exc.exit) from None
            finally:
                if up.service is None and server is not None:
                    server.stop()
        self.up = up
        up.begin()
        return up

    def _server(self) -> ServerProcess:
        worker, tls = self.server, self.item.scenario.server.tls
        if worker is None:
            return ServerProcess(self.wire, tls=tls)
        return ServerProcess(self.wire, python=worker.python, env=worker.interpreter.environ(),
                             tls=tls)

    def _service(self, server: ServerProcess | None, cell: int) -> ServiceProcess:
        values = {"python": self.config.python or sys.executable, "cell": str(cell),
                  "run_id": self.run_id,
                  "mock_url": server.url if server else "", "postgres_dsn": ""}
        if self.config.uses("postgres_dsn"):
            values["postgres_dsn"] = postgres_dsn() or ""
        # Its environment is secret: every value it is given is kept out of what is written.
        given = [fill(value, values) for value in self.config.env.values()]
        secrets = (*self.secrets, *dsn_secrets(values["postgres_dsn"]),
                   *(value for value in given if value))
        return ServiceProcess(self.config, values, self.scratch / f"cell-{cell:04d}", secrets)

    def served(self, up: Up, run_dir: Path, aborted: bool = False) -> None:
        """After a cell: a per-cell pair is stopped, and so is a per-run pair that died."""
        up.fresh = False
        if aborted and up.server is not None:
            up.server.kill()
        if not self.per_run or aborted or not up.alive():
            self.stop(run_dir)

    def stop(self, run_dir: Path | None) -> None:
        """Stop what runs; the service's output into run_dir/service/cell-NNNN.{out,err} (NNNN:
        the first cell it served; nowhere without a run folder)."""
        up, self.up = self.up, None
        if up is None:
            return
        if up.service is not None:
            up.service.stop()
            if run_dir is not None:
                up.service.keep_logs(run_dir / SERVICE_DIR / f"cell-{up.cell:04d}")
        if up.server is not None:
            up.server.stop()



def read_ca(item: LoadedScenario) -> str | None:
    """The text of `workload.tls.ca`, checked to hold a certificate; None without one."""
    tls = getattr(item.scenario.workload, "tls", None)
    if tls is None or tls.ca is None:
        return None
    import ssl

    try:
        text = Path(tls.ca).read_text()
        if not text.strip():  # cadata="" would load the system's store instead, silently
            raise ValueError(text)
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError, UnicodeDecodeError):  # SSLError: an OSError too
        raise HarnessError(f"{item.path}: workload.tls.ca: {tls.ca} holds no PEM "
                           "certificate") from None
    except OSError as exc:
        raise HarnessError(f"{item.path}: workload.tls.ca: cannot read {tls.ca} "
                           f"({exc.strerror})") from None
    return text
