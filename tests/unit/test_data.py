"""data.py: GetAllData / GetAllDataWithVariables on the wire, parsed whole (get_all) and
streamed (iter_rows), and every way an answer can be broken or hostile."""

from __future__ import annotations

import logging

import httpx
import pytest
from unit_support import (
    GETALLDATA_XML,
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    REFERENCE_ROW,
    TOKEN_Q,
    ChunkStream,
    CountedBody,
    SleepRecorder,
    client,
    data_answer,
    html_page,
    mock_api,
    table_xml,
)

from smartconnect_async import (
    APIConnectionError,
    ClientClosedError,
    DataSet,
    NotFoundError,
    ResponseParseError,
    Row,
    RowStream,
    SmartConnect,
    UnknownTableError,
)

pytestmark = pytest.mark.anyio

XML_HEADERS = {"Content-Type": "application/xml; charset=utf-8"}
VARIABLES = {"GBL_TEST": "107210", "GBL_TEST2": "Sample"}

TWO_TABLES = data_answer(
    table_xml(
        {
            "Customers": [{"Id": str(i), "Name": f"Customer {i}"} for i in range(40)],
            "Contacts": [{"Id": "1", "Email": "a@example.com"}, {"Id": "2", "Email": None}],
        }
    )
)


async def _read(sc: SmartConnect, method: str) -> list[Row]:
    """All rows of the first table, read whole or streamed."""
    if method == "get_all":
        return (await sc.data.get_all(GUID_CUSTOMERS)).rows
    return [row async for row in sc.data.iter_rows(GUID_CUSTOMERS)]


async def _drain(rows: RowStream) -> None:
    async for _ in rows:
        pass


def _streamed(stream: ChunkStream) -> httpx.Response:
    return httpx.Response(200, stream=stream, headers=XML_HEADERS)


# ---- on the wire --------------------------------------------------------------------


async def test_get_all_data_wire_format_and_reference_example() -> None:
    with mock_api() as api:
        headers = {**XML_HEADERS, "X-Request-Id": "req-8"}
        route = api.post("/GetAllData").respond(200, content=GETALLDATA_XML, headers=headers)
        async with client() as sc:
            data = await sc.data.get_all(GUID_CUSTOMERS)
    assert data == DataSet(tables={"Table01": [REFERENCE_ROW]})
    assert data.request_id == "req-8"
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/API/GetAllData"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Accept"] == "application/xml"
    assert "Content-Type" not in request.headers
    assert request.content == b""


async def test_get_all_data_with_variables_wire_format() -> None:
    with mock_api() as api:
        route = api.post("/GetAllDataWithVariables").respond(200, content=GETALLDATA_XML)
        plain = api.post("/GetAllData")
        async with client() as sc:
            data = await sc.data.get_all(GUID_CUSTOMERS, VARIABLES)
    assert data.rows == [REFERENCE_ROW]
    assert not plain.called
    request = route.calls.last.request
    assert request.url.path == "/API/GetAllDataWithVariables"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/xml"
    assert request.content == (
        b'[{"Key":"GBL_TEST","Value":"107210"},{"Key":"GBL_TEST2","Value":"Sample"}]'
    )


async def test_variables_body_is_utf8_json() -> None:
    with mock_api() as api:
        route = api.post("/GetAllDataWithVariables").respond(200, content=GETALLDATA_XML)
        async with client() as sc:
            await sc.data.get_all(GUID_CUSTOMERS, {"GBL_CITY": 'Zürich "HB"'})
    assert route.calls.last.request.content == (
        '[{"Key":"GBL_CITY","Value":"Zürich \\"HB\\""}]'.encode()
    )


async def test_empty_variables_use_get_all_data() -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").respond(200, content=GETALLDATA_XML)
        async with client() as sc:
            await sc.data.get_all(GUID_CUSTOMERS, {})
    assert route.called


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"GBL_X": 5}, TypeError),
        ({"": "v"}, ValueError),
        ({"  ": "v"}, ValueError),
        ({3: "v"}, ValueError),
        ([("GBL_X", "v")], TypeError),
    ],
)
async def test_bad_variables_fail_before_any_io(variables: object, error: type) -> None:
    with mock_api(token=None) as api:
        async with client() as sc:
            with pytest.raises(error):
                await sc.data.get_all(GUID_CUSTOMERS, variables)  # type: ignore[arg-type]
            with pytest.raises(error):
                sc.data.iter_rows(GUID_CUSTOMERS, variables)  # type: ignore[arg-type]
    assert api.calls.call_count == 0


async def test_iter_rows_bad_variables_with_map_name_fail_before_any_io() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client() as sc:
            with pytest.raises(TypeError):
                sc.data.iter_rows("Import Customers", {"GBL_X": 5})  # type: ignore[dict-item]
        assert not api["GetToken"].called
    assert not map_list.called


async def test_get_all_bad_variables_with_map_name_fail_before_any_io() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client() as sc:
            with pytest.raises(TypeError):
                await sc.data.get_all("Import Customers", {"GBL_X": 5})  # type: ignore[dict-item]
        assert not api["GetToken"].called
    assert not map_list.called


async def test_get_all_by_map_name() -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/GetAllData").respond(200, content=GETALLDATA_XML)
        async with client() as sc:
            assert (await sc.data.get_all("Import Customers")).rows == [REFERENCE_ROW]
    assert route.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS


async def test_get_all_several_tables() -> None:
    with mock_api() as api:
        api.post("/GetAllData").respond(200, content=TWO_TABLES)
        async with client() as sc:
            data = await sc.data.get_all(GUID_CUSTOMERS)
    assert list(data.tables) == ["Customers", "Contacts"]
    assert len(data.tables["Customers"]) == 40
    assert data.tables["Contacts"] == [
        {"Id": "1", "Email": "a@example.com"},
        {"Id": "2", "Email": None},
    ]


# ---- iter_rows ----------------------------------------------------------------------


async def test_iter_rows_reference_example_one_byte_chunks() -> None:
    stream = ChunkStream(GETALLDATA_XML, size=1)
    with mock_api() as api:
        route = api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            rows = [row async for row in sc.data.iter_rows(GUID_CUSTOMERS)]
    assert rows == [REFERENCE_ROW]
    assert stream.sent == len(GETALLDATA_XML)
    assert stream.closed
    request = route.calls.last.request
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Accept"] == "application/xml"


async def test_iter_rows_with_variables_wire_format() -> None:
    with mock_api() as api:
        route = api.post("/GetAllDataWithVariables").mock(
            return_value=_streamed(ChunkStream(GETALLDATA_XML, size=5))
        )
        async with client() as sc:
            rows = [row async for row in sc.data.iter_rows(GUID_CUSTOMERS, VARIABLES)]
    assert rows == [REFERENCE_ROW]
    request = route.calls.last.request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/xml"
    assert request.content == (
        b'[{"Key":"GBL_TEST","Value":"107210"},{"Key":"GBL_TEST2","Value":"Sample"}]'
    )


async def test_iter_rows_yields_what_get_all_returns_for_the_first_table() -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(
            side_effect=[
                httpx.Response(200, content=TWO_TABLES),
                _streamed(ChunkStream(TWO_TABLES, size=3)),
            ]
        )
        async with client() as sc:
            whole = await sc.data.get_all(GUID_CUSTOMERS)
            stream = sc.data.iter_rows(GUID_CUSTOMERS)
            streamed = [row async for row in stream]
    assert streamed == whole.rows == whole.tables["Customers"]
    assert stream.table == "Customers"


async def test_iter_rows_streams_rows_before_the_answer_ends() -> None:
    body = data_answer(table_xml({"R": [{"N": str(i), "V": "x" * 20} for i in range(200)]}))
    stream = ChunkStream(body, size=1)
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            seen_at: list[int] = []
            count = 0
            async for row in sc.data.iter_rows(GUID_CUSTOMERS):
                assert row["N"] == str(count)
                count += 1
                seen_at.append(stream.sent)
    assert count == 200
    assert seen_at[0] < len(body) // 50  # the first row came with the first 2% of bytes
    assert seen_at == sorted(seen_at)
    assert seen_at[100] < len(body)


async def test_iter_rows_table_selects_another_table() -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(TWO_TABLES, size=64)))
        async with client() as sc:
            stream = sc.data.iter_rows(GUID_CUSTOMERS, table="Contacts")
            assert stream.table == "Contacts"
            rows = [row async for row in stream]
    assert rows == [{"Id": "1", "Email": "a@example.com"}, {"Id": "2", "Email": None}]


async def test_iter_rows_table_without_rows_yields_nothing_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A table with no rows is not in the answer at all: a misspelt name looks the same.
    caplog.set_level(logging.WARNING, logger="smartconnect_async")
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(TWO_TABLES, size=64)))
        async with client() as sc:
            rows = [row async for row in sc.data.iter_rows(GUID_CUSTOMERS, table="Nope")]
    assert rows == []
    assert [r.getMessage() for r in caplog.records] == [
        f"the GetAllData answer for map {GUID_CUSTOMERS} has no rows of table 'Nope' "
        "(it has rows of 'Customers', 'Contacts')"
    ]


@pytest.mark.parametrize("inner", ["<MyDataSet />", "<MyDataSet>\r\n</MyDataSet>"])
async def test_iter_rows_table_of_an_empty_answer_yields_nothing(inner: str) -> None:
    # No table at all: the one asked for may simply have no rows today.
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(data_answer(inner))))
        async with client() as sc:
            rows = [row async for row in sc.data.iter_rows(GUID_CUSTOMERS, table="Customers")]
    assert rows == []


@pytest.mark.parametrize("table", [None, "Contacts", "Nope"])
async def test_row_stream_tables_names_every_table_of_the_answer_once_read(
    table: str | None,
) -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(TWO_TABLES, size=64)))
        async with client() as sc:
            stream = sc.data.iter_rows(GUID_CUSTOMERS, table=table)
            assert stream.tables == ()  # nothing read yet
            first = await anext(stream, None)
            if table is None:  # the first row of the first table: only it seen so far
                assert first == {"Id": "0", "Name": "Customer 0"}
                assert stream.tables == ("Customers",)
            rest = [row async for row in stream]
            assert stream.tables == ("Customers", "Contacts")  # whichever table was asked for
    assert len(rest) == {None: 39, "Contacts": 1, "Nope": 0}[table]


async def test_row_stream_tables_of_an_empty_answer_is_empty() -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(
            return_value=_streamed(ChunkStream(data_answer("<MyDataSet />")))
        )
        async with client() as sc:
            stream = sc.data.iter_rows(GUID_CUSTOMERS, table="Customers")
            assert [row async for row in stream] == []
    assert stream.tables == ()


async def test_iter_rows_early_break_with_async_with_releases_the_answer() -> None:
    body = data_answer(table_xml({"R": [{"N": str(i)} for i in range(500)]}))
    stream = ChunkStream(body, size=16)
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(stream))
        api.post("/GetMapColumns").respond(200, json=[])
        async with client() as sc:
            first: Row | None = None
            async with sc.data.iter_rows(GUID_CUSTOMERS) as rows:
                async for row in rows:
                    first = row
                    break
            assert stream.closed  # released as the block ended, not at garbage collection
            assert stream.sent < len(stream.chunks) // 2
            assert await sc.maps.columns(GUID_CUSTOMERS) == []  # the client still works
    assert first == {"N": "0"}


async def test_iter_rows_early_break_with_aclose_releases_the_answer() -> None:
    body = data_answer(table_xml({"R": [{"N": str(i)} for i in range(500)]}))
    stream = ChunkStream(body, size=16)
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            rows = sc.data.iter_rows(GUID_CUSTOMERS)
            assert isinstance(rows, RowStream)
            got = [await rows.__anext__(), await rows.__anext__()]
            await rows.aclose()
            assert stream.closed
            with pytest.raises(StopAsyncIteration):
                await rows.__anext__()
    assert got == [{"N": "0"}, {"N": "1"}]


async def test_iter_rows_sends_nothing_until_iterated() -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").respond(200, content=GETALLDATA_XML)
        async with client() as sc:
            rows = sc.data.iter_rows(GUID_CUSTOMERS)
            assert not route.called
            await rows.aclose()
    assert not route.called


@pytest.mark.parametrize("method", ["get_all", "iter_rows"])
async def test_max_columns_bounds_a_table(method: str) -> None:
    wide = data_answer(table_xml({"T": [{"A": "1", "B": "2"}, {"A": "1", "C": "3", "D": "4"}]}))
    with mock_api() as api:
        api.post("/GetAllData").respond(200, content=wide, headers=XML_HEADERS)
        async with client(max_columns=3) as sc:
            with pytest.raises(ResponseParseError) as info:
                await _read(sc, method)
            narrow = client(max_columns=4)
            async with narrow:
                assert len(await _read(narrow, method)) == 2
    assert str(info.value) == (
        f"{'GetAllData: ' if method == 'get_all' else ''}table 'T' of the GetAllData answer "
        f"for map {GUID_CUSTOMERS} has more than 3 columns (row 2; max_columns)"
    )


def test_max_columns_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_columns"):
        client(max_columns=0)


async def test_entering_iter_rows_sends_the_request_and_raises_its_error() -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").respond(404, json={"Message": "no such map"})
        async with client() as sc:
            stream = sc.data.iter_rows(GUID_CUSTOMERS)
            assert not route.called
            with pytest.raises(NotFoundError):
                await stream.__aenter__()  # as ``async with`` does: before any row
            assert route.call_count == 1
            await stream.aclose()
    assert route.call_count == 1


async def test_entered_iter_rows_reads_the_answer_it_sent_for() -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(TWO_TABLES)))
        async with client() as sc:
            async with sc.data.iter_rows(GUID_CUSTOMERS) as rows:
                assert route.call_count == 1  # sent on entering
                assert rows.columns == ()  # no row read yet
                first = await rows.__anext__()
                assert rows.columns == ("Id", "Name")
                rest = [row async for row in rows]
            assert rows.tables == ("Customers", "Contacts")
    assert [first, *rest] == [{"Id": str(i), "Name": f"Customer {i}"} for i in range(40)]
    assert route.call_count == 1


async def test_entered_iter_rows_left_unread_releases_the_answer() -> None:
    with mock_api() as api:
        stream = ChunkStream(TWO_TABLES, size=64)
        api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            async with sc.data.iter_rows(GUID_CUSTOMERS):
                pass
            assert stream.closed  # on leaving the block, nothing read


@pytest.mark.parametrize(
    ("table", "answer", "message"),
    [
        ("Nope", TWO_TABLES, "no rows of table 'Nope'; it holds 'Customers', 'Contacts'"),
        ("Nope", data_answer("<MyDataSet />"), "no rows of table 'Nope'; it holds no rows at all"),
        (None, data_answer("<MyDataSet />"), "no rows of any table; it holds no rows at all"),
    ],
)
async def test_strict_iter_rows_raises_unknown_table_at_the_end(
    caplog: pytest.LogCaptureFixture, table: str | None, answer: bytes, message: str
) -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(answer, size=64)))
        async with (
            client() as sc,
            sc.data.iter_rows(GUID_CUSTOMERS, table=table, strict=True) as rows,
        ):
            with pytest.raises(UnknownTableError) as info:
                await _drain(rows)
    assert str(info.value) == f"the GetAllData answer for map {GUID_CUSTOMERS} has {message}"
    assert info.value.table == table
    assert info.value.tables == rows.tables
    assert not caplog.records  # an error instead of the warning


async def test_strict_iter_rows_of_a_table_with_rows_reads_them() -> None:
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(ChunkStream(TWO_TABLES, size=64)))
        async with client() as sc:
            rows = sc.data.iter_rows(GUID_CUSTOMERS, table="Contacts", strict=True)
            read = [row async for row in rows]
    assert read == [{"Id": "1", "Email": "a@example.com"}, {"Id": "2", "Email": None}]
    assert rows.columns == ("Id", "Email")


async def test_iter_rows_failure_while_streaming_is_raised_not_retried(
    sleeps: SleepRecorder,
) -> None:
    stream = ChunkStream(GETALLDATA_XML, size=50, fail_after=5)
    with mock_api() as api:
        route = api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            with pytest.raises(APIConnectionError) as info:
                async for _ in sc.data.iter_rows(GUID_CUSTOMERS):
                    pass
    assert info.value.endpoint == "GetAllData"
    assert info.value.sent is True
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_iter_rows_retries_failures_before_the_answer_starts(
    sleeps: SleepRecorder,
) -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").mock(
            side_effect=[
                httpx.ConnectError("refused"),
                httpx.Response(503, headers={"Retry-After": "0"}),
                _streamed(ChunkStream(GETALLDATA_XML, size=100)),
            ]
        )
        async with client() as sc:
            rows = [row async for row in sc.data.iter_rows(GUID_CUSTOMERS)]
    assert rows == [REFERENCE_ROW]
    assert route.call_count == 3
    assert len(sleeps.delays) == 2


async def test_iter_rows_after_close_raises_client_closed() -> None:
    with mock_api(token=None) as api:
        sc = client()
        await sc.aclose()
        with pytest.raises(ClientClosedError):
            async for _ in sc.data.iter_rows(GUID_CUSTOMERS):
                pass
    assert api.calls.call_count == 0


# ---- broken and hostile answers -----------------------------------------------------

HOSTILE = {
    "billion-laughs-outer": (
        b'<?xml version="1.0"?><!DOCTYPE string [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">&c;</string>'
    ),
    "external-entity-outer": (
        b'<!DOCTYPE string [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">&x;</string>'
    ),
    "billion-laughs-inner": data_answer(
        '<!DOCTYPE D [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<D><T><V>&b;</V></T></D>"
    ),
    "external-entity-inner": data_answer(
        '<!DOCTYPE D [<!ENTITY x SYSTEM "file:///etc/passwd">]><D><T><V>&x;</V></T></D>'
    ),
}
BROKEN = {
    "truncated": GETALLDATA_XML[:-40],
    "inner-unclosed": data_answer("<D><T><V>1</V></T>"),
    "wrong-root": b"<MyDataSet><T><V>1</V></T></MyDataSet>",
    "json": b"[]",
    "empty": b"",
}


BAD: dict[str, bytes] = {**HOSTILE, **BROKEN}


@pytest.mark.parametrize("body", list(BAD.values()), ids=list(BAD))
async def test_get_all_refuses_broken_and_hostile_answers(body: bytes) -> None:
    with mock_api() as api:
        route = api.post("/GetAllData").respond(
            200, content=body, headers={**XML_HEADERS, "X-Request-Id": "rid-9"}
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.data.get_all(GUID_CUSTOMERS)
    assert type(info.value) is ResponseParseError
    assert info.value.endpoint == "GetAllData"
    assert info.value.request_id == "rid-9"
    assert GUID_CUSTOMERS in str(info.value)
    assert route.call_count == 1


@pytest.mark.parametrize("body", list(BAD.values()), ids=list(BAD))
async def test_iter_rows_refuses_broken_and_hostile_answers(body: bytes) -> None:
    stream = ChunkStream(body, size=3)
    with mock_api() as api:
        api.post("/GetAllData").mock(return_value=_streamed(stream))
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                async for _ in sc.data.iter_rows(GUID_CUSTOMERS):
                    pass
    assert type(info.value) is ResponseParseError
    assert stream.closed


@pytest.mark.parametrize("method", ["get_all", "iter_rows"])
async def test_html_page_with_status_200_on_data_endpoint(method: str) -> None:
    with mock_api() as api:
        api.post("/GetAllData").respond(
            200,
            text=html_page("503 Service Unavailable"),
            headers={"Content-Type": "text/html; charset=utf-8", "X-Request-Id": "iis"},
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await _read(sc, method)
    assert "HTML page" in str(info.value)
    assert "503 Service Unavailable" in str(info.value)
    assert info.value.endpoint == "GetAllData"
    assert info.value.request_id == "iis"


# ---- a 200 answer that is not data fails at once, unread ------------------------------


@pytest.mark.parametrize(
    ("content_type", "start"),
    [
        ("text/html; charset=utf-8", b"<html><head><title>Server Error</title></head><body>"),
        ("application/json", b'{"Message": "not data", "padding": "'),
        ("application/xml", b"<!DOCTYPE string [<!ENTITY a 'b'>]><string>"),
        ("text/plain", b"Service Unavailable " * 4),
    ],
    ids=["html", "json", "dtd", "text"],
)
@pytest.mark.parametrize("how", ["iter_rows", "get_all"])
async def test_an_answer_that_is_not_data_fails_from_its_first_chunk(
    content_type: str, start: bytes, how: str
) -> None:
    chunks = [start] + [b"x" * (1 << 16)] * 1000  # 64 MB that must never be read
    body = CountedBody(chunks)
    with mock_api() as api:
        api.post("/GetAllData").mock(
            return_value=httpx.Response(200, headers={"Content-Type": content_type}, stream=body)
        )
        async with client(max_retries=0) as sc:
            with pytest.raises(ResponseParseError):
                await _read(sc, how)
    assert body.pulled <= 3
