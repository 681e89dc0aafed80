"""Shared test configuration: async tests run under both asyncio and trio; every httpx
client shares one TLS context."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every ``@pytest.mark.anyio`` test runs once per backend."""
    return str(request.param)


_SSL_CONTEXT: list[ssl.SSLContext] = []


@pytest.fixture(autouse=True)
def _one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``httpx.AsyncClient`` loads the CA bundle into a new TLS context (~50 ms); the
    tests speak plain http:// (to 127.0.0.1 or to respx), so all clients share one
    context. The library itself is not patched."""
    original = httpx._config.create_ssl_context

    def shared(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if not _SSL_CONTEXT:
            _SSL_CONTEXT.append(original(*args, **kwargs))
        return _SSL_CONTEXT[0]

    monkeypatch.setattr(httpx._transports.default, "create_ssl_context", shared)
