"""Cancellation at each point of a request's life: waiting for the pool, waiting for the
answer, mid-stream, mid-token-refresh, and a failing task group cancelling its siblings.
After each: no connection left in use, the token cache sound, and the next call (which
must get its own answer, not a stale one) succeeds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
from integration_support import (
    LoopbackServer,
    MakeClient,
    PoolIdle,
    connections_in_use,
    source_rows,
)

from smartconnect_async import Column, SmartConnect, UnknownMapError
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, IMPORT_SALES_ORDERS_KEY, Emulator

pytestmark = [pytest.mark.anyio, pytest.mark.emulator(rows=60)]

KEY = IMPORT_CUSTOMERS_KEY


async def _follow_up_is_correct(sc: SmartConnect, emulator: Emulator) -> None:
    """Calls on the same pool get their own, correct answers."""
    columns = await sc.maps.columns(IMPORT_SALES_ORDERS_KEY)
    assert columns == [
        Column(c.name, c.required) for c in emulator.maps[IMPORT_SALES_ORDERS_KEY].columns
    ]
    assert (await sc.data.get_all(KEY)).rows == source_rows(emulator, KEY)
    assert len(await sc.maps.list()) == 6


async def test_cancelled_while_waiting_for_the_pool(
    make_client: MakeClient, emulator: Emulator, assert_pool_idle: PoolIdle
) -> None:
    sc = make_client(max_connections=1)
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 500, "count": 1, "endpoints": ["GetMapList"]}])
    async with anyio.create_task_group() as group:
        group.start_soon(sc.maps.list)  # holds the only connection for 500 ms
        await anyio.sleep(0.05)
        with anyio.move_on_after(0.1) as scope:
            await sc.data.get_all(KEY)
        assert scope.cancelled_caught
        assert connections_in_use(sc) == 1  # the slow call, not the cancelled waiter
    await assert_pool_idle(sc)
    assert "GetAllData" not in emulator.counters.calls  # the waiter never sent anything
    await _follow_up_is_correct(sc, emulator)
    await assert_pool_idle(sc)


@pytest.mark.parametrize("endpoint", ["GetMapColumns", "GetAllData", "runmap"])
async def test_cancelled_while_waiting_for_the_answer(
    sc: SmartConnect,
    emulator: Emulator,
    server: LoopbackServer,
    assert_pool_idle: PoolIdle,
    endpoint: str,
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 250, "count": 1, "endpoints": [endpoint]}])
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "GetMapColumns": lambda: sc.maps.columns(KEY),
        "GetAllData": lambda: sc.data.get_all(KEY),
        "runmap": lambda: sc.runs.run(KEY),
    }
    call = calls[endpoint]
    with anyio.move_on_after(0.08) as scope:
        await call()
    assert scope.cancelled_caught
    assert connections_in_use(sc) == 0
    # The answer of the cancelled request must not be read as the answer of the next
    # one: the next calls get their own (a connection left mid-answer would mix them).
    await _follow_up_is_correct(sc, emulator)
    await assert_pool_idle(sc)
    # Sent once (the follow-up reads columns and data once more); a run is never re-sent,
    # and the server, which got it, ran it.
    assert emulator.counters.calls[endpoint] == (1 if endpoint == "runmap" else 2)
    assert len(emulator.runs) == (1 if endpoint == "runmap" else 0)


@pytest.mark.emulator(rows={"Customers": 200_000})
@pytest.mark.parametrize("how", ["break", "aclose", "cancel"])
async def test_stopping_mid_stream_releases_the_connection(
    sc: SmartConnect,
    emulator: Emulator,
    server: LoopbackServer,
    assert_pool_idle: PoolIdle,
    how: str,
) -> None:
    seen = 0
    with anyio.fail_after(10):
        if how == "break":
            async with sc.data.iter_rows(KEY) as stream:
                async for row in stream:
                    seen += 1
                    if seen == 500:
                        assert row["AccountNumber"] == "CUST500"
                        break
        elif how == "aclose":
            stream = sc.data.iter_rows(KEY)
            async for _ in stream:
                seen += 1
                if seen == 300:
                    break
            await stream.aclose()
        else:
            with anyio.move_on_after(0.2) as scope:
                async with sc.data.iter_rows(KEY) as stream:
                    async for _ in stream:
                        seen += 1
            assert scope.cancelled_caught
            assert 0 < seen < 200_000
    assert connections_in_use(sc) == 0
    await assert_pool_idle(sc)
    columns = await sc.maps.columns(KEY)
    assert columns[0].name == "AccountNumber"
    assert len(await sc.maps.list()) == 6
    assert emulator.counters.calls["GetAllData"] == 1


async def test_cancelled_mid_refresh_leaves_the_cache_sound(
    sc: SmartConnect, emulator: Emulator, assert_pool_idle: PoolIdle
) -> None:
    emulator.set_faults([{"kind": "latency", "ms": 300, "count": 1, "endpoints": ["GetToken"]}])
    with anyio.move_on_after(0.08) as scope:
        await sc.maps.list()  # cancelled while it fetches the token
    assert scope.cancelled_caught
    with anyio.fail_after(5):  # the refresh lock was released: no deadlock
        maps = await sc.maps.list()
    assert len(maps) == 6
    token = await sc.auth.get_token()
    assert emulator.token_record(token.value) is not None
    assert await sc.auth.validate() is True
    assert emulator.counters.token_calls == {"DEMO01": 2}
    assert connections_in_use(sc) == 0


async def test_a_waiter_takes_over_when_the_refreshing_caller_is_cancelled(
    sc: SmartConnect, emulator: Emulator
) -> None:
    emulator.set_faults([{"kind": "latency", "ms": 300, "count": 1, "endpoints": ["GetToken"]}])
    results: list[int] = []
    refresher = anyio.CancelScope()

    async def first() -> None:
        with refresher:
            await sc.maps.list()

    async def waiter() -> None:
        results.append(len(await sc.maps.list()))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await anyio.sleep(0.03)  # first is fetching the token (slowly)
            group.start_soon(waiter)  # waits for that fetch
            await anyio.sleep(0.05)
            refresher.cancel()
    assert refresher.cancelled_caught
    assert results == [6]
    token = await sc.auth.get_token()
    assert emulator.token_record(token.value) is not None
    # The cancelled fetch and the waiter's own: never a stuck lock, never a fetch per call.
    assert emulator.counters.token_calls == {"DEMO01": 2}
    assert emulator.counters.calls["GetMapList"] == 1


async def test_a_failing_task_group_cancels_siblings_cleanly(
    sc: SmartConnect, emulator: Emulator, server: LoopbackServer, assert_pool_idle: PoolIdle
) -> None:
    await sc.auth.get_token()
    emulator.set_faults(
        [{"kind": "latency", "ms": 300, "endpoints": ["GetAllData", "runmap", "GetMapColumns"]}]
    )

    async def reads() -> None:
        async with sc.data.iter_rows(KEY) as stream:
            async for _ in stream:
                pass

    with pytest.RaisesGroup(UnknownMapError):
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(sc.data.get_all, KEY)
                group.start_soon(reads)
                group.start_soon(sc.maps.columns, KEY)
            group.start_soon(sc.runs.run, KEY)
            await anyio.sleep(0.05)
            await sc.runs.run("No Such Map")
    assert connections_in_use(sc) == 0
    emulator.clear_faults()
    await _follow_up_is_correct(sc, emulator)
    await assert_pool_idle(sc)
    assert len(emulator.runs) <= 1
    assert emulator.counters.calls["runmap"] == 1
