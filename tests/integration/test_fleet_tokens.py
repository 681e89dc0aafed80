"""Tokens shared by a fleet: ``RedisTokenStore`` against the tests' real redis-server, and
processes (``fleet_token_worker.py``) started together against the emulator on loopback."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
import redis.asyncio as redis
from cryptography.fernet import Fernet
from integration_support import LoopbackServer, credentials_of, demo

from smartconnect_async import SmartConnect, Token, TokenKey
from smartconnect_async._tokens import RefreshLocking, add_months
from smartconnect_async.emulator import Emulator
from smartconnect_async.redis_tokens import RedisTokenStore

pytestmark = pytest.mark.anyio

KEY = TokenKey.of("https://sc.example.com/API", "ACME-01", "user@example.com")
SECRET = "c2VjcmV0LXRva2VuLXZhbHVl"  # the token value: never in Redis when encrypted, nor in logs
WORKER = Path(__file__).with_name("fleet_token_worker.py")
FLEET = [demo("DEMO01"), demo("DEMO02", "bob"), demo("DEMO03")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[RedisTokenStore]:
    made = RedisTokenStore(redis_url, prefix=prefix)
    yield made
    await made.aclose()


def _token(value: str = SECRET) -> Token:
    issued = datetime.now(timezone.utc).replace(microsecond=0)
    return Token(
        value=value,
        company_id="ACME-01",
        email="user@example.com",
        issued_at=issued,
        expires_at=add_months(issued, 3),
    )


# ---- the store ------------------------------------------------------------------------


async def test_a_token_round_trips_under_the_prefix_and_expires_with_the_token(
    store: RedisTokenStore, raw: redis.Redis, prefix: str
) -> None:
    assert isinstance(store, RefreshLocking)
    token = _token()
    assert await store.get(KEY) is None
    await store.set(KEY, token)
    assert await store.get(KEY) == token
    names = await raw.keys(f"{prefix}*")
    assert names == [store.token_name(KEY).encode()]
    assert names[0].startswith(f"{prefix}token:".encode())
    assert b"user@example.com" not in names[0]  # a digest of the key, not the key
    left = await raw.pttl(store.token_name(KEY))
    assert abs(left / 1000 - (token.expires_at - datetime.now(timezone.utc)).total_seconds()) < 5
    content = json.loads(await raw.get(store.token_name(KEY)))
    assert content["value"] == SECRET  # the fields FileTokenStore keeps, in plain JSON
    assert content["key"] == {"api_url": KEY.api_url, "company_id": "ACME-01", "email": KEY.email}
    await store.delete(KEY)
    assert await store.get(KEY) is None
    assert await raw.keys(f"{prefix}*") == []


async def test_an_expired_token_is_not_stored(store: RedisTokenStore, raw: redis.Redis) -> None:
    await store.set(KEY, _token())
    old = _token()
    await store.set(KEY, attrs.evolve(old, expires_at=old.issued_at - timedelta(seconds=1)))
    assert await raw.exists(store.token_name(KEY)) == 0


async def test_an_encrypted_token_is_not_in_redis_in_the_clear(
    redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    store = RedisTokenStore(redis_url, prefix=prefix, encryption_key=Fernet.generate_key())
    try:
        token = _token()
        await store.set(KEY, token)
        value = await raw.get(store.token_name(KEY))
        assert SECRET.encode() not in value
        assert b"user@example.com" not in value
        assert await store.get(KEY) == token
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("writer_key", "reader_key", "reason"),
    [
        (Fernet.generate_key(), Fernet.generate_key(), "cannot be decrypted"),
        (None, Fernet.generate_key(), "cannot be decrypted"),
        (Fernet.generate_key(), None, "not JSON"),
    ],
    ids=["another key", "not encrypted", "encrypted, read without a key"],
)
async def test_a_token_the_store_cannot_read_is_no_token_with_a_warning_without_secrets(
    redis_url: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    writer_key: bytes | None,
    reader_key: bytes | None,
    reason: str,
) -> None:
    writer = RedisTokenStore(redis_url, prefix=prefix, encryption_key=writer_key)
    reader = RedisTokenStore(redis_url, prefix=prefix, encryption_key=reader_key)
    try:
        await writer.set(KEY, _token())
        with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
            assert await reader.get(KEY) is None
    finally:
        await writer.aclose()
        await reader.aclose()
    [record] = caplog.records
    assert record.getMessage().startswith(
        f"ignoring the token in Redis under {reader.token_name(KEY)}: "
    )
    assert reason in record.getMessage()
    for secret in (SECRET, "user@example.com", str(writer_key), str(reader_key)):
        assert secret not in caplog.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\x00garbage", "it is not JSON (corrupt or truncated)"),
        (b'{"version": 1, "value": "x"', "it is not JSON (corrupt or truncated)"),
        (b"[]", "it is not a token file"),
        (b'{"version": 1, "key": {}}', "it was written for another API Url, company or user"),
    ],
    ids=["binary", "truncated", "not an object", "another key"],
)
async def test_a_corrupt_value_is_no_token_with_a_warning(
    store: RedisTokenStore,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    value: bytes,
    reason: str,
) -> None:
    await raw.set(store.token_name(KEY), value)
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert await store.get(KEY) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring the token in Redis under {store.token_name(KEY)}: {reason}"
    ]


# ---- the refresh lock -----------------------------------------------------------------


async def test_a_vanished_holder_blocks_the_lock_for_its_ttl_only_and_release_compares(
    redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    store = RedisTokenStore(redis_url, prefix=prefix, lock_ttl=0.5, poll_interval=0.02)
    try:
        vanished = store.refresh_lock(KEY)
        assert await vanished.__aenter__() is True  # and never leaves: its process died
        name = store.lock_name(KEY)
        first = await raw.get(name)
        assert 0 < await raw.pttl(name) <= 500
        began = time.monotonic()
        async with store.refresh_lock(KEY) as held:
            waited = time.monotonic() - began
            assert held is True
            second = await raw.get(name)
            assert second != first
            assert len(second) == 32  # a random token of 16 bytes, in hex
            # The vanished holder leaving late does not release a lock it no longer holds.
            await vanished.__aexit__(None, None, None)
            assert await raw.get(name) == second
        assert await raw.exists(name) == 0  # released by its holder
        assert 0.3 < waited < 0.5 + 0.1
    finally:
        await store.aclose()


async def test_a_waiter_gives_up_after_the_lock_ttl(
    redis_url: str, raw: redis.Redis, prefix: str
) -> None:
    store = RedisTokenStore(redis_url, prefix=prefix, lock_ttl=0.3, poll_interval=0.02)
    try:
        await raw.set(store.lock_name(KEY), b"another process", px=10_000)  # a longer TTL
        began = time.monotonic()
        async with store.refresh_lock(KEY) as held:
            assert held is False
        assert 0.3 <= time.monotonic() - began < 0.4
        assert await raw.get(store.lock_name(KEY)) == b"another process"  # left alone
    finally:
        await store.aclose()


def test_bad_lock_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="lock_ttl"):
        RedisTokenStore(redis.Redis(), lock_ttl=0)
    with pytest.raises(ValueError, match="poll_interval"):
        RedisTokenStore(redis.Redis(), lock_ttl=1, poll_interval=2)


def test_the_package_imports_without_redis() -> None:
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "import smartconnect_async as sc\n"
        "assert 'RedisTokenStore' in sc.__all__\n"
        "try:\n"
        "    sc.RedisTokenStore\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == (
        "RedisTokenStore needs redis-py: pip install 'smartconnect-async[redis]'"
    )


def test_redis_token_store_is_exported() -> None:
    import smartconnect_async

    assert smartconnect_async.RedisTokenStore is RedisTokenStore


# ---- clients over the store -------------------------------------------------------------


def _clients(api_url: str, token_store: object) -> list[SmartConnect]:
    return [
        SmartConnect(api_url, credentials_of(item), token_store=token_store, timeout=10)
        for item in FLEET
    ]


async def _commands(client: redis.Redis) -> int:
    return int((await client.info("stats"))["total_commands_processed"])


async def test_warm_calls_do_not_touch_redis(
    server: LoopbackServer, emulator: Emulator, store: RedisTokenStore, raw: redis.Redis
) -> None:
    clients = _clients(server.api_url, store)
    try:
        # Cold: the store is read, locked, read again and written, per company.
        maps = [(await client.maps.list())[0] for client in clients]
        # What two looks at the counter cost by themselves, on this otherwise idle server.
        idle = -(await _commands(raw)) + await _commands(raw)
        before = await _commands(raw)
        for _ in range(100):
            for client, first in zip(clients, maps, strict=True):
                await client.maps.list()
                await client.maps.columns(first)
        assert await _commands(raw) - before == idle
    finally:
        for client in clients:
            await client.aclose()
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1, "DEMO03": 1}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed when the probe is


async def test_redis_down_is_one_warning_and_no_failed_call(
    server: LoopbackServer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisTokenStore(f"redis://127.0.0.1:{_closed_port()}/0")
    sc = SmartConnect(server.api_url, credentials_of(FLEET[0]), token_store=store, timeout=10)
    caplog.set_level(logging.WARNING, logger="smartconnect_async")
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(sc.maps.list)
        for _ in range(50):
            await sc.maps.columns("Import Customers")
        for _ in range(3):
            await sc.auth.get_token(force_refresh=True)  # read, read, lock, write: all fail
    finally:
        await sc.aclose()
        await store.aclose()
    [warning] = caplog.records
    assert warning.getMessage().startswith(
        "token store read failed for company DEMO01 (ConnectionError); going on with the token "
        "in memory"
    )
    assert emulator.counters.token_calls == {"DEMO01": 4}


# ---- processes ------------------------------------------------------------------------


class Fleet:
    """Worker processes (``fleet_token_worker.py``), each set up and waiting for its go."""

    def __init__(self, api_url: str, redis_url: str, prefix: str, lock_ttl: float) -> None:
        self.args = [str(WORKER), api_url, redis_url, prefix, str(lock_ttl)]
        self.workers: list[subprocess.Popen[str]] = []

    def start(self, count: int, calls: int, logins: Sequence[Any]) -> list[subprocess.Popen[str]]:
        made = [
            subprocess.Popen(
                [sys.executable, *self.args, str(calls)]
                + [f"{item.email}:{item.password}:{item.company_id}" for item in logins],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        self.workers += made
        for worker in made:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        return made

    @staticmethod
    def go(workers: Sequence[subprocess.Popen[str]]) -> None:
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()

    @staticmethod
    def results(workers: Sequence[subprocess.Popen[str]]) -> list[dict[str, Any]]:
        found = []
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            found.append(json.loads(out))
        return found

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(10)


@contextmanager
def fleet(server: LoopbackServer, redis_url: str, prefix: str, lock_ttl: float) -> Iterator[Fleet]:
    made = Fleet(server.api_url, redis_url, prefix, lock_ttl)
    try:
        yield made
    finally:
        made.kill_all()


def test_eight_processes_started_cold_together_make_one_get_token_per_company(
    server: LoopbackServer, emulator: Emulator, redis_url: str, prefix: str
) -> None:
    with fleet(server, redis_url, prefix, lock_ttl=10) as processes:
        workers = processes.start(8, 200, FLEET)
        processes.go(workers)
        results = processes.results(workers)
    assert [r["calls"] for r in results] == [{"DEMO01": 200, "DEMO02": 200, "DEMO03": 200}] * 8
    assert emulator.counters.token_calls == {"DEMO01": 1, "DEMO02": 1, "DEMO03": 1}
    assert emulator.counters.calls["GetMapList"] == 8 * 3 * 200


def _wait_for(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.005)


LOCK_TTL = 2.0


def test_a_holder_killed_during_its_fetch_blocks_the_others_for_the_lock_ttl_at_most(
    server: LoopbackServer, emulator: Emulator, redis_url: str, prefix: str
) -> None:
    # The first GetToken hangs for longer than the lock lives; the others answer at once.
    emulator.set_faults([{"kind": "latency", "endpoints": ["GetToken"], "count": 1, "ms": 3000}])
    with fleet(server, redis_url, prefix, lock_ttl=LOCK_TTL) as processes:
        holder, *others = processes.start(4, 20, FLEET[:1])
        processes.go([holder])
        # Its GetToken has reached the server: it holds the lock (taken before fetching).
        _wait_for(lambda: emulator.counters.token_calls.get("DEMO01") == 1, 10)
        processes.go(others)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        results = processes.results(others)
    firsts = [r["first"]["DEMO01"] for r in results]
    assert [r["calls"] for r in results] == [{"DEMO01": 20}] * 3
    # They waited for the dead holder's lock to expire (it took it just before their go),
    # then one of them fetched: the lock's TTL, one GetToken and a first call (with room
    # for a loaded 2-core machine).
    assert min(firsts) > LOCK_TTL - 0.5, firsts
    assert max(firsts) < LOCK_TTL + 1.0, firsts
    assert emulator.counters.token_calls == {"DEMO01": 2}  # the dead one's, and one more
