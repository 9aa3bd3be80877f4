"""Workloads: what one request does. One small interface, one implementation per kind, one
registry. A backend asks its workload for a runner — blocking (`sync_runner`, one per thread or
process slot) or async (`async_runner`, one per event loop) — and times `run(seq)` calls."""

from __future__ import annotations

import importlib
from typing import Protocol

from harness.core.schema import Outcome

_REGISTRY = {
    "io": "harness.cell.workloads.io:IoWork",
    "http": "harness.cell.workloads.io:IoWork",
    "cpu": "harness.cell.workloads.compute:CpuWork",
    "cpu_release": "harness.cell.workloads.compute:CpuWork",
    "race": "harness.cell.workloads.race:RaceWork",
    "pipeline": "harness.cell.workloads.pipeline:PipelineWork",
    "fake": "harness.cell.workloads.fake:FakeWork",
}


class SyncRunner(Protocol):
    def run(self, seq: int) -> Outcome: ...
    def abort(self) -> None: ...  # from another thread: unblock a run in progress
    def close(self) -> None: ...


class AsyncRunner(Protocol):
    async def run(self, seq: int) -> tuple[Outcome, str | None]: ...  # (outcome, slot label)
    async def close(self) -> None: ...


class Workload(Protocol):
    def prepare(self) -> None: ...  # once per cell, before the clock starts
    def sync_runner(self, slot: str) -> SyncRunner: ...
    async def async_runner(self) -> AsyncRunner: ...
    def extras(self) -> dict: ...  # cell-level results, e.g. the race's final counter


def merge_slot_extras(found: list[dict]) -> dict:
    """What the slot processes of a `processes` cell measured before the clock (each its own
    workload's `extras()`), as cell-level figures: the kernel speed is their mean speed, the
    connections opened before the clock all of theirs."""
    from harness.core.kernels import mean_ns_per_unit
    from harness.core.tls import pooled_connects

    speed = mean_ns_per_unit([extras.get("kernel_ns_per_unit") for extras in found])
    return {**({} if speed is None else {"kernel_ns_per_unit": speed}), **pooled_connects(found)}


def workload_module(kind: str) -> str:
    """The module that implements workload `kind` (a cell imports it before its job arrives)."""
    return _REGISTRY[kind].partition(":")[0]


def make_workload(spec) -> Workload:
    """`spec`: the CellSpec (picklable, so slot processes can build their own)."""
    module_name, _, attr = _REGISTRY[spec.scenario.workload.type].partition(":")
    return getattr(importlib.import_module(module_name), attr)(spec)
