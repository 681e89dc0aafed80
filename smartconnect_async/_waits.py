"""Bounded waits that stay cheap when thousands of callers wait at once.

On asyncio a waiter is a bare future, and one timer, armed for the earliest deadline
(a heap of them), serves every waiter: with many callers waiting together, a timer (or
``asyncio.timeout``, or an anyio cancel scope) per waiter costs more than the wait
itself. Off asyncio (trio) a wait is an anyio event under ``fail_after``.

A latch that is set wakes its asyncio waiters one per turn of the event loop, in order
of arrival, taking turns with the other latches set meanwhile, so that a crowd woken at
once does not hold the loop: what else is ready (answers already in the sockets,
connections just opened) runs between any two of them. After ``PACED_FOR`` seconds
twice as many wake each turn, so a busy loop still wakes a large crowd soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import deque
from collections.abc import Iterator

import anyio

__all__ = ["Deadlines", "Latch"]


class Deadlines:
    """Deadlines of waits on asyncio futures, served by one timer: a future still
    pending when its deadline passes gets ``TimeoutError``."""

    __slots__ = ("_heap", "_sequence", "_timer", "_timer_at", "_timer_loop", "_waiting")

    def __init__(self) -> None:
        # (deadline in loop time, arrival number, future): a heap, earliest first.
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = 0
        self._waiting = 0  # futures added and not yet settled
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        """Entries in the heap (those of futures long done included, until swept)."""
        return len(self._heap)

    def add(
        self, loop: asyncio.AbstractEventLoop, timeout: float, future: asyncio.Future[None]
    ) -> None:
        """Fail ``future`` with ``TimeoutError`` if it is not done within ``timeout``
        seconds. Call ``settled`` once its wait is over, however it ended."""
        heap = self._heap
        if len(heap) > 2 * self._waiting + 64:
            # Mostly futures long done: keep the heap as small as the crowd.
            heap[:] = [entry for entry in heap if not entry[2].done()]
            heapq.heapify(heap)
        deadline = loop.time() + timeout
        self._sequence += 1
        heapq.heappush(heap, (deadline, self._sequence, future))
        self._arm(loop, deadline)
        self._waiting += 1

    def settled(self) -> None:
        """A wait given to ``add`` is over."""
        self._waiting -= 1

    def disarm(self) -> None:
        """Nobody waits any more: stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Make sure the timer goes off by ``deadline``."""
        if self._timer is not None:
            if self._timer_loop is loop and self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire)
        self._timer_at, self._timer_loop = deadline, loop

    def _expire(self) -> None:
        """Fail the waits whose deadline has passed; arm the timer for the next one."""
        loop = self._timer_loop
        assert loop is not None
        self._timer = None
        due = max(self._timer_at, loop.time())  # a timer may go off a little early
        heap = self._heap
        while heap and (heap[0][0] <= due or heap[0][2].done()):
            future = heapq.heappop(heap)[2]
            if not future.done():
                with contextlib.suppress(RuntimeError):  # its event loop is closed
                    future.set_exception(TimeoutError())
        if heap:
            self._arm(loop, heap[0][0])


class Latch:
    """A one-shot event: ``set`` wakes every waiter, and a wait may be bounded
    (``TimeoutError``) for the price of a heap entry."""

    __slots__ = ("_deadlines", "_event", "_futures", "is_set")

    def __init__(self) -> None:
        self.is_set = False
        # The waits under way, in order of arrival (a dict: set wakes them in order).
        self._futures: dict[asyncio.Future[None], None] = {}
        self._deadlines = Deadlines()
        self._event: anyio.Event | None = None  # for waiters off asyncio

    def set(self) -> None:
        """Wake every waiter, now and later: on asyncio the first now, the others in
        the loop's next turns (see the module), in order of arrival and in turn with
        other latches' waiters (their deadlines no longer apply)."""
        if self.is_set:
            return
        self.is_set = True
        waiting = iter(list(self._futures))
        self._futures.clear()
        self._deadlines.disarm()
        _take_turns(waiting)
        if self._event is not None:
            self._event.set()

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until ``set``, at most ``timeout`` seconds (``TimeoutError``)."""
        if self.is_set:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._event is None:
                self._event = anyio.Event()
            with anyio.fail_after(timeout):  # None: no deadline
                await self._event.wait()
            return
        future: asyncio.Future[None] = loop.create_future()
        self._futures[future] = None
        if timeout is not None:
            self._deadlines.add(loop, timeout, future)
        try:
            await future
        finally:
            self._futures.pop(future, None)  # no pile of waits that gave up
            if timeout is not None:
                self._deadlines.settled()


PACED_FOR = 0.1
"""Seconds for which, once a latch of an event loop is set, the loop's waiting crowds
wake one waiter per turn; after that twice as many each turn, so that a loop whose turns
are long (busy with other work) still wakes a crowd of any size within a few more
turns."""


class _Turns:
    """The waiters of an event loop's set latches not woken yet, latch after latch."""

    __slots__ = ("per_turn", "queue", "since")

    def __init__(self, since: float) -> None:
        self.queue: deque[Iterator[asyncio.Future[None]]] = deque()
        self.since = since
        self.per_turn = 1


_waking: dict[asyncio.AbstractEventLoop, _Turns] = {}


def _wake_one(waiting: Iterator[asyncio.Future[None]]) -> asyncio.Future[None] | None:
    """Wake the first of ``waiting`` still waiting and return it (None: nobody left)."""
    for future in waiting:
        if future.done():
            continue  # cancelled, or timed out just before the latch was set
        try:
            future.set_result(None)
        except RuntimeError:
            continue  # its event loop is closed
        return future
    return None


def _take_turns(waiting: Iterator[asyncio.Future[None]]) -> None:
    """Wake the first of ``waiting`` now and queue the rest for the turns of its loop."""
    first = _wake_one(waiting)
    if first is None:
        return
    loop = first.get_loop()
    turns = _waking.get(loop)
    if turns is None:
        for other in list(_waking):  # a copy: loops in other threads add their own
            if other.is_closed():
                _waking.pop(other, None)  # closed before its turns ran: nobody to wake
        try:
            loop.call_soon(_next_turn, loop)
        except RuntimeError:
            return  # its loop is closed: nobody there is left to wake
        turns = _waking[loop] = _Turns(loop.time())
    turns.queue.append(waiting)


def _next_turn(loop: asyncio.AbstractEventLoop) -> None:
    """One turn of ``loop``: wake the next waiters, one latch's after another's."""
    turns = _waking[loop]
    queue = turns.queue
    if loop.time() - turns.since > PACED_FOR:
        turns.per_turn *= 2
    for _ in range(turns.per_turn):
        if not queue:
            break
        waiting = queue.popleft()
        if _wake_one(waiting) is not None:
            queue.append(waiting)
    if queue:
        loop.call_soon(_next_turn, loop)
    else:
        del _waking[loop]
