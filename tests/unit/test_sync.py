"""sync.py without a server: every async method has a blocking twin with its signature,
settings are checked before a thread starts, errors come out as themselves."""

from __future__ import annotations

import inspect
import sys
import threading
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from unit_support import API_URL, CREDS, MAP_LIST_JSON, mock_api

from smartconnect_async import ClientClosedError, SmartConnect, SmartConnectSync, UnknownMapError
from smartconnect_async.sync import ClientOptions, _Twin

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


@pytest.fixture
def sc() -> Iterator[SmartConnectSync]:
    with SmartConnectSync(API_URL, CREDS, backend="httpx") as client:
        yield client


def _public(thing: object) -> set[str]:
    return {name for name in dir(thing) if not name.startswith("_")}


def test_every_async_group_and_method_has_a_blocking_twin(sc: SmartConnectSync) -> None:
    groups = typing.get_type_hints(SmartConnect)
    twins = typing.get_type_hints(SmartConnectSync)
    assert set(groups) == set(twins) == {"auth", "maps", "data", "runs", "errors"}
    for group, async_cls in groups.items():
        sync_cls = twins[group]
        assert _public(sync_cls) == _public(async_cls), group
        for name in _public(async_cls):
            twin = vars(sync_cls)[name]
            assert isinstance(twin, _Twin)
            assert twin._method is getattr(async_cls, name)
            blocking = getattr(getattr(sc, group), name)
            made = getattr(getattr(sc._client, group), name)
            assert inspect.signature(blocking) == inspect.signature(made)
            assert blocking.__doc__ == made.__doc__
    assert _public(sc) == _public(sc._client) - {"aclose"} | {"close"}


def test_the_constructor_takes_the_async_clients_arguments() -> None:
    """Its own: where the event loop runs; the rest, typed by ``ClientOptions``, go to
    ``SmartConnect`` as they are."""
    made = inspect.signature(SmartConnect).parameters
    hints = typing.get_type_hints(SmartConnect.__init__)
    options = typing.get_type_hints(ClientOptions)
    assert list(options) == [n for n, p in made.items() if p.kind is p.KEYWORD_ONLY]
    assert options == {name: hints[name] for name in options}
    for constructor in (SmartConnectSync, SmartConnectSync.from_env):
        own = inspect.signature(constructor).parameters
        assert own["anyio_backend"].default == "asyncio"
        assert own["anyio_backend_options"].default is None
        assert own["options"].kind is inspect.Parameter.VAR_KEYWORD


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"api_url": "ftp://sc.example.com/API"}, ValueError),
        ({"credentials": "me"}, TypeError),
        ({"max_connections": 0}, ValueError),
        ({"anyio_backend": "curio"}, ValueError),
    ],
)
def test_settings_are_checked_before_a_thread_starts(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {"api_url": API_URL, "credentials": CREDS, **kwargs}
    before = threading.active_count()
    with pytest.raises(error) as caught:
        SmartConnectSync(**arguments)
    assert threading.active_count() == before
    (refused,) = [  # the facade's own frame, as error trackers show it
        entry.frame.f_locals["self"]
        for entry in caught.traceback
        if entry.path.name == "sync.py" and entry.name == "__init__"
    ]
    assert repr(refused) == "SmartConnectSync(<not made>)"


def test_a_call_goes_through_the_portal(sc: SmartConnectSync) -> None:
    with mock_api() as api:
        api.post("/GetMapList").respond(200, content=MAP_LIST_JSON)
        maps = sc.maps.list()
    assert [m.id for m in maps] == ["Import Customers", "Import Sales Orders"]
    assert sc.maps.list is sc.maps.list  # made once per group
    assert repr(sc).startswith("SmartConnectSync('https://sc.example.com/API'")


def test_a_lone_exception_of_a_group_is_raised_as_itself(sc: SmartConnectSync) -> None:
    error = UnknownMapError("no map named 'x'", map="x")

    async def lone() -> None:
        raise ExceptionGroup("outer", [ExceptionGroup("inner", [error])])

    async def two() -> None:
        raise ExceptionGroup("two", [error, ValueError("other")])

    with pytest.raises(UnknownMapError) as caught:
        sc._portal.call(lone)
    assert caught.value is error
    with pytest.raises(ExceptionGroup):
        sc._portal.call(two)


def test_closing_a_derived_client_does_nothing_closing_the_first_closes_all(
    sc: SmartConnectSync,
) -> None:
    derived = sc.with_company("ACME-02").with_options(max_retries=0)
    assert derived.credentials.company_id == "ACME-02"
    derived.close()
    assert not sc._portal.closed
    sc.close()
    for client in (sc, derived):
        with pytest.raises(ClientClosedError):
            client.maps.list()
        with pytest.raises(ClientClosedError):
            next(client.data.iter_rows("Import Customers"))
