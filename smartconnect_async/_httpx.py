"""The httpx backend: pooled HTTP/1.1 through an ``httpx.AsyncClient`` (ours, or one the
user passes in with its own event hooks, transports or mounts)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import anyio
import httpx

from ._backend import BackendFailure, BackendRequest, FailureKind, seconds_left
from ._redact import install_log_filter, redact_url

__all__ = ["HttpxBackend"]

install_log_filter("httpx")

_FAILURES: tuple[tuple[type[httpx.HTTPError], FailureKind], ...] = (
    (httpx.PoolTimeout, FailureKind.POOL_TIMEOUT),
    (httpx.ConnectTimeout, FailureKind.CONNECT_TIMEOUT),
    (httpx.WriteTimeout, FailureKind.WRITE_TIMEOUT),
    (httpx.ReadTimeout, FailureKind.READ_TIMEOUT),
    (httpx.ConnectError, FailureKind.CONNECT),
    (httpx.WriteError, FailureKind.WRITE),
    (httpx.UnsupportedProtocol, FailureKind.CONNECT),
    (httpx.ProxyError, FailureKind.CONNECT),
)


def _failure(exc: httpx.HTTPError) -> BackendFailure:
    """The backend failure for an httpx error. Anything not known to happen before the
    request was written (a protocol error, a read error, a decoding error) counts as
    possibly sent."""
    kind = next((k for t, k in _FAILURES if isinstance(exc, t)), FailureKind.READ)
    detail = f"{type(exc).__name__}: {redact_url(str(exc))}" if str(exc) else type(exc).__name__
    return BackendFailure(kind, detail)


class _HttpxResponse:
    """An answer; its body read within ``deadline`` (``time.monotonic()``), if any."""

    __slots__ = ("_deadline", "_response")

    def __init__(self, response: httpx.Response, deadline: float | None) -> None:
        self._response = response
        self._deadline = deadline

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def iter_bytes(self) -> AsyncGenerator[bytes, None]:
        chunks = self._response.aiter_bytes()
        try:
            while True:
                with _by_deadline(self._deadline):  # each wait, never across the yield
                    chunk = await anext(chunks, None)
                if chunk is None:
                    return
                yield chunk
        except httpx.HTTPError as exc:
            raise _failure(exc) from None

    async def read(self) -> bytes:
        try:
            with _by_deadline(self._deadline):
                return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _failure(exc) from None


@contextmanager
def _by_deadline(deadline: float | None) -> Iterator[None]:
    """Nothing, or ``READ_TIMEOUT`` once ``deadline`` passes (httpx has no total timeout
    of its own)."""
    if deadline is None:
        yield
        return
    try:
        with anyio.fail_after(seconds_left(deadline)):
            yield
    except TimeoutError:
        raise BackendFailure(FailureKind.READ_TIMEOUT, "no whole answer in time") from None


class HttpxBackend:
    """Sends requests with an ``httpx.AsyncClient``; closes it only if it made it."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 4.0,
    ) -> None:
        self._owns_client = client is None
        self.client = client or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=keepalive_expiry,
            ),
            follow_redirects=False,
        )

    @asynccontextmanager
    async def send(self, request: BackendRequest) -> AsyncIterator[_HttpxResponse]:
        t = request.timeout
        built = self.client.build_request(
            "POST",
            request.url,
            headers=request.headers,
            content=request.content,
            timeout=httpx.Timeout(
                t.default, connect=t.connect, read=t.read, write=t.write, pool=t.pool
            ),
        )
        try:
            with _by_deadline(request.deadline):
                # Never a redirect, even with a client made to follow them: a 307 would
                # send a run (token and all) again, to another host.
                response = await self.client.send(built, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise _failure(exc) from None
        try:
            yield _HttpxResponse(response, None if request.streamed else request.deadline)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()
