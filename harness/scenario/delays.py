"""Server-side latency distributions. A delay is a pure function of (seed, seq), so every
backend faces the identical sequence of delays whatever order its requests arrive in."""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from harness.core.units import format_duration_ns, parse_duration_ns

DurationNs = Annotated[int, BeforeValidator(parse_duration_ns), WithJsonSchema({
    "anyOf": [{"type": "string", "pattern": r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$"},
              {"type": "number", "minimum": 0}],
    "description": "a duration: 250ms, 30s, 1m30s; a bare number means seconds",
    "x-harness-unit": "duration",
})]


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def rng(self, seed: int, seq: int) -> random.Random:
        # An int seed is hashed deterministically (no PYTHONHASHSEED dependence).
        return random.Random((seed << 40) ^ seq)

    def sample_ns(self, seed: int, seq: int) -> int:
        raise NotImplementedError

    @property
    def mean_ns(self) -> float:
        raise NotImplementedError


class Fixed(_Dist):
    dist: Literal["fixed"] = "fixed"
    value: DurationNs

    def sample_ns(self, seed: int, seq: int) -> int:
        return self.value

    @property
    def mean_ns(self) -> float:
        return float(self.value)


class Uniform(_Dist):
    dist: Literal["uniform"]
    min: DurationNs
    max: DurationNs

    @model_validator(mode="after")
    def _ordered(self):
        if self.max < self.min:
            lo, hi = format_duration_ns(self.min), format_duration_ns(self.max)
            raise ValueError(f"max must be >= min (got min={lo}, max={hi})")
        return self

    def sample_ns(self, seed: int, seq: int) -> int:
        return round(self.rng(seed, seq).uniform(self.min, self.max))

    @property
    def mean_ns(self) -> float:
        return (self.min + self.max) / 2


class Exponential(_Dist):
    dist: Literal["exponential"]
    mean: DurationNs = Field(gt=0)
    max: DurationNs | None = None  # optional cap, so a rare huge draw cannot stall a small test

    def sample_ns(self, seed: int, seq: int) -> int:
        value = round(self.rng(seed, seq).expovariate(1.0 / self.mean))
        return min(value, self.max) if self.max is not None else value

    @property
    def mean_ns(self) -> float:
        return float(self.mean)


class Lognormal(_Dist):
    dist: Literal["lognormal"]
    median: DurationNs = Field(gt=0)
    sigma: float = Field(gt=0, le=5)
    max: DurationNs | None = None

    def sample_ns(self, seed: int, seq: int) -> int:
        value = round(self.rng(seed, seq).lognormvariate(math.log(self.median), self.sigma))
        return min(value, self.max) if self.max is not None else value

    @property
    def mean_ns(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)


def _shorthand(value: object) -> object:
    """`latency: 20ms` is short for `{dist: fixed, value: 20ms}`."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"dist": "fixed", "value": value}
    return value


Latency = Annotated[
    Fixed | Uniform | Exponential | Lognormal,
    Field(discriminator="dist"),
    BeforeValidator(_shorthand),
]
