"""Redaction: keep tokens and passwords out of log lines and messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["REDACTED", "RedactQueryFilter", "redact", "redact_url"]

REDACTED = "[REDACTED]"
_SECRET_PARAMS = re.compile(r"(?i)((?:\b|[?&;])(?:token|password)=)[^&\s\"'<>]*")


def redact_url(text: str) -> str:
    """``text`` with the values of ``token=`` and ``password=`` query parameters replaced.

    Use it on URLs in your own event hooks and logs: SmartConnect puts the token in the
    query string of every call.
    """
    return _SECRET_PARAMS.sub(r"\1" + REDACTED, text)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (and its percent-encoded form) replaced, and with secret
    query parameters redacted."""
    for secret in secrets:
        if len(secret) < 4:
            continue
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            text = text.replace(form, REDACTED)
    return redact_url(text)


class RedactQueryFilter(logging.Filter):
    """A logging filter that redacts secret query parameters from a record's message
    (httpx logs each request's full URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's to report
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_filter(logger_name: str) -> None:
    """Attach one ``RedactQueryFilter`` to the named logger (idempotent)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQueryFilter) for f in target.filters):
        target.addFilter(RedactQueryFilter())
