"""How requests are released: a load block, closed (concurrency levels) or open (arrival
rates, stages, warm-up)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from harness.core.errors import brief
from harness.core.units import format_rate, parse_duration_ns, parse_rate_per_s
from harness.scenario.limits import (
    DAY_NS,
    MAX_CONCURRENCY,
    MAX_GENERATORS,
    MAX_ITEMS,
    MAX_LOADS,
    MAX_RATE,
    MAX_REQUESTS,
    MAX_WORKERS,
    MIN_RATE,
    Span,
    Step,
    StrictModel,
    as_tuple,
)


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


def usable_cpus() -> int:
    """What `generators: auto` means: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _generators(value: object) -> object:
    """`generators: 2`, `generators: auto` or a list of them; `auto` is the usable CPUs."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    resolved = []
    for item in items:
        if item == "auto":
            item = usable_cpus()
        elif isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"must be a process count or auto (got {brief(item)})")
        resolved.append(item)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"repeat (got {brief(items)}; auto is {usable_cpus()} here)")
    return tuple(resolved)


_GENERATORS_SCHEMA = {
    "anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_GENERATORS},
              {"const": "auto"},
              {"type": "array", "items": {"anyOf": [
                  {"type": "integer", "minimum": 1, "maximum": MAX_GENERATORS},
                  {"const": "auto"}]}}],
    "description": "generator processes one cell's load is split across: a count, auto (the "
                   "usable CPUs) or a list of them (an axis)",
}


def _as_tuple_or_none(value: object) -> object:
    return value if value is None else as_tuple(value)


class Stage(StrictModel):
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
        if parse_duration_ns(value) > DAY_NS:
            raise ValueError(f"must be <= 24h (got {brief(value)})")
        return {"duration": value}
    return value


class Warmup(StrictModel):
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


class Load(StrictModel):
    """One load block. Closed model: `concurrency` slots, each starting its next request when
    the last one ends. Open model (`rate` or `stages`): requests start at intended times
    whatever is in flight, up to `max_in_flight`."""

    model: Literal["closed", "open"] = "closed"  # open when rate or stages are given
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration: Span | None = Field(None, gt=0)
    concurrency: Annotated[Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)], ...],
                                     Field(max_length=MAX_ITEMS)] | None,
                           BeforeValidator(_as_tuple_or_none)] = None
    # Queue workers: with them, a producer feeds a queue they take requests from (the seed
    # lab's shape); without, each slot takes its next request itself.
    workers: int | None = Field(None, ge=1, le=MAX_WORKERS)
    generators: Annotated[Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_GENERATORS)], ...],
                                    Field(min_length=1, max_length=MAX_ITEMS)],
                          BeforeValidator(_generators), WithJsonSchema(_GENERATORS_SCHEMA)
                          ] = Field((1,), json_schema_extra={"default": 1})
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
        if sum(stage.duration for stage in value) > DAY_NS:
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
        self._split()
        if self.concurrency is not None and len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"concurrency levels repeat (got {brief(list(self.concurrency))})")
        if self.rate is not None:
            if len(set(self.rate)) != len(self.rate):
                raise ValueError(f"rates repeat (got {brief([format_rate(r) for r in self.rate])})")
            slowest = min(self.rate)
            if self.duration is None and self.requests / slowest > DAY_NS / 1e9:
                raise ValueError(f"{self.requests} requests at {format_rate(slowest)} take more "
                                 "than 24h: add a duration")
        return self

    def _split(self) -> None:
        """Every generator needs a slot of its own, and a queue lives in one process."""
        most = max(self.generators)
        if most == 1:
            return
        if self.workers is not None:
            raise ValueError(f"generators: {most} with workers: the queue and its workers live "
                             "in one process (leave out workers, or use one generator)")
        fewest = min(self.concurrency) if self.concurrency else self.max_in_flight
        if fewest is not None and fewest < most:
            what = "concurrency" if self.concurrency else "max_in_flight"
            raise ValueError(f"generators: {most} generators need at least as many slots "
                             f"({what} {fewest})")

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


