"""`cpu` and `cpu_release`: a calibrated CPU kernel per request."""

from __future__ import annotations

from harness.schema import Outcome
from harness.workloads.cpu import timed_kernel
from harness.workloads.offload import Offload


class _SyncCpu:
    def __init__(self, kind: str, units: int) -> None:
        self.kind, self.units = kind, units

    def run(self, seq: int) -> Outcome:
        cpu_ns, _ = timed_kernel(self.kind, self.units)
        return Outcome(True, cpu_ns=cpu_ns, cpu_wait_ns=0)

    def abort(self) -> None:  # a kernel cannot be interrupted; it is short by construction
        pass

    def close(self) -> None:
        pass


class _AsyncCpu:
    def __init__(self, kind: str, units: int, offload: Offload) -> None:
        self.kind, self.units, self.offload = kind, units, offload

    async def run(self, seq: int) -> tuple[Outcome, str]:
        (cpu_ns, label), wait_ns = await self.offload.call(timed_kernel, self.kind, self.units)
        return Outcome(True, cpu_ns=cpu_ns, cpu_wait_ns=wait_ns), label

    async def close(self) -> None:
        self.offload.close()


class CpuWorkload:
    def __init__(self, spec) -> None:
        self.spec = spec
        self.kind = spec.scenario.workload.type
        if not spec.units:
            raise ValueError("cpu workloads need calibrated units")

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> _SyncCpu:
        return _SyncCpu(self.kind, self.spec.units)

    async def async_runner(self) -> _AsyncCpu:
        offload = Offload(self.spec.strategy, self.spec.scenario.pool_size)
        await offload.start()
        return _AsyncCpu(self.kind, self.spec.units, offload)

    def extras(self) -> dict:
        return {}
