"""A fixed-window rate limit on the emulator's clock, reported in X-Rate-Limit-* headers."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls per ``period`` seconds (all API calls together)."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and period > 0, got {self}")

    @classmethod
    def parse(cls, spec: RateLimit | str | tuple[int, float]) -> RateLimit:
        """From ``"N/SECONDS"`` (e.g. ``"100/60"``), ``(N, SECONDS)`` or a RateLimit."""
        if isinstance(spec, RateLimit):
            return spec
        if isinstance(spec, str):
            count, sep, seconds = spec.partition("/")
            try:
                return cls(int(count), float(seconds) if sep else 1.0)
            except ValueError:
                raise ValueError(f"a rate limit looks like 'N/SECONDS', got {spec!r}") from None
        limit, period = spec
        return cls(int(limit), float(period))


@dataclass(frozen=True)
class RateState:
    """One call's view of the limit: the header values and whether the call may proceed."""

    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """``X-Rate-Limit-*`` headers, plus ``Retry-After`` when the call is refused."""
        out = {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(self.remaining),
            "X-Rate-Limit-Reset": str(self.reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.reset)
        return out


class RateLimiter:
    """Counts calls in fixed windows that start at the first call after the last window."""

    def __init__(self, rate: RateLimit) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._start: datetime | None = None
        self._used = 0

    def take(self, now: datetime) -> RateState:
        """Count one call at ``now``."""
        period = timedelta(seconds=self.rate.period)
        with self._lock:
            if self._start is None or now >= self._start + period or now < self._start:
                self._start, self._used = now, 0
            allowed = self._used < self.rate.limit
            if allowed:
                self._used += 1
            left = (self._start + period - now).total_seconds()
            return RateState(
                allowed, self.rate.limit, self.rate.limit - self._used, max(1, math.ceil(left))
            )
