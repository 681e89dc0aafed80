"""Helpers shared by the integration tests (imported by name: conftest.py puts this
directory on ``sys.path``; the suite runs with --import-mode=importlib).

Everything here talks to 127.0.0.1 only, through the emulator's own ``serve()``.
"""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
import attrs
from starlette.types import ASGIApp, Receive, Scope, Send

from smartconnect_async import Credentials, Row, SmartConnect
from smartconnect_async._aiohttp import AiohttpBackend
from smartconnect_async._httpx import HttpxBackend
from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    DemoCredential,
    Emulator,
    create_app,
    hash_password,
)

# (HTTP library, anyio backend): aiohttp does not run on trio, so that pair is never made.
BACKEND_COMBOS: tuple[tuple[str, str], ...] = (
    ("httpx", "asyncio"),
    ("httpx", "trio"),
    ("aiohttp", "asyncio"),
)

RUN_ENDPOINTS = frozenset(
    {"runmap", "runmapwithvariables", "runmapdatatable", "runmapdatatablewitherrors", "runmapxml"}
)


def demo(company_id: str, email_prefix: str = "") -> DemoCredential:
    """The demo login for ``company_id`` (the first, or the one whose e-mail starts with
    ``email_prefix``)."""
    for item in DEMO_CREDENTIALS:
        if item.company_id == company_id and item.email.startswith(email_prefix):
            return item
    raise LookupError(f"no demo credential for {company_id} {email_prefix}")


def credentials_of(item: DemoCredential) -> Credentials:
    return Credentials(email=item.email, password=item.password, company_id=item.company_id)


class ServerStats:
    """What one emulator's requests did on the server: in flight now (per company for
    runs), the peak of runs in flight per company, and the client sockets seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.runs_in_flight: Counter[str] = Counter()
        self.peak_runs_in_flight: Counter[str] = Counter()
        self.client_addresses: set[tuple[Any, ...]] = set()
        # Per request: the endpoint and its headers (names in lower case), in order.
        self.requests: list[tuple[str, dict[str, str]]] = []


class AppSwitch:
    """An ASGI app that forwards to the current emulator app (so one uvicorn server serves
    a fresh ``Emulator`` per test), and measures what the emulator has no counter for
    (``ServerStats``). A request is accounted to the emulator it was dispatched to, even
    if it outlives its test."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.emulator: Emulator | None = None
        self.stats = ServerStats()

    def install(self, emulator: Emulator) -> Emulator:
        self.app, self.emulator, self.stats = create_app(emulator), emulator, ServerStats()
        return emulator

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def runs_in_flight(self) -> Counter[str]:
        return self.stats.runs_in_flight

    @property
    def peak_runs_in_flight(self) -> Counter[str]:
        return self.stats.peak_runs_in_flight

    @property
    def client_addresses(self) -> set[tuple[Any, ...]]:
        return self.stats.client_addresses

    @staticmethod
    def _run_company(scope: Scope, emulator: Emulator) -> str | None:
        endpoint = scope["path"].rstrip("/").rpartition("/")[2].lower()
        if endpoint not in RUN_ENDPOINTS:
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        tokens = query.get("token") or [""]
        record = emulator.tokens.get(tokens[0])
        return record.company_id if record is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app, emulator, stats = self.app, self.emulator, self.stats
        assert app is not None, "no emulator installed"
        assert emulator is not None
        if scope["type"] != "http" or not scope["path"].lower().startswith("/api"):
            await app(scope, receive, send)
            return
        company = self._run_company(scope, emulator)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with stats.lock:
            stats.requests.append((scope["path"].rpartition("/")[2], headers))
            stats.in_flight += 1
            if scope.get("client"):
                stats.client_addresses.add(tuple(scope["client"]))
            if company is not None:
                stats.runs_in_flight[company] += 1
                stats.peak_runs_in_flight[company] = max(
                    stats.peak_runs_in_flight[company], stats.runs_in_flight[company]
                )
        try:
            await app(scope, receive, send)
        finally:
            with stats.lock:
                stats.in_flight -= 1
                if company is not None:
                    stats.runs_in_flight[company] -= 1


@attrs.define
class LoopbackServer:
    """A uvicorn server on 127.0.0.1 serving whatever emulator is installed."""

    api_url: str
    switch: AppSwitch

    def install(self, emulator: Emulator) -> Emulator:
        return self.switch.install(emulator)


MakeClient = Callable[..., SmartConnect]
"""``make_client(credentials=None, **SmartConnect options)``."""
PoolIdle = Callable[[SmartConnect], Awaitable[None]]
"""``await assert_pool_idle(client)``."""


async def wait_server_idle(server: LoopbackServer, timeout: float = 5.0) -> None:
    """Wait (bounded) until the server has finished every request of the current
    emulator; the server runs in another thread, so this polls."""
    with anyio.fail_after(timeout):
        while server.switch.in_flight:  # noqa: ASYNC110
            await anyio.sleep(0.005)


def connections_in_use(client: SmartConnect) -> int:
    """Connections of ``client``'s pool that are in use (checked out, mid-request or
    waited for), read from the HTTP library's private pool structures."""
    backend = client._transport.backend
    if isinstance(backend, HttpxBackend):
        pool = backend.client._transport._pool  # type: ignore[attr-defined]
        busy = [c for c in pool.connections if not (c.is_idle() or c.is_closed())]
        queued = [r for r in pool._requests if r.is_queued()]
        return len(busy) + len(queued)
    assert isinstance(backend, AiohttpBackend)
    session = backend._session
    if session is None or session.closed:
        return 0
    connector = session.connector
    assert connector is not None
    waiting = sum(len(w) for w in connector._waiters.values())
    return len(connector._acquired) + waiting


def source_rows(
    emulator: Emulator, map_key: str, table: int = 0, filters: Mapping[str, str] | None = None
) -> list[Row]:
    """The ground truth: rows of a map's data source as the emulator generates them,
    every column present (``None`` for a null)."""
    map_def = emulator.maps[map_key]
    source = map_def.source
    spec = source.tables[table]
    rows = [
        dict(zip(spec.columns, values, strict=True))
        for values in spec.rows(emulator.seed, emulator.source_size(source.name))
    ]
    if filters:
        rows = [
            row
            for row in rows
            if all(row.get(col) == value for col, value in filters.items() if col in spec.columns)
        ]
    return rows


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret_forms(secrets: Sequence[str]) -> set[str]:
    """Each secret as it could appear in a log line: raw and percent-encoded."""
    forms: set[str] = set()
    for secret in secrets:
        forms.update({secret, quote(secret, safe=""), quote(secret, safe="/")})
    return forms


def frame_locals(error: BaseException) -> str:
    """``error`` as error trackers and rich's ``show_locals`` show it: its traceback
    (causes and contexts too) with the local variables of every frame."""
    shown = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(shown.format())


def password_secrets(items: Sequence[DemoCredential]) -> list[str]:
    return [s for item in items for s in (item.password, hash_password(item.password))]


class RecordingHandler(logging.Handler):
    """Keeps every record's fully formatted text (message, exception and stack)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # pragma: no cover - a broken record is a failure too
            text = f"unformattable record {record.msg!r}: {exc!r}"
        self.texts.append(text)
        self.records.append(record)


@contextmanager
def capture_logs(*names: str, level: int = logging.DEBUG) -> Iterator[RecordingHandler]:
    """Record everything the named loggers (and their children) log at ``level``."""
    handler = RecordingHandler()
    loggers = [logging.getLogger(name) for name in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
        lg.addHandler(handler)
    try:
        yield handler
    finally:
        for lg, old in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(old)
