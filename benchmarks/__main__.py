"""``python -m benchmarks [--quick] [--only NAME] [--out DIR] [--no-write]``.

Runs the benchmarks against the emulator served in a separate process, prints the goals'
verdicts and writes RESULTS.md, results.json and the charts. Exits non-zero when a
benchmark broke or a correctness check (counters, row counts, errors) failed; a goal
that is missed is reported, not an error.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import _machine, _report
from ._cpu import run_cpu, run_efficiency
from ._fleet import run_fleet
from ._parse import run_parse
from ._plan import FULL, QUICK, Plan
from ._stats import Checks, log
from ._storm import run_storm

HERE = Path(__file__).resolve().parent
BENCHMARKS: dict[str, Callable[[Plan, Checks], list[Any]]] = {
    "cpu": run_cpu,
    "efficiency": run_efficiency,
    "storm": run_storm,
    "parse": run_parse,
    "fleet": run_fleet,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Benchmark smartconnect_async."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts (under a minute): check that every benchmark completes and "
        "its counters are right; writes nothing unless --out is given",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--out", type=Path, help=f"output directory (default {HERE})")
    parser.add_argument("--no-write", action="store_true", help="write no files")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: render the results a run saved in FILE (results.json) again",
    )
    return parser.parse_args(argv)


def _render(path: Path, out: Path) -> int:
    results = _report.load(path)
    for written in _report.write(results, out):
        print(f"wrote {written}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        return _render(args.from_json, args.out or args.from_json.parent)
    plan = QUICK if args.quick else FULL
    names = args.only or list(BENCHMARKS)
    command = "python -m benchmarks" + (" " + " ".join(argv) if argv else "")
    results = _report.Results(
        plan=plan,
        started=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command=command,
        machine=_machine.describe(),
        ran=[n for n in BENCHMARKS if n in names],
        checks=Checks(),
    )
    start = time.perf_counter()
    for name in results.ran:
        log(f"{name}: running")
        began = time.perf_counter()
        try:
            setattr(results, name, BENCHMARKS[name](plan, results.checks))
        except Exception as exc:
            traceback.print_exc()
            results.failures[name] = f"{type(exc).__name__}: {exc}"[:500]
        results.durations[name] = time.perf_counter() - began
        log(f"{name}: {results.durations[name]:.1f} s")
    results.total = time.perf_counter() - start

    for verdict in results.verdicts():
        print(f"{verdict.mark:4}  {verdict.goal} [{verdict.scope}]: {verdict.measured}")
    failed = results.checks.failed
    print(
        f"checks: {len(results.checks.results)} run, {len(failed)} failed; "
        f"benchmark errors: {len(results.failures)}; total {results.total:.1f} s"
    )
    out = args.out or (None if args.quick else HERE)
    if out is not None and not args.no_write:
        for path in _report.write(results, out):
            print(f"wrote {path}")
    return 1 if failed or results.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
