"""Pytest fixtures for testing code that uses smartconnect_async, against the emulator.

Installed as a pytest plugin (entry point ``pytest11``); the fixtures need the
``emulator`` extra. They are plain (not async) fixtures, so async tests may run them
under anyio's plugin (``@pytest.mark.anyio``) or pytest-asyncio's, in its strict mode
(``@pytest.mark.asyncio``) as in its auto mode:

- ``smartconnect_emulator``: a fresh ``Emulator`` (seeded tenant, default sizes).
- ``smartconnect_credentials``: ``Credentials`` of the emulator's first demo user.
- ``smartconnect_client``: a ``SmartConnect`` bound in-process to the emulator, through
  httpx's ASGI transport: no socket, so nothing is left to close. Without a socket only
  ``Timeout.total`` bounds a call: to see a latency fault trip a ``read`` timeout, use
  ``smartconnect_server``.
- ``smartconnect_server``: the emulator served by uvicorn on a free 127.0.0.1 port:
  ``.api_url``, ``.emulator``.

Override ``smartconnect_emulator`` in your ``conftest.py`` to size data sources, set
fault rules or a clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from .client import SmartConnect
from .models import Credentials

if TYPE_CHECKING:
    import httpx

    from .emulator import Emulator

__all__ = [
    "EmulatorServer",
    "emulator_client",
    "smartconnect_client",
    "smartconnect_credentials",
    "smartconnect_emulator",
    "smartconnect_server",
]

IN_PROCESS_URL = "http://emulator.invalid/API"
"""The API Url of an in-process emulator (never resolved: requests go to the app)."""


@attrs.frozen
class EmulatorServer:
    """A running loopback emulator."""

    api_url: str
    emulator: Emulator


@asynccontextmanager
async def emulator_client(
    emulator: Emulator, credentials: Credentials, **options: Any
) -> AsyncIterator[SmartConnect]:
    """``async with emulator_client(emulator, credentials) as sc``: a ``SmartConnect``
    talking to ``emulator`` in-process, through httpx's ASGI transport (no socket).
    ``options`` go to ``SmartConnect``."""
    http, client = _in_process(emulator, credentials, **options)
    async with http, client:
        yield client


def _in_process(
    emulator: Emulator, credentials: Credentials, **options: Any
) -> tuple[httpx.AsyncClient, SmartConnect]:
    """A client of ``emulator`` through httpx's ASGI transport (which holds no socket),
    and the httpx client under it."""
    import httpx

    from .emulator import create_app

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(emulator)))
    return http, SmartConnect(IN_PROCESS_URL, credentials, http_client=http, **options)


@pytest.fixture
def smartconnect_emulator() -> Emulator:
    """A fresh emulator with the seeded demo tenant."""
    from .emulator import Emulator

    return Emulator()


@pytest.fixture
def smartconnect_credentials() -> Credentials:
    """Credentials of the emulator's first demo user and company."""
    from .emulator import DEMO_CREDENTIALS

    demo = DEMO_CREDENTIALS[0]
    return Credentials(email=demo.email, password=demo.password, company_id=demo.company_id)


@pytest.fixture
def smartconnect_client(
    smartconnect_emulator: Emulator, smartconnect_credentials: Credentials
) -> SmartConnect:
    """A client bound in-process to ``smartconnect_emulator`` (a plain fixture: it works
    under anyio and pytest-asyncio alike, and holds nothing that needs closing)."""
    return _in_process(smartconnect_emulator, smartconnect_credentials)[1]


@pytest.fixture
def smartconnect_server(smartconnect_emulator: Emulator) -> Iterator[EmulatorServer]:
    """``smartconnect_emulator`` served over loopback TCP on a free port."""
    from .emulator import create_app, serve

    with serve(create_app(smartconnect_emulator)) as api_url:
        yield EmulatorServer(api_url=api_url, emulator=smartconnect_emulator)
