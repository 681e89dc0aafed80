"""Limits shared by every client on one transport: the server's rate-limit budget, and
how many runs one company may have in flight at once."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping

import anyio

from . import _retry
from ._waits import Deadlines

__all__ = ["GateClosed", "RateGate", "RunSlots", "Slots"]


class _Waiter:
    """A waiter off asyncio (trio): an event, and whether it got its slot or gave up."""

    __slots__ = ("event", "gave_up", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False
        self.gave_up = False

    def done(self) -> bool:
        return self.granted or self.gave_up

    def set_result(self, _: None) -> None:
        self.granted = True
        self.event.set()


_Line = deque["asyncio.Future[None] | _Waiter"]


class Slots:
    """A semaphore whose waits are bounded by a timeout and fair between groups.

    Waiters of one group (a company) are served in order of arrival, and groups take
    turns: a released slot goes to the longest waiter of the next group in line, so a
    burst of one company's calls holds another company's next call back by at most one
    slot per waiting group, not by the whole burst.

    A group can also be *announced* before it asks (a company whose calls wait for
    their token): while an announced group holds no slot, one free slot is kept for it,
    so that another group's burst cannot take every slot just before it asks. Only the
    free slots are kept, never more than one per such group, and none while the group
    is *paused* (one of its calls backs off or waits for the server's rate limit, or
    the fetch of the token its calls wait for does).

    With many more callers than slots most calls wait here, so waits are bounded the
    cheap way (``_waits.Deadlines``): on asyncio a waiter is a bare future under one
    shared timer; off asyncio an anyio event under ``fail_after``. Waiters that gave up
    stay in their line until a release passes them.
    """

    __slots__ = (
        "_announced",
        "_deadlines",
        "_free",
        "_held",
        "_kept",
        "_paused",
        "_queues",
    )

    def __init__(self, limit: int) -> None:
        self._free = limit
        # Per group, its waiters in order of arrival; the groups in their turn order.
        self._queues: dict[Hashable, _Line] = {}
        self._held: dict[Hashable, int] = {}  # slots held, per group holding any
        self._announced: dict[Hashable, int] = {}  # announcements, per group with any
        self._paused: dict[Hashable, int] = {}  # pauses, per group with any
        self._kept = 0  # free slots kept: one per announced, unpaused group holding none
        self._deadlines = Deadlines()

    @property
    def free(self) -> int:
        """Slots nobody holds (some may be kept for announced groups)."""
        return self._free

    def _keeps_for(self, group: Hashable) -> bool:
        """Whether a free slot is kept for ``group``."""
        return group in self._announced and group not in self._held and group not in self._paused

    def _may_take(self, group: Hashable) -> bool:
        """Whether ``group`` may take a slot now (beyond those kept for others)."""
        free = self._free
        return free > self._kept or (free > 0 and self._keeps_for(group))

    def _count(self, counts: dict[Hashable, int], group: Hashable, step: int) -> None:
        """Count ``group`` up or down in ``counts`` (announcements or pauses), then the
        slot kept for it; serve whoever may take a slot now."""
        before = self._keeps_for(group)
        count = counts.get(group, 0) + step
        if count > 0:
            counts[group] = count
        elif count == 0:
            del counts[group]
        else:
            raise RuntimeError(f"{group!r} was undone more often than done")
        kept = self._keeps_for(group)
        if kept != before:
            self._kept += 1 if kept else -1
            if not kept or group in self._queues:
                self._serve()

    def announce(self, group: Hashable) -> None:
        """A call of ``group`` is under way and will ask for a slot: while ``group``
        holds none, keep one free for it. Undone by ``withdraw``."""
        self._count(self._announced, group, 1)

    def withdraw(self, group: Hashable) -> None:
        """Undo one ``announce`` (the call ended)."""
        self._count(self._announced, group, -1)

    def pause(self, group: Hashable) -> None:
        """A call of ``group`` (or the token fetch its calls wait for) sleeps before it
        can ask: keep no slot for ``group`` until ``resume``."""
        self._count(self._paused, group, 1)

    def resume(self, group: Hashable) -> None:
        """Undo one ``pause``."""
        self._count(self._paused, group, -1)

    async def acquire(self, timeout: float | None, group: Hashable = None) -> None:
        """Take a slot: at once when one may be taken (no scheduling round trip), else
        wait, in ``group``'s line, at most ``timeout`` seconds (``TimeoutError``)."""
        if self._may_take(group):  # then no waiter may: each is served as it may
            self._free -= 1
            self._take(group)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            await self._wait_off_asyncio(timeout, group)
            return
        future: asyncio.Future[None] = loop.create_future()
        self._line(group).append(future)
        if timeout is None:
            await self._wait(future, group)
            return
        self._deadlines.add(loop, timeout, future)
        try:
            await self._wait(future, group)
        finally:
            self._deadlines.settled()

    async def _wait(self, future: asyncio.Future[None], group: Hashable) -> None:
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._give_back(group)  # granted as the wait was cancelled: pass it on
            raise

    def _line(self, group: Hashable) -> _Line:
        line = self._queues.get(group)
        if line is None:
            line = self._queues[group] = deque()
        return line

    async def _wait_off_asyncio(self, timeout: float | None, group: Hashable) -> None:
        waiter = _Waiter()
        self._line(group).append(waiter)
        try:
            with anyio.fail_after(timeout):  # None: no deadline
                await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._give_back(group)
            waiter.gave_up = True
            raise

    def release(self, group: Hashable = None) -> None:
        """Give back a slot taken for ``group``: to the longest waiter of the next group
        in line that may take it (``group``, having had its turn, goes to the back)."""
        queues = self._queues
        line = queues.get(group)
        if line is not None and len(queues) > 1:
            del queues[group]
            queues[group] = line
        self._give_back(group)

    def _take(self, group: Hashable) -> None:
        held = self._held.get(group, 0)
        if not held and self._keeps_for(group):
            self._kept -= 1  # it takes the slot kept for it
        self._held[group] = held + 1

    def _give_back(self, group: Hashable) -> None:
        """``group`` no longer holds one of its slots: serve the next waiter with it."""
        held = self._held[group] - 1
        if held:
            self._held[group] = held
        else:
            del self._held[group]
            if self._keeps_for(group):
                self._kept += 1
        self._free += 1
        self._serve()

    def _serve(self) -> None:
        """Give free slots to waiters that may take them: the longest waiter of the
        first group in line, or, while the free slots are all kept for announced groups,
        of the first such group in line."""
        queues = self._queues
        while queues and self._free > 0:
            if self._free > self._kept:
                group = next(iter(queues))
            else:
                group = next((g for g in queues if self._may_take(g)), _NOBODY)
                if group is _NOBODY:
                    break
            line = queues[group]
            waiter = line.popleft()
            if not line:
                del queues[group]
            if waiter.done():  # gave up waiting
                continue
            if line:  # served: to the back of the line of groups
                del queues[group]
                queues[group] = line
            try:
                waiter.set_result(None)
            except RuntimeError:  # its event loop is closed: nobody will take it
                continue
            self._free -= 1
            self._take(group)
        if not queues:
            self._deadlines.disarm()


_NOBODY = object()


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
        self._slots: dict[Hashable, Slots] = {}

    def for_key(self, key: Hashable) -> Slots:
        """The slots of ``key`` (a company)."""
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = Slots(self.limit)
        return slots
