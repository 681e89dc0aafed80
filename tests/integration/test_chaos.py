"""Chaos: thousands of mixed reads and runs for three companies at once, through a
server that drops, truncates, refuses and delays a share of every call. Every operation
must end in a correct result or a typed error, no run may execute twice (checked against
the server's own run history), each company gets one token, the pool ends idle, and no
secret reaches any log record."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import anyio
import attrs
import pytest
from integration_support import (
    MakeClient,
    PoolIdle,
    capture_logs,
    credentials_of,
    demo,
    frame_locals,
    password_secrets,
    secret_forms,
    source_rows,
)

from smartconnect_async import (
    DataSet,
    MapInfo,
    RunOutcomeUnknown,
    RunResult,
    SmartConnect,
    SmartConnectError,
)
from smartconnect_async.emulator import DEMO_CREDENTIALS, IMPORT_CUSTOMERS_KEY, Emulator

pytestmark = pytest.mark.anyio

FAULTED = [
    "GetMapList",
    "GetMapColumns",
    "GetAllData",
    "GetAllDataWithVariables",
    "runmap",
    "RunMapWithVariables",
    "runmapdatatable",
    "runmapxml",
]
# No fault on GetToken: each company must then get exactly one token.
CHAOS_FAULTS = [
    {"kind": "latency", "ms": 1, "jitter_ms": 3, "share": 0.2, "endpoints": FAULTED},
    {"kind": "drop_before", "share": 0.03, "endpoints": FAULTED},
    {"kind": "drop_after", "share": 0.03, "endpoints": FAULTED},
    {"kind": "truncate", "share": 0.03, "endpoints": FAULTED},
    {"kind": "status", "status": 429, "retry_after": 0, "share": 0.03, "endpoints": FAULTED},
    {"kind": "status", "status": 500, "share": 0.03, "endpoints": FAULTED},
    {"kind": "status", "status": 503, "share": 0.03, "endpoints": FAULTED},
]
SIZES = {
    "Customers": 25,
    "GL Journal": 20,
    "Items": 10,
    "Vendors": 10,
    "Sales Orders": 5,
    "Cash Receipts": 5,
}


@attrs.frozen
class Company:
    client: SmartConnect
    company_id: str
    map_key: str  # a map of the company with a small source
    key_column: str  # a required column of it, which carries each run's tag


@attrs.define
class Op:
    index: int
    kind: str
    company: str
    tag: str
    outcome: Any = None


def _companies(base: SmartConnect, emulator: Emulator) -> list[Company]:
    bob = base.with_credentials(credentials_of(demo("DEMO02", "bob")))
    carol = base.with_credentials(credentials_of(demo("DEMO03")))

    def key(company: str, map_id: str) -> str:
        return next(
            m.key for m in emulator.maps.values() if m.company_id == company and m.map_id == map_id
        )

    return [
        Company(base, "DEMO01", IMPORT_CUSTOMERS_KEY, "AccountNumber"),
        Company(bob, "DEMO02", key("DEMO02", "Import Customers"), "AccountNumber"),
        Company(carol, "DEMO03", key("DEMO03", "Import GL Journal"), "JournalEntry"),
    ]


KINDS = (
    "get_all",
    "get_all",
    "iter_rows",
    "columns_by_name",
    "map_list",
    "get_all_variables",
    "run_data_table",
    "run_data_table",
    "run_variables",
    "run_xml",
)


async def _operate(op: Op, company: Company) -> Any:
    sc = company.client
    if op.kind == "get_all":
        return await sc.data.get_all(company.map_key)
    if op.kind == "iter_rows":
        async with sc.data.iter_rows(company.map_key) as stream:
            return [row async for row in stream]
    if op.kind == "columns_by_name":
        map_id = "Import GL Journal" if company.company_id == "DEMO03" else "Import Customers"
        return await sc.maps.columns(map_id)
    if op.kind == "map_list":
        return await sc.maps.list()
    if op.kind == "get_all_variables":
        return await sc.data.get_all(company.map_key, {"GBL_OPID": op.tag})
    row = {company.key_column: op.tag, "AccountNumber": op.tag, "AccountName": "Chaos & Co"}
    if op.kind == "run_data_table":
        return await sc.runs.run_data_table(company.map_key, [row])
    if op.kind == "run_xml":
        return await sc.runs.run_xml(company.map_key, [row])
    assert op.kind == "run_variables"
    return await sc.runs.run(company.map_key, {"GBL_OPID": op.tag})


def _check_read(op: Op, company: Company, emulator: Emulator) -> None:
    outcome = op.outcome
    truth = source_rows(emulator, company.map_key)
    if op.kind in ("get_all", "get_all_variables"):
        assert isinstance(outcome, DataSet)
        assert outcome.rows == truth
    elif op.kind == "iter_rows":
        assert [{c: r.get(c) for c in truth[0]} for r in outcome] == truth
    elif op.kind == "columns_by_name":
        map_def = emulator.maps[company.map_key]
        assert [(c.name, c.required) for c in outcome] == [
            (c.name, c.required) for c in map_def.columns
        ]
    else:
        assert outcome == [
            MapInfo(m.key, m.map_id, m.description)
            for m in emulator.maps.values()
            if m.company_id == company.company_id and not m.realtime
        ]


def _run_tag(record: Any) -> str:
    if record.variables.get("GBL_OPID"):
        return str(record.variables["GBL_OPID"])
    document = record.documents[0]
    return str(document.get("JournalEntry") or document.get("AccountNumber"))


async def _chaos(
    make_client: MakeClient,
    emulator: Emulator,
    assert_pool_idle: PoolIdle,
    operations: int,
    concurrency: int,
) -> None:
    base = make_client(max_connections=64, max_retries=2, timeout=20)
    companies = _companies(base, emulator)
    by_id = {c.company_id: c for c in companies}
    ops = [
        Op(i, KINDS[i % len(KINDS)], companies[(i // len(KINDS)) % 3].company_id, f"OP{i:05d}")
        for i in range(operations)
    ]
    emulator.set_faults(CHAOS_FAULTS)
    pending = iter(ops)

    async def worker() -> None:
        for op in pending:
            try:
                op.outcome = await _operate(op, by_id[op.company])
            except Exception as exc:  # typed or not: recorded, then judged below
                op.outcome = exc

    names = ("smartconnect_async", "httpx", "httpcore", "aiohttp", "uvicorn")
    with capture_logs(*names) as logs:
        with anyio.fail_after(150):
            async with anyio.create_task_group() as group:
                for _ in range(concurrency):
                    group.start_soon(worker)
        emulator.clear_faults()
        await assert_pool_idle(base)

    # Every operation is accounted for: a result, or an error of the library's tree.
    assert all(op.outcome is not None for op in ops)
    untyped = [op for op in ops if isinstance(op.outcome, Exception)]
    untyped = [op for op in untyped if not isinstance(op.outcome, SmartConnectError)]
    assert not untyped, f"untyped errors: {[repr(op.outcome) for op in untyped[:5]]}"

    # Reads: correct whenever they succeeded.
    for op in ops:
        if not op.kind.startswith("run") and not isinstance(op.outcome, Exception):
            _check_read(op, by_id[op.company], emulator)

    # Runs: compare what the client saw with what the server executed.
    executed: dict[str, list[Any]] = {}
    for record in emulator.runs:
        executed.setdefault(_run_tag(record), []).append(record)
    run_ops = {op.tag: op for op in ops if op.kind.startswith("run")}
    assert set(executed) <= set(run_ops), "the server ran something nobody asked for"
    for tag, op in run_ops.items():
        records = executed.get(tag, [])
        if isinstance(op.outcome, RunResult):
            assert len(records) == 1, f"{tag}: {len(records)} executions for one result"
            assert records[0].run_number == op.outcome.run_number
            assert records[0].company_id == op.company
        elif isinstance(op.outcome, RunOutcomeUnknown):
            assert len(records) <= 1, f"{tag}: executed {len(records)} times"
        else:  # refused before processing: connection refused, 429, 503
            assert not records, f"{tag}: {op.outcome!r} but executed {len(records)} times"

    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 1, "DEMO02": 1, "DEMO03": 1}
    fired = counters.faults_fired
    assert sum(fired.values()) > operations * 0.15, fired  # the chaos did happen
    outcomes = Counter(type(op.outcome).__name__ for op in ops)
    assert outcomes["RunResult"] > operations * 0.3, outcomes
    assert outcomes["RunOutcomeUnknown"] > 0, outcomes

    # No secret in any log record (message, arguments or traceback).
    secrets = [*emulator.tokens, *password_secrets(DEMO_CREDENTIALS)]
    forms = secret_forms(secrets)
    assert len(logs.texts) > operations  # DEBUG logging was really captured
    leaks = [text for text in logs.texts if any(form in text for form in forms)]
    assert not leaks, leaks[:3]
    errors = [str(op.outcome) for op in ops if isinstance(op.outcome, Exception)]
    assert not [e for e in errors if any(form in e for form in forms)]
    # Nor in any frame's local variables, as error trackers show them.
    shown = [frame_locals(op.outcome) for op in ops if isinstance(op.outcome, Exception)]
    assert any("secrets = Secrets(<" in text for text in shown)  # the locals were captured
    assert not [text for text in shown if any(form in text for form in forms)]
    assert any(r.levelno == logging.WARNING and "retrying" in r.getMessage() for r in logs.records)


@pytest.mark.combos(("httpx", "asyncio"), ("aiohttp", "asyncio"))
@pytest.mark.emulator(rows=SIZES, seed=11)
async def test_chaos_5000_operations(
    make_client: MakeClient, emulator: Emulator, assert_pool_idle: PoolIdle
) -> None:
    await _chaos(make_client, emulator, assert_pool_idle, operations=5000, concurrency=64)


@pytest.mark.combos(("httpx", "trio"))
@pytest.mark.emulator(rows=SIZES, seed=12)
async def test_chaos_on_trio(
    make_client: MakeClient, emulator: Emulator, assert_pool_idle: PoolIdle
) -> None:
    await _chaos(make_client, emulator, assert_pool_idle, operations=1200, concurrency=64)
