"""``RedisTokenStore``: tokens shared by a fleet of processes through Redis (the ``redis``
extra: redis-py's asyncio client, and cryptography for encryption at rest).

    from smartconnect_async import SmartConnect
    from smartconnect_async.redis_tokens import RedisTokenStore

    store = RedisTokenStore("redis://cache:6379/0", encryption_key=key_from_your_vault)
    sc = SmartConnect(api_url, credentials, token_store=store)

Each token is one Redis string named ``{prefix}token:{SHA-256 of str(TokenKey)}`` holding
the JSON that ``FileTokenStore`` writes (encrypted with ``Fernet(encryption_key)`` when a
key is given), expiring with the token. A value that cannot be read (corrupt, written
for another key, encrypted with another key or not at all) counts as no token, with a
warning that never shows the value.

The store is also a ``RefreshLocking`` one: a refresh takes the key's lock
(``{prefix}lock:{SHA-256}``, ``SET NX PX`` with a random token through redis-py's
``Lock``, released by its compare-and-delete script), so processes that start cold
together make one GetToken per company; the others poll for the lock every
``poll_interval`` and wait for one holder no longer than ``lock_ttl``, so a holder that
died blocks nobody beyond it. Runs on asyncio (redis-py's client).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

try:
    import redis.asyncio as aioredis
    from redis.exceptions import LockError
except ImportError as missing:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "RedisTokenStore needs redis-py: pip install 'smartconnect-async[redis]'"
    ) from missing

from ._tokens import TokenKey
from .models import Token
from .token_store import _decode, _encode

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

__all__ = ["RedisTokenStore"]

logger = logging.getLogger(__name__)


class RedisTokenStore:
    """A ``TokenStore`` (and ``RefreshLocking``) in Redis, for tokens shared by a fleet.

    ``redis``: a ``redis.asyncio.Redis`` (yours to close) or a ``redis://`` URL (the
    store makes the client; ``aclose()`` closes it). ``prefix`` starts every key name.
    ``encryption_key``: a Fernet key (``Fernet.generate_key()``), kept outside Redis,
    to encrypt tokens at rest. ``lock_ttl``: seconds a refresh lock lives (keep it
    below the client's pool timeout, which bounds every store call, and above a
    GetToken's usual time); ``poll_interval``: seconds between two tries for it.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        prefix: str = "smartconnect:",
        encryption_key: bytes | None = None,
        lock_ttl: float = 10.0,
        poll_interval: float = 0.05,
    ) -> None:
        if not (lock_ttl > 0 and math.isfinite(lock_ttl)):
            raise ValueError("lock_ttl must be a finite number of seconds above 0")
        if not (0 < poll_interval <= lock_ttl):
            raise ValueError("poll_interval must be above 0 and at most lock_ttl")
        self._owned = isinstance(redis, str)
        self.redis = aioredis.Redis.from_url(redis) if isinstance(redis, str) else redis
        self.prefix = prefix
        self.lock_ttl = lock_ttl
        self.poll_interval = poll_interval
        self._fernet: Fernet | None = None
        if encryption_key is not None:
            from cryptography.fernet import Fernet

            self._fernet = Fernet(encryption_key)

    def __repr__(self) -> str:
        encrypted = ", encrypted" if self._fernet is not None else ""
        return f"RedisTokenStore(prefix={self.prefix!r}{encrypted})"

    async def aclose(self) -> None:
        """Close the Redis client if the store made it (from a URL)."""
        if self._owned:
            await self.redis.aclose()

    def _name(self, kind: str, key: TokenKey) -> str:
        return f"{self.prefix}{kind}:{hashlib.sha256(str(key).encode('utf-8')).hexdigest()}"

    def token_name(self, key: TokenKey) -> str:
        """The Redis key that holds the token of ``key``."""
        return self._name("token", key)

    def lock_name(self, key: TokenKey) -> str:
        """The Redis key of the refresh lock of ``key``."""
        return self._name("lock", key)

    async def get(self, key: TokenKey) -> Token | None:
        """The token stored under ``key``; ``None`` when there is none or it cannot be
        read (a warning says why, never showing the value)."""
        raw = await self.redis.get(self.token_name(key))
        if raw is None:
            return None
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            if self._fernet is not None:
                data = self._decrypt(self._fernet, data)
            return _decode(data, key)
        except ValueError as exc:
            logger.warning("ignoring the token in Redis under %s: %s", self.token_name(key), exc)
            return None

    @staticmethod
    def _decrypt(fernet: Fernet, data: bytes) -> bytes:
        from cryptography.fernet import InvalidToken

        try:
            return fernet.decrypt(data)
        except InvalidToken:
            # Fernet checks the value's signature: another key, or a value never encrypted.
            raise ValueError("it cannot be decrypted with this encryption_key") from None

    async def set(self, key: TokenKey, token: Token) -> None:
        """Store ``token`` under ``key``, expiring when it does."""
        left_ms = math.ceil((token.expires_at.timestamp() - time.time()) * 1000)
        if left_ms <= 0:  # already expired: no token
            await self.delete(key)
            return
        data = json.dumps(_encode(key, token)).encode("utf-8")
        if self._fernet is not None:
            data = self._fernet.encrypt(data)
        await self.redis.set(self.token_name(key), data, px=left_ms)

    async def delete(self, key: TokenKey) -> None:
        """Forget the token stored under ``key``, if any."""
        await self.redis.delete(self.token_name(key))

    @contextlib.asynccontextmanager
    async def refresh_lock(self, key: TokenKey) -> AsyncIterator[bool]:
        """Hold the refresh lock of ``key`` (``True``), or give up (``False``) after
        waiting ``lock_ttl`` for one holder: a holder that died has lost the lock by
        then (its time to live is over), so it is taken at the last try. A process that
        takes the lock over meanwhile is waited for in turn, at most ``lock_ttl``
        (``TokenCache`` bounds the whole wait with its ``store_timeout``)."""
        name = self.lock_name(key)
        lock = self.redis.lock(name, timeout=self.lock_ttl, thread_local=False)
        token = secrets.token_hex(16)  # random: no other process can release this lock
        holder: object = None
        deadline = 0.0
        while not (held := await lock.acquire(blocking=False, token=token)):
            current = await self.redis.get(name)
            if current is None:
                continue  # released since: try again at once
            now = anyio.current_time()
            if current != holder:  # another holder (or the first seen): lock_ttl for it
                holder, deadline = current, now + self.lock_ttl
            elif now >= deadline:
                break
            await anyio.sleep(min(self.poll_interval, deadline - now))
        try:
            yield held
        finally:
            if held:
                # Compare-and-delete: a lock that expired and was taken since is left alone.
                with contextlib.suppress(LockError):
                    await lock.release()
