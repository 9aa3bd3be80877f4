"""Where an event loop runs a CPU step: `inline` (in the coroutine: blocks the loop, kept to
measure the harm), `thread_pool` or `process_pool` (run_in_executor)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from harness.core.clock import now_ns

WARM_TIMEOUT_S = 120.0  # a process pool whose workers cannot all start by then is broken


def _warm(ready, alone, everyone, fn, args) -> None:
    """In each pool worker as it starts, before the clock: run the real step once (unpickling
    `fn` imports its modules: NumPy, pyarrow, …), one worker at a time (a kernel measures this
    process's speed, not its share of the cores), hand its result back, then wait until every
    worker has got this far. While they wait no worker is idle, so each submission that
    starts the pool starts a worker of its own, and every worker is warmed."""
    with alone:
        result = fn(*args)
    ready.put(result)
    everyone.wait(WARM_TIMEOUT_S)


class Offload:
    def __init__(self, strategy: str, pool_size: int | None) -> None:
        self.strategy = strategy
        self.size = pool_size or os.cpu_count() or 1
        self.pool: Executor | None = None

    async def start(self, warm=None, *args) -> list:
        """Create and warm the pool before the clock starts (process start-up is not work).
        A process pool's workers each run `warm(*args)` once — the real step, with its
        imports — and the results come back, one per worker; [] for the other strategies
        (their steps run in this process, already warm)."""
        loop = asyncio.get_running_loop()
        if self.strategy == "thread_pool":
            self.pool = ThreadPoolExecutor(self.size, thread_name_prefix="pool")
            await asyncio.gather(*(loop.run_in_executor(self.pool, os.getpid)
                                   for _ in range(self.size * 2)))
        elif self.strategy == "process_pool":
            # forkserver: the cell process has threads (sampler), which fork must not copy.
            ctx = mp.get_context("forkserver")
            if warm is None:
                warm, args = os.getpid, ()
            ready, alone, everyone = ctx.SimpleQueue(), ctx.Lock(), ctx.Barrier(self.size)
            self.pool = ProcessPoolExecutor(self.size, mp_context=ctx, initializer=_warm,
                                            initargs=(ready, alone, everyone, warm, args))
            # Workers start on demand, one per submission while none is idle: `size`
            # submissions start them all, and return once every worker has been warmed. The
            # results are read meanwhile, on a thread: a worker whose result outgrows the
            # pipe's buffer waits for the reader before it reaches the barrier.
            results = loop.run_in_executor(None, lambda: [ready.get() for _ in range(self.size)])
            await asyncio.gather(*(loop.run_in_executor(self.pool, os.getpid)
                                   for _ in range(self.size)))
            return await results
        return []

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
