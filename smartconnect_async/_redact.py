"""Redaction: keep tokens and passwords out of log lines and messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

__all__ = ["REDACTED", "RedactQueryFilter", "Secrets", "redact", "redact_url"]

REDACTED = "[REDACTED]"
_SECRET_PARAMS = re.compile(r"(?i)((?:\b|[?&;])(?:token|password)=)[^&\s\"'<>]*")


class Secrets(tuple[str, ...]):
    """What no message about a call may show: a tuple whose ``repr`` hides it, so that no
    frame's local variables show it either (error trackers, ``capture_locals``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secrets(<{len(self)} hidden>)"


def redact_url(text: str) -> str:
    """``text`` with the values of ``token=`` and ``password=`` query parameters replaced.

    Use it on URLs in your own event hooks and logs: SmartConnect puts the token in the
    query string of every call.
    """
    return _SECRET_PARAMS.sub(r"\1" + REDACTED, text)


# Printable ASCII as answers escape it: JSON (System.Text.Json writes "+" as \u002B, and
# may write "/" as \/), HTML character references, percent-encoding in either case.
_JSON_ESCAPE = re.compile(r"\\u00([2-7][0-9A-Fa-f])|\\([\"\\/])")
_HTML_REFERENCE = re.compile(r"&#(?:[xX]([0-9A-Fa-f]{1,4})|([0-9]{1,5}));")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def _html_character(match: re.Match[str]) -> str:
    code = int(match.group(1), 16) if match.group(1) else int(match.group(2))
    return chr(code) if 0x20 <= code < 0x7F else match.group(0)


def _plain(text: str) -> str:
    """``text`` with the escapes of printable ASCII that answers use read plain, and
    percent-escapes in upper case, as ``quote`` writes them."""
    if "\\" in text:
        text = _JSON_ESCAPE.sub(lambda m: m.group(2) or chr(int(m.group(1), 16)), text)
    if "&#" in text:
        text = _HTML_REFERENCE.sub(_html_character, text)
    if "%" in text:
        text = _PERCENT.sub(lambda m: m.group(0).upper(), text)
    return text


_SHORTEST_SHOWN = 8
"""Characters of a secret's start that a message may show when a cut went through it
(an excerpt of 60 characters): fewer are no help to anyone."""


def _cut_short(text: str, secret: str) -> str:
    """``text`` without any start of ``secret`` longer than ``_SHORTEST_SHOWN`` that a
    cut left (the whole secret is replaced later)."""
    for end in range(len(secret) - 1, _SHORTEST_SHOWN - 1, -1):
        part = secret[:end]
        if part in text:
            text = text.replace(part, REDACTED)
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, raw, percent-encoded or escaped as JSON or
    HTML write it, or its start where a cut went through it, and with secret query
    parameters redacted."""
    text = _plain(text)
    secrets = [secret for secret in secrets if len(secret) >= 4]
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            text = text.replace(form, REDACTED)
    for secret in secrets:  # then what a cut left of one
        text = _cut_short(text, secret)
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
