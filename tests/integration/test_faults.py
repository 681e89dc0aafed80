"""Every fault kind the emulator injects, per endpoint class, on every HTTP library: a
read ends in the right result (retried) or a typed error; a run is never sent twice once
it may have reached the server. The emulator's counters and run history prove it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from integration_support import (
    LoopbackServer,
    MakeClient,
    capture_logs,
    closed_port,
    source_rows,
    wait_server_idle,
)

from smartconnect_async import (
    APIConnectionError,
    APITimeoutError,
    MapInfo,
    MemoryTokenStore,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    RunResult,
    ServerError,
    SmartConnect,
    SmartConnectError,
    TokenKey,
)
from smartconnect_async._tokens import make_token
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, Emulator

pytestmark = [pytest.mark.anyio, pytest.mark.emulator(rows=60)]

KEY = IMPORT_CUSTOMERS_KEY
ROWS = [{"AccountNumber": "F1", "AccountName": "Fault & Co"}, {"AccountNumber": "F2"}]


# ---- reads --------------------------------------------------------------------------------

Read = Callable[[SmartConnect], Awaitable[Any]]


async def _map_list(sc: SmartConnect) -> Any:
    return await sc.maps.list()


async def _get_all(sc: SmartConnect) -> Any:
    return (await sc.data.get_all(KEY)).rows


async def _iter_rows(sc: SmartConnect) -> Any:
    async with sc.data.iter_rows(KEY) as stream:
        return [row async for row in stream]


READS: dict[str, tuple[str, Read]] = {
    "map_list": ("GetMapList", _map_list),
    "get_all": ("GetAllData", _get_all),
    "iter_rows": ("GetAllData", _iter_rows),
}


def _expected(read: str, emulator: Emulator) -> Any:
    if read == "map_list":
        return [
            MapInfo(m.key, m.map_id, m.description)
            for m in emulator.maps.values()
            if m.company_id == "DEMO01" and not m.realtime
        ]
    return source_rows(emulator, KEY)


RETRIED_READ_FAULTS: dict[str, dict[str, Any]] = {
    "drop_before": {"kind": "drop_before"},
    "drop_after": {"kind": "drop_after"},
    "truncate": {"kind": "truncate"},
    "500": {"kind": "status", "status": 500},
    "500_html": {"kind": "status", "status": 500, "html": True},
    "502": {"kind": "status", "status": 502, "html": True},
    "503": {"kind": "status", "status": 503},
    "504": {"kind": "status", "status": 504},
    "408": {"kind": "status", "status": 408},
    "429": {"kind": "status", "status": 429, "retry_after": 0},
}


# A truncated stream has started: iter_rows raises then (see the mid-stream test below).
RETRIED_READ_CASES = [
    pytest.param(read, fault, id=f"{read}-{fault}")
    for read in READS
    for fault in RETRIED_READ_FAULTS
    if not (read == "iter_rows" and fault == "truncate")
]


@pytest.mark.parametrize(("read", "fault"), RETRIED_READ_CASES)
async def test_a_read_is_retried_through_faults(
    sc: SmartConnect, emulator: Emulator, read: str, fault: str
) -> None:
    endpoint, call = READS[read]
    await sc.auth.get_token()
    emulator.set_faults([{**RETRIED_READ_FAULTS[fault], "count": 2, "endpoints": [endpoint]}])
    assert await call(sc) == _expected(read, emulator)
    counters = emulator.counters
    assert counters.calls[endpoint] == 3  # 1 + 2 retries (max_retries=2)
    assert sum(counters.faults_fired.values()) == 2
    assert counters.token_calls == {"DEMO01": 1}


@pytest.mark.parametrize("read", list(READS))
async def test_a_read_gives_up_after_max_retries(
    make_client: MakeClient, emulator: Emulator, read: str
) -> None:
    sc = make_client(max_retries=3)
    endpoint, call = READS[read]
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 503, "endpoints": [endpoint]}])
    with pytest.raises(ServerError) as caught:
        await call(sc)
    assert caught.value.status_code == 503
    assert caught.value.request_id
    assert emulator.counters.calls[endpoint] == 4
    emulator.set_faults([{"kind": "drop_after", "endpoints": [endpoint]}])
    with pytest.raises(APIConnectionError) as dropped:
        await call(sc)
    assert dropped.value.sent is True
    assert emulator.counters.calls[endpoint] == 8
    emulator.clear_faults()
    assert await call(sc) == _expected(read, emulator)  # the pool is still good


@pytest.mark.combos(("httpx", "asyncio"))
async def test_a_429_retry_after_is_honoured(sc: SmartConnect, emulator: Emulator) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": 429, "count": 1}])  # Retry-After: 1
    started = time.monotonic()
    assert len(await sc.maps.list()) == 6
    assert time.monotonic() - started >= 0.9
    assert emulator.counters.calls["GetMapList"] == 2


@pytest.mark.parametrize("read", list(READS))
async def test_html_with_status_200_is_a_parse_error_not_retried(
    sc: SmartConnect, emulator: Emulator, read: str
) -> None:
    endpoint, call = READS[read]
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "html_200", "count": 1, "endpoints": [endpoint]}])
    with pytest.raises(ResponseParseError, match="HTML") as caught:
        await call(sc)
    assert caught.value.endpoint == endpoint
    assert caught.value.request_id
    # An HTML page with 200 is a misconfigured server, not a transient failure.
    assert emulator.counters.calls[endpoint] == 1
    assert await call(sc) == _expected(read, emulator)


@pytest.mark.parametrize("variant", ["billion_laughs", "external_entity", "inner_dtd"])
@pytest.mark.parametrize("read", list(READS))
async def test_hostile_xml_is_refused(
    sc: SmartConnect, emulator: Emulator, read: str, variant: str
) -> None:
    endpoint, call = READS[read]
    await sc.auth.get_token()
    emulator.set_faults(
        [{"kind": "hostile_xml", "variant": variant, "count": 1, "endpoints": [endpoint]}]
    )
    with pytest.raises(ResponseParseError) as caught:
        await call(sc)
    assert "root:" not in str(caught.value)  # no external entity was resolved
    assert emulator.counters.calls[endpoint] == 1
    assert await call(sc) == _expected(read, emulator)


async def test_a_hostile_answer_to_get_token_is_refused(
    sc: SmartConnect, emulator: Emulator
) -> None:
    emulator.set_faults([{"kind": "hostile_xml", "count": 1, "endpoints": ["GetToken"]}])
    with pytest.raises(ResponseParseError):
        await sc.maps.list()
    assert emulator.counters.calls == {"GetToken": 1}
    assert len(await sc.maps.list()) == 6  # the cache holds nothing bad: it fetches again
    assert emulator.counters.token_calls == {"DEMO01": 2}


@pytest.mark.emulator(rows={"Customers": 3000})
@pytest.mark.parametrize("after_bytes", [0, 1000, 150_000])
async def test_iter_rows_truncated_mid_stream_raises_and_never_repeats_a_row(
    sc: SmartConnect, emulator: Emulator, after_bytes: int
) -> None:
    truth = source_rows(emulator, KEY)
    await sc.auth.get_token()
    emulator.set_faults(
        [{"kind": "truncate", "after_bytes": after_bytes, "count": 1, "endpoints": ["GetAllData"]}]
    )
    seen: list[dict[str, str | None]] = []

    async def consume() -> None:
        async with sc.data.iter_rows(KEY) as stream:
            async for row in stream:
                seen.append(row)

    with pytest.raises(APIConnectionError) as caught:
        await consume()
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.endpoint == "GetAllData"
    # The rows yielded are a prefix of the true rows: none twice, none made up.
    assert [{c: r.get(c) for c in truth[0]} for r in seen] == truth[: len(seen)]
    assert len(seen) < len(truth)
    if after_bytes >= 150_000:
        assert len(seen) > 100
    assert emulator.counters.calls["GetAllData"] == 1  # a started stream is not re-sent
    async with sc.data.iter_rows(KEY) as stream:
        assert len([row async for row in stream]) == len(truth)


# ---- runs ---------------------------------------------------------------------------------

Run = Callable[[SmartConnect], Awaitable[RunResult]]


async def _run(sc: SmartConnect) -> RunResult:
    return await sc.runs.run(KEY)


async def _run_variables(sc: SmartConnect) -> RunResult:
    return await sc.runs.run(KEY, {"GBL_STATE": "CO"})


async def _run_data_table(sc: SmartConnect) -> RunResult:
    return await sc.runs.run_data_table(KEY, ROWS)


async def _run_data_table_errors(sc: SmartConnect) -> RunResult:
    return await sc.runs.run_data_table(KEY, ROWS, with_errors=True)


async def _run_xml(sc: SmartConnect) -> RunResult:
    return await sc.runs.run_xml(KEY, ROWS)


RUNS: dict[str, Run] = {
    "runmap": _run,
    "RunMapWithVariables": _run_variables,
    "runmapdatatable": _run_data_table,
    "RunMapDataTableWithErrors": _run_data_table_errors,
    "runmapxml": _run_xml,
}

# fault -> (rule, runs the server executed)
UNKNOWN_RUN_FAULTS: dict[str, tuple[dict[str, Any], int]] = {
    "drop_before": ({"kind": "drop_before"}, 0),
    "drop_after": ({"kind": "drop_after"}, 1),
    "truncate": ({"kind": "truncate"}, 1),
    "truncate_0": ({"kind": "truncate", "after_bytes": 0}, 1),
    "500": ({"kind": "status", "status": 500}, 0),
    "500_html": ({"kind": "status", "status": 500, "html": True}, 0),
    "502": ({"kind": "status", "status": 502}, 0),
    "504": ({"kind": "status", "status": 504, "html": True}, 0),
    "500_processed": ({"kind": "status", "status": 500, "processed": True}, 1),
    "502_processed": ({"kind": "status", "status": 502, "processed": True}, 1),
    "html_200": ({"kind": "html_200"}, 0),
    "hostile_xml": ({"kind": "hostile_xml"}, 0),
}


@pytest.mark.parametrize("fault", list(UNKNOWN_RUN_FAULTS))
@pytest.mark.parametrize("endpoint", list(RUNS))
async def test_a_run_that_may_have_been_processed_is_never_resent(
    sc: SmartConnect, emulator: Emulator, endpoint: str, fault: str
) -> None:
    rule, executed = UNKNOWN_RUN_FAULTS[fault]
    await sc.auth.get_token()
    emulator.set_faults([{**rule, "endpoints": [endpoint]}])  # would fire on every attempt
    with pytest.raises(RunOutcomeUnknown) as caught:
        await RUNS[endpoint](sc)
    error = caught.value
    assert error.endpoint == endpoint
    assert error.map_key == KEY
    assert error.attempt == 1
    if rule["kind"] == "status":
        assert error.status_code == rule["status"]
        assert error.request_id
    counters = emulator.counters
    assert counters.calls[endpoint] == 1  # never re-sent
    assert counters.runs_by_map.get(KEY, 0) == executed == len(emulator.runs)
    if executed:
        assert emulator.runs[0].endpoint == endpoint
    emulator.clear_faults()
    result = await RUNS[endpoint](sc)  # the client (and its pool) is still good
    assert result.run_number == emulator.runs[-1].run_number
    assert len(emulator.runs) == executed + 1


RETRIED_RUN_FAULTS: dict[str, dict[str, Any]] = {
    "429": {"kind": "status", "status": 429, "retry_after": 0},
    "503": {"kind": "status", "status": 503},
    "503_html": {"kind": "status", "status": 503, "html": True},
}


@pytest.mark.parametrize("fault", list(RETRIED_RUN_FAULTS))
@pytest.mark.parametrize("endpoint", list(RUNS))
async def test_a_run_refused_unprocessed_is_retried_and_executes_once(
    sc: SmartConnect, emulator: Emulator, endpoint: str, fault: str
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{**RETRIED_RUN_FAULTS[fault], "count": 2, "endpoints": [endpoint]}])
    result = await RUNS[endpoint](sc)
    (record,) = emulator.runs
    assert result.run_number == record.run_number
    assert record.endpoint == endpoint
    assert emulator.counters.calls[endpoint] == 3


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, RateLimitError), (503, ServerError)], ids=["429", "503"]
)
async def test_a_run_refused_every_time_raises_typed_and_never_ran(
    sc: SmartConnect, emulator: Emulator, status: int, error_type: type[SmartConnectError]
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "status", "status": status, "retry_after": 0}])
    with pytest.raises(error_type) as caught:
        await sc.runs.run_data_table(KEY, ROWS)
    assert not isinstance(caught.value, RunOutcomeUnknown)
    assert emulator.runs == ()
    assert emulator.counters.calls["runmapdatatable"] == 3


@pytest.mark.parametrize(
    ("fault", "saved"),
    [("drop_before", 0), ("drop_after", 1), ("truncate", 1), ("500", 0), ("500_processed", 1)],
)
async def test_save_process_errors_is_never_resent(
    sc: SmartConnect, emulator: Emulator, fault: str, saved: int
) -> None:
    result = await sc.runs.run(KEY)
    assert result.run_number is not None
    rule = UNKNOWN_RUN_FAULTS[fault][0]
    emulator.set_faults([{**rule, "endpoints": ["SaveProcessErrors"]}])
    with pytest.raises(RunOutcomeUnknown):
        await sc.errors.save(
            KEY, tenant_server="s", tenant_technical_name="t", run_number=result.run_number
        )
    assert emulator.counters.calls["SaveProcessErrors"] == 1
    assert len(emulator.saved_errors) == saved


# ---- connection refused -------------------------------------------------------------------


def _attempts(records: list[logging.LogRecord], endpoint: str) -> int:
    return sum(
        1
        for r in records
        if r.name == "smartconnect_async"
        and r.levelno == logging.DEBUG
        and r.getMessage().startswith(f"{endpoint} ")
    )


async def test_connection_refused_for_a_read_is_not_sent_and_retried(
    make_client: MakeClient,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/API"
    sc = make_client(api_url=url, max_retries=3)
    with capture_logs("smartconnect_async") as logs, pytest.raises(APIConnectionError) as caught:
        await sc.maps.list()
    assert type(caught.value) is APIConnectionError
    assert caught.value.sent is False
    assert caught.value.endpoint == "GetToken"
    assert _attempts(logs.records, "GetToken") == 4


async def test_connection_refused_for_a_run_is_retried_then_api_connection_error(
    make_client: MakeClient, emulator: Emulator
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/API"
    store = MemoryTokenStore()
    value = emulator.issue_token("alice@northwind.example", "DEMO01")
    token = make_token(
        value, company_id="DEMO01", email="alice@northwind.example", obtained_at=emulator.now()
    )
    await store.set(TokenKey.of(url, "DEMO01", "alice@northwind.example"), token)
    sc = make_client(api_url=url, max_retries=2, token_store=store)
    for call in (_run, _run_data_table, _run_xml):
        with (
            capture_logs("smartconnect_async") as logs,
            pytest.raises(APIConnectionError) as caught,
        ):
            await call(sc)
        assert not isinstance(caught.value, RunOutcomeUnknown)
        assert caught.value.sent is False
        endpoint = caught.value.endpoint
        assert endpoint in RUNS
        assert _attempts(logs.records, endpoint) == 3  # the first try and max_retries retries
    assert emulator.runs == ()


# ---- an emulator fidelity bug -------------------------------------------------------------


@pytest.mark.combos(("httpx", "asyncio"))
async def test_a_posted_run_whose_client_timed_out_still_executes_on_the_server(
    sc: SmartConnect, emulator: Emulator, server: LoopbackServer
) -> None:
    await sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 250, "endpoints": ["runmapdatatable"]}])
    with capture_logs("uvicorn", level=logging.ERROR) as logs:
        with pytest.raises(RunOutcomeUnknown):
            await sc.runs.run_data_table(KEY, ROWS, timeout=0.08, max_retries=0)
        await wait_server_idle(server)
    assert emulator.counters.calls["runmapdatatable"] == 1
    assert not logs.texts, logs.texts[:1]
    assert len(emulator.runs) == 1  # the whole request had arrived: it runs, once
