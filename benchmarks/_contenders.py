"""The clients measured side by side: the library (per backend) and the same calls
written directly with httpx or aiohttp ("raw": token obtained once, then POST + JSON
decode, nothing else)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import aiohttp
import httpx

from smartconnect_async import Credentials, SmartConnect, hash_password
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY

from ._serve import bench_map_key

Operation = Literal["runs.run", "maps.list"]
OPERATIONS: tuple[Operation, ...] = ("runs.run", "maps.list")

LIBRARY_DEFAULT = "library (default)"
LIBRARY_AIOHTTP = "library (aiohttp)"
LIBRARY_HTTPX = "library (httpx)"
RAW_AIOHTTP = "raw aiohttp"
RAW_HTTPX = "raw httpx"
CONTENDERS = (LIBRARY_DEFAULT, LIBRARY_AIOHTTP, LIBRARY_HTTPX, RAW_AIOHTTP, RAW_HTTPX)
"""Every contender of the per-call benchmarks; ``RAW_AIOHTTP`` is the reference."""

LIBRARY_MEMORY_TOKENS = "library (MemoryTokenStore)"
LIBRARY_REDIS_TOKENS = "library (RedisTokenStore)"
"""The default client with its tokens in memory or in Redis (the fleet benchmark)."""

RUNS_CAP = 4
"""The default ``max_concurrent_runs``."""

RAW_AIOHTTP_RUNS_CAPPED = f"raw aiohttp ({RUNS_CAP} runs in flight)"
"""Raw aiohttp holding at most ``RUNS_CAP`` runs in flight, as the library's default
does for one company: how much of the library's CPU per run the cap costs by itself."""


def contender_order(name: str) -> tuple[int, str]:
    """Sort key for reports: the order of ``CONTENDERS``, then any others by name."""
    return (CONTENDERS.index(name) if name in CONTENDERS else len(CONTENDERS), name)


RUN_MAP_KEY = IMPORT_CUSTOMERS_KEY
"""The map ``runs.run`` runs: DEMO01's Import Customers, whose source the benchmark
server sizes to one row, so the run answer is small."""

_ACCEPT_JSON = {"Accept": "application/json"}
_WIRE = {"runs.run": "runmap", "maps.list": "GetMapList"}


class Contender(Protocol):
    """One client making one kind of call."""

    name: str
    operation: Operation
    tokens: int
    """GetToken calls ``start`` makes (one per company)."""

    async def start(self) -> None:
        """Make the client and obtain its token."""

    async def call(self) -> None:
        """One call, its answer decoded."""

    async def close(self) -> None:
        """Close the client."""


def wire_endpoint(operation: Operation) -> str:
    """The endpoint an operation calls (as the emulator's counters name it)."""
    return _WIRE[operation]


class LibraryContender:
    """``SmartConnect`` with the default configuration (or one named option changed).

    With ``spread``, its calls go to those companies in turn (one client each, made with
    ``with_credentials``: one pool, one token cache) instead of DEMO01 alone; runs run
    each company's "Import Customers" map.
    """

    def __init__(
        self,
        name: str,
        api_url: str,
        credentials: Credentials,
        operation: Operation,
        options: Mapping[str, Any] | None = None,
        spread: Sequence[Credentials] = (),
    ) -> None:
        self.name = name
        self.operation = operation
        self._api_url = api_url
        self._logins = tuple(spread) or (credentials,)
        self.tokens = len(self._logins)
        self._options = dict(options or {})
        self._clients: list[tuple[SmartConnect, str]] = []
        self._turn = 0

    async def start(self) -> None:
        root = SmartConnect(self._api_url, self._logins[0], **self._options)
        clients = [root, *(root.with_credentials(c) for c in self._logins[1:])]
        for client, login in zip(clients, self._logins, strict=True):
            await client.auth.get_token()
            key = RUN_MAP_KEY if login.company_id == "DEMO01" else bench_map_key(login.company_id)
            self._clients.append((client, key))

    async def call(self) -> None:
        client, map_key = self._clients[self._turn % len(self._clients)]
        self._turn += 1
        if self.operation == "runs.run":
            await client.runs.run(map_key)
        else:
            await client.maps.list()

    async def close(self) -> None:
        if self._clients:
            await self._clients[0][0].aclose()  # the root client: the shared pool


def _token_params(credentials: Credentials) -> dict[str, str]:
    return {
        "email": credentials.email,
        "password": hash_password(credentials.password),
        "companyId": credentials.company_id,
    }


class _Raw:
    def __init__(
        self, name: str, api_url: str, credentials: Credentials, operation: Operation
    ) -> None:
        self.name = name
        self.operation = operation
        self.tokens = 1
        self._api_url = api_url
        self._credentials = credentials
        self._url = f"{api_url}/{wire_endpoint(operation)}"
        self._params: dict[str, str] = {}

    def _set_token(self, token: object) -> None:
        if not isinstance(token, str):
            raise RuntimeError(f"GetToken answered {token!r}")
        self._params = {"token": token}
        if self.operation == "runs.run":
            self._params["mapKey"] = RUN_MAP_KEY


class RawAiohttp(_Raw):
    """``aiohttp.ClientSession`` with its defaults."""

    _session: aiohttp.ClientSession

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        url = f"{self._api_url}/GetToken"
        async with self._session.post(url, params=_token_params(self._credentials)) as answer:
            answer.raise_for_status()
            self._set_token(json.loads(await answer.read()))

    async def call(self) -> None:
        async with self._session.post(self._url, params=self._params, headers=_ACCEPT_JSON) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            json.loads(body)

    async def close(self) -> None:
        await self._session.close()


class RawAiohttpCapped(RawAiohttp):
    """``RawAiohttp`` with at most ``limit`` calls in flight (an ``asyncio.Semaphore``)."""

    def __init__(
        self, name: str, api_url: str, credentials: Credentials, operation: Operation, limit: int
    ) -> None:
        super().__init__(name, api_url, credentials, operation)
        self._limit = limit

    async def start(self) -> None:
        self._in_flight = asyncio.Semaphore(self._limit)
        await super().start()

    async def call(self) -> None:
        async with self._in_flight:
            await super().call()


class RawHttpx(_Raw):
    """``httpx.AsyncClient`` with its defaults."""

    _client: httpx.AsyncClient

    async def start(self) -> None:
        self._client = httpx.AsyncClient()
        url = f"{self._api_url}/GetToken"
        answer = await self._client.post(url, params=_token_params(self._credentials))
        answer.raise_for_status()
        self._set_token(json.loads(answer.content))

    async def call(self) -> None:
        r = await self._client.post(self._url, params=self._params, headers=_ACCEPT_JSON)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.content[:200]!r}")
        json.loads(r.content)

    async def close(self) -> None:
        await self._client.aclose()


def make(
    name: str,
    api_url: str,
    credentials: Credentials,
    operation: Operation,
    options: Mapping[str, Any] | None = None,
) -> Contender:
    """The contender called ``name`` (one of ``CONTENDERS``)."""
    if name == RAW_AIOHTTP:
        return RawAiohttp(name, api_url, credentials, operation)
    if name == RAW_HTTPX:
        return RawHttpx(name, api_url, credentials, operation)
    if name == RAW_AIOHTTP_RUNS_CAPPED:
        return RawAiohttpCapped(name, api_url, credentials, operation, RUNS_CAP)
    backend = {LIBRARY_AIOHTTP: "aiohttp", LIBRARY_HTTPX: "httpx"}.get(name)
    settings = dict(options or {})
    if backend is not None:
        settings["backend"] = backend
    elif name != LIBRARY_DEFAULT and not settings:
        raise ValueError(f"unknown contender {name!r}")
    return LibraryContender(name, api_url, credentials, operation, settings)
