"""Process errors endpoint: ``SaveProcessErrors``."""

from __future__ import annotations

from ._session import Session
from ._wire import Call
from .auth import parse_bool
from .maps import MapDirectory, MapRef
from .models import Timeout

__all__ = ["Errors", "save_call"]


def _parse_saved(body: bytes) -> bool:
    return parse_bool(body, "the SaveProcessErrors answer")


def save_call(
    map_key: str, *, tenant_server: str, tenant_technical_name: str, run_number: int
) -> Call[bool]:
    """``SaveProcessErrors`` for one run of a map. Not idempotent: never sent twice once it
    may have reached the server."""
    return Call(
        "SaveProcessErrors",
        _parse_saved,
        query=(
            ("mapKey", map_key),
            ("tenantServer", tenant_server),
            ("tenantTechnicalName", tenant_technical_name),
            ("runNumber", str(run_number)),
        ),
        idempotent=False,
        map_key=map_key,
    )


class Errors:
    """A run's process errors."""

    def __init__(self, session: Session, directory: MapDirectory) -> None:
        self._session = session
        self._directory = directory

    async def save(
        self,
        map: MapRef,
        *,
        tenant_server: str,
        tenant_technical_name: str,
        run_number: int,
        timeout: Timeout | float | None = None,
        max_retries: int | None = None,
    ) -> bool:
        """Save the process errors of run ``run_number`` of ``map`` on the SmartConnect
        server (tenant details from Processes › Error Processing). Returns whether they
        were saved."""
        for name, value in (
            ("tenant_server", tenant_server),
            ("tenant_technical_name", tenant_technical_name),
        ):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        if isinstance(run_number, bool) or not isinstance(run_number, int) or run_number < 0:
            raise ValueError(f"run_number must be a non-negative int, not {run_number!r}")
        key = await self._directory.key(
            self._session, map, timeout=timeout, max_retries=max_retries
        )
        return await self._session.call(
            save_call(
                key,
                tenant_server=tenant_server,
                tenant_technical_name=tenant_technical_name,
                run_number=run_number,
            ),
            timeout=timeout,
            max_retries=max_retries,
        )
