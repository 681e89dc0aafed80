"""Map run endpoints: ``runmap``, ``RunMapWithVariables``, ``runmapdatatable``,
``RunMapDataTableWithErrors`` and ``runmapxml``. Runs are never sent twice once they may
have reached the server."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._batch import gather_outcomes, listed
from ._journaled import run_journaled
from ._json import field, load, variables_body
from ._session import Session
from ._wire import JSON, XML, Call
from ._xml import build_data_table, build_xml_request, parse_error_table
from .exceptions import ResponseParseError
from .journal import RunJournal
from .maps import MapDirectory, MapRef
from .models import RunRequest, RunResult, Timeout, ValidationFailure

__all__ = [
    "Runs",
    "data_table_call",
    "parse_run_result",
    "run_call",
    "xml_call",
]

_MESSAGE_KEYS = ("message", "errormessage", "error", "description", "text")
_COLUMN_KEYS = ("columnname", "column", "field", "fieldname")
_ROW_KEYS = ("rownumber", "row", "rowindex", "record", "recordnumber")


def _validation_failure(item: Any, what: str) -> ValidationFailure:
    if isinstance(item, str):
        return ValidationFailure(message=item)
    if not isinstance(item, dict):
        raise ResponseParseError(f"{what} is a {type(item).__name__}, not an object")
    extra = dict(item)
    folded = {k.lower(): k for k in item}

    def take(names: tuple[str, ...]) -> Any:
        for name in names:
            if name in folded:
                return extra.pop(folded[name])
        return None

    message, column, row = take(_MESSAGE_KEYS), take(_COLUMN_KEYS), take(_ROW_KEYS)
    if isinstance(row, str) and row.strip().isdigit():
        row = int(row)
    return ValidationFailure(
        message="" if message is None else str(message),
        column=None if column is None else str(column),
        row=row if isinstance(row, int) and not isinstance(row, bool) else None,
        extra=extra,
    )


def parse_run_result(body: bytes) -> RunResult:
    """A RunMapResponse (JSON)."""
    what = "the run answer"
    value = load(body, what)
    if not isinstance(value, dict):
        raise ResponseParseError(f"{what} is a JSON {type(value).__name__}, not an object")
    validation = value.get("ValidationErrors") or []
    if not isinstance(validation, list):
        raise ResponseParseError(f"{what}: ValidationErrors is not a list")
    return RunResult(
        status=field(value, "Status", int, what),
        run_number=field(value, "RunNumber", int, what, default=None),
        map_id=field(value, "MapId", str, what, default=""),
        map_description=field(value, "MapDescription", str, what, default=""),
        record_count=field(value, "RecordCount", int, what, default=0),
        error_count=field(value, "ErrorCount", int, what, default=0),
        error_message=field(value, "ErrorMessage", str, what, default=""),
        errors=tuple(
            _validation_failure(row, f"{what}: Errors row {i + 1}")
            for i, row in enumerate(
                parse_error_table(field(value, "Errors", str, what, default=""))
            )
        ),
        validation_errors=tuple(
            _validation_failure(item, f"{what}: ValidationErrors[{i}]")
            for i, item in enumerate(validation)
        ),
        raw=value,
    )


def run_call(map_key: str, variables: Mapping[str, str] | None = None) -> Call[RunResult]:
    """``runmap``, or ``RunMapWithVariables`` when there are variables."""
    if variables:
        return Call(
            "RunMapWithVariables",
            parse_run_result,
            query=(("mapKey", map_key),),
            body=variables_body(variables),
            content_type=JSON,
            idempotent=False,
            is_run=True,
            map_key=map_key,
        )
    return Call(
        "runmap",
        parse_run_result,
        query=(("mapKey", map_key),),
        idempotent=False,
        is_run=True,
        map_key=map_key,
    )


def data_table_call(map_key: str, payload: bytes, *, with_errors: bool = False) -> Call[RunResult]:
    """``runmapdatatable`` (or ``RunMapDataTableWithErrors``); ``payload`` is
    ``build_data_table(rows)``: one ``<Table>`` per row."""
    return Call(
        "RunMapDataTableWithErrors" if with_errors else "runmapdatatable",
        parse_run_result,
        query=(("mapKey", map_key),),
        body=payload,
        content_type=XML,
        idempotent=False,
        is_run=True,
        map_key=map_key,
    )


def xml_call(map_key: str, payload: bytes) -> Call[RunResult]:
    """``runmapxml``; ``payload`` is ``build_xml_request(rows)``: the rows as an escaped
    ``<DataSet>``."""
    return Call(
        "runmapxml",
        parse_run_result,
        query=(("mapKey", map_key),),
        body=payload,
        content_type="text/xml",
        idempotent=False,
        is_run=True,
        map_key=map_key,
    )


class Runs:
    """Run maps. A run posts documents into an ERP: it is sent again only when the server
    provably did not process it, else ``RunOutcomeUnknown`` is raised.

    At most ``max_concurrent_runs`` runs per company are in flight at once, across every
    client sharing the pool. Every method takes ``timeout`` and ``max_retries``.
    """

    def __init__(
        self,
        session: Session,
        directory: MapDirectory,
        of_company: Callable[[str], Runs],
    ) -> None:
        self._session = session
        self._directory = directory
        self._of_company = of_company  # the runs of the same user for another company

    async def run(
        self,
        map: MapRef,
        variables: Mapping[str, str] | None = None,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> RunResult:
        """Run ``map`` over its own data source, with global ``variables`` if given."""
        if variables:
            variables_body(variables)  # bad variables fail here, before any I/O
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        return await self._session.call(
            run_call(key, variables), timeout=timeout, max_retries=max_retries
        )

    async def run_data_table(
        self,
        map: MapRef,
        rows: Iterable[Mapping[str, object]],
        with_errors: bool = False,
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> RunResult:
        """Run ``map`` over ``rows`` (column → value; ``None`` leaves a column out).
        ``with_errors`` also returns the map's validation errors."""
        payload = build_data_table(rows)  # bad rows fail here, before any I/O
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        call = data_table_call(key, payload, with_errors=with_errors)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)

    async def run_xml(
        self,
        map: MapRef,
        rows: Iterable[Mapping[str, object]],
        *,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> RunResult:
        """Run ``map`` over ``rows`` sent as an XML data set (``runmapxml``)."""
        payload = build_xml_request(rows)
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        call = xml_call(key, payload)
        return await self._session.call(call, timeout=timeout, max_retries=max_retries)

    async def run_many(
        self,
        items: Iterable[MapRef | RunRequest],
        *,
        concurrency: int = 16,
        on_result: Callable[[int, MapRef | RunRequest, RunResult | Exception], object]
        | None = None,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
        journal: RunJournal | None = None,
        resume: bool = False,
    ) -> list[RunResult | Exception]:
        """Run many maps (or one map with different variables or rows), at most
        ``concurrency`` at a time (and at most ``max_concurrent_runs`` per company).
        A ``RunRequest`` with a ``company_id`` runs for that company, as the same user
        (``with_company``).

        Returns, in input order, each ``RunResult`` or the exception its run raised, so
        one failure never loses the others; ``on_result(index, item, outcome)`` is called
        (and awaited, if async) as each finishes.

        With a ``journal`` (``smartconnect_async.journal``) each run is recorded before it
        is sent and its outcome after. ``resume=True`` does not send the runs it records
        as done (their slot holds a ``RunResult`` rebuilt from the record) and refuses
        those that may have reached the server without a known outcome
        (``RunNeedsResolution``); without it, a journal that holds any run of the batch is
        a ``JournalConflict`` and nothing is sent.
        """
        options: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries}
        companies: dict[str, Runs] = {}

        def runs_for(item: MapRef | RunRequest) -> Runs:
            if not isinstance(item, RunRequest) or item.company_id is None:
                return self
            return self._company(item.company_id, companies)

        async def one(item: MapRef | RunRequest) -> RunResult:
            if not isinstance(item, RunRequest):
                return await self.run(item, **options)
            runs = runs_for(item)
            if item.rows is None:
                return await runs.run(item.map, item.variables, **options)
            if item.as_xml:
                return await runs.run_xml(item.map, item.rows, **options)
            return await runs.run_data_table(item.map, item.rows, item.with_errors, **options)

        async def map_key(item: MapRef | RunRequest) -> str:
            runs = runs_for(item)
            ref = item.map if isinstance(item, RunRequest) else item
            return await runs._directory.key(runs._session, ref, **options)

        batch = listed(items, "run_many")
        if journal is None:
            return await gather_outcomes(batch, one, concurrency=concurrency, on_result=on_result)
        return await run_journaled(
            journal,
            batch,
            one,
            map_key,
            company_id=self._session.principal.key.company_id,
            resume=resume,
            concurrency=concurrency,
            on_result=on_result,
        )

    def _company(self, company_id: str, made: dict[str, Runs]) -> Runs:
        """The runs of ``company_id`` (this client's own, or one made once per batch)."""
        if company_id == self._session.principal.key.company_id:
            return self
        if company_id not in made:
            made[company_id] = self._of_company(company_id)
        return made[company_id]
