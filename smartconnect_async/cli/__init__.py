"""The ``smartconnect`` command line (needs the ``cli`` extra: click, rich, platformdirs).

``main()`` is the console script. Importing ``smartconnect_async`` never imports this
package, so the library does not need the extra.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_CLI_REQUIREMENTS = frozenset({"click", "rich", "platformdirs", "tomli"})


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``smartconnect`` with ``argv`` (default: the process's arguments) and exit."""
    try:
        from ._commands import cli
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _CLI_REQUIREMENTS:
            raise
        print(
            f"smartconnect: the command line needs the 'cli' extra ({missing} is not "
            "installed): pip install 'smartconnect-async[cli]'",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")  # never die on a character the terminal lacks
    cli.main(args=list(argv) if argv is not None else None, prog_name="smartconnect")
