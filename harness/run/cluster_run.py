"""The runner's side of a cluster run (--cluster): the planned cells become orders for the Dask
executor (harness.run.cluster), and what comes back is written here, into the usual run folder,
cell by cell, numbered in the order they were planned."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.keys import CellKey, key_dict, key_label
from harness.core.secrets import scrub
from harness.run.cluster import Cluster, Executor, Sink
from harness.run.runner import RunResult, RunUI, _Interrupt, _out_dirs, show_live
from harness.scenario.model import LoadedScenario
from harness.store.layout import cell_name, prepare_out_dir
from harness.store.live import LiveCell
from harness.store.meta import run_metadata
from harness.store.spool import SPOOL_DIR
from harness.store.writer import RunWriter

CPU_WORKLOADS = ("cpu", "cpu_release")


def check(item: LoadedScenario) -> None:
    """What a cluster does not run, said before anything starts."""
    if item.scenario.service is not None:
        raise HarnessError(f"{item.path}: service: a service is started beside the runner, "
                           "not on a cluster's workers: run this scenario without --cluster")
    for i, entry in enumerate(getattr(item.scenario.workload, "mix", ())):
        if getattr(entry.body, "file", None) is not None:  # only workload.body travels
            raise HarnessError(f"{item.path}: workload.requests[{i}].body.file: not with "
                               "--cluster (give the entry a sized body)")
    server = item.scenario.server
    if server is not None and server.python is not None:
        raise HarnessError(f"{item.path}: server.python: not with --cluster (a worker's mock "
                           "server runs under the worker's own Python)")


@contextlib.contextmanager
def connect(address: str):
    cluster = Cluster.connect(address)
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class Order:
    """One planned cell: where it is written and under which number."""

    item: LoadedScenario
    key: CellKey
    index: int
    writer: RunWriter
    constants: dict

    @property
    def label(self) -> str:
        return f"{self.item.scenario.name}-{self.index:04d}"

    @property
    def spool(self) -> Path:
        return self.writer.out_dir / SPOOL_DIR / cell_name(self.index)


def _kind(item: LoadedScenario) -> tuple[str, int] | None:
    workload = item.scenario.workload
    return (workload.type, workload.duration) if workload.type in CPU_WORKLOADS else None


def _body(item: LoadedScenario, made: str) -> bytes | None:
    """The request body's bytes: they travel with each cell (no shared file system)."""
    body = getattr(item.scenario.workload, "body", None)
    path = made or getattr(body, "file", None)
    return Path(path).read_bytes() if path else None


def _orders(run_id: str, plans, writers: dict[str, RunWriter]) -> list[Order]:
    """Every planned cell, numbered in its run folder in the plan's order."""
    orders, numbers = [], {}
    for item, cells in plans:
        writer = writers[item.scenario.name]
        for key in cells:
            constants = {"run_id": run_id, "scenario": item.scenario.name, **key_dict(key),
                         "mix": item.scenario.mix_manifest()}
            index = numbers.get(writer.out_dir, 0)
            orders.append(Order(item, key, index, writer, constants))
            numbers[writer.out_dir] = index + 1
    return orders


def run_plans(cluster: Cluster, run_id: str, plans, systems, bodies, lineups, out, force,
              results_root, ui: RunUI) -> RunResult:
    loaded = [item for item, _ in plans]
    _check_generators(plans, cluster)
    kinds = {s.scenario.name: _kind(s) for s in loaded}
    # Each host's units, measured there before any cell: the cells of a host use its own.
    per_host = cluster.calibrate(run_id, sorted({k for k in kinds.values() if k}))
    dirs = _out_dirs(loaded, out, results_root, run_id)
    for path in set(dirs.values()):
        prepare_out_dir(path, force)
    facts = cluster.facts()
    for host, found in per_host.items():
        facts["hosts"][host]["calibration"] = found
    first = next(iter(per_host.values()), {})
    calibration = {name: first.get(f"{k[0]}:{k[1]}") if k else None
                   for name, k in kinds.items()}
    writers: dict[Path, RunWriter] = {}
    for path in dict.fromkeys(dirs.values()):
        in_dir = [s for s in loaded if dirs[s.scenario.name] == path]
        scenario_facts = {s.scenario.name: lineups[s.scenario.name].facts() for s in in_dir}
        writers[path] = RunWriter(path, run_metadata(run_id, in_dir, calibration,
                                                     scenario_facts, cluster=facts))
    orders = _orders(run_id, plans, {name: writers[path] for name, path in dirs.items()})
    data = {s.scenario.name: _body(s, bodies[s.scenario.name]) for s in loaded}

    def payload(order: Order) -> dict:
        name, key = order.item.scenario.name, order.key
        interpreter = lineups[name].workers[key.python].interpreter
        kind = kinds[name]
        return {"wire": systems[name].wire, "key": key_dict(key),
                "preload": [key.backend, order.item.scenario.workload.type, key.client],
                "server": order.item.scenario.server is not None,
                "target": order.item.scenario.target or "", "body": data[name],
                "tls": systems[name].tls_fields,
                "server_tls": bool(getattr(order.item.scenario.server, "tls", False)),
                "python_spec": "" if interpreter.running else interpreter.spec,
                "calibrate": kind,
                "units_by_host": {host: found[f"{kind[0]}:{kind[1]}"]["units"]
                                  for host, found in per_host.items()} if kind else {}}

    ui.run_started(len(orders))
    result = RunResult(run_id, list(writers))
    writing = _Writing(ui, result)
    interrupt = _Interrupt()
    previous = interrupt.install()
    try:
        Executor(cluster, run_id, writing.sink(), interrupt).run(orders, payload)
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for writer in writers.values():
            writer.amend(writing.amend)
            writer.close()
    result.interrupted = interrupt.requested
    return result


def _check_generators(plans, cluster: Cluster) -> None:
    """A cell's generators need a worker each."""
    for item, cells in plans:
        most = max((key.generators for key in cells), default=1)
        if most > len(cluster.workers):
            raise HarnessError(f"{item.path}: load.generators: {most} needs {most} workers on "
                               f"the cluster; it has {len(cluster.workers)}")


class _Writing:
    """The sink: the runner's writers, fed with what the executor gets back."""

    def __init__(self, ui: RunUI, result: RunResult) -> None:
        self.ui, self.result = ui, result
        self.live: dict[str, LiveCell] = {}  # by order label: running cells, when the UI wants
        self.clocks: dict[str, list[dict]] = {}  # spread cells: each generator's clock
        self.reached: dict[str, list[str]] = {}  # scenario → notes of mock servers reached

    def sink(self) -> Sink:
        return Sink(self.started, self.progress, self.finished, self.lost, self.spread,
                    self.phase)

    def started(self, order: Order, host: str) -> Path:
        """An attempt began on `host`: its spool folder, empty (a retry drops the rows of
        the attempt before)."""
        shutil.rmtree(order.spool, ignore_errors=True)
        order.writer.open_cell(dict(order.constants, host=host), order.index)
        if self.ui.wants_live:  # a retry's spool starts empty: read from its start
            self.live[order.label] = LiveCell(order.spool)
        # Several cells run at once: the UI keeps them apart by the order's label.
        self.ui.cell_started(order.item.scenario.name, order.key,
                             order.item.scenario.load_for(order.key).requests, order.label)
        return order.spool

    def phase(self, order: Order, text: str | None) -> None:
        self.ui.cell_phase(text, order.label)

    def progress(self, order: Order, completed: int) -> None:
        self.ui.cell_progress(completed, order.label)
        if order.label in self.live:
            show_live(self.live[order.label], self.ui, order.label)

    def lost(self, order: Order, attempt: int, host: str) -> None:
        again = ("its share becomes lost rows" if order.key.generators > 1 else
                 "tried again on another worker" if attempt == 1 else "written as it stands")
        self.ui.note(f"cell {order.item.scenario.name} {key_label(order.key)}: its worker on "
                     f"{host} was lost: {again}")

    def finished(self, order: Order, found: dict) -> None:
        label = f"cell {order.item.scenario.name} {key_label(order.key)}"
        if found.get("failure"):
            self.result.failures.append(scrub(f"{label} failed: {found['failure']}"))
        self._write(order, found.get("observed"), found.get("server_stats") or {},
                    {"0": found.get("host") or None}, found.get("started_unix_ns"),
                    found.get("finished_unix_ns"))

    def spread(self, order: Order, results: list[dict | None]) -> None:
        """A cell whose generators ran on several workers: their reports merged as one
        process's, a lost generator's share as `lost` rows."""
        from harness.store.merge import merge_spread

        item, key = order.item, order.key
        label = f"cell {item.scenario.name} {key_label(key)}"
        for g, found in enumerate(results):
            if found is None:
                self.result.failures.append(f"{label}: generator {g} was lost")
            elif found.get("failure"):
                self.result.failures.append(scrub(f"{label} generator {g} failed: "
                                                  f"{found['failure']}"))
        if len(results) < key.generators:  # not placed: nothing ran
            return
        load = item.scenario.load_for(key)
        limit = (load.requests + load.warmup.requests
                 if load.model == "closed" and load.requests is not None else None)
        reports = [found.get("observed") if found else None for found in results]
        observed = merge_spread(reports, order.spool, limit, key.generators)
        if not all(reports):
            observed.pop("done", None)  # a generator died: the cell is incomplete
        hosts = {str(g): found["host"] for g, found in enumerate(results) if found}
        self.clocks[order.label] = [found["clock"] for found in results
                                    if found and found.get("clock")]
        reached = sorted({found["reached"] for found in results if found and
                          found.get("reached")})
        if reached:
            self.reached.setdefault(item.scenario.name, []).append(
                f"cell {order.index}: generators on other hosts reached the mock server on "
                f"{', '.join(reached)} over the network")
        first = results[0] or {}
        times = [found.get(k) for found in results if found
                 for k in ("started_unix_ns", "finished_unix_ns")]
        starts = [t for t in times[0::2] if t is not None]
        ends = [t for t in times[1::2] if t is not None]
        self._write(order, observed, first.get("server_stats") or {}, hosts,
                    min(starts) if starts else None, max(ends) if ends else None)

    def amend(self, metadata: dict) -> None:
        """run.json at the end: each spread cell's clock offsets (per generator: the scheduler's
        clock minus its host's, measured at the start barrier) and the notes."""
        names = {entry.get("name") for entry in metadata.get("scenarios") or ()}
        metadata["cluster"]["clocks"] = {label: clocks for label, clocks in self.clocks.items()
                                         if label.rsplit("-", 1)[0] in names}
        for entry in metadata.get("scenarios") or ():
            notes = self.reached.get(entry.get("name"))
            if notes:
                entry["notes"] = [*(entry.get("notes") or ()), *notes]

    def _write(self, order: Order, observed: dict | None, server: dict, hosts: dict,
               started: int | None, finished: int | None) -> None:
        item, key = order.item, order.key
        constants = dict(order.constants, host=hosts.get("0"), hosts=hosts)
        rows = order.writer.write_cell_data(order.index, order.spool, constants)
        cell = rows.cell_row(observed, server, item.scenario.load_for(key).max_sched_lag)
        cell.pop("hosts", None)
        cell.update(started_unix_ns=started, finished_unix_ns=finished)
        order.writer.commit(order.index, order.spool, cell)
        self.live.pop(order.label, None)
        self.ui.cell_finished(cell, order.label)
