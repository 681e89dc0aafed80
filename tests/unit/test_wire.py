"""_wire.py: what a call sends and what its answer means (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from smartconnect_async import DataSet, RunResult, __version__
from smartconnect_async._backend import BackendFailure, FailureKind
from smartconnect_async._redact import REDACTED
from smartconnect_async._wire import (
    JSON,
    XML,
    Body,
    Call,
    Sent,
    excerpt,
    failure_error,
    finished,
    html_page_error,
    is_html,
    may_have_run,
    read_answer,
    request_headers,
    request_id,
    request_url,
    status_error,
)
from smartconnect_async.data import data_call
from smartconnect_async.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    RunOutcomeUnknown,
    ServerError,
    SmartConnectError,
)

API_URL = "https://sc.example.com/API"
MAP_KEY = "c365b728-60e0-4841-841c-ab73008dd41d"
TOKEN = "ab+cd/ef=="
TOKEN_Q = "ab%2Bcd%2Fef%3D%3D"
PASSWORD = "s3cret pässword+/="
HASHED = "Xy9+Qm/9aZ0k3L1w2v8pQe4r5t6y7u8i9o0pLkJhGfE="
SECRETS = (PASSWORD, HASHED, TOKEN)
# A token the client does not know (an older one, say), shown as a query parameter.
OTHER_TOKEN = "0ld+T0ken/value=="

SENT = Sent(at=1767268800.0, attempt=2)
SENT_AT = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

IIS_PAGE = (
    b'\r\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN">\r\n'
    b"<html><head><title>503 - Service Unavailable</title></head>"
    b"<body><h1>Server Error</h1><p>The service is unavailable.</p></body></html>"
)
RUN_ERROR_TAIL = "; the request may have been processed and was not sent again"
PROCESSED_TAIL = "; the request was processed but its result could not be read"


def _unparsable(body: bytes) -> object:
    raise ResponseParseError("the answer is not a RunMapResponse")


def _never(body: bytes) -> object:
    raise AssertionError("the parser must not see an HTML page")


def _read(parse: Callable[[bytes], object] = _unparsable) -> Call[object]:
    """An idempotent call (a read)."""
    return Call("GetMapList", parse)


def _run(parse: Callable[[bytes], object] = _unparsable) -> Call[object]:
    """A run: not idempotent, for a map."""
    return Call(
        "runmap",
        parse,
        query=(("mapKey", MAP_KEY),),
        idempotent=False,
        is_run=True,
        map_key=MAP_KEY,
    )


def _raised(produce: Callable[[], object]) -> SmartConnectError:
    """The error ``produce`` raises."""
    with pytest.raises(SmartConnectError) as info:
        produce()
    return info.value


def _shown(error: BaseException) -> str:
    """Everything of ``error`` a user may print or log."""
    return "\n".join((str(error), repr(error), str(getattr(error, "body", None))))


def _assert_secret_free(error: BaseException) -> None:
    shown = _shown(error)
    for secret in (*SECRETS, OTHER_TOKEN):
        for form in {secret, quote(secret, safe=""), quote(secret, safe="/")}:
            assert form not in shown


# ---- request_url ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "query", "token", "url"),
    [
        ("GetMapList", (), None, f"{API_URL}/GetMapList"),
        ("validate", (), TOKEN, f"{API_URL}/validate?token={TOKEN_Q}"),
        (
            "GetMapColumns",
            (("mapKey", MAP_KEY),),
            TOKEN,
            f"{API_URL}/GetMapColumns?token={TOKEN_Q}&mapKey={MAP_KEY}",
        ),
        (
            "GetToken",
            (("email", "j.doe+sc@example.com"), ("password", PASSWORD), ("companyId", "Acme Ltd")),
            None,
            f"{API_URL}/GetToken?email=j.doe%2Bsc%40example.com"
            "&password=s3cret%20p%C3%A4ssword%2B%2F%3D&companyId=Acme%20Ltd",
        ),
        (
            "SaveProcessErrors",
            (("mapKey", MAP_KEY), ("tenantTechnicalName", "Acme & Co#1=x?"), ("runNumber", "17")),
            "tök en",
            f"{API_URL}/SaveProcessErrors?token=t%C3%B6k%20en&mapKey={MAP_KEY}"
            "&tenantTechnicalName=Acme%20%26%20Co%231%3Dx%3F&runNumber=17",
        ),
    ],
)
def test_request_url_puts_the_token_first_and_encodes_every_value(
    endpoint: str, query: tuple[tuple[str, str], ...], token: str | None, url: str
) -> None:
    assert request_url(API_URL, Call(endpoint, _never, query=query), token) == url


# ---- request_headers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (Call("GetMapList", _never), {"Accept": JSON}),
        (_run(), {"Accept": JSON}),
        (data_call(MAP_KEY), {"Accept": XML}),
        (data_call(MAP_KEY, {"From": "2026-01-01"}), {"Accept": XML, "Content-Type": JSON}),
        (
            Call("runmapxml", _never, content_type="text/xml"),
            {"Accept": JSON, "Content-Type": "text/xml"},
        ),
    ],
)
def test_request_headers(call: Call[object], expected: Mapping[str, str]) -> None:
    headers = dict(request_headers(call))
    assert headers.pop("User-Agent") == f"smartconnect-async/{__version__}"
    assert headers == expected


# ---- the run-outcome rule ------------------------------------------------------------

STATUSES = [None, 200, 201, 204, 400, 401, 403, 404, 429, 500, 502, 503, 504]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize(("idempotent", "sent"), [(True, True), (True, False), (False, False)])
def test_may_have_run_never_for_a_read_or_an_unsent_request(
    idempotent: bool, sent: bool, status: int | None
) -> None:
    call = Call("runmap", _never, idempotent=idempotent)
    assert may_have_run(call, status=status, sent=sent) is False


@pytest.mark.parametrize(
    ("status", "ran"),
    [
        (None, True),  # no answer at all
        (200, False),  # n/a: a successful answer is read, not judged
        (201, False),
        (204, False),
        (301, True),  # a redirect, never followed: it may come after the run
        (302, True),
        (303, True),
        (307, True),
        (400, False),  # refused
        (401, False),
        (403, False),
        (404, False),
        (429, False),  # not processed
        (500, True),
        (502, True),
        (503, False),  # not processed
        (504, True),
    ],
)
def test_may_have_run_for_a_sent_run(status: int | None, ran: bool) -> None:
    assert may_have_run(_run(), status=status, sent=True) is ran


def test_may_have_run_by_default_means_sent_with_no_answer() -> None:
    assert may_have_run(_run()) is True
    assert may_have_run(_read()) is False


# ---- status_error --------------------------------------------------------------------

STATUS_CLASSES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (418, APIStatusError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
def test_status_error_class_and_attributes(status: int, cls: type[APIStatusError]) -> None:
    error = status_error(_read(), status, {}, b'"Nope"', (), SENT, None)
    assert type(error) is cls
    assert isinstance(error, APIStatusError)
    assert str(error) == f"GetMapList failed with HTTP {status}: Nope"
    assert error.endpoint == "GetMapList"
    assert error.status_code == status
    assert error.request_id is None
    assert error.body == "Nope"
    assert error.retry_after is None


def test_status_error_names_the_map_the_request_id_and_the_wait() -> None:
    call = Call("GetMapColumns", _never, query=(("mapKey", MAP_KEY),), map_key=MAP_KEY)
    headers = {"x-request-id": "req-42"}
    error = status_error(call, 429, headers, b'{"Message": "Slow  down"}', (), SENT, 2.5)
    assert type(error) is RateLimitError
    assert str(error) == (
        f"GetMapColumns for map {MAP_KEY} failed with HTTP 429: Slow down "
        "(request id req-42); the server asks to wait 2.5s"
    )
    assert error.request_id == "req-42"
    assert error.retry_after == 2.5
    assert error.body == "Slow down"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("req-42", "req-42"),
        ("0HN8:00000001 été", "0HN8:00000001 été"),
        ("a\r\nINFO forged line", "a\\r\\nINFO forged line"),
        ("\x1b[31mred", "\\x1b[31mred"),
    ],
)
def test_a_request_id_is_kept_with_what_is_not_printable_escaped(value: str, kept: str) -> None:
    assert request_id({"x-request-id": value}) == kept
    error = status_error(_read(), 500, {"x-request-id": value}, b"", (), SENT, None)
    assert error.request_id == kept
    assert str(error).endswith(f"(request id {kept})")
    assert "\n" not in str(error)
    assert request_id({}) is None


def test_status_error_without_a_body() -> None:
    error = status_error(_read(), 500, {}, b"", (), SENT, None)
    assert isinstance(error, ServerError)
    assert str(error) == "GetMapList failed with HTTP 500: (no body)"
    assert error.body == ""


@pytest.mark.parametrize("status", [500, 502, 504])
def test_status_error_of_a_run_that_may_have_run_is_outcome_unknown(status: int) -> None:
    headers = {"x-request-id": "req-7"}
    error = status_error(_run(), status, headers, IIS_PAGE, (), SENT, 3.0)
    assert type(error) is RunOutcomeUnknown
    assert str(error) == (
        f"runmap for map {MAP_KEY} failed with HTTP {status}: 503 - Service Unavailable "
        f"(request id req-7){RUN_ERROR_TAIL}"
    )
    assert error.endpoint == "runmap"
    assert error.map_key == MAP_KEY
    assert error.sent_at == SENT_AT
    assert error.sent_at.utcoffset() == timedelta(0)
    assert error.attempt == 2
    assert error.status_code == status
    assert error.request_id == "req-7"
    assert error.body == "503 - Service Unavailable"


@pytest.mark.parametrize(
    ("status", "cls"), [(s, c) for s, c in STATUS_CLASSES if s in (400, 401, 403, 404, 429, 503)]
)
def test_status_error_of_a_run_not_processed_is_the_status_error(
    status: int, cls: type[APIStatusError]
) -> None:
    error = status_error(_run(), status, {}, b"busy", (), SENT, 1.0)
    assert type(error) is cls
    assert str(error) == (
        f"runmap for map {MAP_KEY} failed with HTTP {status}: busy; the server asks to wait 1s"
    )
    assert error.endpoint == "runmap"
    assert error.status_code == status


# ---- failure_error -------------------------------------------------------------------

FAILURES = [
    (FailureKind.POOL_TIMEOUT, APITimeoutError, False),
    (FailureKind.CONNECT, APIConnectionError, False),
    (FailureKind.CONNECT_TIMEOUT, APITimeoutError, False),
    (FailureKind.WRITE, APIConnectionError, False),
    (FailureKind.WRITE_TIMEOUT, APITimeoutError, False),
    (FailureKind.READ, APIConnectionError, True),
    (FailureKind.READ_TIMEOUT, APITimeoutError, True),
]


def test_failure_table_covers_every_kind() -> None:
    assert {kind for kind, _, _ in FAILURES} == set(FailureKind)


@pytest.mark.parametrize(("kind", "cls", "sent"), FAILURES)
def test_failure_error_of_a_read(
    kind: FailureKind, cls: type[APIConnectionError], sent: bool
) -> None:
    error = failure_error(_read(), BackendFailure(kind, "reset by peer"), (), SENT)
    assert type(error) is cls
    assert str(error) == f"GetMapList: {kind.value}: reset by peer"
    assert error.endpoint == "GetMapList"
    assert error.sent is sent is kind.sent


@pytest.mark.parametrize(("kind", "cls", "sent"), FAILURES)
def test_failure_error_of_a_run(
    kind: FailureKind, cls: type[APIConnectionError], sent: bool
) -> None:
    error = failure_error(_run(), BackendFailure(kind, ""), (), SENT)
    if not sent:  # provably not sent: safe to send again
        assert type(error) is cls
        assert str(error) == f"runmap for map {MAP_KEY}: {kind.value}"
        assert error.sent is False
        return
    assert type(error) is RunOutcomeUnknown
    assert str(error) == (
        f"runmap for map {MAP_KEY}: {kind.value}; the request may have reached the server "
        "and was not sent again"
    )
    assert error.endpoint == "runmap"
    assert error.map_key == MAP_KEY
    assert error.sent_at == SENT_AT
    assert error.attempt == 2
    assert (error.status_code, error.request_id, error.body) == (None, None, None)


# ---- secrets -------------------------------------------------------------------------

SECRET_FORMS = {
    "password": PASSWORD,
    "hashed password": HASHED,
    "token": TOKEN,
    "encoded password": quote(PASSWORD, safe=""),
    "encoded hashed password": quote(HASHED, safe=""),
    "encoded token": quote(TOKEN, safe=""),
    "token with raw slashes": quote(TOKEN, safe="/"),
    "unknown token parameter": f"token={OTHER_TOKEN}",
    "unknown encoded token parameter": f"token={quote(OTHER_TOKEN, safe='')}",
}


def _echo(text: str) -> Callable[[bytes], object]:
    """A parser that fails quoting ``text``."""

    def parse(body: bytes) -> object:
        raise ResponseParseError(f"unexpected {text} here")

    return parse


def _page(text: str) -> bytes:
    return f"<html><head><title>Bad {text} here</title></head></html>".encode()


ERROR_MAKERS: dict[str, Callable[[str], object]] = {
    "status_error": lambda t: status_error(
        _read(), 400, {}, f"bad {t} here".encode(), SECRETS, SENT, None
    ),
    "status_error json": lambda t: status_error(
        _read(), 401, {}, f'{{"Message": "bad {t} here"}}'.encode(), SECRETS, SENT, None
    ),
    "status_error run": lambda t: status_error(_run(), 500, {}, _page(t), SECRETS, SENT, None),
    "failure_error": lambda t: failure_error(
        _read(), BackendFailure(FailureKind.CONNECT, f"bad {t} here"), SECRETS, SENT
    ),
    "failure_error run": lambda t: failure_error(
        _run(), BackendFailure(FailureKind.READ_TIMEOUT, f"bad {t} here"), SECRETS, SENT
    ),
    "read_answer parse": lambda t: _raised(
        lambda: read_answer(_read(_echo(t)), 200, {}, Body(b"{}"), SECRETS, SENT)
    ),
    "read_answer html": lambda t: _raised(
        lambda: read_answer(_read(_never), 200, {}, Body(_page(t)), SECRETS, SENT)
    ),
    "read_answer run parse": lambda t: _raised(
        lambda: read_answer(_run(_echo(t)), 200, {}, Body(f"bad {t} here".encode()), SECRETS, SENT)
    ),
    "read_answer run html": lambda t: _raised(
        lambda: read_answer(_run(_never), 200, {}, Body(_page(t)), SECRETS, SENT)
    ),
    "html_page_error": lambda t: html_page_error(_read(), 502, {}, _page(t), SECRETS),
}


@pytest.mark.parametrize("form", SECRET_FORMS.values(), ids=SECRET_FORMS.keys())
@pytest.mark.parametrize("make", ERROR_MAKERS.values(), ids=ERROR_MAKERS.keys())
def test_no_error_shows_a_secret(make: Callable[[str], object], form: str) -> None:
    error = make(form)
    assert isinstance(error, SmartConnectError)
    _assert_secret_free(error)
    assert REDACTED in str(error)
    assert "here" in str(error)  # the text after the secret is kept: it was seen


# ---- excerpt and is_html -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (IIS_PAGE, "503 - Service Unavailable"),
        (
            b"<HTML><head><TITLE lang='en'>\n  Service\n  Unavailable </TITLE>",
            "Service Unavailable",
        ),
        (b'"Invalid token"', "Invalid token"),
        (
            b'{"Message": "An error has occurred.", "ExceptionMessage": "x"}',
            "An error has occurred.",
        ),
        (b'{"message": "Too many requests"}', "Too many requests"),
        (b'{"error": "bad"}', '{"error": "bad"}'),
        (b"<Error><Code>42</Code><Text>Map   not\nfound</Text></Error>", "42 Map not found"),
        (b"  Map \r\n\t not   found  ", "Map not found"),
        (b"caf\xe9", "caf\ufffd"),
        (b"", ""),
    ],
)
def test_excerpt(body: bytes, text: str) -> None:
    assert excerpt(body, ()) == text


@pytest.mark.parametrize(
    "body",
    [
        b"x" * 500,
        b'{"Message": "' + b"x" * 500 + b'"}',
        b"<title>" + b"x" * 500 + b"</title>",
    ],
)
def test_excerpt_is_cut_to_200_characters(body: bytes) -> None:
    assert excerpt(body, ()) == "x" * 199 + "…"


@pytest.mark.parametrize(
    ("content_type", "body", "html"),
    [
        ("text/html", b"", True),
        ("TEXT/HTML; charset=utf-8", b"", True),
        ("text/html; charset=utf-8", b'{"Status": 0}', True),
        ("application/json", b"<!DOCTYPE html><html></html>", True),
        ("application/json; charset=utf-8", b"\r\n  \t<html><body>x</body></html>", True),
        ("", b"<!doctype HTML>", True),
        ("application/json", b'{"Message": "<html>"}', False),
        ("application/json", b'"<html>"', False),
        ("application/xml", b'<?xml version="1.0"?><DataSet/>', False),
        ("application/xml", b"<string>&lt;html&gt;</string>", False),
        ("", b"", False),
    ],
)
def test_is_html(content_type: str, body: bytes, html: bool) -> None:
    assert is_html(content_type, body) is html


def test_is_html_by_content_type_alone() -> None:
    assert is_html("text/html") is True
    assert is_html("application/json") is False


# ---- read_answer ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [_read, _run])
def test_read_answer_returns_the_parsed_body(make: Callable[..., Call[object]]) -> None:
    call = make(lambda body: ("parsed", body))
    headers = {"content-type": "application/json"}
    assert read_answer(call, 200, headers, Body(b"{}"), (), SENT) == ("parsed", b"{}")


def test_finished_stamps_runs_and_data_sets_with_the_request_id() -> None:
    headers = {"x-request-id": "r-5"}
    run = RunResult(1, 7, "M", "", 0, 1, f"token {HASHED} refused")
    stamped = finished(run, headers, SECRETS)
    assert stamped.request_id == "r-5"
    assert stamped.error_message == f"token {REDACTED} refused"
    assert finished(DataSet(tables={}), headers, SECRETS).request_id == "r-5"
    assert finished(DataSet(tables={}), {}, SECRETS).request_id is None
    listed = ["a"]
    assert finished(listed, headers, SECRETS) is listed


HTML_ANSWERS = [
    ({"content-type": "application/json"}, IIS_PAGE),
    ({"content-type": "text/html; charset=utf-8"}, b"<title>503 - Service Unavailable</title>"),
    ({}, b"<html><title>503 - Service Unavailable</title>"),
]


@pytest.mark.parametrize(("headers", "body"), HTML_ANSWERS)
def test_read_answer_refuses_an_html_page_with_status_200(
    headers: dict[str, str], body: bytes
) -> None:
    error = _raised(
        lambda: read_answer(
            _read(_never), 200, {**headers, "x-request-id": "r-1"}, Body(body), SECRETS, SENT
        )
    )
    assert type(error) is ResponseParseError
    assert str(error) == (
        "GetMapList answered with an HTML page instead of data (HTTP 200): "
        "503 - Service Unavailable"
    )
    assert error.endpoint == "GetMapList"
    assert error.request_id == "r-1"


def test_read_answer_names_the_endpoint_of_a_parse_error() -> None:
    error = _raised(
        lambda: read_answer(_read(_unparsable), 200, {"x-request-id": "r-2"}, Body(b"[]"), (), SENT)
    )
    assert type(error) is ResponseParseError
    assert str(error) == "GetMapList: the answer is not a RunMapResponse"
    assert error.endpoint == "GetMapList"
    assert error.request_id == "r-2"


@pytest.mark.parametrize(("make", "kind"), [(_read, ResponseParseError), (_run, RunOutcomeUnknown)])
def test_read_answer_refuses_an_answer_cut_at_its_limit(
    make: Callable[..., Call[object]], kind: type[Exception]
) -> None:
    body = Body(b'[{"MapKey": "k"}, ' + b"x" * 1990, more=True)
    error = _raised(lambda: read_answer(make(_never), 200, {}, body, (), SENT))
    assert type(error) is kind
    assert "the answer is larger than 2,008 bytes (max_answer_size); the rest was not read" in str(
        error
    )


def test_reprs_of_a_call_and_a_body_hide_what_may_be_secret() -> None:
    call = Call("GetToken", _never, query=(("email", "a@b.c"), ("password", HASHED)))
    assert HASHED not in repr(call)
    assert "('email', 'a@b.c'), ('password', '[REDACTED]')" in repr(call)
    assert (
        repr(Body(b"token " + HASHED.encode(), more=True))
        == "Body(data=<" + str(6 + len(HASHED)) + " bytes>, more=True)"
    )


RUN_ANSWER = '{"RunNumber": 1234, "Status": "weird", "Pad": "' + "y" * 1000 + '"}'


@pytest.mark.parametrize(
    ("parse", "body", "cause"),
    [
        (_unparsable, RUN_ANSWER.encode(), "runmap: the answer is not a RunMapResponse"),
        (
            _never,
            IIS_PAGE,
            "runmap answered with an HTML page instead of data (HTTP 200): "
            "503 - Service Unavailable",
        ),
    ],
)
def test_read_answer_of_a_run_that_cannot_be_read_is_outcome_unknown(
    parse: Callable[[bytes], object], body: bytes, cause: str
) -> None:
    headers = {"x-request-id": "r-3"}
    error = _raised(lambda: read_answer(_run(parse), 200, headers, Body(body), SECRETS, SENT))
    assert type(error) is RunOutcomeUnknown
    assert str(error) == cause + PROCESSED_TAIL
    assert type(error.__cause__) is ResponseParseError
    assert str(error.__cause__) == cause
    assert error.body == body.decode()  # the whole answer: the run number is in it
    assert error.endpoint == "runmap"
    assert error.map_key == MAP_KEY
    assert error.sent_at == SENT_AT
    assert error.attempt == 2
    assert error.request_id == "r-3"
    assert error.status_code is None


@pytest.mark.parametrize(
    "written",
    [
        "ab\\u002Bcd\\/ef\\u003D\\u003D",  # System.Text.Json
        "ab\\u002bcd\\u002fef\\u003d\\u003d",
        "ab+cd\\/ef==",
    ],
)
def test_read_answer_of_a_run_redacts_a_json_escaped_secret(written: str) -> None:
    body = f'{{"RunNumber": 1234, "ErrorMessage": "token {written} refused"}}'.encode()
    error = _raised(lambda: read_answer(_run(), 200, {}, Body(body), SECRETS, SENT))
    assert isinstance(error, RunOutcomeUnknown)
    assert error.body == f'{{"RunNumber": 1234, "ErrorMessage": "token {REDACTED} refused"}}'
    _assert_secret_free(error)


# ---- found gaps ----------------------------------------------------------------------


def test_excerpt_never_shows_part_of_a_secret_astride_its_read_limit() -> None:
    head = b"<r>" + b"<x/>" * 1020 + b" "
    body = head + HASHED.encode() + b"</r>"
    assert HASHED[: 4096 - len(head)] not in excerpt(body, SECRETS)


def test_status_error_hides_a_json_escaped_secret_in_any_json_answer() -> None:
    body = b'{"title": "Unauthorized", "detail": "token ab\\u002Bcd\\/ef\\u003D\\u003D refused"}'
    error = status_error(_read(), 401, {}, body, SECRETS, SENT, None)
    assert "ab\\u002Bcd" not in _shown(error)


def test_read_answer_of_a_run_redacts_a_password_with_json_escaped_quote_or_backslash() -> None:
    password = 'pa"ss\\word'
    body = b'{"RunNumber": 1, "ErrorMessage": "password pa\\"ss\\\\word refused"}'
    error = _raised(lambda: read_answer(_run(), 200, {}, Body(body), (password,), SENT))
    assert isinstance(error, RunOutcomeUnknown)
    assert 'pa\\"ss\\\\word' not in str(error.body)
