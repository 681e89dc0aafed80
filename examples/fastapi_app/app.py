"""A FastAPI backend over SmartConnect: one client for the whole app, map data streamed
as NDJSON or CSV in constant memory, runs started by POST, errors as HTTP answers.

Run it with ``uvicorn --app-dir examples fastapi_app.app:app`` and the
``SMARTCONNECT_*`` variables set (see the README beside this file).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from smartconnect_async import (
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    RowStream,
    RunOutcomeUnknown,
    SmartConnect,
    SmartConnectError,
    UnknownMapError,
)

CHUNK_SIZE = 64 * 1024
"""Bytes of NDJSON or CSV gathered before they are sent on."""
HEADER_ROWS = 1000
"""Rows read (and held) before the CSV header is written: their columns make it."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client for the app's life: its connection pool and token cache are shared by
    every request. It is made here, on the running event loop, and closed at shutdown."""
    async with SmartConnect.from_env() as sc:  # SMARTCONNECT_API_URL, _EMAIL, ...
        app.state.smartconnect = sc
        yield


def smartconnect(request: Request) -> SmartConnect:
    """The app's client (a dependency)."""
    sc: SmartConnect = request.app.state.smartconnect
    return sc


Client = Annotated[SmartConnect, Depends(smartconnect)]
router = APIRouter()


class MapOut(BaseModel):
    """A map of the company."""

    id: str
    key: str
    description: str


class RunIn(BaseModel):
    """A run: ``rows`` posted as a data table (``with_errors`` adds the validation
    errors), or the map's own source filtered by global ``variables``, or neither."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, str | int | float | bool | None]] | None = Field(None, min_length=1)
    variables: dict[str, str] | None = None
    with_errors: bool = False

    @model_validator(mode="after")
    def _rows_or_variables(self) -> RunIn:
        if self.rows is not None and self.variables:
            raise ValueError("give rows or variables, not both")
        if self.with_errors and self.rows is None:
            raise ValueError("with_errors needs rows")
        return self


class FailureOut(BaseModel):
    """An error of a run: a row of its error table, or a validation error
    (``with_errors``)."""

    model_config = ConfigDict(from_attributes=True)

    row: int | None
    column: str | None
    message: str


class RunOut(BaseModel):
    """A processed run (read from the ``RunResult``): ``ok`` only when every document
    went in."""

    model_config = ConfigDict(from_attributes=True)

    ok: bool
    status: int
    run_number: int | None
    map_id: str
    map_description: str
    record_count: int
    error_count: int
    error_message: str
    errors: list[FailureOut]
    validation_errors: list[FailureOut]
    request_id: str | None


@router.get("/maps")
async def list_maps(sc: Client) -> list[MapOut]:
    """The company's maps."""
    return [MapOut(id=m.id, key=m.key, description=m.description) for m in await sc.maps.list()]


@router.get("/maps/{map_name}/data.ndjson")
async def data_ndjson(map_name: str, request: Request, sc: Client) -> StreamingResponse:
    """The map's source data, one JSON object per line (every ``GBL_*`` query parameter
    is a global variable)."""
    rows = await open_rows(sc, map_name, request)
    return StreamingResponse(chunked(rows, ndjson_lines(rows)), media_type="application/x-ndjson")


@router.get("/maps/{map_name}/data.csv")
async def data_csv(map_name: str, request: Request, sc: Client) -> StreamingResponse:
    """The map's source data as CSV (a null is an empty field)."""
    rows = await open_rows(sc, map_name, request)
    return StreamingResponse(chunked(rows, csv_lines(rows)), media_type="text/csv; charset=utf-8")


@router.post("/maps/{map_name}/runs")
async def start_run(map_name: str, run: RunIn, sc: Client) -> RunOut:
    """Run the map. A processed run answers 200 even when documents failed (``ok``
    false): it has a run number, and posting it again would repeat the documents that
    went in."""
    try:
        if run.rows is None:
            result = await sc.runs.run(map_name, run.variables)
        else:
            result = await sc.runs.run_data_table(map_name, run.rows, run.with_errors)
    except (TypeError, ValueError) as exc:  # rows the library refuses, before sending
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "rows"), "msg": str(exc), "input": None}]
        ) from None
    return RunOut.model_validate(result)


async def open_rows(sc: SmartConnect, map_name: str, request: Request) -> RowStream:
    """The map's rows, with the request sent and the answer's status checked: an unknown
    map or a refused login raises here, while the route can still answer with an error
    status (inside the response body it would be too late: the 200 is sent first)."""
    variables = {k: v for k, v in request.query_params.items() if k.upper().startswith("GBL_")}
    rows = sc.data.iter_rows(map_name, variables or None)
    await rows.__aenter__()  # what `async with` does on entering; the body closes it
    return rows


async def chunked(rows: RowStream, text: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """``text``, made from ``rows``, sent in chunks of about ``CHUNK_SIZE`` bytes;
    ``rows`` is closed at the end, however the response ends."""
    buffer = io.StringIO()
    try:
        async for part in text:
            buffer.write(part)
            if buffer.tell() >= CHUNK_SIZE:
                yield taken(buffer).encode()
        if buffer.tell():
            yield taken(buffer).encode()
    finally:
        await rows.aclose()


async def ndjson_lines(rows: RowStream) -> AsyncIterator[str]:
    """Each row as a line of JSON."""
    async for row in rows:
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


async def csv_lines(rows: RowStream) -> AsyncIterator[str]:
    """A header of the columns of the first ``HEADER_ROWS`` rows (held until then),
    then every row; a column first seen later is left out."""
    head = []
    async for row in rows:
        head.append(row)
        if len(head) == HEADER_ROWS:
            break
    line = io.StringIO()
    writer = csv.DictWriter(line, rows.columns, extrasaction="ignore")
    if rows.columns:  # no rows, no header
        writer.writeheader()
    writer.writerows(head)
    del head
    yield taken(line)
    async for row in rows:  # the same stream goes on where the loop above stopped
        writer.writerow(row)
        yield taken(line)


def taken(buffer: io.StringIO) -> str:
    """The buffer's text; the buffer is emptied."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def error(status: int, message: str, **fields: Any) -> JSONResponse:
    """A JSON error answer: ``{"error": message, ...fields}``."""
    return JSONResponse({"error": message, **fields}, status_code=status)


async def rate_limited(request: Request, exc: RateLimitError) -> JSONResponse:
    """SmartConnect asked us to wait: so do we ask our caller."""
    seconds = max(1, math.ceil(exc.retry_after or 1))
    response = error(503, "SmartConnect's rate limit is reached", request_id=exc.request_id)
    response.headers["Retry-After"] = str(seconds)
    return response


async def unknown_map(request: Request, exc: UnknownMapError | NotFoundError) -> JSONResponse:
    """No such map in the company (or, by MapId, more than one)."""
    candidates = list(exc.candidates) if isinstance(exc, UnknownMapError) else []
    return error(404, str(exc), candidates=candidates)


async def login_refused(request: Request, exc: AuthenticationError) -> JSONResponse:
    """SmartConnect refused this service's login: our configuration, not the caller's
    request."""
    return error(502, "SmartConnect refused the login", request_id=exc.request_id)


async def outcome_unknown(request: Request, exc: RunOutcomeUnknown) -> JSONResponse:
    """The run may have been processed: it was not sent again, and must not be by the
    caller before the run history has been checked."""
    return error(
        502,
        "the run's outcome is unknown: it may have been processed, and it was not re-sent;"
        " check the run history before running it again",
        map_key=exc.map_key,
        sent_at=exc.sent_at.isoformat(),
        request_id=exc.request_id,
    )


async def upstream_failed(request: Request, exc: SmartConnectError) -> JSONResponse:
    """Any other failure of SmartConnect (504 for a timeout)."""
    status = 504 if isinstance(exc, APITimeoutError) else 502
    return error(status, str(exc), request_id=getattr(exc, "request_id", None))


HANDLERS: dict[type[Exception], Callable[[Request, Any], Awaitable[JSONResponse]]] = {
    RateLimitError: rate_limited,
    UnknownMapError: unknown_map,
    NotFoundError: unknown_map,
    AuthenticationError: login_refused,
    RunOutcomeUnknown: outcome_unknown,
    SmartConnectError: upstream_failed,  # the rest (the most specific handler wins)
}


def create_app() -> FastAPI:
    """The app: routes, the client's lifespan and the error answers."""
    app = FastAPI(title="SmartConnect example", lifespan=lifespan)
    app.include_router(router)
    for exc_class, handler in HANDLERS.items():
        app.add_exception_handler(exc_class, handler)
    return app


app = create_app()
