"""XML rules: safe, streaming parsing of data-set answers and error tables, and building
the XML payloads of data-table and XML runs.

Every parser here is made by defusedxml, which refuses DTDs, entity declarations and
external references; the element and text callbacks are then set directly on its expat
parser, so rows are built at expat speed while answers stream in.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.parsers import expat

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from .exceptions import ResponseParseError
from .models import DataSet, Row

__all__ = [
    "DataSetParser",
    "build_data_table",
    "build_xml_request",
    "parse_data_set",
    "parse_error_table",
]

SERIALIZATION_NS = "http://schemas.microsoft.com/2003/10/Serialization/"
_STRING_TAG = SERIALIZATION_NS + "}string"


def _defused_expat(encoding: str | None) -> tuple[DefusedXMLParser, Any]:
    """A defusedxml parser (kept alive: its methods are the refusal handlers) and the
    expat parser inside it, for the caller to set element and text callbacks on."""
    owner = DefusedXMLParser(encoding=encoding, forbid_dtd=True)
    parser = owner.parser
    parser.CommentHandler = None
    parser.ProcessingInstructionHandler = None
    parser.ordered_attributes = False
    return owner, parser


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _parse_failure(exc: Exception, what: str) -> ResponseParseError:
    if isinstance(exc, defusedxml.DefusedXmlException):
        return ResponseParseError(f"refused hostile XML in {what}: {type(exc).__name__}")
    if isinstance(exc, ResponseParseError):
        return exc
    return ResponseParseError(f"malformed XML in {what}: {exc}")


class _TableBuilder:
    """Builds rows from a DataSet document (root → row elements → column elements) fed
    as text. Completed rows go to ``emit(table, row)``."""

    def __init__(self, emit: Callable[[str, Row], None], what: str) -> None:
        self._emit = emit
        self._what = what
        self._owner, parser = _defused_expat("utf-8")
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        self._parser = parser
        self.columns: dict[str, dict[str, None]] = {}
        self._depth = 0
        self._table = ""
        self._row: Row = {}
        self._column = ""
        self._text: list[str] = []
        self._rows_seen = 0
        self.started = False

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        depth = self._depth = self._depth + 1
        if depth == 3:
            self._column = _local(name)
            self._text = []
        elif depth == 2:
            self._table = _local(name)
            # Columns written as attributes of the row element; namespaced ones
            # (xmlns, xsi:, msdata:, diffgr:) are markup, not data.
            self._row = {k: v for k, v in attributes.items() if "}" not in k}
        elif depth > 3:
            raise ResponseParseError(
                f"unexpected element <{_local(name)}> inside column {self._column!r} of "
                f"{self._table!r} row {self._rows_seen + 1} in {self._what}"
            )

    def _end(self, _name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 3:
            row = self._row
            if self._column in row:
                raise ResponseParseError(
                    f"column {self._column!r} appears twice in {self._table!r} row "
                    f"{self._rows_seen + 1} in {self._what}"
                )
            row[self._column] = "".join(self._text)
        elif depth == 2:
            self._rows_seen += 1
            table, row = self._table, self._row
            columns = self.columns.get(table)
            if columns is None:
                columns = self.columns[table] = dict.fromkeys(row)
            elif row.keys() != columns.keys():
                for column in row:
                    columns.setdefault(column)
                if len(row) != len(columns):
                    row = {column: row.get(column) for column in columns}
            self._emit(table, row)

    def _data(self, text: str) -> None:
        if self._depth == 3:
            self._text.append(text)
        elif not text.isspace():
            raise ResponseParseError(
                f"unexpected text {text[:40]!r} outside a column in {self._what}"
            )

    def feed(self, text: str, final: bool = False) -> None:
        if not self.started:
            # Nothing but white space so far: an empty answer, or indentation before
            # the document (which may start with an XML declaration).
            text = text.lstrip()
            if not text:
                return
            self.started = True
        try:
            self._parser.Parse(text, final)
        except (expat.ExpatError, ValueError) as exc:
            raise _parse_failure(exc, self._what) from None


class DataSetParser:
    """Parses a GetAllData answer incrementally: feed it bytes as they arrive, collect
    the rows it returns.

    The answer is an outer ``<string>`` document whose text is the escaped inner DataSet
    document; the outer text is forwarded into the inner parser as it is decoded, so
    neither document is ever held whole. Rows of every table are returned as
    ``(table, row)``; each row holds every column seen so far in its table.
    """

    def __init__(self, what: str = "the data answer") -> None:
        self._what = what
        self._ready: list[tuple[str, Row]] = []
        self._inner = _TableBuilder(self._collect, what)
        self._owner, parser = _defused_expat(None)
        parser.buffer_text = True
        parser.buffer_size = 1 << 16
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        self._outer = parser
        self._depth = 0
        self._root_seen = False

    @property
    def columns(self) -> Mapping[str, Iterable[str]]:
        """The columns seen so far, per table, in the order they first appeared."""
        return self._inner.columns

    def _collect(self, table: str, row: Row) -> None:
        self._ready.append((table, row))

    def _start(self, name: str, _attributes: object) -> None:
        self._depth += 1
        if self._depth == 1:
            if name != _STRING_TAG:
                raise ResponseParseError(
                    f"{self._what} is not a serialized string document "
                    f"(root element <{_local(name)}>)"
                )
            self._root_seen = True
        else:
            raise ResponseParseError(
                f"unexpected element <{_local(name)}> inside the string in {self._what}"
            )

    def _end(self, _name: str) -> None:
        self._depth -= 1

    def _data(self, text: str) -> None:
        if self._depth == 1:
            self._inner.feed(text)

    def feed(self, chunk: bytes) -> list[tuple[str, Row]]:
        """Parse the next bytes of the answer; return the rows they completed."""
        try:
            self._outer.Parse(chunk, False)
        except (expat.ExpatError, ValueError) as exc:
            raise _parse_failure(exc, self._what) from None
        ready, self._ready = self._ready, []
        return ready

    def close(self) -> list[tuple[str, Row]]:
        """End of the answer: check that both documents are complete; return the last
        rows."""
        try:
            self._outer.Parse(b"", True)
        except (expat.ExpatError, ValueError) as exc:
            raise _parse_failure(exc, self._what) from None
        if not self._root_seen:
            raise ResponseParseError(f"{self._what} is empty")
        if self._inner.started:
            self._inner.feed("", final=True)
        ready, self._ready = self._ready, []
        return ready


def _complete(tables: dict[str, list[Row]], columns: Mapping[str, Iterable[str]]) -> None:
    """Give every row every column of its table (``None`` where it had no element)."""
    for table, rows in tables.items():
        names = list(columns[table])
        width = len(names)
        for index, row in enumerate(rows):
            if len(row) != width:
                rows[index] = {name: row.get(name) for name in names}


def parse_data_set(body: bytes, what: str = "the data answer") -> DataSet:
    """A whole GetAllData answer as a ``DataSet``."""
    parser = DataSetParser(what)
    tables: dict[str, list[Row]] = {}
    for table, row in (*parser.feed(body), *parser.close()):
        rows = tables.get(table)
        if rows is None:
            rows = tables[table] = []
        rows.append(row)
    _complete(tables, parser.columns)
    return DataSet(tables=tables)


def parse_error_table(text: str | None, what: str = "the run's error table") -> tuple[Row, ...]:
    """The rows of a run's ``Errors`` data table (XML text, itself escaped or not)."""
    if not text or text.isspace():
        return ()
    text = text.strip()
    if text.startswith("&lt;"):
        text = html.unescape(text)
    if not text.startswith("<"):
        raise ResponseParseError(f"{what} is not an XML table: {text[:60]!r}")
    tables: dict[str, list[Row]] = {}
    builder = _TableBuilder(lambda table, row: tables.setdefault(table, []).append(row), what)
    builder.feed(text, final=True)
    _complete(tables, builder.columns)
    return tuple(row for rows in tables.values() for row in rows)


# ---- building payloads -------------------------------------------------------------

_NAME_START = (
    "A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]*")
_FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})


def escape_text(text: str) -> str:
    """``text`` escaped for an XML element's content (carriage returns kept as ``&#xD;``
    so that they survive parsing)."""
    return text.translate(_ESCAPES)


def _value_text(value: object, where: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        text = repr(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{where}: {value!r} is not a finite number")
        text = format(value, "f")
    elif isinstance(value, (datetime, date)):
        text = value.isoformat()
    else:
        raise TypeError(
            f"{where}: values of type {type(value).__name__} are not supported "
            "(use str, int, float, Decimal, bool, date, datetime or None)"
        )
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        raise ValueError(
            f"{where}: character U+{ord(bad.group()):04X} at position {bad.start()} "
            "is not allowed in XML 1.0"
        )
    return escape_text(text)


def _tables(rows: Iterable[Mapping[str, object]], table: str) -> str:
    """``<Table><col>value</col>…</Table>`` for each row; checks every name and value."""
    if isinstance(rows, (str, bytes, Mapping)):
        raise TypeError("rows must be an iterable of mappings (column → value), one per row")
    parts: list[str] = []
    valid_names: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{index}] is a {type(row).__name__}, not a mapping")
        parts.append(f"<{table}>")
        for column, value in row.items():
            if column not in valid_names:
                if not isinstance(column, str) or _NAME.fullmatch(column) is None:
                    raise ValueError(
                        f"rows[{index}]: column name {column!r} is not a valid XML name"
                    )
                valid_names.add(column)
            if value is None:
                continue
            text = _value_text(value, f"rows[{index}], column {column!r}")
            parts.append(f"<{column}>{text}</{column}>")
        parts.append(f"</{table}>")
    if not parts:
        raise ValueError("rows is empty: a data-table run needs at least one row")
    return "".join(parts)


def build_data_table(rows: Iterable[Mapping[str, object]]) -> bytes:
    """The body of ``runmapdatatable``: ``<RequestData><Table>…</Table>…</RequestData>``."""
    return f"<RequestData>{_tables(rows, 'Table')}</RequestData>".encode()


def build_xml_request(rows: Iterable[Mapping[str, object]]) -> bytes:
    """The body of ``runmapxml``: the escaped ``<DataSet>`` inside ``<Xml>``."""
    inner = f"<DataSet>{_tables(rows, 'Table')}</DataSet>"
    return f"<RequestData><Variables/><Xml>{escape_text(inner)}</Xml></RequestData>".encode()
