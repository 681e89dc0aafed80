"""The FastAPI example (examples/fastapi_app) against the emulator on loopback: its
lifespan run, driven in-process through httpx's ASGI transport (or, where the order of
the answer's messages or its memory matters, as an ASGI server drives it)."""

from __future__ import annotations

import csv
import io
import json
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import attrs
import httpx
import pytest
from fastapi import FastAPI
from fastapi_app.app import create_app

from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    DataSource,
    Emulator,
    MapDef,
    Table,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integration_support import source_rows

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("smartconnect_env")]

CUSTOMERS = "Import Customers"


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    """The example app with its lifespan running (its client made from the environment)."""
    app = create_app()
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as client:
        yield client


@attrs.define
class Answer:
    """What an ASGI app sent for one request: the status, the headers, the messages in
    order (``start``, then ``body`` per chunk), the body's size and, up to ``kept``
    bytes, its start."""

    status: int = 0
    headers: dict[str, str] = attrs.Factory(dict)
    messages: list[str] = attrs.Factory(list)
    size: int = 0
    head: bytes = b""

    def json(self) -> Any:
        return json.loads(self.head)


async def asgi_get(app: FastAPI, path: str, kept: int = 4096) -> Answer:
    """GET ``path`` from ``app`` as an ASGI server does, keeping only the first ``kept``
    bytes of the body (httpx's ASGI transport holds all of it)."""
    answer = Answer()
    done = anyio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            answer.messages.append("start")
            return
        body = message.get("body", b"")
        if body:
            answer.messages.append("body")
            answer.size += len(body)
            answer.head += body[: max(0, kept - len(answer.head))]
        if not message.get("more_body", False):
            done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app")],
        "server": ("app", 80),
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)
    return answer


async def test_maps_are_listed(http: httpx.AsyncClient, smartconnect_emulator: Emulator) -> None:
    answer = await http.get("/maps")
    assert answer.status_code == 200
    maps = answer.json()
    assert maps[0] == {
        "id": CUSTOMERS,
        "key": IMPORT_CUSTOMERS_KEY,
        "description": "Customers to BC",
    }
    assert "Post Cash Receipts" in [m["id"] for m in maps]


async def test_ndjson_is_the_source(
    http: httpx.AsyncClient, smartconnect_emulator: Emulator
) -> None:
    answer = await http.get(f"/maps/{CUSTOMERS}/data.ndjson")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in answer.text.splitlines()]
    assert rows == source_rows(smartconnect_emulator, IMPORT_CUSTOMERS_KEY)


async def test_csv_is_the_source(http: httpx.AsyncClient, smartconnect_emulator: Emulator) -> None:
    answer = await http.get(f"/maps/{CUSTOMERS}/data.csv", params={"GBL_State": "CO"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    expected = source_rows(smartconnect_emulator, IMPORT_CUSTOMERS_KEY, filters={"State": "CO"})
    assert len(expected) > 1
    assert rows == [{k: v or "" for k, v in row.items()} for row in expected]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param(f"/maps/{CUSTOMERS}x/data.ndjson", 404, id="unknown-map"),
        pytest.param("/maps/00000000-0000-0000-0000-000000000000/data.csv", 404, id="unknown-key"),
        pytest.param(f"/maps/{CUSTOMERS}/data.csv", 502, id="wrong-password"),
    ],
)
async def test_stream_errors_come_before_the_body(
    path: str, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if status == 502:
        monkeypatch.setenv("SMARTCONNECT_PASSWORD", "not-the-password")
    app = create_app()
    async with app.router.lifespan_context(app):
        answer = await asgi_get(app, path)
    assert answer.messages == ["start", "body"]  # the status went first, then one JSON body
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]


async def test_wrong_password_is_502_with_request_id(
    monkeypatch: pytest.MonkeyPatch, smartconnect_emulator: Emulator
) -> None:
    monkeypatch.setenv("SMARTCONNECT_PASSWORD", "not-the-password")
    app = create_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http,
    ):
        answer = await http.get("/maps")
    assert answer.status_code == 502
    body = answer.json()
    assert body["error"] == "SmartConnect refused the login"
    assert len(body["request_id"]) == 36  # the emulator's X-Request-Id, a UUID
    assert "not-the-password" not in answer.text
    assert smartconnect_emulator.counters.token_calls == {"DEMO01": 1}


async def test_rate_limit_is_503_with_retry_after(
    http: httpx.AsyncClient, smartconnect_emulator: Emulator
) -> None:
    smartconnect_emulator.set_faults(
        [{"kind": "status", "status": 429, "retry_after": 120, "endpoints": ["GetMapList"]}]
    )
    with anyio.fail_after(5):  # a wait that long is refused at once, not waited out
        answer = await http.get("/maps")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "120"
    assert answer.json()["error"] == "SmartConnect's rate limit is reached"


async def test_run_with_rows(http: httpx.AsyncClient, smartconnect_emulator: Emulator) -> None:
    rows = [{"AccountNumber": "C100", "AccountName": "Acme", "Balance": 12.5}]
    answer = await http.post(f"/maps/{CUSTOMERS}/runs", json={"rows": rows})
    assert answer.status_code == 200
    body = answer.json()
    [run] = smartconnect_emulator.runs
    assert body == {
        "ok": True,
        "status": 0,
        "run_number": run.run_number,
        "map_id": CUSTOMERS,
        "map_description": "Customers to BC",
        "record_count": 1,
        "error_count": 0,
        "error_message": "",
        "errors": [],
        "validation_errors": [],
        "request_id": run.request_id,
    }
    assert run.documents == ({"AccountNumber": "C100", "AccountName": "Acme", "Balance": "12.5"},)


async def test_failed_run_is_answered_not_raised(
    http: httpx.AsyncClient, smartconnect_emulator: Emulator
) -> None:
    answer = await http.post("/maps/Post Cash Receipts/runs", json={"variables": {"GBL_X": "1"}})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["ok"], body["status"], body["error_count"]) == (False, 1, 4)
    assert body["errors"][0] == {
        "row": 2,
        "column": "CheckbookId",
        "message": "Required column 'CheckbookId' was not supplied.",
    }
    assert smartconnect_emulator.counters.runs_by_map == {POST_CASH_RECEIPTS_KEY: 1}


async def test_validation_errors_are_answered(http: httpx.AsyncClient) -> None:
    rows = [{"AccountNumber": "C1"}, {"AccountName": "no number"}]
    answer = await http.post(f"/maps/{CUSTOMERS}/runs", json={"rows": rows, "with_errors": True})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["ok"], body["record_count"], body["error_count"]) == (False, 2, 1)
    assert body["validation_errors"] == [
        {
            "row": 2,
            "column": "AccountNumber",
            "message": "Required column 'AccountNumber' was not supplied.",
        }
    ]


async def test_outcome_unknown_is_502_and_not_resent(
    http: httpx.AsyncClient, smartconnect_emulator: Emulator
) -> None:
    smartconnect_emulator.set_faults(
        [{"kind": "drop_after", "count": 1, "endpoints": ["runmapdatatable"]}]
    )
    answer = await http.post(f"/maps/{CUSTOMERS}/runs", json={"rows": [{"AccountNumber": "C1"}]})
    assert answer.status_code == 502
    body = answer.json()
    assert "not re-sent" in body["error"]
    assert body["map_key"] == IMPORT_CUSTOMERS_KEY
    assert smartconnect_emulator.counters.runs_by_map == {IMPORT_CUSTOMERS_KEY: 1}
    assert len(smartconnect_emulator.runs) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"rows": []}, id="no-rows"),
        pytest.param({"rows": [{"A": "1"}], "variables": {"GBL_A": "1"}}, id="both"),
        pytest.param({"with_errors": True}, id="with-errors-no-rows"),
        pytest.param({"rows": [{"not a name": "1"}]}, id="bad-column"),
        pytest.param({"rows": "C100"}, id="not-a-list"),
        pytest.param({"rowz": []}, id="unknown-field"),
    ],
)
async def test_bad_input_is_422(
    body: dict[str, Any], http: httpx.AsyncClient, smartconnect_emulator: Emulator
) -> None:
    answer = await http.post(f"/maps/{CUSTOMERS}/runs", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"]
    assert smartconnect_emulator.counters.total_runs == 0


WIDE_ROWS = 20_000
WIDE_TEXT = 1000
"""A source of 20,000 rows of about 1 KB each: a body of 20 MB, parsed quickly even
with every allocation traced."""


def wide_rows(seed: int, size: int) -> Iterator[tuple[str | None, ...]]:
    for i in range(1, size + 1):
        yield f"W{i:06d}", chr(ord("a") + i % 26) * WIDE_TEXT


WIDE = DataSource(
    "Wide", "MyDataSet", (Table("Table01", ("Id", "Text"), wide_rows),), default_size=WIDE_ROWS
)


async def test_large_stream_in_constant_memory(
    smartconnect_emulator: Emulator, app: FastAPI
) -> None:
    key = "6f1c2d3e-4b5a-4c6d-8e7f-90a1b2c3d4e5"
    smartconnect_emulator.add_map(MapDef(key, "DEMO01", "Export Wide", "Wide", WIDE, ()))
    await asgi_get(app, "/maps")  # the token and the map list, before measuring
    tracemalloc.start()
    try:
        with anyio.fail_after(30):
            answer = await asgi_get(app, f"/maps/{key}/data.ndjson")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.status == 200
    assert answer.head.startswith(b'{"Id":"W000001","Text":"bbbb')
    assert answer.size > WIDE_ROWS * WIDE_TEXT
    assert peak < answer.size / 10, f"peak {peak:,} bytes for a body of {answer.size:,}"
