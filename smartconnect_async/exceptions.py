"""The exceptions the client raises: one tree, catchable at any level.

``SmartConnectError``
    ``APIConnectionError`` (no answer) ← ``APITimeoutError``
    ``APIStatusError`` (an HTTP error status) ← ``BadRequestError`` 400,
    ``AuthenticationError`` 401, ``PermissionDeniedError`` 403, ``NotFoundError`` 404,
    ``RateLimitError`` 429, ``ServerError`` 5xx
    ``ResponseParseError`` (a malformed, unexpected or hostile answer)
    ``UnknownMapError`` (a map name that is absent or ambiguous)
    ``UnknownTableError`` (``iter_rows(strict=True)``: no rows of the table asked for)
    ``RunOutcomeUnknown`` (a run may have reached the server; it is never re-sent)
    ``RunNeedsResolution`` (a journal says a run may have reached the server: resolve it)
    ``JournalConflict`` (``run_many`` without ``resume``: the journal already holds runs)
    ``MapRunFailed`` (a run finished with a failure status or errors)
    ``ClientClosedError`` (the client was used after it was closed)

No exception message carries a token, password or hashed password.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import RunResult

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "JournalConflict",
    "MapRunFailed",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseParseError",
    "RunNeedsResolution",
    "RunOutcomeUnknown",
    "ServerError",
    "SmartConnectError",
    "UnknownMapError",
    "UnknownTableError",
]


class SmartConnectError(Exception):
    """Base class of every error this library raises. Every one pickles (to another
    process, a task queue), message and attributes included."""

    def __reduce__(self) -> tuple[Any, ...]:
        # The default calls ``cls(*args)``, which the keyword-only constructors refuse.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(
    cls: type[SmartConnectError], args: tuple[Any, ...], state: dict[str, Any]
) -> SmartConnectError:
    """An unpickled error: its class, message and attributes, no constructor run."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ClientClosedError(SmartConnectError):
    """The client (or the client it shares its pool with) has been closed."""


class APIConnectionError(SmartConnectError):
    """No answer could be had from the server: connection refused, reset or dropped.

    ``endpoint`` names the API call; ``sent`` tells whether the request may have reached
    the server (``False`` when it provably did not).
    """

    def __init__(self, message: str, *, endpoint: str, sent: bool) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """The call timed out (connecting, waiting for the pool, sending or reading)."""


class APIStatusError(SmartConnectError):
    """The server answered with an HTTP error status.

    ``status_code`` is the HTTP status, ``request_id`` the server's ``X-Request-Id`` (quote
    it to support), ``body`` a short excerpt of the answer, ``endpoint`` the API call,
    ``retry_after`` the wait in seconds the server asked for (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status_code: int,
        request_id: str | None,
        body: str,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """HTTP 400: the server refused the request as malformed."""


class AuthenticationError(APIStatusError):
    """HTTP 401: bad credentials, or a token the server no longer accepts."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the user may not do this."""


class NotFoundError(APIStatusError):
    """HTTP 404: no such endpoint or map."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests. ``retry_after`` is the wait the server asked for, in
    seconds, when it said one."""


class ServerError(APIStatusError):
    """HTTP 5xx: the server failed."""


class ResponseParseError(SmartConnectError):
    """The answer could not be understood: malformed, of an unexpected shape, an HTML error
    page (even with status 200), or hostile XML (a DTD, entities, external references)."""

    def __init__(
        self, message: str, *, endpoint: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.request_id = request_id


class UnknownMapError(SmartConnectError, LookupError):
    """A map given by name (``MapId``) is not in the company's map list, or is ambiguous.

    ``candidates`` holds the ``MapKey`` of each map of that name (empty when none).
    """

    def __init__(self, message: str, *, map: str, candidates: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.map = map
        self.candidates = tuple(candidates)


class UnknownTableError(SmartConnectError, LookupError):
    """``iter_rows(..., strict=True)`` read an answer that holds no rows of the table
    asked for (``table``; ``None``: any table). ``tables`` names those it holds."""

    def __init__(self, message: str, *, table: str | None, tables: Sequence[str]) -> None:
        super().__init__(message)
        self.table = table
        self.tables = tuple(tables)


class RunOutcomeUnknown(SmartConnectError):
    """A request that is not safe to repeat (a run, SaveProcessErrors) may have reached
    the server, but no answer came. It was **not** sent again: check the run history
    before deciding to run the map again.

    ``endpoint`` names the call, ``map_key`` the map, ``sent_at`` when the request was sent
    (UTC), ``attempt`` which attempt it was (1 is the first); ``status_code`` and
    ``request_id`` are set when an error status (a 500, say) was the answer. ``body`` holds
    the answer's text, secrets redacted, when one came: an excerpt of an error status's,
    or the whole of a successful answer that could not be read (the run was processed:
    its run number is in it).
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        map_key: str | None,
        sent_at: datetime,
        attempt: int,
        status_code: int | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.map_key = map_key
        self.sent_at = sent_at
        self.attempt = attempt
        self.status_code = status_code
        self.request_id = request_id
        self.body = body


class RunNeedsResolution(SmartConnectError):
    """A run journal says this run may already have reached the server (an earlier batch
    sent it and got no answer, or stopped while it was in flight), so it was **not** sent.
    Check the run history, then ``journal.resolve(key, "ran" | "not-run")``.

    ``key`` is the run's journal key, ``state`` its journal state (``"sending"`` or
    ``"unknown"``), ``company_id`` and ``map_key`` the run's company and map.
    """

    def __init__(
        self, message: str, *, key: str, state: str, company_id: str, map_key: str | None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.state = state
        self.company_id = company_id
        self.map_key = map_key


class JournalConflict(SmartConnectError):
    """``run_many(journal=..., resume=False)`` was given runs its journal already holds:
    nothing was sent. ``keys`` names them. Resume the batch (``resume=True``) or use
    another journal."""

    def __init__(self, message: str, *, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


class MapRunFailed(SmartConnectError):
    """A run finished, but with a failure status or with errors. ``result`` holds it."""

    def __init__(self, result: RunResult) -> None:
        from ._redact import redact_url

        detail = f": {redact_url(result.error_message)}" if result.error_message else ""
        super().__init__(
            f"map {result.map_id or '?'!r} run {result.run_number} failed with status "
            f"{result.status} and {result.error_count} error(s){detail}"
        )
        self.result = result
