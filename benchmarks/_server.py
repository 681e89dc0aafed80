"""The emulator in a separate process: started with ``python -m benchmarks._serve`` on
127.0.0.1 (a free port), read back its API Url and credentials, stopped on exit."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import attrs
import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed

from smartconnect_async import Credentials

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@attrs.frozen
class Emulator:
    """A running emulator process: its API Url and logins (DEMO01 first, then the
    benchmark companies)."""

    api_url: str
    credentials: tuple[Credentials, ...]
    pid: int

    @property
    def origin(self) -> str:
        return self.api_url.rsplit("/", 1)[0]

    @property
    def companies(self) -> tuple[Credentials, ...]:
        """The benchmark companies' logins (DEMO01 excluded)."""
        return self.credentials[1:]

    def cpu_seconds(self) -> float:
        """CPU time the emulator process has used so far (user + system)."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def counters(self) -> dict[str, Any]:
        """``GET /_emulator/counters``."""
        answer = httpx.get(f"{self.origin}/_emulator/counters", timeout=30)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def reset_counters(self) -> None:
        """``POST /_emulator/reset``."""
        httpx.post(f"{self.origin}/_emulator/reset", timeout=30).raise_for_status()


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for _ in range(2):
        lines.put(stream.readline())


@contextmanager
def emulator(
    *, latency_ms: int = 0, rows: str | None = None, companies: int = 0
) -> Iterator[Emulator]:
    """Serve the emulator in a child process for the duration of the block.

    ``rows`` is an emulator ``--rows`` value (``"1"``, ``"Customers=100000"``);
    ``companies`` adds that many benchmark companies (one user, one map each).
    """
    command = [sys.executable, "-m", "benchmarks._serve", "--companies", str(companies)]
    if latency_ms:
        command += ["--latency-ms", str(latency_ms)]
    if rows:
        command += ["--rows", rows]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines: queue.Queue[str] = queue.Queue()
            threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
            try:
                api_url = lines.get(timeout=STARTUP_TIMEOUT).strip()
                logins = json.loads(lines.get(timeout=STARTUP_TIMEOUT))
            except (queue.Empty, ValueError):
                log.seek(0)
                raise RuntimeError(f"the emulator did not start:\n{log.read()[-2000:]}") from None
            if not api_url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"unexpected emulator address {api_url!r}")
            yield Emulator(
                api_url=api_url,
                credentials=tuple(Credentials(**login) for login in logins),
                pid=process.pid,
            )
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()  # the server's signal to stop
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
