"""Client CPU per call (library per backend vs raw httpx / aiohttp at several
concurrencies) and latency-bound efficiency (the emulator adding 50 ms per call)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import attrs

from . import _contenders
from ._contenders import (
    CONTENDERS,
    OPERATIONS,
    RAW_AIOHTTP_RUNS_CAPPED,
    RUNS_CAP,
    Contender,
    LibraryContender,
    Operation,
)
from ._load import Batch, drive
from ._plan import Plan
from ._server import Emulator, emulator
from ._stats import Checks, log, rotated, rounds

HTTPX_CALL_SHARE = 3
"""httpx-based contenders make a third of the calls at concurrency > 1: they cost 5–20×
more CPU per call there, and the full run has to stay within its time budget."""

CAPPED = frozenset(c for c in CONTENDERS if c.startswith("library"))
"""The contenders whose runs are held to ``RUNS_CAP`` in flight (one company, the default
cap). Under latency they make ``RUNS_CAP / c`` of the calls: as many turns of the latency
as the others, in the same wall time."""


def batch_calls(name: str, operation: Operation, calls: int, concurrency: int, latency: int) -> int:
    """How many calls contender ``name`` makes in a batch of ``calls`` at ``concurrency``."""
    if concurrency > 1 and "httpx" in name:
        calls = max(calls // HTTPX_CALL_SHARE, concurrency)
    if latency and operation == "runs.run" and name in CAPPED and concurrency > RUNS_CAP:
        calls = max(calls * RUNS_CAP // concurrency, RUNS_CAP)
    return calls


LIBRARY_RUNS_UNCAPPED = "library (default, max_concurrent_runs=c)"
"""The default client with its per-company run cap raised to the concurrency: the cap
(4 by default) is what bounds latency-bound runs, not the client's CPU."""

LIBRARY_RUNS_SPREAD = f"library (default, c/{RUNS_CAP} companies)"
"""The default client, its runs spread over c/4 companies (each within the default cap
of 4 runs in flight): a batch job running maps for many companies."""


@attrs.frozen
class CallSample:
    """One measurement: ``calls`` calls of ``operation`` by ``contender``."""

    benchmark: str
    operation: str
    concurrency: int
    contender: str
    round: int
    calls: int
    errors: int
    cpu: float
    wall: float
    latency_ms: int = 0
    server_cpu: float = 0.0
    """CPU seconds the emulator process used during the measurement."""

    @property
    def server_cpu_per_call(self) -> float:
        return self.server_cpu / self.calls if self.calls else float("nan")

    @property
    def cpu_per_call(self) -> float:
        return self.cpu / self.calls if self.calls else float("nan")

    @property
    def efficiency(self) -> float:
        """(calls × latency ÷ concurrency) ÷ wall: 1.0 is perfectly latency-bound."""
        ideal = self.calls * self.latency_ms / 1000 / self.concurrency
        return ideal / self.wall if self.wall else float("nan")


class _Counted:
    """A contender and the calls it made (warm-up included), to check the server's
    counters against.

    An error in a warm-up is tolerated (logged): the raw clients keep idle connections
    longer than the emulator does (aiohttp 15 s, uvicorn 5 s), and a request written
    onto a connection the server is closing fails without reaching it. An error in a
    measured batch is a failed check.
    """

    def __init__(self, contender: Contender) -> None:
        self.contender = contender
        self.calls = 0
        self.errors = 0
        self.warm_errors = 0
        self.first_error = ""


async def _measure(
    counted: _Counted, server: Emulator, calls: int, concurrency: int, plan: Plan
) -> tuple[Batch, float]:
    """Warm up (open the pool's connections; not measured), then measure one batch;
    returns it with the emulator's CPU seconds during it."""
    contender = counted.contender
    warm_calls = min(max(concurrency, 4), calls)
    warm = await drive(contender.call, warm_calls, concurrency, plan.batch_time_limit)
    server_cpu = server.cpu_seconds()
    batch = await drive(contender.call, calls, concurrency, plan.batch_time_limit)
    server_cpu = server.cpu_seconds() - server_cpu
    counted.calls += warm.calls + batch.calls
    counted.warm_errors += warm.errors
    counted.errors += batch.errors
    for b in (warm, batch):
        counted.first_error = counted.first_error or b.first_error
    return batch, server_cpu


async def _operation(
    server: Emulator,
    operation: Operation,
    names: Sequence[str],
    points: Sequence[tuple[int, int]],
    plan: Plan,
    benchmark: str,
    latency_ms: int,
    repeats: int,
) -> tuple[list[CallSample], list[_Counted]]:
    """Every contender at every (concurrency, calls) point, rounds interleaved."""
    credentials = server.credentials[0]
    highest = max(c for c, _ in points)
    counted = []
    for name in names:
        contender: Contender
        if name == LIBRARY_RUNS_SPREAD:
            spread = server.companies[: max(highest // RUNS_CAP, 1)]
            contender = LibraryContender(
                name, server.api_url, credentials, operation, spread=spread
            )
        else:
            options: dict[str, Any] = {}
            if name == LIBRARY_RUNS_UNCAPPED:
                options["max_concurrent_runs"] = highest
            contender = _contenders.make(name, server.api_url, credentials, operation, options)
        counted.append(_Counted(contender))
    samples = await measure_rounds(
        server, counted, operation, points, plan, benchmark, latency_ms, repeats
    )
    return samples, counted


async def measure_rounds(
    server: Emulator,
    counted: Sequence[_Counted],
    operation: Operation,
    points: Sequence[tuple[int, int]],
    plan: Plan,
    benchmark: str,
    latency_ms: int,
    repeats: int,
) -> list[CallSample]:
    """Start the contenders, measure each at every (concurrency, calls) point, rounds
    interleaved, and close them."""
    for c in counted:
        await c.contender.start()
    samples: list[CallSample] = []
    try:
        for concurrency, calls in points:
            what = f"{benchmark} {operation} c={concurrency}"
            for turn in rounds(repeats, plan.budget / len(points), what):
                for c in rotated(counted, turn):
                    n = batch_calls(c.contender.name, operation, calls, concurrency, latency_ms)
                    batch, server_cpu = await _measure(c, server, n, concurrency, plan)
                    samples.append(
                        CallSample(
                            benchmark,
                            operation,
                            concurrency,
                            c.contender.name,
                            turn,
                            batch.calls,
                            batch.errors,
                            batch.cpu,
                            batch.wall,
                            latency_ms,
                            server_cpu,
                        )
                    )
            log(f"  {what}: done")
    finally:
        for c in counted:
            await c.contender.close()
    return samples


def _check_counters(
    checks: Checks,
    server: Emulator,
    operation: Operation,
    counted: Sequence[_Counted],
    what: str,
) -> None:
    counters = server.counters()
    made = sum(c.calls for c in counted)
    unsure = sum(c.warm_errors for c in counted)  # may or may not have reached it
    endpoint = _contenders.wire_endpoint(operation)
    for c in counted:
        checks.equal(f"{what}: {c.contender.name} calls without errors", c.errors, 0)
        if c.errors or c.warm_errors:
            log(f"    {c.contender.name}: {c.warm_errors} warm-up error(s); {c.first_error}")

    def expect_made(name: str, counted_by_server: int) -> None:
        checks.expect(
            name,
            made - unsure <= counted_by_server <= made,
            f"the server counted {counted_by_server}, the client made {made} "
            f"({unsure} of them failed in a warm-up)",
        )

    expect_made(
        f"{what}: {endpoint} calls counted by the server", counters["calls"].get(endpoint, 0)
    )
    checks.equal(
        f"{what}: one GetToken per client and company",
        counters["calls"].get("GetToken", 0),
        sum(c.contender.tokens for c in counted),
    )
    if operation == "runs.run":
        expect_made(f"{what}: runs executed == run calls made", counters["total_runs"])


def run_cpu(plan: Plan, checks: Checks) -> list[CallSample]:
    """Client CPU per call at every concurrency, both operations, every contender."""
    samples: list[CallSample] = []
    points = [(c, plan.calls_c1 if c == 1 else plan.calls) for c in plan.concurrencies]
    with emulator(rows="1") as server:
        for operation in OPERATIONS:
            names = list(CONTENDERS)
            if operation == "runs.run":
                names.append(RAW_AIOHTTP_RUNS_CAPPED)
            server.reset_counters()
            found, counted = asyncio.run(
                _operation(server, operation, names, points, plan, "cpu", 0, plan.rounds)
            )
            samples += found
            _check_counters(checks, server, operation, counted, f"cpu {operation}")
    return samples


def run_efficiency(plan: Plan, checks: Checks) -> list[CallSample]:
    """Latency-bound efficiency at one concurrency, the emulator adding latency."""
    samples: list[CallSample] = []
    points = [(plan.efficiency_concurrency, plan.efficiency_calls)]
    companies = max(plan.efficiency_concurrency // RUNS_CAP, 1)
    with emulator(rows="1", latency_ms=plan.latency_ms, companies=companies) as server:
        for operation in OPERATIONS:
            names = list(CONTENDERS)
            if operation == "runs.run":
                names += [LIBRARY_RUNS_UNCAPPED, LIBRARY_RUNS_SPREAD]
            server.reset_counters()
            found, counted = asyncio.run(
                _operation(
                    server,
                    operation,
                    names,
                    points,
                    plan,
                    "efficiency",
                    plan.latency_ms,
                    plan.efficiency_rounds,
                )
            )
            samples += found
            _check_counters(checks, server, operation, counted, f"efficiency {operation}")
    return samples
