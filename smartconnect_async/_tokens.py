"""Every token rule: password hashing, the GetToken call, reading a token's issue time,
expiry arithmetic, the ``TokenStore`` protocol (and its optional fleet-wide
``RefreshLocking``), the single-flight per-company token cache (``TokenCache``), which
password a cached token goes to, and fetching one with GetToken (``Tokens``)."""

from __future__ import annotations

import base64
import binascii
import calendar
import contextlib
import hashlib
import hmac
import inspect
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from typing import Protocol, TypeVar, runtime_checkable

import anyio
import anyio.lowlevel
import attrs

from ._json import load
from ._redact import Secrets
from ._waiting import Signal
from ._wire import Call, unsent
from .exceptions import ResponseParseError
from .models import Credentials, Token

__all__ = [
    "MemoryTokenStore",
    "Principal",
    "RefreshLocking",
    "TokenCache",
    "TokenKey",
    "TokenStore",
    "TokenWaitTimeout",
    "Tokens",
    "add_months",
    "get_token_call",
    "hash_password",
    "make_token",
    "parse_token",
    "token_issue_time",
]

logger = logging.getLogger("smartconnect_async")
T = TypeVar("T")


def _not_async(operation: str, returned: object) -> TypeError:
    # Not a failure of the store to pass over: a store that cannot work at all.
    return TypeError(
        f"token_store.{operation} must be async (awaitable); it returned a "
        f"{type(returned).__name__}"
    )


_HASH_KEY = b"6clDgmNok3WtR8GKYW6N"
TOKEN_LIFETIME_MONTHS = 3
# Inside the mandatory window every caller waits for a new token; inside the advisory
# window (the configurable refresh margin) one caller refreshes and the others go on
# with the still valid token.
MANDATORY_REFRESH = timedelta(minutes=5)
# An early refresh whose answer is no fresher (the server re-issues the token unchanged
# near its expiry) is not tried again for a minute, then twice as long each time, up to
# an hour, instead of on every call; inside the mandatory window it always is.
QUIET_FIRST = timedelta(minutes=1)
QUIET_MAX = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=5)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def hash_password(password: str) -> str:
    """The hashed form of ``password`` that GetToken accepts (SmartConnect's documented
    scheme: base64 of HMAC-SHA256 keyed with the vendor's key)."""
    message = (password + ":").encode() + _HASH_KEY
    return base64.b64encode(hmac.new(_HASH_KEY, message, hashlib.sha256).digest()).decode()


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?\Z"
)


def token_issue_time(value: str) -> datetime | None:
    """The issue time embedded in a token, as aware UTC; ``None`` when the token does not
    decode as ``base64(hash#guid#guid#EMAIL#timestamp)``. A timestamp with no zone is UTC."""
    try:
        padded = value + "=" * (-len(value) % 4)
        decoded = base64.b64decode(padded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = decoded.split("#")
    if len(parts) < 5:
        return None
    match = _TIMESTAMP.match(parts[-1].strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        issued = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None
    return issued.astimezone(timezone.utc)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; a day past the new month's end becomes its last
    day (31 January + 1 month = 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def make_token(value: str, *, company_id: str, email: str, obtained_at: datetime) -> Token:
    """A ``Token`` for ``value``: issued when the token says, else when it was obtained;
    expiring three calendar months later.

    An embedded issue time that cannot be right for a token just obtained (later than
    now, beyond a few minutes of clock skew, or so old the token would already have
    expired) is not trusted: the time it was obtained is used instead.
    """
    obtained = obtained_at.astimezone(timezone.utc)
    issued = token_issue_time(value)
    if (
        issued is None
        or issued > obtained + CLOCK_SKEW
        or add_months(issued, TOKEN_LIFETIME_MONTHS) <= obtained + MANDATORY_REFRESH
    ):
        issued = obtained
    return Token(
        value=value,
        company_id=company_id,
        email=email,
        issued_at=issued,
        expires_at=add_months(issued, TOKEN_LIFETIME_MONTHS),
    )


@attrs.frozen(cache_hash=True)
class TokenKey:
    """What a token is cached under: the API Url, the company and the user.

    ``str(key)`` is a stable text form (no secret in it) that stores can use as a name.
    """

    api_url: str
    company_id: str
    email: str

    @classmethod
    def of(cls, api_url: str, company_id: str, email: str) -> TokenKey:
        """A key with the parts normalised: no trailing slash, e-mail in lower case."""
        return cls(api_url.rstrip("/"), company_id.strip(), email.strip().lower())

    def __str__(self) -> str:
        return f"{self.api_url}|{self.company_id}|{self.email}"


@runtime_checkable
class TokenStore(Protocol):
    """Where tokens are kept between calls. The default keeps them in memory; a
    persistent or shared store (a file, Redis) implements these three methods."""

    async def get(self, key: TokenKey) -> Token | None:
        """The token stored under ``key``, or ``None``."""
        ...

    async def set(self, key: TokenKey, token: Token) -> None:
        """Store ``token`` under ``key``, replacing any other."""
        ...

    async def delete(self, key: TokenKey) -> None:
        """Forget the token stored under ``key``, if any."""
        ...


@runtime_checkable
class RefreshLocking(Protocol):
    """An optional capability of a ``TokenStore`` that several processes share (such as
    ``RedisTokenStore``): a lock per key, held by one process at a time while it
    refreshes, so that a fleet started cold makes one GetToken per company.

    Before a fetch ``TokenCache`` enters ``refresh_lock(key)`` (within its
    ``store_timeout``), reads the store again, fetches only if the token there is
    missing, about to expire or the one the server refused, and stores the new token
    before it leaves. Entering gives ``True`` once the lock is held, ``False`` when the
    store gave up waiting: it waits no longer than the lock's time to live, after which
    a holder that died no longer holds it. Leaving releases the lock if still held.
    A store without this method is used as before, with no lock.
    """

    def refresh_lock(self, key: TokenKey) -> AbstractAsyncContextManager[bool]:
        """The fleet-wide refresh lock of ``key``."""
        ...


class MemoryTokenStore:
    """Tokens in a dict, for the life of the process (the default store)."""

    def __init__(self) -> None:
        self._tokens: dict[TokenKey, Token] = {}

    def __repr__(self) -> str:
        return f"MemoryTokenStore({len(self._tokens)} token(s))"

    async def get(self, key: TokenKey) -> Token | None:
        return self._tokens.get(key)

    async def set(self, key: TokenKey, token: Token) -> None:
        self._tokens[key] = token

    async def delete(self, key: TokenKey) -> None:
        self._tokens.pop(key, None)


Fetch = Callable[[], Awaitable[Token]]
Send = Callable[[Call[str], "Principal"], Awaitable[str]]


class TokenWaitTimeout(Exception):
    """A caller waited ``seconds`` for a token another caller is fetching, and gave up
    (the fetch goes on for the others)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _Flight:
    """One fetch of a token, awaited by every caller that needs it meanwhile."""

    __slots__ = ("done", "error", "successor", "token", "turnstile")

    def __init__(self) -> None:
        self.done = Signal()
        # Its waiters go on one per turn of the event loop (each hands the lock to the
        # next), not all in one turn: between two of them the loop reads the answers
        # already in its sockets (other companies' tokens), so a crowd of one company's
        # calls does not hold back the first call of the next company whose token came.
        self.turnstile = anyio.Lock(fast_acquire=True)
        self.token: Token | None = None
        self.error: Exception | None = None
        # When this flight gave its waiters nothing usable (it was cancelled, or its
        # token was refused before they woke): the flight the first of them went on to,
        # which those woken later follow (that one may be over by the time they run)
        # instead of each starting a fetch of its own.
        self.successor: _Flight | None = None


class TokenCache:
    """Tokens per ``TokenKey``, fetched once however many callers ask at the same time.

    - No token, or one about to expire (``MANDATORY_REFRESH``): every caller waits for
      one fetch.
    - Inside the refresh margin (default one day before expiry): one caller refreshes,
      the others keep using the still valid token; a failed early refresh is logged,
      not raised; one that brings no fresher token (re-issued unchanged) is tried again
      only after a back-off (``QUIET_FIRST`` doubling to ``QUIET_MAX``).
    - ``invalidate`` drops a token only if it is still the stored one, so a burst of
      401s for one stale token makes one new token, not one per caller.

    A fetch that fails fails every caller waiting for it (none of them fetches again);
    one that is cancelled leaves the store as it was, and one waiting caller fetches
    again for all of them (those woken later follow that fetch). A caller may bound its
    wait for a fetch another caller leads (``max_wait``).

    A store that fails, or takes longer than ``store_timeout`` seconds, is passed over
    (the token in memory stays in use) and logged: one warning when it starts failing,
    DEBUG records after that until it answers again (logged at INFO).
    With a store that has a fleet-wide refresh lock (``RefreshLocking``), a fetch is
    made under it, after reading the store again.
    The store is read once when a key is first asked for (by the caller that leads, for
    all who ask meanwhile), before each fetch (another process may have stored a newer
    token), for ``force_refresh`` and after a token is refused; in between, calls use
    the token this cache last read or stored, so a file or network store costs nothing
    per call. A token the server refused is never used again, even while its deletion
    from the store is under way.
    """

    def __init__(
        self,
        store: TokenStore | None = None,
        *,
        refresh_margin: timedelta = timedelta(days=1),
        clock: Clock = utc_now,
        store_timeout: float | None = 30.0,
    ) -> None:
        if refresh_margin < timedelta(0):
            raise ValueError("refresh_margin must not be negative")
        self.store: TokenStore = store if store is not None else MemoryTokenStore()
        self.refresh_margin = refresh_margin
        self.clock = clock
        self.store_timeout = store_timeout
        self._locks: dict[TokenKey, anyio.Lock] = {}
        self._flights: dict[TokenKey, _Flight] = {}
        self._known: dict[TokenKey, Token] = {}  # the token last read or stored, per key
        self._refused: dict[TokenKey, str] = {}  # the last token the server refused, per key
        # Per key whose early refresh got no fresher token: no other before (when, wait).
        self._quiet: dict[TokenKey, tuple[datetime, timedelta]] = {}
        self._store_down = False  # its last call failed: further failures logged at DEBUG

    def __repr__(self) -> str:
        return f"TokenCache(store={self.store!r}, refresh_margin={self.refresh_margin})"

    def _lock(self, key: TokenKey) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    def _fresh(self, token: Token | None, margin: timedelta) -> bool:
        return token is not None and self.clock() < token.expires_at - margin

    async def _read(self, key: TokenKey) -> Token | None:
        """The stored token of ``key``, unless the server refused it (its deletion from
        the store may still be under way)."""
        token = await self._stored(key)
        return None if token is None or self._was_refused(key, token) else token

    async def _stored(self, key: TokenKey) -> Token | None:
        """``store.get``; a store that fails, or takes longer than ``store_timeout``,
        holds nothing (logged)."""
        return await self._use_store("read", "get", key, lambda: self.store.get(key))

    async def _store(self, key: TokenKey, token: Token | None) -> None:
        """``store.set`` (``delete`` for None), the key's lock held by the caller; a store
        that fails or hangs is logged, and the token this cache holds stays in use."""
        if token is None:
            await self._use_store("delete", "delete", key, lambda: self.store.delete(key))
        else:
            await self._use_store("write", "set", key, lambda: self.store.set(key, token))

    async def _use_store(
        self, action: str, method: str, key: TokenKey, start: Callable[[], Awaitable[T]]
    ) -> T | None:
        """The store's ``method`` (``start`` calls it) within ``store_timeout``; ``None``
        (logged) if it fails or takes longer. A method that is not async is a
        ``TypeError``: not a store that fails, one that cannot work at all."""
        try:
            pending = start()
            if inspect.isawaitable(pending):
                with anyio.fail_after(self.store_timeout):  # None: no deadline
                    answer = await pending
                if self._store_down:
                    self._store_down = False
                    logger.info("the token store answers again")
                return answer
        except Exception as exc:  # TimeoutError included: a store that hangs
            self._store_failed(action, key, exc)
            return None
        raise _not_async(method, pending)

    def _store_failed(self, action: str, key: TokenKey, exc: Exception) -> None:
        """Log a store's failure: a warning when it starts failing (once per outage, not
        once per call), DEBUG until it answers again."""
        level = logging.DEBUG if self._store_down else logging.WARNING
        self._store_down = True
        # The exception's type only: a store's message may hold anything, a token included.
        logger.log(
            level,
            "token store %s failed for company %s (%s); going on with the token in memory "
            "(further failures are logged at DEBUG until the store answers again)",
            action,
            key.company_id,
            type(exc).__name__,
        )

    @contextlib.asynccontextmanager
    async def _fleet_lock(self, key: TokenKey) -> AsyncIterator[bool]:
        """The store's refresh lock of ``key`` (``RefreshLocking``), held or given up
        on; yields whether to read the store again under it (not for a store without
        one, nor for one that failed: either way the caller goes on by itself)."""
        store = self.store
        if not isinstance(store, RefreshLocking):
            yield False
            return
        lock = store.refresh_lock(key)
        held = await self._use_store("lock", "refresh_lock", key, lock.__aenter__)
        if held is None:  # failed (logged)
            yield False
            return
        try:
            yield True
        finally:
            if held:  # released even by a cancelled leader, within the store's bound
                with anyio.CancelScope(shield=True):
                    await self._use_store(
                        "unlock", "refresh_lock", key, lambda: lock.__aexit__(None, None, None)
                    )

    def _was_refused(self, key: TokenKey, token: Token) -> bool:
        """Whether the server refused ``token`` (the last one refused for ``key``)."""
        return token.value == self._refused.get(key)

    async def get(
        self,
        key: TokenKey,
        fetch: Fetch,
        *,
        force_refresh: bool = False,
        max_wait: float | None = None,
    ) -> Token:
        """The token for ``key``, fetched with ``fetch`` when there is none usable.

        ``force_refresh`` fetches a new token even if the stored one is fresh (once for
        all callers that ask together). ``max_wait`` bounds, in seconds, the wait for a
        fetch led by another caller (``TokenWaitTimeout``); ``None`` waits for it to end.
        A caller that leads the fetch waits for its own request, however long.
        """
        if force_refresh:
            token = await self._read(key)  # what a refresh replaces: the store's, not ours
        else:
            # Without one remembered, the caller that leads reads the store for everyone
            # (and fetches only if it holds nothing usable).
            token = self._known.get(key)
            if self._fresh(token, self.refresh_margin):
                assert token is not None
                return token
            if self._fresh(token, MANDATORY_REFRESH):
                assert token is not None
                return await self._refresh_early(key, token, fetch)
        return await self._fetched(key, fetch, token, force_refresh, max_wait)

    async def _fetched(
        self,
        key: TokenKey,
        fetch: Fetch,
        token: Token | None,
        force_refresh: bool,
        max_wait: float | None,
    ) -> Token:
        """The token of the fetch under way for ``key``, or of one this caller leads when
        there is none (or the one it waited for gave nothing usable): see ``get``."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        ended: _Flight | None = None  # the last flight waited for that gave nothing usable
        while True:
            flight = ended.successor if ended is not None else None
            if flight is None:
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    if ended is not None:
                        ended.successor = flight
                    return await self._lead(key, fetch, flight, token, force_refresh)
                if ended is not None:
                    ended.successor = flight
            try:  # one deadline, however many fetches this caller waits for
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                await flight.done.wait(left)
            except TimeoutError:
                assert max_wait is not None
                raise TokenWaitTimeout(max_wait) from None
            async with flight.turnstile:
                await anyio.lowlevel.checkpoint()
            if flight.token is not None:
                if self._was_refused(key, flight.token):
                    pass  # the server refused it while this caller waited to wake
                elif not (force_refresh and flight.token == token):
                    return flight.token
                # Else that flight took the very token this caller wants replaced (it
                # read the store for a caller with none): go round, for a new one.
            elif flight.error is not None:
                raise flight.error
            # Else that fetch was cancelled: fetch again (this caller may lead it).
            ended = flight

    async def _lead(
        self,
        key: TokenKey,
        fetch: Fetch,
        flight: _Flight,
        seen: Token | None,
        force_refresh: bool,
    ) -> Token:
        """Fetch and store a token for every caller waiting on ``flight``, unless the
        store already holds a newer one than ``seen`` (or, without ``force_refresh``, a
        fresh one)."""
        try:
            token = self._usable(await self._read(key), seen, force_refresh)
            if token is None:
                async with self._fleet_lock(key) as shared:
                    if shared:  # another process may have stored one while this one waited
                        token = self._usable(await self._read(key), seen, force_refresh)
                    if token is None:
                        token = await fetch()
                        # Taken before it is stored: a leader cancelled while the store
                        # writes does not lose a token the server already issued.
                        self._known[key] = flight.token = token
                        async with self._lock(key):
                            await self._store(key, token)
            self._known[key] = flight.token = token
            return token
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    def _usable(
        self, stored: Token | None, seen: Token | None, force_refresh: bool
    ) -> Token | None:
        """``stored`` if a refresh can take it instead of fetching: a valid token other
        than ``seen`` (someone else refreshed since the caller looked) or, without
        ``force_refresh``, one outside the refresh margin. ``_read`` gives no refused one."""
        if stored is not None and stored != seen and self._fresh(stored, MANDATORY_REFRESH):
            return stored
        if not force_refresh and self._fresh(stored, self.refresh_margin):
            return stored
        return None

    async def put(self, key: TokenKey, token: Token) -> None:
        """Make ``token``, which a caller fetched by itself, this cache's for ``key``: at
        once, before the first wait, for every caller from now on; then store it."""
        self._known[key] = token
        async with self._lock(key):
            await self._store(key, token)

    async def _refresh_early(self, key: TokenKey, token: Token, fetch: Fetch) -> Token:
        if key in self._flights:
            return token  # someone else is refreshing; this token is still good
        quiet = self._quiet.get(key)
        if quiet is not None and self.clock() < quiet[0]:
            return token  # the server gave this token back unchanged not long ago
        flight = self._flights[key] = _Flight()
        try:
            renewed = await self._lead(key, fetch, flight, token, False)
            if self._fresh(renewed, self.refresh_margin):
                self._quiet.pop(key, None)
            else:  # re-issued as it was (or no later): ask again after a while
                wait = min(2 * quiet[1], QUIET_MAX) if quiet is not None else QUIET_FIRST
                self._quiet[key] = (self.clock() + wait, wait)
            return renewed
        except Exception as exc:
            logger.warning(
                "early token refresh failed for company %s (%s); "
                "the current token stays in use until %s",
                key.company_id,
                type(exc).__name__,
                token.expires_at.isoformat(),
            )
            return token

    async def invalidate(self, key: TokenKey, failed: Token) -> None:
        """Forget ``failed`` (a token the server refused) unless it was already replaced.
        From now on this cache takes ``failed`` for no token, wherever it reads it."""
        self._refused[key] = failed.value
        known = self._known.get(key)
        if known is not None and known.value == failed.value:
            del self._known[key]
        async with self._lock(key):
            current = await self._stored(key)
            if current is not None and current.value == failed.value:
                await self._store(key, None)


# ---- who asks for a token ------------------------------------------------------------

_PROOF_SALT = secrets.token_bytes(16)  # per process: a password's proof is never stored


@attrs.frozen
class Principal:
    """Who a call is made for: the token cache key, the credentials, the password as
    GetToken sends it, and a salted digest of it (in memory only) that tells which
    password this is."""

    key: TokenKey
    credentials: Credentials
    wire_password: str = attrs.field(repr=False)
    proof: bytes = attrs.field(repr=False)
    secrets: Secrets = attrs.field(repr=False)
    """What must never show in a message: the password in both forms."""

    @classmethod
    def of(cls, api_url: str, credentials: Credentials) -> Principal:
        password = credentials.password
        wire = hash_password(password) if credentials.hash_password else password
        return cls(
            TokenKey.of(api_url, credentials.company_id, credentials.email),
            credentials,
            wire,
            hashlib.sha256(_PROOF_SALT + wire.encode()).digest(),
            Secrets({password, wire}),
        )


def parse_token(body: bytes) -> str:
    """The token in a GetToken answer (a JSON string)."""
    value = load(body, "the GetToken answer")
    if not isinstance(value, str):
        raise ResponseParseError(
            f"the GetToken answer is a JSON {type(value).__name__}, not a token string"
        )
    if not value or any(c.isspace() for c in value):
        raise ResponseParseError("the GetToken answer is not a token")
    return value


def get_token_call(principal: Principal) -> Call[str]:
    """``GetToken``: email, password (hashed unless the credentials say not) and
    company."""
    return Call(
        "GetToken",
        parse_token,
        query=(
            ("email", principal.credentials.email),
            ("password", principal.wire_password),
            ("companyId", principal.credentials.company_id),
        ),
        authenticated=False,
    )


class Tokens:
    """The token of each principal, with one rule on top of ``TokenCache``: a cached
    token goes only to the password that got it.

    Per company and user, the password that last got a token here (or the first to ask)
    is the proven one, and the cache's token is its. Another password gets its own token
    through a second, in-memory cache keyed per password: one GetToken for all of its
    callers that ask together (a burst of calls with a wrong password makes one failed
    login, not one each), and the server's 401 if it is wrong. Once its GetToken
    succeeds, it is the proven password and its token the cached one.
    """

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache
        self._proven: dict[TokenKey, bytes] = {}
        self._proving = TokenCache(
            MemoryTokenStore(), refresh_margin=cache.refresh_margin, clock=cache.clock
        )

    def __repr__(self) -> str:
        return f"Tokens({self.cache!r})"

    @staticmethod
    def _unproven_key(principal: Principal) -> TokenKey:
        key = principal.key
        return TokenKey(key.api_url, key.company_id, f"{key.email}|{principal.proof.hex()}")

    async def get(
        self,
        principal: Principal,
        fetch: Fetch,
        *,
        force_refresh: bool = False,
        max_wait: float | None = None,
    ) -> Token:
        """The token of ``principal`` (see ``TokenCache.get``)."""
        key, proof = principal.key, principal.proof
        if self._proven.setdefault(key, proof) == proof:
            token = await self.cache.get(key, fetch, force_refresh=force_refresh, max_wait=max_wait)
            if self._proven[key] == proof:
                return token
            # Another password was proven while this caller waited (its fetch may have
            # been cancelled, and the next one taken the other's token).
        token = await self._proving.get(
            self._unproven_key(principal), fetch, force_refresh=force_refresh, max_wait=max_wait
        )
        if self._proven[key] != proof:
            # Both at once (``put`` takes the token before it first waits): no caller
            # sees this password proven and the other's token, or the reverse.
            self._proven[key] = proof
            await self.cache.put(key, token)
        return token

    async def token(
        self,
        principal: Principal,
        send: Send,
        *,
        force_refresh: bool = False,
        max_wait: float | None = None,
        caller: Call[object] | None = None,
    ) -> Token:
        """The token of ``principal`` (see ``get``), fetched when needed by sending its
        GetToken call with ``send`` (the transport's ``call``).

        A wait for a fetch another caller leads is bounded by ``max_wait`` seconds, like
        every wait before sending: ``APITimeoutError`` naming ``caller`` (default:
        GetToken), nothing sent.
        """

        async def fetch() -> Token:
            obtained = self.cache.clock()
            value = await send(get_token_call(principal), principal)
            credentials = principal.credentials
            return make_token(
                value,
                company_id=credentials.company_id,
                email=credentials.email,
                obtained_at=obtained,
            )

        try:
            return await self.get(principal, fetch, force_refresh=force_refresh, max_wait=max_wait)
        except TokenWaitTimeout as timed_out:
            raise unsent(
                caller or get_token_call(principal),
                f"no token for company {principal.key.company_id} came within "
                f"{timed_out.seconds:g}s (another call is still getting it, from the token "
                "store or with GetToken)",
            ) from None

    async def invalidate(self, principal: Principal, failed: Token) -> None:
        """Forget ``failed``, a token the server refused (see ``TokenCache.invalidate``)."""
        await self.cache.invalidate(principal.key, failed)
        await self._proving.invalidate(self._unproven_key(principal), failed)
