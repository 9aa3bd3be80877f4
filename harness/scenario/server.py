"""The mock server's part of a scenario: endpoints with their delays, faults and CPU step;
stalls and a crash; which engine serves which feature."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from harness.core.errors import brief
from harness.core.units import format_duration_ns, parse_duration_ns, parse_size_bytes
from harness.scenario.delays import Latency
from harness.scenario.interpreters import as_spec_text, parse_spec
from harness.scenario.limits import (
    INT64,
    MAX_ITEMS,
    MAX_PROCESSES,
    MAX_REQUESTS,
    MAX_SIZE,
    MAX_WORKERS,
    Name,
    SizeBytes,
    Span,
    Step,
    StrictModel,
    as_tuple,
    latency_at_most_an_hour,
)

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


def _address(value: object) -> object:
    """An IPv4 or IPv6 literal to bind; 0.0.0.0 and :: are every interface."""
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else _bad(value)
    except ValueError:
        return _bad(value)


def _bad(value: object):
    raise ValueError("must be an IPv4 or IPv6 address such as 127.0.0.1, ::1, 0.0.0.0 or :: "
                     f"(got {brief(value)})")


Flag = Annotated[bool | None, BeforeValidator(lambda v: v if v is None else _flag(v))]


class Fault(StrictModel):
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


class Endpoint(StrictModel):
    # validate_default: an endpoint without `latency` gets Fixed(0), not the bare 0
    latency: Annotated[Latency, BeforeValidator(latency_at_most_an_hour)] = Field(
        0, validate_default=True)
    size: SizeBytes = 64
    status: int = Field(200, ge=100, le=599)
    seed: int | None = Field(None, ge=-INT64, lt=INT64)  # defaults to server.seed
    faults: Annotated[tuple[Fault, ...], Field(max_length=MAX_ITEMS)] = ()
    # CPU work per request, done by the server before the latency (harness.mock.cpu): the
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


class Stall(StrictModel):
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


class CrashAfter(StrictModel):
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration: Span | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.requests is None) == (self.duration is None):
            raise ValueError("needs either a duration or a count of requests")
        return self


class Server(StrictModel):
    seed: int = Field(1, ge=-INT64, lt=INT64)
    endpoints: dict[Name, Endpoint] = Field(min_length=1, max_length=MAX_ITEMS)
    engine: Literal["aiohttp", "fast"] = "aiohttp"  # fast: harness/server_fast.py
    processes: int = Field(1, ge=1, le=MAX_PROCESSES)  # > 1: on one port, SO_REUSEPORT
    # The address it binds: loopback unless a cell on another machine must reach it
    listen: Annotated[str, BeforeValidator(_address), WithJsonSchema(
        {"type": "string", "description": "an IPv4 or IPv6 address to bind; 0.0.0.0 or :: "
         "for every interface"})] = "127.0.0.1"
    # HTTPS with a throwaway CA made at its start, handed to the clients (harness.mock.tls)
    tls: bool = False
    # The interpreter it runs under (an interpreter spec); default: the runner's
    python: Annotated[str | None, BeforeValidator(as_spec_text)] = Field(None, max_length=4096)
    stalls: Annotated[tuple[Stall, ...], BeforeValidator(as_tuple),
                      Field(max_length=MAX_ITEMS)] = ()
    crash_after: Annotated[CrashAfter | None, BeforeValidator(
        lambda v: v if v is None else _crash_after(v)), WithJsonSchema({"anyOf": [
            {"type": "string", "pattern": r"^\s*\d+\s*requests?\s*$"},
            {"type": "string"}, {"type": "number", "exclusiveMinimum": 0},
            {"type": "object", "additionalProperties": False, "properties": {
                "requests": {"type": "integer", "minimum": 1, "maximum": MAX_REQUESTS},
                "duration": {"type": ["string", "number"]}}}],
            "description": "30s (since the cell's t0) or 5000 requests"})] = None

    @field_validator("python")
    @classmethod
    def _spec(cls, value: str | None) -> str | None:
        if value is not None and parse_spec(value).optional:
            raise ValueError("the mock server's interpreter cannot be optional (no ?)")
        return value

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


def unserved_feature(server: Server) -> str | None:
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


