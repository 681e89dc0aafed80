"""GetAllData / GetAllDataWithVariables: the escaped DataSet, values, variables, streaming."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from typing import Any

import defusedxml.ElementTree as safe_xml  # type: ignore[import-untyped, unused-ignore]
import httpx
import pytest

from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    IMPORT_SALES_ORDERS_KEY,
    DemoCredential,
    Emulator,
    create_app,
    serve,
)
from smartconnect_async.emulator._data import ACCENTED_TEXT, PADDED_TEXT, TRICKY_TEXT

pytestmark = pytest.mark.anyio
SERIALIZATION = "{http://schemas.microsoft.com/2003/10/Serialization/}string"

Rows = list[tuple[str, dict[str, str]]]


def parse_answer(body: bytes) -> tuple[str, Rows]:
    """Unwrap the .NET string, parse the inner DataSet: (root name, [(table, row)])."""
    outer = safe_xml.fromstring(body, forbid_dtd=True)
    assert outer.tag == SERIALIZATION
    inner = safe_xml.fromstring(outer.text, forbid_dtd=True)
    rows = [(row.tag, {cell.tag: cell.text or "" for cell in row}) for row in inner]
    return inner.tag, rows


def expected_rows(emulator: Emulator, map_key: str) -> Rows:
    source = emulator.maps[map_key].source
    size = emulator.source_size(source.name)
    return [
        (table.name, {c: v for c, v in zip(table.columns, row, strict=True) if v is not None})
        for table in source.tables
        for row in table.rows(emulator.seed, size)
    ]


async def fetch(
    client: httpx.AsyncClient, token: str, map_key: str, variables: Any = None
) -> bytes:
    params = {"token": token, "mapKey": map_key}
    if variables is None:
        response = await client.post("/GetAllData", params=params)
    else:
        response = await client.post("/GetAllDataWithVariables", params=params, json=variables)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    return response.content


@pytest.fixture
def big_emulator(clock: Any) -> Emulator:
    return Emulator(clock=clock, rows=1000)


@pytest.fixture
async def big_client(big_emulator: Emulator) -> Any:
    transport = httpx.ASGITransport(app=create_app(big_emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e/API") as client:
        yield client


async def test_thousand_customers_parse_to_exactly_the_seeded_values(
    big_client: httpx.AsyncClient, big_emulator: Emulator, alice: DemoCredential
) -> None:
    token = big_emulator.issue_token(alice.email, alice.company_id)
    body = await fetch(big_client, token, IMPORT_CUSTOMERS_KEY)
    root, rows = parse_answer(body)
    assert root == "MyDataSet"
    assert len(rows) == 1000
    assert rows == expected_rows(big_emulator, IMPORT_CUSTOMERS_KEY)
    by_number = {row["AccountNumber"]: row for _, row in rows}
    assert by_number["CUST002"]["AccountName"] == PADDED_TEXT  # whitespace kept
    assert "Phone" not in by_number["CUST002"]  # null: element absent
    assert by_number["CUST003"]["AccountName"] == TRICKY_TEXT  # & < > and ]]>
    assert by_number["CUST003"]["AddressCode"] == ""  # empty: element present
    assert by_number["CUST004"]["City"] == "Montréal"
    assert by_number["CUST004"]["AccountName"] == ACCENTED_TEXT
    assert sum("Phone" not in row for _, row in rows) >= 50
    assert sum(row.get("AddressCode") == "" for _, row in rows) >= 40
    # On the wire: the split CDATA, the empty element, escaped once more.
    assert (
        b"&lt;![CDATA[Smith &amp; Sons &lt;Wholesale&gt; ]]]]&gt;&lt;![CDATA[&gt; Ltd]]&gt;" in body
    )
    assert b"    &lt;AddressCode /&gt;&#xD;\n" in body
    assert "Société".encode() in body


async def test_multi_table_data_set(
    big_client: httpx.AsyncClient, big_emulator: Emulator, alice: DemoCredential
) -> None:
    token = big_emulator.issue_token(alice.email, alice.company_id)
    root, rows = parse_answer(await fetch(big_client, token, IMPORT_SALES_ORDERS_KEY))
    assert root == "SalesOrders"
    assert rows == expected_rows(big_emulator, IMPORT_SALES_ORDERS_KEY)
    tables = [table for table, _ in rows]
    assert tables.count("Header") == 1000
    assert tables.count("Line") > 1000
    assert tables == sorted(tables)  # all Header rows, then all Line rows
    comments = [row.get("Comment") for table, row in rows if table == "Header"]
    assert {None, "", TRICKY_TEXT, "  Deliver to back door  "} <= set(comments)


async def test_journal_has_nulls_for_the_other_side(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    journal = next(k for k, m in emulator.maps.items() if m.map_id == "Import GL Journal")
    root, rows = parse_answer(await fetch(client, token, journal))
    assert (root, rows[0][0]) == ("NewDataSet", "Table")
    for _, row in rows:
        assert ("Debit" in row) != ("Credit" in row)


async def test_variables_filter_rows_and_unknown_variables_are_ignored(
    client: httpx.AsyncClient, token: str
) -> None:
    variables = [{"Key": "GBL_City", "Value": "Denver"}, {"Key": "GBL_NOPE", "Value": "x"}]
    _, rows = parse_answer(await fetch(client, token, IMPORT_CUSTOMERS_KEY, variables))
    assert len(rows) > 5
    assert {row["City"] for _, row in rows} == {"Denver"}
    unfiltered = [{"key": "TEST", "value": "1"}, {"Key": "GBL_X", "Value": None}]
    _, everything = parse_answer(await fetch(client, token, IMPORT_CUSTOMERS_KEY, unfiltered))
    assert len(everything) == 500


async def test_variables_filter_every_table_with_the_column(
    client: httpx.AsyncClient, token: str
) -> None:
    variables = [{"Key": "GBL_SOPNUMBER", "Value": "ORD0000002"}]
    _, rows = parse_answer(await fetch(client, token, IMPORT_SALES_ORDERS_KEY, variables))
    assert {row["SopNumber"] for _, row in rows} == {"ORD0000002"}
    assert [table for table, _ in rows][:2] == ["Header", "Line"]


async def test_no_rows_is_an_empty_data_set(client: httpx.AsyncClient, token: str) -> None:
    variables = [{"Key": "GBL_AccountNumber", "Value": "NOBODY"}]
    body = await fetch(client, token, IMPORT_CUSTOMERS_KEY, variables)
    assert body == (
        b'<string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">'
        b"&lt;MyDataSet /&gt;</string>"
    )


async def test_empty_variables_body_means_no_variables(
    client: httpx.AsyncClient, token: str
) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    response = await client.post("/GetAllDataWithVariables", params=params)
    assert response.status_code == 200
    assert response.content == await fetch(client, token, IMPORT_CUSTOMERS_KEY)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[{", "application/json", 400),
        (b'{"Key": "GBL_X", "Value": "1"}', "application/json", 400),
        (b'[{"Value": "1"}]', "application/json", 400),
        (b'["GBL_X"]', "application/json", 400),
        (b'[{"Key": "GBL_X", "Value": "1"}]', "text/plain", 415),
        (b'[{"Key": "GBL_X", "Value": "1"}]', "", 415),
    ],
)
async def test_malformed_variables_are_refused(
    client: httpx.AsyncClient, token: str, body: bytes, content_type: str, status: int
) -> None:
    response = await client.post(
        "/GetAllDataWithVariables",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        content=body,
        headers={"content-type": content_type} if content_type else {},
    )
    assert response.status_code == status
    assert isinstance(response.json(), str)


def test_rows_depend_on_seed_and_index_only() -> None:
    small, large = Emulator(rows=100), Emulator(rows=300)
    customers = small.maps[IMPORT_CUSTOMERS_KEY]
    small_body = b"".join(small.data_chunks(customers))
    large_body = b"".join(large.data_chunks(customers))
    cut = small_body.rindex(b"&lt;/Table01&gt;")
    assert large_body.startswith(small_body[:cut])
    assert b"".join(Emulator(rows=100).data_chunks(customers)) == small_body
    other_seed = b"".join(Emulator(rows=100, seed=1).data_chunks(customers))
    assert other_seed != small_body
    assert other_seed[:1000] == small_body[:1000]  # the reference row stays put


def test_answer_is_generated_lazily_in_bounded_memory() -> None:
    emulator = Emulator(rows={"Customers": 50_000})
    tracemalloc.start()
    try:
        total = chunks = 0
        for chunk in emulator.data_chunks(emulator.maps[IMPORT_CUSTOMERS_KEY]):
            total += len(chunk)
            chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 30_000_000
    assert chunks > 400
    assert peak < 2_000_000


_MEASURE = """
import resource, sys, time
from smartconnect_async.emulator import Emulator, IMPORT_CUSTOMERS_KEY
rows = int(sys.argv[1])
emulator = Emulator(rows={"Customers": rows})
chunks = emulator.data_chunks(emulator.maps[IMPORT_CUSTOMERS_KEY])
first = next(chunks)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
total = len(first) + sum(len(chunk) for chunk in chunks)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(total, before, after, time.perf_counter() - start)
"""


def measure(rows: int) -> tuple[int, int, int, float]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(rows)], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]), int(out[2]), float(out[3])


@pytest.mark.skipif(sys.platform == "win32", reason="measures ru_maxrss")
def test_a_million_rows_stream_in_flat_memory() -> None:
    small_total, _, small_peak, _ = measure(1_000)
    total, before, peak, seconds = measure(1_000_000)
    assert total > 600_000_000  # about 650 MB of answer...
    assert peak - before < 8_000  # ...while the peak RSS grows by under 8 MB (ru_maxrss: KiB)
    assert peak - small_peak < 8_000
    assert small_total * 500 < total
    assert seconds < 20


async def test_answer_is_streamed_over_tcp(served: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=served) as client:
        params = {"token": token, "mapKey": IMPORT_SALES_ORDERS_KEY}
        async with client.stream("POST", "/GetAllData", params=params) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
            body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert parse_answer(body)[0] == "SalesOrders"


async def test_a_client_leaving_early_stops_the_stream(alice: DemoCredential) -> None:
    emulator = Emulator(rows={"Customers": 5_000_000})  # minutes of streaming if not stopped
    token = emulator.issue_token(alice.email, alice.company_id)
    with serve(create_app(emulator)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
            async with client.stream("POST", "/GetAllData", params=params) as response:
                async for _ in response.aiter_raw():
                    break
            maps = await client.post("/GetMapList", params={"token": token})
            assert maps.status_code == 200
        stopping = time.perf_counter()
    # uvicorn waits for running responses on exit: a stream still going would hold it.
    assert time.perf_counter() - stopping < 1.5
