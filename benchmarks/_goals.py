"""The issue's goals, judged from the samples: ratios measured side by side."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import attrs

from ._contenders import (
    CONTENDERS,
    LIBRARY_MEMORY_TOKENS,
    LIBRARY_REDIS_TOKENS,
    RAW_AIOHTTP,
    contender_order,
)
from ._cpu import CallSample
from ._parse import GET_ALL, ITER_ROWS, RAW_EXPAT, ParseSample
from ._stats import Summary
from ._storm import StormSample

S = TypeVar("S", CallSample, ParseSample, StormSample)

CPU_RATIO_MAX = 1.5
DEGRADATION_MAX = 1.2
EFFICIENCY_MIN = 0.90
ITER_ROWS_THROUGHPUT_MIN = 0.7
ITER_ROWS_MEMORY_MAX = 64 * 2**20
ITER_ROWS_MEMORY_SIZE = 200_000
FLAT_TOLERANCE = 16 * 2**20
"""Growth at the largest size may exceed growth at 100k rows by this much and still be
"flat" (allocator and measurement noise)."""
GET_ALL_TIME_MAX = 1.3
FLEET_RATIO_MAX = 1.05
"""Warm CPU per call with the token in Redis ÷ with it in memory: a warm call touches the
store not at all, so within noise."""
STORM_FIRST_MAX = 1.5
"""Every company's first answer, and the first answer, against a single cold call: 1.2
until the core moved to standard primitives, where the issue set 1.5 (raw aiohttp: 5.9)."""


@attrs.frozen
class Verdict:
    goal: str
    scope: str
    measured: str
    target: str
    passed: bool | None
    """``None``: not measured in this run."""

    @property
    def mark(self) -> str:
        return "–" if self.passed is None else "PASS" if self.passed else "FAIL"


def cpu_per_call(samples: Iterable[CallSample], op: str, c: int, who: str) -> Summary:
    return Summary.of(
        s.cpu_per_call
        for s in samples
        if s.operation == op and s.concurrency == c and s.contender == who
    )


def paired(
    samples: Sequence[S],
    key: Callable[[S], object],
    value: Callable[[S], float],
    who: str,
    reference: str,
    contender: Callable[[S], str],
) -> Summary:
    """Per round, ``value(who) / value(reference)`` among samples with equal ``key``
    (same round, same point): ratios of measurements taken side by side."""
    refs = {key(s): value(s) for s in samples if contender(s) == reference}
    return Summary.of(
        value(s) / refs[key(s)] for s in samples if contender(s) == who and refs.get(key(s))
    )


def cpu_ratio(
    samples: Sequence[CallSample], op: str, c: int, who: str, reference: str = RAW_AIOHTTP
) -> Summary:
    """CPU per call of ``who`` ÷ ``reference``'s (raw aiohttp), per round."""
    chosen = [s for s in samples if s.operation == op and s.concurrency == c]
    return paired(
        chosen, lambda s: s.round, lambda s: s.cpu_per_call, who, reference, lambda s: s.contender
    )


def degradation(samples: Sequence[CallSample], op: str, who: str, high: int, low: int) -> float:
    """Median CPU per call at ``high`` ÷ median at ``low`` concurrency."""
    return cpu_per_call(samples, op, high, who).median / cpu_per_call(samples, op, low, who).median


def parse_summary(
    samples: Iterable[ParseSample], who: str, size: int, value: Callable[[ParseSample], float]
) -> Summary:
    return Summary.of(value(s) for s in samples if s.contender == who and s.rows_asked == size)


def parse_ratio(
    samples: Sequence[ParseSample],
    size: int,
    who: str,
    reference: str,
    value: Callable[[ParseSample], float],
) -> Summary:
    chosen = [s for s in samples if s.rows_asked == size]
    return paired(chosen, lambda s: s.round, value, who, reference, lambda s: s.contender)


def _verdict(
    goal: str,
    scope: str,
    summary: Summary,
    target: str,
    ok: Callable[[float], bool],
    digits: int = 2,
) -> Verdict:
    if summary.n == 0:
        return Verdict(goal, scope, "not measured", target, None)
    return Verdict(goal, scope, summary.show(digits=digits), target, ok(summary.median))


def judge(
    cpu: Sequence[CallSample],
    efficiency: Sequence[CallSample],
    storm: Sequence[StormSample],
    parse: Sequence[ParseSample],
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    library = [c for c in CONTENDERS if c.startswith("library")]
    ops = sorted({s.operation for s in cpu}, reverse=True)
    concurrencies = sorted({s.concurrency for s in cpu})
    for op in ops:
        for c in (64, 256):
            for who in library:
                verdicts.append(
                    _verdict(
                        f"CPU per call at c={c} ≤ {CPU_RATIO_MAX}× raw aiohttp",
                        f"{op}, {who}",
                        cpu_ratio(cpu, op, c, who),
                        f"≤ {CPU_RATIO_MAX}",
                        lambda m: m <= CPU_RATIO_MAX,
                    )
                )
    if concurrencies and concurrencies[0] == 1 and concurrencies[-1] >= 256:
        high = concurrencies[-1]
        for op in ops:
            for who in CONTENDERS:
                ratio = degradation(cpu, op, who, high, 1)
                verdicts.append(
                    Verdict(
                        f"CPU per call at c={high} ≤ {DEGRADATION_MAX}× c=1",
                        f"{op}, {who}",
                        f"{ratio:.2f}",
                        f"≤ {DEGRADATION_MAX}",
                        ratio <= DEGRADATION_MAX,
                    )
                )
    for op in sorted({s.operation for s in efficiency}, reverse=True):
        names = sorted({s.contender for s in efficiency if s.operation == op}, key=contender_order)
        for who in names:
            found = [s for s in efficiency if s.operation == op and s.contender == who]
            summary = Summary.of(s.efficiency for s in found)
            c, latency = found[0].concurrency, found[0].latency_ms
            verdicts.append(
                _verdict(
                    f"latency-bound efficiency at c={c}, {latency} ms ≥ {EFFICIENCY_MIN}",
                    f"{op}, {who}",
                    summary,
                    f"≥ {EFFICIENCY_MIN}",
                    lambda m: m >= EFFICIENCY_MIN,
                )
            )
    verdicts += _parse_verdicts(parse)
    verdicts += _storm_verdicts(storm)
    return verdicts


def _parse_verdicts(parse: Sequence[ParseSample]) -> list[Verdict]:
    verdicts = []
    sizes = sorted({s.rows_asked for s in parse})
    for size in sizes:
        verdicts.append(
            _verdict(
                f"iter_rows throughput ≥ {ITER_ROWS_THROUGHPUT_MIN}× raw expat (client CPU)",
                f"{size:,} rows",
                parse_ratio(parse, size, ITER_ROWS, RAW_EXPAT, lambda s: s.rows_per_cpu_second),
                f"≥ {ITER_ROWS_THROUGHPUT_MIN}",
                lambda m: m >= ITER_ROWS_THROUGHPUT_MIN,
            )
        )
    if ITER_ROWS_MEMORY_SIZE in sizes:
        growth = parse_summary(parse, ITER_ROWS, ITER_ROWS_MEMORY_SIZE, lambda s: s.rss_growth)
        verdicts.append(
            Verdict(
                "iter_rows peak RSS growth < 64 MB",
                f"{ITER_ROWS_MEMORY_SIZE:,} rows",
                f"{growth.show(scale=2**-20, digits=1)} MB",
                "< 64 MB",
                growth.median < ITER_ROWS_MEMORY_MAX,
            )
        )
    if len(sizes) > 1 and sizes[0] <= 100_000:
        small = parse_summary(parse, ITER_ROWS, sizes[0], lambda s: s.rss_growth).median
        large = parse_summary(parse, ITER_ROWS, sizes[-1], lambda s: s.rss_growth).median
        verdicts.append(
            Verdict(
                "iter_rows memory flat from 100k to 1M rows",
                f"{sizes[0]:,} → {sizes[-1]:,} rows",
                f"{small / 2**20:.1f} MB → {large / 2**20:.1f} MB",
                f"growth ≤ +{FLAT_TOLERANCE // 2**20} MB",
                large - small <= FLAT_TOLERANCE,
            )
        )
    for size in sizes:
        summary = parse_ratio(parse, size, GET_ALL, ITER_ROWS, lambda s: s.cpu)
        if summary.n:
            verdicts.append(
                _verdict(
                    f"get_all time ≤ {GET_ALL_TIME_MAX}× iter_rows (client CPU)",
                    f"{size:,} rows",
                    summary,
                    f"≤ {GET_ALL_TIME_MAX}",
                    lambda m: m <= GET_ALL_TIME_MAX,
                )
            )
            wall = parse_ratio(parse, size, GET_ALL, ITER_ROWS, lambda s: s.wall)
            verdicts.append(
                _verdict(
                    f"get_all time ≤ {GET_ALL_TIME_MAX}× iter_rows (wall, emulator included)",
                    f"{size:,} rows",
                    wall,
                    f"≤ {GET_ALL_TIME_MAX}",
                    lambda m: m <= GET_ALL_TIME_MAX,
                )
            )
    return verdicts


def _storm_verdicts(storm: Sequence[StormSample]) -> list[Verdict]:
    verdicts = []
    for who in sorted({s.contender for s in storm}, key=contender_order):
        found = [s for s in storm if s.contender == who]
        exact = all(
            s.token_calls == s.companies and s.token_calls_max_per_company == 1 for s in found
        )
        calls, companies = found[0].calls, found[0].companies
        verdicts.append(
            Verdict(
                f"cold storm ({calls:,} calls, {companies} companies): GetToken calls == companies",
                who,
                ", ".join(str(s.token_calls) for s in found),
                f"== {companies} every round",
                exact,
            )
        )
        firsts: dict[str, Callable[[StormSample], float]] = {
            "every company's first answer": lambda s: s.first_per_company,
            "first answer": lambda s: s.first_answer,
        }
        for what, first in firsts.items():
            verdicts.append(
                _verdict(
                    f"cold storm: {what} ≤ {STORM_FIRST_MAX}× a single cold call",
                    who,
                    Summary.of(first(s) / s.single for s in found),
                    f"≤ {STORM_FIRST_MAX}",
                    lambda m: m <= STORM_FIRST_MAX,
                )
            )
    return verdicts


def fleet_verdicts(fleet: Sequence[CallSample]) -> list[Verdict]:
    """Warm CPU per call, ``RedisTokenStore`` ÷ ``MemoryTokenStore``, per round."""
    verdicts = []
    for op, c in sorted({(s.operation, s.concurrency) for s in fleet}):
        chosen = [s for s in fleet if s.operation == op and s.concurrency == c]
        ratio = cpu_ratio(chosen, op, c, LIBRARY_REDIS_TOKENS, LIBRARY_MEMORY_TOKENS)
        verdicts.append(
            _verdict(
                f"warm CPU per call at c={c}, token in Redis ≤ {FLEET_RATIO_MAX}× in memory",
                op,
                ratio,
                f"≤ {FLEET_RATIO_MAX}",
                lambda m: m <= FLEET_RATIO_MAX,
            )
        )
    return verdicts
