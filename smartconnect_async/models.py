"""Typed, immutable results and inputs of the SmartConnect API."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from . import _dataframes
from .exceptions import MapRunFailed

__all__ = [
    "Column",
    "Credentials",
    "DataRequest",
    "DataSet",
    "MapInfo",
    "Row",
    "RunRequest",
    "RunResult",
    "Timeout",
    "Token",
    "ValidationFailure",
]

Row = dict[str, "str | None"]
"""One row of a data set: column name → value; ``None`` where the element was absent,
``""`` where it was present but empty."""


def _text(name: str, value: object, *, strip: bool) -> str:
    """``value`` checked to be a non-empty string (stripped if ``strip``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    text = value.strip() if strip else value
    if not text:
        raise ValueError(f"{name} must not be empty")
    return text


def _email(value: str) -> str:
    return _text("email", value, strip=True)


def _password(value: str) -> str:
    return _text("password", value, strip=False)


def _company_id(value: str) -> str:
    return _text("company_id", value, strip=True)


def _run_key(value: str) -> str:
    return _text("key", value, strip=True)


def _seconds(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"timeout {attribute.name} must be a positive number of seconds or None, not {value!r}"
        )


@attrs.frozen
class Credentials:
    """Who to authenticate as: a user (``email``, ``password``) of one company
    (``company_id``, the tenant's Customer Id).

    The password is sent hashed as SmartConnect documents it unless
    ``hash_password=False``. It never appears in a ``repr``.
    """

    email: str = attrs.field(converter=_email)
    password: str = attrs.field(repr=False, converter=_password)
    company_id: str = attrs.field(converter=_company_id)
    hash_password: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))


@attrs.frozen
class Token:
    """A SmartConnect token for one company and user; valid for three months.

    ``value`` is the secret sent with each call and is hidden from ``repr``;
    ``issued_at`` and ``expires_at`` are timezone-aware UTC.
    """

    value: str = attrs.field(repr=False)
    company_id: str
    email: str
    issued_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the token has expired at ``now`` (default: the current time)."""
        return (now or datetime.now(timezone.utc)) >= self.expires_at


@attrs.frozen
class Timeout:
    """Time limits for one call, in seconds (``None`` = no limit).

    ``Timeout(30)`` sets ``connect``, ``read`` (between two pieces of the answer),
    ``write`` and ``pool`` (every wait before sending) to 30 s, and ``total`` to ten
    times that; ``Timeout(30, connect=5)`` overrides one. ``total`` bounds the whole
    call: every attempt, the waits and back-offs between them, and reading the answer
    (a streamed answer, ``iter_rows``, only until it starts: then ``read`` bounds each
    wait for the next piece).
    """

    default: float | None = attrs.field(default=30.0, validator=_seconds)
    connect: float | None = attrs.field(
        default=attrs.Factory(lambda s: s.default, True), validator=_seconds
    )
    read: float | None = attrs.field(
        default=attrs.Factory(lambda s: s.default, True), validator=_seconds
    )
    write: float | None = attrs.field(
        default=attrs.Factory(lambda s: s.default, True), validator=_seconds
    )
    pool: float | None = attrs.field(
        default=attrs.Factory(lambda s: s.default, True), validator=_seconds
    )
    total: float | None = attrs.field(
        default=attrs.Factory(lambda s: None if s.default is None else 10 * s.default, True),
        validator=_seconds,
    )

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        """A ``Timeout`` from a number of seconds, ``None`` (no limit) or a ``Timeout``."""
        if isinstance(value, Timeout):
            return value
        return cls(value)


@attrs.frozen
class MapInfo:
    """A map (a SmartConnect process) that can be run or queried through the API."""

    key: str
    """The ``MapKey``: a GUID that names the map on the wire."""
    id: str
    """The ``MapId``: the map's name, e.g. ``"Import Customers"``."""
    description: str


@attrs.frozen
class Column:
    """A column of a map: a source column, or a mapped destination column."""

    name: str
    required: bool


@attrs.frozen
class DataSet:
    """A map's source data: its tables, in the order they first appear.

    ``tables`` maps each table (row element) name to its rows; every row of a table holds
    every column seen in that table, ``None`` where the row had no such element.
    ``request_id``: the answer's ``X-Request-Id``, for audit trails.
    """

    tables: Mapping[str, list[Row]]
    request_id: str | None = attrs.field(default=None, eq=False)

    @property
    def rows(self) -> list[Row]:
        """The rows of the first table (empty when there is none)."""
        return _dataframes.table_rows(self.tables, None)

    def to_records(self, table: str | None = None) -> list[Row]:
        """Copies of the rows of ``table`` (default: the first table), each holding every
        column of the table; none for a table the answer does not hold (a table with no
        rows is not in an answer)."""
        return [dict(row) for row in _dataframes.table_rows(self.tables, table)]

    def to_pandas(self, table: str | None = None) -> Any:
        """``table`` (default: the first) as a ``pandas.DataFrame`` (extra ``pandas``);
        every column holds text or ``None``."""
        return _dataframes.to_pandas(_dataframes.table_rows(self.tables, table))

    def to_polars(self, table: str | None = None) -> Any:
        """``table`` (default: the first) as a ``polars.DataFrame`` (extra ``polars``),
        every column a ``String``."""
        return _dataframes.to_polars(_dataframes.table_rows(self.tables, table))

    def to_arrow(self, table: str | None = None) -> Any:
        """``table`` (default: the first) as a ``pyarrow.Table`` (extra ``parquet``),
        every column a ``string``."""
        return _dataframes.to_arrow(_dataframes.table_rows(self.tables, table))


@attrs.frozen
class ValidationFailure:
    """One error of a run: a row of its error table (``RunResult.errors``), or a
    validation error of a ``RunMapDataTableWithErrors`` run (``validation_errors``).

    ``row`` (1-based, as the server counts; an int in both) and ``column`` say where,
    when the server said; ``extra`` keeps every other field the server sent.
    """

    message: str
    column: str | None = None
    row: int | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RunResult:
    """The answer to a map run (SmartConnect's RunMapResponse).

    ``status`` 0 is success; ``ok`` is true only for status 0 with no errors. ``errors``
    holds the rows of the run's error table, ``validation_errors`` the validation errors
    of a with-errors run, each a ``ValidationFailure`` (message, column, row number).
    ``raw`` keeps the whole answer, unknown fields included. ``request_id``: the
    answer's ``X-Request-Id``, for audit trails.
    """

    status: int
    run_number: int | None
    map_id: str
    map_description: str
    record_count: int
    error_count: int
    error_message: str
    errors: tuple[ValidationFailure, ...] = ()
    validation_errors: tuple[ValidationFailure, ...] = ()
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)
    request_id: str | None = attrs.field(default=None, eq=False)

    @property
    def ok(self) -> bool:
        """True when the run succeeded with no errors of any kind."""
        return (
            self.status == 0
            and self.error_count == 0
            and not self.errors
            and not self.validation_errors
        )

    def raise_for_status(self) -> RunResult:
        """Raise ``MapRunFailed`` unless the run is ``ok``; return the result otherwise."""
        if not self.ok:
            raise MapRunFailed(self)
        return self


@attrs.frozen
class RunRequest:
    """One run for ``runs.run_many``: a map with its global ``variables``, or with
    ``rows`` to send as a data table (``with_errors`` for validation errors, ``as_xml``
    to send them through ``runmapxml``); for ``company_id`` if given (the same user),
    else for the client's company. ``key`` is its idempotency key in a run journal
    (unique within a batch); without one, ``run_many`` derives it from what is run."""

    map: MapInfo | str
    variables: Mapping[str, str] | None = None
    rows: Iterable[Mapping[str, object]] | None = None
    with_errors: bool = False
    as_xml: bool = False
    company_id: str | None = attrs.field(
        default=None, converter=attrs.converters.optional(_company_id)
    )
    key: str | None = attrs.field(default=None, converter=attrs.converters.optional(_run_key))

    def __attrs_post_init__(self) -> None:
        # Each of these would be dropped without a word: refuse it instead.
        if self.rows is None:
            if self.with_errors or self.as_xml:
                raise ValueError("a RunRequest with with_errors or as_xml needs rows")
        elif self.variables:
            raise ValueError(
                "a RunRequest takes variables or rows, not both: a run with rows "
                "(runmapdatatable, runmapxml) carries no variables"
            )
        elif self.with_errors and self.as_xml:
            raise ValueError("a RunRequest cannot combine with_errors and as_xml")


@attrs.frozen
class DataRequest:
    """One data pull for ``data.get_many``: a map and its global ``variables``."""

    map: MapInfo | str
    variables: Mapping[str, str] | None = None
