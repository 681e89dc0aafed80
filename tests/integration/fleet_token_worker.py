"""One process of a fleet, for ``test_fleet_tokens.py``: clients for some companies over a
shared ``RedisTokenStore``, started together with the other processes.

    python fleet_token_worker.py API_URL REDIS_URL PREFIX LOCK_TTL CALLS EMAIL:PASSWORD:COMPANY ...

Prints ``ready`` once set up (imports done, clients made), waits for a line on stdin,
then makes CALLS ``maps.list`` calls per company (10 callers each, all starting cold) and
prints one JSON line: seconds from the go to each company's first answer, and the calls.
"""

from __future__ import annotations

import json
import sys
import time

import anyio

from smartconnect_async import Credentials, SmartConnect
from smartconnect_async.redis_tokens import RedisTokenStore

CALLERS = 10


async def main(argv: list[str]) -> None:
    api_url, redis_url, prefix, lock_ttl, calls, *logins = argv
    store = RedisTokenStore(redis_url, prefix=prefix, lock_ttl=float(lock_ttl))
    clients = {}
    for login in logins:
        email, rest = login.split(":", 1)
        password, company = rest.rsplit(":", 1)
        credentials = Credentials(email=email, password=password, company_id=company)
        clients[company] = SmartConnect(api_url, credentials, token_store=store, timeout=10)
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.readline)
    go = time.monotonic()
    first: dict[str, float] = {}
    done = {company: 0 for company in clients}

    async def caller(company: str, client: SmartConnect, count: int) -> None:
        for _ in range(count):
            assert await client.maps.list()
            first.setdefault(company, time.monotonic() - go)
            done[company] += 1

    async with anyio.create_task_group() as tg:
        for company, client in clients.items():
            share, extra = divmod(int(calls), CALLERS)
            for i in range(CALLERS):
                tg.start_soon(caller, company, client, share + (i < extra))
    for client in clients.values():
        await client.aclose()
    await store.aclose()
    print(json.dumps({"first": first, "calls": done}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
