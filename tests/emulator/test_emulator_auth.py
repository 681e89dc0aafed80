"""GetToken and validate: passwords, encoding, per-company tokens, expiry, error answers."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx
import pytest

from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    IMPORT_CUSTOMERS_KEY,
    Company,
    DemoCredential,
    Emulator,
    User,
    create_app,
    hash_password,
    parse_row_sizes,
)
from smartconnect_async.emulator._tokens import add_months

pytestmark = pytest.mark.anyio


def login(credential: DemoCredential, password: str | None = None) -> dict[str, str]:
    return {
        "email": credential.email,
        "password": credential.password if password is None else password,
        "companyId": credential.company_id,
    }


def test_demo_credentials_cover_three_users_and_a_user_with_two_companies() -> None:
    assert len({c.email for c in DEMO_CREDENTIALS}) >= 3
    companies_of = {
        c.email: {d.company_id for d in DEMO_CREDENTIALS if d.email == c.email}
        for c in DEMO_CREDENTIALS
    }
    assert any(len(companies) == 2 for companies in companies_of.values())


def test_hash_password_is_the_documented_hmac() -> None:
    # HMAC-SHA256(key="6clDgmNok3WtR8GKYW6N", msg="secret:6clDgmNok3WtR8GKYW6N"), base64
    assert hash_password("secret") == "JV6N4daD3lGVb363ctgIFWfumN/jUb2X5LeQ4ISJk7s="


@pytest.mark.parametrize("credential", DEMO_CREDENTIALS, ids=lambda c: f"{c.email}-{c.company_id}")
@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
async def test_get_token_accepts_plain_and_hashed_passwords(
    client: httpx.AsyncClient, credential: DemoCredential, hashed: bool
) -> None:
    password = hash_password(credential.password) if hashed else credential.password
    response = await client.post("/GetToken", params=login(credential, password))
    assert response.status_code == 200
    token = response.json()
    assert (await client.post("/validate", params={"token": token})).json() is True
    assert (await client.post("/GetMapList", params={"token": token})).status_code == 200


async def test_names_of_endpoint_and_parameters_are_case_insensitive(
    client: httpx.AsyncClient, alice: DemoCredential
) -> None:
    params = {"EMAIL": alice.email.upper(), "Password": alice.password, "companyID": "demo01"}
    response = await client.post("/gettoken", params=params)
    assert response.status_code == 200
    assert (await client.post("/VALIDATE", params={"Token": response.json()})).json() is True


@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "nobody@example.com"), ("password", "wrong"), ("companyId", "DEMO03")],
)
async def test_get_token_with_wrong_credentials_is_401(
    client: httpx.AsyncClient, alice: DemoCredential, field: str, value: str
) -> None:
    response = await client.post("/GetToken", params={**login(alice), field: value})
    assert response.status_code == 401
    assert isinstance(response.json(), str)
    assert "x-request-id" in response.headers


@pytest.mark.parametrize("missing", ["email", "password", "companyId"])
async def test_get_token_without_a_parameter_is_400(
    client: httpx.AsyncClient, alice: DemoCredential, missing: str
) -> None:
    params = login(alice)
    del params[missing]
    response = await client.post("/GetToken", params=params)
    assert response.status_code == 400
    assert missing in response.json()


async def test_unencoded_plus_in_password_fails_and_encoded_succeeds(
    client: httpx.AsyncClient, alice: DemoCredential
) -> None:
    assert "+" in alice.password
    raw = f"/GetToken?email={alice.email}&password={alice.password}&companyId=DEMO01"
    assert (await client.post(raw)).status_code == 401
    encoded = (
        f"/GetToken?email={alice.email}&password={quote(alice.password, safe='')}&companyId=DEMO01"
    )
    assert (await client.post(encoded)).status_code == 200


@pytest.mark.parametrize("credential", DEMO_CREDENTIALS[2:], ids=lambda c: c.email)
async def test_other_unencoded_special_characters_fail(
    client: httpx.AsyncClient, credential: DemoCredential
) -> None:
    # '&' and '#' cut the password short, '%20' decodes to a space.
    email, password, company = credential.email, credential.password, credential.company_id
    raw = f"/GetToken?email={email}&password={password}&companyId={company}"
    assert (await client.post(raw)).status_code in (400, 401)
    assert (await client.post("/GetToken", params=login(credential))).status_code == 200


def test_reference_format_tokens_have_no_plus_or_slash(
    emulator: Emulator, alice: DemoCredential
) -> None:
    # base64 of ASCII text never yields '+' or '/' (like the reference's token)...
    tokens = [emulator.issue_token(alice.email, alice.company_id) for _ in range(50)]
    assert not any("+" in t or "/" in t for t in tokens)


async def test_unencoded_plus_in_an_opaque_token_fails(
    clock: Callable[[], datetime], alice: DemoCredential
) -> None:
    # ...so opaque tokens (random base64) are how a token's encoding gets tested.
    emulator = Emulator(clock=clock, opaque_tokens=True)
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://e/API") as client:
        response = await client.post("/GetToken", params=login(alice))
        token = response.json()
        assert "+" in token
        assert "/" in token
        assert token.endswith("=")
        with pytest.raises(UnicodeDecodeError):  # not the reference format
            base64.b64decode(token).decode()
        assert (await client.post(f"/GetMapList?token={token}")).status_code == 401
        assert (await client.post(f"/validate?token={token}")).json() is False
        encoded = quote(token, safe="")
        assert (await client.post(f"/GetMapList?token={encoded}")).status_code == 200
        assert emulator.tokens[token].expires_at == add_months(emulator.now(), 3)


async def test_each_get_token_issues_a_new_token(
    client: httpx.AsyncClient, alice: DemoCredential
) -> None:
    first = (await client.post("/GetToken", params=login(alice))).json()
    second = (await client.post("/GetToken", params=login(alice))).json()
    assert first != second
    for token in (first, second):
        assert (await client.post("/validate", params={"token": token})).json() is True


async def test_tokens_are_per_company(client: httpx.AsyncClient, alice: DemoCredential) -> None:
    other = DemoCredential(alice.email, alice.password, "DEMO02")
    token = (await client.post("/GetToken", params=login(other))).json()
    maps = (await client.post("/GetMapList", params={"token": token})).json()
    assert IMPORT_CUSTOMERS_KEY not in {m["MapKey"] for m in maps}
    params = {"token": token, "mapKey": IMPORT_CUSTOMERS_KEY}
    assert (await client.post("/GetMapColumns", params=params)).status_code == 404


async def test_token_expires_three_calendar_months_after_issue(
    client: httpx.AsyncClient, emulator: Emulator, token: str, now: datetime
) -> None:
    expires = emulator.tokens[token].expires_at
    assert expires == add_months(now.replace(microsecond=123000), 3)
    emulator.set_clock(expires - timedelta(milliseconds=1))
    assert (await client.post("/validate", params={"token": token})).json() is True
    assert (await client.post("/GetMapList", params={"token": token})).status_code == 200
    emulator.set_clock(expires)
    assert (await client.post("/validate", params={"token": token})).json() is False
    response = await client.post("/GetMapList", params={"token": token})
    assert response.status_code == 401
    assert response.json() == "Authorization has been denied for this request."


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (datetime(2024, 11, 30, tzinfo=timezone.utc), datetime(2025, 2, 28, tzinfo=timezone.utc)),
        (datetime(2023, 11, 30, tzinfo=timezone.utc), datetime(2024, 2, 29, tzinfo=timezone.utc)),
        (
            datetime(2024, 10, 2, 8, 5, 15, tzinfo=timezone.utc),
            datetime(2025, 1, 2, 8, 5, 15, tzinfo=timezone.utc),
        ),
    ],
)
def test_add_months_clamps_the_day(issued: datetime, expires: datetime) -> None:
    assert add_months(issued, 3) == expires


async def test_validate_answers_false_for_unknown_and_400_without_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/validate", params={"token": "bm90IGEgdG9rZW4="})
    assert response.status_code == 200
    assert response.content == b"false"
    assert (await client.post("/validate")).status_code == 400


async def test_a_forged_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    forged = base64.b64encode(base64.b64decode(token).replace(b"ALICE", b"BOB")).decode()
    assert (await client.post("/GetMapList", params={"token": forged})).status_code == 401


async def test_added_company_and_user_obtain_a_token_for_that_company_only(
    emulator: Emulator, client: httpx.AsyncClient
) -> None:
    emulator.add_company(Company("ACME01", "Acme"))
    emulator.add_user(User("ops@acme.example", "S3cret+Pass", ("ACME01",)))
    params = {"email": "ops@acme.example", "password": "S3cret+Pass", "companyId": "ACME01"}
    answer = await client.post("/GetToken", params=params)
    assert answer.status_code == 200
    assert emulator.token_record(answer.json()) is not None
    assert emulator.companies["ACME01"].name == "Acme"
    other = await client.post("/GetToken", params={**params, "companyId": "DEMO01"})
    assert other.status_code == 401


def test_a_user_of_an_unknown_company_is_refused(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match=r"unknown company 'NOPE' for user 'x@y\.example'"):
        emulator.add_user(User("x@y.example", "pw", ("DEMO01", "NOPE")))
    assert "x@y.example" not in emulator.users


@pytest.mark.parametrize(
    ("words", "sizes"),
    [
        ([], None),
        (["7"], 7),
        (["Customers=3", "SalesOrders=0"], {"Customers": 3, "SalesOrders": 0}),
    ],
)
def test_parse_row_sizes(words: list[str], sizes: object) -> None:
    assert parse_row_sizes(words) == sizes
