"""`make bench-self`: the harness measured against its peers and against itself, side by
side in one sitting, every figure with its target and whether it was met. A benchmark, not a
test: it exits 0 whatever it measured, and 1 only when a peer cannot be set up.

Peers, set up here: wrk from the distribution's packages (`apt-get install -y wrk` when it is
missing) and Locust from PyPI into bench/.venv-locust (kept between runs). When one cannot be
set up the script exits 1 saying so, unless BENCH_SELF_ALLOW_SKIP=1: then the figures that need
it are reported as not measured.

What it measures, all on loopback against the mock server's `fast` engine (GET /api, 128-byte
body), 50 connections, zero delay, `--seconds` each (default 5):

1. Throughput, `--rounds` rounds (default 3; fewer when the time budget runs short), each
   round: wrk -t1; Locust FastHttpUser headless (-u 50 -r 50); the bare lean and aiohttp loops
   (bench/bare_loops.py) on uvloop and on asyncio; `harness run` of every backend × client (a
   duration-bound closed cell each, its own fresh fast mock; a fresh mock for each peer too).
   The harness's uvloop cells run between wrk, the bare uvloop loops and Locust, its asyncio
   cells between the bare asyncio loops; every other round in the reverse order. Ratios per
   round, medians over the rounds: each backend × client ÷ wrk and ÷ Locust; harness ÷ the
   bare loop it wraps.
2. The mock's engines under wrk (bench/engines.py): raw floor, fast, aiohttp.
3. Latency p50/p99 at a fixed 50 ms delay: the harness on uvloop (lean, standard) − wrk.
4. Recording: ns per request that RecordBuffer.append adds (1 000 000 appends with the cell's
   spooler thread draining them to its Arrow IPC file, minus the same loop without), and
   Parquet write/read time of 1 000 000 rows (the requests schema; and the cell-end path, the
   spool to Parquet through RunWriter.write_cell_data).
5. 10 000 in flight: 1 s delay, 30 000 requests, concurrency 10 000, asyncio and uvloop × lean
   and standard: errors, the server's peak in flight, loop lag p99. Then the threads backend:
   the highest thread count (500 … 10 000, three requests per thread) it runs with 0 errors.

Results: results/bench-self/<UTC time>/bench-self.parquet (name, value, unit, target, met) and
bench-self.md (the same table) — names no glob that reads runs picks up; the harness runs made
here go to a temporary folder. At most 12 minutes.

    python -m bench.self [--seconds 5] [--rounds 3] [--quick]

--quick (for development): 2-second measurements, one round, a smaller 10 000-in-flight run
(3 000 requests at concurrency 1 000) and thread ladder; its figures do not answer the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import ROOT, engines, machine
from harness.core.stats import median
from harness.core.system import raise_fd_limit

LOCUST_VENV = ROOT / "bench" / ".venv-locust"
LOCUST_SPEC = "locust>=2.20,<3"
BUDGET_S = 12 * 60
CONNECTIONS = 50
ROWS = 1_000_000
PRESSURE = (("avg60", "avg300"), "{value:.2f} % ({window})")  # windows, form

FAST = """\
name: {name}
server:
  engine: fast
  endpoints:
    api: {{latency: {latency}, size: 128}}
workload: {{endpoint: api, client: [{clients}]}}
load: {{{load}}}
backends: [{backends}]
"""
LOCUSTFILE = """\
from locust import FastHttpUser, task


class Api(FastHttpUser):
    @task
    def api(self):
        self.client.get("/api")
"""


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None

    def shown(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "not measured"
        if self.unit in ("×", "ms") or (self.unit == "µs" and self.value < 100):
            return f"{self.value:,.2f}"
        if self.unit in ("s",):
            return f"{self.value:,.3f}"
        return f"{self.value:,.0f}"


class Bench:
    def __init__(self, args, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.started = time.monotonic()
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.wrk: str | None = None
        self.locust: Path | None = None
        self.last_run: Path | None = None

    # ---- bookkeeping -------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return BUDGET_S - self.elapsed()

    def bounded(self, timeout_s: float) -> float:
        """A child's timeout, cut so that the whole run ends within the budget."""
        return max(20.0, min(timeout_s, self.left() - 20))

    def error_counts(self, run: Path) -> str:
        """`backend client: category n, …` of a harness run's failed requests."""
        from harness.store.reader import read_run

        rows = read_run(run)["requests"].to_pandas()
        bad = rows[~rows["ok"]]
        counts = bad.groupby(["backend", "client", "error"]).size()
        return "; ".join(f"{b} {c}: {e} {n}" for (b, c, e), n in counts.items()) or "none"

    def add(self, name: str, value, unit: str, target: str | None = None,
            ok=None) -> None:
        value = float("nan") if value is None else float(value)
        met = None
        if target is not None and not math.isnan(value) and ok is not None:
            met = bool(ok(value))
        self.figures.append(Figure(name, value, unit, target, met))
        say(f"  {name}: {Figure(name, value, unit).shown()} {unit}"
            + (f"  (target {target}: {'met' if met else 'MISSED' if met is False else '-'})"
               if target else ""))

    def skip(self, name: str, unit: str, target: str | None, why: str) -> None:
        self.figures.append(Figure(name, float("nan"), unit, target, None))
        say(f"  {name}: not measured ({why})")

    # ---- peers -------------------------------------------------------------------------

    def setup_peers(self) -> None:
        missing = []
        self.wrk = ensure_wrk()
        if self.wrk is None:
            missing.append("wrk (apt-get install -y wrk failed)")
        self.locust = ensure_locust()
        if self.locust is None:
            missing.append(f"Locust ({LOCUST_SPEC} into {LOCUST_VENV.relative_to(ROOT)} failed)")
        if missing:
            message = "bench-self: cannot set up " + " and ".join(missing)
            if os.environ.get("BENCH_SELF_ALLOW_SKIP") != "1":
                sys.exit(message + "; set BENCH_SELF_ALLOW_SKIP=1 to run without it")
            say(message + "; BENCH_SELF_ALLOW_SKIP=1: its figures are not measured")
            self.notes.append(message)
        versions = []
        if self.wrk:
            versions.append(subprocess.run([self.wrk, "--version"], capture_output=True,
                                           text=True).stdout.split(" [")[0].strip())
        if self.locust:
            versions.append(subprocess.run([str(self.locust), "--version"], capture_output=True,
                                           text=True).stdout.split(" from ")[0].strip())
        self.notes.append("peers: " + ", ".join(versions))

    # ---- one measurement of each kind ----------------------------------------------------

    def run_wrk(self, url: str, seconds: int, latency: bool = False) -> dict:
        cmd = [self.wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url]
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

    def run_locust(self, url: str, seconds: int) -> dict:
        folder = self.tmp / "locust"
        folder.mkdir(exist_ok=True)
        (folder / "locustfile.py").write_text(LOCUSTFILE)
        done = subprocess.run(
            [str(self.locust), "-f", "locustfile.py", "--headless", "-u", str(CONNECTIONS),
             "-r", str(CONNECTIONS), "--run-time", f"{seconds}s", "-H", url, "--json",
             "--only-summary", "--loglevel", "WARNING"],
            cwd=folder, capture_output=True, text=True, timeout=seconds + 60)
        stats = json.loads(done.stdout)
        requests = sum(s["num_requests"] for s in stats)
        failures = sum(s["num_failures"] for s in stats)
        span = (max(s["last_request_timestamp"] for s in stats)
                - min(s["start_time"] for s in stats))
        return {"rps": requests / span, "errors": failures}

    def run_bare(self, client: str, url: str, seconds: int, loop: str) -> dict:
        cmd = [sys.executable, "-m", "bench.bare_loops", client, url, "--seconds",
               str(seconds), "--concurrency", str(CONNECTIONS), "--json"]
        if loop == "asyncio":
            cmd.append("--asyncio")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                              check=True, env=child_env(), cwd=ROOT)
        found = json.loads(done.stdout)
        found["cpu_us"] = 1e6 * found["cpu_s"] / max(found["requests"], 1)
        return found

    def run_harness(self, name: str, text: str, timeout_s: float):
        """One `harness run` into the temporary folder; its cells' summary (a DataFrame)."""
        from harness.analysis.summary import load_runs, summarize

        path = self.tmp / f"{name}.yaml"
        path.write_text(text)
        out = self.last_run = self.tmp / "runs" / name
        proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--out",
                                 str(out), "--force"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            _, stderr = proc.communicate(timeout=self.bounded(timeout_s))
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise
        done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
        if done.returncode not in (0, 3):  # 3: cells with failures; their rows still count
            raise RuntimeError(f"harness run {name} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-300:]}")
        return summarize(load_runs([out]))

    # ---- sections ------------------------------------------------------------------------

    def throughput(self) -> None:
        args, s = self.args, self.args.seconds
        say(f"\n== throughput: {CONNECTIONS} connections, zero delay, fast engine, {s} s each")
        from harness.mock.process import ServerProcess

        def peer(name: str, measure):
            def step() -> dict:
                with ServerProcess(FAST.format(name="peer", latency=0, clients="lean",
                                               load="requests: 1, concurrency: 1",
                                               backends="uvloop")) as server:
                    return {name: measure(server.url)}
            return step

        def harness(backends: str, r: int):
            def step() -> dict:
                text = FAST.format(name="self_throughput", latency=0, clients="standard, lean",
                                   load=f"duration: {s}s, concurrency: {CONNECTIONS}",
                                   backends=backends)
                cells = backends.count(",") + 1
                summary = self.run_harness(f"throughput{r}_{backends.replace(', ', '_')}",
                                           text, timeout_s=cells * (3 * s + 60))
                return {f"{row.backend} {row.client}": {
                    "rps": row.throughput_rps, "errors": row.errors,
                    "cpu_us": 1e6 * (row.cpu_user_s + row.cpu_sys_s) / row.requests}
                    for row in summary.itertuples()}
            return step

        def bare(client: str, loop: str):
            return peer(f"bare {client} {loop}",
                        lambda url: self.run_bare(client, url + "/api", s, loop))

        reserve = 0 if args.quick else 330  # what the later sections take, at most
        per_round: list[dict[str, dict]] = []
        round_s = 0.0
        for r in range(args.rounds):
            if r and self.left() - reserve < round_s * 1.1:
                self.notes.append(f"throughput: {r} round(s) of {args.rounds}: the time budget "
                                  "ran short")
                break
            # Each harness cell between the peers it is compared with; every other round in
            # the reverse order, so a drift of the machine's load does not favour either side.
            steps = []
            if self.wrk:
                steps.append(peer("wrk", lambda url: self.run_wrk(url + "/api", s)))
            steps += [bare("lean", "uvloop"), harness("uvloop", r), bare("aiohttp", "uvloop")]
            if self.locust:
                steps.append(peer("locust", lambda url: self.run_locust(url, s)))
            steps += [bare("lean", "asyncio"), harness("asyncio", r), bare("aiohttp", "asyncio"),
                      harness("threads, processes", r)]
            if r % 2:
                steps.reverse()
            t0 = time.monotonic()
            found: dict[str, dict] = {}
            for step in steps:
                found.update(step())
            per_round.append(found)
            round_s = time.monotonic() - t0
            say(f"  round {r + 1}: " + ", ".join(f"{k} {v['rps']:,.0f}"
                                                  for k, v in found.items())
                + f"  ({round_s:.0f} s)")
        self.notes.append(f"throughput: medians over {len(per_round)} round(s)")

        def med(name, key="rps"):
            values = [f[name][key] for f in per_round if name in f]
            return median(values) if values else None

        def ratio(a, b, key="rps"):
            values = [f[a][key] / f[b][key] for f in per_round if a in f and b in f]
            return median(values) if values else None

        for name in ("wrk", "locust", "bare lean uvloop", "bare aiohttp uvloop",
                     "bare lean asyncio", "bare aiohttp asyncio"):
            self.add(f"{name}: requests/s", med(name), "req/s")
        errors = {name: sum(f[name]["errors"] for f in per_round if name in f)
                  for name in dict.fromkeys(k for f in per_round for k in f)}
        cells = [f"{b} {c}" for c in ("lean", "standard")
                 for b in ("uvloop", "asyncio", "threads", "processes")]
        for cell in cells:
            self.add(f"harness {cell}: requests/s", med(cell), "req/s")
        for cell in cells:
            target = ok = None
            if cell == "uvloop lean":
                target, ok = "≥ 0.75", lambda v: v >= 0.75
            if self.wrk:
                self.add(f"harness {cell} ÷ wrk", ratio(cell, "wrk"), "×", target, ok)
            else:
                self.skip(f"harness {cell} ÷ wrk", "×", target, "no wrk")
        for cell in cells:
            target = ok = None
            if cell == "uvloop lean":
                target, ok = "≥ 4", lambda v: v >= 4
            if self.locust:
                self.add(f"harness {cell} ÷ Locust FastHttpUser", ratio(cell, "locust"), "×",
                         target, ok)
            else:
                self.skip(f"harness {cell} ÷ Locust FastHttpUser", "×", target, "no Locust")
        for loop in ("uvloop", "asyncio"):
            for cell, plain in (("lean", "lean"), ("standard", "aiohttp")):
                target = ok = None
                if loop == "uvloop":
                    target, ok = "≥ 0.9", lambda v: v >= 0.9
                self.add(f"harness {loop} {cell} ÷ bare {plain} loop on {loop}",
                         ratio(f"{loop} {cell}", f"bare {plain} {loop}"), "×", target, ok)
        # CPU per request: steadier than requests/s on a shared machine (the cell process tree;
        # the bare loop's process, its start-up left out).
        for name in ("bare lean uvloop", "bare aiohttp uvloop", "bare lean asyncio",
                     "bare aiohttp asyncio", *(f"harness {cell}" for cell in cells)):
            key = name.removeprefix("harness ")
            self.add(f"{name}: CPU per request", med(key, "cpu_us"), "µs")
        for loop in ("uvloop", "asyncio"):
            for cell, plain in (("lean", "lean"), ("standard", "aiohttp")):
                self.add(f"CPU per request: harness {loop} {cell} ÷ bare {plain} loop",
                         ratio(f"{loop} {cell}", f"bare {plain} {loop}", "cpu_us"), "×")
        bad = {k: v for k, v in errors.items() if v}
        if bad:
            self.notes.append("throughput errors (all rounds): "
                              + ", ".join(f"{k} {v}" for k, v in bad.items()))

    def engines(self) -> None:
        s = self.args.seconds
        say(f"\n== the mock's engines under wrk -t1 -c{CONNECTIONS} -d{s}s")
        if not self.wrk:
            for name in ("raw", "fast", "aiohttp"):
                self.skip(f"engine {name} under wrk: requests/s", "req/s", None, "no wrk")
            return
        settings = argparse.Namespace(threads=1, connections=CONNECTIONS, seconds=s)
        found = {"raw": engines.run_raw(settings),
                 "fast": engines.run_engine("fast", 1, settings),
                 "aiohttp": engines.run_engine("aiohttp", 1, settings)}
        for name, result in found.items():
            self.add(f"engine {name} under wrk: requests/s", result["rps"], "req/s")
            self.add(f"engine {name}: server CPU per request", result["cpu_us"], "µs")
        self.add("engine fast ÷ raw", found["fast"]["rps"] / found["raw"]["rps"], "×", "≥ 0.5",
                 lambda v: v >= 0.5)
        self.add("engine fast ÷ aiohttp", found["fast"]["rps"] / found["aiohttp"]["rps"], "×",
                 "≥ 3", lambda v: v >= 3)

    def latency(self) -> None:
        s = self.args.seconds
        say(f"\n== latency at a fixed 50 ms delay, {CONNECTIONS} connections, {s} s each")
        from harness.mock.process import ServerProcess

        wrk = None
        if self.wrk:
            with ServerProcess(FAST.format(name="peer", latency="50ms", clients="lean",
                                           load="requests: 1, concurrency: 1",
                                           backends="uvloop")) as server:
                wrk = self.run_wrk(server.url + "/api", s, latency=True)
        text = FAST.format(name="self_latency", latency="50ms", clients="lean, standard",
                           load=f"duration: {s}s, concurrency: {CONNECTIONS}", backends="uvloop")
        summary = self.run_harness("latency", text, timeout_s=4 * s + 120)
        if wrk:
            self.add("wrk p50 at 50 ms", wrk.get("p50_ms"), "ms")
            self.add("wrk p99 at 50 ms", wrk.get("p99_ms"), "ms")
        for row in summary.itertuples():
            cell = f"harness {row.backend} {row.client}"
            self.add(f"{cell} p50 at 50 ms", row.p50_ms, "ms")
            self.add(f"{cell} p99 at 50 ms", row.p99_ms, "ms")
            for q in ("p50", "p99"):
                if wrk and wrk.get(f"{q}_ms") is not None:
                    self.add(f"{cell} {q} − wrk {q}", getattr(row, f"{q}_ms") - wrk[f"{q}_ms"],
                             "ms")
                else:
                    self.skip(f"{cell} {q} − wrk {q}", "ms", None, "no wrk")

    def recording(self) -> None:
        say(f"\n== recording: {ROWS:,} rows")
        with_ns, without_ns, append_ns = [], [], []
        for _ in range(3):
            without_ns.append(time_loop(ROWS, record=None))
            append_ns.append(time_loop(ROWS, record="buffer"))
            with_ns.append(time_loop(ROWS, record="spooled", folder=self.tmp))
        base = median(without_ns)
        self.add("recording: RecordBuffer.append per request (with − without)",
                 (median(append_ns) - base) / ROWS, "ns")
        self.add("recording: append + the spooler draining to its IPC file, per request",
                 (median(with_ns) - base) / ROWS, "ns", "≤ 300", lambda v: v <= 300)
        # medians of 3 rounds, each in a fresh folder: the first write of a process also pays
        # for first-use set-up and page faults, as only a run's first cell does
        rounds = []
        for i in range(3):
            folder = self.tmp / f"parquet-{i}"
            folder.mkdir()
            rounds.append(parquet_times(folder))
            shutil.rmtree(folder, ignore_errors=True)
        times = {key: median([r[key] for r in rounds]) for key in rounds[0]}
        self.add("RecordBuffer.drain of 1 000 000 rows (to Arrow)", times["drain"], "s")
        self.add("Parquet write, 1 000 000 rows (requests schema, 64 Ki row groups)",
                 times["write"], "s", "≤ 0.5", lambda v: v <= 0.5)
        self.add("Parquet read, 1 000 000 rows (harness.store.reader.read_table)",
                 times["read"], "s")
        self.add("cell end: spool → Parquet, 1 000 000 rows (RunWriter.write_cell_data)",
                 times["cell_end"], "s", "≤ 0.5", lambda v: v <= 0.5)

    def in_flight(self) -> None:
        quick = self.args.quick
        requests, concurrency = (3000, 1000) if quick else (30_000, 10_000)
        say(f"\n== {concurrency:,} in flight: 1 s delay, {requests:,} requests")
        # The cell process inherits the runner's open-file limit, and so this process's: the
        # cell's connections need more than the usual 1 024 (the mock raises its own).
        if note := raise_fd_limit(concurrency + 1000):
            say(f"  note: {note}")
        text = FAST.format(name="self_in_flight", latency="1s", clients="lean, standard",
                           load=f"requests: {requests}, concurrency: {concurrency}",
                           backends="asyncio, uvloop")
        summary = self.run_harness("in_flight", text, timeout_s=240)
        self.notes.append(f"{concurrency:,} in flight, failed requests: "
                          f"{self.error_counts(self.last_run)}")
        peak = round(0.95 * concurrency)
        for row in summary.sort_values(["client", "backend"]).itertuples():
            cell = f"{concurrency // 1000}k in flight {row.backend} {row.client}"
            lean = row.client == "lean"
            self.add(f"{cell}: errors", row.errors, "", "= 0" if lean else None,
                     lambda v: v == 0)
            self.add(f"{cell}: server peak in flight", row.peak_in_flight_server, "",
                     f"≥ {peak:,}".replace(",", " ") if lean else None, lambda v: v >= peak)
            self.add(f"{cell}: loop lag p99", row.loop_lag_p99_ms, "ms",
                     "< 50" if lean else None, lambda v: v < 50)
        ladder = [100, 200, 500, 1000] if quick else [500, 1000, 2000, 4000, 8000, 10_000]
        for client in ("lean", "standard"):
            self.thread_ladder(client, ladder)

    def thread_ladder(self, client: str, ladder: list[int]) -> None:
        """The highest thread count with 0 errors: 1 s delay, three requests per thread."""
        say(f"   threads backend, client {client}: {ladder}")
        best, failed, stopped, why = 0, None, None, ""
        limit_s = 90 if not self.args.quick else 40  # per client, every step included
        t0 = time.monotonic()
        for n in ladder:
            budget = limit_s - (time.monotonic() - t0)
            if budget < 15 or self.left() < 45:
                stopped = n
                break
            text = FAST.format(name=f"self_threads_{client}_{n}", latency="1s", clients=client,
                               load=f"requests: {3 * n}, concurrency: {n}", backends="threads")
            try:
                summary = self.run_harness(f"threads_{client}_{n}", text, timeout_s=budget)
                row = summary.iloc[0]
                errors, complete = int(row.errors), bool(row.complete)
            except subprocess.TimeoutExpired as exc:
                errors, complete = -1, False
                why = (f"not decided: killed after {exc.timeout:.0f} s, what was left of the "
                       f"ladder's {limit_s} s")
                say(f"   {n} threads: {why}")
            except (RuntimeError, IndexError) as exc:
                errors, complete, why = -1, False, "the run failed"
                say(f"   {n} threads: {exc}")
            say(f"   {n} threads: errors {errors}, complete {complete}")
            if errors != 0 or not complete:
                failed = (n, why if errors < 0 else
                          f"{self.error_counts(self.last_run)}; complete: {complete}")
                break
            best = n
        name = f"threads backend ({client}): most threads with 0 errors"
        if best == 0 and stopped:
            self.skip(name, "threads", None, "the time budget ran out")
        else:
            self.add(name, best, "threads")
        if failed:
            self.notes.append(f"threads ({client}): {failed[0]} threads: {failed[1]}")
        elif stopped:
            self.notes.append(f"threads ({client}): stopped before {stopped} threads "
                              "(time bound)")
        else:
            self.notes.append(f"threads ({client}): every step of {ladder} passed")

    # ---- output --------------------------------------------------------------------------

    def table(self) -> str:
        lines = ["| figure | value | unit | target | met |", "| --- | ---: | --- | --- | --- |"]
        for f in self.figures:
            met = "-" if f.met is None else ("met" if f.met else "**missed**")
            lines.append(f"| {f.name} | {f.shown()} | {f.unit} | {f.target or '-'} | {met} |")
        return "\n".join(lines)

    def write(self, when: str, header: list[str]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = ROOT / "results" / "bench-self" / when
        out.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "name": pa.array([f.name for f in self.figures], pa.string()),
            "value": pa.array([f.value for f in self.figures], pa.float64()),
            "unit": pa.array([f.unit for f in self.figures], pa.string()),
            "target": pa.array([f.target for f in self.figures], pa.string()),
            "met": pa.array([f.met for f in self.figures], pa.bool_()),
        })
        pq.write_table(table, out / "bench-self.parquet")
        (out / "bench-self.md").write_text("\n".join(header) + "\n\n" + self.table() + "\n")
        return out


# ---- peers -------------------------------------------------------------------------------


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


# ---- recording and Parquet -----------------------------------------------------------------


def time_loop(n: int, record: str | None, folder: Path | None = None) -> int:
    """ns for n iterations of a request-shaped loop body; `record`: None (no recording),
    "buffer" (RecordBuffer.append), "spooled" (append, with a Spooler thread draining the
    buffer to its IPC file every FLUSH_S as in a cell; its final flush included)."""
    from harness.cell.buffer import RecordBuffer
    from harness.core.schema import RECORD_SCHEMA, Outcome
    from harness.store.spool import Spooler

    outcome = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                      bytes_received=128)
    buffer = RecordBuffer()
    append = buffer.append
    spool = None
    if record == "spooled":
        spool_dir = Path(tempfile.mkdtemp(dir=folder, prefix="spool-"))
        spool = Spooler(spool_dir)
        spool.add("requests", RECORD_SCHEMA, buffer.drain)
        spool.start()
    t0 = time.perf_counter_ns()
    if record is None:
        for _seq in range(n):
            pass
    else:
        for seq in range(n):
            append("worker-0", "conn-40000", seq, seq, seq, seq, seq + 1, outcome, 50, False)
    if spool is not None:
        spool.stop()
    elapsed = time.perf_counter_ns() - t0
    if spool is not None:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return elapsed


def parquet_times(folder: Path) -> dict:
    import pyarrow as pa

    from harness.cell.buffer import RecordBuffer
    from harness.core.keys import CellKey, key_dict
    from harness.core.schema import Outcome
    from harness.store.layout import KINDS, ROW_GROUP_ROWS
    from harness.store.reader import read_table
    from harness.store.writer import RunWriter, _file_meta, _with_keys, parquet_writer

    buffer = RecordBuffer()
    ok = Outcome(True, 200, None, 12_345, server_delay_target_ns=12_000, bytes_sent=0,
                 bytes_received=128)
    for seq in range(ROWS):
        buffer.append("worker-0", f"conn-{40000 + seq % 50}", seq, seq * 10, seq * 10 + 1,
                      seq * 10 + 2, seq * 10 + 9, ok, 1 + seq % 50, False)
    constants = {"run_id": "bench-self", "scenario": "bench_self",
                 **key_dict(CellKey(backend="uvloop", concurrency=50, repetition=0,
                                    client="lean"))}
    t0 = time.perf_counter()
    batch = buffer.drain()
    t1 = time.perf_counter()
    path = folder / "rows.parquet"
    schema = KINDS["requests"].with_metadata(_file_meta({"bench": "self"}))
    t2 = time.perf_counter()
    with parquet_writer(path, schema) as writer:
        writer.write_table(_with_keys(batch, constants, schema), row_group_size=ROW_GROUP_ROWS)
    t3 = time.perf_counter()
    table = read_table(path, "requests")
    t4 = time.perf_counter()
    assert table.num_rows == ROWS
    # The cell-end path: the spool as a cell leaves it (a batch per half second; here 20 of
    # 50 000 rows), streamed to the cell's Parquet files.
    run_dir = folder / "cell-end"
    run_dir.mkdir()
    writer = RunWriter(run_dir, {"bench": "self"})
    index, spool = writer.open_cell(constants)
    with pa.OSFile(str(spool / "requests.arrows"), "wb") as sink, \
            pa.ipc.new_stream(sink, batch.schema) as stream:
        for start in range(0, ROWS, 50_000):
            stream.write(batch.slice(start, 50_000))
    t5 = time.perf_counter()
    rows = writer.write_cell_data(index, spool, constants)
    t6 = time.perf_counter()
    assert rows.rows == ROWS
    return {"drain": t1 - t0, "write": t3 - t2, "read": t4 - t3, "cell_end": t6 - t5}


# ---- helpers -------------------------------------------------------------------------------


def say(line: str) -> None:
    print(line, flush=True)


def child_env() -> dict:
    """The harness and the bare loops from this source tree, whatever the caller's path."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def kill_tree(proc: subprocess.Popen) -> None:
    """A `harness run` that ran out of time, with its cell and mock server: they live in
    sessions of their own, so its process group would not reach them; its descendants do."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    proc.kill()
    for child in family:
        try:
            child.kill()
        except psutil.Error:
            pass
    proc.communicate()
    psutil.wait_procs(family, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="development: 2 s each, one round, small in-flight runs")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2, 1
    if not 1 <= args.seconds <= 10 or not 1 <= args.rounds <= 5:
        parser.error("--seconds must be 1..10 and --rounds 1..5 (the run must fit in 12 min)")
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    import psutil

    header = [f"# bench-self {when}", "",
              f"{psutil.cpu_count()} cores; machine CPU pressure at the start "
              f"{machine.cpu_pressure_text(*PRESSURE)}"]
    with tempfile.TemporaryDirectory(prefix="bench-self-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.setup_peers()
        for section in (bench.recording, bench.throughput, bench.engines, bench.latency,
                        bench.in_flight):
            try:
                section()
            except (subprocess.SubprocessError, RuntimeError, OSError, ValueError) as exc:
                # One section's failure is reported; the others' figures still count.
                note = f"{section.__name__}: failed: {str(exc)[:300]}"
                bench.notes.append(note)
                say("  " + note)
    wall = bench.elapsed()
    header += [f"machine CPU pressure at the end {machine.cpu_pressure_text(*PRESSURE)}",
               f"wall time {wall:.0f} s" + (" (--quick: not the targets' conditions)"
                                            if args.quick else ""), ""]
    header += [f"- {note}" for note in bench.notes]
    out = bench.write(when, header)
    say("\n" + "\n".join(header) + "\n\n" + bench.table())
    say(f"\nwritten: {out.relative_to(ROOT)}/bench-self.parquet, bench-self.md")


if __name__ == "__main__":
    main()
