"""_xml.py: parsing data-set answers and error tables (safely, incrementally) and building
the XML payloads of data-table and XML runs. Pure functions: no event loop."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import defusedxml.ElementTree as DET
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from unit_support import (
    GETALLDATA_XML,
    REFERENCE_ROW,
    SERIALIZATION_NS,
    data_answer,
    net_escape,
    table_xml,
)

from smartconnect_async import DataSet, ResponseParseError, Row
from smartconnect_async._xml import (
    LONGEST_TOKEN,
    MAX_COLUMNS,
    DataSetParser,
    build_data_table,
    build_xml_request,
    escape_text,
    parse_data_set,
    parse_error_table,
)

OUTER_OPEN = f'<string xmlns="{SERIALIZATION_NS}">'

# ---- parse_data_set: the reference example and the data-set rules -------------------


def test_reference_getalldata_example() -> None:
    data = parse_data_set(GETALLDATA_XML)
    assert data == DataSet(tables={"Table01": [REFERENCE_ROW]})
    assert list(data.tables["Table01"][0]) == list(REFERENCE_ROW)  # column order kept
    assert data.rows == [REFERENCE_ROW]


def test_several_tables_keep_their_order_and_rows() -> None:
    inner = table_xml(
        {
            "Customers": [{"Id": "1", "Name": "A"}, {"Id": "2", "Name": "B"}],
            "Addresses": [{"Id": "1", "City": "Denver"}],
        }
    )
    data = parse_data_set(data_answer(inner))
    assert list(data.tables) == ["Customers", "Addresses"]
    assert data.tables["Customers"] == [{"Id": "1", "Name": "A"}, {"Id": "2", "Name": "B"}]
    assert data.tables["Addresses"] == [{"Id": "1", "City": "Denver"}]
    assert data.rows == data.tables["Customers"]


def test_absent_column_is_none_present_but_empty_is_empty_string() -> None:
    inner = (
        "<DS>"
        "<T><A>1</A><B/></T>"  # B empty (self-closed)
        "<T><A></A></T>"  # A empty, B absent
        "<T><A><![CDATA[]]></A><B>2</B><C>3</C></T>"  # C first appears in row 3
        "</DS>"
    )
    rows = parse_data_set(data_answer(inner)).rows
    assert rows == [
        {"A": "1", "B": "", "C": None},
        {"A": "", "B": None, "C": None},
        {"A": "", "B": "2", "C": "3"},
    ]
    assert all(list(row) == ["A", "B", "C"] for row in rows)


@pytest.mark.parametrize(
    "value",
    [
        "  leading",
        "trailing  ",
        " ",
        "\t",
        "a\tb",
        "two\nlines\n",
        "\n\n",
        "  spaced  out  ",
    ],
)
def test_whitespace_is_preserved_exactly(value: str) -> None:
    data = parse_data_set(data_answer(table_xml({"T": [{"V": value, "W": "x"}]})))
    assert data.rows == [{"V": value, "W": "x"}]


@pytest.mark.parametrize("value", ["a]]>b", "]]>", "]]>]]>", "x]]", "]]>>"])
def test_cdata_split_around_terminator(value: str) -> None:
    inner = table_xml({"T": [{"V": value}]})
    assert "]]]]><![CDATA[>" in inner or "]]>" not in value
    assert parse_data_set(data_answer(inner)).rows == [{"V": value}]


def test_vendor_split_cdata_literal() -> None:
    inner = "<DS><T><V><![CDATA[a]]]]><![CDATA[>b]]></V></T></DS>"
    assert parse_data_set(data_answer(inner)).rows == [{"V": "a]]>b"}]


def test_carriage_returns_as_character_references_survive() -> None:
    # The outer document carries the inner line ends as &#xD;; a CR inside a value is a
    # character reference in the inner document (&amp;#xD; in the outer).
    body = (
        OUTER_OPEN + "&lt;DS&gt;&#xD;\n  &lt;T&gt;&#xD;\n"
        "    &lt;V&gt;line1&amp;#xD;\nline2&amp;#xD;&lt;/V&gt;&#xD;\n"
        "  &lt;/T&gt;&#xD;\n&lt;/DS&gt;</string>"
    ).encode()
    assert parse_data_set(body).rows == [{"V": "line1\r\nline2\r"}]


def test_markup_characters_in_values() -> None:
    values = {"A": "R&D <ok> \"q\" 'a'", "B": "&amp; is literal", "C": "<![CDATA[x"}
    inner = "<DS><T>" + "".join(f"<{k}>{net_escape(v)}</{k}>" for k, v in values.items())
    inner += "</T></DS>"
    assert parse_data_set(data_answer(inner)).rows == [values]


def test_non_ascii_values() -> None:
    row = {"Name": "Müller & Søn ✓", "Emoji": "😀", "Jp": "日本語"}
    assert parse_data_set(data_answer(table_xml({"T": [row]}))).rows == [row]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_inner_xml_declaration_is_accepted(encoding: str) -> None:
    inner = f'<?xml version="1.0" encoding="{encoding}"?>\r\n' + table_xml({"T": [{"V": "é"}]})
    assert parse_data_set(data_answer(inner)).rows == [{"V": "é"}]


def test_namespaced_inner_document_uses_local_names() -> None:
    inner = '<DS xmlns="urn:x"><T><V>1</V></T></DS>'
    assert parse_data_set(data_answer(inner)).tables == {"T": [{"V": "1"}]}


@pytest.mark.parametrize(
    "body",
    [
        data_answer("<MyDataSet />"),
        data_answer("<MyDataSet>\r\n</MyDataSet>"),
        f"{OUTER_OPEN}</string>".encode(),
        f'<string xmlns="{SERIALIZATION_NS}" />'.encode(),
        b'<?xml version="1.0" encoding="utf-8"?>\n' + data_answer("<DS/>"),
    ],
)
def test_empty_data_set(body: bytes) -> None:
    data = parse_data_set(body)
    assert data.tables == {}
    assert data.rows == []


def test_byte_order_mark_and_whitespace_around_outer_document() -> None:
    body = b"\xef\xbb\xbf" + GETALLDATA_XML + b"\r\n"
    assert parse_data_set(body).rows == [REFERENCE_ROW]


# ---- hostile and broken answers -----------------------------------------------------

BILLION_LAUGHS_OUTER = (
    b'<?xml version="1.0"?>\n<!DOCTYPE string [\n'
    b' <!ENTITY lol "lol">\n'
    b' <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    b' <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n'
    b' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    b"]>\n" + OUTER_OPEN.encode() + b"&lol3;</string>"
)
EXTERNAL_ENTITY_OUTER = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE string [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + OUTER_OPEN.encode()
    + b"&xxe;</string>"
)
EXTERNAL_DTD_OUTER = b'<!DOCTYPE string SYSTEM "http://attacker.invalid/evil.dtd">' + data_answer(
    "<DS/>"
)
BILLION_LAUGHS_INNER = data_answer(
    '<!DOCTYPE DS [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><DS><T><V>&c;</V></T></DS>'
)
EXTERNAL_ENTITY_INNER = data_answer(
    '<!DOCTYPE DS [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><DS><T><V>&xxe;</V></T></DS>'
)
EXTERNAL_DTD_INNER = data_answer('<!DOCTYPE DS SYSTEM "http://attacker.invalid/x.dtd"><DS/>')

HOSTILE = {
    "billion-laughs-outer": BILLION_LAUGHS_OUTER,
    "external-entity-outer": EXTERNAL_ENTITY_OUTER,
    "external-dtd-outer": EXTERNAL_DTD_OUTER,
    "billion-laughs-inner": BILLION_LAUGHS_INNER,
    "external-entity-inner": EXTERNAL_ENTITY_INNER,
    "external-dtd-inner": EXTERNAL_DTD_INNER,
}

BROKEN = {
    "truncated-outer": GETALLDATA_XML[: len(GETALLDATA_XML) // 2],
    "truncated-last-byte": GETALLDATA_XML[:-1],
    "inner-unclosed": data_answer("<DS><T><V>1</V></T>"),
    "inner-mismatched": data_answer("<DS><T><V>1</W></T></DS>"),
    "inner-undefined-entity": data_answer("<DS><T><V>&nbsp;</V></T></DS>"),
    "inner-unbound-prefix": data_answer("<DS><T><x:V>1</x:V></T></DS>"),
    "inner-two-roots": data_answer("<DS/><DS/>"),
    "inner-not-xml": data_answer("Object reference not set to an instance of an object."),
    "inner-nested-element": data_answer("<DS><T><V><b>bold</b></V></T></DS>"),
    "inner-text-outside-column": data_answer("<DS><T>loose text<V>1</V></T></DS>"),
    "inner-text-in-root": data_answer("<DS>loose</DS>"),
    "inner-duplicate-column": data_answer("<DS><T><V>1</V><V>2</V></T></DS>"),
    "outer-wrong-root": b"<MyDataSet><Table01><A>1</A></Table01></MyDataSet>",
    "outer-without-namespace": b"<string>&lt;DS/&gt;</string>",
    "outer-child-element": OUTER_OPEN.encode() + b"<DS/></string>",
    "html-page": b"<!DOCTYPE html><html><body>Server Error</body></html>",
    "json": b'["not", "xml"]',
    "empty": b"",
    "whitespace": b" \r\n ",
    "invalid-utf8": OUTER_OPEN.encode() + b"\xff\xfe</string>",
    "junk-after-root": GETALLDATA_XML + b"<string/>",
}


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_xml_is_refused(body: bytes) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_data_set(body)
    assert type(info.value) is ResponseParseError
    assert "hostile" in str(info.value) or "DTD" in str(info.value)
    assert "lol" not in str(info.value)
    assert "root:" not in str(info.value)  # nothing of /etc/passwd


@pytest.mark.parametrize("body", list(BROKEN.values()), ids=list(BROKEN))
def test_broken_answers_raise_response_parse_error(body: bytes) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_data_set(body)
    assert type(info.value) is ResponseParseError
    assert info.value.__cause__ is None


def test_parse_error_names_what_was_parsed() -> None:
    with pytest.raises(ResponseParseError, match="the GetAllData answer for map X"):
        parse_data_set(b"<html/>", "the GetAllData answer for map X")


# ---- rows that leave the usual shape: DataSet markup, and the errors named ------------

DIFFGRAM = (
    '<NewDataSet xmlns:msdata="urn:schemas-microsoft-com:xml-msdata">'
    '<Table01 msdata:rowOrder="0" Extra="from attribute">'
    "<A>1</A><B/></Table01>"
    '<Table01 xmlns:x="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<x:A>2</x:A><B xsi:nil="true"/></Table01>'
    "<Table01><A>3</A><B>b</B></Table01>"
    '<y:Table01 xmlns:y="urn:y"><A>4</A></y:Table01>'
    "</NewDataSet>"
)


def test_dataset_markup_is_read_as_plain_columns() -> None:
    # Attributes of a row element are columns, except namespace declarations and
    # prefixed markup; declared prefixes are dropped from element names.
    assert parse_data_set(data_answer(DIFFGRAM)).tables == {
        "Table01": [
            {"Extra": "from attribute", "A": "1", "B": ""},
            {"Extra": None, "A": "2", "B": ""},
            {"Extra": None, "A": "3", "B": "b"},
            {"Extra": None, "A": "4", "B": None},
        ]
    }


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (
            "<DS><T><V>1</V></T><T><V>2</V><W><b>x</b></W></T></DS>",
            "unexpected element <b> inside column 'W' of 'T' row 2 in the answer",
        ),
        (
            "<DS><T><V>1</V></T><T><V>2</V></T><T><V>3</V><V>4</V></T></DS>",
            "column 'V' appears twice in 'T' row 3 in the answer",
        ),
        ('<DS><T A="1"><A>2</A></T></DS>', "column 'A' appears twice in 'T' row 1"),
        ("<DS><T><V>1</V> stray</T></DS>", "unexpected text ' stray' outside a column"),
        ("<DS><T><V>1</V></T>after</DS>", "unexpected text 'after' outside a column"),
        ("<DS>before<T><V>1</V></T></DS>", "unexpected text 'before' outside a column"),
        ("<DS><T><x:V>1</x:V></T></DS>", "unbound prefix in <x:V>"),
        ('<DS><T><V x:a="1">1</V></T></DS>', "unbound prefix in <x:a>"),
        ("<x:DS><T><V>1</V></T></x:DS>", "unbound prefix in <x:DS>"),
        ('<DS><T xmlns:x="urn:x"><V>1</V></T><T><x:V>2</x:V></T></DS>', "unbound prefix in <x:V>"),
    ],
)
def test_rows_out_of_shape_are_named(inner: str, message: str) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_data_set(data_answer(inner), "the answer")
    assert message in str(info.value)
    assert type(info.value) is ResponseParseError


@pytest.mark.parametrize(
    "text", ["&lt;DS&gt;\x00&lt;/DS&gt;", "\x00&lt;DS/&gt;", "&lt;DS/&gt;\x00", "&lt;DS/\x00&gt;"]
)
def test_nul_byte_in_the_outer_text_is_refused(text: str) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_data_set(f"{OUTER_OPEN}{text}</string>".encode())
    assert type(info.value) is ResponseParseError


def test_large_answer_with_long_values_matches_a_full_parse() -> None:
    # Rows and values longer than the pieces the inner parser is fed in.
    rows: list[dict[str, str | None]] = [
        {"No": str(i), "Text": ("é<&>" * (20_000 if i % 500 == 7 else 3)) + str(i)}
        for i in range(3_000)
    ]
    body = data_answer(table_xml({"Row": rows}))
    assert parse_data_set(body).rows == rows
    assert _feed_in_chunks(body, 65_536) == rows
    assert _feed_in_chunks(body, 9_999) == rows


# ---- DataSetParser: incremental parsing ---------------------------------------------


def _many_rows(count: int) -> tuple[bytes, list[dict[str, str | None]]]:
    rows: list[dict[str, str | None]] = [
        {"No": str(i), "Name": f"Customer ü{i} & <Co>", "Note": "]]>" if i % 7 == 0 else " "}
        for i in range(count)
    ]
    return data_answer(table_xml({"Row": rows})), rows


def test_parser_fed_one_byte_at_a_time_returns_rows_as_they_complete() -> None:
    body, expected = _many_rows(30)
    parser = DataSetParser()
    got: list[tuple[str, dict[str, str | None]]] = []
    first_row_at: int | None = None
    for i in range(len(body)):
        ready = parser.feed(body[i : i + 1])
        if ready and first_row_at is None:
            first_row_at = i
        got.extend(ready)
    got.extend(parser.close())
    assert [row for _, row in got] == expected
    assert {table for table, _ in got} == {"Row"}
    assert first_row_at is not None
    assert first_row_at < len(body) // 10  # the first row came long before the end
    assert list(parser.columns["Row"]) == ["No", "Name", "Note"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 1 << 20])
def test_chunking_does_not_change_the_result(size: int) -> None:
    body, expected = _many_rows(12)
    assert _feed_in_chunks(body, size) == expected
    assert parse_data_set(body).rows == expected


def test_streamed_row_holds_only_columns_seen_so_far() -> None:
    parser = DataSetParser()
    rows = parser.feed(data_answer("<DS><T><A>1</A></T><T><A>2</A><B>x</B></T></DS>"))
    rows += parser.close()
    assert [row for _, row in rows] == [{"A": "1"}, {"A": "2", "B": "x"}]


def test_parser_close_detects_truncation() -> None:
    parser = DataSetParser()
    parser.feed(GETALLDATA_XML[:-20])
    with pytest.raises(ResponseParseError):
        parser.close()


def _feed_in_chunks(body: bytes, size: int) -> list[dict[str, str | None]]:
    parser = DataSetParser()
    rows: list[dict[str, str | None]] = []
    for i in range(0, len(body), size):
        rows.extend(row for _, row in parser.feed(body[i : i + size]))
    rows.extend(row for _, row in parser.close())
    return rows


@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_incremental_parser_refuses_hostile_xml(body: bytes, size: int) -> None:
    # However the answer is cut, a DTD is refused as such before anything in it is used.
    with pytest.raises(ResponseParseError) as info:
        _feed_in_chunks(body, size)
    assert "hostile" in str(info.value) or "DTD" in str(info.value)
    assert "aaaaaaaaaa" not in str(info.value)


def test_inner_dtd_after_a_long_prolog_is_refused() -> None:
    # However long the prolog before it, the DTD is refused, whatever the cut.
    prolog = "<!--" + "x" * 40_000 + "-->\r\n<?pi data?>"
    inner = prolog + '<!DOCTYPE DS [<!ENTITY a "aaaaaaaaaa">]><DS><T><V>&a;</V></T></DS>'
    for size in (1000, 1 << 20):
        with pytest.raises(ResponseParseError, match="refused hostile XML") as info:
            _feed_in_chunks(data_answer(inner), size)
        assert "aaaaaaaaaa" not in str(info.value)


def test_dtd_inside_the_inner_root_is_malformed() -> None:
    inner = '<DS><!DOCTYPE DS [<!ENTITY a "aaaaaaaaaa">]><T><V>&a;</V></T></DS>'
    with pytest.raises(ResponseParseError, match="malformed XML") as info:
        parse_data_set(data_answer(inner))
    assert "aaaaaaaaaa" not in str(info.value)


def test_comments_and_processing_instructions_are_skipped() -> None:
    inner = "<!-- c --><?pi x?><DS><!-- c --><T><?pi y?><V>1<!-- c -->2</V></T></DS>"
    assert parse_data_set(data_answer(inner)).rows == [{"V": "12"}]


# ---- parse_error_table --------------------------------------------------------------

ERRORS_TABLE = (
    "<DocumentElement>"
    "<Errors><RowNumber>2</RowNumber><ColumnName>AccountNumber</ColumnName>"
    "<Message>Customer &amp; account 'X' &lt;missing&gt;</Message></Errors>"
    "<Errors><RowNumber>5</RowNumber><Message>Line1&#xD;\nLine2</Message></Errors>"
    "</DocumentElement>"
)
ERRORS_ROWS = (
    {
        "RowNumber": "2",
        "ColumnName": "AccountNumber",
        "Message": "Customer & account 'X' <missing>",
    },
    {"RowNumber": "5", "ColumnName": None, "Message": "Line1\r\nLine2"},
)


def test_error_table_escaped() -> None:
    assert parse_error_table(net_escape(ERRORS_TABLE)) == ERRORS_ROWS


def test_error_table_unescaped() -> None:
    assert parse_error_table(ERRORS_TABLE) == ERRORS_ROWS


def test_error_table_with_whitespace_around() -> None:
    assert parse_error_table("\r\n  " + net_escape(ERRORS_TABLE) + "\r\n") == ERRORS_ROWS


@pytest.mark.parametrize("text", [None, "", "   ", "\r\n"])
def test_no_error_table(text: str | None) -> None:
    assert parse_error_table(text) == ()


def test_empty_error_table() -> None:
    assert parse_error_table("&lt;DocumentElement /&gt;") == ()


@pytest.mark.parametrize(
    "text",
    [
        "Object reference not set to an instance of an object.",
        "&lt;DocumentElement&gt;&lt;Errors&gt;",
        net_escape('<!DOCTYPE D [<!ENTITY a "b">]><D><E><M>&a;</M></E></D>'),
        '<!DOCTYPE D [<!ENTITY x SYSTEM "file:///etc/passwd">]><D><E><M>&x;</M></E></D>',
    ],
    ids=["plain-text", "truncated", "escaped-entity", "external-entity"],
)
def test_bad_error_table(text: str) -> None:
    with pytest.raises(ResponseParseError) as info:
        parse_error_table(text)
    assert type(info.value) is ResponseParseError


# ---- building payloads --------------------------------------------------------------


def test_data_table_exact_bytes() -> None:
    body = build_data_table(
        [
            {"AccountNumber": "CUST001", "AccountName": "Purus Limited"},
            {"AccountNumber": "CUST002", "Phone": "(303) 654-2228"},
        ]
    )
    assert body == (
        b"<RequestData>"
        b"<Table><AccountNumber>CUST001</AccountNumber>"
        b"<AccountName>Purus Limited</AccountName></Table>"
        b"<Table><AccountNumber>CUST002</AccountNumber><Phone>(303) 654-2228</Phone></Table>"
        b"</RequestData>"
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-17, "-17"),
        (10**30, "1" + "0" * 30),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (Decimal("1E+2"), "100"),
        (Decimal("0.10"), "0.10"),
        (Decimal("-1.5E-3"), "-0.0015"),
        (Decimal("12345678901234567890.123"), "12345678901234567890.123"),
        (date(2024, 2, 29), "2024-02-29"),
        (datetime(2024, 2, 29, 13, 45, 5), "2024-02-29T13:45:05"),
        (
            datetime(2024, 2, 29, 13, 45, 5, 120000, tzinfo=timezone.utc),
            "2024-02-29T13:45:05.120000+00:00",
        ),
        ("", ""),
        ("a&b<c>d", "a&amp;b&lt;c&gt;d"),
        ("x]]>y", "x]]&gt;y"),
        ("line1\r\nline2\r", "line1&#xD;\nline2&#xD;"),
        ("  padded\t", "  padded\t"),
        ("Müller ✓ 😀", "Müller ✓ 😀"),
    ],
)
def test_value_conversions(value: object, text: str) -> None:
    body = build_data_table([{"V": value}])
    assert body == f"<RequestData><Table><V>{text}</V></Table></RequestData>".encode()


def test_none_omits_the_element() -> None:
    body = build_data_table([{"A": "1", "B": None, "C": "3"}, {"A": None}])
    assert body == b"<RequestData><Table><A>1</A><C>3</C></Table><Table></Table></RequestData>"


def test_rows_from_a_generator() -> None:
    def rows() -> Iterator[Mapping[str, object]]:
        yield {"A": 1}
        yield {"A": 2}

    assert build_data_table(rows()) == (
        b"<RequestData><Table><A>1</A></Table><Table><A>2</A></Table></RequestData>"
    )


@pytest.mark.parametrize("name", ["1abc", "a b", "", "x:y", "-a", ".a", "a/b", "a\x00", "é\u037e"])
def test_invalid_column_name(name: str) -> None:
    rows = [{"Good": "1"}, {"Good": "2", name: "v"}]
    with pytest.raises(ValueError, match=re.escape(f"rows[1]: column name {name!r}")):
        build_data_table(rows)
    with pytest.raises(ValueError, match=re.escape(f"rows[1]: column name {name!r}")):
        build_xml_request(rows)


def test_non_string_column_name() -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape("rows[0]")):
        build_data_table([{5: "v"}])  # type: ignore[dict-item]


@pytest.mark.parametrize("name", ["_a", "Ä", "a-b.c_1", "xmlish", "日本"])
def test_valid_unusual_column_names(name: str) -> None:
    assert build_data_table([{name: "v"}]) == (
        f"<RequestData><Table><{name}>v</{name}></Table></RequestData>".encode()
    )


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\x0c", "\x1f", "\ufffe", "\uffff", "\ud800"])
def test_forbidden_characters(char: str) -> None:
    rows = [{"A": "ok"}, {"A": "ok", "Bad": f"before{char}after"}]
    with pytest.raises(ValueError, match=re.escape("rows[1], column 'Bad'")) as info:
        build_data_table(rows)
    assert f"U+{ord(char):04X}" in str(info.value)
    with pytest.raises(ValueError, match=re.escape("rows[1], column 'Bad'")):
        build_xml_request(rows)


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")],
)
def test_non_finite_numbers(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape("rows[2], column 'Amount'")):
        build_data_table([{"Amount": 1}, {"Amount": 2}, {"Amount": value}])


@pytest.mark.parametrize(
    "value",
    [1j, object(), b"bytes", ["list"], {"a": 1}, timedelta(days=1)],
    ids=lambda value: type(value).__name__,  # stable ids: object()'s repr has an address
)
def test_unsupported_types(value: object) -> None:
    with pytest.raises(TypeError, match=re.escape("rows[0], column 'X'")) as info:
        build_data_table([{"X": value}])
    assert type(value).__name__ in str(info.value)


@pytest.mark.parametrize("rows", [[], (), iter([])], ids=["list", "tuple", "iterator"])
def test_empty_rows(rows: Any) -> None:
    with pytest.raises(ValueError, match="empty"):
        build_data_table(rows)
    with pytest.raises(ValueError, match="empty"):
        build_xml_request([])


@pytest.mark.parametrize("rows", ["abc", b"abc", {"A": "1"}], ids=["str", "bytes", "mapping"])
def test_rows_must_be_an_iterable_of_mappings(rows: Any) -> None:
    with pytest.raises(TypeError, match="iterable of mappings"):
        build_data_table(rows)


def test_row_that_is_not_a_mapping() -> None:
    with pytest.raises(TypeError, match=re.escape("rows[1] is a list")):
        build_data_table([{"A": "1"}, ["A", "1"]])  # type: ignore[list-item]


def test_xml_request_exact_bytes() -> None:
    body = build_xml_request([{"A": "x<&\r]]>", "B": 1, "C": None}])
    assert body == (
        b"<RequestData><Variables/><Xml>"
        b"&lt;DataSet&gt;&lt;Table&gt;"
        b"&lt;A&gt;x&amp;lt;&amp;amp;&amp;#xD;]]&amp;gt;&lt;/A&gt;"
        b"&lt;B&gt;1&lt;/B&gt;"
        b"&lt;/Table&gt;&lt;/DataSet&gt;"
        b"</Xml></RequestData>"
    )


# ---- round trips (hypothesis) -------------------------------------------------------


def _xml_char(c: str) -> bool:
    o = ord(c)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


# Any valid XML text, with the fragments that are hard to carry drawn often.
TRICKY = ["]]>", "]]", "&", "&amp;", "<", ">", "\r", "\r\n", "\n", "\t", " ", "  ", "&#xD;"]
xml_text = st.lists(
    st.sampled_from(TRICKY) | st.characters(codec="utf-8").filter(_xml_char), max_size=25
).map("".join)
xml_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,12}", fullmatch=True)
rows_strategy = st.lists(
    st.dictionaries(xml_names, xml_text | st.none(), min_size=0, max_size=6),
    min_size=1,
    max_size=6,
)


def _defused_rows(container: Any) -> list[dict[str, str]]:
    return [{cell.tag: cell.text or "" for cell in row} for row in container]


def _expected(rows: list[dict[str, str | None]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if v is not None} for row in rows]


@settings(deadline=None)
@given(rows_strategy)
def test_data_table_round_trip(rows: list[dict[str, str | None]]) -> None:
    root = DET.fromstring(build_data_table(rows))
    assert root.tag == "RequestData"
    assert all(child.tag == "Table" for child in root)
    assert _defused_rows(root) == _expected(rows)


@settings(deadline=None)
@given(rows_strategy)
def test_xml_request_round_trip(rows: list[dict[str, str | None]]) -> None:
    root = DET.fromstring(build_xml_request(rows))
    assert [child.tag for child in root] == ["Variables", "Xml"]
    inner = root.find("Xml")
    assert inner is not None
    assert inner.text is not None
    data_set = DET.fromstring(inner.text.encode())
    assert data_set.tag == "DataSet"
    assert _defused_rows(data_set) == _expected(rows)


@settings(deadline=None)
@given(xml_text)
@example("]]>")
@example(" a & b <c> ]]> \r\n\t ")
@example("\r")
def test_escape_text_round_trip(text: str) -> None:
    escaped = escape_text(text)
    assert "<" not in escaped
    assert "\r" not in escaped
    assert (DET.fromstring(f"<a>{escaped}</a>".encode()).text or "") == text


@settings(deadline=None)
@given(st.lists(st.tuples(xml_text.filter(lambda s: "\r" not in s), xml_text), max_size=5))
def test_data_answer_round_trip(pairs: list[tuple[str, str]]) -> None:
    # Values in CDATA cannot carry a carriage return (XML turns it into a line feed), so
    # CDATA values here have none; values written as escaped text may have any.
    rows: list[dict[str, str | None]] = [{"C": c, "E": e} for c, e in pairs]
    parts = ["<DS>\r\n"]
    for c, e in pairs:
        cdata = "<![CDATA[" + c.replace("]]>", "]]]]><![CDATA[>") + "]]>"
        parts.append(f"  <T>\r\n    <C>{cdata}</C>\r\n    <E>{escape_text(e)}</E>\r\n  </T>\r\n")
    parts.append("</DS>")
    assert parse_data_set(data_answer("".join(parts))).rows == rows


@settings(deadline=None)
@given(st.lists(st.integers() | st.booleans() | st.decimals(allow_nan=False, allow_infinity=False)))
def test_numbers_render_exactly(values: list[int | bool | Decimal]) -> None:
    if not values:
        return
    root = DET.fromstring(build_data_table([{"V": v} for v in values]))
    texts = [row.find("V").text for row in root]  # type: ignore[union-attr]
    for value, text in zip(values, texts, strict=True):
        assert text is not None
        if isinstance(value, bool):
            assert text == ("true" if value else "false")
        elif isinstance(value, int):
            assert int(text) == value
        else:
            assert Decimal(text) == value
            assert "E" not in text.upper()


# ---- the outer text fast path agrees with a full defusedxml parse -------------------

_PIECES = ["a", "&", "<", ">", "]]>", "\r", "\n", "\r\n", " ", "é", "😀", "&amp;", ";", '"', "'"]
_OUTER_FORMS = {
    "&": ["&amp;"],
    "<": ["&lt;", "&#60;", "&#x3C;"],
    ">": ["&gt;", ">"],
    "\r": ["&#xD;", "&#13;", "&#xd;"],
    '"': ['"', "&quot;"],
    "'": ["'", "&apos;"],
}


def _reference_rows(body: bytes) -> list[tuple[str, dict[str, str]]] | None:
    """Rows by two full defusedxml parses (outer, then inner); None if either fails."""
    from defusedxml.ElementTree import fromstring

    try:
        inner = (fromstring(body).text or "").lstrip()
        if inner.startswith("<?xml"):
            inner = inner[inner.index("?>") + 2 :]
        root = fromstring(inner)
    except Exception:
        return None
    return [(row.tag, {col.tag: col.text or "" for col in row}) for row in root]


def _parsed_rows(pieces: list[bytes]) -> list[tuple[str, dict[str, str]]] | None:
    parser = DataSetParser()
    rows: list[tuple[str, Row]] = []
    try:
        for piece in pieces:
            rows += parser.feed(piece)
        rows += parser.close()
    except ResponseParseError:
        return None
    return [(t, {k: v for k, v in row.items() if v is not None}) for t, row in rows]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_streamed_parse_matches_full_defusedxml_parse(data: st.DataObject) -> None:
    values = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
    rows = data.draw(
        st.lists(st.dictionaries(st.sampled_from(["A", "B", "C"]), values), max_size=4)
    )
    cdata = data.draw(st.booleans())

    def cell(value: str) -> str:
        if cdata:
            return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    inner = (
        "<DS>\r\n"
        + "".join(
            "  <T>" + "".join(f"<{k}>{cell(v)}</{k}>" for k, v in row.items()) + "</T>\r\n"
            for row in rows
        )
        + "</DS>"
    )
    escaped = "".join(
        data.draw(st.sampled_from(_OUTER_FORMS[ch])) if ch in _OUTER_FORMS else ch for ch in inner
    )
    wrapper = data.draw(st.sampled_from(["plain", "declaration", "comment", "cdata"]))
    open_tag = f'<string xmlns="{SERIALIZATION_NS}">'
    if wrapper == "cdata":
        text = f"{open_tag}<![CDATA[{inner}]]></string>"
    elif wrapper == "comment":
        half = len(escaped) // 2
        text = f"{open_tag}{escaped[:half]}<!-- c -->{escaped[half:]}</string>"
    elif wrapper == "declaration":
        text = f'<?xml version="1.0" encoding="utf-8"?>\n{open_tag}{escaped}</string>\n'
    else:
        text = f"{open_tag}{escaped}</string>"
    body = text.encode()
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=8)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    expected = _reference_rows(body)
    assert _parsed_rows([body]) == expected
    assert _parsed_rows(pieces) == expected


@pytest.mark.parametrize("cut", [1, 2])
def test_literal_cdata_end_in_outer_text_is_refused_across_chunks(cut: int) -> None:
    # "]]>" may not stand literally in XML text, even when it arrives split in two.
    inner = "&lt;DS&gt;&lt;T&gt;&lt;V&gt;x]]>y&lt;/V&gt;&lt;/T&gt;&lt;/DS&gt;"
    body = f"{OUTER_OPEN}{inner}</string>".encode()
    at = body.index(b"]]>") + cut

    def parse_in_two() -> None:
        parser = DataSetParser()
        parser.feed(body[:at])
        parser.feed(body[at:])
        parser.close()

    assert _reference_rows(body) is None
    with pytest.raises(ResponseParseError, match=r"\]\]>"):
        parse_in_two()


def test_reference_split_across_chunks_is_resolved() -> None:
    # &#xD;&#xA; in the outer text is a CR LF in the inner document's text, which its
    # parser reads as one LF; &amp;#xD; is a character reference there: a CR kept.
    inner = "&lt;DS&gt;&lt;T&gt;&lt;V&gt;a&amp;amp;b&#xD;&#xA;c&amp;#xD;&lt;/V&gt;&lt;/T&gt;"
    body = f"{OUTER_OPEN}{inner}&lt;/DS&gt;</string>".encode()
    expected = [("T", {"V": "a&b\nc\r"})]
    assert _reference_rows(body) == expected
    for at in range(1, len(body)):
        parser = DataSetParser()
        assert [*parser.feed(body[:at]), *parser.feed(body[at:]), *parser.close()] == expected


# ---- hostile shapes: bounded cost ------------------------------------------------------


def _feed_all(answer: bytes, chunk: int = 1 << 16) -> None:
    parser = DataSetParser()
    for start in range(0, len(answer), chunk):
        parser.feed(answer[start : start + chunk])
    parser.close()


@pytest.mark.parametrize(
    "answer",
    [
        data_answer("<DS><T><A>1</A></T><T" + "x" * (4 << 20)),  # a tag name in the data set
        data_answer('<DS><T a="' + "x" * (4 << 20)),  # an attribute value
        (OUTER_OPEN + "&lt;DS&gt;<!--").encode() + b"x" * (4 << 20),  # a comment outside
    ],
    ids=["tag", "attribute", "outer-comment"],
)
def test_a_token_that_never_ends_is_refused_after_a_mebibyte(answer: bytes) -> None:
    # expat 2.5 parses an unfinished token again with every piece: time grew with the
    # square of its length (8 MB: 1.2 s; 64 MB: over 20 s).
    with pytest.raises(ResponseParseError) as info:
        _feed_in_chunks(answer, 1 << 16)
    assert str(info.value) == (
        "malformed XML in the data answer: a tag, attribute or comment runs on for more than "
        f"{LONGEST_TOKEN:,} bytes"
    )


def test_a_long_value_is_not_a_long_token() -> None:
    value = "y" * (4 * LONGEST_TOKEN)  # text is reported as it comes: expat moves on
    rows = _feed_in_chunks(data_answer(f"<DS><T><A>{value}</A></T></DS>"), 1 << 16)
    assert rows == [{"A": value}]


def test_a_table_widened_past_max_columns_is_refused() -> None:
    # Every row adds a column: each row would be completed to all the columns before it.
    rows = [{f"C{i}": "v"} for i in range(MAX_COLUMNS + 5)]
    answer = data_answer(table_xml({"T": rows}))
    with pytest.raises(ResponseParseError, match=f"more than {MAX_COLUMNS} columns"):
        _feed_all(answer)


def test_a_row_with_more_than_max_columns_is_refused() -> None:
    row = {f"C{i}": "v" for i in range(MAX_COLUMNS + 1)}
    with pytest.raises(ResponseParseError, match=f"more than {MAX_COLUMNS} columns"):
        _feed_all(data_answer(table_xml({"T": [row]})))


def test_more_than_max_columns_tables_are_refused() -> None:
    tables = {f"T{i}": [{"A": "v"}] for i in range(MAX_COLUMNS + 1)}
    with pytest.raises(ResponseParseError, match=f"more than {MAX_COLUMNS} tables"):
        _feed_all(data_answer(table_xml(tables)))


def test_max_columns_exactly_is_read() -> None:
    row = {f"C{i}": "v" for i in range(MAX_COLUMNS)}
    data = parse_data_set(data_answer(table_xml({"T": [row, row]})))
    assert len(data.tables["T"][0]) == MAX_COLUMNS


def test_an_unterminated_reference_fails_in_the_chunk_it_is_in() -> None:
    # A "&" whose ";" never comes: the text after it must not be carried on and on
    # (64 MB cost 17 s of CPU).
    parser = DataSetParser()
    parser.feed(OUTER_OPEN.encode() + b"&lt;T&gt;&lt;A&gt;x&lt;/A&gt;&lt;/T")
    with pytest.raises(ResponseParseError, match="unterminated reference"):
        parser.feed(b"&" + b"x" * (1 << 16))


def test_a_reference_cut_by_a_chunk_end_is_still_read() -> None:
    answer = data_answer(table_xml({"T": [{"A": "1 & 2 < 3"}]}))
    cut = answer.index(b"&amp;") + 2
    parser = DataSetParser()
    rows = parser.feed(answer[:cut]) + parser.feed(answer[cut:]) + parser.close()
    assert rows == [("T", {"A": "1 & 2 < 3"})]
