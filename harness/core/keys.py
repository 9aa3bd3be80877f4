"""The ground floor: what identifies a cell, and the catalogue of backends. Nothing here imports
the backends, the scenario models or the reporting stack, so every layer can import it.

A cell is one point of a scenario's matrix: the run and scenario it belongs to, plus one value
per axis. Adding an axis (a client, an interpreter, an arrival rate) is one line in `AXES`; the
Arrow schemas (schema.py), the planner (scenario.py), the job sent to the cell process
(cell.py) and the readers all derive from it."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import asdict, dataclass, fields, make_dataclass

REQUIRED = object()  # an axis without a default: every CellKey names it

# (name, Arrow type name, default): the cell's axes, in column order after run_id and scenario.
# A default of None makes the column nullable (null = the axis does not apply to the cell).
AXES: tuple[tuple[str, str, object], ...] = (
    ("backend", "string", REQUIRED),
    ("concurrency", "int64", REQUIRED),  # closed: the slots; open: max_in_flight
    ("repetition", "int64", REQUIRED),
    ("strategy", "string", "inline"),  # where CPU steps run on the loops
    ("variant", "string", "default"),  # e.g. the race's lock / no-lock
    ("client", "string", "standard"),  # the HTTP client: standard (aiohttp/http.client) | lean
    ("model", "string", "closed"),  # the arrival model: closed | open
    ("rate_per_s", "float64", None),  # open: the arrival rate (a ramp's peak); null when closed
    ("generators", "int64", 1),  # the processes one cell's load is split across
    ("path", "string", None),  # the HTTP path requested (`/name` of a mock endpoint); null
    # without HTTP
    ("python", "string", None),  # the cell's interpreter: `3.12`, `3.14t` (free-threaded),
    # `3.14t-gil` (that build with PYTHON_GIL=1); null only in a key made outside a run
)
RUN_KEYS: tuple[tuple[str, str], ...] = (("run_id", "string"), ("scenario", "string"))
# Every key column, in the order that starts every file.
KEY_TYPES: dict[str, str] = {**dict(RUN_KEYS), **{name: kind for name, kind, _ in AXES}}
CELL_KEYS: list[str] = list(KEY_TYPES)
AXIS_DEFAULTS: dict[str, object] = {name: d for name, _, d in AXES if d is not REQUIRED}
# Key columns that may hold null (their default is None); every other key column is not null.
NULLABLE_KEYS: frozenset[str] = frozenset(name for name, _, d in AXES if d is None)
# The keys arrival times are drawn from (with the scenario's seed): not the backend, its
# max_in_flight (`concurrency`), strategy or variant, so every configuration that is compared
# faces the same arrivals; a repetition draws its own.
ARRIVAL_KEYS: tuple[str, ...] = ("model", "rate_per_s", "repetition")

_PY = {"string": str, "int64": int, "float64": float}

CellKey = make_dataclass(
    "CellKey",
    [(name, _PY[kind]) if default is REQUIRED
     else (name, _PY[kind] | None if default is None else _PY[kind], default)
     for name, kind, default in AXES],
    frozen=True,
)
CellKey.__module__ = __name__  # picklable by name (make_dataclass's module= is 3.12+)
CellKey.__doc__ = "One cell of a scenario's matrix within a run: a value per axis (see AXES)."


def key_dict(key) -> dict:
    return asdict(key)


def python_key(version: str, free_threaded: bool, gil: bool = False) -> str:
    """The `python` key of an interpreter of `version` (`3.13.15` or `3.13`): major.minor, `t`
    for a free-threaded build, `-gil` for one made to hold the GIL (PYTHON_GIL=1)."""
    return ".".join(version.split(".")[:2]) + ("t" if free_threaded else "") + (
        "-gil" if gil else "")


def running_python() -> str:
    """The `python` key of this process's interpreter: `3.11`, `3.13t` (free-threaded)."""
    return python_key(f"{sys.version_info[0]}.{sys.version_info[1]}",
                      bool(sysconfig.get_config_var("Py_GIL_DISABLED")))


def key_label(key) -> str:
    """Short human label, e.g. `asyncio c=10 r=0 thread_pool` or `threads c=100 r=0 open 200/s`:
    defaults (and this interpreter) are left out."""
    parts = [key.backend, f"c={key.concurrency}", f"r={key.repetition}"]
    here = running_python()
    for f in fields(key):
        value = getattr(key, f.name)
        if f.name == "python" and value == here:
            continue
        if f.name in AXIS_DEFAULTS and value != AXIS_DEFAULTS[f.name]:
            parts.append(f"{value:g}/s" if f.name == "rate_per_s" else str(value))
    return " ".join(parts)


@dataclass(frozen=True)
class BackendTraits:
    description: str
    has_loop: bool  # runs an event loop: strategies apply, loop lag is measured
    shares_memory: bool  # slots share one process (a shared counter works)


BACKENDS: dict[str, BackendTraits] = {
    "threads": BackendTraits(
        "one OS thread per slot, blocking keep-alive HTTP connection each", False, True),
    "processes": BackendTraits(
        "one worker process per slot; records return to the cell as each request ends",
        False, False),
    "asyncio": BackendTraits(
        "aiohttp on the standard asyncio event loop, tasks bounded by a semaphore", True, True),
    "uvloop": BackendTraits(
        "the asyncio backend on uvloop's event loop (only the loop factory differs)", True, True),
}
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
ASYNC_BACKENDS: tuple[str, ...] = tuple(n for n, t in BACKENDS.items() if t.has_loop)
