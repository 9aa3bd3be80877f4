"""The root scenario model, its cross-field checks, and the planner of its cell matrix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from itertools import product
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from harness.core.errors import brief
from harness.core.keys import ASYNC_BACKENDS, BACKEND_NAMES, BACKENDS, CellKey
from harness.core.units import format_rate
from harness.scenario.interpreters import as_spec_text, parse_specs
from harness.scenario.limits import (
    INT64,
    MAX_BACKENDS,
    MAX_DESCRIPTION,
    MAX_ITEMS,
    MAX_REPEAT,
    MAX_THRESHOLD,
    MAX_WORKERS,
    Name,
    StrictModel,
    as_tuple,
)
from harness.scenario.load import Load, Loads
from harness.scenario.secrets import kept_text
from harness.scenario.server import STRATEGIES, Server, unserved_feature
from harness.scenario.service import Service
from harness.scenario.target import split_target
from harness.scenario.thresholds import (
    OPEN_METRICS,
    SERVER_LAG_METRICS,
    check_matrix,
    parse_threshold,
)
from harness.scenario.workload import SINGLE_KEYS, Workload

MIX_PATH = "mix"  # the `path` key of a cell that sends workload.requests: not one path


class Scenario(StrictModel):
    name: Name
    description: str = Field("", max_length=MAX_DESCRIPTION)
    server: Server | None = None  # required by workloads that call an endpoint
    target: str | None = Field(None, max_length=2048)  # or the user's own service (io only)
    service: Service | None = None  # or a service the harness starts (io only)
    workload: Workload
    load: Loads
    backends: Annotated[tuple[str, ...], BeforeValidator(as_tuple),
                        Field(max_length=MAX_BACKENDS)] = BACKEND_NAMES
    # Where the async backends run CPU steps; threads and processes always run them in the slot.
    strategies: Annotated[tuple[Literal[STRATEGIES], ...],  # type: ignore[valid-type]
                          BeforeValidator(as_tuple)] = ("inline",)
    pool_size: int | None = Field(None, ge=1, le=MAX_WORKERS)  # default: the core count
    # Python interpreters the cells run under, an axis (harness.scenario.interpreters); none
    # named: the running interpreter.
    interpreters: Annotated[tuple[Annotated[str, BeforeValidator(as_spec_text),
                                      Field(max_length=4096)], ...],
                            BeforeValidator(as_tuple)] = ()
    repeat: int = Field(1, ge=1, le=MAX_REPEAT)
    expect: Annotated[tuple[Annotated[str, Field(max_length=MAX_THRESHOLD)], ...],
                      BeforeValidator(as_tuple), Field(max_length=MAX_ITEMS)] = ()  # thresholds
    # Arrival times of open cells are drawn from it; default: server.seed, else 1.
    seed: int | None = Field(None, ge=-INT64, lt=INT64)

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

    @field_validator("interpreters")
    @classmethod
    def _known_interpreters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_specs(value)
        return value

    def _tls_consistent(self) -> None:
        served = self.server is not None and self.server.tls
        if served and self.service is not None:
            raise ValueError("server.tls: not with service: (the service calls the mock server "
                             "over http://)")
        https = served or (self.target or "").startswith("https://")
        if getattr(self.workload, "tls", None) is not None and not https:
            raise ValueError("workload.tls: applies to https only: set server.tls: true or "
                             "give an https:// target")

    @model_validator(mode="after")
    def _consistent(self):
        endpoint = getattr(self.workload, "endpoint", None)
        mix = self._mixed()
        if self.service is not None:
            self._serviced(endpoint)
        elif self.target is not None:
            try:
                split_target(self.target)
            except ValueError as exc:
                raise ValueError(f"target: {exc}") from None
            if self.server is not None:
                raise ValueError("target: give either server: (the mock) or target:, not both")
            if self.workload.type not in ("io", "http"):
                raise ValueError(f"target: the {self.workload.type} workload needs the mock "
                                 "server (server:)")
            if endpoint is not None:
                raise ValueError("workload.endpoint: with target:, give workload.path instead")
        elif getattr(self.workload, "path", None) is not None:
            raise ValueError("service: required by workload.path, or target: (the mock "
                             "server's are endpoints)")
        elif mix and self.server is None:
            raise ValueError("server: required by workload.requests (or target: or service:)")
        elif self.workload.type in ("io", "http") and endpoint is None and not mix:
            raise ValueError("workload.endpoint: required (or target: or service: with "
                             "workload.path)")
        if self.server is not None and (problem := unserved_feature(self.server)):
            raise ValueError(problem)
        self._tls_consistent()
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
        self._one_process()
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: repeated (got {brief(list(self.strategies))})")
        self._distinct_cells()
        has_open = any(block.model == "open" for block in self.loads)
        for i, text in enumerate(self.expect):
            try:
                threshold = parse_threshold(text, self.backends)
                check_matrix(threshold, self.backends, self.workload.type)
                metric = threshold.metric
                if metric in SERVER_LAG_METRICS and (
                        self.server is None or self.server.engine != "aiohttp"):
                    raise ValueError(f"{threshold.text} applies to no cell of this scenario: "
                                     f"{metric} needs the aiohttp mock server (not "
                                     f"{'target:' if self.server is None else 'engine: fast'})")
            except ValueError as exc:
                raise ValueError(f"expect[{i}]: {exc}") from None
            if metric in OPEN_METRICS and not has_open:
                raise ValueError(f"expect[{i}]: {metric} is an open-model figure and no load "
                                 "block has rate or stages")
        return self

    def _mixed(self) -> bool:
        """`workload.requests`: instead of the single request's keys, names unique, and against
        the mock server each entry's path is `/name` of one of its endpoints."""
        entries = getattr(self.workload, "mix", ())
        if not entries:
            return False
        for key in (*SINGLE_KEYS, "endpoint"):
            if key in self.workload.model_fields_set:
                raise ValueError(f"workload.{key}: not with workload.requests (each entry has "
                                 f"its own {'path' if key == 'endpoint' else key})")
        names = [entry.label for entry in entries]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"workload.requests[{i}].name: {brief(name)} names entry "
                                 f"{names.index(name)} too (names must be unique)")
        if self.server is not None and self.target is None and self.service is None:
            for i, entry in enumerate(entries):
                route = entry.path.partition("?")[0]
                if route[1:] not in self.server.endpoints:
                    known = ", ".join(f"/{name}" for name in self.server.endpoints)
                    raise ValueError(f"workload.requests[{i}].path: no endpoint "
                                     f"{brief(route)} on the mock server (known: {known})")
        return True

    def _serviced(self, endpoint: str | None) -> None:
        """The workload loads the started service; the mock server, if any, is its backend."""
        if self.target is not None:
            raise ValueError("target: give either service: (started by the harness) or "
                             "target:, not both")
        if self.workload.type not in ("io", "http"):
            raise ValueError(f"service: the {self.workload.type} workload does not call a "
                             "service (io or http only)")
        if endpoint is not None:
            raise ValueError("workload.endpoint: with service:, give workload.path instead")
        if self.workload.path is None and not self.workload.mix:
            raise ValueError("workload.path: required with service: (the path to load, or "
                             "workload.requests)")
        if self.server is None and self.service.uses("mock_url"):
            raise ValueError("server: required by the service's {mock_url} (the mock server "
                             "it calls)")

    def _one_process(self) -> None:
        """What cannot be split across generator processes."""
        split = max(g for block in self.loads for g in block.generators)
        if split > 1 and "processes" in self.backends:
            raise ValueError(f"load.generators: {split} on processes: its slot processes are "
                             "already spread over the cores (one generator there)")
        if split > 1 and self.workload.type == "race":
            raise ValueError(f"load.generators: {split} with the race workload: its counter "
                             "lives in one process (one generator)")

    def _distinct_cells(self) -> None:
        """Two load blocks must not plan the same cell: a cell's keys tell its block."""
        seen: dict[tuple, int] = {}
        for i, block in enumerate(self.loads):
            for backend in self.backends:
                for model, concurrency, rate in block.cell_levels(backend):
                    j = seen.setdefault((backend, model, concurrency, rate), i)
                    if j != i:
                        what = (f"concurrency {concurrency}" if model == "closed" else
                                f"rate {format_rate(rate)} with max_in_flight {concurrency}")
                        raise ValueError(f"load[{i}]: plans the same cells as load[{j}] ({what} "
                                         f"on {backend}): blocks must differ in concurrency, "
                                         "rate or max_in_flight")

    @property
    def loads(self) -> tuple[Load, ...]:
        """The load blocks, one or more."""
        return self.load if isinstance(self.load, tuple) else (self.load,)

    @property
    def arrival_seed(self) -> int:
        """The seed of open cells' arrival times (with each cell's keys)."""
        if self.seed is not None:
            return self.seed
        return self.server.seed if self.server is not None else 1

    def load_for(self, key: CellKey) -> Load:
        """The load block a planned cell comes from."""
        blocks = [b for b in self.loads if b.model == key.model and (
            key.concurrency in b.concurrency if b.model == "closed"
            else key.rate_per_s in b.rates_per_s()) and key.generators in b.generators]
        if len(blocks) > 1:  # open blocks at one rate differ in max_in_flight
            blocks = [b for b in blocks if b.max_in_flight_for(key.backend) == key.concurrency]
        if len(blocks) != 1:
            raise KeyError(f"no load block of {self.name} plans the cell {key}")
        return blocks[0]

    @property
    def mix_seed(self) -> int:
        """The seed request `seq`'s entry of `workload.requests` is drawn from: the mock
        server's (its delays' too), else `seed:`, else 1."""
        if self.server is not None:
            return self.server.seed
        return self.seed if self.seed is not None else 1

    def mix_manifest(self) -> dict | None:
        """What the writer needs to name each row's entry from its seq (core.mix.pick_many):
        kept in the cell's manifest, so a killed run's spool is read back with it too."""
        entries = getattr(self.workload, "mix", ())
        if not entries:
            return None
        return {"names": [e.label for e in entries], "weights": [e.weight for e in entries],
                "seed": self.mix_seed}

    def thresholds(self) -> list:
        return [parse_threshold(text, self.backends) for text in self.expect]

    def variants(self) -> tuple[str, ...]:
        return getattr(self.workload, "variants", ("default",))

    def peak_in_flight(self) -> int:
        """The most requests any cell of the scenario may have in flight: what the mock
        server's listen backlog and open-file limit are sized to."""
        return max(concurrency for block in self.loads for backend in self.backends
                   for _, concurrency, _ in block.cell_levels(backend))

    def paths(self) -> tuple[str | None, ...]:
        """The HTTP paths requested, an axis when `workload.path` lists several; `/name` of a
        mock endpoint; None without HTTP."""
        workload = self.workload
        if getattr(workload, "mix", ()):
            return (MIX_PATH,)
        if getattr(workload, "path", None) is not None:
            return workload.path
        if getattr(workload, "endpoint", None) is not None:
            return (f"/{workload.endpoint}",)
        return ("/",) if self.target is not None else (None,)

    def clients(self) -> tuple[str, ...]:
        """An axis for workloads that make HTTP calls; `standard` otherwise."""
        return getattr(self.workload, "client", ("standard",))

    def strategies_for(self, backend: str) -> tuple[str, ...]:
        """Strategies are an axis only where they mean something: CPU steps on a loop."""
        if backend in ASYNC_BACKENDS and self.workload.has_cpu_step:
            return self.strategies
        return ("inline",)


def json_schema() -> dict:
    """The scenario format as JSON Schema; duration defaults are shown as they are written."""
    from harness.core.units import format_duration_ns

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
    """A validated scenario with the exact text it came from (the cell and the mock server
    re-read it) and the secrets read from the environment for it (loader.scenario_from_text)."""

    path: str
    text: str
    scenario: Scenario
    secrets: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()  # --set KEY.PATH=VALUE, as given (`text` has them applied)

    @cached_property
    def kept_text(self) -> str:
        """The text as the results keep it: every secret replaced by ***."""
        return kept_text(self.text, self.secrets)

    @property
    def sha256(self) -> str:
        """Of the kept text: a hash of the original would let a guessed password be checked."""
        return hashlib.sha256(self.kept_text.encode()).hexdigest()


def plan_cells(scenario: Scenario, backends=None, repeat=None, cores=None,
               pythons: tuple[str | None, ...] = (None,)) -> list[CellKey]:
    """Cells interleaved (rep 0: A1 B1 A2 B2, rep 1: ...) so that drift of a shared machine
    spreads evenly over backends, strategies, variants, interpreters, load blocks and their
    levels (closed: concurrency levels; open: rates, with `concurrency` = the backend's
    max_in_flight). `pythons`: the interpreters' `python` keys (resolved by the runner)."""
    cells = []
    for rep in range(repeat or scenario.repeat):
        for block in scenario.loads:
            for level in range(len(block.concurrency or block.rates_per_s())):
                for variant, path, client, generators, python in product(
                        scenario.variants(), scenario.paths(), scenario.clients(),
                        block.generators, pythons):
                    for backend in backends or scenario.backends:
                        model, concurrency, rate = block.cell_levels(backend, cores)[level]
                        for strategy in scenario.strategies_for(backend):
                            cells.append(CellKey(
                                backend=backend, concurrency=concurrency, repetition=rep,
                                strategy=strategy, variant=variant, client=client,
                                model=model, rate_per_s=rate, generators=generators,
                                path=path, python=python))
    return cells


