"""Map information endpoints: ``GetMapList``, ``GetMapColumns``, ``GetMappedMapColumns``."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, TypeAlias

from ._json import field, json_list
from ._transport import Call
from .models import Column, MapInfo, Timeout

if TYPE_CHECKING:
    from ._session import Session

__all__ = [
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


class Maps:
    """Which maps there are, and their columns.

    Every method takes ``timeout`` (seconds or a ``Timeout``) and ``max_retries`` to
    override the client's settings for that call.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    async def list(
        self, *, timeout: Timeout | float | None = None, max_retries: int | None = None
    ) -> builtins.list[MapInfo]:
        """Every map the API can run, with its key, name and description."""
        return await self._session.map_list(timeout=timeout, max_retries=max_retries)

    async def columns(
        self,
        map: MapRef,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> builtins.list[Column]:
        """The source columns of ``map``, with whether each is required."""
        key = await self._session.map_key(map, timeout=timeout, max_retries=max_retries)
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
        key = await self._session.map_key(map, timeout=timeout, max_retries=max_retries)
        call = mapped_columns_call(key)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)
