"""``python -m benchmarks._serve``: the emulator, served by uvicorn on 127.0.0.1, for the
benchmarks to run against from another process.

It adds benchmark companies (one user and one map each) to the seeded tenant, prints the
API Url on its first line and the credentials as one JSON line on the second, and serves
until its standard input is closed (or it is terminated).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    IMPORT_CUSTOMERS_KEY,
    Column,
    Company,
    Emulator,
    MapDef,
    User,
    create_app,
    parse_faults,
    parse_row_sizes,
    serve,
)

BENCH_PASSWORD = "Bench+Pass/2024="  # noqa: S105 - a benchmark tenant's made-up password


def bench_company(index: int) -> tuple[str, str]:
    """The company id and user e-mail of benchmark company ``index`` (0-based)."""
    return f"BENCH{index + 1:02d}", f"user{index + 1:02d}@bench.example"


def bench_map_key(company_id: str) -> str:
    """The MapKey of a benchmark company's "Import Customers" map."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-map-{company_id}"))


def add_companies(emulator: Emulator, count: int) -> list[dict[str, str]]:
    """Add ``count`` companies, each with one user and an "Import Customers" map."""
    template = emulator.maps[IMPORT_CUSTOMERS_KEY]
    credentials = []
    for index in range(count):
        company_id, email = bench_company(index)
        emulator.add_company(Company(company_id, f"Benchmark {index + 1}"))
        emulator.add_user(User(email, BENCH_PASSWORD, (company_id,)))
        emulator.add_map(
            MapDef(
                key=bench_map_key(company_id),
                company_id=company_id,
                map_id="Import Customers",
                description=f"Customers of {company_id}",
                source=template.source,
                mapped=(Column("AccountNumber", True), Column("AccountName")),
                required=("AccountNumber",),
            )
        )
        credentials.append({"email": email, "password": BENCH_PASSWORD, "company_id": company_id})
    return credentials


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._serve")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--rows", action="append", default=[])
    parser.add_argument("--companies", type=int, default=0)
    args = parser.parse_args(argv)
    faults = parse_faults([{"kind": "latency", "ms": args.latency_ms}]) if args.latency_ms else []
    emulator = Emulator(rows=parse_row_sizes(args.rows), faults=faults)
    credentials = [
        {"email": c.email, "password": c.password, "company_id": c.company_id}
        for c in DEMO_CREDENTIALS
        if c.company_id == "DEMO01"
    ]
    credentials += add_companies(emulator, args.companies)
    with serve(create_app(emulator), host="127.0.0.1", port=0) as api_url:
        print(api_url)
        print(json.dumps(credentials))
        sys.stdout.flush()
        sys.stdin.read()  # until the parent closes our standard input


if __name__ == "__main__":
    main()
