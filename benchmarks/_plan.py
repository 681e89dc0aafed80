"""How much each benchmark measures: the full run, and the ``--quick`` smoke run (tiny
counts; it checks that everything completes and that the counters are right)."""

from __future__ import annotations

import attrs


@attrs.frozen
class Plan:
    quick: bool
    rounds: int
    """Repeats of every measurement, contenders interleaved round robin."""
    concurrencies: tuple[int, ...]
    calls: int
    """Calls per CPU measurement at concurrency > 1."""
    calls_c1: int
    """Calls per CPU measurement at concurrency 1 (latency-bound, so fewer)."""
    batch_time_limit: float
    """Seconds after which one measurement stops, whatever its count."""
    latency_ms: int
    efficiency_concurrency: int
    efficiency_calls: int
    """Calls per efficiency measurement: 5,000 as in the issue's own measurements, about
    78 turns of the latency for each of 64 workers, so that the start (every worker's
    first request reaching the server at once) weighs little, as in a long batch job."""
    efficiency_rounds: int
    storm_companies: int
    storm_calls: int
    parse_sizes: tuple[int, ...]
    parse_all_contenders_up_to: int
    """Sizes above this measure only the streaming contenders (iter_rows, raw expat):
    the whole-answer ones would hold gigabytes."""
    parse_naive_up_to: int
    """Sizes above this leave out the naive double parse (the slowest contender)."""
    parse_rounds: int
    worker_timeout: float
    """Seconds a parse subprocess may take."""
    budget: float
    """Seconds each benchmark may spend before it stops adding rounds."""


FULL = Plan(
    quick=False,
    rounds=8,
    concurrencies=(1, 16, 64, 256),
    calls=1000,
    calls_c1=300,
    batch_time_limit=60.0,
    latency_ms=50,
    efficiency_concurrency=64,
    efficiency_calls=5000,
    efficiency_rounds=3,
    storm_companies=10,
    storm_calls=1000,
    parse_sizes=(100_000, 200_000, 1_000_000),
    parse_all_contenders_up_to=200_000,
    parse_naive_up_to=100_000,
    parse_rounds=5,
    worker_timeout=600.0,
    budget=330.0,
)

QUICK = Plan(
    quick=True,
    rounds=1,
    concurrencies=(1, 16, 64, 256),
    calls=100,
    calls_c1=10,
    batch_time_limit=10.0,
    latency_ms=20,
    efficiency_concurrency=64,
    efficiency_calls=64,
    efficiency_rounds=1,
    storm_companies=10,
    storm_calls=100,
    parse_sizes=(2_000,),
    parse_all_contenders_up_to=2_000,
    parse_naive_up_to=2_000,
    parse_rounds=1,
    worker_timeout=60.0,
    budget=30.0,
)
