"""bench/sched_trace.py on a hand-written `perf script` excerpt: a loop thread that sleeps in
epoll, is woken, waits for a CPU, runs, waits for the GIL (woken by the spooler), is preempted;
its states, who had the CPU, who ended its GIL wait, and the machine's silences. The same for
bench/late_starts.py's late windows."""

import numpy as np

from bench import late_starts, sched_trace

LOOP, SPOOLER, OTHER = 100, 101, 300


def event(t_ms: float, comm: str, pid: int, tid: int, cpu: int, kind: str, rest: str,
          stack: list[str]) -> str:
    sec, frac = divmod(int(t_ms * 1_000_000), 1_000_000_000)
    frames = "".join(f"\n\t    ffffffff8100{i:04x} {frame}" for i, frame in enumerate(stack))
    return f"{comm:>16} {pid}/{tid} [{cpu:03d}] {sec}.{frac:09d}: sched:{kind}: {rest}{frames}\n"


def switch(t_ms, prev, prev_comm, state, nxt, next_comm, cpu, stack, pid=LOOP):
    return event(t_ms, prev_comm, pid if prev in (LOOP, SPOOLER) else prev, prev, cpu,
                 "sched_switch", f"prev_comm={prev_comm} prev_pid={prev} prev_prio=120 "
                 f"prev_state={state} ==> next_comm={next_comm} next_pid={nxt} next_prio=120",
                 stack)


def wakeup(t_ms, by, by_comm, target, target_comm, cpu, stack, by_pid=None):
    return event(t_ms, by_comm, by_pid or by, by, cpu, "sched_wakeup",
                 f"comm={target_comm} pid={target} prio=120 target_cpu={cpu:03d}", stack)


EPOLL = ["__schedule", "schedule", "schedule_hrtimeout_range_clock", "do_epoll_wait"]
FUTEX = ["__schedule", "schedule", "futex_wait_queue", "futex_wait", "do_futex"]
TIMER = ["ttwu_do_activate", "try_to_wake_up", "hrtimer_wakeup", "__hrtimer_run_queues"]
FUTEX_WAKE = ["ttwu_do_activate", "try_to_wake_up", "futex_wake", "do_futex"]
TICK = ["__schedule", "schedule", "irqentry_exit_to_user_mode"]

TEXT = "\n".join([
    switch(1.0, LOOP, "python", "S", OTHER, "hog", 0, EPOLL),  # asleep in epoll
    wakeup(3.0, OTHER, "hog", LOOP, "python", 0, TIMER, by_pid=OTHER),  # its timer fires
    switch(5.0, OTHER, "hog", "R", LOOP, "python", 0, TICK),  # 2 ms for a CPU
    switch(6.0, LOOP, "python", "S", OTHER, "hog", 0, FUTEX),  # waits for the GIL
    wakeup(7.0, SPOOLER, "spooler", LOOP, "python", 1, FUTEX_WAKE),  # the spooler drops it
    switch(7.5, OTHER, "hog", "R", LOOP, "python", 0, TICK),
    switch(8.0, LOOP, "python", "R", OTHER, "hog", 0, TICK),  # preempted
    switch(12.0, OTHER, "hog", "R", LOOP, "python", 0, TICK),  # 4 ms silence before this
    switch(13.0, LOOP, "python", "S", OTHER, "hog", 0, EPOLL),
])
MS = 1_000_000


def built():
    return sched_trace.build(sched_trace.parse(TEXT), {LOOP, SPOOLER})


def test_parse_reads_every_event_with_its_stack_in_time_order():
    events = sched_trace.parse(TEXT)
    assert [e.kind for e in events][:3] == ["sched_switch", "sched_wakeup", "sched_switch"]
    assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)
    assert events[0].number("prev_pid") == LOOP and "do_epoll_wait" in events[0].stack
    assert (events[4].comm, events[4].tid, events[4].cpu) == ("spooler", SPOOLER, 1)


def test_the_loop_threads_states():
    trace = built()
    assert trace.states(LOOP, 1 * MS, 13 * MS) == {
        "sleep-epoll": 2 * MS, "runnable": 2 * MS + MS // 2, "running": 2 * MS + MS // 2,
        "sleep-futex": MS, "preempted": 4 * MS}
    assert trace.states(LOOP, 4 * MS, 6 * MS) == {"runnable": MS, "running": MS}


def test_who_ended_the_gil_wait_and_who_had_the_cpu():
    trace = built()
    assert trace.gil_wakers(LOOP, 0, 20 * MS) == {SPOOLER: 1}
    assert trace.gil_wakers(LOOP, 0, 6 * MS) == {}  # the epoll wake-up is not a GIL wait
    cpu = trace.cpu_by_task(1 * MS, 13 * MS)
    assert (cpu[OTHER], cpu[LOOP]) == (9 * MS + MS // 2, 2 * MS + MS // 2)


def test_a_silence_is_a_stretch_without_any_event_on_any_cpu():
    assert built().silences(3 * MS) == [(8 * MS, 12 * MS)]
    assert len(built().silences(MS)) == 3  # 1→3, 3→5, 8→12; 6→7 is 1 ms, not over it


def test_late_windows_merge_overlapping_late_starts():
    intended = np.array([0, 10, 12, 30, 50]) * MS
    started = intended + np.array([1, 6, 7, 2, 9]) * MS
    assert late_starts.windows(intended, started, 5 * MS) == [
        [10 * MS, 19 * MS, 7 * MS], [50 * MS, 59 * MS, 9 * MS]]
    assert late_starts.overlap_ns([(8 * MS, 12 * MS)], 10 * MS, 19 * MS) == 2 * MS
