"""The pytest plugin users get (``smartconnect_async.testing``): its fixtures work when
loaded as a plugin (checked with ``pytester``, as the ``pytest11`` entry point will load
it) and when imported directly, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest

from smartconnect_async import Credentials, RunOutcomeUnknown, SmartConnect
from smartconnect_async.emulator import (
    DEMO_CREDENTIALS,
    Column,
    Company,
    DataSource,
    Emulator,
    MapDef,
    Table,
    User,
)
from smartconnect_async.testing import EmulatorServer, emulator_client

# The fixtures imported directly (pytest registers them under their own names), so this
# module does not depend on the pytest11 entry point being installed.
from smartconnect_async.testing import smartconnect_client as _client  # noqa: F401
from smartconnect_async.testing import smartconnect_credentials as _credentials  # noqa: F401
from smartconnect_async.testing import smartconnect_emulator as _emulator  # noqa: F401
from smartconnect_async.testing import smartconnect_server as _server  # noqa: F401

pytest_plugins = ["pytester"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The fixtures use httpx only (in-process or over TCP): both event loops."""
    return str(request.param)


# ---- the plugin as pytest loads it --------------------------------------------------------

# pytest-asyncio (installed for the tests below) asks for its loop scope to be set.
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"

PLUGIN_CONFTEST = """
import pytest

{plugins}

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

PLUGIN_TESTS = """
import pytest

from smartconnect_async import SmartConnect
from smartconnect_async.emulator import IMPORT_CUSTOMERS_KEY, Emulator

pytestmark = pytest.mark.anyio


async def test_client(smartconnect_client, smartconnect_emulator):
    assert isinstance(smartconnect_client, SmartConnect)
    assert [m.id for m in await smartconnect_client.maps.list()][0] == "Import Customers"
    result = await smartconnect_client.runs.run_data_table(
        "Import Customers", [{"AccountNumber": "P1"}]
    )
    assert result.ok
    (record,) = smartconnect_emulator.runs
    assert record.run_number == result.run_number


async def test_server(smartconnect_server, smartconnect_credentials):
    assert smartconnect_server.api_url.startswith("http://127.0.0.1:")
    async with SmartConnect(smartconnect_server.api_url, smartconnect_credentials) as sc:
        data = await sc.data.get_all(IMPORT_CUSTOMERS_KEY)
    assert data.rows[0]["AccountNumber"] == "CUST001"
    assert smartconnect_server.emulator.counters.token_calls == {"DEMO01": 1}


def test_credentials(smartconnect_credentials):
    assert smartconnect_credentials.company_id == "DEMO01"
    assert smartconnect_credentials.email == "alice@northwind.example"


class TestOverride:
    @pytest.fixture
    def smartconnect_emulator(self):
        return Emulator(rows={"Customers": 3})

    async def test_override_sizes_the_source(self, smartconnect_client):
        rows = (await smartconnect_client.data.get_all("Import Customers")).rows
        assert [r["AccountNumber"] for r in rows] == ["CUST001", "CUST002", "CUST003"]
"""


def _entry_point_registered() -> bool:
    found = entry_points(group="pytest11")
    return any(ep.value == "smartconnect_async.testing" for ep in found)


@pytest.mark.parametrize("loaded_by", ["pytest_plugins", "entry_point"])
def test_the_fixtures_work_as_a_plugin(pytester: pytest.Pytester, loaded_by: str) -> None:
    pytester.makeini(INI)
    args = ["-p", "no:cacheprovider", "-q"]
    if loaded_by == "pytest_plugins":
        # As a user without the entry point would load it (the entry point, if installed,
        # is disabled so that the module is not registered twice).
        pytester.makeconftest(
            PLUGIN_CONFTEST.format(plugins='pytest_plugins = ["smartconnect_async.testing"]')
        )
        args += ["-p", "no:smartconnect_async"]
    else:
        if not _entry_point_registered():
            pytest.skip("the pytest11 entry point of smartconnect_async is not installed")
        pytester.makeconftest(PLUGIN_CONFTEST.format(plugins=""))
    pytester.makepyfile(test_user_code=PLUGIN_TESTS)
    result = pytester.runpytest_inprocess(*args)
    # 2 async tests and the override test on 2 loops each, 1 sync test.
    result.assert_outcomes(passed=7)


ASYNCIO_TESTS = """
import pytest

from smartconnect_async import APITimeoutError, SmartConnect, Timeout
from smartconnect_async.emulator import Emulator
from smartconnect_async.testing import emulator_client

{mark}


async def test_client(smartconnect_client, smartconnect_emulator):
    assert isinstance(smartconnect_client, SmartConnect)
    assert len(await smartconnect_client.maps.list()) == 6
    assert smartconnect_emulator.counters.calls == {{"GetToken": 1, "GetMapList": 1}}


async def test_a_latency_fault_in_process_trips_the_total_timeout(smartconnect_credentials):
    # No socket in process: Timeout.total bounds the call, not read.
    emulator = Emulator(faults=[{{"kind": "latency", "ms": 3000, "endpoints": ["GetMapList"]}}])
    timeout = Timeout(10, total=0.3)
    async with emulator_client(emulator, smartconnect_credentials, timeout=timeout) as sc:
        with pytest.raises(APITimeoutError):
            await sc.maps.list()
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_fixtures_work_under_pytest_asyncio(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(INI)
    mark = "pytestmark = pytest.mark.asyncio" if mode == "strict" else ""
    pytester.makepyfile(test_user_code=ASYNCIO_TESTS.format(mark=mark))
    args = ["-p", "no:cacheprovider", "-q", "-p", "no:anyio"]
    result = pytester.runpytest_inprocess(*args, f"--asyncio-mode={mode}", "-W", "error")
    result.assert_outcomes(passed=2)


# ---- the fixtures imported directly --------------------------------------------------------


@pytest.mark.anyio
async def test_smartconnect_client_is_in_process(
    smartconnect_client: SmartConnect, smartconnect_emulator: Emulator
) -> None:
    maps = await smartconnect_client.maps.list()
    assert len(maps) == 6
    assert smartconnect_client.api_url == "http://emulator.invalid/API"
    assert smartconnect_emulator.counters.calls == {"GetToken": 1, "GetMapList": 1}


def test_smartconnect_credentials_are_the_first_demo_login(
    smartconnect_credentials: Credentials,
) -> None:
    first = DEMO_CREDENTIALS[0]
    assert smartconnect_credentials == Credentials(
        email=first.email, password=first.password, company_id=first.company_id
    )


@pytest.mark.anyio
async def test_smartconnect_server_is_loopback_tcp(
    smartconnect_server: EmulatorServer, smartconnect_credentials: Credentials
) -> None:
    assert smartconnect_server.api_url.startswith("http://127.0.0.1:")
    async with SmartConnect(smartconnect_server.api_url, smartconnect_credentials) as sc:
        assert (await sc.runs.run("Import Customers")).ok
    assert len(smartconnect_server.emulator.runs) == 1


@pytest.mark.anyio
async def test_emulator_client_takes_options_and_sees_faults(
    smartconnect_credentials: Credentials,
) -> None:
    emulator = Emulator(faults=[{"kind": "drop_after", "count": 1, "endpoints": ["runmap"]}])
    async with emulator_client(emulator, smartconnect_credentials, max_retries=0) as sc:
        with pytest.raises(RunOutcomeUnknown):
            await sc.runs.run("Import Customers")
        assert len(emulator.runs) == 1  # processed, then dropped: never re-sent
        assert (await sc.runs.run("Import Customers")).ok
    assert emulator.counters.calls["runmap"] == 2


def _contacts(seed: int, size: int) -> Iterator[tuple[str | None, ...]]:
    """Rows of a data source of the test's own (``(seed, size) -> rows``)."""
    for i in range(size):
        yield (f"C{seed}-{i}", f"Contact {i}" if i % 2 == 0 else None)


@pytest.mark.anyio
async def test_a_tenant_of_your_own() -> None:
    emulator = Emulator()
    emulator.add_company(Company("ACME", "Acme Corp"))
    emulator.add_user(User("ops@acme.example", "Acme+Pass/1=", ("ACME",)))
    contacts = DataSource(
        "Contacts", "ContactsDS", (Table("Contact", ("Id", "Name"), _contacts),), default_size=3
    )
    key = "0b0c3a8e-1d2f-4e5a-9b6c-7d8e9f0a1b2c"
    columns = (Column("Id", True), Column("Name"))
    emulator.add_map(MapDef(key, "ACME", "Import Contacts", "Contacts", contacts, columns))
    acme = Credentials(email="ops@acme.example", password="Acme+Pass/1=", company_id="ACME")
    async with emulator_client(emulator, acme) as sc:
        assert [m.id for m in await sc.maps.list()] == ["Import Contacts"]
        data = await sc.data.get_all("Import Contacts")
        result = await sc.runs.run_data_table("Import Contacts", [{"Id": "N1"}])
    assert data.tables == {
        "Contact": [
            {"Id": "C0-0", "Name": "Contact 0"},
            {"Id": "C0-1", "Name": None},
            {"Id": "C0-2", "Name": "Contact 2"},
        ]
    }
    assert result.ok
    assert emulator.runs[0].company_id == "ACME"


def test_pytest_plugins_and_the_entry_point_together(pytester: pytest.Pytester) -> None:
    if not _entry_point_registered():
        pytest.skip("the pytest11 entry point of smartconnect_async is not installed")
    pytester.makeini(INI)
    pytester.makeconftest(
        PLUGIN_CONFTEST.format(plugins='pytest_plugins = ["smartconnect_async.testing"]')
    )
    pytester.makepyfile(test_user_code=PLUGIN_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=7)
