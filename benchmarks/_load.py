"""Driving calls at a fixed concurrency and measuring the client process's CPU time."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable

import attrs


@attrs.frozen
class Batch:
    """``calls`` made by ``concurrency`` workers: client CPU seconds (this process only,
    every thread included) and wall seconds."""

    calls: int
    errors: int
    cpu: float
    wall: float
    first_error: str = ""

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.calls if self.calls else float("nan")


async def drive(
    call: Callable[[], Awaitable[None]], calls: int, concurrency: int, time_limit: float
) -> Batch:
    """Make up to ``calls`` calls with ``concurrency`` workers, stopping early after
    ``time_limit`` seconds; errors are counted, not raised."""
    remaining = calls
    done = 0
    errors: list[BaseException] = []
    stop_at = time.monotonic() + time_limit

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0 and time.monotonic() < stop_at:
            remaining -= 1
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
            done += 1

    gc.collect()  # garbage of the previous contender is not this one's CPU
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    first = f"{type(errors[0]).__name__}: {errors[0]}"[:300] if errors else ""
    return Batch(calls=done, errors=len(errors), cpu=cpu, wall=wall, first_error=first)
