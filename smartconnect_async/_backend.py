"""The seam between the transport and an HTTP library.

A backend sends one request and hands back the status, the headers and the body as a
byte stream. It reports every failure as a ``BackendFailure`` saying whether the request
may have reached the server, which is what decides if a run can be sent again.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs

from ._redact import redact_url
from .models import Timeout

__all__ = ["Backend", "BackendFailure", "BackendRequest", "BackendResponse", "FailureKind"]


class FailureKind(enum.Enum):
    """Where a request failed. The first four are before the request was sent."""

    POOL_TIMEOUT = "waiting for a connection from the pool timed out"
    CONNECT = "could not connect"
    CONNECT_TIMEOUT = "connecting timed out"
    WRITE = "sending the request failed"
    WRITE_TIMEOUT = "sending the request timed out"
    READ = "the connection failed before the whole answer arrived"
    READ_TIMEOUT = "waiting for the answer timed out"

    @property
    def sent(self) -> bool:
        """Whether the server may have received (and processed) the request."""
        return self in (FailureKind.READ, FailureKind.READ_TIMEOUT)

    @property
    def timeout(self) -> bool:
        return self in (
            FailureKind.POOL_TIMEOUT,
            FailureKind.CONNECT_TIMEOUT,
            FailureKind.WRITE_TIMEOUT,
            FailureKind.READ_TIMEOUT,
        )


class BackendFailure(Exception):
    """A request failed in the HTTP layer. ``detail`` must hold no URL or secret."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail


@attrs.frozen
class BackendRequest:
    """One POST: the full URL (query already percent-encoded), headers, body, limits."""

    url: str = attrs.field(repr=redact_url)  # the token is in it
    headers: Mapping[str, str]
    content: bytes | None
    timeout: Timeout
    deadline: float | None = None
    """``time.monotonic()`` by which the exchange must be over (``READ_TIMEOUT`` after
    it): the answer read whole included, or, when ``streamed``, until its headers."""
    streamed: bool = False


class BackendResponse(Protocol):
    """An answer whose body has not been read yet."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Header names are matched case-insensitively."""
        ...

    def iter_bytes(self) -> AsyncGenerator[bytes, None]:
        """The body, decoded of any content encoding, chunk by chunk."""
        ...

    async def read(self) -> bytes:
        """The whole body."""
        ...


class Backend(Protocol):
    """An HTTP library behind the transport."""

    def send(self, request: BackendRequest) -> AbstractAsyncContextManager[BackendResponse]:
        """Send ``request``; the answer's body is readable inside the context, and the
        connection is released when it exits."""
        ...

    async def aclose(self) -> None:
        """Close the connections (only those the backend owns)."""
        ...


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic()``), at least a millisecond."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.001)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (or no loop at all)
        return False
    return True


class AutoBackend:
    """Picks the backend on first use, inside the running event loop: aiohttp on asyncio
    when it is installed (far less CPU per call), httpx otherwise (trio, or no aiohttp).
    """

    def __init__(self, *, max_connections: int, keepalive_expiry: float) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._backend: Backend | None = None

    @property
    def chosen(self) -> Backend | None:
        """The backend in use, once the first request has picked one."""
        return self._backend

    def _pick(self) -> Backend:
        if _on_asyncio():
            try:
                from ._aiohttp import AiohttpBackend
            except ImportError:
                pass
            else:
                return AiohttpBackend(
                    max_connections=self._max_connections,
                    keepalive_expiry=self._keepalive_expiry,
                )
        from ._httpx import HttpxBackend

        return HttpxBackend(
            max_connections=self._max_connections, keepalive_expiry=self._keepalive_expiry
        )

    def send(self, request: BackendRequest) -> AbstractAsyncContextManager[BackendResponse]:
        if self._backend is None:
            self._backend = self._pick()
        return self._backend.send(request)

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()
