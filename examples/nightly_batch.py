"""A nightly batch: maps of several companies run in one ``run_many``, with a progress
bar, then a summary table.

    python examples/nightly_batch.py [COMPANY:MAP ...]

The settings come from the ``SMARTCONNECT_*`` variables (``SmartConnect.from_env``), the
runs from the arguments (``DEMO02:Import Customers``), else from ``JOBS``. The user must
have access to every company named. Exit status: 0 when every run went through; 1 when
one failed (documents in error, or an error before it ran); 3 when the outcome of one
is unknown (it may have been processed, and was not re-sent: check the run history
before running it again), whatever the others did; 2 for bad settings or arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from smartconnect_async import RunOutcomeUnknown, RunRequest, RunResult, SmartConnect

JOBS = [
    ("DEMO01", "Import Customers"),
    ("DEMO01", "Import Sales Orders"),
    ("DEMO01", "Import GL Journal"),
    ("DEMO02", "Import Customers"),
    ("DEMO02", "Export Items"),
]
"""The (company, map) pairs run when no argument names any (the emulator's demo tenant)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3

Outcome = RunResult | Exception


def parse_jobs(argv: Sequence[str]) -> list[RunRequest]:
    """One ``RunRequest`` per ``COMPANY:MAP`` argument (``JOBS`` when there is none)."""
    parser = argparse.ArgumentParser(description="Run maps of several companies.")
    parser.add_argument("jobs", nargs="*", metavar="COMPANY:MAP", help="a map of a company")
    pairs = [tuple(job.partition(":")[::2]) for job in parser.parse_args(argv).jobs] or JOBS
    for company, map_name in pairs:
        if not company.strip() or not map_name.strip():
            parser.error(f"{company}:{map_name} is not COMPANY:MAP")
    return [RunRequest(map_name, company_id=company) for company, map_name in pairs]


async def run_all(sc: SmartConnect, requests: list[RunRequest], console: Console) -> list[Outcome]:
    """Every run, with a progress bar on ``console`` that counts the failures."""
    columns = (
        TextColumn("[bold]Nightly runs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("runs", total=len(requests), failed="")
        failed = 0

        def on_result(index: int, request: object, outcome: Outcome) -> None:
            nonlocal failed
            if not (isinstance(outcome, RunResult) and outcome.ok):
                failed += 1
            progress.update(task, advance=1, failed=f"{failed} failed" if failed else "")

        return await sc.runs.run_many(requests, on_result=on_result)


def status_of(outcome: Outcome) -> str:
    """The outcome in a few words."""
    if isinstance(outcome, RunResult):
        return "ok" if outcome.ok else f"failed (status {outcome.status})"
    if isinstance(outcome, RunOutcomeUnknown):
        return "outcome unknown"
    return "error"


def problem_of(outcome: Outcome) -> str:
    """What went wrong, with the request id to quote to support."""
    if isinstance(outcome, RunResult):
        return (
            f"run {outcome.run_number}: {outcome.error_count} of {outcome.record_count} "
            f"documents failed: {outcome.error_message} (request id {outcome.request_id})"
        )
    if isinstance(outcome, RunOutcomeUnknown):
        return f"{outcome}: check the run history before running it again"
    return str(outcome)  # the library's messages name the request id when there is one


def summary(console: Console, requests: list[RunRequest], outcomes: list[Outcome]) -> None:
    """A table of the runs, then a line for each run that was not ok, then the totals."""
    table = Table(title="Nightly runs")
    for name in ("Company", "Map", "Run", "Records", "Errors", "Status"):
        table.add_column(name, overflow="fold")
    problems = []
    for request, outcome in zip(requests, outcomes, strict=True):
        ok = isinstance(outcome, RunResult) and outcome.ok
        style = (
            "green" if ok else "bold yellow" if isinstance(outcome, RunOutcomeUnknown) else "red"
        )
        result = outcome if isinstance(outcome, RunResult) else None
        table.add_row(
            request.company_id,
            str(request.map),
            str(result.run_number) if result is not None else "",
            str(result.record_count) if result is not None else "",
            str(result.error_count) if result is not None else "",
            Text(status_of(outcome), style=style),
        )
        if not ok:  # Text, not markup: a message may hold [brackets]
            what = f" {request.company_id} {request.map}: {problem_of(outcome)}"
            problems.append(Text.assemble(("✗", style), what))
    console.print(table)
    for line in problems:
        console.print(line, soft_wrap=True)
    console.print(
        f"{len(outcomes)} runs: {len(outcomes) - len(problems)} ok, {len(problems)} not ok"
    )


def exit_status(outcomes: list[Outcome]) -> int:
    """0 all ok, 1 some failed, 3 some outcome unknown (which wins)."""
    if any(isinstance(o, RunOutcomeUnknown) for o in outcomes):
        return EXIT_UNKNOWN
    if any(not (isinstance(o, RunResult) and o.ok) for o in outcomes):
        return EXIT_FAILED
    return EXIT_OK


async def main(argv: Sequence[str]) -> int:
    """Run the batch; the exit status."""
    requests = parse_jobs(argv)
    console = Console(stderr=True)  # the progress bar and the log lines
    # Log records go through the progress bar's console, which prints them above the
    # bar; a plain handler on stderr would write them into the middle of it.
    handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    try:
        sc = SmartConnect.from_env()
    except ValueError as exc:  # a variable missing or invalid
        console.print(Text(str(exc), style="red"))
        return EXIT_USAGE
    async with sc:
        outcomes = await run_all(sc, requests, console)
    summary(Console(), requests, outcomes)
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
