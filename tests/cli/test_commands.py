"""Every ``smartconnect`` command against the in-process emulator: output, formats parsed
back and compared with the library's own answers, exit statuses, and no secrets."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from pathlib import Path

import pyarrow.parquet
import pytest

from smartconnect_async import Row, SmartConnect, hash_password
from smartconnect_async.cli import _commands, _output
from smartconnect_async.cli._commands import FORMATS
from smartconnect_async.emulator import (
    IMPORT_CUSTOMERS_KEY,
    IMPORT_SALES_ORDERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    DemoCredential,
    Emulator,
    MapDef,
)

# ---- maps ------------------------------------------------------------------------------


def test_maps_list_table_and_json(run_cli, anyio_backend: str, assert_no_secrets) -> None:
    run_cli.backend = anyio_backend
    result = run_cli("maps", "list")
    assert result.exit_code == 0, result.output
    assert "Import Customers" in result.stdout
    assert IMPORT_CUSTOMERS_KEY in result.stdout
    assert "Realtime Customer Sync" not in result.stdout  # real-time maps are never listed
    assert result.stderr == ""

    result = run_cli("maps", "list", "--json")
    assert result.exit_code == 0
    maps = json.loads(result.stdout)
    assert {k: v for k, v in maps[0].items() if k != "description"} == {
        "id": "Import Customers",
        "key": IMPORT_CUSTOMERS_KEY,
    }
    assert len(maps) == 6
    assert_no_secrets(result)


@pytest.mark.parametrize("map_ref", ["Import Customers", IMPORT_CUSTOMERS_KEY])
def test_maps_columns_by_id_or_key(run_cli, map_ref: str) -> None:
    result = run_cli("maps", "columns", map_ref, "--json")
    assert result.exit_code == 0, result.output
    columns = json.loads(result.stdout)
    assert {"name": "AccountNumber", "required": True} in columns
    assert {"name": "Phone", "required": False} in columns

    table = run_cli("maps", "columns", map_ref)
    assert table.exit_code == 0
    assert "AccountNumber" in table.stdout
    assert "yes" in table.stdout


def test_maps_mapped(run_cli) -> None:
    result = run_cli("maps", "mapped", "Post Cash Receipts", "--json")
    assert result.exit_code == 0, result.output
    assert {"name": "CheckbookId", "required": True} in json.loads(result.stdout)


def test_unknown_map_is_one_line_and_exit_1(run_cli) -> None:
    result = run_cli("maps", "columns", "No Such Map")
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: maps columns: map 'No Such Map': no map named")
    assert "Traceback" not in result.stderr


def test_http_error_names_status_and_request_id(run_cli, emulator: Emulator) -> None:
    emulator.set_faults([{"kind": "status", "status": 403, "endpoints": ["GetMapColumns"]}])
    result = run_cli("maps", "columns", "Import Customers")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "map 'Import Customers'" in line
    assert "HTTP 403" in line
    assert "request id" in line
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback_without_secrets(
    run_cli, emulator: Emulator, assert_no_secrets
) -> None:
    emulator.set_faults([{"kind": "status", "status": 403, "endpoints": ["GetMapList"]}])
    result = run_cli("--debug", "maps", "list")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "PermissionDeniedError" in result.stderr
    assert "GetToken" in result.stderr  # the debug log of each call
    assert_no_secrets(result)


# ---- data ------------------------------------------------------------------------------


def _as_csv(rows: list[dict[str, str | None]]) -> list[dict[str, str]]:
    return [{k: "" if v is None else v for k, v in row.items()} for row in rows]


def _same_rows(
    streamed: list[dict[str, str | None]], expected: list[dict[str, str | None]]
) -> None:
    """Streamed rows equal ``get_all``'s (a column absent from a streamed row is null)."""
    assert len(streamed) == len(expected)
    for got, want in zip(streamed, expected, strict=True):
        assert set(got) <= set(want)
        assert {k: got.get(k) for k in want} == want


@pytest.mark.parametrize("map_ref", ["Import Customers", "Import GL Journal"])
def test_data_csv_matches_get_all(
    run_cli, login: DemoCredential, anyio_backend: str, map_ref: str
) -> None:
    run_cli.backend = anyio_backend
    result = run_cli("data", map_ref, "--format", "csv")
    assert result.exit_code == 0, result.output
    expected = run_cli.rows(login, map_ref)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows == _as_csv(expected)
    # GL Journal's first row has no Credit column; the header still has it.
    assert list(rows[0]) == list(expected[0])


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_data_json_formats_match_get_all(run_cli, login: DemoCredential, fmt: str) -> None:
    result = run_cli("data", "Import GL Journal", "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "json":
        rows = json.loads(result.stdout)
    else:
        rows = [json.loads(line) for line in result.stdout.splitlines()]
    _same_rows(rows, run_cli.rows(login, "Import GL Journal"))


def test_data_keeps_xml_characters_and_whitespace(run_cli) -> None:
    result = run_cli("data", "Import Customers", "--format", "ndjson")
    names = [json.loads(line)["AccountName"] for line in result.stdout.splitlines()[:4]]
    assert names[1] == "  Padded Name Ltd  "
    assert names[2] == "Smith & Sons <Wholesale> ]]> Ltd"
    assert names[3] == "Société Générale Québec"


def test_data_with_variables_to_a_file(run_cli, login: DemoCredential, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "colorado.json"
    result = run_cli("data", "Import Customers", "--var", "GBL_STATE=CO", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    expected = run_cli.rows(login, "Import Customers", {"GBL_STATE": "CO"})
    assert 0 < len(expected) < 500
    _same_rows(json.loads(out.read_text(encoding="utf-8")), expected)  # format from the suffix
    assert f"{len(expected)} rows of 'Import Customers' to {out}" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["colorado.json"]  # no temporary left
    if os.name == "posix":  # an ordinary file, not a private one like the token cache
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_data_to_parquet_in_row_groups(
    run_cli, login: DemoCredential, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_output, "PARQUET_ROW_GROUP", 128)  # streamed: 500 rows, 4 groups
    out = tmp_path / "customers.parquet"
    result = run_cli("data", "Import Customers", "-o", str(out))
    assert result.exit_code == 0, result.output
    parquet = pyarrow.parquet.ParquetFile(out)
    assert parquet.metadata.num_row_groups == 4
    table = parquet.read()
    expected = run_cli.rows(login, "Import Customers")
    assert table.schema.names == list(expected[0])
    assert {str(field.type) for field in table.schema} == {"string"}
    assert table.to_pylist() == [{c: row.get(c) for c in expected[0]} for row in expected]


def test_data_parquet_to_a_pipe_or_refused(
    run_cli, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = run_cli("data", "Import Vendors", "--format", "parquet")
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes[:4] == piped.stdout_bytes[-4:] == b"PAR1"
    to_terminal = run_cli("data", "Import Vendors", "--format", "parquet", terminal=True)
    assert to_terminal.exit_code == 2
    assert "parquet is binary: give -o FILE, or pipe it" in to_terminal.stderr
    monkeypatch.setattr(_commands.importlib.util, "find_spec", lambda name: None)
    missing = run_cli("data", "Import Vendors", "--format", "parquet")
    assert missing.exit_code == 2
    assert "--format parquet needs pyarrow: pip install 'smartconnect-async[parquet]'" in (
        missing.stderr
    )
    assert emulator.counters.calls["GetAllData"] == 1  # refused before anything was sent


def test_data_failure_leaves_no_partial_file(run_cli, emulator: Emulator, tmp_path: Path) -> None:
    emulator.set_faults([{"kind": "status", "status": 404, "endpoints": ["GetAllData"]}])
    folder = tmp_path / "out"
    folder.mkdir()
    result = run_cli("data", "Import Customers", "-o", str(folder / "out.csv"))
    assert result.exit_code == 1
    assert "HTTP 404" in result.stderr
    assert list(folder.iterdir()) == []


def test_data_table_format_and_empty_result(run_cli) -> None:
    result = run_cli("data", "Import Vendors", "--format", "table")
    assert result.exit_code == 0
    header, rule, first = result.stdout.splitlines()[:3]
    assert header.split()[:2] == ["VendorId", "VendorName"]
    assert set(rule.replace(" ", "")) == {"─"}
    assert first.startswith("V00001")

    empty = run_cli("data", "Import Vendors", "--var", "GBL_STATE=XX", "--format", "table")
    assert empty.exit_code == 0
    assert "(no rows)" in empty.stdout
    assert (
        run_cli("data", "Import Vendors", "--var", "GBL_STATE=XX", "--format", "json").stdout
        == "[]\n"
    )


def test_data_progress_line_on_a_terminal(run_cli, tmp_path: Path) -> None:
    result = run_cli("data", "Import Customers", "-o", str(tmp_path / "c.csv"), terminal=True)
    assert result.exit_code == 0
    assert "Exporting Import Customers" in result.stderr
    assert "rows" in result.stderr


def test_bad_var_is_a_usage_error(run_cli) -> None:
    result = run_cli("data", "Import Customers", "--var", "NOEQUALS")
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.stderr


# ---- run -------------------------------------------------------------------------------


def test_run_success_summary_and_exit_0(run_cli, emulator: Emulator, anyio_backend: str) -> None:
    run_cli.backend = anyio_backend
    result = run_cli("run", "Import Customers", "Import Vendors", "--var", "GBL_STATE=CO")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in ("Map", "Variables", "Run", "Records", "Errors", "Status"):
        assert heading in out
    assert "GBL_STATE=CO" in out
    assert "2 runs: 2 ok" in out
    assert emulator.counters.calls["RunMapWithVariables"] == 2


def test_run_failure_exit_1_with_errors(run_cli, emulator: Emulator) -> None:
    result = run_cli("run", "Import Items", "Post Cash Receipts")
    assert result.exit_code == 1
    out = result.stdout
    assert "failed (1)" in out
    assert "✗ Post Cash Receipts" in out
    assert "Required column 'CheckbookId' was not supplied." in out
    assert "2 runs: 1 ok, 1 failed" in out


def test_run_json_output(run_cli) -> None:
    result = run_cli("run", "Import Items", "Post Cash Receipts", "No Such Map", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    counts = [data[k] for k in ("total", "succeeded", "failed", "outcome_unknown", "errors")]
    assert counts == [3, 1, 1, 0, 1]
    items, receipts, missing = data["runs"]
    assert items["outcome"] == "ok"
    assert items["records"] == 300
    assert receipts["outcome"] == "failed"
    assert receipts["errors"] == 4
    assert receipts["error_rows"][0]["column"] == "CheckbookId"
    assert isinstance(receipts["error_rows"][0]["row"], int)
    assert isinstance(receipts["run_number"], int)
    assert missing["outcome"] == "error"
    assert missing["error"]["type"] == "UnknownMapError"


def test_run_outcome_unknown_is_reported_and_not_resent(run_cli, emulator: Emulator) -> None:
    emulator.set_faults([{"kind": "drop_after", "endpoints": ["runmap"], "count": 1}])
    result = run_cli("run", "Import Items")
    assert result.exit_code == 1
    assert "outcome unknown — not re-sent" in result.stdout
    assert "Check the run history" in result.stdout
    assert emulator.counters.calls["runmap"] == 1  # processed once, never sent again
    assert emulator.counters.total_runs == 1

    as_json = run_cli("run", POST_CASH_RECEIPTS_KEY, "--json")  # the fault has fired: ok now
    assert json.loads(as_json.stdout)["runs"][0]["outcome"] == "failed"


def test_run_rows_from_csv_and_json(run_cli, emulator: Emulator, tmp_path: Path) -> None:
    rows_csv = tmp_path / "customers.csv"
    rows_csv.write_text("AccountNumber,AccountName\nNEW001,Alpha & Co\nNEW002,Beta Ltd\n")
    result = run_cli("run", "Import Customers", "--rows", str(rows_csv), "--with-errors")
    assert result.exit_code == 0, result.output
    assert "2 rows posted" in result.stdout
    (posted,) = emulator.runs
    assert posted.endpoint == "RunMapDataTableWithErrors"
    assert [dict(d) for d in posted.documents] == [
        {"AccountNumber": "NEW001", "AccountName": "Alpha & Co"},
        {"AccountNumber": "NEW002", "AccountName": "Beta Ltd"},
    ]

    rows_json = tmp_path / "customers.json"
    rows_json.write_text(json.dumps([{"AccountName": "No number"}]))
    result = run_cli("run", "Import Customers", "--rows", str(rows_json), "--xml", "--json")
    assert result.exit_code == 1
    (run,) = json.loads(result.stdout)["runs"]
    assert run["outcome"] == "failed"
    assert emulator.runs[-1].endpoint == "runmapxml"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "Missing argument"),
        (["run", "X", "--with-errors"], "need --rows"),
        (["run", "X", "--rows", "missing.csv"], "missing.csv"),
        (["run", "X", "--rows", "rows.txt"], "use a .csv or a .json file"),
        (["run", "X", "--concurrency", "0"], "0"),
        (["run", "X", "--xml", "--with-errors", "--rows", "rows.csv"], "cannot be combined"),
        (
            ["run", "X", "--var", "GBL_STATE=CO", "--rows", "rows.csv"],
            "--var and --rows cannot be combined: a run with rows carries no variables",
        ),
    ],
)
def test_run_usage_errors_exit_2(
    run_cli,
    emulator: Emulator,
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.txt").write_text("x")
    (tmp_path / "rows.csv").write_text("AccountNumber\nC1\n")
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert emulator.counters.total_calls == 0


def test_run_progress_bar_on_a_terminal(run_cli) -> None:
    result = run_cli("run", "Import Items", "Import Vendors", terminal=True)
    assert result.exit_code == 0
    assert "Running 2 maps" in result.stderr
    assert "2/2" in result.stderr


# ---- errors save -----------------------------------------------------------------------


def test_errors_save(run_cli, emulator: Emulator) -> None:
    run = json.loads(run_cli("run", "Post Cash Receipts", "--json").stdout)["runs"][0]
    args = ["errors", "save", "Post Cash Receipts", "--tenant-server", "sql01", "--tenant", "TWO"]
    result = run_cli(*args, "--run-number", str(run["run_number"]))
    assert result.exit_code == 0, result.output
    assert f"run {run['run_number']}" in result.stdout
    (saved,) = emulator.saved_errors
    assert (saved.tenant_server, saved.tenant_technical_name) == ("sql01", "TWO")

    missing = run_cli(*args, "--run-number", "999999")
    assert missing.exit_code == 1
    assert "did not save" in missing.stderr

    usage = run_cli(*args[:3], "--run-number", "1")
    assert usage.exit_code == 2


# ---- token, validate -------------------------------------------------------------------


def test_token_shows_times_never_the_token_unless_asked(
    run_cli, emulator: Emulator, assert_no_secrets
) -> None:
    result = run_cli("token")
    assert result.exit_code == 0, result.output
    assert "issued" in result.stdout
    assert "expires" in result.stdout
    assert "new token (GetToken)" in result.stdout
    assert_no_secrets(result)

    again = run_cli("token", "--json")
    data = json.loads(again.stdout)
    assert data["from_cache"] is True
    assert "token" not in data
    assert_no_secrets(again)

    shown = run_cli("token", "--show")
    (value,) = emulator.tokens
    assert value in shown.stdout
    assert value not in shown.stderr


def test_token_refresh_gets_a_new_one(run_cli, emulator: Emulator) -> None:
    run_cli("token")
    result = run_cli("token", "--refresh", "--json")
    assert json.loads(result.stdout)["from_cache"] is False
    assert emulator.counters.calls["GetToken"] == 2


def test_validate(run_cli, emulator: Emulator) -> None:
    result = run_cli("validate")
    assert result.exit_code == 0
    assert result.stdout.startswith("valid")

    emulator.advance_clock(100 * 24 * 3600)  # the server now considers the token expired
    result = run_cli("validate")
    assert result.exit_code == 1
    assert result.stdout.startswith("invalid")


# ---- secrets across every command --------------------------------------------------------


def test_no_secret_in_any_output(
    run_cli, emulator: Emulator, tmp_path: Path, assert_no_secrets
) -> None:
    emulator.set_faults([{"kind": "status", "status": 500, "endpoints": ["runmap"], "count": 1}])
    for args in (
        ["token"],
        ["--debug", "validate"],
        ["maps", "list"],
        ["--debug", "data", "Import Customers", "-o", str(tmp_path / "x.csv")],
        ["--debug", "run", "Import Items", "Post Cash Receipts"],
        ["run", "Import Items", "--json"],
        ["--debug", "maps", "columns", "nope"],
    ):
        result = run_cli(*args)
        assert result.exit_code in (0, 1), (args, result.output)
        assert_no_secrets(result)


def test_wrong_password_is_one_clear_line(
    run_cli, monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> None:
    monkeypatch.setenv("SMARTCONNECT_PASSWORD", "wrong+pass/word=")
    result = run_cli("--debug", "maps", "list")
    assert result.exit_code == 1
    assert "GetToken failed with HTTP 401" in result.stderr
    for secret in ("wrong+pass/word=", "wrong%2Bpass", hash_password("wrong+pass/word=")):
        assert secret not in result.stdout + result.stderr


def test_data_second_table(run_cli, login: DemoCredential) -> None:
    result = run_cli("data", "Import Sales Orders", "--table", "Line", "--format", "ndjson")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]

    async def lines(sc: SmartConnect) -> list[Row]:
        return (await sc.data.get_all("Import Sales Orders")).tables["Line"]

    _same_rows(rows, run_cli.reference(lines, login))


def test_data_table_without_rows_warns_naming_the_tables(run_cli) -> None:
    result = run_cli("data", "Import Sales Orders", "--table", "Nope", "--format", "ndjson")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "has no rows of table 'Nope' (it has rows of 'Header', 'Line')" in result.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_data_strict_table_without_rows_is_exit_1_and_writes_nothing(
    run_cli, emulator: Emulator, fmt: str
) -> None:
    result = run_cli("data", "Import Sales Orders", "--table", "Nope", "--strict", "--format", fmt)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"error: data: map 'Import Sales Orders': the GetAllData answer for map "
        f"{IMPORT_SALES_ORDERS_KEY} has no rows of table 'Nope'; it holds 'Header', 'Line'"
    )
    assert emulator.counters.calls["GetAllData"] == 1


def test_data_strict_table_without_rows_leaves_no_file(run_cli, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["data", "Import Sales Orders", "--table", "Nope", "--strict"]
    result = run_cli(*args, "-o", str(folder / "nope.csv"))
    assert result.exit_code == 1
    assert "no rows of table 'Nope'; it holds 'Header', 'Line'" in result.stderr
    assert list(folder.iterdir()) == []


def test_data_strict_table_of_an_empty_answer_is_exit_1(run_cli) -> None:
    args = ["data", "Import Vendors", "--var", "GBL_STATE=XX", "--table", "Vendors"]
    assert run_cli(*args, "--format", "json").stdout == "[]\n"  # not strict: no rows, exit 0
    result = run_cli(*args, "--strict", "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: data: map 'Import Vendors': the GetAllDataWithVariables answer for map "
        "9c0d4e21-7f3a-4b86-8d12-abb300a1b2c3 has no rows of table 'Vendors'; "
        "it holds no rows at all\n"
    )


def test_data_strict_table_with_rows_exports_them(run_cli) -> None:
    args = ["data", "Import Sales Orders", "--table", "Line", "--format", "ndjson"]
    plain = run_cli(*args)
    strict = run_cli(*args, "--strict")
    assert strict.exit_code == 0, strict.output
    assert strict.stdout == plain.stdout != ""
    assert strict.stderr == ""


def test_data_strict_needs_table(run_cli, emulator: Emulator) -> None:
    result = run_cli("data", "Import Sales Orders", "--strict")
    assert result.exit_code == 2
    assert "--strict needs --table" in result.stderr
    assert emulator.counters.total_calls == 0


# ---- terminal, colours ---------------------------------------------------------------


def test_colours_on_a_terminal_and_no_color_honoured(
    run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    colour = re.compile(r"\x1b\[[0-9;]*(3[0-7]|38;)")
    coloured = run_cli("run", "Import Items", "Post Cash Receipts", terminal=True)
    assert colour.search(coloured.stdout)

    monkeypatch.setenv("NO_COLOR", "1")
    plain = run_cli("run", "Import Items", "Post Cash Receipts", terminal=True)
    assert plain.exit_code == 1
    assert not colour.search(plain.stdout + plain.stderr)
    assert "Running 2 maps" in plain.stderr  # the progress bar is still shown

    piped = run_cli("run", "Import Items", "Post Cash Receipts")
    assert "\x1b[" not in piped.stdout + piped.stderr


def test_unwritable_token_cache_is_a_warning(
    run_cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emulator: Emulator
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SMARTCONNECT_CACHE_DIR", str(blocker))
    result = run_cli("maps", "list")
    assert result.exit_code == 0, result.output
    assert "warning: the token cache could not be written" in result.stderr


def test_server_text_quoting_a_secret_is_redacted(
    run_cli, emulator: Emulator, assert_no_secrets
) -> None:
    """Whatever the server says is printed through the redacting consoles."""
    assert run_cli("token").exit_code == 0
    (token,) = emulator.tokens
    emulator.add_map(
        MapDef(
            key="0f0e0d0c-0b0a-4908-8706-050403020100",
            company_id="DEMO01",
            map_id="Leaky",
            description=f"token={token} and {token}",
            source=emulator.maps[IMPORT_CUSTOMERS_KEY].source,
            mapped=(),
        )
    )
    result = run_cli("maps", "list")
    assert result.exit_code == 0
    assert "[REDACTED]" in result.stdout
    assert_no_secrets(result)


@pytest.mark.parametrize("name", ["out.xlsx", "out.txt", "out.feather"])
def test_data_refuses_an_output_it_cannot_write(
    run_cli, emulator: Emulator, tmp_path: Path, name: str
) -> None:
    result = run_cli("data", "Import Customers", "-o", str(tmp_path / name))
    assert result.exit_code == 2
    assert f"cannot write {Path(name).suffix} files" in result.stderr
    assert not (tmp_path / name).exists()
    assert emulator.counters.total_calls == 0


def test_data_with_an_explicit_format_writes_any_name(run_cli, tmp_path: Path) -> None:
    result = run_cli("data", "Import Customers", "--format", "csv", "-o", str(tmp_path / "c.txt"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "c.txt").read_text().startswith("AccountNumber,")


def test_a_404_from_get_token_hints_at_the_api_url(run_cli, emulator: Emulator) -> None:
    emulator.set_faults([{"kind": "status", "status": 404, "endpoints": ["GetToken"]}])
    result = run_cli("maps", "list")
    assert result.exit_code == 1
    assert "It usually ends in /API" in result.stderr
