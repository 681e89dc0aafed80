"""_transport.py (through the public client): common headers, error statuses mapped to
exceptions with their attributes and logged, retries of reads, connection failures, the
call's total timeout."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import anyio
import httpx
import pytest
from unit_support import (
    COLUMNS,
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    SleepRecorder,
    StalledToken,
    client,
    columns_answer,
    data_answer,
    dumps,
    html_page,
    mock_api,
    run_json,
    table_xml,
)

from smartconnect_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    Credentials,
    NotFoundError,
    RateLimitError,
    RunOutcomeUnknown,
    ServerError,
    SmartConnectError,
    Timeout,
)

pytestmark = pytest.mark.anyio


# Which status is which error is _wire's rule, tested in test_wire.py for every status;
# here, that an error answer reaches the caller through the transport as that error.
@pytest.mark.parametrize(("status", "error"), [(404, NotFoundError), (500, ServerError)])
async def test_error_status_maps_to_exception(status: int, error: type[APIStatusError]) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(
            status,
            json={"Message": f"Failure number {status}."},
            headers={"X-Request-Id": "req-123"},
        )
        async with client(max_retries=0) as sc:
            with pytest.raises(error) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    exc = info.value
    assert type(exc) is error
    assert isinstance(exc, APIStatusError)
    assert isinstance(exc, SmartConnectError)
    assert exc.status_code == status
    assert exc.request_id == "req-123"
    assert exc.body == f"Failure number {status}."
    assert exc.endpoint == "GetMapColumns"
    assert exc.retry_after is None
    message = str(exc)
    assert f"HTTP {status}" in message
    assert "GetMapColumns" in message
    assert GUID_CUSTOMERS in message
    assert "req-123" in message
    assert route.call_count == 1


async def test_an_error_answer_is_logged_at_debug_with_its_status_request_id_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="smartconnect_async")
    with mock_api() as api:
        api.post("/GetMapColumns").respond(500, headers={"X-Request-Id": "req-42"})
        async with client(max_retries=0) as sc:
            with pytest.raises(ServerError):
                await sc.maps.columns(GUID_CUSTOMERS)
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "smartconnect_async"
        and r.levelno == logging.DEBUG
        and r.getMessage().startswith("GetMapColumns ")
    ]
    assert len(lines) == 1  # one attempt, one line
    pattern = (
        rf"GetMapColumns map={GUID_CUSTOMERS} status=500 elapsed=\d+\.\d{{3}}s attempt=1 "
        r"request_id=req-42 error=ServerError"
    )
    assert re.fullmatch(pattern, lines[0]), lines[0]


async def test_401_twice_raises_authentication_error() -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(
            401, json="Authorization has been denied.", headers={"X-Request-Id": "r-401"}
        )
        async with client() as sc:
            with pytest.raises(AuthenticationError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
        assert api["GetToken"].call_count == 2  # the first 401 fetched one new token
    assert route.call_count == 2
    assert info.value.status_code == 401
    assert info.value.request_id == "r-401"
    assert info.value.body == "Authorization has been denied."


async def test_error_without_request_id_or_body() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(404)
        async with client(max_retries=0) as sc:
            with pytest.raises(NotFoundError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert info.value.request_id is None
    assert info.value.body == ""
    assert "(no body)" in str(info.value)


@pytest.mark.parametrize(
    ("body", "content_type", "excerpt"),
    [
        (b'"The map was not found."', "application/json", "The map was not found."),
        (b'{"Message": "Bad map key."}', "application/json", "Bad map key."),
        (b'{"message": "lower case key"}', "application/json", "lower case key"),
        (b"plain   text\r\n  message", "text/plain", "plain text message"),
        (html_page("404 - File or directory not found.").encode(), "text/html", None),
        (b"<p>some <b>markup</b></p>", "text/html", "some markup"),
    ],
)
async def test_body_excerpt_is_readable(body: bytes, content_type: str, excerpt: str) -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(
            400, content=body, headers={"Content-Type": content_type}
        )
        async with client() as sc:
            with pytest.raises(BadRequestError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    expected = excerpt or "404 - File or directory not found."
    assert info.value.body == expected
    assert expected in str(info.value)


async def test_long_body_is_cut_to_an_excerpt() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(400, text="word " * 2000)
        async with client() as sc:
            with pytest.raises(BadRequestError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert len(info.value.body) == 200
    assert info.value.body.endswith("…")
    assert info.value.body.startswith("word word")
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), ("61", 61.0), ("3600", 3600.0)])
async def test_retry_after_longer_than_a_minute_raises_at_once(
    header: str, seconds: float, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(
            429, text="Too many requests", headers={"Retry-After": header}
        )
        async with client(max_retries=5) as sc:
            with pytest.raises(RateLimitError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert route.call_count == 1
    assert sleeps.delays == []
    assert info.value.retry_after == seconds
    assert f"wait {seconds:g}s" in str(info.value)


async def test_after_a_long_retry_after_the_next_call_fails_at_once_unsent(
    sleeps: SleepRecorder,
) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(429, headers={"Retry-After": "120"})
        async with client(max_retries=5) as sc:
            with pytest.raises(RateLimitError):
                await sc.maps.columns(GUID_CUSTOMERS)
            with pytest.raises(RateLimitError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)  # the gate is closed for 2 minutes
    assert route.call_count == 1  # the second call never left the client
    assert sleeps.delays == []
    assert info.value.retry_after is not None
    assert 119 <= info.value.retry_after <= 120
    assert info.value.status_code == 429
    message = str(info.value)
    assert "GetMapColumns: the server's rate limit allows the next call in 1" in message
    assert "longer than this call may wait (30s); nothing was sent" in message  # pool timeout


async def test_retry_after_http_date(sleeps: SleepRecorder) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(minutes=10), usegmt=True)
    with mock_api() as api:
        api.post("/GetMapColumns").respond(503, headers={"Retry-After": when})
        async with client(max_retries=3) as sc:
            with pytest.raises(ServerError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert info.value.retry_after is not None
    assert 590 <= info.value.retry_after <= 600
    assert sleeps.delays == []


async def test_retry_after_is_waited_for(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": "0.04"}),
                httpx.Response(503, headers={"Retry-After": "0"}),
                columns_answer(),
            ]
        )
        async with client(max_retries=2) as sc:
            assert await sc.maps.columns(GUID_CUSTOMERS) == COLUMNS
    assert route.call_count == 3
    # The server's wait plus a small spread (0.05 s + 10 %), not the back-off (>= 0.25 s).
    # Both stay under SleepRecorder.REAL_UP_TO, so they really pass and the rate gate,
    # closed by the Retry-After, is open again by the time of the retry (no third wait).
    first, second = sleeps.delays
    assert 0.04 <= first <= 0.04 + 0.05 + 0.004
    assert 0.0 <= second <= 0.05


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_reads_are_retried_then_raise(status: int, sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(status, headers={"X-Request-Id": "last"})
        async with client(max_retries=3) as sc:
            with pytest.raises(APIStatusError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert route.call_count == 4
    assert info.value.status_code == status
    assert len(sleeps.delays) == 3
    for retry, delay in enumerate(sleeps.delays, start=1):
        ceiling = 0.5 * 2 ** (retry - 1)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_read_succeeds_after_transient_failures(status: int, sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(
            side_effect=[httpx.Response(status), httpx.Response(status), columns_answer()]
        )
        async with client(max_retries=2) as sc:
            assert await sc.maps.columns(GUID_CUSTOMERS) == COLUMNS
    assert route.call_count == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize("status", [400, 403, 404, 409, 501])
async def test_other_statuses_are_not_retried(status: int, sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(status)
        async with client(max_retries=3) as sc:
            with pytest.raises(APIStatusError):
                await sc.maps.columns(GUID_CUSTOMERS)
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_max_retries_zero_sends_once(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(503)
        async with client(max_retries=0) as sc:
            with pytest.raises(ServerError):
                await sc.maps.columns(GUID_CUSTOMERS)
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_connect_error_is_retried_then_raises(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(side_effect=httpx.ConnectError)
        async with client(max_retries=2) as sc:
            with pytest.raises(APIConnectionError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert type(info.value) is APIConnectionError
    assert info.value.sent is False
    assert info.value.endpoint == "GetMapColumns"
    assert "could not connect" in str(info.value)
    assert route.call_count == 3
    assert len(sleeps.delays) == 2


async def test_connect_error_then_success(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(
            side_effect=[httpx.ConnectError("refused"), columns_answer()]
        )
        async with client() as sc:
            assert await sc.maps.columns(GUID_CUSTOMERS) == COLUMNS
    assert route.call_count == 2
    assert len(sleeps.delays) == 1


@pytest.mark.parametrize(
    ("failure", "error", "sent"),
    [
        (httpx.ReadTimeout, APITimeoutError, True),
        (httpx.ConnectTimeout, APITimeoutError, False),
        (httpx.PoolTimeout, APITimeoutError, False),
        (httpx.WriteTimeout, APITimeoutError, False),
        (httpx.WriteError, APIConnectionError, False),
        (httpx.ReadError, APIConnectionError, True),
        (httpx.RemoteProtocolError, APIConnectionError, True),
    ],
)
async def test_transport_failures_of_reads(
    failure: type[Exception], error: type[APIConnectionError], sent: bool, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(side_effect=failure)
        async with client(max_retries=1) as sc:
            with pytest.raises(error) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert type(info.value) is error
    assert info.value.sent is sent
    assert info.value.endpoint == "GetMapColumns"
    assert route.call_count == 2  # a read is safe to send again
    assert len(sleeps.delays) == 1


async def test_common_request_headers() -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(return_value=columns_answer())
        async with client() as sc:
            await sc.maps.columns(GUID_CUSTOMERS)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("smartconnect-async/")
    assert "Content-Type" not in request.headers
    assert request.content == b""


async def test_per_client_timeout_reaches_httpx() -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(return_value=columns_answer())
        async with client(timeout=12.5) as sc:
            await sc.maps.columns(GUID_CUSTOMERS)
    timeouts = route.calls.last.request.extensions["timeout"]
    assert timeouts == {"connect": 12.5, "read": 12.5, "write": 12.5, "pool": 12.5}


async def test_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        client(max_retries=-1)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("1", TypeError, "max_retries must be an int, not str"),
        (1.5, TypeError, "max_retries must be an int, not float"),
        (True, TypeError, "max_retries must be an int, not bool"),
        (-1, ValueError, "max_retries must be at least 0, not -1"),
    ],
)
async def test_a_calls_bad_max_retries_is_refused_before_sending(
    value: object, error: type[Exception], message: str
) -> None:
    with mock_api() as api:
        async with client() as sc:
            with pytest.raises(error) as info:
                await sc.maps.list(max_retries=value)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert not api.calls


# ---- redirects -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["runmap", "GetMapList"])
async def test_a_user_client_that_follows_redirects_never_follows_one(
    status: int, endpoint: str
) -> None:
    # Followed, a 307 would re-send a run, token and all, to another host.
    elsewhere = "https://elsewhere.example/API/" + endpoint
    with mock_api() as api:
        api.post("/" + endpoint).respond(status, headers={"Location": elsewhere})
        stolen = api.post(elsewhere).respond(200, json=[])
        async with (
            httpx.AsyncClient(follow_redirects=True) as http,
            client(http_client=http, max_retries=0) as sc,
        ):
            call = sc.runs.run(GUID_CUSTOMERS) if endpoint == "runmap" else sc.maps.list()
            # A run's redirect, never followed, may come after the run (a 303 after a
            # POST): its outcome is unknown.
            error = RunOutcomeUnknown if endpoint == "runmap" else APIStatusError
            with pytest.raises(error) as info:
                await call
    assert info.value.status_code == status
    assert stolen.call_count == 0


# ---- a call's whole time is bounded (Timeout.total) --------------------------------------


class Trickle(httpx.AsyncByteStream):
    """A body sent one byte every ``pause`` seconds."""

    def __init__(self, body: bytes, pause: float = 0.05) -> None:
        self.body = body
        self.pause = pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for byte in self.body:
            await anyio.sleep(self.pause)
            yield bytes([byte])


def _trickling(body: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=Trickle(body))


async def test_a_trickling_answer_ends_at_the_total_timeout() -> None:
    with mock_api() as api:
        api.post("/GetMapList").mock(side_effect=lambda _: _trickling(MAP_LIST_JSON))
        async with client(timeout=Timeout(5, total=0.3), max_retries=0) as sc:
            started = anyio.current_time()
            with pytest.raises(APITimeoutError) as info:
                await sc.maps.list()
            assert anyio.current_time() - started < 2
    assert info.value.sent is True


async def test_a_trickling_run_answer_is_outcome_unknown_and_frees_its_slot() -> None:
    answers = iter([_trickling(dumps(run_json())), httpx.Response(200, json=run_json())])
    with mock_api() as api:
        route = api.post("/runmap").mock(side_effect=lambda _: next(answers))
        async with client(timeout=Timeout(5, total=0.3), max_concurrent_runs=1) as sc:
            with pytest.raises(RunOutcomeUnknown):
                await sc.runs.run(GUID_CUSTOMERS)
            with anyio.fail_after(2):  # the only run slot came back
                assert (await sc.runs.run(GUID_CUSTOMERS)).run_number == 42
    assert route.call_count == 2


async def test_no_back_off_goes_past_the_total_timeout(sleeps: SleepRecorder) -> None:
    # The first back-off is at least 0.25 s: past a total of 0.2 s, so none is made.
    with mock_api() as api:
        route = api.post("/GetMapList").respond(503)
        async with client(timeout=Timeout(5, total=0.2), max_retries=10) as sc:
            with pytest.raises(ServerError):
                await sc.maps.list()
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_the_total_timeout_counts_the_wait_for_a_run_slot() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.6)
        return httpx.Response(200, json=run_json())

    outcomes: list[object] = []
    with mock_api() as api:
        api.post("/runmap").mock(side_effect=slow)
        async with client(timeout=Timeout(5, total=0.8), max_concurrent_runs=1) as sc:

            async def run() -> None:
                try:
                    outcomes.append(await sc.runs.run(GUID_CUSTOMERS))
                except SmartConnectError as exc:
                    outcomes.append(exc)

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                tg.start_soon(run)
            elapsed = anyio.current_time() - started
    assert elapsed < 1.2  # not 0.6 + 0.6
    assert sum(isinstance(o, SmartConnectError) for o in outcomes) == 1


async def test_the_total_timeout_bounds_a_stream_until_it_starts() -> None:
    async def late(_request: httpx.Request) -> httpx.Response:
        await anyio.sleep(2)
        return httpx.Response(200, content=b"<string/>")

    with mock_api() as api:
        api.post("/GetAllData").mock(side_effect=late)
        async with client(timeout=Timeout(5, total=0.3), max_retries=0) as sc:
            started = anyio.current_time()
            rows = sc.data.iter_rows(GUID_CUSTOMERS)
            with pytest.raises(APITimeoutError):
                await anext(rows)
            assert anyio.current_time() - started < 1.5
            await rows.aclose()


async def test_a_stream_read_under_the_caller_s_own_cancel_scope() -> None:
    # The deadline of a stream must never hold a cancel scope across a row handed out.
    answer = data_answer(table_xml({"T": [{"A": str(i)} for i in range(50)]}))
    with mock_api() as api:
        api.post("/GetAllData").respond(200, content=answer)
        async with client() as sc:
            got = []
            async with sc.data.iter_rows(GUID_CUSTOMERS) as rows:
                while True:
                    with anyio.fail_after(5):
                        row = await anext(rows, None)
                    if row is None:
                        break
                    got.append(row)
    assert [r["A"] for r in got] == [str(i) for i in range(50)]


async def test_closing_the_client_while_a_call_waits_is_client_closed_error() -> None:
    release = anyio.Event()

    async def held(_request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=run_json())

    with mock_api() as api:
        api.post("/runmap").mock(side_effect=held)
        sc = client(max_concurrent_runs=1)
        await sc.auth.get_token()
        errors: list[BaseException] = []

        async def second() -> None:
            try:
                await sc.runs.run(GUID_CUSTOMERS)
            except BaseException as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)  # takes the only run slot, held
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)  # waits for the slot
            await anyio.wait_all_tasks_blocked()
            await sc.aclose()
            release.set()
    assert any(isinstance(e, ClientClosedError) for e in errors)
    assert all(isinstance(e, SmartConnectError) for e in errors)


# ---- a call that ends early gives its place in the pool back ------------------------


@pytest.mark.parametrize("ending", ["cancelled in GetToken", "cancelled in its answer", "500"])
async def test_a_call_that_ends_early_leaves_the_pool_as_it_found_it(ending: str) -> None:
    # With a pool of one connection, a company with a call under way has the connection
    # kept for it; once that call has ended, however it ended, another company's call
    # takes the connection at once.
    stalled = StalledToken()
    answered = anyio.Event()

    async def stalled_answer(_request: httpx.Request) -> httpx.Response:
        answered.set()
        await anyio.sleep_forever()
        raise AssertionError

    with mock_api(token=None) as api:
        api.post("/GetToken").mock(side_effect=stalled)
        first_answer = {"cancelled in its answer": [stalled_answer], "500": [httpx.Response(500)]}
        api.post("/GetMapColumns").side_effect = [*first_answer.get(ending, []), columns_answer()]
        if ending != "cancelled in GetToken":
            stalled.release.set()
        async with client(max_connections=1, max_retries=0) as sc:
            pool = sc._transport.limits.connections
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    with pytest.raises(ServerError) if ending == "500" else nullcontext():
                        await sc.maps.columns(GUID_CUSTOMERS)

                tg.start_soon(first)
                if ending == "cancelled in GetToken":
                    await stalled.sent.wait()
                    tg.cancel_scope.cancel()
                elif ending == "cancelled in its answer":
                    await answered.wait()
                    tg.cancel_scope.cancel()
            stalled.release.set()
            other = sc.with_credentials(
                Credentials(email="b@example.com", password="pw", company_id="OTHER")
            )
            with anyio.fail_after(5):
                got = await other.maps.columns(GUID_CUSTOMERS, timeout=Timeout(5, pool=0.2))
            assert got == COLUMNS
            assert (pool.free, pool._kept, pool._under_way, pool._held) == (1, 0, {}, {})
