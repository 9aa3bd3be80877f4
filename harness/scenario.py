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
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from harness.errors import ECHO_LIMIT, ScenarioError, brief
from harness.keys import ASYNC_BACKENDS, BACKEND_NAMES, BACKENDS, CellKey
from harness.latency import DurationNs, Latency
from harness.thresholds import parse_threshold
from harness.units import parse_duration_ns, parse_size_bytes

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


class Endpoint(_Model):
    latency: Annotated[Latency, BeforeValidator(_latency_at_most_an_hour)] = 0
    size: SizeBytes = 64
    status: int = Field(200, ge=100, le=599)
    seed: int | None = Field(None, ge=-_INT64, lt=_INT64)  # defaults to server.seed
    faults: Annotated[tuple[Fault, ...], Field(max_length=MAX_ITEMS)] = ()

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


class _HttpOptions(_Model):
    endpoint: str = Field(max_length=MAX_NAME)
    timeout: Timeouts = Timeouts()
    ok_status: Annotated[tuple[int, ...], BeforeValidator(_status_set)] = tuple(range(200, 300))


class IoWorkload(_HttpOptions):
    """One HTTP request to an endpoint of the mock server."""

    type: Literal["io", "http"] = "io"
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
STRATEGIES = ("inline", "thread_pool", "process_pool")


class Load(_Model):
    model: Literal["closed"] = "closed"
    requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration: Span | None = Field(None, gt=0)
    concurrency: Annotated[tuple[Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)], ...],
                           BeforeValidator(_as_tuple), Field(max_length=MAX_ITEMS)]
    workers: int = Field(1, ge=1, le=MAX_WORKERS)

    @model_validator(mode="after")
    def _bounded(self):
        if self.requests is None and self.duration is None:
            raise ValueError("needs requests or duration (or both: whichever comes first)")
        if len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"concurrency levels repeat (got {brief(list(self.concurrency))})")
        return self


class Scenario(_Model):
    name: Name
    description: str = Field("", max_length=MAX_DESCRIPTION)
    server: Server | None = None  # required by workloads that call an endpoint
    workload: Workload
    load: Load
    backends: Annotated[tuple[str, ...], BeforeValidator(_as_tuple),
                        Field(max_length=MAX_BACKENDS)] = BACKEND_NAMES
    # Where the async backends run CPU steps; threads and processes always run them in the slot.
    strategies: Annotated[tuple[Literal[STRATEGIES], ...],  # type: ignore[valid-type]
                          BeforeValidator(_as_tuple)] = ("inline",)
    pool_size: int | None = Field(None, ge=1, le=MAX_WORKERS)  # default: the core count
    repeat: int = Field(1, ge=1, le=MAX_REPEAT)
    expect: Annotated[tuple[Annotated[str, Field(max_length=MAX_THRESHOLD)], ...],
                      BeforeValidator(_as_tuple), Field(max_length=MAX_ITEMS)] = ()  # thresholds

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
        for i, text in enumerate(self.expect):
            try:
                parse_threshold(text, self.backends)
            except ValueError as exc:
                raise ValueError(f"expect[{i}]: {exc}") from None
        return self

    def thresholds(self) -> list:
        return [parse_threshold(text, self.backends) for text in self.expect]

    def variants(self) -> tuple[str, ...]:
        return getattr(self.workload, "variants", ("default",))

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


def plan_cells(scenario: Scenario, backends=None, repeat=None) -> list[CellKey]:
    """Cells interleaved (rep 0: A1 B1 A2 B2, rep 1: ...) so that drift of a shared machine
    spreads evenly over backends, strategies, variants and concurrency levels."""
    return [
        CellKey(backend=backend, concurrency=concurrency, repetition=rep, strategy=strategy,
                variant=variant)
        for rep in range(repeat or scenario.repeat)
        for concurrency in scenario.load.concurrency
        for variant in scenario.variants()
        for backend in (backends or scenario.backends)
        for strategy in scenario.strategies_for(backend)
    ]


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
