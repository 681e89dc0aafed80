"""_reading.py (through the public client): a successful answer's body is read bounded
by max_answer_size, compressed or not; an HTML page with status 200 is an error, read
only in part; an error body is read only in its start."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import httpx
import pytest
from unit_support import (
    GUID_CUSTOMERS,
    GUID_ORDERS,
    JSON_HEADERS,
    MAP_LIST_JSON,
    CountedBody,
    client,
    dumps,
    html_page,
    mock_api,
    run_json,
)

from smartconnect_async import (
    APIConnectionError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
)

pytestmark = pytest.mark.anyio


# ---- bodies read whole are bounded ------------------------------------------------------


def _big(
    status: int, size: int, *, gzip_it: bool = False, chunk: int = 1 << 16
) -> tuple[httpx.Response, CountedBody]:
    payload = b'{"Message": "' + b"x" * size + b'"}'
    headers = {"Content-Type": "application/json"}
    if gzip_it:
        payload = gzip.compress(payload)
        headers["Content-Encoding"] = "gzip"
        chunk = 1024
    body = CountedBody([payload[i : i + chunk] for i in range(0, len(payload), chunk)])
    return httpx.Response(status, headers=headers, stream=body), body


@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
async def test_only_the_start_of_a_huge_error_body_is_read(gzip_it: bool) -> None:
    answer, body = _big(500, 64 << 20, gzip_it=gzip_it)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_retries=0) as sc:
            with pytest.raises(ServerError) as info:
                await sc.maps.list()
    assert info.value.body == ('{"Message": "' + "x" * 200)[:199] + "…"  # too long to parse
    assert body.pulled <= 3 < len(body.chunks)


@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
async def test_an_answer_over_max_answer_size_is_refused_unread(gzip_it: bool) -> None:
    answer, body = _big(200, 8 << 20, gzip_it=gzip_it)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_answer_size=1 << 20) as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.list()
    assert str(info.value) == (
        "GetMapList: the answer is larger than 1,048,576 bytes (max_answer_size); "
        "the rest was not read"
    )
    assert body.pulled < len(body.chunks)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),  # no zlib header: httpx and aiohttp read it too
        ("deflate", gzip.compress),
        ("GZIP", gzip.compress),
    ],
    ids=["gzip", "deflate", "raw-deflate", "gzip-as-deflate", "upper-case"],
)
async def test_compressed_answers_are_read_and_asked_for_as_gzip_or_deflate(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    payload = compress(MAP_LIST_JSON)
    chunks = [payload[i : i + 7] for i in range(0, len(payload), 7)]
    answer = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=CountedBody(chunks))
    with mock_api() as api:
        route = api.post("/GetMapList").mock(return_value=answer)
        async with client() as sc:
            maps = await sc.maps.list()
    assert [m.key for m in maps] == [GUID_CUSTOMERS, GUID_ORDERS]
    assert route.calls.last.request.headers["Accept-Encoding"] == "gzip, deflate"


async def test_an_empty_compressed_answer_is_an_empty_body() -> None:
    answer = httpx.Response(503, headers={"Content-Encoding": "gzip"}, stream=CountedBody([]))
    with mock_api() as api:
        route = api.post("/runmap").mock(side_effect=[answer, httpx.Response(200, json=run_json())])
        async with client(max_retries=1) as sc:
            assert (await sc.runs.run(GUID_CUSTOMERS)).ok  # a 503, so sent again: not unknown
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("compressed", "error"),
    [
        (gzip.compress(MAP_LIST_JSON)[:10] + b"\xff" * 40, "is corrupt: Error -3"),
        (gzip.compress(MAP_LIST_JSON)[:-12], "ends early"),
    ],
    ids=["corrupt", "truncated"],
)
async def test_a_broken_compressed_answer_is_a_failed_read(compressed: bytes, error: str) -> None:
    stream = CountedBody([compressed])  # as it came: httpx decodes a given content
    answer = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)
    with mock_api() as api:
        api.post("/GetMapList").mock(return_value=answer)
        async with client(max_retries=0) as sc:
            with pytest.raises(APIConnectionError, match=f"the compressed answer {error}"):
                await sc.maps.list()


async def test_a_run_answer_over_max_answer_size_is_outcome_unknown() -> None:
    answer, _ = _big(200, 4 << 20)
    with mock_api() as api:
        route = api.post("/runmap").mock(return_value=answer)
        async with client(max_answer_size=1 << 20) as sc:
            with pytest.raises(RunOutcomeUnknown) as info:
                await sc.runs.run(GUID_CUSTOMERS)
    assert route.call_count == 1  # processed: never sent again
    assert "larger than 1,048,576 bytes" in str(info.value)
    assert (info.value.body or "").startswith('{"Message": "xxx')


async def test_an_answer_of_max_answer_size_exactly_is_read() -> None:
    payload = dumps([{"MapKey": GUID_CUSTOMERS, "MapId": "M" * 2000, "MapDescription": ""}])
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=payload)
        async with client(max_answer_size=len(payload)) as sc:
            assert (await sc.maps.list())[0].id == "M" * 2000


# ---- an HTML page with status 200 is an error, read only in part ---------------------


async def test_html_page_with_status_200_on_json_endpoint() -> None:
    page = html_page("Service Unavailable - maintenance")
    with mock_api() as api:
        route = api.post("/GetMapColumns").respond(
            200, text=page, headers={"Content-Type": "text/html", "X-Request-Id": "iis-1"}
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert type(info.value) is ResponseParseError
    assert info.value.endpoint == "GetMapColumns"
    assert info.value.request_id == "iis-1"
    assert "HTML page" in str(info.value)
    assert "Service Unavailable - maintenance" in str(info.value)
    assert route.call_count == 1  # not retried


async def test_html_body_is_recognised_whatever_the_content_type() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").respond(
            200, text="\r\n <!DOCTYPE html><html><body>x</body></html>", headers=JSON_HEADERS
        )
        async with client() as sc:
            with pytest.raises(ResponseParseError, match="HTML page"):
                await sc.maps.columns(GUID_CUSTOMERS)


async def test_a_huge_html_page_with_status_200_is_an_html_page_error_read_in_part() -> None:
    page = b"<html><head><title>Maintenance</title></head><body>" + b"x" * (8 << 20)
    body = CountedBody([page[i : i + (1 << 16)] for i in range(0, len(page), 1 << 16)])
    with mock_api() as api:
        api.post("/GetMapList").mock(
            return_value=httpx.Response(200, headers={"Content-Type": "text/html"}, stream=body)
        )
        async with client(max_retries=0) as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.list()
    assert str(info.value) == (
        "GetMapList answered with an HTML page instead of data (HTTP 200): Maintenance"
    )
    assert body.pulled <= 3
