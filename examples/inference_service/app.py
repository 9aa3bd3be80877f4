"""The course's inference service: a FastAPI app that pre-processes a JPEG with OpenCV, asks an
"AI API" for a prediction over HTTP and writes the result to a database. The same work is served
four ways, so a load test can compare where the CPU step runs:

  /predict/inline   in the coroutine: the event loop does nothing else meanwhile
  /predict/thread   asyncio.to_thread: OpenCV and NumPy release the GIL for most of it
  /predict/process  a process pool: no GIL shared, but the bytes travel by pickle
  /predict/sync     a plain `def` endpoint: FastAPI runs the whole handler in its thread pool

Run:  python -m uvicorn app:app --app-dir examples/inference_service --host 127.0.0.1 \
        --port 8000 --loop uvloop --http httptools --no-access-log
 or:  python examples/inference_service/app.py --port 8000
Environment: AI_API_URL (required), DATABASE_URL (PostgreSQL; absent: SQLite at SQLITE_PATH,
default inference.sqlite), RUN and CELL (which run and cell of a load test: written with each
row, so rows can be counted per cell), POOL_WORKERS (the thread and the process pool's size;
default: cores).
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager

import aiohttp
import anyio.from_thread
import cv2
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request

SIDE = 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet's, in RGB order
STD = np.array([0.229, 0.224, 0.225], np.float32)
LABELS = ("red", "green", "blue")
PROBE_S = 0.010  # the lag probe's period
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
CREATE = ("CREATE TABLE IF NOT EXISTS predictions (run text, cell integer, seq bigint, "
          "variant text, label text, score double precision)")
cv2.setNumThreads(1)  # one request, one core: the offload strategies decide the parallelism


def preprocess(jpeg: bytes) -> tuple[str, float, list[float]] | None:
    """Decode, resize to 224x224, normalise; a label, a score and the features to send (None
    for bytes that are not an image). Module-level so the process pool can run it."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
    if image is None:
        return None
    rgb = cv2.cvtColor(cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA),
                       cv2.COLOR_BGR2RGB)
    tensor = (rgb.astype(np.float32) / 255.0 - MEAN) / STD
    means, stds = (v.ravel() for v in cv2.meanStdDev(tensor))  # NumPy: ~100x the CPU
    # a stand-in for a model: deterministic, and rounded so every variant answers the same
    features = [round(float(v), 6) for v in (*means, *stds)]
    return LABELS[int(np.argmax(means))], round(float(np.abs(tensor).mean()), 6), features


def _start_worker(ready) -> None:
    """A pool worker's start: one OpenCV thread, Ctrl-C left to the parent (which then shuts the
    pool down in order), one preprocess so no request pays for the first call's set-up."""
    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":  # and die with the app if it is killed: SIGKILL runs no shutdown
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    preprocess(cv2.imencode(".jpg", np.zeros((SIDE, SIDE, 3), np.uint8))[1].tobytes())
    ready.send(os.getpid())  # a few bytes: one atomic write to the pipe, whoever else sends


async def _start_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose every worker is up and warm."""
    # spawn, not fork: forking a process whose event loop and threads run copies their locks
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(sender,))
    for _ in range(workers):  # workers start on demand: one submit each starts them all
        pool.submit(os.getpid)
    for _ in range(workers):
        if not await asyncio.to_thread(receiver.poll, 60):
            raise RuntimeError("process pool: a worker did not start within 60 s")
        receiver.recv()
    receiver.close()
    return pool


async def _open_db(app: FastAPI) -> None:
    """app.state.write(row) and app.state.close_db(): asyncpg, or sqlite3 in one thread."""
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
        await pool.execute(CREATE)
        app.state.write = lambda row: pool.execute(
            "INSERT INTO predictions VALUES ($1, $2, $3, $4, $5, $6)", *row)
        app.state.close_db = pool.close
        return
    # sqlite3 blocks: one thread owns the connection, so writes queue there, not on a lock
    thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
    conn = await asyncio.wrap_future(thread.submit(
        sqlite3.connect, os.environ.get("SQLITE_PATH") or "inference.sqlite",
        isolation_level=None, check_same_thread=False))

    def on_thread(fn, *args):
        return asyncio.wrap_future(thread.submit(fn, *args))

    for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", CREATE):
        await on_thread(conn.execute, pragma)
    app.state.write = lambda row: on_thread(
        conn.execute, "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", row)

    async def close() -> None:
        await on_thread(conn.close)
        thread.shutdown()

    app.state.close_db = close


async def _probe(samples: deque) -> None:
    """Wake every PROBE_S and record how late: the loop's lag, as a request would feel it."""
    while True:
        due = time.monotonic_ns() + int(PROBE_S * 1e9)
        await asyncio.sleep(PROBE_S)
        samples.append(max(0, time.monotonic_ns() - due))  # a timer may fire a tick early


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.url, app.state.run = os.environ["AI_API_URL"], os.environ.get("RUN", "")
    app.state.cell = int(os.environ.get("CELL", "0"))
    app.state.lag = deque(maxlen=60_000)  # ten minutes of samples when nobody reads /lag
    probe = asyncio.create_task(_probe(app.state.lag))
    app.state.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    await _open_db(app)
    workers = int(os.environ.get("POOL_WORKERS") or os.cpu_count())
    # to_thread's pool sized as the process pool: both then run as many CPU steps at once as
    # there are cores, and the comparison is of where they run, not of how many
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers, "cpu"))
    app.state.pool = await _start_pool(workers)
    try:
        yield
    finally:
        probe.cancel()
        app.state.pool.shutdown(cancel_futures=True)  # joins the workers: none outlives the app
        await app.state.session.close()
        await app.state.close_db()


app = FastAPI(title="inference service", lifespan=lifespan)


async def raw_body(request: Request) -> bytes:
    """The raw body, read on the loop: a dependency, so the `def` endpoint gets it too."""
    return await request.body()


async def _finish(app: FastAPI, variant: str, seq: int, result) -> dict:
    """The I/O after the CPU step, the same for every variant: the AI API, then the database."""
    if result is None:
        raise HTTPException(400, "body: not a decodable image")
    label, score, features = result
    try:
        async with app.state.session.post(f"{app.state.url}?seq={seq}",
                                          json={"features": features}) as response:
            response.raise_for_status()
            answer = await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise HTTPException(502, f"AI API: {type(exc).__name__}") from None
    await app.state.write((app.state.run, app.state.cell, seq, variant, label, score))
    return {"seq": seq, "label": label, "score": score, "ai_bytes": len(answer)}


@app.post("/predict/inline")
async def inline(request: Request, seq: int = 0, body: bytes = Depends(raw_body)) -> dict:
    return await _finish(request.app, "inline", seq, preprocess(body))


@app.post("/predict/thread")
async def thread(request: Request, seq: int = 0, body: bytes = Depends(raw_body)) -> dict:
    return await _finish(request.app, "thread", seq, await asyncio.to_thread(preprocess, body))


@app.post("/predict/process")
async def process(request: Request, seq: int = 0, body: bytes = Depends(raw_body)) -> dict:
    result = await asyncio.get_running_loop().run_in_executor(request.app.state.pool,
                                                              preprocess, body)
    return await _finish(request.app, "process", seq, result)


@app.post("/predict/sync")
def sync(request: Request, seq: int = 0, body: bytes = Depends(raw_body)) -> dict:
    # The CPU step runs here, in the worker thread. The AI call and the write go back to the
    # loop, which owns the one session and the DB pool: a blocking HTTP client and a DB
    # connection per thread would be a second stack to set up, and to close on shutdown.
    return anyio.from_thread.run(_finish, request.app, "sync", seq, preprocess(body))


@app.get("/lag")
async def lag(request: Request) -> dict:
    """The probe's lateness since the last read (then cleared): nearest-rank percentiles; on
    the loop, so the probe cannot append while the samples are read."""
    samples = sorted(request.app.state.lag)
    request.app.state.lag.clear()
    n = len(samples)

    def rank(q: float) -> int | None:
        return samples[max(0, math.ceil(n * q) - 1)] if n else None

    return {"p50_ns": rank(0.50), "p99_ns": rank(0.99), "max_ns": rank(1.0), "samples": n}


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


if __name__ == "__main__":
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the inference service with uvicorn.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run("app:app", app_dir=os.path.dirname(os.path.abspath(__file__)), host=args.host,
                port=args.port, loop="uvloop", http="httptools", access_log=False)
