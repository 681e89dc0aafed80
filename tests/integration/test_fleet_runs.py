"""Runs limited across a fleet (``redis_runs.RedisRunLimits``), against the tests' real
redis-server and the emulator on loopback: the lease semaphore itself, clients in one
process, and fleets of worker processes (``fleet_run_worker.py``), one of them killed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as redis
from integration_support import LoopbackServer, credentials_of, demo

from smartconnect_async import (
    APITimeoutError,
    Credentials,
    RunOutcomeUnknown,
    SmartConnect,
    Timeout,
)
from smartconnect_async._limits import LeaseTimeout
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, Emulator
from smartconnect_async.redis_runs import RedisRunLimits

WORKER = Path(__file__).with_name("fleet_run_worker.py")
SCOPE = "http://fleet.example/API"
LATENCY_50MS = [{"kind": "latency", "ms": 50, "endpoints": ["RunMapWithVariables"]}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


async def _leases(raw: redis.Redis, key: str) -> list[tuple[bytes, float]]:
    return [(member, score) for member, score in await raw.zrange(key, 0, -1, withscores=True)]


async def _server_ms(raw: redis.Redis) -> float:
    seconds, micros = await raw.time()
    return seconds * 1000 + micros / 1000


@asynccontextmanager
async def _two(redis_url: str, prefix: str, ttl: float) -> AsyncIterator[list[RedisRunLimits]]:
    """Two ``RedisRunLimits`` with their own connections: two processes' worth."""
    async with (
        RedisRunLimits(redis_url, prefix=prefix, lease_ttl=ttl) as one,
        RedisRunLimits(redis_url, prefix=prefix, lease_ttl=ttl) as two,
    ):
        yield [one, two]


async def _refused(limits: RedisRunLimits, timeout: float = 0.2) -> str:
    """The reason a lease of DEMO01 (limit 1) is refused within ``timeout``."""
    with pytest.raises(LeaseTimeout) as caught:
        async with limits.lease(SCOPE, "DEMO01", 1, timeout):
            raise AssertionError("a second lease past the limit")
    return caught.value.reason


def _tags(emulator: Emulator, company: str) -> list[str]:
    """The GBL_TAG of every run with variables of ``company`` the emulator executed."""
    return sorted(
        r.variables["GBL_TAG"]
        for r in emulator.runs
        if r.company_id == company and r.endpoint == "RunMapWithVariables"
    )


# ---- the lease semaphore ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_lease_expires_by_the_redis_server_s_clock_when_its_holder_crashed(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with _two(redis_url, prefix, 1.0) as (crashed, alive):
        key = alive.key(SCOPE, "DEMO01")
        assert key == f"{prefix}runs:DEMO01@{SCOPE}"
        # Taken, then neither renewed nor given back: its process died.
        await crashed._take(key, "crashed", "DEMO01", 1, None)
        ((member, expiry),) = await _leases(raw, key)
        assert member == b"crashed"
        assert expiry == pytest.approx(await _server_ms(raw) + 1000, abs=50)

        assert await _refused(alive) == "all 1 run leases of company DEMO01 were held"
        async with alive.lease(SCOPE, "DEMO01", 1, 3.0):
            granted = await _server_ms(raw)
            ((member, _),) = await _leases(raw, key)
        assert member != b"crashed"
        assert expiry <= granted <= expiry + 150  # when it expired, give or take a poll
    assert await raw.exists(key) == 0


@pytest.mark.anyio
async def test_renewal_keeps_a_long_run_s_lease(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with _two(redis_url, prefix, 0.6) as (holder, other):
        key = holder.key(SCOPE, "DEMO01")
        async with holder.lease(SCOPE, "DEMO01", 1, 1.0):
            ((member, first),) = await _leases(raw, key)
            await anyio.sleep(1.5)  # 2.5 lease TTLs: only renewal keeps it
            ((still, renewed),) = await _leases(raw, key)
            assert (still, renewed > first) == (member, True)
            assert renewed > await _server_ms(raw)
            assert await _refused(other) == "all 1 run leases of company DEMO01 were held"
        assert await raw.exists(key) == 0


@pytest.mark.anyio
async def test_a_lease_is_given_back_on_error_and_on_cancellation_even_while_waiting(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with RedisRunLimits(redis_url, prefix=prefix) as limits:
        key = limits.key(SCOPE, "DEMO01")
        with pytest.raises(ValueError, match="boom"):
            async with limits.lease(SCOPE, "DEMO01", 1, 1.0):
                raise ValueError("boom")
        assert await raw.exists(key) == 0

        held, waiting = anyio.Event(), anyio.Event()
        with anyio.CancelScope() as outer:

            async def wait_for_one() -> None:
                waiting.set()
                async with limits.lease(SCOPE, "DEMO01", 1, None):
                    raise AssertionError("granted past the limit")

            async with anyio.create_task_group() as group:

                async def hold() -> None:
                    async with limits.lease(SCOPE, "DEMO01", 1, 1.0):
                        held.set()
                        await anyio.sleep_forever()

                group.start_soon(hold)
                await held.wait()
                group.start_soon(wait_for_one)
                await waiting.wait()
                assert len(await _leases(raw, key)) == 1
                outer.cancel()
        assert outer.cancelled_caught
        assert await raw.exists(key) == 0


# ---- clients in one process ------------------------------------------------------------


@pytest.fixture
def alice01() -> Credentials:
    return credentials_of(demo("DEMO01"))


@pytest.mark.anyio
@pytest.mark.emulator(rows=10)
async def test_two_clients_with_their_own_leases_keep_a_company_to_its_limit(
    server: LoopbackServer,
    emulator: Emulator,
    redis_url: str,
    prefix: str,
    alice01: Credentials,
    raw: redis.Redis,
) -> None:
    emulator.set_faults(LATENCY_50MS)

    async def burst(clients: list[SmartConnect], name: str) -> list[str]:
        tags = [f"{name}-{n}-{i}" for n in range(len(clients)) for i in range(8)]
        async with anyio.create_task_group() as group:
            for tag in tags:
                client = clients[int(tag.split("-")[1])]
                group.start_soon(client.runs.run, IMPORT_CUSTOMERS_KEY, {"GBL_TAG": tag})
        return tags

    # Without leases two processes' caps add up...
    async with (
        SmartConnect(server.api_url, alice01, max_concurrent_runs=2) as one,
        SmartConnect(server.api_url, alice01, max_concurrent_runs=2) as two,
    ):
        await burst([one, two], "alone")
    assert emulator.counters.runs_in_flight_max == {"DEMO01": 4}
    emulator.reset_counters()

    # ...with them, the company's cap holds for both.
    async with (
        _two(redis_url, prefix, 30.0) as (first, second),
        SmartConnect(server.api_url, alice01, max_concurrent_runs=2, run_limits=first) as one,
        SmartConnect(server.api_url, alice01, max_concurrent_runs=2, run_limits=second) as two,
    ):
        tags = await burst([one, two], "fleet")
    assert emulator.counters.runs_in_flight_max == {"DEMO01": 2}
    assert [t for t in _tags(emulator, "DEMO01") if t.startswith("fleet")] == sorted(tags)
    assert await raw.exists(first.key(server.api_url.rstrip("/"), "DEMO01")) == 0


@pytest.mark.anyio
@pytest.mark.emulator(rows=10)
async def test_a_run_gives_its_lease_back_when_it_fails_or_is_cancelled_in_flight(
    server: LoopbackServer,
    emulator: Emulator,
    redis_url: str,
    prefix: str,
    alice01: Credentials,
    raw: redis.Redis,
) -> None:
    emulator.set_faults(
        [
            {"kind": "drop_after", "count": 1, "endpoints": ["runmap"]},
            {"kind": "status", "status": 500, "processed": True, "endpoints": ["runmap"]},
            {"kind": "latency", "ms": 400, "endpoints": ["RunMapWithVariables"]},
        ]
    )
    async with (
        RedisRunLimits(redis_url, prefix=prefix) as limits,
        SmartConnect(server.api_url, alice01, run_limits=limits) as sc,
    ):
        key = limits.key(sc.api_url, "DEMO01")
        for _ in ("dropped", "500"):  # failing while the answer is read, and after it
            with pytest.raises(RunOutcomeUnknown):
                await sc.runs.run(IMPORT_CUSTOMERS_KEY)
            assert await raw.exists(key) == 0
        assert emulator.counters.faults_fired == {"drop_after": 1, "status": 1}

        async with anyio.create_task_group() as group:
            group.start_soon(sc.runs.run, IMPORT_CUSTOMERS_KEY, {"GBL_TAG": "cancelled"})
            with anyio.fail_after(5):
                while not server.switch.runs_in_flight["DEMO01"]:  # noqa: ASYNC110
                    await anyio.sleep(0.005)  # another thread's counter: no event to await
            assert len(await _leases(raw, key)) == 1
            group.cancel_scope.cancel()
        assert await raw.exists(key) == 0


@pytest.mark.anyio
async def test_with_redis_down_a_run_waits_the_pool_timeout_and_nothing_is_sent(
    server: LoopbackServer, emulator: Emulator, prefix: str, alice01: Credentials
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    async with (
        RedisRunLimits(down, prefix=prefix) as limits,
        SmartConnect(
            server.api_url, alice01, timeout=Timeout(10, pool=0.5), run_limits=limits
        ) as sc,
    ):
        assert len(await sc.maps.list()) > 0  # reads do not need Redis
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            await sc.runs.run(IMPORT_CUSTOMERS_KEY, max_retries=0)
        waited = time.monotonic() - started
    assert caught.value.sent is False
    assert str(caught.value) == (
        f"runmap for map {IMPORT_CUSTOMERS_KEY}: no fleet run lease for company DEMO01 within "
        "0.5s (Redis cannot be reached: ConnectionError); nothing was sent"
    )
    assert 0.5 <= waited < 1.5
    assert "runmap" not in emulator.counters.calls
    assert emulator.runs == ()


# ---- fleets of processes ---------------------------------------------------------------


def _company_jobs(emulator: Emulator, worker: int, runs: int) -> list[dict[str, Any]]:
    """A worker's runs: ``runs`` for each of DEMO01 (alice), DEMO02 (bob), DEMO03 (carol)."""
    jobs = []
    for company, who in (("DEMO01", "alice"), ("DEMO02", "bob"), ("DEMO03", "carol")):
        login = demo(company, who)
        map_key = next(
            m.key for m in emulator.maps.values() if m.company_id == company and not m.realtime
        )
        jobs.append(
            {
                "email": login.email,
                "password": login.password,
                "company_id": company,
                "map_key": map_key,
                "tags": [f"w{worker}-{company}-{i}" for i in range(runs)],
                "rows": False,
            }
        )
    return jobs


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    """Worker processes started by the test; any still running after it are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _start(
    workers: list[subprocess.Popen[str]], server: LoopbackServer, plan: dict[str, Any]
) -> subprocess.Popen[str]:
    plan = {"api_url": server.api_url, "max_concurrent_runs": 2, "pool": 30.0, **plan}
    process = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(plan)], stdout=subprocess.PIPE, text=True
    )
    workers.append(process)
    return process


def _outcome(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.emulator(rows=10)
def test_a_fleet_of_8_processes_keeps_each_company_to_2_runs_in_flight(
    server: LoopbackServer,
    emulator: Emulator,
    redis_url: str,
    prefix: str,
    workers: list[subprocess.Popen[str]],
) -> None:
    """The issue's proof: 8 processes x 3 companies, 200 calls each (25 runs, 175 map
    lists), tokens and run limits shared through Redis: one GetToken per company for the
    whole fleet, and never more than 2 of a company's runs in flight at the server."""
    emulator.set_faults(LATENCY_50MS)
    base = {"redis_url": redis_url, "prefix": prefix, "lease_ttl": 5.0, "shared_tokens": True}
    started = time.monotonic()
    for n in range(8):
        _start(workers, server, {**base, "reads": 175, "jobs": _company_jobs(emulator, n, 25)})
    outcomes = [_outcome(process) for process in workers]
    took = time.monotonic() - started
    assert [o["errors"] for o in outcomes] == [[]] * 8
    assert [o["ok"] for o in outcomes] == [75] * 8
    assert [o["reads"] for o in outcomes] == [3 * 175] * 8
    counters = emulator.counters
    assert counters.token_calls == {"DEMO01": 1, "DEMO02": 1, "DEMO03": 1}
    assert counters.runs_in_flight_max == {"DEMO01": 2, "DEMO02": 2, "DEMO03": 2}
    for company in ("DEMO01", "DEMO02", "DEMO03"):
        expected = sorted(f"w{n}-{company}-{i}" for n in range(8) for i in range(25))
        assert _tags(emulator, company) == expected  # each run executed exactly once
    assert counters.total_runs == 600
    print(f"8 workers x 3 companies x (25 runs + 175 reads): {took:.2f}s")


@pytest.mark.emulator(rows=10)
def test_a_killed_worker_s_leases_expire_and_the_others_carry_on(
    server: LoopbackServer,
    emulator: Emulator,
    redis_url: str,
    prefix: str,
    workers: list[subprocess.Popen[str]],
) -> None:
    # The victim's runs (runmapdatatable) take 1.5 s at the server, shorter than the
    # lease TTL of 2 s; the others' (RunMapWithVariables) 50 ms.
    emulator.set_faults(
        [*LATENCY_50MS, {"kind": "latency", "ms": 1500, "endpoints": ["runmapdatatable"]}]
    )
    base = {"redis_url": redis_url, "prefix": prefix, "lease_ttl": 2.0}
    login = demo("DEMO01")
    victim_job = {
        "email": login.email,
        "password": login.password,
        "company_id": "DEMO01",
        "map_key": IMPORT_CUSTOMERS_KEY,
        "tags": ["victim-0", "victim-1"],
        "rows": True,
    }
    victim = _start(workers, server, {**base, "jobs": [victim_job]})
    deadline = time.monotonic() + 20
    while server.switch.runs_in_flight["DEMO01"] < 2:  # both its leases held, runs sent
        assert time.monotonic() < deadline, "the victim's runs never reached the server"
        assert victim.poll() is None
        time.sleep(0.005)  # another process: no event to wait on
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL

    started = time.monotonic()
    others = [
        _start(workers, server, {**base, "jobs": _company_jobs(emulator, n, 10)[:1]})
        for n in range(3)
    ]
    outcomes = [_outcome(process) for process in others]
    took = time.monotonic() - started
    assert [(o["ok"], o["errors"]) for o in outcomes] == [(10, [])] * 3
    assert emulator.counters.runs_in_flight_max == {"DEMO01": 2}
    runs = emulator.runs
    victims = [r for r in runs if r.endpoint == "runmapdatatable"]
    assert sorted(r.tables["Table"][0]["AccountNumber"] for r in victims) == [
        "victim-0",
        "victim-1",
    ]  # the server finished them after the kill
    assert _tags(emulator, "DEMO01") == sorted(
        f"w{n}-DEMO01-{i}" for n in range(3) for i in range(10)
    )
    # Nobody ran before the dead worker's leases expired, which was after its runs ended.
    first_other = min(r.started_at for r in runs if r.endpoint == "RunMapWithVariables")
    assert first_other > max(r.started_at for r in victims)
    assert took < 2.0 + 15
    print(f"3 workers after a SIGKILL (lease TTL 2 s): {took:.2f}s")


def test_the_package_imports_without_redis_and_says_what_is_missing() -> None:
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "import smartconnect_async, smartconnect_async.redis_runs as r\n"
        "try:\n    r.RedisRunLimits('redis://127.0.0.1:1/0')\n"
        "except ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "RedisRunLimits needs redis-py: pip install 'smartconnect-async[redis]'\n"


def test_run_limits_must_have_a_lease_method(alice01: Credentials) -> None:
    with pytest.raises(TypeError, match=r"^run_limits must be a smartconnect_async\.redis_runs"):
        SmartConnect("https://example.com/API", alice01, run_limits=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"lease_ttl": 0.05}, ValueError, "lease_ttl must be a finite number of seconds, at least"),
        ({"lease_ttl": float("inf")}, ValueError, "lease_ttl must be a finite number"),
        ({"lease_ttl": "30"}, TypeError, "lease_ttl must be a number of seconds, not str"),
        ({"prefix": b"x:"}, TypeError, "prefix must be a str, not bytes"),
        ({"redis": 6379}, TypeError, "redis must be a redis.asyncio.Redis or a URL, not int"),
    ],
)
def test_settings_of_the_wrong_type_or_out_of_range_are_refused(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    redis_or_url = options.pop("redis", "redis://127.0.0.1:1/0")
    with pytest.raises(error) as caught:
        RedisRunLimits(redis_or_url, **options)
    assert str(caught.value).startswith(message)


# ---- a slow or silent Redis ------------------------------------------------------------


@pytest.mark.anyio
async def test_a_waiter_cancelled_while_redis_runs_its_request_leaves_no_lease(
    redis_url: str, prefix: str, raw: redis.Redis
) -> None:
    async with RedisRunLimits(redis_url, prefix=prefix, lease_ttl=30) as limits:
        key = limits.key(SCOPE, "DEMO01")
        async with limits.lease(SCOPE, "DEMO01", 2, 5.0):  # connected, scripts loaded
            pass
        async with anyio.create_task_group() as group:
            group.start_soon(raw.execute_command, "DEBUG", "SLEEP", "0.3")  # Redis busy
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.1):  # the caller gives up (a client went away)
                async with limits.lease(SCOPE, "DEMO01", 2, 5.0):
                    pytest.fail("the lease came while Redis slept")
        assert await raw.zrange(key, 0, -1) == []  # not held for lease_ttl (30 s)


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with suppress(OSError):  # the accept timed out: look at ``done`` again
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    done.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.anyio
@pytest.mark.emulator(rows=5)
async def test_a_redis_that_never_answers_holds_a_run_no_longer_than_its_bounds(
    silent_redis: str, server: LoopbackServer, emulator: Emulator, alice01: Credentials
) -> None:
    quick, patient = Timeout(10, pool=0.5, total=1.0), Timeout(10, pool=30)
    async with (
        RedisRunLimits(silent_redis) as limits,
        SmartConnect(server.api_url, alice01, timeout=quick, run_limits=limits) as sc,
    ):
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="Redis did not answer in time"):
            await sc.runs.run(IMPORT_CUSTOMERS_KEY, max_retries=0)
        assert time.monotonic() - started < 1.3  # the pool timeout, then a short give-back
        started = time.monotonic()
        with anyio.move_on_after(0.2):
            await sc.runs.run(IMPORT_CUSTOMERS_KEY, max_retries=0, timeout=patient)
        assert time.monotonic() - started < 1.0  # cancelled promptly
    assert emulator.counters.total_runs == 0
