"""The rate-limit gate and the per-company run slots (``_limits.py``)."""

from __future__ import annotations

import anyio
import pytest

from smartconnect_async._limits import GateClosed, RateGate, RunSlots, acquire_within


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
    slots = RunSlots(1)
    semaphore = slots.for_key("C")
    await acquire_within(semaphore, None)
    with pytest.raises(TimeoutError):
        await acquire_within(semaphore, 0.05)
    semaphore.release()
    with anyio.fail_after(1):
        await acquire_within(semaphore, 0.05)


@pytest.mark.anyio
async def test_a_slot_released_during_the_wait_is_taken() -> None:
    semaphore = anyio.Semaphore(1)
    await acquire_within(semaphore, None)
    taken = anyio.Event()

    async def waiter() -> None:
        await acquire_within(semaphore, 5.0)
        taken.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not taken.is_set()
        semaphore.release()
        with anyio.fail_after(1):
            await taken.wait()
    assert semaphore.value == 0  # the waiter holds it


@pytest.mark.anyio
async def test_a_cancelled_wait_raises_cancellation_and_takes_no_slot() -> None:
    semaphore = anyio.Semaphore(1)
    await acquire_within(semaphore, None)
    with anyio.move_on_after(0.05) as scope:
        await acquire_within(semaphore, 5.0)  # the outer scope ends first: no TimeoutError
    assert scope.cancelled_caught
    semaphore.release()
    assert semaphore.value == 1  # nothing was taken by the cancelled waiter
    await acquire_within(semaphore, 0.05)
    assert semaphore.value == 0


def test_run_slots_need_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_concurrent_runs"):
        RunSlots(0)
