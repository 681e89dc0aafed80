"""The client against a hostile or broken server: its own asyncio server on 127.0.0.1 (a
free port, in a thread), answering each request as a test says. Every answer's cost to
the client is bounded: time by ``Timeout.total``, memory by what is read of a body."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import anyio
import pytest
from integration_support import MakeClient

from smartconnect_async import (
    APITimeoutError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
    Timeout,
)

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MAP_KEY = "c365b728-60e0-4841-841c-ab73008dd41d"


@contextmanager
def hostile(handler: Handler) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 whose every connection ``handler`` answers; yields
    its API Url. GetToken is answered with a token before ``handler`` sees anything."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if b"/GetToken" in head.split(b"\r\n", 1)[0]:
                    writer.write(_answer(200, b'"hostile-token"'))
                    await writer.drain()
                    continue
                await handler(reader, writer)
                return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    stop = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await stop.wait()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()  # connections still being answered

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield f"http://127.0.0.1:{port[0]}/API"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)
        loop.close()


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _trickle(body: bytes, pause: float) -> Handler:
    async def handler(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = _answer(200, body)
        writer.write(head[: len(head) - len(body)])
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)

    return handler


def _huge_error(size: int, *, gzip_it: bool) -> Handler:
    async def handler(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * (1 << 20)
        if gzip_it:
            body = gzip.compress(b'{"Message": "' + chunk * (size >> 20) + b'"}')
            writer.write(_answer(500, body, {"Content-Encoding": "gzip"}))
        else:
            total = size + 13
            writer.write(f"HTTP/1.1 500 X\r\nContent-Length: {total}\r\n\r\n".encode())
            writer.write(b'{"Message": "')
            for _ in range(size >> 20):
                writer.write(chunk)
                await writer.drain()
        await writer.drain()

    return handler


@pytest.mark.parametrize("what", ["read", "run"])
async def test_a_trickling_answer_ends_at_the_total_timeout(
    make_client: MakeClient, what: str
) -> None:
    body = b'{"Status": 0, "RunNumber": 1}' if what == "run" else b"[]" + b" " * 200
    with hostile(_trickle(body, 0.05)) as api_url:
        sc = make_client(api_url=api_url, timeout=Timeout(5, total=0.5), max_retries=0)
        started = anyio.current_time()
        call = sc.runs.run(MAP_KEY) if what == "run" else sc.maps.list()
        with pytest.raises(RunOutcomeUnknown if what == "run" else APITimeoutError):
            await call
        assert anyio.current_time() - started < 3


@pytest.mark.parametrize("gzip_it", [False, True], ids=["plain", "gzip"])
async def test_a_huge_error_body_costs_an_excerpt_not_the_body(
    make_client: MakeClient, gzip_it: bool
) -> None:
    with hostile(_huge_error(64 << 20, gzip_it=gzip_it)) as api_url:
        sc = make_client(api_url=api_url, max_retries=0)
        with anyio.fail_after(20), pytest.raises(ServerError) as info:
            await sc.maps.list()
    assert info.value.body.startswith('{"Message": "xxx')
    assert len(info.value.body) == 200


async def test_an_answer_over_max_answer_size_is_not_read(make_client: MakeClient) -> None:
    async def big(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = b"[" + b" " * (32 << 20) + b"]"
        writer.write(_answer(200, body))
        await writer.drain()

    with hostile(big) as api_url:
        sc = make_client(api_url=api_url, max_answer_size=1 << 20, max_retries=0)
        with anyio.fail_after(20), pytest.raises(ResponseParseError, match="max_answer_size"):
            await sc.maps.list()
