"""Limits shared by every client on one transport: the server's rate-limit budget, and
how many runs one company may have in flight at once."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Hashable, Mapping

import anyio

from . import _retry

__all__ = ["GateClosed", "RateGate", "RunSlots", "acquire_within"]


async def acquire_within(semaphore: anyio.Semaphore, timeout: float | None) -> None:
    """Take one of ``semaphore``'s slots: at once when one is free (no scheduling round
    trip), else wait at most ``timeout`` seconds (``TimeoutError``).

    On asyncio (Python 3.11+) the wait is bounded with ``asyncio.timeout``: about 12 µs
    a wait against 20 µs with a cancel scope, and most calls wait here when many more
    calls than slots are in flight.
    """
    try:
        semaphore.acquire_nowait()
        return
    except anyio.WouldBlock:
        pass
    if timeout is None:
        await semaphore.acquire()
        return
    if sys.version_info >= (3, 11) and _on_asyncio():
        async with asyncio.timeout(timeout):
            await semaphore.acquire()
        return
    with anyio.fail_after(timeout):
        await semaphore.acquire()


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number else None


class GateClosed(Exception):
    """The server asked for a pause longer than the caller may wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _Window:
    __slots__ = ("budget", "closed_until", "limit", "period", "reset_at")

    def __init__(self) -> None:
        self.budget: float | None = None  # requests left in the current window
        self.reset_at = 0.0  # when the current window ends (never earlier than it does)
        self.limit: float | None = None  # requests per window (X-Rate-Limit-Limit)
        self.period = 0.0  # the longest X-Rate-Limit-Reset seen: the window's length
        self.closed_until = 0.0  # no request before this (Retry-After)


class RateGate:
    """Spends the server's rate-limit budget instead of hammering into 429s.

    From ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Reset`` it knows how many requests
    are left in the current window and when the window ends; every request admitted
    takes one (so a crowd of concurrent callers cannot overshoot), and once none are
    left new requests wait for the next window, which is presumed to allow
    ``X-Rate-Limit-Limit`` requests until the server says otherwise. ``Retry-After`` on
    a 429 or 503 closes the gate for that long.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[Hashable, _Window] = {}

    def admit(self, key: Hashable) -> float:
        """Take one request from ``key``'s budget and return 0, or return the seconds to
        wait before one may go."""
        window = self._windows.get(key)
        if window is None:
            return 0.0
        now = self._clock()
        if window.closed_until > now:
            return window.closed_until - now
        if window.budget is None:
            return 0.0
        if now >= window.reset_at:
            if window.limit is None or window.period <= 0:
                del self._windows[key]  # nothing known about the next window
                return 0.0
            window.budget, window.reset_at = window.limit, now + window.period
        if window.budget < 1:
            return window.reset_at - now
        window.budget -= 1
        return 0.0

    async def wait(self, key: Hashable, limit: float | None) -> None:
        """Wait until a request for ``key`` may go; ``GateClosed`` if that is longer
        than ``limit`` seconds from now."""
        # The pause may change while this caller sleeps: look again after waking.
        while (left := self.admit(key)) > 0:
            if limit is not None and left > limit:
                raise GateClosed(left)
            await anyio.sleep(left)

    def observe(self, key: Hashable, status: int, headers: Mapping[str, str]) -> None:
        """Learn the budget from an answer's headers."""
        remaining = _number(headers.get("x-rate-limit-remaining"))
        reset = _number(headers.get("x-rate-limit-reset"))
        retry_after = (
            _retry.parse_retry_after(headers.get("retry-after")) if status in (429, 503) else None
        )
        if (remaining is None or reset is None) and not retry_after:
            return
        now = self._clock()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        if remaining is not None and reset is not None:
            reset = max(reset, 0.0)
            ends = now + reset
            window.limit = _number(headers.get("x-rate-limit-limit")) or window.limit
            window.period = max(window.period, reset)
            if window.budget is None or now >= window.reset_at or ends > window.reset_at + 0.5:
                window.budget, window.reset_at = remaining, ends  # a new window
            else:
                # The same window: requests admitted since the server counted are yet
                # to be counted, so the lower figure is the true one.
                window.budget = min(window.budget, remaining)
                window.reset_at = min(window.reset_at, ends)
        if retry_after:
            window.closed_until = max(window.closed_until, now + retry_after)


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
