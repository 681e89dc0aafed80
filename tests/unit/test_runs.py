"""runs.py: the five run endpoints on the wire, RunMapResponse parsing, and the rule that
a run that may have reached the server is never sent again."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
from unit_support import (
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    PASSWORD,
    PLUS_TOKEN,
    TOKEN,
    TOKEN_Q,
    SleepRecorder,
    client,
    dumps,
    html_page,
    mock_api,
    net_escape,
    run_json,
    sent_token,
)

from smartconnect_async import (
    APIConnectionError,
    BadRequestError,
    DataRequest,
    MapInfo,
    MapRunFailed,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    RunRequest,
    RunResult,
    ServerError,
    SmartConnectError,
    ValidationFailure,
)
from smartconnect_async.runs import parse_run_result

pytestmark = pytest.mark.anyio

ROWS: list[dict[str, object]] = [
    {"AccountNumber": "CUST001", "AccountName": "Purus & Co <Ltd>", "Active": True},
    {"AccountNumber": "CUST002", "Balance": Decimal("1E+2"), "Since": date(2020, 2, 29)},
]
DATA_TABLE_BODY = (
    b"<RequestData>"
    b"<Table><AccountNumber>CUST001</AccountNumber>"
    b"<AccountName>Purus &amp; Co &lt;Ltd&gt;</AccountName><Active>true</Active></Table>"
    b"<Table><AccountNumber>CUST002</AccountNumber><Balance>100</Balance>"
    b"<Since>2020-02-29</Since></Table>"
    b"</RequestData>"
)
XML_BODY = (
    b"<RequestData><Variables/><Xml>"
    b"&lt;DataSet&gt;"
    b"&lt;Table&gt;&lt;AccountNumber&gt;CUST001&lt;/AccountNumber&gt;"
    b"&lt;AccountName&gt;Purus &amp;amp; Co &amp;lt;Ltd&amp;gt;&lt;/AccountName&gt;"
    b"&lt;Active&gt;true&lt;/Active&gt;&lt;/Table&gt;"
    b"&lt;Table&gt;&lt;AccountNumber&gt;CUST002&lt;/AccountNumber&gt;"
    b"&lt;Balance&gt;100&lt;/Balance&gt;&lt;Since&gt;2020-02-29&lt;/Since&gt;&lt;/Table&gt;"
    b"&lt;/DataSet&gt;"
    b"</Xml></RequestData>"
)
ERRORS_XML = (
    "<DocumentElement>"
    "<Errors><RowNumber>2</RowNumber><ColumnName>AccountNumber</ColumnName>"
    "<Message>Customer 'CUST002' &amp; more: missing</Message></Errors>"
    "<Errors><RowNumber>3</RowNumber><ColumnName>Phone</ColumnName>"
    "<Message>Too long</Message></Errors>"
    "</DocumentElement>"
)


def _run_ok(**fields: Any) -> httpx.Response:
    return httpx.Response(200, json=run_json(**fields))


# ---- on the wire --------------------------------------------------------------------


async def test_runmap_wire_format() -> None:
    with mock_api() as api:
        answer = _run_ok()
        answer.headers["X-Request-Id"] = "req-7"
        route = api.post("/runmap").mock(return_value=answer)
        async with client() as sc:
            result = await sc.runs.run(GUID_CUSTOMERS)
    assert result.ok
    assert result.run_number == 42
    assert result.request_id == "req-7"
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/API/runmap"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Accept"] == "application/json"
    assert "Content-Type" not in request.headers
    assert request.content == b""


async def test_run_map_with_variables_wire_format() -> None:
    with mock_api() as api:
        route = api.post("/RunMapWithVariables").mock(return_value=_run_ok())
        plain = api.post("/runmap")
        async with client() as sc:
            await sc.runs.run(GUID_CUSTOMERS, {"GBL_TEST": "107210", "GBL_TEST2": "Sample"})
    assert not plain.called
    request = route.calls.last.request
    assert request.url.path == "/API/RunMapWithVariables"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.content == (
        b'[{"Key":"GBL_TEST","Value":"107210"},{"Key":"GBL_TEST2","Value":"Sample"}]'
    )


@pytest.mark.parametrize(
    ("with_errors", "endpoint"),
    [(False, "runmapdatatable"), (True, "RunMapDataTableWithErrors")],
)
async def test_data_table_wire_format(with_errors: bool, endpoint: str) -> None:
    with mock_api() as api:
        route = api.post(f"/{endpoint}").mock(return_value=_run_ok())
        async with client() as sc:
            await sc.runs.run_data_table(GUID_CUSTOMERS, ROWS, with_errors=with_errors)
    request = route.calls.last.request
    assert request.url.path == f"/API/{endpoint}"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Content-Type"] == "application/xml"
    assert request.headers["Accept"] == "application/json"
    assert request.content == DATA_TABLE_BODY


async def test_runmapxml_wire_format() -> None:
    with mock_api() as api:
        route = api.post("/runmapxml").mock(return_value=_run_ok())
        async with client() as sc:
            await sc.runs.run_xml(GUID_CUSTOMERS, ROWS)
    request = route.calls.last.request
    assert request.url.path == "/API/runmapxml"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Content-Type"] == "text/xml"
    assert request.headers["Accept"] == "application/json"
    assert request.content == XML_BODY


async def test_run_by_map_name() -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/runmap").mock(return_value=_run_ok())
        async with client() as sc:
            await sc.runs.run("Import Customers")
    assert route.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS


# ---- payload validation before any I/O ----------------------------------------------

BAD_ROWS: list[tuple[list[dict[str, object]], type[Exception], str]] = [
    ([{"1abc": "v"}], ValueError, "rows[0]: column name '1abc'"),
    ([{"ok": "v"}, {"a b": "v"}], ValueError, "rows[1]: column name 'a b'"),
    ([{"": "v"}], ValueError, "rows[0]: column name ''"),
    ([{"x:y": "v"}], ValueError, "rows[0]: column name 'x:y'"),
    ([{"A": "nul\x00"}], ValueError, "rows[0], column 'A'"),
    ([{"A": "ok"}, {"A": "vt\x0b"}], ValueError, "rows[1], column 'A'"),
    ([{"A": "\ufffe"}], ValueError, "rows[0], column 'A'"),
    ([{"A": float("nan")}], ValueError, "rows[0], column 'A'"),
    ([{"A": 1}, {"A": 2}, {"A": float("inf")}], ValueError, "rows[2], column 'A'"),
    ([{"A": 1j}], TypeError, "rows[0], column 'A'"),
    ([{"A": object()}], TypeError, "rows[0], column 'A'"),
    ([], ValueError, "empty"),
]


@pytest.mark.parametrize(("rows", "error", "message"), BAD_ROWS)
@pytest.mark.parametrize("method", ["table", "table-with-errors", "xml"])
async def test_bad_rows_fail_before_any_io(
    rows: list[dict[str, object]], error: type[Exception], message: str, method: str
) -> None:
    with mock_api() as api:
        routes = [
            api.post(f"/{name}")
            for name in ("runmapdatatable", "RunMapDataTableWithErrors", "runmapxml")
        ]
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client() as sc:
            if method == "xml":
                run = partial(sc.runs.run_xml, "Import Customers", rows)
            else:
                run = partial(
                    sc.runs.run_data_table, "Import Customers", rows, with_errors=method != "table"
                )
            with pytest.raises(error) as info:
                await run()
        assert message in str(info.value)
        assert not any(route.called for route in routes)
        assert not map_list.called
        assert not api["GetToken"].called


async def test_bad_variables_fail_before_any_io() -> None:
    with mock_api(token=None) as api:
        async with client() as sc:
            with pytest.raises(TypeError):
                await sc.runs.run("Import Customers", {"GBL_X": 1})  # type: ignore[dict-item]
    assert api.calls.call_count == 0


# ---- RunMapResponse -----------------------------------------------------------------


def test_parse_successful_run() -> None:
    result = parse_run_result(dumps(run_json(RunNumber=9007199254740993, RecordCount=3)))
    assert result == RunResult(
        status=0,
        run_number=9007199254740993,
        map_id="Import Customers",
        map_description="Customers to BC",
        record_count=3,
        error_count=0,
        error_message="",
    )
    assert result.ok
    assert result.raise_for_status() is result
    assert result.raw["MapId"] == "Import Customers"


def test_parse_errors_table_escaped() -> None:
    answer = run_json(Status=1, ErrorCount=2, Errors=net_escape(ERRORS_XML), ErrorMessage="x")
    result = parse_run_result(dumps(answer))
    assert result.errors == (
        ValidationFailure("Customer 'CUST002' & more: missing", "AccountNumber", 2),
        ValidationFailure("Too long", "Phone", 3),
    )
    assert not result.ok


def test_parse_errors_table_unescaped() -> None:
    result = parse_run_result(dumps(run_json(Errors=ERRORS_XML, ErrorCount=2)))
    assert len(result.errors) == 2
    assert result.errors[1] == ValidationFailure(message="Too long", column="Phone", row=3)


def test_parse_validation_errors_keep_unknown_fields() -> None:
    answer = run_json(
        ValidationErrors=[
            {
                "ColumnName": "AccountNumber",
                "RowNumber": 2,
                "Message": "required",
                "Severity": "Error",
                "TaskName": "Validate customer",
            },
            {"column": "Phone", "row": "7", "errorMessage": "too long"},
            "a bare message",
            {"Code": 17},
        ]
    )
    result = parse_run_result(dumps(answer))
    assert result.validation_errors == (
        ValidationFailure(
            message="required",
            column="AccountNumber",
            row=2,
            extra={"Severity": "Error", "TaskName": "Validate customer"},
        ),
        ValidationFailure(message="too long", column="Phone", row=7, extra={}),
        ValidationFailure(message="a bare message"),
        ValidationFailure(message="", column=None, row=None, extra={"Code": 17}),
    )
    assert not result.ok
    with pytest.raises(MapRunFailed) as info:
        result.raise_for_status()
    assert info.value.result is result


def test_parse_numbers_sent_as_strings() -> None:
    result = parse_run_result(dumps(run_json(Status="0", RunNumber="12", RecordCount=5.0)))
    assert (result.status, result.run_number, result.record_count) == (0, 12, 5)


def test_parse_nulls_take_defaults() -> None:
    answer = {"Status": 0, "RunNumber": None, "Errors": None, "ValidationErrors": None}
    result = parse_run_result(dumps(answer))
    assert result.run_number is None
    assert result.errors == ()
    assert result.validation_errors == ()
    assert (result.map_id, result.error_message, result.error_count) == ("", "", 0)


@pytest.mark.parametrize(
    ("status", "error_count", "errors", "ok"),
    [
        (0, 0, "", True),
        (1, 0, "", False),
        (2, 0, "", False),
        (0, 1, "", False),
        (0, 0, ERRORS_XML, False),
    ],
)
def test_ok_and_raise_for_status(status: int, error_count: int, errors: str, ok: bool) -> None:
    result = parse_run_result(
        dumps(run_json(Status=status, ErrorCount=error_count, Errors=errors, ErrorMessage="boom"))
    )
    assert result.ok is ok
    if ok:
        assert result.raise_for_status() is result
    else:
        with pytest.raises(MapRunFailed) as info:
            result.raise_for_status()
        assert info.value.result is result
        assert isinstance(info.value, SmartConnectError)
        message = str(info.value)
        assert "'Import Customers'" in message
        assert "run 42" in message
        assert f"status {status}" in message
        assert "boom" in message


WRONG_RUN_ANSWERS = {
    "list": b"[]",
    "string": b'"done"',
    "missing-status": dumps({"RunNumber": 1}),
    "status-text": dumps(run_json(Status="ok")),
    "status-bool": dumps(run_json(Status=True)),
    "validation-not-list": dumps(run_json(ValidationErrors={"a": 1})),
    "validation-item-number": dumps(run_json(ValidationErrors=[5])),
    "errors-not-string": dumps(run_json(Errors=["x"])),
    "errors-plain-text": dumps(run_json(Errors="Object reference not set")),
    "errors-hostile": dumps(
        run_json(Errors=net_escape('<!DOCTYPE D [<!ENTITY a "b">]><D><E><M>&a;</M></E></D>'))
    ),
    "not-json": b"<RunMapResponse/>",
}


@pytest.mark.parametrize("body", list(WRONG_RUN_ANSWERS.values()), ids=list(WRONG_RUN_ANSWERS))
def test_parse_wrong_run_answers(body: bytes) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_run_result(body)
    assert type(info.value) is ResponseParseError


# ---- never sent twice ---------------------------------------------------------------


def _run_via(sc: Any, kind: str) -> Any:
    if kind == "runmap":
        return sc.runs.run(GUID_CUSTOMERS)
    if kind == "RunMapWithVariables":
        return sc.runs.run(GUID_CUSTOMERS, {"GBL_A": "1"})
    if kind == "runmapdatatable":
        return sc.runs.run_data_table(GUID_CUSTOMERS, ROWS)
    if kind == "RunMapDataTableWithErrors":
        return sc.runs.run_data_table(GUID_CUSTOMERS, ROWS, with_errors=True)
    return sc.runs.run_xml(GUID_CUSTOMERS, ROWS)


RUN_ENDPOINTS = [
    "runmap",
    "RunMapWithVariables",
    "runmapdatatable",
    "RunMapDataTableWithErrors",
    "runmapxml",
]
MAYBE_PROCESSED: dict[str, Any] = {
    "read-timeout": httpx.ReadTimeout,
    "remote-protocol-error": httpx.RemoteProtocolError,
    "read-error": httpx.ReadError,
    "500": httpx.Response(500, text="Internal error", headers={"X-Request-Id": "r500"}),
    "502": httpx.Response(502, headers={"X-Request-Id": "r502"}),
    "504": httpx.Response(504, headers={"X-Request-Id": "r504"}),
}


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize("failure", list(MAYBE_PROCESSED.values()), ids=list(MAYBE_PROCESSED))
async def test_run_that_may_have_been_processed_is_never_resent(
    endpoint: str, failure: Any, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post(f"/{endpoint}")
        if isinstance(failure, httpx.Response):
            route.mock(return_value=failure)
        else:
            route.mock(side_effect=failure)
        async with client(max_retries=5) as sc:
            before = datetime.now(timezone.utc)
            with pytest.raises(RunOutcomeUnknown) as info:
                await _run_via(sc, endpoint)
            after = datetime.now(timezone.utc)
    assert route.call_count == 1
    assert sleeps.delays == []
    exc = info.value
    assert exc.endpoint == endpoint
    assert exc.map_key == GUID_CUSTOMERS
    assert exc.attempt == 1
    assert before <= exc.sent_at <= after
    assert exc.sent_at.tzinfo is not None
    assert "not sent again" in str(exc)
    if isinstance(failure, httpx.Response):
        assert exc.status_code == failure.status_code
        assert exc.request_id == failure.headers["X-Request-Id"]
    else:
        assert exc.status_code is None


UNPROCESSED: dict[str, Any] = {
    "connect-error": httpx.ConnectError("refused"),
    "connect-timeout": httpx.ConnectTimeout("slow"),
    "429": httpx.Response(429, headers={"Retry-After": "0"}),
    "503": httpx.Response(503),
}


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize("failure", list(UNPROCESSED.values()), ids=list(UNPROCESSED))
async def test_run_provably_not_processed_is_sent_again(
    endpoint: str, failure: Any, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post(f"/{endpoint}").mock(side_effect=[failure, failure, _run_ok()])
        async with client(max_retries=2) as sc:
            result = await _run_via(sc, endpoint)
    assert result.ok
    assert route.call_count == 3
    assert len(sleeps.delays) == 2
    bodies = {call.request.content for call in route.calls}
    assert len(bodies) == 1  # the same request each time


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ConnectError, APIConnectionError),
        (httpx.Response(429, headers={"Retry-After": "0"}), RateLimitError),
        (httpx.Response(503), ServerError),
    ],
    ids=["connect-error", "429", "503"],
)
async def test_run_not_processed_gives_up_after_max_retries(
    failure: Any, error: type[Exception], sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post("/runmap")
        if isinstance(failure, httpx.Response):
            route.mock(return_value=failure)
        else:
            route.mock(side_effect=failure)
        async with client(max_retries=3) as sc:
            with pytest.raises(error):
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 4


async def test_run_outcome_unknown_reports_the_attempt(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/runmap").mock(side_effect=[httpx.Response(503), httpx.ReadTimeout])
        async with client(max_retries=5) as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 2
    assert info.value.attempt == 2


async def test_run_429_with_long_retry_after_is_not_resent(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/runmap").respond(429, headers={"Retry-After": "300"})
        async with client(max_retries=5) as sc:
            with pytest.raises(RateLimitError) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 1
    assert info.value.retry_after == 300


@pytest.mark.parametrize("status", [400, 403, 404, 408])
async def test_run_client_errors_are_raised_not_resent(status: int, sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/runmap").respond(status)
        async with client(max_retries=5) as sc:
            with pytest.raises(SmartConnectError) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 1
    assert not isinstance(info.value, RunOutcomeUnknown)
    if status == 400:
        assert isinstance(info.value, BadRequestError)


async def test_run_401_gets_a_new_token_and_is_sent_again() -> None:
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json="old"), httpx.Response(200, json="new")]
        )
        route = api.post("/runmap").mock(side_effect=[httpx.Response(401), _run_ok()])
        async with client() as sc:
            assert (await sc.runs.run(GUID_CUSTOMERS)).ok
    assert [sent_token(c.request) for c in route.calls] == ["old", "new"]


UNREADABLE = {
    "html-200": (html_page("Server Error").encode(), "text/html"),
    "html-sniffed": (b"<!DOCTYPE html><html><body>x</body></html>", "application/json"),
    "not-json": (b"Run queued", "text/plain"),
    "wrong-shape": (b"[1, 2]", "application/json"),
    "missing-status": (b'{"RunNumber": 5}', "application/json"),
    "bad-errors-table": (dumps(run_json(Errors="not a table")), "application/json"),
}


@pytest.mark.parametrize("endpoint", RUN_ENDPOINTS)
@pytest.mark.parametrize(("body", "content_type"), list(UNREADABLE.values()), ids=list(UNREADABLE))
async def test_unreadable_200_run_answer_is_outcome_unknown(
    endpoint: str, body: bytes, content_type: str, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post(f"/{endpoint}").respond(
            200, content=body, headers={"Content-Type": content_type, "X-Request-Id": "r200"}
        )
        async with client(max_retries=5) as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await _run_via(sc, endpoint)
    assert route.call_count == 1
    assert info.value.endpoint == endpoint
    assert info.value.map_key == GUID_CUSTOMERS
    assert info.value.request_id == "r200"
    assert info.value.attempt == 1
    assert isinstance(info.value.__cause__, ResponseParseError)
    assert info.value.body == body.decode()  # the whole answer: its run number, if any


async def test_unreadable_run_answer_body_is_kept_without_secrets() -> None:
    answer = dumps(run_json(RunNumber=77, Errors=f"token {TOKEN} and {PASSWORD} here"))
    with mock_api() as api:
        api.post("/runmap").respond(200, content=answer, headers={"Content-Type": "text/json"})
        async with client() as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    body = info.value.body
    assert body is not None
    assert '"RunNumber": 77' in body or '"RunNumber":77' in body
    assert TOKEN not in body
    assert PASSWORD not in body
    assert body == answer.decode().replace(TOKEN, "[REDACTED]").replace(PASSWORD, "[REDACTED]")


async def test_unreadable_run_answer_body_redacts_json_escaped_secrets() -> None:
    # System.Text.Json writes "+" as \u002B and may write "/" as "\/".
    escaped = PLUS_TOKEN.replace("+", "\\u002B").replace("/", "\\/")
    answer = f'{{"Status": "odd", "RunNumber": 5, "Echo": "{escaped}"}}'.encode()
    with mock_api(token=PLUS_TOKEN) as api:
        api.post("/runmap").respond(200, content=answer, headers={"Content-Type": "text/json"})
        async with client() as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert info.value.body == '{"Status": "odd", "RunNumber": 5, "Echo": "[REDACTED]"}'


async def test_run_500_outcome_unknown_carries_the_answer_excerpt() -> None:
    with mock_api() as api:
        api.post("/runmap").respond(500, json={"Message": "Deadlock in posting"})
        async with client() as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert info.value.status_code == 500
    assert info.value.body == "Deadlock in posting"


async def test_run_result_through_the_client() -> None:
    answer = run_json(
        Status=1,
        ErrorCount=1,
        Errors=net_escape(ERRORS_XML),
        ErrorMessage="1 document failed",
        ValidationErrors=[{"ColumnName": "Phone", "RowNumber": 3, "Message": "bad", "X": 1}],
    )
    with mock_api() as api:
        api.post("/RunMapDataTableWithErrors").respond(200, content=json.dumps(answer).encode())
        async with client() as sc:
            result = await sc.runs.run_data_table(GUID_CUSTOMERS, ROWS, with_errors=True)
    assert result.status == 1
    assert result.error_message == "1 document failed"
    assert [e.row for e in result.errors] == [2, 3]  # ints, as in validation_errors
    assert result.validation_errors == (
        ValidationFailure(message="bad", column="Phone", row=3, extra={"X": 1}),
    )
    with pytest.raises(MapRunFailed, match="1 document failed"):
        result.raise_for_status()


# ---- run_many / get_many: one item given alone ----------------------------------------


@pytest.mark.parametrize(
    ("items", "kind"),
    [
        (GUID_CUSTOMERS, "str"),
        (b"Import Customers", "bytes"),
        (MapInfo(GUID_CUSTOMERS, "Import Customers", ""), "MapInfo"),
        (RunRequest(GUID_CUSTOMERS), "RunRequest"),
        (DataRequest(GUID_CUSTOMERS), "DataRequest"),
    ],
)
async def test_one_item_alone_is_refused_before_anything_is_sent(items: object, kind: str) -> None:
    # A string would otherwise be run character by character, as so many map names.
    with mock_api() as api:
        async with client() as sc:
            with pytest.raises(TypeError) as runs:
                await sc.runs.run_many(items)  # type: ignore[arg-type]
            with pytest.raises(TypeError) as data:
                await sc.data.get_many(items)  # type: ignore[arg-type]
    assert str(runs.value) == f"run_many takes an iterable of items (a list, say), not a {kind}"
    assert str(data.value) == f"get_many takes an iterable of items (a list, say), not a {kind}"
    assert not api.calls


# An answer a hostile or broken server may send for a run it processed: each must end in
# RunOutcomeUnknown with the answer kept (never a raw ValueError or RecursionError).
HOSTILE_RUN_ANSWERS = {
    "superscript digit": b'{"Status": "\xc2\xb2", "RunNumber": 5}',
    "5,000-digit run number": b'{"Status": 0, "RunNumber": ' + b"9" * 5000 + b"}",
    "5,000-digit run number as text": b'{"Status": 0, "RunNumber": "' + b"9" * 5000 + b'"}',
    "nested 100,000 deep": b'{"Status": 0, "X": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("body", HOSTILE_RUN_ANSWERS.values(), ids=HOSTILE_RUN_ANSWERS)
async def test_a_processed_run_whose_answer_cannot_be_read_is_outcome_unknown(
    body: bytes,
) -> None:
    with mock_api() as api:
        route = api.post("/runmap").respond(
            200, content=body, headers={"Content-Type": "application/json"}
        )
        async with client() as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 1  # never sent again
    assert isinstance(info.value.__cause__, ResponseParseError)
    assert info.value.body == body.decode()[: len(info.value.body or "")]
    assert info.value.body


@pytest.mark.parametrize("body", HOSTILE_RUN_ANSWERS.values(), ids=HOSTILE_RUN_ANSWERS)
def test_the_run_parser_refuses_hostile_answers_with_a_parse_error(body: bytes) -> None:
    with pytest.raises(ResponseParseError):
        parse_run_result(body)
