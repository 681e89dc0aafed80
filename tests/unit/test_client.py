"""client.py: construction checks, lifecycle, a user-supplied httpx client, and
with_credentials sharing the pool, the token cache and the map list."""

from __future__ import annotations

import re
import traceback
from typing import Any

import httpx
import pytest
from unit_support import (
    API_URL,
    COLUMNS_JSON,
    COMPANY,
    CREDS,
    EMAIL,
    GETALLDATA_XML,
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    PASSWORD,
    TOKEN,
    SleepRecorder,
    client,
    mock_api,
    sent_token,
)

from smartconnect_async import ClientClosedError, Credentials, ServerError, SmartConnect, Timeout

pytestmark = pytest.mark.anyio


# ---- construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "api_url", ["", "sc.example.com/API", "ftp://sc.example.com/API", "//sc.example.com"]
)
def test_bad_api_url(api_url: Any) -> None:
    with pytest.raises(ValueError, match="api_url"):
        SmartConnect(api_url, CREDS)


@pytest.mark.parametrize("api_url", [None, 5, b"https://sc.example.com/API"])
def test_api_url_must_be_a_string(api_url: Any) -> None:
    with pytest.raises(TypeError, match="api_url must be a str"):
        SmartConnect(api_url, CREDS)


@pytest.mark.parametrize(
    "api_url",
    [
        "https://",
        "https://sc.example.com/API?tenant=1",
        "https://sc.example.com/API#top",
        "https://sc example.com/API",
    ],
)
def test_malformed_api_url_is_refused(api_url: str) -> None:
    with pytest.raises(ValueError, match="api_url"):
        SmartConnect(api_url, CREDS)


@pytest.mark.parametrize(
    "credentials", [None, {"email": EMAIL, "password": PASSWORD, "company_id": COMPANY}, (1, 2)]
)
async def test_credentials_must_be_credentials(credentials: Any) -> None:
    with pytest.raises(TypeError, match="Credentials"):
        SmartConnect(API_URL, credentials)
    async with client() as sc:
        with pytest.raises(TypeError, match="Credentials"):
            sc.with_credentials(credentials)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"backend": "requests"}, "backend"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        client(**kwargs)


async def test_trailing_slash_in_api_url() -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client(api_url=API_URL + "/") as sc:
            assert sc.api_url == API_URL
            await sc.maps.list()
    assert route.calls.last.request.url.path == "/API/GetMapList"
    assert api["GetToken"].calls.last.request.url.path == "/API/GetToken"


async def test_timeout_none_means_no_limit() -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client(timeout=None) as sc:
            await sc.maps.list()
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": None,
        "read": None,
        "write": None,
        "pool": None,
    }


async def test_timeout_object_reaches_httpx() -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client(timeout=Timeout(30, connect=2, pool=1)) as sc:
            await sc.maps.list()
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 2,
        "read": 30,
        "write": 30,
        "pool": 1,
    }


# ---- lifecycle ----------------------------------------------------------------------


async def test_use_after_aclose_raises_client_closed() -> None:
    with mock_api() as api:
        async with client() as sc:
            await sc.auth.get_token()
        calls = api.calls.call_count
        with pytest.raises(ClientClosedError):
            await sc.maps.list()
        with pytest.raises(ClientClosedError):
            await sc.maps.columns(GUID_CUSTOMERS)
        with pytest.raises(ClientClosedError):
            await sc.data.get_all(GUID_CUSTOMERS)
        with pytest.raises(ClientClosedError):
            await sc.runs.run(GUID_CUSTOMERS)
        with pytest.raises(ClientClosedError):
            await sc.auth.validate()
        with pytest.raises(ClientClosedError):
            await sc.errors.save(
                GUID_CUSTOMERS, tenant_server="s", tenant_technical_name="t", run_number=1
            )
        assert api.calls.call_count == calls  # nothing was sent


async def test_cold_client_closed_before_first_call() -> None:
    with mock_api() as api:
        sc = client()
        await sc.aclose()
        await sc.aclose()  # closing twice is fine
        with pytest.raises(ClientClosedError):
            await sc.auth.get_token()
    assert api.calls.call_count == 0


async def test_user_http_client_is_not_closed_and_its_hooks_see_requests() -> None:
    seen: list[tuple[str, str]] = []
    statuses: list[int] = []

    async def on_request(request: httpx.Request) -> None:
        seen.append((request.url.path, request.headers["Accept"]))

    async def on_response(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    http = httpx.AsyncClient(event_hooks={"request": [on_request], "response": [on_response]})
    try:
        with mock_api() as api:
            api.post("/GetAllData").respond(200, content=GETALLDATA_XML)
            async with client(http_client=http) as sc:
                await sc.data.get_all(GUID_CUSTOMERS)
            assert not http.is_closed
            # The client is still the user's to use.
            api.post("/ping").respond(204)
            assert (await http.post(f"{API_URL}/ping")).status_code == 204
    finally:
        await http.aclose()
    assert seen[:2] == [
        ("/API/GetToken", "application/json"),
        ("/API/GetAllData", "application/xml"),
    ]
    assert statuses[:2] == [200, 200]


async def test_with_credentials_client_close_does_not_close_the_pool() -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client() as sc:
            other = sc.with_credentials(
                Credentials(email=EMAIL, password=PASSWORD, company_id="OTHER")
            )
            await other.aclose()
            assert len(await sc.maps.list()) == 2
            assert len(await other.maps.list()) == 2
        with pytest.raises(ClientClosedError):
            await other.maps.list()


# ---- with_credentials ---------------------------------------------------------------


async def test_with_credentials_same_key_shares_token_and_map_list() -> None:
    with mock_api() as api:
        map_list = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        columns = api.post("/GetMapColumns").respond(200, content=COLUMNS_JSON)
        async with client() as sc:
            await sc.maps.columns("Import Customers")
            same = sc.with_credentials(
                Credentials(email=EMAIL.upper(), password=PASSWORD, company_id=f" {COMPANY}")
            )
            await same.maps.columns("Import Customers")
        assert api["GetToken"].call_count == 1
    assert map_list.call_count == 1
    assert [sent_token(c.request) for c in columns.calls] == [TOKEN, TOKEN]


async def test_with_credentials_other_company_gets_its_own_token() -> None:
    with mock_api(token=None) as api:

        def token_for(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=f"token-of-{request.url.params['companyId']}")

        token_route = api.post("/GetToken", name="GetToken").mock(side_effect=token_for)
        columns = api.post("/GetMapColumns").respond(200, content=COLUMNS_JSON)
        seen: list[str] = []

        async def hook(request: httpx.Request) -> None:
            seen.append(request.url.path)

        http = httpx.AsyncClient(event_hooks={"request": [hook]})
        async with client(http_client=http) as sc:
            other = sc.with_credentials(
                Credentials(email=EMAIL, password=PASSWORD, company_id="OTHER")
            )
            assert repr(other) == (
                f"SmartConnect({API_URL!r}, company_id='OTHER', email={EMAIL!r})"
            )
            await sc.maps.columns(GUID_CUSTOMERS)
            await other.maps.columns(GUID_CUSTOMERS)
            await other.maps.columns(GUID_CUSTOMERS)
            await sc.maps.columns(GUID_CUSTOMERS)
        await http.aclose()
    assert token_route.call_count == 2
    companies = [c.request.url.params["companyId"] for c in token_route.calls]
    assert companies == [COMPANY, "OTHER"]
    assert [sent_token(c.request) for c in columns.calls] == [
        f"token-of-{COMPANY}",
        "token-of-OTHER",
        "token-of-OTHER",
        f"token-of-{COMPANY}",
    ]
    assert seen.count("/API/GetMapColumns") == 4  # one pool: the shared client saw all


async def test_with_credentials_other_company_has_its_own_map_list() -> None:
    other_list = (
        b'[{"MapKey": "1b763e98-37c4-4d32-8320-abb200d82e59", "MapId": "Import Customers",'
        b' "MapDescription": ""}]'
    )

    def maps_for(request: httpx.Request) -> httpx.Response:
        own = request.url.params["token"] == TOKEN
        return httpx.Response(200, content=MAP_LIST_JSON if own else other_list)

    with mock_api(token=None) as api:
        api.post("/GetToken", name="GetToken").mock(
            side_effect=lambda request: httpx.Response(
                200, json=TOKEN if request.url.params["companyId"] == COMPANY else "other"
            )
        )
        api.post("/GetMapList").mock(side_effect=maps_for)
        columns = api.post("/GetMapColumns").respond(200, content=COLUMNS_JSON)
        async with client() as sc:
            other = sc.with_credentials(
                Credentials(email=EMAIL, password=PASSWORD, company_id="OTHER")
            )
            await sc.maps.columns("Import Customers")
            await other.maps.columns("Import Customers")
    keys = [c.request.url.params["mapKey"] for c in columns.calls]
    assert keys == [GUID_CUSTOMERS, "1b763e98-37c4-4d32-8320-abb200d82e59"]


async def test_with_company_is_the_same_user_for_another_company() -> None:
    with mock_api(token=None) as api:
        token_route = api.post("/GetToken", name="GetToken").mock(
            side_effect=lambda r: httpx.Response(200, json=f"t-{r.url.params['companyId']}")
        )
        columns = api.post("/GetMapColumns").respond(200, content=COLUMNS_JSON)
        async with client() as sc:
            other = sc.with_company("OTHER")
            assert other.credentials == Credentials(
                email=EMAIL, password=PASSWORD, company_id="OTHER"
            )
            await other.maps.columns(GUID_CUSTOMERS)
            await other.aclose()  # not its pool to close
            await sc.maps.columns(GUID_CUSTOMERS)
    assert [c.request.url.params["companyId"] for c in token_route.calls] == ["OTHER", COMPANY]
    assert [sent_token(c.request) for c in columns.calls] == ["t-OTHER", f"t-{COMPANY}"]


async def test_with_options_changes_the_defaults_of_its_calls_only(
    sleeps: SleepRecorder,
) -> None:
    with mock_api() as api:
        route = api.post("/GetMapList").respond(503)
        async with client(max_retries=2, timeout=30) as sc:
            quick = sc.with_options(timeout=Timeout(5, connect=1), max_retries=0)
            with pytest.raises(ServerError):
                await quick.maps.list()
            assert route.call_count == 1  # not retried
            assert route.calls.last.request.extensions["timeout"] == {
                "connect": 1,
                "read": 5,
                "write": 5,
                "pool": 5,
            }
            with pytest.raises(ServerError):
                await quick.maps.list(max_retries=1)  # a call's own setting still wins
            assert route.call_count == 3
            other = quick.with_company("OTHER")  # derived clients keep the options
            api.post("/GetToken", name="GetToken").respond(json="other-token")
            with pytest.raises(ServerError):
                await other.maps.list()
            assert route.call_count == 4
            with pytest.raises(ServerError):
                await sc.maps.list()  # the first client's own defaults
            assert route.call_count == 7
            assert route.calls.last.request.extensions["timeout"]["read"] == 30
            unlimited = sc.with_options(timeout=None)  # None: no limit, as for SmartConnect
            with pytest.raises(ServerError):
                await unlimited.maps.list(max_retries=0)
            assert route.calls.last.request.extensions["timeout"]["read"] is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"timeout": 0}, ValueError),
    ],
)
async def test_with_options_checks_its_settings(
    options: dict[str, Any], error: type[Exception]
) -> None:
    async with client() as sc:
        with pytest.raises(error):
            sc.with_options(**options)


ENV = {
    "SMARTCONNECT_API_URL": API_URL,
    "SMARTCONNECT_EMAIL": EMAIL,
    "SMARTCONNECT_PASSWORD": PASSWORD,
    "SMARTCONNECT_COMPANY_ID": COMPANY,
}


async def test_from_env_reads_what_the_command_line_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**ENV, "SMARTCONNECT_TIMEOUT": "7.5"}.items():
        monkeypatch.setenv(name, value)
    with mock_api() as api:
        route = api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with SmartConnect.from_env(backend="httpx") as sc:
            assert sc.credentials == CREDS
            await sc.maps.list()
        async with SmartConnect.from_env(backend="httpx", timeout=2) as sc:
            await sc.maps.list()
    assert [c.request.extensions["timeout"]["read"] for c in route.calls] == [7.5, 2]
    assert sent_token(route.calls.last.request) == TOKEN


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"SMARTCONNECT_EMAIL": None, "SMARTCONNECT_COMPANY_ID": " "},
            "environment variable(s) not set or empty: SMARTCONNECT_EMAIL, SMARTCONNECT_COMPANY_ID",
        ),
        (
            {"SMARTCONNECT_TIMEOUT": "soon"},
            "SMARTCONNECT_TIMEOUT must be a positive number of seconds, not 'soon'",
        ),
        (
            {"SMARTCONNECT_TIMEOUT": "-1"},
            "SMARTCONNECT_TIMEOUT must be a positive number of seconds, not '-1'",
        ),
        ({"SMARTCONNECT_API_URL": "sc.example.com"}, "is not an API Url"),
    ],
)
def test_from_env_names_what_is_wrong_and_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], message: str
) -> None:
    for name, value in {**ENV, **changes}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        SmartConnect.from_env()
    shown = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    assert PASSWORD not in "".join(shown.format())  # no frame holds the environment


async def test_requests_outside_a_mock_router_never_reach_the_network() -> None:
    # The suite's guard (conftest.py): without a respx route nothing leaves the process.
    async with client(max_retries=0) as sc:
        with pytest.raises(RuntimeError, match="must not touch the network"):
            await sc.maps.list()


async def test_repr_and_attributes() -> None:
    async with client() as sc:
        assert repr(sc) == f"SmartConnect({API_URL!r}, company_id={COMPANY!r}, email={EMAIL!r})"
        assert sc.credentials is CREDS
        assert sc.api_url == API_URL
