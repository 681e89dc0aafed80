"""The httpx backend: pooled HTTP/1.1 through an ``httpx.AsyncClient`` (ours, or one the
user passes in with its own event hooks, transports or mounts)."""

from __future__ import annotations

import zlib
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
        inflater = _Inflater.of(self._response.headers.get("content-encoding", ""))
        response = self._response
        chunks = response.aiter_bytes() if inflater is None else response.aiter_raw()
        try:
            while True:
                with _by_deadline(self._deadline):  # each wait, never across the yield
                    chunk = await anext(chunks, None)
                if inflater is None:
                    if chunk is None:
                        return
                    yield chunk
                    continue
                for piece in inflater.pieces(chunk):
                    yield piece
                if chunk is None:
                    return
        except httpx.HTTPError as exc:
            raise _failure(exc) from None

    async def read(self) -> bytes:
        try:
            with _by_deadline(self._deadline):
                return await self._response.aread()
        except httpx.HTTPError as exc:
            raise _failure(exc) from None


class _Inflater:
    """gzip or deflate undone at most ``_INFLATED`` bytes at a time, so that what the
    caller reads bounds the memory an answer costs. httpx inflates each network read
    whole: one 64 KiB read of a compressed 512 MiB answer became tens of MiB at once."""

    __slots__ = ("_raw_too", "_started", "_zlib")

    def __init__(self, wbits: int, *, raw_too: bool = False) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._raw_too = raw_too  # deflate: some servers send it without the zlib header
        self._started = False  # a compressed byte came (an empty body is no stream)

    @classmethod
    def of(cls, encoding: str) -> _Inflater | None:
        """An inflater for ``Content-Encoding: encoding``; ``None`` (httpx decodes, or
        passes on) for any other."""
        encoding = encoding.strip().lower()
        if encoding == "gzip":
            return cls(16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(32 + zlib.MAX_WBITS, raw_too=True)  # zlib-wrapped, as RFC 9110 says
        return None

    def pieces(self, data: bytes | None) -> Iterator[bytes]:
        """What ``data`` inflates to, piece by piece; ``None``: the end of the body."""
        inflate = self._zlib
        try:
            if data is None:
                rest = inflate.flush()
                if self._started and not inflate.eof:
                    raise httpx.DecodingError("the compressed answer ends early")
                yield rest
                return
            if data and not self._started:
                self._started = True
                if self._raw_too and not _framed(data):
                    # Neither a zlib nor a gzip header: raw deflate, which some servers
                    # send for "deflate" and httpx and aiohttp read too.
                    inflate = self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            while data:
                piece = inflate.decompress(data, _INFLATED)
                data = inflate.unconsumed_tail
                if piece:
                    yield piece
        except zlib.error as exc:
            raise httpx.DecodingError(f"the compressed answer is corrupt: {exc}") from None


def _framed(head: bytes) -> bool:
    """Whether a deflate body starts with a zlib header (method 8, a check making the
    first two bytes a multiple of 31) or gzip's magic number."""
    if head[:2] == b"\x1f\x8b" or len(head) < 2:
        return True
    return head[0] & 0x0F == zlib.DEFLATED and (head[0] << 8 | head[1]) % 31 == 0


_INFLATED = 1 << 16
_ACCEPT_ENCODING = "gzip, deflate"
"""What is asked for: the encodings ``_Inflater`` undoes (not br or zstd, which httpx
would inflate whole when their libraries are installed)."""


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
            headers={**request.headers, "Accept-Encoding": _ACCEPT_ENCODING},
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
