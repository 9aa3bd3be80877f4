"""Human-readable durations, sizes and rates as scenarios write them (`30s`, `1m30s`, `4KiB`,
`200/s`)."""

from __future__ import annotations

import math
import re

from harness.core.errors import brief

_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024,
               "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_RATE_UNITS_S = {"s": 1, "m": 60, "h": 3600}
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*(s|m|h)")
_RATE_HINT = "must be a rate like 200/s, 12/m or 5/h"


def parse_duration_ns(value: object) -> int:
    """`"1m30s"` → 90e9; a bare number means seconds. Raises ValueError with a short reason."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {brief(value)})")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite duration (got {brief(value)})")
        if value < 0:
            raise ValueError(f"must not be negative (got {brief(value)})")
        return round(value * 1_000_000_000)
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {brief(value)})")
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    # Part by part from where the last one ended (not finditer, which rescans the rest of the
    # text from every position: quadratic on a long run of digits).
    while match := _DURATION_PART.match(text, pos):
        total += float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {brief(value)})")
    if not math.isfinite(total):
        raise ValueError(f"must be a finite duration (got {brief(value)})")
    return round(total)


def parse_size_bytes(value: object) -> int:
    """`"4KiB"` → 4096; a bare number means bytes."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size like 512, 4KiB or 1MB (got {brief(value)})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative (got {brief(value)})")
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match and match.group(2) in _SIZE_UNITS:
            size = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
            if math.isfinite(size):
                return round(size)
    raise ValueError(f"must be a size like 512, 4KiB or 1MB (got {brief(value)})")


def parse_rate_per_s(value: object) -> float:
    """`"200/s"` → 200.0, `"12/m"` → 0.2, `"5/h"` → 1/720; a bare number means per second.
    Zero is a rate (a stage may ramp down to it); the callers bound it. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{_RATE_HINT} (got {brief(value)})")
    if isinstance(value, (int, float)):
        rate = float(value)
    elif isinstance(value, str) and (match := _RATE.fullmatch(value.strip())):
        rate = float(match.group(1)) / _RATE_UNITS_S[match.group(2)]
    else:
        raise ValueError(f"{_RATE_HINT} (got {brief(value)})")
    if not math.isfinite(rate):
        raise ValueError(f"must be a finite rate (got {brief(value)})")
    if rate < 0:
        raise ValueError(f"must not be negative (got {brief(value)})")
    return rate


def format_rate(per_s: float) -> str:
    """Short display form in the largest unit that keeps it at least 1: 200/s, 12/m, 5/h."""
    for unit, seconds in (("s", 1), ("m", 60), ("h", 3600)):
        if per_s * seconds >= 1 or unit == "h":
            return f"{per_s * seconds:.6g}/{unit}"
    raise AssertionError("unreachable")


def format_duration_ns(ns: int | float) -> str:
    """Short display form: 950µs, 12.3ms, 15.02s."""
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"


def grouped(n: int) -> str:
    """10000 → `10 000`: digits in threes, a space between (counts shown while a run goes)."""
    return f"{n:,}".replace(",", " ")
