"""The rate-limit gate and the per-company run slots (``_limits.py``)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

from smartconnect_async._limits import GateClosed, RateGate, RunSlots, Slots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _headers(remaining: int, reset: int, limit: int = 10) -> dict[str, str]:
    return {
        "x-rate-limit-limit": str(limit),
        "x-rate-limit-remaining": str(remaining),
        "x-rate-limit-reset": str(reset),
    }


def test_nothing_known_admits_everything() -> None:
    gate = RateGate(Clock())
    assert [gate.admit("k") for _ in range(100)] == [0.0] * 100


def test_budget_is_spent_by_admissions_not_only_by_answers() -> None:
    clock = Clock()
    gate = RateGate(clock)
    gate.observe("k", 200, _headers(remaining=3, reset=2))
    # Three requests may go before any of them is answered; the fourth waits for the
    # end of the window.
    assert [gate.admit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert gate.admit("k") == pytest.approx(2.0)


def test_a_lower_remaining_in_the_same_window_wins() -> None:
    clock = Clock()
    gate = RateGate(clock)
    gate.observe("k", 200, _headers(remaining=5, reset=2))
    clock.now += 0.2
    gate.observe("k", 200, _headers(remaining=1, reset=2))  # others spent the budget
    assert gate.admit("k") == 0.0
    assert gate.admit("k") > 0


def test_the_next_window_allows_the_limit() -> None:
    clock = Clock()
    gate = RateGate(clock)
    gate.observe("k", 200, _headers(remaining=0, reset=1, limit=4))
    assert gate.admit("k") == pytest.approx(1.0)
    clock.now += 1.0
    assert [gate.admit("k") for _ in range(4)] == [0.0] * 4
    assert gate.admit("k") == pytest.approx(1.0)


def test_keys_are_independent() -> None:
    gate = RateGate(Clock())
    gate.observe("a", 200, _headers(remaining=0, reset=5))
    assert gate.admit("a") > 0
    assert gate.admit("b") == 0.0


def test_retry_after_closes_the_gate() -> None:
    clock = Clock()
    gate = RateGate(clock)
    gate.observe("k", 429, {"retry-after": "3"})
    assert gate.admit("k") == pytest.approx(3.0)
    clock.now += 3.0
    assert gate.admit("k") == 0.0


def test_retry_after_on_a_success_is_ignored() -> None:
    gate = RateGate(Clock())
    gate.observe("k", 200, {"retry-after": "30"})
    assert gate.admit("k") == 0.0


@pytest.mark.anyio
async def test_a_wait_longer_than_the_limit_raises_gate_closed() -> None:
    gate = RateGate()
    gate.observe("k", 429, {"retry-after": "120"})
    with pytest.raises(GateClosed) as caught:
        await gate.wait("k", 60.0)
    assert caught.value.seconds == pytest.approx(120.0, abs=1.0)


@pytest.mark.anyio
async def test_run_slot_wait_is_bounded() -> None:
    slots = RunSlots(1).for_key("C")
    await slots.acquire(None)
    with pytest.raises(TimeoutError):
        await slots.acquire(0.05)
    slots.release()
    with anyio.fail_after(1):
        await slots.acquire(0.05)
    assert slots.free == 0


def test_each_company_has_its_own_slots() -> None:
    run_slots = RunSlots(2)
    assert run_slots.for_key("A") is run_slots.for_key("A")
    assert run_slots.for_key("A") is not run_slots.for_key("B")
    assert run_slots.for_key("B").free == 2


@pytest.mark.anyio
async def test_a_slot_released_during_the_wait_is_taken() -> None:
    slots = Slots(1)
    await slots.acquire(None)
    taken = anyio.Event()

    async def waiter() -> None:
        await slots.acquire(5.0)
        taken.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not taken.is_set()
        slots.release()
        with anyio.fail_after(1):
            await taken.wait()
    assert slots.free == 0  # the waiter holds it


@pytest.mark.anyio
async def test_slots_go_to_waiters_in_order_of_arrival() -> None:
    slots = Slots(1)
    await slots.acquire(None)
    order: list[int] = []

    async def waiter(number: int) -> None:
        await slots.acquire(5.0)
        order.append(number)
        slots.release()

    async with anyio.create_task_group() as tg:
        for number in range(5):
            tg.start_soon(waiter, number)
            await anyio.wait_all_tasks_blocked()  # queued in this order
        slots.release()
    assert order == [0, 1, 2, 3, 4]
    assert slots.free == 1


def _note_turn(slots: Slots, order: list[str]) -> Callable[[str, str], Awaitable[None]]:
    """A waiter for ``slots``: takes a slot for ``group``, notes ``name`` in ``order``,
    and gives the slot back at once."""

    async def waiter(name: str, group: str) -> None:
        await slots.acquire(5.0, group)
        order.append(name)
        slots.release(group)

    return waiter


async def _service_order(holder: str | None, queued: list[tuple[str, str]]) -> list[str]:
    """Who gets a one-slot ``Slots`` in turn: ``holder``'s group holds it while the
    ``(name, group)`` waiters queue in this order, then releases it; each waiter releases
    it again at once."""
    slots = Slots(1)
    await slots.acquire(None, holder)
    order: list[str] = []
    waiter = _note_turn(slots, order)
    async with anyio.create_task_group() as tg:
        for name, group in queued:
            tg.start_soon(waiter, name, group)
            await anyio.wait_all_tasks_blocked()
        slots.release(holder)
    assert slots.free == 1
    return order


@pytest.mark.anyio
async def test_groups_take_turns_for_released_slots() -> None:
    # A burst of company A, then one call each of B and C: B and C wait one turn each,
    # not behind the whole burst; A's calls keep their order.
    queued = [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("c1", "C")]
    assert await _service_order(None, queued) == ["a1", "b1", "c1", "a2", "a3"]


@pytest.mark.anyio
async def test_the_group_that_releases_goes_to_the_back_of_the_line() -> None:
    # A holds the slot without having waited: when it gives it back, B goes first.
    queued = [("a2", "A"), ("a3", "A"), ("b1", "B")]
    assert await _service_order("A", queued) == ["b1", "a2", "a3"]


@pytest.mark.anyio
async def test_a_group_whose_waiters_gave_up_loses_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire(None)
    order: list[str] = []

    async def waiter(name: str, group: str, timeout: float) -> None:
        try:
            await slots.acquire(timeout, group)
        except TimeoutError:
            order.append(f"{name} timed out")
            return
        order.append(name)
        slots.release(group)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a1", "A", 0.05)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "b1", "B", 5.0)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "a2", "A", 5.0)
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(0.2)  # a1 gives up; A's line now starts with a2
        slots.release()
    assert order == ["a1 timed out", "a2", "b1"]
    assert slots.free == 1


@pytest.mark.anyio
async def test_a_cancelled_wait_raises_cancellation_and_takes_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire(None)
    with anyio.move_on_after(0.05) as scope:
        await slots.acquire(5.0)  # the outer scope ends first: no TimeoutError
    assert scope.cancelled_caught
    slots.release()
    assert slots.free == 1  # nothing was taken by the cancelled waiter
    await slots.acquire(0.05)
    assert slots.free == 0


def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    async def scenario() -> None:
        slots = Slots(1)
        await slots.acquire(None)
        first = asyncio.ensure_future(slots.acquire(5.0))
        second = asyncio.ensure_future(slots.acquire(5.0))
        await asyncio.sleep(0)
        slots.release()  # handed to the first waiter...
        first.cancel()  # ...cancelled before it could run
        await asyncio.wait_for(second, 1)
        assert first.cancelled()
        assert slots.free == 0  # the second waiter holds the only slot
        slots.release()
        assert slots.free == 1

    asyncio.run(scenario())


@pytest.mark.parametrize("first_loop_end", ["run", "close"])
def test_slot_deadlines_hold_on_a_second_event_loop(first_loop_end: str) -> None:
    slots = Slots(1)

    async def hold_and_leave_a_waiter() -> None:
        await slots.acquire(None)
        # Arms the timer on this loop, for a deadline before the next loop's wait ends.
        waiter = asyncio.ensure_future(slots.acquire(0.1))
        await asyncio.sleep(0)
        assert not waiter.done()

    if first_loop_end == "run":
        asyncio.run(hold_and_leave_a_waiter())  # cancels the waiter as it ends
    else:
        first = asyncio.new_event_loop()
        first.run_until_complete(hold_and_leave_a_waiter())
        first.close()  # the waiter is neither served nor cancelled

    async def time_out_then_release() -> None:
        with pytest.raises(TimeoutError):
            await slots.acquire(0.2)  # its own deadline, on this loop
        assert slots.free == 0  # still held by the first loop's caller
        slots.release()  # the first loop's waiter cannot take it
        assert slots.free == 1

    asyncio.run(asyncio.wait_for(time_out_then_release(), 2))


def test_served_waiters_leave_no_deadlines_behind() -> None:
    async def scenario() -> int:
        slots = Slots(1)
        await slots.acquire(None)
        waiters = []
        for _ in range(1000):
            waiters.append(asyncio.ensure_future(slots.acquire(60.0)))
            await asyncio.sleep(0)
            slots.release()  # serves the one waiting
        await asyncio.gather(*waiters)
        return len(slots._deadlines)

    assert asyncio.run(scenario()) <= 64 + 2


# ---- slots kept for announced groups ----------------------------------------------


async def _taken_at_once(slots: Slots, group: str) -> bool:
    """Whether ``group`` gets a slot without waiting (it keeps it if so)."""
    try:
        with anyio.fail_after(0.05):
            await slots.acquire(None, group)
    except TimeoutError:
        return False
    return True


@pytest.mark.anyio
async def test_a_free_slot_is_kept_for_an_announced_group_holding_none() -> None:
    slots = Slots(3)
    slots.announce("B")  # B's call waits for its token, say
    assert await _taken_at_once(slots, "A")
    assert await _taken_at_once(slots, "A")
    assert not await _taken_at_once(slots, "A")  # the last free slot is B's
    assert await _taken_at_once(slots, "B")
    assert slots.free == 0


@pytest.mark.anyio
async def test_no_slot_is_kept_for_a_paused_group() -> None:
    slots = Slots(2)
    slots.announce("B")
    slots.announce("B")
    slots.pause("B")  # one of B's calls backs off: B asks for nothing meanwhile
    assert await _taken_at_once(slots, "A")
    slots.resume("B")
    assert not await _taken_at_once(slots, "A")  # the last one is B's again
    assert await _taken_at_once(slots, "B")


@pytest.mark.parametrize(("do", "undo"), [("announce", "withdraw"), ("pause", "resume")])
def test_undoing_more_often_than_doing_is_refused(do: str, undo: str) -> None:
    slots = Slots(1)
    getattr(slots, do)("B")
    getattr(slots, undo)("B")
    with pytest.raises(RuntimeError, match="'B' was undone more often than done"):
        getattr(slots, undo)("B")
    assert slots._kept == 0
    assert not slots._announced
    assert not slots._paused


@pytest.mark.anyio
async def test_one_slot_is_kept_however_often_a_group_is_announced() -> None:
    slots = Slots(3)
    for _ in range(5):
        slots.announce("B")
    assert await _taken_at_once(slots, "A")
    assert await _taken_at_once(slots, "A")
    assert not await _taken_at_once(slots, "A")
    assert slots.free == 1


@pytest.mark.anyio
async def test_no_slot_is_kept_for_a_group_that_holds_one() -> None:
    slots = Slots(3)
    slots.announce("B")
    assert await _taken_at_once(slots, "B")
    assert await _taken_at_once(slots, "A")
    assert await _taken_at_once(slots, "A")  # B holds one: nothing kept for it
    slots.release("B")  # B holds none again, and is still announced
    assert not await _taken_at_once(slots, "A")
    assert await _taken_at_once(slots, "B")


@pytest.mark.anyio
@pytest.mark.parametrize("change", ["B withdraws", "A is announced"])
async def test_a_waiter_gets_the_kept_slot_once_it_may(change: str) -> None:
    slots = Slots(1)
    slots.announce("B")
    taken = anyio.Event()

    async def waiter() -> None:
        await slots.acquire(5.0, "A")
        taken.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not taken.is_set()  # the one free slot is kept for B
        if change == "B withdraws":
            slots.withdraw("B")  # B's call ended without asking
        else:
            slots.announce("A")  # A holds none either: it may take a free slot
        with anyio.fail_after(1):
            await taken.wait()
    assert slots.free == 0


@pytest.mark.anyio
async def test_a_released_slot_goes_past_waiters_to_the_group_it_is_kept_for() -> None:
    slots = Slots(1)
    await slots.acquire(None, "A")
    slots.announce("B")
    order: list[str] = []
    waiter = _note_turn(slots, order)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "a2", "A")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "c1", "C")
        await anyio.wait_all_tasks_blocked()
        slots.release("A")  # kept for B: neither A nor C may take it
        await anyio.wait_all_tasks_blocked()
        assert order == []
        assert slots.free == 1
        tg.start_soon(waiter, "b1", "B")  # B asks at last
        await anyio.wait_all_tasks_blocked()
        slots.withdraw("B")
    # B first; then, with nothing kept, the others in their turn order (A, having
    # released the slot, behind C).
    assert order == ["b1", "c1", "a2"]
    assert slots.free == 1


@pytest.mark.anyio
async def test_more_announced_groups_than_slots_still_all_get_served() -> None:
    slots = Slots(2)
    groups = [f"G{index}" for index in range(6)]
    for group in groups:
        slots.announce(group)
    served: list[str] = []

    async def call(group: str) -> None:
        await slots.acquire(5.0, group)
        await anyio.sleep(0.01)
        served.append(group)
        slots.release(group)
        slots.withdraw(group)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for group in groups:
                tg.start_soon(call, group)
    assert sorted(served) == groups
    assert slots.free == 2
    assert await _taken_at_once(slots, "A")
    assert await _taken_at_once(slots, "A")  # nothing kept any more


def _check_slots(slots: Slots, limit: int, announced: Counter[str], paused: Counter[str]) -> None:
    """What must hold of ``slots`` between any two steps of its users."""
    held = slots._held
    assert slots._free >= 0
    assert all(count > 0 for count in held.values())
    assert slots._free + sum(held.values()) == limit  # no slot lost or made up
    assert slots._announced == +announced
    assert slots._paused == +paused
    assert slots._kept == sum(
        1 for group in slots._announced if group not in held and group not in slots._paused
    )
    if slots._free:  # nobody who may take a free slot is left waiting
        for group, line in slots._queues.items():
            waiting = any(not waiter.done() for waiter in line)
            assert not (waiting and slots._may_take(group)), f"{group} left waiting"


@pytest.mark.anyio
@pytest.mark.parametrize("seed", range(50))
async def test_slots_keep_their_invariants_under_random_use(seed: int) -> None:
    # Callers of several groups announce (most of them), acquire (some with a timeout,
    # some inside a scope that is cancelled), hold, release and withdraw; some announce
    # and withdraw another group, or pause and resume a group, meanwhile. After every
    # step and at the end the books must balance.
    rng = random.Random(seed)
    limit = rng.randint(1, 3)
    slots = Slots(limit)
    groups = ["A", "B", "C", "D"][: rng.randint(2, 4)]
    announced: Counter[str] = Counter()
    paused: Counter[str] = Counter()

    def check() -> None:
        _check_slots(slots, limit, announced, paused)

    async def step() -> None:
        await anyio.sleep(rng.choice([0, 0, 0.001, 0.003]))
        check()

    async def meanwhile(
        start: Callable[[str], None],
        stop: Callable[[str], None],
        counts: Counter[str],
        group: str,
    ) -> None:
        """``start`` for ``group`` (noted in ``counts``), a step, then ``stop``."""
        start(group)
        counts[group] += 1
        try:
            await step()
        finally:
            stop(group)
            counts[group] -= 1

    async def caller(group: str) -> None:
        announces = rng.random() < 0.7  # else it uses the slots as a plain semaphore
        if announces:
            slots.announce(group)
            announced[group] += 1
        try:
            await step()
            if rng.random() < 0.3:
                await meanwhile(slots.announce, slots.withdraw, announced, rng.choice(groups))
            if rng.random() < 0.3:  # backs off, say, or waits for a token that does
                await meanwhile(slots.pause, slots.resume, paused, rng.choice(groups))
            with anyio.move_on_after(rng.choice([None, None, 0.002, 0.01])):
                try:
                    await slots.acquire(rng.choice([None, 0.0, 0.002, 0.02]), group)
                except TimeoutError:
                    return
                try:
                    check()
                    await step()
                finally:
                    slots.release(group)
            check()
        finally:
            if announces:
                slots.withdraw(group)
                announced[group] -= 1
            check()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(rng.randint(3, 12)):
                tg.start_soon(caller, rng.choice(groups))
                if rng.random() < 0.5:
                    await anyio.lowlevel.checkpoint()
    check()
    assert slots.free == limit
    assert not slots._held
    assert not slots._announced
    assert not slots._paused
    assert not any(not waiter.done() for line in slots._queues.values() for waiter in line)


def test_run_slots_need_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_concurrent_runs"):
        RunSlots(0)
