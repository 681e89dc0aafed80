"""Data-set parsing: ``iter_rows`` / ``get_all`` / a naive double parse against raw
expat over the same inner bytes, each run in a fresh subprocess (peak RSS growth is
per process), at several answer sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY

from ._plan import Plan
from ._server import REPO, Emulator, emulator
from ._stats import Checks, log, rotated, rounds

ITER_ROWS = "iter_rows"
GET_ALL = "get_all"
NAIVE = "naive double parse"
RAW_EXPAT = "raw expat"
MODES = {ITER_ROWS: "iter_rows", GET_ALL: "get_all", NAIVE: "naive", RAW_EXPAT: "raw_expat"}
STREAMING = (ITER_ROWS, RAW_EXPAT)


@attrs.frozen
class ParseSample:
    contender: str
    rows_asked: int
    round: int
    rows: int
    cpu: float
    """Client CPU seconds (the parsing process only; the emulator's work is not in it)."""
    wall: float
    rss_growth: int
    """Peak RSS growth over the process's RSS just before the work, in bytes."""
    system: float = float("nan")
    """The kernel's part of ``cpu`` (page faults, socket reads), in seconds."""
    page_faults: int = -1
    """Minor page faults during the work (memory the process touched for the first time)."""

    @property
    def rows_per_cpu_second(self) -> float:
        return self.rows / self.cpu if self.cpu else float("nan")


def _worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks._parse_worker", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec['mode']} worker failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _size(
    server: Emulator, size: int, plan: Plan, checks: Checks, workdir: Path
) -> list[ParseSample]:
    login = server.credentials[0]
    base: dict[str, Any] = {
        "url": server.api_url,
        "email": login.email,
        "password": login.password,
        "company_id": login.company_id,
        "map_key": IMPORT_CUSTOMERS_KEY,
        "inner": str(workdir / f"inner-{size}.xml"),
        "timeout": plan.worker_timeout,
    }
    _worker({**base, "mode": "prepare"}, plan.worker_timeout)
    names = list(MODES) if size <= plan.parse_all_contenders_up_to else list(STREAMING)
    if size > plan.parse_naive_up_to and NAIVE in names:
        names.remove(NAIVE)
    samples = []
    for turn in rounds(plan.parse_rounds, plan.budget, f"parse {size:,} rows"):
        for name in rotated(names, turn):
            result = _worker({**base, "mode": MODES[name]}, plan.worker_timeout)
            checks.equal(f"parse {name} {size:,} rows: rows", result["rows"], size)
            samples.append(
                ParseSample(
                    contender=name,
                    rows_asked=size,
                    round=turn,
                    rows=result["rows"],
                    cpu=result["cpu"],
                    wall=result["wall"],
                    rss_growth=result["rss_growth"],
                    system=result["system"],
                    page_faults=result["page_faults"],
                )
            )
    Path(base["inner"]).unlink(missing_ok=True)
    log(f"  parse {size:,} rows: done")
    return samples


def run_parse(plan: Plan, checks: Checks) -> list[ParseSample]:
    """Every size, each with its own emulator (the Customers source sized to it)."""
    samples: list[ParseSample] = []
    with tempfile.TemporaryDirectory(prefix="smartconnect-bench-") as workdir:
        for size in plan.parse_sizes:
            with emulator(rows=f"Customers={size}") as server:
                samples += _size(server, size, plan, checks, Path(workdir))
    return samples
