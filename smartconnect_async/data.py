"""Map data endpoints: ``GetAllData`` and ``GetAllDataWithVariables`` (XML answers)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType

from ._batch import gather_outcomes, listed
from ._json import variables_body
from ._session import Session
from ._wire import JSON, XML, Call
from ._xml import MAX_COLUMNS, DataSetCollector, DataSetParser, parse_data_set
from .exceptions import UnknownTableError
from .maps import MapDirectory, MapRef
from .models import DataRequest, DataSet, Row, Timeout

logger = logging.getLogger("smartconnect_async")

__all__ = ["Data", "RowStream", "data_call"]


def _answer(endpoint: str, map_key: str | None) -> str:
    """How a message names a data answer."""
    return f"the {endpoint} answer for map {map_key}"


def data_call(
    map_key: str, variables: Mapping[str, str] | None = None, max_columns: int = MAX_COLUMNS
) -> Call[DataSet]:
    """``GetAllData``, or ``GetAllDataWithVariables`` when there are variables."""
    endpoint = "GetAllDataWithVariables" if variables else "GetAllData"
    what = _answer(endpoint, map_key)
    return Call(
        endpoint,
        lambda body: parse_data_set(body, what, max_columns),
        query=(("mapKey", map_key),),
        body=variables_body(variables) if variables else None,
        content_type=JSON if variables else None,
        accept=XML,
        map_key=map_key,
        incremental=lambda: DataSetCollector(what, max_columns),
    )


class RowStream:
    """The rows of a map's data, parsed while the answer streams in.

    Use it as ``async with sc.data.iter_rows(...) as rows:`` then ``async for row in
    rows``: entering sends the request and checks the answer's status, so an unknown map
    or a refused token is raised there, before anything of yours has started (a
    streaming HTTP response, say). Plain ``async for`` works too (the request then goes
    with the first row asked for); ``aclose`` releases the connection early.

    ``columns`` and ``tables`` tell what the answer held so far; once the stream is
    exhausted, a table asked for that is not in ``tables`` had no rows (or is misspelt).
    """

    def __init__(
        self,
        session: Session,
        directory: MapDirectory,
        map: MapRef,
        variables: Mapping[str, str] | None,
        table: str | None,
        timeout: Timeout | float | None,
        max_retries: int | None,
        strict: bool = False,
    ) -> None:
        if variables:
            variables_body(variables)  # bad variables fail here, before anything is sent
        self._session = session
        self._directory = directory
        self._map = map
        self._variables = variables
        self.table = table
        """The table whose rows are yielded: the one asked for, else the first one."""
        self._timeout = timeout
        self._max_retries = max_retries
        self._strict = strict
        self._parser: DataSetParser | None = None
        self._call: Call[object] | None = None
        self._held = AsyncExitStack()  # the answer, once the request is sent
        self._chunks: AsyncIterator[bytes] | None = None
        self._rows = self._generate()

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables the answer held rows of, in the order first seen: those read so far,
        all of them once the stream is exhausted (empty before it starts)."""
        return tuple(self._parser.columns) if self._parser is not None else ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of ``table`` seen so far: its first row's, then any a later row
        adds (empty before its first row)."""
        if self._parser is None or self.table is None:
            return ()
        return tuple(self._parser.columns.get(self.table, ()))

    def __aiter__(self) -> AsyncIterator[Row]:
        # The generator itself: ``async for`` then costs no wrapper coroutine per row.
        return self._rows

    def __anext__(self) -> Awaitable[Row]:
        return self._rows.__anext__()

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        await self._rows.aclose()
        await self._held.aclose()  # sent on entering, never read

    async def __aenter__(self) -> RowStream:
        await self._send()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self) -> AsyncIterator[bytes]:
        """Look the map up, send the request and check the answer's status, once; the
        answer's body, still to be read."""
        if self._chunks is None:
            key = await self._directory.key(
                self._session, self._map, timeout=self._timeout, max_retries=self._max_retries
            )
            max_columns = self._session.transport.max_columns
            call = self._call = data_call(key, self._variables, max_columns)
            self._parser = DataSetParser(_answer(call.endpoint, key), max_columns)
            stream = self._session.stream(
                call, timeout=self._timeout, max_retries=self._max_retries
            )
            self._chunks = await self._held.enter_async_context(stream)
        return self._chunks

    async def _generate(self) -> AsyncGenerator[Row, None]:
        async with self._held:
            chunks = await self._send()
            parser = self._parser
            assert parser is not None
            async for chunk in chunks:
                for table, row in parser.feed(chunk):
                    if self.table is None:
                        self.table = table
                    if table == self.table:
                        yield row
        for table, row in parser.close():
            if self.table is None:
                self.table = table
            if table == self.table:
                yield row
        self._check_table()

    def _check_table(self) -> None:
        """At the end: the table read had no rows. A table without rows is not in the
        answer at all, so this may be right (no rows today) or a misspelt name: a
        warning, or ``UnknownTableError`` when ``strict``."""
        held, call = self.tables, self._call
        assert call is not None
        if self.table in held or not (held or self._strict):
            return
        answer = _answer(call.endpoint, call.map_key)
        if self._strict:
            raise UnknownTableError(
                f"{answer} has no rows of "
                + (f"table {self.table!r}" if self.table is not None else "any table")
                + "; it holds "
                + (", ".join(map(repr, held)) or "no rows at all"),
                table=self.table,
                tables=held,
            )
        logger.warning(
            "%s has no rows of table %r (it has rows of %s)",
            answer,
            self.table,
            ", ".join(map(repr, held)),
        )


class Data:
    """A map's source data.

    Every method takes ``timeout`` (seconds or a ``Timeout``) and ``max_retries`` to
    override the client's settings for each call.
    """

    def __init__(self, session: Session, directory: MapDirectory) -> None:
        self._session = session
        self._directory = directory

    async def get_all(
        self,
        map: MapRef,
        variables: Mapping[str, str] | None = None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> DataSet:
        """All of ``map``'s source data, every table. ``variables`` (global variables such
        as ``{"GBL_STATE": "CO"}``) filter the source query."""
        if variables:
            variables_body(variables)  # bad variables fail here, before any I/O
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        call = data_call(key, variables, self._session.transport.max_columns)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)

    def iter_rows(
        self,
        map: MapRef,
        variables: Mapping[str, str] | None = None,
        *,
        table: str | None = None,
        strict: bool = False,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> RowStream:
        """The rows of ``map``'s source data, parsed as they arrive, in constant memory.
        Use it as ``async with ... as rows`` to have the request sent, and its errors
        raised, on entering (see ``RowStream``).

        Yields the rows of ``table`` (default: the first table of the answer), the same
        rows ``get_all`` returns for it, except that a row streamed before a column first
        appears in its table does not hold that column (``get_all`` gives it ``None``).
        An answer that holds rows of other tables but none of ``table`` yields nothing
        and logs a warning naming them, once it has been read (a table with no rows is
        not in the answer, so a misspelt name and an empty table look alike); the
        stream's ``tables`` names them too. ``strict=True``, for a table you know is
        never empty, raises ``UnknownTableError`` at the end instead, also when the
        answer holds no rows at all.
        A failure before the answer starts is retried like any read; a failure while it
        streams is raised (no row is ever yielded twice).
        """
        return RowStream(
            self._session, self._directory, map, variables, table, timeout, max_retries, strict
        )

    async def get_many(
        self,
        maps: Iterable[MapRef | DataRequest],
        *,
        concurrency: int = 8,
        on_result: Callable[[int, MapRef | DataRequest, DataSet | Exception], object] | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> list[DataSet | Exception]:
        """``get_all`` for many maps (or one map with different variables), at most
        ``concurrency`` at a time. Returns, in input order, each ``DataSet`` or the
        exception its pull raised; ``on_result(index, item, outcome)`` is called (and
        awaited, if async) as each finishes."""

        async def pull(item: MapRef | DataRequest) -> DataSet:
            if isinstance(item, DataRequest):
                return await self.get_all(
                    item.map, item.variables, timeout=timeout, max_retries=max_retries
                )
            return await self.get_all(item, timeout=timeout, max_retries=max_retries)

        return await gather_outcomes(
            listed(maps, "get_many"), pull, concurrency=concurrency, on_result=on_result
        )
