"""The wire, with no I/O: what a call sends (``Call``, ``request_url``, ``request_headers``)
and what its answer means (``read_answer``, ``status_error``, ``failure_error``).

Every rule about an answer lives here: the HTML page that IIS may send even with status
200, the short secret-free excerpt an error keeps, the request id, and the run-outcome
rule (``may_have_run``) that decides when a request that is not idempotent may have been
processed and so must never be sent again.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Generic, NamedTuple, Protocol, TypeVar
from urllib.parse import quote

import attrs

from . import __version__
from ._backend import BackendFailure
from ._redact import REDACTED, redact
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
    SmartConnectError,
)
from .models import DataSet, RunResult

__all__ = [
    "JSON",
    "XML",
    "Body",
    "Call",
    "Incremental",
    "Sent",
    "excerpt",
    "failure_error",
    "finished",
    "html_page_error",
    "is_html",
    "may_have_run",
    "read_answer",
    "request_headers",
    "request_url",
    "status_error",
    "unsent",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

JSON = "application/json"
XML = "application/xml"
USER_AGENT = f"smartconnect-async/{__version__}"
EXCERPT_LENGTH = 200
"""Characters of an error answer kept in an exception's message and ``body``."""
ANSWER_KEPT = 1 << 16
"""Characters of an unreadable run answer kept in ``RunOutcomeUnknown.body``."""
ERROR_BODY_READ = 1 << 16
"""Bytes of an error answer read (after decompression) for its excerpt; the rest is
not read."""

UNPROCESSED_STATUSES = frozenset({429, 503})
"""Statuses that say the server did not process the request: even a run may be sent
again after one of them."""


class Incremental(Protocol[T_co]):
    """A parser fed an answer's body chunk by chunk as it arrives."""

    def feed(self, chunk: bytes) -> None: ...

    def close(self) -> T_co:
        """The end of the body: the result."""
        ...


def _query_repr(query: tuple[tuple[str, str], ...]) -> str:
    """A query as ``repr`` shows it: GetToken's password hidden."""
    return repr(tuple((name, REDACTED if name == "password" else v) for name, v in query))


@attrs.frozen
class Body:
    """An answer's body as read: its bytes, which ``repr`` does not show (an answer may
    quote a secret), and whether the answer went on past them (the rest not read)."""

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    more: bool = False


@attrs.frozen
class Call(Generic[T_co]):
    """One API call, as an endpoint module declares it: what to send and how to read
    the answer.

    ``idempotent=False`` marks a call that must never be sent twice once it may have
    reached the server (runs, SaveProcessErrors). ``parse`` turns the body of a successful
    answer into the result and raises ``ResponseParseError`` when it cannot; when
    ``incremental`` is given, it makes a parser that is fed the body as it streams in
    instead (large answers are then never held whole). ``is_run`` calls take one of the
    company's run slots while they are in flight.
    """

    endpoint: str
    parse: Callable[[bytes], T_co]
    query: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=_query_repr)
    body: bytes | None = None
    content_type: str | None = None
    accept: str = JSON
    idempotent: bool = True
    authenticated: bool = True
    refresh_on_401: bool = True
    map_key: str | None = None
    is_run: bool = False
    incremental: Callable[[], Incremental[T_co]] | None = None

    @property
    def where(self) -> str:
        """The map the call is for, as a message names it: `` for map KEY`` or nothing."""
        return f" for map {self.map_key}" if self.map_key else ""


class Sent(NamedTuple):
    """When an attempt was sent (``time.time()``) and which attempt it was (1 is the
    first): what ``RunOutcomeUnknown`` reports."""

    at: float
    attempt: int

    @property
    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.at, timezone.utc)


# ---- the request ---------------------------------------------------------------------

# The same token and map keys go out on every call, and quoting goes character by
# character: remember the last few thousand.
_quote = functools.lru_cache(maxsize=4096)(functools.partial(quote, safe=""))


def request_url(api_url: str, call: Call[object], token: str | None) -> str:
    """``POST`` target of ``call``: every query value percent-encoded (``+ / =`` too: a
    raw "+" in a token arrives as a space), the token first."""
    query = call.query if token is None else (("token", token), *call.query)
    url = f"{api_url}/{call.endpoint}"
    if query:
        url += "?" + "&".join(f"{name}={_quote(value)}" for name, value in query)
    return url


@functools.lru_cache(maxsize=64)
def _headers(accept: str, content_type: str | None) -> Mapping[str, str]:
    headers = {"Accept": accept, "User-Agent": USER_AGENT}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return headers


def request_headers(call: Call[object]) -> Mapping[str, str]:
    """The headers of ``call`` (shared: do not change them)."""
    return _headers(call.accept, call.content_type)


# ---- the answer ----------------------------------------------------------------------


def may_have_run(call: Call[object], *, status: int | None = None, sent: bool = True) -> bool:
    """The run-outcome rule: whether ``call``, not idempotent, may have been processed.

    A request the backend could not write (``sent=False``) was not. Once written, an
    answer with status 429 or 503 says it was not processed, a 4xx that it was refused;
    any other 5xx, a redirect (never followed: a 303 after a POST, or an error page
    reached through a 302, may come after the run), or no answer at all
    (``status=None``), leaves it unknown. A successful answer means it ran. Idempotent
    calls never count.
    """
    if call.idempotent or not sent:
        return False
    if status is None or 300 <= status < 400:
        return True
    return status >= 500 and status not in UNPROCESSED_STATUSES


def request_id(headers: Mapping[str, str]) -> str | None:
    """The answer's ``X-Request-Id``, any character that is not printable escaped: it
    goes into messages and log lines, where a line break could forge another line."""
    value = headers.get("x-request-id")
    if value is None or value.isprintable():
        return value
    return value.encode("unicode_escape").decode("ascii")


def is_html(content_type: str, body: bytes = b"") -> bool:
    """An HTML page (IIS sends its error pages so, even with status 200)."""
    if "html" in content_type.lower():
        return True
    return body[:200].lstrip().lower().startswith((b"<!doctype html", b"<html"))


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def _window(body: bytes, size: int, secrets: tuple[str, ...]) -> str:
    """The first ``size`` bytes of ``body`` as text. When the body goes on, the end of
    the window is dropped too: a secret the cut went through could not be recognised
    (six characters a character: its longest encoding, ``\\u002B``)."""
    text = body[:size].decode("utf-8", "replace")
    if len(body) > size and secrets:
        text = text[: max(0, len(text) - 6 * max(map(len, secrets)))]
    return text


def excerpt(body: bytes, secrets: tuple[str, ...]) -> str:
    """A short, readable, secret-free excerpt of an answer: an HTML page's title, a JSON
    string or ``Message``, else the text with any tags removed."""
    title = _TITLE.search(body[:8192])
    if title is not None:
        text = title.group(1).decode("utf-8", "replace")
    else:
        text = _window(body, 16384, secrets)
        try:
            value = json.loads(text) if len(body) <= 4096 else None
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict):
            message = value.get("Message") or value.get("message")
            text = message if isinstance(message, str) else text
        if "<" in text:
            text = _TAGS.sub(" ", text)
    # Redact the whole text before cutting it: a cut could leave part of a secret.
    text = " ".join(redact(text, secrets).split())
    if len(text) > EXCERPT_LENGTH:
        text = text[: EXCERPT_LENGTH - 1] + "…"
    return text


def answer_text(body: bytes, secrets: tuple[str, ...]) -> str:
    """An answer's text for an error to keep, secrets redacted (``redact`` reads them in
    every encoding answers use) before it is cut."""
    return redact(_window(body, 4 * ANSWER_KEPT + 16384, secrets), secrets)[:ANSWER_KEPT]


def html_page_error(
    call: Call[object],
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    secrets: tuple[str, ...],
) -> ResponseParseError:
    return ResponseParseError(
        f"{call.endpoint} answered with an HTML page instead of data (HTTP {status}): "
        f"{excerpt(body, secrets)}",
        endpoint=call.endpoint,
        request_id=request_id(headers),
    )


def parse_error(
    call: Call[object],
    error: ResponseParseError,
    headers: Mapping[str, str],
    secrets: tuple[str, ...],
) -> ResponseParseError:
    """``error`` of ``call``'s parser, named after the endpoint, with the request id."""
    return ResponseParseError(
        redact(f"{call.endpoint}: {error}", secrets),
        endpoint=call.endpoint,
        request_id=request_id(headers),
    )


def read_answer(
    call: Call[T],
    status: int,
    headers: Mapping[str, str],
    body: Body,
    secrets: tuple[str, ...],
    sent: Sent,
) -> T:
    """The result of a successful answer. An answer that cannot be read (an HTML page,
    one that went on past what was read, one the call's parser refuses) raises
    ``ResponseParseError``, or, for a call that is not idempotent (it was processed),
    ``RunOutcomeUnknown`` keeping the answer's text (its run number is in it)."""
    if is_html(headers.get("content-type", ""), body.data):
        error = html_page_error(call, status, headers, body.data, secrets)
    elif body.more:
        error = ResponseParseError(
            f"{call.endpoint}: the answer is larger than {len(body.data):,} bytes "
            "(max_answer_size); the rest was not read",
            endpoint=call.endpoint,
            request_id=request_id(headers),
        )
    else:
        try:
            result = call.parse(body.data)
        except ResponseParseError as exc:
            error = parse_error(call, exc, headers, secrets)
        except (ValueError, RecursionError) as exc:  # a parser's gap: still unreadable
            unreadable = ResponseParseError(f"the answer could not be read ({type(exc).__name__})")
            error = parse_error(call, unreadable, headers, secrets)
        else:
            return finished(result, headers, secrets)
    if call.idempotent:
        raise error
    raise RunOutcomeUnknown(
        f"{error}; the request was processed but its result could not be read",
        endpoint=call.endpoint,
        map_key=call.map_key,
        sent_at=sent.moment,
        attempt=sent.attempt,
        request_id=request_id(headers),
        body=answer_text(body.data, secrets),
    ) from error


def finished(result: T, headers: Mapping[str, str], secrets: tuple[str, ...]) -> T:
    """A parsed result as the caller gets it: a run's or data set's with its answer's
    request id, a failed run's message redacted (its ``repr`` and ``MapRunFailed`` show
    it, and the server may quote a secret in it)."""
    if isinstance(result, RunResult):
        message = redact(result.error_message, secrets) if result.error_message else ""
        return attrs.evolve(result, error_message=message, request_id=request_id(headers))
    if isinstance(result, DataSet):
        return attrs.evolve(result, request_id=request_id(headers))
    return result


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error(
    call: Call[object],
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    secrets: tuple[str, ...],
    sent: Sent,
    retry_after: float | None,
) -> SmartConnectError:
    """The error for an answer with an error status (``retry_after``: the server's
    ``Retry-After``, read by ``_retry``)."""
    rid = request_id(headers)
    text = excerpt(body, secrets)
    message = f"{call.endpoint}{call.where} failed with HTTP {status}: {text or '(no body)'}"
    if rid:
        message += f" (request id {rid})"
    if may_have_run(call, status=status):
        return RunOutcomeUnknown(
            f"{message}; the request may have been processed and was not sent again",
            endpoint=call.endpoint,
            map_key=call.map_key,
            sent_at=sent.moment,
            attempt=sent.attempt,
            status_code=status,
            request_id=rid,
            body=text,
        )
    if retry_after is not None:
        message += f"; the server asks to wait {retry_after:g}s"
    cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else APIStatusError)
    return cls(
        message,
        endpoint=call.endpoint,
        status_code=status,
        request_id=rid,
        body=text,
        retry_after=retry_after,
    )


def unsent(
    call: Call[object], reason: str, *, outcome: str = "nothing was sent"
) -> APITimeoutError:
    """The error for ``call`` given up on before it was sent: a wait that took too long."""
    return APITimeoutError(
        f"{call.endpoint}{call.where}: {reason}; {outcome}", endpoint=call.endpoint, sent=False
    )


def failure_error(
    call: Call[object], failure: BackendFailure, secrets: tuple[str, ...], sent: Sent
) -> SmartConnectError:
    """The error for a request that got no (whole) answer."""
    detail = redact(str(failure), secrets)
    if may_have_run(call, sent=failure.kind.sent):
        return RunOutcomeUnknown(
            f"{call.endpoint}{call.where}: {detail}; the request may have reached the server "
            "and was not sent again",
            endpoint=call.endpoint,
            map_key=call.map_key,
            sent_at=sent.moment,
            attempt=sent.attempt,
        )
    cls = APITimeoutError if failure.kind.timeout else APIConnectionError
    return cls(
        f"{call.endpoint}{call.where}: {detail}", endpoint=call.endpoint, sent=failure.kind.sent
    )
