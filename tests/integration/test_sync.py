"""``SmartConnectSync`` over real loopback TCP: the blocking facade's calls, streams,
errors, derived clients and close, on every (HTTP library, event loop) pair, checked
against the emulator's ground truth. These tests are plain functions: no event loop runs
in the test's thread, as in a script."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from integration_support import LoopbackServer, connections_in_use, source_rows

from smartconnect_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    Column,
    Credentials,
    MapInfo,
    RunOutcomeUnknown,
    RunRequest,
    RunResult,
    SmartConnectSync,
    UnknownMapError,
)
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, IMPORT_SALES_ORDERS_KEY, Emulator

pytestmark = pytest.mark.emulator(rows=600)  # more rows than one hand-over through the portal

KEY = IMPORT_CUSTOMERS_KEY
MakeSync = Callable[..., SmartConnectSync]


@pytest.fixture
def api_url(server: LoopbackServer, emulator: Emulator) -> str:
    """The loopback emulator's API Url (a fresh emulator for this test)."""
    return server.api_url


@pytest.fixture
def make_sync(
    api_url: str, alice01: Credentials, backend_combo: tuple[str, str]
) -> Iterator[MakeSync]:
    """``make_sync(credentials=alice01, **options)``: a facade on the test's HTTP library
    and event loop, closed after the test."""
    made: list[SmartConnectSync] = []

    def make(credentials: Credentials | None = None, **options: Any) -> SmartConnectSync:
        http, loop = backend_combo
        options = {"backend": http, "anyio_backend": loop, "timeout": 10.0, **options}
        client = SmartConnectSync(api_url, credentials or alice01, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def sc(make_sync: MakeSync) -> SmartConnectSync:
    """A facade for alice @ DEMO01."""
    return make_sync()


def _assert_idle(sc: SmartConnectSync, server: LoopbackServer) -> None:
    """No connection of the pool in use, and the server done with every request."""
    assert connections_in_use(sc._client) == 0, "a connection was left in use"
    deadline = time.monotonic() + 5
    while server.switch.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert server.switch.in_flight == 0


# ---- calls ----------------------------------------------------------------------------------


def test_maps_list_and_columns(sc: SmartConnectSync, emulator: Emulator) -> None:
    maps = sc.maps.list()
    assert maps == [
        MapInfo(m.key, m.map_id, m.description)
        for m in emulator.maps.values()
        if m.company_id == "DEMO01" and not m.realtime
    ]
    orders = emulator.maps[IMPORT_SALES_ORDERS_KEY]
    assert sc.maps.columns(orders.map_id) == [Column(c.name, c.required) for c in orders.columns]
    assert sc.maps.mapped_columns(maps[1]) == [Column(c.name, c.required) for c in orders.mapped]
    assert sc.auth.validate()


def test_get_all_returns_the_source_rows(sc: SmartConnectSync, emulator: Emulator) -> None:
    data = sc.data.get_all("Import Customers")
    assert data.rows == source_rows(emulator, KEY)
    assert len(data.rows) == 600


def test_iter_rows_streams_the_rows_get_all_returns(
    sc: SmartConnectSync, emulator: Emulator, server: LoopbackServer
) -> None:
    with sc.data.iter_rows(KEY) as rows:
        streamed = list(rows)
        assert rows.table is not None
    assert streamed == sc.data.get_all(KEY).rows
    assert len(streamed) == 600
    _assert_idle(sc, server)


@pytest.mark.emulator(rows={"Customers": 200_000})
@pytest.mark.parametrize("how", ["with", "close", "dropped"])
def test_stopping_iter_rows_early_releases_the_connection(
    sc: SmartConnectSync, emulator: Emulator, server: LoopbackServer, how: str
) -> None:
    seen = 0
    if how == "with":
        with sc.data.iter_rows(KEY) as rows:
            for row in rows:
                seen += 1
                if seen == 500:
                    assert row["AccountNumber"] == "CUST500"
                    break
    elif how == "dropped":  # no with, no close: released when the stream is dropped
        for row in sc.data.iter_rows(KEY):
            assert row["AccountNumber"] == "CUST001"
            break
    else:
        stream = sc.data.iter_rows(KEY)
        assert next(stream)["AccountNumber"] == "CUST001"
        stream.close()
        stream.close()  # a second close does nothing
        with pytest.raises(StopIteration):
            next(stream)
    _assert_idle(sc, server)
    assert sc.maps.columns(KEY)[0].name == "AccountNumber"  # the pool is still good
    assert emulator.counters.calls["GetAllData"] == 1


@pytest.mark.emulator(rows={"Customers": 3000})
def test_an_error_mid_stream_comes_after_the_rows_before_it(
    sc: SmartConnectSync, emulator: Emulator, server: LoopbackServer
) -> None:
    truth = source_rows(emulator, KEY)
    sc.auth.get_token()
    emulator.set_faults(
        [{"kind": "truncate", "after_bytes": 150_000, "count": 1, "endpoints": ["GetAllData"]}]
    )
    seen: list[dict[str, str | None]] = []
    with pytest.raises(APIConnectionError) as caught, sc.data.iter_rows(KEY) as rows:
        seen.extend(rows)
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.endpoint == "GetAllData"
    assert 100 < len(seen) < len(truth)
    assert [{c: r.get(c) for c in truth[0]} for r in seen] == truth[: len(seen)]
    _assert_idle(sc, server)


def test_run_and_run_many(sc: SmartConnectSync, emulator: Emulator) -> None:
    result = sc.runs.run(KEY, {"GBL_STATE": "CO"})
    assert result.ok
    assert emulator.runs[-1].run_number == result.run_number
    assert emulator.runs[-1].variables == {"GBL_STATE": "CO"}
    seen: list[int] = []
    outcomes = sc.runs.run_many(
        [KEY, "No Such Map", RunRequest(KEY, rows=[{"AccountNumber": "S1"}])],
        on_result=lambda index, item, outcome: seen.append(index),
    )
    assert [type(o).__name__ for o in outcomes] == ["RunResult", "UnknownMapError", "RunResult"]
    assert sorted(seen) == [0, 1, 2]
    records = {r.run_number: r for r in emulator.runs}
    assert len(records) == 3
    endpoints = [records[o.run_number].endpoint for o in outcomes if isinstance(o, RunResult)]
    assert endpoints == ["runmap", "runmapdatatable"]


# ---- errors -------------------------------------------------------------------------------


def test_an_unknown_map_is_an_unknown_map_error(sc: SmartConnectSync) -> None:
    with pytest.raises(UnknownMapError) as caught:
        sc.maps.columns("No Such Map")
    assert caught.value.map == "No Such Map"
    stream = sc.data.iter_rows("No Such Map")
    with pytest.raises(UnknownMapError):
        stream.__enter__()  # what ``with`` does: the error comes before any row
    stream.close()


def test_entering_iter_rows_sends_the_request(
    sc: SmartConnectSync, emulator: Emulator, server: LoopbackServer
) -> None:
    with sc.data.iter_rows(IMPORT_SALES_ORDERS_KEY, table="Line") as rows:
        assert emulator.counters.calls["GetAllData"] == 1  # sent on entering
        assert rows.columns == ()
        first = next(rows)
        assert rows.columns == tuple(first)
        assert sum(1 for _ in rows) > 0
    assert rows.tables == ("Header", "Line")
    with sc.data.iter_rows(KEY):
        pass  # entered, never read: released on leaving
    _assert_idle(sc, server)
    assert emulator.counters.calls["GetAllData"] == 2


def test_a_wrong_password_is_an_authentication_error(
    make_sync: MakeSync, emulator: Emulator
) -> None:
    wrong = Credentials(
        email="alice@northwind.example", password="Wrong+Pass/=", company_id="DEMO01"
    )
    with pytest.raises(AuthenticationError) as caught:
        make_sync(wrong).maps.list()
    assert caught.value.status_code == 401
    assert "Wrong+Pass/=" not in str(caught.value)


def test_a_run_that_may_have_been_processed_is_run_outcome_unknown(
    sc: SmartConnectSync, emulator: Emulator
) -> None:
    sc.auth.get_token()
    emulator.set_faults([{"kind": "drop_after", "endpoints": ["runmap"]}])
    with pytest.raises(RunOutcomeUnknown) as caught:
        sc.runs.run(KEY)
    assert caught.value.endpoint == "runmap"
    assert emulator.counters.calls["runmap"] == 1  # never re-sent
    emulator.clear_faults()
    assert sc.runs.run(KEY).run_number == emulator.runs[-1].run_number


def test_ctrl_c_cancels_the_call_in_the_loop(sc: SmartConnectSync, emulator: Emulator) -> None:
    sc.auth.get_token()
    emulator.set_faults([{"kind": "latency", "ms": 800, "endpoints": ["GetMapColumns"]}])
    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sc.maps.columns(KEY)
    assert time.monotonic() - started < 0.6  # not the 0.8 s the answer takes
    while connections_in_use(sc._client):  # the call is cancelled in the loop, soon
        assert time.monotonic() - started < 0.6
        time.sleep(0.005)
    emulator.clear_faults()
    assert sc.maps.columns(KEY)[0].name == "AccountNumber"


# ---- derived clients and close -------------------------------------------------------------


def test_with_company_shares_the_pool_and_its_close_does_nothing(
    sc: SmartConnectSync, emulator: Emulator
) -> None:
    demo02 = sc.with_company("DEMO02")
    assert demo02.credentials.company_id == "DEMO02"
    assert demo02._portal is sc._portal
    assert [m.id for m in demo02.maps.list()] == [
        m.map_id for m in emulator.maps.values() if m.company_id == "DEMO02" and not m.realtime
    ]
    demo02.close()
    patient = sc.with_options(timeout=60, max_retries=0)
    patient.close()
    assert len(sc.maps.list()) == 6
    assert len(patient.maps.list()) == 6
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1}
    sc.close()
    with pytest.raises(ClientClosedError):
        demo02.maps.list()


def test_calls_after_close_raise_client_closed_error(sc: SmartConnectSync) -> None:
    assert sc.maps.list()
    stream = sc.data.iter_rows(KEY)
    sc.close()
    sc.close()  # a second close does nothing
    with pytest.raises(ClientClosedError):
        sc.maps.list()
    with pytest.raises(ClientClosedError):
        sc.runs.run(KEY)
    with pytest.raises(ClientClosedError):
        sc.auth.get_token()
    with pytest.raises(ClientClosedError):
        next(stream)
    with pytest.raises(ClientClosedError), sc.data.iter_rows(KEY) as rows:
        list(rows)


@pytest.mark.emulator(rows={"Customers": 200_000})
def test_close_ends_a_stream_left_open(sc: SmartConnectSync, server: LoopbackServer) -> None:
    rows = sc.data.iter_rows(KEY)
    assert next(rows)["AccountNumber"] == "CUST001"
    sc.close()  # does not wait for the stream's end
    with pytest.raises(ClientClosedError):
        list(rows)
    rows.close()


def test_no_thread_is_left_after_close(
    make_sync: MakeSync, monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    """Every thread started by this thread or its descendants has ended. (A plain
    ``threading.active_count()`` would also count the threads the in-process server
    starts for itself as it likes.)"""
    started: list[tuple[threading.Thread, threading.Thread]] = []  # (starter, started)
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append((threading.current_thread(), thread))
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    before = threading.active_count()
    with make_sync() as sc:
        sc.maps.list()
        sc.data.get_all(KEY)
        with sc.data.iter_rows(KEY) as rows:
            next(rows)
        sc.runs.run_many([KEY, KEY])
        assert threading.active_count() > before
    ours = {threading.current_thread()}
    for starter, thread in started:
        if starter in ours:
            ours.add(thread)
    assert len(ours) > 1  # the loop's thread, at least
    deadline = time.monotonic() + 5  # a worker thread is told to stop, not joined
    while any(t.is_alive() for t in ours - {threading.current_thread()}):
        assert time.monotonic() < deadline, [t.name for t in ours if t.is_alive()]
        time.sleep(0.01)


def test_from_env(
    monkeypatch: pytest.MonkeyPatch, api_url: str, alice01: Credentials, emulator: Emulator
) -> None:
    monkeypatch.setenv("SMARTCONNECT_API_URL", api_url)
    monkeypatch.setenv("SMARTCONNECT_EMAIL", alice01.email)
    monkeypatch.setenv("SMARTCONNECT_PASSWORD", alice01.password)
    monkeypatch.setenv("SMARTCONNECT_COMPANY_ID", alice01.company_id)
    with SmartConnectSync.from_env(backend="httpx") as sc:
        assert sc.credentials == alice01
        assert len(sc.maps.list()) == 6


# ---- inside an event loop -------------------------------------------------------------------


def test_refused_inside_a_running_event_loop(
    sc: SmartConnectSync, api_url: str, alice01: Credentials
) -> None:
    async def inside() -> None:
        with pytest.raises(RuntimeError, match="use SmartConnect with await"):
            SmartConnectSync(api_url, alice01)
        with pytest.raises(RuntimeError, match="use SmartConnect with await"):
            sc.maps.list()
        with pytest.raises(RuntimeError, match="use SmartConnect with await"):
            next(sc.data.iter_rows(KEY))
        with pytest.raises(RuntimeError, match="use SmartConnect with await"):
            sc.close()

    before = threading.active_count()
    asyncio.run(inside())
    trio.run(inside)
    assert threading.active_count() == before
    assert len(sc.maps.list()) == 6  # outside it, the facade works


def test_a_callback_in_the_loop_cannot_block_it(sc: SmartConnectSync) -> None:
    errors: list[BaseException] = []

    def on_result(index: int, item: object, outcome: object) -> None:
        try:
            sc.maps.list()  # would wait for the very loop it runs in
        except RuntimeError as exc:
            errors.append(exc)

    sc.runs.run_many([KEY], on_result=on_result)
    assert len(errors) == 1
