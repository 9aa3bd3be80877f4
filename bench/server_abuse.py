"""Throughput of the mock server under `harness serve` with and without 1 000 slow-loris clients
A measurement, not a test.

`wrk -t1 -c50 -d5s` against a zero-latency endpoint (server-bound): clean, then while 1 000
connections each send one header byte a second (never finishing it), then clean again. Printed:
the three figures, errors and non-2xx counts, and loris ÷ the mean of the clean runs (the target
is ≥ 0.5). Only 127.0.0.1; every phase bounded in time.

    python -m bench.server_abuse [--seconds 5] [--loris 1000] [--connections 50]
"""

from __future__ import annotations

import argparse
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.core.system import raise_fd_limit

SCENARIO = """\
name: abuse_bench
server:
  endpoints:
    api: {latency: 0, size: 128}
workload: {endpoint: api}
load: {requests: 1, concurrency: 1}
"""


def wrk(port: int, seconds: int, connections: int) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/api"],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    problems = " ".join(line.strip() for line in out.splitlines()
                        if "Socket errors" in line or "Non-2xx" in line)
    return rate, problems or "no errors"


def held_by(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    if not fds.exists():
        return -1
    return sum(1 for fd in fds.iterdir() if fd.readlink().name.startswith("socket:"))


class Loris:
    """`count` connections, each sent one more byte of an endless header every second."""

    def __init__(self, port: int, count: int) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
                      for _ in range(count)]
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        header = b"GET /api HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 4000
        for i in range(len(header)):  # at most ~70 min; stopped long before
            for sock in self.socks:
                sock.send(header[i:i + 1])
                self.sent += 1
            if self.stop.wait(1.0):
                return

    def open(self) -> int:
        """Connections the server has not closed (nothing to read: no EOF, no answer)."""
        poll = select.poll()
        for sock in self.socks:
            poll.register(sock, select.POLLIN | select.POLLHUP)
        return len(self.socks) - len(poll.poll(0))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--loris", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed")
    if note := raise_fd_limit(args.loris + 200):  # the loris sockets, with room to spare
        print(f"note: {note}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "abuse.yaml"
        path.write_text(SCENARIO)
        serve = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = int(re.search(r"127\.0\.0\.1:(\d+)", serve.stdout.readline())[1])
            clean1, problems1 = wrk(port, args.seconds, args.connections)
            print(f"clean                    {clean1:9.0f} requests/s  ({problems1})")
            loris = Loris(port, args.loris)
            try:
                deadline = time.monotonic() + 10
                while held_by(serve.pid) < args.loris and time.monotonic() < deadline:
                    time.sleep(0.1)
                held = held_by(serve.pid)
                rate, problems = wrk(port, args.seconds, args.connections)
                alive = loris.open()
            finally:
                loris.close()
            print(f"{args.loris} slow-loris held {rate:9.0f} requests/s  ({problems}; "
                  f"the server held {held} sockets; {alive} loris connections still open after, "
                  f"{loris.sent} bytes dripped)")
            clean2, problems2 = wrk(port, args.seconds, args.connections)
            print(f"clean again              {clean2:9.0f} requests/s  ({problems2})")
            print(f"ratio loris ÷ clean      {rate / ((clean1 + clean2) / 2):9.2f}")
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(10)


if __name__ == "__main__":
    main()
