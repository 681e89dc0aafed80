"""_retry.py: the retry decision, back-off bounds and Retry-After parsing (pure
functions)."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smartconnect_async._retry import (
    BACKOFF_CAP,
    BACKOFF_INITIAL,
    MAX_RETRY_AFTER,
    RETRYABLE_READ_STATUSES,
    UNPROCESSED_STATUSES,
    after_retry_after,
    backoff,
    parse_retry_after,
    retry_delay,
)
from smartconnect_async._wire import Call
from smartconnect_async.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseParseError,
    RunOutcomeUnknown,
    SmartConnectError,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


def test_policy_constants() -> None:
    assert BACKOFF_INITIAL == 0.5
    assert BACKOFF_CAP == 8.0
    assert MAX_RETRY_AFTER == 60.0
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_READ_STATUSES
    assert frozenset({429, 503}) == UNPROCESSED_STATUSES


@pytest.mark.parametrize(
    ("retry", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (30, 8.0)]
)
def test_backoff_doubles_up_to_the_cap(retry: int, ceiling: float) -> None:
    assert backoff(retry, _Fixed(0.0)) == ceiling / 2
    assert backoff(retry, _Fixed(0.999999)) == pytest.approx(ceiling, rel=1e-5)
    assert backoff(retry, _Fixed(0.5)) == ceiling * 0.75


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=1000), st.randoms(use_true_random=False))
def test_backoff_bounds(retry: int, rng: random.Random) -> None:
    ceiling = min(BACKOFF_CAP, BACKOFF_INITIAL * 2 ** (retry - 1))
    assert ceiling / 2 <= backoff(retry, rng) <= ceiling


def test_backoff_default_rng_is_jittered_within_bounds() -> None:
    waits = {backoff(3) for _ in range(50)}
    assert all(1.0 <= w <= 2.0 for w in waits)
    assert len(waits) > 1


@pytest.mark.parametrize(
    ("seconds", "longest"), [(0.0, 0.05), (1.0, 1.15), (10.0, 11.05), (60.0, 66.05)]
)
def test_after_retry_after_waits_at_least_the_servers_time(seconds: float, longest: float) -> None:
    assert after_retry_after(seconds, _Fixed(0.0)) == seconds
    assert after_retry_after(seconds, _Fixed(0.999999)) == pytest.approx(longest, rel=1e-5)


def test_after_retry_after_spreads_the_waiters() -> None:
    waits = {after_retry_after(2.0) for _ in range(50)}
    assert all(2.0 <= w <= 2.25 for w in waits)
    assert len(waits) > 1


@pytest.mark.parametrize("retry", [1025, 5000])
def test_backoff_never_overflows(retry: int) -> None:
    assert BACKOFF_CAP / 2 <= backoff(retry) <= BACKOFF_CAP


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("120", 120.0),
        ("-3", 0.0),  # a negative wait is no wait
    ],
)
def test_parse_retry_after_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_parse_retry_after_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, NOW) == 90.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", NOW) == 30.0


def test_parse_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 31 Dec 2025 12:00:00 GMT", NOW) == 0.0


def test_parse_retry_after_date_without_zone_is_utc() -> None:
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 -0000", NOW) == 60.0


def test_parse_retry_after_uses_the_current_time_by_default() -> None:
    soon = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=100), usegmt=True)
    seconds = parse_retry_after(soon)
    assert seconds is not None
    assert 95 <= seconds <= 100


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "-inf", "1e400", "12 s"])
def test_parse_retry_after_unreadable_is_none(header: str | None) -> None:
    assert parse_retry_after(header, NOW) is None


# ---- the retry decision -------------------------------------------------------------

READ: Call[object] = Call("GetMapList", bytes)
RUN: Call[object] = Call("RunMap", bytes, idempotent=False, is_run=True)


def _status(status: int, retry_after: float | None = None) -> APIStatusError:
    return APIStatusError(
        "failed",
        endpoint="X",
        status_code=status,
        request_id=None,
        body="",
        retry_after=retry_after,
    )


def _outcome_unknown() -> RunOutcomeUnknown:
    return RunOutcomeUnknown("unknown", endpoint="RunMap", map_key=None, sent_at=NOW, attempt=1)


@pytest.mark.parametrize(
    ("call", "error", "retried"),
    [
        (READ, APIConnectionError("reset", endpoint="X", sent=True), True),
        (READ, APITimeoutError("read timeout", endpoint="X", sent=True), True),
        (RUN, APIConnectionError("refused", endpoint="X", sent=False), True),
        (RUN, APIConnectionError("reset", endpoint="X", sent=True), False),
        (RUN, APITimeoutError("read timeout", endpoint="X", sent=True), False),
        *((READ, _status(status), True) for status in sorted(RETRYABLE_READ_STATUSES)),
        *((READ, _status(status), False) for status in (400, 401, 403, 404, 501)),
        *((RUN, _status(status), True) for status in sorted(UNPROCESSED_STATUSES)),
        *((RUN, _status(status), False) for status in (400, 408, 500, 502, 504)),
        (RUN, _outcome_unknown(), False),
        (READ, ResponseParseError("unreadable", endpoint="X"), False),
    ],
)
def test_what_is_retried(call: Call[object], error: SmartConnectError, retried: bool) -> None:
    delay = retry_delay(call, error, 0, 3)
    if retried:
        assert delay is not None
        assert BACKOFF_INITIAL / 2 <= delay <= BACKOFF_INITIAL
    else:
        assert delay is None


def test_no_retry_past_the_allowed_number() -> None:
    error = _status(503)
    assert retry_delay(READ, error, 2, 3) is not None
    assert retry_delay(READ, error, 3, 3) is None
    assert retry_delay(READ, error, 0, 0) is None


def test_retry_after_is_honoured_up_to_the_longest_wait() -> None:
    delay = retry_delay(RUN, _status(429, retry_after=2.0), 0, 3)
    assert delay is not None
    assert 2.0 <= delay <= 2.0 + 0.05 + 0.1 * 2.0
    assert retry_delay(READ, _status(503, retry_after=MAX_RETRY_AFTER + 1), 0, 3) is None


def test_no_wait_ends_past_the_call_s_deadline() -> None:
    error = _status(503, retry_after=2.0)
    assert retry_delay(READ, error, 0, 3, deadline=time.monotonic() + 1.0) is None
    assert retry_delay(READ, error, 0, 3, deadline=time.monotonic() + 10.0) is not None
    assert retry_delay(READ, _status(500), 0, 3, deadline=time.monotonic() + 0.1) is None
    assert retry_delay(READ, _status(500), 0, 3, deadline=None) is not None
