"""The emulator's state: catalog, clock, tokens, runs, counters, faults and rate limit.

One ``Emulator`` backs one app. It is safe to read and change from the test thread
while ``serve()`` runs the app in its own thread.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

from ._catalog import COMPANIES, USERS, Company, MapDef, User, seeded_maps
from ._data import SOURCES, iter_table_rows, variable_filters
from ._faults import FaultPlan, FaultRule, FaultSpec, parse_faults
from ._ratelimit import RateLimit, RateLimiter, RateState
from ._runs import RunError, RunRecord, SavedErrors, validate_documents
from ._tokens import TokenRecord, make_opaque_token, make_token, password_matches
from ._xml import Tables, iter_dataset_xml

Clock = Callable[[], datetime]
FIRST_RUN_NUMBER = 1001
"""Run numbers count up per company from here."""
CLOCK_RANGE = (datetime(1900, 1, 1, tzinfo=timezone.utc), datetime(9000, 1, 1, tzinfo=timezone.utc))
"""The emulator's clock stays within these years, far enough from ``datetime``'s limits
that no time computed from it (a token's expiry, say) overflows."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Counters:
    """A snapshot of the emulator's counters.

    ``calls``: calls per endpoint (canonical name), counted before any fault or rate
    limit; ``token_calls``: GetToken calls per company id asked for; ``runs_by_map``:
    runs executed per map key; ``faults_fired``: injected faults per kind;
    ``rate_limited``: calls refused by the rate limit; ``runs_in_flight_max``: per
    company, the most run requests the server was processing at once (from when one
    passes the rate limit until its answer is sent, or its connection dropped).
    """

    calls: Mapping[str, int] = field(default_factory=dict)
    token_calls: Mapping[str, int] = field(default_factory=dict)
    runs_by_map: Mapping[str, int] = field(default_factory=dict)
    faults_fired: Mapping[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    runs_in_flight_max: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        """All API calls."""
        return sum(self.calls.values())

    @property
    def total_runs(self) -> int:
        """All runs executed."""
        return sum(self.runs_by_map.values())

    def to_json(self) -> dict[str, Any]:
        """The snapshot as ``GET /_emulator/counters`` answers it."""
        return {
            "calls": dict(self.calls),
            "total_calls": self.total_calls,
            "token_calls": dict(self.token_calls),
            "runs_by_map": dict(self.runs_by_map),
            "total_runs": self.total_runs,
            "faults_fired": dict(self.faults_fired),
            "rate_limited": self.rate_limited,
            "runs_in_flight_max": dict(self.runs_in_flight_max),
        }


def parse_row_sizes(values: Sequence[str]) -> int | dict[str, int] | None:
    """Data-source sizes from command-line words: ``"5000"`` sizes every source,
    ``"Customers=1000000"`` one source; ``None`` when there are none."""
    if not values:
        return None
    sizes: dict[str, int] = {}
    for value in values:
        name, sep, count = value.rpartition("=")
        try:
            size = int(count)
        except ValueError:
            raise ValueError(f"row count {value!r}: expected N or SOURCE=N") from None
        if not sep:
            return size
        sizes[name] = size
    return sizes


def _resolve_sizes(rows: int | Mapping[str, int] | None) -> dict[str, int]:
    sizes = {name: source.default_size for name, source in SOURCES.items()}
    if isinstance(rows, int):
        sizes = dict.fromkeys(sizes, rows)
    else:
        by_lower = {name.lower(): name for name in sizes}
        for name, size in (rows or {}).items():
            if name.lower() not in by_lower:
                raise ValueError(f"unknown data source {name!r}; expected one of {sorted(sizes)}")
            sizes[by_lower[name.lower()]] = size
    if any(size < 0 for size in sizes.values()):
        raise ValueError("data source sizes must not be negative")
    return sizes


class Emulator:
    """State of one emulated SmartConnect service.

    ``seed`` drives data, token GUIDs and fault draws; ``clock`` returns an aware UTC
    datetime (default: the system clock), shifted by :meth:`advance_clock`; ``rows``
    sizes the data sources (an int for all, or ``{"Customers": 1_000_000}``);
    ``rate_limit`` is ``"N/SECONDS"``, ``(N, SECONDS)`` or a :class:`RateLimit`;
    ``faults`` are fault rules in any JSON form :func:`parse_faults` accepts;
    ``ambiguous_map_ids`` adds a second "Import Customers" map to DEMO01;
    ``opaque_tokens`` issues random base64 tokens (with ``+``, ``/`` and ``=``) instead
    of the reference format.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        rows: int | Mapping[str, int] | None = None,
        rate_limit: RateLimit | str | tuple[int, float] | None = None,
        faults: FaultSpec = None,
        ambiguous_map_ids: bool = False,
        opaque_tokens: bool = False,
    ) -> None:
        self.seed = seed
        self.opaque_tokens = opaque_tokens
        self._clock = clock or _utc_now
        self._offset = timedelta(0)
        self._lock = threading.RLock()
        self._companies = {company.company_id: company for company in COMPANIES}
        self._users = {user.email.lower(): user for user in USERS}
        self._maps = {m.key: m for m in seeded_maps(ambiguous=ambiguous_map_ids)}
        self._sizes = _resolve_sizes(rows)
        self._guids = random.Random(f"guids:{seed}")
        self._secret = hashlib.sha256(f"token-secret:{seed}".encode()).digest()
        self._tenants = {cid: self._new_guid() for cid in self._companies}
        self._tokens: dict[str, TokenRecord] = {}
        self._runs: list[RunRecord] = []
        self._next_run: dict[str, int] = {}
        self._saved: list[SavedErrors] = []
        self._calls: Counter[str] = Counter()
        self._token_calls: Counter[str] = Counter()
        self._runs_by_map: Counter[str] = Counter()
        self._faults_fired: Counter[str] = Counter()
        self._rate_limited = 0
        self._runs_in_flight: Counter[str] = Counter()
        self._runs_in_flight_max: Counter[str] = Counter()
        self.fault_plan = FaultPlan(seed, parse_faults(faults))
        self._limiter = RateLimiter(RateLimit.parse(rate_limit)) if rate_limit else None

    # -- catalog ---------------------------------------------------------------------
    @property
    def companies(self) -> Mapping[str, Company]:
        """Companies by Customer Id."""
        return MappingProxyType(self._companies)

    @property
    def users(self) -> Mapping[str, User]:
        """Users by lower-cased e-mail."""
        return MappingProxyType(self._users)

    @property
    def maps(self) -> Mapping[str, MapDef]:
        """Every map (all companies, real-time ones too) by lower-case map key."""
        with self._lock:
            return MappingProxyType(dict(self._maps))

    def add_company(self, company: Company) -> None:
        """Add (or rename) a company; it gets a tenant id of its own."""
        with self._lock:
            self._companies[company.company_id] = company
            if company.company_id not in self._tenants:
                self._tenants[company.company_id] = self._new_guid()

    def add_user(self, user: User) -> None:
        """Add (or replace) a user; every company it names must exist."""
        unknown = [cid for cid in user.company_ids if cid not in self._companies]
        if unknown:
            raise ValueError(f"unknown company {unknown[0]!r} for user {user.email!r}")
        with self._lock:
            self._users[user.email.lower()] = user

    def add_map(self, map_def: MapDef) -> None:
        """Add (or replace) a map, e.g. a second map with an existing MapId, or one over
        a ``DataSource`` of your own (its ``default_size`` rows)."""
        if map_def.company_id not in self._companies:
            raise ValueError(f"unknown company {map_def.company_id!r}")
        key = str(uuid.UUID(map_def.key))
        with self._lock:
            self._sizes.setdefault(map_def.source.name, map_def.source.default_size)
            self._maps[key] = replace(map_def, key=key)

    def source_size(self, name: str) -> int:
        """Rows in data source ``name`` (its first table)."""
        return self._sizes[name]

    # -- clock -----------------------------------------------------------------------
    def now(self) -> datetime:
        """The emulator's current time (aware, UTC)."""
        return self._clock().astimezone(timezone.utc) + self._offset

    def advance_clock(self, delta: timedelta | float) -> datetime:
        """Move the clock forward by ``delta`` (a timedelta or seconds); returns the new now.

        ValueError for a negative or infinite ``delta``, or one that takes the clock out of
        ``CLOCK_RANGE``.
        """
        if not (delta >= timedelta(0) if isinstance(delta, timedelta) else 0 <= delta < math.inf):
            raise ValueError("the clock only moves forward, a finite time")
        return self._move(
            lambda now: now + (delta if isinstance(delta, timedelta) else timedelta(seconds=delta))
        )

    def set_clock(self, moment: datetime) -> datetime:
        """Make the clock read ``moment`` (aware, within ``CLOCK_RANGE``) now, and run on
        from there."""
        if moment.tzinfo is None:
            raise ValueError("set_clock needs an aware datetime")
        return self._move(lambda now: moment)

    def _move(self, to: Callable[[datetime], datetime]) -> datetime:
        """Make the clock read ``to(now)`` now; ValueError if that is out of ``CLOCK_RANGE``."""
        earliest, latest = CLOCK_RANGE
        with self._lock:
            base = self._clock().astimezone(timezone.utc)
            try:
                moment = to(base + self._offset)
                inside = earliest <= moment < latest
            except OverflowError:
                inside = False
            if not inside:
                raise ValueError(f"the clock must stay between {earliest.year} and {latest.year}")
            self._offset = moment - base
        return self.now()

    # -- tokens ----------------------------------------------------------------------
    def _new_guid(self) -> uuid.UUID:
        return uuid.UUID(int=self._guids.getrandbits(128), version=4)

    def issue_token(self, email: str, company_id: str) -> str:
        """A new token for a known user and company, as GetToken would issue it."""
        user = self._users[email.lower()]
        company = self._company(company_id)
        if company is None or company.company_id not in user.company_ids:
            raise KeyError(f"{email} has no access to company {company_id!r}")
        with self._lock:
            if self.opaque_tokens:
                record = make_opaque_token(
                    rng=self._guids, email=user.email, company_id=company.company_id, now=self.now()
                )
            else:
                record = make_token(
                    secret=self._secret,
                    email=user.email,
                    company_id=company.company_id,
                    now=self.now(),
                    token_id=self._new_guid(),
                    tenant=self._tenants[company.company_id],
                )
            self._tokens[record.token] = record
        return record.token

    def authenticate(self, email: str, password: str, company_id: str) -> str | None:
        """GetToken: a new token, or None for wrong credentials or no access."""
        user = self._users.get(email.lower())
        company = self._company(company_id)
        if user is None or company is None or company.company_id not in user.company_ids:
            return None
        if not password_matches(password, user.password):
            return None
        return self.issue_token(user.email, company.company_id)

    def token_record(self, token: str) -> TokenRecord | None:
        """The record of an issued token that is still valid now, else None."""
        record = self._tokens.get(token)
        return record if record is not None and record.valid_at(self.now()) else None

    @property
    def tokens(self) -> Mapping[str, TokenRecord]:
        """Every token issued, by token string."""
        with self._lock:
            return MappingProxyType(dict(self._tokens))

    def _company(self, company_id: str) -> Company | None:
        for company in self._companies.values():
            if company.company_id.lower() == company_id.lower():
                return company
        return None

    # -- data ------------------------------------------------------------------------
    def data_chunks(
        self, map_def: MapDef, variables: Mapping[str, str | None] | None = None
    ) -> Iterator[bytes]:
        """The GetAllData answer body for ``map_def``, generated lazily in chunks."""
        source = map_def.source
        filters = variable_filters(variables or {})
        size = self._sizes[source.name]
        tables = (
            (table.name, table.columns, iter_table_rows(table, self.seed, size, filters))
            for table in source.tables
        )
        return iter_dataset_xml(source.dataset, tables)

    # -- runs ------------------------------------------------------------------------
    def run_source(
        self,
        map_def: MapDef,
        variables: Mapping[str, str | None],
        *,
        endpoint: str,
        request_id: str = "",
    ) -> RunRecord:
        """Run ``map_def`` over its own data source (runmap / RunMapWithVariables)."""
        table = map_def.source.tables[0]
        rows = iter_table_rows(
            table, self.seed, self._sizes[map_def.source.name], variable_filters(variables)
        )
        documents = (dict(zip(table.columns, row, strict=True)) for row in rows)
        count, failed, errors = validate_documents(map_def.required, documents)
        return self._record(map_def, endpoint, request_id, count, failed, errors, variables, {})

    def run_posted(
        self,
        map_def: MapDef,
        tables: Tables,
        variables: Mapping[str, str | None],
        *,
        endpoint: str,
        request_id: str = "",
    ) -> RunRecord:
        """Run ``map_def`` over posted rows; the first posted table holds the documents."""
        documents = next(iter(tables.values()), [])
        count, failed, errors = validate_documents(map_def.required, documents)
        frozen = {name: tuple(rows) for name, rows in tables.items()}
        return self._record(map_def, endpoint, request_id, count, failed, errors, variables, frozen)

    def _record(
        self,
        map_def: MapDef,
        endpoint: str,
        request_id: str,
        count: int,
        failed: int,
        errors: Sequence[RunError],
        variables: Mapping[str, str | None],
        tables: Mapping[str, tuple[Mapping[str, str], ...]],
    ) -> RunRecord:
        with self._lock:
            number = self._next_run.get(map_def.company_id, FIRST_RUN_NUMBER)
            self._next_run[map_def.company_id] = number + 1
            record = RunRecord(
                run_number=number,
                company_id=map_def.company_id,
                map_key=map_def.key,
                map_id=map_def.map_id,
                map_description=map_def.description,
                endpoint=endpoint,
                started_at=self.now(),
                request_id=request_id,
                record_count=count,
                error_count=failed,
                errors=tuple(errors),
                variables=dict(variables),
                tables=tables,
            )
            self._runs.append(record)
            self._runs_by_map[map_def.key] += 1
        return record

    @property
    def runs(self) -> tuple[RunRecord, ...]:
        """Run history, oldest first."""
        with self._lock:
            return tuple(self._runs)

    def save_process_errors(
        self, map_def: MapDef, run_number: int, tenant_server: str, tenant_technical_name: str
    ) -> bool:
        """SaveProcessErrors: True (and remembered) if that run of that map exists."""
        with self._lock:
            exists = any(
                run.run_number == run_number and run.map_key == map_def.key for run in self._runs
            )
            if exists:
                self._saved.append(
                    SavedErrors(
                        map_def.company_id,
                        map_def.key,
                        run_number,
                        tenant_server,
                        tenant_technical_name,
                        self.now(),
                    )
                )
        return exists

    @property
    def saved_errors(self) -> tuple[SavedErrors, ...]:
        """Successful SaveProcessErrors calls, oldest first."""
        with self._lock:
            return tuple(self._saved)

    # -- counters, faults, rate limit --------------------------------------------------
    def count_call(self, endpoint: str, company_id: str | None = None) -> None:
        """Count one API call (and, for GetToken, the company asked for)."""
        with self._lock:
            self._calls[endpoint] += 1
            if company_id is not None:
                company = self._company(company_id)
                self._token_calls[company.company_id if company else company_id] += 1

    @contextmanager
    def run_in_flight(self, company_id: str) -> Iterator[None]:
        """Count a run request of ``company_id`` as in flight while the block runs
        (for ``Counters.runs_in_flight_max``)."""
        with self._lock:
            self._runs_in_flight[company_id] += 1
            now = self._runs_in_flight[company_id]
            if now > self._runs_in_flight_max[company_id]:
                self._runs_in_flight_max[company_id] = now
        try:
            yield
        finally:
            with self._lock:
                self._runs_in_flight[company_id] -= 1

    def count_fault(self, kind: str) -> None:
        """Count one injected fault."""
        with self._lock:
            self._faults_fired[kind] += 1

    @property
    def counters(self) -> Counters:
        """A snapshot of the counters."""
        with self._lock:
            return Counters(
                dict(self._calls),
                dict(self._token_calls),
                dict(self._runs_by_map),
                dict(self._faults_fired),
                self._rate_limited,
                dict(self._runs_in_flight_max),
            )

    def reset_counters(self) -> None:
        """Zero every counter (run history, tokens and faults stay)."""
        with self._lock:
            self._calls.clear()
            self._token_calls.clear()
            self._runs_by_map.clear()
            self._faults_fired.clear()
            self._rate_limited = 0
            # Runs still in flight count on: the high-water mark restarts from them.
            self._runs_in_flight_max = +self._runs_in_flight

    @property
    def faults(self) -> tuple[FaultRule, ...]:
        """The fault rules in force."""
        return tuple(self.fault_plan.rules)

    def set_faults(self, spec: FaultSpec) -> None:
        """Replace the fault rules (any form :func:`parse_faults` accepts)."""
        self.fault_plan.replace(parse_faults(spec))

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.fault_plan.replace([])

    @property
    def rate_limit(self) -> RateLimit | None:
        """The rate limit in force, if any."""
        return self._limiter.rate if self._limiter else None

    def take_rate(self) -> RateState | None:
        """Count a call against the rate limit; None when there is no limit."""
        if self._limiter is None:
            return None
        state = self._limiter.take(self.now())
        if not state.allowed:
            with self._lock:
                self._rate_limited += 1
        return state
