"""One invocation's state and its glue to the library: the client built from the
settings (with the persistent token cache and the password), the event loop, and the
mapping of every failure to one line on stderr and an exit status."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import NoReturn

import anyio
import click
import httpx
from rich.console import Console
from rich.text import Text

from .. import (
    AuthenticationError,
    Credentials,
    MemoryTokenStore,
    SmartConnect,
    SmartConnectError,
    Token,
    TokenKey,
    TokenStore,
    hash_password,
)
from ..token_store import FileTokenStore
from ._config import (
    ENV_PASSWORD,
    KEYRING_SERVICE,
    ConfigError,
    Settings,
    cache_dir,
    environment_password,
    keyring_password,
    resolve_settings,
)
from ._output import Secrets, WarningHandler, describe_error, make_console
from ._proof import ProofFiles

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliTokenStore",
    "CommandError",
    "Connection",
    "Hooks",
    "State",
    "open_client",
    "run_command",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""The reader of the output went away (``| head``): 128 + SIGPIPE, as other tools."""

REFRESH_MARGIN = timedelta(days=1)
"""How long before expiry a cached token is renewed (the library's default)."""
TOKEN_DIRECTORY = "tokens"  # noqa: S105 - a directory name
# Stands in for the password when a cached token makes one unnecessary. It is only sent
# if the server refuses the cached token, and that GetToken then fails as it should.
_NO_PASSWORD = "\x00no password: cached token only"  # noqa: S105

_LIBRARY_LOGGER = "smartconnect_async"
logger = logging.getLogger("smartconnect_async.cli")


class CommandError(Exception):
    """A failure already put in words: printed as one line, then exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Hooks:
    """Seams for tests and embedding.

    ``http_client`` makes the ``httpx.AsyncClient`` the library uses (called inside the
    event loop; the command line closes it); ``backend`` is the anyio backend;
    ``interactive`` says whether a password may be prompted for (default: when stdin
    is a terminal); ``prompt`` replaces the no-echo prompt; ``terminal`` makes stdout
    and stderr count as terminals or not (default: ask them).
    """

    http_client: Callable[[], httpx.AsyncClient] | None = None
    backend: str = "asyncio"
    interactive: bool | None = None
    prompt: Callable[[str], str] | None = None
    terminal: bool | None = None


@dataclass
class State:
    """What the top-level options decided, shared by every subcommand."""

    hooks: Hooks = field(default_factory=Hooks)
    flags: dict[str, str | None] = field(default_factory=dict)
    debug: bool = False
    token_cache: bool = True
    timeout: float | None = 30.0
    secrets: Secrets = field(default_factory=Secrets)
    out: Console = field(default_factory=make_console)
    err: Console = field(default_factory=lambda: make_console(stderr=True))
    password_missing: bool = False
    _handler: WarningHandler | None = None
    _saved_levels: dict[str, int] = field(default_factory=dict)

    def settings(self) -> Settings:
        """The connection settings: flag > environment > profile."""
        return resolve_settings(self.flags)

    def install_logging(self) -> None:
        """Show the library's warnings (all its logs with ``--debug``) on stderr."""
        self._handler = WarningHandler(self.err, self.secrets, debug=self.debug)
        names = [_LIBRARY_LOGGER, "httpx"] if self.debug else [_LIBRARY_LOGGER]
        for name in names:
            target = logging.getLogger(name)
            self._saved_levels[name] = target.level
            target.addHandler(self._handler)
            if self.debug:
                target.setLevel(logging.DEBUG)

    def remove_logging(self) -> None:
        """Undo ``install_logging``."""
        for name, level in self._saved_levels.items():
            target = logging.getLogger(name)
            if self._handler is not None:
                target.removeHandler(self._handler)
            target.setLevel(level)
        self._saved_levels.clear()
        self._handler = None

    def print_error(self, message: str) -> None:
        """One ``error:`` line on stderr, redacted."""
        line = Text("error: ", style="bold red")
        line.append(self.secrets.redact(message))
        self.err.print(line, soft_wrap=True)


class CliTokenStore:
    """The command line's view of a token store: it remembers every token value it sees
    (so no output of this invocation can show one), and a cache that cannot be written
    or cleared is a warning, not a failed command.

    With ``proofs``, once ``require_proof`` gave it this invocation's password, a stored
    token counts only if its proof says that password got it: otherwise it reads as
    none, so the client asks for a new token with the password (the server refuses a
    wrong one). A token it stores is kept with the proof of the password.
    """

    def __init__(
        self, inner: TokenStore, secrets: Secrets, proofs: ProofFiles | None = None
    ) -> None:
        self.inner = inner
        self.secrets = secrets
        self.proofs = proofs
        self._password: str | None = None
        self._proven: set[str] = set()  # the tokens the password is known to have got

    def __repr__(self) -> str:
        return repr(self.inner)

    def require_proof(self, password: str) -> None:
        """From now on, a stored token counts only if ``password`` got it."""
        self._password = password
        self._proven.clear()

    async def get(self, key: TokenKey) -> Token | None:
        token = await self.inner.get(key)
        if token is None:
            return None
        self.secrets.add(token.value)
        if self.proofs is None or self._password is None or token.value in self._proven:
            return token
        if await self.proofs.proves(key, self._password, token):
            self._proven.add(token.value)
            return token
        logger.info(
            "the cached token has no proof that the password given got it: "
            "asking for a new one, which checks the password"
        )
        return None

    async def set(self, key: TokenKey, token: Token) -> None:
        self.secrets.add(token.value)
        try:
            await self.inner.set(key, token)
            if self.proofs is not None and self._password is None:
                await self.proofs.delete(key)  # no password given got this token
            elif self.proofs is not None and self._password is not None:
                self._proven.add(token.value)  # the client got it with the password
                await self.proofs.write(key, self._password, token)
        except OSError as exc:
            logger.warning("the token cache could not be written (%s); going on without it", exc)

    async def delete(self, key: TokenKey) -> None:
        try:
            await self.inner.delete(key)
            if self.proofs is not None:
                await self.proofs.delete(key)
        except OSError as exc:
            logger.warning("the token cache could not be cleared (%s)", exc)


@dataclass
class Connection:
    """An open client and what it was made from."""

    sc: SmartConnect
    settings: Settings
    key: TokenKey
    store: TokenStore
    cache_location: str | None


def _usable(token: Token | None) -> bool:
    return token is not None and datetime.now(timezone.utc) < token.expires_at - REFRESH_MARGIN


async def _password(
    state: State, email: str, store: TokenStore, key: TokenKey, *, fresh: bool
) -> str:
    password = environment_password() or keyring_password(email)
    if password is not None:
        return password
    if not fresh and _usable(await store.get(key)):
        state.password_missing = True
        return _NO_PASSWORD
    interactive = state.hooks.interactive
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if not interactive:
        raise ConfigError(
            f"no password for {email}: set {ENV_PASSWORD}, save it in the OS keyring "
            f"(service {KEYRING_SERVICE!r}, user {email!r}), or run in a terminal to be asked"
        )
    prompt = state.hooks.prompt or (lambda text: str(click.prompt(text, hide_input=True, err=True)))
    password = prompt(f"Password for {email}")
    if not password:
        raise ConfigError("no password given")
    return password


@asynccontextmanager
async def open_client(
    state: State, *, max_concurrent_runs: int = 4, fresh_token: bool = False
) -> AsyncIterator[Connection]:
    """A ``SmartConnect`` client for the resolved settings, with the persistent token
    cache (unless ``--no-token-cache``). ``fresh_token``: a password is needed even if
    a token is cached. A password given is checked: a cached token not proven to be
    that password's is replaced (see ``CliTokenStore``)."""
    settings = state.settings()
    api_url, email, company_id = settings.require()
    key = TokenKey.of(api_url, company_id, email)
    location: str | None = None
    if state.token_cache:
        directory = cache_dir() / TOKEN_DIRECTORY
        files, location = FileTokenStore(directory), str(directory)
        store = CliTokenStore(files, state.secrets, ProofFiles(files))
    else:
        store = CliTokenStore(MemoryTokenStore(), state.secrets)
    password = await _password(state, email, store, key, fresh=fresh_token)
    if not state.password_missing:
        state.secrets.add(password, hash_password(password))
        store.require_proof(password)  # a password given is checked, never ignored
    http_client = state.hooks.http_client() if state.hooks.http_client is not None else None
    try:
        client = SmartConnect(
            api_url,
            Credentials(email=email, password=password, company_id=company_id),
            timeout=state.timeout,
            http_client=http_client,
            token_store=store,
            max_concurrent_runs=max_concurrent_runs,
            refresh_margin=REFRESH_MARGIN,
        )
        async with client as sc:
            yield Connection(sc, settings, key, store, location)
    finally:
        if http_client is not None:
            await http_client.aclose()


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-exception groups."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
            exc = inner[0]
        else:
            return exc


def run_command(
    state: State,
    command: Callable[[], Awaitable[int]],
    *,
    what: str,
    map_name: str | None = None,
    interrupted: str = "interrupted",
) -> NoReturn:
    """Run the async ``command`` and exit with its status; a failure becomes one line
    on stderr (a traceback too with ``--debug``) and a non-zero status; Ctrl-C prints
    ``interrupted`` and exits 130."""
    ctx = click.get_current_context()
    try:
        code = anyio.run(command, backend=state.hooks.backend)
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        state.print_error(f"{what}: {interrupted}")
        code = EXIT_INTERRUPTED
    except BaseException as raised:
        exc = _unwrap(raised)
        if isinstance(exc, (click.exceptions.Exit, click.ClickException, click.Abort)):
            raise exc from None
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, BrokenPipeError):
            _silence_stdout()  # the reader went away (`| head`): stop quietly
            code = EXIT_BROKEN_PIPE
        else:
            code = report_failure(state, exc, what=what, map_name=map_name)
    ctx.exit(code)


def _silence_stdout() -> None:
    """Point stdout at the null device, so the flush at exit fails no more."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    finally:
        os.close(null)


def report_failure(state: State, exc: Exception, *, what: str, map_name: str | None = None) -> int:
    """Print ``exc`` as one line (and its traceback with ``--debug``); its exit status."""
    if state.debug:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        state.err.print(Text(state.secrets.redact(text), style="dim"), soft_wrap=True)
    if isinstance(exc, CommandError):
        state.print_error(str(exc))
        return exc.exit_code
    if isinstance(exc, ConfigError):
        state.print_error(str(exc))
        return EXIT_USAGE
    if (
        isinstance(exc, AuthenticationError)
        and exc.endpoint == "GetToken"
        and state.password_missing
    ):
        state.print_error(
            f"{what}: the server refused the cached token and no password is available: "
            f"set {ENV_PASSWORD}, save it in the OS keyring, or run in a terminal to be asked"
        )
        return EXIT_USAGE
    if isinstance(exc, SmartConnectError):
        state.print_error(f"{what}: {describe_error(exc, map_name=map_name)}")
        return EXIT_FAILURE
    if isinstance(exc, ValueError):
        state.print_error(f"{what}: {exc}")
        return EXIT_USAGE
    if isinstance(exc, OSError):
        state.print_error(f"{what}: {exc}")
        return EXIT_FAILURE
    hint = "" if state.debug else " (run with --debug for the traceback)"
    state.print_error(f"{what}: unexpected {type(exc).__name__}: {exc}{hint}")
    return EXIT_FAILURE
