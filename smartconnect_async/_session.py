"""A client's view of the shared core: one set of credentials bound to the shared
transport, token cache and map directory. Endpoint modules call through it."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._tokens import TokenKey, hash_password, make_token
from ._transport import Call, Principal, Transport
from .auth import get_token_call
from .exceptions import APITimeoutError, UnknownMapError
from .maps import list_call
from .models import Credentials, MapInfo, Timeout, Token

if TYPE_CHECKING:
    from .maps import MapRef

__all__ = ["MapDirectory", "Session"]

T = TypeVar("T")
_PROOF_SALT = secrets.token_bytes(16)  # per process: a password's proof is never stored
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class MapDirectory:
    """The map list of one company and user, fetched once and shared by every client
    with those credentials; fetched again when a name is not found in it."""

    def __init__(self) -> None:
        self.maps: list[MapInfo] | None = None
        self.lock = anyio.Lock()
        self.generation = 0

    def update(self, maps: list[MapInfo]) -> None:
        self.maps = list(maps)
        self.generation += 1

    def find(self, name: str) -> list[MapInfo]:
        maps = self.maps or []
        exact = [m for m in maps if m.id == name]
        if exact:
            return exact
        folded = name.casefold()
        return [m for m in maps if m.id.casefold() == folded]


class Session:
    """Credentials bound to the shared transport."""

    def __init__(
        self,
        transport: Transport,
        credentials: Credentials,
        directories: dict[TokenKey, MapDirectory],
    ) -> None:
        self.transport = transport
        self.credentials = credentials
        key = TokenKey.of(transport.api_url, credentials.company_id, credentials.email)
        wire_password = (
            hash_password(credentials.password)
            if credentials.hash_password
            else credentials.password
        )
        self.wire_password = wire_password
        self.principal = Principal(
            key=key,
            fetch=self._fetch_token,
            secrets=tuple({credentials.password, wire_password}),
            proof=hashlib.sha256(_PROOF_SALT + wire_password.encode()).digest(),
        )
        self.directory = directories.setdefault(key, MapDirectory())

    async def _fetch_token(self) -> Token:
        obtained = self.transport.tokens.clock()
        value = await self.transport.call(get_token_call(self), self.principal)
        return make_token(
            value,
            company_id=self.credentials.company_id,
            email=self.credentials.email,
            obtained_at=obtained,
        )

    async def token(
        self,
        *,
        force_refresh: bool = False,
        timeout: Timeout | float | None = None,
        caller: Call[object] | None = None,
    ) -> Token:
        """The cached token, fetched if there is none usable. A wait for a fetch another
        call sent is bounded by the pool timeout of ``timeout`` (default: the client's)."""
        return await self.transport.token(
            self.principal,
            force_refresh=force_refresh,
            timeout=timeout,
            caller=caller,
        )

    async def forget_token(self, token: Token) -> None:
        """Drop ``token`` from the cache if it is still the cached one."""
        await self.transport.tokens.invalidate(self.principal.key, token)

    def call(
        self,
        call: Call[T],
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> Coroutine[object, object, T]:
        # Hands back the transport's coroutine: one frame less on every resumption.
        return self.transport.call(call, self.principal, timeout=timeout, max_retries=max_retries)

    def stream(
        self,
        call: Call[object],
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self.transport.stream(call, self.principal, timeout=timeout, max_retries=max_retries)

    async def map_list(
        self, *, timeout: Timeout | float | None = None, max_retries: int | None = None
    ) -> list[MapInfo]:
        """Fetch the map list and remember it for name lookups."""
        maps = await self.call(list_call(), timeout=timeout, max_retries=max_retries)
        self.directory.update(maps)
        return maps

    async def map_key(
        self,
        map: MapRef,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> str:
        """The MapKey of a ``MapInfo``, a MapKey, or a MapId (looked up in the map list).

        A lookup that needs the map list fetches it with the call's ``timeout`` and
        ``max_retries``; its wait for a fetch another call makes is bounded by the pool
        timeout (``APITimeoutError``, nothing sent)."""
        if isinstance(map, MapInfo):
            return map.key
        if not isinstance(map, str):
            raise TypeError(f"a map is a MapInfo, a MapKey or a MapId, not a {type(map).__name__}")
        name = map.strip()
        if not name:
            raise ValueError("the map name is empty")
        if _GUID.fullmatch(name):
            return name
        directory = self.directory
        seen = directory.generation
        if directory.maps is not None:
            found = directory.find(name)
            if len(found) == 1:
                return found[0].key
        pool = self.transport.limits(timeout).pool
        try:
            directory.lock.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait_for_directory(name, pool)
        try:
            if directory.maps is None or directory.generation == seen:
                # Not known yet, or perhaps created since the list was fetched.
                await self.map_list(timeout=timeout, max_retries=max_retries)
        finally:
            directory.lock.release()
        return self._only(name, directory.find(name))

    async def _wait_for_directory(self, name: str, pool: float | None) -> None:
        """Take the map list's lock from the call fetching it, within ``pool`` seconds."""
        try:
            with anyio.fail_after(pool):  # None: no deadline
                await self.directory.lock.acquire()
        except TimeoutError:
            raise APITimeoutError(
                f"GetMapList: the map list of company {self.credentials.company_id} that "
                f"another call is fetching did not come within {pool:g}s (looking up map "
                f"{name!r}); nothing was sent",
                endpoint="GetMapList",
                sent=False,
            ) from None

    def _only(self, name: str, found: list[MapInfo]) -> str:
        company = self.credentials.company_id
        if len(found) == 1:
            return found[0].key
        if not found:
            known = sorted(m.id for m in self.directory.maps or [])
            shown = ", ".join(repr(k) for k in known[:20]) + (" …" if len(known) > 20 else "")
            raise UnknownMapError(
                f"no map named {name!r} in company {company}"
                + (f"; its maps are {shown}" if known else "; it has no maps"),
                map=name,
            )
        keys = [m.key for m in found]
        raise UnknownMapError(
            f"map name {name!r} is ambiguous in company {company}: it names {len(found)} "
            f"maps ({', '.join(keys)}); pass the MapKey instead",
            map=name,
            candidates=keys,
        )
