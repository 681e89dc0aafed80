"""exceptions.py: one tree, catchable at any level, with the attributes users read."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest

from smartconnect_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    MapRunFailed,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    RunResult,
    ServerError,
    SmartConnectError,
    UnknownMapError,
    ValidationFailure,
)


@pytest.mark.parametrize(
    ("error", "parent"),
    [
        (APIConnectionError, SmartConnectError),
        (APITimeoutError, APIConnectionError),
        (APIStatusError, SmartConnectError),
        (BadRequestError, APIStatusError),
        (AuthenticationError, APIStatusError),
        (PermissionDeniedError, APIStatusError),
        (NotFoundError, APIStatusError),
        (RateLimitError, APIStatusError),
        (ServerError, APIStatusError),
        (ResponseParseError, SmartConnectError),
        (UnknownMapError, SmartConnectError),
        (UnknownMapError, LookupError),
        (RunOutcomeUnknown, SmartConnectError),
        (MapRunFailed, SmartConnectError),
        (ClientClosedError, SmartConnectError),
    ],
)
def test_hierarchy(error: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(error, parent)


def test_outcome_unknown_is_not_a_connection_or_status_error() -> None:
    # Code that retries on APIConnectionError / ServerError must not catch it by accident.
    assert not issubclass(RunOutcomeUnknown, (APIConnectionError, APIStatusError))


def test_attributes() -> None:
    status = RateLimitError(
        "m", endpoint="GetMapList", status_code=429, request_id="r", body="b", retry_after=3.0
    )
    assert (status.endpoint, status.status_code, status.request_id, status.body) == (
        "GetMapList",
        429,
        "r",
        "b",
    )
    assert status.retry_after == 3.0
    assert str(status) == "m"
    timeout = APITimeoutError("t", endpoint="runmap", sent=True)
    assert (timeout.endpoint, timeout.sent) == ("runmap", True)
    sent_at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    unknown = RunOutcomeUnknown(
        "u", endpoint="runmap", map_key="k", sent_at=sent_at, attempt=2, status_code=500
    )
    assert (unknown.map_key, unknown.sent_at, unknown.attempt) == ("k", sent_at, 2)
    assert (unknown.status_code, unknown.request_id) == (500, None)
    lookup = UnknownMapError("x", map="Import", candidates=["a", "b"])
    assert lookup.candidates == ("a", "b")
    parse = ResponseParseError("p")
    assert (parse.endpoint, parse.request_id) == (None, None)


SENT_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)
RESULT = RunResult(
    status=1,
    run_number=77,
    map_id="Import Customers",
    map_description="",
    record_count=2,
    error_count=1,
    error_message="1 document failed",
    errors=({"Line": "1"},),
    validation_errors=(ValidationFailure("bad", column="Phone", row=3),),
    raw={"RunNumber": 77},
)
PICKLED = [
    ClientClosedError("closed"),
    APIConnectionError("refused", endpoint="GetMapList", sent=False),
    APITimeoutError("slow", endpoint="runmap", sent=True),
    RateLimitError(
        "m", endpoint="GetMapList", status_code=429, request_id="r", body="b", retry_after=3.0
    ),
    ServerError(
        "s", endpoint="runmap", status_code=500, request_id=None, body="", retry_after=None
    ),
    ResponseParseError("p", endpoint="GetAllData", request_id="r2"),
    UnknownMapError("x", map="Import", candidates=["a", "b"]),
    RunOutcomeUnknown(
        "u", endpoint="runmap", map_key="k", sent_at=SENT_AT, attempt=2, status_code=500, body="b"
    ),
    MapRunFailed(RESULT),
]


@pytest.mark.parametrize("error", PICKLED, ids=[type(e).__name__ for e in PICKLED])
def test_every_error_pickles_with_its_message_and_attributes(error: SmartConnectError) -> None:
    # Task queues and process pools send exceptions between processes by pickling them.
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)
