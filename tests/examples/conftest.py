"""Fixtures for the examples' tests: the emulator served on loopback (the pytest plugin's
``smartconnect_server``, sized by an ``emulator`` marker) and the ``SMARTCONNECT_*``
variables pointing at it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from smartconnect_async.emulator import DEMO_CREDENTIALS, Emulator
from smartconnect_async.testing import EmulatorServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))  # the examples are imported as their READMEs run them


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "emulator(**kwargs): options of the test's Emulator")


@pytest.fixture
def anyio_backend() -> str:
    """The examples run on asyncio (FastAPI's loop under uvicorn, ``anyio.run``)."""
    return "asyncio"


@pytest.fixture
def smartconnect_emulator(request: pytest.FixtureRequest) -> Emulator:
    """A fresh emulator, with the options of the test's ``emulator`` marker."""
    marker = request.node.get_closest_marker("emulator")
    return Emulator(**(marker.kwargs if marker is not None else {}))


@pytest.fixture
def smartconnect_env(
    smartconnect_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The ``SMARTCONNECT_*`` variables for alice (DEMO01, DEMO02) on the loopback
    emulator, set in this process's environment; returned too."""
    alice = DEMO_CREDENTIALS[0]
    env = {
        "SMARTCONNECT_API_URL": smartconnect_server.api_url,
        "SMARTCONNECT_EMAIL": alice.email,
        "SMARTCONNECT_PASSWORD": alice.password,
        "SMARTCONNECT_COMPANY_ID": alice.company_id,
        "SMARTCONNECT_TIMEOUT": "10",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
