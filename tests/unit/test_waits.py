"""_waits: the latch (a one-shot event whose waits may be bounded) and the shared
deadline timer, on asyncio and trio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from smartconnect_async import _waits
from smartconnect_async._limits import Slots
from smartconnect_async._waits import Latch, _waking

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    latch = Latch()
    woken: list[int] = []

    async def waiter(number: int, timeout: float | None) -> None:
        await latch.wait(timeout)
        woken.append(number)

    async with anyio.create_task_group() as tg:
        for number in range(100):
            tg.start_soon(waiter, number, None if number % 2 else 30.0)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        latch.set()
    assert sorted(woken) == list(range(100))
    assert latch.is_set
    with anyio.fail_after(1):
        await latch.wait(0)  # set: no wait, not even a timed-out one
    latch.set()  # a second set changes nothing


@pytest.mark.parametrize("kind", ["latch", "slots"])
async def test_bounded_waits_time_out_by_their_own_deadlines(kind: str) -> None:
    """One timer serves every deadline (``Deadlines``), for a latch and for slots."""
    slots = Slots(1)
    latch = Latch()
    wait: Callable[[float | None], Awaitable[None]]
    if kind == "latch":
        wait, end_waits = latch.wait, latch.set
    else:
        await slots.acquire(None)
        wait, end_waits = slots.acquire, slots.release
    outcomes: list[tuple[str, str]] = []
    two_timed_out = anyio.Event()

    async def waiter(name: str, timeout: float | None) -> None:
        try:
            await wait(timeout)
        except TimeoutError:
            outcomes.append((name, "timed out"))
            if len(outcomes) == 2:
                two_timed_out.set()
        else:
            outcomes.append((name, "done waiting"))

    async with anyio.create_task_group() as tg:
        # The later deadline arrives first, the earlier one after it, and one waits
        # without a limit: the two with a deadline time out, the earlier one first.
        tg.start_soon(waiter, "long", 0.3)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "short", 0.05)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "patient", None)
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(2):
            await two_timed_out.wait()
        assert outcomes == [("short", "timed out"), ("long", "timed out")]
        end_waits()  # the patient waiter is woken, or gets the slot
    assert outcomes[2:] == [("patient", "done waiting")]
    assert slots.free == (0 if kind == "slots" else 1)  # the patient waiter holds it


async def test_a_cancelled_wait_raises_cancellation_not_timeout() -> None:
    latch = Latch()
    with anyio.move_on_after(0.05) as scope:
        await latch.wait(5.0)  # the outer scope ends first: no TimeoutError
    assert scope.cancelled_caught
    latch.set()
    await latch.wait(5.0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio schedules in any order
async def test_set_wakes_waiters_in_order_of_arrival() -> None:
    """A company's calls waiting for its token go on first come, first served."""
    latch = Latch()
    woken: list[int] = []

    async def waiter(number: int) -> None:
        await latch.wait(30.0 if number % 2 else None)
        woken.append(number)

    async with anyio.create_task_group() as tg:
        for number in range(50):
            tg.start_soon(waiter, number)
            await anyio.wait_all_tasks_blocked()
        latch.set()
    assert woken == list(range(50))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio wakes an event's waiters together
async def test_latches_set_together_wake_one_waiter_per_loop_turn_in_turn() -> None:
    """Two companies' tokens arriving together: neither company's crowd holds the event
    loop; one call goes on per turn of the loop (what else is ready runs between them),
    the companies taking turns, each company's calls in order of arrival."""
    latches = {"A": Latch(), "B": Latch()}
    woken: list[str] = []
    loop = asyncio.get_running_loop()

    async def waiter(name: str) -> None:
        await latches[name[0]].wait(30.0 if name[1] in "13" else None)
        woken.append(name)

    def turn(left: int) -> None:
        woken.append("|")  # once per turn of the loop
        if left:
            loop.call_soon(turn, left - 1)

    async with anyio.create_task_group() as tg:
        for name in ("A0", "A1", "A2", "A3", "B0", "B1", "B2"):
            tg.start_soon(waiter, name)
            await anyio.wait_all_tasks_blocked()
        latches["A"].set()
        latches["B"].set()
        loop.call_soon(turn, 8)
    # Each set wakes its first waiter at once; after that, one per turn.
    assert "".join(woken).rstrip("|") == "A0B0|A1|B1|A2|B2|A3"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_busy_loop_still_wakes_a_large_crowd_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiters wake one per turn only for ``PACED_FOR`` seconds, then twice as many each
    turn: a loop whose every turn takes 2 ms (other work) wakes a crowd of 1,000 within
    a few turns more than those seconds take, not in 1,000 turns."""
    monkeypatch.setattr(_waits, "PACED_FOR", 0.02)  # 10 turns of 2 ms at most
    latch = Latch()
    loop = asyncio.get_running_loop()
    woken = turns = 0

    async def waiter() -> None:
        nonlocal woken
        await latch.wait()
        woken += 1

    def other_work() -> None:
        nonlocal turns
        turns += 1
        time.sleep(0.002)
        if woken < 1000:
            loop.call_soon(other_work)

    waits = [asyncio.ensure_future(waiter()) for _ in range(1000)]
    await asyncio.sleep(0)  # all of them wait
    latch.set()
    loop.call_soon(other_work)
    await asyncio.gather(*waits)
    assert 2 < turns <= 10 + 12  # then 2, 4, ... 512 a turn: 10 turns more


def test_waits_cancelled_before_or_after_set_are_passed_over_and_the_rest_woken() -> None:
    async def main() -> list[str]:
        latch = Latch()
        waits = [asyncio.ensure_future(latch.wait(30.0 if i % 2 else None)) for i in range(6)]
        await asyncio.sleep(0)  # all six wait
        waits[0].cancel()  # cancelled, not run yet: still in the latch when it is set
        waits[3].cancel()
        latch.set()
        waits[4].cancel()  # cancelled before its turn came
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        return [type(outcome).__name__ for outcome in outcomes]

    assert asyncio.run(main()) == [
        "CancelledError",
        "NoneType",
        "NoneType",
        "CancelledError",
        "CancelledError",
        "NoneType",
    ]


async def _set_and_wake(latch: Latch, waiters: int = 3) -> None:
    """Set ``latch`` while ``waiters`` new waits wait on it; return once all have woken."""
    waits = [asyncio.ensure_future(latch.wait()) for _ in range(waiters)]
    await asyncio.sleep(0)  # they all wait
    latch.set()
    await asyncio.wait_for(asyncio.gather(*waits), 2)


def test_a_wait_left_in_a_closed_loop_does_not_stop_the_others_waking() -> None:
    latch = Latch()
    closed = asyncio.new_event_loop()
    left = closed.create_task(latch.wait())
    closed.run_until_complete(asyncio.sleep(0))  # it waits; then its loop is closed
    closed.close()
    asyncio.run(_set_and_wake(latch))
    assert not left.done()  # its loop will never run it


def test_turns_end_and_a_closed_loop_leaves_none_behind() -> None:
    """Latches set in an event loop that is closed before their waiters' turns came are
    forgotten when a latch is next set; turns that ran out leave nothing either."""
    latch = Latch()
    left: list[asyncio.Future[None]] = []

    async def set_with_waiters_left() -> None:
        left.extend(asyncio.ensure_future(latch.wait()) for _ in range(3))
        await asyncio.sleep(0)  # the three wait
        latch.set()  # wakes the first; the other two wait for turns this loop won't run

    closed = asyncio.new_event_loop()
    closed.run_until_complete(set_with_waiters_left())
    closed.close()
    assert closed in _waking
    assert [wait.done() for wait in left] == [True, False, False]

    asyncio.run(_set_and_wake(Latch()))
    assert closed not in _waking
    assert all(loop.is_closed() for loop in _waking)  # the run's own turns ended


async def test_waits_that_gave_up_leave_nothing_behind() -> None:
    latch = Latch()
    for _ in range(200):
        with pytest.raises(TimeoutError):
            await latch.wait(0)
        with anyio.move_on_after(0):
            await latch.wait(None)
    assert len(latch._futures) == 0
