"""``smartconnect demo`` and ``smartconnect emulator serve``: the built-in emulator on
loopback, driven by the real client over TCP."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import click
from rich.rule import Rule
from rich.text import Text

from .. import Credentials, MemoryTokenStore, RunRequest, SmartConnect, hash_password
from ._batch import RunItem, print_summary, run_batch
from ._context import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliTokenStore, CommandError, State
from ._output import make_table, time_left, when

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["run_demo", "serve_forever"]

DEMO_COMPANY = "DEMO01"
EXPORTED_MAP = "Import Customers"
FAILING_MAP = "Post Cash Receipts"
PREVIEW_ROWS = 5
PREVIEW_COLUMNS = ("AccountNumber", "AccountName", "City", "State", "Phone")
NEW_CUSTOMERS = (
    {"AccountNumber": "WEB1001", "AccountName": "Aliquet Trading LLC", "City": "Denver"},
    {"AccountNumber": "WEB1002", "AccountName": "Fringilla & Sons", "City": "Austin"},
    {"AccountNumber": "WEB1003", "AccountName": "Québec Imports Inc.", "Phone": "(514) 555-0100"},
)
RUN_LATENCY = {"kind": "latency", "ms": 60, "jitter_ms": 240}
"""Run endpoints take 60–300 ms in the demo, as a real ERP posting would take longer."""
RUN_ENDPOINTS = (
    "runmap",
    "RunMapWithVariables",
    "runmapdatatable",
    "RunMapDataTableWithErrors",
    "runmapxml",
)


def _import_emulator() -> Any:
    try:
        from .. import emulator
    except ImportError as exc:
        raise CommandError(
            f"the built-in emulator needs starlette and uvicorn ({exc.name} is not installed): "
            "pip install 'smartconnect-async[cli,emulator]'",
            EXIT_USAGE,
        ) from None
    return emulator


def _demo_batch() -> list[RunItem]:
    """Thirty runs: every import map with different global variables, one run over posted
    rows, and one run that fails (receipts without a checkbook)."""
    requests: list[RunRequest] = []

    def add(map_id: str, **variables: str) -> None:
        requests.append(RunRequest(map_id, variables or None))

    for state in ("CO", "WA", "TX", "MA", "IL", "AZ", "OR", "GA", "FL", "MN", "ND", "NE"):
        add("Import Customers", GBL_STATE=state)
    for state in ("CO", "WA", "TX", "MA", "IL", "AZ"):
        add("Import Vendors", GBL_STATE=state)
    for item_class in ("FG", "RM", "SERVICE", "KIT", "MISC"):
        add("Import Items", GBL_ITEMCLASS=item_class)
    for currency in ("Z-US$", "CAD$", "EURO", "Z-UK"):
        add("Import Sales Orders", GBL_CURRENCYID=currency)
    add("Import GL Journal")
    requests.append(RunRequest("Import Customers", rows=NEW_CUSTOMERS, with_errors=True))
    add(FAILING_MAP)
    items = [RunItem.of(request) for request in requests]
    return items


def _heading(state: State, number: int, title: str) -> None:
    state.out.print()
    state.out.print(Rule(Text(f"{number}. {title}", style="bold cyan"), align="left", style="cyan"))


def _note(state: State, text: str | Text, style: str = "") -> None:
    state.out.print(text if isinstance(text, Text) else Text(text, style=style))


async def run_demo(state: State, *, concurrency: int = 8) -> int:
    """The demo; 0 when everything went as the script expects."""
    emulator_module = _import_emulator()
    started = time.perf_counter()
    emulator: Emulator = emulator_module.Emulator(
        seed=0, faults=[{**RUN_LATENCY, "endpoints": list(RUN_ENDPOINTS)}]
    )
    login = next(c for c in emulator_module.DEMO_CREDENTIALS if c.company_id == DEMO_COMPANY)
    state.secrets.add(login.password, hash_password(login.password))
    app = emulator_module.create_app(emulator)
    with contextlib.ExitStack() as stack:
        api_url: str = await anyio.to_thread.run_sync(
            stack.enter_context, emulator_module.serve(app, host="127.0.0.1", port=0)
        )
        try:
            code = await _show(state, emulator, api_url, login, concurrency)
        finally:
            with anyio.CancelScope(shield=True):  # stop the server even when interrupted
                await anyio.to_thread.run_sync(stack.close)
    _note(state, f"Finished in {time.perf_counter() - started:.1f} s.", "dim")
    return code


async def _show(
    state: State, emulator: Emulator, api_url: str, login: Any, concurrency: int
) -> int:
    out = state.out
    out.print(Text("SmartConnect demo", style="bold"))
    _note(
        state,
        f"An emulated SmartConnect service is listening on {api_url} (loopback only). "
        "Everything below goes through the real client, over TCP.",
    )
    credentials = Credentials(
        email=login.email, password=login.password, company_id=login.company_id
    )
    store = CliTokenStore(MemoryTokenStore(), state.secrets)
    async with SmartConnect(
        api_url,
        credentials,
        token_store=store,
        max_concurrent_runs=concurrency,
        timeout=state.timeout,
    ) as sc:
        _heading(state, 1, "Sign in (GetToken)")
        token = await sc.auth.get_token()
        _note(
            state,
            f"{login.email}, company {login.company_id}: token issued {when(token.issued_at)}, "
            f"expires {when(token.expires_at)} ({time_left(token.expires_at)}). "
            "It is cached and reused by every call below; it is never printed.",
        )

        _heading(state, 2, "Maps (GetMapList)")
        maps = await sc.maps.list()
        table = make_table()
        table.add_column("MapId")
        table.add_column("MapKey", style="dim")
        table.add_column("Description")
        for m in maps:
            table.add_row(Text(m.id), Text(m.key), Text(m.description))
        out.print(table)

        _heading(state, 3, f"Export the data of {EXPORTED_MAP!r} (GetAllData, streamed)")
        preview: list[dict[str, str | None]] = []
        count = 0
        export_started = time.perf_counter()
        async with sc.data.iter_rows(EXPORTED_MAP) as rows:
            async for row in rows:
                count += 1
                if len(preview) < PREVIEW_ROWS:
                    preview.append(row)
        elapsed = time.perf_counter() - export_started
        _note(
            state,
            f"{count:,} rows parsed as the XML arrived, in {elapsed:.2f} s (constant memory). "
            f"The first {len(preview)}, with XML special characters and spaces kept exactly:",
        )
        table = make_table()
        for column in PREVIEW_COLUMNS:
            table.add_column(column)
        for row in preview:
            table.add_row(
                *(
                    Text("null", style="dim italic")
                    if row.get(c) is None
                    else Text(
                        repr(row.get(c))
                        if (row.get(c) or "").strip() != row.get(c)
                        else str(row.get(c))
                    )
                    for c in PREVIEW_COLUMNS
                )
            )
        out.print(table)
        if count == 0:
            raise CommandError(f"demo: {EXPORTED_MAP!r} returned no rows")

        items = _demo_batch()
        _heading(state, 4, f"Run {len(items)} maps, {concurrency} at a time (runs.run_many)")
        outcomes = await run_batch(sc, items, concurrency=concurrency, progress_console=out)
        print_summary(out, outcomes, details=False)

        failed = [o for o in outcomes if not o.ok]
        unexpected = [o for o in failed if o.item.label != FAILING_MAP]
        expected = [o for o in failed if o.item.label == FAILING_MAP and o.result is not None]
        if unexpected or not expected:
            raise CommandError(
                f"demo: the batch did not go as expected ({len(unexpected)} unexpected "
                f"failure(s), expected failure seen: {bool(expected)})"
            )
        failing = expected[0].result
        assert failing is not None
        assert failing.run_number is not None

        _heading(state, 5, f"The failing run: {FAILING_MAP!r}, run {failing.run_number}")
        _note(
            state,
            f"Status {failing.status}: {failing.error_count} of {failing.record_count} receipts "
            "were rejected because they have no checkbook. The run's error table:",
        )
        errors = make_table()
        errors.add_column("Row", justify="right")
        errors.add_column("Column")
        errors.add_column("Message")
        for failure in failing.errors:
            number = "" if failure.row is None else str(failure.row)
            errors.add_row(number, Text(failure.column or ""), Text(failure.message))
        out.print(errors)
        saved = await sc.errors.save(
            FAILING_MAP,
            tenant_server="demo-sql01",
            tenant_technical_name="NORTHWIND",
            run_number=failing.run_number,
        )
        _note(
            state,
            f"SaveProcessErrors kept them on the server for Error Processing: {saved}.",
        )

    _heading(state, 6, "Done")
    ok = sum(1 for o in outcomes if o.ok)
    _note(
        state,
        Text(f"{ok} of {len(outcomes)} runs succeeded", style="bold green").append(
            f"; the one failure was part of the show ({FAILING_MAP!r} is seeded to fail).",
            style="",
        ),
    )
    calls = emulator.counters.calls
    shown = ", ".join(f"{name} {number}" for name, number in sorted(calls.items()))
    _note(
        state,
        f"API calls the emulator answered: {shown} — one token for all of them.",
        "dim",
    )
    _note(
        state,
        "Next: `smartconnect emulator serve` and point the other commands at it, "
        "or set SMARTCONNECT_API_URL, SMARTCONNECT_EMAIL and SMARTCONNECT_COMPANY_ID "
        "for your own tenant.",
        "dim",
    )
    return EXIT_OK


# ---- emulator serve --------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the server like Ctrl-C does (main thread only)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(
    state: State,
    *,
    port: int,
    faults_file: Path | None,
    latency_ms: int,
    rate_limit: str | None,
    seed: int,
    rows: int | None = None,
) -> int:
    """``smartconnect emulator serve``: serve until interrupted."""
    try:
        emulator_module = _import_emulator()
        rules: list[Any] = []
        if faults_file is not None:
            try:
                rules.extend(
                    emulator_module.parse_faults(json.loads(faults_file.read_text("utf-8")))
                )
            except (OSError, ValueError) as exc:
                raise CommandError(f"--faults {faults_file}: {exc}", EXIT_USAGE) from None
        if latency_ms:
            rules.extend(emulator_module.parse_faults([{"kind": "latency", "ms": latency_ms}]))
        try:
            emulator = emulator_module.Emulator(
                seed=seed, rate_limit=rate_limit, faults=rules, rows=rows
            )
        except ValueError as exc:
            raise CommandError(f"emulator serve: {exc}", EXIT_USAGE) from None
    except CommandError as exc:
        state.print_error(str(exc))
        return exc.exit_code
    app = emulator_module.create_app(emulator)
    try:
        with _sigterm_interrupts(), emulator_module.serve(app, host="127.0.0.1", port=port) as url:
            _print_banner(url, emulator_module.DEMO_CREDENTIALS, rules)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("emulator stopped", err=True)
        return EXIT_OK
    except OSError as exc:
        state.print_error(
            f"emulator serve: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
        )
        return EXIT_FAILURE


def _print_banner(url: str, logins: Any, rules: list[Any]) -> None:
    first = logins[0]
    lines = [
        f"SmartConnect emulator listening on {url}  (Ctrl-C to stop)",
        *([f"{len(rules)} fault rule(s) in force."] if rules else []),
        "",
        "Demo logins (made-up accounts of the emulator):",
        *(f"  {c.email:<28} company {c.company_id}  password {c.password}" for c in logins),
        "",
        "Try:",
        f"  export SMARTCONNECT_API_URL={shlex.quote(url)}",
        f"  export SMARTCONNECT_EMAIL={shlex.quote(first.email)}",
        f"  export SMARTCONNECT_COMPANY_ID={shlex.quote(first.company_id)}",
        f"  export SMARTCONNECT_PASSWORD={shlex.quote(first.password)}",
        "  smartconnect maps list",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()
