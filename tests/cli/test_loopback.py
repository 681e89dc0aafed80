"""The command line over real TCP: against ``serve()``, ``smartconnect demo`` end to end,
``smartconnect emulator serve`` as a process, and the entry point itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from smartconnect_async.cli._commands import cli
from smartconnect_async.cli._context import Hooks
from smartconnect_async.emulator import DemoCredential, Emulator, create_app, serve

PYTHON = sys.executable
URL = re.compile(r"http://127\.0\.0\.1:\d+/API")


def smartconnect(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "smartconnect_async.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_commands_over_loopback_tcp(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, login: DemoCredential
) -> None:
    emulator = Emulator()
    with serve(create_app(emulator)) as api_url:
        monkeypatch.setenv("SMARTCONNECT_API_URL", api_url)
        runner = CliRunner()
        hooks = Hooks(interactive=False)  # no injected client: a real connection pool
        listed = runner.invoke(cli, ["maps", "list", "--json"], obj=hooks)
        assert listed.exit_code == 0, listed.output
        data = runner.invoke(cli, ["data", "Import Items", "--format", "ndjson"], obj=hooks)
        assert data.exit_code == 0, data.output
        assert len(data.stdout.splitlines()) == 300
        ran = runner.invoke(cli, ["run", "Import Items", "Post Cash Receipts", "--json"], obj=hooks)
        assert ran.exit_code == 1
        assert [r["outcome"] for r in json.loads(ran.stdout)["runs"]] == ["ok", "failed"]
    assert emulator.counters.calls["GetToken"] == 1


def test_connection_refused_is_one_line(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = Emulator()
    with serve(create_app(emulator)) as api_url:
        pass  # the port is free again: nothing listens there
    monkeypatch.setenv("SMARTCONNECT_API_URL", api_url)
    result = CliRunner().invoke(
        cli, ["--timeout", "5", "maps", "list"], obj=Hooks(interactive=False)
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert lines[-1].startswith("error: maps list: GetToken: could not connect")
    assert all(line.startswith("warning: retrying GetToken") for line in lines[:-1])
    assert "Traceback" not in result.stderr


def test_demo_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTCONNECT_")}
    started = time.monotonic()
    result = smartconnect("demo", env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 20
    out = result.stdout
    assert URL.search(out)
    for text in (
        "Maps (GetMapList)",
        "Import Customers",
        "500 rows",
        "Smith & Sons <Wholesale> ]]> Ltd",
        "30 runs: 29 ok, 1 failed",
        "failed (1)",
        "Required column 'CheckbookId' was not supplied.",
        "SaveProcessErrors",
        "29 of 30 runs succeeded",
        "GetToken 1",
    ):
        assert text in out, text
    assert "\x1b[" not in out  # no colours off a terminal
    assert result.stderr == ""
    assert "Alice+Secret" not in out  # the demo login's password is never shown


def test_emulator_serve_as_a_process(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "latency", "ms": 1}]))
    process = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "smartconnect_async.cli",
            "emulator",
            "serve",
            "--port",
            "0",
            "--faults",
            str(faults),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline()]
        while "smartconnect maps list" not in banner[-1]:
            banner.append(process.stdout.readline())
            assert banner[-1], banner  # the process ended early
        match = URL.search(banner[0])
        assert match, banner
        monkeypatch.setenv("SMARTCONNECT_API_URL", match.group())
        result = CliRunner().invoke(cli, ["maps", "list", "--json"], obj=Hooks(interactive=False))
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)) == 6
    finally:
        process.send_signal(signal.SIGTERM if os.name == "posix" else signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "emulator stopped" in stderr
    text = "".join(banner)
    assert f"export SMARTCONNECT_API_URL={match.group()}" in text
    assert "export SMARTCONNECT_COMPANY_ID=DEMO01" in text


def test_emulator_serve_bad_faults_file_exit_2(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text('[{"kind": "nonsense"}]')
    result = CliRunner().invoke(cli, ["emulator", "serve", "--faults", str(faults)])
    assert result.exit_code == 2
    assert "unknown fault kind" in result.stderr


def test_import_smartconnect_async_needs_no_cli_extra() -> None:
    """The library and FileTokenStore import with click, rich, platformdirs and keyring
    all missing."""
    code = (
        "import sys\n"
        "for name in ('click', 'rich', 'platformdirs', 'keyring'): sys.modules[name] = None\n"
        "import smartconnect_async\n"
        "from smartconnect_async.token_store import FileTokenStore\n"
    )
    subprocess.run([PYTHON, "-c", code], check=True, timeout=30)


def test_missing_cli_extra_is_a_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from smartconnect_async import cli as package

    for name in [m for m in sys.modules if m.startswith("smartconnect_async.cli.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(SystemExit) as raised:
        package.main(["--help"])
    assert raised.value.code == 2
    assert "needs the 'cli' extra (rich is not installed)" in capsys.readouterr().err


def test_version_and_help_through_the_entry_point() -> None:
    result = smartconnect("--version")
    assert result.returncode == 0
    assert "smartconnect, version" in result.stdout


def test_data_piped_into_head_exits_quietly_as_other_tools_do(
    cli_env: Path, login: DemoCredential
) -> None:
    emulator = Emulator(rows={"Items": 50_000})
    with serve(create_app(emulator)) as api_url:
        env = {**os.environ, "SMARTCONNECT_API_URL": api_url}
        shell = (
            f"set -o pipefail; {PYTHON} -m smartconnect_async.cli data 'Import Items' "
            "--format ndjson | head -1"
        )
        done = subprocess.run(
            ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=60
        )
    assert done.returncode == 141  # 128 + SIGPIPE, as `yes | head -1` says
    assert len(done.stdout.splitlines()) == 1
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr
