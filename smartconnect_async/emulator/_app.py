"""The Starlette app: the SmartConnect API under ``/API`` and admin routes under ``/_emulator``.

Each API call goes: count it, apply the rate limit, apply faults (latency, then at most
one action), negotiate Accept (or 406), process it, answer it in the negotiated format
(or drop / truncate the answer).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ._catalog import MapDef
from ._connections import transport_for
from ._endpoints import canonical
from ._faults import FaultRule
from ._negotiation import JSON_MEDIA, XML_MEDIA, negotiate
from ._pages import ASPNET_RUNTIME_ERROR_PAGE, hostile_xml, iis_error_page, status_message
from ._ratelimit import RateState
from ._runs import RunRecord
from ._state import Emulator
from ._tokens import TokenRecord
from ._xml import XmlBodyError, data_contract_xml, parse_data_table, parse_run_xml

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
DENIED = "Authorization has been denied for this request."
REQUEST_ID_KEY = "emulator.request_id"
"""Scope key under which the request's X-Request-Id is kept."""

INLINE_RUN_ROWS = 100
"""Runs over at most this many source rows (about 2.5 µs a row) run on the event loop;
larger ones in a worker thread, so they do not hold up other requests. A thread hop
costs more than a small run."""
INLINE_BODY_BYTES = 16_384
"""Posted runs with bodies up to this size (parse and run) run on the event loop, larger
ones in a worker thread."""

T = TypeVar("T")
logger = logging.getLogger("smartconnect_async.emulator")


async def _work(inline: bool, work: Callable[[], T]) -> T:
    """``work()``: here when it is small (``inline``), else in a worker thread."""
    return work() if inline else await anyio.to_thread.run_sync(work)


DATA_ENDPOINTS = frozenset({"GetAllData", "GetAllDataWithVariables"})
RUN_ENDPOINTS = frozenset(
    {"runmap", "RunMapWithVariables", "runmapdatatable", "RunMapDataTableWithErrors", "runmapxml"}
)
"""Endpoints that run a map: counted in flight per company (``runs_in_flight_max``)."""
"""Endpoints that answer XML only (docs/protocol.md): an Accept that excludes XML is a 406."""
_LONG = re.compile(r"\s*[+-]?0*[0-9]{1,19}\s*", re.ASCII)
"""A long (Int64) as ASP.NET's model binding reads one: ASCII digits, an optional sign and
surrounding white space; the range is checked after."""


def load_json(body: bytes) -> Any:
    """``json.loads``, a document nested too deeply to read being a ValueError like any other."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


class ApiError(Exception):
    """An error answer: ``status`` with ``message`` (a string in the negotiated format)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Answer(NamedTuple):
    """A value to answer in the negotiated format; ``contract`` names its data contract
    (an object's, or a list's items') for XML."""

    value: Any
    contract: str = ""
    status: int = 200

    def response(self, media: str) -> Response:
        """The answer written as ``media`` (a JSON or an XML media type)."""
        if media in JSON_MEDIA:
            text = json_text(self.value)
        else:
            text = data_contract_xml(self.value, self.contract)
        return Response(text, self.status, media_type=f"{media}; charset=utf-8")


def json_text(data: Any) -> str:
    """Compact JSON, as Json.NET writes it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON typed ``application/json; charset=utf-8``."""
    return Response(json_text(data), status, headers, media_type=JSON_TYPE)


class _Query:
    """Query parameters with case-insensitive names (first occurrence wins)."""

    def __init__(self, request: Request) -> None:
        self._values: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            self._values.setdefault(key.lower(), value)

    def get(self, name: str) -> str | None:
        return self._values.get(name.lower())

    def require(self, *names: str) -> list[str]:
        missing = [name for name in names if name.lower() not in self._values]
        if missing:
            listed = ", ".join(f"'{name}'" for name in missing)
            raise ApiError(400, f"The request is invalid: missing query parameter(s) {listed}.")
        return [self._values[name.lower()] for name in names]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _require_body_type(request: Request, accepted: tuple[str, ...]) -> None:
    media = _media_type(request)
    if media not in accepted:
        raise ApiError(
            415,
            f"The request entity's media type '{media or '(none)'}' is not supported for this "
            f"resource; send {' or '.join(accepted)}.",
        )


Handler = Callable[[Request, str], Awaitable[Response | Answer]]


class _Api:
    """The ASGI app behind every path that is not an admin route."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.handlers: dict[str, Handler] = {
            "GetToken": self.get_token,
            "validate": self.validate,
            "GetMapList": self.get_map_list,
            "GetMapColumns": self.get_map_columns,
            "GetMappedMapColumns": self.get_map_columns,
            "GetAllData": self.get_all_data,
            "GetAllDataWithVariables": self.get_all_data,
            "runmap": self.run_map,
            "RunMapWithVariables": self.run_map,
            "runmapdatatable": self.run_map_posted,
            "RunMapDataTableWithErrors": self.run_map_posted,
            "runmapxml": self.run_map_posted,
            "SaveProcessErrors": self.save_process_errors,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        parts = scope["path"].strip("/").split("/")
        if len(parts) != 2 or parts[0].lower() != "api":
            await Response(iis_error_page(404), 404, media_type=HTML_TYPE)(scope, receive, send)
            return
        endpoint = canonical(parts[1])
        if endpoint is None:
            message = f"No HTTP resource was found that matches the request URI '{request.url}'."
            await json_response({"Message": message}, 404)(scope, receive, send)
            return
        if request.method != "POST":
            message = f"The requested resource does not support http method '{request.method}'."
            answer = json_response({"Message": message}, 405, {"Allow": "POST"})
            await answer(scope, receive, send)
            return
        # IIS reads the whole request before the service sees it: a posted run whose
        # client stops waiting (during a latency fault, say) still arrives and runs.
        await request.body()
        emulator = self.emulator
        company = _Query(request).get("companyId") if endpoint == "GetToken" else None
        emulator.count_call(endpoint, company)

        rate = emulator.take_rate()
        if rate is not None and not rate.allowed:
            answer = json_response(status_message(429, rate.reset), 429, rate.headers())
            await answer(scope, receive, send)
            return

        run_company = self._run_company(request) if endpoint in RUN_ENDPOINTS else None
        if run_company is None:
            await self._answer(request, endpoint, rate, scope, receive, send)
        else:
            with emulator.run_in_flight(run_company):
                await self._answer(request, endpoint, rate, scope, receive, send)

    def _run_company(self, request: Request) -> str | None:
        """The company a run request's token is valid for (``None``: it will be refused)."""
        token = _Query(request).get("token")
        record = self.emulator.token_record(token) if token is not None else None
        return record.company_id if record is not None else None

    async def _answer(
        self,
        request: Request,
        endpoint: str,
        rate: RateState | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Past the rate limit: apply faults, process the request and answer it."""
        emulator = self.emulator
        decision = emulator.fault_plan.decide(endpoint)
        if decision.delay:
            await anyio.sleep(decision.delay)
        action = decision.action
        if action is not None:
            emulator.count_fault(action.kind)
            if action.kind == "drop_before":
                await _drop(scope, receive)
                return
            if action.kind in ("html_200", "hostile_xml") or (
                action.kind == "status" and not action.processed
            ):
                await _with_rate(_fault_response(action), rate)(scope, receive, send)
                return

        response = await self._respond(request, endpoint)
        if action is not None and action.kind == "drop_after":
            await _drop(scope, receive)
        elif action is not None and action.kind == "status":
            await _with_rate(_fault_response(action), rate)(scope, receive, send)
        elif action is not None and action.kind == "truncate":
            await _truncate(_with_rate(response, rate), action, scope, receive, send)
        else:
            await _with_rate(response, rate)(scope, receive, send)

    async def _respond(self, request: Request, endpoint: str) -> Response:
        """The answer of ``endpoint`` in the media type Accept asks for, or a 406 (empty,
        as ASP.NET's). ASP.NET negotiates once the action has run; the emulator refuses
        first, so nothing runs."""
        accept = ",".join(request.headers.getlist("accept"))
        media = negotiate(accept, JSON_MEDIA, XML_MEDIA)
        if media is None or (endpoint in DATA_ENDPOINTS and negotiate(accept, XML_MEDIA) is None):
            return Response(status_code=406)
        try:
            answer = await self.handlers[endpoint](request, endpoint)
        except ApiError as error:
            answer = Answer(error.message, status=error.status)
        return answer if isinstance(answer, Response) else answer.response(media)

    # -- helpers -----------------------------------------------------------------------
    def _auth(self, query: _Query) -> TokenRecord:
        (token,) = query.require("token")
        record = self.emulator.token_record(token)
        if record is None:
            raise ApiError(401, DENIED)
        return record

    def _map(self, query: _Query, record: TokenRecord) -> MapDef:
        (raw,) = query.require("mapKey")
        try:
            key = str(uuid.UUID(raw))
        except ValueError:
            raise ApiError(400, f"The value '{raw}' is not a valid map key (a GUID).") from None
        map_def = self.emulator.maps.get(key)
        if map_def is None or map_def.company_id != record.company_id:
            raise ApiError(404, f"No map with the key '{raw}' was found in this company.")
        return map_def

    def _authorised_map(self, request: Request, *more: str) -> tuple[_Query, MapDef]:
        query = _Query(request)
        query.require("token", "mapKey", *more)
        return query, self._map(query, self._auth(query))

    @staticmethod
    async def _variables(request: Request) -> dict[str, str | None]:
        body = await request.body()
        if not body.strip():
            return {}
        _require_body_type(request, JSON_MEDIA)
        try:
            data = load_json(body)
        except ValueError as exc:
            raise ApiError(400, f"The variables are not valid JSON: {exc}.") from None
        shape = 'a JSON array of {"Key": "GBL_NAME", "Value": "value"} objects'
        if not isinstance(data, list):
            raise ApiError(400, f"The variables must be {shape}.")
        variables: dict[str, str | None] = {}
        for item in data:
            fields = {k.lower(): v for k, v in item.items()} if isinstance(item, dict) else {}
            key, value = fields.get("key"), fields.get("value")
            if not isinstance(key, str) or isinstance(value, (dict, list)):
                raise ApiError(400, f"The variables must be {shape}; got {item!r}.")
            if isinstance(value, bool):
                value = "True" if value else "False"
            variables[key] = None if value is None else str(value)
        return variables

    # -- endpoints ---------------------------------------------------------------------
    async def get_token(self, request: Request, endpoint: str) -> Answer:
        email, password, company = _Query(request).require("email", "password", "companyId")
        token = self.emulator.authenticate(email, password, company)
        if token is None:
            raise ApiError(401, "Invalid email, password or company id.")
        return Answer(token)

    async def validate(self, request: Request, endpoint: str) -> Answer:
        (token,) = _Query(request).require("token")
        return Answer(self.emulator.token_record(token) is not None)

    async def get_map_list(self, request: Request, endpoint: str) -> Answer:
        query = _Query(request)
        query.require("token")
        company = self._auth(query).company_id
        maps = [
            {"MapKey": m.key, "MapId": m.map_id, "MapDescription": m.description}
            for m in self.emulator.maps.values()
            if m.company_id == company and not m.realtime
        ]
        return Answer(maps, "MapInfo")

    async def get_map_columns(self, request: Request, endpoint: str) -> Answer:
        _, map_def = self._authorised_map(request)
        columns = map_def.columns if endpoint == "GetMapColumns" else map_def.mapped
        return Answer(
            [{"ColumnName": c.name, "IsRequired": c.required} for c in columns], "MapColumn"
        )

    async def get_all_data(self, request: Request, endpoint: str) -> Response:
        _, map_def = self._authorised_map(request)
        variables = await self._variables(request) if endpoint == "GetAllDataWithVariables" else {}
        chunks = self.emulator.data_chunks(map_def, variables)
        return StreamingResponse(chunks, media_type=XML_TYPE)

    async def run_map(self, request: Request, endpoint: str) -> Answer:
        _, map_def = self._authorised_map(request)
        variables = await self._variables(request) if endpoint == "RunMapWithVariables" else {}
        run = partial(
            self.emulator.run_source,
            map_def,
            variables,
            endpoint=endpoint,
            request_id=request.scope.get(REQUEST_ID_KEY, ""),
        )
        small = self.emulator.source_size(map_def.source.name) <= INLINE_RUN_ROWS
        return _run_response(await _work(small, run), endpoint)

    async def run_map_posted(self, request: Request, endpoint: str) -> Answer:
        _, map_def = self._authorised_map(request)
        body = await request.body()
        if body.strip():  # an empty body gets the parser's clearer 400
            _require_body_type(request, XML_MEDIA)
        request_id = request.scope.get(REQUEST_ID_KEY, "")

        def posted() -> RunRecord:
            variables: dict[str, str] = {}
            if endpoint == "runmapxml":
                variables, tables = parse_run_xml(body)
            else:
                tables = parse_data_table(body)
            return self.emulator.run_posted(
                map_def, tables, variables, endpoint=endpoint, request_id=request_id
            )

        try:
            record = await _work(len(body) <= INLINE_BODY_BYTES, posted)
        except XmlBodyError as exc:
            raise ApiError(400, str(exc)) from None
        return _run_response(record, endpoint)

    async def save_process_errors(self, request: Request, endpoint: str) -> Answer:
        query, map_def = self._authorised_map(
            request, "tenantServer", "tenantTechnicalName", "runNumber"
        )
        server, name, raw_number = query.require("tenantServer", "tenantTechnicalName", "runNumber")
        number = int(raw_number) if _LONG.fullmatch(raw_number) else None
        if number is None or not -(2**63) <= number < 2**63:
            raise ApiError(400, f"The value '{raw_number}' is not a valid run number.")
        return Answer(self.emulator.save_process_errors(map_def, number, server, name))


def _run_response(record: RunRecord, endpoint: str) -> Answer:
    with_errors = endpoint == "RunMapDataTableWithErrors"
    return Answer(record.response(validation_errors=with_errors), "RunMapResponse")


def _with_rate(response: Response, rate: RateState | None) -> Response:
    if rate is not None:
        response.headers.update(rate.headers())
    return response


def _fault_response(rule: FaultRule) -> Response:
    if rule.kind == "html_200":
        return Response(ASPNET_RUNTIME_ERROR_PAGE, 200, media_type=HTML_TYPE)
    if rule.kind == "hostile_xml":
        return Response(hostile_xml(rule.variant), 200, media_type=XML_TYPE)
    retry_after = (
        rule.retry_after if rule.retry_after is not None else (1 if rule.status == 429 else None)
    )
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if rule.html and rule.status >= 500:
        return Response(iis_error_page(rule.status), rule.status, headers, media_type=HTML_TYPE)
    return json_response(status_message(rule.status, retry_after), rule.status, headers)


async def _await_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drop(scope: Scope, receive: Receive) -> None:
    """Drop the connection without an answer (in-process: raise what httpx would)."""
    transport = transport_for(scope)
    if transport is None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    transport.abort()
    await _await_disconnect(receive)


async def _truncate(
    response: Response, rule: FaultRule, scope: Scope, receive: Receive, send: Send
) -> None:
    """Send the head and part of the body of ``response``, then close the connection."""
    start = {"type": "http.response.start", "status": response.status_code}
    await send({**start, "headers": response.raw_headers})
    if isinstance(response, StreamingResponse):
        limit = rule.after_bytes
        sent = 0
        iterator = response.body_iterator
        async for chunk in iterator:
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
            if limit is None:
                limit = len(data) // 2  # midway through the first chunk
            part = data[: max(0, limit - sent)]
            if part:
                await send({"type": "http.response.body", "body": part, "more_body": True})
                sent += len(part)
            if sent >= limit:
                break
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    else:
        body = bytes(response.body)
        cut = rule.after_bytes if rule.after_bytes is not None else len(body) // 2
        cut = min(cut, max(len(body) - 1, 0))  # at least one byte short of Content-Length
        await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
    transport = transport_for(scope)
    if transport is None:
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body"
        )
    transport.close()
    await _await_disconnect(receive)


class EmulatorApp(Starlette):
    """The Starlette app of an emulator; every answer gets X-Request-Id and IIS headers."""

    emulator: Emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope[REQUEST_ID_KEY] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                headers["Server"] = "Microsoft-IIS/10.0"
                headers["X-Powered-By"] = "ASP.NET"
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def _admin_routes(emulator: Emulator) -> list[Route]:
    async def counters(request: Request) -> Response:
        return json_response(emulator.counters.to_json())

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                emulator.set_faults(load_json(await request.body() or b"[]"))
            except ValueError as exc:
                return json_response(f"Invalid fault rules: {exc}", 400)
        elif request.method == "DELETE":
            emulator.clear_faults()
        return json_response(emulator.fault_plan.to_json())

    async def reset(request: Request) -> Response:
        emulator.reset_counters()
        return json_response(emulator.counters.to_json())

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            try:
                data = load_json(await request.body() or b"{}")
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                if "advance_seconds" in data:
                    seconds = data["advance_seconds"]
                    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                        raise ValueError(f"'advance_seconds' must be a number, got {seconds!r}")
                    emulator.advance_clock(seconds)
                elif "now" in data:
                    emulator.set_clock(datetime.fromisoformat(str(data["now"])))
                else:
                    raise ValueError("expected 'advance_seconds' or 'now'")
            except (ValueError, TypeError) as exc:
                return json_response(f"Invalid clock change: {exc}", 400)
        return json_response({"now": emulator.now().isoformat()})

    async def runs(request: Request) -> Response:
        return json_response([run.to_json() for run in emulator.runs])

    async def saved_errors(request: Request) -> Response:
        return json_response([saved.to_json() for saved in emulator.saved_errors])

    return [
        Route("/_emulator/counters", counters, methods=["GET"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/clock", clock, methods=["GET", "POST"]),
        Route("/_emulator/runs", runs, methods=["GET"]),
        Route("/_emulator/saved-errors", saved_errors, methods=["GET"]),
    ]


def _client_disconnected(request: Request, exc: Exception) -> Response:
    """A client that hung up before sending its whole body: one log line, no answer."""
    logger.info(
        "client disconnected before the request body was complete: %s %s",
        request.method,
        request.url.path,
    )
    return Response(status_code=400)  # goes nowhere: the connection is gone


def create_app(emulator: Emulator | None = None) -> Starlette:
    """The emulator's ASGI app; the API Url is ``<origin>/API``."""
    emulator = emulator if emulator is not None else Emulator()
    app = EmulatorApp(
        routes=[*_admin_routes(emulator), Route("/{path:path}", _Api(emulator))],
        exception_handlers={ClientDisconnect: _client_disconnected},
    )
    app.emulator = emulator
    return app
