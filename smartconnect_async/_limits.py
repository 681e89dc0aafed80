"""Limits shared by every client on one transport, checked before each attempt is sent:
the server's rate-limit budget (``RateGate``), how many runs one company may have in
flight (``max_concurrent_runs``) and how many requests all of them may (the connection
pool's size). Every wait is bounded by the call's pool timeout."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager

import anyio

from . import _retry
from ._backend import FailureKind
from ._wire import Call
from .exceptions import APITimeoutError, RateLimitError
from .models import Timeout

__all__ = ["Connections", "GateClosed", "Limits", "RateGate"]


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


async def _take(semaphore: anyio.Semaphore, timeout: float | None) -> None:
    """Take one of ``semaphore``'s slots within ``timeout`` seconds (``TimeoutError``)."""
    try:
        semaphore.acquire_nowait()  # no cancel scope when a slot is free
    except anyio.WouldBlock:
        with anyio.fail_after(timeout):  # None: no deadline
            await semaphore.acquire()


class _Waiter:
    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class Connections:
    """At most ``limit`` requests in flight, shared fairly between companies.

    - Companies take turns: a slot given back goes to the longest waiter of the company
      next in line, and a company served goes to the back of the line, so a burst of one
      company's calls holds another company's next call back by about one call per
      waiting company, not by the whole burst.
    - A company with calls under way (``begin`` .. ``end``) that holds no slot, its calls
      waiting for their token, say, has one free slot kept for it, so that another
      company's burst cannot take every slot just before it asks.

    Home-made rather than an ``anyio.Semaphore``, which serves waiters first come, first
    served: in the cold-storm benchmark (1,000 ``maps.list`` for 10 companies, no token
    yet, ``python -m benchmarks --only storm``) the first company whose token came back
    took every connection, and every company's first answer came 5.1x as late as a
    single cold call's, against the goal of 1.5x (1.2x with this class).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._lines: dict[Hashable, deque[_Waiter]] = {}  # in turn order
        self._held: dict[Hashable, int] = {}  # slots held, per company holding any
        self._under_way: dict[Hashable, int] = {}  # calls under way, per company
        self._kept = 0  # free slots kept: one per company under way holding none

    @property
    def free(self) -> int:
        return self._free

    def _kept_for(self, company: Hashable) -> bool:
        return company in self._under_way and company not in self._held

    def _may_take(self, company: Hashable) -> bool:
        return self._free > self._kept or (self._free > 0 and self._kept_for(company))

    def begin(self, company: Hashable) -> None:
        """A call of ``company`` is under way (undone by ``end``)."""
        count = self._under_way.get(company, 0)
        self._under_way[company] = count + 1
        if not count and company not in self._held:
            self._kept += 1

    def end(self, company: Hashable) -> None:
        count = self._under_way.pop(company) - 1
        if count:
            self._under_way[company] = count
        elif company not in self._held:
            self._kept -= 1
            self._serve()

    async def acquire(self, company: Hashable, timeout: float | None) -> None:
        """Take a slot for ``company`` within ``timeout`` seconds (``TimeoutError``)."""
        if self._may_take(company):  # then no waiter may: each was served as it could
            self._take(company)
            return
        waiter = _Waiter()
        line = self._lines.setdefault(company, deque())
        line.append(waiter)
        try:
            with anyio.fail_after(timeout):  # None: no deadline
                await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # granted as it gave up: pass the slot on
                self.release(company)
            else:
                line.remove(waiter)
                if not line and self._lines.get(company) is line:
                    del self._lines[company]
            raise

    def release(self, company: Hashable) -> None:
        """Give back a slot of ``company``; it goes to the back of the line."""
        held = self._held.pop(company) - 1
        if held:
            self._held[company] = held
        elif company in self._under_way:
            self._kept += 1
        self._free += 1
        line = self._lines.pop(company, None)
        if line is not None:
            self._lines[company] = line
        self._serve()

    def _take(self, company: Hashable) -> None:
        held = self._held.get(company, 0)
        if not held and company in self._under_way:
            self._kept -= 1  # it takes the slot kept for it
        self._held[company] = held + 1
        self._free -= 1

    def _serve(self) -> None:
        """Give free slots to the waiters that may take them, company after company."""
        while self._free > 0 and self._lines:
            company = next((c for c in self._lines if self._may_take(c)), _NOBODY)
            if company is _NOBODY:
                return
            line = self._lines.pop(company)
            waiter = line.popleft()
            if line:
                self._lines[company] = line  # served: to the back of the line
            self._take(company)
            waiter.granted = True
            waiter.event.set()


_NOBODY = object()


class Limits:
    """The limits an attempt passes before it is sent (``admitted``)."""

    def __init__(self, *, max_connections: int, max_concurrent_runs: int) -> None:
        self.max_connections = max_connections
        self.max_concurrent_runs = max_concurrent_runs
        self.rate_gate = RateGate()
        self.connections = Connections(max_connections)
        self._runs: dict[Hashable, anyio.Semaphore] = {}

    @asynccontextmanager
    async def admitted(
        self, call: Call[object], company: str | None, gate_key: Hashable, timeout: Timeout
    ) -> AsyncIterator[None]:
        """Hold ``call``'s place while it is sent and answered: past the rate gate, with
        one of ``company``'s run slots for a run, and one of the pool's connections."""
        if self.rate_gate.admit(gate_key):  # not admitted at once
            await self._wait_for_gate(call, gate_key, timeout.pool)
        runs = None
        if call.is_run and company is not None:
            runs = self._runs.get(company)
            if runs is None:
                runs = self._runs[company] = anyio.Semaphore(self.max_concurrent_runs)
            try:
                await _take(runs, timeout.pool)
            except TimeoutError:
                raise APITimeoutError(
                    f"{call.endpoint}{call.where}: no run slot came free within "
                    f"{timeout.pool:g}s ({self.max_concurrent_runs} runs of company {company} "
                    "were in flight); nothing was sent",
                    endpoint=call.endpoint,
                    sent=False,
                ) from None
        try:
            try:
                await self.connections.acquire(company, timeout.pool)
            except TimeoutError:
                raise APITimeoutError(
                    f"{call.endpoint}{call.where}: {FailureKind.POOL_TIMEOUT.value}: all "
                    f"{self.max_connections} connections stayed busy for {timeout.pool:g}s; "
                    "nothing was sent",
                    endpoint=call.endpoint,
                    sent=False,
                ) from None
            try:
                yield
            finally:
                self.connections.release(company)
        finally:
            if runs is not None:
                runs.release()

    async def _wait_for_gate(self, call: Call[object], key: Hashable, pool: float | None) -> None:
        """Wait while the server's rate limit is spent; ``RateLimitError`` when the wait
        would be longer than ``MAX_RETRY_AFTER`` or the call's pool timeout."""
        limit = _retry.MAX_RETRY_AFTER if pool is None else min(_retry.MAX_RETRY_AFTER, pool)
        try:
            await self.rate_gate.wait(key, limit)
        except GateClosed as closed:
            raise RateLimitError(
                f"{call.endpoint}: the server's rate limit allows the next call in "
                f"{closed.seconds:.1f}s, longer than this call may wait ({limit:g}s); "
                "nothing was sent",
                endpoint=call.endpoint,
                status_code=429,
                request_id=None,
                body="",
                retry_after=closed.seconds,
            ) from None
