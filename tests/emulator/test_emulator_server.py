"""serve() and the command line: loopback only, a URL to read, a clean stop."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    IMPORT_CUSTOMERS_KEY,
    Emulator,
    create_app,
    serve,
)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.com", "::"])  # noqa: S104
def test_serve_binds_loopback_only(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"), serve(create_app(), host=host):
        pass


def test_serve_yields_the_api_url_and_stops(emulator: Emulator) -> None:
    with serve(create_app(emulator)) as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/API")
        response = httpx.post(f"{url}/validate", params={"token": "x"})
        assert response.json() is False
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/validate", params={"token": "x"})


def test_idle_connections_are_closed_after_the_keep_alive_timeout(emulator: Emulator) -> None:
    with serve(create_app(emulator), timeout_keep_alive=1) as url:
        port = httpx.URL(url).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            request = b"POST /API/validate?token=x HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\n\r\n"
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"false"):
                chunk = sock.recv(65536)
                assert chunk
                answer += chunk
            started = time.monotonic()
            assert sock.recv(1) == b""  # the server closes the idle keep-alive connection
            assert 0.5 < time.monotonic() - started < 3


@pytest.mark.parametrize(
    "path", ["/API/RunMapWithVariables?token={token}&mapKey={key}", "/_emulator/faults"]
)
def test_a_client_gone_mid_body_is_one_log_line(
    emulator: Emulator, token: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    target = path.format(token=token, key=IMPORT_CUSTOMERS_KEY)
    with serve(create_app(emulator)) as url:
        port = httpx.URL(url).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                f"POST {target} HTTP/1.1\r\nHost: e\r\nContent-Type: application/json\r\n"
                'Content-Length: 100\r\n\r\n[{"Key": '.encode()
            )
            time.sleep(0.2)  # the app is waiting for the rest of the body
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # anything else it would log
    assert [(r.name, r.levelno, r.exc_info) for r in caplog.records] == [
        ("smartconnect_async.emulator", logging.INFO, None)
    ]
    assert caplog.records[0].getMessage() == (
        f"client disconnected before the request body was complete: POST {target.split('?')[0]}"
    )
    assert emulator.runs == ()


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_command_line_prints_url_and_credentials_and_serves(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"GetMapList": [{"kind": "status", "status": 503, "count": 1}]}))
    command = [
        sys.executable,
        "-m",
        "smartconnect_async.emulator",
        "--port",
        "0",
        "--rows",
        "Customers=3",
        "--rate-limit",
        "100/60",
        "--latency-ms",
        "1",
        "--faults",
        str(faults),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        lines = [process.stdout.readline().strip() for _ in DEMO_CREDENTIALS]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/API")
        first = dict(part.split("=", 1) for part in lines[0].split(" "))
        assert first == {
            "email": DEMO_CREDENTIALS[0].email,
            "password": DEMO_CREDENTIALS[0].password,
            "companyId": DEMO_CREDENTIALS[0].company_id,
        }
        with httpx.Client(base_url=url) as client:
            token = client.post("/GetToken", params=first).json()
            assert client.post("/GetMapList", params={"token": token}).status_code == 503
            answer = client.post("/GetMapList", params={"token": token})
            assert answer.status_code == 200
            assert answer.headers["x-rate-limit-remaining"] == "97"
            maps = answer.json()
            data = client.post("/GetAllData", params={"token": token, "mapKey": maps[0]["MapKey"]})
            assert data.text.count("&lt;Table01&gt;") == 3
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "Customers=lots"], "row count 'Customers=lots': expected N or SOURCE=N"),
        (["--rows", "Nope=3"], "unknown data source 'Nope'"),
        (["--faults", "/nonexistent/faults.json"], "No such file or directory"),
    ],
)
def test_command_line_rejects_bad_options_in_one_line(args: list[str], message: str) -> None:
    command = [sys.executable, "-m", "smartconnect_async.emulator", "--port", "0", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
