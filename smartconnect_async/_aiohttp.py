"""The aiohttp backend: the fastest HTTP client on asyncio (it does not run on trio).

Needs the ``aiohttp`` extra. The session is made on first use, inside the running event
loop, and is tied to that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

import aiohttp
import anyio
from yarl import URL

from ._backend import BackendFailure, BackendRequest, FailureKind, _on_asyncio, seconds_left
from ._redact import redact_url

__all__ = ["AiohttpBackend"]

_CHUNK = 1 << 16
_NO_CONTENT_TYPE = ("Content-Type",)

# Order matters: subclasses before their bases.
_FAILURES: tuple[tuple[type[BaseException], FailureKind], ...] = (
    (aiohttp.ConnectionTimeoutError, FailureKind.CONNECT_TIMEOUT),
    (aiohttp.SocketTimeoutError, FailureKind.READ_TIMEOUT),
    (aiohttp.ServerTimeoutError, FailureKind.READ_TIMEOUT),
    (asyncio.TimeoutError, FailureKind.READ_TIMEOUT),
    (TimeoutError, FailureKind.READ_TIMEOUT),
    (aiohttp.ClientConnectorError, FailureKind.CONNECT),
    (aiohttp.InvalidUrlClientError, FailureKind.CONNECT),
    (aiohttp.NonHttpUrlClientError, FailureKind.CONNECT),
)


def _failure(exc: BaseException) -> BackendFailure:
    """The backend failure for an aiohttp error. A reset or disconnect may have come after
    the server read the request, so it counts as possibly sent."""
    kind = next((k for t, k in _FAILURES if isinstance(exc, t)), FailureKind.READ)
    text = redact_url(str(exc))
    return BackendFailure(kind, f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class _AiohttpResponse:
    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def iter_bytes(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except _ERRORS as exc:
            raise _failure(exc) from None

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except _ERRORS as exc:
            raise _failure(exc) from None


class AiohttpBackend:
    """Sends requests with an ``aiohttp.ClientSession`` made on first use. The transport
    bounds the requests in flight to ``max_connections``, so the pool never queues."""

    def __init__(self, *, max_connections: int = 100, keepalive_expiry: float = 4.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if not _on_asyncio():  # say so, rather than aiohttp's "no running event loop"
                raise RuntimeError(
                    "backend='aiohttp' runs only on asyncio, not on trio (or any other event "
                    "loop); use backend='httpx' or backend='auto' there"
                )
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
            )
            self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)
        return self._session

    def send(self, request: BackendRequest) -> _Exchange:
        return _Exchange(self, request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Exchange:
    """``async with backend.send(request) as response``: the request sent, and the
    connection released on exit (a class: one is made per request)."""

    __slots__ = ("_backend", "_request", "_response")

    def __init__(self, backend: AiohttpBackend, request: BackendRequest) -> None:
        self._backend = backend
        self._request = request
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> _AiohttpResponse:
        request, t = self._request, self._request.timeout
        left = seconds_left(request.deadline)
        # encoded=True: the query is already percent-encoded; re-quoting could turn %2B
        # back into a "+", which the server reads as a space.
        sending = self._backend._get_session().request(
            "POST",
            URL(request.url, encoded=True),
            data=request.content,
            headers=request.headers,
            # No body, no Content-Type (aiohttp would send application/octet-stream).
            skip_auto_headers=_NO_CONTENT_TYPE if request.content is None else (),
            timeout=aiohttp.ClientTimeout(
                # aiohttp's total covers reading the body too: not for a stream.
                total=None if request.streamed else left,
                connect=t.connect,
                sock_connect=t.connect,
                sock_read=t.read,
            ),
            allow_redirects=False,
        )
        try:
            if request.streamed and left is not None:
                with anyio.fail_after(left):  # until the headers
                    self._response = await sending
            else:
                self._response = await sending
        except (*_ERRORS, TimeoutError) as exc:
            raise _failure(exc) from None
        return _AiohttpResponse(self._response)

    async def __aexit__(self, *_: object) -> None:
        if self._response is not None:
            self._response.release()
