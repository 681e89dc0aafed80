"""Runs limited across a fleet of processes: ``RedisRunLimits``, a lease semaphore per
company in Redis, for ``SmartConnect(..., run_limits=RedisRunLimits(...))``.

Each company's leases are one sorted set: member a random lease id, score the lease's
expiry in milliseconds of the Redis server's clock (``TIME``, so the workers' clocks
do not matter). A Lua script takes a lease atomically: it drops the expired ones,
counts the rest and adds one if fewer than the limit are held. A run holds its lease
while it is in flight (renewed every third of the TTL), and gives it back when it is
over, however it ends; a crashed worker's leases expire after the TTL.

A run is never sent without a lease: while Redis cannot be reached a run waits for one
like for any other limit, bounded by the call's pool timeout and total deadline, then
fails with ``APITimeoutError`` (``sent=False``). Needs redis-py (the ``redis`` extra)
and asyncio: redis-py's asyncio client does not run on trio.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from ._backend import _on_asyncio
from ._limits import LeaseTimeout

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisRunLimits"]

logger = logging.getLogger("smartconnect_async")

_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""

_ACQUIRE = (
    _NOW_MS
    + """
-- KEYS[1]: the company's leases; ARGV: limit, TTL (ms), lease id.
-- Returns -1 when the lease is held (also when it already was: a command repeated by
-- redis-py after a lost reply), else the number of leases held by others.
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or held < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.max(ttl, redis.call('PTTL', KEYS[1])))
    return -1
end
return held
"""
)

_RENEW = (
    _NOW_MS
    + """
-- KEYS[1]: the company's leases; ARGV: TTL (ms), lease id. Returns 1 if the lease was
-- still there (an expired one that nobody has swept away yet was not counted against
-- anyone: it is kept), 0 if it is gone.
local ttl = tonumber(ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.max(ttl, redis.call('PTTL', KEYS[1])))
return 1
"""
)

FIRST_POLL = 0.002
"""Seconds before a waiting run asks Redis again; doubled after each refusal..."""
LAST_POLL = 0.05
"""...up to this (each pause drawn between half and all of it)."""
GIVE_BACK_TIMEOUT = 0.5
"""The longest a run waits for Redis to take its lease back (shielded from
cancellation; a give-back takes a millisecond): past it, the lease expires after its
TTL, and the run's call is not held up by a Redis that does not answer."""
_NO_ANSWER = "Redis did not answer in time"


def _unreachable(exc: BaseException) -> str:
    """Why Redis failed, for a message: the exception's type only (its text names the
    server's address)."""
    return f"Redis cannot be reached: {type(exc).__name__}"


class RedisRunLimits:
    """``max_concurrent_runs`` per company across every process sharing a Redis.

    ``redis`` is a ``redis.asyncio.Redis`` client (yours: you close it; its own retry
    policy applies) or a URL (``redis://host:6379/0``; ``aclose()`` closes the client
    made from it). Leases
    are kept under ``{prefix}runs:{company}@{api_url}``; each lives ``lease_ttl``
    seconds and is renewed every ``lease_ttl / 3`` while its run is in flight, so a
    crashed worker's lease frees its slot at most ``lease_ttl`` after the crash. Give
    every process the same ``max_concurrent_runs``: the limit a run asks with is the
    one it is counted against.
    """

    def __init__(
        self, redis: Redis | str, *, prefix: str = "smartconnect:", lease_ttl: float = 30.0
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError:  # the redis extra is missing
            raise ImportError(
                "RedisRunLimits needs redis-py: pip install 'smartconnect-async[redis]'"
            ) from None
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, (int, float)):
            raise TypeError(
                f"lease_ttl must be a number of seconds, not {type(lease_ttl).__name__}"
            )
        if not (math.isfinite(lease_ttl) and lease_ttl >= 0.1):
            raise ValueError(
                f"lease_ttl must be a finite number of seconds, at least 0.1, not {lease_ttl!r}"
            )
        if isinstance(redis, str):
            # One quick retry (a pooled connection the server closed), no back-off: a
            # waiting run polls again itself, within its own bound.
            client: Redis = redis_asyncio.Redis.from_url(redis, retry=Retry(NoBackoff(), 1))
            self._owned = True
        elif isinstance(redis, redis_asyncio.Redis):
            client, self._owned = redis, False
        else:
            raise TypeError(
                f"redis must be a redis.asyncio.Redis or a URL, not {type(redis).__name__}"
            )
        self.redis = client
        self.prefix = prefix
        self.lease_ttl = float(lease_ttl)
        self._ttl_ms = math.ceil(lease_ttl * 1000)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)

    def __repr__(self) -> str:
        return f"RedisRunLimits(prefix={self.prefix!r}, lease_ttl={self.lease_ttl:g})"

    def key(self, scope: str, company: str) -> str:
        """The sorted set of ``company``'s leases at API Url ``scope``."""
        return f"{self.prefix}runs:{company}@{scope}"

    async def aclose(self) -> None:
        """Close the Redis client if it was made from a URL."""
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> RedisRunLimits:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def lease(
        self, scope: str, company: str, limit: int, timeout: float | None
    ) -> AsyncIterator[None]:
        """Hold one of ``company``'s ``limit`` leases while the context is entered,
        renewed meanwhile; ``LeaseTimeout`` when none comes within ``timeout`` s."""
        if not _on_asyncio():
            raise RuntimeError(
                "RedisRunLimits runs only on asyncio (redis-py's asyncio client), not on trio"
            )
        key, lease = self.key(scope, company), secrets.token_hex(16)
        await self._take(key, lease, company, limit, timeout)
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._keep, key, lease, company)
                try:
                    yield
                except Exception as exc:  # the run's own error: not the task group's
                    error = exc
                finally:
                    group.cancel_scope.cancel()
        finally:
            await self._give_back(key, lease, company)
        if error is not None:
            raise error

    async def _take(
        self, key: str, lease: str, company: str, limit: int, timeout: float | None
    ) -> None:
        """Ask for a lease until it is granted, polling with back-off, for at most
        ``timeout`` seconds (``LeaseTimeout``)."""
        deadline = None if timeout is None else anyio.current_time() + timeout
        pause = FIRST_POLL
        reason = ""
        try:
            while True:
                left = None if deadline is None else deadline - anyio.current_time()
                if left is not None and left <= 0 and reason:
                    raise LeaseTimeout(reason)
                with anyio.move_on_after(left) as scope:
                    try:
                        held = await self._script(self._acquire, key, limit, self._ttl_ms, lease)
                    except self._errors as exc:
                        reason = _unreachable(exc)
                    else:
                        if held < 0:
                            return
                        reason = f"all {held} run leases of company {company} were held"
                if scope.cancelled_caught:
                    raise LeaseTimeout(_NO_ANSWER)
                wait = pause * random.uniform(0.5, 1.0)
                if deadline is not None:
                    wait = min(wait, max(deadline - anyio.current_time(), 0.0))
                await anyio.sleep(wait)
                pause = min(pause * 2, LAST_POLL)
        except BaseException:
            # A request whose answer was lost, or cancelled while Redis ran it, may have
            # taken the lease: give it back (removing one that is not there costs nothing).
            await self._give_back(key, lease, company)
            raise

    async def _keep(self, key: str, lease: str, company: str) -> None:
        """Renew the lease every third of its TTL while its run is in flight."""
        every = self.lease_ttl / 3
        while True:
            await anyio.sleep(every)
            problem = _NO_ANSWER
            with anyio.move_on_after(every):
                try:
                    if await self._script(self._renew, key, self._ttl_ms, lease):
                        continue
                except self._errors as exc:
                    problem = _unreachable(exc)
                else:
                    logger.warning(
                        "the fleet run lease of a run of company %s expired before it was "
                        "renewed: other processes may start runs beyond the limit meanwhile",
                        company,
                    )
                    return
            logger.warning(
                "could not renew the fleet run lease of a run of company %s (%s); it "
                "expires %gs after its last renewal unless a later one succeeds",
                company,
                problem,
                self.lease_ttl,
            )

    async def _give_back(self, key: str, lease: str, company: str) -> None:
        """Remove the lease, shielded from cancellation and bounded; if Redis cannot
        take it back, it expires after its TTL."""
        problem = _NO_ANSWER
        with anyio.move_on_after(GIVE_BACK_TIMEOUT, shield=True):
            try:
                await self.redis.zrem(key, lease)
            except self._errors as exc:
                problem = _unreachable(exc)
            else:
                return
        logger.warning(
            "could not give back a fleet run lease of company %s (%s); it expires within %gs",
            company,
            problem,
            self.lease_ttl,
        )

    @staticmethod
    async def _script(script: Any, key: str, *args: object) -> int:
        return int(await script(keys=[key], args=args))
