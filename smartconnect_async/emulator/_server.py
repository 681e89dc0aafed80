"""Serving the app over loopback TCP with uvicorn, with connections the app can drop."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import _connections

STARTUP_TIMEOUT = 10.0


class DroppableH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, registering each connection so the app can drop it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.server and self.client:
            _connections.register(self.server, self.client, self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.server and self.client:
            _connections.unregister(self.server, self.client)
        super().connection_lost(exc)


def _droppable_httptools() -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol (C parser: a fraction of h11's CPU per request),
    registering each connection like ``DroppableH11Protocol``; ``None`` without
    httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is in the emulator extra
        return None

    class DroppableHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.server and self.client:
                _connections.register(self.server, self.client, self.transport)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.server and self.client:
                _connections.unregister(self.server, self.client)
            super().connection_lost(exc)

    return DroppableHttpToolsProtocol


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on a loopback address (anything else is refused)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
        host = "127.0.0.1"
    if not loopback:
        raise ValueError(f"the emulator only binds loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio only sets TCP_NODELAY on such sockets.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def api_url(sock: socket.socket) -> str:
    """The API Url of a bound socket: ``http://HOST:PORT/API``."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/API"


def make_server(app: ASGIApp, **config: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` using the droppable protocol (no lifespan, no logs setup)."""
    settings: dict[str, Any] = {
        "http": _droppable_httptools() or DroppableH11Protocol,
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": 2,
    }
    settings.update(config)
    return uvicorn.Server(uvicorn.Config(app, **settings))


@contextmanager
def serve(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, timeout_keep_alive: int = 5
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yield its API Url.

    Binds a loopback address only (port 0: any free port), waits until the server
    listens, and stops it on exit. ``timeout_keep_alive`` is uvicorn's idle timeout.
    """
    sock = bind_loopback(host, port)
    server = make_server(app, log_config=None, timeout_keep_alive=timeout_keep_alive)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="smartconnect-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.005)
        yield api_url(sock)
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT)
        sock.close()
