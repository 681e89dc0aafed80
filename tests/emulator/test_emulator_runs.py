"""Map runs: RunMapResponse, the errors table, posted data, run history, SaveProcessErrors."""

from __future__ import annotations

import html
from typing import Any
from xml.sax.saxutils import escape

import anyio.to_thread
import defusedxml.ElementTree as safe_xml  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    IMPORT_SALES_ORDERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    STATUS_COMPLETED_WITH_ERRORS,
    STATUS_FAILED,
    STATUS_SUCCESS,
    DemoCredential,
    Emulator,
)

pytestmark = pytest.mark.anyio
RUN_FIELDS = [
    "ErrorCount",
    "Errors",
    "ErrorMessage",
    "MapDescription",
    "MapId",
    "RecordCount",
    "RunNumber",
    "Status",
]
XML = {"content-type": "application/xml"}
CUSTOMERS_POST = (
    b"<RequestData>\n  <Table>\n    <accountnumber>C00070</accountnumber>\n"
    b"    <CustomerID>ID</CustomerID>\n    <name>Test Account 001</name>\n  </Table>\n"
    b"  <Table><name>No number</name></Table>\n"
    b"  <Table><AccountNumber>   </AccountNumber><name><![CDATA[ x & y ]]></name></Table>\n"
    b"</RequestData>"
)


def errors_table(response: dict[str, Any]) -> list[dict[str, str]]:
    """Unescape the Errors string once, parse it: one dict per <Errors> row."""
    if not response["Errors"]:
        return []
    root = safe_xml.fromstring(html.unescape(response["Errors"]), forbid_dtd=True)
    assert root.tag == "DocumentElement"
    return [{cell.tag: cell.text or "" for cell in row} for row in root]


async def run(
    client: httpx.AsyncClient, endpoint: str, token: str, map_key: str, **kwargs: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/{endpoint}", params={"token": token, "mapKey": map_key}, **kwargs
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    answer: dict[str, Any] = response.json()
    return answer


async def test_runmap_runs_the_maps_own_source(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    answer = await run(client, "runmap", token, IMPORT_CUSTOMERS_KEY)
    assert list(answer) == RUN_FIELDS
    assert answer == {
        "ErrorCount": 0,
        "Errors": "",
        "ErrorMessage": "",
        "MapDescription": "Customers to BC",
        "MapId": "Import Customers",
        "RecordCount": 500,
        "RunNumber": 1001,
        "Status": STATUS_SUCCESS,
    }
    (record,) = emulator.runs
    assert (record.endpoint, record.record_count, record.documents) == ("runmap", 500, ())
    assert emulator.counters.runs_by_map == {IMPORT_CUSTOMERS_KEY: 1}


async def test_the_failing_map_always_reports_errors(client: httpx.AsyncClient, token: str) -> None:
    answer = await run(client, "RunMap", token, POST_CASH_RECEIPTS_KEY)
    assert answer["Status"] == STATUS_COMPLETED_WITH_ERRORS
    assert answer["RecordCount"] == 25
    assert answer["ErrorCount"] == 4
    table = errors_table(answer)
    assert [row["RowNumber"] for row in table] == ["2", "9", "16", "23"]
    assert table[0] == {
        "RowNumber": "2",
        "ColumnName": "CheckbookId",
        "Message": "Required column 'CheckbookId' was not supplied.",
    }
    assert answer["ErrorMessage"] == table[-1]["Message"]
    assert answer["Errors"].startswith("&lt;DocumentElement&gt;&lt;Errors&gt;&lt;RowNumber&gt;2")


async def test_run_map_with_variables_filters_the_source(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    variables = [{"Key": "GBL_CHECKBOOKID", "Value": "UPTOWN TRUST"}]
    answer = await run(client, "RunMapWithVariables", token, POST_CASH_RECEIPTS_KEY, json=variables)
    assert answer["ErrorCount"] == 0
    assert 0 < answer["RecordCount"] < 25
    assert emulator.runs[-1].variables == {"GBL_CHECKBOOKID": "UPTOWN TRUST"}


async def test_run_numbers_count_up_per_company(
    client: httpx.AsyncClient, emulator: Emulator, token: str, alice: DemoCredential
) -> None:
    numbers = [
        (await run(client, "runmap", token, IMPORT_CUSTOMERS_KEY))["RunNumber"] for _ in "abc"
    ]
    assert numbers == [1001, 1002, 1003]
    other = emulator.issue_token(alice.email, "DEMO02")
    maps = (await client.post("/GetMapList", params={"token": other})).json()
    answer = await run(client, "runmap", other, maps[0]["MapKey"])
    assert answer["RunNumber"] == 1001


async def test_run_map_data_table(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    answer = await run(
        client, "runmapdatatable", token, IMPORT_CUSTOMERS_KEY, content=CUSTOMERS_POST, headers=XML
    )
    assert list(answer) == RUN_FIELDS
    assert (answer["RecordCount"], answer["ErrorCount"]) == (3, 2)
    assert answer["Status"] == STATUS_COMPLETED_WITH_ERRORS
    assert errors_table(answer) == [
        {
            "RowNumber": "2",
            "ColumnName": "AccountNumber",
            "Message": "Required column 'AccountNumber' was not supplied.",
        },
        {
            "RowNumber": "3",
            "ColumnName": "AccountNumber",
            "Message": "Required column 'AccountNumber' is empty.",
        },
    ]
    record = emulator.runs[-1]
    assert record.documents == (
        {"accountnumber": "C00070", "CustomerID": "ID", "name": "Test Account 001"},
        {"name": "No number"},
        {"AccountNumber": "   ", "name": " x & y "},
    )
    assert record.run_number == answer["RunNumber"]


async def test_run_map_data_table_with_errors_adds_validation_errors(
    client: httpx.AsyncClient, token: str
) -> None:
    answer = await run(
        client,
        "RunMapDataTableWithErrors",
        token,
        IMPORT_CUSTOMERS_KEY,
        content=CUSTOMERS_POST,
        headers={"content-type": "text/xml; charset=utf-8"},
    )
    assert list(answer) == [*RUN_FIELDS, "ValidationErrors"]
    assert answer["ValidationErrors"] == [
        {
            "RowNumber": 2,
            "ColumnName": "AccountNumber",
            "Message": "Required column 'AccountNumber' was not supplied.",
        },
        {
            "RowNumber": 3,
            "ColumnName": "AccountNumber",
            "Message": "Required column 'AccountNumber' is empty.",
        },
    ]


async def test_every_document_failing_is_status_failed(
    client: httpx.AsyncClient, token: str
) -> None:
    body = b"<RequestData><Table><SopNumber>ORD1</SopNumber></Table></RequestData>"
    answer = await run(
        client,
        "RunMapDataTableWithErrors",
        token,
        IMPORT_SALES_ORDERS_KEY,
        content=body,
        headers=XML,
    )
    assert (answer["RecordCount"], answer["ErrorCount"], answer["Status"]) == (1, 1, STATUS_FAILED)
    assert [e["ColumnName"] for e in answer["ValidationErrors"]] == ["CustomerNumber"]


async def test_run_map_xml_takes_an_escaped_data_set(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    data_set = (
        "<DataSet>\n  <Table>\n    <accountnumber>C00070</accountnumber>\n"
        "    <name>Smith &amp; Sons</name>\n  </Table>\n"
        "  <Table><AccountNumber>C00071</AccountNumber></Table>\n</DataSet>"
    )
    body = (
        '<RequestData xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<Variables><Variable><Key>GBL_TEST</Key><Value>False</Value></Variable></Variables>"
        f"<Xml>{escape(data_set)}</Xml></RequestData>"
    )
    answer = await run(
        client,
        "runmapxml",
        token,
        IMPORT_CUSTOMERS_KEY,
        content=body.encode(),
        headers={"content-type": "text/xml"},
    )
    assert (answer["RecordCount"], answer["ErrorCount"], answer["Status"]) == (2, 0, 0)
    record = emulator.runs[-1]
    assert record.documents[0] == {"accountnumber": "C00070", "name": "Smith & Sons"}
    assert record.variables == {"GBL_TEST": "False"}


async def test_a_post_without_rows_is_a_run_of_no_documents(
    client: httpx.AsyncClient, token: str
) -> None:
    answer = await run(
        client,
        "runmapdatatable",
        token,
        IMPORT_CUSTOMERS_KEY,
        content=b"<RequestData/>",
        headers=XML,
    )
    assert (answer["RecordCount"], answer["ErrorCount"], answer["Status"]) == (0, 0, 0)


BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE RequestData [<!ENTITY a "aaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;">]><RequestData><Table><A>&b;</A></Table></RequestData>'
)
EXTERNAL = (
    b'<!DOCTYPE RequestData [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<RequestData><Table><A>&x;</A></Table></RequestData>"
)


@pytest.mark.parametrize(
    ("endpoint", "body", "needle"),
    [
        ("runmapdatatable", b"", "empty"),
        ("runmapxml", b" ", "empty"),
        ("runmapdatatable", b"<RequestData><Table>", "well-formed"),
        ("runmapdatatable", b"<Rows><Table/></Rows>", "RequestData"),
        ("runmapdatatable", BILLION_LAUGHS, "DTD"),
        ("RunMapDataTableWithErrors", EXTERNAL, "DTD"),
        ("runmapdatatable", b"<RequestData><Table><A><B>1</B></A></Table></RequestData>", "text"),
        ("runmapxml", b"<RequestData><Variables/></RequestData>", "Xml"),
        (
            "runmapxml",
            b"<RequestData><Xml><DataSet><Table/></DataSet></Xml></RequestData>",
            "escaped",
        ),
        ("runmapxml", b"<RequestData><Xml>&lt;DataSet&gt;</Xml></RequestData>", "well-formed"),
        (
            "runmapxml",
            b"<RequestData><Xml>&lt;!DOCTYPE DataSet [&lt;!ENTITY a 'b'&gt;]&gt;"
            b"&lt;DataSet/&gt;</Xml></RequestData>",
            "DTD",
        ),
        (
            "runmapdatatable",
            b"<?xml version='1.0' encoding='no-such-encoding'?><RequestData/>",
            "not well-formed XML: unknown encoding: no-such-encoding.",
        ),
        (
            "runmapdatatable",
            b"<?xml version='1.0' encoding='x-mac-japanese'?><RequestData/>",
            "not well-formed XML: multi-byte encodings are not supported.",
        ),
    ],
)
async def test_bad_posted_xml_is_400_and_runs_nothing(
    client: httpx.AsyncClient,
    emulator: Emulator,
    token: str,
    endpoint: str,
    body: bytes,
    needle: str,
) -> None:
    response = await client.post(
        f"/{endpoint}",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        content=body,
        headers=XML,
    )
    assert response.status_code == 400
    assert needle in response.json()
    assert emulator.runs == ()


async def test_posted_xml_with_a_json_content_type_is_415(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    response = await client.post(
        "/runmapdatatable",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        content=CUSTOMERS_POST,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 415
    assert emulator.runs == ()


async def test_save_process_errors(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    number = (await run(client, "runmap", token, POST_CASH_RECEIPTS_KEY))["RunNumber"]
    params = {
        "token": token,
        "mapKey": POST_CASH_RECEIPTS_KEY,
        "tenantServer": "sql01.example",
        "tenantTechnicalName": "TENANT01",
        "runNumber": str(number),
    }
    saved = await client.post("/SaveProcessErrors", params=params)
    assert saved.content == b"true"
    (record,) = emulator.saved_errors
    assert (record.run_number, record.tenant_technical_name) == (number, "TENANT01")
    unknown_run = await client.post("/SaveProcessErrors", params={**params, "runNumber": "99"})
    assert unknown_run.json() is False
    other_map = {**params, "mapKey": IMPORT_CUSTOMERS_KEY}
    assert (await client.post("/SaveProcessErrors", params=other_map)).json() is False
    not_a_number = await client.post("/SaveProcessErrors", params={**params, "runNumber": "x"})
    assert not_a_number.status_code == 400
    for missing in ("tenantServer", "tenantTechnicalName", "runNumber"):
        partial = {k: v for k, v in params.items() if k != missing}
        response = await client.post("/SaveProcessErrors", params=partial)
        assert response.status_code == 400
        assert missing in response.json()
    assert len(emulator.saved_errors) == 1


@pytest.mark.parametrize(
    ("endpoint", "map_key", "body", "threaded"),
    [
        ("runmap", IMPORT_CUSTOMERS_KEY, None, True),  # 500 source rows
        ("runmap", POST_CASH_RECEIPTS_KEY, None, False),  # 25 source rows
        ("runmapdatatable", IMPORT_CUSTOMERS_KEY, CUSTOMERS_POST, False),
        ("runmapdatatable", IMPORT_CUSTOMERS_KEY, b"", True),  # over 16 KiB: filled below
    ],
    ids=["large source", "small source", "small body", "large body"],
)
async def test_large_runs_run_in_a_worker_thread_small_ones_on_the_loop(
    client: httpx.AsyncClient,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str,
    map_key: str,
    body: bytes | None,
    threaded: bool,
) -> None:
    if body == b"":
        row = b"<Table><AccountNumber>C1</AccountNumber><name>Name</name></Table>"
        body = b"<RequestData>" + row * (16_384 // len(row) + 1) + b"</RequestData>"
    hops: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(work: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(work)
        return await run_sync(work, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    response = await client.post(
        endpoint,
        params={"token": token, "mapKey": map_key},
        content=body,
        headers=XML if body is not None else None,
    )
    assert response.status_code == 200, response.text
    assert response.json()["RecordCount"] > 0
    assert len(hops) == (1 if threaded else 0)


async def test_runs_in_flight_max_is_the_most_runs_of_a_company_processed_at_once(
    client: httpx.AsyncClient, emulator: Emulator, token: str, alice: DemoCredential
) -> None:
    emulator.set_faults([{"kind": "latency", "ms": 300, "endpoints": ["runmap"]}])
    other = emulator.issue_token(alice.email, "DEMO02")
    demo02_key = next(m.key for m in emulator.maps.values() if m.company_id == "DEMO02")
    statuses: list[int] = []

    async def post(token: str, map_key: str) -> None:
        response = await client.post("/runmap", params={"token": token, "mapKey": map_key})
        statuses.append(response.status_code)

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(post, token, IMPORT_CUSTOMERS_KEY)
        group.start_soon(post, other, demo02_key)
        group.start_soon(post, "not-a-token", IMPORT_CUSTOMERS_KEY)  # refused: no run
    assert sorted(statuses) == [200, 200, 200, 200, 401]
    await post(token, IMPORT_CUSTOMERS_KEY)  # one at a time: the mark stays
    await client.post("/GetMapList", params={"token": token})  # not a run
    counters = emulator.counters
    assert counters.runs_in_flight_max == {"DEMO01": 3, "DEMO02": 1}
    assert counters.to_json()["runs_in_flight_max"] == {"DEMO01": 3, "DEMO02": 1}
    emulator.reset_counters()
    assert emulator.counters.runs_in_flight_max == {}
