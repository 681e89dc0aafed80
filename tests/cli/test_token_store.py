"""``FileTokenStore``: round trip, permissions, atomic replace, unusable files, delete,
and reuse of one token by two clients (two processes, in effect)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import httpx
import pytest

from smartconnect_async import Credentials, SmartConnect, Token, TokenKey, TokenStore
from smartconnect_async.emulator import DEMO_CREDENTIALS, Emulator, create_app
from smartconnect_async.token_store import FileTokenStore

pytestmark = pytest.mark.anyio

POSIX = os.name == "posix"
KEY = TokenKey.of("https://tenant.example/API/", "ACME", "Ann@Example.com")
OTHER_KEY = TokenKey.of("https://tenant.example/API", "OTHER", "ann@example.com")
ISSUED = datetime(2025, 1, 31, 8, 5, 15, 866000, tzinfo=timezone.utc)


def make_token(value: str = "dG9rZW4+Lz0=", issued: datetime = ISSUED) -> Token:
    return Token(
        value=value,
        company_id="ACME",
        email="ann@example.com",
        issued_at=issued,
        expires_at=issued + timedelta(days=89),
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_round_trip_and_file_content(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens")
    assert isinstance(store, TokenStore)
    token = make_token()
    await store.set(KEY, token)
    assert await store.get(KEY) == token

    path = store.path_for(KEY)
    assert path.name == hashlib.sha256(str(KEY).encode()).hexdigest() + ".json"
    content = json.loads(path.read_text())
    assert content["key"] == {
        "api_url": "https://tenant.example/API",
        "company_id": "ACME",
        "email": "ann@example.com",
    }
    assert content["value"] == token.value
    assert content["company_id"] == "ACME"
    assert content["email"] == "ann@example.com"
    assert datetime.fromisoformat(content["issued_at"]) == ISSUED
    assert datetime.fromisoformat(content["expires_at"]) == token.expires_at
    assert token.value not in repr(store)


async def test_missing_directory_reads_as_none_and_is_not_created(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "absent" / "tokens")
    assert await store.get(KEY) is None
    assert not (tmp_path / "absent").exists()


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
async def test_permissions_file_0600_directory_0700(tmp_path: Path) -> None:
    existing = tmp_path / "home"
    existing.mkdir()
    existing.chmod(0o755)
    old_umask = os.umask(0o022)  # a permissive umask must not widen either mode
    try:
        store = FileTokenStore(existing / "cache" / "tokens")
        await store.set(KEY, make_token())
    finally:
        os.umask(old_umask)
    assert mode(store.path_for(KEY)) == 0o600
    assert mode(existing / "cache" / "tokens") == 0o700
    assert mode(existing / "cache") == 0o700  # a parent it created is private too
    assert mode(existing) == 0o755  # an existing directory is left alone


async def test_set_replaces_atomically_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    await store.set(KEY, make_token("first"))
    inode = store.path_for(KEY).stat().st_ino
    await store.set(KEY, make_token("second"))
    assert (await store.get(KEY) or make_token()).value == "second"
    assert listing(tmp_path) == [store.path_for(KEY).name]
    if POSIX:
        assert store.path_for(KEY).stat().st_ino != inode  # a new file renamed over the old


async def test_failed_write_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileTokenStore(tmp_path)
    await store.set(KEY, make_token("old"))

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        await store.set(KEY, make_token("new"))
    monkeypatch.undo()
    assert (await store.get(KEY) or make_token()).value == "old"
    assert listing(tmp_path) == [store.path_for(KEY).name]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"version": 1, "key": ', "not JSON"),  # truncated
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a token file"),
        (b'{"version": 99}', "format version"),
    ],
)
async def test_corrupt_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    store = FileTokenStore(tmp_path)
    store.path_for(KEY).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert await store.get(KEY) is None
    assert any(
        "ignoring token cache file" in r.getMessage() and reason in r.getMessage()
        for r in caplog.records
    )


async def test_bad_fields_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileTokenStore(tmp_path)
    await store.set(KEY, make_token())
    path = store.path_for(KEY)
    good = json.loads(path.read_text())
    for change in (
        {"value": 42},
        {"value": ""},
        {"issued_at": "yesterday"},
        {"expires_at": "2025-04-30T08:05:15"},  # no time zone
        {"email": None},
    ):
        path.write_text(json.dumps({**good, **change}))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
            assert await store.get(KEY) is None, change
        assert "ignoring token cache file" in caplog.text


async def test_foreign_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file written for another key (copied, or renamed by hand) is not used."""
    store = FileTokenStore(tmp_path)
    await store.set(OTHER_KEY, make_token("other company's token"))
    store.path_for(OTHER_KEY).rename(store.path_for(KEY))
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert await store.get(KEY) is None
    assert "written for another API Url, company or user" in caplog.text
    assert "other company's token" not in caplog.text


@pytest.mark.skipif(not POSIX, reason="symbolic links")
async def test_symbolic_link_is_not_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = FileTokenStore(tmp_path / "elsewhere")
    await elsewhere.set(KEY, make_token())
    store = FileTokenStore(tmp_path / "tokens")
    store.directory.mkdir()
    store.path_for(KEY).symlink_to(elsewhere.path_for(KEY))
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"):
        assert await store.get(KEY) is None
    assert "symbolic link" in caplog.text


@pytest.mark.skipif(not POSIX, reason="FIFOs")
@pytest.mark.parametrize("kind", ["fifo", "directory"])
async def test_anything_but_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    # A FIFO at the cache path hung the CLI for ever, even after Ctrl-C.
    store = FileTokenStore(tmp_path)
    if kind == "fifo":
        os.mkfifo(store.path_for(KEY))
    else:
        store.path_for(KEY).mkdir()
    with caplog.at_level(logging.WARNING, logger="smartconnect_async"), anyio.fail_after(5):
        assert await store.get(KEY) is None
    assert "not a regular file" in caplog.text or "Is a directory" in caplog.text
    if kind == "fifo":  # and a token can still be stored there, replacing it
        await store.set(KEY, make_token())
        assert await store.get(KEY) == make_token()


async def test_delete(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path)
    await store.set(KEY, make_token())
    await store.set(OTHER_KEY, make_token("other"))
    await store.delete(KEY)
    assert await store.get(KEY) is None
    assert not store.path_for(KEY).exists()
    assert (await store.get(OTHER_KEY) or make_token()).value == "other"
    await store.delete(KEY)  # deleting what is not there is fine


async def test_two_clients_share_one_token_through_the_files(tmp_path: Path) -> None:
    """Two clients (as two processes would) make one GetToken between them."""
    emulator = Emulator()
    app = create_app(emulator)
    login = next(c for c in DEMO_CREDENTIALS if c.company_id == "DEMO01")
    credentials = Credentials(email=login.email, password=login.password, company_id="DEMO01")
    for _ in range(2):
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http,
            SmartConnect(
                "http://emulator.test/API",
                credentials,
                http_client=http,
                token_store=FileTokenStore(tmp_path),
            ) as sc,
        ):
            assert [m.id for m in await sc.maps.list()]
    assert emulator.counters.calls["GetToken"] == 1
    assert emulator.counters.calls["GetMapList"] == 2
    (name,) = listing(tmp_path)
    assert (tmp_path / name).read_text().count(next(iter(emulator.tokens))) == 1
