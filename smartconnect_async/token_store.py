"""``FileTokenStore``: tokens kept in files, so separate processes (a command line run
again and again, a cron job) reuse one three-month token instead of asking for a new one
each time.

    from smartconnect_async import SmartConnect
    from smartconnect_async.token_store import FileTokenStore

    sc = SmartConnect(api_url, credentials, token_store=FileTokenStore("~/.cache/sc"))

Each token is one JSON file named by the SHA-256 of ``str(TokenKey)``, readable by its
owner only (mode 0600, in a directory of mode 0700 when the store creates it) and
replaced atomically, so a reader never sees half a file. A file that cannot be read as
a token of the key asked for (corrupt, truncated, written for another key, owned by
another user) is ignored with a logged warning: the client then fetches a new token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio.to_thread

from ._tokens import TokenKey
from .models import Token

__all__ = ["FileTokenStore"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAX_FILE_SIZE = 64 * 1024  # a token file is a few hundred bytes; anything bigger is not ours
_SUFFIX = ".json"


class FileTokenStore:
    """A ``TokenStore`` that keeps one JSON file per token in ``directory``.

    The directory (and any missing parent) is created on the first write, with mode
    0700; an existing directory is used as it is. The file holds the token itself: keep the
    directory private. File I/O runs in a worker thread (``anyio.to_thread``).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.directory)!r})"

    def path_for(self, key: TokenKey) -> Path:
        """The file that holds the token of ``key``."""
        digest = hashlib.sha256(str(key).encode("utf-8")).hexdigest()
        return self.directory / f"{digest}{_SUFFIX}"

    async def get(self, key: TokenKey) -> Token | None:
        """The token stored under ``key``; ``None`` when there is none or the file is
        unusable (a warning says why)."""
        return await anyio.to_thread.run_sync(self._read, key, abandon_on_cancel=True)

    async def set(self, key: TokenKey, token: Token) -> None:
        """Store ``token`` under ``key``, atomically replacing any previous file."""
        await anyio.to_thread.run_sync(self._write, key, token, abandon_on_cancel=True)

    async def delete(self, key: TokenKey) -> None:
        """Remove the file of ``key``, if there is one."""
        await anyio.to_thread.run_sync(self._remove, key, abandon_on_cancel=True)

    # ---- blocking parts, run in a worker thread ------------------------------------

    def _read(self, key: TokenKey) -> Token | None:
        path = self.path_for(key)
        try:
            data = _read_private_file(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("ignoring token cache file %s: %s", path, exc.strerror or exc)
            return None
        try:
            return _decode(data, key)
        except ValueError as exc:
            logger.warning("ignoring token cache file %s: %s", path, exc)
            return None

    def _write(self, key: TokenKey, token: Token) -> None:
        self._ensure_directory()
        payload = json.dumps(_encode(key, token), indent=2).encode("utf-8") + b"\n"
        _write_private_file(self.path_for(key), payload)

    def _remove(self, key: TokenKey) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()

    def _ensure_directory(self) -> None:
        missing: list[Path] = []
        folder = self.directory
        while not folder.is_dir():
            missing.append(folder)
            if folder.parent == folder:
                break
            folder = folder.parent
        for folder in reversed(missing):  # every directory it creates is private
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
                os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _write_private_file(path: Path, payload: bytes) -> None:
    """Replace ``path`` with a file of ``payload`` readable by its owner only, atomically
    (its directory must exist)."""
    # mkstemp creates the file with mode 0600 in the same directory, so os.replace
    # is an atomic rename on the same file system.
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _read_private_file(path: Path) -> bytes:
    """The bytes of ``path``, refusing symbolic links, anything but a regular file (a
    FIFO would block the read for ever: it is opened without blocking, then refused),
    files of another user and files too big to be a token (``OSError`` says which)."""
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():
            raise OSError(exc.errno, "it is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "it is not a regular file")
        getuid = getattr(os, "getuid", None)
        if getuid is not None and info.st_uid != getuid():
            raise OSError(0, "it belongs to another user")
        if info.st_size > _MAX_FILE_SIZE:
            raise OSError(0, "it is too big to be a token file")
        return file.read(_MAX_FILE_SIZE + 1)


def _encode(key: TokenKey, token: Token) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "key": {"api_url": key.api_url, "company_id": key.company_id, "email": key.email},
        "value": token.value,
        "company_id": token.company_id,
        "email": token.email,
        "issued_at": token.issued_at.isoformat(),
        "expires_at": token.expires_at.isoformat(),
    }


def _decode(data: bytes, key: TokenKey) -> Token:
    """The token in a file's ``data``, if it is a token file written for ``key``."""
    try:
        content = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("it is not JSON (corrupt or truncated)") from None
    if not isinstance(content, dict):
        raise ValueError("it is not a token file")
    if content.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {content.get('version')!r}")
    stored_key = content.get("key")
    expected = {"api_url": key.api_url, "company_id": key.company_id, "email": key.email}
    if stored_key != expected:
        raise ValueError("it was written for another API Url, company or user")
    value = _text(content, "value")
    if not value:
        raise ValueError("its token is empty")
    return Token(
        value=value,
        company_id=_text(content, "company_id"),
        email=_text(content, "email"),
        issued_at=_moment(content, "issued_at"),
        expires_at=_moment(content, "expires_at"),
    )


def _text(content: dict[str, Any], name: str) -> str:
    value = content.get(name)
    if not isinstance(value, str):
        raise ValueError(f"its {name!r} is missing or not text")
    return value


def _moment(content: dict[str, Any], name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_text(content, name))
    except ValueError:
        raise ValueError(f"its {name!r} is not an ISO date and time") from None
    if moment.tzinfo is None:
        raise ValueError(f"its {name!r} has no time zone")
    return moment
