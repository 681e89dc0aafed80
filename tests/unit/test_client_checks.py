"""client.py: the constructor refuses bad settings at once, with a typed error naming
the setting (and no secret); an API Url with a user name or password is refused; and
backend="aiohttp" on trio says so on the first call, before anything is sent."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from unit_support import API_URL, CREDS, TOKEN, client, mock_api

from smartconnect_async import APIConnectionError, MemoryTokenStore, SmartConnect, Timeout
from smartconnect_async._aiohttp import AiohttpBackend

pytestmark = pytest.mark.anyio

# ---- the API Url carries no user name or password -----------------------------------


@pytest.mark.parametrize(
    "api_url",
    [
        "https://scuser:hunter22@sc.example.com/API",
        "http://scuser:hunter22@sc.example.com:8080/API",
        "https://scuser@sc.example.com/API",
        "https://:hunter22@sc.example.com/API",
        "https://scuser:hunter22@sc.example.com/API?tenant=1",  # two problems at once
    ],
)
def test_api_url_with_user_info_is_refused(api_url: str) -> None:
    with pytest.raises(ValueError, match="api_url") as info:
        SmartConnect(api_url, CREDS)
    message = str(info.value)
    assert "hunter22" not in message
    assert "scuser" not in message
    if "?" not in api_url:
        assert "must not carry a user name or password" in message


@pytest.mark.parametrize(
    "api_url",
    [
        "https://scuser:hun#ter22@sc.example.com/API",  # a password that ends the URL early
        "https://scuser:hun?ter22@sc.example.com/API",
        "https://scuser:hun/ter22@sc.example.com/API",
        "https://scuser:123/ter22@sc.example.com/API",  # reads as host scuser, port 123
    ],
)
def test_malformed_user_info_leaks_nothing(api_url: str) -> None:
    with pytest.raises(ValueError, match="api_url") as info:
        SmartConnect(api_url, CREDS)
    message = str(info.value)
    for secret in ("hun", "ter22", "scuser"):
        assert secret not in message


# ---- settings of the wrong type or out of range -------------------------------------


class _GetOnly:
    async def get(self, key: object) -> None:
        return None


class _NotCallable:
    get = set = delete = None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_retries": "2"}, TypeError, "max_retries must be an int, not str"),
        ({"max_retries": True}, TypeError, "max_retries must be an int, not bool"),
        ({"max_retries": 1.5}, TypeError, "max_retries must be an int, not float"),
        ({"max_retries": None}, TypeError, "max_retries must be an int, not NoneType"),
        ({"max_retries": -1}, ValueError, "max_retries must be at least 0, not -1"),
        ({"max_connections": "10"}, TypeError, "max_connections must be an int, not str"),
        ({"max_connections": True}, TypeError, "max_connections must be an int, not bool"),
        ({"max_connections": 0}, ValueError, "max_connections must be at least 1, not 0"),
        ({"max_connections": -3}, ValueError, "max_connections must be at least 1, not -3"),
        ({"max_concurrent_runs": 2.0}, TypeError, "max_concurrent_runs must be an int, not"),
        ({"max_concurrent_runs": False}, TypeError, "max_concurrent_runs must be an int, not"),
        ({"max_concurrent_runs": 0}, ValueError, "max_concurrent_runs must be at least 1, not 0"),
        ({"max_answer_size": "64MB"}, TypeError, "max_answer_size must be an int, not"),
        ({"max_answer_size": 10}, ValueError, "max_answer_size must be at least 1024, not 10"),
        ({"keepalive_expiry": "4"}, TypeError, "keepalive_expiry must be a number.*not str"),
        ({"keepalive_expiry": True}, TypeError, "keepalive_expiry must be a number.*not bool"),
        ({"keepalive_expiry": None}, TypeError, "keepalive_expiry must be a number"),
        ({"keepalive_expiry": -1}, ValueError, "keepalive_expiry .*at least 0, not -1"),
        ({"keepalive_expiry": -0.5}, ValueError, r"keepalive_expiry .*not -0\.5"),
        ({"keepalive_expiry": math.nan}, ValueError, "keepalive_expiry .*not nan"),
        ({"keepalive_expiry": math.inf}, ValueError, "keepalive_expiry .*not inf"),
        ({"refresh_margin": 3600}, TypeError, "refresh_margin must be a datetime.timedelta"),
        ({"refresh_margin": None}, TypeError, "refresh_margin must be a datetime.timedelta"),
        (
            {"refresh_margin": timedelta(seconds=-1)},
            ValueError,
            r"refresh_margin .*not datetime\.timedelta\(days=-1",
        ),
        (
            {"refresh_margin": timedelta(days=89)},
            ValueError,
            r"refresh_margin .*less than 89 days.*not datetime\.timedelta\(days=89\)",
        ),
        ({"refresh_margin": timedelta(days=365)}, ValueError, "refresh_margin .*89 days"),
        ({"token_store": object()}, TypeError, "token_store .*object has no get, set, delete"),
        ({"token_store": _GetOnly()}, TypeError, "token_store .*_GetOnly has no set, delete"),
        ({"token_store": _NotCallable()}, TypeError, "token_store .*has no get, set, delete"),
        ({"token_store": {}}, TypeError, "token_store .*dict has no set"),
        ({"timeout": "30"}, TypeError, "timeout must be a Timeout, a number .*not str"),
        ({"timeout": b"30"}, TypeError, "timeout must be a Timeout, a number .*not bytes"),
        ({"timeout": [30]}, TypeError, "timeout must be a Timeout, a number .*not list"),
        ({"timeout": timedelta(seconds=30)}, TypeError, "timeout .*not timedelta"),
    ],
)
def test_bad_setting_is_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        client(**kwargs)
    assert type(info.value) is error


@pytest.mark.parametrize("backend", ["auto", "httpx", "aiohttp"])
def test_settings_are_checked_whatever_the_backend(backend: str) -> None:
    with pytest.raises(TypeError, match="max_retries"):
        SmartConnect(API_URL, CREDS, backend=backend, max_retries="3")  # type: ignore[arg-type]


@pytest.mark.parametrize("setting", ["timeout", "token_store", "keepalive_expiry"])
def test_a_secret_given_as_a_setting_is_not_shown(setting: str) -> None:
    with pytest.raises(TypeError, match=setting) as info:
        client(**{setting: TOKEN})
    assert TOKEN not in str(info.value)
    assert TOKEN[:12] not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": 0},
        {"max_connections": 1},
        {"max_concurrent_runs": 1},
        {"keepalive_expiry": 0},
        {"keepalive_expiry": 0.5},
        {"refresh_margin": timedelta(0)},
        {"refresh_margin": timedelta(days=89) - timedelta(microseconds=1)},
        {"token_store": None},
        {"token_store": MemoryTokenStore()},
        {"timeout": None},
        {"timeout": 5},
        {"timeout": 2.5},
        {"timeout": Timeout(30, connect=5)},
    ],
)
async def test_good_settings_at_the_edges_are_accepted(kwargs: dict[str, Any]) -> None:
    async with client(**kwargs):
        pass


def test_existing_timeout_value_check_still_applies() -> None:
    with pytest.raises(ValueError, match="timeout"):
        client(timeout=0)


# ---- backend="aiohttp" on trio ------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("first_call", ["maps.list", "auth.get_token"])
async def test_aiohttp_backend_on_trio_says_so_before_sending(first_call: str) -> None:
    with mock_api() as api:
        sc = SmartConnect(API_URL, CREDS, backend="aiohttp", max_retries=0)
        backend = sc._transport.backend
        assert isinstance(backend, AiohttpBackend)  # what the integration helpers expect
        area, method = first_call.split(".")
        with pytest.raises(RuntimeError, match="aiohttp") as info:
            await getattr(getattr(sc, area), method)()
        assert type(info.value) is RuntimeError
        message = str(info.value)
        assert "runs only on asyncio" in message
        assert "backend='httpx'" in message
        assert "backend='auto'" in message
        assert "no running event loop" not in message
        # Nothing was sent: no aiohttp session was ever made, and no connection slot is held.
        assert backend._session is None
        assert sc._transport.limits.connections.free == backend._max_connections
        await sc.aclose()  # closing is fine, twice too
        await sc.aclose()
    assert api.calls.call_count == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_backend_on_asyncio_is_not_refused() -> None:
    # The unit suite blocks every socket: the call gets as far as connecting, and fails
    # there, as any aiohttp call would with no network.
    async with SmartConnect(API_URL, CREDS, backend="aiohttp", max_retries=0) as sc:
        with pytest.raises(APIConnectionError, match="could not connect"):
            await sc.maps.list()
