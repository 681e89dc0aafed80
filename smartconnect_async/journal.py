"""Run journals: ``runs.run_many(items, journal=...)`` records each run before it is sent
and its outcome after, so that a batch stopped half-way (a crash, a kill, a reboot) can
be resumed without sending any run twice.

A record names the run (its key, company, map and a sha256 digest of its variables or
rows) and its outcome (run number, status, ok). It never holds a token, a password, nor
the variables or rows themselves.

States of a run::

    (none) ──begin──▶ sending ──answer──▶ done
                         │ ──RunOutcomeUnknown──▶ unknown
                         │ ──an error proving it was not processed──▶ not-sent
    not-sent ──begin──▶ sending             (a resumed batch sends it again)
    sending | unknown ──resolve("ran")──▶ done
    sending | unknown ──resolve("not-run")──▶ not-sent

``sending`` with no outcome is what a crash leaves behind: the run may have reached the
server, so, like ``unknown``, it is never sent again until a person resolves it.

``SqliteJournal(path)`` keeps the journal in one file (stdlib ``sqlite3``, WAL mode,
each change committed before the run is sent); ``RedisJournal(redis)`` shares it across
the processes and hosts of a fleet (extra ``redis``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast, get_args

import anyio.to_thread
import attrs

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "UNRESOLVED_STATES",
    "JournalRecord",
    "RedisJournal",
    "Resolution",
    "RunJournal",
    "SqliteJournal",
    "State",
]

State = Literal["sending", "done", "unknown", "not-sent"]
Resolution = Literal["ran", "not-run"]
UNRESOLVED_STATES: tuple[State, ...] = ("sending", "unknown")
"""States of a run that may have reached the server without a known outcome."""

T = TypeVar("T")
Step = Callable[["JournalRecord | None"], "JournalRecord | None"]


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(timezone.utc)


@attrs.frozen
class JournalRecord:
    """One run in a journal. ``map`` is the map as the batch named it (a MapId or a
    MapKey), ``map_key`` its MapKey; ``digest`` is ``sha256:`` and the hex digest of its
    variables or rows in canonical form. ``attempts`` counts the times it was begun.
    The outcome fields are set by the answer (``done``); ``error`` names the error of an
    ``unknown`` or ``not-sent`` run (its type, and HTTP status if any); ``resolved`` says
    how a person resolved it, if one did."""

    key: str
    company_id: str
    map: str
    map_key: str | None
    digest: str
    state: State
    created_at: datetime
    updated_at: datetime
    attempts: int = 1
    run_number: int | None = None
    status: int | None = None
    ok: bool | None = None
    record_count: int | None = None
    error_count: int | None = None
    map_id: str | None = None
    map_description: str | None = None
    request_id: str | None = None
    error: str | None = None
    resolved: Resolution | None = None

    @property
    def needs_resolution(self) -> bool:
        """Whether the run may have reached the server with no outcome recorded."""
        return self.state in UNRESOLVED_STATES

    def to_fields(self) -> dict[str, str]:
        """The record as text fields (``None`` fields left out)."""
        fields: dict[str, str] = {}
        for name, value in attrs.asdict(self).items():
            if value is None:
                continue
            if isinstance(value, bool):
                fields[name] = "1" if value else "0"
            elif isinstance(value, datetime):
                fields[name] = value.isoformat()
            else:
                fields[name] = str(value)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> JournalRecord:
        """The record ``to_fields`` gave (unknown fields ignored)."""
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            text = fields.get(field.name)
            if text is None:
                continue
            if field.name in _INT_FIELDS:
                values[field.name] = int(text)
            elif field.name == "ok":
                values[field.name] = text == "1"
            elif field.name in ("created_at", "updated_at"):
                values[field.name] = datetime.fromisoformat(text)
            else:
                values[field.name] = text
        if values.get("state") not in get_args(State):
            raise ValueError(f"journal record {values.get('key')!r}: bad state")
        return cls(**values)


_INT_FIELDS = frozenset({"attempts", "run_number", "status", "record_count", "error_count"})


class RunJournal(Protocol):
    """What ``run_many`` needs of a journal. Every state change is atomic, across
    processes too for a shared journal."""

    async def begin(self, record: JournalRecord) -> tuple[bool, JournalRecord]:
        """Record ``record`` (state ``sending``) unless the journal holds its key in
        another state than ``not-sent``. ``(True, written)`` if the run may now be sent,
        ``(False, held)`` otherwise."""
        ...

    async def finish(self, record: JournalRecord) -> None:
        """Record the outcome of a run that was begun."""
        ...

    async def get(self, key: str) -> JournalRecord | None:
        """The record of ``key``, if any."""
        ...

    async def known(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` the journal holds."""
        ...

    async def resolve(
        self, key: str, how: Resolution, *, run_number: int | None = None
    ) -> JournalRecord:
        """Settle a run whose outcome is unknown: ``"ran"`` (the run history shows it;
        ``run_number`` if known) records it as done, ``"not-run"`` lets the next resumed
        batch send it. ``KeyError`` for a key the journal lacks, ``ValueError`` for a run
        that does not need resolution."""
        ...

    async def records(self, *, unresolved: bool = False) -> list[JournalRecord]:
        """Every record (only those needing resolution if ``unresolved``), oldest first."""
        ...

    async def aclose(self) -> None:
        """Release the journal's connection."""
        ...


def _begin_step(record: JournalRecord) -> Step:
    def step(old: JournalRecord | None) -> JournalRecord | None:
        if old is None:
            return record
        if old.state == "not-sent":
            return attrs.evolve(record, attempts=old.attempts + 1, created_at=old.created_at)
        return None

    return step


def _resolve_step(key: str, how: Resolution, run_number: int | None) -> Step:
    if how not in get_args(Resolution):
        raise ValueError(f"a run is resolved as 'ran' or 'not-run', not {how!r}")

    def step(old: JournalRecord | None) -> JournalRecord | None:
        if old is None:
            raise KeyError(f"the journal holds no run {key!r}")
        if not old.needs_resolution:
            raise ValueError(f"run {key!r} is {old.state}: it needs no resolution")
        if how == "ran":
            number = old.run_number if run_number is None else run_number
            return attrs.evolve(
                old, state="done", resolved=how, run_number=number, updated_at=now()
            )
        return attrs.evolve(old, state="not-sent", resolved=how, updated_at=now())

    return step


class _Journal:
    """The state machine over one primitive: ``_apply(key, step)`` reads a record,
    writes ``step(old)`` unless it is ``None``, atomically; returns ``(old, new)``."""

    async def _apply(
        self, key: str, step: Step
    ) -> tuple[JournalRecord | None, JournalRecord | None]:
        raise NotImplementedError

    async def begin(self, record: JournalRecord) -> tuple[bool, JournalRecord]:
        old, new = await self._apply(record.key, _begin_step(record))
        if new is not None:
            return True, new
        assert old is not None
        return False, old

    async def finish(self, record: JournalRecord) -> None:
        await self._apply(record.key, lambda old: record)

    async def resolve(
        self, key: str, how: Resolution, *, run_number: int | None = None
    ) -> JournalRecord:
        _, new = await self._apply(key, _resolve_step(key, how, run_number))
        assert new is not None
        return new

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError


class SqliteJournal(_Journal):
    """A journal in the SQLite file ``path`` (made if absent). Every change is
    committed (WAL, ``synchronous=FULL``) before ``run_many`` sends the run; the work runs
    in worker threads, one at a time, never on the event loop. Several processes may
    share the file (on a local disk)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, state TEXT NOT NULL,"
                " created_at TEXT NOT NULL, record TEXT NOT NULL)"
            )
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._connection())

        return await anyio.to_thread.run_sync(locked)

    async def _apply(
        self, key: str, step: Step
    ) -> tuple[JournalRecord | None, JournalRecord | None]:
        def apply(db: sqlite3.Connection) -> tuple[JournalRecord | None, JournalRecord | None]:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()
                old = None if row is None else JournalRecord.from_fields(json.loads(row[0]))
                new = step(old)
                if new is not None:
                    db.execute(
                        "INSERT INTO runs VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE"
                        " SET state = excluded.state, record = excluded.record",
                        (
                            key,
                            new.state,
                            new.created_at.isoformat(),
                            json.dumps(new.to_fields(), sort_keys=True),
                        ),
                    )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return old, new

        return await self._run(apply)

    async def get(self, key: str) -> JournalRecord | None:
        def get(db: sqlite3.Connection) -> Any:
            return db.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()

        row = await self._run(get)
        return None if row is None else JournalRecord.from_fields(json.loads(row[0]))

    async def known(self, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)

        def known(db: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT key FROM runs WHERE key IN ({marks})"  # noqa: S608
                found.update(row[0] for row in db.execute(query, chunk))
            return found

        return await self._run(known)

    async def records(self, *, unresolved: bool = False) -> list[JournalRecord]:
        where = " WHERE state IN ('sending', 'unknown')" if unresolved else ""

        def records(db: sqlite3.Connection) -> list[Any]:
            query = f"SELECT record FROM runs{where} ORDER BY created_at, key"  # noqa: S608
            return db.execute(query).fetchall()

        return [JournalRecord.from_fields(json.loads(row[0])) for row in await self._run(records)]

    async def aclose(self) -> None:
        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(close)


class RedisJournal(_Journal):
    """A journal in Redis, shared by a fleet: one hash per run (``{prefix}:run:{key}``)
    and a sorted set of the keys by creation time (``{prefix}:keys``). Each change is a
    WATCH/MULTI transaction. ``redis`` is a ``redis.asyncio.Redis`` (yours: not closed by
    ``aclose``) or a URL."""

    def __init__(self, redis: Redis | str, *, prefix: str = "smartconnect:journal") -> None:
        if isinstance(redis, str):
            from redis.asyncio import Redis

            self._redis: Redis = Redis.from_url(redis)
            self._owned = True
        else:
            self._redis, self._owned = redis, False
        self.prefix = prefix
        self._index = f"{prefix}:keys"

    def _name(self, key: str) -> str:
        return f"{self.prefix}:run:{key}"

    async def _apply(
        self, key: str, step: Step
    ) -> tuple[JournalRecord | None, JournalRecord | None]:
        from redis.exceptions import WatchError

        name = self._name(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(name)
                    old = _decoded(await pipe.hgetall(name))
                    new = step(old)
                    if new is None:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return old, None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(name)
                    pipe.hset(name, mapping=new.to_fields())  # type: ignore[arg-type]
                    pipe.zadd(self._index, {key: new.created_at.timestamp()})
                    await pipe.execute()
                    return old, new
                except WatchError:
                    continue

    async def get(self, key: str) -> JournalRecord | None:
        return _decoded(await self._redis.hgetall(self._name(key)))

    async def known(self, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        if not wanted:
            return set()
        scores = await self._redis.zmscore(self._index, wanted)
        return {key for key, score in zip(wanted, scores, strict=True) if score is not None}

    async def records(self, *, unresolved: bool = False) -> list[JournalRecord]:
        keys = [_text(cast(bytes, key)) for key in await self._redis.zrange(self._index, 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._name(key))
            found = [_decoded(fields) for fields in await pipe.execute()]
        return [
            record
            for record in found
            if record is not None and (record.needs_resolution or not unresolved)
        ]

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(fields: Mapping[Any, Any]) -> JournalRecord | None:
    if not fields:
        return None
    return JournalRecord.from_fields({_text(k): _text(v) for k, v in fields.items()})
