"""Settings (flag > environment > profile), the password's sources, and the persistent
token cache of the command line."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs
import httpx
import pytest

from smartconnect_async import Token, TokenKey, hash_password
from smartconnect_async.cli import _proof
from smartconnect_async.cli._config import ConfigError, resolve_settings
from smartconnect_async.cli._proof import proves
from smartconnect_async.emulator import DemoCredential, Emulator, User
from smartconnect_async.token_store import FileTokenStore

API_URL = "http://emulator.test/API"
REAL_SCRYPT_COST = _proof.SCRYPT  # read before any test makes proofs cheap


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

    path, proof = token_files(cli_env)  # the token and the proof of its password
    assert proof == path.with_suffix(".proof")
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(proof.stat().st_mode) == 0o600
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


# ---- a password given with a cached token ------------------------------------------------


def proof_file(cli_env: Path, login: DemoCredential) -> Path:
    key = TokenKey.of(API_URL, login.company_id, login.email)
    return FileTokenStore(cli_env / "cache" / "tokens").path_for(key).with_suffix(".proof")


def test_the_password_that_got_the_cached_token_makes_no_get_token(
    run_cli, emulator: Emulator, assert_no_secrets
) -> None:
    for _ in range(3):
        result = run_cli("--debug", "maps", "list")
        assert result.exit_code == 0, result.output
        assert_no_secrets(result)
    assert emulator.counters.calls["GetToken"] == 1


@pytest.fixture(params=["environment", "keyring"])
def give_password(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    """Gives the command line a password from the environment, or from the keyring."""

    def give(password: str) -> None:
        if request.param == "environment":
            monkeypatch.setenv("SMARTCONNECT_PASSWORD", password)
        else:
            keyring = pytest.importorskip("keyring")
            monkeypatch.delenv("SMARTCONNECT_PASSWORD", raising=False)
            monkeypatch.setattr(keyring, "get_password", lambda service, username: password)

    return give


def test_a_wrong_password_with_a_cached_token_is_refused_by_the_server(
    run_cli, emulator: Emulator, login: DemoCredential, give_password, assert_no_secrets
) -> None:
    assert run_cli("token").exit_code == 0
    wrong = "wrong+pass/word="
    give_password(wrong)
    result = run_cli("--debug", "maps", "list")
    assert result.exit_code == 1
    assert "error: maps list: GetToken failed with HTTP 401" in result.stderr
    assert "info (smartconnect_async.cli): the cached token has no proof" in result.stderr
    assert emulator.counters.calls["GetToken"] == 2
    assert "GetMapList" not in emulator.counters.calls
    assert_no_secrets(result)
    for secret in (wrong, "wrong%2Bpass", hash_password(wrong)):
        assert secret not in result.stdout + result.stderr

    # The cached token and its proof are as they were: the right password uses them.
    give_password(login.password)
    again = run_cli("token", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["from_cache"] is True
    assert emulator.counters.calls["GetToken"] == 2


def test_a_changed_password_replaces_the_cached_token_and_its_proof(
    run_cli, emulator: Emulator, login: DemoCredential, give_password, cli_env: Path
) -> None:
    assert run_cli("token").exit_code == 0
    old_proof = proof_file(cli_env, login).read_bytes()
    new = "Changed+Secret/2025="
    emulator.add_user(User(login.email, new, ("DEMO01", "DEMO02")))  # the old token stays valid
    give_password(new)
    result = run_cli("token", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["from_cache"] is False
    assert emulator.counters.calls["GetToken"] == 2
    assert proof_file(cli_env, login).read_bytes() != old_proof
    assert new not in result.stdout + result.stderr

    assert run_cli("maps", "list").exit_code == 0  # the new password is now the proven one
    assert emulator.counters.calls["GetToken"] == 2
    give_password(login.password)  # the old one is refused, however recently it worked
    stale = run_cli("maps", "list")
    assert stale.exit_code == 1
    assert "GetToken failed with HTTP 401" in stale.stderr
    assert emulator.counters.calls["GetToken"] == 3


def test_a_cached_token_without_a_proof_is_checked_once(
    run_cli,
    emulator: Emulator,
    login: DemoCredential,
    cli_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache file written before proofs existed: one GetToken, then the proof is there."""
    assert run_cli("token").exit_code == 0
    proof_file(cli_env, login).unlink()
    for _ in range(2):
        assert run_cli("maps", "list").exit_code == 0
    assert emulator.counters.calls["GetToken"] == 2
    assert proof_file(cli_env, login).exists()

    monkeypatch.delenv("SMARTCONNECT_PASSWORD")  # no password given: the cache as it is
    proof_file(cli_env, login).unlink()
    assert run_cli("maps", "list").exit_code == 0
    assert emulator.counters.calls["GetToken"] == 2


def test_a_corrupt_proof_counts_as_none_with_a_warning(
    run_cli, emulator: Emulator, login: DemoCredential, cli_env: Path
) -> None:
    assert run_cli("token").exit_code == 0
    path = proof_file(cli_env, login)
    path.write_text('{"version": 1, "salt": "tru')
    result = run_cli("maps", "list")
    assert result.exit_code == 0, result.output
    assert f"warning: ignoring password proof file {path}: it is not JSON" in result.stderr
    assert emulator.counters.calls["GetToken"] == 2
    assert proves(path.read_bytes(), login.password, stored_token(cli_env, login))


def test_a_proof_of_another_token_counts_as_none(
    run_cli, emulator: Emulator, login: DemoCredential, cli_env: Path
) -> None:
    assert run_cli("token").exit_code == 0
    first = proof_file(cli_env, login).read_bytes()
    assert run_cli("token", "--refresh").exit_code == 0  # a new token, with a new proof
    proof_file(cli_env, login).write_bytes(first)  # the proof of the first token beside it
    assert run_cli("maps", "list").exit_code == 0
    assert emulator.counters.calls["GetToken"] == 3


@pytest.fixture
def real_scrypt_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proofs at the cost the command line uses (not the tests' cheap one)."""
    monkeypatch.setattr(_proof, "SCRYPT", REAL_SCRYPT_COST)


@pytest.mark.usefixtures("real_scrypt_cost")
def test_the_proof_keeps_no_secret_in_a_recoverable_form(
    run_cli, emulator: Emulator, login: DemoCredential, cli_env: Path
) -> None:
    assert run_cli("token").exit_code == 0
    (value,) = emulator.tokens
    data = proof_file(cli_env, login).read_bytes()
    content = json.loads(data)
    assert sorted(content) == ["proof", "salt", "scrypt", "version"]
    assert content["scrypt"] == {"n": 16384, "r": 8, "p": 5}
    assert len(base64.b64decode(content["salt"])) == 16
    assert len(base64.b64decode(content["proof"])) == 32
    text = data.decode()
    for secret in (login.password, hash_password(login.password), value):
        for form in (secret, secret.encode().hex(), base64.b64encode(secret.encode()).decode()):
            assert form not in text
    token = stored_token(cli_env, login)
    assert proves(data, login.password, token)
    assert not proves(data, login.password + "x", token)
    assert not proves(data, login.password, attrs.evolve(token, value=token.value + "x"))
    again = _proof.make_proof(login.password, token)
    assert json.loads(again)["proof"] != content["proof"]  # salted: never the same twice


def stored_token(cli_env: Path, login: DemoCredential) -> Token:
    key = TokenKey.of(API_URL, login.company_id, login.email)
    token = anyio.run(FileTokenStore(cli_env / "cache" / "tokens").get, key)
    assert token is not None
    return token


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
