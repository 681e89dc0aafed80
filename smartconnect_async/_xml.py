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
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

import defusedxml
from defusedxml.ElementTree import DefusedXMLParser

from .exceptions import ResponseParseError
from .models import DataSet, Row

__all__ = [
    "DataSetCollector",
    "DataSetParser",
    "build_data_table",
    "build_xml_request",
    "parse_data_set",
    "parse_error_table",
]

SERIALIZATION_NS = "http://schemas.microsoft.com/2003/10/Serialization/"


def _defused_expat(encoding: str | None, *, namespaces: bool) -> tuple[DefusedXMLParser, Any]:
    """An expat parser that refuses DTDs, entity declarations and external references
    through defusedxml's own handlers, and the defusedxml parser that owns those handlers
    (keep it alive with the expat parser). The caller sets the element and text callbacks.

    ``namespaces=False`` gives a parser without namespace processing (element names as
    written), which is markedly faster on large data sets.
    """
    owner = DefusedXMLParser(encoding=encoding, forbid_dtd=True)
    if namespaces:
        parser = owner.parser
    else:
        parser = expat.ParserCreate(encoding)
        parser.StartDoctypeDeclHandler = owner.defused_start_doctype_decl
        parser.EntityDeclHandler = owner.defused_entity_decl
        parser.UnparsedEntityDeclHandler = owner.defused_unparsed_entity_decl
        # defusedxml's handler raises; typeshed wants an int-returning callable.
        parser.ExternalEntityRefHandler = owner.defused_external_entity_ref_handler  # type: ignore[assignment]
    parser.CommentHandler = None
    parser.ProcessingInstructionHandler = None
    parser.ordered_attributes = False
    parser.buffer_text = True
    return owner, parser


def _parse_failure(exc: Exception, what: str) -> ResponseParseError:
    if isinstance(exc, defusedxml.DefusedXmlException):
        return ResponseParseError(f"refused hostile XML in {what}: {type(exc).__name__}")
    if isinstance(exc, ResponseParseError):
        return exc
    return ResponseParseError(f"malformed XML in {what}: {exc}")


def _declared(element: Element) -> set[str]:
    """The namespace prefixes ``element`` declares (``xmlns:p`` attributes)."""
    return {key[6:] for key in element.attrib if key.startswith("xmlns:")}


def _outside(text: str | None, what: str) -> None:
    """Text between elements must be white space."""
    if text and not text.isspace():
        raise ResponseParseError(f"unexpected text {text[:40]!r} outside a column in {what}")


_PIECE = 1 << 14
MAX_COLUMNS = 4096
"""Columns of one table, and tables of one answer, at the most unless the client's
``max_columns`` says otherwise: every row is completed to its table's columns, so a
server adding a column with every row would cost memory and time growing with the
square of the rows."""
LONGEST_TOKEN = 1 << 20
"""Bytes that one tag, attribute value or comment may span at the most: expat 2.5 parses
an unfinished one again from its start with every piece fed, so one that never ends
would cost time growing with the square of its length."""


class _TokenGuard:
    """Refuses a document whose parser has made no progress over ``LONGEST_TOKEN``
    bytes (or characters) fed: one unfinished token."""

    __slots__ = ("_index", "_stalled")

    def __init__(self) -> None:
        self._index = -1
        self._stalled = 0

    def fed(self, parser: expat.XMLParserType, size: int, what: str) -> None:
        """``size`` more bytes went into ``parser``."""
        index = parser.CurrentByteIndex  # where its unfinished input starts
        if index != self._index:
            self._index, self._stalled = index, 0
            return
        self._stalled += size
        if self._stalled > LONGEST_TOKEN:
            raise ResponseParseError(
                f"malformed XML in {what}: a tag, attribute or comment runs on for more "
                f"than {LONGEST_TOKEN:,} bytes"
            )


class _TableBuilder:
    """Builds rows from a DataSet document (root → row elements → column elements) fed
    as text. Completed rows are appended to ``ready`` as ``(table, row)``; ``columns``
    holds every table's columns in the order they first appeared.

    expat's element and text events go straight to the C ``TreeBuilder``, so no Python
    code runs per element: this is the innermost loop of every data pull, over answers
    that can hold millions of rows. After each piece, the rows it completed are turned
    into dicts and dropped from the tree (memory stays flat). A row is complete once the
    next one has started, or the document has ended.

    The parser does no namespace processing (it is faster without): a ``prefix:local``
    name is read as ``local`` once its prefix is known to be declared in scope.
    """

    def __init__(
        self, ready: list[tuple[str, Row]], what: str, max_columns: int = MAX_COLUMNS
    ) -> None:
        self._what = what
        self._max_columns = max_columns
        self._ready = ready
        self._owner, parser = _defused_expat("utf-8", namespaces=False)
        builder = TreeBuilder()
        # The document's root element becomes this holder's only child.
        self._holder = builder.start("", {})
        parser.StartElementHandler = builder.start
        parser.EndElementHandler = builder.end
        parser.CharacterDataHandler = builder.data
        self._parser = parser
        self.columns: dict[str, dict[str, None]] = {}
        self.started = False
        self._root_checked = False
        self._root_prefixes: set[str] = set()
        self._plain: set[str] = set()  # names checked to have no prefix
        self._rows_seen = 0
        self._guard = _TokenGuard()

    def feed(self, text: str | bytes, final: bool = False) -> None:
        """Parse the next piece of the document (text, or UTF-8 bytes)."""
        if not self.started:
            # Nothing but white space so far: an empty answer, or indentation before
            # the document (which may start with an XML declaration).
            text = text.lstrip()
            if not text:
                return
            self.started = True
        # Pieces of 16 KiB: the elements each one builds are freed before the next is
        # parsed, so the garbage collector (it counts objects made and not yet freed)
        # seldom runs; with 64 KiB pieces its collections took about a tenth of the time.
        parse, holder, size = self._parser.Parse, self._holder, len(text)
        for start in range(0, max(size, 1), _PIECE):
            last = final and start + _PIECE >= size
            try:
                parse(text[start : start + _PIECE], last)
            except (expat.ExpatError, ValueError) as exc:
                raise _parse_failure(exc, self._what) from None
            self._guard.fed(self._parser, min(_PIECE, size - start), self._what)
            if len(holder):
                self._collect(last)

    def _collect(self, final: bool) -> None:
        root = self._holder[0]
        if not self._root_checked:
            self._root_checked = True
            self._root_prefixes = {"xml"} | _declared(root)
            self._local(root, self._root_prefixes)
        _outside(root.text, self._what)
        count = len(root) if final else len(root) - 1
        if count <= 0:
            return
        rows = root[:count]
        del root[:count]
        ready = self._ready
        columns = self.columns
        plain = self._plain
        number = self._rows_seen
        for element in rows:
            number += 1
            # The usual row, checked inline: plain names met before, columns as
            # elements without attributes or children, white space between them.
            table = element.tag
            text, tail = element.text, element.tail
            row: Row | None = None
            if (
                table in plain
                and not element.keys()
                and (not text or text.isspace())
                and (not tail or tail.isspace())
            ):
                row = {}
                for column in element:
                    name, tail = column.tag, column.tail
                    if (
                        name in row
                        or name not in plain
                        or len(column)
                        or column.keys()
                        or (tail and not tail.isspace())
                    ):
                        row = None
                        break
                    row[name] = column.text or ""
            if row is None:
                table, row = self._general_row(element, number)
            known = columns.get(table)
            if known is None:
                if len(columns) >= self._max_columns:
                    raise ResponseParseError(
                        f"{self._what} holds more than {self._max_columns} tables "
                        f"(row {number}; max_columns)"
                    )
                known = columns[table] = dict.fromkeys(row)
            elif row.keys() != known.keys():
                for name in row:
                    known.setdefault(name)
                if len(row) != len(known):
                    row = {name: row.get(name) for name in known}
            if len(known) > self._max_columns:
                raise ResponseParseError(
                    f"table {table!r} of {self._what} has more than {self._max_columns} "
                    f"columns (row {number}; max_columns)"
                )
            ready.append((table, row))
        self._rows_seen = number

    def _local(self, element: Element, prefixes: set[str]) -> str:
        """``element``'s name without its prefix, after checking that the prefix, and
        those of its attributes, are declared in scope."""
        for key in element.attrib:
            if ":" in key and not key.startswith("xmlns:"):
                self._unprefixed(key, prefixes)
        return self._unprefixed(element.tag, prefixes)

    def _unprefixed(self, name: str, prefixes: set[str]) -> str:
        if ":" not in name:
            self._plain.add(name)
            return name
        prefix, _, local = name.partition(":")
        if prefix not in prefixes:
            raise ResponseParseError(f"malformed XML in {self._what}: unbound prefix in <{name}>")
        return local

    def _general_row(self, element: Element, number: int) -> tuple[str, Row]:
        """Row ``number`` by every rule, each failure named: columns given as attributes
        of the row element, prefixed names, and the checks of the usual path."""
        what = self._what
        prefixes = self._root_prefixes | _declared(element)
        table = self._local(element, prefixes)
        _outside(element.text, what)
        # Columns written as attributes of the row element; namespace declarations
        # and prefixed ones (xsi:, msdata:, diffgr:) are markup.
        row: Row = {k: v for k, v in element.items() if ":" not in k and k != "xmlns"}
        for column in element:
            name = self._local(column, prefixes | _declared(column))
            if len(column):
                raise ResponseParseError(
                    f"unexpected element <{column[0].tag}> inside column {name!r} of "
                    f"{table!r} row {number} in {what}"
                )
            if name in row:
                raise ResponseParseError(
                    f"column {name!r} appears twice in {table!r} row {number} in {what}"
                )
            row[name] = column.text or ""
            _outside(column.tail, what)
        _outside(element.tail, what)
        return table, row


_HEAD, _FAST, _EXPAT = "head", "fast", "expat"
_LONGEST_REFERENCE = 16
"""Bytes from a ``&`` to its ``;`` at the most (``&#x0010FFFF;`` is 12): text carried
to the next chunk while a reference is incomplete never grows past this."""
_HEAD_LIMIT = 1 << 16
_ENCODING_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_REFERENCE = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#x([0-9A-Fa-f]+)|#([0-9]+));|&")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


class _HeadDone(Exception):
    """The root start tag has been read: the head parser has done its job."""


def _reference(match: re.Match[str]) -> str:
    named, hexadecimal, decimal = match.groups()
    if named:
        return _NAMED[named]
    if hexadecimal is None and decimal is None:
        near = match.string[match.start() : match.start() + 12]
        raise ResponseParseError(f"undefined or malformed entity reference near {near!r}")
    code = int(hexadecimal, 16) if hexadecimal else int(decimal)
    char = chr(code) if code <= 0x10FFFF else "\x00"
    if _FORBIDDEN.match(char):
        raise ResponseParseError(f"character reference {match.group()!r} is not an XML character")
    return char


def _unescape(text: bytes) -> bytes:
    """UTF-8 XML text with its references resolved: the common ones with
    ``bytes.replace`` (``&amp;`` last, so that ``&amp;lt;`` stays ``&lt;``), any other
    through a regular expression."""
    if b"&" not in text:
        return text
    if b"\0" in text:
        raise ResponseParseError("a NUL byte in the text of the answer (not an XML character)")
    # A replacement as long as what it replaces is made in place, in one pass; the NUL
    # padding (no XML text holds one) then goes in one pass of translate.
    text = (
        text.replace(b"&lt;", b"<\0\0\0")
        .replace(b"&gt;", b">\0\0\0")
        .replace(b"&#xD;", b"\r\0\0\0\0")
        .translate(None, b"\0")
    )
    if b"&" not in text:
        return text
    if text.count(b"&") == text.count(b"&amp;"):
        return text.replace(b"&amp;", b"&")
    return _REFERENCE.sub(_reference, text.decode("utf-8", "surrogateescape")).encode(
        "utf-8", "surrogateescape"
    )


def _start_tag_end(head: bytes, start: int) -> int:
    """The offset just past the ``>`` of the start tag beginning at ``start``."""
    quote = 0
    for offset in range(start, len(head)):
        byte = head[offset]
        if quote:
            if byte == quote:
                quote = 0
        elif byte in (0x22, 0x27):
            quote = byte
        elif byte == 0x3E:
            return offset + 1
    raise ResponseParseError("the root start tag never ends")  # pragma: no cover


class DataSetParser:
    """Parses a GetAllData answer incrementally: feed it bytes as they arrive, collect
    the rows it returns.

    The answer is an outer ``<string>`` document whose text is the escaped inner DataSet
    document; the outer text is forwarded into the inner parser as it is decoded, so
    neither document is ever held whole. Rows of every table are returned as
    ``(table, row)``; each row holds every column seen so far in its table.

    The outer document's head (declaration, any DTD — refused —, root start tag) is
    read by a defusedxml parser. Its text, in the usual UTF-8 answer, is then unescaped
    with string operations, several times faster than expat's reference handling;
    anything else inside it (a comment, CDATA, the end tag) hands the rest of the
    document to the defusedxml parser, so every answer is parsed by the same rules.
    """

    def __init__(self, what: str = "the data answer", max_columns: int = MAX_COLUMNS) -> None:
        self._what = what
        self._ready: list[tuple[str, Row]] = []
        self._inner = _TableBuilder(self._ready, what, max_columns)
        self._depth = 0
        self._root_seen = False
        self._mode = _HEAD
        self._head = bytearray()
        self._start_tag = b""
        self._carry = b""
        self._tail = b""  # the last bytes of text forwarded, to find a "]]>" split in two
        self._guard = _TokenGuard()  # of the outer document, once expat reads it
        self._owner, self._outer = self._expat()
        self._outer.StartElementHandler = self._head_start

    def _expat(self) -> tuple[DefusedXMLParser, Any]:
        owner, parser = _defused_expat(None, namespaces=False)
        parser.buffer_size = 1 << 16
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._data
        return owner, parser

    @property
    def columns(self) -> Mapping[str, Iterable[str]]:
        """The columns seen so far, per table, in the order they first appeared."""
        return self._inner.columns

    def _check_root(self, name: str, attributes: dict[str, str]) -> None:
        prefix, _, local = name.rpartition(":")
        namespace = attributes.get(f"xmlns:{prefix}" if prefix else "xmlns")
        if local != "string" or namespace != SERIALIZATION_NS:
            raise ResponseParseError(
                f"{self._what} is not a serialized string document "
                f"(root element <{name}> in namespace {namespace!r})"
            )
        self._root_seen = True

    def _head_start(self, name: str, attributes: dict[str, str]) -> None:
        self._check_root(name, attributes)
        raise _HeadDone(self._outer.CurrentByteIndex)

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 1:
            self._check_root(name, attributes)
        else:
            raise ResponseParseError(
                f"unexpected element <{name}> inside the string in {self._what}"
            )

    def _end(self, _name: str) -> None:
        self._depth -= 1

    def _data(self, text: str) -> None:
        if self._depth == 1:
            self._inner.feed(text)

    def _to_expat(self, rest: bytes) -> None:
        """Parse from here on with a defusedxml parser: ``rest`` (what follows the text
        forwarded so far) after the root start tag, or the whole head."""
        self._mode = _EXPAT
        self._owner, self._outer = self._expat()
        if self._start_tag:
            self._outer.Parse(self._start_tag, False)
        self._outer.Parse(rest, False)
        self._guard.fed(self._outer, len(rest), self._what)

    def _feed_head(self, chunk: bytes) -> None:
        self._head += chunk
        try:
            self._outer.Parse(chunk, False)
        except _HeadDone as done:
            head = bytes(self._head)
            self._head = bytearray()
            start = int(done.args[0])
            end = _start_tag_end(head, start)
            declared = _ENCODING_DECL.match(head)
            utf8 = (declared is None or declared.group(1).lower() in (b"utf-8", b"utf8")) and (
                not head.startswith((b"\xff\xfe", b"\xfe\xff"))
            )
            if not utf8 or head[end - 2 : end - 1] == b"/":
                self._start_tag = b""
                self._to_expat(head)  # other encodings, or an empty <string/>
                return
            self._start_tag = head[:end]
            self._mode = _FAST
            self._feed_fast(head[end:])
            return
        if len(self._head) > _HEAD_LIMIT:
            head, self._head = bytes(self._head), bytearray()
            self._to_expat(head)

    def _feed_fast(self, chunk: bytes, final: bool = False) -> None:
        text = self._carry + chunk if self._carry else chunk
        self._carry = b""
        markup = text.find(b"<")
        if markup >= 0:
            self._forward(text[:markup], final=True)
            self._to_expat(text[markup:])
            return
        self._forward(text, final)

    def _forward(self, text: bytes, final: bool) -> None:
        """Send raw outer text (UTF-8) to the inner parser: line ends normalised as XML
        does, references resolved; an incomplete reference or CR waits for the next
        chunk."""
        if not final:
            amp = text.rfind(b"&")
            if amp >= 0 and text.find(b";", amp) < 0:
                if len(text) - amp > _LONGEST_REFERENCE:  # never carried on and on
                    near = text[amp : amp + 12].decode("utf-8", "replace")
                    raise ResponseParseError(
                        f"malformed XML in {self._what}: an unterminated reference near {near!r}"
                    )
                text, self._carry = text[:amp], text[amp:]
            elif text.endswith(b"\r"):
                text, self._carry = text[:-1], b"\r"
        # A literal ">" is rare in serialized text: look for "]]>" only around one.
        if (b">" in text and b"]]>" in text) or b"]]>" in self._tail + text[:2]:
            raise ResponseParseError(f"malformed XML in {self._what}: ']]>' in text")
        self._tail = (self._tail + text)[-2:]
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if text:
            self._inner.feed(_unescape(text))

    def feed(self, chunk: bytes) -> list[tuple[str, Row]]:
        """Parse the next bytes of the answer; return the rows they completed."""
        try:
            if self._mode is _FAST:
                self._feed_fast(chunk)
            elif self._mode is _EXPAT:
                self._outer.Parse(chunk, False)
                self._guard.fed(self._outer, len(chunk), self._what)
            else:
                self._feed_head(chunk)
        except (expat.ExpatError, ValueError) as exc:
            raise _parse_failure(exc, self._what) from None
        ready = self._ready[:]
        self._ready.clear()
        return ready

    def close(self) -> list[tuple[str, Row]]:
        """End of the answer: check that both documents are complete; return the last
        rows."""
        try:
            if self._mode is _FAST:
                self._feed_fast(b"", final=True)
            if self._mode is _FAST:
                raise ResponseParseError(
                    f"malformed XML in {self._what}: it ends before </string> (a truncated answer)"
                )
            if self._mode is _HEAD:
                head, self._head = bytes(self._head), bytearray()
                self._to_expat(head)
            self._outer.Parse(b"", True)
        except (expat.ExpatError, ValueError) as exc:
            raise _parse_failure(exc, self._what) from None
        if not self._root_seen:
            raise ResponseParseError(f"{self._what} is empty")
        if self._inner.started:
            self._inner.feed("", final=True)
        ready = self._ready[:]
        self._ready.clear()
        return ready


def _group(tables: dict[str, list[Row]], rows: Iterable[tuple[str, Row]]) -> None:
    """Add ``(table, row)`` pairs to ``tables``, each row under its table."""
    for table, row in rows:
        found = tables.get(table)
        if found is None:
            found = tables[table] = []
        found.append(row)


def _complete(tables: dict[str, list[Row]], columns: Mapping[str, Iterable[str]]) -> None:
    """Give every row every column of its table (``None`` where it had no element)."""
    for table, rows in tables.items():
        names = list(columns[table])
        width = len(names)
        for index, row in enumerate(rows):
            if len(row) != width:
                rows[index] = {name: row.get(name) for name in names}


class DataSetCollector:
    """Builds a whole ``DataSet`` from an answer fed chunk by chunk (the answer itself is
    never held whole)."""

    def __init__(self, what: str = "the data answer", max_columns: int = MAX_COLUMNS) -> None:
        self._parser = DataSetParser(what, max_columns)
        self._tables: dict[str, list[Row]] = {}

    def feed(self, chunk: bytes) -> None:
        _group(self._tables, self._parser.feed(chunk))

    def close(self) -> DataSet:
        _group(self._tables, self._parser.close())
        _complete(self._tables, self._parser.columns)
        return DataSet(tables=self._tables)


def parse_data_set(
    body: bytes, what: str = "the data answer", max_columns: int = MAX_COLUMNS
) -> DataSet:
    """A whole GetAllData answer as a ``DataSet``."""
    collector = DataSetCollector(what, max_columns)
    step = 1 << 20  # slices bound the copies the text fast path makes
    for start in range(0, len(body), step):
        collector.feed(body[start : start + step])
    return collector.close()


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
    ready: list[tuple[str, Row]] = []
    builder = _TableBuilder(ready, what)
    builder.feed(text, final=True)
    _group(tables, ready)
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
