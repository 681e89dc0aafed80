"""Map runs: validating documents, the run record and the RunMapResponse it answers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._xml import errors_table

STATUS_SUCCESS = 0
"""``Status`` of a run in which every document succeeded (also a run of no documents)."""
STATUS_COMPLETED_WITH_ERRORS = 1
"""``Status`` of a run in which some, not all, documents failed."""
STATUS_FAILED = 2
"""``Status`` of a run in which every document failed."""


@dataclass(frozen=True)
class RunError:
    """One error of a run: the 1-based document (row) number, the column and a message."""

    row_number: int
    column_name: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The error as a ValidationErrors item."""
        return {
            "RowNumber": self.row_number,
            "ColumnName": self.column_name,
            "Message": self.message,
        }


def validate_documents(
    required: Sequence[str], documents: Iterable[Mapping[str, str | None]]
) -> tuple[int, int, list[RunError]]:
    """``(documents, failed documents, errors)``: a document fails if a required column is
    absent or blank. Column names match case-insensitively."""
    wanted = [(name, name.lower()) for name in required]
    count = failed = 0
    errors: list[RunError] = []
    for count, document in enumerate(documents, start=1):
        lowered = {key.lower(): value for key, value in document.items()}
        ok = True
        for name, key in wanted:
            value = lowered.get(key)
            if value is None:
                message = f"Required column '{name}' was not supplied."
            elif not value.strip():
                message = f"Required column '{name}' is empty."
            else:
                continue
            ok = False
            errors.append(RunError(count, name, message))
        failed += not ok
    return count, failed, errors


def run_status(record_count: int, error_count: int) -> int:
    """The RunMapStatus of a run: 0 success, 1 some documents failed, 2 all failed."""
    if error_count == 0:
        return STATUS_SUCCESS
    return STATUS_FAILED if error_count >= record_count else STATUS_COMPLETED_WITH_ERRORS


@dataclass(frozen=True)
class RunRecord:
    """One executed run, as the emulator's run history keeps it.

    ``tables`` holds the rows the run received over the wire, by row element name
    (empty for runmap / RunMapWithVariables, which read the map's own data source);
    ``documents`` are the rows of the first table, the run's documents.
    """

    run_number: int
    company_id: str
    map_key: str
    map_id: str
    map_description: str
    endpoint: str
    started_at: datetime
    request_id: str
    record_count: int
    error_count: int
    errors: tuple[RunError, ...]
    variables: Mapping[str, str | None] = field(default_factory=dict)
    tables: Mapping[str, tuple[Mapping[str, str], ...]] = field(default_factory=dict)

    @property
    def documents(self) -> tuple[Mapping[str, str], ...]:
        """The posted documents (rows of the first posted table)."""
        return next(iter(self.tables.values()), ())

    @property
    def status(self) -> int:
        """The run's RunMapStatus."""
        return run_status(self.record_count, self.error_count)

    def response(self, *, validation_errors: bool = False) -> dict[str, Any]:
        """The RunMapResponse JSON object; ``validation_errors`` adds ValidationErrors."""
        answer: dict[str, Any] = {
            "ErrorCount": self.error_count,
            "Errors": errors_table((e.row_number, e.column_name, e.message) for e in self.errors),
            "ErrorMessage": self.errors[-1].message if self.errors else "",
            "MapDescription": self.map_description,
            "MapId": self.map_id,
            "RecordCount": self.record_count,
            "RunNumber": self.run_number,
            "Status": self.status,
        }
        if validation_errors:
            answer["ValidationErrors"] = [e.to_json() for e in self.errors]
        return answer

    def to_json(self) -> dict[str, Any]:
        """The record for ``GET /_emulator/runs``."""
        return {
            "RunNumber": self.run_number,
            "CompanyId": self.company_id,
            "MapKey": self.map_key,
            "MapId": self.map_id,
            "Endpoint": self.endpoint,
            "StartedAt": self.started_at.isoformat(),
            "RequestId": self.request_id,
            "RecordCount": self.record_count,
            "ErrorCount": self.error_count,
            "Status": self.status,
            "Errors": [e.to_json() for e in self.errors],
            "Variables": dict(self.variables),
            "Tables": {name: [dict(row) for row in rows] for name, rows in self.tables.items()},
        }


@dataclass(frozen=True)
class SavedErrors:
    """A successful SaveProcessErrors call."""

    company_id: str
    map_key: str
    run_number: int
    tenant_server: str
    tenant_technical_name: str
    saved_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The record as JSON."""
        return {
            "CompanyId": self.company_id,
            "MapKey": self.map_key,
            "RunNumber": self.run_number,
            "TenantServer": self.tenant_server,
            "TenantTechnicalName": self.tenant_technical_name,
            "SavedAt": self.saved_at.isoformat(),
        }
