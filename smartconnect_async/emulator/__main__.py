"""``python -m smartconnect_async.emulator``: serve the emulator in the foreground.

Prints the API Url on the first line, then one line per demo credential, and flushes
so a parent process can read them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._app import create_app
from ._catalog import DEMO_CREDENTIALS
from ._faults import parse_faults
from ._server import api_url, bind_loopback, make_server
from ._state import Emulator, parse_row_sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m smartconnect_async.emulator",
        description="Serve a SmartConnect REST API emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, GUIDs and faults")
    parser.add_argument("--faults", type=Path, help="fault rules, a JSON file")
    parser.add_argument(
        "--rows",
        action="append",
        default=[],
        metavar="N | SOURCE=N",
        help="data source sizes: N for all, or e.g. Customers=1000000 (repeatable)",
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="latency added to every call")
    parser.add_argument("--rate-limit", metavar="N/SECONDS", help="e.g. 100/60")
    parser.add_argument(
        "--ambiguous-maps", action="store_true", help='add a second "Import Customers" map'
    )
    parser.add_argument(
        "--opaque-tokens",
        action="store_true",
        help="issue random base64 tokens instead of the reference format",
    )
    return parser.parse_args(argv)


def _emulator(args: argparse.Namespace) -> Emulator:
    rules: list[Any] = []
    if args.faults is not None:
        rules.extend(parse_faults(json.loads(args.faults.read_text(encoding="utf-8"))))
    if args.latency_ms:
        rules.extend(parse_faults([{"kind": "latency", "ms": args.latency_ms}]))
    return Emulator(
        seed=args.seed,
        rows=parse_row_sizes(args.rows),
        rate_limit=args.rate_limit,
        faults=rules,
        ambiguous_map_ids=args.ambiguous_maps,
        opaque_tokens=args.opaque_tokens,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator until interrupted."""
    args = parse_args(argv)
    try:
        emulator = _emulator(args)
        sock = bind_loopback(args.host, args.port)
    except (ValueError, OSError) as exc:  # a bad option, fault file or port: one line
        print(f"python -m smartconnect_async.emulator: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(api_url(sock))
    for credential in DEMO_CREDENTIALS:
        print(
            f"email={credential.email} password={credential.password} "
            f"companyId={credential.company_id}"
        )
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl+C after shutting down
        make_server(create_app(emulator)).run(sockets=[sock])


if __name__ == "__main__":
    main()
