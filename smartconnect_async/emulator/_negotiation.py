"""Content negotiation as ASP.NET Web API's ``DefaultContentNegotiator`` does it: the media
type an answer is written in, given the request's Accept header.

The Accept values are sorted by quality, then specificity (``type/sub`` before ``type/*``
before ``*/*``), keeping their order otherwise. Each formatter, in its configured order
(JSON, then XML), takes the first value that admits one of its media types, quality 0
never. The best of those matches wins: the higher quality, then the more specific value,
then the earlier formatter. Values that cannot be read are dropped; without any value
left the first formatter answers.

ASP.NET falls back to that first formatter when nothing matches either; the emulator
answers 406 instead (``DefaultContentNegotiator(excludeMatchOnTypeOnly: true)``, without
its fallback to the request body's media type), so a client sending a wrong Accept is
caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

JSON_MEDIA = ("application/json", "text/json")
"""Media types of ASP.NET's JsonMediaTypeFormatter."""
XML_MEDIA = ("application/xml", "text/xml")
"""Media types of ASP.NET's XmlMediaTypeFormatter."""

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
"""An RFC 9110 token: a media type's type or subtype."""
_MEDIA_RANGE = re.compile(rf"({_TCHARS})/({_TCHARS})")
_QUALITY = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
"""A q value .NET reads (digits and a decimal point); any other q counts as 1."""


class _Range(NamedTuple):
    """One Accept value: a media range and its quality."""

    kind: str
    subtype: str
    quality: float

    @property
    def specificity(self) -> int:
        """0 for ``*/*``, 1 for ``type/*``, 2 for anything else (``type/sub``)."""
        if self.subtype != "*":
            return 2
        return 0 if self.kind == "*" else 1

    def admits(self, media: str) -> bool:
        kind, _, subtype = media.partition("/")
        if self.specificity == 0:
            return True
        return self.kind == kind and self.subtype in ("*", subtype)


def _ranges(accept: str) -> Iterator[_Range]:
    for value in accept.split(","):
        media, *parameters = value.split(";")
        found = _MEDIA_RANGE.fullmatch(media.strip())
        if found is None:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, text = parameter.partition("=")
            if name.strip().lower() == "q":
                quality = float(text) if _QUALITY.fullmatch(text.strip()) else 1.0
                break
        yield _Range(found[1].lower(), found[2].lower(), quality)


def negotiate(accept: str, *formats: tuple[str, ...]) -> str | None:
    """The media type to answer in: one of ``formats`` (each a formatter's media types,
    in formatter order), or None when Accept admits none of them (406)."""
    ranges = sorted(_ranges(accept), key=lambda r: (r.quality, r.specificity), reverse=True)
    if not ranges:
        return formats[0][0]
    best: tuple[float, int, str] | None = None
    for media_types in formats:
        match = next(
            (
                (accepted.quality, accepted.specificity, media)
                for accepted in ranges
                if accepted.quality > 0
                for media in media_types
                if accepted.admits(media)
            ),
            None,
        )
        if match is not None and (best is None or match[:2] > best[:2]):
            best = match
    return None if best is None else best[2]
