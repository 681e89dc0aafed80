"""Every endpoint over loopback TCP through the real client, on every HTTP library and
event loop, checked against the emulator's ground truth (its catalog, its data
generator, ``Emulator.runs`` and its counters)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import anyio
import pytest
from integration_support import LoopbackServer, MakeClient, PoolIdle, source_rows

from smartconnect_async import (
    AuthenticationError,
    ClientClosedError,
    Column,
    Credentials,
    MapInfo,
    MapRunFailed,
    NotFoundError,
    SmartConnect,
    UnknownMapError,
    ValidationFailure,
)
from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    DUPLICATE_CUSTOMERS_KEY,
    IMPORT_CUSTOMERS_KEY,
    IMPORT_SALES_ORDERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    REALTIME_CUSTOMERS_KEY,
    STATUS_COMPLETED_WITH_ERRORS,
    STATUS_SUCCESS,
    DemoCredential,
    Emulator,
    MapDef,
)
from smartconnect_async.emulator import Column as EmulatorColumn

pytestmark = pytest.mark.anyio

CUST001 = {
    "AccountNumber": "CUST001",
    "AccountName": "Purus Limited",
    "AddressCode": "Other",
    "Address1": "373-1399 Ultrices St.",
    "City": "Denver",
    "State": "CO",
    "ZIP": "92336",
    "Phone": "(303) 654-2228",
    "Currency": "CAD$",
}
TRICKY = "Smith & Sons <Wholesale> ]]> Ltd"
DEMO01_MAP_IDS = (
    "Import Customers",
    "Import Sales Orders",
    "Import GL Journal",
    "Import Vendors",
    "Import Items",
    "Post Cash Receipts",
)


def _key_of(emulator: Emulator, company: str, map_id: str) -> str:
    return next(
        m.key for m in emulator.maps.values() if m.company_id == company and m.map_id == map_id
    )


# ---- what goes on the wire -------------------------------------------------------------


async def test_every_request_sends_the_content_type_and_accept_the_documents_send(
    sc: SmartConnect, server: LoopbackServer
) -> None:
    # docs/protocol.md: JSON endpoints send Accept: application/json, data endpoints
    # application/xml; a request with no body sends no Content-Type (the vendor's sample
    # sends none; aiohttp would add application/octet-stream on its own).
    await sc.maps.list()
    await sc.data.get_all(IMPORT_CUSTOMERS_KEY)
    await sc.data.get_all(IMPORT_CUSTOMERS_KEY, {"GBL_STATE": "CO"})
    await sc.runs.run(IMPORT_CUSTOMERS_KEY)
    await sc.runs.run(IMPORT_CUSTOMERS_KEY, {"GBL_STATE": "CO"})
    await sc.runs.run_data_table(IMPORT_CUSTOMERS_KEY, [{"AccountNumber": "W1"}])
    await sc.runs.run_xml(IMPORT_CUSTOMERS_KEY, [{"AccountNumber": "W2"}])
    seen = {
        endpoint: (headers.get("content-type"), headers.get("accept"))
        for endpoint, headers in server.switch.stats.requests
    }
    assert seen == {
        "GetToken": (None, "application/json"),
        "GetMapList": (None, "application/json"),
        "GetAllData": (None, "application/xml"),
        "GetAllDataWithVariables": ("application/json", "application/xml"),
        "runmap": (None, "application/json"),
        "RunMapWithVariables": ("application/json", "application/json"),
        "runmapdatatable": ("application/xml", "application/json"),
        "runmapxml": ("text/xml", "application/json"),
    }


# ---- authentication ---------------------------------------------------------------------


async def test_get_token_and_validate(sc: SmartConnect, emulator: Emulator) -> None:
    token = await sc.auth.get_token()
    record = emulator.tokens[token.value]
    assert (record.company_id, record.email) == ("DEMO01", "alice@northwind.example")
    # The issue time the client reads from the token is the one the server recorded.
    assert token.issued_at == record.issued_at
    assert token.expires_at == record.expires_at
    assert await sc.auth.validate() is True
    assert (await sc.auth.get_token()).value == token.value  # cached
    counters = emulator.counters
    assert counters.calls == {"GetToken": 1, "validate": 1}
    assert counters.token_calls == {"DEMO01": 1}


async def test_force_refresh_gets_a_new_token_and_both_stay_valid(
    sc: SmartConnect, emulator: Emulator
) -> None:
    first = await sc.auth.get_token()
    second = await sc.auth.get_token(force_refresh=True)
    assert second.value != first.value
    assert second.value in emulator.tokens
    assert (await sc.auth.get_token()).value == second.value
    assert emulator.counters.token_calls == {"DEMO01": 2}


async def test_wrong_password_is_an_authentication_error_without_the_password(
    make_client: MakeClient, emulator: Emulator
) -> None:
    wrong = Credentials(
        email="alice@northwind.example", password="Wrong+Pass/=", company_id="DEMO01"
    )
    client = make_client(wrong)
    with pytest.raises(AuthenticationError) as caught:
        await client.maps.list()
    assert caught.value.status_code == 401
    assert caught.value.endpoint == "GetToken"
    assert "Wrong+Pass/=" not in str(caught.value)
    assert emulator.counters.calls == {"GetToken": 1}  # a refused login is not retried


LOGIN_IDS = [f"{d.email.split('@')[0]}-{d.company_id}" for d in DEMO_CREDENTIALS]


@pytest.mark.parametrize("hashed", [True, False], ids=["hashed", "plain"])
@pytest.mark.parametrize("login", DEMO_CREDENTIALS, ids=LOGIN_IDS)
async def test_every_demo_login_with_hashed_or_plain_password(
    make_client: MakeClient, emulator: Emulator, login: DemoCredential, hashed: bool
) -> None:
    # The passwords hold + / = & # %: they only survive percent-encoding.
    credentials = Credentials(
        email=login.email,
        password=login.password,
        company_id=login.company_id,
        hash_password=hashed,
    )
    client = make_client(credentials)
    assert await client.maps.list()
    token = await client.auth.get_token()
    assert emulator.tokens[token.value].company_id == credentials.company_id
    assert emulator.counters.token_calls == {credentials.company_id: 1}


async def test_a_cold_cache_makes_one_get_token_for_many_concurrent_calls(
    sc: SmartConnect, emulator: Emulator
) -> None:
    emulator.set_faults([{"kind": "latency", "ms": 30, "endpoints": ["GetToken"]}])
    async with anyio.create_task_group() as group:
        for _ in range(40):
            group.start_soon(sc.maps.columns, IMPORT_CUSTOMERS_KEY)
    assert emulator.counters.token_calls == {"DEMO01": 1}
    assert emulator.counters.calls["GetMapColumns"] == 40


async def test_a_burst_of_401s_for_one_expired_token_makes_one_new_token(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.advance_clock(timedelta(days=100))  # expired on the server only
    emulator.set_faults([{"kind": "latency", "ms": 20, "endpoints": ["GetToken"]}])
    async with anyio.create_task_group() as group:
        for _ in range(30):
            group.start_soon(sc.maps.columns, IMPORT_CUSTOMERS_KEY)
    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 2}
    # Each call: at most one 401 and one retry with the new token.
    assert 30 < counters.calls["GetMapColumns"] <= 60


async def test_a_closed_client_refuses_calls(make_client: MakeClient, emulator: Emulator) -> None:
    client = make_client()
    await client.maps.list()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.maps.list()
    with pytest.raises(ClientClosedError):
        await client.runs.run(IMPORT_CUSTOMERS_KEY)
    assert emulator.runs == ()
    assert emulator.counters.calls == {"GetToken": 1, "GetMapList": 1}


# ---- map information --------------------------------------------------------------------


async def test_map_list_is_the_companys_listed_maps_in_order(
    sc: SmartConnect, emulator: Emulator
) -> None:
    maps = await sc.maps.list()
    expected = [
        MapInfo(key=m.key, id=m.map_id, description=m.description)
        for m in emulator.maps.values()
        if m.company_id == "DEMO01" and not m.realtime
    ]
    assert maps == expected
    assert [m.id for m in maps] == list(DEMO01_MAP_IDS)
    assert REALTIME_CUSTOMERS_KEY not in {m.key for m in maps}
    assert maps[0] == MapInfo(IMPORT_CUSTOMERS_KEY, "Import Customers", "Customers to BC")


@pytest.mark.parametrize("ref", ["map_id", "map_key", "map_info", "folded_map_id"])
@pytest.mark.parametrize("map_key", [IMPORT_CUSTOMERS_KEY, IMPORT_SALES_ORDERS_KEY])
async def test_columns_and_mapped_columns_by_any_reference(
    sc: SmartConnect, emulator: Emulator, ref: str, map_key: str
) -> None:
    map_def = emulator.maps[map_key]
    info = MapInfo(map_key, map_def.map_id, map_def.description)
    references: dict[str, str | MapInfo] = {
        "map_id": map_def.map_id,
        "map_key": map_key.upper(),
        "map_info": info,
        "folded_map_id": map_def.map_id.upper(),
    }
    reference = references[ref]
    columns = await sc.maps.columns(reference)
    mapped = await sc.maps.mapped_columns(reference)
    assert columns == [Column(c.name, c.required) for c in map_def.columns]
    assert mapped == [Column(c.name, c.required) for c in map_def.mapped]
    assert any(c.required for c in mapped)
    calls = emulator.counters.calls
    assert calls["GetMapColumns"] == 1
    assert calls["GetMappedMapColumns"] == 1
    # A name is looked up in the map list once; a key or MapInfo needs no list at all.
    assert calls.get("GetMapList", 0) == (1 if ref.endswith("map_id") else 0)


async def test_a_realtime_map_works_by_key(sc: SmartConnect, emulator: Emulator) -> None:
    columns = await sc.maps.columns(REALTIME_CUSTOMERS_KEY)
    assert [c.name for c in columns] == [
        c.name for c in emulator.maps[REALTIME_CUSTOMERS_KEY].columns
    ]
    rows = (await sc.data.get_all(REALTIME_CUSTOMERS_KEY)).rows
    assert rows[0] == CUST001


async def test_an_unknown_map_name_is_unknown_map_error(
    sc: SmartConnect, emulator: Emulator
) -> None:
    with pytest.raises(UnknownMapError) as caught:
        await sc.runs.run("No Such Map")
    assert caught.value.map == "No Such Map"
    assert caught.value.candidates == ()
    assert "Import Customers" in str(caught.value)  # it lists the known maps
    with pytest.raises(UnknownMapError):
        await sc.data.get_all("Realtime Customer Sync")  # real-time maps are not listed
    assert emulator.runs == ()
    calls = emulator.counters.calls
    assert not any(name.lower().startswith("run") for name in calls)
    assert "GetAllData" not in calls


@pytest.mark.emulator(ambiguous_map_ids=True)
async def test_an_ambiguous_map_name_is_refused_with_its_candidates(
    sc: SmartConnect, emulator: Emulator
) -> None:
    with pytest.raises(UnknownMapError) as caught:
        await sc.runs.run("Import Customers")
    assert set(caught.value.candidates) == {IMPORT_CUSTOMERS_KEY, DUPLICATE_CUSTOMERS_KEY}
    assert not emulator.runs
    assert (await sc.runs.run(DUPLICATE_CUSTOMERS_KEY)).ok  # the key still works
    assert emulator.runs[0].map_key == DUPLICATE_CUSTOMERS_KEY


async def test_a_map_added_after_the_list_was_fetched_is_found_by_name(
    sc: SmartConnect, emulator: Emulator
) -> None:
    assert len(await sc.maps.list()) == 6
    new_key = "0b5e3c1a-2f4d-4e6b-8a7c-9d0e1f2a3b4c"
    source = emulator.maps[IMPORT_CUSTOMERS_KEY].source
    emulator.add_map(
        MapDef(
            key=new_key,
            company_id="DEMO01",
            map_id="Import Prospects",
            description="Prospects to BC",
            source=source,
            mapped=(EmulatorColumn("AccountNumber", True),),
            required=("AccountNumber",),
        )
    )
    result = await sc.runs.run_data_table("Import Prospects", [{"AccountNumber": "P1"}])
    assert result.ok
    assert emulator.runs[0].map_key == new_key
    assert emulator.counters.calls["GetMapList"] == 2  # looked again once, not per call
    await sc.runs.run_data_table("Import Prospects", [{"AccountNumber": "P2"}])
    assert emulator.counters.calls["GetMapList"] == 2


async def test_a_map_of_another_company_is_not_found(sc: SmartConnect, emulator: Emulator) -> None:
    other_key = _key_of(emulator, "DEMO02", "Export Items")
    with pytest.raises(NotFoundError) as caught:
        await sc.data.get_all(other_key)
    assert caught.value.status_code == 404
    assert caught.value.request_id  # the server's X-Request-Id is kept
    with pytest.raises(NotFoundError):
        await sc.runs.run(other_key)
    assert emulator.runs == ()
    assert emulator.counters.calls["runmap"] == 1  # a 404 run is not re-sent


# ---- data -------------------------------------------------------------------------------


async def test_get_all_customers_is_the_source_byte_for_byte(
    sc: SmartConnect, emulator: Emulator
) -> None:
    data = await sc.data.get_all("Import Customers")
    assert list(data.tables) == ["Table01"]
    rows = data.rows
    assert rows[0] == CUST001
    # Null (absent element) vs empty (present, empty) vs whitespace vs "]]>".
    assert rows[1]["AccountName"] == "  Padded Name Ltd  "
    assert rows[1]["Phone"] is None
    assert rows[2]["AccountName"] == TRICKY
    assert rows[2]["AddressCode"] == ""
    assert rows[2]["Address1"] == ""
    assert rows[3]["AccountName"] == "Société Générale Québec"
    assert rows[3]["City"] == "Montréal"
    assert rows[5]["Phone"] is None  # every 17th row from i=5 has no Phone
    assert rows[7]["AddressCode"] == ""
    assert rows == source_rows(emulator, IMPORT_CUSTOMERS_KEY)
    assert len(rows) == 500
    assert emulator.counters.calls["GetAllData"] == 1
    assert data.request_id is not None  # the answer's X-Request-Id
    assert len(data.request_id) == 36


async def test_get_all_sales_orders_has_several_tables(
    sc: SmartConnect, emulator: Emulator
) -> None:
    data = await sc.data.get_all(IMPORT_SALES_ORDERS_KEY)
    assert list(data.tables) == ["Header", "Line"]
    assert data.tables["Header"] == source_rows(emulator, IMPORT_SALES_ORDERS_KEY, 0)
    assert data.tables["Line"] == source_rows(emulator, IMPORT_SALES_ORDERS_KEY, 1)
    assert len(data.tables["Header"]) == 200
    assert len(data.tables["Line"]) > 200
    comments = {row["Comment"] for row in data.tables["Header"]}
    assert {None, "", TRICKY, "  Deliver to back door  "} <= comments
    assert data.rows == data.tables["Header"]


@pytest.mark.emulator(rows=0)
async def test_an_empty_source_is_an_empty_data_set(sc: SmartConnect, emulator: Emulator) -> None:
    data = await sc.data.get_all("Import Customers")
    assert data.rows == []
    assert dict(data.tables) == {}
    async with sc.data.iter_rows("Import Customers") as stream:
        assert [row async for row in stream] == []
    result = await sc.runs.run("Import Customers")
    assert (result.ok, result.record_count) == (True, 0)


@pytest.mark.parametrize("map_id", DEMO01_MAP_IDS)
async def test_iter_rows_equals_get_all_on_every_source(
    sc: SmartConnect, emulator: Emulator, map_id: str
) -> None:
    data = await sc.data.get_all(map_id)
    first_table = next(iter(data.tables))
    async with sc.data.iter_rows(map_id) as stream:
        streamed = [row async for row in stream]
    assert stream.table == first_table
    columns = list(data.rows[0])
    # A row streamed before a column first appears lacks the key (documented); else equal.
    assert [{c: row.get(c) for c in columns} for row in streamed] == data.rows
    assert all(set(row) <= set(columns) for row in streamed)
    key = _key_of(emulator, "DEMO01", map_id)
    assert data.rows == source_rows(emulator, key)
    assert emulator.counters.calls["GetAllData"] == 2


async def test_iter_rows_of_a_second_table(sc: SmartConnect, emulator: Emulator) -> None:
    async with sc.data.iter_rows(IMPORT_SALES_ORDERS_KEY, table="Line") as stream:
        lines = [row async for row in stream]
    assert lines == source_rows(emulator, IMPORT_SALES_ORDERS_KEY, 1)


async def test_iter_rows_sends_on_entering_and_raises_there(
    sc: SmartConnect, emulator: Emulator, assert_pool_idle: PoolIdle
) -> None:
    other_key = _key_of(emulator, "DEMO02", "Export Items")
    stream = sc.data.iter_rows(other_key)
    with pytest.raises(NotFoundError):
        await stream.__aenter__()  # what ``async with`` does, before the first row
    await stream.aclose()
    async with sc.data.iter_rows(IMPORT_SALES_ORDERS_KEY, table="Line") as entered:
        assert emulator.counters.calls["GetAllData"] == 2  # sent on entering; left unread
    assert entered.tables == ()
    await assert_pool_idle(sc)


async def test_get_all_with_variables_filters_the_source(
    sc: SmartConnect, emulator: Emulator
) -> None:
    data = await sc.data.get_all("Import Customers", {"GBL_STATE": "CO"})
    expected = source_rows(emulator, IMPORT_CUSTOMERS_KEY, filters={"State": "CO"})
    assert data.rows == expected
    assert 10 < len(expected) < 500
    assert data.rows[0] == CUST001
    async with sc.data.iter_rows("Import Customers", {"GBL_STATE": "CO"}) as stream:
        streamed = [row async for row in stream]
    assert [{c: r.get(c) for c in CUST001} for r in streamed] == expected
    # A value with & < > ]]> travels intact in the JSON body.
    tricky = await sc.data.get_all("Import Customers", {"GBL_ACCOUNTNAME": TRICKY})
    assert [row["AccountNumber"] for row in tricky.rows] == ["CUST003"]
    # A filter matching nothing is an empty data set, not an error.
    none = await sc.data.get_all("Import Customers", {"GBL_STATE": "XX"})
    assert none.rows == []
    assert emulator.counters.calls["GetAllDataWithVariables"] == 4
    assert "GetAllData" not in emulator.counters.calls


# ---- runs -------------------------------------------------------------------------------


async def test_run_executes_once_over_the_maps_source(sc: SmartConnect, emulator: Emulator) -> None:
    result = await sc.runs.run("Import Customers")
    (record,) = emulator.runs
    assert record.endpoint == "runmap"
    assert record.map_key == IMPORT_CUSTOMERS_KEY
    assert record.variables == {}
    assert record.tables == {}
    assert result.run_number == record.run_number == 1001
    assert result.record_count == record.record_count == 500
    assert result.status == STATUS_SUCCESS
    assert result.ok
    assert result.raise_for_status() is result
    assert (result.map_id, result.map_description) == ("Import Customers", "Customers to BC")
    assert emulator.counters.calls["runmap"] == 1
    assert result.request_id == record.request_id  # the answer's X-Request-Id
    assert len(record.request_id) == 36


async def test_run_with_variables(sc: SmartConnect, emulator: Emulator) -> None:
    variables = {"GBL_STATE": "CO", "GBL_BATCH": "a+b/c=d&e"}
    result = await sc.runs.run(IMPORT_CUSTOMERS_KEY, variables)
    (record,) = emulator.runs
    assert record.endpoint == "RunMapWithVariables"
    assert record.variables == variables
    expected = len(source_rows(emulator, IMPORT_CUSTOMERS_KEY, filters={"State": "CO"}))
    assert result.record_count == record.record_count == expected
    assert result.run_number == record.run_number
    assert emulator.counters.calls == {"GetToken": 1, "RunMapWithVariables": 1}


ROWS: list[dict[str, str | None]] = [
    {"AccountNumber": "C100", "AccountName": "Acme & Co <x> ]]> end", "Phone": None},
    {"AccountNumber": "", "AccountName": "  padded  ", "Phone": "555"},
    {"AccountName": "no number", "Phone": ""},
]
SENT = (
    {"AccountNumber": "C100", "AccountName": "Acme & Co <x> ]]> end"},
    {"AccountNumber": "", "AccountName": "  padded  ", "Phone": "555"},
    {"AccountName": "no number", "Phone": ""},
)


@pytest.mark.parametrize("with_errors", [False, True])
async def test_run_data_table_sends_exactly_the_rows(
    sc: SmartConnect, emulator: Emulator, with_errors: bool
) -> None:
    result = await sc.runs.run_data_table("Import Customers", ROWS, with_errors=with_errors)
    (record,) = emulator.runs
    endpoint = "RunMapDataTableWithErrors" if with_errors else "runmapdatatable"
    assert record.endpoint == endpoint
    assert {name: tuple(dict(r) for r in rows) for name, rows in record.tables.items()} == {
        "Table": SENT
    }
    assert result.run_number == record.run_number
    assert (result.record_count, result.error_count) == (3, 2)
    assert result.status == STATUS_COMPLETED_WITH_ERRORS
    assert not result.ok
    assert list(result.errors) == [
        ValidationFailure("Required column 'AccountNumber' is empty.", "AccountNumber", 2),
        ValidationFailure("Required column 'AccountNumber' was not supplied.", "AccountNumber", 3),
    ]
    assert result.error_message == "Required column 'AccountNumber' was not supplied."
    if with_errors:
        assert result.validation_errors == (
            ValidationFailure("Required column 'AccountNumber' is empty.", "AccountNumber", 2),
            ValidationFailure(
                "Required column 'AccountNumber' was not supplied.", "AccountNumber", 3
            ),
        )
    else:
        assert result.validation_errors == ()
    with pytest.raises(MapRunFailed) as caught:
        result.raise_for_status()
    assert caught.value.result is result
    assert emulator.counters.calls[endpoint] == 1


async def test_run_xml_sends_exactly_the_rows(sc: SmartConnect, emulator: Emulator) -> None:
    result = await sc.runs.run_xml("Import Customers", ROWS[:1])
    (record,) = emulator.runs
    assert record.endpoint == "runmapxml"
    assert [dict(r) for r in record.documents] == [SENT[0]]
    assert list(record.tables) == ["Table"]
    assert result.ok
    assert result.run_number == record.run_number
    assert (result.record_count, result.error_count) == (1, 0)


async def test_run_numbers_count_up_and_each_run_executes_once(
    sc: SmartConnect, emulator: Emulator
) -> None:
    numbers = [
        (
            await sc.runs.run_data_table(IMPORT_CUSTOMERS_KEY, [{"AccountNumber": f"N{i}"}])
        ).run_number
        for i in range(5)
    ]
    assert numbers == [1001, 1002, 1003, 1004, 1005]
    assert [r.documents[0]["AccountNumber"] for r in emulator.runs] == [f"N{i}" for i in range(5)]
    assert [r.run_number for r in emulator.runs] == numbers


async def test_save_process_errors(sc: SmartConnect, emulator: Emulator) -> None:
    result = await sc.runs.run("Post Cash Receipts")
    assert result.run_number is not None
    saved = await sc.errors.save(
        "Post Cash Receipts",
        tenant_server="sql01.example",
        tenant_technical_name="TENANT+1/=",
        run_number=result.run_number,
    )
    assert saved is True
    (entry,) = emulator.saved_errors
    assert (entry.map_key, entry.run_number) == (POST_CASH_RECEIPTS_KEY, result.run_number)
    assert (entry.tenant_server, entry.tenant_technical_name) == ("sql01.example", "TENANT+1/=")
    # An unknown run number, or the run number of another map: not saved.
    assert not await sc.errors.save(
        "Post Cash Receipts", tenant_server="s", tenant_technical_name="t", run_number=999_999
    )
    assert not await sc.errors.save(
        "Import Customers", tenant_server="s", tenant_technical_name="t", run_number=1001
    )
    assert len(emulator.saved_errors) == 1
    assert emulator.counters.calls["SaveProcessErrors"] == 3


async def test_post_cash_receipts_fails_and_raise_for_status_raises(
    sc: SmartConnect, emulator: Emulator
) -> None:
    result = await sc.runs.run("Post Cash Receipts")
    (record,) = emulator.runs
    missing = [
        i + 1
        for i, row in enumerate(source_rows(emulator, POST_CASH_RECEIPTS_KEY))
        if row["CheckbookId"] is None
    ]
    assert missing  # the fixture data does hold failing documents
    assert not result.ok
    assert result.status == STATUS_COMPLETED_WITH_ERRORS == record.status
    assert result.error_count == len(missing) == record.error_count
    assert [e.row for e in result.errors] == missing
    assert {e.column for e in result.errors} == {"CheckbookId"}
    assert result.error_message == "Required column 'CheckbookId' was not supplied."
    with pytest.raises(MapRunFailed, match="Post Cash Receipts") as caught:
        result.raise_for_status()
    assert caught.value.result is result
    assert emulator.counters.calls["runmap"] == 1


# ---- tokens: formats, expiry, several companies -----------------------------------------


@pytest.mark.emulator(opaque_tokens=True)
async def test_opaque_tokens_are_percent_encoded_and_work(
    sc: SmartConnect, emulator: Emulator
) -> None:
    before = datetime.now(timezone.utc)
    token = await sc.auth.get_token()
    assert {"+", "/", "="} <= set(token.value)
    # Not decodable: its issue time is the time it was obtained.
    assert before - timedelta(seconds=1) <= token.issued_at <= datetime.now(timezone.utc)
    assert len(await sc.maps.list()) == 6
    assert (await sc.data.get_all("Import Customers")).rows[0] == CUST001
    assert (await sc.runs.run_data_table("Import Customers", [{"AccountNumber": "X"}])).ok
    assert await sc.auth.validate() is True
    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 1}  # never refused: the token arrived intact
    assert len(emulator.runs) == 1


async def test_token_expiry_on_both_clocks_refetches_before_calling(
    make_client: MakeClient, emulator: Emulator
) -> None:
    client = make_client(clock=emulator.now)
    first = await client.auth.get_token()
    await client.maps.list()
    emulator.advance_clock(timedelta(days=93))  # past 3 calendar months, on both clocks
    assert first.is_expired(emulator.now())
    maps = await client.maps.list()
    assert len(maps) == 6
    second = await client.auth.get_token()
    assert second.value != first.value
    assert emulator.token_record(second.value) is not None
    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 2}
    # The expired token was never sent: no 401 round trip.
    assert counters.calls["GetMapList"] == 2


async def test_token_inside_the_refresh_margin_is_renewed_early(
    make_client: MakeClient, emulator: Emulator
) -> None:
    client = make_client(clock=emulator.now, refresh_margin=timedelta(days=2))
    first = await client.auth.get_token()
    emulator.set_clock(first.expires_at - timedelta(days=1))  # inside the margin, still valid
    await client.maps.list()
    second = await client.auth.get_token()
    assert second.value != first.value
    assert emulator.counters.token_calls == {"DEMO01": 2}
    assert emulator.counters.calls["GetMapList"] == 1


async def test_server_side_expiry_is_one_401_then_one_refresh(
    sc: SmartConnect, emulator: Emulator
) -> None:
    first = await sc.auth.get_token()
    await sc.maps.list()
    emulator.advance_clock(timedelta(days=100))  # the client's clock still says it is valid
    assert emulator.token_record(first.value) is None
    maps = await sc.maps.list()
    assert len(maps) == 6
    second = await sc.auth.get_token()
    assert second.value != first.value
    assert emulator.token_record(second.value) is not None
    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 2}
    assert counters.calls["GetMapList"] == 3  # ok, 401, ok after the refresh
    await sc.maps.list()
    assert emulator.counters.token_calls == {"DEMO01": 2}


async def test_a_run_refused_401_is_sent_again_with_a_new_token_and_runs_once(
    sc: SmartConnect, emulator: Emulator
) -> None:
    await sc.auth.get_token()
    emulator.advance_clock(timedelta(days=100))  # the server refuses the cached token
    result = await sc.runs.run_data_table(IMPORT_CUSTOMERS_KEY, [{"AccountNumber": "A1"}])
    (record,) = emulator.runs  # a 401 is refused before processing: safe to re-send
    assert result.run_number == record.run_number
    assert emulator.counters.calls["runmapdatatable"] == 2
    assert emulator.counters.token_calls == {"DEMO01": 2}


async def test_validate_false_drops_the_token(sc: SmartConnect, emulator: Emulator) -> None:
    first = await sc.auth.get_token()
    emulator.advance_clock(timedelta(days=100))
    assert await sc.auth.validate() is False
    second = await sc.auth.get_token()
    assert second.value != first.value
    assert await sc.auth.validate() is True
    assert emulator.counters.token_calls == {"DEMO01": 2}


async def test_with_credentials_shares_the_pool_and_gets_its_own_token(
    sc: SmartConnect,
    emulator: Emulator,
    server: LoopbackServer,
    alice02: Credentials,
    bob02: Credentials,
) -> None:
    other = sc.with_credentials(alice02)
    maps01 = await sc.maps.list()
    maps02 = await other.maps.list()
    assert [m.id for m in maps02] == ["Import Customers", "Export Items"]
    assert maps01[0].key != maps02[0].key  # same MapId, another company's map
    await other.data.get_all("Import Customers")
    await sc.data.get_all("Import Customers")
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1}
    token01, token02 = await sc.auth.get_token(), await other.auth.get_token()
    assert emulator.tokens[token01.value].company_id == "DEMO01"
    assert emulator.tokens[token02.value].company_id == "DEMO02"
    # One pool: every sequential call of both clients went over a single connection.
    assert len(server.switch.client_addresses) == 1
    # A second user of the same company gets a token of its own.
    bob = sc.with_credentials(bob02)
    await bob.maps.list()
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 2}
    bob_token = await bob.auth.get_token()
    assert emulator.tokens[bob_token.value].email == "bob@fabrikam.example"
    # Closing a derived client leaves the shared pool open.
    await other.aclose()
    assert len(await sc.maps.list()) == 6
    assert len(await other.maps.list()) == 2
    assert len(server.switch.client_addresses) == 1
