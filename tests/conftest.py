"""Shared test configuration: async tests run under both asyncio and trio; every httpx
client shares one TLS context; a real redis-server for the tests that need one."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every ``@pytest.mark.anyio`` test runs once per backend."""
    return str(request.param)


_SSL_CONTEXT: list[ssl.SSLContext] = []


@pytest.fixture(autouse=True)
def _one_ssl_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``httpx.AsyncClient`` loads the CA bundle into a new TLS context (~50 ms); the
    tests speak plain http:// (to 127.0.0.1 or to respx), so all clients share one
    context. The library itself is not patched."""
    original = httpx._config.create_ssl_context

    def shared(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if not _SSL_CONTEXT:
            _SSL_CONTEXT.append(original(*args, **kwargs))
        return _SSL_CONTEXT[0]

    monkeypatch.setattr(httpx._transports.default, "create_ssl_context", shared)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real ``redis-server`` of the tests' own on 127.0.0.1 and a free port, with no
    persistence, for the whole session (``.ci/run`` installs it when it is missing).
    Tests keep apart by key prefix."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(server, "--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no"),
            *("--enable-debug-command", "local"),  # DEBUG SLEEP: a Redis that is slow
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_redis(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail("redis-server did not answer PING within 10 s")
