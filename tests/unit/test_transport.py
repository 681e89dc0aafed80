"""_transport.py (through the public client): common headers, error statuses mapped to
exceptions with their attributes, retries of reads, connection failures, HTML answers."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import anyio
import httpx
import pytest
from unit_support import (
    COLUMNS_JSON,
    COMPANY,
    GUID_CUSTOMERS,
    GUID_ORDERS,
    MAP_LIST_JSON,
    TOKEN,
    CountedBody,
    SleepRecorder,
    client,
    data_answer,
    dumps,
    html_page,
    mock_api,
    query,
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
    Column,
    NotFoundError,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
    SmartConnect,
    SmartConnectError,
    Timeout,
)

pytestmark = pytest.mark.anyio

COLUMNS = [
    Column("AccountNumber", True),
    Column("AccountName", False),
    Column("Phone", False),
]
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _ok() -> httpx.Response:
    return httpx.Response(200, content=COLUMNS_JSON, headers=JSON_HEADERS)


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
                _ok(),
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
            side_effect=[httpx.Response(status), httpx.Response(status), _ok()]
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
        route = api.post("/GetMapColumns").mock(side_effect=[httpx.ConnectError("refused"), _ok()])
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


async def test_html_page_with_status_200_on_json_endpoint() -> None:
    page = html_page("Service Unavailable - maintenance")
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(
            200, text=page, headers={"Content-Type": "text/html", "X-Request-Id": "iis-1"}
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert type(info.value) is ResponseParseError
    assert info.value.endpoint == "GetMapColumns"
    assert info.value.request_id == "iis-1"
    assert "HTML page" in str(info.value)
    assert "Service Unavailable - maintenance" in str(info.value)
    assert route.call_count == 1  # not retried


async def test_html_body_is_recognised_whatever_the_content_type() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(
            200, text="\r\n <!DOCTYPE html><html><body>x</body></html>", headers=JSON_HEADERS
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError, match="HTML page"):
                await sc.maps.columns(GUID_CUSTOMERS)


async def test_common_request_headers() -> None:
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(return_value=_ok())
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
        route = api.post("/GetMapColumns").mock(return_value=_ok())
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


# ---- waiting for a token another call fetches ---------------------------------------


class StalledToken:
    """A GetToken answer held back until ``release`` is set."""

    def __init__(self) -> None:
        self.sent = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, _request: httpx.Request) -> httpx.Response:
        self.sent.set()
        await self.release.wait()
        return httpx.Response(200, json=TOKEN)


async def test_a_wait_for_another_call_s_token_is_bounded_by_the_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        columns = api.post("/GetMapColumns").mock(return_value=_ok())
        run = api.post("/runmap").respond(200, json={})
        async with client() as sc:
            got: list[list[Column]] = []

            async def lead() -> None:
                got.append(await sc.maps.columns(GUID_CUSTOMERS))

            async with anyio.create_task_group() as tg:
                tg.start_soon(lead)
                await stalled.sent.wait()
                started = anyio.current_time()
                with anyio.fail_after(5), pytest.raises(APITimeoutError) as raised:
                    await sc.runs.run(GUID_CUSTOMERS, timeout=Timeout(30, pool=0.05))
                waited = anyio.current_time() - started
                assert not got  # the fetch goes on for the call that sent it
                stalled.release.set()
    error = raised.value
    assert str(error) == (
        f"runmap for map {GUID_CUSTOMERS}: no token for company {COMPANY} came within "
        "0.05s (another call is still getting it, from the token store or with GetToken); "
        "nothing was sent"
    )
    assert (error.endpoint, error.sent) == ("runmap", False)
    assert 0.05 <= waited < 1
    assert got == [COLUMNS]
    assert (get_token.call_count, columns.call_count, run.call_count) == (1, 1, 0)


async def test_get_token_waits_for_another_call_s_fetch_within_the_client_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapColumns").mock(return_value=_ok())
        async with client(timeout=Timeout(30, pool=0.05)) as sc:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
                await stalled.sent.wait()
                with (
                    anyio.fail_after(5),
                    pytest.raises(APITimeoutError, match=r"^GetToken: no token for company "),
                ):
                    await sc.auth.get_token()
                stalled.release.set()
            assert (await sc.auth.get_token()).value == TOKEN
    assert get_token.call_count == 1


async def test_validate_waits_for_another_call_s_token_within_its_own_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapColumns").mock(return_value=_ok())
        validate = api.post("/validate").respond(200, json=True)
        # The client's pool timeout is 30 s; the call's is 0.05 s.
        async with client(timeout=30) as sc, anyio.create_task_group() as tg:
            tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
            await stalled.sent.wait()
            started = anyio.current_time()
            with anyio.fail_after(5), pytest.raises(APITimeoutError) as raised:
                await sc.auth.validate(timeout=Timeout(30, pool=0.05))
            waited = anyio.current_time() - started
            stalled.release.set()
    assert str(raised.value) == (
        f"validate: no token for company {COMPANY} came within 0.05s (another call is "
        "still getting it, from the token store or with GetToken); nothing was sent"
    )
    assert (raised.value.endpoint, raised.value.sent) == ("validate", False)
    assert waited < 1
    assert (get_token.call_count, validate.call_count) == (1, 0)


# ---- looking a map name up while another call fetches the map list -----------------


async def test_a_wait_for_the_map_list_another_call_fetches_is_bounded_by_the_pool_timeout() -> (
    None
):
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        columns = api.post("/GetMapColumns").mock(return_value=_ok())
        run = api.post("/runmap").respond(200, json=run_json())
        async with client() as sc:
            got: list[list[Column]] = []

            async def lead() -> None:  # takes the map list's lock, then waits for a token
                got.append(await sc.maps.columns("Import Customers"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(lead)
                await stalled.sent.wait()
                started = anyio.current_time()
                with anyio.fail_after(5), pytest.raises(APITimeoutError) as raised:
                    await sc.runs.run("Import Customers", timeout=Timeout(30, pool=0.05))
                waited = anyio.current_time() - started
                assert not got  # the lookup goes on for the call that makes it
                stalled.release.set()
            # Once the list is known, a name costs no wait and no call.
            result = await sc.runs.run("Import Customers", timeout=Timeout(30, pool=0.001))
            assert result.run_number == 42
    assert str(raised.value) == (
        f"GetMapList: the map list of company {COMPANY} that another call is fetching did "
        "not come within 0.05s (looking up map 'Import Customers'); nothing was sent"
    )
    assert (raised.value.endpoint, raised.value.sent) == ("GetMapList", False)
    assert 0.05 <= waited < 1
    assert got == [COLUMNS]
    counts = (get_token.call_count, map_list.call_count, columns.call_count, run.call_count)
    assert counts == (1, 1, 1, 1)
    assert f"mapKey={GUID_CUSTOMERS}".encode() in query(run)


async def _rows(rows: AsyncIterable[object]) -> list[object]:
    return [row async for row in rows]


@pytest.mark.parametrize(
    "method",
    [
        lambda sc: sc.runs.run("Import Customers", max_retries=0),
        lambda sc: sc.maps.columns("Import Customers", max_retries=0),
        lambda sc: sc.data.get_all("Import Customers", max_retries=0),
        lambda sc: sc.runs.run_data_table("Import Customers", [{"A": 1}], max_retries=0),
        lambda sc: sc.runs.run_xml("Import Customers", [{"A": 1}], max_retries=0),
        lambda sc: sc.maps.mapped_columns("Import Customers", max_retries=0),
        lambda sc: _rows(sc.data.iter_rows("Import Customers", max_retries=0)),
        lambda sc: sc.errors.save(
            "Import Customers",
            tenant_server="srv",
            tenant_technical_name="tenant",
            run_number=1,
            max_retries=0,
        ),
    ],
    ids=[
        "runs.run",
        "maps.columns",
        "data.get_all",
        "runs.run_data_table",
        "runs.run_xml",
        "maps.mapped_columns",
        "data.iter_rows",
        "errors.save",
    ],
)
async def test_a_name_lookup_fetches_the_map_list_with_the_call_s_retries(
    method: Callable[[SmartConnect], Awaitable[object]],
) -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(503, json={"Message": "Busy."})
        async with client(max_retries=2) as sc:
            with pytest.raises(ServerError) as raised:
                await method(sc)
    assert raised.value.endpoint == "GetMapList"
    assert map_list.call_count == 1  # the call's max_retries=0, not the client's 2


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


# ---- bodies read whole are bounded ------------------------------------------------------


def _big(
    status: int, size: int, *, gzip_it: bool = False, chunk: int = 1 << 16
) -> tuple[httpx.Response, CountedBody]:
    payload = b'{"Message": "' + b"x" * size + b'"}'
    headers = {"Content-Type": "application/json"}
    if gzip_it:
        payload = gzip.compress(payload)
        headers["Content-Encoding"] = "gzip"
        chunk = 1024
    body = CountedBody([payload[i : i + chunk] for i in range(0, len(payload), chunk)])
    return httpx.Response(status, headers=headers, stream=body), body


@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
async def test_only_the_start_of_a_huge_error_body_is_read(gzip_it: bool) -> None:
    answer, body = _big(500, 64 << 20, gzip_it=gzip_it)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_retries=0) as sc:
            with pytest.raises(ServerError) as info:
                await sc.maps.list()
    assert info.value.body == ('{"Message": "' + "x" * 200)[:199] + "…"  # too long to parse
    assert body.pulled <= 3 < len(body.chunks)


@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
async def test_an_answer_over_max_answer_size_is_refused_unread(gzip_it: bool) -> None:
    answer, body = _big(200, 8 << 20, gzip_it=gzip_it)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_answer_size=1 << 20) as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.list()
    assert str(info.value) == (
        "GetMapList: the answer is larger than 1,048,576 bytes (max_answer_size); "
        "the rest was not read"
    )
    assert body.pulled < len(body.chunks)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),  # no zlib header: httpx and aiohttp read it too
        ("deflate", gzip.compress),
        ("GZIP", gzip.compress),
    ],
    ids=["gzip", "deflate", "raw-deflate", "gzip-as-deflate", "upper-case"],
)
async def test_compressed_answers_are_read_and_asked_for_as_gzip_or_deflate(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    payload = compress(MAP_LIST_JSON)
    chunks = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    answer = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=CountedBody(chunks))
    with mock_api() as api:
        route = api.post("/GetMapList").mock(return_value=answer)
        async with client() as sc:
            maps = await sc.maps.list()
    assert [m.key for m in maps] == [GUID_CUSTOMERS, GUID_ORDERS]
    assert route.calls.last.request.headers["Accept-Encoding"] == "gzip, deflate"


async def test_an_empty_compressed_answer_is_an_empty_body() -> None:
    answer = httpx.Response(503, headers={"Content-Encoding": "gzip"}, stream=CountedBody([]))
    with mock_api() as api:
        route = api.post("/runmap").mock(side_effect=[answer, httpx.Response(200, json=run_json())])
        async with client(max_retries=1) as sc:
            assert (await sc.runs.run(GUID_CUSTOMERS)).ok  # a 503, so sent again: not unknown
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("compressed", "error"),
    [
        (gzip.compress(MAP_LIST_JSON)[:10] + b"\xff" * 40, "is corrupt: Error -3"),
        (gzip.compress(MAP_LIST_JSON)[:-12], "ends early"),
    ],
    ids=["corrupt", "truncated"],
)
async def test_a_broken_compressed_answer_is_a_failed_read(compressed: bytes, error: str) -> None:
    stream = CountedBody([compressed])  # as it came: httpx decodes a given content
    answer = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_retries=0) as sc:
            with pytest.raises(APIConnectionError, match=f"the compressed answer {error}"):
                await sc.maps.list()


async def test_a_run_answer_over_max_answer_size_is_outcome_unknown() -> None:
    answer, _ = _big(200, 4 << 20)
    with mock_api() as api:
        route = api.post("/runmap").mock(return_value=answer)
        async with client(max_answer_size=1 << 20) as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 1  # processed: never sent again
    assert "larger than 1,048,576 bytes" in str(info.value)
    assert (info.value.body or "").startswith('{"Message": "xxx')


async def test_an_answer_of_max_answer_size_exactly_is_read() -> None:
    payload = dumps([{"MapKey": GUID_CUSTOMERS, "MapId": "M" * 2000, "MapDescription": ""}])
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=payload)
        async with client(max_answer_size=len(payload)) as sc:
            assert (await sc.maps.list())[0].id == "M" * 2000


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


async def test_a_wait_for_another_call_s_token_is_bounded_by_the_total_too() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client(timeout=Timeout(30, total=60)) as sc, anyio.create_task_group() as tg:
            tg.start_soon(sc.maps.list)  # sends the GetToken, held back
            await stalled.sent.wait()
            with anyio.fail_after(2), pytest.raises(APITimeoutError) as info:
                await sc.maps.columns(GUID_CUSTOMERS, timeout=Timeout(30, total=0.2))
            assert "no token for company" in str(info.value)
            stalled.release.set()


async def test_a_huge_html_page_with_status_200_is_an_html_page_error_read_in_part() -> None:
    page = b"<html><head><title>Maintenance</title></head><body>" + b"x" * (8 << 20)
    body = CountedBody([page[i : i + (1 << 16)] for i in range(0, len(page), 1 << 16)])
    with mock_api() as api:
        api.post("/GetMapList").mock(
            return_value=httpx.Response(200, headers={"Content-Type": "text/html"}, stream=body)
        )
        async with client(max_retries=0) as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.list()
    assert str(info.value) == (
        "GetMapList answered with an HTML page instead of data (HTTP 200): Maintenance"
    )
    assert body.pulled <= 3


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
