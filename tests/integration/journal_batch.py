"""A journaled batch in a process of its own, for the crash test: ``python journal_batch.py
API_URL JOURNAL COUNT CONCURRENCY`` runs ``batch_items(COUNT)`` with ``resume=True`` and
prints one line per finished run (``done INDEX``), flushed, then ``finished``. JOURNAL is
a file (SqliteJournal) or a ``redis://`` URL (RedisJournal)."""

from __future__ import annotations

import sys

import anyio

from smartconnect_async import (
    Credentials,
    RedisJournal,
    RunJournal,
    RunRequest,
    SmartConnect,
    SqliteJournal,
)
from smartconnect_async.emulator import DEMO_CREDENTIALS, IMPORT_CUSTOMERS_KEY

PREFIX = "crash-test"


def batch_items(count: int) -> list[RunRequest]:
    """``count`` distinct runs: one map, a variable that numbers them."""
    return [
        RunRequest(IMPORT_CUSTOMERS_KEY, variables={"GBL_BATCH_ITEM": str(index)})
        for index in range(count)
    ]


def open_journal(where: str) -> RunJournal:
    if where.startswith("redis://"):
        return RedisJournal(where, prefix=PREFIX)
    return SqliteJournal(where)


async def main(api_url: str, where: str, count: int, concurrency: int) -> None:
    login = next(c for c in DEMO_CREDENTIALS if c.company_id == "DEMO01")
    credentials = Credentials(email=login.email, password=login.password, company_id="DEMO01")
    journal = open_journal(where)

    def report(index: int, item: object, outcome: object) -> None:
        print(f"done {index}", flush=True)

    async with SmartConnect(
        api_url, credentials, timeout=3600, max_concurrent_runs=concurrency
    ) as sc:
        await sc.runs.run_many(
            batch_items(count),
            concurrency=concurrency,
            journal=journal,
            resume=True,
            on_result=report,
        )
    await journal.aclose()
    print("finished", flush=True)


if __name__ == "__main__":
    url, journal_at, how_many, at_once = sys.argv[1:]
    anyio.run(main, url, journal_at, int(how_many), int(at_once))
