"""The backend registry: names → implementations, imported lazily so that loading a scenario
(or starting a cell for one backend) never imports the others."""

from __future__ import annotations

import importlib

from harness.cell.backends.base import Backend
from harness.core.keys import BACKEND_NAMES

_REGISTRY = {
    "threads": "harness.cell.backends.threads:ThreadsBackend",
    "processes": "harness.cell.backends.processes:ProcessesBackend",
    "asyncio": "harness.cell.backends.aio:AsyncioBackend",
    "uvloop": "harness.cell.backends.aio:UvloopBackend",
}
# Names and traits live on the ground floor (harness.core.keys), so the scenario layer, the mock
# server and the analysis never import a backend.
assert tuple(_REGISTRY) == BACKEND_NAMES


def backend_module(name: str) -> str:
    """The module that implements backend `name` (a cell imports it before its job arrives)."""
    return _REGISTRY[name].partition(":")[0]


def get_backend(name: str) -> Backend:
    module_name, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)()
