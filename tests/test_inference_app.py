"""The example inference service (examples/inference_service/app.py) as its users run it: uvicorn
in a child process, the harness's mock server as its AI API, SQLite (or PostgreSQL) for rows."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.mock.process import ServerProcess
from tests.conftest import PG_BIN

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
cv2 = pytest.importorskip("cv2")

APP = Path(__file__).parents[1] / "examples" / "inference_service" / "app.py"
UVICORN = ["-m", "uvicorn", "app:app", "--app-dir", str(APP.parent), "--host", "127.0.0.1",
           "--port", "0", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
VARIANTS = ("inline", "thread", "process", "sync")
AI_BYTES = 64
# A quarter of the seqs get a 503 from the AI API: seeded, so the same seqs on every variant.
AI_API = f"""\
name: ai_api
server:
  seed: 7
  endpoints:
    infer: {{latency: 5ms, size: {AI_BYTES}, faults: [{{share: 25%, status: 503}}]}}
workload: {{endpoint: infer}}
load: {{requests: 1, concurrency: 1}}
"""
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
START_S = 60  # a generous bound for start-up and exit on a busy 2-core machine


def jpeg(side: int = 320, seed: int = 3) -> bytes:
    """A JPEG of a seeded image: a colour ramp with noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    image = np.stack([ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1),
                      np.full((side, side), 90, np.float32)], axis=-1)
    image += rng.normal(0, 20, image.shape)
    return cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8))[1].tobytes()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "image/jpeg"})
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> dict:
    with OPENER.open(url, timeout=30) as response:
        return json.loads(response.read())


@contextmanager
def running_app(args: list[str], env: dict[str, str], cwd: Path):
    """The app in its own session, its log in cwd/app.log: (process, base URL) once /health
    answers; its group killed at the end, so a failed test leaves none of it running."""
    log = cwd / "app.log"
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    full_env.update(POOL_WORKERS="2", **env)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_S
        while "Uvicorn running on http://127.0.0.1:" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready in {START_S} s: {log.read_text()}"
            time.sleep(0.05)
        port = log.read_text().split("Uvicorn running on http://127.0.0.1:")[1].split()[0]
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/health") == {"ok": True}
        yield proc, base
    finally:
        with contextlib.suppress(ProcessLookupError):  # none left: the app ended in order
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def ai_api():
    with ServerProcess(AI_API) as server:
        yield server.url + "/infer"


@pytest.fixture(scope="module")
def app(ai_api, tmp_path_factory):
    """The app as the harness runs it, writing to SQLite at its default path in its cwd."""
    cwd = tmp_path_factory.mktemp("app")
    with running_app(UVICORN, {"AI_API_URL": ai_api, "CELL": "5"}, cwd) as (_, base):
        yield base, cwd / "inference.sqlite"


def test_every_variant_answers_the_same_for_the_same_image_and_seq(app):
    base, _ = app
    body = jpeg()
    statuses = set()
    for seq in range(8):
        answers = [post(f"{base}/predict/{variant}?seq={seq}", body) for variant in VARIANTS]
        assert all(answer == answers[0] for answer in answers), (seq, answers)
        status, found = answers[0]
        statuses.add(status)
        if status == 200:
            assert found["seq"] == seq and found["ai_bytes"] == AI_BYTES, found
            assert found["label"] in ("red", "green", "blue") and found["score"] > 0, found
        else:  # the AI API's 503: a bad gateway
            assert status == 502 and found == {"detail": "AI API: ClientResponseError"}
    assert statuses == {200, 502}


def test_each_ok_answer_is_one_row_of_its_cell(app):
    base, database = app
    body = jpeg(seed=4)
    calls = [(VARIANTS[seq % 4], seq) for seq in range(100, 124)]
    with ThreadPoolExecutor(4) as clients:
        statuses = list(clients.map(
            lambda call: post(f"{base}/predict/{call[0]}?seq={call[1]}", body)[0], calls))
    assert set(statuses) == {200, 502}
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT variant, seq FROM predictions WHERE cell = 5 AND seq >= 100"
                            ).fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert sorted(rows) == sorted(c for c, s in zip(calls, statuses, strict=True) if s == 200)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("body", [b"not a jpeg", b""], ids=["garbage", "empty"])
def test_a_body_that_is_not_an_image_is_a_400_with_a_json_error(app, variant, body):
    base, _ = app
    assert post(f"{base}/predict/{variant}?seq=0", body) == (
        400, {"detail": "body: not a decodable image"})


def test_lag_reports_the_probe_since_the_last_read(app):
    base, _ = app
    first = get(base + "/lag")  # all since the previous read, or since start-up
    assert first["samples"] > 0
    assert 0 <= first["p50_ns"] <= first["p99_ns"] <= first["max_ns"]
    start = time.monotonic()
    second = get(base + "/lag")
    elapsed_ms = (time.monotonic() - start) * 1000
    # read and cleared: the probe wakes at most once per 10 ms (a timer may fire a tick early)
    assert second["samples"] <= elapsed_ms / 9 + 2, (second, elapsed_ms)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_process_of_the_app_outlives_it(ai_api, tmp_path, stop):
    """Run as a script; SIGTERM shuts the pool, session and database down in order, and even
    after SIGKILL (no shutdown) the pool's workers end with it."""
    env = {"AI_API_URL": ai_api, "SQLITE_PATH": str(tmp_path / "rows.sqlite")}
    with running_app([str(APP), "--port", "0"], env, tmp_path) as (proc, base):
        assert post(f"{base}/predict/process?seq=1", jpeg())[0] == 200
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the pool's two workers (and multiprocessing's tracker)
        proc.send_signal(stop)
        proc.wait(START_S)
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, alive
    if stop == signal.SIGTERM:
        assert "Application shutdown complete" in (tmp_path / "app.log").read_text()


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries not installed")
def test_rows_land_in_postgres_with_a_database_url(ai_api, postgres_dsn, tmp_path):
    import psycopg

    env = {"AI_API_URL": ai_api, "DATABASE_URL": postgres_dsn, "CELL": "9"}
    with running_app(UVICORN, env, tmp_path) as (_, base):
        statuses = [post(f"{base}/predict/{variant}?seq={seq}", jpeg())[0]
                    for seq in range(3) for variant in VARIANTS]
    with psycopg.connect(postgres_dsn) as conn:
        written = conn.execute("SELECT count(*) FROM predictions WHERE cell = 9").fetchone()[0]
    assert 0 < written == statuses.count(200)
    assert not (tmp_path / "inference.sqlite").exists()
