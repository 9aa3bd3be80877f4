"""harness.mock.deadlines: waits that are never early, on both loops, precise (timerfd) or not."""

import asyncio
import itertools
import random
import sys
import time
import weakref

import pytest
import uvloop

from harness.mock.deadlines import EARLY_NS, Deadlines

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Held:
    """What a pending response's callback keeps alive (its connection, its transport)."""

    def answer(self) -> None:
        raise AssertionError("a cancelled callback ran")


def run(loop: str, coro_fn):
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro_fn())


@pytest.mark.parametrize("stalled", [False, True])
@pytest.mark.parametrize("precise", [True, False])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_many_waits_end_after_their_deadlines_in_order(loop, precise, stalled):
    """200 waits due 10-110 ms on. Those begun before their deadline end in its order; one
    begun after it ends at once, which may be ahead of earlier waits whose timerfd wake-up the
    loop has not yet taken: so only the waits begun in time are ordered. `stalled` holds the
    loop 25 ms in the middle of starting them (a preempted setup, as on a slow or busy machine),
    so that some begin after their deadlines."""
    rng = random.Random(5)

    async def main():
        deadlines = Deadlines(asyncio.get_running_loop(), precise=precise)
        assert deadlines.precise == (precise and sys.platform.startswith("linux"))
        start, woke = time.monotonic_ns(), []

        async def wait(index, offset_ns):
            if stalled and index == 100:
                time.sleep(0.025)
            entered = time.monotonic_ns()
            await deadlines.wait_until(start + offset_ns)
            woke.append((time.monotonic_ns(), start + offset_ns, entered))

        offsets = [rng.randrange(10_000_000, 110_000_000) for _ in range(200)]
        waits = asyncio.gather(*(wait(i, o) for i, o in enumerate(offsets)))
        await asyncio.sleep(0)  # runs after every wait's first step
        begun = time.monotonic_ns()  # each wait due later than this was put on the heap
        await waits
        deadlines.close()
        return woke, begun

    woke, begun = run(loop, main)
    assert len(woke) == 200
    assert all(at >= deadline for at, deadline, _ in woke)  # never early
    # The stall makes some, for sure: those started after it with offsets under 25 ms.
    assert any(entered >= deadline for _, deadline, entered in woke) or not stalled
    if precise:  # the earliest first, but for those yielding together in the last stretch
        order = [deadline for _, deadline, _ in woke if deadline > begun + EARLY_NS]
        assert len(order) >= 20  # fewer only if starting 200 waits took 90 ms
        assert all(b > a - EARLY_NS for a, b in itertools.pairwise(order))
    # From the deadline, or from the start of a wait begun after it (that one ends at once).
    late = sorted(at - max(deadline, entered) for at, deadline, entered in woke)
    # Median 16 us in a typical run beside two CPU hogs, 14 ms at worst in 200 (load 9); the
    # fallback spins its last millisecond, so a hog's scheduler share slows it: 81 ms seen. The
    # tight figure (2 ms) is bench/delay_precision.py's.
    assert late[len(late) // 2] < (20_000_000 if precise else 200_000_000)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_cancelled_wait_leaves_the_others_on_time(loop):
    async def main():
        deadlines = Deadlines(asyncio.get_running_loop())
        start = time.monotonic_ns()
        first = asyncio.ensure_future(deadlines.wait_until(start + 50_000_000))
        second = asyncio.ensure_future(deadlines.wait_until(start + 100_000_000))
        # Cancelled as soon as both wait, not after a timed sleep: beside a CPU hog a 5 ms
        # sleep outlasted the first wait's 20 ms.
        await asyncio.sleep(0)
        armed = deadlines._armed  # the timerfd is set for the first, the one cancelled
        first.cancel()
        await asyncio.wait_for(second, 2)
        ended = time.monotonic_ns() - start
        await deadlines.wait_until(time.monotonic_ns() - 1)  # a past deadline: at once
        deadlines.close()
        return first.cancelled(), armed - start, ended

    cancelled, armed, ended = run(loop, main)
    assert cancelled and armed == 50_000_000 - EARLY_NS
    # Never early; late by 150 ms only if the loop's process waited that long for a core.
    assert 100_000_000 <= ended < 250_000_000


@pytest.mark.parametrize("precise", [True, False])
@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_callbacks_run_after_their_deadlines_and_a_cancelled_one_never(loop, precise):
    rng = random.Random(7)

    async def main():
        deadlines = Deadlines(asyncio.get_running_loop(), precise=precise)
        start, ran, done = time.monotonic_ns(), [], asyncio.Event()
        offsets = [rng.randrange(1_000_000, 30_000_000) for _ in range(200)]
        left = len(offsets) - 1

        def due(deadline):
            nonlocal left
            ran.append((time.monotonic_ns(), deadline))
            left -= 1
            if not left:
                done.set()

        handles = [deadlines.call_at(start + o, lambda d=start + o: due(d)) for o in offsets]
        past = deadlines.call_at(start - 1, lambda: due(start - 1))  # due already: not now
        assert ran == []  # never from inside call_at
        held = Held()
        dropped = weakref.ref(held)
        deadlines.call_at(start + 10**9, held.answer).cancel()
        del held
        assert dropped() is None  # a cancelled callback holds nothing until its time
        handles[0].cancel()
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.05)  # the cancelled one's time has passed too
        deadlines.close()
        return ran, start + offsets[0], past

    ran, cancelled_deadline, past = run(loop, main)
    assert len(ran) == 200 and past.done()
    assert all(at >= deadline for at, deadline in ran)  # never early
    assert cancelled_deadline not in [deadline for _, deadline in ran]
