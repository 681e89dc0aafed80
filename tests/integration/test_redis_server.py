"""The tests' own redis-server (``redis_url`` in ``tests/conftest.py``): real, on
127.0.0.1, empty, with no persistence."""

from __future__ import annotations

import pytest
import redis.asyncio as redis

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py's asyncio client


async def test_the_tests_redis_server_is_real_and_local(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_url)
    try:
        assert await client.ping()
        await client.set("smartconnect-test:probe", "1", px=1000)
        assert await client.get("smartconnect-test:probe") == b"1"
        assert (await client.config_get("save"))["save"] == ""  # no persistence
    finally:
        await client.aclose()
