"""What the command line prints: consoles (colour and progress on a terminal only, and
``NO_COLOR`` honoured), secret redaction, one-line error messages, warnings from the
library's logger, and the row writers of ``smartconnect data``."""

from __future__ import annotations

import csv
import importlib
import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO, Any, Protocol
from urllib.parse import quote

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import redact_url
from ..exceptions import (
    APIStatusError,
    NotFoundError,
    ResponseParseError,
    RunOutcomeUnknown,
    SmartConnectError,
)
from ..models import Row

__all__ = [
    "CsvWriter",
    "JsonWriter",
    "NdjsonWriter",
    "RedactingStream",
    "RowWriter",
    "Secrets",
    "TableWriter",
    "WarningHandler",
    "describe_error",
    "make_console",
    "make_table",
    "time_left",
    "when",
]

REDACTED = "[REDACTED]"
NON_TERMINAL_WIDTH = 120
LOOKAHEAD_ROWS = 1000
PARQUET_ROW_GROUP = 10_000
"""Rows of one Parquet row group: what a parquet export holds in memory at the most."""
"""Rows read before a CSV header or table layout is fixed (bounded memory)."""


def make_console(
    stream: IO[str] | None = None, *, stderr: bool = False, terminal: bool | None = None
) -> Console:
    """A rich console on ``stream`` (default: the current stdout or stderr). Off a
    terminal it has no colour, no live display and a fixed width; ``terminal`` forces
    the choice (``None``: ask the stream)."""
    stream = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    console = Console(
        file=stream, stderr=stderr, highlight=False, emoji=False, force_terminal=terminal
    )
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else NON_TERMINAL_WIDTH
        console = Console(
            file=stream,
            stderr=stderr,
            highlight=False,
            emoji=False,
            width=width,
            no_color=True,
            color_system=None,
        )
    return console


def make_table(title: str | None = None) -> Table:
    """A table in the house style: a rule under the header, two spaces between columns."""
    return Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title=title,
        title_justify="left",
    )


class Secrets:
    """The secrets of one invocation (password, hashed password, tokens), so that no
    message, warning or traceback shows them."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, *values: str | None) -> None:
        """Remember secrets (short or empty values are not worth redacting)."""
        for value in values:
            if value and len(value) >= 4:
                self._values.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every secret (raw or percent-encoded) and every ``token=`` or
        ``password=`` query value replaced."""
        for secret in sorted(self._values, key=len, reverse=True):
            for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
                text = text.replace(form, REDACTED)
        return redact_url(text)


class RedactingStream:
    """A text stream that redacts every write: the consoles of the command line write
    through it, so no message, table or log line can show a secret."""

    def __init__(self, stream: IO[str], secrets: Secrets) -> None:
        self._stream = stream
        self._secrets = secrets

    def write(self, text: str) -> int:
        return self._stream.write(self._secrets.redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def describe_error(exc: BaseException, *, map_name: str | None = None) -> str:
    """One line saying what failed (and for which map), with the HTTP status and the
    request id when there are some."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RunOutcomeUnknown):
        message = f"outcome unknown — not re-sent: {message}"
    elif not isinstance(exc, SmartConnectError):
        message = f"{type(exc).__name__}: {message}"
    status = getattr(exc, "status_code", None)
    has_status = isinstance(exc, (RunOutcomeUnknown, APIStatusError)) and status is not None
    if has_status and f"HTTP {status}" not in message:
        message += f" (HTTP {status})"
    request_id = getattr(exc, "request_id", None)
    if (
        isinstance(exc, (ResponseParseError, RunOutcomeUnknown, APIStatusError))
        and request_id
        and request_id not in message
    ):
        message += f" (request id {request_id})"
    if isinstance(exc, NotFoundError) and exc.endpoint == "GetToken":
        message += "; is the API Url right? It usually ends in /API"
    if map_name is not None:
        message = f"map {map_name!r}: {message}"
    return message


def when(moment: datetime) -> str:
    """A UTC time for people: ``2026-02-23 18:56:01 UTC``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def time_left(moment: datetime, now: datetime | None = None) -> str:
    """``in 91 days`` / ``in 5 hours`` / ``expired 2 days ago``."""
    now = now or datetime.now(timezone.utc)
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span >= 2 * 86400:
        amount = f"{span / 86400:.0f} days"
    elif span >= 2 * 3600:
        amount = f"{span / 3600:.0f} hours"
    else:
        amount = f"{span / 60:.0f} minutes"
    return f"in {amount}" if seconds >= 0 else f"expired {amount} ago"


class WarningHandler(logging.Handler):
    """Prints the library's warnings (and, with ``--debug``, its debug lines) on stderr,
    one line each, redacted."""

    def __init__(self, console: Console, secrets: Secrets, *, debug: bool) -> None:
        super().__init__(logging.DEBUG if debug else logging.WARNING)
        self.console = console
        self.secrets = secrets
        self.debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.secrets.redact(record.getMessage())
            if self.debug and record.exc_info:
                text += "\n" + self.secrets.redact(
                    logging.Formatter().formatException(record.exc_info)
                )
            level = record.levelname.lower()
            style = {"warning": "yellow", "error": "red", "critical": "red"}.get(level, "dim")
            prefix = f"{level} ({record.name})" if self.debug else level
            line = Text(f"{prefix}: ", style=style)
            line.append(text)
            self.console.print(line, soft_wrap=True)
        except Exception:
            self.handleError(record)


# ---- row writers for ``smartconnect data`` --------------------------------------------


class RowWriter(Protocol):
    """Writes rows as they stream in; ``close`` finishes the output."""

    def write(self, row: Row) -> None: ...

    def close(self) -> None: ...


class NdjsonWriter:
    """One JSON object per line (absent columns left out)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, row: Row) -> None:
        self.stream.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """A JSON array of row objects, written one row at a time (never held in memory)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0

    def write(self, row: Row) -> None:
        self.stream.write("[\n  " if self.count == 0 else ",\n  ")
        self.stream.write(json.dumps(row, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()


class _Lookahead:
    """Holds the first rows until the column set is known (at most ``LOOKAHEAD_ROWS``):
    a column absent from the first row (a null value) still gets its place."""

    def __init__(self, lookahead: int, warn: logging.Logger) -> None:
        self.lookahead = lookahead
        self.pending: list[Row] | None = []
        self.columns: list[str] = []
        self._known: set[str] = set()
        self._late: set[str] = set()
        self._written = 0
        self._warn = warn

    def add(self, row: Row) -> list[Row]:
        """Rows ready to be written now (none while the column set is still open)."""
        if self.pending is None:
            self._check(row)
            self._written += 1
            return [row]
        for name in row:
            if name not in self._known:
                self._known.add(name)
                self.columns.append(name)
        self.pending.append(row)
        if len(self.pending) < self.lookahead:
            return []
        return self.flush()

    def flush(self) -> list[Row]:
        rows, self.pending = self.pending or [], None
        self._written += len(rows)
        return rows

    @property
    def open(self) -> bool:
        return self.pending is not None

    def _check(self, row: Row) -> None:
        for name in row:
            if name not in self._known and name not in self._late:
                self._late.add(name)
                self._warn.warning(
                    "column %r first appears in row %d, after the columns were fixed; its "
                    "values are left out (use --format json or ndjson to keep every column)",
                    name,
                    self._written + 1,
                )


_LOGGER = logging.getLogger("smartconnect_async.cli")


class CsvWriter:
    """CSV with a header row; a null value is an empty field."""

    def __init__(self, stream: IO[str], *, lookahead: int = LOOKAHEAD_ROWS) -> None:
        self.stream = stream
        self._rows = _Lookahead(lookahead, _LOGGER)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._header_written = False

    def write(self, row: Row) -> None:
        ready = self._rows.add(row)
        if ready:
            self._emit(ready)

    def close(self) -> None:
        if self._rows.open:
            rows = self._rows.flush()
            if rows:
                self._emit(rows)
        self.stream.flush()

    def _emit(self, rows: Iterable[Row]) -> None:
        if not self._header_written:
            self._writer.writerow(self._rows.columns)
            self._header_written = True
        columns = self._rows.columns
        for row in rows:
            self._writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


class ParquetWriter:
    """Parquet (pyarrow, extra ``parquet``): every column a string, a null value null;
    the columns from the first rows, as for CSV; written in row groups of
    ``PARQUET_ROW_GROUP`` rows, so memory holds one group at the most."""

    def __init__(self, stream: IO[bytes], *, lookahead: int = LOOKAHEAD_ROWS) -> None:
        # Imported here (the command checked it is installed): pyarrow ships no types.
        self._arrow: Any = importlib.import_module("pyarrow")
        self._open = importlib.import_module("pyarrow.parquet").ParquetWriter
        self.stream = stream
        self._rows = _Lookahead(lookahead, _LOGGER)
        self._group: list[Row] = []
        self._file: Any = None

    def write(self, row: Row) -> None:
        self._group += self._rows.add(row)
        if len(self._group) >= PARQUET_ROW_GROUP:
            self._emit()

    def close(self) -> None:
        if self._rows.open:
            self._group += self._rows.flush()
        self._emit(always=True)
        self._file.close()
        self.stream.flush()

    def _emit(self, *, always: bool = False) -> None:
        if not (self._group or always):
            return
        strings = self._arrow.string()
        schema = self._arrow.schema([(name, strings) for name in self._rows.columns])
        if self._file is None:
            self._file = self._open(self.stream, schema)
        if self._group:
            table = self._arrow.Table.from_pylist(self._group, schema=schema)
            self._file.write_table(table, row_group_size=PARQUET_ROW_GROUP)
            self._group = []


class TableWriter:
    """An aligned text table for reading on screen, in constant memory: the column
    widths come from the first rows; longer values are cut with an ellipsis."""

    MAX_WIDTH = 40

    def __init__(
        self, console: Console, *, lookahead: int = 200, max_width: int = MAX_WIDTH
    ) -> None:
        self.console = console
        self.max_width = max_width
        self._rows = _Lookahead(lookahead, _LOGGER)
        self._widths: list[int] = []
        self.count = 0

    def write(self, row: Row) -> None:
        ready = self._rows.add(row)
        if ready:
            self._emit(ready)

    def close(self) -> None:
        if self._rows.open:
            rows = self._rows.flush()
            if rows:
                self._emit(rows)
        if self.count == 0:
            self.console.print(Text("(no rows)", style="dim"))
        self.console.file.flush()

    def _emit(self, rows: list[Row]) -> None:
        columns = self._rows.columns
        if not self._widths:
            self._widths = [
                min(
                    self.max_width,
                    max([len(name)] + [len(_cell(row.get(name))) for row in rows]),
                )
                for name in columns
            ]
            header = "  ".join(_fit(n, w) for n, w in zip(columns, self._widths, strict=True))
            rule = "  ".join("─" * w for w in self._widths)
            self.console.print(Text(header.rstrip(), style="bold"), soft_wrap=True)
            self.console.print(Text(rule, style="dim"), soft_wrap=True)
        file = self.console.file
        for row in rows:
            cells = (_fit(_cell(row.get(n)), w) for n, w in zip(columns, self._widths, strict=True))
            file.write("  ".join(cells).rstrip() + "\n")
            self.count += 1


def _cell(value: str | None) -> str:
    if value is None:
        return ""
    # Control characters (line ends, tabs) would break the layout.
    return value.translate(_CONTROL)


_CONTROL = {i: " " for i in range(32)} | {127: " "}


def _fit(text: str, width: int) -> str:
    if len(text) > width:
        return text[: max(0, width - 1)] + "…"
    return text.ljust(width)
