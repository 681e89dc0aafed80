"""models.py: the immutable inputs and results users build and read."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

from smartconnect_async import (
    Column,
    Credentials,
    DataSet,
    MapInfo,
    MapRunFailed,
    RunRequest,
    RunResult,
    Timeout,
    Token,
    ValidationFailure,
)

UTC = timezone.utc


# ---- Credentials --------------------------------------------------------------------


def test_credentials_are_normalised_and_frozen() -> None:
    creds = Credentials(email="  user@example.com ", password=" pw ", company_id=" ACME ")
    assert creds.email == "user@example.com"
    assert creds.company_id == "ACME"
    assert creds.password == " pw "  # a password is taken as given
    assert creds.hash_password is True
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        creds.password = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"email": "", "password": "pw", "company_id": "C"},
        {"email": "   ", "password": "pw", "company_id": "C"},
        {"email": "e@x", "password": "", "company_id": "C"},
        {"email": "e@x", "password": "pw", "company_id": ""},
        {"email": "e@x", "password": "pw", "company_id": " \t"},
    ],
)
def test_empty_credentials_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Credentials(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"email": None, "password": "pw", "company_id": "C"},
        {"email": "e@x", "password": "pw", "company_id": 12345},
        {"email": "e@x", "password": 12345, "company_id": "C"},
    ],
    ids=["email-None", "company-int", "password-int"],
)
def test_non_string_credentials_raise_type_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Credentials(**kwargs)


def test_credentials_of_the_wrong_type_fail_the_type_check(tmp_path: Path) -> None:
    from mypy import api as mypy  # a dev dependency: always there

    script = tmp_path / "script.py"
    script.write_text(
        "from smartconnect_async import Credentials\n"
        'Credentials(email=123, password=b"pw", company_id="C")\n'
        'Credentials(email="e@x", password="pw", company_id="C", hash_password=True)\n'
    )
    out, _, status = mypy.run(["--strict", "--no-incremental", str(script)])
    assert status == 1
    assert 'Argument "email" to "Credentials" has incompatible type "int"; expected "str"' in out
    assert 'Argument "password" to "Credentials" has incompatible type "bytes"' in out
    assert "Found 2 errors" in out


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials(email="e@x.com", password="hunter2-secret", company_id="C")
    assert "hunter2-secret" not in repr(creds)
    assert repr(creds) == "Credentials(email='e@x.com', company_id='C', hash_password=True)"


# ---- Token --------------------------------------------------------------------------


def test_token_repr_hides_value_and_is_expired() -> None:
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = Token("tok+/=", "C", "e@x", issued, issued + timedelta(days=90))
    assert "tok+/=" not in repr(token)
    assert not token.is_expired(issued + timedelta(days=89, hours=23))
    assert token.is_expired(issued + timedelta(days=90))


def test_token_is_expired_defaults_to_now() -> None:
    now = datetime.now(UTC)
    assert Token("t", "C", "e", now, now - timedelta(seconds=1)).is_expired()
    assert not Token("t", "C", "e", now, now + timedelta(hours=1)).is_expired()


# ---- Timeout ------------------------------------------------------------------------


def test_timeout_defaults_and_overrides() -> None:
    # default, connect, read, write, pool, total (ten times the default)
    assert attrs.astuple(Timeout()) == (30.0, 30.0, 30.0, 30.0, 30.0, 300.0)
    assert attrs.astuple(Timeout(10)) == (10, 10, 10, 10, 10, 100)
    assert attrs.astuple(Timeout(10, connect=2)) == (10, 2, 10, 10, 10, 100)
    assert attrs.astuple(Timeout(10, total=None)) == (10, 10, 10, 10, 10, None)
    assert attrs.astuple(Timeout(None, read=5)) == (None, None, 5, None, None, None)
    assert attrs.astuple(Timeout(None, total=60)) == (None, None, None, None, None, 60)


def test_timeout_of() -> None:
    limits = Timeout(10, pool=1)
    assert Timeout.of(limits) is limits
    assert Timeout.of(None) == Timeout(None)
    assert attrs.astuple(Timeout.of(None)) == (None, None, None, None, None, None)
    assert Timeout.of(2.5) == Timeout(2.5)
    assert Timeout.of(7) == Timeout(7)


@pytest.mark.parametrize("value", [0, -1, -0.5, math.nan, -math.inf])
def test_timeout_of_refuses_non_positive(value: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Timeout.of(value)


def test_timeout_of_refuses_non_numbers() -> None:
    with pytest.raises((TypeError, ValueError)):
        Timeout.of("30")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"default": 0}, {"default": 30, "connect": -1}, {"default": 30, "read": math.nan}]
)
def test_timeout_refuses_non_positive_parts(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the wording is the fix's to choose
        Timeout(**kwargs)


# ---- results ------------------------------------------------------------------------


def test_data_set_rows_is_the_first_table() -> None:
    data = DataSet(tables={"A": [{"x": "1"}], "B": [{"y": None}]})
    assert data.rows == [{"x": "1"}]
    assert DataSet(tables={}).rows == []


def test_map_info_and_column_are_values() -> None:
    assert MapInfo("k", "id", "d") == MapInfo("k", "id", "d")
    assert hash(Column("A", True)) == hash(Column("A", True))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        MapInfo("k", "id", "d").key = "other"  # type: ignore[misc]


def test_validation_failure_defaults() -> None:
    failure = ValidationFailure("bad")
    assert (failure.column, failure.row, dict(failure.extra)) == (None, None, {})


def _result(**kwargs: Any) -> RunResult:
    fields: dict[str, Any] = {
        "status": 0,
        "run_number": 7,
        "map_id": "Import Customers",
        "map_description": "",
        "record_count": 2,
        "error_count": 0,
        "error_message": "",
    }
    fields.update(kwargs)
    return RunResult(**fields)


@pytest.mark.parametrize(
    ("kwargs", "ok"),
    [
        ({}, True),
        ({"status": 1}, False),
        ({"status": -1}, False),
        ({"error_count": 3}, False),
        ({"errors": ({"Message": "x"},)}, False),
        ({"validation_errors": (ValidationFailure("v"),)}, False),
        ({"error_message": "informational"}, True),
    ],
)
def test_run_result_ok(kwargs: dict[str, Any], ok: bool) -> None:
    result = _result(**kwargs)
    assert result.ok is ok
    if ok:
        assert result.raise_for_status() is result
    else:
        with pytest.raises(MapRunFailed) as info:
            result.raise_for_status()
        assert info.value.result is result


def test_map_run_failed_message() -> None:
    failed = MapRunFailed(_result(status=2, error_count=1, error_message="Vendor missing"))
    assert str(failed) == (
        "map 'Import Customers' run 7 failed with status 2 and 1 error(s): Vendor missing"
    )
    anonymous = MapRunFailed(_result(status=1, map_id="", run_number=None))
    assert str(anonymous) == "map '?' run None failed with status 1 and 0 error(s)"


def test_run_result_raw_is_not_compared_or_shown() -> None:
    a = _result(raw={"Secret": "s3cr3t"})
    b = _result(raw={})
    assert a == b
    assert "s3cr3t" not in repr(a)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"variables": {"GBL_STATE": "CO"}, "rows": [{"A": 1}]},
            "a RunRequest takes variables or rows, not both: a run with rows "
            "(runmapdatatable, runmapxml) carries no variables",
        ),
        ({"with_errors": True}, "a RunRequest with with_errors or as_xml needs rows"),
        ({"as_xml": True}, "a RunRequest with with_errors or as_xml needs rows"),
        (
            {"rows": [{"A": 1}], "with_errors": True, "as_xml": True},
            "a RunRequest cannot combine with_errors and as_xml",
        ),
    ],
)
def test_run_request_refuses_what_a_run_would_drop(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^a RunRequest ") as info:
        RunRequest("Import Customers", **kwargs)
    assert str(info.value) == message


def test_run_request_combinations_that_run() -> None:
    rows = [{"A": 1}]
    assert RunRequest("M", {"GBL_X": "1"}).variables == {"GBL_X": "1"}
    assert RunRequest("M", {}, rows).rows is rows  # empty variables are none
    assert RunRequest("M", rows=rows, with_errors=True).with_errors
    assert RunRequest("M", rows=rows, as_xml=True).as_xml
