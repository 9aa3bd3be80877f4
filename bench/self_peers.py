"""bench-self's peers: wrk (from the distribution's packages) and Locust (from PyPI, into
bench/.venv-locust, kept between runs), set up when missing, and one measurement of each:
wrk, Locust's FastHttpUser headless, and the bare loops (bench/bare_loops.py) the harness
wraps, each against a mock server the caller started."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench import ROOT
from bench.evidence import NO_SETUP
from bench.self_sitting import CONNECTIONS, Sitting, child_env, say

LOCUST_VENV = ROOT / "bench" / ".venv-locust"
LOCUST_SPEC = "locust>=2.20,<3"
LOCUSTFILE = """\
from locust import FastHttpUser, task


class Api(FastHttpUser):
    @task
    def api(self):
        self.client.get("/api")
"""


def setup_peers(sitting: Sitting) -> None:
    """wrk and Locust found or set up; the sitting exits 2 (evidence.NO_SETUP), saying so in
    one line, when one cannot be, unless BENCH_SELF_ALLOW_SKIP=1 (then its figures are not
    measured, and not judged)."""
    missing = []
    sitting.wrk = ensure_wrk()
    if sitting.wrk is None:
        missing.append("wrk (apt-get install -y wrk failed)")
    sitting.locust = ensure_locust()
    if sitting.locust is None:
        missing.append(f"Locust ({LOCUST_SPEC} into {LOCUST_VENV.relative_to(ROOT)} failed)")
    if missing:
        message = "bench-self: cannot set up " + " and ".join(missing)
        if os.environ.get("BENCH_SELF_ALLOW_SKIP") != "1":
            print(message + "; set BENCH_SELF_ALLOW_SKIP=1 to run without it",
                  file=sys.stderr)
            sys.exit(NO_SETUP)
        say(message + "; BENCH_SELF_ALLOW_SKIP=1: its figures are not measured")
        sitting.notes.append(message)
    versions = []
    if sitting.wrk:
        versions.append(subprocess.run([sitting.wrk, "--version"], capture_output=True,
                                       text=True).stdout.split(" [")[0].strip())
    if sitting.locust:
        versions.append(subprocess.run([str(sitting.locust), "--version"], capture_output=True,
                                       text=True).stdout.split(" from ")[0].strip())
    sitting.notes.append("peers: " + ", ".join(versions))


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say("wrk is missing: apt-get install -y wrk")
    for steps in ([["install", "-y", "wrk"]], [["update"], ["install", "-y", "wrk"]]):
        for step in steps:
            try:
                subprocess.run(apt + step, env=env, capture_output=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired):
                break
        if shutil.which("wrk"):
            return shutil.which("wrk")
    return None


def ensure_locust() -> Path | None:
    exe = LOCUST_VENV / "bin" / "locust"

    def works() -> bool:
        try:
            return subprocess.run([str(exe), "--version"], capture_output=True,
                                  timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if exe.exists() and works():
        return exe
    say(f"Locust is missing: {LOCUST_SPEC} into {LOCUST_VENV.relative_to(ROOT)} (PyPI)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(LOCUST_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", LOCUST_SPEC], check=True,
                       capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        say(f"  failed: {exc}")
        return None
    return exe if works() else None


def run_wrk(wrk: str, url: str, seconds: int, latency: bool = False) -> dict:
    cmd = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url]
    if latency:
        cmd.insert(1, "--latency")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         check=True).stdout
    found = {"rps": float(re.search(r"Requests/sec:\s*([\d.]+)", out)[1]),
             "errors": sum(int(n) for n in re.findall(
                 r"(?:connect|read|write|timeout) (\d+)", out))}
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    found["errors"] += int(bad[1]) if bad else 0
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        hit = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if hit:
            found[key] = float(hit[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[hit[2]]
    return found


def run_locust(locust: Path, tmp: Path, url: str, seconds: int) -> dict:
    folder = tmp / "locust"
    folder.mkdir(exist_ok=True)
    (folder / "locustfile.py").write_text(LOCUSTFILE)
    done = subprocess.run(
        [str(locust), "-f", "locustfile.py", "--headless", "-u", str(CONNECTIONS),
         "-r", str(CONNECTIONS), "--run-time", f"{seconds}s", "-H", url, "--json",
         "--only-summary", "--loglevel", "WARNING"],
        cwd=folder, capture_output=True, text=True, timeout=seconds + 60)
    stats = json.loads(done.stdout)
    requests = sum(s["num_requests"] for s in stats)
    failures = sum(s["num_failures"] for s in stats)
    span = (max(s["last_request_timestamp"] for s in stats)
            - min(s["start_time"] for s in stats))
    return {"rps": requests / span, "errors": failures}


def run_bare(client: str, url: str, seconds: int, loop: str) -> dict:
    """One bare loop (bench/bare_loops.py) on `loop`: uvloop, asyncio or threads; its figures
    per request as a harness cell's are counted (CPU in µs, user and system; context
    switches)."""
    cmd = [sys.executable, "-m", "bench.bare_loops", client, url, "--seconds",
           str(seconds), "--concurrency", str(CONNECTIONS), "--json"]
    if loop in ("asyncio", "threads"):
        cmd.append(f"--{loop}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                          check=True, env=child_env(), cwd=ROOT)
    found = json.loads(done.stdout)
    n = max(found["requests"], 1)
    found.update(cpu_us=1e6 * found["cpu_s"] / n, user_us=1e6 * found["cpu_user_s"] / n,
                 sys_us=1e6 * found["cpu_sys_s"] / n, csw=found["ctx_switches"] / n)
    return found
