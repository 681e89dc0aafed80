"""A batch of runs for the command line: ``runs.run_many`` with a live progress bar (on a
terminal), then a summary table, the details of each failure, and JSON for machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .. import (
    MapRef,
    RunJournal,
    RunNeedsResolution,
    RunOutcomeUnknown,
    RunRequest,
    RunResult,
    SmartConnect,
    ValidationFailure,
)
from ._output import describe_error, make_table

__all__ = ["Outcome", "RunItem", "print_summary", "run_batch", "summary_json"]

Kind = Literal["ok", "failed", "unknown", "error"]
SHOWN_ERRORS = 5
"""Error rows shown per failed run (the JSON output has them all)."""


@dataclass(frozen=True)
class RunItem:
    """One run of the batch: what to send, and how to name it to people (``label``, the
    map as given, and ``detail``, e.g. its variables)."""

    request: MapRef | RunRequest
    label: str
    detail: str = ""

    @property
    def variables(self) -> Mapping[str, str]:
        """The run's global variables."""
        if isinstance(self.request, RunRequest) and self.request.variables:
            return self.request.variables
        return {}

    @classmethod
    def of(cls, request: RunRequest, label: str | None = None) -> RunItem:
        """An item named after its map, with its variables (or rows) as the detail."""
        detail = ", ".join(f"{k}={v}" for k, v in (request.variables or {}).items())
        if request.rows is not None:
            count = len(request.rows) if isinstance(request.rows, Sized) else None
            rows = f"{count} row{'s' if count != 1 else ''} posted" if count else "rows posted"
            detail = f"{detail}, {rows}" if detail else rows
        name = label if label is not None else str(getattr(request.map, "id", request.map))
        return cls(request, name, detail)


@dataclass(frozen=True)
class Outcome:
    """What became of one run: its result, or the exception its run raised."""

    item: RunItem
    result: RunResult | None
    error: Exception | None

    @property
    def kind(self) -> Kind:
        """``ok``, ``failed`` (the run reported failure), ``unknown`` (no answer, or a
        journal run needing resolution; not re-sent) or ``error`` (it failed before or
        without running)."""
        if self.result is not None:
            return "ok" if self.result.ok else "failed"
        unknown = isinstance(self.error, (RunOutcomeUnknown, RunNeedsResolution))
        return "unknown" if unknown else "error"

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


async def run_batch(
    sc: SmartConnect,
    items: Sequence[RunItem],
    *,
    concurrency: int,
    progress_console: Console,
    description: str | None = None,
    journal: RunJournal | None = None,
) -> list[Outcome]:
    """Run every item with ``sc.runs.run_many`` (resuming ``journal``, if given); a
    progress bar on ``progress_console`` when it is a terminal."""
    progress: Progress | None = None
    if progress_console.is_terminal and items:
        progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failures]}"),
            TimeElapsedColumn(),
            console=progress_console,
            transient=False,
        )
    failures = 0
    text = description or f"Running {len(items)} map{'s' if len(items) != 1 else ''}"

    def on_result(index: int, request: object, outcome: RunResult | Exception) -> None:
        nonlocal failures
        if not (isinstance(outcome, RunResult) and outcome.ok):
            failures += 1
        if progress is not None:
            shown = f"[red]{failures} failed[/]" if failures else ""
            progress.update(task, advance=1, failures=shown)

    async def run_many() -> list[RunResult | Exception]:
        return await sc.runs.run_many(
            [item.request for item in items],
            concurrency=concurrency,
            on_result=on_result,
            journal=journal,
            resume=journal is not None,
        )

    if progress is not None:
        with progress:
            task = progress.add_task(text, total=len(items), failures="")
            results = await run_many()
    else:
        results = await run_many()
    return [
        Outcome(item, result, None)
        if isinstance(result, RunResult)
        else Outcome(item, None, result)
        for item, result in zip(items, results, strict=True)
    ]


def _label(item: RunItem) -> Text:
    text = Text(item.label)
    if item.detail:
        text.append(f" ({item.detail})", style="dim")
    return text


_STATUS_STYLE = {"ok": "green", "failed": "red", "unknown": "bold yellow", "error": "red"}


def status_text(outcome: Outcome) -> str:
    """The status column: ``ok``, ``failed (1)`` (its status), ``outcome unknown — not
    re-sent`` or ``error (HTTP 404)``."""
    kind = outcome.kind
    if kind == "ok":
        return "ok"
    if kind == "failed":
        assert outcome.result is not None
        return f"failed ({outcome.result.status})"
    if isinstance(outcome.error, RunNeedsResolution):
        return "needs resolution — not sent"
    if kind == "unknown":
        return "outcome unknown — not re-sent"
    status = getattr(outcome.error, "status_code", None)
    return f"error (HTTP {status})" if status else f"error ({type(outcome.error).__name__})"


def error_lines(result: RunResult, limit: int = SHOWN_ERRORS) -> list[str]:
    """The first errors of a failed run, one line each."""
    lines: list[str] = []
    for failure in result.validation_errors or result.errors:
        where = " ".join(
            part
            for part in (
                f"row {failure.row}" if failure.row is not None else "",
                failure.column or "",
            )
            if part
        )
        rest = "; ".join(f"{k}={v}" for k, v in failure.extra.items() if v)
        text = failure.message or rest or "(no message)"
        lines.append(f"{where}: {text}" if where else text)
    if not lines and result.error_message:
        lines.append(result.error_message)
    if len(lines) > limit:
        lines = [*lines[:limit], f"… and {len(lines) - limit} more"]
    return lines


def print_summary(
    console: Console,
    outcomes: Sequence[Outcome],
    *,
    title: str | None = None,
    details: bool = True,
) -> None:
    """The summary table, then (with ``details``) what went wrong with each run that was
    not ok, then one line of totals."""
    table = make_table(title=title)
    with_details = any(o.item.detail for o in outcomes)
    table.add_column("Map", overflow="fold")
    if with_details:
        table.add_column("Variables", style="dim", overflow="fold")
    table.add_column("Run", justify="right")
    table.add_column("Records", justify="right")
    table.add_column("Errors", justify="right")
    table.add_column("Status", no_wrap=True)
    for outcome in outcomes:
        result = outcome.result
        cells: list[Text | str] = [Text(outcome.item.label)]
        if with_details:
            cells.append(Text(outcome.item.detail))
        table.add_row(
            *cells,
            str(result.run_number) if result and result.run_number is not None else "—",
            f"{result.record_count:,}" if result else "—",
            f"{result.error_count:,}" if result else "—",
            Text(status_text(outcome), style=_STATUS_STYLE[outcome.kind]),
        )
    console.print(table)
    problems = [o for o in outcomes if not o.ok] if details else []
    if problems:
        console.print()
    for outcome in problems:
        console.print(_problem(outcome), soft_wrap=True)
        if outcome.result is not None:
            for line in error_lines(outcome.result):
                console.print(Text(f"    {line}"), soft_wrap=True)
    if problems:
        console.print()
    console.print(totals_text(outcomes))


def _problem(outcome: Outcome) -> Text:
    text = Text("✗ ", style=_STATUS_STYLE[outcome.kind])
    text.append(_label(outcome.item))
    result = outcome.result
    if result is not None:
        run = f"run {result.run_number}" if result.run_number is not None else "the run"
        text.append(
            f" — {run} failed with status {result.status}: "
            f"{result.error_count:,} of {result.record_count:,} documents failed"
        )
    elif isinstance(outcome.error, RunNeedsResolution):
        text.append(f" — journal key {outcome.error.key!r}: ", style="yellow")
        text.append("it may have reached the server in an earlier batch. ")
        text.append(
            "Check the run history, then: smartconnect journal resolve FILE KEY --ran|--not-run"
        )
    elif isinstance(outcome.error, RunOutcomeUnknown):
        assert outcome.error is not None
        text.append(" — ")
        text.append(describe_error(outcome.error), style="yellow")
        text.append(". Check the run history before running it again.")
    else:
        assert outcome.error is not None
        text.append(f" — error: {describe_error(outcome.error)}")
    return text


def totals_text(outcomes: Sequence[Outcome]) -> Text:
    """``36 runs: 35 ok, 1 failed``."""
    counts = {kind: sum(1 for o in outcomes if o.kind == kind) for kind in _STATUS_STYLE}
    total = len(outcomes)
    text = Text(f"{total} run{'s' if total != 1 else ''}: ")
    parts = [
        (f"{counts['ok']} ok", "green"),
        (f"{counts['failed']} failed", "red"),
        (f"{counts['unknown']} outcome unknown (not re-sent)", "bold yellow"),
        (f"{counts['error']} error{'s' if counts['error'] != 1 else ''}", "red"),
    ]
    shown = [
        (p, s)
        for (p, s), kind in zip(parts, _STATUS_STYLE, strict=True)
        if counts[kind] or kind == "ok"
    ]
    for index, (part, style) in enumerate(shown):
        if index:
            text.append(", ")
        text.append(part, style=style if part[0] != "0" else "")
    return text


def _failure_json(failure: ValidationFailure) -> dict[str, Any]:
    """A run's error (a row of its error table, or a validation error) as JSON."""
    extra = {k: v for k, v in failure.extra.items() if k not in ("row", "column", "message")}
    return {"row": failure.row, "column": failure.column, "message": failure.message, **extra}


def summary_json(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The batch for machines: totals and one object per run, in input order."""
    runs: list[dict[str, Any]] = []
    for outcome in outcomes:
        entry: dict[str, Any] = {
            "map": outcome.item.label,
            "variables": dict(outcome.item.variables),
            "outcome": outcome.kind,
            "ok": outcome.ok,
        }
        result = outcome.result
        if result is not None:
            entry.update(
                run_number=result.run_number,
                map_id=result.map_id,
                records=result.record_count,
                errors=result.error_count,
                status=result.status,
                error_message=result.error_message,
                error_rows=[_failure_json(f) for f in result.errors],
                validation_errors=[_failure_json(f) for f in result.validation_errors],
            )
        else:
            error = outcome.error
            assert error is not None
            entry["error"] = {
                "type": type(error).__name__,
                "message": describe_error(error),
                "status_code": getattr(error, "status_code", None),
                "request_id": getattr(error, "request_id", None),
            }
        runs.append(entry)

    def count(kind: Kind) -> int:
        return sum(1 for o in outcomes if o.kind == kind)

    return {
        "ok": all(o.ok for o in outcomes),
        "total": len(outcomes),
        "succeeded": count("ok"),
        "failed": count("failed"),
        "outcome_unknown": count("unknown"),
        "errors": count("error"),
        "runs": runs,
    }
