"""The ``SMARTCONNECT_*`` environment variables: read by ``SmartConnect.from_env`` and by
the command line (which adds its flags, a profile and the OS keyring on top)."""

from __future__ import annotations

import math
import os

from .models import Credentials

__all__ = ["API_URL", "COMPANY_ID", "EMAIL", "PASSWORD", "TIMEOUT", "read_env"]

API_URL = "SMARTCONNECT_API_URL"
EMAIL = "SMARTCONNECT_EMAIL"
PASSWORD = "SMARTCONNECT_PASSWORD"  # noqa: S105 - the variable's name, not a password
COMPANY_ID = "SMARTCONNECT_COMPANY_ID"
TIMEOUT = "SMARTCONNECT_TIMEOUT"


def _seconds(text: str) -> float:
    """``SMARTCONNECT_TIMEOUT``'s value: a positive number of seconds (``ValueError``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TIMEOUT} must be a positive number of seconds, not {text!r}")
    return value


def read_env() -> tuple[str, Credentials, float | None]:
    """The API Url, the credentials and the timeout (``None`` when not set) the
    environment gives. ``ValueError`` names each variable missing or empty.

    No local variable here holds the password or the environment (error trackers show
    the locals of the frames an error passes through)."""
    required = (API_URL, EMAIL, PASSWORD, COMPANY_ID)
    missing = [name for name in required if not os.environ.get(name, "").strip()]
    if missing:
        raise ValueError(f"environment variable(s) not set or empty: {', '.join(missing)}")
    timeout = os.environ.get(TIMEOUT, "").strip()
    credentials = Credentials(
        email=os.environ[EMAIL], password=os.environ[PASSWORD], company_id=os.environ[COMPANY_ID]
    )
    return os.environ[API_URL], credentials, _seconds(timeout) if timeout else None
