"""Settings (flag > environment > profile), the password's sources, and the persistent
token cache of the command line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from smartconnect_async import TokenKey
from smartconnect_async.cli._config import ConfigError, resolve_settings
from smartconnect_async.emulator import DemoCredential, Emulator
from smartconnect_async.token_store import FileTokenStore

API_URL = "http://emulator.test/API"


def write_config(cli_env: Path, text: str) -> Path:
    folder = cli_env / "config"
    folder.mkdir(exist_ok=True)
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def token_files(cli_env: Path) -> list[Path]:
    folder = cli_env / "cache" / "tokens"
    return sorted(folder.iterdir()) if folder.exists() else []


# ---- settings --------------------------------------------------------------------------


def test_precedence_flag_over_env_over_profile() -> None:
    profiles = {
        "default": {"api_url": "https://default/API", "email": "d@x", "company_id": "D"},
        "prod": {"api_url": "https://prod/API", "email": "p@x", "company_id": "P"},
    }
    env = {"SMARTCONNECT_EMAIL": "env@x", "SMARTCONNECT_PROFILE": "prod"}
    settings = resolve_settings({"company_id": "FLAG"}, env, profiles)
    assert (settings.api_url, settings.email, settings.company_id) == (
        "https://prod/API",
        "env@x",
        "FLAG",
    )
    assert settings.sources == {
        "api_url": "profile prod",
        "email": "SMARTCONNECT_EMAIL",
        "company_id": "--company-id",
    }
    # --profile beats SMARTCONNECT_PROFILE; with neither, "default" is used if present.
    assert resolve_settings({"profile": "default"}, env, profiles).api_url == "https://default/API"
    assert resolve_settings({}, {}, profiles).profile == "default"
    assert resolve_settings({}, {}, {}).profile is None


def test_unknown_profile_and_missing_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"no profile named 'nope'.*profiles: a"):
        resolve_settings({"profile": "nope"}, {}, {"a": {}})
    with pytest.raises(ConfigError, match=r"missing setting.*api_url.*SMARTCONNECT_API_URL"):
        resolve_settings({}, {}, {}).require()
    for url, problem in (
        ("ftp://x/API", "http:// or https://"),
        ("https://", "no host"),
        ("https://sc.example.com/API?tenant=1", "query or a fragment"),
        ("https://sc.example.com/API#top", "query or a fragment"),
        ("https://sc example.com/API", "spaces"),
    ):
        settings = resolve_settings({"api_url": url, "email": "e", "company_id": "c"}, {}, {})
        with pytest.raises(ConfigError, match=problem):
            settings.require()


def test_profile_from_the_config_file(
    run_cli, cli_env: Path, monkeypatch: pytest.MonkeyPatch, login: DemoCredential
) -> None:
    for name in ("SMARTCONNECT_API_URL", "SMARTCONNECT_EMAIL", "SMARTCONNECT_COMPANY_ID"):
        monkeypatch.delenv(name)
    write_config(
        cli_env,
        f"""
[profiles.emu]
api_url = "{API_URL}"
email = "{login.email}"
company_id = "{login.company_id}"
password = "never read from here"

[profiles.broken]
api_url = "http://wrong.invalid/API"
""",
    )
    result = run_cli("--profile", "emu", "maps", "list", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 6
    assert "secrets never go in the config file" in result.stderr

    # The profile may follow the command too; a flag beats the profile's value.
    shown = run_cli("config", "show", "--profile", "broken", "--api-url", API_URL)
    assert shown.exit_code == 0
    assert f"{API_URL}  [--api-url]" in shown.stdout
    assert "profile     broken" in shown.stdout

    missing = run_cli("--profile", "broken", "maps", "list")
    assert missing.exit_code == 2
    assert "missing setting(s) email, company_id" in missing.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "nope", "maps", "list"], "no profile named 'nope'"),
        (["--api-url", "not-a-url", "maps", "list"], "http:// or https://"),
    ],
)
def test_configuration_errors_exit_2(
    run_cli, emulator: Emulator, args: list[str], message: str
) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert emulator.counters.total_calls == 0


def test_timeout_from_the_environment(
    run_cli, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def recording_client() -> httpx.AsyncClient:
        async def hook(request: httpx.Request) -> None:
            seen.append(request.extensions["timeout"]["read"])

        http = run_cli.client()
        http.event_hooks["request"].append(hook)
        return http

    monkeypatch.setenv("SMARTCONNECT_TIMEOUT", "7.5")
    assert run_cli("maps", "list", http_client=recording_client).exit_code == 0
    assert run_cli("--timeout", "3", "maps", "list", http_client=recording_client).exit_code == 0
    assert seen == [7.5, 7.5, 3]  # GetToken and GetMapList, then GetMapList (token cached)
    monkeypatch.setenv("SMARTCONNECT_TIMEOUT", "soon")
    result = run_cli("maps", "list")
    assert result.exit_code == 2
    assert "--timeout" in result.stderr
    assert "'soon' is not a valid float" in result.stderr


def test_bad_toml_is_a_configuration_error(run_cli, cli_env: Path) -> None:
    write_config(cli_env, "[profiles.x\n")
    result = run_cli("maps", "list")
    assert result.exit_code == 2
    assert "is not valid TOML" in result.stderr


# ---- the password ------------------------------------------------------------------------


def test_no_password_without_a_terminal_is_a_configuration_error(
    run_cli, monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    result = run_cli("maps", "list")
    assert result.exit_code == 2
    assert "no password for alice@northwind.example" in result.stderr
    assert emulator.counters.total_calls == 0


def test_password_prompt_on_a_terminal(
    run_cli, monkeypatch: pytest.MonkeyPatch, login: DemoCredential, assert_no_secrets
) -> None:
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return login.password

    result = run_cli("maps", "list", interactive=True, prompt=prompt)
    assert result.exit_code == 0, result.output
    assert asked == ["Password for alice@northwind.example"]
    assert_no_secrets(result)


def test_password_prompt_reads_without_echo(
    run_cli, monkeypatch: pytest.MonkeyPatch, login: DemoCredential
) -> None:
    """The real prompt (click, hide_input) does not echo what is typed."""
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    result = run_cli("maps", "list", "--json", interactive=True, input=login.password + "\n")
    assert result.exit_code == 0, result.output
    assert "Password for alice@northwind.example" in result.stderr
    assert login.password not in result.stdout + result.stderr


def test_password_from_the_os_keyring(
    run_cli, monkeypatch: pytest.MonkeyPatch, login: DemoCredential
) -> None:
    keyring = pytest.importorskip("keyring")
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    looked_up: list[tuple[str, str]] = []

    def get_password(service: str, username: str) -> str:
        looked_up.append((service, username))
        return login.password

    monkeypatch.setattr(keyring, "get_password", get_password)
    result = run_cli("maps", "list")
    assert result.exit_code == 0, result.output
    assert looked_up == [("smartconnect-async", login.email)]


def test_password_is_never_a_flag(run_cli) -> None:
    result = run_cli("--password", "x", "maps", "list")
    assert result.exit_code == 2
    assert "No such option '--password'" in result.stderr


# ---- the token cache ---------------------------------------------------------------------


def test_second_invocation_reuses_the_cached_token(
    run_cli, emulator: Emulator, cli_env: Path
) -> None:
    assert run_cli("maps", "list").exit_code == 0
    assert run_cli("run", "Import Items").exit_code == 0
    assert emulator.counters.calls["GetToken"] == 1
    assert emulator.counters.calls["GetMapList"] == 2  # the second one to find the map

    (path,) = token_files(cli_env)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    (token,) = emulator.tokens
    assert json.loads(path.read_text())["value"] == token


def test_cached_token_needs_no_password(
    run_cli, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("token").exit_code == 0
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    result = run_cli("maps", "list")  # not interactive, no password: the cache suffices
    assert result.exit_code == 0, result.output
    assert emulator.counters.calls["GetToken"] == 1


def test_refused_cached_token_without_password_says_what_to_do(
    run_cli, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("token").exit_code == 0
    monkeypatch.delenv("SMARTCONNECT_PASSWORD")
    emulator.advance_clock(100 * 24 * 3600)  # the server has expired the cached token
    result = run_cli("maps", "list")
    assert result.exit_code == 2
    assert "refused the cached token and no password is available" in result.stderr


def test_no_token_cache_fetches_every_time(run_cli, emulator: Emulator, cli_env: Path) -> None:
    for _ in range(2):
        assert run_cli("--no-token-cache", "maps", "list").exit_code == 0
    assert emulator.counters.calls["GetToken"] == 2
    assert token_files(cli_env) == []


def test_corrupt_cache_file_is_ignored_with_a_warning(
    run_cli, emulator: Emulator, cli_env: Path, login: DemoCredential
) -> None:
    key = TokenKey.of(API_URL, login.company_id, login.email)
    path = FileTokenStore(cli_env / "cache" / "tokens").path_for(key)
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "value": "trunc')
    result = run_cli("maps", "list")
    assert result.exit_code == 0, result.output
    assert "warning: ignoring token cache file" in result.stderr
    assert "corrupt or truncated" in result.stderr
    assert emulator.counters.calls["GetToken"] == 1
    (token,) = emulator.tokens
    assert json.loads(path.read_text())["value"] == token  # replaced by a good one


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("x = " + "[" * 50_000 + "]" * 50_000, "nested too deep"),
        (None, "is not UTF-8 text"),
    ],
    ids=["nested", "latin-1"],
)
def test_an_unreadable_config_file_is_exit_2_naming_it(
    run_cli, cli_env: Path, content: str | None, message: str
) -> None:
    path = write_config(cli_env, "")
    if content is None:
        path.write_bytes('[profiles.default]\napi_url = "caf\xe9"\n'.encode("latin-1"))
    else:
        path.write_text(content, encoding="utf-8")
    result = run_cli("maps", "list")
    assert result.exit_code == 2
    assert str(path) in result.stderr
    assert message in result.stderr
