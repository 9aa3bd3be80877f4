"""The ground floor: what identifies a cell, and the catalogue of backends. Nothing here imports
the backends, the scenario models or the reporting stack, so every layer can import it.

A cell is one point of a scenario's matrix: the run and scenario it belongs to, plus one value
per axis. Adding an axis (a client, an interpreter, an arrival rate) is one line in `AXES`; the
Arrow schemas (schema.py), the planner (scenario.py), the job sent to the cell process
(cell.py) and the readers all derive from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, make_dataclass

# (name, Arrow type name, default): the cell's axes, in column order after run_id and scenario.
AXES: tuple[tuple[str, str, object], ...] = (
    ("backend", "string", None),
    ("concurrency", "int64", None),
    ("repetition", "int64", None),
    ("strategy", "string", "inline"),  # where CPU steps run on the loops
    ("variant", "string", "default"),  # e.g. the race's lock / no-lock
    ("client", "string", "standard"),  # the HTTP client: standard (aiohttp/http.client) | lean
)
RUN_KEYS: tuple[tuple[str, str], ...] = (("run_id", "string"), ("scenario", "string"))
# Every key column, in the order that starts every file.
KEY_TYPES: dict[str, str] = {**dict(RUN_KEYS), **{name: kind for name, kind, _ in AXES}}
CELL_KEYS: list[str] = list(KEY_TYPES)
AXIS_DEFAULTS: dict[str, object] = {name: d for name, _, d in AXES if d is not None}

_PY = {"string": str, "int64": int, "float64": float}

CellKey = make_dataclass(
    "CellKey",
    [(name, _PY[kind]) if default is None else (name, _PY[kind], default)
     for name, kind, default in AXES],
    frozen=True,
)
CellKey.__module__ = __name__  # picklable by name (make_dataclass's module= is 3.12+)
CellKey.__doc__ = "One cell of a scenario's matrix within a run: a value per axis (see AXES)."


def key_dict(key) -> dict:
    return asdict(key)


def key_label(key) -> str:
    """Short human label, e.g. `asyncio c=10 r=0 thread_pool`: defaults are left out."""
    parts = [key.backend, f"c={key.concurrency}", f"r={key.repetition}"]
    parts += [str(getattr(key, f.name)) for f in fields(key)
              if f.name in AXIS_DEFAULTS and getattr(key, f.name) != AXIS_DEFAULTS[f.name]]
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
