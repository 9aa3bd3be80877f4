"""The backend registry: names → implementations, imported lazily so that loading a scenario
(or starting a cell for one backend) never imports the others."""

from __future__ import annotations

import importlib

_REGISTRY = {
    "threads": "harness.backends.threads:ThreadsBackend",
    "processes": "harness.backends.processes:ProcessesBackend",
    "asyncio": "harness.backends.aio:AsyncioBackend",
    "uvloop": "harness.backends.aio:UvloopBackend",
}
BACKEND_NAMES: tuple[str, ...] = tuple(_REGISTRY)

DESCRIPTIONS = {
    "threads": "one OS thread per slot, blocking keep-alive HTTP connection each",
    "processes": "one worker process per slot; records return in columnar batches",
    "asyncio": "aiohttp on the standard asyncio event loop, tasks bounded by a semaphore",
    "uvloop": "the asyncio backend on uvloop's event loop (only the loop factory differs)",
}


def get_backend(name: str):
    module_name, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)()
