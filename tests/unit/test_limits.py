"""The limits an attempt passes before it is sent (``_limits.py``): the rate-limit gate,
the per-company run cap and the connection cap, every wait bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import anyio
import pytest

from smartconnect_async import APITimeoutError, RateLimitError, Timeout
from smartconnect_async._limits import (
    MAX_PAUSE,
    GateClosed,
    LeaseTimeout,
    Limits,
    RateGate,
    Slots,
)
from smartconnect_async._wire import Call


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


@pytest.mark.parametrize("reset", ["inf", "1e400", "nan", "-inf", "Infinity"])
def test_a_reset_that_is_not_a_finite_number_is_ignored(reset: str) -> None:
    gate = RateGate(Clock())
    gate.observe("k", 200, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset})
    assert gate.admit("k") == 0.0


@pytest.mark.parametrize(
    "headers",
    [
        _headers(remaining=0, reset=10**9),
        {"retry-after": "1e9"},
        {"retry-after": format_datetime(datetime.now(timezone.utc) + timedelta(days=365))},
    ],
    ids=["reset in 30 years", "retry-after 1e9 s", "retry-after a year ahead"],
)
def test_a_pause_the_server_asks_for_is_capped_and_the_gate_reopens(
    headers: dict[str, str],
) -> None:
    clock = Clock()
    gate = RateGate(clock)
    gate.observe("k", 429, headers)
    assert gate.admit("k") == pytest.approx(MAX_PAUSE, abs=1.0)
    clock.now += MAX_PAUSE + 1
    assert gate.admit("k") == 0.0


@pytest.mark.anyio
async def test_a_wait_longer_than_the_limit_raises_gate_closed() -> None:
    gate = RateGate()
    gate.observe("k", 429, {"retry-after": "120"})
    with pytest.raises(GateClosed) as caught:
        await gate.wait("k", 60.0)
    assert caught.value.seconds == pytest.approx(120.0, abs=1.0)


RUN = Call("runmap", bytes, is_run=True, idempotent=False, map_key="K")
READ = Call("GetMapList", bytes)
QUICK = Timeout(5, pool=0.05)


async def _hold(limits: Limits, call: Call[object], company: str, until: anyio.Event) -> None:
    async with limits.admitted(call, company, company, QUICK):
        await until.wait()


async def _refused(limits: Limits, call: Call[object], company: str) -> str:
    """The message of the ``APITimeoutError`` that a call of ``company`` gets, unsent."""
    with pytest.raises(APITimeoutError) as info:
        async with limits.admitted(call, company, company, QUICK):
            raise AssertionError("admitted past a full limit")
    assert info.value.sent is False
    return str(info.value)


@pytest.mark.anyio
async def test_a_company_s_runs_beyond_the_cap_wait_within_the_pool_timeout() -> None:
    limits = Limits(max_connections=10, max_concurrent_runs=2)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(_hold, limits, RUN, "C", done)
        await anyio.wait_all_tasks_blocked()
        assert await _refused(limits, RUN, "C") == (
            "runmap for map K: no run slot came free within 0.05s (2 runs of company C "
            "were in flight); nothing was sent"
        )
        # Another company's runs, and reads of the same company, are not held back.
        with anyio.fail_after(1):
            async with limits.admitted(RUN, "D", "D", QUICK):
                pass
            async with limits.admitted(READ, "C", "C", QUICK):
                pass
        done.set()
    with anyio.fail_after(1):  # every slot came back
        async with limits.admitted(RUN, "C", "C", QUICK), limits.admitted(RUN, "C", "C", QUICK):
            pass


@pytest.mark.anyio
async def test_a_released_run_slot_goes_to_the_waiting_run() -> None:
    limits = Limits(max_connections=10, max_concurrent_runs=1)
    release, admitted = anyio.Event(), anyio.Event()

    async def second() -> None:
        async with limits.admitted(RUN, "C", "C", Timeout(5)):
            admitted.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, limits, RUN, "C", release)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert not admitted.is_set()
        release.set()
        with anyio.fail_after(1):
            await admitted.wait()


@pytest.mark.anyio
async def test_requests_beyond_the_pool_wait_within_the_pool_timeout() -> None:
    limits = Limits(max_connections=2, max_concurrent_runs=4)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, limits, READ, "A", done)
        tg.start_soon(_hold, limits, READ, "B", done)
        await anyio.wait_all_tasks_blocked()
        assert await _refused(limits, READ, "C") == (
            "GetMapList: waiting for a connection from the pool timed out: all 2 "
            "connections stayed busy for 0.05s; nothing was sent"
        )
        done.set()


class Leases:
    """Fleet run leases in memory: records what is asked, refuses when ``refuse``."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.events: list[tuple[str, str, str, int, float | None]] = []

    @asynccontextmanager
    async def lease(
        self, scope: str, company: str, limit: int, timeout: float | None
    ) -> AsyncIterator[None]:
        if self.refuse is not None:
            raise LeaseTimeout(self.refuse)
        self.events.append(("take", scope, company, limit, timeout))
        try:
            yield
        finally:
            self.events.append(("give back", scope, company, limit, timeout))


@pytest.mark.anyio
@pytest.mark.parametrize("fleet", [False, True], ids=["process", "fleet"])
async def test_a_run_that_waits_for_a_connection_gives_its_run_slot_back(fleet: bool) -> None:
    leases = Leases()
    limits = Limits(max_connections=1, max_concurrent_runs=1, run_leases=leases if fleet else None)
    done = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, limits, READ, "A", done)
        await anyio.wait_all_tasks_blocked()
        assert "connections stayed busy" in await _refused(limits, RUN, "C")
        done.set()
    assert [event[0] for event in leases.events] == (["take", "give back"] if fleet else [])
    with anyio.fail_after(1):
        async with limits.admitted(RUN, "C", "C", QUICK):
            pass


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["raises", "cancelled"])
async def test_an_attempt_that_ends_early_gives_every_slot_back(how: str) -> None:
    limits = Limits(max_connections=1, max_concurrent_runs=1)
    if how == "raises":
        with pytest.raises(KeyError):
            async with limits.admitted(RUN, "C", "C", QUICK):
                raise KeyError("boom")
    else:
        with anyio.move_on_after(0.01):
            async with limits.admitted(RUN, "C", "C", QUICK):
                await anyio.sleep_forever()
    with anyio.fail_after(1):
        async with limits.admitted(RUN, "C", "C", QUICK):
            pass


@pytest.mark.anyio
async def test_a_run_takes_a_fleet_lease_after_its_run_slot_and_a_read_none() -> None:
    leases = Leases()
    limits = Limits(max_connections=1, max_concurrent_runs=3, run_leases=leases, scope="U")
    async with limits.admitted(READ, "C", "C", QUICK):
        assert leases.events == []
    async with limits.admitted(RUN, "C", "C", QUICK):
        assert leases.events == [("take", "U", "C", 3, 0.05)]
        assert limits._runs["C"].free == 2  # the slot in this process is held too
    assert [event[0] for event in leases.events] == ["take", "give back"]
    assert limits._runs["C"].free == 3


@pytest.mark.anyio
async def test_no_fleet_lease_in_time_is_an_unsent_timeout_and_frees_the_run_slot() -> None:
    limits = Limits(
        max_connections=1,
        max_concurrent_runs=1,
        run_leases=Leases(refuse="Redis cannot be reached: ConnectionError"),
    )
    assert await _refused(limits, RUN, "C") == (
        "runmap for map K: no fleet run lease for company C within 0.05s (Redis cannot be "
        "reached: ConnectionError); nothing was sent"
    )
    assert limits._runs["C"].free == 1


@pytest.mark.anyio
async def test_a_cancelled_wait_takes_no_slot() -> None:
    limits = Limits(max_connections=1, max_concurrent_runs=1)
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, limits, READ, "A", release)
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0.01):
            async with limits.admitted(READ, "B", "B", Timeout(5)):
                raise AssertionError("admitted past the pool")
        release.set()
    with anyio.fail_after(1):
        async with limits.admitted(READ, "B", "B", QUICK):
            pass


@pytest.mark.anyio
async def test_a_closed_gate_longer_than_the_pool_timeout_is_a_rate_limit_error() -> None:
    limits = Limits(max_connections=1, max_concurrent_runs=1)
    limits.rate_gate.observe("C", 429, {"retry-after": "30"})
    with pytest.raises(RateLimitError) as info:
        async with limits.admitted(READ, "C", "C", Timeout(5)):
            raise AssertionError("admitted through a closed gate")
    assert info.value.status_code == 429
    assert info.value.retry_after == pytest.approx(30, abs=1)
    assert "nothing was sent" in str(info.value)
    with anyio.fail_after(1):  # the gate is per key, and the pool slot was not taken
        async with limits.admitted(READ, "D", "D", QUICK):
            pass


# ---- connections shared fairly between companies ------------------------------------


async def _served_in_order(slots: Slots, order: list[str], name: str) -> None:
    await slots.acquire(name[0], 5)
    order.append(name)
    slots.release(name[0])


@pytest.mark.anyio
async def test_companies_take_turns_for_a_busy_pool() -> None:
    slots = Slots(1)
    await slots.acquire("A", None)
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        for name in ("A2", "A3", "A4", "B1"):  # a burst of A queued before B's one call
            tg.start_soon(_served_in_order, slots, order, name)
            await anyio.wait_all_tasks_blocked()
        slots.release("A")
    assert order == ["B1", "A2", "A3", "A4"]  # B waited for the call in flight, no more
    assert slots.free == 1


@pytest.mark.anyio
async def test_a_slot_is_kept_for_a_company_under_way_that_holds_none() -> None:
    slots = Slots(2)
    slots.begin("B")  # B's call waits for its token, say
    await slots.acquire("A", None)
    with pytest.raises(TimeoutError):
        await slots.acquire("A", 0.05)  # the last free slot is B's
    with anyio.fail_after(1):
        await slots.acquire("B", 0.05)
    slots.release("B")
    slots.end("B")
    with anyio.fail_after(1):
        await slots.acquire("A", 0.05)  # nothing is kept once B's calls are over
    assert slots.free == 0


@pytest.mark.anyio
async def test_a_waiter_gets_the_kept_slot_once_its_company_s_calls_end() -> None:
    slots = Slots(1)
    slots.begin("B")
    got = anyio.Event()

    async def a() -> None:
        await slots.acquire("A", 5)
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(a)
        await anyio.wait_all_tasks_blocked()
        assert not got.is_set()
        slots.end("B")
        with anyio.fail_after(1):
            await got.wait()
    slots.release("A")
    assert slots.free == 1


@pytest.mark.anyio
async def test_more_companies_under_way_than_slots_are_all_served() -> None:
    slots = Slots(2)
    companies = [f"C{i}" for i in range(6)]
    for company in companies:
        slots.begin(company)
    served: list[str] = []

    async def call(company: str) -> None:
        await slots.acquire(company, 5)
        served.append(company)
        await anyio.sleep(0.001)
        slots.release(company)
        slots.end(company)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for company in companies:
                tg.start_soon(call, company)
    assert sorted(served) == companies
    assert slots.free == 2


@pytest.mark.anyio
async def test_waits_that_give_up_take_no_slot_and_pass_a_late_grant_on() -> None:
    slots = Slots(1)
    await slots.acquire("A", None)
    with pytest.raises(TimeoutError):
        await slots.acquire("B", 0.01)
    with anyio.move_on_after(0.01):
        await slots.acquire("C", None)
    slots.release("A")
    assert slots.free == 1  # nobody was left waiting for it
    with anyio.fail_after(1):
        await slots.acquire("B", 0.05)
    slots.release("B")


def test_a_waiter_left_in_a_closed_event_loop_takes_no_slot() -> None:
    import asyncio

    slots = Slots(1)
    first = asyncio.new_event_loop()
    first.run_until_complete(slots.acquire("A", None))  # held
    stranded = first.create_task(slots.acquire("B", None))
    first.run_until_complete(asyncio.sleep(0))  # B waits in line
    first.close()  # without cancelling it
    slots.release("A")  # would go to B, whose loop is gone
    assert slots.free == 1
    assert not stranded.done()

    async def again() -> None:
        await slots.acquire("C", 0.1)

    asyncio.run(again())
