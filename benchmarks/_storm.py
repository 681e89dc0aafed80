"""Cold storm: many concurrent calls for several companies on a client with no token
yet. Each company must get exactly one GetToken, and the first answers must come about
as soon as a single cold call's."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import attrs

from smartconnect_async import Credentials, SmartConnect, hash_password

from ._contenders import LIBRARY_AIOHTTP, LIBRARY_DEFAULT, LIBRARY_HTTPX, RAW_AIOHTTP
from ._plan import Plan
from ._server import Emulator, emulator
from ._stats import Checks, log, rotated, rounds

BACKENDS: dict[str, dict[str, Any]] = {
    LIBRARY_DEFAULT: {},
    LIBRARY_AIOHTTP: {"backend": "aiohttp"},
    LIBRARY_HTTPX: {"backend": "httpx"},
    RAW_AIOHTTP: {},
}
"""The storm's contenders: the library per backend, and the reference written directly
with aiohttp (one GetToken per company shared by its calls through a future)."""


@attrs.frozen
class StormSample:
    """One round for one client: a single cold call, then the storm."""

    contender: str
    round: int
    companies: int
    calls: int
    single: float
    """Seconds for one ``maps.list`` on a new client (GetToken included)."""
    first_answer: float
    """Seconds until the storm's first answer."""
    first_per_company: float
    """Seconds until every company had its first answer."""
    all_answers: float
    errors: int
    token_calls: int
    token_calls_max_per_company: int


class _RawClient:
    """The storm written directly with aiohttp: one session, and per company one
    GetToken whose future all of that company's calls await."""

    def __init__(self, api_url: str, logins: Sequence[Credentials]) -> None:
        self._api_url = api_url
        self._logins = logins
        self._session = aiohttp.ClientSession()
        self._tokens: dict[int, asyncio.Future[str]] = {}

    async def _fetch_token(self, login: Credentials) -> str:
        params = {
            "email": login.email,
            "password": hash_password(login.password),
            "companyId": login.company_id,
        }
        async with self._session.post(f"{self._api_url}/GetToken", params=params) as answer:
            answer.raise_for_status()
            token: str = json.loads(await answer.read())
            return token

    async def list_maps(self, company: int) -> None:
        if company not in self._tokens:
            self._tokens[company] = asyncio.ensure_future(self._fetch_token(self._logins[company]))
        token = await self._tokens[company]
        url = f"{self._api_url}/GetMapList"
        headers = {"Accept": "application/json"}
        async with self._session.post(url, params={"token": token}, headers=headers) as answer:
            answer.raise_for_status()
            json.loads(await answer.read())

    async def aclose(self) -> None:
        await self._session.close()


async def _single(api_url: str, credentials: Credentials, name: str) -> float:
    if name == RAW_AIOHTTP:
        start = time.perf_counter()
        raw = _RawClient(api_url, [credentials])
        try:
            await raw.list_maps(0)
            return time.perf_counter() - start
        finally:
            await raw.aclose()
    options = BACKENDS[name]
    start = time.perf_counter()
    client = SmartConnect(api_url, credentials, **options)
    try:
        await client.maps.list()
        return time.perf_counter() - start
    finally:
        await client.aclose()


async def _storm(
    api_url: str, logins: Sequence[Credentials], calls: int, name: str
) -> tuple[float, float, float, int]:
    firsts: dict[int, float] = {}
    start = time.perf_counter()
    list_maps: Callable[[int], Awaitable[object]]
    if name == RAW_AIOHTTP:
        raw = _RawClient(api_url, logins)
        list_maps, aclose = raw.list_maps, raw.aclose
    else:
        root = SmartConnect(api_url, logins[0], **BACKENDS[name])
        clients = [root, *(root.with_credentials(c) for c in logins[1:])]
        # Each call's own coroutine, as the raw client's: no coroutine of the harness's.
        list_maps, aclose = (lambda company: clients[company].maps.list()), root.aclose

    async def one(index: int) -> None:
        company = index % len(logins)
        await list_maps(company)
        firsts.setdefault(company, time.perf_counter() - start)

    try:
        outcomes = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        total = time.perf_counter() - start
    finally:
        await aclose()
    errors = sum(isinstance(o, BaseException) for o in outcomes)
    first_each = max(firsts.values()) if len(firsts) == len(logins) else float("nan")
    return min(firsts.values(), default=float("nan")), first_each, total, errors


def _one_round(server: Emulator, name: str, turn: int, plan: Plan, checks: Checks) -> StormSample:
    logins = server.companies[: plan.storm_companies]
    gc.collect()  # as before every measured batch: earlier garbage is not this round's
    single = asyncio.run(_single(server.api_url, logins[0], name))
    server.reset_counters()
    gc.collect()
    first, first_each, total, errors = asyncio.run(
        _storm(server.api_url, logins, plan.storm_calls, name)
    )
    counters = server.counters()
    tokens = counters["token_calls"]
    what = f"storm {name} round {turn + 1}"
    checks.equal(f"{what}: GetToken calls", counters["calls"].get("GetToken", 0), len(logins))
    checks.equal(
        f"{what}: one GetToken per company",
        {c.company_id: tokens.get(c.company_id, 0) for c in logins},
        {c.company_id: 1 for c in logins},
    )
    checks.equal(
        f"{what}: GetMapList calls", counters["calls"].get("GetMapList", 0), plan.storm_calls
    )
    checks.equal(f"{what}: errors", errors, 0)
    return StormSample(
        contender=name,
        round=turn,
        companies=len(logins),
        calls=plan.storm_calls,
        single=single,
        first_answer=first,
        first_per_company=first_each,
        all_answers=total,
        errors=errors,
        token_calls=sum(tokens.values()),
        token_calls_max_per_company=max(tokens.values(), default=0),
    )


def run_storm(plan: Plan, checks: Checks) -> list[StormSample]:
    """Rounds of (single cold call, cold storm) per backend, on the latency server."""
    samples = []
    with emulator(latency_ms=plan.latency_ms, rows="1", companies=plan.storm_companies) as server:
        names = list(BACKENDS)
        for name in names:  # first-use costs (imports, SSL contexts) are not a round's
            asyncio.run(_single(server.api_url, server.companies[0], name))
        for turn in rounds(plan.rounds, plan.budget, "storm"):
            for name in rotated(names, turn):
                samples.append(_one_round(server, name, turn, plan, checks))
        log("  storm: done")
    return samples
