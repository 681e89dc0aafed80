"""``Session``: credentials bound to the shared transport, what every endpoint module
calls through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import attrs

from ._tokens import Principal
from ._transport import Transport
from ._wire import Call
from .models import Timeout, Token

__all__ = ["Session"]

T = TypeVar("T")


@attrs.frozen
class Session:
    """Credentials bound to the shared transport, with the client's defaults for a
    call's ``timeout`` and ``max_retries`` (``None``: the transport's)."""

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
        """``transport.stream`` for these credentials."""
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
        """The token of these credentials (``Tokens.token``), any wait for it within the
        pool timeout of ``timeout``."""
        transport = self.transport
        return await transport.tokens.token(
            self.principal,
            transport.call,
            force_refresh=force_refresh,
            max_wait=transport.timeouts(self.timeout if timeout is None else timeout).pool,
            caller=caller,
        )

    async def forget_token(self, token: Token) -> None:
        """Drop ``token``, which the server refused, if it is still the cached one."""
        await self.transport.tokens.invalidate(self.principal, token)
