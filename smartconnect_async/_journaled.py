"""``run_many`` with a run journal: each item's identity, its record before it is sent and
its outcome after, and what a resumed batch does with the runs the journal holds.

An item's identity is its ``RunRequest.key``, else a key derived from its company, its
map (as given), the digest of its variables or rows, and its occurrence among identical
items, so that the same batch run again maps each item to the same record.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

from ._batch import gather_outcomes
from .exceptions import JournalConflict, RunNeedsResolution, RunOutcomeUnknown
from .journal import JournalRecord, RunJournal, now
from .maps import MapRef
from .models import MapInfo, RunRequest, RunResult, ValidationFailure

__all__ = ["Planned", "digest", "plan", "recorded_result", "run_journaled"]

Item = MapRef | RunRequest
SHOWN_KEYS = 5
"""Keys a ``JournalConflict`` message names."""


@attrs.frozen
class Planned:
    """One item of a journaled batch: as given (``original``), as sent (``item``: its rows
    read once, into a list) and its identity."""

    original: Item
    item: Item
    key: str
    company_id: str
    map: str
    digest: str


def _canonical(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def digest(item: Item) -> str:
    """``sha256:`` and the hex digest of what ``item`` sends: its variables, or its rows
    and the endpoint that takes them, in canonical JSON."""
    content: dict[str, Any] = {"variables": {}}
    if isinstance(item, RunRequest):
        if item.rows is not None:
            endpoint = "xml" if item.as_xml else "errors" if item.with_errors else "table"
            content = {"rows": [dict(row) for row in item.rows], "endpoint": endpoint}
        else:
            content = {"variables": dict(item.variables or {})}
    return "sha256:" + hashlib.sha256(_canonical(content)).hexdigest()


def _map_name(ref: object) -> str:
    if isinstance(ref, MapInfo):
        return ref.key
    if isinstance(ref, str) and ref.strip():
        return ref.strip()
    raise TypeError(f"a map is a MapInfo, a MapKey or a MapId, not {ref!r}")


def plan(items: Sequence[Item], company_id: str) -> list[Planned]:
    """The identity of every item (``company_id``: the client's company, for items that
    name none). ``ValueError`` if two items share a key."""
    planned: list[Planned] = []
    occurrences: Counter[tuple[str, str, str]] = Counter()
    for original in items:
        item, company, key = original, company_id, None
        if isinstance(original, RunRequest):
            if original.rows is not None:
                item = attrs.evolve(original, rows=list(original.rows))
            company, key = original.company_id or company_id, original.key
        ref = item.map if isinstance(item, RunRequest) else item
        name, sent = _map_name(ref), digest(item)
        if key is None:
            identity = (company, name, sent)
            occurrence = occurrences[identity]
            occurrences[identity] += 1
            key = f"auto:{hashlib.sha256(_canonical(identity)).hexdigest()[:24]}:{occurrence}"
        planned.append(Planned(original, item, key, company, name, sent))
    seen: set[str] = set()
    for entry in planned:
        if entry.key in seen:
            raise ValueError(f"two runs of the batch have the key {entry.key!r}")
        seen.add(entry.key)
    return planned


def recorded_result(record: JournalRecord) -> RunResult:
    """The ``RunResult`` of a run the journal records as done: its run number, status,
    counts, map and request id as recorded. The journal keeps no error rows or messages; a
    run recorded as failed with none of its counts showing it gets one validation error
    saying so, so that ``ok`` stays false. ``raw`` holds the record's fields under
    ``"Journal"``."""
    failed = record.ok is False and not record.status and not record.error_count
    note = ValidationFailure("failed (the run journal keeps no details)")
    return RunResult(
        status=record.status or 0,
        run_number=record.run_number,
        map_id=record.map_id or "",
        map_description=record.map_description or "",
        record_count=record.record_count or 0,
        error_count=record.error_count or 0,
        error_message="",
        validation_errors=(note,) if failed else (),
        raw={"Journal": record.to_fields()},
        request_id=record.request_id,
    )


def _needs_resolution(record: JournalRecord) -> RunNeedsResolution:
    why = "no answer came" if record.state == "unknown" else "the batch stopped while it was sent"
    return RunNeedsResolution(
        f"run {record.key!r} (map {record.map!r}, company {record.company_id}) may have "
        f"reached the server in an earlier batch ({why}; journal state {record.state!r}): "
        f"not sent. Check the run history, then resolve it as 'ran' or 'not-run'",
        key=record.key,
        state=record.state,
        company_id=record.company_id,
        map_key=record.map_key,
    )


def _outcome(begun: JournalRecord, outcome: RunResult | Exception) -> JournalRecord:
    """``begun`` with the outcome of its run."""
    if isinstance(outcome, RunResult):
        return attrs.evolve(
            begun,
            state="done",
            updated_at=now(),
            run_number=outcome.run_number,
            status=outcome.status,
            ok=outcome.ok,
            record_count=outcome.record_count,
            error_count=outcome.error_count,
            map_id=outcome.map_id,
            map_description=outcome.map_description,
            request_id=outcome.request_id,
        )
    status = getattr(outcome, "status_code", None)
    return attrs.evolve(
        begun,
        state="unknown" if isinstance(outcome, RunOutcomeUnknown) else "not-sent",
        updated_at=now(),
        error=type(outcome).__name__ + (f" (HTTP {status})" if status else ""),
        request_id=getattr(outcome, "request_id", None),
    )


async def run_journaled(
    journal: RunJournal,
    items: Sequence[Item],
    work: Callable[[Item], Awaitable[RunResult]],
    map_key: Callable[[Item], Awaitable[str]],
    *,
    company_id: str,
    resume: bool,
    concurrency: int,
    on_result: Callable[[int, Item, RunResult | Exception], object] | None,
) -> list[RunResult | Exception]:
    """``gather_outcomes`` of ``work`` over ``items``, each recorded in ``journal`` before
    it is sent (``map_key(item)`` is looked up first) and its outcome after. Without
    ``resume``, a journal holding any of the keys is a ``JournalConflict``."""
    planned = plan(items, company_id)
    if not resume:
        held = await journal.known(entry.key for entry in planned)
        if held:
            keys = [entry.key for entry in planned if entry.key in held]
            shown = ", ".join(repr(key) for key in keys[:SHOWN_KEYS])
            raise JournalConflict(
                f"the journal already holds {len(keys)} run(s) of this batch ({shown}"
                f"{', …' if len(keys) > SHOWN_KEYS else ''}): nothing was sent. Resume the "
                "batch (resume=True) or use another journal",
                keys=keys,
            )

    async def one(entry: Planned) -> RunResult:
        at = now()
        record = JournalRecord(
            key=entry.key,
            company_id=entry.company_id,
            map=entry.map,
            map_key=await map_key(entry.item),
            digest=entry.digest,
            state="sending",
            created_at=at,
            updated_at=at,
        )
        wanted = (record.company_id, record.map_key, record.digest)
        begun, record = await journal.begin(record)
        if not begun:
            if (record.company_id, record.map_key, record.digest) != wanted:
                raise JournalConflict(
                    f"the journal's run {entry.key!r} is another run (its company, map, "
                    "variables or rows differ): this one was not sent. Give it a key of "
                    "its own",
                    keys=[entry.key],
                )
            if record.state == "done":
                return recorded_result(record)
            raise _needs_resolution(record)
        try:
            result = await work(entry.item)
        except Exception as exc:
            with anyio.CancelScope(shield=True):
                await journal.finish(_outcome(record, exc))
            raise
        with anyio.CancelScope(shield=True):
            await journal.finish(_outcome(record, result))
        return result

    def report(index: int, entry: Planned, outcome: RunResult | Exception) -> object:
        return None if on_result is None else on_result(index, entry.original, outcome)

    return await gather_outcomes(
        planned, one, concurrency=concurrency, on_result=None if on_result is None else report
    )
