"""Fixtures for the command line tests: an in-process emulator reached through
``httpx.ASGITransport``, an isolated environment (config and cache directories, no
keyring), and a helper that invokes ``smartconnect`` with ``click.testing.CliRunner``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from click.testing import CliRunner, Result

from smartconnect_async import Credentials, Row, SmartConnect, hash_password
from smartconnect_async.cli import _proof
from smartconnect_async.cli._commands import cli
from smartconnect_async.cli._context import Hooks
from smartconnect_async.emulator import DEMO_CREDENTIALS, DemoCredential, Emulator, create_app

ORIGIN = "http://emulator.test"
API_URL = f"{ORIGIN}/API"


@pytest.fixture
def login() -> DemoCredential:
    """Alice, company DEMO01 (the company with the seeded import maps)."""
    return next(c for c in DEMO_CREDENTIALS if c.company_id == "DEMO01")


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture(autouse=True)
def cheap_password_proofs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Password proofs at a tiny scrypt cost: the real one takes about 0.2 s an
    invocation (test_config.py checks a proof made at the real cost)."""
    monkeypatch.setattr(_proof, "SCRYPT", _proof.ScryptCost(n=16, r=1, p=1))


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, login: DemoCredential) -> Path:
    """A clean environment: settings for the emulator, private config and cache
    directories, and an OS keyring that holds nothing."""
    for name in list(os.environ):
        if name.startswith("SMARTCONNECT_") or name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SMARTCONNECT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SMARTCONNECT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SMARTCONNECT_API_URL", API_URL)
    monkeypatch.setenv("SMARTCONNECT_EMAIL", login.email)
    monkeypatch.setenv("SMARTCONNECT_COMPANY_ID", login.company_id)
    monkeypatch.setenv("SMARTCONNECT_PASSWORD", login.password)
    try:
        import keyring
    except ImportError:  # the keyring extra is not installed: nothing to keep out
        pass
    else:
        monkeypatch.setattr(keyring, "get_password", lambda service, username: None)
    return tmp_path


class Cli:
    """Invokes ``smartconnect`` in-process against one emulator app."""

    def __init__(self, emulator: Emulator, backend: str = "asyncio") -> None:
        self.emulator = emulator
        self.app = create_app(emulator)
        self.backend = backend

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=ORIGIN)

    def __call__(self, *args: str, input: str | None = None, **hooks: Any) -> Result:
        options: dict[str, Any] = {
            "http_client": self.client,
            "backend": self.backend,
            "interactive": False,
        }
        options.update(hooks)
        return CliRunner().invoke(
            cli, list(args), obj=Hooks(**options), input=input, catch_exceptions=False
        )

    def reference(
        self,
        action: Callable[[SmartConnect], Any],
        login: DemoCredential,
    ) -> Any:
        """What the library itself answers, for comparison with the command line."""

        async def main() -> Any:
            async with (
                self.client() as http,
                SmartConnect(
                    API_URL,
                    Credentials(
                        email=login.email, password=login.password, company_id=login.company_id
                    ),
                    http_client=http,
                ) as sc,
            ):
                return await action(sc)

        return anyio.run(main)

    def rows(
        self, login: DemoCredential, map_ref: str, variables: Mapping[str, str] | None = None
    ) -> list[Row]:
        async def get(sc: SmartConnect) -> list[Row]:
            return (await sc.data.get_all(map_ref, variables)).rows

        result: list[Row] = self.reference(get, login)
        return result


@pytest.fixture
def run_cli(emulator: Emulator, cli_env: Path) -> Cli:
    """``run_cli("maps", "list")``: the command line against the in-process emulator."""
    return Cli(emulator)


@pytest.fixture
def assert_no_secrets(emulator: Emulator, login: DemoCredential) -> Callable[[Result], None]:
    """Checks that neither stdout nor stderr shows a token the emulator issued, the
    password or its hashed form."""

    def check(result: Result) -> None:
        secrets = [*emulator.tokens, login.password, hash_password(login.password)]
        assert len(secrets) >= 2
        for text in (result.stdout, result.stderr):
            for secret in secrets:
                assert secret not in text

    return check
