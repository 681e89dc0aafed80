"""Map information endpoints, routing, and the error answers every endpoint shares."""

from __future__ import annotations

import uuid

import httpx
import pytest

from smartconnect_async.emulator import (
    DUPLICATE_CUSTOMERS_KEY,
    IMPORT_CUSTOMERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    REALTIME_CUSTOMERS_KEY,
    DemoCredential,
    Emulator,
    create_app,
)
from smartconnect_async.emulator._endpoints import ENDPOINTS

pytestmark = pytest.mark.anyio
DENIED = "Authorization has been denied for this request."
MAP_ENDPOINTS = [e for e in ENDPOINTS if e not in ("GetToken", "validate", "GetMapList")]


async def test_map_list_has_six_maps_and_hides_real_time_maps(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    maps = (await client.post("/GetMapList", params={"token": token})).json()
    assert len(maps) >= 6
    assert all(set(m) == {"MapKey", "MapId", "MapDescription"} for m in maps)
    assert all(m["MapKey"] == str(uuid.UUID(m["MapKey"])) for m in maps)  # lower-case GUIDs
    assert REALTIME_CUSTOMERS_KEY in emulator.maps
    assert REALTIME_CUSTOMERS_KEY not in {m["MapKey"] for m in maps}
    assert len({m["MapId"] for m in maps}) == len(maps)  # no ambiguous names by default
    assert POST_CASH_RECEIPTS_KEY in {m["MapKey"] for m in maps}


async def test_real_time_map_still_answers_by_key(client: httpx.AsyncClient, token: str) -> None:
    params = {"token": token, "mapKey": REALTIME_CUSTOMERS_KEY}
    response = await client.post("/GetMappedMapColumns", params=params)
    assert response.status_code == 200


async def test_ambiguous_map_ids_can_be_configured(alice: DemoCredential) -> None:
    emulator = Emulator(ambiguous_map_ids=True)
    token = emulator.issue_token(alice.email, alice.company_id)
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e/API") as client:
        maps = (await client.post("/GetMapList", params={"token": token})).json()
    named = [m["MapKey"] for m in maps if m["MapId"] == "Import Customers"]
    assert named == [IMPORT_CUSTOMERS_KEY, DUPLICATE_CUSTOMERS_KEY]


async def test_map_columns_of_a_multi_table_source(client: httpx.AsyncClient, token: str) -> None:
    maps = (await client.post("/GetMapList", params={"token": token})).json()
    orders = next(m["MapKey"] for m in maps if m["MapId"] == "Import Sales Orders")
    params = {"token": token, "mapkey": orders}  # the lower-case spelling works too
    columns = (await client.post("/GetMapColumns", params=params)).json()
    names = [c["ColumnName"] for c in columns]
    assert names[:2] == ["SopNumber", "SopType"]
    assert "ItemNumber" in names
    assert len(names) == len(set(names))
    mapped = (await client.post("/getmappedmapcolumns", params=params)).json()
    assert {c["ColumnName"] for c in mapped if c["IsRequired"]} == {"SopNumber", "CustomerNumber"}


@pytest.mark.parametrize("endpoint", ["GetMapList", *MAP_ENDPOINTS])
async def test_unknown_token_is_401_everywhere(client: httpx.AsyncClient, endpoint: str) -> None:
    params = {
        "token": "bm9wZQ==",
        "mapKey": IMPORT_CUSTOMERS_KEY,
        "tenantServer": "s",
        "tenantTechnicalName": "t",
        "runNumber": "1",
    }
    response = await client.post(f"/{endpoint}", params=params)
    assert response.status_code == 401
    assert response.json() == DENIED
    assert response.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize("endpoint", MAP_ENDPOINTS)
async def test_unknown_map_key_is_404_everywhere(
    client: httpx.AsyncClient, token: str, endpoint: str
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    params = {"token": token, "mapKey": unknown, "tenantServer": "s", "tenantTechnicalName": "t"}
    response = await client.post(f"/{endpoint}", params={**params, "runNumber": "1"})
    assert response.status_code == 404
    assert unknown in response.json()


@pytest.mark.parametrize("endpoint", MAP_ENDPOINTS)
async def test_missing_or_malformed_map_key_is_400_everywhere(
    client: httpx.AsyncClient, token: str, endpoint: str
) -> None:
    params = {"token": token, "tenantServer": "s", "tenantTechnicalName": "t", "runNumber": "1"}
    missing = await client.post(f"/{endpoint}", params=params)
    assert missing.status_code == 400
    assert "mapKey" in missing.json()
    malformed = await client.post(f"/{endpoint}", params={**params, "mapKey": "Import Customers"})
    assert malformed.status_code == 400
    assert "GUID" in malformed.json()


async def test_missing_token_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/GetMapList")
    assert response.status_code == 400
    assert "token" in response.json()


async def test_map_keys_parse_in_any_case(client: httpx.AsyncClient, token: str) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY.upper()}
    assert (await client.post("/GetMapColumns", params=params)).status_code == 200


async def test_routing_answers(client: httpx.AsyncClient, token: str) -> None:
    unknown = await client.post("/GetEverything", params={"token": token})
    assert unknown.status_code == 404
    assert unknown.json()["Message"].startswith("No HTTP resource was found")
    wrong_method = await client.get("/GetMapList", params={"token": token})
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    outside = await client.post("http://emulator/Other/GetMapList")
    assert outside.status_code == 404
    assert outside.headers["content-type"].startswith("text/html")
    lower_prefix = await client.post("http://emulator/api/getmaplist/", params={"token": token})
    assert lower_prefix.status_code == 200


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient, token: str) -> None:
    answers = [
        await client.post("/GetMapList", params={"token": token}),
        await client.post("/GetMapList", params={"token": "x"}),
        await client.post("/Nope"),
        await client.get("http://emulator/_emulator/counters"),
    ]
    ids = [str(uuid.UUID(a.headers["x-request-id"])) for a in answers]
    assert len(set(ids)) == len(ids)
    assert answers[0].headers["server"] == "Microsoft-IIS/10.0"
