"""The retry policy, in one place: what may be retried, and after how long."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_INITIAL",
    "MAX_RETRY_AFTER",
    "RETRYABLE_READ_STATUSES",
    "UNPROCESSED_STATUSES",
    "after_retry_after",
    "backoff",
    "parse_retry_after",
]

BACKOFF_INITIAL = 0.5
"""Seconds before the first retry; doubled for each further one."""
BACKOFF_CAP = 8.0
"""The longest wait between two attempts, unless the server asks for longer."""
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this is not waited for: ``RateLimitError`` is raised."""

RETRYABLE_READ_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses after which a read (an idempotent call) is sent again."""
UNPROCESSED_STATUSES = frozenset({429, 503})
"""Statuses that say the server did not process the request: even a run may be sent
again after one of them."""


def backoff(retry: int, rng: random.Random | None = None) -> float:
    """The wait before retry number ``retry`` (1 is the first): exponential from
    ``BACKOFF_INITIAL`` to ``BACKOFF_CAP``, with jitter (between half and all of it)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_INITIAL * 2.0 ** min(retry - 1, 32))
    return ceiling * (0.5 + 0.5 * (rng.random() if rng is not None else random.random()))


def after_retry_after(seconds: float, rng: random.Random | None = None) -> float:
    """The wait after a ``Retry-After`` of ``seconds``: a little more, spread at random,
    so the callers it held back do not all come back in the same instant."""
    spread = 0.05 + 0.1 * seconds
    return seconds + spread * (rng.random() if rng is not None else random.random())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date);
    ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)
