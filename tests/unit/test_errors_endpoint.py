"""errors.py: SaveProcessErrors on the wire; like a run, it is never sent twice once it
may have reached the server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from unit_support import (
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    TOKEN_Q,
    SleepRecorder,
    client,
    html_page,
    mock_api,
)

from smartconnect_async import RunOutcomeUnknown, ServerError, SmartConnect

pytestmark = pytest.mark.anyio

TENANT_SERVER = "sql01.example.com\\PROD"
TENANT_NAME = "ACME Co&1"


async def _save(sc: SmartConnect, run_number: int = 1234) -> bool:
    return await sc.errors.save(
        GUID_CUSTOMERS,
        tenant_server=TENANT_SERVER,
        tenant_technical_name=TENANT_NAME,
        run_number=run_number,
    )


@pytest.mark.parametrize("answer", [True, False])
async def test_save_process_errors_wire_format(answer: bool) -> None:
    with mock_api() as api:
        route = api.post("/SaveProcessErrors").respond(200, json=answer)
        async with client() as sc:
            assert await _save(sc) is answer
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/API/SaveProcessErrors"
    assert (
        request.url.query
        == (
            f"token={TOKEN_Q}&mapKey={GUID_CUSTOMERS}"
            "&tenantServer=sql01.example.com%5CPROD&tenantTechnicalName=ACME%20Co%261"
            "&runNumber=1234"
        ).encode()
    )
    assert request.headers["Accept"] == "application/json"
    assert "Content-Type" not in request.headers
    assert request.content == b""


async def test_save_by_map_name() -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        route = api.post("/SaveProcessErrors").respond(200, json=True)
        async with client() as sc:
            saved = await sc.errors.save(
                "Import Customers",
                tenant_server=TENANT_SERVER,
                tenant_technical_name=TENANT_NAME,
                run_number=0,
            )
            assert saved is True
    assert route.calls.last.request.url.params["mapKey"] == GUID_CUSTOMERS
    assert route.calls.last.request.url.params["runNumber"] == "0"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant_server": "", "tenant_technical_name": "t", "run_number": 1},
        {"tenant_server": "  ", "tenant_technical_name": "t", "run_number": 1},
        {"tenant_server": "s", "tenant_technical_name": "", "run_number": 1},
        {"tenant_server": None, "tenant_technical_name": "t", "run_number": 1},
        {"tenant_server": "s", "tenant_technical_name": "t", "run_number": -1},
        {"tenant_server": "s", "tenant_technical_name": "t", "run_number": True},
        {"tenant_server": "s", "tenant_technical_name": "t", "run_number": 1.0},
        {"tenant_server": "s", "tenant_technical_name": "t", "run_number": "1"},
    ],
)
async def test_bad_arguments_fail_before_any_io(kwargs: dict[str, Any]) -> None:
    with mock_api(token=None) as api:
        async with client() as sc:
            with pytest.raises(ValueError, match=r"must be a non-(empty string|negative int)"):
                await sc.errors.save(GUID_CUSTOMERS, **kwargs)
    assert api.calls.call_count == 0


MAYBE_SAVED: dict[str, Any] = {
    "500": httpx.Response(500, headers={"X-Request-Id": "e500"}),
    "502": httpx.Response(502),
    "read-timeout": httpx.ReadTimeout("slow"),
    "remote-protocol-error": httpx.RemoteProtocolError("Server disconnected"),
    "html-200": httpx.Response(200, text=html_page("Oops"), headers={"Content-Type": "text/html"}),
    "not-a-bool": httpx.Response(200, json="saved"),
}


@pytest.mark.parametrize("failure", list(MAYBE_SAVED.values()), ids=list(MAYBE_SAVED))
async def test_save_that_may_have_happened_is_not_resent(
    failure: Any, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post("/SaveProcessErrors").mock(side_effect=[failure])
        async with client(max_retries=5) as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await _save(sc)
    assert route.call_count == 1
    assert sleeps.delays == []
    assert info.value.endpoint == "SaveProcessErrors"
    assert info.value.map_key == GUID_CUSTOMERS
    assert info.value.attempt == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(429)],
    ids=["connect-error", "503", "429"],
)
async def test_save_provably_not_received_is_sent_again(
    failure: Any, sleeps: SleepRecorder
) -> None:
    with mock_api() as api:
        route = api.post("/SaveProcessErrors").mock(
            side_effect=[failure, httpx.Response(200, json=True)]
        )
        async with client() as sc:
            assert await _save(sc) is True
    assert route.call_count == 2
    assert len(sleeps.delays) == 1


async def test_save_gives_up_after_max_retries(sleeps: SleepRecorder) -> None:
    with mock_api() as api:
        route = api.post("/SaveProcessErrors").respond(503)
        async with client(max_retries=2) as sc:
            with pytest.raises(ServerError):
                await _save(sc)
    assert route.call_count == 3
