"""Live TCP connections of servers started by ``serve()``, so the app can drop one.

The uvicorn protocol of ``_server`` registers each connection's transport under
``(server address, client address)`` — the ``server`` and ``client`` of the ASGI scope.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

Address = tuple[Any, ...]
_transports: dict[tuple[Address, Address], asyncio.Transport] = {}
_lock = threading.Lock()


def register(server: Address, client: Address, transport: asyncio.Transport) -> None:
    """Record a new connection."""
    with _lock:
        _transports[(tuple(server), tuple(client))] = transport


def unregister(server: Address, client: Address) -> None:
    """Forget a closed connection."""
    with _lock:
        _transports.pop((tuple(server), tuple(client)), None)


def transport_for(scope: Mapping[str, Any]) -> asyncio.Transport | None:
    """The transport carrying the request of ``scope``; None in-process (no socket)."""
    server, client = scope.get("server"), scope.get("client")
    if not server or not client:
        return None
    with _lock:
        return _transports.get((tuple(server), tuple(client)))
