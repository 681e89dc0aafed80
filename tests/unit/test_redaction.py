"""_redact.py and the promise built on it: no token, password or hashed password (raw or
percent-encoded) in any exception, repr or log record."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx
from unit_support import (
    API_URL,
    COMPANY,
    CREDS,
    EMAIL,
    GETALLDATA_XML,
    GUID_CUSTOMERS,
    HASHED,
    HASHED_Q,
    MAP_LIST_JSON,
    PASSWORD,
    PLUS_TOKEN,
    PLUS_TOKEN_Q,
    TOKEN,
    TOKEN_Q,
    ChunkStream,
    SleepRecorder,
    assert_no_secret,
    client,
    dumps,
    html_page,
    mock_api,
    run_json,
)

from smartconnect_async import (
    Credentials,
    MapRunFailed,
    MemoryTokenStore,
    SmartConnect,
    SmartConnectError,
    Token,
    TokenKey,
    redact_url,
)
from smartconnect_async._redact import REDACTED, RedactQueryFilter, redact
from smartconnect_async._tokens import TokenCache
from smartconnect_async.runs import parse_run_result

SECRETS = (PLUS_TOKEN, TOKEN, PASSWORD, HASHED)


def _texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts.append(_frame_locals(exc))
    texts += [str(a) for a in exc.args] + [repr(a) for a in exc.args]
    texts += [str(v) for v in vars(exc).values()]
    return texts


def _frame_locals(exc: BaseException) -> str:
    """What error trackers and rich's ``show_locals`` show: the traceback with every
    frame's local variables, from the frame below the test's own (whose locals are the
    test's data) to the raise, causes and contexts included."""
    assert exc.__traceback__ is not None
    below = exc.__traceback__.tb_next
    shown = traceback.TracebackException(type(exc), exc, below, capture_locals=True)
    text = "".join(shown.format())
    assert re.search(r"^    \w+ = ", text, re.MULTILINE)  # the locals were captured
    return text


def assert_clean(exc: BaseException) -> None:
    for text in _texts(exc):
        assert_no_secret(text, *SECRETS)


# ---- redact_url / redact ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"POST {API_URL}/GetMapList?token={TOKEN_Q} 200",
            f"POST {API_URL}/GetMapList?token={REDACTED} 200",
        ),
        (
            f"{API_URL}/GetToken?email=a%40b.c&password={HASHED_Q}&companyId=C",
            f"{API_URL}/GetToken?email=a%40b.c&password={REDACTED}&companyId=C",
        ),
        (
            f"?mapKey=k&token={PLUS_TOKEN_Q}&x=1",
            f"?mapKey=k&token={REDACTED}&x=1",
        ),
        (f"'{API_URL}/x?TOKEN=abc'", f"'{API_URL}/x?TOKEN={REDACTED}'"),
        ("no secrets here; mytoken=abc", "no secrets here; mytoken=abc"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_redact_replaces_raw_and_encoded_secrets() -> None:
    text = f"a {PLUS_TOKEN} b {PLUS_TOKEN_Q} c {HASHED} d {HASHED_Q} e"
    assert redact(text, [PLUS_TOKEN, HASHED]) == (
        f"a {REDACTED} b {REDACTED} c {REDACTED} d {REDACTED} e"
    )


@pytest.mark.parametrize("kept", [8, 20, 37])
def test_the_start_of_a_secret_a_cut_left_is_redacted(kept: int) -> None:
    # A 60-character excerpt of an answer echoing the hashed password ends inside it.
    text = f"GetToken answer is not valid JSON: 'echo {HASHED[:kept]}'"
    redacted = redact(text, (PASSWORD, HASHED))
    assert HASHED[:kept] not in redacted
    assert redacted == "GetToken answer is not valid JSON: 'echo [REDACTED]'"


def test_a_whole_secret_is_redacted_whole() -> None:
    assert redact(f"a {HASHED} b {HASHED[:-3]}", (HASHED,)) == "a [REDACTED] b [REDACTED]"
    assert redact("short ab+c", ("ab+cdefghijk",)) == "short ab+c"  # under 8: kept


def test_redact_filter_rewrites_httpx_style_records() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s %d %s"',
        ("POST", f"{API_URL}/runmap?token={TOKEN_Q}&mapKey=k", "HTTP/1.1", 200, "OK"),
        None,
    )
    assert RedactQueryFilter().filter(record) is True
    assert record.getMessage() == (
        f'HTTP Request: POST {API_URL}/runmap?token={REDACTED}&mapKey=k "HTTP/1.1 200 OK"'
    )


# ---- reprs --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reprs_hold_no_secret() -> None:
    issued = datetime(2026, 1, 1, tzinfo=timezone.utc)
    token = Token(value=TOKEN, company_id=COMPANY, email=EMAIL, issued_at=issued, expires_at=issued)
    key = TokenKey.of(API_URL, COMPANY, EMAIL)
    store = MemoryTokenStore()
    await store.set(key, token)
    plain = Credentials(email=EMAIL, password=PASSWORD, company_id=COMPANY, hash_password=False)
    with mock_api(token=PLUS_TOKEN):
        async with client() as sc:
            await sc.auth.get_token()
            objects: list[Any] = [
                sc,
                sc.with_credentials(plain),
                CREDS,
                plain,
                token,
                await sc.auth.get_token(),
                key,
                store,
                TokenCache(store),
                parse_run_result(b'{"Status": 0, "ErrorMessage": "x", "Secret": "hidden"}'),
            ]
            for obj in objects:
                assert_no_secret(repr(obj), *SECRETS)
                assert_no_secret(str(obj), *SECRETS)
    assert "password=" not in repr(CREDS).replace("hash_password=", "")
    assert EMAIL in repr(CREDS)
    assert COMPANY in repr(CREDS)


# ---- exceptions ---------------------------------------------------------------------

Scenario = Callable[[SmartConnect], Awaitable[Any]]


async def _columns(sc: SmartConnect) -> Any:
    return await sc.maps.columns(GUID_CUSTOMERS)


async def _run(sc: SmartConnect) -> Any:
    return await sc.runs.run(GUID_CUSTOMERS)


async def _rows(sc: SmartConnect) -> Any:
    return [row async for row in sc.data.iter_rows(GUID_CUSTOMERS)]


async def _token(sc: SmartConnect) -> Any:
    return await sc.auth.get_token()


ECHO_QUERY = f"Bad request /API/GetMapColumns?token={PLUS_TOKEN_Q}&mapKey={GUID_CUSTOMERS}"


def _echo_login(status: int, as_json: bool = False) -> Callable[[httpx.Request], httpx.Response]:
    """A GetToken answer quoting the query string it got and the password, decoded."""

    def answer(request: httpx.Request) -> httpx.Response:
        text = f"Denied: {request.url.query.decode()} ({request.url.params['password']})"
        if as_json:
            return httpx.Response(status, json={"Message": text})
        return httpx.Response(status, text=text)

    return answer


def _echo_login_page(request: httpx.Request) -> httpx.Response:
    page = html_page(f"Login {request.url.params['password']}")
    return httpx.Response(200, text=page, headers={"Content-Type": "text/html"})


SCENARIOS: dict[str, tuple[str, Any, Scenario]] = {
    "get-token-401-echoes-query": ("GetToken", _echo_login(401), _token),
    "get-token-400-echoes-json": ("GetToken", _echo_login(400, as_json=True), _token),
    "get-token-html-200": ("GetToken", _echo_login_page, _token),
    "401-echoes-token": (
        "GetMapColumns",
        httpx.Response(401, json=f"Token {PLUS_TOKEN} is not valid"),
        _columns,
    ),
    "401-echoes-query": ("GetMapColumns", httpx.Response(401, text=ECHO_QUERY), _columns),
    "500-echoes-query-string": (
        "GetMapColumns",
        httpx.Response(500, text=f"<h1>Error</h1><pre>{ECHO_QUERY}</pre>"),
        _columns,
    ),
    "400-echoes-decoded-token": (
        "GetMapColumns",
        httpx.Response(400, json={"message": f"token '{PLUS_TOKEN}' rejected"}),
        _columns,
    ),
    "html-200-echoes-token": (
        "GetMapColumns",
        httpx.Response(
            200, text=html_page(f"Error for {PLUS_TOKEN}"), headers={"Content-Type": "text/html"}
        ),
        _columns,
    ),
    "bad-json-echoes-token": (
        "GetMapColumns",
        httpx.Response(200, text=f"token={PLUS_TOKEN_Q} {PLUS_TOKEN}"),
        _columns,
    ),
    "connect-error-with-url": (
        "GetMapColumns",
        httpx.ConnectError(f"cannot reach {API_URL}/GetMapColumns?token={PLUS_TOKEN_Q}"),
        _columns,
    ),
    "read-timeout-with-token": (
        "GetMapColumns",
        httpx.ReadTimeout(f"timed out waiting for token={PLUS_TOKEN_Q}"),
        _columns,
    ),
    "run-500-echoes-token": (
        "runmap",
        httpx.Response(500, text=f"Run failed: {ECHO_QUERY} {PLUS_TOKEN}"),
        _run,
    ),
    "run-read-timeout": ("runmap", httpx.ReadTimeout(f"token={PLUS_TOKEN_Q}"), _run),
    "run-unreadable-200": ("runmap", httpx.Response(200, text=f"?token={PLUS_TOKEN_Q}"), _run),
    "run-html-200": (
        "runmap",
        httpx.Response(200, text=html_page(PLUS_TOKEN), headers={"Content-Type": "text/html"}),
        _run,
    ),
    "stream-html-200": (
        "GetAllData",
        httpx.Response(200, text=html_page(PLUS_TOKEN), headers={"Content-Type": "text/html"}),
        _rows,
    ),
    "stream-broken-mid-answer": (
        "GetAllData",
        httpx.Response(
            200,
            stream=ChunkStream(
                GETALLDATA_XML,
                size=64,
                fail_after=2,
                error=httpx.ReadError(f"reset while reading token={PLUS_TOKEN_Q}"),
            ),
        ),
        _rows,
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("hashing", [True, False], ids=["hashed", "plain"])
@pytest.mark.parametrize(
    ("endpoint", "answer", "scenario"), list(SCENARIOS.values()), ids=list(SCENARIOS)
)
async def test_exceptions_hold_no_secret(
    endpoint: str, answer: Any, scenario: Scenario, hashing: bool, sleeps: SleepRecorder
) -> None:
    creds = Credentials(email=EMAIL, password=PASSWORD, company_id=COMPANY, hash_password=hashing)
    with mock_api(token=None if endpoint == "GetToken" else PLUS_TOKEN) as api:
        route = api.post(f"/{endpoint}")
        if isinstance(answer, httpx.Response):
            route.mock(return_value=answer)
        else:
            route.mock(side_effect=answer)
        async with client(credentials=creds, max_retries=1) as sc:
            with pytest.raises(SmartConnectError) as info:
                await scenario(sc)
    assert route.called
    assert_clean(info.value)
    assert REDACTED in str(info.value)  # the secret did reach the message, redacted


@pytest.mark.anyio
async def test_long_token_echoed_in_an_error_body_is_not_partly_shown() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(401, json=f"The token {TOKEN} has expired.")
        async with client() as sc:
            with pytest.raises(SmartConnectError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    shown = "".join(_texts(info.value))
    assert not any(TOKEN[i : i + 24] in shown for i in range(len(TOKEN) - 24))


@pytest.mark.anyio
async def test_api_url_without_host_leaks_nothing() -> None:
    with respx.mock(assert_all_called=False) as router:
        router.route().respond(json=TOKEN)  # whatever is asked
        try:
            sc = SmartConnect("https://", CREDS, backend="httpx")
        except ValueError as exc:  # refusing the URL at once is the fix
            assert_clean(exc)
            return
        async with sc:
            try:
                await sc.maps.list()
            except Exception as exc:
                error = exc
            else:
                pytest.fail("a client with no host made a successful call")
    assert_clean(error)
    assert isinstance(error, SmartConnectError)


def test_map_run_failed_redacts_a_quoted_request_url() -> None:
    answer = run_json(
        Status=1, ErrorMessage=f"Error calling {API_URL}/runmap?token={PLUS_TOKEN_Q}&mapKey=x"
    )
    with pytest.raises(MapRunFailed) as info:
        parse_run_result(dumps(answer)).raise_for_status()
    assert_no_secret(str(info.value), PLUS_TOKEN)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "echoed",
    [
        PLUS_TOKEN,
        PLUS_TOKEN_Q.lower(),
        PLUS_TOKEN.replace("+", "&#43;"),
        PLUS_TOKEN.replace("+", "\\u002B"),  # the parser read it: the text keeps it so
        HASHED,
    ],
    ids=["raw", "lower-percent", "html", "json-escape-text", "hashed-password"],
)
async def test_a_failed_run_quoting_a_secret_shows_it_nowhere(echoed: str) -> None:
    answer = run_json(Status=1, ErrorCount=1, ErrorMessage=f"Token {echoed} refused by tenant")
    with mock_api(token=PLUS_TOKEN) as api:
        api.post("/runmap").respond(200, json=answer)
        async with client() as sc:
            result = await sc.runs.run(GUID_CUSTOMERS)
    assert result.error_message == f"Token {REDACTED} refused by tenant"
    assert_no_secret(repr(result), *SECRETS)
    with pytest.raises(MapRunFailed) as info:
        result.raise_for_status()
    assert_clean(info.value)
    assert str(info.value).endswith(f": Token {REDACTED} refused by tenant")


# ---- logs ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_secret_in_any_log_record_of_a_full_session(
    caplog: pytest.LogCaptureFixture, sleeps: SleepRecorder
) -> None:
    for name in ("smartconnect_async", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json=PLUS_TOKEN), httpx.Response(200, json=TOKEN)]
        )
        api.post("/validate").respond(json=True)
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        api.post("/GetMapColumns").mock(
            side_effect=[
                httpx.Response(401, text=ECHO_QUERY),  # -> new token, retried
                httpx.Response(503, text=ECHO_QUERY, headers={"Retry-After": "0"}),
                httpx.Response(200, json=[]),
            ]
        )
        api.post("/GetMappedMapColumns").respond(200, json=[])
        api.post("/GetAllData").respond(200, content=GETALLDATA_XML)
        api.post("/GetAllDataWithVariables").respond(200, content=GETALLDATA_XML)
        api.post("/runmap").respond(500, text=f"boom {TOKEN}")
        api.post("/RunMapWithVariables").respond(200, json=run_json())
        api.post("/runmapdatatable").respond(200, json=run_json())
        api.post("/RunMapDataTableWithErrors").respond(200, json=run_json())
        api.post("/runmapxml").respond(200, json=run_json())
        api.post("/SaveProcessErrors").respond(200, json=True)
        async with client() as sc:
            assert await sc.auth.validate()
            await sc.maps.list()
            await sc.maps.columns("Import Customers")
            await sc.maps.mapped_columns(GUID_CUSTOMERS)
            await sc.data.get_all(GUID_CUSTOMERS)
            await sc.data.get_all(GUID_CUSTOMERS, {"GBL_A": "1"})
            assert len([r async for r in sc.data.iter_rows(GUID_CUSTOMERS)]) == 1
            with pytest.raises(SmartConnectError):
                await sc.runs.run(GUID_CUSTOMERS)
            await sc.runs.run(GUID_CUSTOMERS, {"GBL_A": "1"})
            await sc.runs.run_data_table(GUID_CUSTOMERS, [{"A": "1"}])
            await sc.runs.run_data_table(GUID_CUSTOMERS, [{"A": "1"}], with_errors=True)
            await sc.runs.run_xml(GUID_CUSTOMERS, [{"A": "1"}])
            await sc.errors.save(
                GUID_CUSTOMERS, tenant_server="s", tenant_technical_name="t", run_number=1
            )
    assert caplog.records
    for record in caplog.records:
        texts = [record.getMessage(), str(record.msg), str(record.args), record.exc_text or ""]
        for text in texts:
            assert_no_secret(text, *SECRETS)
    messages = [r.getMessage() for r in caplog.records]
    http_lines = [m for m in messages if m.startswith("HTTP Request:")]
    assert any(f"/GetMapColumns?token={REDACTED}&mapKey=" in m for m in http_lines)
    assert any(f"&password={REDACTED}&companyId={COMPANY}" in m for m in http_lines)
    assert any(m.startswith("retrying GetMapColumns") for m in messages)
    assert len(http_lines) >= 16
