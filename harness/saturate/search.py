"""The knee search behind `harness saturate SCENARIO --slo "p99 < 50ms"`: per backend (and
client), the highest open-model arrival rate at which the SLO holds, the error rate stays at
most `max_error_rate` and the load generator keeps its schedule.

Pure: a probe — one open cell at a given rate, run however the caller likes — is injected as
`probe(backend, client, rate_per_s) -> ProbeResult`. The search doubles the rate from
`start_rate` until a probe fails, bisects between the last pass and the first fail until they
are within `precision` (relative), then repeats the probes at both ends `repeats` times: the
range is from the highest rate that passed every time to the lowest rate above it that failed
every time, so a noisy knee shows as a wide range instead of a lucky number.

A failed probe of the start, the doubling or the bisection is tried again (`confirm` times,
phase "confirm") and counts as a failure only when every try failed. On a machine shared with
other work a probe can fail for the machine's sake — a stall of the process delays its
starts, which no backend can help — while nothing makes one pass by luck: interference only
adds lag. Without the confirmation one such stall during the doubling caps the search far
below the knee for good (the bisection never looks above a failed rate)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import yaml

from harness.core.errors import brief
from harness.core.keys import BACKEND_NAMES
from harness.core.stats import median
from harness.core.units import format_rate, parse_duration_ns
from harness.scenario.thresholds import Threshold, parse_threshold

MAX_PROBES = 200  # per backend and client: a bound whatever the options


@dataclass(frozen=True)
class ProbeResult:
    """What one probe cell measured. `metrics`: any other threshold metric by name (e.g. the
    cell's summary row), for SLOs on other figures than the p99."""

    p99_ms: float
    error_rate: float
    lagging: bool  # the generator's scheduling lag p99 exceeded load.max_sched_lag
    achieved_rps: float = math.nan
    metrics: Mapping[str, float] = field(default_factory=dict)
    problem: str | None = None  # the probe's cell failed (its process or the server died)

    def value(self, metric: str) -> float:
        if metric in self.metrics:
            return self.metrics[metric]
        return getattr(self, metric, math.nan) if metric in (
            "p99_ms", "error_rate", "achieved_rps") else math.nan


Probe = Callable[[str, "str | None", float], ProbeResult]

# ---- --slo -----------------------------------------------------------------------------------

_SHORT = re.compile(r"\s*(?:(?P<backend>[a-z0-9_]+)\s*:\s*)?(?P<q>p50|p90|p99|p999|max)\s*"
                    r"(?P<op><=|>=|<|>)\s*(?P<value>\S+)\s*")
_SLO_OPS = ("<", "<=", ">", ">=")


def parse_slo(text: str, backends: Sequence[str] = BACKEND_NAMES) -> Threshold:
    """`p99 < 50ms` (a latency quantile and a duration: p50, p90, p99, p999, max) or the
    `expect:` grammar (`p99_ms < 50`, `asyncio: error_rate <= 0.001`). ValueError, one line."""
    if not isinstance(text, str):
        raise ValueError(f"must be text like 'p99 < 50ms' (got {brief(text)})")
    if match := _SHORT.fullmatch(text):
        value = match["value"]
        if re.fullmatch(r"-?\d+(\.\d*)?", value):
            raise ValueError(f"needs a unit, like 'p99 < 50ms' (got {brief(text)})")
        try:
            ms = parse_duration_ns(value) / 1e6
        except ValueError as exc:
            raise ValueError(f"{exc} in {brief(text)}") from None
        backend = match["backend"]
        if backend is not None and backend not in backends:
            raise ValueError(f"backend {brief(backend)} in {brief(text)} is not one of "
                             f"({', '.join(backends)})")
        return Threshold(text.strip(), backend, f"{match['q']}_ms", match["op"], ms)
    try:
        slo = parse_threshold(text, tuple(backends))
    except ValueError as exc:
        if "must look like" in str(exc):
            raise ValueError(f"must look like 'p99 < 50ms' or 'p99_ms < 50' (got {brief(text)})"
                             ) from None
        raise
    if slo.op not in _SLO_OPS:
        raise ValueError(f"an SLO is a bound: <, <=, > or >= (got {brief(text)})")
    return slo


# ---- the search ------------------------------------------------------------------------------


DEFAULT_PROBE_NS = 3_000_000_000  # each probe's measured length


@dataclass(frozen=True)
class SearchOptions:
    """The search's settings, and the one home of their defaults (the CLI shows these)."""

    start_rate_per_s: float = 10.0  # when the scenario has no open block to start from
    max_error_rate: float = 0.01
    precision: float = 0.05  # stop bisecting when (fail − pass) ÷ pass is at most this
    repeats: int = 3  # extra probes at each end of the final step
    confirm: int = 1  # extra tries of a failed probe before it counts as a failure
    max_rate_per_s: float = 1_000_000.0  # the doubling stops here (a "ceiling" result)

    def __post_init__(self) -> None:
        checks = [
            (self.start_rate_per_s > 0, "--start-rate", "must be > 0"),
            (0 <= self.max_error_rate <= 1, "--max-error-rate", "must be between 0 and 1"),
            (0 < self.precision < 1, "--precision", "must be between 0 and 1 (e.g. 0.05)"),
            (isinstance(self.repeats, int) and 0 <= self.repeats <= 100, "--final-probes",
             "must be an integer from 0 to 100"),
            (isinstance(self.confirm, int) and 0 <= self.confirm <= 10, "--confirm",
             "must be an integer from 0 to 10"),
            (self.max_rate_per_s >= self.start_rate_per_s, "--max-rate",
             "must be at least the start rate"),
        ]
        for ok, option, problem in checks:
            if not ok:
                value = getattr(self, {"--start-rate": "start_rate_per_s",
                                       "--max-error-rate": "max_error_rate",
                                       "--precision": "precision", "--final-probes": "repeats",
                                       "--confirm": "confirm",
                                       "--max-rate": "max_rate_per_s"}[option])
                raise ValueError(f"{option}: {problem} (got {brief(value)})")


Phase = Literal["start", "double", "bisect", "confirm", "repeat"]
Status = Literal["found", "ceiling", "fails_at_start"]


@dataclass(frozen=True)
class ProbeStep:
    backend: str
    client: str | None
    phase: Phase
    rate_per_s: float
    result: ProbeResult
    failed: str | None  # why the probe failed; None when it passed
    python: str | None = None  # the interpreter's `python` key, when the search names several

    @property
    def passed(self) -> bool:
        return self.failed is None


@dataclass(frozen=True)
class KneeResult:
    backend: str
    client: str | None
    status: Status  # found; ceiling (passed up to max_rate); fails_at_start
    max_rate_per_s: float | None  # the highest rate that passed (None: not even the start)
    p99_ms: float  # median p99 of the probes at max_rate_per_s
    range_per_s: tuple[float | None, float | None]  # (always passed, always failed above it)
    reason: str | None  # fails_at_start: why the start rate failed
    steps: tuple[ProbeStep, ...]
    python: str | None = None  # the interpreter's `python` key, when the search names several


def failure(result: ProbeResult, slos: Iterable[Threshold], backend: str,
            max_error_rate: float) -> str | None:
    """Why a probe fails (None: it passes): its cell failed, the generator lagged, too many
    errors, or an SLO."""
    if result.problem:
        return f"the probe's cell failed: {result.problem}"
    if result.lagging:
        return "the generator lagged (scheduling lag p99 over load.max_sched_lag)"
    if not result.error_rate <= max_error_rate:  # NaN fails
        return f"error rate {result.error_rate:.2%} > {max_error_rate:.2%}"
    for slo in slos:
        if slo.applies_to(backend):
            actual = result.value(slo.metric)
            if not slo.passes(actual):
                return f"{slo.text} failed ({slo.metric} = {actual:.4g})"
    return None


def search_knee(probe: Probe, backend: str, client: str | None, slos: Sequence[Threshold],
                options: SearchOptions = SearchOptions(),
                progress: Callable[[ProbeStep], None] | None = None) -> KneeResult:
    steps: list[ProbeStep] = []

    def run(rate: float, phase: Phase) -> bool:
        if len(steps) >= MAX_PROBES:
            raise RuntimeError(f"knee search on {backend}: more than {MAX_PROBES} probes")
        result = probe(backend, client, rate)
        step = ProbeStep(backend, client, phase, rate, result,
                         failure(result, slos, backend, options.max_error_rate))
        steps.append(step)
        if progress is not None:
            progress(step)
        return step.passed

    def confirmed(rate: float, phase: Phase) -> bool:
        """Passed, or failed `1 + confirm` times in a row."""
        if run(rate, phase):
            return True
        return any(run(rate, "confirm") for _ in range(options.confirm))

    lo = options.start_rate_per_s
    if not confirmed(lo, "start"):
        return KneeResult(backend, client, "fails_at_start", None, math.nan, (None, None),
                          steps[0].failed, tuple(steps))
    hi = None
    while hi is None and lo < options.max_rate_per_s:
        rate = min(lo * 2, options.max_rate_per_s)
        if confirmed(rate, "double"):
            lo = rate
        else:
            hi = rate
    if hi is not None:
        while (hi - lo) / lo > options.precision:
            mid = (lo + hi) / 2
            if confirmed(mid, "bisect"):
                lo = mid
            else:
                hi = mid
    for _ in range(options.repeats):
        run(lo, "repeat")
        if hi is not None:
            run(hi, "repeat")
    return _result(backend, client, lo, "found" if hi is not None else "ceiling", steps)


def _result(backend: str, client: str | None, answer: float, status: Status,
            steps: list[ProbeStep]) -> KneeResult:
    verdicts: dict[float, list[bool]] = {}
    for step in steps:
        verdicts.setdefault(step.rate_per_s, []).append(step.passed)
    always = [rate for rate, passed in verdicts.items() if all(passed) and rate <= answer]
    low = max(always) if always else None
    never = [rate for rate, passed in verdicts.items()
             if not any(passed) and (low is None or rate > low)]
    high = min(never) if never else None
    if sum(verdicts[answer]) * 2 < len(verdicts[answer]) and low is not None:
        answer = low  # the bisection's answer failed most of its repeats
    p99 = [s.result.p99_ms for s in steps if s.rate_per_s == answer and s.passed]
    return KneeResult(backend, client, status, answer,
                      median(p99) if p99 else math.nan, (low, high), None,
                      tuple(steps))


def saturate(probe: Probe, backends: Sequence[str], slos: Sequence[Threshold],
             clients: Sequence[str | None] = (None,), options: SearchOptions = SearchOptions(),
             progress: Callable[[ProbeStep], None] | None = None) -> list[KneeResult]:
    """The knee of every backend × client, in that order (what the CLI calls)."""
    return [search_knee(probe, backend, client, slos, options, progress)
            for backend in backends for client in clients]


def exit_code(results: Sequence[KneeResult]) -> int:
    """0 when a rate was found for every backend (and client), 1 when one fails even at the
    start rate."""
    return 1 if any(r.status == "fails_at_start" for r in results) else 0


# ---- output ----------------------------------------------------------------------------------


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def result_rows(results: Sequence[KneeResult]) -> list[dict]:
    """One row per backend and client: backend, client, max_rate_per_s, p99_ms, and the range
    and status behind them (null where there is no number)."""
    return [{"backend": r.backend, "client": r.client,
             "max_rate_per_s": _number(r.max_rate_per_s), "p99_ms": _number(r.p99_ms),
             "range_per_s": [_number(r.range_per_s[0]), _number(r.range_per_s[1])],
             "status": r.status, "reason": r.reason, "python": r.python} for r in results]


def results_json(results: Sequence[KneeResult]) -> dict:
    """`{"results": [{"backend", "client", "max_rate_per_s", "p99_ms", …}, …]}`; JSON-safe."""
    return {"results": result_rows(results)}


def describe(result: KneeResult) -> str:
    """One line for the table or the log, e.g. `asyncio: 725/s (p99 48.1ms), 700/s–750/s`."""
    who = ((f"{result.python} " if result.python else "") + result.backend
           + (f"/{result.client}" if result.client else ""))
    if result.status == "fails_at_start":
        return f"{who}: fails at the start rate: {result.reason}"
    low, high = result.range_per_s
    span = (f"{format_rate(low) if low else '?'}–{format_rate(high) if high else '?'}")
    ceiling = " (the ceiling: no failure up to it)" if result.status == "ceiling" else ""
    return (f"{who}: {format_rate(result.max_rate_per_s)} (p99 {result.p99_ms:.1f}ms), "
            f"{span}{ceiling}")


# ---- the probe cell's scenario ---------------------------------------------------------------

_RATE_KEYS = ("model", "rate", "stages", "start_rate", "requests", "duration", "concurrency")


def probe_scenario_text(text: str, rate_per_s: float, duration_ns: int,
                        client: str | None = None) -> str:
    """The scenario text of one probe: the scenario with its load replaced by one open block at
    `rate_per_s` for `duration_ns` and `repeat: 1`. The block keeps the scenario's first open
    block's arrivals, max_in_flight, warm-up, max_sched_lag and workers (the first block's
    workers and warm-up when every block is closed). One cell per backend: `client` (when
    given) is the workload's only client, and only the first of several strategies or race
    variants is kept. Validate it with parse_scenario."""
    data = yaml.safe_load(text)
    workload = data.get("workload")
    if isinstance(workload, dict):
        if client is not None:
            workload["client"] = client
        if workload.get("type") == "race":
            variants = workload.get("variants", ["no-lock", "lock"])
            workload["variants"] = variants[:1] if isinstance(variants, list) else variants
    if isinstance(data.get("strategies"), list):
        data["strategies"] = data["strategies"][:1]
    blocks = data["load"] if isinstance(data["load"], list) else [data["load"]]
    open_blocks = [b for b in blocks if "rate" in b or "stages" in b]
    base = open_blocks[0] if open_blocks else {
        k: v for k, v in blocks[0].items() if k in ("workers", "warmup")}
    block = {k: v for k, v in base.items() if k not in _RATE_KEYS}
    block.update(rate=float(rate_per_s), duration=f"{int(duration_ns)}ns")  # a bare rate: per s
    data["load"] = block
    data["repeat"] = 1
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
