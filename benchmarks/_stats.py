"""Medians and ranges, round-robin orders, bounded round loops and the run's checks."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import attrs

T = TypeVar("T")


@attrs.frozen
class Summary:
    """The median and the min–max range of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        data = sorted(values)
        if not data:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(data), data[0], data[-1], len(data))

    def show(self, scale: float = 1.0, digits: int = 0) -> str:
        """``median [low–high]``, each multiplied by ``scale``."""
        if self.n == 0:
            return "–"
        m, lo, hi = (f"{v * scale:,.{digits}f}" for v in (self.median, self.low, self.high))
        return m if self.n == 1 else f"{m} [{lo}–{hi}]"


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """``items`` starting at ``turn`` (mod its length): the round-robin order of a round,
    so no contender always runs first or last."""
    if not items:
        return []
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def rounds(count: int, budget: float, what: str) -> Iterator[int]:
    """Round numbers 0..count-1, stopping early (after at least one round) once
    ``budget`` seconds have passed."""
    start = time.monotonic()
    for number in range(count):
        if number and time.monotonic() - start > budget:
            log(f"  {what}: time budget of {budget:.0f}s spent after {number} round(s)")
            return
        yield number


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@attrs.define
class Checks:
    """Correctness checks of the run (counters, row counts, errors): not timings."""

    results: list[tuple[str, bool, str]] = attrs.field(factory=list)

    def expect(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, ok, detail))
        if not ok:
            log(f"  CHECK FAILED: {name}: {detail}")
        return ok

    def equal(self, name: str, actual: object, expected: object) -> bool:
        return self.expect(name, actual == expected, f"got {actual!r}, expected {expected!r}")

    @property
    def failed(self) -> list[tuple[str, bool, str]]:
        return [r for r in self.results if not r[1]]
