"""RESULTS.md (tables of medians and ranges, ratios, PASS/FAIL per goal, the machine),
results.json (every sample) and the PNG charts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ._contenders import (
    CONTENDERS,
    LIBRARY_MEMORY_TOKENS,
    LIBRARY_REDIS_TOKENS,
    RAW_AIOHTTP,
    RAW_AIOHTTP_RUNS_CAPPED,
    RUNS_CAP,
    contender_order,
)
from ._cpu import CallSample
from ._goals import (
    Verdict,
    cpu_per_call,
    cpu_ratio,
    fleet_verdicts,
    judge,
    paired,
    parse_ratio,
    parse_summary,
)
from ._parse import MODES, RAW_EXPAT, ParseSample
from ._plan import Plan
from ._stats import Checks, Summary
from ._storm import StormSample

CPU_CHART = "cpu_per_call.png"
MEMORY_CHART = "memory_vs_rows.png"


@attrs.define
class Results:
    plan: Plan
    started: str
    command: str
    machine: dict[str, str]
    ran: list[str]
    checks: Checks
    durations: dict[str, float] = attrs.field(factory=dict)
    failures: dict[str, str] = attrs.field(factory=dict)
    cpu: list[CallSample] = attrs.field(factory=list)
    efficiency: list[CallSample] = attrs.field(factory=list)
    storm: list[StormSample] = attrs.field(factory=list)
    parse: list[ParseSample] = attrs.field(factory=list)
    fleet: list[CallSample] = attrs.field(factory=list)
    total: float = 0.0

    def verdicts(self) -> list[Verdict]:
        return judge(self.cpu, self.efficiency, self.storm, self.parse) + fleet_verdicts(self.fleet)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _cpu_section(samples: Sequence[CallSample]) -> list[str]:
    if not samples:
        return []
    counts = sorted({(s.concurrency, s.calls) for s in samples if "httpx" not in s.contender})
    calls = ", ".join(f"{n:,} at c={c}" for c, n in sorted(dict(counts).items()))
    out = ["## Client CPU per call", ""]
    out += [
        "Client process CPU time (`time.process_time`, every thread of the client process; "
        "the emulator runs in another process) ÷ calls, in µs: median [min–max] over the "
        "rounds. Ratios are per round against raw aiohttp measured in the same round. "
        f"Calls per measurement: {calls}; the httpx-based contenders make a third of "
        "that at c > 1 (they cost far more per call).",
        "",
    ]
    for op in ("runs.run", "maps.list"):
        chosen = [s for s in samples if s.operation == op]
        if not chosen:
            continue
        levels = sorted({s.concurrency for s in chosen})
        present = sorted({s.contender for s in chosen} | set(CONTENDERS), key=contender_order)
        out += [f"### `{op}` — CPU µs per call", ""]
        out += _table(
            ["c", *present],
            [
                [str(c)] + [cpu_per_call(chosen, op, c, who).show(1e6) for who in present]
                for c in levels
            ],
        )
        others = [c for c in present if c != RAW_AIOHTTP]
        out += [f"### `{op}` — CPU per call ÷ raw aiohttp (same round)", ""]
        out += _table(
            ["c", *others],
            [
                [str(c)] + [cpu_ratio(chosen, op, c, who).show(digits=2) for who in others]
                for c in levels
            ],
        )
        if RAW_AIOHTTP_RUNS_CAPPED in present:
            library = [c for c in present if c.startswith("library")]
            out += [
                f"### `{op}` — CPU per call ÷ {RAW_AIOHTTP_RUNS_CAPPED} (same round)",
                "",
                f"The library holds at most {RUNS_CAP} runs of a company in flight by default "
                "(`max_concurrent_runs`); the reference here holds the same, so what is "
                "left is the library's own cost.",
                "",
            ]
            out += _table(
                ["c", *library],
                [
                    [str(c)]
                    + [
                        cpu_ratio(chosen, op, c, who, RAW_AIOHTTP_RUNS_CAPPED).show(digits=2)
                        for who in library
                    ]
                    for c in levels
                ],
            )
        out += [f"### `{op}` — throughput, calls per second (wall)", ""]
        out += _table(
            ["c", *present],
            [
                [str(c)]
                + [
                    Summary.of(
                        s.calls / s.wall
                        for s in chosen
                        if s.concurrency == c and s.contender == who
                    ).show()
                    for who in present
                ]
                for c in levels
            ],
        )
    return out


def _efficiency_section(samples: Sequence[CallSample]) -> list[str]:
    if not samples:
        return []
    first = samples[0]
    out = [
        "## Latency-bound efficiency",
        "",
        f"c={first.concurrency}, the emulator adding {first.latency_ms} ms to every call; "
        "efficiency = (calls × latency ÷ concurrency) ÷ wall time.",
        "",
    ]
    rows = []
    for op in ("runs.run", "maps.list"):
        chosen = [s for s in samples if s.operation == op]
        for who in sorted({s.contender for s in chosen}, key=contender_order):
            found = [s for s in chosen if s.contender == who]
            relative = paired(
                chosen,
                lambda s: s.round,
                lambda s: s.efficiency,
                who,
                RAW_AIOHTTP,
                lambda s: s.contender,
            )
            rows.append(
                [
                    f"`{op}`",
                    who,
                    str(found[0].calls),
                    Summary.of(s.efficiency for s in found).show(digits=3),
                    relative.show(digits=2) if who != RAW_AIOHTTP else "1",
                    Summary.of(s.wall for s in found).show(digits=2),
                    Summary.of(s.cpu_per_call for s in found).show(1e6),
                    Summary.of(s.server_cpu_per_call for s in found).show(1e6),
                ]
            )
    out += _table(
        [
            "operation",
            "contender",
            "calls",
            "efficiency",
            "÷ raw aiohttp",
            "wall s",
            "client CPU µs/call",
            "emulator CPU µs/call",
        ],
        rows,
    )
    return out


def _fleet_section(samples: Sequence[CallSample]) -> list[str]:
    if not samples:
        return []
    out = [
        "## Tokens shared by a fleet",
        "",
        "Warm calls of the default client, its token in `MemoryTokenStore` or in "
        "`RedisTokenStore` (a local redis-server): client CPU per call (µs), and the ratio "
        "Redis ÷ memory per round.",
        "",
    ]
    rows = []
    for op, c in sorted({(s.operation, s.concurrency) for s in samples}):
        found = [s for s in samples if s.operation == op and s.concurrency == c]
        rows.append(
            [
                f"{op}, c={c}",
                cpu_per_call(found, op, c, LIBRARY_MEMORY_TOKENS).show(1e6),
                cpu_per_call(found, op, c, LIBRARY_REDIS_TOKENS).show(1e6),
                cpu_ratio(found, op, c, LIBRARY_REDIS_TOKENS, LIBRARY_MEMORY_TOKENS).show(digits=3),
            ]
        )
    return out + _table(["call", "memory (µs)", "Redis (µs)", "Redis ÷ memory"], rows)


def _storm_section(samples: Sequence[StormSample]) -> list[str]:
    if not samples:
        return []
    first = samples[0]
    out = [
        "## Cold storm",
        "",
        f"{first.calls:,} concurrent `maps.list` calls for {first.companies} companies on a "
        "new client (one pool, `with_credentials` per company, no token yet), the emulator "
        'adding the latency above. "single" is one `maps.list` on a new client (GetToken '
        "included), measured in the same round. Times in ms.",
        "",
    ]
    rows = []
    for who in sorted({s.contender for s in samples}, key=contender_order):
        found = [s for s in samples if s.contender == who]
        rows.append(
            [
                who,
                Summary.of(s.single for s in found).show(1e3),
                Summary.of(s.first_answer for s in found).show(1e3),
                Summary.of(s.first_per_company for s in found).show(1e3),
                Summary.of(s.first_per_company / s.single for s in found).show(digits=2),
                Summary.of(s.all_answers for s in found).show(1e3),
                ", ".join(str(s.token_calls) for s in found),
                str(sum(s.errors for s in found)),
            ]
        )
    out += _table(
        [
            "contender",
            "single cold call",
            "first answer",
            "first answer of every company",
            "÷ single",
            "all answers",
            "GetToken calls per round",
            "errors",
        ],
        rows,
    )
    return out


def _parse_section(samples: Sequence[ParseSample]) -> list[str]:
    if not samples:
        return []
    out = [
        "## Data-set parsing",
        "",
        "Each measurement in a fresh process. Throughput is rows per second of the parsing "
        "process's CPU time (the emulator generating the answer runs in another process, "
        "and on this machine it is slower than the client). Peak RSS growth: peak RSS "
        "during the work (`VmHWM`, reset just before it) minus the RSS just before it. "
        "The kernel's part of the CPU time is mostly minor page faults: memory touched for "
        "the first time, which `get_all` (keeping every row) needs and `iter_rows` does "
        "not; on this virtual machine a fault can cost over 10 µs. "
        "`raw expat` parses the inner "
        "document's bytes from a file (no network); the others read the answer from the "
        "emulator over loopback.",
        "",
    ]
    rows = []
    for size in sorted({s.rows_asked for s in samples}):
        for who in MODES:
            found = [s for s in samples if s.rows_asked == size and s.contender == who]
            if not found:
                continue
            ratio = parse_ratio(samples, size, who, RAW_EXPAT, lambda s: s.rows_per_cpu_second)
            rows.append(
                [
                    f"{size:,}",
                    who,
                    parse_summary(samples, who, size, lambda s: s.rows_per_cpu_second).show(1e-3),
                    ratio.show(digits=2) if who != RAW_EXPAT else "1",
                    parse_summary(samples, who, size, lambda s: s.cpu).show(digits=2),
                    parse_summary(samples, who, size, lambda s: s.system).show(digits=2),
                    parse_summary(samples, who, size, lambda s: s.page_faults).show(1e-3),
                    parse_summary(samples, who, size, lambda s: s.wall).show(digits=2),
                    parse_summary(samples, who, size, lambda s: s.rss_growth).show(2**-20, 1),
                ]
            )
    out += _table(
        [
            "rows",
            "contender",
            "k rows / CPU s",
            "÷ raw expat",
            "CPU s",
            "of which kernel s",
            "k page faults",
            "wall s",
            "peak RSS growth MB",
        ],
        rows,
    )
    return out


def markdown(results: Results) -> str:
    plan = results.plan
    verdicts = results.verdicts()
    mode = "quick mode: counts too small for the numbers to mean anything"
    out = [
        "# Benchmark results",
        "",
        f"Generated by `{results.command}` on {results.started} "
        f"({mode if plan.quick else 'full run'}); "
        f"benchmarks run: {', '.join(results.ran)}; total {results.total:.0f} s "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in results.durations.items())}). "
        "See README.md for the method. Every table is medians [min–max] over rounds in "
        "which the contenders ran interleaved, round robin.",
        "",
        "## Machine",
        "",
    ]
    out += [f"- **{k}**: {v}" for k, v in results.machine.items()]
    out += ["", "## Goals", ""]
    out += _table(
        ["goal", "scope", "measured (median [range])", "target", "verdict"],
        [[v.goal, v.scope, v.measured, v.target, f"**{v.mark}**"] for v in verdicts],
    )
    checks = results.checks
    out += [
        f"Correctness checks (counters, row counts, errors): {len(checks.results)} run, "
        f"{len(checks.failed)} failed.",
        "",
    ]
    out += [f"- FAILED: {name}: {detail}" for name, _, detail in checks.failed]
    out += [f"- BENCHMARK ERROR in {name}: `{error}`" for name, error in results.failures.items()]
    out += [""]
    out += _cpu_section(results.cpu)
    if results.cpu:
        out += [f"![CPU per call vs concurrency]({CPU_CHART})", ""]
    out += _efficiency_section(results.efficiency)
    out += _storm_section(results.storm)
    out += _fleet_section(results.fleet)
    out += _parse_section(results.parse)
    if results.parse:
        out += [f"![Peak RSS growth vs rows]({MEMORY_CHART})", ""]
    out += [
        "## Settings",
        "",
        "```",
        json.dumps(attrs.asdict(plan), indent=1),
        "```",
        "",
    ]
    return "\n".join(out)


def charts(results: Results, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results.cpu:
        ops = [
            op for op in ("runs.run", "maps.list") if any(s.operation == op for s in results.cpu)
        ]
        fig, axes = plt.subplots(1, len(ops), figsize=(6 * len(ops), 4.5), squeeze=False)
        for ax, op in zip(axes[0], ops, strict=True):
            levels = sorted({s.concurrency for s in results.cpu if s.operation == op})
            for who in CONTENDERS:
                sums = [cpu_per_call(results.cpu, op, c, who) for c in levels]
                med = [s.median * 1e6 for s in sums]
                err = [
                    [(s.median - s.low) * 1e6 for s in sums],
                    [(s.high - s.median) * 1e6 for s in sums],
                ]
                ax.errorbar(levels, med, yerr=err, marker="o", capsize=3, label=who)
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.set_yscale("log")  # httpx costs 5–20× aiohttp: a linear axis hides the rest
            ax.set_xlabel("concurrency")
            ax.set_ylabel("client CPU µs per call")
            ax.set_title(f"{op}: CPU per call (median, min–max)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / CPU_CHART)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    if results.parse:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for who in MODES:
            sizes = sorted({s.rows_asked for s in results.parse if s.contender == who})
            if not sizes:
                continue
            sums = [parse_summary(results.parse, who, n, lambda s: s.rss_growth) for n in sizes]
            ax.errorbar(
                sizes,
                [s.median / 2**20 for s in sums],
                yerr=[
                    [(s.median - s.low) / 2**20 for s in sums],
                    [(s.high - s.median) / 2**20 for s in sums],
                ],
                marker="o",
                capsize=3,
                label=who,
            )
        ax.axhline(64, color="grey", linestyle="--", linewidth=1, label="64 MB goal (iter_rows)")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("rows in the answer")
        ax.set_ylabel("peak RSS growth, MB")
        ax.set_title("Memory vs rows (median, min–max)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / MEMORY_CHART)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def _samples(samples: Sequence[Any]) -> list[dict[str, Any]]:
    return [attrs.asdict(s) for s in samples]


def load(path: Path) -> Results:
    """The results a previous run saved in ``results.json`` (to render them again)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    plan = data["plan"]
    plan["concurrencies"] = tuple(plan["concurrencies"])
    plan["parse_sizes"] = tuple(plan["parse_sizes"])
    results = Results(
        plan=Plan(**plan),
        started=data["started"],
        command=data["command"],
        machine=data["machine"],
        ran=list(data["durations"]),
        checks=Checks([(name, ok, detail) for name, ok, detail in data["checks"]]),
        durations=data["durations"],
        failures=data["failures"],
        cpu=[CallSample(**s) for s in data["cpu"]],
        efficiency=[CallSample(**s) for s in data["efficiency"]],
        storm=[StormSample(**s) for s in data["storm"]],
        parse=[ParseSample(**s) for s in data["parse"]],
        fleet=[CallSample(**s) for s in data.get("fleet", [])],
        total=data["total"],
    )
    return results


def write(results: Results, out: Path) -> list[Path]:
    """RESULTS.md, results.json and the charts, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = charts(results, out)
    (out / "RESULTS.md").write_text(markdown(results), encoding="utf-8")
    data = {
        "started": results.started,
        "command": results.command,
        "machine": results.machine,
        "plan": attrs.asdict(results.plan),
        "durations": results.durations,
        "total": results.total,
        "verdicts": [attrs.asdict(v) for v in results.verdicts()],
        "checks": [list(r) for r in results.checks.results],
        "failures": results.failures,
        "cpu": _samples(results.cpu),
        "efficiency": _samples(results.efficiency),
        "storm": _samples(results.storm),
        "parse": _samples(results.parse),
        "fleet": _samples(results.fleet),
    }
    (out / "results.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    return [out / "RESULTS.md", out / "results.json", *written]
