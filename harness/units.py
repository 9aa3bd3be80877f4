"""Human-readable durations and sizes as scenarios write them (`30s`, `1m30s`, `4KiB`)."""

from __future__ import annotations

import re

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
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "kib": 1024, "mib": 1024**2}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration_ns(value: object) -> int:
    """`"1m30s"` → 90e9; a bare number means seconds. Raises ValueError with a short reason."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {value!r})")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must not be negative (got {value!r})")
        return round(value * 1_000_000_000)
    if not isinstance(value, str):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {value!r})")
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS_NS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"must be a duration like 250ms, 30s or 1m30s (got {value!r})")
    return round(total)


def parse_size_bytes(value: object) -> int:
    """`"4KiB"` → 4096; a bare number means bytes."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size like 512, 4KiB or 1MB (got {value!r})")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative (got {value!r})")
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match and match.group(2) in _SIZE_UNITS:
            return round(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"must be a size like 512, 4KiB or 1MB (got {value!r})")


def format_duration_ns(ns: int | float) -> str:
    """Short display form: 950µs, 12.3ms, 15.02s."""
    if ns < 1_000_000:
        return f"{ns / 1000:.0f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    return f"{ns / 1e9:.2f}s"
