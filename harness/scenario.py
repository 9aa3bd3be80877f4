"""Scenario files: YAML parsed safely and validated into typed, immutable objects."""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from harness.errors import ECHO_LIMIT, ScenarioError, brief
from harness.keys import ASYNC_BACKENDS, BACKEND_NAMES, BACKENDS, CellKey
from harness.latency import DurationNs, Latency
from harness.target import split_target
from harness.thresholds import OPEN_METRICS, SERVER_LAG_METRICS, check_matrix, parse_threshold
from harness.units import (
    format_duration_ns,
    format_rate,
    parse_duration_ns,
    parse_rate_per_s,
    parse_size_bytes,
)

# Upper bounds: what a small machine can hold and a benchmark can mean. A scenario beyond them
# is a typo or hostile, and is refused with the bound named before anything is allocated.
MAX_CONCURRENCY = 100_000
MAX_REQUESTS = 10**9
MAX_WORKERS = 1024  # queue workers, and pool_size
MAX_REPEAT = 1000
MAX_SIZE = 1 << 30  # an endpoint's response body: 1 GiB
MAX_NAME = 64  # the scenario's name becomes a folder name; endpoint names become URL paths
MAX_DESCRIPTION = 4096
MAX_THRESHOLD = 200
MAX_ITEMS = 100  # concurrency levels, endpoints, thresholds
MAX_BACKENDS = 16
MAX_LOADS = 16  # load blocks in one scenario
MAX_RATE = 1_000_000.0  # arrivals per second: beyond what one Python generator can pace
MIN_RATE = 1 / 3600  # 1/h: a slower constant rate is a typo (a stage may ramp to 0)
MAX_PROCESSES = 64  # mock server processes
_HOUR_NS, _DAY_NS = 3600 * 10**9, 24 * 3600 * 10**9
_INT64 = 2**63


def _size_at_most(value: object) -> object:
    if parse_size_bytes(value) > MAX_SIZE:
        raise ValueError(f"must be <= 1GiB (got {brief(value)})")
    return value


def _at_most(limit_ns: int, shown: str) -> BeforeValidator:
    """A bound on a duration, checked on the value as written so the message can echo it."""

    def check(value: object) -> object:
        if parse_duration_ns(value) > limit_ns:
            raise ValueError(f"must be <= {shown} (got {brief(value)})")
        return value

    return BeforeValidator(check)


def _as_tuple(value: object) -> object:
    return value if isinstance(value, (list, tuple)) else [value]


SizeBytes = Annotated[int, BeforeValidator(parse_size_bytes), BeforeValidator(_size_at_most),
                      WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmMgG]i?[bB]|[bB])?$"},
              {"type": "integer", "minimum": 0, "maximum": MAX_SIZE}],
    "description": "a size in bytes: 512, 4KiB, 1MB; at most 1GiB",
})]
Span = Annotated[DurationNs, _at_most(_DAY_NS, "24h")]  # a run's duration, a timeout
Step = Annotated[DurationNs, _at_most(_HOUR_NS, "1h")]  # one request's CPU step
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=_NAME, max_length=MAX_NAME)]


def _latency_at_most_an_hour(value: object) -> object:
    """Every delay a latency distribution names (value, min, max, mean, median) is <= 1h."""
    fields = value if isinstance(value, dict) else {"value": value}
    for key in ("value", "min", "max", "mean", "median"):
        try:
            too_long = parse_duration_ns(fields[key]) > _HOUR_NS
        except (KeyError, TypeError, ValueError):
            continue  # absent or malformed: the distribution's own model says so
        if too_long:
            where = "" if fields is not value else f"{key} "
            raise ValueError(f"{where}must be <= 1h (got {brief(fields[key])})")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- faults, stalls and crashes of the mock server (issue 8) --------------------------------

EFFECTS = ("status", "reset", "hang", "trickle", "truncate", "delay")
RESERVED_PREFIX = "_harness"  # the server's own routes live under /_harness/


def _share(value: object) -> object:
    """A fraction in [0, 1], or a percentage such as `2%`."""
    shown = f"must be a fraction in [0, 1] or a percentage like 2% (got {brief(value)})"
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)):
        value, shown = float(match[1]) / 100, f"must be at most 100% (got {brief(value)})"
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(shown)
    return float(value)


def _flag(value: object) -> object:
    if value is not True:
        raise ValueError(f"must be true: an effect is chosen by naming it (got {brief(value)})")
    return value


def _error_status(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError(f"must be a 4xx or 5xx status (got {brief(value)})")
    return value


def _rate(value: object) -> object:
    """`2KiB/s` → 2048 bytes a second; a bare number means bytes a second."""
    text = value[:-2] if isinstance(value, str) and value.rstrip().endswith("/s") else value
    try:
        rate = parse_size_bytes(text.rstrip() if isinstance(text, str) else text)
    except ValueError:
        raise ValueError(f"must be a rate like 2KiB/s (got {brief(value)})") from None
    if not 0 < rate <= MAX_SIZE:
        raise ValueError(f"must be a rate above 0 and at most 1GiB/s (got {brief(value)})")
    return rate


Flag = Annotated[bool | None, BeforeValidator(lambda v: v if v is None else _flag(v))]


class Fault(_Model):
    """A share of an endpoint's requests that fail in one way (exactly one effect)."""

    share: Annotated[float, BeforeValidator(_share), WithJsonSchema({"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"}],
        "description": "a fraction in [0, 1] or a percentage: 0.02, 2%"})]
    status: Annotated[int | None, BeforeValidator(
        lambda v: v if v is None else _error_status(v))] = None
    size: SizeBytes | None = None  # the status's body; default: the endpoint's size
    reset: Flag = None
    hang: Flag = None
    trickle: Annotated[int | None, BeforeValidator(lambda v: v if v is None else _rate(v)),
                       WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmMgG]i?[bB]|[bB])?(/s)?$"},
        {"type": "integer", "minimum": 1}], "description": "bytes a second: 2KiB/s"})] = None
    truncate: Flag = None
    delay: Step | None = Field(None, gt=0)  # on top of the endpoint's latency

    @model_validator(mode="after")
    def _one_effect(self):
        named = [name for name in EFFECTS if getattr(self, name) is not None]
        if len(named) != 1:
            got = ", ".join(named) or "none"
            raise ValueError(f"needs exactly one effect of {', '.join(EFFECTS)} (got {got})")
        if self.size is not None and self.status is None:
            raise ValueError("size goes only with status (it is the size of the error body)")
        return self

    @property
    def effect(self) -> str:
        return next(name for name in EFFECTS if getattr(self, name) is not None)


# Where a CPU step runs: in the event loop (blocking it), in a thread pool, in a process pool.
# The scenario's `strategies` (the client's CPU steps) and an endpoint's `offload` (the mock
# server's) use the same words.
STRATEGIES = ("inline", "thread_pool", "process_pool")


class Endpoint(_Model):
    # validate_default: an endpoint without `latency` gets Fixed(0), not the bare 0
    latency: Annotated[Latency, BeforeValidator(_latency_at_most_an_hour)] = Field(
        0, validate_default=True)
    size: SizeBytes = 64
    status: int = Field(200, ge=100, le=599)
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)  # defaults to server.seed
    faults: Annotated[tuple[Fault, ...], Field(max_length=MAX_ITEMS)] = ()
    # CPU work per request, done by the server before the latency (harness.mock_cpu): the
    # pipeline's image pre-processing, calibrated at start-up to this much CPU time.
    cpu: Step | None = Field(None, gt=0)
    offload: Literal[STRATEGIES] = "inline"  # type: ignore[valid-type]  # only with cpu
    pool_size: int | None = Field(None, ge=1, le=MAX_WORKERS)  # default: the core count

    @field_validator("offload")
    @classmethod
    def _offload_needs_cpu(cls, value: str, info) -> str:
        if "cpu" in info.data and info.data["cpu"] is None:  # absent, not merely invalid
            raise ValueError(f"only with cpu (the work to offload) (got {brief(value)})")
        return value

    @field_validator("pool_size")
    @classmethod
    def _pool_needs_a_pool(cls, value: int | None, info) -> int | None:
        offload = info.data.get("offload")
        if value is not None and offload == "inline":
            raise ValueError("only with offload: thread_pool or process_pool "
                             f"(got {brief(value)})")
        return value

    @field_validator("faults")
    @classmethod
    def _shares(cls, value: tuple[Fault, ...], info) -> tuple[Fault, ...]:
        total = math.fsum(fault.share for fault in value)
        if total > 1 + 1e-9:
            raise ValueError(f"the shares add up to {total:.4g}, more than 1")
        if info.data.get("size") == 0 and any(f.truncate for f in value):
            raise ValueError("truncate needs a body to cut, and size is 0")
        return value


class Stall(_Model):
    """The whole server holds its responses: once `at`, or `every` period (first at `at`, by
    default one period in), for `for`; counted from the cell's t0."""

    at: Span | None = None
    every: Span | None = Field(None, gt=0)
    length: Span = Field(alias="for", gt=0)

    @model_validator(mode="after")
    def _when(self):
        if self.at is None and self.every is None:
            raise ValueError("needs at (once) or every (periodic)")
        if self.every is not None and self.length >= self.every:
            raise ValueError("for must be shorter than every (else the server never answers)")
        return self

    def end_ns(self, since_t0_ns: int) -> int | None:
        """Where the stall that covers `since_t0_ns` ends (since t0), None outside a stall."""
        first = self.at if self.at is not None else self.every
        rel = since_t0_ns - first
        if rel < 0:
            return None
        start = first + (rel // self.every) * self.every if self.every else first
        return start + self.length if since_t0_ns < start + self.length else None


def _crash_after(value: object) -> object:
    """`30s` (since t0) or `5000 requests` (when the 5000th arrives)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*requests?\s*", value)):
        return {"requests": int(match[1])}
    try:
        parse_duration_ns(value)
    except ValueError:
        raise ValueError("must be a duration (30s) or a count of requests (5000 requests) "
                         f"(got {brief(value)})") from None
    return {"duration": value}


class CrashAfter(_Model):
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration: Span | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.requests is None) == (self.duration is None):
            raise ValueError("needs either a duration or a count of requests")
        return self


class Server(_Model):
    seed: int = Field(1, ge=-_INT64, lt=_INT64)
    endpoints: dict[Name, Endpoint] = Field(min_length=1, max_length=MAX_ITEMS)
    engine: Literal["aiohttp", "fast"] = "aiohttp"  # fast: harness/server_fast.py
    processes: int = Field(1, ge=1, le=MAX_PROCESSES)  # > 1: on one port, SO_REUSEPORT
    stalls: Annotated[tuple[Stall, ...], BeforeValidator(_as_tuple),
                      Field(max_length=MAX_ITEMS)] = ()
    crash_after: Annotated[CrashAfter | None, BeforeValidator(
        lambda v: v if v is None else _crash_after(v)), WithJsonSchema({"anyOf": [
            {"type": "string", "pattern": r"^\s*\d+\s*requests?\s*$"},
            {"type": "string"}, {"type": "number", "exclusiveMinimum": 0},
            {"type": "object", "additionalProperties": False, "properties": {
                "requests": {"type": "integer", "minimum": 1, "maximum": MAX_REQUESTS},
                "duration": {"type": ["string", "number"]}}}],
            "description": "30s (since the cell's t0) or 5000 requests"})] = None

    @field_validator("endpoints", mode="before")
    @classmethod
    def _not_reserved(cls, value: object) -> object:
        for name in value if isinstance(value, dict) else ():
            if isinstance(name, str) and name.startswith(RESERVED_PREFIX):
                raise ValueError(f"endpoint {brief(name)}: names starting with "
                                 f"{RESERVED_PREFIX} are the harness's own routes")
        return value

    def seed_of(self, endpoint: str) -> int:
        own = self.endpoints[endpoint].seed
        return self.seed if own is None else own


# What an engine does not serve, one line each: (engine, field, used), `used` a predicate on
# the Server, or on each Endpoint for a field under `endpoints.*.`. A scenario using one is
# refused with the field named. When faults, stalls and crash_after land on the models, the
# fast engine gets their lines: ("fast", "endpoints.*.faults", lambda e: bool(e.faults)).
ENGINE_LIMITS = (
    ("aiohttp", "processes", lambda server: server.processes > 1),
    ("fast", "endpoints.*.faults", lambda endpoint: bool(endpoint.faults)),
    ("fast", "stalls", lambda server: bool(server.stalls)),
    ("fast", "crash_after", lambda server: server.crash_after is not None),
    ("fast", "endpoints.*.cpu", lambda endpoint: endpoint.cpu is not None),
)


def _unserved(server: Server) -> str | None:
    """`field: problem` for the first feature the server's engine does not serve, or None."""
    for engine, field, used in ENGINE_LIMITS:
        if server.engine != engine:
            continue
        if field.startswith("endpoints.*."):
            key = field.removeprefix("endpoints.*.")
            for name, endpoint in server.endpoints.items():
                if used(endpoint):
                    value = getattr(endpoint, key)
                    shown = format_duration_ns(value) if key == "cpu" else brief(value)
                    return (f"server.endpoints.{name}.{key}: not served by engine: {engine} "
                            f"(got {shown})")
        elif used(server):
            return f"server.{field}: not served by engine: {engine} " \
                   f"(got {brief(getattr(server, field))})"
    return None


class Timeouts(_Model):
    connect: Span = Field(2_000_000_000, gt=0)
    total: Span = Field(30_000_000_000, gt=0)


def _status_set(value: object) -> object:
    """`ok_status: [2xx, 304]` → a sorted tuple of concrete codes."""
    items = value if isinstance(value, (list, tuple)) else [value]
    codes: set[int] = set()
    for item in items:
        if isinstance(item, str) and re.fullmatch(r"[1-5]xx", item):
            base = int(item[0]) * 100
            codes.update(range(base, base + 100))
        elif isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        else:
            raise ValueError("must be status codes (100-599) or classes like 2xx "
                             f"(got {brief(item)})")
    return tuple(sorted(codes))


def _as_tuple(value: object) -> object:
    return value if isinstance(value, (list, tuple)) else [value]


MAX_BODY = 64 << 20  # a request body is generated or read once per cell and kept in memory
MAX_HEADERS = 100
Clients = Annotated[tuple[Literal["standard", "lean"], ...], BeforeValidator(_as_tuple),
                    Field(min_length=1, max_length=2)]


def _body_size(value: object) -> object:
    if parse_size_bytes(value) > MAX_BODY:
        raise ValueError(f"must be <= 64MiB (got {brief(value)})")
    return value


class BodyFile(_Model):
    file: str = Field(min_length=1, max_length=4096)  # read once before the clock starts


class _HttpOptions(_Model):
    endpoint: str | None = Field(None, max_length=MAX_NAME)
    timeout: Timeouts = Timeouts()
    ok_status: Annotated[tuple[int, ...], BeforeValidator(_status_set)] = tuple(range(200, 300))
    # standard: aiohttp on the loops, http.client in threads/processes; lean: one small
    # HTTP/1.1 client on httptools everywhere. A list makes it an axis of the cell matrix.
    client: Clients = ("standard",)

    @field_validator("client")
    @classmethod
    def _distinct_clients(cls, value):
        if len(set(value)) != len(value):
            raise ValueError(f"repeated (got {brief(list(value))})")
        return value


class IoWorkload(_HttpOptions):
    """One HTTP request to an endpoint of the mock server (or to `path` of an external
    `target`)."""

    type: Literal["io", "http"] = "io"
    path: str | None = Field(None, pattern=r"^/[!-~]*$", max_length=2048)  # target only
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                                       max_length=256)],
                  Annotated[str, Field(pattern=r"^[\t -~]*$", max_length=8192)]] = Field(
        default_factory=dict, max_length=MAX_HEADERS)
    body: Annotated[int, BeforeValidator(parse_size_bytes), BeforeValidator(_body_size)] \
        | BodyFile | None = None
    has_cpu_step: ClassVar[bool] = False


class CpuWorkload(_Model):
    """`cpu`: a pure-Python kernel that holds the GIL; `cpu_release`: C-level hashing that
    releases it. Sized in work units, calibrated at the start of each run to `duration`."""

    type: Literal["cpu", "cpu_release"]
    duration: Step = Field(20_000_000, gt=0)
    has_cpu_step: ClassVar[bool] = True


class RaceWorkload(_Model):
    """Each request increments a shared counter: read, switch point, write."""

    type: Literal["race"]
    variants: Annotated[tuple[Literal["no-lock", "lock"], ...], BeforeValidator(
        lambda v: v if isinstance(v, (list, tuple)) else [v])] = ("no-lock", "lock")
    has_cpu_step: ClassVar[bool] = False


class PipelineWorkload(_HttpOptions):
    """The inference service: CPU pre-processing of a generated image (NumPy), a call to the
    mock server's inference endpoint, a write of the result to a database."""

    type: Literal["pipeline"]
    image: int = Field(256, ge=8, le=4096)  # side in pixels of the generated RGB image
    database: Literal["sqlite", "postgres"] = "sqlite"
    dsn: str | None = Field(None, max_length=1024)  # postgres only; default: $HARNESS_POSTGRES_DSN
    has_cpu_step: ClassVar[bool] = True

    @model_validator(mode="after")
    def _needs_endpoint(self):
        if self.endpoint is None:
            raise ValueError("workload.endpoint: required (the inference endpoint to POST to)")
        return self


class FakeWorkload(_Model):
    """For testing the harness itself: each request sleeps `duration`; on a seq in `raise_on`
    it raises, on a seq in `exit_on` the process running it is killed (SIGKILL)."""

    type: Literal["fake"]
    duration: Step = Field(1_000_000, ge=0)
    raise_on: Annotated[tuple[Annotated[int, Field(ge=0, lt=MAX_REQUESTS)], ...],
                        BeforeValidator(_as_tuple), Field(max_length=MAX_ITEMS)] = ()
    exit_on: Annotated[tuple[Annotated[int, Field(ge=0, lt=MAX_REQUESTS)], ...],
                       BeforeValidator(_as_tuple), Field(max_length=MAX_ITEMS)] = ()
    has_cpu_step: ClassVar[bool] = False


def _default_type(value: object) -> object:
    if isinstance(value, dict) and "type" not in value:
        return {"type": "io", **value}
    return value


Workload = Annotated[
    IoWorkload | CpuWorkload | RaceWorkload | PipelineWorkload | FakeWorkload,
    Field(discriminator="type"), BeforeValidator(_default_type),
]


def _rate_at_most(value: object) -> float:
    rate = parse_rate_per_s(value)
    if rate > MAX_RATE:
        raise ValueError(f"must be <= 1000000/s (got {brief(value)})")
    return rate


def _rate_positive(value: object) -> float:
    rate = _rate_at_most(value)
    if rate < MIN_RATE:
        raise ValueError(f"must be at least 1/h (got {brief(value)})")
    return rate


_RATE_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*/\s*(s|m|h)$"},
              {"type": "number", "minimum": 0, "maximum": MAX_RATE}],
    "description": "an arrival rate: 200/s, 12/m, 5/h; a bare number means per second",
}
Rate = Annotated[float, BeforeValidator(_rate_at_most), WithJsonSchema(_RATE_SCHEMA)]  # >= 0
PositiveRate = Annotated[float, BeforeValidator(_rate_positive), WithJsonSchema(_RATE_SCHEMA)]


def _as_tuple_or_none(value: object) -> object:
    return value if value is None else _as_tuple(value)


class Stage(_Model):
    """Ramp linearly from the previous stage's rate (the first: from `start_rate`) to `rate`."""

    rate: Rate
    duration: Span = Field(gt=0)


def _warmup(value: object) -> object:
    """`warmup: 5s` (a duration) or `warmup: 100` (a request count); `{requests: 100}` or
    `{duration: 5s}` spelled out."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be a request count (an integer) or a duration like 5s "
                         f"(got {brief(value)})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative (got {brief(value)})")
        if value > MAX_REQUESTS:
            raise ValueError(f"must be <= {MAX_REQUESTS} (got {brief(value)})")
        return {"requests": value}
    if isinstance(value, str):
        if parse_duration_ns(value) > _DAY_NS:
            raise ValueError(f"must be <= 24h (got {brief(value)})")
        return {"duration": value}
    return value


class Warmup(_Model):
    """Requests run before the measured ones, on top of `requests`: a count or a duration."""

    requests: int = Field(0, ge=0, le=MAX_REQUESTS)
    duration: Span = Field(0, ge=0)

    @model_validator(mode="after")
    def _one(self):
        if self.requests and self.duration:
            raise ValueError("a request count or a duration, not both")
        return self

    def __bool__(self) -> bool:
        return bool(self.requests or self.duration)


# Requests in flight (and the pool: threads, processes, tasks and their connections) of an open
# cell when the scenario does not say: what each backend holds without strain on a small machine.
# threads: an OS thread and a blocking connection per slot; past ~100 the GIL hand-offs cost more
# than the waiting they overlap. processes: a process per slot (tens of MB each); 2 × cores keeps
# every core busy while half the slots wait on I/O. asyncio/uvloop: a task and a connection per
# request in flight, cheap; 1000 stays under the usual 1024 open files with room to spare.
MAX_IN_FLIGHT_DEFAULTS = {"threads": 100, "asyncio": 1000, "uvloop": 1000}  # processes: 2×cores
MAX_IN_FLIGHT_FALLBACK = 100  # a backend without its own default


def default_max_in_flight(backend: str, cores: int | None = None) -> int:
    if backend == "processes":
        return 2 * (cores or os.cpu_count() or 1)
    return MAX_IN_FLIGHT_DEFAULTS.get(backend, MAX_IN_FLIGHT_FALLBACK)


_OPEN_ONLY = ("arrivals", "start_rate", "max_in_flight", "max_sched_lag")


class Load(_Model):
    """One load block. Closed model: `concurrency` slots, each starting its next request when
    the last one ends. Open model (`rate` or `stages`): requests start at intended times
    whatever is in flight, up to `max_in_flight`."""

    model: Literal["closed", "open"] = "closed"  # open when rate or stages are given
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration: Span | None = Field(None, gt=0)
    concurrency: Annotated[Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)], ...],
                                     Field(max_length=MAX_ITEMS)] | None,
                           BeforeValidator(_as_tuple_or_none)] = None
    workers: int = Field(1, ge=1, le=MAX_WORKERS)
    rate: Annotated[Annotated[tuple[PositiveRate, ...], Field(max_length=MAX_ITEMS)] | None,
                    BeforeValidator(_as_tuple_or_none)] = None
    arrivals: Literal["uniform", "poisson"] = "uniform"
    stages: tuple[Stage, ...] | None = Field(None, max_length=MAX_ITEMS)
    start_rate: Rate = 0.0
    max_in_flight: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)  # default: per backend
    warmup: Annotated[Warmup, BeforeValidator(_warmup), WithJsonSchema({
        "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_REQUESTS},
                  {"type": "string", "pattern": r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$"}],
        "description": "warm-up per cell, on top of requests: a request count or a duration",
    })] = Field(Warmup(), json_schema_extra={"default": 0})
    max_sched_lag: Step = Field(5_000_000, gt=0)  # the generator lags past this p99 lag
    # The slots' connections are opened before the clock, at most this many a second (0: not
    # ahead of time), so 10 000 connections do not overflow the listen backlog mid-measurement.
    connect_rate: Rate = 5000.0

    @model_validator(mode="before")
    @classmethod
    def _infer_model(cls, data: object) -> object:
        if isinstance(data, dict) and "model" not in data and ("rate" in data or "stages" in data):
            return {**data, "model": "open"}
        return data

    @field_validator("stages")
    @classmethod
    def _stages(cls, value):
        if value is None:
            return value
        if not value:
            raise ValueError("must not be empty")
        if sum(stage.duration for stage in value) > _DAY_NS:
            raise ValueError("last more than 24h in all")
        if not any(stage.rate > 0 for stage in value):
            raise ValueError("every rate is 0: no request would start")
        return value

    @model_validator(mode="after")
    def _bounded(self):
        if self.model == "closed":
            if self.rate is not None or self.stages is not None:
                raise ValueError("rate and stages make the open model (leave out model: closed)")
            for name in _OPEN_ONLY:
                if name in self.model_fields_set:
                    raise ValueError(f"{name} is for the open model (with rate or stages)")
            if self.concurrency is None:
                raise ValueError("needs concurrency (closed model), or rate or stages "
                                 "(open model)")
        else:
            if self.concurrency is not None:
                raise ValueError("concurrency is for the closed model; with rate or stages, "
                                 "max_in_flight caps the requests in flight")
            if self.rate is None and self.stages is None:
                raise ValueError("the open model needs rate or stages")
            if self.rate is not None and self.stages is not None:
                raise ValueError("rate or stages, not both")
            if self.stages is None and "start_rate" in self.model_fields_set:
                raise ValueError("start_rate is where stages ramp from: it needs stages")
            if self.stages is not None:
                if self.duration is not None:
                    raise ValueError("duration does not go with stages: their durations are "
                                     "the run's (requests may still cap it)")
                return self
        if self.requests is None and self.duration is None:
            raise ValueError("needs requests or duration (or both: whichever comes first)")
        if self.concurrency is not None and len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"concurrency levels repeat (got {brief(list(self.concurrency))})")
        if self.rate is not None:
            if len(set(self.rate)) != len(self.rate):
                raise ValueError(f"rates repeat (got {brief([format_rate(r) for r in self.rate])})")
            slowest = min(self.rate)
            if self.duration is None and self.requests / slowest > _DAY_NS / 1e9:
                raise ValueError(f"{self.requests} requests at {format_rate(slowest)} take more "
                                 "than 24h: add a duration")
        return self

    @property
    def peak_rate_per_s(self) -> float | None:
        if self.stages is not None:
            return max(self.start_rate, *(stage.rate for stage in self.stages))
        return max(self.rate) if self.rate is not None else None

    def rates_per_s(self) -> tuple[float, ...]:
        """The rate of each of the block's open cells: each listed rate, or a ramp's peak."""
        if self.stages is not None:
            return (self.peak_rate_per_s,)
        return self.rate or ()

    def max_in_flight_for(self, backend: str, cores: int | None = None) -> int:
        return self.max_in_flight or default_max_in_flight(backend, cores)

    def cell_levels(self, backend: str, cores: int | None = None
                    ) -> list[tuple[str, int, float | None]]:
        """(model, concurrency, rate_per_s) of each of this block's cells for a backend: the
        closed model's levels, or the open model's rates, whose `concurrency` is max_in_flight."""
        if self.model == "closed":
            return [("closed", level, None) for level in self.concurrency]
        return [("open", self.max_in_flight_for(backend, cores), rate)
                for rate in self.rates_per_s()]


def _not_empty(value: tuple) -> tuple:
    if not value:
        raise ValueError("must not be empty")
    return value


def _load_shape(value: object) -> str:
    return "blocks" if isinstance(value, (list, tuple)) else "block"


# `load:` is one block, or a list of blocks (each its own cells).
Loads = Annotated[
    Annotated[Load, Tag("block")]
    | Annotated[tuple[Load, ...], Field(max_length=MAX_LOADS), AfterValidator(_not_empty),
                Tag("blocks")],
    Discriminator(_load_shape),
]


class Scenario(_Model):
    name: Name
    description: str = Field("", max_length=MAX_DESCRIPTION)
    server: Server | None = None  # required by workloads that call an endpoint
    target: str | None = Field(None, max_length=2048)  # or the user's own service (io only)
    workload: Workload
    load: Loads
    backends: Annotated[tuple[str, ...], BeforeValidator(_as_tuple),
                        Field(max_length=MAX_BACKENDS)] = BACKEND_NAMES
    # Where the async backends run CPU steps; threads and processes always run them in the slot.
    strategies: Annotated[tuple[Literal[STRATEGIES], ...],  # type: ignore[valid-type]
                          BeforeValidator(_as_tuple)] = ("inline",)
    pool_size: int | None = Field(None, ge=1, le=MAX_WORKERS)  # default: the core count
    repeat: int = Field(1, ge=1, le=MAX_REPEAT)
    expect: Annotated[tuple[Annotated[str, Field(max_length=MAX_THRESHOLD)], ...],
                      BeforeValidator(_as_tuple), Field(max_length=MAX_ITEMS)] = ()  # thresholds
    # Arrival times of open cells are drawn from it; default: server.seed, else 1.
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in BACKEND_NAMES:
                raise ValueError(f"unknown backend {brief(name)} "
                                 f"(known: {', '.join(BACKEND_NAMES)})")
        if not value:
            raise ValueError("must name at least one backend")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        endpoint = getattr(self.workload, "endpoint", None)
        if self.target is not None:
            try:
                split_target(self.target)
            except ValueError as exc:
                raise ValueError(f"target: {exc}") from None
            if self.server is not None:
                raise ValueError("target: give either server: (the mock) or target:, not both")
            if self.workload.type not in ("io", "http"):
                raise ValueError(f"target: the {self.workload.type} workload needs the mock "
                                 "server (server:)")
            if endpoint is not None:
                raise ValueError("workload.endpoint: with target:, give workload.path instead")
        elif getattr(self.workload, "path", None) is not None:
            raise ValueError("workload.path: only with target: (the mock's are endpoints)")
        elif self.workload.type in ("io", "http") and endpoint is None:
            raise ValueError("workload.endpoint: required (or target: with workload.path)")
        if self.server is not None and (problem := _unserved(self.server)):
            raise ValueError(problem)
        if endpoint is not None:
            if self.server is None:
                raise ValueError(f"server: required by workload type '{self.workload.type}'")
            if endpoint not in self.server.endpoints:
                known = ", ".join(self.server.endpoints)
                raise ValueError(f"workload.endpoint: no endpoint {brief(endpoint)} "
                                 f"(known: {known})")
        apart = [b for b in self.backends if not BACKENDS[b].shares_memory]
        if self.workload.type == "race" and apart:
            raise ValueError("backends: the race workload shares a counter between slots in "
                             f"one process; it does not run on '{apart[0]}'")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: repeated (got {brief(list(self.strategies))})")
        self._distinct_cells()
        has_open = any(block.model == "open" for block in self.loads)
        for i, text in enumerate(self.expect):
            try:
                threshold = parse_threshold(text, self.backends)
                check_matrix(threshold, self.backends, self.workload.type)
                metric = threshold.metric
                if metric in SERVER_LAG_METRICS and (
                        self.server is None or self.server.engine != "aiohttp"):
                    raise ValueError(f"{threshold.text} applies to no cell of this scenario: "
                                     f"{metric} needs the aiohttp mock server (not "
                                     f"{'target:' if self.server is None else 'engine: fast'})")
            except ValueError as exc:
                raise ValueError(f"expect[{i}]: {exc}") from None
            if metric in OPEN_METRICS and not has_open:
                raise ValueError(f"expect[{i}]: {metric} is an open-model figure and no load "
                                 "block has rate or stages")
        return self

    def _distinct_cells(self) -> None:
        """Two load blocks must not plan the same cell: a cell's keys tell its block."""
        seen: dict[tuple, int] = {}
        for i, block in enumerate(self.loads):
            for backend in self.backends:
                for model, concurrency, rate in block.cell_levels(backend):
                    j = seen.setdefault((backend, model, concurrency, rate), i)
                    if j != i:
                        what = (f"concurrency {concurrency}" if model == "closed" else
                                f"rate {format_rate(rate)} with max_in_flight {concurrency}")
                        raise ValueError(f"load[{i}]: plans the same cells as load[{j}] ({what} "
                                         f"on {backend}): blocks must differ in concurrency, "
                                         "rate or max_in_flight")

    @property
    def loads(self) -> tuple[Load, ...]:
        """The load blocks, one or more."""
        return self.load if isinstance(self.load, tuple) else (self.load,)

    @property
    def arrival_seed(self) -> int:
        """The seed of open cells' arrival times (with each cell's keys)."""
        if self.seed is not None:
            return self.seed
        return self.server.seed if self.server is not None else 1

    def load_for(self, key: CellKey) -> Load:
        """The load block a planned cell comes from."""
        blocks = [b for b in self.loads if b.model == key.model and (
            key.concurrency in b.concurrency if b.model == "closed"
            else key.rate_per_s in b.rates_per_s())]
        if len(blocks) > 1:  # open blocks at one rate differ in max_in_flight
            blocks = [b for b in blocks if b.max_in_flight_for(key.backend) == key.concurrency]
        if len(blocks) != 1:
            raise KeyError(f"no load block of {self.name} plans the cell {key}")
        return blocks[0]

    def thresholds(self) -> list:
        return [parse_threshold(text, self.backends) for text in self.expect]

    def variants(self) -> tuple[str, ...]:
        return getattr(self.workload, "variants", ("default",))

    def peak_in_flight(self) -> int:
        """The most requests any cell of the scenario may have in flight: what the mock
        server's listen backlog and open-file limit are sized to."""
        return max(concurrency for block in self.loads for backend in self.backends
                   for _, concurrency, _ in block.cell_levels(backend))

    def clients(self) -> tuple[str, ...]:
        """An axis for workloads that make HTTP calls; `standard` otherwise."""
        return getattr(self.workload, "client", ("standard",))

    def strategies_for(self, backend: str) -> tuple[str, ...]:
        """Strategies are an axis only where they mean something: CPU steps on a loop."""
        if backend in ASYNC_BACKENDS and self.workload.has_cpu_step:
            return self.strategies
        return ("inline",)


def json_schema() -> dict:
    """The scenario format as JSON Schema; duration defaults are shown as they are written."""
    from harness.units import format_duration_ns

    schema = Scenario.model_json_schema()

    def walk(node):
        if isinstance(node, dict):
            if node.get("x-harness-unit") == "duration" and isinstance(node.get("default"), int):
                node["default"] = format_duration_ns(node["default"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with the exact text it came from (kept in the run metadata)."""

    path: str
    text: str
    scenario: Scenario

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def plan_cells(scenario: Scenario, backends=None, repeat=None, cores=None) -> list[CellKey]:
    """Cells interleaved (rep 0: A1 B1 A2 B2, rep 1: ...) so that drift of a shared machine
    spreads evenly over backends, strategies, variants, load blocks and their levels (closed:
    concurrency levels; open: rates, with `concurrency` = the backend's max_in_flight)."""
    cells = []
    for rep in range(repeat or scenario.repeat):
        for block in scenario.loads:
            for level in range(len(block.concurrency or block.rates_per_s())):
                for variant in scenario.variants():
                    for client in scenario.clients():
                        for backend in backends or scenario.backends:
                            model, concurrency, rate = block.cell_levels(backend, cores)[level]
                            for strategy in scenario.strategies_for(backend):
                                cells.append(CellKey(
                                    backend=backend, concurrency=concurrency, repetition=rep,
                                    strategy=strategy, variant=variant, client=client,
                                    model=model, rate_per_s=rate))
    return cells


# ---- loading and one-line errors -------------------------------------------------------------

# Limits on the file itself, checked before anything large is read, parsed or built: a real
# scenario is a few hundred bytes, nests five levels and holds a few dozen values.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 10_000
MAX_INT_CHARS = 100
MAX_LINE = 300  # characters of one problem description, whatever it quotes
# C0 and C1 control characters except tab, newline and carriage return; lone surrogates.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster, same YAML


class _UniqueKeyLoader(_Base):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one, and
    turns the constructors' own exceptions (a date in month 13, an integer of 5 000 digits)
    into YAML errors with a line."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):  # `!!map [a]`
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found a {node.id}", node.start_mark)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping",
                    key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {brief(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer too long ({len(node.value)} characters)", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:  # whatever a constructor raises on odd input
            kind = node.tag.rpartition(":")[2] or "value"
            shown = brief(node.value) if isinstance(node.value, str) else node.id
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {kind}: {shown}", node.start_mark) from None

    def construct_document(self, node):
        try:
            return super().construct_document(node)
        except yaml.YAMLError:
            raise
        except Exception:  # collections are filled here, after construct_object returned
            raise yaml.constructor.ConstructorError(
                None, None, "cannot build the document", node.start_mark) from None


_YAML_PROBLEMS = {
    "second occurrence": "duplicate anchor",
    "exceeded maximum nesting depth": f"nested more than {MAX_DEPTH} levels deep",
    "but found another document": "a second document (---): one scenario per file",
}


def _line(text: str | bytes, pos: int) -> str:
    """`line N` of the character (or byte) at pos, as a field of a one-line error."""
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return f"line {text.count(newline, 0, pos) + 1}"


def _one_line(problem: str) -> str:
    problem = " ".join(problem.split())
    return problem if len(problem) <= MAX_LINE else problem[: MAX_LINE - 1] + "…"


def _check_shape(text: str, path: str) -> None:
    """Walk the YAML events (a flat stream, no recursion) before anything is built: bounded
    nesting keeps the recursive composer and the validators far from the recursion limit,
    bounded node count keeps construction and validation fast."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.NodeEvent):  # scalars, aliases, collection starts
            nodes += 1
            if nodes > MAX_NODES:
                raise ScenarioError(path, f"line {event.start_mark.line + 1}",
                                    f"more than {MAX_NODES} values (a scenario needs a few dozen)")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ScenarioError(path, f"line {event.start_mark.line + 1}",
                                    f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_values(data: object, path: str) -> None:
    """Every key a string, no control characters in keys or values (a `"\\e[2J"` escape in a
    description would reach the terminal), no !!binary. Iterative; aliases visited once."""
    stack: list[tuple[str, object]] = [("", data)]
    seen: set[int] = set()
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if match := _CONTROL.search(value):
                raise ScenarioError(path, where, f"control character U+{ord(match[0]):04X} not "
                                                 f"allowed (got {brief(value)})")
        elif isinstance(value, bytes | bytearray):
            raise ScenarioError(path, where, "must not be binary (!!binary)")
        elif isinstance(value, dict | list | tuple | set | frozenset):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if isinstance(value, dict):
                items = []
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ScenarioError(path, where, f"key {brief(key)} must be a string "
                                                         "(quote it)")
                    if match := _CONTROL.search(key):
                        raise ScenarioError(path, where, f"key {brief(key)}: control character "
                                                         f"U+{ord(match[0]):04X} not allowed")
                    items.append((f"{where}.{_cut(key)}" if where else _cut(key), item))
            elif isinstance(value, list | tuple):
                items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
            else:
                items = [(where, item) for item in value]
            stack.extend(reversed(items))  # document order: the first problem is reported


_TAGS = {"fixed", "uniform", "exponential", "lognormal", "io", "http", "cpu", "cpu_release",
         "race", "pipeline", "fake"}


def _cut(key: str) -> str:
    """A key as it appears in a field path, cut like an echoed value."""
    return key if len(key) <= ECHO_LIMIT else key[: ECHO_LIMIT - 1] + "…"


def _field_path(loc: tuple, data: object) -> str:
    parts = []
    for i, item in enumerate(loc):
        if i == 1 and loc[0] == "load" and item in ("block", "blocks"):
            continue  # the load's shape (one block or a list), not a key: data stays put
        if isinstance(item, int):
            if isinstance(data, list):  # `concurrency: 0` is reported without an index
                parts.append(f"[{item}]")
                data = data[item] if item < len(data) else None
            continue
        data = data.get(item) if isinstance(data, dict) else None
        if "[" in item or (item in _TAGS and i > 0 and loc[i - 1] in ("latency", "workload")):
            continue  # pydantic's internal union/validator tags, not the user's keys
        parts.append(("." if parts else "") + _cut(item))
    return "".join(parts)


def _problem(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    messages = {
        "missing": "required",
        "extra_forbidden": "unknown key",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "greater_than": f"must be > {ctx.get('gt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "int_from_float": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "string_type": "must be a string",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "tuple_type": "must be a list",
        "literal_error": f"must be {ctx.get('expected')}",
        "string_pattern_mismatch": "must be letters, digits, '_', '.', '-'",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters",
        "too_short": "must not be empty",
        "too_long": f"must have at most {ctx.get('max_length')} items "
                    f"(got {len(value) if isinstance(value, dict | list) else 'more'})",
        "union_tag_invalid": f"must be one of {ctx.get('expected_tags')} "
                             f"(got {brief(ctx.get('tag'))})",
        "union_tag_not_found": f"needs '{ctx.get('discriminator', '').strip(chr(39))}'",
    }
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    message = messages.get(kind, err["msg"])
    if kind not in ("missing", "union_tag_not_found", "too_long") and not isinstance(
            value, (dict, list)):
        message += f" (got {brief(value)})"
    return message


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read at most MAX_FILE_BYTES; a file that is not UTF-8 text is refused before parsing."""
    path = str(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > MAX_FILE_BYTES:  # a regular file; a pipe or device reports 0
                raise ScenarioError(path, "", f"too large: {size} bytes (at most 1 MiB)")
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except OSError as exc:
        raise ScenarioError(path, "", _one_line(f"cannot read: {exc}")) from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(path, "", "too large: more than 1 MiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScenarioError(path, "", "not UTF-8 text (a UTF-16 byte-order mark): save it as UTF-8")
    if (nul := data.find(b"\0")) >= 0:
        raise ScenarioError(path, _line(data, nul), "not a text file (a NUL byte)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, _line(data, exc.start),
                            f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    return LoadedScenario(path, text, parse_scenario(text, path))


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Validate scenario text; anything wrong is a ScenarioError of one line naming `path`, the
    field (or line) and the problem, checked in order of cost: size and characters, the shape
    of the YAML events, the built values, then the models."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(path, "", "too large: more than 1 MiB")
    if match := _CONTROL.search(text):
        raise ScenarioError(path, _line(text, match.start()),
                            f"control character U+{ord(match[0]):04X} not allowed")
    try:
        _check_shape(text, path)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark else "yaml"
        problem = exc.problem or exc.context or "invalid YAML"
        problem = _YAML_PROBLEMS.get(problem, problem)  # libyaml's wording, where unclear
        raise ScenarioError(path, line, _one_line(problem)) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, "", _one_line(f"invalid YAML: {exc}")) from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "", "must be a YAML mapping with name, server, workload, load")
    _check_values(data, path)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        field, problem = _field_path(errors[0]["loc"], data), _problem(errors[0])
        if ": " in problem and not field:  # cross-field checks name their own field
            field, problem = problem.split(": ", 1)
        more = len(errors) - 1
        problem = _one_line(problem + (f" (+{more} more)" if more else ""))
        raise ScenarioError(path, field, problem) from None
