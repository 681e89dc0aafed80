"""_tokens.py: password hashing, token issue time, expiry arithmetic, the token store and
the single-flight token cache (driven directly, with a fake fetch and clock); a call's
wait for the token another call fetches (through the public client)."""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit_support import (
    COLUMNS,
    COMPANY,
    GUID_CUSTOMERS,
    MAP_LIST_JSON,
    TOKEN,
    TOKEN_EXPIRES,
    TOKEN_ISSUED,
    MutableClock,
    StalledToken,
    client,
    columns_answer,
    independent_hash,
    mock_api,
)

from smartconnect_async import (
    APITimeoutError,
    Column,
    MemoryTokenStore,
    Timeout,
    Token,
    TokenKey,
    TokenStore,
    hash_password,
)
from smartconnect_async._tokens import (
    CLOCK_SKEW,
    MANDATORY_REFRESH,
    RefreshLocking,
    TokenCache,
    TokenWaitTimeout,
    add_months,
    make_token,
    token_issue_time,
)

UTC = timezone.utc
KEY = TokenKey.of("https://sc.example.com/API", "ACME-01", "user@example.com")


def _token_with_stamp(stamp: str, email: str = "USER@EXAMPLE.COM") -> str:
    body = f"aGFzaA==#B16BB353-51E8-42CA-81D1-5EBB04AB1349#C338CEB5-0D97-4E57#{email}#{stamp}"
    return base64.b64encode(body.encode()).decode()


def _token(value: str, issued: datetime, months: int = 3) -> Token:
    return Token(
        value=value,
        company_id="ACME-01",
        email="user@example.com",
        issued_at=issued,
        expires_at=add_months(issued, months),
    )


# ---- hash_password ------------------------------------------------------------------


@pytest.mark.parametrize("password", ["S3cret+pass/word=", "pässwörd ✓", "", "a:b:c"])
def test_hash_password_matches_protocol_hmac(password: str) -> None:
    assert hash_password(password) == independent_hash(password)


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        # printf '%s' "$pw:6clDgmNok3WtR8GKYW6N" |
        #   openssl dgst -sha256 -hmac 6clDgmNok3WtR8GKYW6N -binary | base64
        ("password", "COWogx6YuLayvG+9i75JdbsDEI/b5UhxIl8LOi0lfjY="),
        ("S3cret+pass/word=", "pwiLmun3R9nY727hijd3p1WRVdPl+GVepfmKVI/++6k="),
    ],
)
def test_hash_password_known_vectors(password: str, expected: str) -> None:
    assert hash_password(password) == expected


@settings(deadline=None)
@given(st.text())
def test_hash_password_any_text(password: str) -> None:
    assert hash_password(password) == independent_hash(password)


# ---- token_issue_time ---------------------------------------------------------------


def test_reference_token_issue_time() -> None:
    assert token_issue_time(TOKEN) == TOKEN_ISSUED


@pytest.mark.parametrize(
    ("fraction", "micro"),
    [
        ("8", 800_000),
        ("86", 860_000),
        ("866", 866_000),
        ("8661", 866_100),
        ("86612", 866_120),
        ("866123", 866_123),
        ("8661239", 866_123),
    ],
)
def test_issue_time_fraction_digits(fraction: str, micro: int) -> None:
    token = _token_with_stamp(f"2020-10-02T08:05:15.{fraction}")
    assert token_issue_time(token) == datetime(2020, 10, 2, 8, 5, 15, micro, tzinfo=UTC)


def test_issue_time_without_fraction_and_zone_is_utc() -> None:
    issued = token_issue_time(_token_with_stamp("2021-03-04T05:06:07"))
    assert issued == datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert issued is not None
    assert issued.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2021-03-04T05:06:07Z", datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)),
        ("2021-03-04T05:06:07+02:00", datetime(2021, 3, 4, 3, 6, 7, tzinfo=UTC)),
        ("2021-03-04T05:06:07.5-0130", datetime(2021, 3, 4, 6, 36, 7, 500_000, tzinfo=UTC)),
    ],
)
def test_issue_time_with_zone_is_converted_to_utc(stamp: str, expected: datetime) -> None:
    assert token_issue_time(_token_with_stamp(stamp)) == expected


def test_issue_time_accepts_token_without_padding() -> None:
    assert token_issue_time(TOKEN.rstrip("=")) == TOKEN_ISSUED


@pytest.mark.parametrize(
    "value",
    [
        "not a token",
        "ab+cd/ef+gh/ij==",
        "%%%%",
        base64.b64encode(b"only#three#parts").decode(),
        _token_with_stamp("yesterday"),
        _token_with_stamp("2020-02-30T00:00:00"),  # no such day
        _token_with_stamp("2020-10-02T25:00:00"),
        _token_with_stamp("2020-10-02T08:05:15.866 trailing"),
        base64.b64encode(b"\xff\xfe#a#b#c#2020-10-02T08:05:15").decode(),  # not UTF-8
        "",
    ],
)
def test_issue_time_of_undecodable_token_is_none(value: str) -> None:
    assert token_issue_time(value) is None


@settings(deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.none()
    ),
    st.integers(min_value=1, max_value=7),
)
def test_issue_time_round_trip(moment: datetime, digits: int) -> None:
    fraction = f"{moment.microsecond:06d}0"[:digits]
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + fraction
    expected_micro = int(fraction.ljust(6, "0")[:6])
    parsed = token_issue_time(_token_with_stamp(stamp))
    assert parsed == moment.replace(microsecond=expected_micro, tzinfo=UTC)


# ---- add_months ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (datetime(2020, 11, 30, 9, 30, tzinfo=UTC), datetime(2021, 2, 28, 9, 30, tzinfo=UTC)),
        (datetime(2023, 11, 30, 9, 30, tzinfo=UTC), datetime(2024, 2, 29, 9, 30, tzinfo=UTC)),
        (datetime(2020, 10, 31, tzinfo=UTC), datetime(2021, 1, 31, tzinfo=UTC)),
        (datetime(2021, 12, 31, tzinfo=UTC), datetime(2022, 3, 31, tzinfo=UTC)),
        (datetime(2022, 5, 31, tzinfo=UTC), datetime(2022, 8, 31, tzinfo=UTC)),
        (datetime(2022, 6, 30, tzinfo=UTC), datetime(2022, 9, 30, tzinfo=UTC)),
        (datetime(2022, 3, 31, tzinfo=UTC), datetime(2022, 6, 30, tzinfo=UTC)),
        (TOKEN_ISSUED, TOKEN_EXPIRES),
    ],
)
def test_add_three_calendar_months(start: datetime, expected: datetime) -> None:
    assert add_months(start, 3) == expected


@settings(deadline=None)
@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9000, 1, 1)),
    st.integers(min_value=0, max_value=48),
)
def test_add_months_properties(moment: datetime, months: int) -> None:
    later = add_months(moment, months)
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months
    assert later.day <= moment.day
    assert later.time() == moment.time()
    if later.day < moment.day:  # clamped: it is the last day of its month
        assert (later + timedelta(days=1)).month != later.month


# ---- make_token ---------------------------------------------------------------------


def test_make_token_trusts_plausible_embedded_time() -> None:
    obtained = TOKEN_ISSUED + timedelta(seconds=3)
    token = make_token(TOKEN, company_id="ACME-01", email="user@x.com", obtained_at=obtained)
    assert token.value == TOKEN
    assert (token.company_id, token.email) == ("ACME-01", "user@x.com")
    assert token.issued_at == TOKEN_ISSUED
    assert token.expires_at == TOKEN_EXPIRES


def test_make_token_opaque_token_is_issued_when_obtained() -> None:
    obtained = datetime(2024, 11, 30, 12, 0, tzinfo=UTC)
    token = make_token("opaque-token", company_id="C", email="e", obtained_at=obtained)
    assert token.issued_at == obtained
    assert token.expires_at == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)


def test_make_token_obtained_time_is_converted_to_utc() -> None:
    obtained = datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    token = make_token("opaque", company_id="C", email="e", obtained_at=obtained)
    assert token.issued_at == datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    assert token.issued_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "obtained",
    [
        TOKEN_ISSUED - CLOCK_SKEW - timedelta(seconds=1),  # token claims the future
        TOKEN_ISSUED - timedelta(days=30),
        TOKEN_EXPIRES,  # already expired
        TOKEN_EXPIRES - MANDATORY_REFRESH,  # would need a refresh at once
        datetime(2026, 1, 1, tzinfo=UTC),
    ],
)
def test_make_token_distrusts_impossible_embedded_time(obtained: datetime) -> None:
    token = make_token(TOKEN, company_id="C", email="e", obtained_at=obtained)
    assert token.issued_at == obtained
    assert token.expires_at == add_months(obtained, 3)


@pytest.mark.parametrize(
    "obtained",
    [
        TOKEN_ISSUED - CLOCK_SKEW,  # a clock a little behind the server's
        TOKEN_ISSUED + timedelta(days=80),  # old but still valid
    ],
)
def test_make_token_keeps_embedded_time_within_tolerance(obtained: datetime) -> None:
    token = make_token(TOKEN, company_id="C", email="e", obtained_at=obtained)
    assert token.issued_at == TOKEN_ISSUED
    assert token.expires_at == TOKEN_EXPIRES


def test_token_is_expired() -> None:
    token = _token("t", TOKEN_ISSUED)
    assert not token.is_expired(TOKEN_EXPIRES - timedelta(microseconds=1))
    assert token.is_expired(TOKEN_EXPIRES)
    assert token.is_expired()  # the reference token expired in 2021


# ---- TokenKey and stores ------------------------------------------------------------


def test_token_key_normalises() -> None:
    key = TokenKey.of("https://sc.example.com/API/", " ACME-01 ", " User@Example.COM ")
    assert key == KEY
    assert str(key) == "https://sc.example.com/API|ACME-01|user@example.com"
    assert hash(key) == hash(KEY)


def test_token_keys_differ_per_company_user_and_url() -> None:
    assert TokenKey.of("https://sc.example.com/API", "OTHER", "user@example.com") != KEY
    assert TokenKey.of("https://sc.example.com/API", "ACME-01", "other@example.com") != KEY
    assert TokenKey.of("https://other.example.com/API", "ACME-01", "user@example.com") != KEY


@pytest.mark.anyio
async def test_memory_token_store() -> None:
    store = MemoryTokenStore()
    assert isinstance(store, TokenStore)
    token = _token("t1", TOKEN_ISSUED)
    assert await store.get(KEY) is None
    await store.set(KEY, token)
    assert await store.get(KEY) == token
    replacement = _token("t2", TOKEN_ISSUED)
    await store.set(KEY, replacement)
    assert await store.get(KEY) == replacement
    await store.delete(KEY)
    assert await store.get(KEY) is None
    await store.delete(KEY)  # deleting what is not there is fine


def test_a_non_store_is_not_a_token_store() -> None:
    class NotAStore:
        async def get(self, key: TokenKey) -> None:
            return None

    assert not isinstance(NotAStore(), TokenStore)


# ---- TokenCache ---------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeFetch:
    """A token fetch that counts its calls, can block until released, and can fail."""

    def __init__(self, clock: MutableClock) -> None:
        self.clock = clock
        self.calls = 0
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> Token:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        else:
            await anyio.sleep(0.001)  # let every concurrent caller pile up
        if self.fail is not None:
            raise self.fail
        return _token(f"token-{self.calls}", self.clock())


def _cache(clock: MutableClock, store: TokenStore | None = None) -> TokenCache:
    return TokenCache(store, refresh_margin=timedelta(days=1), clock=clock)


def _gated_cache() -> tuple[TokenCache, FakeFetch]:
    """A cache and a fetch that blocks until ``fetch.gate`` is set."""
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    fetch.gate = anyio.Event()
    return cache, fetch


def test_negative_refresh_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="refresh_margin"):
        TokenCache(refresh_margin=timedelta(seconds=-1))


@pytest.mark.anyio
async def test_cold_cache_fetches_once_for_1000_callers() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    got: list[Token] = []

    async def one() -> None:
        got.append(await cache.get(KEY, fetch))

    async with anyio.create_task_group() as tg:
        for _ in range(1000):
            tg.start_soon(one)
    assert fetch.calls == 1
    assert {t.value for t in got} == {"token-1"}
    assert len(got) == 1000
    assert await cache.store.get(KEY) == got[0]


@pytest.mark.anyio
async def test_fresh_token_is_served_from_the_store() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    first = await cache.get(KEY, fetch)
    clock.advance(timedelta(days=60))
    assert await cache.get(KEY, fetch) is first
    assert fetch.calls == 1


@pytest.mark.anyio
async def test_early_refresh_inside_margin_others_keep_old_token() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    old = await cache.get(KEY, fetch)
    clock.now = old.expires_at - timedelta(hours=12)  # inside the 1-day margin
    fetch.gate = anyio.Event()
    fetch.started = anyio.Event()
    results: list[str] = []

    async def refresher() -> None:
        results.append((await cache.get(KEY, fetch)).value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refresher)
        await fetch.started.wait()  # the early refresh is under way...
        others = [await cache.get(KEY, fetch) for _ in range(20)]
        assert {t.value for t in others} == {old.value}  # ...and nobody waits for it
        fetch.gate.set()
    assert results == ["token-2"]
    assert fetch.calls == 2
    assert (await cache.get(KEY, fetch)).value == "token-2"


@pytest.mark.anyio
async def test_failed_early_refresh_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    old = await cache.get(KEY, fetch)
    clock.now = old.expires_at - timedelta(hours=1)
    fetch.fail = RuntimeError("server down")
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert await cache.get(KEY, fetch) is old
    assert fetch.calls == 2
    assert await cache.store.get(KEY) is old
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "early token refresh failed" in warnings[0].getMessage()
    assert "ACME-01" in warnings[0].getMessage()
    assert old.value not in warnings[0].getMessage()
    # The next caller tries again.
    fetch.fail = None
    assert (await cache.get(KEY, fetch)).value == "token-3"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "before_expiry",
    [MANDATORY_REFRESH - timedelta(seconds=1), timedelta(0), -timedelta(days=3)],
    ids=["mandatory-window", "at-expiry", "expired"],
)
async def test_everyone_waits_for_one_refresh_near_or_past_expiry(
    before_expiry: timedelta,
) -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    old = await cache.get(KEY, fetch)
    clock.now = old.expires_at - before_expiry
    got: list[str] = []

    async def one() -> None:
        got.append((await cache.get(KEY, fetch)).value)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)
    assert fetch.calls == 2
    assert got == ["token-2"] * 50


@pytest.mark.anyio
async def test_failed_fetch_raises_to_waiters_and_next_caller_retries() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    fetch.fail = RuntimeError("no")
    with pytest.raises(RuntimeError, match="no"):
        await cache.get(KEY, fetch)
    assert await cache.store.get(KEY) is None
    fetch.fail = None
    assert (await cache.get(KEY, fetch)).value == "token-2"


@pytest.mark.anyio
async def test_failed_fetch_fails_every_waiter_with_one_fetch() -> None:
    # A refused GetToken (say, a wrong password) must not be repeated once per caller.
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    fetch.fail = RuntimeError("refused")
    errors: list[Exception] = []

    async def one() -> None:
        try:
            await cache.get(KEY, fetch)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    assert fetch.calls == 1
    assert len(errors) == 100
    assert all(str(e) == "refused" for e in errors)


@pytest.mark.anyio
async def test_cancelled_fetch_is_taken_over_by_a_waiter() -> None:
    cache, fetch = _gated_cache()
    got: list[Token] = []

    async def waiter() -> None:
        got.append(await cache.get(KEY, fetch))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get(KEY, fetch)

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await fetch.started.wait()
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        leader_scope.cancel()
        await anyio.sleep(0.01)
        fetch.gate.set()
    assert fetch.calls == 2  # the cancelled fetch, then the waiter's own
    assert [t.value for t in got] == ["token-2"]
    assert await cache.store.get(KEY) == got[0]


@pytest.mark.anyio
async def test_waiters_of_a_cancelled_fetch_all_follow_the_one_that_replaces_it() -> None:
    """The first caller to wake after the fetch it waited for was cancelled fetches
    again; those woken after it (one per turn of the event loop, on asyncio) take that
    fetch's outcome, even when it is already over: a refused GetToken fails them all,
    sent once, not once per caller."""
    cancelled_started = anyio.Event()
    calls = 0

    async def fetch() -> Token:
        nonlocal calls
        calls += 1
        if calls == 1:
            cancelled_started.set()
            await anyio.sleep_forever()
        raise RuntimeError("refused")  # at once: over before the next caller wakes

    cache = _cache(MutableClock(NOW))
    errors: list[str] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get(KEY, fetch)

    async def waiter() -> None:
        with pytest.raises(RuntimeError) as raised:
            await cache.get(KEY, fetch)
        errors.append(str(raised.value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await cancelled_started.wait()
        for _ in range(200):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
    assert calls == 2  # the cancelled fetch, then the one all 200 waiters share
    assert errors == ["refused"] * 200


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio wakes waiters in any order
@pytest.mark.anyio
async def test_callers_woken_after_their_token_was_refused_do_not_take_it() -> None:
    """The stored token the caller that read it had refused (a 401) before the others
    woke: they get a new one, fetched once, not the refused one."""
    store = SlowGetStore()  # the other callers pile up while the store is read
    cache, fetch, _, stale = _cache_over_stored("stale", store)
    got: list[str] = []

    async def caller() -> None:
        token = await cache.get(KEY, fetch)
        got.append(token.value)
        if token == stale:
            await cache.invalidate(KEY, token)  # the server refused it

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(caller)
    assert got == ["stale"] + ["token-1"] * 49
    assert fetch.calls == 1


@pytest.mark.anyio
async def test_a_bounded_wait_for_another_callers_fetch_gives_up_alone() -> None:
    cache, fetch = _gated_cache()
    got: list[Token] = []
    gave_up: list[TokenWaitTimeout] = []
    impatient_done = anyio.Event()

    async def leader() -> None:
        got.append(await cache.get(KEY, fetch, max_wait=0.01))  # its own fetch: not bounded

    async def impatient() -> None:
        with pytest.raises(TokenWaitTimeout) as raised:
            await cache.get(KEY, fetch, max_wait=0.05)
        gave_up.append(raised.value)
        impatient_done.set()

    async def patient() -> None:
        got.append(await cache.get(KEY, fetch, max_wait=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await fetch.started.wait()
        tg.start_soon(impatient)
        tg.start_soon(patient)
        with anyio.fail_after(5):
            await impatient_done.wait()
        assert not got  # the fetch goes on for the others
        fetch.gate.set()
    assert [e.seconds for e in gave_up] == [0.05]
    assert fetch.calls == 1
    assert [t.value for t in got] == ["token-1", "token-1"]
    assert await cache.store.get(KEY) == got[0]


# asyncio only: the waiters of a cancelled fetch must wake in order of arrival, so the
# patient one leads the next fetch (trio wakes them in any order).
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_bounded_wait_keeps_one_deadline_across_fetches() -> None:
    cache, fetch = _gated_cache()
    got: list[Token] = []
    waited: list[float] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get(KEY, fetch)

    async def patient() -> None:  # leads the second fetch
        got.append(await cache.get(KEY, fetch))

    gave_up = anyio.Event()

    async def impatient() -> None:
        started = time.monotonic()
        with pytest.raises(TokenWaitTimeout):
            await cache.get(KEY, fetch, max_wait=0.6)
        waited.append(time.monotonic() - started)
        gave_up.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await fetch.started.wait()
        tg.start_soon(patient)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(impatient)
        await anyio.sleep(0.36)
        leader_scope.cancel()  # the impatient caller then waits for the second fetch
        with anyio.fail_after(5):
            await gave_up.wait()
        fetch.gate.set()
    assert fetch.calls == 2
    # 0.6 s in all: a deadline started afresh for the second fetch would give 0.96 s.
    assert 0.6 <= waited[0] < 0.85, waited
    assert [t.value for t in got] == ["token-2"]


@pytest.mark.anyio
async def test_invalidate_is_compare_and_swap() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    first = await cache.get(KEY, fetch)
    second = await cache.get(KEY, fetch, force_refresh=True)
    await cache.invalidate(KEY, first)  # stale: already replaced, must stay
    assert await cache.store.get(KEY) is second
    await cache.invalidate(KEY, second)
    assert await cache.store.get(KEY) is None
    await cache.invalidate(KEY, second)  # nothing stored: no error
    assert (await cache.get(KEY, fetch)).value == "token-3"


@pytest.mark.anyio
async def test_force_refresh_fetches_once_for_concurrent_callers() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    await cache.get(KEY, fetch)
    got: list[str] = []

    async def one() -> None:
        got.append((await cache.get(KEY, fetch, force_refresh=True)).value)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
    assert fetch.calls == 2
    assert got == ["token-2"] * 10
    assert (await cache.get(KEY, fetch, force_refresh=True)).value == "token-3"


@pytest.mark.anyio
async def test_keys_are_cached_independently() -> None:
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    other = TokenKey.of("https://sc.example.com/API", "OTHER", "user@example.com")
    assert (await cache.get(KEY, fetch)).value == "token-1"
    assert (await cache.get(other, fetch)).value == "token-2"
    assert (await cache.get(KEY, fetch)).value == "token-1"
    assert fetch.calls == 2


class RecordingStore:
    """A token store that logs every get, set and delete."""

    def __init__(self) -> None:
        self.tokens: dict[TokenKey, Token] = {}
        self.log: list[str] = []

    async def get(self, key: TokenKey) -> Token | None:
        self.log.append("get")
        return self.tokens.get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        self.log.append("set")
        self.tokens[key] = token

    async def delete(self, key: TokenKey) -> None:
        self.log.append("delete")
        self.tokens.pop(key, None)


@pytest.mark.anyio
async def test_custom_store_is_used() -> None:
    store = RecordingStore()
    assert isinstance(store, TokenStore)
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock, store), FakeFetch(clock)
    token = await cache.get(KEY, fetch)
    assert store.tokens == {KEY: token}
    assert "set" in store.log
    await cache.invalidate(KEY, token)
    assert store.tokens == {}
    assert store.log[-1] == "delete"


def _cache_over_stored(
    value: str, store: RecordingStore | None = None
) -> tuple[TokenCache, FakeFetch, RecordingStore, Token]:
    """A cache over a recording store (a new one by default) that already holds a token
    (``value``), as another process left it."""
    store = RecordingStore() if store is None else store
    clock = MutableClock(NOW)
    stored = store.tokens[KEY] = _token(value, NOW)
    cache, fetch = _cache(clock, store), FakeFetch(clock)
    return cache, fetch, store, stored


@pytest.mark.anyio
async def test_the_store_is_read_once_not_on_every_call() -> None:
    cache, fetch, store, stored = _cache_over_stored("from-another-process")
    for _ in range(100):
        assert await cache.get(KEY, fetch) == stored
    assert store.log == ["get"]
    assert fetch.calls == 0


@pytest.mark.anyio
async def test_a_refused_token_sends_the_next_call_back_to_the_store() -> None:
    cache, fetch, store, refused = _cache_over_stored("refused")
    assert await cache.get(KEY, fetch) == refused
    newer = _token("stored-by-another-process", NOW)
    store.tokens[KEY] = newer  # the store is not read again until the token is refused
    assert await cache.get(KEY, fetch) == refused
    await cache.invalidate(KEY, refused)  # not the stored one: it stays stored
    assert store.tokens == {KEY: newer}
    assert await cache.get(KEY, fetch) == newer
    assert fetch.calls == 0
    await cache.invalidate(KEY, newer)
    assert store.tokens == {}
    assert (await cache.get(KEY, fetch)).value == "token-1"
    assert store.tokens[KEY].value == "token-1"
    assert fetch.calls == 1


@pytest.mark.anyio
async def test_a_refresh_takes_a_newer_token_another_process_stored() -> None:
    cache, fetch, store, old = _cache_over_stored("old")
    assert await cache.get(KEY, fetch) == old
    fetch.clock.advance(old.expires_at - NOW)  # expired: everyone waits for a refresh
    newer = _token("newer", fetch.clock())
    store.tokens[KEY] = newer
    assert await cache.get(KEY, fetch) == newer
    assert fetch.calls == 0
    assert await cache.get(KEY, fetch) == newer
    assert store.log == ["get", "get"]  # the first call, and the refresh's look


class HeldDeleteStore(RecordingStore):
    """A recording store whose ``delete`` waits for ``release``, as a slow file or
    network store's would."""

    def __init__(self) -> None:
        super().__init__()
        self.deleting = anyio.Event()
        self.release = anyio.Event()

    async def delete(self, key: TokenKey) -> None:
        self.deleting.set()
        await self.release.wait()
        await super().delete(key)


@pytest.mark.anyio
async def test_a_refused_token_read_while_its_deletion_is_under_way_is_not_used() -> None:
    store = HeldDeleteStore()
    cache, fetch, _, refused = _cache_over_stored("refused", store)
    assert await cache.get(KEY, fetch) == refused
    got: list[Token] = []

    async def call_meanwhile() -> None:
        got.append(await cache.get(KEY, fetch))

    async with anyio.create_task_group() as tg:
        tg.start_soon(cache.invalidate, KEY, refused)
        with anyio.fail_after(5):
            await store.deleting.wait()  # the store still holds the refused token
        tg.start_soon(call_meanwhile)
        with anyio.fail_after(5):
            await fetch.started.wait()  # it was not taken: a new one is on its way
        store.release.set()
    assert [t.value for t in got] == ["token-1"]
    assert (await cache.get(KEY, fetch)).value == "token-1"  # not the refused one, ever
    assert store.tokens[KEY].value == "token-1"
    assert fetch.calls == 1


@pytest.mark.anyio
async def test_force_refresh_fetches_even_when_another_cache_refreshed_since() -> None:
    store = MemoryTokenStore()
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    here, there = _cache(clock, store), _cache(clock, store)  # two clients, one store
    assert (await here.get(KEY, fetch)).value == "token-1"
    assert (await there.get(KEY, fetch)).value == "token-1"  # read from the store
    assert (await there.get(KEY, fetch, force_refresh=True)).value == "token-2"
    # `here` still remembers token-1; a forced refresh gets a new token all the same.
    assert (await here.get(KEY, fetch, force_refresh=True)).value == "token-3"
    assert fetch.calls == 3
    assert (await store.get(KEY)) == await here.get(KEY, fetch)


class SlowGetStore(RecordingStore):
    """A recording store whose ``get`` takes 10 ms, as a file or network store's may."""

    async def get(self, key: TokenKey) -> Token | None:
        await anyio.sleep(0.01)
        return await super().get(key)


@pytest.mark.parametrize("stored", [True, False], ids=["token stored", "store empty"])
@pytest.mark.anyio
async def test_callers_arriving_together_read_the_store_once(stored: bool) -> None:
    store = SlowGetStore()
    clock = MutableClock(NOW)
    if stored:
        store.tokens[KEY] = _token("stored", NOW)
    cache, fetch = _cache(clock, store), FakeFetch(clock)
    got: list[str] = []

    async def one() -> None:
        got.append((await cache.get(KEY, fetch)).value)

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    assert got == ["stored" if stored else "token-1"] * 100
    assert store.log == (["get"] if stored else ["get", "set"])
    assert fetch.calls == (0 if stored else 1)


class SlowFirstGetStore(RecordingStore):
    """A recording store whose first ``get`` takes 50 ms."""

    reads = 0

    async def get(self, key: TokenKey) -> Token | None:
        self.reads += 1
        if self.reads == 1:
            await anyio.sleep(0.05)
        return await super().get(key)


@pytest.mark.anyio
async def test_force_refresh_while_another_caller_reads_the_store_still_fetches() -> None:
    store = SlowFirstGetStore()
    cache, fetch, _, old = _cache_over_stored("old", store)
    got: dict[str, str] = {}

    async def first() -> None:  # no token remembered: it reads the store (slowly)
        got["first"] = (await cache.get(KEY, fetch)).value

    async def forcing() -> None:
        await anyio.sleep(0.01)  # while the first caller's store read is under way
        got["forcing"] = (await cache.get(KEY, fetch, force_refresh=True)).value

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        tg.start_soon(forcing)
    assert got == {"first": old.value, "forcing": "token-1"}
    assert fetch.calls == 1
    assert store.tokens[KEY].value == "token-1"


class HangingStore(RecordingStore):
    """A store whose ``hangs`` operations never return (a network store that is down)."""

    def __init__(self, *hangs: str) -> None:
        super().__init__()
        self.hangs = hangs

    async def get(self, key: TokenKey) -> Token | None:
        if "get" in self.hangs:
            await anyio.sleep_forever()
        return await super().get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        if "set" in self.hangs:
            await anyio.sleep_forever()
        await super().set(key, token)


@pytest.mark.anyio
@pytest.mark.parametrize("hangs", [("get",), ("set",), ("get", "set")])
async def test_a_store_that_hangs_degrades_like_a_store_that_fails(
    hangs: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    cache = TokenCache(HangingStore(*hangs), clock=clock, store_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"), anyio.fail_after(2):
        first = await cache.get(KEY, fetch)
        assert await cache.get(KEY, fetch) is first  # kept in memory
    assert fetch.calls == 1
    assert "going on with the token in memory" in caplog.text
    assert "TimeoutError" in caplog.text


class SlowSetStore(RecordingStore):
    """A store whose ``set`` takes a while (a network store)."""

    def __init__(self) -> None:
        super().__init__()
        self.setting = anyio.Event()

    async def set(self, key: TokenKey, token: Token) -> None:
        self.setting.set()
        await anyio.sleep(0.2)
        await super().set(key, token)


@pytest.mark.anyio
async def test_a_leader_cancelled_while_the_store_writes_does_not_lose_the_token() -> None:
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    store = SlowSetStore()
    cache = TokenCache(store, clock=clock)
    got: list[Token] = []
    leader = anyio.CancelScope()

    async def lead() -> None:
        with leader:
            await cache.get(KEY, fetch)

    async def wait() -> None:
        got.append(await cache.get(KEY, fetch, max_wait=5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lead)  # the first to ask: it sends GetToken
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):
            tg.start_soon(wait)
        with anyio.fail_after(2):
            await store.setting.wait()  # the token came; the store is writing it
        leader.cancel()
    assert leader.cancelled_caught
    assert fetch.calls == 1  # not fetched again for the waiters
    assert [t.value for t in got] == ["token-1"] * 3


@pytest.mark.anyio
async def test_a_token_re_issued_unchanged_near_expiry_is_asked_for_with_back_off() -> None:
    # 550 calls two hours before expiry made 52 GetToken: the server kept answering with
    # the token it had issued, still inside the refresh margin.
    clock = MutableClock(NOW)
    cache, fetch = _cache(clock), FakeFetch(clock)
    old = await cache.get(KEY, fetch)
    calls = 0

    async def same_again() -> Token:
        nonlocal calls
        calls += 1
        return old

    clock.now = old.expires_at - timedelta(hours=2)  # inside the 1-day margin
    for _ in range(550):
        assert await cache.get(KEY, same_again) is old
    assert calls == 1
    clock.advance(timedelta(minutes=1))  # the first back-off is over
    for _ in range(50):
        await cache.get(KEY, same_again)
    assert calls == 2
    clock.advance(timedelta(minutes=1))  # not yet: it doubled
    await cache.get(KEY, same_again)
    assert calls == 2
    clock.advance(timedelta(minutes=1))
    await cache.get(KEY, same_again)
    assert calls == 3
    # A fresh token ends the back-off; inside the mandatory window every call waits for
    # one fetch as before.
    clock.now = old.expires_at - timedelta(minutes=4)
    assert (await cache.get(KEY, fetch)).value == "token-2"


# ---- a store shared by processes: the refresh lock, outages ---------------------------


class LockingStore(RecordingStore):
    """A ``RefreshLocking`` store: an in-memory lock stands for the fleet-wide one (two
    caches over it are two processes). ``give_up``: entering waits for nothing and
    gives ``False``, as after a lock's time to live; ``broken_lock``: entering fails."""

    def __init__(self, *, give_up: bool = False, broken_lock: bool = False) -> None:
        super().__init__()
        self.lock = anyio.Lock()
        self.give_up = give_up
        self.broken_lock = broken_lock

    @contextlib.asynccontextmanager
    async def refresh_lock(self, key: TokenKey) -> AsyncIterator[bool]:
        self.log.append("lock")
        if self.broken_lock:
            raise ConnectionError("the lock's server is down")
        if self.give_up:
            yield False
            return
        async with self.lock:
            yield True
        self.log.append("unlock")


@pytest.mark.anyio
async def test_processes_that_start_cold_together_fetch_once() -> None:
    store = LockingStore()
    assert isinstance(store, RefreshLocking)
    assert not isinstance(RecordingStore(), RefreshLocking)
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    caches = [_cache(clock, store) for _ in range(4)]
    got: list[Token] = []

    async def ask(cache: TokenCache) -> None:
        got.append(await cache.get(KEY, fetch))

    async with anyio.create_task_group() as tg:
        for cache in caches:
            for _ in range(10):
                tg.start_soon(ask, cache)
    assert fetch.calls == 1
    assert {t.value for t in got} == {"token-1"}
    # Each process: read, lock, read again under it; only the first fetched and wrote.
    assert store.log.count("lock") == store.log.count("unlock") == 4
    assert store.log.count("get") == 8
    assert store.log.count("set") == 1


@pytest.mark.anyio
async def test_a_refused_token_is_refreshed_once_by_a_fleet() -> None:
    store = LockingStore()
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    first, second = _cache(clock, store), _cache(clock, store)
    refused = await first.get(KEY, fetch)
    assert await second.get(KEY, fetch) == refused
    await first.invalidate(KEY, refused)
    renewed = await first.get(KEY, fetch)
    # The second process's refusal comes after the first's refresh: under the lock it
    # finds a token other than the one it saw refused, and takes it.
    await second.invalidate(KEY, refused)
    assert await second.get(KEY, fetch) == renewed
    assert fetch.calls == 2
    assert store.tokens[KEY] == renewed


@pytest.mark.anyio
async def test_a_process_that_gave_up_waiting_for_the_lock_reads_the_store_then_fetches() -> None:
    store = LockingStore(give_up=True)
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    assert (await _cache(clock, store).get(KEY, fetch)).value == "token-1"
    assert store.log == ["get", "lock", "get", "set"]


@pytest.mark.anyio
async def test_a_lock_that_fails_is_passed_over_like_a_store_that_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = LockingStore(broken_lock=True)
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert (await _cache(clock, store).get(KEY, fetch)).value == "token-1"
    assert store.log == ["get", "lock", "set"]  # not read again: no lock, nothing to wait for
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "token store lock failed for company ACME"
    ]


class OutageStore(RecordingStore):
    """A store that fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def get(self, key: TokenKey) -> Token | None:
        if self.down:
            raise ConnectionRefusedError(f"secret {TOKEN}")
        return await super().get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        if self.down:
            raise ConnectionRefusedError(f"secret {token.value}")
        await super().set(key, token)


@pytest.mark.anyio
async def test_a_store_outage_is_one_warning_until_it_answers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = OutageStore()
    clock = MutableClock(NOW)
    fetch = FakeFetch(clock)
    cache = _cache(clock, store)
    caplog.set_level(logging.DEBUG, logger="smartconnect_async")
    for _ in range(5):  # each forced refresh: two reads and a write that fail
        await cache.get(KEY, fetch, force_refresh=True)
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING"] + ["DEBUG"] * 14
    store.down = False
    await cache.get(KEY, fetch, force_refresh=True)
    store.down = True
    await cache.get(KEY, fetch, force_refresh=True)
    levels = [r.levelname for r in caplog.records]
    assert levels[15:] == ["INFO", "WARNING", "DEBUG", "DEBUG"]
    assert caplog.records[15].getMessage() == "the token store answers again"
    assert "ConnectionRefusedError" in caplog.records[16].getMessage()
    assert "secret" not in caplog.text
    assert fetch.calls == 7


# ---- waiting for a token another call fetches ---------------------------------------


@pytest.mark.anyio
async def test_a_wait_for_another_call_s_token_is_bounded_by_the_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        columns = api.post("/GetMapColumns").mock(return_value=columns_answer())
        run = api.post("/runmap").respond(200, json={})
        async with client() as sc:
            got: list[list[Column]] = []

            async def lead() -> None:
                got.append(await sc.maps.columns(GUID_CUSTOMERS))

            async with anyio.create_task_group() as tg:
                tg.start_soon(lead)
                await stalled.sent.wait()
                started = anyio.current_time()
                with anyio.fail_after(5), pytest.raises(APITimeoutError) as raised:
                    await sc.runs.run(GUID_CUSTOMERS, timeout=Timeout(30, pool=0.05))
                waited = anyio.current_time() - started
                assert not got  # the fetch goes on for the call that sent it
                stalled.release.set()
    error = raised.value
    assert str(error) == (
        f"runmap for map {GUID_CUSTOMERS}: no token for company {COMPANY} came within "
        "0.05s (another call is still getting it, from the token store or with GetToken); "
        "nothing was sent"
    )
    assert (error.endpoint, error.sent) == ("runmap", False)
    assert 0.05 <= waited < 1
    assert got == [COLUMNS]
    assert (get_token.call_count, columns.call_count, run.call_count) == (1, 1, 0)


@pytest.mark.anyio
async def test_get_token_waits_for_another_call_s_fetch_within_the_client_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapColumns").mock(return_value=columns_answer())
        async with client(timeout=Timeout(30, pool=0.05)) as sc:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
                await stalled.sent.wait()
                with (
                    anyio.fail_after(5),
                    pytest.raises(APITimeoutError, match=r"^GetToken: no token for company "),
                ):
                    await sc.auth.get_token()
                stalled.release.set()
            assert (await sc.auth.get_token()).value == TOKEN
    assert get_token.call_count == 1


@pytest.mark.anyio
async def test_validate_waits_for_another_call_s_token_within_its_own_pool_timeout() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        get_token = api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapColumns").mock(return_value=columns_answer())
        validate = api.post("/validate").respond(200, json=True)
        # The client's pool timeout is 30 s; the call's is 0.05 s.
        async with client(timeout=30) as sc, anyio.create_task_group() as tg:
            tg.start_soon(sc.maps.columns, GUID_CUSTOMERS)
            await stalled.sent.wait()
            started = anyio.current_time()
            with anyio.fail_after(5), pytest.raises(APITimeoutError) as raised:
                await sc.auth.validate(timeout=Timeout(30, pool=0.05))
            waited = anyio.current_time() - started
            stalled.release.set()
    assert str(raised.value) == (
        f"validate: no token for company {COMPANY} came within 0.05s (another call is "
        "still getting it, from the token store or with GetToken); nothing was sent"
    )
    assert (raised.value.endpoint, raised.value.sent) == ("validate", False)
    assert waited < 1
    assert (get_token.call_count, validate.call_count) == (1, 0)


@pytest.mark.anyio
async def test_a_wait_for_another_call_s_token_is_bounded_by_the_total_too() -> None:
    stalled = StalledToken()
    with mock_api(token=None) as api:
        api.post("/GetToken").mock(side_effect=stalled)
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        async with client(timeout=Timeout(30, total=60)) as sc, anyio.create_task_group() as tg:
            tg.start_soon(sc.maps.list)  # sends the GetToken, held back
            await stalled.sent.wait()
            with anyio.fail_after(2), pytest.raises(APITimeoutError) as info:
                await sc.maps.columns(GUID_CUSTOMERS, timeout=Timeout(30, total=0.2))
            assert "no token for company" in str(info.value)
            stalled.release.set()
