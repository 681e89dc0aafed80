"""Proofs of the password that got a cached token, so that a password given later is
checked by the server (one GetToken) unless it is that same password.

A proof is ``scrypt(password, salt + token)`` with a random salt: the token is mixed in
(it is not stored in the proof) so that a proof vouches for one token only, and a proof
left beside another token counts as none. Neither the password, nor the hashed form
GetToken sends, nor the token can be read back from a proof; each guess of the password
costs one scrypt. A proof is kept in a file beside the token's (``<token file>.proof``,
mode 0600), so the library's token files keep their format.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from pathlib import Path
from typing import Any, NamedTuple

import anyio.to_thread

from .. import Token, TokenKey
from ..token_store import FileTokenStore, _read_private_file, _write_private_file

__all__ = ["SCRYPT", "ProofFiles", "ScryptCost", "make_proof", "proves"]

logger = logging.getLogger("smartconnect_async.cli")

FORMAT_VERSION = 1


class ScryptCost(NamedTuple):
    """scrypt's parameters: CPU and memory cost, block size, parallelism."""

    n: int
    r: int
    p: int


SCRYPT = ScryptCost(n=2**14, r=8, p=5)
"""N = 2**14 and r = 8 take 16 MiB (128 * N * r bytes); with p = 5 this is one of
OWASP's minimum settings for scrypt, about 0.2 s a proof. A proof made with other
parameters counts as none, so changing them costs each user one GetToken."""
SALT_BYTES = 16
PROOF_BYTES = 32
_SUFFIX = ".proof"


def _scrypt(password: str, salt: bytes, token: Token) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt + token.value.encode("utf-8"),
        n=SCRYPT.n,
        r=SCRYPT.r,
        p=SCRYPT.p,
        dklen=PROOF_BYTES,
    )


def make_proof(password: str, token: Token) -> bytes:
    """The content of a proof file: ``password`` got ``token``."""
    salt = secrets.token_bytes(SALT_BYTES)
    content = {
        "version": FORMAT_VERSION,
        "scrypt": SCRYPT._asdict(),
        "salt": base64.b64encode(salt).decode("ascii"),
        "proof": base64.b64encode(_scrypt(password, salt, token)).decode("ascii"),
    }
    return json.dumps(content, indent=2).encode("utf-8") + b"\n"


def proves(data: bytes, password: str, token: Token) -> bool:
    """Whether the proof file ``data`` says that ``password`` got ``token``
    (``ValueError`` if it is no proof file of this format)."""
    try:
        content: Any = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        raise ValueError("it is not JSON (corrupt or truncated)") from None
    if not isinstance(content, dict) or content.get("version") != FORMAT_VERSION:
        raise ValueError("it is not a proof file of this version")
    try:
        salt = base64.b64decode(content["salt"], validate=True)
        proof = base64.b64decode(content["proof"], validate=True)
        parameters = content["scrypt"]
    except (KeyError, TypeError, ValueError):  # binascii.Error is a ValueError
        raise ValueError("its salt, proof or parameters are missing or malformed") from None
    if parameters != SCRYPT._asdict() or len(salt) != SALT_BYTES:
        return False  # made with other settings: as good as none
    return hmac.compare_digest(_scrypt(password, salt, token), proof)


class ProofFiles:
    """The proofs kept beside the token files of ``tokens``. File I/O and scrypt run in a
    worker thread; a proof file that cannot be read counts as none (with a warning)."""

    def __init__(self, tokens: FileTokenStore) -> None:
        self.tokens = tokens

    def path_for(self, key: TokenKey) -> Path:
        """The proof file of the token of ``key``."""
        return self.tokens.path_for(key).with_suffix(_SUFFIX)

    async def proves(self, key: TokenKey, password: str, token: Token) -> bool:
        """Whether the proof of ``key`` says that ``password`` got ``token``."""
        return await anyio.to_thread.run_sync(
            self._proves, key, password, token, abandon_on_cancel=True
        )

    async def write(self, key: TokenKey, password: str, token: Token) -> None:
        """Keep the proof that ``password`` got ``token``, replacing any other."""
        await anyio.to_thread.run_sync(self._write, key, password, token, abandon_on_cancel=True)

    async def delete(self, key: TokenKey) -> None:
        """Remove the proof of ``key``, if there is one."""
        await anyio.to_thread.run_sync(self._remove, key, abandon_on_cancel=True)

    def _proves(self, key: TokenKey, password: str, token: Token) -> bool:
        path = self.path_for(key)
        try:
            return proves(_read_private_file(path), password, token)
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.warning("ignoring password proof file %s: %s", path, exc.strerror or exc)
        except ValueError as exc:
            logger.warning("ignoring password proof file %s: %s", path, exc)
        return False

    def _write(self, key: TokenKey, password: str, token: Token) -> None:
        _write_private_file(self.path_for(key), make_proof(password, token))

    def _remove(self, key: TokenKey) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_for(key).unlink()
