"""One worker of a fleet (started by ``test_fleet_runs.py`` as its own process): runs
maps through a client whose runs are limited by ``RedisRunLimits``, and prints one JSON
line: how many runs succeeded, and the errors of the others.

Argument: a JSON object with ``api_url``, ``redis_url``, ``prefix``, ``lease_ttl``,
``max_concurrent_runs``, ``pool`` (the pool timeout) and ``jobs``: a list of
``{"email", "password", "company_id", "map_key", "tags", "rows"}``, one run per tag
(variable ``GBL_TAG``, or a row with ``AccountNumber`` = tag when ``rows``), all at once.
With ``reads`` (default 0), each job also lists its company's maps that many times, and
with ``shared_tokens`` the tokens are kept in a ``RedisTokenStore`` of the same Redis.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from smartconnect_async import Credentials, SmartConnect, Timeout
from smartconnect_async.redis_runs import RedisRunLimits
from smartconnect_async.redis_tokens import RedisTokenStore


async def main(plan: dict[str, Any]) -> dict[str, Any]:
    outcome: dict[str, Any] = {"ok": 0, "errors": []}
    limits = RedisRunLimits(plan["redis_url"], prefix=plan["prefix"], lease_ttl=plan["lease_ttl"])
    tokens = None
    if plan.get("shared_tokens"):
        tokens = RedisTokenStore(plan["redis_url"], prefix=plan["prefix"])
    first = plan["jobs"][0]
    async with (
        limits,
        SmartConnect(
            plan["api_url"],
            Credentials(first["email"], first["password"], first["company_id"]),
            timeout=Timeout(30, pool=plan["pool"]),
            max_retries=0,
            max_concurrent_runs=plan["max_concurrent_runs"],
            run_limits=limits,
            token_store=tokens,
        ) as sc,
    ):

        async def run(job: dict[str, Any], client: SmartConnect, tag: str) -> None:
            try:
                if job["rows"]:
                    await client.runs.run_data_table(job["map_key"], [{"AccountNumber": tag}])
                else:
                    await client.runs.run(job["map_key"], {"GBL_TAG": tag})
            except Exception as error:  # reported, not raised: the test judges
                outcome["errors"].append(f"{tag}: {type(error).__name__}: {error}")
            else:
                outcome["ok"] += 1

        async def read(client: SmartConnect, count: int) -> None:
            for _ in range(count):
                assert await client.maps.list()
            outcome["reads"] = outcome.get("reads", 0) + count

        async with anyio.create_task_group() as group:
            for job in plan["jobs"]:
                client = sc.with_credentials(
                    Credentials(job["email"], job["password"], job["company_id"])
                )
                for tag in job["tags"]:
                    group.start_soon(run, job, client, tag)
                group.start_soon(read, client, plan.get("reads", 0))
    if tokens is not None:
        await tokens.aclose()
    return outcome


if __name__ == "__main__":
    print(json.dumps(anyio.run(main, json.loads(sys.argv[1]))), flush=True)
