"""smartconnect_async: an async client for the eOne SmartConnect REST API.

```python
from smartconnect_async import SmartConnect, Credentials

async with SmartConnect(api_url, Credentials(email=..., password=..., company_id=...)) as sc:
    for m in await sc.maps.list():
        print(m.id)
```

Without an event loop (scripts): ``with SmartConnectSync(api_url, credentials) as sc:``.
"""

__version__ = "0.1.0"  # the one place the version is set (pyproject.toml reads it)

from typing import TYPE_CHECKING

from ._redact import redact_url
from ._tokens import MemoryTokenStore, TokenKey, TokenStore, hash_password
from .client import SmartConnect
from .data import RowStream
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    JournalConflict,
    MapRunFailed,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseParseError,
    RunNeedsResolution,
    RunOutcomeUnknown,
    ServerError,
    SmartConnectError,
    UnknownMapError,
    UnknownTableError,
)
from .journal import RedisJournal, RunJournal, SqliteJournal
from .maps import MapRef
from .models import (
    Column,
    Credentials,
    DataRequest,
    DataSet,
    MapInfo,
    Row,
    RunRequest,
    RunResult,
    Timeout,
    Token,
    ValidationFailure,
)
from .sync import SmartConnectSync

if TYPE_CHECKING:
    from .redis_tokens import RedisTokenStore


def __getattr__(name: str) -> object:
    """``RedisTokenStore``, imported when first asked for: the package imports without
    redis-py (the ``redis`` extra)."""
    if name == "RedisTokenStore":
        from .redis_tokens import RedisTokenStore

        return RedisTokenStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "Column",
    "Credentials",
    "DataRequest",
    "DataSet",
    "JournalConflict",
    "MapInfo",
    "MapRef",
    "MapRunFailed",
    "MemoryTokenStore",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedisJournal",
    "RedisTokenStore",
    "ResponseParseError",
    "Row",
    "RowStream",
    "RunJournal",
    "RunNeedsResolution",
    "RunOutcomeUnknown",
    "RunRequest",
    "RunResult",
    "ServerError",
    "SmartConnect",
    "SmartConnectError",
    "SmartConnectSync",
    "SqliteJournal",
    "Timeout",
    "Token",
    "TokenKey",
    "TokenStore",
    "UnknownMapError",
    "UnknownTableError",
    "ValidationFailure",
    "__version__",
    "hash_password",
    "redact_url",
]
