"""Open-model arrival schedules: when each request is meant to start, as int64 ns from the
cell's t0. Pure: NumPy, no backends, no clock.

A schedule is a rate curve r(t) (constant, or piecewise linear over `stages`) turned into
arrival times through its cumulative count Λ(t) = ∫₀ᵗ r:

- `uniform`: the k-th arrival (k = 0, 1, …) is at Λ⁻¹(k): evenly spaced at 1/rate for a
  constant rate (the first at 0), exactly following the ramp otherwise;
- `poisson`: the k-th arrival is at Λ⁻¹(E₁ + … + E_k) with unit exponentials E (time-rescaling:
  a non-homogeneous Poisson process of intensity r(t); exponential gaps of mean 1/rate for a
  constant rate).

It ends after `requests` arrivals or at `duration` (or the last stage's end), whichever comes
first. Warm-up arrivals come first and on top: a count or a duration at the rate's pace (a
ramp's: its first stage's rate); the measured schedule starts where the warm-up ends and is
the same with or without it, shifted.

Random draws are a function of (the scenario's seed, the cell's ARRIVAL_KEYS) through SHA-256
and NumPy's PCG64 (uniform doubles, turned into exponentials by inversion here, not by NumPy's
exponential sampler, whose algorithm is not fixed across versions): every backend gets the
same arrivals. Generation is lazy, in chunks, so a long cell never holds its whole schedule.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from harness.core.keys import ARRIVAL_KEYS
from harness.core.stats import NS_PER_S

CHUNK = 4096  # arrivals generated at a time
Arrivals = Literal["uniform", "poisson"]


@dataclass(frozen=True)
class Ramp:
    """Ramp linearly from the previous stage's rate (or the start rate) to `rate_per_s`."""

    rate_per_s: float
    duration_ns: int


class RateCurve:
    """A piecewise-linear rate r(t) from t = 0, its cumulative count Λ(t) and Λ⁻¹. The last
    piece of a constant curve lasts forever."""

    def __init__(self, pieces: Sequence[tuple[float, float, float]]) -> None:
        # (rate at the piece's start, rate at its end, duration in s); durations may be inf.
        if not pieces:
            raise ValueError("a rate curve needs at least one piece")
        r0, r1, dur = (np.array(column, dtype=np.float64) for column in zip(*pieces, strict=True))
        if (r0 < 0).any() or (r1 < 0).any() or not (dur > 0).all():
            raise ValueError("rates must be >= 0 and durations > 0")
        counts = (r0 + r1) / 2 * dur  # arrivals expected in each piece
        self._r0, self._slope = r0, (r1 - r0) / dur  # per s²; 0 for an endless piece
        self._t0 = np.concatenate([[0.0], np.cumsum(dur)[:-1]])  # s
        self._c0 = np.concatenate([[0.0], np.cumsum(counts)[:-1]])
        self.peak_rate_per_s = float(max(r0.max(), r1.max()))
        self.end_s = float(np.sum(dur))
        self.total = float(np.sum(counts))  # arrivals expected over the whole curve
        # Λ⁻¹ looks only at pieces where arrivals happen: the inverse is right-continuous
        # (inf{t : Λ(t) > c}), so no arrival falls in a stretch at rate 0.
        live = counts > 0
        if not live.any():
            raise ValueError("a rate curve at rate 0 throughout has no arrivals")
        self._live = np.flatnonzero(live)

    @classmethod
    def constant(cls, rate_per_s: float) -> RateCurve:
        if not rate_per_s > 0:
            raise ValueError(f"a constant rate must be > 0 (got {rate_per_s})")
        return cls([(rate_per_s, rate_per_s, math.inf)])

    @classmethod
    def ramps(cls, stages: Sequence[Ramp], start_rate_per_s: float = 0.0) -> RateCurve:
        """Each stage ramps linearly from the previous stage's rate (the first from
        `start_rate_per_s`) to its own, like k6's ramping-arrival-rate."""
        pieces, previous = [], start_rate_per_s
        for stage in stages:
            pieces.append((previous, stage.rate_per_s, stage.duration_ns / NS_PER_S))
            previous = stage.rate_per_s
        return cls(pieces)

    @property
    def end_ns(self) -> float:
        return self.end_s * NS_PER_S

    def _piece(self, t_s: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self._t0, t_s, side="right") - 1, 0, len(self._t0) - 1)

    def rate_at(self, t_ns) -> np.ndarray:
        """r(t), per second; 0 after the end."""
        t = np.asarray(t_ns, dtype=np.float64) / NS_PER_S
        i = self._piece(t)
        rate = self._r0[i] + self._slope[i] * (t - self._t0[i])
        return np.where((t < 0) | (t >= self.end_s), 0.0, rate)

    def count(self, t_ns) -> np.ndarray:
        """Λ(t): arrivals expected in [0, t)."""
        t = np.clip(np.asarray(t_ns, dtype=np.float64) / NS_PER_S, 0.0, self.end_s)
        i = self._piece(t)
        u = t - self._t0[i]
        return self._c0[i] + self._r0[i] * u + self._slope[i] * u * u / 2

    def time_ns(self, counts) -> np.ndarray:
        """Λ⁻¹ (float ns), right-continuous: the time the count passes c, after any stretch at
        rate 0 that starts there; inf for counts at or past the curve's total."""
        c = np.asarray(counts, dtype=np.float64)
        live = self._live
        i = live[np.clip(np.searchsorted(self._c0[live], c, side="right") - 1, 0, len(live) - 1)]
        left = c - self._c0[i]
        r0, slope = self._r0[i], self._slope[i]
        # u solves slope/2·u² + r0·u = left; in this form it stays exact for slope → 0 and
        # for a ramp from 0 (where the textbook form divides 0 by 0).
        root = np.sqrt(np.maximum(r0 * r0 + 2 * slope * left, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(left > 0, 2 * left / (r0 + root), 0.0)
        t = (self._t0[i] + u) * NS_PER_S
        return np.where(c >= self.total, math.inf, t) if math.isfinite(self.total) else t



def arrival_seed(seed: int, key) -> int:
    """A stable 128-bit seed from the scenario's seed and the cell's ARRIVAL_KEYS (a CellKey or
    a mapping): SHA-256 of a canonical JSON text, never Python's salted hash()."""
    if not isinstance(key, Mapping):
        key = {name: getattr(key, name) for name in ARRIVAL_KEYS}
    text = json.dumps([int(seed), {name: key.get(name) for name in ARRIVAL_KEYS}],
                      sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def _rng(entropy: int, stream: int) -> np.random.Generator:
    """Independent streams for the warm-up (0) and the measured phase (1)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy,
                                                                      spawn_key=(stream,))))


def unit_exponentials(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws of Exp(1) by inversion of uniform doubles: -log(1 - U), U in [0, 1)."""
    return -np.log1p(-rng.random(n))


class Arrival(NamedTuple):
    at_ns: int  # intended start, ns from the cell's t0
    warmup: bool  # a warm-up request: run, but left out of the cell's figures


@dataclass(frozen=True)
class ArrivalArray:
    at_ns: np.ndarray  # int64
    warmup: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.at_ns)


def _phase(curve: RateCurve, arrivals: str, rng: np.random.Generator, offset_ns: int,
           max_count: int | None, until_ns: float) -> Iterator[np.ndarray]:
    """Arrival times (int64 ns, from offset_ns) of one phase: at most max_count, before
    offset + until (and before the curve's end)."""
    limit = min(until_ns, curve.end_ns)
    emitted, k, cumulative = 0, 0, 0.0
    while max_count is None or emitted < max_count:
        n = CHUNK if max_count is None else min(CHUNK, max_count - emitted)
        if arrivals == "uniform":
            counts = np.arange(k, k + n, dtype=np.float64)
            k += n
        else:
            counts = cumulative + np.cumsum(unit_exponentials(rng, n))
            cumulative = float(counts[-1])
        t = np.rint(curve.time_ns(counts))
        inside = t < limit
        if not inside.all():
            t = t[: int(np.argmin(inside))]
        if len(t):
            yield offset_ns + t.astype(np.int64)
            emitted += len(t)
        if not inside.all():
            return


class Schedule:
    """Intended start times of one cell: warm-up arrivals, then the measured ones. Iterate
    (lazily, `Arrival`s), pull `chunks()` (int64 arrays), or `take(n)` the first n."""

    def __init__(self, curve: RateCurve, arrivals: Arrivals = "uniform", *, entropy: int = 0,
                 requests: int | None = None, duration_ns: int | None = None,
                 warmup_requests: int = 0, warmup_ns: int = 0,
                 warmup_rate_per_s: float | None = None) -> None:
        if arrivals not in ("uniform", "poisson"):
            raise ValueError(f"arrivals must be uniform or poisson (got {arrivals!r})")
        if warmup_requests and warmup_ns:
            raise ValueError("a warm-up is a request count or a duration, not both")
        self.curve, self.arrivals, self.entropy = curve, arrivals, entropy
        self.requests, self.duration_ns = requests, duration_ns
        self.warmup_requests, self.warmup_ns = warmup_requests, warmup_ns
        if warmup_rate_per_s is None:
            warmup_rate_per_s = float(curve.rate_at(0)) or curve.peak_rate_per_s
        self.warmup_rate_per_s = warmup_rate_per_s
        self.bounded = (requests is not None or duration_ns is not None
                        or math.isfinite(curve.end_ns))

    def chunks(self) -> Iterator[tuple[np.ndarray, bool]]:
        """(int64 intended start times, is warm-up), in order."""
        start = 0
        if self.warmup_requests or self.warmup_ns:
            warm = RateCurve.constant(self.warmup_rate_per_s)
            last = 0
            for times in _phase(warm, self.arrivals, _rng(self.entropy, 0), 0,
                                self.warmup_requests or None,
                                self.warmup_ns if self.warmup_ns else math.inf):
                last = int(times[-1])
                yield times, True
            if self.warmup_ns:
                start = self.warmup_ns
            elif self.arrivals == "uniform":  # the next slot of the even spacing
                start = round(float(warm.time_ns(self.warmup_requests)))
            else:  # the measured process starts at the last warm-up arrival (memoryless)
                start = last
        until = math.inf if self.duration_ns is None else self.duration_ns
        for times in _phase(self.curve, self.arrivals, _rng(self.entropy, 1), start,
                            self.requests, until):
            yield times, False

    def __iter__(self) -> Iterator[Arrival]:
        for times, warmup in self.chunks():
            for at_ns in times.tolist():
                yield Arrival(at_ns, warmup)

    def take(self, n: int | None = None) -> ArrivalArray:
        """The first n arrivals (all of them when n is None: the schedule must be bounded)."""
        if n is None and not self.bounded:
            raise ValueError("an unbounded schedule (no requests, duration or stages): give n")
        parts, flags, got = [], [], 0
        for times, warmup in self.chunks():
            if n is not None:
                times = times[: n - got]
            parts.append(times)
            flags.append(np.full(len(times), warmup))
            got += len(times)
            if n is not None and got >= n:
                break
        if not parts:
            return ArrivalArray(np.empty(0, np.int64), np.empty(0, bool))
        return ArrivalArray(np.concatenate(parts), np.concatenate(flags))


def schedule_for(load, seed: int, key) -> Schedule:
    """The schedule of one open cell: `load` is its block of the scenario (a Load with `rate`
    or `stages`), `key` its CellKey (`rate_per_s` is the cell's rate for a constant rate)."""
    if load.stages:
        curve = RateCurve.ramps([Ramp(s.rate, s.duration) for s in load.stages], load.start_rate)
        warm_rate = next(s.rate for s in load.stages if s.rate > 0) if any(
            s.rate > 0 for s in load.stages) else load.start_rate
        duration = None
    else:
        if key.rate_per_s is None:
            raise ValueError("a closed cell has no arrival schedule")
        curve = RateCurve.constant(key.rate_per_s)
        warm_rate, duration = key.rate_per_s, load.duration
    return Schedule(curve, load.arrivals, entropy=arrival_seed(seed, key),
                    requests=load.requests, duration_ns=duration,
                    warmup_requests=load.warmup.requests, warmup_ns=load.warmup.duration,
                    warmup_rate_per_s=warm_rate)
