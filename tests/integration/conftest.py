"""Integration fixtures: the real client over real loopback TCP against the emulator.

- ``server`` (one per test module): uvicorn on 127.0.0.1 through the emulator's
  ``serve()``, whose app is an ``AppSwitch``; ``emulator`` installs a fresh ``Emulator``
  into it for each test (options from ``@pytest.mark.emulator(**kwargs)``), so tests are
  isolated without paying for a server start each.
- ``backend_combo`` parametrises every async test over the valid (HTTP library, anyio
  backend) pairs: httpx on asyncio and trio, aiohttp on asyncio (aiohttp does not run on
  trio, so that pair is never generated). ``anyio_backend`` is derived from it.
- ``make_client`` builds ``SmartConnect`` clients on the test's HTTP library and closes
  them after the test; ``sc`` is one for alice @ DEMO01.
- Retry back-off is made fast (``BACKOFF_INITIAL``/``BACKOFF_CAP``), nothing else of the
  library is patched.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).parent))

from integration_support import (
    BACKEND_COMBOS,
    AppSwitch,
    LoopbackServer,
    MakeClient,
    PoolIdle,
    connections_in_use,
    credentials_of,
    demo,
    wait_server_idle,
)

from smartconnect_async import Credentials, SmartConnect
from smartconnect_async.emulator import Emulator, serve


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator(**kwargs): options of the test's Emulator (rows, rate_limit, ...)"
    )
    config.addinivalue_line(
        "markers", "combos(*pairs): restrict a test to some (http library, anyio backend) pairs"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend_combo`` over the valid pairs, or the ones the test's
    ``combos`` marker names."""
    if "backend_combo" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("combos")
    pairs = tuple(marker.args) if marker is not None else BACKEND_COMBOS
    for pair in pairs:
        assert pair in BACKEND_COMBOS, f"{pair} is not a valid (http library, anyio) pair"
    metafunc.parametrize(
        "backend_combo", pairs, ids=[f"{http}-{loop}" for http, loop in pairs], scope="function"
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    switch = AppSwitch()
    switch.install(Emulator())
    with serve(switch) as api_url:
        assert api_url.startswith("http://127.0.0.1:")
        yield LoopbackServer(api_url=api_url, switch=switch)


@pytest.fixture
def emulator(server: LoopbackServer, request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A fresh emulator for this test, served by the module's server. After the test,
    waits (bounded) until the server has finished the test's requests, so that no work
    of one test runs into the next."""
    marker = request.node.get_closest_marker("emulator")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    emulator = server.install(Emulator(**options))
    stats = server.switch.stats
    yield emulator
    emulator.clear_faults()
    deadline = time.monotonic() + 10
    while stats.in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stats.in_flight == 0, "the server was still busy with this test's requests"


@pytest.fixture
def backend_combo() -> tuple[str, str]:  # pragma: no cover - always parametrised
    raise AssertionError("backend_combo is parametrised by pytest_generate_tests")


@pytest.fixture
def anyio_backend(backend_combo: tuple[str, str]) -> str:
    return backend_combo[1]


@pytest.fixture
def http_backend(backend_combo: tuple[str, str]) -> str:
    return backend_combo[0]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait milliseconds, not seconds (Retry-After is still honoured)."""
    monkeypatch.setattr("smartconnect_async._retry.BACKOFF_INITIAL", 0.002)
    monkeypatch.setattr("smartconnect_async._retry.BACKOFF_CAP", 0.01)


@pytest.fixture
def alice01() -> Credentials:
    return credentials_of(demo("DEMO01"))


@pytest.fixture
def alice02() -> Credentials:
    return credentials_of(demo("DEMO02", "alice"))


@pytest.fixture
def bob02() -> Credentials:
    return credentials_of(demo("DEMO02", "bob"))


@pytest.fixture
async def make_client(
    server: LoopbackServer, emulator: Emulator, http_backend: str, alice01: Credentials
) -> AsyncIterator[MakeClient]:
    """``make_client(credentials=alice01, **options)``: a client on the test's HTTP
    library (closed after the test). ``api_url`` may be overridden in ``options``."""
    made: list[SmartConnect] = []

    def make(credentials: Credentials | None = None, **options: Any) -> SmartConnect:
        api_url = options.pop("api_url", server.api_url)
        options.setdefault("backend", http_backend)
        options.setdefault("timeout", 10.0)
        client = SmartConnect(api_url, credentials or alice01, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def sc(make_client: MakeClient) -> SmartConnect:
    """A client for alice @ DEMO01."""
    return make_client()


@pytest.fixture
def assert_pool_idle(server: LoopbackServer) -> PoolIdle:
    """``await assert_pool_idle(client)``: no connection of the client's pool is in use
    (checked at once), and the server finishes what it was given (waited for, bounded:
    the last bytes of an answer may reach the client before the server's handler returns).
    """

    async def check(client: SmartConnect) -> None:
        assert connections_in_use(client) == 0, "a connection was left in use"
        await wait_server_idle(server)

    return check


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test only (the tests share one redis-server)."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A plain redis-py client of the tests' redis-server, to look at what was written."""
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
