"""Upper bounds on what a scenario may ask for, and the field types that carry them (sizes,
spans, steps, names), shared by every scenario model."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from harness.core.errors import brief
from harness.core.units import parse_duration_ns, parse_size_bytes
from harness.scenario.delays import DurationNs

# Upper bounds: what a small machine can hold and a benchmark can mean. A scenario beyond them
# is a typo or hostile, and is refused with the bound named before anything is allocated.
MAX_CONCURRENCY = 100_000
MAX_REQUESTS = 10**9
MAX_WORKERS = 1024  # queue workers, and pool_size
MAX_GENERATORS = 256  # generator processes of one cell
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
HOUR_NS, DAY_NS = 3600 * 10**9, 24 * 3600 * 10**9
INT64 = 2**63


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


def as_tuple(value: object) -> object:
    return value if isinstance(value, (list, tuple)) else [value]


SizeBytes = Annotated[int, BeforeValidator(parse_size_bytes), BeforeValidator(_size_at_most),
                      WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([kKmMgG]i?[bB]|[bB])?$"},
              {"type": "integer", "minimum": 0, "maximum": MAX_SIZE}],
    "description": "a size in bytes: 512, 4KiB, 1MB; at most 1GiB",
})]
Span = Annotated[DurationNs, _at_most(DAY_NS, "24h")]  # a run's duration, a timeout
Step = Annotated[DurationNs, _at_most(HOUR_NS, "1h")]  # one request's CPU step
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
Name = Annotated[str, Field(pattern=_NAME, max_length=MAX_NAME)]


def latency_at_most_an_hour(value: object) -> object:
    """Every delay a latency distribution names (value, min, max, mean, median) is <= 1h."""
    fields = value if isinstance(value, dict) else {"value": value}
    for key in ("value", "min", "max", "mean", "median"):
        try:
            too_long = parse_duration_ns(fields[key]) > HOUR_NS
        except (KeyError, TypeError, ValueError):
            continue  # absent or malformed: the distribution's own model says so
        if too_long:
            where = "" if fields is not value else f"{key} "
            raise ValueError(f"{where}must be <= 1h (got {brief(fields[key])})")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


