"""What a worker advises about the Redis it is given (layout.py, encoding_advice), against real
redis-servers: one as Redis ships, one started as the dispatcher starts its own, one that refuses
CONFIG as some hosted Redis do."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from dispatcher.embedded import START_TIMEOUT_S, _redis_answers, _spawn, _stop, _wait_until, free_port
from dispatcher.state.keys import ENCODING_CEILINGS
from dispatcher.state.layout import encoding_advice

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
async def plain_redis(tmp_path: Any) -> AsyncIterator[Callable[..., aioredis.Redis]]:
    """A redis-server started with only the given arguments; a client on it."""
    started: list[tuple[subprocess.Popen[bytes], aioredis.Redis]] = []

    def start(*args: str) -> aioredis.Redis:
        port, log_path = free_port(), tmp_path / f"redis-{len(started)}.log"
        server = _spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                         "--dir", str(tmp_path), *args], log_path)
        _wait_until(lambda: _redis_answers(port), server, "redis-server", log_path, START_TIMEOUT_S)
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        await client.aclose()
        _stop(server)


async def test_a_redis_as_shipped_is_told_which_settings_to_make(plain_redis: Callable[..., aioredis.Redis]):
    client = plain_redis()
    advice = await encoding_advice(client)
    assert len(advice) == len(ENCODING_CEILINGS)
    for words, (name, ceiling) in zip(advice, ENCODING_CEILINGS.items(), strict=True):
        shipped = (await client.config_get(name))[name]
        assert f"Redis has {name} {shipped}" in words and words.endswith(f"set {name} {ceiling}")


async def test_once_the_settings_are_made_nothing_is_advised(plain_redis: Callable[..., aioredis.Redis]):
    client = plain_redis()
    name, ceiling = next(iter(ENCODING_CEILINGS.items()))
    await client.config_set(name, ceiling)
    assert [words for words in await encoding_advice(client) if name in words] == []
    for other, other_ceiling in ENCODING_CEILINGS.items():
        await client.config_set(other, other_ceiling - 1)
    assert await encoding_advice(client) == []


async def test_a_redis_that_refuses_config_is_advised_nothing_and_still_answers(
        plain_redis: Callable[..., aioredis.Redis]):
    client = plain_redis("--rename-command", "CONFIG", "")
    assert await encoding_advice(client) == []
    assert await client.ping()


async def test_the_redis_the_dispatcher_starts_needs_no_advice(stack: Any):
    client = aioredis.from_url(stack.redis_url, decode_responses=True)
    try:
        assert await encoding_advice(client) == []
        for name, ceiling in ENCODING_CEILINGS.items():
            assert int((await client.config_get(name))[name]) == ceiling
    finally:
        await client.aclose()
