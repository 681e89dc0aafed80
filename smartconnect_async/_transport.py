"""The one place that sends requests: every call funnels through ``Transport.call`` (an answer
read whole) or ``Transport.stream`` (an answer read as it arrives), in two layers:

- ``_send``: the attempt loop, within the call's total timeout: the token
  (``_tokens``), one refresh after a 401, the retries ``_retry`` allows;
- ``_attempt``: one request, past the limits (``_limits``), through the backend; an error
  answer judged by ``_wire``, a successful one read by ``_reading``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TypeVar

import anyio
import attrs

from . import _wire
from ._backend import Backend, BackendFailure, BackendRequest, BackendResponse
from ._checks import check_count
from ._limits import Limits, RunLeases
from ._reading import Answer, Consume, body, chunks, read
from ._redact import Secrets
from ._retry import parse_retry_after, retry_delay
from ._tokens import Principal, Tokens
from ._wire import Call, Sent
from .exceptions import AuthenticationError, ClientClosedError, SmartConnectError
from .models import Timeout, Token

__all__ = ["Transport"]

T = TypeVar("T")
logger = logging.getLogger("smartconnect_async")


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
        consume = partial(read, call, self.max_answer_size)
        return await self._send(call, principal, timeout, max_retries, consume)

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
                    await read(call, _wire.ERROR_BODY_READ, answer)
                stack.push_async_exit(answer.held.pop_all())
                return answer

            answer = await self._send(
                call, principal, timeout, max_retries, keep_open, streamed=True
            )
            yield chunks(call, answer)

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
        """Send ``call`` until an answer is consumed or the call fails for good: the
        attempt loop, within the call's total timeout."""
        timeouts = self.timeouts(timeout)
        if max_retries is None:
            max_retries = self.max_retries
        else:
            check_count("max_retries", max_retries, minimum=0)
        deadline = None if timeouts.total is None else time.monotonic() + timeouts.total
        retries, number, refreshed = 0, 0, False
        company = principal.key.company_id if principal is not None else None
        with self.limits.connections.under_way(company):
            while True:
                if self.closed:
                    raise ClientClosedError("the SmartConnect client is closed")
                now = _within(call, timeouts, deadline)
                token = None
                if call.authenticated:
                    if principal is None:
                        raise RuntimeError(f"{call.endpoint} needs credentials")
                    token = await self.tokens.token(
                        principal, self.call, max_wait=now.pool, caller=call
                    )
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
                    delay = retry_delay(call, error, retries, max_retries, deadline)
                    if delay is None:
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
        response = None
        try:
            async with AsyncExitStack() as held:
                admitted = self.limits.admitted(call, company, gate_key, timeouts, deadline)
                await held.enter_async_context(admitted)
                if self.closed:  # while it waited
                    raise ClientClosedError("the SmartConnect client is closed")
                _within(call, timeouts, deadline)  # nothing left: not sent
                sent = Sent(time.time(), number)
                response = await held.enter_async_context(self.backend.send(request))
                status, headers = response.status, response.headers
                self.limits.rate_gate.observe(gate_key, status, headers)
                if 200 <= status < 300:
                    result = await consume(Answer(response, secrets, sent, held))
                    _log(call, number, started, response)
                    return result
                error_body = await body(response, _wire.ERROR_BODY_READ)
                retry_after = parse_retry_after(headers.get("retry-after"))
                error = _wire.status_error(
                    call, status, headers, error_body.data, secrets, sent, retry_after
                )
        except BackendFailure as failure:
            assert sent is not None  # only a request on its way fails so
            error = _wire.failure_error(call, failure, secrets, sent)
        _log(call, number, started, response, error)
        raise error


def _within(call: Call[object], timeouts: Timeout, deadline: float | None) -> Timeout:
    """The timeouts of what comes next, its waits bounded by what is left of the call's
    ``total`` too; ``APITimeoutError`` (nothing sent) when nothing is."""
    if deadline is None:
        return timeouts
    left = deadline - time.monotonic()
    if left <= 0:
        raise _wire.unsent(
            call,
            f"no answer within the call's total timeout of {timeouts.total:g}s",
            outcome="not sent again",
        )
    if timeouts.pool is None or left < timeouts.pool:
        timeouts = attrs.evolve(timeouts, pool=left)
    return timeouts


def _secrets(principal: Principal | None, token: Token | None) -> Secrets:
    """What no message about a call of ``principal`` with ``token`` may show."""
    secrets = principal.secrets if principal is not None else Secrets()
    return Secrets((*secrets, token.value)) if token is not None else secrets


def _log(
    call: Call[object],
    number: int,
    started: float,
    response: BackendResponse | None,
    error: Exception | None = None,
) -> None:
    """One DEBUG line per attempt (no secret: the URL is not in it)."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s map=%s status=%s elapsed=%.3fs attempt=%d request_id=%s%s",
            call.endpoint,
            call.map_key or "-",
            "-" if response is None else response.status,
            time.perf_counter() - started,
            number,
            (response is not None and _wire.request_id(response.headers)) or "-",
            f" error={type(error).__name__}" if error is not None else "",
        )
