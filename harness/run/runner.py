"""Runs scenarios: for each cell a fresh mock server and a fresh cell process; the cell's
records reach disk while it runs (its spool), and its Parquet files are written once when it
ends. Usable as a library (no Click here).

Signals: the first SIGINT/SIGTERM stops producing and gives in-flight requests the grace period;
a second one kills the cell at once (its flushed rows stay in the spool, read as an incomplete
cell)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.core import postgres
from harness.core.errors import HarnessError
from harness.core.job import GRACE_S, SERVER_DIED, CellJob
from harness.core.keys import CellKey, key_dict, key_label
from harness.core.secrets import scrub
from harness.mock.process import ServerProcess
from harness.run.exits import failure
from harness.run.lineup import Lineup, line_up
from harness.run.service import ServiceError
from harness.run.systems import SERVER_POLL_S, Systems, read_ca
from harness.run.workers import Worker
from harness.scenario.model import LoadedScenario
from harness.scenario.target import is_loopback, split_target
from harness.scenario.workload import MAX_BODY
from harness.store.layout import prepare_out_dir
from harness.store.live import LiveCell, LiveStats
from harness.store.meta import new_run_id, run_metadata
from harness.store.writer import RunWriter

KILL_AFTER_S = GRACE_S + 10  # after an interrupt, a cell process still alive then is killed


class RunUI:
    """Progress callbacks; the default shows nothing (library use). `cell_id` tells apart cells
    that run at once (a cluster's); None for the runner's one cell at a time."""

    wants_live = False  # True: the runner reads each running cell's spool for cell_live

    def run_started(self, total_cells: int) -> None: ...
    def cell_started(self, scenario: str, key: CellKey, requests: int | None,
                     cell_id=None) -> None: ...
    # What a cell (before any cell: the run) is doing before its clock starts; None: it started.
    def cell_phase(self, text: str | None, cell_id=None) -> None: ...
    def cell_progress(self, completed: int, cell_id=None) -> None: ...
    def cell_live(self, stats: LiveStats, cell_id=None) -> None: ...  # only if wants_live
    def cell_finished(self, cell: dict, cell_id=None) -> None: ...
    def note(self, line: str) -> None: ...  # before the run: skipped interpreters or cells


@dataclass
class RunResult:
    run_id: str
    out_dirs: list[Path]
    interrupted: bool = False
    failures: list[str] = field(default_factory=list)  # cells that failed; the run went on


@dataclass
class _Interrupt:
    """SIGINT/SIGTERM: mark the run interrupted and pass SIGTERM on to the running cell; a
    second one aborts: the cell's process group is killed at once."""

    requested: bool = False
    aborted: bool = False
    child: subprocess.Popen | None = None
    _timer: threading.Timer | None = field(default=None, repr=False)

    def handle(self, signum, frame) -> None:
        if self.requested:
            self.aborted = True
            if self.child is not None:
                _signal_group(self.child, signal.SIGKILL)
            return
        self.requested = True
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the cell process alone: it stops its slots
            if self._timer is None:
                self._timer = threading.Timer(KILL_AFTER_S, _signal_group, (child, signal.SIGKILL))
                self._timer.daemon = True
                self._timer.start()

    def install(self) -> dict:
        # Set explicitly: a background job of a non-interactive shell starts with SIGINT ignored.
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self.handle)
        return previous

    def cell_done(self) -> None:
        self.child = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the cell and its slot processes share a process group
    except (ProcessLookupError, PermissionError):
        pass


def _out_dirs(loaded: list[LoadedScenario], out: Path | None, root: Path, run_id: str):
    if out is not None:
        return {s.scenario.name: out for s in loaded}
    return {s.scenario.name: root / s.scenario.name / run_id for s in loaded}


def preflight(item: LoadedScenario, allow_remote: bool, services: bool = True) -> None:
    """What validation cannot know from the file alone, checked before anything runs.
    `services`: also that a PostgreSQL the scenario needs is there (not for `validate`: it
    depends on what runs at the time, not on the file)."""
    try:
        _check_preflight(item, allow_remote, services)
    except HarnessError as exc:  # a path or URL may have been read from the environment
        raise HarnessError(scrub(str(exc))) from None


def _check_preflight(item: LoadedScenario, allow_remote: bool, services: bool) -> None:
    workload = item.scenario.workload
    target = item.scenario.target
    if target is not None and not allow_remote and not is_loopback(split_target(target)[0]):
        raise HarnessError(f"{item.path}: target: {split_target(target)[0]} is not a loopback "
                           "address; pass --allow-remote to load a remote service")
    bodies = {"workload.body": getattr(workload, "body", None)}
    bodies.update((f"workload.requests[{i}].body", entry.body)
                  for i, entry in enumerate(getattr(workload, "mix", ())))
    for where, body in bodies.items():
        if getattr(body, "file", None) is not None:
            _check_body_file(item, where, body.file)
    read_ca(item)
    service = item.scenario.service
    if service is not None:
        if service.python is not None and not os.access(service.python, os.X_OK):
            raise HarnessError(f"{item.path}: service.python: {service.python} is not an "
                               "executable file")
        if services and service.uses("postgres_dsn") and not postgres.dsn():
            raise HarnessError(f"{item.path}: service: {{postgres_dsn}} needs a PostgreSQL: "
                               "run `make postgres` or set HARNESS_POSTGRES_DSN")
    if (services and workload.type == "pipeline" and workload.database == "postgres"
            and not workload.dsn and not postgres.dsn()):
        raise HarnessError(f"{item.path}: workload.dsn: required for database: postgres "
                           "(or set HARNESS_POSTGRES_DSN, or run `make postgres`)")


def _check_body_file(item: LoadedScenario, field: str, file: str) -> None:
    try:
        size = os.stat(file).st_size
        with open(file, "rb"):
            pass
    except OSError as exc:
        raise HarnessError(f"{item.path}: {field}.file: cannot read {file} "
                           f"({exc.strerror})") from None
    if size > MAX_BODY:
        raise HarnessError(f"{item.path}: {field}.file: {file} is over 64MiB")


def _calibrate(item: LoadedScenario, ui: RunUI) -> dict | None:
    workload = item.scenario.workload
    if workload.type not in ("cpu", "cpu_release"):
        return None
    from harness.core.kernels import calibrate

    ui.cell_phase("calibrating")

    return calibrate(workload.type, workload.duration)


def run_scenarios(loaded: list[LoadedScenario], backends: tuple[str, ...] = (),
                  repeat: int | None = None, out: Path | None = None, force: bool = False,
                  results_root: Path = Path("results"), ui: RunUI | None = None,
                  allow_remote: bool = False, pythons: tuple[str, ...] = (),
                  cluster: str | None = None) -> RunResult:
    """`pythons`: interpreter specs replacing every scenario's `interpreters:` (--python);
    `cluster`: a Dask scheduler's address: the cells run on its workers (harness.run.cluster)."""
    ui = ui or RunUI()
    names = [s.scenario.name for s in loaded]
    if len(set(names)) != len(names):
        raise HarnessError(f"two scenarios share the name '{names[0]}': names must differ")
    if cluster:  # only then: nothing imports dask otherwise
        from harness.run import cluster_run
    for item in loaded:
        preflight(item, allow_remote)
        if cluster:
            cluster_run.check(item)
    lineups = line_up(loaded, tuple(pythons), ui.note)
    if cluster:  # connected and checked (workers, packages) before anything is written
        with cluster_run.connect(cluster) as connected:
            return _run(loaded, lineups, backends, repeat, out, force, results_root, ui,
                        connected)
    return _run(loaded, lineups, backends, repeat, out, force, results_root, ui, None)


def _run(loaded, lineups, backends, repeat, out, force, results_root, ui, cluster):
    # mkdtemp's folder is private (0700): the service's raw output and the image body go there
    scratch = Path(tempfile.mkdtemp(prefix="harness-run-"))
    run_id = new_run_id()
    systems = {s.scenario.name: Systems(s, scratch, run_id, lineups[s.scenario.name].server)
               for s in loaded}
    try:
        bodies = {s.scenario.name: _body(s, scratch) for s in loaded}
        cores = cluster.cores() if cluster is not None else None
        plans = [(s, lineups[s.scenario.name].plan(s, backends, repeat, ui.note, cores))
                 for s in loaded]
        if not any(cells for _, cells in plans):  # a run that measured nothing must not pass
            raise HarnessError("nothing to run: every cell was skipped (an optional "
                               "interpreter absent, or its libraries missing: the notes say)")
        first = next((s for s, cells in plans if cells), None)
        if first is not None and first.scenario.service is not None:
            systems[first.scenario.name].start(0)  # one that cannot start: nothing is written
        if cluster is not None:
            from harness.run import cluster_run

            return cluster_run.run_plans(cluster, run_id, plans, systems, bodies, lineups,
                                         out, force, results_root, ui)
        return _run_plans(run_id, plans, systems, bodies, lineups, out, force, results_root,
                          ui)
    finally:
        for item in systems.values():
            item.stop(None)
        shutil.rmtree(scratch, ignore_errors=True)


def _run_plans(run_id: str, plans, systems: dict[str, Systems], bodies: dict[str, str],
               lineups: dict[str, Lineup], out: Path | None, force: bool, results_root: Path,
               ui: RunUI) -> RunResult:
    loaded = [item for item, _ in plans]
    dirs = _out_dirs(loaded, out, results_root, run_id)
    for path in set(dirs.values()):
        prepare_out_dir(path, force)
    ui.run_started(sum(len(cells) for _, cells in plans))
    # CPU work is calibrated at the start of each run: the machine's speed drifts.
    calibration = {s.scenario.name: _calibrate(s, ui) for s in loaded}
    writers: dict[Path, RunWriter] = {}
    for path in dict.fromkeys(dirs.values()):
        in_dir = [s for s in loaded if dirs[s.scenario.name] == path]
        facts = {s.scenario.name: lineups[s.scenario.name].facts() for s in in_dir}
        writers[path] = RunWriter(path, run_metadata(run_id, in_dir, calibration, facts))
    result = RunResult(run_id, list(writers))

    interrupt = _Interrupt()
    previous = interrupt.install()
    try:
        for item, cells in plans:
            name = item.scenario.name
            for key in cells:
                if interrupt.requested:
                    break
                ui.cell_started(name, key, item.scenario.load_for(key).requests)
                units = (calibration[name] or {}).get("units")
                around = _Around(systems[name], bodies[name], lineups[name].workers[key.python])
                cell = _run_cell(item, key, run_id, units, writers[dirs[name]], around,
                                 interrupt, ui, result)
                if cell is not None:
                    ui.cell_finished(cell)
            systems[name].stop(dirs[name])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for name, item in systems.items():
            item.stop(dirs.get(name))
        for writer in writers.values():
            writer.close()
    result.interrupted = interrupt.requested
    return result


def _body(item: LoadedScenario, scratch: Path) -> str:
    """The image body of the scenario, encoded once per run before any clock: its file."""
    body = getattr(item.scenario.workload, "body", None)
    if getattr(body, "image", None) is None:
        return ""
    from harness.core.image import jpeg

    try:
        data = jpeg(body.image, item.scenario.arrival_seed)
    except ImportError:
        raise HarnessError(f"{item.path}: workload.body.image: needs OpenCV: install the "
                           "service extra (pip install 'harness[service]', or make install)"
                           ) from None
    path = scratch / f"{item.scenario.name}.jpg"
    path.write_bytes(data)
    return str(path)


@dataclass
class _Around:
    """What a cell needs from its scenario's run: the systems it loads, its request body, the
    scenario as it reads it, the interpreter it runs under."""

    systems: Systems
    body_file: str
    worker: Worker


def _run_cell(item: LoadedScenario, key: CellKey, run_id: str, units: int | None,
              writer: RunWriter, around: _Around, interrupt: _Interrupt, ui: RunUI,
              result: RunResult) -> dict | None:
    """Runs one cell and writes its files; returns its cells row (None when aborted: then its
    spool stays, to be read as an incomplete cell).

    Long: a cell's life in the order it happens — its process started under its interpreter
    while the systems it loads come up, driven, stopped, written — with one clean-up path."""
    constants = {"run_id": run_id, "scenario": item.scenario.name, **key_dict(key),
                 "host": socket.gethostname(), "mix": item.scenario.mix_manifest()}
    index, spool = writer.open_cell(constants)
    label = f"cell {item.scenario.name} {key_label(key)}"
    server_stats, service_stats = {}, {}
    with tempfile.TemporaryDirectory(prefix="harness-cell-") as tmp, \
            open(Path(tmp) / "stderr.txt", "w+") as stderr:
        # The cell process imports while the mock server starts; it waits for its job on stdin.
        started_unix_ns = time.time_ns()
        preload = [key.backend, item.scenario.workload.type, key.client]
        worker = around.worker
        proc = subprocess.Popen([worker.python, "-m", "harness.cell", *preload],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, start_new_session=True,  # own group: we pass signals
                                env=worker.interpreter.environ())
        interrupt.child = proc
        observed = finished_unix_ns = up = None
        try:
            ui.cell_phase(_starting(item))
            try:
                up = around.systems.start(index)
            except ServiceError as exc:
                result.failures.append(scrub(f"{label} failed: {exc}"))
                service_stats["service_exit"] = exc.exit
            if up is not None:
                job = CellJob(around.systems.wire, key_dict(key),
                              up.url(item.scenario.target), units, tmp, str(spool),
                              mock_url=up.mock_url, body_file=around.body_file,
                              tls=around.systems.tls(up))
                watch = _watch_server(up.server, proc) if up.server else None
                ui.cell_phase("preparing the workload")  # the cell says what comes next
                observed = _drive_cell_process(proc, job, interrupt, ui)
                finished_unix_ns = time.time_ns()
                if watch is not None:
                    watch()  # stopped and joined: a poll() of its own in progress would make
                    # ours answer None (Popen lets one thread wait at a time) for a dead server
                if not interrupt.aborted:
                    server_stats, service_stats = up.stats()
                if (code := service_stats.get("service_exit")) is not None:
                    result.failures.append(f"{label}: the service ended during the cell "
                                           f"(exit {code})")
        finally:
            if up is not None:
                around.systems.served(up, writer.out_dir, interrupt.aborted)
            interrupt.cell_done()
            _signal_group(proc, signal.SIGKILL)  # nothing of the cell may outlive it
            if proc.poll() is None:
                proc.wait()
        if interrupt.aborted:
            return None
        if up is not None and (observed is None or proc.returncode != 0):
            observed = None
            result.failures.append(scrub(f"{label} failed: {failure(proc.returncode, stderr)}"))
    rows = writer.write_cell_data(index, spool, constants)
    # speedups: the analysis, from all cells
    cell = rows.cell_row(observed, server_stats, item.scenario.load_for(key).max_sched_lag)
    cell.update(started_unix_ns=started_unix_ns, finished_unix_ns=finished_unix_ns,
                **service_stats)
    writer.commit(index, spool, cell)
    if observed and observed.get("spool_error"):
        raise HarnessError(f"{observed['spool_error']} (rows flushed before are kept)")
    return cell


def _starting(item: LoadedScenario) -> str:
    """The phase while the systems a cell loads come up."""
    parts = [name for name, there in (("the mock server", item.scenario.server),
                                      ("the service", item.scenario.service)) if there]
    return f"starting {' and '.join(parts)}" if parts else "starting the cell"


def show_live(live: LiveCell, ui: RunUI, cell_id=None) -> None:
    """The running cell's live figures to the UI. Whatever goes wrong in the view's own
    reading stays there: the run's files are read elsewhere, and the run goes on."""
    with contextlib.suppress(Exception):
        ui.cell_live(live.poll(), cell_id)


def _watch_server(server: ServerProcess, cell: subprocess.Popen) -> Callable[[], None]:
    """Until the returned function is called (it stops the watcher and waits for it): when the
    mock server dies, tell the cell (it releases nothing more; its requests in flight fail and
    become rows). Polled, so within 1 s."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(SERVER_POLL_S):
            if server.proc.poll() is not None:
                with contextlib.suppress(ProcessLookupError):
                    cell.send_signal(SERVER_DIED)
                return

    watcher = threading.Thread(target=watch, name="server-watch", daemon=True)
    watcher.start()

    def stop() -> None:
        done.set()
        watcher.join()

    return stop


def _drive_cell_process(proc: subprocess.Popen, job: CellJob, interrupt: _Interrupt,
                        ui: RunUI) -> dict | None:
    """Send the job, relay progress (and the live figures, when the UI wants them), return
    the final message (None if there was none)."""
    if interrupt.requested:  # a signal that came while the process was starting
        interrupt.handle(signal.SIGTERM, None)
    try:
        proc.stdin.write(job.to_json())
        proc.stdin.close()
    except BrokenPipeError:
        return None
    result = None
    live = LiveCell(Path(job.spool_dir)) if ui.wants_live else None
    try:
        for line in proc.stdout:  # "completed" comes every 0.5 s once the clock runs
            message = json.loads(line)
            if "completed" in message:
                ui.cell_progress(message["completed"])
                if live is not None:
                    show_live(live, ui)
            elif "phase" in message:
                ui.cell_phase(message["phase"])
            elif message.get("done"):
                result = message
    except (OSError, ValueError):  # killed mid-line
        pass
    proc.wait()
    return result
