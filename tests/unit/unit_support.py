"""Constants and helpers shared by the unit tests (imported by name; see conftest.py).

The fixtures marked "reference" are copied verbatim from the vendor's API reference
(/work/shared/reference/smartconnect-api-reference.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import httpx
import respx

from smartconnect_async import Column, Credentials, SmartConnect

API_URL = "https://sc.example.com/API"

# reference: the GetToken example answer (a JSON string).
TOKEN = (
    "Um5UVHZsWU1XZ09xYzE1R3dOZXhNV0Jka25FcEg3L2ZtZjVMSkxIdEZsUT0jQjE2QkIzNTMtNTFFOC00MkNB"
    "LTgxRDEtNUVCQjA0QUIxMzQ5I0MzMzhDRUI1LTBEOTctNEU1Ny05MDU4LUNFN0NBRDNEODU2RCNFVEhBTi5T"
    "T1JFTlNPTkBFT05FU09MVVRJT05TLkNPTSMyMDIwLTEwLTAyVDA4OjA1OjE1Ljg2Ng=="
)
TOKEN_ISSUED = datetime(2020, 10, 2, 8, 5, 15, 866000, tzinfo=timezone.utc)
TOKEN_EXPIRES = datetime(2021, 1, 2, 8, 5, 15, 866000, tzinfo=timezone.utc)
# The reference token percent-encoded as a query value: only its "=" need encoding.
TOKEN_Q = TOKEN.replace("=", "%3D")

# A token holding every base64 character that must be percent-encoded in a query.
PLUS_TOKEN = "ab+cd/ef+gh/ij=="
PLUS_TOKEN_Q = "ab%2Bcd%2Fef%2Bgh%2Fij%3D%3D"

GUID_CUSTOMERS = "c365b728-60e0-4841-841c-ab73008dd41d"
GUID_ORDERS = "1b763e98-37c4-4d32-8320-abb200d82e59"

# reference: GetMapList example answer.
MAP_LIST_JSON = b"""[
  {
    "MapKey": "c365b728-60e0-4841-841c-ab73008dd41d",
    "MapId": "Import Customers",
    "MapDescription": "Customers to BC"
  },
  {
    "MapKey": "1b763e98-37c4-4d32-8320-abb200d82e59",
    "MapId": "Import Sales Orders",
    "MapDescription": "Sales Orders to BC"
  }
]"""

# reference: GetMapColumns / GetMappedMapColumns example answer.
COLUMNS_JSON = b"""[
    {
        "ColumnName": "AccountNumber",
        "IsRequired": true
    },
    {
        "ColumnName": "AccountName",
        "IsRequired": false
    },
    {
        "ColumnName": "Phone",
        "IsRequired": false
    }
]"""
# The columns of that answer, parsed.
COLUMNS = [
    Column("AccountNumber", True),
    Column("AccountName", False),
    Column("Phone", False),
]
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def columns_answer() -> httpx.Response:
    """The reference GetMapColumns answer, as JSON."""
    return httpx.Response(200, content=COLUMNS_JSON, headers=JSON_HEADERS)


# reference: GetAllData example answer, byte for byte.
GETALLDATA_XML = (
    b'<string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">'
    b"&lt;MyDataSet&gt;&#xD;\n"
    b"  &lt;Table01&gt;&#xD;\n"
    b"    &lt;AccountNumber&gt;&lt;![CDATA[CUST001]]&gt;&lt;/AccountNumber&gt;&#xD;\n"
    b"    &lt;AccountName&gt;&lt;![CDATA[Purus Limited]]&gt;&lt;/AccountName&gt;&#xD;\n"
    b"    &lt;AddressCode&gt;&lt;![CDATA[Other]]&gt;&lt;/AddressCode&gt;&#xD;\n"
    b"    &lt;Address1&gt;&lt;![CDATA[373-1399 Ultrices St.]]&gt;&lt;/Address1&gt;&#xD;\n"
    b"    &lt;City&gt;&lt;![CDATA[Denver]]&gt;&lt;/City&gt;&#xD;\n"
    b"    &lt;State&gt;&lt;![CDATA[CO]]&gt;&lt;/State&gt;&#xD;\n"
    b"    &lt;ZIP&gt;&lt;![CDATA[92336]]&gt;&lt;/ZIP&gt;&#xD;\n"
    b"    &lt;Phone&gt;&lt;![CDATA[(303) 654-2228]]&gt;&lt;/Phone&gt;&#xD;\n"
    b"    &lt;Currency&gt;&lt;![CDATA[CAD$]]&gt;&lt;/Currency&gt;&#xD;\n"
    b"  &lt;/Table01&gt;&#xD;\n"
    b"&lt;/MyDataSet&gt;</string>"
)
REFERENCE_ROW: dict[str, str | None] = {
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

EMAIL = "user@example.com"
PASSWORD = "S3cret+pass/word="
COMPANY = "ACME-01"
CREDS = Credentials(email=EMAIL, password=PASSWORD, company_id=COMPANY)

SERIALIZATION_NS = "http://schemas.microsoft.com/2003/10/Serialization/"
HASH_KEY = "6clDgmNok3WtR8GKYW6N"


def independent_hash(password: str) -> str:
    """The hashed password of docs/protocol.md, computed here without the library."""
    message = f"{password}:{HASH_KEY}".encode()
    digest = hmac.new(HASH_KEY.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def b64_query(value: str) -> str:
    """A base64 value percent-encoded by hand (only ``+``, ``/`` and ``=`` need it)."""
    return value.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


HASHED = independent_hash(PASSWORD)
HASHED_Q = b64_query(HASHED)
PASSWORD_Q = "S3cret%2Bpass%2Fword%3D"


def secret_forms(*secrets: str) -> set[str]:
    """Every form in which a secret must never be shown: raw and percent-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        encoded = b64_query(secret)
        forms.update(
            {
                secret,
                encoded,
                encoded.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
                quote(secret, safe=""),
                quote_plus(secret),
            }
        )
    return forms


def assert_no_secret(text: str, *secrets: str) -> None:
    for form in secret_forms(*secrets):
        assert form not in text, f"a secret ({form[:6]}…) leaked into: {text[:300]!r}"


def client(**kwargs: Any) -> SmartConnect:
    """A client for ``API_URL`` with ``CREDS`` (override either with keywords), on the
    httpx backend, which respx intercepts."""
    api_url = kwargs.pop("api_url", API_URL)
    credentials = kwargs.pop("credentials", CREDS)
    if "http_client" not in kwargs:
        kwargs.setdefault("backend", "httpx")
    return SmartConnect(api_url, credentials, **kwargs)


@contextmanager
def mock_api(token: str | None = TOKEN) -> Iterator[respx.MockRouter]:
    """A respx router for ``API_URL``; any request it has no route for fails.

    With ``token`` a route named "GetToken" answers it (as a JSON string). Routes and
    their recorded calls stay readable after the block.
    """
    router = respx.mock(base_url=API_URL, assert_all_called=False)
    if token is not None:
        router.post("/GetToken", name="GetToken").respond(json=token)
    router.start()
    try:
        yield router
    finally:
        # Keep the routes and their calls for assertions made after the block.
        router.stop(clear=False, reset=False)


def query(route: respx.Route, index: int = -1) -> bytes:
    """The raw (still percent-encoded) query string of a call to ``route``."""
    raw: bytes = route.calls[index].request.url.query
    return raw


def sent_token(request: httpx.Request) -> str:
    """The token a request carried (decoded from the query)."""
    return request.url.params["token"]


def run_json(**fields: Any) -> dict[str, Any]:
    """A successful RunMapResponse, with ``fields`` overriding."""
    answer: dict[str, Any] = {
        "ErrorCount": 0,
        "Errors": "",
        "ErrorMessage": "",
        "MapDescription": "Customers to BC",
        "MapId": "Import Customers",
        "RecordCount": 3,
        "RunNumber": 42,
        "Status": 0,
    }
    answer.update(fields)
    return answer


def html_page(title: str = "500 - Internal server error.") -> str:
    return (
        "<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.0 Strict//EN'>\r\n"
        f"<html><head><title>{title}</title></head>"
        f"<body><h1>Server Error</h1><p>{title}</p></body></html>"
    )


def net_escape(text: str) -> str:
    """Text escaped as .NET serialises a string (``&``, ``<``, ``>``, CR)."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


def data_answer(inner: str) -> bytes:
    """A GetAllData answer whose inner DataSet document is ``inner``."""
    return f'<string xmlns="{SERIALIZATION_NS}">{net_escape(inner)}</string>'.encode()


def table_xml(
    tables: Mapping[str, Sequence[Mapping[str, str | None]]], root: str = "MyDataSet"
) -> str:
    """An inner DataSet document, every value in CDATA (split around ``]]>``)."""
    parts = [f"<{root}>\r\n"]
    for name, rows in tables.items():
        for row in rows:
            parts.append(f"  <{name}>\r\n")
            for column, value in row.items():
                if value is None:
                    continue
                cdata = "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
                parts.append(f"    <{column}>{cdata}</{column}>\r\n")
            parts.append(f"  </{name}>\r\n")
    parts.append(f"</{root}>")
    return "".join(parts)


class ChunkStream(httpx.AsyncByteStream):
    """A response body sent ``size`` bytes at a time, recording how far it was read and
    whether it was closed; ``fail_after`` chunks, it raises ``error``."""

    def __init__(
        self,
        data: bytes,
        size: int = 1,
        *,
        fail_after: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self.sent = 0
        self.closed = False
        self.fail_after = fail_after
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.fail_after is not None and self.sent >= self.fail_after:
                raise self.error or httpx.ReadError("connection reset")
            self.sent += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


class SleepRecorder:
    """Stands in for ``anyio.sleep``: records each delay; waits for real only when it is
    tiny (so that a short ``Retry-After`` really passes), else just yields to the loop."""

    REAL_UP_TO = 0.1

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._sleep = anyio.sleep

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self._sleep(delay if delay <= self.REAL_UP_TO else 0)


class MutableClock:
    """An injectable clock (aware UTC) that tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


class CountedBody(httpx.AsyncByteStream):
    """A body sent in ``chunks``, counting how many the client pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


class StalledToken:
    """A GetToken answer held back until ``release`` is set."""

    def __init__(self) -> None:
        self.sent = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, _request: httpx.Request) -> httpx.Response:
        self.sent.set()
        await self.release.wait()
        return httpx.Response(200, json=TOKEN)
