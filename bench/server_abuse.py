"""Throughput of the mock server under `harness serve` with and without 1 000 slow-loris clients
A measurement, not a test.

`wrk -t1 -c50 -d5s` against a zero-latency endpoint (server-bound): clean, then while 1 000
connections each send one header byte a second (never finishing it), then clean again. Printed:
the three figures, errors and non-2xx counts, and loris ÷ the mean of the clean runs (the target
is ≥ 0.5). Only 127.0.0.1; every phase bounded in time.

    python -m bench.server_abuse [--seconds 5] [--loris 1000] [--connections 50] [--out RUN]

Writes RUN/summary.md (default results/server_abuse/<UTC time>/); exits 0 when the target is
met, 1 when it is missed, 2 without wrk, 3 when the server, wrk or a loris connection failed.
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

from bench import evidence
from bench.evidence import FAILED, NO_SETUP, Verdict
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
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise ValueError(f"wrk's output has no Requests/sec: {out[-300:]!r}")
    rate = float(found[1])
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


RATIO = 0.5  # target: loris ÷ the mean of the clean runs ≥ this


def verdicts(clean1: float, loris: float, clean2: float, loris_count: int) -> list[Verdict]:
    """The three rates, reported, and loris ÷ the mean of the clean ones, judged."""
    ratio = loris / ((clean1 + clean2) / 2)
    return [Verdict("clean, requests/s", f"{clean1:.0f}/s, then {clean2:.0f}/s"),
            Verdict(f"{loris_count} slow-loris held, requests/s", f"{loris:.0f}/s"),
            Verdict("loris ÷ clean", f"{ratio:.2f}", f"≥ {RATIO:g}", bool(ratio >= RATIO))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--loris", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--out", type=Path, help="RUN: where summary.md goes (default: "
                                                 "results/server_abuse/<UTC time>/)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.loris <= 10_000:
        parser.error("--seconds must be 1..60 and --loris 1..10000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print("bench.server_abuse: wrk is not installed (it loads the server)", file=sys.stderr)
        return NO_SETUP
    sitting = evidence.Sitting()
    notes: list[str] = []
    if note := raise_fd_limit(args.loris + 200):  # the loris sockets, with room to spare
        print(f"note: {note}", file=sys.stderr)
        notes.append(note)
    lines: list[str] = []
    try:
        found = measure(args, lines)
        code = evidence.status(found)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        found, code = [], FAILED
        notes.append(f"the measurement failed: {type(exc).__name__}: {str(exc)[:300]}")
        print(f"bench.server_abuse: {notes[-1]}", file=sys.stderr)
    path = sitting.write_summary(evidence.run_folder("server_abuse", args.out),
                                 "Mock server under slow-loris", found, notes,
                                 evidence.printed(lines), code=code)
    print(f"written: {path}")
    return code


def measure(args: argparse.Namespace, lines: list[str]) -> list[Verdict]:
    """Clean, with the loris clients, clean again: printed (and kept in `lines`) as it goes."""
    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "abuse.yaml"
        path.write_text(SCENARIO)
        serve = subprocess.Popen([sys.executable, "-m", "harness", "serve", str(path)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            found = re.search(r"127\.0\.0\.1:(\d+)", serve.stdout.readline())
            if found is None:
                raise ValueError(f"harness serve did not start (exit {serve.poll()})")
            port = int(found[1])
            clean1, problems1 = wrk(port, args.seconds, args.connections)
            say(f"clean                    {clean1:9.0f} requests/s  ({problems1})")
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
            say(f"{args.loris} slow-loris held {rate:9.0f} requests/s  ({problems}; "
                f"the server held {held} sockets; {alive} loris connections still open after, "
                f"{loris.sent} bytes dripped)")
            clean2, problems2 = wrk(port, args.seconds, args.connections)
            say(f"clean again              {clean2:9.0f} requests/s  ({problems2})")
            say(f"ratio loris ÷ clean      {rate / ((clean1 + clean2) / 2):9.2f} "
                f"(target ≥ {RATIO:g})")
        finally:
            serve.send_signal(signal.SIGINT)
            serve.wait(10)
    return verdicts(clean1, rate, clean2, args.loris)


if __name__ == "__main__":
    sys.exit(main())
