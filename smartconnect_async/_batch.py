"""Running many calls at once with a bound on concurrency, keeping every outcome."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import anyio

__all__ = ["gather_outcomes", "listed"]

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
logger = logging.getLogger("smartconnect_async")


def listed(items: Iterable[I], what: str) -> list[I]:
    """``items`` as a list. One item given alone (a string, a ``MapInfo``, a request) is
    refused: a string would be taken character by character, as so many map names."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError(
            f"{what} takes an iterable of items (a list, say), not a {type(items).__name__}"
        )
    return list(items)


async def gather_outcomes(
    items: Sequence[I],
    work: Callable[[I], Awaitable[R]],
    *,
    concurrency: int,
    on_result: Callable[[int, I, R | Exception], object] | None = None,
) -> list[R | Exception]:
    """``work(item)`` for every item, at most ``concurrency`` at a time; the results in
    input order, each the value or the exception it raised (cancellation is not caught).
    An exception raised by ``on_result`` is logged and does not stop the batch."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1, not {concurrency!r}")
    outcomes: list[R | Exception | None] = [None] * len(items)
    pending = iter(range(len(items)))

    async def report(index: int, outcome: R | Exception) -> None:
        if on_result is None:
            return
        try:
            returned = on_result(index, items[index], outcome)
            if inspect.isawaitable(returned):
                await returned
        except Exception:
            logger.exception("on_result raised for item %d; the batch goes on", index)

    async def worker() -> None:
        for index in pending:
            outcome: R | Exception
            try:
                outcome = await work(items[index])
            except Exception as exc:
                outcome = exc
            outcomes[index] = outcome
            await report(index, outcome)

    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, len(items))):
            group.start_soon(worker)
    return outcomes  # type: ignore[return-value]
