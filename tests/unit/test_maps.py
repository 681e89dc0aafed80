"""maps.py: GetMapList, GetMapColumns, GetMappedMapColumns on the wire and parsed, and
how a map given as MapInfo, MapKey or MapId is resolved (the map list a name lookup
fetches, and the bounded wait for the one another call fetches)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from functools import partial

import anyio
import httpx
import pytest
from unit_support import (
    COLUMNS,
    COLUMNS_JSON,
    COMPANY,
    EMAIL,
    GUID_CUSTOMERS,
    GUID_ORDERS,
    HASHED,
    MAP_LIST_JSON,
    TOKEN,
    TOKEN_Q,
    StalledToken,
    client,
    columns_answer,
    dumps,
    html_page,
    mock_api,
    query,
    run_json,
)

from smartconnect_async import (
    APITimeoutError,
    AuthenticationError,
    Column,
    Credentials,
    MapInfo,
    ResponseParseError,
    ServerError,
    SmartConnect,
    SmartConnectError,
    Timeout,
    UnknownMapError,
)
from smartconnect_async.maps import parse_columns, parse_map_list

pytestmark = pytest.mark.anyio

MAPS = [
    MapInfo(key=GUID_CUSTOMERS, id="Import Customers", description="Customers to BC"),
    MapInfo(key=GUID_ORDERS, id="Import Sales Orders", description="Sales Orders to BC"),
]

# ---- parsers (no event loop) --------------------------------------------------------


def test_parse_reference_map_list() -> None:
    assert parse_map_list(MAP_LIST_JSON) == MAPS


def test_parse_reference_columns() -> None:
    assert parse_columns(COLUMNS_JSON) == COLUMNS


def test_parse_map_list_tolerates_missing_description_and_bom() -> None:
    body = b"\xef\xbb\xbf" + dumps(
        [{"MapKey": GUID_CUSTOMERS, "MapId": "A"}, {"MapKey": GUID_ORDERS, "MapId": "B", "X": 1}]
    )
    assert parse_map_list(body) == [
        MapInfo(GUID_CUSTOMERS, "A", ""),
        MapInfo(GUID_ORDERS, "B", ""),
    ]


def test_parse_empty_lists() -> None:
    assert parse_map_list(b"[]") == []
    assert parse_columns(b"[]") == []


def test_columns_missing_is_required_is_not_required() -> None:
    assert parse_columns(b'[{"ColumnName": "A"}]') == [Column("A", False)]


WRONG_MAP_LISTS = {
    "object": b'{"MapKey": "k", "MapId": "i"}',
    "wrapped": b'{"d": []}',
    "null": b"null",
    "string": b'"maps"',
    "list-of-strings": b'["Import Customers"]',
    "missing-mapkey": b'[{"MapId": "Import Customers"}]',
    "null-mapkey": b'[{"MapKey": null, "MapId": "Import Customers"}]',
    "numeric-mapkey": b'[{"MapKey": 12, "MapId": "Import Customers"}]',
    "missing-mapid": b'[{"MapKey": "c365b728-60e0-4841-841c-ab73008dd41d"}]',
    "list-description": b'[{"MapKey": "k", "MapId": "i", "MapDescription": []}]',
    "truncated": MAP_LIST_JSON[:-3],
    "empty": b"",
    "not-utf8": b'[{"MapKey": "\xff"}]',
}


@pytest.mark.parametrize("body", list(WRONG_MAP_LISTS.values()), ids=list(WRONG_MAP_LISTS))
def test_wrong_map_list_shapes(body: bytes) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_map_list(body)
    assert type(info.value) is ResponseParseError
    assert "GetMapList" in str(info.value)


WRONG_COLUMNS = {
    "object": b'{"ColumnName": "A", "IsRequired": true}',
    "is-required-string": b'[{"ColumnName": "A", "IsRequired": "true"}]',
    "is-required-number": b'[{"ColumnName": "A", "IsRequired": 1}]',
    "missing-name": b'[{"IsRequired": true}]',
    "numeric-name": b'[{"ColumnName": 5, "IsRequired": true}]',
    "nested-list": b"[[]]",
    "not-json": b"ColumnName,IsRequired",
}


@pytest.mark.parametrize("body", list(WRONG_COLUMNS.values()), ids=list(WRONG_COLUMNS))
def test_wrong_column_shapes(body: bytes) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_columns(body, "the GetMapColumns answer")
    assert type(info.value) is ResponseParseError
    assert "GetMapColumns" in str(info.value)


# ---- on the wire --------------------------------------------------------------------


async def test_map_list_wire_format() -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client() as sc:
            assert await sc.maps.list() == MAPS
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/API/GetMapList"
    assert request.url.query == f"token={TOKEN_Q}".encode()
    assert request.headers["Accept"] == "application/json"
    assert "Content-Type" not in request.headers
    assert request.content == b""


@pytest.mark.parametrize(
    ("method", "endpoint"),
    [("columns", "GetMapColumns"), ("mapped_columns", "GetMappedMapColumns")],
)
async def test_columns_wire_format(method: str, endpoint: str) -> None:
    with mock_api() as api:
        route = api.post(f"/{endpoint}").respond(200, content=COLUMNS_JSON)
        async with client() as sc:
            assert await getattr(sc.maps, method)(GUID_CUSTOMERS) == COLUMNS
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == f"/API/{endpoint}"
    assert request.url.query == f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert request.headers["Accept"] == "application/json"
    assert request.content == b""


@pytest.mark.parametrize("endpoint", ["GetMapList", "GetMapColumns", "GetMappedMapColumns"])
async def test_html_page_with_status_200(endpoint: str) -> None:
    with mock_api() as api:
        api.post(f"/{endpoint}").respond(
            200, text=html_page("Runtime Error"), headers={"Content-Type": "text/html"}
        )
        async with client() as sc:
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "GetMapList": sc.maps.list,
                "GetMapColumns": partial(sc.maps.columns, GUID_CUSTOMERS),
                "GetMappedMapColumns": partial(sc.maps.mapped_columns, GUID_CUSTOMERS),
            }
            with pytest.raises(ResponseParseError, match="HTML page") as info:
                await calls[endpoint]()
    assert info.value.endpoint == endpoint
    assert "Runtime Error" in str(info.value)


@pytest.mark.parametrize("body", list(WRONG_MAP_LISTS.values()), ids=list(WRONG_MAP_LISTS))
async def test_wrong_map_list_through_the_client(body: bytes) -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=body)
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.list()
    assert type(info.value) is ResponseParseError
    assert info.value.endpoint == "GetMapList"
    assert route.call_count == 1  # an unreadable answer is not retried


# ---- map resolution -----------------------------------------------------------------


def _columns(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=COLUMNS_JSON)


async def test_map_info_is_used_without_lookup() -> None:
    info = MapInfo(key=GUID_ORDERS, id="whatever", description="")
    with mock_api() as api:
        map_list = api.post("/GetMapList")
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.columns(info)
    assert not map_list.called
    assert route.calls.last.request.url.params["mapKey"] == GUID_ORDERS


@pytest.mark.parametrize("key", [GUID_CUSTOMERS, GUID_CUSTOMERS.upper(), f"  {GUID_ORDERS} "])
async def test_guid_is_used_without_lookup(key: str) -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList")
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.columns(key)
    assert not map_list.called
    assert route.calls.last.request.url.params["mapKey"] == key.strip()


async def test_map_id_resolved_with_one_cached_map_list() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/GetMappedMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.mapped_columns("Import Sales Orders")
            assert map_list.call_count == 1
            await sc.maps.mapped_columns("Import Sales Orders")
            await sc.maps.mapped_columns("Import Customers")
    assert map_list.call_count == 1  # the second and third use made no call
    keys = [c.request.url.params["mapKey"] for c in route.calls]
    assert keys == [GUID_ORDERS, GUID_ORDERS, GUID_CUSTOMERS]


async def test_explicit_list_fills_the_cache() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.list()
            await sc.maps.columns("Import Customers")
    assert map_list.call_count == 1
    assert route.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS


async def test_map_id_match_falls_back_to_case_insensitive() -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.columns("  import CUSTOMERS ")
    assert route.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS


async def test_unknown_name_refreshes_the_list_once_then_raises() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/GetMapColumns")
        async with client() as sc:
            await sc.maps.list()
            with pytest.raises(UnknownMapError) as info:
                await sc.maps.columns("Import Vendors")
    assert map_list.call_count == 2  # one refresh: the map may be new
    assert not route.called
    assert info.value.map == "Import Vendors"
    assert info.value.candidates == ()
    assert "Import Vendors" in str(info.value)
    assert "'Import Customers'" in str(info.value)  # the known maps are listed
    assert isinstance(info.value, LookupError)


async def test_unknown_name_on_cold_cache_fetches_once() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=b"[]")
        async with client() as sc:
            with pytest.raises(UnknownMapError, match="no maps"):
                await sc.maps.columns("Import Vendors")
    assert map_list.call_count == 1


async def test_map_created_after_the_list_was_cached_is_found() -> None:
    newer = dumps(
        [
            {"MapKey": GUID_CUSTOMERS, "MapId": "Import Customers", "MapDescription": ""},
            {"MapKey": GUID_ORDERS, "MapId": "Brand New", "MapDescription": ""},
        ]
    )
    with mock_api() as api:
        api.post("/GetMapList").mock(
            side_effect=[
                httpx.Response(200, content=MAP_LIST_JSON),
                httpx.Response(200, content=newer),
            ]
        )
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.columns("Import Customers")
            await sc.maps.columns("Brand New")
    assert route.calls.last.request.url.params["mapKey"] == GUID_ORDERS


async def test_ambiguous_name_lists_candidates() -> None:
    dup = dumps(
        [
            {"MapKey": GUID_CUSTOMERS, "MapId": "Import", "MapDescription": "one"},
            {"MapKey": GUID_ORDERS, "MapId": "Import", "MapDescription": "two"},
        ]
    )
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=dup)
        route = api.post("/GetAllData")
        async with client() as sc:
            with pytest.raises(UnknownMapError) as info:
                await sc.data.get_all("Import")
    assert not route.called
    assert info.value.map == "Import"
    assert info.value.candidates == (GUID_CUSTOMERS, GUID_ORDERS)
    assert "ambiguous" in str(info.value)
    assert GUID_CUSTOMERS in str(info.value)
    assert GUID_ORDERS in str(info.value)


async def test_exact_case_wins_over_case_insensitive_matches() -> None:
    maps = dumps(
        [
            {"MapKey": GUID_CUSTOMERS, "MapId": "Import", "MapDescription": ""},
            {"MapKey": GUID_ORDERS, "MapId": "IMPORT", "MapDescription": ""},
        ]
    )
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=maps)
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc:
            await sc.maps.columns("IMPORT")
            with pytest.raises(UnknownMapError) as info:
                await sc.maps.columns("import")
    assert route.calls.last.request.url.params["mapKey"] == GUID_ORDERS
    assert set(info.value.candidates) == {GUID_CUSTOMERS, GUID_ORDERS}


async def test_100_concurrent_resolutions_on_cold_cache_make_one_map_list_call() -> None:
    with mock_api() as api:

        async def slow_list(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.01)
            return httpx.Response(200, content=MAP_LIST_JSON)

        map_list = api.post("/GetMapList").mock(side_effect=slow_list)
        route = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc, anyio.create_task_group() as tg:
            for i in range(100):
                name = "Import Customers" if i % 2 else "Import Sales Orders"
                tg.start_soon(sc.maps.columns, name)
    assert map_list.call_count == 1
    assert route.call_count == 100
    keys = [c.request.url.params["mapKey"] for c in route.calls]
    assert keys.count(GUID_CUSTOMERS) == 50
    assert keys.count(GUID_ORDERS) == 50


@pytest.mark.parametrize(
    ("map_ref", "error"), [("", ValueError), ("   ", ValueError), (42, TypeError)]
)
async def test_bad_map_reference_fails_before_any_io(map_ref: object, error: type) -> None:
    with mock_api(token=None) as api:
        async with client() as sc:
            with pytest.raises(error):
                await sc.maps.columns(map_ref)  # type: ignore[arg-type]
    assert api.calls.call_count == 0


# ---- callers waiting for one map list share its outcome ------------------------------


async def _lookups(sc: object, count: int) -> list[BaseException | None]:
    """``count`` concurrent ``maps.columns("Import Customers")``: each one's exception."""
    outcomes: list[BaseException | None] = []

    async def one() -> None:
        try:
            await sc.maps.columns("Import Customers")  # type: ignore[attr-defined]
        except Exception as exc:
            outcomes.append(exc)
        else:
            outcomes.append(None)

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return outcomes


async def test_lookups_waiting_for_a_map_list_share_its_login_failure() -> None:
    # A wrong password: one failed login for 100 lookups (an account-lockout risk).
    async def refused(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.01)  # the other lookups arrive while it is on the way
        return httpx.Response(401, json="bad credentials")

    with mock_api(token=None) as api:
        login = api.post("/GetToken").mock(side_effect=refused)
        map_list = api.post("/GetMapList")
        async with client() as sc:
            outcomes = await _lookups(sc, 100)
    assert login.call_count == 1
    assert map_list.call_count == 0
    assert len(outcomes) == 100
    assert all(isinstance(o, AuthenticationError) for o in outcomes)


async def test_lookups_waiting_for_a_map_list_share_its_server_failure() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(503)
        async with client(max_retries=1) as sc:
            with anyio.fail_after(10):  # nobody waits for a pool timeout
                outcomes = await _lookups(sc, 100)
    assert map_list.call_count == 2  # one GetMapList, retried once, for everyone
    assert all(isinstance(o, ServerError) for o in outcomes)


async def test_after_a_shared_failure_the_next_lookup_fetches_again() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList")
        map_list.side_effect = [httpx.Response(503), httpx.Response(200, content=MAP_LIST_JSON)]
        columns = api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client(max_retries=0) as sc:
            with pytest.raises(ServerError):
                await sc.maps.columns("Import Customers")
            assert await sc.maps.columns("Import Customers") == COLUMNS
    assert map_list.call_count == 2
    assert columns.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS


async def test_a_cancelled_map_list_fetch_is_taken_over_by_a_waiter() -> None:
    started = anyio.Event()
    sent: list[httpx.Request] = []

    async def first_stalls(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if not started.is_set():
            started.set()
            await anyio.sleep_forever()
        return httpx.Response(200, content=MAP_LIST_JSON)

    with mock_api() as api:
        map_list = api.post("/GetMapList").mock(side_effect=first_stalls)
        api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as sc, anyio.create_task_group() as tg:
            leader = anyio.CancelScope()

            async def lead() -> None:
                with leader:
                    await sc.maps.columns("Import Customers")

            got: list[list[Column]] = []

            async def follow() -> None:
                got.append(await sc.maps.columns("Import Customers"))

            tg.start_soon(lead)
            await started.wait()
            for _ in range(5):
                tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            leader.cancel()
    assert got == [COLUMNS] * 5
    assert len(sent) == 2  # the cancelled one, and one for the five
    assert map_list.call_count == 1  # respx counts the answered one only


async def test_a_map_list_nested_too_deep_is_a_parse_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=deep)
        async with client() as sc:
            with pytest.raises(ResponseParseError, match="GetMapList"):
                await sc.maps.list()


async def test_a_wrong_password_s_failed_lookup_is_not_shared_with_the_right_one() -> None:
    wrong = Credentials(email=EMAIL, password="not-the-password", company_id=COMPANY)

    async def login(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        if request.url.params["password"] == HASHED:
            return httpx.Response(200, json=TOKEN)
        return httpx.Response(401, json="bad credentials")

    async def slow_list(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        return httpx.Response(200, content=MAP_LIST_JSON)

    with mock_api(token=None) as api:
        api.post("/GetToken").mock(side_effect=login)
        api.post("/GetMapList").mock(side_effect=slow_list)
        api.post("/GetMapColumns").mock(side_effect=_columns)
        async with client() as right:
            await right.auth.get_token()
            other = right.with_credentials(wrong)
            outcomes: dict[str, object] = {}

            async def look(name: str, sc: SmartConnect) -> None:
                try:
                    outcomes[name] = await sc.maps.columns("Import Customers")
                except SmartConnectError as exc:
                    outcomes[name] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(look, "wrong", other)
                await anyio.sleep(0.005)  # its lookup is on the way first
                tg.start_soon(look, "right", right)
    assert isinstance(outcomes["wrong"], AuthenticationError)
    assert outcomes["right"] == COLUMNS


# ---- looking a map name up while another call fetches the map list -----------------


async def test_a_wait_for_the_map_list_another_call_fetches_is_bounded_by_the_pool_timeout() -> (
    None
):
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        columns = api.post("/GetMapColumns").mock(return_value=columns_answer())
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
