"""The retry policy, in one place: what may be retried, and after how long
(``retry_delay``)."""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ._wire import UNPROCESSED_STATUSES, Call
from .exceptions import APIConnectionError, APIStatusError, RunOutcomeUnknown, SmartConnectError

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_INITIAL",
    "MAX_RETRY_AFTER",
    "RETRYABLE_READ_STATUSES",
    "UNPROCESSED_STATUSES",
    "after_retry_after",
    "backoff",
    "parse_retry_after",
    "retry_delay",
]

BACKOFF_INITIAL = 0.5
"""Seconds before the first retry; doubled for each further one."""
BACKOFF_CAP = 8.0
"""The longest wait between two attempts, unless the server asks for longer."""
MAX_RETRY_AFTER = 60.0
"""A ``Retry-After`` longer than this is not waited for: ``RateLimitError`` is raised."""

RETRYABLE_READ_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses after which a read (an idempotent call) is sent again."""


# UNPROCESSED_STATUSES (429, 503: not processed, so even a run may be sent again) is part
# of the run-outcome rule, in _wire.
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


def retry_delay(
    call: Call[object],
    error: SmartConnectError,
    retries: int,
    allowed: int,
    deadline: float | None = None,
) -> float | None:
    """Seconds to wait before sending ``call`` again after ``error``, or ``None`` not to
    (``retries`` made so far, ``allowed`` in all).

    A read is retried after a failure to connect or to read, and after the statuses of
    ``RETRYABLE_READ_STATUSES``; a call that is not idempotent only when the server
    provably did not process it (not sent, 429, 503). ``Retry-After`` is honoured up to
    ``MAX_RETRY_AFTER``: longer, the error is the caller's to decide on. No wait ends
    past ``deadline`` (``time.monotonic()``: the end of the call's total timeout).
    """
    delay = _delay(call, error, retries, allowed)
    if delay is None or (deadline is not None and time.monotonic() + delay > deadline):
        return None
    return delay


def _delay(
    call: Call[object], error: SmartConnectError, retries: int, allowed: int
) -> float | None:
    if isinstance(error, RunOutcomeUnknown) or retries >= allowed:
        return None
    if isinstance(error, APIConnectionError):
        if not call.idempotent and error.sent:
            return None
    elif isinstance(error, APIStatusError):
        statuses = RETRYABLE_READ_STATUSES if call.idempotent else UNPROCESSED_STATUSES
        if error.status_code not in statuses:
            return None
        if error.retry_after is not None:
            if error.retry_after > MAX_RETRY_AFTER:
                return None
            return after_retry_after(error.retry_after)
    else:
        return None
    return backoff(retries + 1)
