"""Reading JSON answers: decode, then check each field's type, raising
``ResponseParseError`` that names what was wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from .exceptions import ResponseParseError

__all__ = ["field", "json_list", "load", "variables_body"]

T = TypeVar("T")


def load(body: bytes, what: str) -> Any:
    """The JSON value of ``body``."""
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        excerpt = body[:60].decode("utf-8", "replace")
        raise ResponseParseError(f"{what} is not valid JSON ({exc}): {excerpt!r}") from None
    except RecursionError:
        raise ResponseParseError(f"{what} is JSON nested too deep to read") from None


def json_list(body: bytes, what: str) -> list[dict[str, Any]]:
    """A JSON array of objects."""
    value = load(body, what)
    if not isinstance(value, list):
        raise ResponseParseError(f"{what} is a JSON {type(value).__name__}, not a list")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ResponseParseError(f"{what}[{index}] is a {type(item).__name__}, not an object")
    return value


def field(
    obj: dict[str, Any],
    name: str,
    kind: type[T],
    what: str,
    index: int | None = None,
    *,
    default: Any = ...,
) -> T:
    """``obj[name]`` checked to be a ``kind``; ``default`` when missing or null, if given.

    ``obj`` is ``what`` (item ``index`` of it, when given): the message of the error names
    it, and is only built when there is an error.
    """
    value = obj.get(name)
    if type(value) is kind:
        return value
    if value is None and default is not ...:
        return default  # type: ignore[no-any-return]
    where = what if index is None else f"{what}[{index}]"
    if value is None:
        raise ResponseParseError(f"{where} has no {name!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        number = _whole(value)
        if number is None:
            raise ResponseParseError(f"{where}: {name!r} is {_shown(value)}, not a whole number")
        return number  # type: ignore[return-value]
    if not isinstance(value, kind):
        raise ResponseParseError(f"{where}: {name!r} is {_shown(value)}, not a {kind.__name__}")
    return value


def _whole(value: object) -> int | None:
    """``value`` (a whole float, or digits as text) as an int; ``None`` if it is not one
    (``"²"`` is a digit to ``str.isdigit`` but not to ``int``; more than 4,300 digits
    are refused by ``int``)."""
    try:
        if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    except (ValueError, OverflowError):
        return None
    return None


def _shown(value: object) -> str:
    """``value`` as an error message shows it: at most 60 characters of its repr."""
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def variables_body(variables: Mapping[str, str]) -> bytes:
    """Global variables as the wire wants them: ``[{"Key": k, "Value": v}, ...]``."""
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"variables must be a mapping of name to value, not {type(variables).__name__}"
        )
    wire = []
    for key, value in variables.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"variable name {key!r} must be a non-empty string")
        if not isinstance(value, str):
            raise TypeError(
                f"variable {key!r}: value {value!r} is a {type(value).__name__}, not a str"
            )
        wire.append({"Key": key, "Value": value})
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode()
