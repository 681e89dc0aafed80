"""Fixtures for the emulator's tests: a fixed clock, an emulator, in-process and TCP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone

import httpx
import pytest

from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    DemoCredential,
    Emulator,
    create_app,
    serve,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


@pytest.fixture
def anyio_backend() -> str:
    """These tests run on asyncio only."""
    return "asyncio"


@pytest.fixture
def alice() -> DemoCredential:
    """alice's login for DEMO01 (she also has DEMO02)."""
    return DEMO_CREDENTIALS[0]


@pytest.fixture
def now() -> datetime:
    """The time the fixed clock shows."""
    return NOW


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """A clock standing still at NOW (the emulator shifts it with advance_clock)."""
    return lambda: NOW


@pytest.fixture
def emulator(clock: Callable[[], datetime]) -> Emulator:
    """A default emulator on the fixed clock."""
    return Emulator(clock=clock)


@pytest.fixture
def token(emulator: Emulator, alice: DemoCredential) -> str:
    """A valid token of alice for DEMO01."""
    return emulator.issue_token(alice.email, alice.company_id)


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of the emulator; base URL is the API Url."""
    transport = httpx.ASGITransport(app=create_app(emulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator/API") as c:
        yield c


@pytest.fixture
def served(emulator: Emulator) -> Iterator[str]:
    """The emulator served over loopback TCP; yields the API Url."""
    with serve(create_app(emulator)) as url:
        yield url
