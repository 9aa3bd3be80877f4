"""A cell on a Dask worker (harness.run.cluster submits it): its mock server and its cell process
started on the worker's machine as the local runner starts them, its spool files shipped back
as they grow (raw Arrow IPC bytes through a `distributed.Queue`), its final report returned.

Everything travels in the payload (the scenario's text, the request body's bytes); the cell
writes into a private temporary folder of the worker, removed at the end. One cell per
machine at a time: a `distributed.Lock` named after the host, since two cells sharing cores
would measure each other. Imported on workers, and by the runner only under --cluster."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.core.job import GRACE_S, SERVER_DIED, CellJob
from harness.core.tls import cell_tls
from harness.run.exits import failure as exit_failure
from harness.run.workers import sources_hash

LOCK_PREFIX = "harness-host-"
POLL_S = 0.25  # how often a running cell's spool is shipped and its events looked at
CHUNK = 8 << 20  # bytes of one spool file per queue message, at most
KILL_AFTER_S = GRACE_S + 10  # after a stop, a cell process still alive then is killed
# A host's lock held by a worker that died is free again after this (Dask's default is 30 s);
# the worker's own client renews it several times within.
LEASE = "10s"
# The harness sources this process loaded, hashed when it loaded them: a worker still running
# code older than its files counts as another version.
_SOURCES = sources_hash(Path(__file__).resolve().parent.parent)
_calibrated: dict[tuple, dict] = {}  # per worker process: (run, kind, duration) → calibration


def host_name() -> str:
    return socket.gethostname()


def host_facts() -> dict:
    """What the run metadata says of a worker's machine (client.run calls it on each)."""
    import psutil

    from harness.core.keys import running_python
    from harness.store.meta import cpu_model

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"host": host_name(), "cores": os.cpu_count(), "usable_cores": usable,
            "memory_bytes": psutil.virtual_memory().total, "cpu_model": cpu_model(),
            "python": platform.python_version(), "python_key": running_python(),
            "platform": platform.platform(),
            "harness": _SOURCES}


def calibrate_task(run_id: str, kinds: list[tuple[str, int]]) -> dict:
    """CPU units on this host, each (kind, duration) measured with the host to itself."""
    with _host_lock():
        return {f"{kind}:{duration}": _calibration(run_id, kind, duration)
                for kind, duration in kinds}


def _calibration(run_id: str, kind: str, duration: int) -> dict:
    from harness.core.kernels import calibrate

    key = (run_id, kind, duration)
    if key not in _calibrated:
        _calibrated[key] = calibrate(kind, duration)
    return _calibrated[key]


def cell_task(payload: dict) -> dict:
    """One attempt at one cell. Waits for its host's lock; gives up waiting when the run is
    stopped or this attempt was written off (the runner took it for lost)."""
    from distributed import Event, Queue

    names = payload["names"]
    events = {name: Event(names[name]) for name in ("stop", "kill", "cancel")}
    queue = Queue(names["queue"])
    if payload.get("spread"):  # one generator of a cell: the runner runs nothing beside it
        if events["stop"].is_set() or events["cancel"].is_set():
            return {"token": payload["token"], "skipped": True}
        return _Cell(payload, queue, events).run()
    lock = _host_lock()
    while not lock.acquire(timeout=POLL_S):
        if events["stop"].is_set() or events["cancel"].is_set():
            return {"token": payload["token"], "skipped": True}
    try:
        if events["stop"].is_set() or events["cancel"].is_set():
            return {"token": payload["token"], "skipped": True}
        return _Cell(payload, queue, events).run()
    finally:
        lock.release()


def _host_lock():
    import dask
    from distributed import Lock

    # Set for the worker process, not for a block: the lock registers itself (and reads it)
    # later, on the worker's event loop. The worker exists to run cells.
    dask.config.set({"distributed.scheduler.locks.lease-timeout": LEASE})
    return Lock(LOCK_PREFIX + host_name())


def _libc_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _libc_prctl()  # looked up here: after a fork in a threaded worker, only a call


def _die_with_parent() -> None:
    """In a child before exec: killed when the worker process dies (a worker lost with its
    machine's cell must not leave the cell loading the target)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Shipper:
    """The spool folder's files, sent as they grow: (file, offset, bytes) messages, so the
    runner's copy has every whole batch the worker's has, up to the last shipping."""

    def __init__(self, folder: Path, queue, token: str) -> None:
        self.folder, self.queue, self.token = folder, queue, token
        self.offsets: dict[str, int] = {}

    def ship(self) -> None:
        for path in sorted(self.folder.iterdir()):
            offset = self.offsets.get(path.name, 0)
            with open(path, "rb") as source:
                source.seek(offset)
                while data := source.read(CHUNK):
                    self.queue.put({"token": self.token, "file": path.name, "offset": offset,
                                    "data": data})
                    offset += len(data)
            self.offsets[path.name] = offset


class _Cell:
    def __init__(self, payload: dict, queue, events: dict) -> None:
        self.payload, self.queue, self.events = payload, queue, events
        self.token = payload["token"]
        self.barrier: _Barrier | None = None
        self.failure: str | None = None  # what went wrong around the cell process

    def say(self, **message) -> None:
        self.queue.put({"token": self.token, **message})

    def run(self) -> dict:
        from distributed import get_worker

        started = time.time_ns()
        self.say(started=True, host=host_name(), worker=get_worker().address,
                 started_unix_ns=started)
        work = Path(tempfile.mkdtemp(prefix="harness-cell-"))
        try:
            result = self._run(work)
        except Exception as exc:  # a cell that cannot start: one line, the run goes on
            from harness.core.secrets import scrub

            result = {"failure": scrub(str(exc).splitlines()[0] if str(exc) else
                                       type(exc).__name__)}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"token": self.token, "host": host_name(), "started_unix_ns": started,
                **result}

    def _run(self, work: Path) -> dict:
        from harness.mock.process import ServerProcess

        payload = self.payload
        spool = work / "spool"
        spool.mkdir()
        body_file = ""
        if payload.get("body") is not None:
            body_file = str(work / "body")
            Path(body_file).write_bytes(payload["body"])
        python, env = _python(payload)
        units = _units(payload)
        spread = payload.get("spread")
        generator = spread["generator"] if spread else 0
        with open(work / "stderr.txt", "w+") as stderr:
            proc = subprocess.Popen([python, "-m", "harness.cell", *payload["preload"]],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=stderr, text=True, start_new_session=True, env=env,
                                    preexec_fn=_die_with_parent)
            server = None
            stats = {}
            try:
                if payload["server"] and generator == 0:
                    server = ServerProcess(payload["wire"], preexec_fn=_die_with_parent,
                                           tls=payload["server_tls"])
                    server.__enter__()
                self.barrier = _Barrier(spread, server) if spread else None
                url, tls = self._target(server)
                job = CellJob(payload["wire"], payload["key"], url, units, str(work),
                              str(spool), body_file=body_file, generator=generator,
                              spread=bool(spread), tls=tls)
                observed = self._drive(proc, job, server, _Shipper(spool, self.queue,
                                                                    self.token))
                finished = time.time_ns()
                if server is not None:
                    stats = server.stats()
                    stats["exit"] = server.proc.poll()
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                if proc.poll() is None:
                    proc.wait()
                if server is not None:
                    server.stop()
            failure = self.failure
            if observed is None or proc.returncode != 0:
                observed = None
                failure = failure or exit_failure(proc.returncode, stderr)
        found = {"observed": observed, "failure": failure, "server_stats": stats,
                 "finished_unix_ns": finished, "units": units}
        if self.barrier is not None:
            found.update(generator=generator, clock=self.barrier.clock,
                         reached=self.barrier.reached)
        return found

    def _target(self, server) -> tuple[str, dict | None]:
        """The URL the cell loads (its own mock server's, generator 0's, or the target) and
        its TLS settings, with the CA the mock server was made with."""
        payload = self.payload
        if not payload["server"]:
            return payload["target"], cell_tls(payload["tls"], payload["target"], None)
        if server is not None:
            return server.url, cell_tls(payload["tls"], server.url, server.ca_pem)
        url = self.barrier.server_url()
        return url, cell_tls(payload["tls"], url, self.barrier.ca_pem)

    def _start(self, proc: subprocess.Popen, barrier: _Barrier) -> None:
        """Answer a spread generator's `ready` with its start; an empty line (stop) when the
        barrier failed, so that the cell never waits on its stdin."""
        start = None
        try:
            start = barrier.start(self.events)  # this machine's clock, or None
        except Exception as exc:  # e.g. the scheduler went away: the cell stops, said why
            self.failure = f"the start barrier failed ({type(exc).__name__}: {exc})"
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.write(f"{start if start is not None else ''}\n")
                proc.stdin.close()

    def _drive(self, proc: subprocess.Popen, job: CellJob, server, shipper: _Shipper):
        """Send the job; until the cell ends ship its spool, pass on its progress, and the
        run's stop (SIGTERM, then SIGKILL after the grace) and the server's death."""
        result: list[dict] = []
        barrier = self.barrier

        def read() -> None:
            try:
                for line in proc.stdout:
                    message = json.loads(line)
                    if "completed" in message:
                        self.say(completed=message["completed"])
                    elif "phase" in message:
                        self.say(phase=message["phase"])
                    elif message.get("ready") and barrier is not None:
                        self._start(proc, barrier)
                    elif message.get("done"):
                        result.append(message)
            except (OSError, ValueError):
                pass

        try:
            proc.stdin.write(job.to_json() + "\n")
            if barrier is None:
                proc.stdin.close()
            else:
                proc.stdin.flush()
        except BrokenPipeError:
            return None
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        stopped_at = told_server = None
        while proc.poll() is None:
            time.sleep(POLL_S)
            shipper.ship()
            if self.events["kill"].is_set():
                os.killpg(proc.pid, signal.SIGKILL)
            elif stopped_at is None and (self.events["stop"].is_set()
                                         or self.events["cancel"].is_set()):
                stopped_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
            elif stopped_at is not None and time.monotonic() - stopped_at > KILL_AFTER_S:
                os.killpg(proc.pid, signal.SIGKILL)
            if (server is not None and not told_server and server.proc.poll() is not None):
                told_server = True
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(SERVER_DIED)
        reader.join()
        shipper.ship()
        return result[0] if result else None


READY_WAIT_S = 120.0  # for every generator of a spread cell to be ready (connections open)
START_MARGIN_NS = 1_000_000_000  # the common start: this far after the last one was ready


def _units(payload: dict) -> int | None:
    """This host's CPU units: measured before the run, else now."""
    if not payload.get("calibrate"):
        return None
    kind, duration = payload["calibrate"]
    return (payload.get("units_by_host") or {}).get(host_name()) or _calibration(
        payload["run_id"], kind, duration)["units"]


class _Barrier:
    """The start of a cell spread over several workers: generator 0 publishes its mock
    server's URL; every generator, once ready, measures its clock against the scheduler's and
    says so; generator 0 then sets one start instant on the scheduler's clock, which each
    generator turns into its own."""

    def __init__(self, spread: dict, server) -> None:
        from distributed import Queue, Variable, get_client

        self.client = get_client()  # in the task's thread: the reader's has no worker context
        self.spread, self.server = spread, server
        base = spread["cell"]
        self.ready = Queue(f"{base}-ready")
        self.url = Variable(f"{base}-url")
        self.begin = Variable(f"{base}-start")
        self.clock: dict = {}  # this host's offset to the scheduler's clock, and how sure
        self.reached = ""  # the mock server's host, when it is another machine's
        self.ca_pem = None  # its CA (server.tls)
        if server is not None:
            self.url.set({"url": server.url, "host": host_name(), "ca": server.ca_pem})

    def server_url(self) -> str:
        from harness.mock.listen import seen_from_elsewhere

        found = self.url.get(timeout=READY_WAIT_S)
        self.ca_pem = found.get("ca")
        if found["host"] == host_name():
            return found["url"]
        self.reached = found["host"]
        return seen_from_elsewhere(found["url"])  # a loopback bind: one line, the cell fails

    def start(self, events: dict) -> int | None:
        """The start on this machine's clock (Unix ns); None when the cell stops first."""
        g = self.spread["generator"]
        self.clock = {"generator": g, **_offset(self.client)}
        self.ready.put(g)
        if g == 0:
            self._lead(events)
        end = time.monotonic() + READY_WAIT_S + 30  # generator 0 died before it led
        while True:
            try:
                instant = self.begin.get(timeout=1)
                break
            except TimeoutError:
                if (events["stop"].is_set() or events["cancel"].is_set()
                        or time.monotonic() > end):
                    return None
        if instant is None:
            return None
        local = instant - self.clock["offset_ns"]
        if self.server is not None:  # its stalls and crash_after count from the same instant
            from harness.core.clock import now_ns
            from harness.core.wire import post_t0

            post_t0(self.server.url, now_ns() + local - time.time_ns(), quiet=True)
        return local

    def _lead(self, events: dict) -> None:
        waiting, end = self.spread["generators"], time.monotonic() + READY_WAIT_S
        while waiting and time.monotonic() < end:
            if events["stop"].is_set() or events["cancel"].is_set():
                self.begin.set(None)
                return
            with contextlib.suppress(TimeoutError):
                self.ready.get(timeout=1)
                waiting -= 1
        # late ones start at once when they come: their rows say so
        now = self.client.run_on_scheduler(time.time_ns)
        self.begin.set(now + START_MARGIN_NS)


def _offset(client, tries: int = 5) -> dict:
    """This machine's clock against the scheduler's: the scheduler's time minus ours at the
    midpoint of the fastest of a few round trips."""
    best = None
    for _ in range(tries):
        before = time.time_ns()
        theirs = client.run_on_scheduler(time.time_ns)
        after = time.time_ns()
        if best is None or after - before < best[1]:
            best = (theirs - (before + after) // 2, after - before)
    return {"host": host_name(), "offset_ns": best[0], "round_trip_ns": best[1]}


def _python(payload: dict) -> tuple[str, dict]:
    """The cell's interpreter on this host: the worker's own when the `python` key is its
    key, else the named one found and prepared here as the runner does at home."""
    from harness.core.errors import HarnessError
    from harness.core.keys import running_python

    tag = payload["key"].get("python")
    spec = payload.get("python_spec") or ""
    if tag is None or (tag == running_python() and not tag.endswith("-gil")):
        env = dict(os.environ)
        env.pop("PYTHON_GIL", None)
        return sys.executable, env
    if not spec:
        raise HarnessError(f"python {tag} is not this worker's ({running_python()}) on "
                           f"{host_name()}: start the worker under it, or name it by version")
    from harness.run.pythons import Finder
    from harness.run.workers import prepare
    from harness.scenario.interpreters import parse_spec

    finder = Finder()
    found = finder.resolve(parse_spec(spec), f"python {tag} on {host_name()}")
    if found is None:
        raise HarnessError(f"python {tag} is not installed on {host_name()}")
    worker = prepare(found, finder.root)
    return worker.python, found.environ()

