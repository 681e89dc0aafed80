"""Limits shared by every client on one transport: the server's rate-limit budget, and
how many runs one company may have in flight at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping

import anyio

from . import _retry

__all__ = ["RateGate", "RunSlots"]


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number else None


class RateGate:
    """Holds back new requests while the server says the budget is spent
    (``X-Rate-Limit-Remaining: 0`` until ``X-Rate-Limit-Reset`` seconds have passed, or a
    ``Retry-After``), instead of hammering into 429s."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._closed_until: dict[Hashable, float] = {}

    def delay(self, key: Hashable) -> float:
        """Seconds to hold back a new request for ``key`` (0 when it may go now)."""
        until = self._closed_until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            self._closed_until.pop(key, None)
            return 0.0
        return left

    async def wait(self, key: Hashable) -> None:
        """Sleep until a request for ``key`` may go."""
        # The pause may be extended while this caller sleeps: look again after waking.
        while (left := self.delay(key)) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)

    def observe(self, key: Hashable, status: int, headers: Mapping[str, str]) -> None:
        """Learn the budget from an answer's headers."""
        pause: float | None = None
        remaining = _number(headers.get("x-rate-limit-remaining"))
        if remaining is not None and remaining <= 0:
            pause = _number(headers.get("x-rate-limit-reset"))
        if status in (429, 503):
            retry_after = _retry.parse_retry_after(headers.get("retry-after"))
            if retry_after is not None:
                pause = max(pause or 0.0, retry_after)
        if pause is not None and pause > 0:
            until = self._clock() + min(pause, _retry.MAX_RETRY_AFTER)
            if until > self._closed_until.get(key, 0.0):
                self._closed_until[key] = until


class RunSlots:
    """At most ``limit`` runs in flight per company, across every client on the pool
    (SmartConnect executes a company's runs on one server)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrent_runs must be at least 1")
        self.limit = limit
        self._slots: dict[Hashable, anyio.Semaphore] = {}

    def for_key(self, key: Hashable) -> anyio.Semaphore:
        """The semaphore of ``key`` (a company)."""
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = anyio.Semaphore(self.limit)
        return slots

    @staticmethod
    async def acquire(slots: anyio.Semaphore) -> None:
        """Take a slot: at once when one is free (no scheduling round trip), else wait."""
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            await slots.acquire()
