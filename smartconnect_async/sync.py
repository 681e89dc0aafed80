"""``SmartConnectSync``: ``SmartConnect`` for code that runs no event loop (scripts, the
REPL, batch jobs).

    with SmartConnectSync(api_url, credentials) as sc:
        maps = sc.maps.list()
        with sc.data.iter_rows("Import Customers") as rows:
            for row in rows:
                ...

An event loop runs in a thread of its own (an anyio blocking portal) and every call is
the async client's, made there: same settings, same results, same exceptions. The
portal, its thread and the connection pool belong to the first facade;
``with_credentials``, ``with_company`` and ``with_options`` share them, and only the first
facade's ``close()`` stops them. ``iter_rows`` is read by one task of that loop, at most
a few hundred rows ahead of the caller, and handed over in batches.

Inside a running event loop (``async def`` code; a Jupyter cell, which IPython runs in
one) blocking would stall that loop, so every call raises ``RuntimeError`` there: use
``SmartConnect`` with ``await`` (a Jupyter cell may ``await`` at top level).

Design: each blocking method is declared once, as ``list = _Blocking(Maps.list)``: a
descriptor typed by the async method's ``ParamSpec``, so mypy and IDEs see the async
method's own parameters with a blocking result, and ``help()`` its docstring. A
``__getattr__`` that forwards any name would be untyped; written-out methods or a ``.pyi``
would repeat every signature. ``tests/unit/test_sync.py`` fails when an async method has
no twin.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager, contextmanager
from datetime import timedelta
from functools import partial, wraps
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    TypeAlias,
    TypedDict,
    TypeVar,
    overload,
)

import anyio
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._limits import RunLeases
from ._tokens import Clock, TokenStore
from .auth import Auth
from .client import Keep, SmartConnect
from .data import Data, RowStream
from .errors import Errors
from .exceptions import ClientClosedError
from .maps import Maps
from .models import Credentials, Row, Timeout
from .runs import Runs

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11

if sys.version_info < (3, 11):  # pragma: no cover - anyio's dependency there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = [
    "ClientOptions",
    "SmartConnectSync",
    "SyncAuth",
    "SyncData",
    "SyncErrors",
    "SyncMaps",
    "SyncRowStream",
    "SyncRuns",
]

G = TypeVar("G")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound="_Closing")

_BATCH = 256
"""Rows read ahead of the caller and handed over per trip through the portal."""


def _refuse_in_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        trio = sys.modules.get("trio")
        if trio is None or not trio.lowlevel.in_trio_run():
            return
    raise RuntimeError(
        "SmartConnectSync blocks, so it cannot be used inside a running event loop: "
        "use SmartConnect with await there (in Jupyter too: a cell may await at top level)"
    )


def _unwrapped(error: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group (of groups) holds, else the group."""
    inner: BaseException = error
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return error if isinstance(inner, BaseExceptionGroup) else inner


def _shut_down(stack: ExitStack, portal: BlockingPortal, client: SmartConnect) -> None:
    """Close the pool, cancel what is left (open row streams), stop the loop's thread."""
    try:
        portal.call(client.aclose)
    finally:
        try:
            portal.call(portal.stop, True)
        finally:
            stack.close()  # joins the thread


class _Portal:
    """The event loop's thread, shared by a facade and those derived from it."""

    def __init__(
        self, client: SmartConnect, backend: str, backend_options: dict[str, Any] | None
    ) -> None:
        stack = ExitStack()
        self.portal = stack.enter_context(start_blocking_portal(backend, backend_options))
        # Also at exit, or when the last facade is dropped unclosed.
        self._close = weakref.finalize(self, _shut_down, stack, self.portal, client)

    @property
    def closed(self) -> bool:
        return not self._close.alive

    def close(self) -> None:
        _refuse_in_event_loop()
        self._close()

    @contextmanager
    def _guard(self) -> Iterator[BlockingPortal]:
        """The portal for one blocking step: refused in an event loop and once closed;
        a lone exception of a group raised as itself."""
        _refuse_in_event_loop()
        if self.closed:
            raise ClientClosedError("the SmartConnect client is closed")
        try:
            yield self.portal
        except BaseExceptionGroup as group:
            raise _unwrapped(group) from None
        except (RuntimeError, concurrent.futures.CancelledError):
            if self.closed:  # closed by another thread meanwhile
                raise ClientClosedError("the SmartConnect client is closed") from None
            raise

    def call(self, func: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """``await func(*args, **kwargs)`` in the loop; cancelled if the wait is interrupted
        (Ctrl-C)."""
        with self._guard() as portal:
            future = portal.start_task_soon(partial(func, *args, **kwargs))
            try:
                return future.result()
            except BaseException:
                future.cancel()
                raise

    def enter(self, cm: AbstractContextManager[T]) -> T:
        with self._guard():
            return cm.__enter__()

    def leave(self, cm: AbstractContextManager[object]) -> None:
        if not self.closed:  # else its task was cancelled by close()
            with self._guard():
                cm.__exit__(None, None, None)


class _Feed:
    """A ``RowStream`` read by one task of the loop (its connection and cancel scopes stay
    in that task), its rows handed over in batches through a bounded buffer."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[Row](_BATCH)
        self._error: Exception | None = None

    async def pump(self, stream: RowStream, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Enter ``stream`` (the request is sent: its error is raised to whoever started
        this task), then read it."""
        try:
            async with stream:
                task_status.started()
                try:
                    async for row in stream:
                        try:
                            self._send.send_nowait(row)  # no event loop turn per row
                        except anyio.WouldBlock:
                            await self._send.send(row)
                except Exception as exc:
                    self._error = exc  # raised to the caller after the rows before it
        finally:
            self._send.close()

    async def take(self) -> list[Row]:
        """The next rows: at least one, at most a batch; none at the end."""
        rows: list[Row] = []
        try:
            rows.append(await self._receive.receive())
            while len(rows) < _BATCH:
                rows.append(self._receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            pass
        if not rows and self._error is not None:
            raise self._error
        return rows


@asynccontextmanager
async def _feeding(stream: RowStream) -> AsyncIterator[_Feed]:
    feed = _Feed()
    async with anyio.create_task_group() as group:
        await group.start(feed.pump, stream)
        yield feed
        group.cancel_scope.cancel()


class _Closing:
    """``with`` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Reading:
    """The feed of one stream's rows: started once (the request sent, its status
    checked), stopped once."""

    def __init__(self, portal: _Portal, stream: RowStream) -> None:
        self.portal = portal
        self.stream = stream
        self._feeding: AbstractContextManager[_Feed] | None = None
        self._feed: _Feed | None = None

    def start(self) -> _Feed:
        if self._feed is None:
            feeding = self.portal.portal.wrap_async_context_manager(_feeding(self.stream))
            self._feed = self.portal.enter(feeding)  # raises the request's error, if any
            self._feeding = feeding  # to leave: entered
        return self._feed

    def stop(self) -> None:
        feeding, self._feeding = self._feeding, None
        if feeding is not None:
            self.portal.leave(feeding)


def _rows(reading: _Reading) -> Generator[Row, None, None]:
    # A function, not a method: a stream dropped unread frees its generator, which
    # stops the feed (a method's generator would hold the stream in a cycle).
    feed = reading.start()
    try:
        while batch := reading.portal.call(feed.take):
            yield from batch
    finally:
        reading.stop()


class SyncRowStream(_Closing):
    """``iter_rows``' rows, read as they arrive: use it as ``with`` (entering sends the
    request and raises its errors, as ``RowStream`` does), then iterate it; ``close``
    releases the connection when you stop before the end."""

    def __init__(self, portal: _Portal, stream: RowStream) -> None:
        self._reading = _Reading(portal, stream)
        self._rows = _rows(self._reading)  # started by entering, or by the first next()

    @property
    def table(self) -> str | None:
        """The table whose rows are yielded: the one asked for, else the first one."""
        return self._reading.stream.table

    @property
    def columns(self) -> tuple[str, ...]:
        """``RowStream.columns``: the table's columns seen so far."""
        return self._reading.portal.call(self._read_in_loop, "columns")

    @property
    def tables(self) -> tuple[str, ...]:
        """``RowStream.tables``: the tables the answer held rows of, so far."""
        return self._reading.portal.call(self._read_in_loop, "tables")

    async def _read_in_loop(self, name: str) -> tuple[str, ...]:
        """An attribute of the stream, read in the loop that changes it."""
        value: tuple[str, ...] = getattr(self._reading.stream, name)
        return value

    def __enter__(self) -> SyncRowStream:
        self._reading.start()
        return self

    def __iter__(self) -> Iterator[Row]:
        return self._rows

    def __next__(self) -> Row:
        return next(self._rows)

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._rows.close()
        self._reading.stop()  # entered but never read


class _Group(Generic[G]):
    """A blocking endpoint group: the async group ``G``, called through the portal."""

    def __init__(self, group: G, portal: _Portal) -> None:
        self._async = group
        self._portal = portal


class _Twin(Generic[G, P, T]):
    """A blocking twin of a method of ``G``: made once per group, docstring included."""

    def __init__(self, method: Callable[..., object]) -> None:
        self._method = method

    def __set_name__(self, owner: type[object], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, group: None, owner: type[object]) -> _Twin[G, P, T]: ...

    @overload
    def __get__(self, group: _Group[G], owner: type[object]) -> Callable[P, T]: ...

    def __get__(self, group: _Group[G] | None, owner: type[object]) -> Any:
        if group is None:
            return self
        portal, bound = group._portal, getattr(group._async, self._name)

        @wraps(bound)
        def twin(*args: Any, **kwargs: Any) -> T:
            return self._run(portal, bound, *args, **kwargs)

        vars(group)[self._name] = twin  # the next lookups find it there
        return twin

    def _run(self, portal: _Portal, bound: Any, /, *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError


class _Blocking(_Twin[G, P, R]):
    """The twin of an async method: its result, awaited in the loop."""

    def __init__(self, method: Callable[Concatenate[G, P], Awaitable[R]]) -> None:
        super().__init__(method)

    def _run(self, portal: _Portal, bound: Any, /, *args: Any, **kwargs: Any) -> R:
        result: R = portal.call(bound, *args, **kwargs)
        return result


class _Streaming(_Twin[G, P, SyncRowStream]):
    """The twin of ``iter_rows``: a ``SyncRowStream`` over the async one."""

    def __init__(self, method: Callable[Concatenate[G, P], RowStream]) -> None:
        super().__init__(method)

    def _run(self, portal: _Portal, bound: Any, /, *args: Any, **kwargs: Any) -> SyncRowStream:
        return SyncRowStream(portal, bound(*args, **kwargs))


class SyncAuth(_Group[Auth]):
    """Tokens (blocking ``Auth``)."""

    get_token = _Blocking(Auth.get_token)
    validate = _Blocking(Auth.validate)


class SyncMaps(_Group[Maps]):
    """Which maps there are, and their columns (blocking ``Maps``)."""

    list = _Blocking(Maps.list)
    columns = _Blocking(Maps.columns)
    mapped_columns = _Blocking(Maps.mapped_columns)


class SyncData(_Group[Data]):
    """A map's source data (blocking ``Data``)."""

    get_all = _Blocking(Data.get_all)
    iter_rows = _Streaming(Data.iter_rows)
    get_many = _Blocking(Data.get_many)


class SyncRuns(_Group[Runs]):
    """Run maps (blocking ``Runs``)."""

    run = _Blocking(Runs.run)
    run_data_table = _Blocking(Runs.run_data_table)
    run_xml = _Blocking(Runs.run_xml)
    run_many = _Blocking(Runs.run_many)


class SyncErrors(_Group[Errors]):
    """A run's process errors (blocking ``Errors``)."""

    save = _Blocking(Errors.save)


AnyioBackend: TypeAlias = Literal["asyncio", "trio"]


class ClientOptions(TypedDict, total=False):
    """``SmartConnect``'s keyword arguments; one left out takes its default there."""

    timeout: Timeout | float | None
    max_connections: int
    max_retries: int
    max_concurrent_runs: int
    keepalive_expiry: float
    http_client: httpx.AsyncClient | None
    backend: Literal["auto", "httpx", "aiohttp"]
    token_store: TokenStore | None
    refresh_margin: timedelta
    max_answer_size: int
    max_columns: int
    run_limits: RunLeases | None
    clock: Clock


def _check_anyio_backend(backend: object) -> None:
    """Refused in a running event loop, or for an event loop anyio does not run."""
    _refuse_in_event_loop()
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"anyio_backend must be 'asyncio' or 'trio', not {backend!r}")


class SmartConnectSync(_Closing):
    """A blocking ``SmartConnect``: the same arguments, methods, results and exceptions.

    Use it as ``with SmartConnectSync(api_url, credentials) as sc: ...``, or call
    ``close()`` when done. ``anyio_backend`` (``"asyncio"`` or ``"trio"``) and
    ``anyio_backend_options`` (``anyio.run``'s ``backend_options``) choose the event loop
    run in the facade's thread. ``on_result`` callbacks run in that thread. Every call
    raises ``RuntimeError`` inside a running event loop: use ``SmartConnect`` there.
    """

    auth: SyncAuth
    maps: SyncMaps
    data: SyncData
    runs: SyncRuns
    errors: SyncErrors

    def __init__(
        self,
        api_url: str,
        credentials: Credentials,
        *,
        anyio_backend: AnyioBackend = "asyncio",
        anyio_backend_options: dict[str, Any] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        _check_anyio_backend(anyio_backend)
        client = SmartConnect(api_url, credentials, **options)  # checked before a thread starts
        self._own(client, anyio_backend, anyio_backend_options)

    def _own(
        self, client: SmartConnect, backend: AnyioBackend, backend_options: dict[str, Any] | None
    ) -> None:
        self._bind(client, _Portal(client, backend, backend_options), owner=True)

    def _bind(self, client: SmartConnect, portal: _Portal, *, owner: bool) -> None:
        self._client = client
        self._portal = portal
        self._owner = owner
        self.api_url = client.api_url
        """The API Url every call goes to."""
        self.credentials = client.credentials
        """The user and company this client acts as."""
        self.auth = SyncAuth(client.auth, portal)
        self.maps = SyncMaps(client.maps, portal)
        self.data = SyncData(client.data, portal)
        self.runs = SyncRuns(client.runs, portal)
        self.errors = SyncErrors(client.errors, portal)

    @classmethod
    def from_env(
        cls,
        *,
        anyio_backend: AnyioBackend = "asyncio",
        anyio_backend_options: dict[str, Any] | None = None,
        **options: Unpack[ClientOptions],
    ) -> SmartConnectSync:
        """``SmartConnect.from_env`` (the ``SMARTCONNECT_*`` variables), blocking."""
        _check_anyio_backend(anyio_backend)
        facade = cls.__new__(cls)
        facade._own(SmartConnect.from_env(**options), anyio_backend, anyio_backend_options)
        return facade

    def __repr__(self) -> str:
        client = vars(self).get("_client")  # None if refused by __init__ (error trackers)
        shown = repr(client).removeprefix("SmartConnect") if client else "(<not made>)"
        return "SmartConnectSync" + shown

    def _derived(self, client: SmartConnect) -> SmartConnectSync:
        other = SmartConnectSync.__new__(SmartConnectSync)
        other._bind(client, self._portal, owner=False)
        return other

    def with_credentials(self, credentials: Credentials) -> SmartConnectSync:
        """A client for another company or user, sharing this one's thread, pool and
        token cache. Closing it does nothing; close the first client."""
        return self._derived(self._client.with_credentials(credentials))

    def with_company(self, company_id: str) -> SmartConnectSync:
        """``with_credentials`` for another company of the same user (same password)."""
        return self._derived(self._client.with_company(company_id))

    def with_options(
        self,
        *,
        timeout: Timeout | float | Keep | None = Keep.KEEP,
        max_retries: int | Keep = Keep.KEEP,
    ) -> SmartConnectSync:
        """This client with other defaults for its calls' ``timeout`` and
        ``max_retries`` (see ``SmartConnect.with_options``). Closing it does nothing."""
        return self._derived(self._client.with_options(timeout=timeout, max_retries=max_retries))

    def close(self) -> None:
        """Close the pool and stop the thread (only the client that made them does)."""
        if self._owner:
            self._portal.close()
