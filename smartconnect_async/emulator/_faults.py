"""Fault injection: rules (JSON in, JSON out) and the seeded plan that decides each call.

A rule fires on a matching call either with a probability (``share``) drawn from a
seeded RNG, or for the next ``count`` matching calls; a rule with neither always fires.
Every firing ``latency`` rule adds its delay; of the other kinds (actions) only the
first matching rule that fires applies to a call.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast, get_args

from ._endpoints import canonical

FaultKind = Literal[
    "latency", "status", "drop_before", "drop_after", "truncate", "html_200", "hostile_xml"
]
HostileVariant = Literal["billion_laughs", "external_entity", "inner_dtd"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
HOSTILE_VARIANTS: tuple[str, ...] = get_args(HostileVariant)


@dataclass(frozen=True)
class FaultRule:
    """One fault rule. See the package README for the JSON form.

    - ``latency``: sleep ``ms`` plus a uniform ``0..jitter_ms``.
    - ``status``: answer ``status`` (e.g. 429, 500, 502, 503, 504) with a readable body,
      an IIS HTML page if ``html``; ``retry_after`` seconds go in ``Retry-After`` (429
      defaults to 1). With ``processed`` the request is processed first (a run executes).
    - ``drop_before`` / ``drop_after``: drop the connection without an answer, before or
      after processing the request.
    - ``truncate``: process, then send ``after_bytes`` of the body (default: half of a
      buffered body, half of the first chunk of a streamed one) and close.
    - ``html_200``: an IIS/ASP.NET HTML error page with status 200 (not processed).
    - ``hostile_xml``: a 200 XML answer carrying a DTD (``variant``: billion_laughs,
      external_entity, or inner_dtd for a DTD inside the escaped inner document).
    """

    kind: FaultKind
    endpoints: frozenset[str] | None = None
    share: float | None = None
    count: int | None = None
    ms: int = 0
    jitter_ms: int = 0
    status: int = 503
    retry_after: int | None = None
    html: bool = False
    processed: bool = False
    after_bytes: int | None = None
    variant: HostileVariant = "billion_laughs"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.share is not None and self.count is not None:
            raise ValueError("a fault rule takes either 'share' or 'count', not both")
        if self.share is not None and not 0.0 <= self.share <= 1.0:
            raise ValueError(f"'share' must be between 0 and 1, got {self.share}")
        if self.count is not None and self.count < 0:
            raise ValueError(f"'count' must not be negative, got {self.count}")
        if self.ms < 0 or self.jitter_ms < 0:
            raise ValueError("'ms' and 'jitter_ms' must not be negative")
        if not 400 <= self.status <= 599:
            raise ValueError(f"'status' must be a 4xx or 5xx code, got {self.status}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("'retry_after' must not be negative")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError("'after_bytes' must not be negative")
        if self.variant not in HOSTILE_VARIANTS:
            raise ValueError(f"unknown hostile_xml variant {self.variant!r}")
        if self.endpoints is not None:
            unknown = [e for e in self.endpoints if canonical(e) != e]
            if unknown:
                raise ValueError(f"unknown endpoint(s) {sorted(unknown)}")

    def matches(self, endpoint: str) -> bool:
        """Whether the rule applies to calls of ``endpoint`` (canonical name)."""
        return self.endpoints is None or endpoint in self.endpoints

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, endpoint: str | None = None) -> FaultRule:
        """A rule from its JSON object; ``endpoint`` (a key of the per-endpoint form) narrows it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault rule must be a JSON object, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule field(s) {sorted(unknown)}")
        values = dict(data)
        if "kind" not in values:
            raise ValueError("a fault rule needs a 'kind'")
        endpoints = _endpoint_set(values.pop("endpoints", None))
        if endpoint is not None and endpoint != "*":
            narrowed = _endpoint_set([endpoint])
            endpoints = (
                narrowed if endpoints is None else endpoints & cast(frozenset[str], narrowed)
            )
        for name, value in values.items():
            expected = _FIELD_TYPES.get(name)
            if expected is not None and value is not None and not _is(value, expected):
                raise ValueError(f"'{name}' must be {expected.__name__}, got {value!r}")
        return cls(endpoints=endpoints, **values)

    def to_json(self) -> dict[str, Any]:
        """The rule as JSON, defaults left out."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != f.default:
                out[f.name] = sorted(value) if isinstance(value, frozenset) else value
        return out


_FIELD_TYPES: dict[str, type] = {
    "kind": str,
    "share": float,
    "count": int,
    "ms": int,
    "jitter_ms": int,
    "status": int,
    "retry_after": int,
    "html": bool,
    "processed": bool,
    "after_bytes": int,
    "variant": str,
}


def _is(value: object, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _endpoint_set(names: object) -> frozenset[str] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(f"'endpoints' must be a list of endpoint names, got {names!r}")
    if "*" in names:
        return None
    result = set()
    for name in names:
        found = canonical(str(name))
        if found is None:
            raise ValueError(f"unknown endpoint {name!r}")
        result.add(found)
    return frozenset(result)


FaultSpec = Mapping[str, Any] | Iterable[Any] | None
"""Rules as JSON: a list of rules, ``{"rules": [...]}``, or ``{"<endpoint>|*": [...]}``."""


def parse_faults(spec: FaultSpec) -> list[FaultRule]:
    """Rules from any accepted JSON form (FaultRule objects pass through)."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        if set(spec) == {"rules"}:
            return parse_faults(spec["rules"])
        rules: list[FaultRule] = []
        for endpoint, items in spec.items():
            if endpoint != "*" and canonical(endpoint) is None:
                raise ValueError(f"unknown endpoint {endpoint!r}")
            if not isinstance(items, Iterable):
                raise ValueError(
                    f"the rules of {endpoint!r} must be a list or an object, got {items!r}"
                )
            group = [items] if isinstance(items, Mapping) else list(items)
            rules.extend(FaultRule.from_json(item, endpoint=endpoint) for item in group)
        return rules
    if isinstance(spec, (str, bytes)):
        raise ValueError("fault rules must be JSON data, not a string")
    if not isinstance(spec, Iterable):
        raise ValueError(f"fault rules must be a list or an object, got {spec!r}")
    listed: list[Any] = list(spec)
    return [item if isinstance(item, FaultRule) else FaultRule.from_json(item) for item in listed]


@dataclass(frozen=True)
class Decision:
    """What the faults do to one call: a delay and at most one action rule."""

    delay: float = 0.0
    action: FaultRule | None = None


@dataclass
class FaultPlan:
    """Rules with their remaining counts and a seeded RNG; safe to use from any thread."""

    seed: int
    rules: list[FaultRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining = [rule.count for rule in self.rules]
        self._rng = random.Random(f"faults:{self.seed}")
        self._jitter = random.Random(f"jitter:{self.seed}")

    def replace(self, rules: Iterable[FaultRule]) -> None:
        """Replace every rule (counts start afresh)."""
        with self._lock:
            self.rules = list(rules)
            self._remaining = [rule.count for rule in self.rules]

    def _fires(self, index: int, rule: FaultRule) -> bool:
        remaining = self._remaining[index]
        if remaining is not None:
            if remaining <= 0:
                return False
            self._remaining[index] = remaining - 1
            return True
        return rule.share is None or self._rng.random() < rule.share

    def decide(self, endpoint: str) -> Decision:
        """Decide the faults of one call of ``endpoint``."""
        delay = 0.0
        action: FaultRule | None = None
        with self._lock:
            for index, rule in enumerate(self.rules):
                if not rule.matches(endpoint):
                    continue
                if rule.kind == "latency":
                    if self._fires(index, rule):
                        jitter = self._jitter.uniform(0, rule.jitter_ms) if rule.jitter_ms else 0
                        delay += (rule.ms + jitter) / 1000
                elif action is None and self._fires(index, rule):
                    action = rule
        return Decision(delay, action)

    def to_json(self) -> list[dict[str, Any]]:
        """The rules as JSON, with each count rule's remaining count."""
        with self._lock:
            out = []
            for rule, remaining in zip(self.rules, self._remaining, strict=True):
                item = rule.to_json()
                if remaining is not None:
                    item["remaining"] = remaining
                out.append(item)
            return out
