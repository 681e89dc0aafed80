"""_waiting.py: cheap bounded waits (``Waiter``, ``Signal``), on asyncio and trio."""

from __future__ import annotations

import anyio
import pytest

from smartconnect_async._waiting import Signal, Waiter

pytestmark = pytest.mark.anyio


async def test_set_wakes_every_waiter_and_later_waits_return_at_once() -> None:
    signal = Signal()
    woken: list[int] = []

    async def wait(index: int) -> None:
        await signal.wait(5)
        woken.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(50):
            tg.start_soon(wait, index)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        signal.set()
    assert sorted(woken) == list(range(50))
    with anyio.fail_after(1):
        await signal.wait(0.01)  # already set: no wait, no timeout
    assert not signal._waiters


async def test_a_bounded_wait_times_out_alone_and_leaves_nothing_behind() -> None:
    signal = Signal()
    with anyio.fail_after(2):
        with pytest.raises(TimeoutError):
            await signal.wait(0.02)
    assert not signal._waiters
    assert not signal.is_set


async def test_a_cancelled_wait_raises_cancellation_not_timeout() -> None:
    signal = Signal()
    with anyio.move_on_after(0.02) as scope:
        await signal.wait(10)
    assert scope.cancelled_caught
    assert not signal._waiters


async def test_a_waiter_granted_before_its_deadline_is_not_timed_out() -> None:
    waiter = Waiter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter.wait, 0.05)
        await anyio.wait_all_tasks_blocked()
        waiter.grant()
    assert waiter.granted
    await anyio.sleep(0.1)  # its timer, cancelled, never fires into anything


async def test_a_grant_after_the_timeout_is_seen_by_the_waiter() -> None:
    # The caller that gave up must pass on what it was granted (Slots does).
    waiter = Waiter()
    with pytest.raises(TimeoutError):
        await waiter.wait(0.01)
    waiter.grant()
    assert waiter.granted
