"""auth.py and the token cache through the public client: GetToken and validate on the
wire, single-flight fetching, early refresh, 401 handling, custom stores."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import anyio
import httpx
import pytest
from unit_support import (
    API_URL,
    COLUMNS_JSON,
    COMPANY,
    CREDS,
    EMAIL,
    GUID_CUSTOMERS,
    HASHED,
    HASHED_Q,
    PASSWORD,
    PASSWORD_Q,
    PLUS_TOKEN,
    PLUS_TOKEN_Q,
    TOKEN,
    TOKEN_Q,
    MutableClock,
    client,
    html_page,
    independent_hash,
    mock_api,
    query,
    sent_token,
)

from smartconnect_async import (
    AuthenticationError,
    BadRequestError,
    Credentials,
    ResponseParseError,
    SmartConnect,
    Token,
    TokenKey,
    hash_password,
)
from smartconnect_async._tokens import add_months

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=timezone.utc)


def _columns_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=COLUMNS_JSON)


# ---- GetToken and validate on the wire ----------------------------------------------


async def test_get_token_wire_format() -> None:
    assert independent_hash(PASSWORD) == HASHED
    assert hash_password(PASSWORD) == HASHED
    with mock_api() as api:
        async with client() as sc:
            token = await sc.auth.get_token()
    request = api["GetToken"].calls.last.request
    assert request.method == "POST"
    assert request.url.path == "/API/GetToken"
    assert request.url.query == (
        f"email=user%40example.com&password={HASHED_Q}&companyId={COMPANY}".encode()
    )
    assert b"+" not in request.url.query
    assert request.headers["Accept"] == "application/json"
    assert "Content-Type" not in request.headers
    assert request.content == b""
    assert token.value == TOKEN
    assert (token.company_id, token.email) == (COMPANY, EMAIL)


async def test_get_token_with_plain_password() -> None:
    creds = Credentials(email=EMAIL, password=PASSWORD, company_id=COMPANY, hash_password=False)
    with mock_api() as api:
        async with client(credentials=creds) as sc:
            await sc.auth.get_token()
    assert query(api["GetToken"]) == (
        f"email=user%40example.com&password={PASSWORD_Q}&companyId={COMPANY}".encode()
    )


async def test_get_token_encodes_every_query_value() -> None:
    creds = Credentials(email="first+last@example.com", password="p w&x=#?", company_id="A&B C")
    with mock_api() as api:
        async with client(credentials=creds) as sc:
            await sc.auth.get_token()
    hashed = independent_hash("p w&x=#?").replace("+", "%2B").replace("/", "%2F")
    hashed = hashed.replace("=", "%3D")
    assert query(api["GetToken"]) == (
        f"email=first%2Blast%40example.com&password={hashed}&companyId=A%26B%20C".encode()
    )


async def test_token_with_plus_slash_equals_is_percent_encoded() -> None:
    with mock_api(token=PLUS_TOKEN) as api:
        route = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            await sc.maps.columns(GUID_CUSTOMERS)
    raw = query(route)
    assert raw == f"token={PLUS_TOKEN_Q}&mapKey={GUID_CUSTOMERS}".encode()
    assert b"+" not in raw
    assert sent_token(route.calls.last.request) == PLUS_TOKEN


async def test_token_from_reference_is_percent_encoded() -> None:
    with mock_api() as api:
        route = api.post("/validate").respond(json=True)
        async with client() as sc:
            assert await sc.auth.validate() is True
    request = route.calls.last.request
    assert request.url.path == "/API/validate"
    assert request.url.query == f"token={TOKEN_Q}".encode()
    assert request.headers["Accept"] == "application/json"
    assert request.content == b""


async def test_validate_false_drops_the_token() -> None:
    with mock_api() as api:
        api.post("/validate").respond(json=False)
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            assert await sc.auth.validate() is False
            await sc.maps.columns(GUID_CUSTOMERS)
    assert api["GetToken"].call_count == 2  # the refused token was not used again
    assert columns.call_count == 1


async def test_validate_401_is_false_and_drops_the_token() -> None:
    with mock_api() as api:
        validate = api.post("/validate").respond(401, json="expired")
        async with client() as sc:
            assert await sc.auth.validate() is False
            await sc.auth.get_token()
    assert validate.call_count == 1  # no token refresh and retry for validate itself
    assert api["GetToken"].call_count == 2


async def test_validate_true_keeps_the_token() -> None:
    with mock_api() as api:
        api.post("/validate").respond(json=True)
        async with client() as sc:
            first = await sc.auth.get_token()
            assert await sc.auth.validate() is True
            assert await sc.auth.get_token() is first
    assert api["GetToken"].call_count == 1


@pytest.mark.parametrize("body", [b'"yes"', b"1", b"null", b"", b"<html></html>"])
async def test_validate_unreadable_answer(body: bytes) -> None:
    with mock_api() as api:
        api.post("/validate").respond(200, content=body)
        async with client() as sc:
            with pytest.raises(ResponseParseError):
                await sc.auth.validate()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"123", "application/json"),
        (b'""', "application/json"),
        (b'"two words"', "application/json"),
        (b'{"token": "x"}', "application/json"),
        (b"not json", "text/plain"),
        (html_page("Login").encode(), "text/html"),
    ],
)
async def test_unreadable_get_token_answer(body: bytes, content_type: str) -> None:
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").respond(
            200, content=body, headers={"Content-Type": content_type}
        )
        columns = api.post("/GetMapColumns")
        async with client() as sc:
            with pytest.raises(ResponseParseError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert info.value.endpoint == "GetToken"
    assert not columns.called


async def test_get_token_refused_raises_authentication_error() -> None:
    with mock_api(token=None) as api:
        route = api.post("/GetToken", name="GetToken").respond(
            401, json="Invalid credentials", headers={"X-Request-Id": "tok-1"}
        )
        async with client() as sc:
            with pytest.raises(AuthenticationError) as info:
                await sc.auth.get_token()
    assert route.call_count == 1
    assert info.value.endpoint == "GetToken"
    assert info.value.request_id == "tok-1"
    assert info.value.body == "Invalid credentials"


# ---- a cached token goes only to the password that got it ----------------------------

WRONG = Credentials(email=EMAIL, password="not-the-password", company_id=COMPANY)
NEW_PASSWORD = Credentials(email=EMAIL, password="the+new/password=", company_id=COMPANY)
NEW_TOKEN = "bmV3LXRva2Vu"


def _get_token_by_password(accepted: dict[str, str]) -> Callable[[httpx.Request], httpx.Response]:
    """GetToken as the server answers it: the token of an accepted password, else 401."""

    def answer(request: httpx.Request) -> httpx.Response:
        token = accepted.get(request.url.params["password"])
        return httpx.Response(200, json=token) if token else httpx.Response(401, json="Invalid")

    return answer


@pytest.mark.parametrize("wrong_first", [False, True])
async def test_a_wrong_password_never_gets_the_cached_token(wrong_first: bool) -> None:
    with mock_api(token=None) as api:
        tokens = api.post("/GetToken", name="GetToken").mock(
            side_effect=_get_token_by_password({HASHED: TOKEN})
        )
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            wrong = sc.with_credentials(WRONG)
            if wrong_first:
                with pytest.raises(AuthenticationError):
                    await wrong.maps.columns(GUID_CUSTOMERS)
            assert len(await sc.maps.columns(GUID_CUSTOMERS)) == 3
            for _ in range(2):  # the right token is cached now: still refused, each time
                with pytest.raises(AuthenticationError) as info:
                    await wrong.maps.columns(GUID_CUSTOMERS)
                assert info.value.endpoint == "GetToken"
            assert len(await sc.maps.columns(GUID_CUSTOMERS)) == 3
    sent = [call.request.url.params["password"] for call in tokens.calls]
    wrong_hash = independent_hash("not-the-password")
    first = [wrong_hash] if wrong_first else []
    assert sent == [*first, HASHED, wrong_hash, wrong_hash], [s[:4] for s in sent]
    assert columns.call_count == 2  # nothing sent for the wrong password but GetToken
    assert {sent_token(c.request) for c in columns.calls} == {TOKEN}


async def test_a_password_and_its_token_are_taken_together() -> None:
    # The wrong password asks first and its GetToken is slow; the right one gets its own
    # token meanwhile, and storing it is slow too. Calls that come while it is being
    # stored see both at once: the right password gets that token, the wrong one a 401.
    right_token_sent = anyio.Event()

    async def get_token(request: httpx.Request) -> httpx.Response:
        if request.url.params["password"] == HASHED:
            right_token_sent.set()
            return httpx.Response(200, json=TOKEN)
        await anyio.sleep(0.3)
        return httpx.Response(401, json="Invalid")

    class SlowSetStore(DictStore):
        async def set(self, key: TokenKey, token: Token) -> None:
            await anyio.sleep(0.1)
            await super().set(key, token)

    outcomes: dict[str, object] = {}
    with mock_api(token=None) as api:
        tokens = api.post("/GetToken", name="GetToken").mock(side_effect=get_token)
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client(token_store=SlowSetStore()) as sc:
            wrong = sc.with_credentials(WRONG)

            async def call(name: str, who: SmartConnect) -> None:
                try:
                    outcomes[name] = len(await who.maps.columns(GUID_CUSTOMERS))
                except AuthenticationError as exc:
                    outcomes[name] = exc.endpoint

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "wrong first", wrong)
                await anyio.sleep(0.02)
                tg.start_soon(call, "right", sc)
                await right_token_sent.wait()
                await anyio.sleep(0.02)  # the right token is being stored now
                tg.start_soon(call, "right again", sc)
                tg.start_soon(call, "wrong again", wrong)
    assert outcomes == {
        "wrong first": "GetToken",
        "right": 3,
        "right again": 3,
        "wrong again": "GetToken",
    }
    sent = sorted(c.request.url.params["password"] for c in tokens.calls)  # as answered
    assert sent == sorted([independent_hash(WRONG.password)] * 2 + [HASHED])
    assert {sent_token(c.request) for c in columns.calls} == {TOKEN}


async def test_a_wrong_password_waiting_on_a_cancelled_fetch_gets_no_token() -> None:
    # The wrong password's first call is cancelled while another of its calls waits for
    # its GetToken, and the right password proves itself meanwhile: the waiting call
    # goes round, and must not take the token the right password stored.
    async def get_token(request: httpx.Request) -> httpx.Response:
        if request.url.params["password"] != HASHED:
            await anyio.sleep(0.2)
        return _get_token_by_password({HASHED: TOKEN})(request)

    outcomes: dict[str, object] = {}
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(side_effect=get_token)
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            wrong = sc.with_credentials(WRONG)

            async def cancelled() -> None:
                with anyio.move_on_after(0.05):
                    await wrong.auth.get_token()

            async def call(name: str, who: SmartConnect, after: float) -> None:
                await anyio.sleep(after)
                try:
                    outcomes[name] = len(await who.maps.columns(GUID_CUSTOMERS))
                except AuthenticationError as exc:
                    outcomes[name] = exc.endpoint

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancelled)
                tg.start_soon(call, "wrong, waiting", wrong, 0.01)
                tg.start_soon(call, "right", sc, 0.02)
    assert outcomes == {"wrong, waiting": "GetToken", "right": 3}
    assert [sent_token(c.request) for c in columns.calls] == [TOKEN]  # the right call's


async def test_a_burst_with_a_wrong_password_makes_one_failed_login() -> None:
    async def get_token(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        return _get_token_by_password({HASHED: TOKEN})(request)

    failures: list[str] = []
    with mock_api(token=None) as api:
        tokens = api.post("/GetToken", name="GetToken").mock(side_effect=get_token)
        api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            await sc.maps.columns(GUID_CUSTOMERS)  # the right password's token is cached
            wrong = sc.with_credentials(WRONG)

            async def one() -> None:
                try:
                    await wrong.maps.columns(GUID_CUSTOMERS)
                except AuthenticationError as exc:
                    failures.append(exc.endpoint)

            for _ in range(2):  # two bursts: one GetToken each (a failure is not kept)
                async with anyio.create_task_group() as tg:
                    for _ in range(200):
                        tg.start_soon(one)
    assert failures == ["GetToken"] * 400
    wrong_hash = independent_hash(WRONG.password)
    sent = [c.request.url.params["password"] for c in tokens.calls]
    assert sent == [HASHED, wrong_hash, wrong_hash]


async def test_force_refresh_holds_for_a_password_not_proven_yet() -> None:
    # Both passwords are accepted here; each takes over when it proves itself, and a
    # forced refresh by the one not proven now still sends its GetToken.
    accepted = {HASHED: TOKEN, independent_hash(NEW_PASSWORD.password): NEW_TOKEN}
    with mock_api(token=None) as api:
        tokens = api.post("/GetToken", name="GetToken").mock(
            side_effect=_get_token_by_password(accepted)
        )
        async with client() as sc:
            other = sc.with_credentials(NEW_PASSWORD)
            await sc.auth.get_token()  # proven: PASSWORD
            await other.auth.get_token()  # proves NEW_PASSWORD
            await sc.auth.get_token()  # proves PASSWORD again
            assert tokens.call_count == 3
            await other.auth.get_token()  # its own token, kept from before: no GetToken
            assert tokens.call_count == 3
            await sc.auth.get_token()  # the same for this one
            assert tokens.call_count == 3
            await other.auth.get_token(force_refresh=True)
    assert tokens.call_count == 4


async def test_same_credentials_share_one_token() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            twin = sc.with_credentials(
                Credentials(email=EMAIL, password=PASSWORD, company_id=COMPANY)
            )
            await sc.maps.columns(GUID_CUSTOMERS)
            await twin.maps.columns(GUID_CUSTOMERS)
            await twin.auth.get_token()
    assert api["GetToken"].call_count == 1


async def test_a_changed_password_is_proven_once_then_shares_the_cache() -> None:
    accepted = {HASHED: TOKEN}
    with mock_api(token=None) as api:
        tokens = api.post("/GetToken", name="GetToken").mock(
            side_effect=_get_token_by_password(accepted)
        )
        api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            await sc.maps.columns(GUID_CUSTOMERS)
            accepted.clear()  # the password is changed on the server
            accepted[independent_hash(NEW_PASSWORD.password)] = NEW_TOKEN
            renewed = sc.with_credentials(NEW_PASSWORD)
            assert (await renewed.auth.get_token()).value == NEW_TOKEN
            for _ in range(3):
                await renewed.maps.columns(GUID_CUSTOMERS)
            with pytest.raises(AuthenticationError):  # the old password: proven no more
                await sc.maps.columns(GUID_CUSTOMERS)
    assert tokens.call_count == 3  # the old password, the new one once, the old one again


# ---- single flight ------------------------------------------------------------------


async def test_1000_concurrent_cold_calls_fetch_one_token() -> None:
    with mock_api(token=None) as api:

        async def slow_token(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.01)
            return httpx.Response(200, json=TOKEN)

        token_route = api.post("/GetToken", name="GetToken").mock(side_effect=slow_token)
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        results: list[int] = []
        async with client() as sc:

            async def one() -> None:
                results.append(len(await sc.maps.columns(GUID_CUSTOMERS)))

            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(one)
    assert token_route.call_count == 1
    assert columns.call_count == 1000
    assert results == [3] * 1000
    assert {sent_token(c.request) for c in columns.calls} == {TOKEN}


async def test_token_is_cached_between_calls() -> None:
    with mock_api() as api:
        api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            for _ in range(5):
                await sc.maps.columns(GUID_CUSTOMERS)
    assert api["GetToken"].call_count == 1


async def test_force_refresh() -> None:
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json="first"), httpx.Response(200, json="second")]
        )
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client() as sc:
            assert (await sc.auth.get_token()).value == "first"
            assert (await sc.auth.get_token(force_refresh=True)).value == "second"
            await sc.maps.columns(GUID_CUSTOMERS)
    assert sent_token(columns.calls.last.request) == "second"


# ---- expiry and refresh margin ------------------------------------------------------


async def test_token_expiry_from_embedded_issue_time() -> None:
    clock = MutableClock(datetime(2020, 10, 2, 8, 6, tzinfo=timezone.utc))
    with mock_api():
        async with client(clock=clock) as sc:
            token = await sc.auth.get_token()
    assert token.issued_at == datetime(2020, 10, 2, 8, 5, 15, 866000, tzinfo=timezone.utc)
    assert token.expires_at == datetime(2021, 1, 2, 8, 5, 15, 866000, tzinfo=timezone.utc)


async def test_opaque_token_is_issued_at_the_clock_time() -> None:
    clock = MutableClock(datetime(2023, 11, 30, 10, 0, tzinfo=timezone.utc))
    with mock_api(token="opaque-token"):
        async with client(clock=clock) as sc:
            token = await sc.auth.get_token()
    assert token.issued_at == clock.now
    assert token.expires_at == datetime(2024, 2, 29, 10, 0, tzinfo=timezone.utc)


async def test_early_refresh_inside_margin_others_keep_old_token() -> None:
    clock = MutableClock(NOW)
    release = anyio.Event()
    seen_old = 0
    with mock_api(token=None) as api:
        answers = iter(["tok-1", "tok-2"])

        async def get_token(request: httpx.Request) -> httpx.Response:
            value = next(answers)
            if value == "tok-2":
                await release.wait()  # the early refresh hangs until the others are done
            return httpx.Response(200, json=value)

        async def columns(request: httpx.Request) -> httpx.Response:
            nonlocal seen_old
            if sent_token(request) == "tok-1":
                seen_old += 1
                if seen_old == 19:
                    release.set()
            return httpx.Response(200, content=COLUMNS_JSON)

        token_route = api.post("/GetToken", name="GetToken").mock(side_effect=get_token)
        columns_route = api.post("/GetMapColumns").mock(side_effect=columns)
        async with client(clock=clock, refresh_margin=timedelta(days=1)) as sc:
            old = await sc.auth.get_token()
            clock.now = old.expires_at - timedelta(hours=6)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    for _ in range(20):
                        tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
            tokens = [sent_token(c.request) for c in columns_route.calls]
            assert sorted(tokens) == ["tok-1"] * 19 + ["tok-2"]
            assert tokens[-1] == "tok-2"  # the refresher went last, with the new token
            await sc.maps.columns(GUID_CUSTOMERS)
    assert token_route.call_count == 2
    assert sent_token(columns_route.calls.last.request) == "tok-2"


async def test_failed_early_refresh_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    clock = MutableClock(NOW)
    with mock_api(token=None) as api:
        token_route = api.post("/GetToken", name="GetToken").mock(
            side_effect=[
                httpx.Response(200, json="tok-1"),
                httpx.Response(400, json="GetToken is down"),
                httpx.Response(200, json="tok-3"),
            ]
        )
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client(clock=clock) as sc:
            old = await sc.auth.get_token()
            clock.now = old.expires_at - timedelta(hours=1)
            with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
                assert len(await sc.maps.columns(GUID_CUSTOMERS)) == 3
            assert sent_token(columns.calls.last.request) == "tok-1"
            assert "early token refresh failed" in caplog.text
            assert "BadRequestError" in caplog.text
            await sc.maps.columns(GUID_CUSTOMERS)  # the next call tries again
    assert token_route.call_count == 3
    assert sent_token(columns.calls.last.request) == "tok-3"


@pytest.mark.parametrize(
    "before_expiry",
    [timedelta(minutes=4), timedelta(0), -timedelta(days=1)],
    ids=["mandatory-window", "at-expiry", "expired"],
)
async def test_past_expiry_everyone_waits_for_one_refresh(before_expiry: timedelta) -> None:
    clock = MutableClock(NOW)
    with mock_api(token=None) as api:
        answers = iter(["tok-1", "tok-2", "tok-3"])

        async def get_token(request: httpx.Request) -> httpx.Response:
            await anyio.sleep(0.01)
            return httpx.Response(200, json=next(answers))

        token_route = api.post("/GetToken", name="GetToken").mock(side_effect=get_token)
        columns = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client(clock=clock) as sc:
            old = await sc.auth.get_token()
            clock.now = old.expires_at - before_expiry
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
    assert token_route.call_count == 2
    assert [sent_token(c.request) for c in columns.calls] == ["tok-2"] * 50


# ---- 401: invalidate, refresh once, retry once --------------------------------------


async def test_401_refreshes_the_token_once_for_all_concurrent_callers() -> None:
    waiting = 0
    all_in = anyio.Event()
    with mock_api(token=None) as api:
        token_route = api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json="old"), httpx.Response(200, json="new")]
        )

        async def columns(request: httpx.Request) -> httpx.Response:
            nonlocal waiting
            if sent_token(request) == "old":
                waiting += 1
                if waiting == 30:
                    all_in.set()
                await all_in.wait()  # every caller holds the old token before any 401
                return httpx.Response(401, json="Token expired")
            return httpx.Response(200, content=COLUMNS_JSON)

        route = api.post("/GetMapColumns").mock(side_effect=columns)
        async with client() as sc:
            await sc.auth.get_token()
            results: list[int] = []

            async def one() -> None:
                results.append(len(await sc.maps.columns(GUID_CUSTOMERS)))

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    for _ in range(30):
                        tg.start_soon(one)
            assert (await sc.auth.get_token()).value == "new"
    assert token_route.call_count == 2
    assert results == [3] * 30
    tokens = [sent_token(c.request) for c in route.calls]
    assert tokens.count("old") == 30
    assert tokens.count("new") == 30


async def test_401_then_success_retries_once_with_new_token() -> None:
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json="old"), httpx.Response(200, json="new")]
        )
        route = api.post("/GetMapColumns").mock(
            side_effect=[httpx.Response(401), httpx.Response(200, content=COLUMNS_JSON)]
        )
        async with client(max_retries=0) as sc:
            assert len(await sc.maps.columns(GUID_CUSTOMERS)) == 3
    assert [sent_token(c.request) for c in route.calls] == ["old", "new"]


async def test_401_refresh_does_not_drop_a_token_already_replaced() -> None:
    # A stale 401 (for "old") arriving after "new" was stored must not drop "new".
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(200, json="old"), httpx.Response(200, json="new")]
        )
        gate = anyio.Event()

        async def columns(request: httpx.Request) -> httpx.Response:
            if sent_token(request) == "old":
                await gate.wait()
                return httpx.Response(401)
            return httpx.Response(200, content=COLUMNS_JSON)

        api.post("/GetMapColumns").mock(side_effect=columns)
        async with client() as sc:
            await sc.auth.get_token()
            async with anyio.create_task_group() as tg:
                tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
                await anyio.sleep(0.01)
                new = await sc.auth.get_token(force_refresh=True)
                gate.set()
            assert await sc.auth.get_token() is new
        assert api["GetToken"].call_count == 2


# ---- stores -------------------------------------------------------------------------


class DictStore:
    def __init__(self) -> None:
        self.tokens: dict[TokenKey, Token] = {}
        self.sets = 0

    async def get(self, key: TokenKey) -> Token | None:
        return self.tokens.get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        self.sets += 1
        self.tokens[key] = token

    async def delete(self, key: TokenKey) -> None:
        self.tokens.pop(key, None)


async def test_custom_token_store_provides_the_token() -> None:
    store = DictStore()
    key = TokenKey.of(API_URL, COMPANY, EMAIL)
    issued = datetime.now(timezone.utc)
    store.tokens[key] = Token(
        value=PLUS_TOKEN,
        company_id=COMPANY,
        email=EMAIL,
        issued_at=issued,
        expires_at=add_months(issued, 3),
    )
    with mock_api() as api:
        route = api.post("/GetMapColumns").mock(side_effect=_columns_ok)
        async with client(token_store=store) as sc:
            await sc.maps.columns(GUID_CUSTOMERS)
        assert not api["GetToken"].called
    assert sent_token(route.calls.last.request) == PLUS_TOKEN


async def test_custom_token_store_receives_new_tokens_and_loses_refused_ones() -> None:
    store = DictStore()
    key = TokenKey.of(API_URL, COMPANY, EMAIL)
    with mock_api() as api:
        api.post("/validate").respond(json=False)
        async with client(token_store=store) as sc:
            token = await sc.auth.get_token()
            assert store.tokens == {key: token}
            assert await sc.auth.validate() is False
            assert store.tokens == {}
    assert store.sets == 1


class SlowDictStore(DictStore):
    """A ``DictStore`` whose every operation takes 10 ms, as a file or network store's
    may."""

    async def get(self, key: TokenKey) -> Token | None:
        await anyio.sleep(0.01)
        return await super().get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        await anyio.sleep(0.01)
        await super().set(key, token)

    async def delete(self, key: TokenKey) -> None:
        await anyio.sleep(0.01)
        await super().delete(key)


async def test_calls_arriving_while_a_refused_token_is_dropped_all_get_the_new_one() -> None:
    store = SlowDictStore()
    key = TokenKey.of(API_URL, COMPANY, EMAIL)
    issued = datetime.now(timezone.utc) - timedelta(days=1)
    store.tokens[key] = Token(
        value=PLUS_TOKEN,  # the server no longer accepts it
        company_id=COMPANY,
        email=EMAIL,
        issued_at=issued,
        expires_at=add_months(issued, 3),
    )

    async def columns(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.02)
        if sent_token(request) == PLUS_TOKEN:
            return httpx.Response(401, json="Authorization has been denied for this request.")
        return _columns_ok(request)

    failures: list[Exception] = []
    with mock_api() as api:
        api.post("/GetMapColumns").mock(side_effect=columns)
        async with client(token_store=store, max_retries=0) as sc:

            async def one() -> None:
                try:
                    await sc.maps.columns(GUID_CUSTOMERS)
                except Exception as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                for _ in range(60):  # a steady stream of calls
                    tg.start_soon(one)
                    await anyio.sleep(0.002)
    assert failures == []
    assert api["GetToken"].call_count == 1
    assert [t.value for t in store.tokens.values()] == [TOKEN]


class BrokenStore(DictStore):
    """A store whose chosen operations raise, their message holding the token."""

    def __init__(self, *broken: str) -> None:
        super().__init__()
        self.broken = set(broken)
        self.attempts: list[str] = []

    def _maybe_fail(self, operation: str) -> None:
        self.attempts.append(operation)
        if operation in self.broken:
            raise NotADirectoryError(f"[Errno 20] Not a directory: /tmp/x/{TOKEN}")

    async def get(self, key: TokenKey) -> Token | None:
        self._maybe_fail("get")
        return await super().get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        self._maybe_fail("set")
        await super().set(key, token)

    async def delete(self, key: TokenKey) -> None:
        self._maybe_fail("delete")
        await super().delete(key)


@pytest.mark.parametrize(
    ("broken", "attempts"),
    [
        (("set",), ["get", "set", "get", "get", "set"]),
        (("get",), ["get", "set", "get", "get", "set"]),
        (("delete",), ["get", "set", "get", "delete", "get", "set"]),
        (("get", "set", "delete"), ["get", "set", "get", "get", "set"]),
    ],
)
async def test_a_failing_token_store_never_fails_a_call(
    broken: tuple[str, ...], attempts: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore(*broken)
    refused = {"done": False}

    async def columns(request: httpx.Request) -> httpx.Response:
        if not refused["done"]:  # the first token is refused once: a delete is tried
            refused["done"] = True
            return httpx.Response(401, json="Authorization has been denied for this request.")
        return _columns_ok(request)

    caplog.set_level(logging.WARNING, logger="smartconnect_async")
    with mock_api() as api:
        api.post("/GetMapColumns").mock(side_effect=columns)
        async with client(token_store=store) as sc:
            for _ in range(5):
                assert len(await sc.maps.columns(GUID_CUSTOMERS)) == 3
    # One token, then one more after the 401; in memory between, whatever the store did.
    assert api["GetToken"].call_count == 2
    # Read, write; after the 401: compare and delete (when the read works), read, write.
    assert store.attempts == attempts
    failed = [r.getMessage() for r in caplog.records if "token store" in r.getMessage()]
    # One warning per outage: per run of failing calls, until the store answers again.
    outages = sum(
        a in broken and (i == 0 or attempts[i - 1] not in broken) for i, a in enumerate(attempts)
    )
    assert len(failed) == outages
    for message in failed:
        assert message.startswith("token store ")
        assert f"failed for company {COMPANY} (NotADirectoryError); going on with the" in message
        assert TOKEN not in message
    assert TOKEN not in caplog.text


class SyncStore:
    """A store written without ``async``: it cannot work, and must not pass for failing."""

    def get(self, key: TokenKey) -> Token | None:
        return None

    def set(self, key: TokenKey, token: Token) -> None:
        pass

    def delete(self, key: TokenKey) -> None:
        pass


async def test_a_store_that_is_not_async_is_a_type_error() -> None:
    with mock_api() as api:
        async with client(token_store=SyncStore()) as sc:
            with pytest.raises(TypeError) as info:
                await sc.maps.columns(GUID_CUSTOMERS)
    assert str(info.value) == ("token_store.get must be async (awaitable); it returned a NoneType")
    assert not api.calls


async def test_credentials_key_is_normalised() -> None:
    creds = Credentials(email="  USER@Example.com ", password=PASSWORD, company_id=f" {COMPANY} ")
    store = DictStore()
    with mock_api():
        async with client(credentials=creds, token_store=store) as sc:
            await sc.auth.get_token()
    assert list(store.tokens) == [TokenKey(API_URL, COMPANY, "user@example.com")]
    assert CREDS.email == EMAIL


async def test_get_token_failure_leaves_nothing_cached() -> None:
    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=[httpx.Response(400, json="nope"), httpx.Response(200, json="good")]
        )
        async with client() as sc:
            with pytest.raises(BadRequestError):
                await sc.auth.get_token()
            assert (await sc.auth.get_token()).value == "good"
