"""The kernel scheduler's view of some threads, from `perf record -e sched:sched_switch -e
sched:sched_wakeup -g -k mono` as `perf script` prints it (bench/late_starts.py records it):
what each watched thread was doing at every moment, and which task had each CPU.

A watched thread is in one state at a time:

- running: on a CPU;
- runnable: woken, waiting for a CPU;
- preempted: taken off its CPU while it could run, waiting to get one back;
- sleep-futex: asleep in futex_wait: for a Python thread, the GIL (or a lock) held by another;
- sleep-epoll: asleep in epoll_wait: an event loop with nothing due;
- sleep-other: any other sleep (nanosleep, I/O, …).

Times are CLOCK_MONOTONIC nanoseconds (`-k mono`), the harness's clock."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

_HEADER = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+sched:(\w+):\s+(.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")
FIELDS = "comm,pid,tid,cpu,time,event,trace,ip,sym"  # perf script -F


@dataclass(frozen=True)
class Event:
    t_ns: int
    comm: str  # the name of the task the event ran in
    pid: int  # its process
    tid: int
    cpu: int
    kind: str  # sched_switch, sched_wakeup
    fields: dict
    stack: str  # the kernel and user frames, innermost first, space-separated

    def number(self, name: str) -> int:
        return int(self.fields[name])


@dataclass
class Trace:
    spans: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)  # tid → states
    wakers: dict[int, list[tuple[int, int, str]]] = field(default_factory=dict)  # (t, by, was)
    on_cpu: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, tid)
    names: dict[int, str] = field(default_factory=dict)  # tid → comm
    process: dict[int, int] = field(default_factory=dict)  # tid → pid
    times: list[int] = field(default_factory=list)  # every event's, in order

    def silences(self, min_ns: int) -> list[tuple[int, int]]:
        """Stretches longer than `min_ns` in which no task was switched or woken on any CPU.
        While a cell runs, its loop and the mock server switch every millisecond or two: a
        longer silence across every CPU is a virtual machine whose CPUs the host did not run
        (steal time; the guest sees nothing, then its timers fire late) or events perf lost."""
        times = self.times
        return [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > min_ns]

    def states(self, tid: int, begin: int, end: int) -> dict[str, int]:
        """ns spent in each state by `tid` within [begin, end)."""
        found: dict[str, int] = defaultdict(int)
        for start, stop, state in self.spans.get(tid, ()):
            overlap = min(stop, end) - max(start, begin)
            if overlap > 0:
                found[state] += overlap
        return dict(found)

    def cpu_by_task(self, begin: int, end: int) -> dict[int, int]:
        """ns of CPU each task had within [begin, end) (the idle task is tid 0)."""
        found: dict[int, int] = defaultdict(int)
        for start, stop, tid in self.on_cpu:
            overlap = min(stop, end) - max(start, begin)
            if overlap > 0:
                found[tid] += overlap
        return dict(found)

    def gil_wakers(self, tid: int, begin: int, end: int) -> dict[int, int]:
        """Who woke `tid` from its futex sleeps within [begin, end): tid → count."""
        found: dict[int, int] = defaultdict(int)
        for t, by, was in self.wakers.get(tid, ()):
            if begin <= t < end and was == "sleep-futex":
                found[by] += 1
        return dict(found)


def parse(text: str) -> list[Event]:
    """`perf script -F FIELDS --ns` output: one event per blank-line-separated block (the
    header line, then its stack), in time order."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or not (match := _HEADER.match(lines[0])):
            continue
        comm, pid, tid, cpu, sec, frac, kind, rest = match.groups()
        stack = " ".join(line.split()[-1] for line in lines[1:])
        t_ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        events.append(Event(t_ns, comm, int(pid), int(tid), int(cpu), kind,
                            dict(_FIELD.findall(rest)), stack))
    events.sort(key=lambda e: e.t_ns)
    return events


def sleep_kind(stack: str) -> str:
    if "futex" in stack:
        return "sleep-futex"
    if "epoll" in stack or "ep_poll" in stack:
        return "sleep-epoll"
    return "sleep-other"


def build(events: list[Event], watched: set[int]) -> Trace:
    """The watched threads' states and who woke them; every CPU's tasks."""
    trace = Trace(spans={tid: [] for tid in watched}, wakers={tid: [] for tid in watched})
    state: dict[int, tuple[str, int]] = {}
    cpu_task: dict[int, tuple[int, int]] = {}

    def enter(tid: int, new: str, t: int) -> None:
        if tid in state:
            trace.spans[tid].append((state[tid][1], t, state[tid][0]))
        state[tid] = (new, t)

    trace.times = [e.t_ns for e in events]
    for e in events:
        trace.names[e.tid], trace.process[e.tid] = e.comm, e.pid
        if e.kind == "sched_switch":
            prev, nxt = e.number("prev_pid"), e.number("next_pid")
            trace.names[prev], trace.names[nxt] = e.fields["prev_comm"], e.fields["next_comm"]
            if e.cpu in cpu_task:
                trace.on_cpu.append((cpu_task[e.cpu][1], e.t_ns, cpu_task[e.cpu][0]))
            cpu_task[e.cpu] = (nxt, e.t_ns)
            if prev in watched:
                runnable = e.fields["prev_state"].startswith("R")
                enter(prev, "preempted" if runnable else sleep_kind(e.stack), e.t_ns)
            if nxt in watched:
                enter(nxt, "running", e.t_ns)
        elif e.kind == "sched_wakeup":
            target = e.number("pid")
            if target in watched and target in state and state[target][0].startswith("sleep"):
                trace.wakers[target].append((e.t_ns, e.tid, state[target][0]))
                enter(target, "runnable", e.t_ns)
    return trace
