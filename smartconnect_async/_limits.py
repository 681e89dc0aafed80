"""Limits shared by every client on one transport, checked before each attempt is sent:
the server's rate-limit budget (``RateGate``), how many runs one company may have in
flight (``max_concurrent_runs``: in this process, and across a fleet of processes when
``RunLeases`` are given) and how many requests all of them may (the connection pool's
size). Every wait is bounded by the call's pool timeout."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from types import TracebackType
from typing import Protocol

import anyio

from . import _retry
from ._backend import FailureKind, seconds_left
from ._waiting import Waiter
from ._wire import Call, unsent
from .exceptions import RateLimitError
from .models import Timeout

__all__ = ["MAX_PAUSE", "GateClosed", "LeaseTimeout", "Limits", "RateGate", "RunLeases", "Slots"]


MAX_PAUSE = 3600.0
"""The longest pause the server's rate-limit headers impose (``X-Rate-Limit-Reset``,
``Retry-After``): a longer one is cut to this, so that a broken header (a date a year
ahead) cannot close the gate for good."""


def _number(value: str | None) -> float | None:
    """A header's number; ``None`` if it is absent or not a finite number."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class GateClosed(Exception):
    """The server asked for a pause longer than the caller may wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class LeaseTimeout(Exception):
    """No fleet run lease came within the wait; ``reason`` says why, for the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RunLeases(Protocol):
    """Run slots shared by a fleet of processes (``redis_runs.RedisRunLimits``)."""

    def lease(
        self, scope: str, company: str, limit: int, timeout: float | None
    ) -> AbstractAsyncContextManager[None]:
        """Hold one of ``company``'s ``limit`` run slots of API Url ``scope`` while the
        context is entered; ``LeaseTimeout`` when none comes within ``timeout`` s."""
        ...


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
            reset = min(max(reset, 0.0), MAX_PAUSE)
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
            window.closed_until = max(window.closed_until, now + min(retry_after, MAX_PAUSE))


class Slots:
    """At most ``limit`` holders at once, shared fairly between groups (companies), every
    wait bounded.

    - Groups take turns: a slot given back goes to the longest waiter of the group next
      in line, and a group served goes to the back of the line, so a burst of one
      company's calls holds another company's next call back by about one call per
      waiting company, not by the whole burst.
    - A group with calls under way (``begin`` .. ``end``) that holds no slot, its calls
      waiting for their token, say, has one free slot kept for it, so that another
      group's burst cannot take every slot just before it asks.

    Home-made because with an ``anyio.Semaphore`` (first come, first served) the first
    company whose token came back took every connection in the cold storm of
    ``python -m benchmarks`` (1,000 ``maps.list`` for 10 companies), and every company's
    first answer came 5.1x as late as a single cold call's (goal: 1.5x). Its waits are
    ``_waiting.Waiter``s (see there why).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = limit
        self._lines: dict[Hashable, deque[Waiter]] = {}  # in turn order
        self._held: dict[Hashable, int] = {}  # slots held, per group holding any
        self._under_way: dict[Hashable, int] = {}  # calls under way, per group
        self._kept = 0  # free slots kept: one per group under way holding none

    @property
    def free(self) -> int:
        return self._free

    def _kept_for(self, group: Hashable) -> bool:
        return group in self._under_way and group not in self._held

    def _may_take(self, group: Hashable) -> bool:
        return self._free > self._kept or (self._free > 0 and self._kept_for(group))

    def begin(self, group: Hashable) -> None:
        """A call of ``group`` is under way (undone by ``end``)."""
        count = self._under_way.get(group, 0)
        self._under_way[group] = count + 1
        if not count and group not in self._held:
            self._kept += 1

    def end(self, group: Hashable) -> None:
        count = self._under_way.pop(group) - 1
        if count:
            self._under_way[group] = count
        elif group not in self._held:
            self._kept -= 1
            self._serve()

    @contextmanager
    def under_way(self, group: Hashable) -> Iterator[None]:
        """``begin`` .. ``end`` a call of ``group``."""
        self.begin(group)
        try:
            yield
        finally:
            self.end(group)

    async def acquire(self, group: Hashable, timeout: float | None) -> None:
        """Take a slot for ``group`` within ``timeout`` seconds (``TimeoutError``)."""
        if self._may_take(group):  # then no waiter may: each was served as it could
            self._take(group)
            return
        waiter = Waiter()
        line = self._lines.setdefault(group, deque())
        line.append(waiter)
        try:
            await waiter.wait(timeout)
        except BaseException:
            if waiter.granted:  # granted as it gave up: pass the slot on
                self.release(group)
            elif waiter in line:  # (not if passed over: its event loop was closed)
                line.remove(waiter)
                if not line and self._lines.get(group) is line:
                    del self._lines[group]
            raise

    def release(self, group: Hashable) -> None:
        """Give back a slot of ``group``; the group goes to the back of the line."""
        held = self._held.pop(group) - 1
        if held:
            self._held[group] = held
        elif group in self._under_way:
            self._kept += 1
        self._free += 1
        line = self._lines.pop(group, None)
        if line is not None:
            self._lines[group] = line
        self._serve()

    def _take(self, group: Hashable) -> None:
        held = self._held.get(group, 0)
        if not held and group in self._under_way:
            self._kept -= 1  # it takes the slot kept for it
        self._held[group] = held + 1
        self._free -= 1

    def _serve(self) -> None:
        """Give free slots to the waiters that may take them, group after group."""
        while self._free > 0 and self._lines:
            group = next((g for g in self._lines if self._may_take(g)), _NOBODY)
            if group is _NOBODY:
                return
            line = self._lines.pop(group)
            waiter = line.popleft()
            if line:
                self._lines[group] = line  # served: to the back of the line
            if waiter.grant():
                self._take(group)


_NOBODY = object()


class Limits:
    """The limits an attempt passes before it is sent: ``async with limits.admitted(...)``
    holds the attempt's place while it is sent and answered."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_concurrent_runs: int,
        run_leases: RunLeases | None = None,
        scope: str = "",
    ) -> None:
        self.max_concurrent_runs = max_concurrent_runs
        self.run_leases = run_leases  # a run takes one after its slot in this process
        self.scope = scope  # the API Url: what the fleet's leases are counted per
        self.rate_gate = RateGate()
        self.connections = Slots(max_connections)
        self._runs: dict[Hashable, Slots] = {}

    def admitted(
        self,
        call: Call[object],
        company: str | None,
        gate_key: Hashable,
        timeout: Timeout,
        deadline: float | None = None,
    ) -> _Admission:
        """Past the rate gate, with one of ``company``'s run slots for a run, and one of
        the pool's connections; each wait within the pool timeout and by ``deadline``
        (``time.monotonic()``, the call's total timeout)."""
        runs = None
        if call.is_run and company is not None:
            runs = self._runs.get(company)
            if runs is None:
                runs = self._runs[company] = Slots(self.max_concurrent_runs)
        return _Admission(self, call, company, gate_key, timeout, deadline, runs)


class _Admission:
    """One attempt's place (a class, not ``@asynccontextmanager``: one per request)."""

    __slots__ = (
        "_call",
        "_company",
        "_deadline",
        "_gate_key",
        "_lease",
        "_limits",
        "_runs",
        "_timeout",
    )

    def __init__(
        self,
        limits: Limits,
        call: Call[object],
        company: str | None,
        gate_key: Hashable,
        timeout: Timeout,
        deadline: float | None,
        runs: Slots | None,
    ) -> None:
        self._deadline = deadline
        self._limits = limits
        self._call = call
        self._company = company
        self._gate_key = gate_key
        self._timeout = timeout
        self._runs = runs
        self._lease: AbstractAsyncContextManager[None] | None = None

    def _pool(self) -> float | None:
        """The next wait's bound: the pool timeout, or what is left of the call's."""
        pool, left = self._timeout.pool, seconds_left(self._deadline)
        return left if pool is None or (left is not None and left < pool) else pool

    async def __aenter__(self) -> None:
        limits, call = self._limits, self._call
        if limits.rate_gate.admit(self._gate_key):  # not admitted at once
            await _wait_for_gate(limits.rate_gate, call, self._gate_key, self._pool())
        if self._runs is not None:
            pool = self._pool()
            try:
                await self._runs.acquire(None, pool)
            except TimeoutError:
                raise unsent(
                    call,
                    f"no run slot came free within {pool:g}s ({self._runs.limit} runs of "
                    f"company {self._company} were in flight)",
                ) from None
            if limits.run_leases is not None:
                await self._enter_lease(limits.run_leases)
        pool = self._pool()
        try:
            await limits.connections.acquire(self._company, pool)
        except BaseException as exc:
            if self._runs is not None:
                await self._end_run(type(exc), exc, exc.__traceback__)
            if isinstance(exc, TimeoutError):
                raise unsent(
                    call,
                    f"{FailureKind.POOL_TIMEOUT.value}: all {limits.connections.limit} "
                    f"connections stayed busy for {pool:g}s",
                ) from None
            raise

    async def _enter_lease(self, leases: RunLeases) -> None:
        """Take a fleet run lease after the process's run slot (given back on failure)."""
        assert self._runs is not None
        assert self._company is not None
        pool, call = self._pool(), self._call
        lease = leases.lease(self._limits.scope, self._company, self._runs.limit, pool)
        try:
            await lease.__aenter__()
        except BaseException as exc:
            self._runs.release(None)
            if isinstance(exc, LeaseTimeout):
                raise unsent(
                    call,
                    f"no fleet run lease for company {self._company} within {pool:g}s "
                    f"({exc.reason})",
                ) from None
            raise
        self._lease = lease

    async def _end_run(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Give back a run's fleet lease, if it took one, then its run slot."""
        assert self._runs is not None
        lease, self._lease = self._lease, None
        try:
            if lease is not None:
                await lease.__aexit__(exc_type, exc, traceback)
        finally:
            self._runs.release(None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._limits.connections.release(self._company)
        if self._runs is not None:  # a read holds no run slot: no call on its path
            await self._end_run(exc_type, exc, traceback)


async def _wait_for_gate(
    gate: RateGate, call: Call[object], key: Hashable, pool: float | None
) -> None:
    """Wait while the server's rate limit is spent; ``RateLimitError`` when the wait
    would be longer than ``MAX_RETRY_AFTER`` or the call's pool timeout."""
    limit = _retry.MAX_RETRY_AFTER if pool is None else min(_retry.MAX_RETRY_AFTER, pool)
    try:
        await gate.wait(key, limit)
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
