"""The mock server in its own process, fresh for each cell: started, asked for its counts and
told the cell's t0 over HTTP, stopped. Nothing of the server itself is imported here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.wire import OWN_ROUTES, local_opener, post_t0
from harness.mock.listen import seen_from_elsewhere
from harness.mock.tls import CERT_ENV, mint

STOP_WAIT_S = 0.3  # the server's own wait for hanging handlers when it is told to stop



class ServerProcess:
    """Starts the mock server in a child process on port 0 of the scenario's server.listen
    (127.0.0.1 unless it says otherwise) and hands back its URL: `url` for a client on this
    machine, `remote_url()` for one on another machine. With `tls` (server.tls) it serves
    HTTPS with a certificate of a CA made here, whose PEM text is `ca_pem`."""

    def __init__(self, scenario_text: str, startup_timeout_s: float = 15.0,
                 python: str = sys.executable, env: dict[str, str] | None = None,
                 preexec_fn=None, tls: bool = False) -> None:
        self._preexec = preexec_fn  # e.g. to die with a cluster worker
        self._text = scenario_text  # the child re-parses the source: one parser, no re-encoding
        self._python, self._env = python, env  # server.python: another interpreter
        self._timeout = startup_timeout_s
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.ready_cpu_s = 0.0  # the server's CPU time when it was ready: its start-up
        self.ca_pem: str | None = None
        self._certs = tempfile.TemporaryDirectory(prefix="harness-tls-") if tls else None

    def __enter__(self) -> ServerProcess:
        if self._certs is not None:  # the key stays in this private folder, gone at stop
            from harness.scenario.loader import parse_wire  # the address it will listen on

            listen = parse_wire(self._text).server.listen
            chain, self.ca_pem = mint(Path(self._certs.name), listen)
            self._env = {**(self._env or os.environ), CERT_ENV: chain}
        self.proc = subprocess.Popen(
            [self._python, "-m", "harness.mock"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=self._env,
            # Its own process group: the parent decides when the server stops, so a terminal
            # Ctrl-C cannot kill it while the cell's in-flight requests are still finishing.
            start_new_session=True, preexec_fn=self._preexec,
        )
        try:
            self.proc.stdin.write(self._text)
            self.proc.stdin.close()
            self.url = self.proc.stdout.readline().strip()
            if not self.url.startswith(("http://", "https://")):
                raise HarnessError(f"mock server failed to start (exit {self.proc.wait(5)})")
            self._wait_ready()
            self.ready_cpu_s = self.stats().get("cpu_s", 0.0)
        except BaseException:
            self.stop()
            raise
        return self

    def remote_url(self) -> str:
        """The URL a cell on another machine uses; a loopback-bound server has none."""
        return seen_from_elsewhere(self.url)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                with local_opener().open(self.url + OWN_ROUTES + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise HarnessError(f"mock server at {self.url} not ready") from None
                time.sleep(0.02)

    def stats(self) -> dict:
        """The server's own counts; empty when it no longer answers. `cpu_since_ready_s`: its
        CPU time since it was ready, without its start-up (imports, binding)."""
        try:
            with local_opener().open(self.url + OWN_ROUTES + "/stats", timeout=5) as resp:
                found = json.loads(resp.read())
        except (OSError, ValueError):
            return {}
        found["cpu_since_ready_s"] = found["cpu_s"] - self.ready_cpu_s
        return found

    def set_t0(self, t0_ns: int) -> None:
        """Tell the server when the cell's clock started (now_ns() of any process): its stalls
        and a crash_after duration count from there."""
        post_t0(self.url, t0_ns)

    def stop(self) -> None:
        if self._certs is not None:  # the server read its key at start
            self._certs.cleanup()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_WAIT_S + 1)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


