"""``smartconnect run --journal FILE`` resumes a batch, and ``smartconnect journal list /
resolve`` settle the runs whose outcome is unknown."""

from __future__ import annotations

import json
from pathlib import Path

from smartconnect_async.emulator import Emulator


def test_run_with_a_journal_resumes_and_refuses_unknown_runs(
    run_cli, emulator: Emulator, tmp_path: Path, assert_no_secrets
) -> None:
    journal = str(tmp_path / "batch.journal")
    first = run_cli("run", "Import Customers", "Import Items", "--journal", journal, "--json")
    assert first.exit_code == 0, first.output
    numbers = [run["run_number"] for run in json.loads(first.stdout)["runs"]]
    assert emulator.counters.total_runs == 2

    again = run_cli("run", "Import Customers", "Import Items", "--journal", journal, "--json")
    assert again.exit_code == 0, again.output
    assert [run["run_number"] for run in json.loads(again.stdout)["runs"]] == numbers
    assert emulator.counters.total_runs == 2  # done: not sent again

    emulator.set_faults([{"kind": "drop_after", "endpoints": ["runmap"], "count": 1}])
    lost = run_cli("run", "Import Vendors", "--journal", journal)
    assert lost.exit_code == 1
    assert "outcome unknown — not re-sent" in lost.stdout
    refused = run_cli("run", "Import Vendors", "--journal", journal)
    assert refused.exit_code == 1
    assert "needs resolution — not sent" in refused.stdout
    assert "smartconnect journal resolve FILE KEY --ran|--not-run" in refused.stdout
    assert "1 run: 0 ok, 1 outcome unknown (not re-sent)" in refused.stdout
    assert emulator.counters.total_runs == 3

    listed = run_cli("journal", "list", journal, "--unresolved", "--json")
    assert listed.exit_code == 0, listed.output
    [record] = json.loads(listed.stdout)
    assert (record["state"], record["map"], record["company_id"]) == (
        "unknown",
        "Import Vendors",
        "DEMO01",
    )
    table = run_cli("journal", "list", journal)
    assert "3 run(s), 1 needing resolution" in table.stdout
    assert record["key"] in table.stdout

    resolved = run_cli("journal", "resolve", journal, record["key"], "--ran", "--run-number", "3")
    assert resolved.exit_code == 0, resolved.output
    assert f"{record['key']}: done (ran)" in resolved.stdout
    done = run_cli("run", "Import Vendors", "--journal", journal, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["runs"][0]["run_number"] == 3
    assert emulator.counters.total_runs == 3
    assert_no_secrets(done)


def test_resolve_not_run_lets_the_next_run_send_it(
    run_cli, emulator: Emulator, tmp_path: Path
) -> None:
    journal = str(tmp_path / "batch.journal")
    emulator.set_faults([{"kind": "status", "status": 500, "endpoints": ["runmap"], "count": 1}])
    assert run_cli("run", "Import Items", "--journal", journal).exit_code == 1
    [record] = json.loads(run_cli("journal", "list", journal, "--json").stdout)
    assert run_cli("journal", "resolve", journal, record["key"], "--not-run").exit_code == 0
    assert run_cli("run", "Import Items", "--journal", journal).exit_code == 0
    assert emulator.counters.total_runs == 1


def test_journal_resolve_errors(run_cli, tmp_path: Path) -> None:
    journal = str(tmp_path / "batch.journal")
    assert run_cli("run", "Import Items", "--journal", journal).exit_code == 0
    [record] = json.loads(run_cli("journal", "list", journal, "--json").stdout)

    neither = run_cli("journal", "resolve", journal, record["key"])
    assert neither.exit_code == 2
    assert "say --ran or --not-run" in neither.stderr
    done = run_cli("journal", "resolve", journal, record["key"], "--not-run")
    assert done.exit_code == 1
    assert "is done: it needs no resolution" in done.stderr
    missing = run_cli("journal", "resolve", journal, "no-such-key", "--ran")
    assert missing.exit_code == 1
    assert "the journal holds no run 'no-such-key'" in missing.stderr
    absent = run_cli("journal", "list", str(tmp_path / "absent"))
    assert absent.exit_code == 2
