"""Tokens shared by a fleet: warm CPU per call of the default client with the token in
``MemoryTokenStore`` and in ``RedisTokenStore`` (a redis-server of its own, on a free
127.0.0.1 port with no persistence), side by side in the same rounds."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from smartconnect_async import MemoryTokenStore

from ._contenders import LIBRARY_MEMORY_TOKENS, LIBRARY_REDIS_TOKENS, LibraryContender, Operation
from ._cpu import CallSample, _check_counters, _Counted, measure_rounds
from ._plan import Plan
from ._server import Emulator, emulator
from ._stats import Checks, log

OPERATION: Operation = "maps.list"
CONCURRENCY = 64


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port, without persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def _rounds(
    server: Emulator, redis_url: str, plan: Plan
) -> tuple[list[CallSample], list[_Counted]]:
    """Both contenders (the default client, but for the token store), interleaved."""
    from smartconnect_async.redis_tokens import RedisTokenStore  # the redis extra

    redis_store = RedisTokenStore(redis_url, prefix="bench:")
    credentials = server.credentials[0]
    counted = [
        _Counted(
            LibraryContender(name, server.api_url, credentials, OPERATION, {"token_store": store})
        )
        for name, store in (
            (LIBRARY_MEMORY_TOKENS, MemoryTokenStore()),
            (LIBRARY_REDIS_TOKENS, redis_store),
        )
    ]
    try:
        points = [(CONCURRENCY, plan.calls)]
        samples = await measure_rounds(
            server, counted, OPERATION, points, plan, "fleet", 0, plan.rounds
        )
    finally:
        await redis_store.aclose()
    return samples, counted


def run_fleet(plan: Plan, checks: Checks) -> list[CallSample]:
    """Warm ``maps.list`` CPU per call at c=64, memory vs Redis token store."""
    with redis_server() as redis_url, emulator(rows="1") as server:
        log(f"  fleet: redis-server at {redis_url}")
        samples, counted = asyncio.run(_rounds(server, redis_url, plan))
        _check_counters(checks, server, OPERATION, counted, "fleet")
    return samples
