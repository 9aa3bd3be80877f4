"""The system under test the harness starts itself (`service:`): in its own process group on a
free loopback port, ready when its `ready` path answers 2xx, its CPU time counted from then,
stopped with SIGTERM to it and SIGKILL to its whole group after a grace, so nothing of it is
left running or listening. Its output goes to a private folder and reaches the run folder only
with every secret replaced (its environment is the user's, and may hold credentials)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.secrets import scrub
from harness.core.units import format_duration_ns
from harness.core.wire import local_opener
from harness.scenario.service import Service, fill

STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL to the group
POLL_S = 0.05  # the ready path's polling interval
TAIL_CHARS = 300  # of its stderr, in the one line a failed start gets


class ServiceError(HarnessError):
    """The service did not start (or not in time): one line with the tail of its stderr;
    `exit`: its exit status when it ended."""

    def __init__(self, message: str, exit: int | None = None) -> None:
        super().__init__(message)
        self.exit = exit


def free_port() -> int:
    """A loopback port free now (the service binds it a moment later: the usual small race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_cpu_s(pid: int) -> float | None:
    """CPU time of a process and its descendants, the ended ones it waited for included;
    None when it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class ServiceProcess:
    """One start of the service. `values`: the placeholders but {port}, filled here."""

    def __init__(self, config: Service, values: dict[str, str], logs: Path,
                 secrets: tuple[str, ...] = ()) -> None:
        self.config = config
        self.port = free_port()
        self.values = {**values, "port": str(self.port)}
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = logs  # the private folder its raw output goes to
        self.secrets = secrets
        self.proc: subprocess.Popen | None = None
        self.ready_cpu_s = 0.0
        self.exit: int | None = None  # its exit status once it ended

    def start(self) -> ServiceProcess:
        argv = [fill(arg, self.values) for arg in self.config.command]
        env = {**os.environ, **{k: fill(v, self.values) for k, v in self.config.env.items()}}
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "out", "wb") as out, open(self.logs / "err", "wb") as err:
            try:
                self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=err, start_new_session=True)
            except OSError as exc:
                raise ServiceError(self._line(f"service.command: cannot run {argv[0]} "
                                              f"({exc.strerror})")) from None
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_cpu_s = tree_cpu_s(self.proc.pid) or 0.0
        return self

    def _wait_ready(self) -> None:
        timeout_ns = self.config.ready_timeout
        deadline = time.monotonic() + timeout_ns / 1e9
        url = self.url + self.config.ready
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServiceError(self._line(f"service: ended with {_status(code)} before "
                                              f"it was ready{self._tail()}"), code)
            with contextlib.suppress(OSError, ValueError):
                with local_opener().open(url, timeout=1) as resp:
                    if 200 <= resp.status < 300:
                        return
            if time.monotonic() > deadline:
                raise ServiceError(self._line(
                    f"service.ready: {self.config.ready} did not answer 2xx within "
                    f"{format_duration_ns(timeout_ns)}{self._tail()}"))
            time.sleep(POLL_S)

    def _tail(self) -> str:
        """`: ` and the last line it wrote to stderr, if any."""
        try:
            with open(self.logs / "err", "rb") as err:
                err.seek(0, os.SEEK_END)
                err.seek(max(0, err.tell() - 4096))
                lines = err.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return f": {last[-TAIL_CHARS:]}" if last else ""

    def _line(self, text: str) -> str:
        return scrub(" ".join(text.split()), self.secrets)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_since_ready_s(self) -> float | None:
        """CPU time of its process tree since it was ready; None once it has ended."""
        total = tree_cpu_s(self.proc.pid) if self.alive() else None
        return None if total is None else max(0.0, total - self.ready_cpu_s)

    def lag_p99_ns(self) -> int | None:
        """Its own event loop's lag p99 since the last read (`service.lag_path`), else None."""
        if self.config.lag_path is None or not self.alive():
            return None
        try:
            with local_opener().open(self.url + self.config.lag_path, timeout=5) as resp:
                value = json.loads(resp.read()).get("p99_ns")
        except (OSError, ValueError, AttributeError):
            return None
        return int(value) if isinstance(value, int | float) else None

    def mark(self) -> None:
        """A cell starts now: its CPU time and loop lag count from here."""
        self.ready_cpu_s = tree_cpu_s(self.proc.pid) or self.ready_cpu_s
        self.lag_p99_ns()  # the read resets its window

    def stop(self) -> int | None:
        """SIGTERM to the service, SIGKILL to its group after the grace (and to whatever of
        the group outlived it); its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()
        return self.proc.returncode

    def keep_logs(self, stem: Path) -> None:
        """Its output so far into `stem`.out / .err, every secret replaced; the raw files go."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        for kind in ("out", "err"):
            raw = self.logs / kind
            try:
                text = raw.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            stem.with_name(f"{stem.name}.{kind}").write_text(scrub(text, self.secrets))
            raw.unlink(missing_ok=True)


def _status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit status {code}"
