"""Scenario files: YAML parsed safely and validated into typed, immutable objects."""

from __future__ import annotations

import hashlib
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

from harness.errors import ScenarioError
from harness.keys import ASYNC_BACKENDS, BACKEND_NAMES, BACKENDS, CellKey
from harness.latency import DurationNs, Latency
from harness.thresholds import parse_threshold
from harness.units import parse_size_bytes

SizeBytes = Annotated[int, BeforeValidator(parse_size_bytes), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmM]i?[bB]|[bB])?$"},
              {"type": "integer", "minimum": 0}],
    "description": "a size in bytes: 512, 4KiB, 1MB",
})]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Model):
    latency: Latency = 0
    size: SizeBytes = 64
    status: int = Field(200, ge=100, le=599)
    seed: int | None = None  # defaults to server.seed


class Server(_Model):
    seed: int = 1
    endpoints: dict[Annotated[str, Field(pattern=_NAME)], Endpoint] = Field(min_length=1)

    def seed_of(self, endpoint: str) -> int:
        own = self.endpoints[endpoint].seed
        return self.seed if own is None else own


class Timeouts(_Model):
    connect: DurationNs = Field(2_000_000_000, gt=0)
    total: DurationNs = Field(30_000_000_000, gt=0)


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
            raise ValueError(f"must be status codes (100-599) or classes like 2xx (got {item!r})")
    return tuple(sorted(codes))


def _as_tuple(value: object) -> object:
    return value if isinstance(value, (list, tuple)) else [value]


class _HttpOptions(_Model):
    endpoint: str
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
    duration: DurationNs = Field(20_000_000, gt=0)
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
    dsn: str | None = None  # postgres only; default: $HARNESS_POSTGRES_DSN
    has_cpu_step: ClassVar[bool] = True


class FakeWorkload(_Model):
    """For testing the harness itself: each request sleeps `duration`; on a seq in `raise_on`
    it raises, on a seq in `exit_on` the process running it is killed (SIGKILL)."""

    type: Literal["fake"]
    duration: DurationNs = Field(1_000_000, ge=0)
    raise_on: Annotated[tuple[Annotated[int, Field(ge=0)], ...], BeforeValidator(_as_tuple)] = ()
    exit_on: Annotated[tuple[Annotated[int, Field(ge=0)], ...], BeforeValidator(_as_tuple)] = ()
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
    requests: int | None = Field(None, ge=1)
    duration: DurationNs | None = Field(None, gt=0)
    concurrency: Annotated[tuple[Annotated[int, Field(ge=1)], ...], BeforeValidator(_as_tuple)]
    workers: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounded(self):
        if self.requests is None and self.duration is None:
            raise ValueError("needs requests or duration (or both: whichever comes first)")
        if len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"concurrency levels repeat (got {list(self.concurrency)})")
        return self


class Scenario(_Model):
    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    server: Server | None = None  # required by workloads that call an endpoint
    workload: Workload
    load: Load
    backends: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = BACKEND_NAMES
    # Where the async backends run CPU steps; threads and processes always run them in the slot.
    strategies: Annotated[tuple[Literal[STRATEGIES], ...],  # type: ignore[valid-type]
                          BeforeValidator(_as_tuple)] = ("inline",)
    pool_size: int | None = Field(None, ge=1)  # thread/process pool; default: the core count
    repeat: int = Field(1, ge=1)
    expect: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()  # thresholds

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in BACKEND_NAMES:
                raise ValueError(f"unknown backend '{name}' (known: {', '.join(BACKEND_NAMES)})")
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
                raise ValueError(f"workload.endpoint: no endpoint '{endpoint}' (known: {known})")
        apart = [b for b in self.backends if not BACKENDS[b].shares_memory]
        if self.workload.type == "race" and apart:
            raise ValueError("backends: the race workload shares a counter between slots in "
                             f"one process; it does not run on '{apart[0]}'")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: repeated (got {list(self.strategies)})")
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_TAGS = {"fixed", "uniform", "exponential", "lognormal", "io", "http", "cpu", "cpu_release",
         "race", "pipeline", "fake"}


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
        parts.append(("." if parts else "") + item)
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
        "string_type": "must be a string",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "tuple_type": "must be a list",
        "literal_error": f"must be {ctx.get('expected')}",
        "string_pattern_mismatch": "must be letters, digits, '_', '.', '-'",
        "too_short": "must not be empty",
        "union_tag_invalid": f"must be one of {ctx.get('expected_tags')} (got {ctx.get('tag')!r})",
        "union_tag_not_found": f"needs '{ctx.get('discriminator', '').strip(chr(39))}'",
    }
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    message = messages.get(kind, err["msg"])
    if kind not in ("missing", "union_tag_not_found") and not isinstance(value, (dict, list)):
        message += f" (got {value!r})"
    return message


def load_scenario(path: str | Path) -> LoadedScenario:
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(path, "", f"cannot read: {exc}") from None
    return LoadedScenario(path, text, parse_scenario(text, path))


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark else "yaml"
        raise ScenarioError(path, line, f"{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(path, "", f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "", "must be a YAML mapping with name, server, workload, load")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field, problem = _field_path(err["loc"], data), _problem(err)
        if ": " in problem and not field:  # cross-field checks name their own field
            field, problem = problem.split(": ", 1)
        more = len(exc.errors()) - 1
        raise ScenarioError(path, field, problem + (f" (+{more} more)" if more else "")) from None
