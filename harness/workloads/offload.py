"""Where an event loop runs a CPU step: `inline` (in the coroutine: blocks the loop, kept to
measure the harm), `thread_pool` or `process_pool` (run_in_executor)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from harness.gauge import now_ns


class Offload:
    def __init__(self, strategy: str, pool_size: int | None) -> None:
        self.strategy = strategy
        self.size = pool_size or os.cpu_count() or 1
        self.pool: Executor | None = None

    async def start(self) -> None:
        """Create and warm the pool before the clock starts (process start-up is not work)."""
        if self.strategy == "thread_pool":
            self.pool = ThreadPoolExecutor(self.size, thread_name_prefix="pool")
        elif self.strategy == "process_pool":
            # forkserver: the cell process has threads (sampler), which fork must not copy.
            self.pool = ProcessPoolExecutor(self.size, mp_context=mp.get_context("forkserver"))
        if self.pool is not None:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self.pool, os.getpid)
                                   for _ in range(self.size * 2)))

    async def call(self, fn, *args):
        """Returns (fn's result, ns spent waiting for the pool beyond fn's own measured time).
        `fn` must return (elapsed_ns, ...) measured where it ran."""
        if self.pool is None:
            result = fn(*args)
            return result, 0
        start = now_ns()
        result = await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        return result, max(0, now_ns() - start - result[0])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
