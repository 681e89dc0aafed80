"""``SmartConnect``: the client. One connection pool and one token cache, shared by every
client made from it with ``with_credentials``."""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import attrs
import httpx

from ._backend import AutoBackend, Backend
from ._checks import check_count
from ._env import read_env
from ._httpx import HttpxBackend
from ._limits import RunLeases
from ._redact import REDACTED, redact_url
from ._session import Session
from ._tokens import Clock, Principal, TokenCache, TokenKey, Tokens, TokenStore, utc_now
from ._transport import Transport
from .auth import Auth
from .data import Data
from .errors import Errors
from .maps import MapDirectory, Maps
from .models import Credentials, Timeout
from .runs import Runs

__all__ = ["Keep", "SmartConnect"]


class Keep(enum.Enum):
    """``with_options``' default for a setting it leaves as it is."""

    KEEP = "keep"


_MAX_REFRESH_MARGIN = timedelta(days=89)
"""Tokens live three calendar months, 89 days at the least (1 February to 1 May): a
margin this long would renew one on every call."""


class SmartConnect:
    """An async client for one SmartConnect API Url, acting as one user of one company.

    Use it as ``async with SmartConnect(api_url, credentials) as sc: ...``, or call
    ``aclose()`` when done. ``with_credentials`` gives a client for another company or
    user that shares this one's connection pool and token cache.

    - ``timeout``: seconds (or a ``Timeout``) for each call; ``None`` waits forever.
    - ``max_connections``: the size of the connection pool.
    - ``max_retries``: how many times a failed call that is safe to repeat is retried.
    - ``max_concurrent_runs``: runs in flight at once per company, across every client
      sharing this pool (SmartConnect executes a company's runs on one server).
    - ``keepalive_expiry``: seconds an idle connection is kept; keep it below the
      server's idle timeout (uvicorn 5 s, IIS 120 s) so no request is written onto a
      connection the server is closing.
    - ``http_client``: an ``httpx.AsyncClient`` of your own (event hooks, proxies, mounts);
      you close it. Its own timeouts are overridden by ``timeout``.
    - ``backend``: the HTTP library. ``"auto"`` (the default) takes aiohttp on asyncio
      (a fraction of httpx's CPU per call under concurrency) and httpx on trio or when
      ``http_client`` is given; ``"httpx"`` or ``"aiohttp"`` force one.
    - ``token_store``: where tokens are kept (default: in memory): an object with async
      ``get``, ``set`` and ``delete`` methods. One that fails, or takes longer than the
      pool timeout, is logged and passed over.
    - ``refresh_margin``: how long before expiry a token is renewed (from 0 up to, not
      including, 89 days: tokens live three months, 89 days at the least).
    - ``max_answer_size``: the most bytes (after decompression) of an answer read whole
      (JSON: map lists, columns, run results); a larger one is ``ResponseParseError``
      (``RunOutcomeUnknown`` for a run) without reading the rest. Data (XML) answers are
      parsed as they stream in and have no such limit.
    - ``max_columns``: the most columns per table, and tables, of a data answer (every
      row is completed to its table's columns): more is ``ResponseParseError``.
    - ``run_limits``: ``max_concurrent_runs`` across a fleet of processes too: a
      ``smartconnect_async.redis_runs.RedisRunLimits`` (a run takes one of its company's
      leases in Redis after its slot in this process; never sent without one). You close it.

    A setting of the wrong type raises ``TypeError``, one out of range ``ValueError``,
    here rather than on the first call.
    """

    auth: Auth
    maps: Maps
    data: Data
    runs: Runs
    errors: Errors

    def __init__(
        self,
        api_url: str,
        credentials: Credentials,
        *,
        timeout: Timeout | float | None = 30.0,
        max_connections: int = 100,
        max_retries: int = 2,
        max_concurrent_runs: int = 4,
        keepalive_expiry: float = 4.0,
        http_client: httpx.AsyncClient | None = None,
        backend: Literal["auto", "httpx", "aiohttp"] = "auto",
        token_store: TokenStore | None = None,
        refresh_margin: timedelta = timedelta(days=1),
        max_answer_size: int = 64 << 20,
        max_columns: int = 4096,
        run_limits: RunLeases | None = None,
        clock: Clock = utc_now,
    ) -> None:
        _check_api_url(api_url)
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a smartconnect_async.Credentials")
        _check_timeout(timeout)
        check_count("max_connections", max_connections, minimum=1)
        check_count("max_retries", max_retries, minimum=0)
        check_count("max_concurrent_runs", max_concurrent_runs, minimum=1)
        check_count("max_answer_size", max_answer_size, minimum=1024)
        check_count("max_columns", max_columns, minimum=1)
        _check_keepalive_expiry(keepalive_expiry)
        _check_token_store(token_store)
        _check_refresh_margin(refresh_margin)
        _check_run_limits(run_limits)
        transport = Transport(
            api_url,
            _make_backend(backend, http_client, max_connections, keepalive_expiry),
            Tokens(
                TokenCache(
                    token_store,
                    refresh_margin=refresh_margin,
                    clock=clock,
                    store_timeout=Timeout.of(timeout).pool,
                )
            ),
            timeout=Timeout.of(timeout),
            max_retries=max_retries,
            max_connections=max_connections,
            max_concurrent_runs=max_concurrent_runs,
            max_answer_size=max_answer_size,
            max_columns=max_columns,
            run_leases=run_limits,
        )
        self._bind(transport, credentials, {}, owner=True, options=(None, None))

    def _bind(
        self,
        transport: Transport,
        credentials: Credentials,
        directories: dict[tuple[TokenKey, bytes], MapDirectory],
        *,
        owner: bool,
        options: tuple[Timeout | None, int | None],
    ) -> None:
        self._transport = transport
        self._directories = directories
        self._owner = owner
        self._options = options
        self.credentials = credentials
        principal = Principal.of(transport.api_url, credentials)
        session = Session(transport, principal, *options)
        # Per password too: a wrong password's failed lookup is not another's to share.
        directory = directories.setdefault((principal.key, principal.proof), MapDirectory())
        self.auth = Auth(session)
        self.maps = Maps(session, directory)
        self.data = Data(session, directory)
        self.runs = Runs(session, directory, lambda company_id: self.with_company(company_id).runs)
        self.errors = Errors(session, directory)

    @classmethod
    def from_env(cls, **options: Any) -> SmartConnect:
        """A client configured as the command line is: ``SMARTCONNECT_API_URL``,
        ``SMARTCONNECT_EMAIL``, ``SMARTCONNECT_PASSWORD``, ``SMARTCONNECT_COMPANY_ID`` and,
        if set, ``SMARTCONNECT_TIMEOUT`` (seconds; a ``timeout`` in ``options`` wins).
        ``options`` are ``SmartConnect``'s keyword arguments. A variable missing, empty
        or invalid is a ``ValueError`` naming it."""
        api_url, credentials, timeout = read_env()
        if timeout is not None:
            options.setdefault("timeout", timeout)
        return cls(api_url, credentials, **options)

    @property
    def api_url(self) -> str:
        """The API Url every call goes to."""
        return self._transport.api_url

    def __repr__(self) -> str:
        if "credentials" not in vars(self):  # refused by __init__: error trackers show it
            return "SmartConnect(<not made>)"
        return (
            f"SmartConnect({self.api_url!r}, company_id={self.credentials.company_id!r}, "
            f"email={self.credentials.email!r})"
        )

    def with_credentials(self, credentials: Credentials) -> SmartConnect:
        """A client for another company or user, sharing this client's connection pool,
        token cache and settings. Closing it does nothing; close the first client."""
        if not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a smartconnect_async.Credentials")
        return self._derived(credentials, self._options)

    def with_company(self, company_id: str) -> SmartConnect:
        """``with_credentials`` for another company of the same user (same password)."""
        return self.with_credentials(attrs.evolve(self.credentials, company_id=company_id))

    def with_options(
        self,
        *,
        timeout: Timeout | float | Keep | None = Keep.KEEP,
        max_retries: int | Keep = Keep.KEEP,
    ) -> SmartConnect:
        """This client with other defaults for its calls' ``timeout`` (``None``: no
        limit) and ``max_retries``, sharing its connection pool, token cache and limits.
        Closing it does nothing; close the first client."""
        default_timeout, default_retries = self._options
        if timeout is not Keep.KEEP:
            _check_timeout(timeout)
            default_timeout = Timeout.of(timeout)
        if max_retries is not Keep.KEEP:
            check_count("max_retries", max_retries, minimum=0)
            default_retries = max_retries
        return self._derived(self.credentials, (default_timeout, default_retries))

    def _derived(
        self, credentials: Credentials, options: tuple[Timeout | None, int | None]
    ) -> SmartConnect:
        other = SmartConnect.__new__(SmartConnect)
        other._bind(self._transport, credentials, self._directories, owner=False, options=options)
        return other

    async def aclose(self) -> None:
        """Close the connection pool (only the client that made it does)."""
        if self._owner:
            await self._transport.aclose()

    async def __aenter__(self) -> SmartConnect:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _make_backend(
    name: str,
    http_client: httpx.AsyncClient | None,
    max_connections: int,
    keepalive_expiry: float,
) -> Backend:
    if name not in ("auto", "httpx", "aiohttp"):
        raise ValueError(f"backend must be 'auto', 'httpx' or 'aiohttp', not {name!r}")
    if name == "auto" and http_client is None:
        return AutoBackend(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    if name == "aiohttp":
        if http_client is not None:
            raise ValueError("http_client is an httpx client: it cannot go with backend='aiohttp'")
        from ._aiohttp import AiohttpBackend

        return AiohttpBackend(max_connections=max_connections, keepalive_expiry=keepalive_expiry)
    return HttpxBackend(
        http_client, max_connections=max_connections, keepalive_expiry=keepalive_expiry
    )


def _shown_url(api_url: str) -> str:
    """``api_url`` as an error message may show it: with anything up to its last "@"
    (a user name and password, even one holding "/", "?" or "#") and any secret query
    parameter redacted."""
    if "@" in api_url:
        scheme, sep, rest = api_url.partition("://")
        if not sep:
            scheme, rest = "", api_url
        api_url = f"{scheme}{sep}{REDACTED}@{rest.rpartition('@')[2]}"
    return redact_url(api_url)


def _check_api_url(api_url: object) -> None:
    """An API Url is an absolute http(s) URL with a host, no user name or password (they
    would show in every ``repr`` and log line), and no query or fragment (the client adds
    the endpoint and its query)."""
    if not isinstance(api_url, str):
        raise TypeError(f"api_url must be a str, not {type(api_url).__name__}")
    problem = None
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https"):
        problem = "it must start with http:// or https://"
    elif not parts.hostname:
        problem = "it has no host"
    elif "@" in api_url:  # anywhere: a password holding "/" ends the host part early
        problem = "it must not carry a user name or password"
    elif parts.query or parts.fragment or "?" in api_url or "#" in api_url:
        problem = "it must not have a query or fragment"
    elif any(c.isspace() for c in api_url):
        problem = "it must not contain white space"
    else:
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            problem = "its port is not a number from 0 to 65535"
    if problem is not None:
        raise ValueError(f"api_url {_shown_url(api_url)!r} is not an API Url: {problem}")


def _check_timeout(timeout: object) -> None:
    """A ``Timeout``, seconds or ``None``; the values themselves ``Timeout`` checks."""
    if timeout is not None and not isinstance(timeout, (Timeout, int, float)):
        raise TypeError(
            f"timeout must be a Timeout, a number of seconds or None, not {type(timeout).__name__}"
        )


def _check_keepalive_expiry(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"keepalive_expiry must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"keepalive_expiry must be a finite number of seconds, at least 0, not {value!r}"
        )


def _check_token_store(store: object) -> None:
    if store is None:
        return
    missing = [
        name for name in ("get", "set", "delete") if not callable(getattr(store, name, None))
    ]
    if missing:
        raise TypeError(
            "token_store must have async get, set and delete methods; "
            f"{type(store).__name__} has no {', '.join(missing)}"
        )


def _check_run_limits(limits: object) -> None:
    if limits is not None and not callable(getattr(limits, "lease", None)):
        raise TypeError(
            "run_limits must be a smartconnect_async.redis_runs.RedisRunLimits (or have its "
            f"lease method), not {type(limits).__name__}"
        )


def _check_refresh_margin(value: object) -> None:
    if not isinstance(value, timedelta):
        raise TypeError(f"refresh_margin must be a datetime.timedelta, not {type(value).__name__}")
    if not timedelta(0) <= value < _MAX_REFRESH_MARGIN:
        raise ValueError(
            "refresh_margin must be at least 0 and less than 89 days (tokens live three "
            "months, 89 days at the least: a longer margin would renew the token on every "
            f"call), not {value!r}"
        )
