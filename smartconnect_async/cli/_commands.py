"""The ``smartconnect`` commands (click)."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar, cast

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from .. import Column, RowStream, RunRequest, SqliteJournal, __version__, _env
from ..journal import Resolution
from ._batch import RunItem, print_summary, run_batch, summary_json
from ._config import ConfigError, config_file, load_profiles
from ._context import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Hooks,
    State,
    open_client,
    run_command,
)
from ._output import (
    CsvWriter,
    JsonWriter,
    NdjsonWriter,
    ParquetWriter,
    RedactingStream,
    RowWriter,
    Secrets,
    TableWriter,
    make_console,
    make_table,
    time_left,
    when,
)

__all__ = ["cli"]

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "csv", "json", "ndjson", "parquet")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
}
_XML_NAME = re.compile(r"[A-Za-z_][\w.\-]*")
PROGRESS_EVERY = 500
"""Rows between two updates of the progress line."""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _state() -> State:
    state = click.get_current_context().find_object(State)
    assert state is not None, "the smartconnect group sets the state"
    return state


# ---- connection options: accepted before or after the subcommand ---------------------


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Store a connection option given on a subcommand over the group's value."""
    if value is not None and param.name is not None:
        state = ctx.find_object(State)
        if state is not None:
            state.flags[param.name] = value
    return value


def connection_options(command: F) -> F:
    """``--api-url --email --company-id --profile`` on a subcommand too (hidden from its
    help: the group's help documents them)."""
    options = (
        click.option(
            "--api-url",
            metavar="URL",
            expose_value=False,
            callback=_remember,
            hidden=True,
            help="The API Url, e.g. https://host/API [env SMARTCONNECT_API_URL].",
        ),
        click.option(
            "--email",
            metavar="EMAIL",
            expose_value=False,
            callback=_remember,
            hidden=True,
            help="The user's e-mail [env SMARTCONNECT_EMAIL].",
        ),
        click.option(
            "--company-id",
            metavar="ID",
            expose_value=False,
            callback=_remember,
            hidden=True,
            help="The company (Customer Id) [env SMARTCONNECT_COMPANY_ID].",
        ),
        click.option(
            "--profile",
            metavar="NAME",
            expose_value=False,
            callback=_remember,
            hidden=True,
            help="A [profiles.NAME] of the config file [env SMARTCONNECT_PROFILE].",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _variables(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    variables: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", ctx=ctx, param=param)
        variables[name.strip()] = text
    return variables


var_option = click.option(
    "--var",
    "variables",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_variables,
    help="A global variable for the map, e.g. GBL_STATE=CO (repeatable).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")


# ---- the group -----------------------------------------------------------------------


@click.group(name="smartconnect", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--api-url",
    metavar="URL",
    help="The API Url, e.g. https://host/API [env SMARTCONNECT_API_URL].",
)
@click.option("--email", metavar="EMAIL", help="The user's e-mail [env SMARTCONNECT_EMAIL].")
@click.option(
    "--company-id", metavar="ID", help="The company (Customer Id) [env SMARTCONNECT_COMPANY_ID]."
)
@click.option(
    "--profile",
    metavar="NAME",
    help="A [profiles.NAME] of the config file [env SMARTCONNECT_PROFILE].",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    envvar=_env.TIMEOUT,  # the variable SmartConnect.from_env reads too
    help=f"Seconds allowed for each call [env {_env.TIMEOUT}].",
)
@click.option("--no-token-cache", is_flag=True, help="Neither read nor write the token cache.")
@click.option("--debug", is_flag=True, help="Log every call, and show tracebacks.")
@click.version_option(__version__, "-V", "--version", prog_name="smartconnect")
@click.pass_context
def cli(
    ctx: click.Context,
    api_url: str | None,
    email: str | None,
    company_id: str | None,
    profile: str | None,
    timeout: float,
    no_token_cache: bool,
    debug: bool,
) -> None:
    """Run eOne SmartConnect maps and export their data from the command line.

    \b
    Settings: flag > environment variable > profile. The password comes from
    SMARTCONNECT_PASSWORD, the OS keyring (service "smartconnect-async", user =
    e-mail) or a prompt; never from a flag. Tokens are cached for reuse (3 months).

    \b
    The connection options may also follow the command (`smartconnect maps list
    --profile prod`). Exit status: 0 success, 1 a call or a run failed, 2 usage or
    configuration error. Try `smartconnect demo` first: it needs no configuration.
    """
    hooks = ctx.obj if isinstance(ctx.obj, Hooks) else Hooks()
    secrets = Secrets()
    stdout = cast(IO[str], RedactingStream(sys.stdout, secrets))
    stderr = cast(IO[str], RedactingStream(sys.stderr, secrets))
    state = State(
        hooks=hooks,
        flags={"api_url": api_url, "email": email, "company_id": company_id, "profile": profile},
        debug=debug,
        token_cache=not no_token_cache,
        timeout=timeout,
        secrets=secrets,
        out=make_console(stdout, terminal=hooks.terminal),
        err=make_console(stderr, stderr=True, terminal=hooks.terminal),
    )
    ctx.obj = state
    state.install_logging()
    ctx.call_on_close(state.remove_logging)


# ---- token, validate -----------------------------------------------------------------


@cli.command(short_help="When the token was issued and when it expires.")
@connection_options
@click.option("--show", is_flag=True, help="Also print the token itself (it is a secret).")
@click.option("--refresh", is_flag=True, help="Get a new token even if the cached one is good.")
@json_option
def token(show: bool, refresh: bool, as_json: bool) -> None:
    """Print when the company's token was issued and when it expires."""
    state = _state()

    async def command() -> int:
        async with open_client(state, fresh_token=refresh) as conn:
            before = await conn.store.get(conn.key)
            token = await conn.sc.auth.get_token(force_refresh=refresh)
            cached = before is not None and before.value == token.value
            source = "token cache" if cached else "new token (GetToken)"
            if as_json:
                data: dict[str, Any] = {
                    "api_url": conn.key.api_url,
                    "company_id": token.company_id,
                    "email": token.email,
                    "issued_at": token.issued_at.isoformat(),
                    "expires_at": token.expires_at.isoformat(),
                    "from_cache": cached,
                }
                if show:
                    data["token"] = token.value
                click.echo(json.dumps(data, indent=2))
                return EXIT_OK
            out = state.out
            out.print(Text(f"Token for {token.email}, company {token.company_id}", style="bold"))
            rows = [
                ("API Url", conn.key.api_url),
                ("issued", when(token.issued_at)),
                ("expires", f"{when(token.expires_at)} ({time_left(token.expires_at)})"),
                ("source", source + (f" — {conn.cache_location}" if conn.cache_location else "")),
            ]
            for name, value in rows:
                out.print(Text(f"  {name:<8} ").append(value), soft_wrap=True)
            if show:
                click.echo(f"  token    {token.value}")
            return EXIT_OK

    run_command(state, command, what="token")


@cli.command(short_help="Ask the server whether it accepts the token.")
@connection_options
def validate() -> None:
    """Ask the server whether it accepts the token (exit status 1 if not)."""
    state = _state()

    async def command() -> int:
        async with open_client(state) as conn:
            valid = await conn.sc.auth.validate()
            who = f"{conn.key.email}, company {conn.key.company_id}"
            if valid:
                state.out.print(
                    Text("valid", style="bold green").append(
                        f": the server accepts the token for {who}"
                    )
                )
                return EXIT_OK
            state.out.print(
                Text("invalid", style="bold red").append(
                    f": the server refused the token for {who}; it was dropped from the cache"
                )
            )
            return EXIT_FAILURE

    run_command(state, command, what="validate")


# ---- maps ----------------------------------------------------------------------------


@cli.group()
def maps() -> None:
    """The company's maps and their columns."""


@maps.command("list")
@connection_options
@json_option
def maps_list(as_json: bool) -> None:
    """List the maps the API can run (MapId, MapKey, description)."""
    state = _state()

    async def command() -> int:
        async with open_client(state) as conn:
            found = await conn.sc.maps.list()
        if as_json:
            data = [{"id": m.id, "key": m.key, "description": m.description} for m in found]
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
            return EXIT_OK
        table = make_table()
        table.add_column("MapId", overflow="fold")
        table.add_column("MapKey", no_wrap=True, style="dim")
        table.add_column("Description", overflow="fold")
        for m in found:
            table.add_row(Text(m.id), Text(m.key), Text(m.description))
        state.out.print(table)
        state.out.print(Text(f"{len(found)} map{'s' if len(found) != 1 else ''}", style="dim"))
        return EXIT_OK

    run_command(state, command, what="maps list")


def _columns_command(name: str, mapped: bool, doc: str) -> click.Command:
    @maps.command(name, help=doc)
    @connection_options
    @click.argument("map_ref", metavar="MAP")
    @json_option
    def command_(map_ref: str, as_json: bool) -> None:
        state = _state()

        async def command() -> int:
            async with open_client(state) as conn:
                get = conn.sc.maps.mapped_columns if mapped else conn.sc.maps.columns
                columns: list[Column] = await get(map_ref)
            if as_json:
                data = [{"name": c.name, "required": c.required} for c in columns]
                click.echo(json.dumps(data, indent=2, ensure_ascii=False))
                return EXIT_OK
            table = make_table()
            table.add_column("Column", overflow="fold")
            table.add_column("Required")
            for c in columns:
                table.add_row(Text(c.name), Text("yes", style="bold") if c.required else "")
            state.out.print(table)
            return EXIT_OK

        run_command(state, command, what=f"maps {name}", map_name=map_ref)

    return command_


_columns_command(
    "columns", False, "The source columns of MAP (a MapId or a MapKey), and which are required."
)
_columns_command("mapped", True, "The destination columns MAP (a MapId or a MapKey) fills.")


# ---- data ----------------------------------------------------------------------------


@contextlib.contextmanager
def _output_stream(path: Path | None) -> Iterator[TextIO]:
    """stdout, or ``path`` written through a temporary file in the same directory and
    renamed into place only when the export succeeded (no half-written file)."""
    if path is None:
        yield sys.stdout
        return
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.chmod(temp, _new_file_mode())  # mkstemp made it 0600; data files are not secret
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@cli.command(short_help="Stream a map's source data (table, csv, json, ndjson, parquet).")
@connection_options
@click.argument("map_ref", metavar="MAP")
@var_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="Output format [default: from the -o suffix, else table on a terminal, else csv].",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option(
    "--table", "table_name", metavar="NAME", help="The table to export (default: the first)."
)
@click.option(
    "--strict",
    is_flag=True,
    help="With --table: exit 1, writing nothing, when the answer holds no rows of NAME.",
)
def data(
    map_ref: str,
    variables: dict[str, str],
    fmt: str | None,
    output: Path | None,
    table_name: str | None,
    strict: bool,
) -> None:
    """Stream the source data of MAP (a MapId or a MapKey) as rows, in constant memory.

    json and ndjson keep every column of every row; csv and table take their columns
    from the first 1,000 rows (a column first seen later is left out, with a warning).
    A progress line counts the rows on a terminal. With -o the file appears only once
    the export is complete.

    A table with no rows is absent from the answer, so --table NAME of an absent table
    exports no rows with a warning (a quiet day, or a misspelt name); with --strict it
    is an error.
    """
    state = _state()
    if strict and table_name is None:
        raise click.UsageError("--strict needs --table")
    if fmt is None:
        if output is not None:
            suffix = output.suffix.lower()
            if suffix and suffix not in _SUFFIX_FORMATS:
                raise click.UsageError(
                    f"cannot write {suffix} files: name the output .csv, .json, .ndjson, "
                    ".jsonl or .parquet, or give --format",
                    ctx=click.get_current_context(),
                )
            fmt = _SUFFIX_FORMATS.get(suffix, "csv")
        else:
            fmt = "table" if state.out.is_terminal else "csv"
    if fmt == "parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise click.UsageError(
                "--format parquet needs pyarrow: pip install 'smartconnect-async[parquet]'"
            )
        if output is None and state.out.is_terminal:
            raise click.UsageError("parquet is binary: give -o FILE, or pipe it")
    show_progress = state.err.is_terminal and (output is not None or not state.out.is_terminal)

    async def command() -> int:
        async with open_client(state) as conn:
            rows = conn.sc.data.iter_rows(
                map_ref, variables or None, table=table_name, strict=strict
            )
            started = time.perf_counter()
            with _output_stream(output) as stream:
                writer = _writer(fmt, stream, state)
                count = await _export(rows, writer, state, map_ref, show_progress)
                writer.close()  # not reached when strict finds no rows: nothing written
            elapsed = time.perf_counter() - started
        if output is not None or show_progress:
            where = f" to {output}" if output is not None else ""
            state.err.print(
                Text(
                    f"{count:,} row{'s' if count != 1 else ''} of {map_ref!r}{where} "
                    f"in {elapsed:.1f}s",
                    style="dim",
                ),
                soft_wrap=True,
            )
        return EXIT_OK

    run_command(state, command, what="data", map_name=map_ref)


def _writer(fmt: str, stream: TextIO, state: State) -> RowWriter:
    if fmt == "parquet":
        return ParquetWriter(stream.buffer)  # the file or stdout, as bytes
    if fmt == "csv":
        return CsvWriter(stream)
    if fmt == "json":
        return JsonWriter(stream)
    if fmt == "ndjson":
        return NdjsonWriter(stream)
    # The data goes out as it is: only messages pass through the redacting consoles.
    terminal = state.out.is_terminal if stream is sys.stdout else False
    return TableWriter(make_console(stream, terminal=terminal))


async def _export(
    rows: RowStream, writer: RowWriter, state: State, map_ref: str, show_progress: bool
) -> int:
    """Write every row of ``rows``; a progress line on stderr if ``show_progress``."""
    count = 0
    if not show_progress:
        async with rows:
            async for row in rows:
                writer.write(row)
                count += 1
        return count
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=state.err,
        transient=True,
    )
    with progress:
        task = progress.add_task(escape(f"Exporting {map_ref}"), total=None)
        async with rows:
            async for row in rows:
                writer.write(row)
                count += 1
                if count % PROGRESS_EVERY == 0:
                    progress.update(task, completed=count)
        progress.update(task, completed=count)
    return count


# ---- run -----------------------------------------------------------------------------


def _load_rows(path: Path) -> list[dict[str, object]]:
    """Rows from a .csv (header row) or .json (a list of objects) file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", newline="") as file:
                rows: list[dict[str, object]] = [dict(r) for r in csv.DictReader(file)]
        elif suffix == ".json":
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(loaded, list) or not all(isinstance(r, dict) for r in loaded):
                raise ConfigError(
                    f"--rows {path}: the JSON must be a list of objects (one per row)"
                )
            rows = loaded
        else:
            raise ConfigError(f"--rows {path}: use a .csv or a .json file")
    except OSError as exc:
        raise ConfigError(f"--rows {path}: {exc.strerror or exc}") from None
    except (ValueError, csv.Error) as exc:
        raise ConfigError(f"--rows {path}: {exc}") from None
    if not rows:
        raise ConfigError(f"--rows {path}: the file has no rows")
    for index, row in enumerate(rows, start=1):
        for column, value in row.items():
            if not isinstance(column, str) or not _XML_NAME.fullmatch(column):
                raise ConfigError(
                    f"--rows {path}: row {index}: {column!r} is not a valid column name"
                )
            if isinstance(value, (dict, list)):
                raise ConfigError(
                    f"--rows {path}: row {index}, column {column!r}: nested values are not allowed"
                )
    return rows


@cli.command(short_help="Run maps concurrently, then print a summary.")
@connection_options
@click.argument("map_refs", metavar="MAP [MAP ...]", nargs=-1, required=True)
@var_option
@click.option(
    "--rows",
    "rows_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run over the rows of FILE.csv or FILE.json instead of the map's source.",
)
@click.option(
    "--with-errors", is_flag=True, help="With --rows: also return the map's validation errors."
)
@click.option(
    "--xml", "as_xml", is_flag=True, help="With --rows: send them as an XML data set (runmapxml)."
)
@click.option(
    "--concurrency",
    metavar="N",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs in flight at once.",
)
@click.option(
    "--journal",
    "journal_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record each run in the journal FILE (SQLite) before sending it; resume it if it exists.",
)
@json_option
def run(
    map_refs: tuple[str, ...],
    variables: dict[str, str],
    rows_file: Path | None,
    with_errors: bool,
    as_xml: bool,
    concurrency: int,
    journal_file: Path | None,
    as_json: bool,
) -> None:
    """Run one or more maps (MapIds or MapKeys), then print a summary.

    A run that may have reached the server without an answer is never sent again: it is
    reported as "outcome unknown — not re-sent". Exit status 0 only if every run
    succeeded, 1 if any failed.

    With --journal, the same command run again resumes the batch: runs the journal
    records as done are not sent again (their recorded outcome is shown), runs it left
    without an outcome are refused ("needs resolution") until `smartconnect journal
    resolve` settles them.
    """
    state = _state()
    if (with_errors or as_xml) and rows_file is None:
        raise click.UsageError("--with-errors and --xml need --rows")
    if with_errors and as_xml:
        raise click.UsageError("--with-errors and --xml cannot be combined")
    if variables and rows_file is not None:
        raise click.UsageError(
            "--var and --rows cannot be combined: a run with rows carries no variables"
        )
    try:
        rows = _load_rows(rows_file) if rows_file is not None else None
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    items = [
        RunItem.of(RunRequest(ref, variables or None, rows, with_errors=with_errors, as_xml=as_xml))
        for ref in map_refs
    ]

    async def command() -> int:
        journal = None if journal_file is None else SqliteJournal(journal_file)
        try:
            async with open_client(state, max_concurrent_runs=concurrency) as conn:
                outcomes = await run_batch(
                    conn.sc,
                    items,
                    concurrency=concurrency,
                    progress_console=state.err,
                    journal=journal,
                )
        finally:
            if journal is not None:
                await journal.aclose()
        if as_json:
            text = json.dumps(summary_json(outcomes), indent=2, ensure_ascii=False)
            click.echo(state.secrets.redact(text))
        else:
            print_summary(state.out, outcomes)
        return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILURE

    run_command(
        state,
        command,
        what="run",
        interrupted="interrupted — runs in flight may have reached the server and were not "
        "re-sent; check the run history before running them again",
    )


# ---- journal -------------------------------------------------------------------------

journal_argument = click.argument(
    "journal_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)


@cli.group(short_help="The run journal of `run --journal`.")
def journal() -> None:
    """The run journal of `smartconnect run --journal FILE`: list its runs, and settle
    those whose outcome is unknown."""


@journal.command("list")
@journal_argument
@click.option("--unresolved", is_flag=True, help="Only the runs that need resolution.")
@json_option
def journal_list(journal_file: Path, unresolved: bool, as_json: bool) -> None:
    """List the runs of the journal FILE, oldest first."""
    state = _state()

    async def command() -> int:
        async with SqliteJournal(journal_file) as journal:
            records = await journal.records(unresolved=unresolved)
        if as_json:
            click.echo(json.dumps([r.to_fields() for r in records], indent=2))
            return EXIT_OK
        table = make_table()
        for heading in ("Key", "Company", "Map", "State", "Run", "Updated"):
            table.add_column(heading, overflow="fold")
        for record in records:
            state_text = record.state + (f" ({record.resolved})" if record.resolved else "")
            table.add_row(
                record.key,
                record.company_id,
                record.map,
                Text(state_text, style="bold yellow" if record.needs_resolution else ""),
                "—" if record.run_number is None else str(record.run_number),
                when(record.updated_at),
            )
        state.out.print(table)
        waiting = sum(1 for r in records if r.needs_resolution)
        state.out.print(f"{len(records)} run(s), {waiting} needing resolution")
        return EXIT_OK

    run_command(state, command, what="journal list")


@journal.command("resolve")
@journal_argument
@click.argument("key")
@click.option("--ran", "how", flag_value="ran", help="The run history shows the run.")
@click.option(
    "--not-run", "how", flag_value="not-run", help="It did not run: the next resume sends it."
)
@click.option("--run-number", type=click.IntRange(min=0), help="With --ran: its run number.")
def journal_resolve(journal_file: Path, key: str, how: str | None, run_number: int | None) -> None:
    """Settle the run KEY of the journal FILE, whose outcome is unknown: --ran records it
    as done, --not-run lets the next `run --journal FILE` send it."""
    state = _state()
    if how is None:
        raise click.UsageError("say --ran or --not-run")
    if run_number is not None and how != "ran":
        raise click.UsageError("--run-number goes with --ran")

    async def command() -> int:
        async with SqliteJournal(journal_file) as journal:
            try:
                record = await journal.resolve(key, cast(Resolution, how), run_number=run_number)
            except (KeyError, ValueError) as exc:
                state.print_error(f"journal resolve: {exc.args[0]}")
                return EXIT_FAILURE
        state.out.print(Text(f"{record.key}: {record.state} ({record.resolved})"))
        return EXIT_OK

    run_command(state, command, what="journal resolve")


# ---- errors --------------------------------------------------------------------------


@cli.group()
def errors() -> None:
    """A run's process errors."""


@errors.command("save")
@connection_options
@click.argument("map_ref", metavar="MAP")
@click.option(
    "--tenant-server", required=True, help="The tenant server (Processes › Error Processing)."
)
@click.option(
    "--tenant", "tenant_name", required=True, metavar="NAME", help="The tenant's technical name."
)
@click.option(
    "--run-number", type=click.IntRange(min=0), required=True, help="The run whose errors to save."
)
def errors_save(map_ref: str, tenant_server: str, tenant_name: str, run_number: int) -> None:
    """Save the process errors of one run of MAP on the SmartConnect server."""
    state = _state()

    async def command() -> int:
        async with open_client(state) as conn:
            saved = await conn.sc.errors.save(
                map_ref,
                tenant_server=tenant_server,
                tenant_technical_name=tenant_name,
                run_number=run_number,
            )
        if saved:
            state.out.print(
                f"saved the process errors of run {run_number} of {map_ref!r}", markup=False
            )
            return EXIT_OK
        state.print_error(
            f"errors save: map {map_ref!r}: the server did not save the errors of run "
            f"{run_number} (no such run for this map?)"
        )
        return EXIT_FAILURE

    run_command(state, command, what="errors save", map_name=map_ref)


# ---- config --------------------------------------------------------------------------


@cli.group()
def config() -> None:
    """The settings in force and where they come from."""


@config.command("show")
@connection_options
def config_show() -> None:
    """Show each setting, where it came from, the config file and the token cache."""
    state = _state()
    try:
        settings = state.settings()
        profiles = load_profiles(config_file())
    except ConfigError as exc:
        state.print_error(str(exc))
        raise click.exceptions.Exit(EXIT_USAGE) from None
    from ._config import cache_dir

    out = state.out
    for name in ("api_url", "email", "company_id"):
        value = getattr(settings, name)
        line = Text(f"{name:<11} ")
        line.append(value or "(not set)", style="" if value else "dim")
        if value:
            line.append(f"  [{settings.sources[name]}]", style="dim")
        out.print(line, soft_wrap=True)
    out.print(Text(f"{'profile':<11} {settings.profile or '(none)'}"), soft_wrap=True)
    out.print(Text(f"{'profiles':<11} {', '.join(sorted(profiles)) or '(none)'}"), soft_wrap=True)
    out.print(Text(f"{'config':<11} {config_file()}"), soft_wrap=True)
    cache = "disabled (--no-token-cache)" if not state.token_cache else str(cache_dir() / "tokens")
    out.print(Text(f"{'token cache':<11} {cache}"), soft_wrap=True)


# ---- emulator, demo ------------------------------------------------------------------


@cli.group(short_help="The built-in SmartConnect emulator.")
def emulator() -> None:
    """The built-in SmartConnect emulator (for trying things out and for tests)."""


@emulator.command("serve")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The port (0: any free port).",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fault rules, a JSON file.",
)
@click.option(
    "--latency-ms", type=click.IntRange(min=0), default=0, help="Latency added to every call."
)
@click.option("--rate-limit", metavar="N/SECONDS", help="A rate limit, e.g. 100/60.")
@click.option(
    "--rows",
    metavar="N",
    type=click.IntRange(min=0),
    help="Rows in every data source (default: a few hundred).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for data, GUIDs and faults."
)
def emulator_serve(
    port: int,
    faults_file: Path | None,
    latency_ms: int,
    rate_limit: str | None,
    rows: int | None,
    seed: int,
) -> None:
    """Serve the emulator on 127.0.0.1 until interrupted (Ctrl-C)."""
    from ._demo import serve_forever

    state = _state()
    code = serve_forever(
        state,
        port=port,
        faults_file=faults_file,
        latency_ms=latency_ms,
        rate_limit=rate_limit,
        rows=rows,
        seed=seed,
    )
    click.get_current_context().exit(code)


@cli.command(short_help="Try it: the built-in emulator driven by the real client.")
@click.option(
    "--concurrency",
    metavar="N",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Runs in flight at once.",
)
def demo(concurrency: int) -> None:
    """Start the built-in emulator on loopback and drive it with the real client: list
    maps, export data, run a batch of maps with one failing run. No configuration."""
    from ._demo import run_demo

    state = _state()
    run_command(state, lambda: run_demo(state, concurrency=concurrency), what="demo")
