"""The nightly batch example (examples/nightly_batch.py), run as a program against the
emulator on loopback: its exit status, its summary, and a retry's log line above the
progress bar, not inside it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from smartconnect_async.emulator import POST_CASH_RECEIPTS_KEY, Emulator

BATCH = Path(__file__).resolve().parents[2] / "examples" / "nightly_batch.py"
PCR = "DEMO01:Post Cash Receipts"


@attrs.frozen
class Finished:
    status: int
    stdout: str
    stderr: str


def run_batch(env: dict[str, str], *jobs: str, terminal: bool = False) -> Finished:
    """The example run with ``jobs`` as its arguments and the ``SMARTCONNECT_*``
    variables of ``env``; with ``terminal``, rich draws as on a terminal (no colours)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SMARTCONNECT_", "TTY_"))}
    environ.update(env, COLUMNS="100", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    environ.pop("FORCE_COLOR", None)
    if terminal:
        environ.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")
    done = subprocess.run(
        [sys.executable, str(BATCH), *jobs],
        env=environ,
        capture_output=True,  # bytes: text mode would turn each CR into a LF
        timeout=60,
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    for text in (stdout, stderr):
        assert "Traceback" not in text
        assert env["SMARTCONNECT_PASSWORD"] not in text
    return Finished(done.returncode, stdout, stderr)


_TOKEN = re.compile(r"\x1b\[\??[0-9;]*[A-Za-z]|\r|\n|[^\x1b\r\n]+")


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: text overwrites from the cursor, CR
    goes to the line's start, LF to the next line, ``ESC[2K`` clears the line and
    ``ESC[nA`` goes up n lines (what rich's live display uses); other escapes are
    ignored."""
    lines, row, col = [""], 0, 0
    for token in _TOKEN.findall(output):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                lines[row] = ""
            elif token.endswith("A"):
                row = max(0, row - int(token[2:-1] or 1))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines]


def test_clean_run_exits_0(
    smartconnect_env: dict[str, str], smartconnect_emulator: Emulator
) -> None:
    done = run_batch(smartconnect_env)  # the example's JOBS
    assert done.status == 0, done.stderr
    assert "Nightly runs" in done.stdout
    assert done.stdout.rstrip().endswith("5 runs: 5 ok, 0 not ok")
    assert "✗" not in done.stdout
    counters = smartconnect_emulator.counters
    assert counters.total_runs == 5
    assert counters.token_calls == {"DEMO01": 1, "DEMO02": 1}


def test_failed_run_exits_1(
    smartconnect_env: dict[str, str], smartconnect_emulator: Emulator
) -> None:
    done = run_batch(smartconnect_env, PCR, "DEMO01:No Such Map", "DEMO02:Import Customers")
    assert done.status == 1, done.stderr
    assert "failed (status 1)" in done.stdout
    assert re.search(
        r"✗ DEMO01 Post Cash Receipts: run \d+: 4 of 25 documents failed: Required column"
        r" 'CheckbookId' was not supplied\. \(request id [0-9a-f-]{36}\)",
        done.stdout,
    )
    assert "✗ DEMO01 No Such Map: no map named 'No Such Map' in company DEMO01" in done.stdout
    assert done.stdout.rstrip().endswith("3 runs: 1 ok, 2 not ok")


def test_unknown_outcome_exits_3_over_failed(
    smartconnect_env: dict[str, str], smartconnect_emulator: Emulator
) -> None:
    smartconnect_emulator.set_faults([{"kind": "drop_after", "count": 1, "endpoints": ["runmap"]}])
    done = run_batch(smartconnect_env, PCR, PCR)  # one dropped after it ran, one failed
    assert done.status == 3, done.stderr
    assert "outcome unknown" in done.stdout
    assert "failed (status 1)" in done.stdout
    assert "check the run history before running it again" in done.stdout
    # Both ran once: the dropped one was not sent again.
    assert smartconnect_emulator.counters.runs_by_map == {POST_CASH_RECEIPTS_KEY: 2}


def test_missing_setting_exits_2(smartconnect_env: dict[str, str]) -> None:
    done = run_batch({**smartconnect_env, "SMARTCONNECT_COMPANY_ID": ""})
    assert done.status == 2
    assert "SMARTCONNECT_COMPANY_ID" in done.stderr


def test_retry_warning_is_a_line_of_its_own(
    smartconnect_env: dict[str, str], smartconnect_emulator: Emulator
) -> None:
    smartconnect_emulator.set_faults(
        [{"kind": "status", "status": 503, "count": 1, "endpoints": ["runmap"]}]
    )
    jobs = ("DEMO01:Import Customers", "DEMO01:Import Items", "DEMO02:Export Items")
    done = run_batch(smartconnect_env, *jobs, terminal=True)
    assert done.status == 0, done.stderr
    assert smartconnect_emulator.counters.total_runs == 3
    assert "\x1b[2K" in done.stderr  # drawn as on a terminal: the bar was redrawn in place
    lines = screen(done.stderr)
    [warning] = [line for line in lines if "WARNING" in line]
    assert re.search(r"WARNING +retrying runmap", warning)
    assert "━" not in warning
    assert "Nightly runs" not in warning
    bars = [line for line in lines if "Nightly runs" in line]
    assert len(bars) == 1  # the bar, once, finished, below the warning
    assert "3/3" in bars[0]
    assert lines.index(bars[0]) > lines.index(warning)
    assert screen(done.stdout)[-2] == "3 runs: 3 ok, 0 not ok"


@pytest.mark.parametrize("jobs", [("Import Customers",), ("DEMO01:",)])
def test_bad_job_exits_2(jobs: tuple[str, ...], smartconnect_env: dict[str, str]) -> None:
    done = run_batch(smartconnect_env, *jobs)
    assert done.status == 2
    assert "is not COMPANY:MAP" in done.stderr
