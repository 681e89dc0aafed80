"""Hostile request inputs get a 4xx with a readable message, never a 500."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, Emulator

pytestmark = pytest.mark.anyio
ADMIN = "http://emulator/_emulator"
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def json_string(response: httpx.Response) -> Any:
    """The body of a JSON answer, after checking its content type."""
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    return response.json()


@pytest.mark.parametrize("endpoint", ["RunMapWithVariables", "GetAllDataWithVariables"])
async def test_deeply_nested_variables_are_a_400(
    client: httpx.AsyncClient, emulator: Emulator, token: str, endpoint: str
) -> None:
    response = await client.post(
        f"/{endpoint}",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        content=DEEP_JSON,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert json_string(response) == "The variables are not valid JSON: it is nested too deeply."
    assert emulator.runs == ()


@pytest.mark.parametrize("route", ["clock", "faults"])
async def test_deeply_nested_admin_json_is_a_400(client: httpx.AsyncClient, route: str) -> None:
    response = await client.post(f"{ADMIN}/{route}", content=DEEP_JSON)
    assert response.status_code == 400
    assert json_string(response).endswith(": it is nested too deeply")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"advance_seconds": 1e20}', "the clock must stay between 1900 and 9000"),
        (b'{"advance_seconds": 2.3e11}', "the clock must stay between 1900 and 9000"),
        (b'{"advance_seconds": 3e11}', "the clock must stay between 1900 and 9000"),
        (b'{"advance_seconds": 1' + b"0" * 400 + b"}", "the clock must stay between 1900 and 9000"),
        (b'{"advance_seconds": Infinity}', "the clock only moves forward, a finite time"),
        (b'{"advance_seconds": NaN}', "the clock only moves forward, a finite time"),
        (b'{"advance_seconds": -1}', "the clock only moves forward, a finite time"),
        (b'{"advance_seconds": "60"}', "'advance_seconds' must be a number, got '60'"),
        (b'{"advance_seconds": true}', "'advance_seconds' must be a number, got True"),
        (b'{"now": "9999-12-31T23:59:59+00:00"}', "the clock must stay between 1900 and 9000"),
        (b'{"now": "0001-01-01T00:00:00+05:00"}', "the clock must stay between 1900 and 9000"),
    ],
)
async def test_absurd_clock_changes_are_a_400(
    client: httpx.AsyncClient, emulator: Emulator, now: datetime, body: bytes, message: str
) -> None:
    response = await client.post(f"{ADMIN}/clock", content=body)
    assert response.status_code == 400
    assert json_string(response) == f"Invalid clock change: {message}"
    assert emulator.now() == now


async def test_the_clock_still_moves_within_its_range(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    response = await client.post(f"{ADMIN}/clock", json={"advance_seconds": 1.5})
    assert json_string(response) == {"now": "2024-05-01T12:00:01.623456+00:00"}
    assert emulator.advance_clock(timedelta(0)).isoformat() == "2024-05-01T12:00:01.623456+00:00"
    with pytest.raises(ValueError, match=r"^the clock only moves forward, a finite time$"):
        emulator.advance_clock(timedelta(microseconds=-1))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"5", "fault rules must be a list or an object, got 5"),
        (b"true", "fault rules must be a list or an object, got True"),
        (b'{"rules": 5}', "fault rules must be a list or an object, got 5"),
        (b'{"GetMapList": 5}', "the rules of 'GetMapList' must be a list or an object, got 5"),
    ],
)
async def test_fault_rules_of_the_wrong_shape_are_a_400(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await client.post(f"{ADMIN}/faults", content=body)
    assert response.status_code == 400
    assert json_string(response) == f"Invalid fault rules: {message}"


@pytest.mark.parametrize(
    "number", ["1_001", "\u0661\u0660\u0660\u0661", "9223372036854775808", "9" * 5000, "1e3"]
)
async def test_a_run_number_that_is_no_long_is_a_400(
    client: httpx.AsyncClient, token: str, number: str
) -> None:
    response = await client.post(
        "/SaveProcessErrors",
        params={
            "token": token,
            "mapKey": IMPORT_CUSTOMERS_KEY,
            "tenantServer": "sql01",
            "tenantTechnicalName": "CRONUS",
            "runNumber": number,
        },
    )
    assert response.status_code == 400
    assert json_string(response) == f"The value '{number}' is not a valid run number."


async def test_a_run_number_in_range_is_read(client: httpx.AsyncClient, token: str) -> None:
    run = (
        await client.post("/runmap", params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY})
    ).json()
    params = {
        "token": token,
        "mapKey": IMPORT_CUSTOMERS_KEY,
        "tenantServer": "sql01",
        "tenantTechnicalName": "CRONUS",
    }
    for number, saved in [(f" +{run['RunNumber']} ", True), ("-9223372036854775808", False)]:
        response = await client.post("/SaveProcessErrors", params={**params, "runNumber": number})
        assert (response.status_code, json_string(response)) == (200, saved)
