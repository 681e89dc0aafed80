"""Map information endpoints: ``GetMapList``, ``GetMapColumns``, ``GetMappedMapColumns``."""

from __future__ import annotations

import builtins
import re
from typing import TypeAlias

import anyio

from ._json import field, json_list
from ._session import Session
from ._wire import Call, unsent
from .exceptions import UnknownMapError
from .models import Column, MapInfo, Timeout

__all__ = [
    "MapDirectory",
    "MapRef",
    "Maps",
    "columns_call",
    "list_call",
    "mapped_columns_call",
    "parse_columns",
    "parse_map_list",
]

MapRef: TypeAlias = MapInfo | str
"""A map: a ``MapInfo``, a MapKey (GUID) or a MapId (the map's name)."""


def parse_map_list(body: bytes) -> list[MapInfo]:
    """A GetMapList answer."""
    what = "the GetMapList answer"
    return [
        MapInfo(
            key=field(item, "MapKey", str, what, i),
            id=field(item, "MapId", str, what, i),
            description=field(item, "MapDescription", str, what, i, default=""),
        )
        for i, item in enumerate(json_list(body, what))
    ]


def parse_columns(body: bytes, what: str = "the column list") -> list[Column]:
    """A GetMapColumns or GetMappedMapColumns answer."""
    return [
        Column(
            name=field(item, "ColumnName", str, what, i),
            required=field(item, "IsRequired", bool, what, i, default=False),
        )
        for i, item in enumerate(json_list(body, what))
    ]


def _parse_source_columns(body: bytes) -> list[Column]:
    return parse_columns(body, "the GetMapColumns answer")


def _parse_mapped_columns(body: bytes) -> list[Column]:
    return parse_columns(body, "the GetMappedMapColumns answer")


_LIST_CALL = Call("GetMapList", parse_map_list)  # a Call is frozen: one serves every call


def list_call() -> Call[list[MapInfo]]:
    """``GetMapList``: the maps the API can run (real-time maps are never listed)."""
    return _LIST_CALL


def columns_call(map_key: str) -> Call[list[Column]]:
    """``GetMapColumns``: the source columns of a map."""
    return Call(
        "GetMapColumns", _parse_source_columns, query=(("mapKey", map_key),), map_key=map_key
    )


def mapped_columns_call(map_key: str) -> Call[list[Column]]:
    """``GetMappedMapColumns``: the destination columns a map fills."""
    return Call(
        "GetMappedMapColumns",
        _parse_mapped_columns,
        query=(("mapKey", map_key),),
        map_key=map_key,
    )


_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class _Fetch:
    """One GetMapList, shared by every lookup that needs the list meanwhile."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: Exception | None = None


class MapDirectory:
    """The map list of one company and user, for looking maps up by MapId: fetched once
    and shared by every client with those credentials; fetched again when a name is not
    found in it (the map may be new).

    Lookups that need the list while one is being fetched wait for that fetch and share
    its outcome, failure included (a wrong password makes one failed login, not one
    per lookup), as token waiters do; a fetch that is cancelled is taken over by one of
    them.
    """

    def __init__(self) -> None:
        self.maps: builtins.list[MapInfo] | None = None
        self.generation = 0
        self._fetch: _Fetch | None = None

    async def fetch(
        self, session: Session, *, timeout: Timeout | float | None, max_retries: int | None
    ) -> builtins.list[MapInfo]:
        """Fetch the map list and remember it for lookups."""
        maps = await session.call(list_call(), timeout=timeout, max_retries=max_retries)
        self.maps = list(maps)
        self.generation += 1
        return maps

    def find(self, name: str) -> builtins.list[MapInfo]:
        maps = self.maps or []
        exact = [m for m in maps if m.id == name]
        if exact:
            return exact
        folded = name.casefold()
        return [m for m in maps if m.id.casefold() == folded]

    async def key(
        self,
        session: Session,
        map: MapRef,
        *,
        timeout: Timeout | float | None,
        max_retries: int | None,
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
        if self.maps is not None:
            found = self.find(name)
            if len(found) == 1:
                return found[0].key
        # Not known yet, or perhaps created since the list was fetched.
        await self._refresh(session, name, timeout, max_retries)
        return self._only(name, session.principal.key.company_id)

    async def _refresh(
        self,
        session: Session,
        name: str,
        timeout: Timeout | float | None,
        max_retries: int | None,
    ) -> None:
        """A map list fetched after this call looked: its own, or the one under way."""
        seen = self.generation
        while self.generation == seen:
            fetch = self._fetch
            if fetch is None:
                fetch = self._fetch = _Fetch()
                try:
                    await self.fetch(session, timeout=timeout, max_retries=max_retries)
                except Exception as exc:
                    fetch.error = exc
                    raise
                finally:
                    self._fetch = None
                    fetch.done.set()
                return
            pool = session.transport.timeouts(timeout).pool
            try:
                with anyio.fail_after(pool):  # None: no deadline
                    await fetch.done.wait()
            except TimeoutError:
                raise unsent(
                    list_call(),
                    f"the map list of company {session.principal.key.company_id} that another "
                    f"call is fetching did not come within {pool:g}s (looking up map {name!r})",
                ) from None
            if fetch.error is not None:
                raise fetch.error
            # Else that fetch was cancelled, or it succeeded (the loop ends).

    def _only(self, name: str, company: str) -> str:
        found = self.find(name)
        if len(found) == 1:
            return found[0].key
        if not found:
            known = sorted(m.id for m in self.maps or [])
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


class Maps:
    """Which maps there are, and their columns.

    Every method takes ``timeout`` (seconds or a ``Timeout``) and ``max_retries`` to
    override the client's settings for that call.
    """

    def __init__(self, session: Session, directory: MapDirectory) -> None:
        self._session = session
        self._directory = directory

    async def list(
        self, *, timeout: Timeout | float | None = None, max_retries: int | None = None
    ) -> builtins.list[MapInfo]:
        """Every map the API can run, with its key, name and description."""
        return await self._directory.fetch(self._session, timeout=timeout, max_retries=max_retries)

    async def columns(
        self,
        map: MapRef,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[Column]:
        """The source columns of ``map``, with whether each is required."""
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        call = columns_call(key)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)

    async def mapped_columns(
        self,
        map: MapRef,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[Column]:
        """The destination columns that ``map`` fills."""
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        call = mapped_columns_call(key)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)
