"""Unit-test fixtures: no test may reach the network, retries never really wait."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import httpcore
import pytest

# Shared constants and helpers live in ``unit_support.py`` beside this file; the suite
# runs with --import-mode=importlib, so make that module importable by name.
sys.path.insert(0, str(Path(__file__).parent))

from unit_support import SleepRecorder


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any request that respx does not intercept fails instead of leaving the machine.

    respx patches these same methods while a mock router is active (and restores this
    blocker afterwards), so only requests made outside a router reach it.
    """

    # respx only patches a method that still has its own name (it will not "mock a
    # mock"), so the blocker is named like the method it replaces.
    async def handle_async_request(self: object, request: httpcore.Request) -> httpcore.Response:
        raise RuntimeError(f"unit tests must not touch the network: {request.method!r}")

    for cls in (httpcore.AsyncConnectionPool, httpcore.AsyncHTTPProxy):
        monkeypatch.setattr(cls, "handle_async_request", handle_async_request)

    # Whatever the HTTP library (the client may pick aiohttp on asyncio), no name is
    # resolved and no socket connects.
    def no_socket(*_args: object, **_kwargs: object) -> Any:
        raise OSError("unit tests must not touch the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_socket)
    monkeypatch.setattr(socket.socket, "connect", no_socket)
    monkeypatch.setattr(socket.socket, "connect_ex", no_socket)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    """Replace ``anyio.sleep`` so that retry back-off is recorded, not waited for (only
    delays of at most ``SleepRecorder.REAL_UP_TO`` seconds really pass)."""
    recorder = SleepRecorder()
    monkeypatch.setattr("anyio.sleep", recorder)
    return recorder
