"""The run journal: its state machine through ``run_many`` (SqliteJournal and RedisJournal
against a real redis-server), resuming, resolving, and a batch of 500 runs killed with
SIGKILL half-way, then resumed: every run executed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from integration_support import MakeClient, credentials_of, demo
from journal_batch import PREFIX, batch_items, open_journal

from smartconnect_async import (
    JournalConflict,
    NotFoundError,
    RedisJournal,
    RunJournal,
    RunNeedsResolution,
    RunOutcomeUnknown,
    RunRequest,
    RunResult,
    SmartConnect,
    SqliteJournal,
)
from smartconnect_async._journaled import plan
from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    Emulator,
    _connections,
    create_app,
    serve,
)
from smartconnect_async.journal import JournalRecord, now

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.emulator(rows=5),
    pytest.mark.combos(("httpx", "asyncio"), ("aiohttp", "asyncio")),
]

SCRIPT = Path(__file__).with_name("journal_batch.py")
NO_SUCH_MAP = "00000000-0000-4000-8000-000000000000"


def _vars(index: int) -> dict[str, str]:
    return {"GBL_BATCH_ITEM": str(index)}


def _executed(emulator: Emulator) -> Counter[str]:
    """Runs the emulator executed, per ``GBL_BATCH_ITEM``."""
    return Counter(str(run.variables.get("GBL_BATCH_ITEM")) for run in emulator.runs)


@pytest.fixture(params=["sqlite", "redis"])
async def journal(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[RunJournal]:
    made: RunJournal
    if request.param == "sqlite":
        made = SqliteJournal(tmp_path / "journal.db")
    else:
        made = RedisJournal(redis_url, prefix=f"journal-test:{uuid.uuid4()}")
    yield made
    await made.aclose()


# ---- the state machine ---------------------------------------------------------------


async def test_outcomes_are_recorded_and_a_resume_sends_nothing_twice(
    make_client: MakeClient, emulator: Emulator, journal: RunJournal
) -> None:
    sc = make_client()
    emulator.set_faults([{"kind": "drop_after", "endpoints": ["runmap"], "count": 1}])
    items = [
        RunRequest(IMPORT_CUSTOMERS_KEY, variables=_vars(1)),
        RunRequest(IMPORT_CUSTOMERS_KEY, variables=_vars(2), key="second"),
        "Import Items",  # runmap: dropped after it ran, the outcome is unknown
        NO_SUCH_MAP,  # 404: provably not processed
    ]
    first = await sc.runs.run_many(items, concurrency=1, journal=journal)
    assert [type(o) for o in first] == [RunResult, RunResult, RunOutcomeUnknown, NotFoundError]
    records = {r.key: r for r in await journal.records()}
    assert len(records) == 4
    keys = [key for key in records]
    assert "second" in keys
    states = [r.state for r in records.values()]
    assert states == ["done", "done", "unknown", "not-sent"]
    assert [r.attempts for r in records.values()] == [1, 1, 1, 1]
    done = records["second"]
    assert isinstance(first[1], RunResult)
    assert (done.run_number, done.status, done.ok) == (first[1].run_number, 0, True)
    assert done.map_key == IMPORT_CUSTOMERS_KEY
    assert records[keys[3]].error == "NotFoundError (HTTP 404)"
    assert records[keys[2]].error == "RunOutcomeUnknown"
    assert [r.key for r in await journal.records(unresolved=True)] == [keys[2]]
    assert emulator.counters.total_runs == 3

    with pytest.raises(JournalConflict) as conflict:
        await sc.runs.run_many(items, journal=journal)
    assert conflict.value.keys == tuple(keys)
    assert emulator.counters.calls["RunMapWithVariables"] == 2  # nothing sent

    calls = dict(emulator.counters.calls)
    again = await sc.runs.run_many(items, concurrency=1, journal=journal, resume=True)
    recorded = again[1]
    assert isinstance(recorded, RunResult)
    assert recorded == first[1]  # rebuilt from the journal: run number, status, counts
    assert recorded.raw["Journal"]["key"] == "second"
    assert isinstance(again[2], RunNeedsResolution)
    assert (again[2].key, again[2].state) == (keys[2], "unknown")
    assert isinstance(again[3], NotFoundError)  # not sent before: sent again
    assert emulator.counters.calls["RunMapWithVariables"] == calls["RunMapWithVariables"]
    assert emulator.counters.calls["runmap"] == calls["runmap"] + 1  # the 404 only
    assert emulator.counters.total_runs == 3
    assert (await journal.get(keys[3])).attempts == 2  # type: ignore[union-attr]

    run_number = emulator.runs[2].run_number
    resolved = await journal.resolve(keys[2], "ran", run_number=run_number)
    assert (resolved.state, resolved.resolved, resolved.run_number) == ("done", "ran", run_number)
    last = await sc.runs.run_many(items, concurrency=1, journal=journal, resume=True)
    assert isinstance(last[2], RunResult)
    assert last[2].run_number == run_number
    assert emulator.counters.total_runs == 3


async def test_a_run_resolved_as_not_run_is_sent_once_by_the_next_resume(
    make_client: MakeClient, emulator: Emulator, journal: RunJournal
) -> None:
    sc = make_client()
    emulator.set_faults([{"kind": "status", "status": 500, "endpoints": ["runmap"], "count": 1}])
    [unknown] = await sc.runs.run_many(["Import Items"], journal=journal)
    assert isinstance(unknown, RunOutcomeUnknown)  # a 500: not processed, but who knows
    assert emulator.counters.total_runs == 0
    [record] = await journal.records(unresolved=True)

    with pytest.raises(ValueError, match="'ran' or 'not-run'"):
        await journal.resolve(record.key, "maybe")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        await journal.resolve("no such key", "not-run")
    resolved = await journal.resolve(record.key, "not-run")
    assert (resolved.state, resolved.resolved) == ("not-sent", "not-run")
    with pytest.raises(ValueError, match="needs no resolution"):
        await journal.resolve(record.key, "ran")

    for _ in range(2):  # sent by the first resume, recorded as done for the second
        [outcome] = await sc.runs.run_many(["Import Items"], journal=journal, resume=True)
        assert isinstance(outcome, RunResult)
        assert outcome.ok
    assert emulator.counters.total_runs == 1
    held = await journal.get(record.key)
    assert held is not None
    assert (held.state, held.attempts) == ("done", 2)


async def test_a_key_reused_for_another_run_is_a_conflict_not_the_old_result(
    make_client: MakeClient, emulator: Emulator, journal: RunJournal
) -> None:
    sc = make_client()
    march = RunRequest("Import Items", variables={"GBL_BATCH": "march"}, key="payroll")
    [done] = await sc.runs.run_many([march], journal=journal)
    assert isinstance(done, RunResult)
    april = RunRequest("Import Items", variables={"GBL_BATCH": "april"}, key="payroll")
    [refused] = await sc.runs.run_many([april], journal=journal, resume=True)
    assert isinstance(refused, JournalConflict)
    assert refused.keys == ("payroll",)
    assert "is another run" in str(refused)
    assert emulator.counters.total_runs == 1  # april was not sent, nor reported as done
    [again] = await sc.runs.run_many([march], journal=journal, resume=True)
    assert isinstance(again, RunResult)  # the same run: its recorded result
    assert again.run_number == done.run_number
    assert emulator.counters.total_runs == 1


async def test_a_run_left_sending_by_a_crash_is_refused(
    make_client: MakeClient, emulator: Emulator, journal: RunJournal
) -> None:
    sc = make_client()
    items = [RunRequest(IMPORT_CUSTOMERS_KEY, variables=_vars(7))]
    [entry] = plan(items, "DEMO01")
    at = now()
    crashed = JournalRecord(
        key=entry.key,
        company_id="DEMO01",
        map=entry.map,
        map_key=IMPORT_CUSTOMERS_KEY,
        digest=entry.digest,
        state="sending",
        created_at=at,
        updated_at=at,
    )
    assert await journal.begin(crashed) == (True, crashed)
    assert await journal.begin(crashed) == (False, crashed)  # atomic: one sender only
    [outcome] = await sc.runs.run_many(items, journal=journal, resume=True)
    assert isinstance(outcome, RunNeedsResolution)
    assert outcome.key == entry.key
    assert "may have reached the server" in str(outcome)
    assert emulator.counters.total_runs == 0


async def test_identity_of_items_and_no_secret_in_the_journal(
    make_client: MakeClient, emulator: Emulator, tmp_path: Path
) -> None:
    secret_value = "s3cret-variable-value"

    def batch() -> list[RunRequest]:
        return [
            RunRequest(IMPORT_CUSTOMERS_KEY, variables={"GBL_X": secret_value}),
            RunRequest(IMPORT_CUSTOMERS_KEY, variables={"GBL_X": secret_value}),
            RunRequest("Import Customers", rows=iter([{"AccountNumber": "ROW-SECRET"}])),
            RunRequest(IMPORT_CUSTOMERS_KEY, variables={"GBL_X": "other"}, company_id="DEMO02"),
        ]

    planned = plan(batch(), "DEMO01")
    keys = [p.key for p in planned]
    assert keys[0].endswith(":0")
    assert keys[1].endswith(":1")
    assert keys[0].rsplit(":", 1)[0] == keys[1].rsplit(":", 1)[0]
    assert planned[0].digest == planned[1].digest != planned[3].digest
    assert planned[3].company_id == "DEMO02"
    assert [p.key for p in plan(batch(), "DEMO01")] == keys  # the same batch, the same keys
    assert planned[2].item.rows == [{"AccountNumber": "ROW-SECRET"}]  # read once
    with pytest.raises(ValueError, match="two runs of the batch have the key 'k'"):
        plan([RunRequest("A", key="k"), RunRequest("B", key="k")], "DEMO01")

    sc = make_client()
    path = tmp_path / "journal.db"
    async with SqliteJournal(path) as journal:
        outcomes = await sc.runs.run_many(batch()[:3], journal=journal)
    assert all(isinstance(o, RunResult) and o.ok for o in outcomes)
    stored = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()))  # noqa: ASYNC240
    for secret in (secret_value, "ROW-SECRET", *emulator.tokens, demo("DEMO01").password):
        assert secret.encode() not in stored


# ---- the crash test ------------------------------------------------------------------


def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition on the emulator, which runs in another thread (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _no_connection_to(api_url: str) -> bool:
    port = int(api_url.rsplit(":", 1)[1].split("/")[0])
    with _connections._lock:
        return not any(server[1] == port for server, _ in _connections._transports)


def _resume(api_url: str, where: str, count: int) -> list[RunResult | Exception]:
    """The batch resumed in this process, with a journal of its own."""

    async def main() -> list[RunResult | Exception]:
        journal = open_journal(where)
        async with SmartConnect(api_url, credentials_of(demo("DEMO01")), timeout=10) as sc:
            outcomes = await sc.runs.run_many(
                batch_items(count), concurrency=16, journal=journal, resume=True
            )
        await journal.aclose()
        return outcomes

    return anyio.run(main)


@pytest.fixture
def batch_server() -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator(rows=5)
    with serve(create_app(emulator)) as api_url:
        yield emulator, api_url


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_batch_killed_half_way_resumes_with_every_run_executed_once(
    store: str, batch_server: tuple[Emulator, str], tmp_path: Path, redis_url: str
) -> None:
    emulator, api_url = batch_server
    count = 500
    where = str(tmp_path / "journal.db") if store == "sqlite" else redis_url
    if store == "redis":
        anyio.run(_forget_redis_journal, redis_url)
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), api_url, where, str(count), "16"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for finished, _ in enumerate(process.stdout, start=1):
            if finished == count // 2:
                break
        # Half-way: the next run to arrive is held forever (its answer never comes).
        hold = {"kind": "latency", "endpoints": ["RunMapWithVariables"], "ms": 3_600_000}
        emulator.set_faults([{**hold, "count": 1}])
        _wait_until(lambda: emulator.fault_plan.to_json()[0]["remaining"] == 0)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    # The server finishes what reached it: every run that arrived has run, but the held one.
    _wait_until(lambda: _no_connection_to(api_url))
    _wait_until(
        lambda: emulator.counters.calls["RunMapWithVariables"] == emulator.counters.total_runs + 1
    )
    before = _executed(emulator)
    assert len(before) == sum(before.values()) < count  # none twice, some not yet

    outcomes = _resume(api_url, where, count)
    refused = {i: o for i, o in enumerate(outcomes) if isinstance(o, RunNeedsResolution)}
    assert refused  # the runs in flight at the kill, the held one among them
    assert {o.state for o in refused.values()} == {"sending"}
    held = [i for i in refused if before[str(i)] == 0]
    assert held  # the held run (and any cut off before its request was whole)
    executed = _executed(emulator)
    assert all(executed[str(i)] == before[str(i)] for i in refused)  # not re-sent
    for index, outcome in enumerate(outcomes):
        if index not in refused:
            assert isinstance(outcome, RunResult)
            assert outcome.ok
            assert executed[str(index)] == 1
    resent = sum(1 for o in outcomes if isinstance(o, RunResult) and "Journal" not in o.raw)
    assert resent == count - len(before) - len(held)

    async def resolve() -> None:
        journal = open_journal(where)
        for index, outcome in refused.items():
            await journal.resolve(outcome.key, "ran" if before[str(index)] else "not-run")
        await journal.aclose()

    anyio.run(resolve)
    final = _resume(api_url, where, count)
    assert all(isinstance(o, RunResult) for o in final)
    executed = _executed(emulator)
    assert set(executed) == {str(i) for i in range(count)}
    assert set(executed.values()) == {1}  # every run executed exactly once
    print(
        f"{store}: killed after {len(before)} of {count} runs executed; "
        f"{len(refused)} refused on resume ({len(held)} never ran), "
        f"{resent} sent by the resume, {len(held)} after resolution"
    )


async def _forget_redis_journal(redis_url: str) -> None:
    journal = RedisJournal(redis_url, prefix=PREFIX)
    for record in await journal.records():
        await journal._redis.delete(journal._name(record.key))
    await journal._redis.delete(journal._index)
    await journal.aclose()
