"""Byte-for-byte checks against the examples of the vendor's API reference."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime

import httpx
import pytest

from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, DemoCredential, Emulator, create_app

REFERENCE_TOKEN = (
    "Um5UVHZsWU1XZ09xYzE1R3dOZXhNV0Jka25FcEg3L2ZtZjVMSkxIdEZsUT0jQjE2QkIzNTMtNTFFOC00MkNBLTgx"
    "RDEtNUVCQjA0QUIxMzQ5I0MzMzhDRUI1LTBEOTctNEU1Ny05MDU4LUNFN0NBRDNEODU2RCNFVEhBTi5TT1JFTlNP"
    "TkBFT05FU09MVVRJT05TLkNPTSMyMDIwLTEwLTAyVDA4OjA1OjE1Ljg2Ng=="
)
REFERENCE_MAP_LIST = [
    {
        "MapKey": "c365b728-60e0-4841-841c-ab73008dd41d",
        "MapId": "Import Customers",
        "MapDescription": "Customers to BC",
    },
    {
        "MapKey": "1b763e98-37c4-4d32-8320-abb200d82e59",
        "MapId": "Import Sales Orders",
        "MapDescription": "Sales Orders to BC",
    },
]
REFERENCE_COLUMNS = [
    {"ColumnName": "AccountNumber", "IsRequired": True},
    {"ColumnName": "AccountName", "IsRequired": False},
    {"ColumnName": "Phone", "IsRequired": False},
]
REFERENCE_DATA = (
    b'<string xmlns="http://schemas.microsoft.com/2003/10/Serialization/">&lt;MyDataSet&gt;&#xD;\n'
    b"  &lt;Table01&gt;&#xD;\n"
    b"    &lt;AccountNumber&gt;&lt;![CDATA[CUST001]]&gt;&lt;/AccountNumber&gt;&#xD;\n"
    b"    &lt;AccountName&gt;&lt;![CDATA[Purus Limited]]&gt;&lt;/AccountName&gt;&#xD;\n"
    b"    &lt;AddressCode&gt;&lt;![CDATA[Other]]&gt;&lt;/AddressCode&gt;&#xD;\n"
    b"    &lt;Address1&gt;&lt;![CDATA[373-1399 Ultrices St.]]&gt;&lt;/Address1&gt;&#xD;\n"
    b"    &lt;City&gt;&lt;![CDATA[Denver]]&gt;&lt;/City&gt;&#xD;\n"
    b"    &lt;State&gt;&lt;![CDATA[CO]]&gt;&lt;/State&gt;&#xD;\n"
    b"    &lt;ZIP&gt;&lt;![CDATA[92336]]&gt;&lt;/ZIP&gt;&#xD;\n"
    b"    &lt;Phone&gt;&lt;![CDATA[(303) 654-2228]]&gt;&lt;/Phone&gt;&#xD;\n"
    b"    &lt;Currency&gt;&lt;![CDATA[CAD$]]&gt;&lt;/Currency&gt;&#xD;\n"
    b"  &lt;/Table01&gt;&#xD;\n"
    b"&lt;/MyDataSet&gt;</string>"
)

TOKEN_SHAPE = re.compile(
    r"[A-Za-z0-9+/]{43}=#[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}"
    r"#[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}#[^#a-z]+@[^#a-z]+"
    r"#\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"
)

pytestmark = pytest.mark.anyio


def compact(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def test_token_shape_is_the_reference_shape() -> None:
    assert TOKEN_SHAPE.fullmatch(base64.b64decode(REFERENCE_TOKEN).decode())


async def test_get_token_answers_a_json_string_decoding_like_the_reference(
    client: httpx.AsyncClient, alice: DemoCredential, now: datetime
) -> None:
    params = {"email": alice.email, "password": alice.password, "companyId": alice.company_id}
    response = await client.post("/GetToken", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.content.startswith(b'"')
    assert response.content.endswith(b'"')
    decoded = base64.b64decode(response.json(), validate=True).decode()
    assert TOKEN_SHAPE.fullmatch(decoded)
    signature, token_guid, tenant_guid, email, issued = decoded.split("#")
    assert len(base64.b64decode(signature)) == 32  # an HMAC-SHA256, like the reference's
    assert email == alice.email.upper()
    assert issued == now.strftime("%Y-%m-%dT%H:%M:%S.") + "123"
    again = (await client.post("/GetToken", params=params)).json()
    other_guid, other_tenant = base64.b64decode(again).decode().split("#")[1:3]
    assert other_guid != token_guid  # a new token id per call
    assert other_tenant == tenant_guid  # the same company


async def test_map_list_starts_with_the_reference_maps(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post("/GetMapList", params={"token": token})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.content.startswith(compact(REFERENCE_MAP_LIST)[:-1] + b",")
    assert response.json()[:2] == REFERENCE_MAP_LIST


async def test_mapped_columns_are_the_reference_example(
    client: httpx.AsyncClient, token: str
) -> None:
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    mapped = await client.post("/GetMappedMapColumns", params=params)
    assert mapped.content == compact(REFERENCE_COLUMNS)
    columns = (await client.post("/GetMapColumns", params=params)).json()
    assert columns[0] == REFERENCE_COLUMNS[0]
    assert [c["ColumnName"] for c in columns] == [
        "AccountNumber",
        "AccountName",
        "AddressCode",
        "Address1",
        "City",
        "State",
        "ZIP",
        "Phone",
        "Currency",
    ]
    assert all(set(c) == {"ColumnName", "IsRequired"} for c in columns)


async def test_get_all_data_of_one_customer_is_the_reference_example(
    alice: DemoCredential,
) -> None:
    emulator = Emulator(rows={"Customers": 1})
    token = emulator.issue_token(alice.email, alice.company_id)
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e/API") as client:
        params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
        response = await client.post("/GetAllData", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    assert response.content == REFERENCE_DATA


async def test_get_all_data_with_variables_filters_to_the_reference_example(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post(
        "/GetAllDataWithVariables",
        params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY},
        json=[{"Key": "GBL_ACCOUNTNUMBER", "Value": "CUST001"}, {"Key": "GBL_TEST", "Value": "x"}],
    )
    assert response.content == REFERENCE_DATA


async def test_full_customer_answer_starts_with_the_reference_row(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.post(
        "/GetAllData", params={"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    )
    first_row_end = REFERENCE_DATA.index(b"  &lt;/Table01&gt;&#xD;\n") + 24
    assert response.content.startswith(REFERENCE_DATA[:first_row_end] + b"  &lt;Table01&gt;")
    assert response.content.endswith(b"&lt;/MyDataSet&gt;</string>")
