"""Limits and batch behaviour over TCP: the server's rate limit, the per-company run
slots, run_many / get_many, per-call timeouts and max_retries."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from integration_support import LoopbackServer, MakeClient, source_rows, wait_server_idle

from smartconnect_async import (
    APITimeoutError,
    Credentials,
    DataRequest,
    DataSet,
    MapRunFailed,
    NotFoundError,
    RateLimitError,
    RunOutcomeUnknown,
    RunRequest,
    RunResult,
    ServerError,
    SmartConnect,
    Timeout,
    UnknownMapError,
)
from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    Emulator,
    create_app,
    serve,
)

pytestmark = [pytest.mark.anyio, pytest.mark.emulator(rows=40)]

KEY = IMPORT_CUSTOMERS_KEY
DEMO02_CUSTOMERS = "4e7a9b02-6c1d-4f3e-b8a5-abb500c3d4e5"


async def _many(count: int, concurrency: int, work: Any) -> None:
    limit = anyio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limit:
            await work(index)

    async with anyio.create_task_group() as group:
        for index in range(count):
            group.start_soon(one, index)


# ---- rate limit ---------------------------------------------------------------------------


@pytest.mark.emulator(rows=40, rate_limit="10/1")
async def test_sequential_calls_pause_for_the_window_instead_of_hitting_429(
    sc: SmartConnect, emulator: Emulator
) -> None:
    started = time.monotonic()
    with anyio.fail_after(15):
        for _ in range(14):
            assert len(await sc.maps.columns(KEY)) == 9
    counters = emulator.counters
    assert counters.calls["GetMapColumns"] == 14
    assert counters.rate_limited == 0
    assert time.monotonic() - started >= 0.5  # it waited for the second window


@pytest.mark.emulator(rows=40, rate_limit="10/1")
async def test_concurrent_calls_all_succeed_under_the_rate_limit(
    sc: SmartConnect, emulator: Emulator
) -> None:
    concurrency = 5

    async def call(_: int) -> None:
        assert len(await sc.maps.columns(KEY)) == 9

    await sc.auth.get_token()
    started = time.monotonic()
    with anyio.fail_after(20):
        await _many(24, concurrency, call)
    elapsed = time.monotonic() - started
    counters = emulator.counters
    windows = int(elapsed) + 2
    # Refused calls are at most the ones already in flight when a window ran out.
    assert counters.rate_limited <= (concurrency - 1) * windows
    assert counters.calls["GetMapColumns"] == 24 + counters.rate_limited
    assert elapsed >= 1.5  # it did wait for the windows: 25 calls at 10 per second


@pytest.mark.combos(("httpx", "asyncio"))
@pytest.mark.emulator(rows=40, rate_limit="10/1")
async def test_many_concurrent_callers_under_the_rate_limit(
    sc: SmartConnect, emulator: Emulator
) -> None:
    concurrency = 16
    failures: list[Exception] = []

    async def call(_: int) -> None:
        try:
            await sc.maps.columns(KEY)
        except RateLimitError as exc:
            failures.append(exc)

    await sc.auth.get_token()
    with anyio.fail_after(20):
        await _many(48, concurrency, call)
    assert not failures, f"{len(failures)} of 48 calls failed with RateLimitError"
    # The first window may overshoot by the calls already in flight; later ones need not.
    assert emulator.counters.rate_limited <= concurrency - 1


async def test_retry_after_beyond_60s_raises_rate_limit_error_at_once(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 429, "retry_after": 120, "count": 1}])
    started = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        await sc.maps.list()
    assert time.monotonic() - started < 1
    assert caught.value.retry_after == 120
    assert caught.value.status_code == 429
    assert emulator.counters.calls["GetMapList"] == 1


@pytest.mark.combos(("httpx", "asyncio"))
async def test_after_a_long_retry_after_the_next_call_does_not_hang(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 429, "retry_after": 120, "count": 1}])
    with pytest.raises(RateLimitError):
        await sc.maps.list()
    with anyio.move_on_after(2.5) as scope, contextlib.suppress(RateLimitError, APITimeoutError):
        # Failing fast is fine (the server still refuses for another 2 minutes).
        await sc.maps.list(timeout=1)
    assert not scope.cancelled_caught, "the call hung in the rate gate past its timeout"


async def test_a_run_refused_with_a_long_retry_after_is_not_retried_and_never_ran(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 429, "retry_after": 300, "count": 1}])
    with pytest.raises(RateLimitError) as caught:
        await sc.runs.run_data_table(KEY, [{"AccountNumber": "L1"}])
    assert caught.value.retry_after == 300
    assert emulator.runs == ()
    assert emulator.counters.calls["runmapdatatable"] == 1


# ---- run slots ----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [4, 2])
async def test_runs_per_company_in_flight_are_bounded_across_clients(
    make_client: MakeClient,
    emulator: Emulator,
    server: LoopbackServer,
    alice02: Credentials,
    bob02: Credentials,
    limit: int,
) -> None:
    base = make_client(max_concurrent_runs=limit)
    clients = [base, base.with_credentials(alice02), base.with_credentials(bob02)]
    for client in clients:
        await client.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 60, "endpoints": ["runmapdatatable"]}])
    results: dict[str, RunResult] = {}

    async def run(index: int) -> None:
        client = clients[index % 3]
        tag = f"R{index}"
        key = KEY if client is base else DEMO02_CUSTOMERS
        results[tag] = await client.runs.run_data_table(key, [{"AccountNumber": tag}])

    with anyio.fail_after(20):
        await _many(24, 24, run)
    peaks = server.switch.peak_runs_in_flight
    assert peaks["DEMO02"] == limit  # two users of DEMO02 share its slots
    assert peaks["DEMO01"] == limit  # another company has slots of its own
    # Every run executed exactly once, with its own rows.
    by_tag = {r.documents[0]["AccountNumber"]: r for r in emulator.runs}
    assert len(emulator.runs) == 24 == len(by_tag)
    assert {tag: r.run_number for tag, r in results.items()} == {
        tag: r.run_number for tag, r in by_tag.items()
    }


async def test_reads_are_not_held_by_run_slots(
    make_client: MakeClient, emulator: Emulator, server: LoopbackServer
) -> None:
    sc = make_client(max_concurrent_runs=1)
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 400, "endpoints": ["runmap"]}])
    async with anyio.create_task_group() as group:
        group.start_soon(sc.runs.run, KEY)
        await anyio.sleep(0.05)
        started = time.monotonic()
        assert len(await sc.maps.list()) == 6
        assert time.monotonic() - started < 0.3
        assert server.switch.runs_in_flight["DEMO01"] == 1
    assert len(emulator.runs) == 1


async def test_companies_take_turns_for_busy_connections(
    make_client: MakeClient, emulator: Emulator, alice02: Credentials
) -> None:
    demo01 = make_client(max_connections=1)
    demo02 = demo01.with_credentials(alice02)
    for client in (demo01, demo02):
        await client.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 150, "endpoints": ["GetMapList"]}])
    # A burst of DEMO01 queued call by call on the one connection, then one DEMO02 call:
    # DEMO02 waits for the call in flight, not for the whole burst.
    finished = await _finishing_order(demo01, demo02, one_by_one=True)
    assert finished == ["DEMO01 #1", "DEMO02", "DEMO01 #2", "DEMO01 #3", "DEMO01 #4"]


async def _finishing_order(
    demo01: SmartConnect, demo02: SmartConnect, *, one_by_one: bool, demo02_after: float = 0
) -> list[str]:
    """The order in which four DEMO01 ``maps.list`` calls and then one DEMO02 call
    (``demo02_after`` seconds later) finish; with ``one_by_one`` each call is queued
    before the next one starts."""
    finished: list[str] = []

    async def list_maps(client: SmartConnect, name: str) -> None:
        await client.maps.list()
        finished.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(list_maps, demo01, f"DEMO01 #{index + 1}")
                if one_by_one:
                    await anyio.wait_all_tasks_blocked()
            await anyio.sleep(demo02_after)
            group.start_soon(list_maps, demo02, "DEMO02")
    return finished


async def test_a_connection_is_kept_for_a_company_waiting_for_its_token(
    make_client: MakeClient, emulator: Emulator, alice02: Credentials
) -> None:
    # Both companies are cold; DEMO02's call starts 100 ms after DEMO01's burst. At
    # 200 ms DEMO01's token is back and its burst takes the free connection (DEMO02's
    # GetToken holds the other); at 300 ms DEMO02's token is back and its GetToken
    # gives its connection back: it is kept for DEMO02, whose call then finishes
    # second (500 ms), not behind DEMO01's next call (at 600 ms).
    demo01 = make_client(max_connections=2)
    demo02 = demo01.with_credentials(alice02)
    emulator.set_faults([{"kind": "latency", "ms": 200, "endpoints": ["GetToken", "GetMapList"]}])
    finished = await _finishing_order(demo01, demo02, one_by_one=False, demo02_after=0.1)
    # The order of DEMO01's own calls, woken together by their token, is the event
    # loop's (trio's differs from asyncio's); DEMO02's place is what is kept for it.
    assert finished[1] == "DEMO02"
    assert sorted(finished) == ["DEMO01 #1", "DEMO01 #2", "DEMO01 #3", "DEMO01 #4", "DEMO02"]
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1}


@pytest.mark.combos(("httpx", "asyncio"))
async def test_waiting_for_a_run_slot_is_bounded_by_the_timeout(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client(max_concurrent_runs=1)
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 1000, "count": 1, "endpoints": ["runmap"]}])
    async with anyio.create_task_group() as group:
        group.start_soon(sc.runs.run, KEY)  # holds the only slot for 1 s
        await anyio.sleep(0.05)
        started = time.monotonic()
        outcome: Exception | RunResult
        try:
            outcome = await sc.runs.run(KEY, timeout=0.2, max_retries=0)
        except Exception as exc:
            outcome = exc
        waited = time.monotonic() - started
    assert waited < 0.6, f"the run waited {waited:.2f}s for a slot with timeout=0.2"
    assert isinstance(outcome, APITimeoutError)
    assert outcome.sent is False


async def test_waiting_for_a_token_another_call_fetches_is_bounded_by_the_pool_timeout(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client()
    emulator.set_faults([{"kind": "latency", "ms": 800, "count": 1, "endpoints": ["GetToken"]}])
    async with anyio.create_task_group() as group:
        group.start_soon(sc.maps.list)  # sends the GetToken, answered after 0.8 s
        await anyio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as raised:
            await sc.runs.run(KEY, timeout=Timeout(30, pool=0.2))
        waited = time.monotonic() - started
    assert 0.2 <= waited < 0.6, f"the run waited {waited:.2f}s for the token with pool=0.2"
    assert raised.value.sent is False
    assert f"no token for company {sc.credentials.company_id} came within 0.2s" in str(raised.value)
    counters = emulator.counters
    assert counters.token_calls == {sc.credentials.company_id: 1}
    assert counters.calls.get("GetMapList") == 1  # the fetch went on for the first call
    assert counters.total_runs == 0


async def test_a_name_lookup_waiting_for_another_call_s_map_list_is_bounded_by_the_pool(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client()
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 800, "count": 1, "endpoints": ["GetMapList"]}])
    async with anyio.create_task_group() as group:
        group.start_soon(sc.maps.columns, "Import Customers")  # its GetMapList takes 0.8 s
        await anyio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as raised:
            await sc.runs.run("Import Customers", timeout=Timeout(30, pool=0.2))
        waited = time.monotonic() - started
    assert 0.2 <= waited < 0.6, f"the run waited {waited:.2f}s for the map list with pool=0.2"
    assert (raised.value.endpoint, raised.value.sent) == ("GetMapList", False)
    counters = emulator.counters
    assert counters.calls.get("GetMapList") == 1
    assert counters.calls.get("GetMapColumns") == 1  # the lookup went on for the first call
    assert counters.total_runs == 0


async def test_a_name_lookup_fetches_the_map_list_within_the_call_s_timeout(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client(timeout=30)
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 1000, "count": 1, "endpoints": ["GetMapList"]}])
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as raised:
        await sc.runs.run("Import Customers", timeout=0.2, max_retries=0)
    waited = time.monotonic() - started
    assert waited < 0.6, f"the lookup waited {waited:.2f}s for GetMapList with timeout=0.2"
    assert raised.value.endpoint == "GetMapList"
    assert emulator.counters.total_runs == 0
    result = await sc.runs.run("Import Customers")  # looked up again: the list is not known
    assert result.map_id == "Import Customers"
    assert emulator.counters.calls.get("GetMapList") == 2
    assert emulator.counters.total_runs == 1


# ---- run_many / get_many ------------------------------------------------------------------


async def test_run_many_keeps_input_order_and_every_outcome(
    sc: SmartConnect, emulator: Emulator
) -> None:
    items: list[Any] = [
        "Import Customers",
        RunRequest(KEY, variables={"GBL_STATE": "CO"}),
        "No Such Map",
        "Post Cash Receipts",
        RunRequest(KEY, rows=[{"AccountNumber": "M1"}]),
        RunRequest(KEY, rows=[{"AccountNumber": "M2"}], as_xml=True),
        RunRequest(KEY, rows=[{"AccountName": "no number"}], with_errors=True),
        DEMO02_CUSTOMERS,  # another company's map: 404
    ]
    seen: list[tuple[int, Any, Any]] = []

    async def on_result(index: int, item: Any, outcome: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((index, item, outcome))

    outcomes = await sc.runs.run_many(items, concurrency=3, on_result=on_result)
    assert len(outcomes) == len(items)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == [
        "RunResult",
        "RunResult",
        "UnknownMapError",
        "RunResult",
        "RunResult",
        "RunResult",
        "RunResult",
        "NotFoundError",
    ]
    assert isinstance(outcomes[2], UnknownMapError)
    assert isinstance(outcomes[7], NotFoundError)
    results = [o for o in outcomes if isinstance(o, RunResult)]
    records = {r.run_number: r for r in emulator.runs}
    assert len(records) == len(results) == 6  # each run executed exactly once
    endpoints = [records[o.run_number].endpoint for o in results if o.run_number is not None]
    assert endpoints == [
        "runmap",
        "RunMapWithVariables",
        "runmap",
        "runmapdatatable",
        "runmapxml",
        "RunMapDataTableWithErrors",
    ]
    assert records[results[1].run_number or 0].variables == {"GBL_STATE": "CO"}
    assert records[results[2].run_number or 0].map_key == POST_CASH_RECEIPTS_KEY
    assert not results[2].ok
    with pytest.raises(MapRunFailed):
        results[2].raise_for_status()
    assert results[5].validation_errors
    # on_result: once per item, with that item and the very outcome returned.
    assert sorted(index for index, _, _ in seen) == list(range(len(items)))
    for index, item, outcome in seen:
        assert item is items[index]
        assert outcome is outcomes[index]


async def test_run_many_runs_each_request_for_its_company(
    sc: SmartConnect, emulator: Emulator
) -> None:
    items: list[Any] = [
        KEY,
        RunRequest(DEMO02_CUSTOMERS, company_id="DEMO02"),
        RunRequest(KEY, rows=[{"AccountNumber": "M1"}], company_id="DEMO01"),
        RunRequest(DEMO02_CUSTOMERS, variables={"GBL_STATE": "CO"}, company_id=" DEMO02 "),
        RunRequest(KEY, company_id="DEMO03"),  # not one of alice's companies
    ]
    outcomes = await sc.runs.run_many(items, concurrency=4)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["RunResult"] * 4 + ["AuthenticationError"]
    records = {r.request_id: r for r in emulator.runs}  # run numbers count per company
    companies = [records[o.request_id].company_id for o in outcomes if isinstance(o, RunResult)]
    assert companies == ["DEMO01", "DEMO02", "DEMO01", "DEMO02"]
    assert len(emulator.runs) == 4
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1, "DEMO03": 1}
    assert sc.credentials.company_id == "DEMO01"  # the client itself is unchanged


def test_a_run_request_company_id_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="company_id must not be empty"):
        RunRequest(KEY, company_id="  ")
    with pytest.raises(TypeError, match="company_id must be a str"):
        RunRequest(KEY, company_id=7)  # type: ignore[arg-type]


async def test_run_many_survives_a_raising_on_result(sc: SmartConnect, emulator: Emulator) -> None:
    calls: list[int] = []

    def on_result(index: int, item: Any, outcome: Any) -> None:
        calls.append(index)
        raise RuntimeError("callback bug")

    outcomes = await sc.runs.run_many([KEY, KEY, KEY], concurrency=2, on_result=on_result)
    assert all(isinstance(o, RunResult) for o in outcomes)
    assert sorted(calls) == [0, 1, 2]
    assert len(emulator.runs) == 3


async def test_get_many_keeps_input_order_and_every_outcome(
    sc: SmartConnect, emulator: Emulator
) -> None:
    items: list[Any] = [
        KEY,
        DataRequest(KEY, {"GBL_STATE": "CO"}),
        "No Such Map",
        DEMO02_CUSTOMERS,
        "Import Sales Orders",
    ]
    seen: dict[int, Any] = {}

    def on_result(index: int, item: Any, outcome: Any) -> None:
        assert index not in seen
        seen[index] = outcome

    outcomes = await sc.data.get_many(items, concurrency=2, on_result=on_result)
    assert isinstance(outcomes[0], DataSet)
    assert outcomes[0].rows == source_rows(emulator, KEY)
    assert isinstance(outcomes[1], DataSet)
    assert outcomes[1].rows == source_rows(emulator, KEY, filters={"State": "CO"})
    assert isinstance(outcomes[2], UnknownMapError)
    assert isinstance(outcomes[3], NotFoundError)
    assert isinstance(outcomes[4], DataSet)
    assert list(outcomes[4].tables) == ["Header", "Line"]
    assert seen == dict(enumerate(outcomes))
    calls = emulator.counters.calls
    assert calls["GetAllData"] == 3  # KEY, DEMO02's map (404), Sales Orders
    assert calls["GetAllDataWithVariables"] == 1


# ---- timeouts and max_retries -------------------------------------------------------------


async def test_a_read_slower_than_its_timeout_is_api_timeout_error_after_retries(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 300, "endpoints": ["GetMapList"]}])
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as caught:
        await sc.maps.list(timeout=0.1)
    assert time.monotonic() - started < 1.5
    assert caught.value.endpoint == "GetMapList"
    assert emulator.counters.calls["GetMapList"] == 3
    with pytest.raises(APITimeoutError):
        await sc.maps.list(timeout=Timeout(5, read=0.1), max_retries=0)
    assert emulator.counters.calls["GetMapList"] == 4
    emulator.clear_faults()
    assert len(await sc.maps.list(timeout=2)) == 6


async def test_a_run_slower_than_its_timeout_is_outcome_unknown_and_not_resent(
    sc: SmartConnect, emulator: Emulator, server: LoopbackServer
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 300, "endpoints": ["runmap"]}])
    with pytest.raises(RunOutcomeUnknown) as caught:
        await sc.runs.run(KEY, timeout=0.1)
    assert caught.value.endpoint == "runmap"
    assert caught.value.attempt == 1
    assert caught.value.status_code is None
    await wait_server_idle(server)
    # The server went on and ran it, once; the client never sent it again.
    assert emulator.counters.calls["runmap"] == 1
    assert len(emulator.runs) == 1


async def test_max_retries_zero_per_call_disables_retries(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 503, "count": 1}])
    with pytest.raises(ServerError):
        await sc.maps.list(max_retries=0)
    assert emulator.counters.calls["GetMapList"] == 1
    emulator.set_faults([{"kind": "drop_before", "count": 1}])
    with pytest.raises(RunOutcomeUnknown):
        await sc.runs.run(KEY, max_retries=0)
    emulator.set_faults([{"kind": "status", "status": 503, "count": 1}])
    with pytest.raises(ServerError):
        await sc.runs.run(KEY, max_retries=0)
    assert emulator.runs == ()
    # The client's own setting still applies to the next call.
    emulator.set_faults([{"kind": "status", "status": 503, "count": 2}])
    assert len(await sc.maps.list()) == 6
    assert emulator.counters.calls["GetMapList"] == 4


async def test_client_wide_max_retries_zero(make_client: MakeClient, emulator: Emulator) -> None:
    sc = make_client(max_retries=0)
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "drop_after", "count": 1, "endpoints": ["GetAllData"]}])
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the exact type is checked below
        await sc.data.get_all(KEY)
    assert type(caught.value).__name__ == "APIConnectionError"
    assert emulator.counters.calls["GetAllData"] == 1
    assert (await sc.data.get_all(KEY, max_retries=1)).rows == source_rows(emulator, KEY)


async def _run_while_the_pool_is_busy(
    sc: SmartConnect, emulator: Emulator, timeout: Timeout
) -> BaseException | RunResult:
    """A run that must wait for the only connection, which a slow read holds."""
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 500, "endpoints": ["GetMapList"]}])
    outcome: BaseException | RunResult
    async with anyio.create_task_group() as group:
        group.start_soon(sc.maps.list)
        await anyio.sleep(0.1)
        try:
            outcome = await sc.runs.run_data_table(
                KEY, [{"AccountNumber": "P1"}], timeout=timeout, max_retries=1
            )
        except Exception as exc:
            outcome = exc
    return outcome


async def test_waiting_for_the_pool_times_out_as_not_sent(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client(max_connections=1)
    # (aiohttp has no pool timeout: its connect timeout, 2 x 0.05 s here, covers the wait.)
    outcome = await _run_while_the_pool_is_busy(sc, emulator, Timeout(0.05))
    assert isinstance(outcome, APITimeoutError)
    assert outcome.sent is False
    assert emulator.runs == ()
    assert "runmapdatatable" not in emulator.counters.calls
    assert (await sc.runs.run_data_table(KEY, [{"AccountNumber": "P2"}])).ok


@pytest.mark.combos(("aiohttp", "asyncio"), ("httpx", "asyncio"), ("httpx", "trio"))
async def test_a_short_pool_timeout_is_honoured_with_a_long_connect_timeout(
    make_client: MakeClient, emulator: Emulator
) -> None:
    sc = make_client(max_connections=1)
    outcome = await _run_while_the_pool_is_busy(sc, emulator, Timeout(5, pool=0.05))
    assert isinstance(outcome, APITimeoutError)
    assert outcome.sent is False
    assert emulator.runs == ()


# ---- keep-alive ---------------------------------------------------------------------------


async def test_a_connection_the_server_closed_while_idle_is_not_reused_for_a_run(
    make_client: MakeClient, emulator: Emulator
) -> None:
    # A server that closes idle connections after 1 s, a client that would keep them 4 s:
    # the run must not be written onto the dead connection (it would then be an unknown
    # outcome although the server never saw it).
    with serve(create_app(emulator), timeout_keep_alive=1) as api_url:
        sc = make_client(api_url=api_url, keepalive_expiry=4.0)
        assert (await sc.runs.run_data_table(KEY, [{"AccountNumber": "K1"}])).ok
        await anyio.sleep(1.4)
        result = await sc.runs.run_data_table(KEY, [{"AccountNumber": "K2"}])
        assert result.ok
        assert [r.documents[0]["AccountNumber"] for r in emulator.runs] == ["K1", "K2"]
        assert emulator.counters.calls["runmapdatatable"] == 2
        await sc.aclose()
