"""Reading a successful answer's body, its connection held until it is read: whole and
bounded (``read``), fed to the call's incremental parser as it arrives (``read`` too), or
handed to the caller as a byte stream (``chunks``). What the bytes mean is ``_wire``'s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from typing import NamedTuple, TypeVar

from . import _wire
from ._backend import BackendFailure, BackendResponse
from ._redact import Secrets
from ._wire import Body, Call, Sent
from .exceptions import ResponseParseError

__all__ = ["Answer", "Consume", "body", "chunks", "read"]

T = TypeVar("T")


class Answer(NamedTuple):
    """A successful answer whose body is still to be read, its connection (and the
    call's limits) held by ``held``."""

    response: BackendResponse
    secrets: Secrets
    sent: Sent
    held: AsyncExitStack


Consume = Callable[[Answer], Awaitable[T]]
"""What the transport does with a successful answer: read it, or keep it open."""


async def body(response: BackendResponse, limit: int) -> Body:
    """At most ``limit`` bytes of ``response``'s body (counted after decompression), and
    whether it went on past them (the rest is not read: the connection is dropped)."""
    headers = response.headers
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) <= limit and "content-encoding" not in headers:
        return Body(await response.read())
    parts: list[bytes] = []
    size = 0
    async with aclosing(response.iter_bytes()) as stream:
        async for chunk in stream:
            if size + len(chunk) > limit:
                parts.append(chunk[: limit - size])
                return Body(b"".join(parts), more=True)
            parts.append(chunk)
            size += len(chunk)
    return Body(b"".join(parts))


async def read(call: Call[T], limit: int, answer: Answer) -> T:
    """The result of ``call`` from its successful answer: the body read whole (at most
    ``limit`` bytes) and parsed, or fed to the call's incremental parser as it arrives.
    An HTML page is never data: only its start is read, for the error's excerpt."""
    response = answer.response
    headers = response.headers
    html = _wire.is_html(headers.get("content-type", ""))
    if html:
        limit = _wire.ERROR_BODY_READ
    if call.incremental is None or html:
        whole = await body(response, limit)
        return _wire.read_answer(call, response.status, headers, whole, answer.secrets, answer.sent)
    parser = call.incremental()
    try:
        async for chunk in response.iter_bytes():
            parser.feed(chunk)
        result = parser.close()
    except ResponseParseError as error:
        raise _wire.parse_error(call, error, headers, answer.secrets) from None
    return _wire.finished(result, headers, answer.secrets)


async def chunks(call: Call[object], answer: Answer) -> AsyncIterator[bytes]:
    """The body of a streamed answer; a failure while it streams is the call's error."""
    try:
        async for chunk in answer.response.iter_bytes():
            yield chunk
    except BackendFailure as failure:
        raise _wire.failure_error(call, failure, answer.secrets, answer.sent) from None
