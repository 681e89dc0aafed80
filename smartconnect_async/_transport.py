"""The one place that does I/O: every call funnels through ``Transport.call`` (an answer
read whole) or ``Transport.stream`` (an answer read as it arrives), in layers:

- ``_send`` and ``_attempts``: the attempt loop, within the call's total timeout: the
  token, one refresh after a 401, and the retries that ``_retry.retry_delay`` allows;
- ``_attempt``: one request: past the limits (``_limits``), through the backend, its
  answer judged by ``_wire``;
- ``_read``: a successful answer's body (bounded), parsed by the call's parser.

What an answer means is decided in ``_wire``; this module only moves bytes and waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, aclosing, asynccontextmanager
from functools import partial
from typing import NamedTuple, TypeVar

import anyio
import attrs

from . import _wire
from ._backend import Backend, BackendFailure, BackendRequest, BackendResponse
from ._checks import check_count
from ._limits import Limits, RunLeases
from ._redact import Secrets
from ._retry import parse_retry_after, retry_delay
from ._tokens import Principal, Tokens, TokenWaitTimeout, get_token_call, make_token
from ._wire import Body, Call, Sent
from .exceptions import (
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    ResponseParseError,
    SmartConnectError,
)
from .models import Timeout, Token

__all__ = ["Answer", "Session", "Transport"]

T = TypeVar("T")
logger = logging.getLogger("smartconnect_async")


class Answer(NamedTuple):
    """A successful answer whose body is still to be read, its connection (and the
    call's limits) held by ``held``."""

    response: BackendResponse
    secrets: Secrets
    sent: Sent
    held: AsyncExitStack


Consume = Callable[[Answer], Awaitable[T]]


class Transport:
    """Pooled, authenticated, retrying calls to one SmartConnect API Url.

    Shared by every client made with ``with_credentials``: one connection pool, one
    token cache, one set of limits.
    """

    def __init__(
        self,
        api_url: str,
        backend: Backend,
        tokens: Tokens,
        *,
        timeout: Timeout,
        max_retries: int,
        max_connections: int = 100,
        max_concurrent_runs: int = 4,
        max_answer_size: int = 64 << 20,
        max_columns: int = 4096,
        run_leases: RunLeases | None = None,
    ) -> None:
        # Every setting was checked by the client that made this.
        self.api_url = api_url.rstrip("/")
        self.backend = backend
        self.tokens = tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_answer_size = max_answer_size
        self.max_columns = max_columns  # for the data parsers (``data.py``)
        self.limits = Limits(
            max_connections=max_connections,
            max_concurrent_runs=max_concurrent_runs,
            run_leases=run_leases,
            scope=self.api_url,
        )
        self.closed = False

    def __repr__(self) -> str:
        return f"Transport({self.api_url!r}, closed={self.closed})"

    def timeouts(self, timeout: Timeout | float | None) -> Timeout:
        """A call's timeouts: its own ``timeout`` if given, else the client's."""
        return self.timeout if timeout is None else Timeout.of(timeout)

    async def aclose(self) -> None:
        """Close the connection pool. Calls made afterwards raise ``ClientClosedError``."""
        if not self.closed:
            self.closed = True
            await self.backend.aclose()

    async def call(
        self,
        call: Call[T],
        principal: Principal | None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> T:
        """Make ``call`` and return its parsed answer."""
        read = partial(_read, call, self.max_answer_size)
        return await self._send(call, principal, timeout, max_retries, read)

    @asynccontextmanager
    async def stream(
        self,
        call: Call[object],
        principal: Principal | None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Make ``call`` and give its body as a byte stream, read as it arrives (each
        chunk within the read timeout). Failures before the body starts are retried
        like any call's; a failure while it streams is raised."""
        async with AsyncExitStack() as stack:

            async def keep_open(answer: Answer) -> Answer:
                if _wire.is_html(answer.response.headers.get("content-type", "")):
                    # Never data: read as any answer is (its start only), which raises.
                    await _read(call, _wire.ERROR_BODY_READ, answer)
                stack.push_async_exit(answer.held.pop_all())
                return answer

            answer = await self._send(
                call, principal, timeout, max_retries, keep_open, streamed=True
            )
            yield _chunks(call, answer)

    async def token(
        self,
        principal: Principal,
        *,
        force_refresh: bool = False,
        timeout: Timeout | float | None = None,
        caller: Call[object] | None = None,
    ) -> Token:
        """The cached token of ``principal``, fetched once for all concurrent callers.

        A wait for a fetch another call sent is bounded by the pool timeout of the
        call's ``timeout`` (default: the client's), like every wait before sending:
        ``APITimeoutError`` naming ``caller`` (default: GetToken), nothing sent.
        """

        async def fetch() -> Token:
            obtained = self.tokens.cache.clock()
            value = await self.call(get_token_call(principal), principal)
            credentials = principal.credentials
            return make_token(
                value,
                company_id=credentials.company_id,
                email=credentials.email,
                obtained_at=obtained,
            )

        try:
            return await self.tokens.get(
                principal,
                fetch,
                force_refresh=force_refresh,
                max_wait=self.timeouts(timeout).pool,
            )
        except TokenWaitTimeout as timed_out:
            endpoint, where = (
                ("GetToken", "") if caller is None else (caller.endpoint, caller.where)
            )
            raise APITimeoutError(
                f"{endpoint}{where}: no token for company {principal.key.company_id} came "
                f"within {timed_out.seconds:g}s (another call is still getting it, from the "
                "token store or with GetToken); nothing was sent",
                endpoint=endpoint,
                sent=False,
            ) from None

    # ---- the attempt loop -------------------------------------------------------------

    async def _send(
        self,
        call: Call[object],
        principal: Principal | None,
        timeout: Timeout | float | None,
        max_retries: int | None,
        consume: Consume[T],
        *,
        streamed: bool = False,
    ) -> T:
        """Send ``call`` until an answer is consumed or the call fails for good."""
        timeouts = self.timeouts(timeout)
        if max_retries is None:
            max_retries = self.max_retries
        else:
            check_count("max_retries", max_retries, minimum=0)
        deadline = None if timeouts.total is None else time.monotonic() + timeouts.total
        company = principal.key.company_id if principal is not None else None
        self.limits.connections.begin(company)
        try:
            return await self._attempts(
                call, principal, timeouts, max_retries, consume, deadline, streamed
            )
        finally:
            self.limits.connections.end(company)

    async def _attempts(
        self,
        call: Call[object],
        principal: Principal | None,
        timeouts: Timeout,
        max_retries: int,
        consume: Consume[T],
        deadline: float | None,
        streamed: bool,
    ) -> T:
        """The attempt loop, within ``deadline`` (``time.monotonic()``, from ``total``)."""
        retries = 0
        refreshed = False
        number = 0
        while True:
            if self.closed:
                raise ClientClosedError("the SmartConnect client is closed")
            now = _within(call, timeouts, deadline)
            token = None
            if call.authenticated:
                if principal is None:
                    raise RuntimeError(f"{call.endpoint} needs credentials")
                token = await self.token(principal, timeout=now, caller=call)
            number += 1
            try:
                return await self._attempt(
                    call, principal, token, now, number, consume, deadline, streamed
                )
            except AuthenticationError:
                if token is None or refreshed or not call.refresh_on_401:
                    raise
                assert principal is not None
                refreshed = True
                await self.tokens.invalidate(principal, token)
            except SmartConnectError as error:
                delay = retry_delay(call, error, retries, max_retries)
                if delay is None or (deadline is not None and time.monotonic() + delay > deadline):
                    raise
                retries += 1
                logger.warning(
                    "retrying %s%s in %.2fs (retry %d of %d) after %s",
                    call.endpoint,
                    call.where,
                    delay,
                    retries,
                    max_retries,
                    error,
                )
                await anyio.sleep(delay)

    async def _attempt(
        self,
        call: Call[object],
        principal: Principal | None,
        token: Token | None,
        timeouts: Timeout,
        number: int,
        consume: Consume[T],
        deadline: float | None,
        streamed: bool,
    ) -> T:
        """Send ``call`` once and consume its successful answer, all by ``deadline`` (a
        ``streamed`` answer's body excepted); raise the error that the answer (or its
        absence) means."""
        request = BackendRequest(
            url=_wire.request_url(self.api_url, call, None if token is None else token.value),
            headers=_wire.request_headers(call),
            content=call.body,
            timeout=timeouts,
            deadline=deadline,
            streamed=streamed,
        )
        company = principal.key.company_id if principal is not None else None
        gate_key = principal.key if principal is not None else self.api_url
        secrets = _secrets(principal, token)
        sent: Sent | None = None
        started = time.perf_counter()
        status: int | None = None
        try:
            async with AsyncExitStack() as held:
                admitted = self.limits.admitted(call, company, gate_key, timeouts, deadline)
                await held.enter_async_context(admitted)
                if self.closed:  # while it waited
                    raise ClientClosedError("the SmartConnect client is closed")
                _within(call, timeouts, deadline)  # nothing left: not sent
                sent = Sent(time.time(), number)
                response = await held.enter_async_context(self.backend.send(request))
                status = response.status
                headers = response.headers
                self.limits.rate_gate.observe(gate_key, status, headers)
                if 200 <= status < 300:
                    result = await consume(Answer(response, secrets, sent, held))
                    _log(call, number, status, started, headers)
                    return result
                body = await _body(response, _wire.ERROR_BODY_READ)
        except BackendFailure as failure:
            assert sent is not None  # only a request on its way fails so
            error = _wire.failure_error(call, failure, secrets, sent)
        else:
            assert sent is not None
            assert status is not None
            retry_after = parse_retry_after(headers.get("retry-after"))
            error = _wire.status_error(call, status, headers, body.data, secrets, sent, retry_after)
        _log(call, number, status, started, None, error)
        raise error


def _within(call: Call[object], timeouts: Timeout, deadline: float | None) -> Timeout:
    """The timeouts of what comes next, its waits bounded by what is left of the call's
    ``total`` too; ``APITimeoutError`` (nothing sent) when nothing is."""
    if deadline is None:
        return timeouts
    left = deadline - time.monotonic()
    if left <= 0:
        raise APITimeoutError(
            f"{call.endpoint}{call.where}: no answer within the call's total timeout of "
            f"{timeouts.total:g}s; not sent again",
            endpoint=call.endpoint,
            sent=False,
        )
    if timeouts.pool is None or left < timeouts.pool:
        timeouts = attrs.evolve(timeouts, pool=left)
    return timeouts


async def _body(response: BackendResponse, limit: int) -> Body:
    """At most ``limit`` bytes of ``response``'s body (counted after decompression), and
    whether it went on past them (the rest is not read: the connection is dropped)."""
    headers = response.headers
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) <= limit and "content-encoding" not in headers:
        return Body(await response.read())
    chunks: list[bytes] = []
    size = 0
    async with aclosing(response.iter_bytes()) as stream:
        async for chunk in stream:
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return Body(b"".join(chunks), more=True)
            chunks.append(chunk)
            size += len(chunk)
    return Body(b"".join(chunks))


async def _read(call: Call[T], limit: int, answer: Answer) -> T:
    """The result of ``call`` from its successful answer: the body read whole (at most
    ``limit`` bytes) and parsed, or fed to the call's incremental parser as it arrives."""
    response = answer.response
    headers = response.headers
    html = _wire.is_html(headers.get("content-type", ""))
    if html:  # never data: read only for its title
        limit = _wire.ERROR_BODY_READ
    if call.incremental is None or html:
        body = await _body(response, limit)
        return _wire.read_answer(call, response.status, headers, body, answer.secrets, answer.sent)
    parser = call.incremental()
    try:
        async for chunk in response.iter_bytes():
            parser.feed(chunk)
        result = parser.close()
    except ResponseParseError as error:
        raise _wire.parse_error(call, error, headers, answer.secrets) from None
    return _wire.finished(result, headers, answer.secrets)


async def _chunks(call: Call[object], answer: Answer) -> AsyncIterator[bytes]:
    """The body of a streamed answer; a failure while it streams is the call's error."""
    try:
        async for chunk in answer.response.iter_bytes():
            yield chunk
    except BackendFailure as failure:
        raise _wire.failure_error(call, failure, answer.secrets, answer.sent) from None


def _secrets(principal: Principal | None, token: Token | None) -> Secrets:
    """What no message about a call of ``principal`` with ``token`` may show."""
    secrets = principal.secrets if principal is not None else Secrets()
    return Secrets((*secrets, token.value)) if token is not None else secrets


def _log(
    call: Call[object],
    number: int,
    status: int | None,
    started: float,
    headers: Mapping[str, str] | None,
    error: Exception | None = None,
) -> None:
    """One DEBUG line per attempt (no secret: the URL is not in it)."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s map=%s status=%s elapsed=%.3fs attempt=%d request_id=%s%s",
            call.endpoint,
            call.map_key or "-",
            status if status is not None else "-",
            time.perf_counter() - started,
            number,
            (headers and _wire.request_id(headers)) or "-",
            f" error={type(error).__name__}" if error is not None else "",
        )


@attrs.frozen
class Session:
    """Credentials bound to the shared transport: what an endpoint module calls through,
    with the client's defaults for a call's ``timeout`` and ``max_retries`` (``None``:
    the transport's)."""

    transport: Transport
    principal: Principal
    timeout: Timeout | None = None
    max_retries: int | None = None

    def call(
        self,
        call: Call[T],
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> Coroutine[object, object, T]:
        """``transport.call`` for these credentials (its coroutine: one frame less)."""
        return self.transport.call(
            call,
            self.principal,
            timeout=self.timeout if timeout is None else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
        )

    def stream(
        self,
        call: Call[object],
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.transport.stream(
            call,
            self.principal,
            timeout=self.timeout if timeout is None else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
        )

    async def token(
        self,
        *,
        force_refresh: bool = False,
        timeout: Timeout | float | None = None,
        caller: Call[object] | None = None,
    ) -> Token:
        return await self.transport.token(
            self.principal,
            force_refresh=force_refresh,
            timeout=self.timeout if timeout is None else timeout,
            caller=caller,
        )

    async def forget_token(self, token: Token) -> None:
        """Drop ``token``, which the server refused, if it is still the cached one."""
        await self.transport.tokens.invalidate(self.principal, token)
