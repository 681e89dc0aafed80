"""The one place that does I/O: builds each request, adds the token, sends it through the
backend, retries what is safe to retry, maps every failure to the library's exceptions
and keeps secrets out of them."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime, timezone
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote

import anyio
import attrs

from . import _retry
from ._backend import Backend, BackendFailure, BackendRequest, BackendResponse
from ._checks import check_count
from ._limits import GateClosed, RateGate, RunSlots
from ._redact import redact
from ._tokens import MemoryTokenStore, TokenCache, TokenKey, TokenWaitTimeout
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
    SmartConnectError,
)
from .models import Timeout, Token

__all__ = ["JSON", "XML", "Call", "Principal", "Transport"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
logger = logging.getLogger("smartconnect_async")

JSON = "application/json"
XML = "application/xml"
_USER_AGENT = "smartconnect-async/0.1.0"
_EXCERPT = 200


class Incremental(Protocol[T_co]):
    """A parser fed an answer's body chunk by chunk as it arrives."""

    def feed(self, chunk: bytes) -> None: ...

    def close(self) -> T_co:
        """The end of the body: the result."""
        ...


@attrs.frozen
class Call(Generic[T_co]):
    """One API call, as an endpoint module declares it: no I/O, just what to send and how
    to read the answer.

    ``idempotent=False`` marks a call that must never be sent twice once it may have
    reached the server (runs, SaveProcessErrors). ``parse`` turns the body of a successful
    answer into the result and raises ``ResponseParseError`` when it cannot; when
    ``incremental`` is given, it makes a parser that is fed the body as it streams in
    instead (large answers are then never held whole). ``is_run`` calls take one of the
    company's run slots while they are in flight.
    """

    endpoint: str
    parse: Callable[[bytes], T_co]
    query: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None
    accept: str = JSON
    idempotent: bool = True
    authenticated: bool = True
    refresh_on_401: bool = True
    map_key: str | None = None
    is_run: bool = False
    incremental: Callable[[], Incremental[T_co]] | None = None


@attrs.frozen
class Principal:
    """Who a call is made for: the token cache key, how to fetch a new token, and the
    secrets that must never show in a message."""

    key: TokenKey
    fetch: Callable[[], Awaitable[Token]] = attrs.field(repr=False)
    secrets: tuple[str, ...] = attrs.field(repr=False)
    proof: bytes = attrs.field(default=b"", repr=False)
    """A salted digest of the password, in memory only: which password this is."""


def _moment(epoch_seconds: float) -> datetime:
    """A ``time.time()`` reading as an aware UTC datetime. Attempts record the float;
    only an error that reports the moment converts it."""
    return datetime.fromtimestamp(epoch_seconds, timezone.utc)


@attrs.frozen
class _Opened:
    """A successful answer, as the attempt loop hands it over."""

    response: BackendResponse
    body: bytes | None
    token: Token | None
    sent_at: float  # time.time()
    attempt: int
    result: object = None  # what an incremental parser made of the body


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def _where(call: Call[object]) -> str:
    """The map a call is for, as a message names it: `` for map KEY`` or nothing."""
    return f" for map {call.map_key}" if call.map_key else ""


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


_ANSWER_KEPT = 1 << 16
"""Characters of an unreadable run answer kept in ``RunOutcomeUnknown.body``."""
_ASCII_ESCAPE = re.compile(r"\\u00([2-7][0-9A-Fa-f])|\\(/)")


def _answer_text(body: bytes, secrets: tuple[str, ...]) -> str:
    """An answer's text for an error to keep: JSON's escapes of printable ASCII read
    plain (System.Text.Json writes "+" as \\u002B), so that a secret written that way
    is redacted too; redacted before it is cut (a cut could leave part of a secret)."""
    # Enough bytes for the characters kept, and for a whole secret astride the cut.
    text = body[: 4 * _ANSWER_KEPT + 16384].decode("utf-8", "replace")
    text = _ASCII_ESCAPE.sub(lambda m: m.group(2) or chr(int(m.group(1), 16)), text)
    return redact(text, secrets)[:_ANSWER_KEPT]


def _excerpt(body: bytes, secrets: tuple[str, ...]) -> str:
    """A short, readable, secret-free excerpt of an answer's body."""
    title = _TITLE.search(body[:8192])
    if title is not None:
        text = title.group(1).decode("utf-8", "replace")
    else:
        text = body[:4096].decode("utf-8", "replace")
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, str):
                text = value
            elif isinstance(value, dict):
                message = value.get("Message") or value.get("message")
                text = message if isinstance(message, str) else text
        if "<" in text:
            text = _TAGS.sub(" ", text)
    # Redact the whole text before cutting it: a cut could leave part of a secret.
    text = " ".join(redact(text, secrets).split())
    if len(text) > _EXCERPT:
        text = text[: _EXCERPT - 1] + "…"
    return text


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}


class Transport:
    """Pooled, authenticated, retrying calls to one SmartConnect API Url.

    Shared by every client made with ``with_credentials``: one connection pool, one
    token cache.
    """

    def __init__(
        self,
        api_url: str,
        backend: Backend,
        tokens: TokenCache,
        *,
        timeout: Timeout,
        max_retries: int,
        max_concurrent_runs: int = 4,
    ) -> None:
        # ``max_retries`` (like every setting) was checked by the client that made this.
        self.api_url = api_url.rstrip("/")
        self.backend = backend
        self.tokens = tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.rate_gate = RateGate()
        self.run_slots = RunSlots(max_concurrent_runs)
        self._quoted: dict[str, str] = {}
        # Per company and user, the password (its proof) that last got a token here, or
        # the first to ask: the token cached for the key is that password's. Another
        # password's GetToken goes through ``_proving`` (in memory, keyed per password).
        self._proven: dict[TokenKey, bytes] = {}
        self._proving = TokenCache(
            MemoryTokenStore(), refresh_margin=tokens.refresh_margin, clock=tokens.clock
        )
        self.closed = False

    def __repr__(self) -> str:
        return f"Transport({self.api_url!r}, closed={self.closed})"

    def limits(self, timeout: Timeout | float | None) -> Timeout:
        """A call's timeouts: its own ``timeout`` if given, else the client's."""
        return self.timeout if timeout is None else Timeout.of(timeout)

    async def aclose(self) -> None:
        """Close the connection pool. Calls made afterwards raise ``ClientClosedError``."""
        if not self.closed:
            self.closed = True
            self._quoted.clear()
            await self.backend.aclose()

    async def token(
        self,
        principal: Principal,
        *,
        force_refresh: bool = False,
        timeout: Timeout | float | None = None,
        caller: Call[T] | None = None,
    ) -> Token:
        """The cached token of ``principal``, fetched once for all concurrent callers.

        A wait for a fetch another call sent is bounded by the pool timeout of the
        call's ``timeout`` (default: the client's), like every wait before sending:
        ``APITimeoutError`` naming ``caller`` (default: GetToken), nothing sent.

        The cached token is not handed to a client whose password differs from the one
        that got it: such a client sends GetToken with its own password (a wrong one
        gets the server's 401), and once that succeeds, its password is the one proven.
        """
        key, proof = principal.key, principal.proof
        max_wait = self.limits(timeout).pool
        try:
            if self._proven.setdefault(key, proof) == proof:
                token = await self.tokens.get(
                    key, principal.fetch, force_refresh=force_refresh, max_wait=max_wait
                )
                if self._proven[key] == proof:
                    return token
                # Another password was proven while this caller waited (its fetch may
                # have been cancelled, and the next one taken the other's token).
            # Another password got the cached token: this one gets its own, with one
            # GetToken for all of its callers that ask together (a burst of calls with a
            # wrong password makes one failed login, not one each; a failure is not kept).
            token = await self._proving.get(
                TokenKey(key.api_url, key.company_id, f"{key.email}|{proof.hex()}"),
                principal.fetch,
                force_refresh=force_refresh,
                max_wait=max_wait,
            )
            if self._proven[key] != proof:
                # Both at once (``put`` takes the token before it first waits): no caller
                # sees this password proven and the other's token, or the reverse.
                self._proven[key] = proof
                await self.tokens.put(key, token)
            return token
        except TokenWaitTimeout as timed_out:
            endpoint, where = (
                ("GetToken", "") if caller is None else (caller.endpoint, _where(caller))
            )
            raise APITimeoutError(
                f"{endpoint}{where}: no token for company {principal.key.company_id} came within "
                f"{timed_out.seconds:g}s (another call is still getting it, from the token "
                "store or with GetToken); nothing was sent",
                endpoint=endpoint,
                sent=False,
            ) from None

    async def call(
        self,
        call: Call[T],
        principal: Principal | None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> T:
        """Make ``call`` and return its parsed answer."""
        opened = await self._open(call, principal, None, timeout, max_retries)
        if opened.body is None:
            return opened.result  # type: ignore[return-value]
        body = opened.body
        assert body is not None
        secrets = self._secrets(principal, opened.token)
        request_id = opened.response.headers.get("x-request-id")
        if _looks_like_html(opened.response.headers.get("content-type", ""), body):
            message = (
                f"{call.endpoint} answered with an HTML page instead of data "
                f"(HTTP {opened.response.status}): {_excerpt(body, secrets)}"
            )
        else:
            try:
                return call.parse(body)
            except ResponseParseError as exc:
                message = redact(f"{call.endpoint}: {exc}", secrets)
        error = ResponseParseError(message, endpoint=call.endpoint, request_id=request_id)
        if call.idempotent:
            raise error
        unknown = RunOutcomeUnknown(
            f"{message}; the request was processed but its result could not be read",
            endpoint=call.endpoint,
            map_key=call.map_key,
            sent_at=_moment(opened.sent_at),
            attempt=opened.attempt,
            request_id=request_id,
            body=_answer_text(body, secrets),
        )
        raise unknown from error

    @asynccontextmanager
    async def stream(
        self,
        call: Call[object],
        principal: Principal | None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """Make ``call`` and give its body as a byte stream. Failures before the body
        starts are retried like any call; a failure while streaming is raised."""
        async with AsyncExitStack() as stack:
            opened = await self._open(call, principal, stack, timeout, max_retries)
            response = opened.response
            if "html" in response.headers.get("content-type", "").lower():
                body = await response.read()
                raise ResponseParseError(
                    f"{call.endpoint} answered with an HTML page instead of data "
                    f"(HTTP {response.status}): "
                    f"{_excerpt(body, self._secrets(principal, opened.token))}",
                    endpoint=call.endpoint,
                    request_id=response.headers.get("x-request-id"),
                )
            yield self._chunks(call, opened, principal)

    async def _chunks(
        self, call: Call[object], opened: _Opened, principal: Principal | None
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in opened.response.iter_bytes():
                yield chunk
        except BackendFailure as failure:
            raise self._failure_error(
                call, failure, principal, opened.token, opened.sent_at, opened.attempt
            ) from None

    # ---- the attempt loop -----------------------------------------------------------

    def _secrets(self, principal: Principal | None, token: Token | None) -> tuple[str, ...]:
        secrets = principal.secrets if principal is not None else ()
        return (*secrets, token.value) if token is not None else secrets

    def _quote(self, value: str) -> str:
        """``value`` percent-encoded for a query string (``+ / =`` included). Remembered:
        the same token and map keys go out on every call, and quoting goes character by
        character."""
        quoted = self._quoted.get(value)
        if quoted is None:
            if len(self._quoted) >= 4096:
                self._quoted.clear()
            quoted = self._quoted[value] = quote(value, safe="")
        return quoted

    def _request(
        self, call: Call[T], token: Token | None, timeout: Timeout, group: str | None
    ) -> BackendRequest:
        query = call.query if token is None else (("token", token.value), *call.query)
        url = f"{self.api_url}/{call.endpoint}"
        if query:
            url += "?" + "&".join(f"{k}={self._quote(v)}" for k, v in query)
        headers = {"Accept": call.accept, "User-Agent": _USER_AGENT}
        if call.content_type is not None:
            headers["Content-Type"] = call.content_type
        return BackendRequest(
            url=url, headers=headers, content=call.body, timeout=timeout, group=group
        )

    async def _open(
        self,
        call: Call[T],
        principal: Principal | None,
        keep: AsyncExitStack | None,
        timeout: Timeout | float | None,
        max_retries: int | None,
    ) -> _Opened:
        """Send ``call`` until it succeeds or fails for good. Return the successful
        answer: with its body read (and the connection released) when ``keep`` is
        ``None``, else unread and kept open on ``keep``."""
        limits = self.limits(timeout)
        if max_retries is None:
            retries_allowed = self.max_retries
        else:
            check_count("max_retries", max_retries, minimum=0)
            retries_allowed = max_retries
        group = principal.key.company_id if principal is not None else None
        if group is not None:
            # Its token may be on the way: the backend keeps a connection for it.
            self.backend.announce(group)
        try:
            retries = 0
            refreshed = False
            attempt = 0
            while True:
                if self.closed:
                    raise ClientClosedError("the SmartConnect client is closed")
                attempt += 1
                token = None
                if call.authenticated:
                    if principal is None:
                        raise RuntimeError(f"{call.endpoint} needs credentials")
                    token = await self.token(principal, timeout=limits, caller=call)
                request = self._request(call, token, limits, group)
                gate_key = principal.key if principal is not None else self.api_url
                if self.rate_gate.admit(gate_key):  # not admitted at once
                    await self._wait_for_gate(call, gate_key, limits, group)
                slot = None
                if call.is_run and principal is not None:
                    slot = self.run_slots.for_key(group)
                    try:
                        await slot.acquire(limits.pool)
                    except TimeoutError:
                        raise APITimeoutError(
                            f"{call.endpoint}{_where(call)}: no run slot came free "
                            f"within {limits.pool:g}s ({self.run_slots.limit} runs of company "
                            f"{group} were in flight); nothing was sent",
                            endpoint=call.endpoint,
                            sent=False,
                        ) from None
                sent_at = time.time()
                started = time.perf_counter()
                status: int | None = None
                request_id: str | None = None
                error: SmartConnectError
                try:
                    if keep is None:
                        async with self.backend.send(request) as response:
                            status = response.status
                            request_id = response.headers.get("x-request-id")
                            self.rate_gate.observe(gate_key, status, response.headers)
                            if (
                                call.incremental is not None
                                and 200 <= status < 300
                                and "html" not in response.headers.get("content-type", "").lower()
                            ):
                                result = await self._consume(call, response, principal, token)
                                self._log_attempt(call, attempt, status, started, request_id)
                                return _Opened(response, None, token, sent_at, attempt, result)
                            body = await response.read()
                    else:
                        attempt_stack = AsyncExitStack()
                        async with attempt_stack:
                            response = await attempt_stack.enter_async_context(
                                self.backend.send(request)
                            )
                            status = response.status
                            request_id = response.headers.get("x-request-id")
                            self.rate_gate.observe(gate_key, status, response.headers)
                            if 200 <= status < 300:
                                keep.push_async_exit(attempt_stack.pop_all())
                                body = b""
                            else:
                                body = await response.read()
                    if 200 <= status < 300:
                        self._log_attempt(call, attempt, status, started, request_id)
                        return _Opened(
                            response, body if keep is None else None, token, sent_at, attempt
                        )
                    error = self._status_error(
                        call, response, body, principal, token, sent_at, attempt
                    )
                except BackendFailure as failure:
                    error = self._failure_error(call, failure, principal, token, sent_at, attempt)
                finally:
                    if slot is not None:
                        slot.release()
                self._log_attempt(call, attempt, status, started, request_id, error)

                if isinstance(error, AuthenticationError) and token is not None:
                    if call.refresh_on_401 and not refreshed and principal is not None:
                        refreshed = True
                        await self.tokens.invalidate(principal.key, token)
                        continue
                    raise error
                delay = self._retry_delay(call, error, retries, retries_allowed)
                if delay is None:
                    raise error
                retries += 1
                logger.warning(
                    "retrying %s%s in %.2fs (retry %d of %d) after %s",
                    call.endpoint,
                    _where(call),
                    delay,
                    retries,
                    retries_allowed,
                    error,
                )
                with self._paused(group):
                    await anyio.sleep(delay)
        finally:
            if group is not None:
                self.backend.withdraw(group)

    async def _wait_for_gate(
        self, call: Call[T], key: Hashable, limits: Timeout, group: str | None
    ) -> None:
        """Wait while the server's rate limit is spent (``rate_gate.admit`` said so);
        raise ``RateLimitError`` when the wait would be longer than ``MAX_RETRY_AFTER``
        or the call's pool timeout."""
        limit = _retry.MAX_RETRY_AFTER
        if limits.pool is not None:
            limit = min(limit, limits.pool)
        try:
            with self._paused(group):
                await self.rate_gate.wait(key, limit)
        except GateClosed as closed:
            raise RateLimitError(
                f"{call.endpoint}: the server's rate limit allows the next call in "
                f"{closed.seconds:.1f}s, longer than this call may wait ({limit:g}s); "
                "nothing was sent",
                endpoint=call.endpoint,
                status_code=429,
                request_id=None,
                body="",
                retry_after=closed.seconds,
            ) from None

    @contextmanager
    def _paused(self, group: str | None) -> Iterator[None]:
        """While a call of ``group`` sleeps (back-off, rate gate) it wants no connection:
        the backend keeps none for its company meanwhile."""
        if group is None:
            yield
            return
        self.backend.pause(group)
        try:
            yield
        finally:
            self.backend.resume(group)

    async def _consume(
        self,
        call: Call[T],
        response: BackendResponse,
        principal: Principal | None,
        token: Token | None,
    ) -> T:
        """Feed the body to the call's incremental parser as it arrives."""
        assert call.incremental is not None
        consumer = call.incremental()
        try:
            async for chunk in response.iter_bytes():
                consumer.feed(chunk)
            return consumer.close()
        except ResponseParseError as exc:
            raise ResponseParseError(
                redact(f"{call.endpoint}: {exc}", self._secrets(principal, token)),
                endpoint=call.endpoint,
                request_id=response.headers.get("x-request-id"),
            ) from None

    def _log_attempt(
        self,
        call: Call[T],
        attempt: int,
        status: int | None,
        started: float,
        request_id: str | None,
        error: Exception | None = None,
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s map=%s status=%s elapsed=%.3fs attempt=%d request_id=%s%s",
                call.endpoint,
                call.map_key or "-",
                status if status is not None else "-",
                time.perf_counter() - started,
                attempt,
                request_id or "-",
                f" error={type(error).__name__}" if error is not None else "",
            )

    def _retry_delay(
        self, call: Call[T], error: SmartConnectError, retries: int, allowed: int
    ) -> float | None:
        """Seconds to wait before sending ``call`` again, or ``None`` not to."""
        if isinstance(error, RunOutcomeUnknown) or retries >= allowed:
            return None
        if isinstance(error, APIConnectionError):
            if not call.idempotent and error.sent:
                return None
        elif isinstance(error, APIStatusError):
            statuses = (
                _retry.RETRYABLE_READ_STATUSES if call.idempotent else _retry.UNPROCESSED_STATUSES
            )
            if error.status_code not in statuses:
                return None
            if error.retry_after is not None:
                # A wait longer than MAX_RETRY_AFTER is the caller's to decide on.
                if error.retry_after > _retry.MAX_RETRY_AFTER:
                    return None
                return _retry.after_retry_after(error.retry_after)
        else:
            return None
        return _retry.backoff(retries + 1)

    def _status_error(
        self,
        call: Call[T],
        response: BackendResponse,
        body: bytes,
        principal: Principal | None,
        token: Token | None,
        sent_at: float,
        attempt: int,
    ) -> SmartConnectError:
        status = response.status
        request_id = response.headers.get("x-request-id")
        excerpt = _excerpt(body, self._secrets(principal, token))
        where = _where(call)
        message = f"{call.endpoint}{where} failed with HTTP {status}: {excerpt or '(no body)'}"
        if request_id:
            message += f" (request id {request_id})"
        if not call.idempotent and status >= 500 and status not in _retry.UNPROCESSED_STATUSES:
            return RunOutcomeUnknown(
                f"{message}; the request may have been processed and was not sent again",
                endpoint=call.endpoint,
                map_key=call.map_key,
                sent_at=_moment(sent_at),
                attempt=attempt,
                status_code=status,
                request_id=request_id,
                body=excerpt,
            )
        retry_after = _retry.parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            message += f"; the server asks to wait {retry_after:g}s"
        cls = _STATUS_ERRORS.get(status) or (
            RateLimitError if status == 429 else ServerError if status >= 500 else APIStatusError
        )
        return cls(
            message,
            endpoint=call.endpoint,
            status_code=status,
            request_id=request_id,
            body=excerpt,
            retry_after=retry_after,
        )

    def _failure_error(
        self,
        call: Call[T],
        failure: BackendFailure,
        principal: Principal | None,
        token: Token | None,
        sent_at: float,
        attempt: int,
    ) -> SmartConnectError:
        where = _where(call)
        detail = redact(str(failure), self._secrets(principal, token))
        if not call.idempotent and failure.kind.sent:
            return RunOutcomeUnknown(
                f"{call.endpoint}{where}: {detail}; the request may have reached the server "
                "and was not sent again",
                endpoint=call.endpoint,
                map_key=call.map_key,
                sent_at=_moment(sent_at),
                attempt=attempt,
            )
        cls = APITimeoutError if failure.kind.timeout else APIConnectionError
        return cls(
            f"{call.endpoint}{where}: {detail}", endpoint=call.endpoint, sent=failure.kind.sent
        )
