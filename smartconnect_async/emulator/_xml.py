"""The XML of the wire: the streamed .NET-serialised DataSet, the errors table, answers
as DataContract XML, posted XML.

Posted XML is parsed with defusedxml and DTDs refused outright.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as _defused

from ._data import Row

SERIALIZATION_NS = "http://schemas.microsoft.com/2003/10/Serialization/"
"""Namespace of the outer ``<string>`` of a .NET-serialised string."""

OUTER_OPEN = f'<string xmlns="{SERIALIZATION_NS}">'
OUTER_CLOSE = "</string>"
_NL = "&#xD;\n"  # the inner document's CRLF as the outer document carries it
CHUNK_SIZE = 64 * 1024

ParsedRow = dict[str, str]
Tables = dict[str, list[ParsedRow]]
"""Posted rows grouped by row element name, in document order."""


class XmlBodyError(ValueError):
    """A posted XML body that cannot be accepted; the message is the 400 answer."""


def escape_text(text: str) -> str:
    """Escape text content the way .NET's XmlWriter does (``&``, ``<``, ``>``, CR)."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")
    )


def _row_xml(row_open: str, formats: list[tuple[str, str, str]], row_close: str, row: Row) -> str:
    """One row of the escaped inner document: nulls left out, empties as ``<Col />``,
    values in CDATA split around ``]]>``, then escaped for the outer document."""
    buf = [row_open]
    for (open_, close, empty), value in zip(formats, row, strict=False):
        if value is None:
            continue
        if not value:
            buf.append(empty)
            continue
        if "&" in value or "<" in value or ">" in value or "\r" in value:
            value = escape_text(value.replace("]]>", "]]]]><![CDATA[>"))
        buf.append(f"{open_}{value}{close}")
    buf.append(row_close)
    return "".join(buf)


def iter_dataset_xml(
    dataset: str,
    tables: Iterable[tuple[str, Sequence[str], Iterable[Row]]],
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """The GetAllData answer, in chunks of about ``chunk_size`` bytes, generated lazily.

    ``tables`` holds ``(row element name, columns, rows)``; rows are written table by
    table, as .NET's ``DataSet.WriteXml`` does. A data set without rows is written as
    an empty element (``<MyDataSet />``).
    """
    parts: list[str] = []
    size = 0
    started = False
    for name, columns, rows in tables:
        row_open = f"  &lt;{name}&gt;{_NL}"
        row_close = f"  &lt;/{name}&gt;{_NL}"
        formats = [
            (f"    &lt;{c}&gt;&lt;![CDATA[", f"]]&gt;&lt;/{c}&gt;{_NL}", f"    &lt;{c} /&gt;{_NL}")
            for c in columns
        ]
        # Fast path for the common row (every value present, non-empty, nothing to escape).
        template = (
            row_open.replace("%", "%%")
            + "".join(f"{o.replace('%', '%%')}%s{c.replace('%', '%%')}" for o, c, _ in formats)
            + row_close.replace("%", "%%")
        )
        width = len(columns)
        for row in rows:
            if not started:
                started = True
                parts.append(f"{OUTER_OPEN}&lt;{dataset}&gt;{_NL}")
            text = None
            if len(row) == width and all(row):  # every value present and non-empty
                joined = "".join(row)  # type: ignore[arg-type]
                if not ("&" in joined or "<" in joined or ">" in joined or "\r" in joined):
                    text = template % row
            if text is None:
                text = _row_xml(row_open, formats, row_close, row)
            parts.append(text)
            size += len(text)
            if size >= chunk_size:
                yield "".join(parts).encode()
                parts.clear()
                size = 0
    if started:
        parts.append(f"&lt;/{dataset}&gt;{OUTER_CLOSE}")
    else:
        parts.append(f"{OUTER_OPEN}&lt;{dataset} /&gt;{OUTER_CLOSE}")
    yield "".join(parts).encode()


def errors_table(errors: Iterable[tuple[int, str, str]]) -> str:
    """The ``Errors`` field of a RunMapResponse: an XML-escaped errors data table.

    Unescaped, it reads ``<DocumentElement><Errors><RowNumber>2</RowNumber>
    <ColumnName>AccountNumber</ColumnName><Message>…</Message></Errors>…
    </DocumentElement>``; no errors give the empty string.
    """
    rows = "".join(
        f"<Errors><RowNumber>{row}</RowNumber><ColumnName>{escape_text(column)}</ColumnName>"
        f"<Message>{escape_text(message)}</Message></Errors>"
        for row, column, message in errors
    )
    return escape_text(f"<DocumentElement>{rows}</DocumentElement>") if rows else ""


DATA_CONTRACT_NS = "http://schemas.datacontract.org/2004/07/SmartConnect.Models"
"""Namespace of the answers' data contracts. An assumption, like the contract names
(``MapInfo``, ``MapColumn``, ``ValidationError``; only ``RunMapResponse`` is the
vendor's): the vendor documents the JSON answers only."""
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_ITEM_CONTRACTS = {"ValidationErrors": "ValidationError"}
"""Contract names of the items of list members."""


def data_contract_xml(value: Any, contract: str = "") -> str:
    """A JSON answer as ASP.NET's XmlMediaTypeFormatter writes it (DataContractSerializer).

    A string or boolean is ``<string>`` / ``<boolean>`` in the serialisation namespace;
    an object is an element named ``contract`` with a child per member, in ordinal
    order; a list is ``ArrayOf{contract}`` with one ``contract`` element per item.
    Numbers are written as they are (RunMapResponse ``Status`` too: the vendor does not
    name RunMapStatus's members).
    """
    if isinstance(value, (str, bool)):
        name = "boolean" if isinstance(value, bool) else "string"
        return _element(name, value, "", f' xmlns="{SERIALIZATION_NS}"')
    root = f"ArrayOf{contract}" if isinstance(value, list) else contract
    return _element(root, value, contract, f' xmlns:i="{_XSI_NS}" xmlns="{DATA_CONTRACT_NS}"')


def _element(name: str, value: Any, item: str, attributes: str = "") -> str:
    if isinstance(value, list):
        content = "".join(_element(item, member, "") for member in value)
    elif isinstance(value, dict):
        content = "".join(
            _element(key, value[key], _ITEM_CONTRACTS.get(key, "")) for key in sorted(value)
        )
    elif isinstance(value, bool):
        content = "true" if value else "false"
    else:
        content = escape_text(str(value))
    return f"<{name}{attributes}>{content}</{name}>" if content else f"<{name}{attributes} />"


def _local(tag: Any) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _parse(body: bytes | str, what: str) -> Element:
    try:
        root: Element = _defused.fromstring(body, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise XmlBodyError(f"{what}: a DTD is not allowed.") from None
    except defusedxml.EntitiesForbidden:
        raise XmlBodyError(f"{what}: entity declarations are not allowed.") from None
    except defusedxml.ExternalReferenceForbidden:
        raise XmlBodyError(f"{what}: external references are not allowed.") from None
    except (ParseError, LookupError, ValueError) as exc:  # ValueError, LookupError: encodings
        raise XmlBodyError(f"{what} is not well-formed XML: {exc}.") from None
    return root


def _rows(container: Element, what: str) -> Tables:
    tables: Tables = {}
    for number, element in enumerate(container, start=1):
        row: ParsedRow = {}
        for cell in element:
            if len(cell):
                raise XmlBodyError(
                    f"{what}: column '{_local(cell.tag)}' of row {number} holds elements; "
                    "a column holds text."
                )
            row[_local(cell.tag)] = cell.text or ""
        tables.setdefault(_local(element.tag), []).append(row)
    return tables


def _request_data(body: bytes) -> Element:
    if not body.strip():
        raise XmlBodyError("The request body is empty; expected <RequestData>.")
    root = _parse(body, "The request body")
    if _local(root.tag) != "RequestData":
        raise XmlBodyError(f"Expected a <RequestData> document, got <{_local(root.tag)}>.")
    return root


def parse_data_table(body: bytes) -> Tables:
    """Rows of a runmapdatatable body: ``<RequestData><Table>…</Table>…</RequestData>``."""
    return _rows(_request_data(body), "RequestData")


def parse_run_xml(body: bytes) -> tuple[dict[str, str], Tables]:
    """Variables and rows of a runmapxml body.

    The body is ``<RequestData><Variables/><Xml>ESCAPED</Xml></RequestData>``, ESCAPED
    being the XML-escaped text of ``<DataSet><Table>…</Table></DataSet>``. Variables are
    child elements of ``<Variables>`` each holding ``<Key>`` and ``<Value>``.
    """
    root = _request_data(body)
    variables: dict[str, str] = {}
    xml: Element | None = None
    for child in root:
        name = _local(child.tag)
        if name == "Variables":
            for variable in child:
                fields = {_local(f.tag): f.text or "" for f in variable}
                if "Key" not in fields:
                    raise XmlBodyError("Each variable in <Variables> needs a <Key>.")
                variables[fields["Key"]] = fields.get("Value", "")
        elif name == "Xml":
            xml = child
    if xml is None:
        raise XmlBodyError("RequestData has no <Xml> element.")
    if len(xml):
        raise XmlBodyError(
            "The <Xml> element holds elements; it must hold the XML-escaped text of the data set."
        )
    if not (xml.text or "").strip():
        raise XmlBodyError("The <Xml> element is empty; expected an escaped <DataSet>.")
    return variables, _rows(_parse(xml.text or "", "The data set in <Xml>"), "DataSet")
