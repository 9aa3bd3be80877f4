"""`cpu` and `cpu_release`: a calibrated CPU kernel per request.

Before the clock starts, every process that will run the kernel measures its own speed on it
(`kernel_ns_per_unit`): the cell process (threads, the loops inline and with a thread pool),
each slot process (`processes`, which hand theirs to the cell) or each process-pool worker.
The cell reports it (`extras`); the analysis normalises CPU rates by it."""

from __future__ import annotations

from pathlib import Path

from harness.cell.gauge import FileLock
from harness.core.kernels import kernel_ns_per_unit, mean_ns_per_unit, timed_kernel
from harness.core.offload import Offload
from harness.core.schema import Outcome


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


class CpuWork:
    def __init__(self, spec) -> None:
        self.spec = spec
        self.kind = spec.scenario.workload.type
        if not spec.units:
            raise ValueError("cpu workloads need calibrated units")
        self.ns_per_unit: float | None = None  # this process's kernel speed, once measured

    def prepare(self) -> None:
        pass

    def sync_runner(self, slot: str) -> _SyncCpu:
        if self.ns_per_unit is None:  # once per process: the slots of `threads` share it
            # the slot processes of one cell measure one at a time
            alone = FileLock(str(Path(self.spec.work_dir) / "kernel.lock")) \
                if self.spec.work_dir else None
            self.ns_per_unit = kernel_ns_per_unit(self.kind, self.spec.units, alone=alone)
        return _SyncCpu(self.kind, self.spec.units)

    async def async_runner(self) -> _AsyncCpu:
        offload = Offload(self.spec.strategy, self.spec.scenario.pool_size)
        # A process pool's workers each import and measure the kernel as they start.
        pooled = await offload.start(kernel_ns_per_unit, self.kind, self.spec.units)
        self.ns_per_unit = (mean_ns_per_unit(pooled) if pooled
                            else kernel_ns_per_unit(self.kind, self.spec.units))
        return _AsyncCpu(self.kind, self.spec.units, offload)

    def extras(self) -> dict:
        return {"kernel_ns_per_unit": self.ns_per_unit}
