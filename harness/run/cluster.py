"""The Dask executor: a run's cells as tasks on a `dask.distributed` cluster, their rows back in
the runner's run folder (harness.run.remote is what runs on the workers).

The runner stays the only writer: each attempt ships its spool files' bytes through one queue
of the run, and the runner appends them to the cell's local spool, so a worker lost mid-cell
leaves its rows up to its last shipping. Attempts are counted here (Dask's own retries are
off): a cell whose worker vanished is tried once more elsewhere with the first attempt's rows
dropped, and written from its second attempt (incomplete) if that one is lost too.

Imported only under --cluster: nothing else needs dask."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.errors import HarnessError
from harness.run import remote

CONNECT_S = 5.0  # to reach the scheduler; with WORKERS_S, the ~10 s an unusable cluster takes
WORKERS_S = 5.0  # for the first worker to be there
LOSS_CHECK_S = 1.0  # how often the scheduler is asked which workers are alive
CALIBRATE_S = 120.0  # for each host's CPU calibration (seconds of work, and its lock)
CHECKED_PACKAGES = ["harness", "numpy", "pyarrow", "aiohttp", "uvloop", "httptools"]


def shown(address: str) -> str:
    """The scheduler's address as it may be written: no credentials."""
    parts = urllib.parse.urlsplit(address)
    if parts.username is None and parts.password is None:
        return address
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Attempt:
    order: object  # the runner's Order
    number: int  # 1, then 2
    token: str
    future: object = None
    worker: str = ""  # the worker running it, once it said so
    host: str = ""
    started: bool = False
    spool: object = None  # the runner's spool folder for it, once it started
    group: Spread | None = None  # one generator of a cell spread over several workers
    generator: int = 0


@dataclass
class Spread:
    """A cell whose `generators` run on as many workers, one attempt each (not retried: a lost
    generator's share becomes `lost` rows, as on one machine)."""

    order: object
    generators: int
    results: dict = field(default_factory=dict)  # generator → its result (None: lost)
    spool: object = None  # opened by the first generator that started
    lost: bool = False  # a generator was lost with its worker (not merely never started)


@dataclass
class Sink:
    """What the runner does with what comes back (it writes; the executor does not)."""

    started: Callable  # (order, host) → the cell's local spool folder, emptied
    progress: Callable  # (order, completed)
    finished: Callable  # (order, result dict: observed, failure, host, times…)
    lost: Callable  # (order, attempt number, host): said to the user
    spread: Callable  # (order, [result dict or None per generator]): a spread cell ended
    phase: Callable = lambda order, text: None  # (order, start-up step or None: clock started)


@dataclass
class Cluster:
    """A connected, checked cluster; `close()` disconnects."""

    address: str
    client: object = None
    hosts: dict = field(default_factory=dict)  # host → its facts (cores, memory, …)

    @classmethod
    def connect(cls, address: str) -> Cluster:
        try:
            from distributed import Client
        except ImportError:
            raise HarnessError("--cluster needs dask.distributed: pip install -e '.[cluster]' "
                               "(make install does)") from None
        where = f"--cluster {shown(address)}"
        import logging

        # its own tracebacks of a refused connection: ours is one line
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if shown(address) != address:
            raise HarnessError(f"{where}: credentials in the address are not used by Dask "
                               "(secure a cluster with its TLS settings: docs/cluster.md)")
        from distributed.comm.addressing import parse_address, parse_host_port

        try:
            scheme, location = parse_address(address)
            if scheme in ("tcp", "tls"):
                parse_host_port(location)
        except ValueError:  # before a Client exists: a failed one complains as it goes
            raise HarnessError(f"{where}: not a scheduler address (e.g. tcp://HOST:8786)"
                               ) from None
        try:
            client = Client(address, timeout=CONNECT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessError(f"{where}: cannot reach the scheduler ({why})") from None
        cluster = cls(address, client)
        try:
            cluster._check(where)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _check(self, where: str) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_S)
        except (TimeoutError, OSError):
            raise HarnessError(f"{where}: no worker joined the scheduler within "
                               f"{WORKERS_S:.0f} s") from None
        from distributed.versions import error_message

        # check=True only warns in current distributed: its table is read here instead
        found = self.client.get_versions(packages=CHECKED_PACKAGES)
        table = error_message(found["scheduler"], found["workers"], found["client"])
        rows = [" ".join(line.strip("|").split()) for line in
                (table["error"] or table["warning"]).splitlines() if line.startswith("|")]
        if rows:  # its first row is the header
            raise HarnessError(f"{where}: a worker's packages differ from the runner's "
                               f"({'; '.join(rows[1:4])})")
        facts = self.client.run(remote.host_facts)
        own = remote.host_facts()["harness"]
        for address, found in facts.items():
            if found["harness"] != own:
                raise HarnessError(f"{where}: the worker {address} on {found['host']} runs "
                                   "other harness sources: install the same version there")
            self.hosts.setdefault(found["host"], {k: v for k, v in found.items()
                                                  if k != "host"})
        self.workers = {address: found["host"] for address, found in facts.items()}

    def facts(self) -> dict:
        """For the run metadata."""
        return {"scheduler": shown(self.address), "hosts": self.hosts,
                "workers": len(self.workers)}

    def cores(self) -> int | None:
        """The usable cores of the smallest host: what a default depending on it plans for."""
        counts = [facts.get("usable_cores") or facts.get("cores") for facts in
                  self.hosts.values()]
        return min(counts) if counts and all(counts) else None

    def calibrate(self, run_id: str, kinds: list[tuple[str, int]]) -> dict:
        """Per host: each (kind, duration)'s calibration, measured on one of its workers."""
        if not kinds:
            return {}
        by_host = {}
        for address, host in self.workers.items():
            by_host.setdefault(host, _address_host(address))  # a restarted worker counts
        futures = {host: self.client.submit(remote.calibrate_task, run_id, kinds,
                                            workers=[ip], pure=False,
                                            allow_other_workers=False)
                   for host, ip in by_host.items()}
        try:
            return {host: future.result(timeout=CALIBRATE_S)
                    for host, future in futures.items()}
        except Exception as exc:  # a host without workers left, or the task failed there
            self.client.cancel(list(futures.values()), force=True)
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessError(f"--cluster {shown(self.address)}: CPU calibration on the "
                               f"workers failed ({why})") from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class Executor:
    """Runs the orders on the cluster; returns when every one is written, skipped or given
    up. `interrupt`: the runner's (requested: stop gracefully; aborted: cancel)."""

    def __init__(self, cluster: Cluster, run_id: str, sink: Sink, interrupt) -> None:
        from distributed import Event, Queue

        self.cluster, self.client, self.sink = cluster, cluster.client, sink
        self.run_id, self.interrupt = run_id, interrupt
        base = f"harness-{run_id}"
        self.names = {"queue": f"{base}-queue", "stop": f"{base}-stop", "kill": f"{base}-kill"}
        self.queue = Queue(self.names["queue"], client=self.client)
        self.stop = Event(self.names["stop"], client=self.client)
        self.kill = Event(self.names["kill"], client=self.client)
        self.attempts: dict[str, Attempt] = {}  # live attempts by token
        self.written_off: set[str] = set()  # tokens whose messages are dropped

    def run(self, orders: list, payload: Callable) -> None:
        """`payload(order)`: the task's data for an order (the token and names are added).
        Cells of one generator run side by side, one per host; a spread cell runs alone."""
        self.payload = payload
        batch: list = []
        try:
            for order in orders:
                if order.key.generators > 1:
                    self._batch(batch)
                    batch = []
                    if not self.interrupt.requested:
                        self._spread(order)
                else:
                    batch.append(order)
            self._batch(batch)
        except (OSError, TimeoutError) as exc:  # the scheduler went away mid-run
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessError(f"--cluster {shown(self.cluster.address)}: lost the scheduler "
                               f"({why}); the cells written so far are kept") from None
        finally:
            if not self.interrupt.aborted:
                with contextlib.suppress(OSError, TimeoutError):
                    for event in (self.stop, self.kill):
                        event.clear()

    def _batch(self, orders: list) -> None:
        if self.interrupt.requested:
            return
        for priority, order in enumerate(orders):
            self._submit(order, 1, priority=len(orders) - priority)
        self._wait()

    def _spread(self, order) -> None:
        """Its generators on distinct workers, machines taken in turn."""
        count = order.key.generators
        places = self._places(count)
        if len(places) < count:
            self.sink.spread(order, [{"failure": f"load.generators: {count} needs {count} "
                                                 f"workers; the cluster has {len(places)}"}])
            return
        machines = {_address_host(address) for address in places}
        listen = getattr(order.item.scenario.server, "listen", None)
        if len(machines) > 1 and listen is not None and _loopback(listen):
            self.sink.spread(order, [{"failure": f"server.listen: {listen} is loopback: the "
                                                 f"generators on {len(machines)} machines "
                                                 "cannot all reach the mock server (set "
                                                 "server.listen: 0.0.0.0)"}])
            return
        group = Spread(order, count)
        cell = f"{self.run_id}-{order.label}"
        for g, address in enumerate(places):
            token = f"{cell}-g{g}"
            data = dict(self.payload(order), token=token, run_id=self.run_id,
                        names=dict(self.names, cancel=f"{token}-cancel"),
                        spread={"cell": cell, "generator": g, "generators": count})
            attempt = Attempt(order, 1, token, worker=address, group=group, generator=g)
            attempt.future = self.client.submit(remote.cell_task, data, key=token, pure=False,
                                                retries=0, workers=[address],
                                                allow_other_workers=False)
            self.attempts[token] = attempt
        self._wait()

    def _places(self, count: int) -> list[str]:
        by_host: dict[str, list[str]] = {}
        for address in sorted(self.client.scheduler_info(n_workers=-1)["workers"]):
            by_host.setdefault(_address_host(address), []).append(address)
        places = []
        while len(places) < count and any(by_host.values()):
            for addresses in by_host.values():
                if addresses and len(places) < count:
                    places.append(addresses.pop(0))
        return places

    def _wait(self) -> None:
        """Until every attempt submitted is written, given up or cancelled."""
        checked = time.monotonic()
        while self.attempts:
            self._drain()
            for attempt in [a for a in self.attempts.values() if a.future.done()]:
                self._drain()  # what it put before it returned is in the queue
                if attempt.token in self.attempts:  # not written off meanwhile
                    self._done(attempt)
            if time.monotonic() - checked > LOSS_CHECK_S:
                checked = time.monotonic()
                self._find_lost()
            if self.interrupt.requested and not self.stop.is_set():
                self.stop.set()
            if self.interrupt.aborted:
                self._abort()
                return
            time.sleep(0.05)

    def _submit(self, order, number: int, priority: int = 0, avoid: str = "") -> None:
        token = f"{self.run_id}-{order.label}-a{number}"
        attempt = Attempt(order, number, token)
        data = dict(self.payload(order), token=token, run_id=self.run_id,
                    names=dict(self.names, cancel=f"{token}-cancel"))
        workers = None
        if avoid:  # another host where there is one (named by address, so a worker restarted
            # there counts too), else any worker: a pinned address may die before it starts
            others = {_address_host(a) for a, host in self.cluster.workers.items()
                      if host != avoid}
            workers = sorted(others) or None
        # loose: should no worker be left on those hosts, any worker runs it (else it waits
        # for ever on the scheduler, neither started nor pinned to an address seen to die)
        where = {"workers": workers, "allow_other_workers": True} if workers else {}
        attempt.future = self.client.submit(remote.cell_task, data, key=token, pure=False,
                                            retries=0, priority=priority, **where)
        self.attempts[token] = attempt

    def _drain(self) -> None:
        while True:
            try:
                messages = self.queue.get(batch=True)
            except Exception:  # the scheduler went away: the futures will say so
                return
            if not messages:
                return
            for message in messages:
                self._message(message)

    def _message(self, message: dict) -> None:
        attempt = self.attempts.get(message["token"])
        if attempt is None or message["token"] in self.written_off:
            return
        if message.get("started"):
            if attempt.started:  # Dask ran it again after its worker died: a lost attempt
                del self.attempts[attempt.token]
                self._lost(attempt)
                return
            attempt.started, attempt.worker = True, message["worker"]
            attempt.host = message["host"]
            group = attempt.group
            if group is None:
                attempt.spool = self.sink.started(attempt.order, attempt.host)
            else:
                if group.spool is None:
                    group.spool = self.sink.started(attempt.order, attempt.host)
                attempt.spool = group.spool
        elif "completed" in message:
            if attempt.group is None:  # a spread cell's generators count apart: not shown
                self.sink.progress(attempt.order, message["completed"])
        elif "phase" in message and attempt.started:
            if attempt.group is None:
                self.sink.phase(attempt.order, message["phase"])
        elif "file" in message and attempt.started:
            path = attempt.spool / message["file"]
            with open(path, "r+b" if path.exists() else "wb") as target:
                target.seek(message["offset"])
                target.write(message["data"])

    def _done(self, attempt: Attempt) -> None:
        del self.attempts[attempt.token]
        try:
            result = attempt.future.result()
        except Exception as exc:  # KilledWorker: the scheduler gave up on it
            if _lost_worker(exc):
                self._lost(attempt)
                return
            result = {"failure": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                      if str(exc) else type(exc).__name__}
        attempt.future.release()
        if attempt.group is not None:
            self._gather(attempt, None if result.get("skipped") else result)
            return
        if result.get("skipped"):  # the run stopped before it began: nothing to keep
            return
        if not attempt.started:  # failed before it said so: nothing shipped
            attempt.spool = self.sink.started(attempt.order, result.get("host", ""))
        self.sink.finished(attempt.order, dict(result, attempt=attempt.number))

    def _gather(self, attempt: Attempt, result: dict | None) -> None:
        group = attempt.group
        group.results[attempt.generator] = result
        if len(group.results) == group.generators:
            if group.spool is None and any(group.results.values()):
                group.spool = self.sink.started(group.order, next(
                    r.get("host", "") for r in group.results.values() if r))
            if group.spool is not None:
                self.sink.spread(group.order, [group.results[g]
                                               for g in range(group.generators)])
            elif group.lost:  # nothing started, something was lost: said, not silent
                self.sink.spread(group.order, [{"failure": "every generator was lost with "
                                                           "its worker before it started"}])

    def _find_lost(self) -> None:
        alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
        self._drain()  # what a dead worker shipped before it died: kept, not written off
        for attempt in list(self.attempts.values()):
            pinned = attempt.group is not None  # placed before it started
            if (attempt.started or pinned) and attempt.worker not in alive:
                del self.attempts[attempt.token]
                self._lost(attempt)

    def _lost(self, attempt: Attempt) -> None:
        """Its worker is gone: the task is cancelled (and told so, should the scheduler have
        started it again elsewhere); a first attempt is tried once more on another host, a
        second one is written as it stands, incomplete."""
        from distributed import Event

        self.written_off.add(attempt.token)
        Event(f"{attempt.token}-cancel", client=self.client).set()
        self.client.cancel([attempt.future], force=True)
        self.sink.lost(attempt.order, attempt.number, attempt.host or attempt.worker)
        if attempt.group is not None:
            attempt.group.lost = True
            self._gather(attempt, None)
            return
        if attempt.number == 1 and not self.interrupt.requested:
            self._submit(attempt.order, 2, avoid=attempt.host)
            return
        if not attempt.started:  # lost before it said so: an empty, incomplete cell
            attempt.spool = self.sink.started(attempt.order, None)
        self.sink.finished(attempt.order, {"observed": None, "host": attempt.host or None,
                                           "failure": "lost with its worker"
                                                      + (f" on {attempt.host}"
                                                         if attempt.host else ""),
                                           "attempt": attempt.number})

    def _abort(self) -> None:
        """A second interrupt: the cells' processes are killed, the cluster's tasks
        cancelled; what each running cell shipped is written as it stands."""
        from distributed import Event

        self.kill.set()  # left set: a task still starting sees it and runs nothing
        for attempt in self.attempts.values():
            Event(f"{attempt.token}-cancel", client=self.client).set()
        time.sleep(remote.POLL_S * 2)  # the tasks see it and kill their cells
        self._drain()
        for attempt in [a for a in self.attempts.values() if a.future.done()]:
            self._done(attempt)  # ended just before: written as it ended
        self.client.cancel([a.future for a in self.attempts.values()], force=True)
        for attempt in list(self.attempts.values()):
            del self.attempts[attempt.token]
            if attempt.started and attempt.group is None:  # a spread one's spool stays, read
                # as an incomplete cell (as a local cell killed by a second interrupt)
                self.sink.finished(attempt.order, {"observed": None, "host": attempt.host,
                                                   "aborted": True,
                                                   "attempt": attempt.number})


def _address_host(address: str) -> str:
    """`tcp://10.0.0.2:40000` → `10.0.0.2`: what Dask's `workers=` matches a machine by."""
    netloc = address.split("://", 1)[-1]
    return netloc.rsplit(":", 1)[0].strip("[]")


def _loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _lost_worker(exc: BaseException) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(exc, KilledWorker)
