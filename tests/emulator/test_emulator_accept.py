"""Content negotiation: Accept picks JSON or XML (DataContract style), or a 406."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, DemoCredential, Emulator

pytestmark = pytest.mark.anyio
SERIALIZATION = 'xmlns="http://schemas.microsoft.com/2003/10/Serialization/"'
CONTRACT = (
    'xmlns:i="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns="http://schemas.datacontract.org/2004/07/SmartConnect.Models"'
)
JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
GL_JOURNAL_KEY = "6f2a8c19-4d7b-4e05-a3c6-abb700e5f607"  # DEMO03's only map


async def post(
    client: httpx.AsyncClient, endpoint: str, accept: str | None, **kwargs: Any
) -> httpx.Response:
    """POST with exactly this Accept header (None: none at all)."""
    request = client.build_request("POST", f"/{endpoint}", **kwargs)
    del request.headers["accept"]
    if accept is not None:
        request.headers["accept"] = accept
    return await client.send(request)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, JSON_TYPE),
        ("", JSON_TYPE),
        ("application/json", JSON_TYPE),
        ("text/json", "text/json; charset=utf-8"),
        ("*/*", JSON_TYPE),
        ("application/*", JSON_TYPE),
        ("text/*", "text/json; charset=utf-8"),
        ("APPLICATION/JSON; charset=utf-8", JSON_TYPE),
        ("application/xml;q=0.5, application/json", JSON_TYPE),
        ("application/xml;q=0.1, */*;q=0.2", JSON_TYPE),
        ("image/png, application/json;q=0.01", JSON_TYPE),
        ("text/xml, application/json", JSON_TYPE),  # a tie: the JSON formatter comes first
        ("application/xml;q=0.9, application/*", JSON_TYPE),
        ("not a media type", JSON_TYPE),  # unreadable values are dropped: no Accept left
    ],
)
async def test_json_when_accept_prefers_it(
    client: httpx.AsyncClient, token: str, accept: str | None, content_type: str
) -> None:
    response = await post(client, "validate", accept, params={"token": token})
    assert (response.status_code, response.headers["content-type"]) == (200, content_type)
    assert response.content == b"true"


async def test_xml_when_accept_prefers_it(
    client: httpx.AsyncClient, alice: DemoCredential, token: str
) -> None:
    login = {"email": alice.email, "password": alice.password, "companyId": alice.company_id}
    answer = await post(client, "GetToken", "application/xml", params=login)
    assert (answer.status_code, answer.headers["content-type"]) == (200, XML_TYPE)
    issued = answer.text.removeprefix(f"<string {SERIALIZATION}>").removesuffix("</string>")
    assert issued != answer.text
    valid = await post(client, "validate", "text/xml", params={"token": issued})
    assert valid.headers["content-type"] == "text/xml; charset=utf-8"
    assert valid.text == f"<boolean {SERIALIZATION}>true</boolean>"
    preferred = "application/json;q=0.5, application/xml"
    unknown = await post(client, "validate", preferred, params={"token": "x"})
    assert unknown.text == f"<boolean {SERIALIZATION}>false</boolean>"


async def test_xml_lists_are_data_contract_arrays(
    client: httpx.AsyncClient, emulator: Emulator, token: str
) -> None:
    carol = emulator.issue_token("carol@contoso.example", "DEMO03")
    maps = await post(client, "GetMapList", "application/xml", params={"token": carol})
    assert maps.text == (
        f"<ArrayOfMapInfo {CONTRACT}><MapInfo><MapDescription>General journal to GP"
        f"</MapDescription><MapId>Import GL Journal</MapId><MapKey>{GL_JOURNAL_KEY}</MapKey>"
        "</MapInfo></ArrayOfMapInfo>"
    )
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    mapped = await post(client, "GetMappedMapColumns", "application/xml", params=params)
    assert (mapped.status_code, mapped.headers["content-type"]) == (200, XML_TYPE)
    assert mapped.text == (
        f"<ArrayOfMapColumn {CONTRACT}>"
        "<MapColumn><ColumnName>AccountNumber</ColumnName><IsRequired>true</IsRequired></MapColumn>"
        "<MapColumn><ColumnName>AccountName</ColumnName><IsRequired>false</IsRequired></MapColumn>"
        "<MapColumn><ColumnName>Phone</ColumnName><IsRequired>false</IsRequired></MapColumn>"
        "</ArrayOfMapColumn>"
    )


async def test_xml_run_map_response(client: httpx.AsyncClient, token: str) -> None:
    response = await post(
        client,
        "RunMapDataTableWithErrors",
        "application/xml",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        content=b"<RequestData><Table><AccountName>Smith &amp; Sons</AccountName></Table>"
        b"<Table><AccountNumber>C1</AccountNumber></Table></RequestData>",
        headers={"content-type": "application/xml"},
    )
    assert (response.status_code, response.headers["content-type"]) == (200, XML_TYPE)
    message = "Required column 'AccountNumber' was not supplied."
    errors = (  # the Errors string (already XML-escaped once) escaped again
        "&amp;lt;DocumentElement&amp;gt;&amp;lt;Errors&amp;gt;&amp;lt;RowNumber&amp;gt;1"
        "&amp;lt;/RowNumber&amp;gt;&amp;lt;ColumnName&amp;gt;AccountNumber&amp;lt;/ColumnName"
        f"&amp;gt;&amp;lt;Message&amp;gt;{message}&amp;lt;/Message&amp;gt;&amp;lt;/Errors"
        "&amp;gt;&amp;lt;/DocumentElement&amp;gt;"
    )
    assert response.text == (
        f"<RunMapResponse {CONTRACT}><ErrorCount>1</ErrorCount>"
        f"<ErrorMessage>{message}</ErrorMessage><Errors>{errors}</Errors>"
        "<MapDescription>Customers to BC</MapDescription><MapId>Import Customers</MapId>"
        "<RecordCount>2</RecordCount><RunNumber>1001</RunNumber><Status>1</Status>"
        "<ValidationErrors><ValidationError><ColumnName>AccountNumber</ColumnName>"
        f"<Message>{message}</Message><RowNumber>1</RowNumber></ValidationError>"
        "</ValidationErrors></RunMapResponse>"
    )


async def test_an_error_answer_is_negotiated_too(client: httpx.AsyncClient) -> None:
    response = await post(client, "GetMapList", "text/xml", params={"token": "x & y"})
    assert (response.status_code, response.headers["content-type"]) == (
        401,
        "text/xml; charset=utf-8",
    )
    assert response.text == (
        f"<string {SERIALIZATION}>Authorization has been denied for this request.</string>"
    )


@pytest.mark.parametrize(
    "accept",
    [
        "text/csv",
        "image/png",
        "text/html, application/xhtml+xml",
        "application/json;q=0",
        "*/json",
        "application/x-www-form-urlencoded",
    ],
)
@pytest.mark.parametrize("endpoint", ["runmap", "RunMapWithVariables", "GetMapColumns"])
async def test_406_when_accept_admits_neither(
    client: httpx.AsyncClient, emulator: Emulator, token: str, accept: str, endpoint: str
) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    response = await post(client, endpoint, accept, params=params)
    assert response.status_code == 406
    assert response.content == b""
    assert "content-type" not in response.headers
    assert emulator.runs == ()  # refused before anything ran
    assert emulator.counters.calls == {endpoint: 1}


@pytest.mark.parametrize(
    "accept",
    [None, "application/xml", "text/xml", "*/*", "application/*", "application/json;q=0.9, text/*"],
)
@pytest.mark.parametrize("endpoint", ["GetAllData", "GetAllDataWithVariables"])
async def test_data_endpoints_answer_xml_whenever_accept_admits_it(
    client: httpx.AsyncClient, token: str, accept: str | None, endpoint: str
) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    response = await post(client, endpoint, accept, params=params)
    assert (response.status_code, response.headers["content-type"]) == (200, XML_TYPE)
    assert response.text.startswith(f"<string {SERIALIZATION}>&lt;MyDataSet&gt;&#xD;\n")


@pytest.mark.parametrize("accept", ["application/json", "text/json", "text/csv", "text/xml;q=0"])
@pytest.mark.parametrize("endpoint", ["GetAllData", "GetAllDataWithVariables"])
async def test_data_endpoints_406_when_accept_excludes_xml(
    client: httpx.AsyncClient, token: str, accept: str, endpoint: str
) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    response = await post(client, endpoint, accept, params=params)
    assert (response.status_code, response.content) == (406, b"")
