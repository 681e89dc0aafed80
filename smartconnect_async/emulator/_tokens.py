"""Passwords and tokens: the documented password hash, the token format, 3-month expiry."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

PASSWORD_KEY = "6clDgmNok3WtR8GKYW6N"  # noqa: S105 (published by the vendor)
"""The vendor's published HMAC key for the hashed password form."""

TOKEN_MONTHS = 3


def hash_password(password: str) -> str:
    """``base64(HMAC-SHA256(key=PASSWORD_KEY, msg=password + ":" + PASSWORD_KEY))``."""
    digest = hmac.new(
        PASSWORD_KEY.encode(), f"{password}:{PASSWORD_KEY}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode()


def password_matches(given: str, password: str) -> bool:
    """Whether ``given`` is ``password`` in plain text or in the hashed form."""
    given_bytes = given.encode()
    return hmac.compare_digest(given_bytes, password.encode()) or hmac.compare_digest(
        given_bytes, hash_password(password).encode()
    )


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, the day clamped to the target month's length."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class TokenRecord:
    """An issued token: who, which company, when issued and when it expires (UTC)."""

    token: str
    email: str
    company_id: str
    issued_at: datetime
    expires_at: datetime

    def valid_at(self, now: datetime) -> bool:
        """Whether the token is still valid at ``now``."""
        return now < self.expires_at


def make_token(
    *,
    secret: bytes,
    email: str,
    company_id: str,
    now: datetime,
    token_id: uuid.UUID,
    tenant: uuid.UUID,
) -> TokenRecord:
    """Issue a token in the reference's format.

    ``base64("<base64 HMAC>#<TOKEN GUID>#<TENANT GUID>#<EMAIL>#<issued, UTC, ms>")``; the
    HMAC (keyed with ``secret``) signs the other four parts. The issue time is truncated
    to the millisecond the token carries, so the record and the token agree.
    """
    issued = now.astimezone(timezone.utc).replace(microsecond=now.microsecond // 1000 * 1000)
    stamp = issued.strftime("%Y-%m-%dT%H:%M:%S.") + f"{issued.microsecond // 1000:03d}"
    body = f"{str(token_id).upper()}#{str(tenant).upper()}#{email.upper()}#{stamp}"
    signature = base64.b64encode(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    token = base64.b64encode(signature + b"#" + body.encode()).decode()
    return TokenRecord(token, email, company_id, issued, add_months(issued, TOKEN_MONTHS))


def make_opaque_token(
    *, rng: random.Random, email: str, company_id: str, now: datetime
) -> TokenRecord:
    """Issue a token that does not decode to the reference format.

    64 base64 characters of random bytes, always holding ``+``, ``/`` and ``=``, so a
    client must both percent-encode it and cope with a token it cannot read.
    """
    while True:
        token = base64.b64encode(rng.randbytes(47)).decode()
        if "+" in token and "/" in token:
            break
    issued = now.astimezone(timezone.utc)
    return TokenRecord(token, email, company_id, issued, add_months(issued, TOKEN_MONTHS))
