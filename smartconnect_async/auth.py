"""Authentication endpoints: ``GetToken`` and ``validate``."""

from __future__ import annotations

from ._json import load
from ._session import Session
from ._tokens import get_token_call, hash_password, parse_token
from ._wire import Call
from .exceptions import AuthenticationError, ResponseParseError
from .models import Timeout, Token

__all__ = ["Auth", "get_token_call", "hash_password", "parse_token", "validate_call"]


def parse_bool(body: bytes, what: str) -> bool:
    """A JSON ``true`` / ``false`` answer."""
    value = load(body, what)
    if not isinstance(value, bool):
        raise ResponseParseError(f"{what} is {value!r}, not true or false")
    return value


def _parse_validate(body: bytes) -> bool:
    return parse_bool(body, "the validate answer")


def validate_call() -> Call[bool]:
    """``validate``: whether the server still accepts the token."""
    return Call("validate", _parse_validate, refresh_on_401=False)


class Auth:
    """Tokens: get the cached one (or a new one), and ask the server if it is valid."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def get_token(self, force_refresh: bool = False) -> Token:
        """The company's token: cached, refreshed ahead of expiry, fetched once for all
        concurrent callers. ``force_refresh`` gets a new one now."""
        return await self._session.token(force_refresh=force_refresh)

    async def validate(
        self, *, timeout: Timeout | float | None = None, max_retries: int | None = None
    ) -> bool:
        """Whether the server accepts the current token. A refused token is dropped from
        the cache, so the next call gets a new one."""
        call = validate_call()
        token = await self._session.token(timeout=timeout, caller=call)
        try:
            valid = await self._session.call(call, timeout=timeout, max_retries=max_retries)
        except AuthenticationError:
            valid = False
        if not valid:
            await self._session.forget_token(token)
        return valid
