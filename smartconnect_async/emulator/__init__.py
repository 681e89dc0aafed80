"""A wire-faithful emulator of the eOne SmartConnect REST API, for tests and demos.

``create_app(Emulator(...))`` is an ASGI app (the API Url is ``<origin>/API``);
``serve(app)`` runs it on loopback in a background thread and yields the API Url;
``python -m smartconnect_async.emulator`` serves it in the foreground.
It is written from the wire protocol (``docs/protocol.md``) alone and imports nothing
from the client.
"""

from __future__ import annotations

from ._app import create_app
from ._catalog import (
    DEMO_CREDENTIALS,
    DUPLICATE_CUSTOMERS_KEY,
    IMPORT_CUSTOMERS_KEY,
    IMPORT_SALES_ORDERS_KEY,
    POST_CASH_RECEIPTS_KEY,
    REALTIME_CUSTOMERS_KEY,
    Column,
    Company,
    DemoCredential,
    MapDef,
    User,
)
from ._data import SOURCES, DataSource, Table
from ._faults import FaultRule, parse_faults
from ._ratelimit import RateLimit
from ._runs import (
    STATUS_COMPLETED_WITH_ERRORS,
    STATUS_FAILED,
    STATUS_SUCCESS,
    RunError,
    RunRecord,
    SavedErrors,
)
from ._server import serve
from ._state import Counters, Emulator, parse_row_sizes
from ._tokens import TokenRecord, hash_password

__all__ = [
    "DEMO_CREDENTIALS",
    "DUPLICATE_CUSTOMERS_KEY",
    "IMPORT_CUSTOMERS_KEY",
    "IMPORT_SALES_ORDERS_KEY",
    "POST_CASH_RECEIPTS_KEY",
    "REALTIME_CUSTOMERS_KEY",
    "SOURCES",
    "STATUS_COMPLETED_WITH_ERRORS",
    "STATUS_FAILED",
    "STATUS_SUCCESS",
    "Column",
    "Company",
    "Counters",
    "DataSource",
    "DemoCredential",
    "Emulator",
    "FaultRule",
    "MapDef",
    "RateLimit",
    "RunError",
    "RunRecord",
    "SavedErrors",
    "Table",
    "TokenRecord",
    "User",
    "create_app",
    "hash_password",
    "parse_faults",
    "parse_row_sizes",
    "serve",
]
